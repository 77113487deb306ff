//! The attacks on the execution queue, end to end: the real `inloop serve`, a real `inloop
//! runtime` running ipykernel, and peers over real WebSockets. Each attack must not run the
//! attacker's code (a marker file it would write stays absent) while the victim's run gives the
//! victim's own result.

use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use inloop_doc::structs::{ItemSpec, Parent, StructKind, UpdateStructs, encode_items_v1};
use inloop_doc::{ExecutionStatus, ExecutionTarget, Notebook, Output};
use inloop_sync::{ClientSession, Role};
use yrs::{Any, ClientID, ID, IdSet};

use crate::{RuntimeProcess, Serve, peer, token, until};

const TIMEOUT: Duration = Duration::from_secs(60);

/// Python that leaves a marker file: proof that the attacker's code ran.
fn payload(marker: &Path) -> String {
    format!(
        "open({:?}, 'w').write('pwned')\nprint('attacker')",
        marker.display().to_string()
    )
}

/// The stream text of a cell's outputs.
fn printed(notebook: &Notebook, cell: &str) -> String {
    notebook
        .cell(cell)
        .unwrap()
        .outputs
        .iter()
        .filter_map(|o| match o {
            Output::Stream { text, .. } => Some(text.clone()),
            _ => None,
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_edit_link_cannot_make_the_runtime_run_its_code() {
    let data = tempfile::tempdir().unwrap();
    let marker = data.path().join("pwned");
    let relay = Serve::start(data.path(), SocketAddr::from(([127, 0, 0, 1], 0)));
    let doc = "pending-attack";
    let _owner = peer(relay.addr, doc, Role::Admin).await; // an admin's first visit creates it
    let victim = peer(relay.addr, doc, Role::Execute).await;
    let _runtime = RuntimeProcess::start(relay.addr, doc, &token(Role::Runtime), "server");
    until("the runtime registers", TIMEOUT, || {
        !victim.notebook().runtimes().is_empty()
    })
    .await;
    let cell = victim.notebook().cell_ids()[0].clone();
    victim
        .notebook()
        .set_source(&cell, "print('victim')")
        .unwrap();
    assert!(victim.wait_stored(TIMEOUT).await);

    // The attacker holds an edit link. It writes `code` into the execution entry the victim
    // will create next (the victim's client id is in its presence; its next clock is in the
    // document), with a client id above the victim's so that its write wins.
    let attacker = peer(relay.addr, doc, Role::Edit).await;
    let victim_client = ClientID::new(victim.notebook().client_id());
    let future_entry = ID::new(
        victim_client,
        attacker.notebook().state_vector().get(&victim_client),
    );
    let attack = encode_items_v1(
        &[ItemSpec {
            id: ID::new(ClientID::new((1 << 53) - 7), 0),
            origin: None,
            right_origin: None,
            parent: Parent::Item(future_entry),
            parent_sub: Some("code".into()),
            content: Any::from(payload(&marker)),
        }],
        &IdSet::default(),
    );
    attacker.send_raw(ClientSession::update_frame(&attack));
    let (code, reason) = attacker
        .wait_closed(TIMEOUT)
        .await
        .expect("the attacker is cut");
    assert_eq!(code, Some(4400), "{reason}");
    assert!(reason.contains("does not have"), "{reason}");

    let run = victim
        .notebook()
        .request_execution(&cell, &ExecutionTarget::Server, "victim", 1.0)
        .unwrap();
    until("the victim's run ends", TIMEOUT, || {
        victim
            .notebook()
            .execution(&run)
            .is_ok_and(|e| e.status.is_final())
    })
    .await;
    let ended = victim.notebook().execution(&run).unwrap();
    assert_eq!(ended.status, ExecutionStatus::Done, "{ended:?}");
    assert_eq!(ended.code, "print('victim')");
    until("the victim's output", TIMEOUT, || {
        printed(victim.notebook(), &cell) == "victim\n"
    })
    .await;
    assert!(!marker.exists(), "the attacker's code ran");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_run_whose_code_was_changed_after_the_request_is_refused_by_the_runtime() {
    let data = tempfile::tempdir().unwrap();
    let marker = data.path().join("pwned");
    let relay = Serve::start(data.path(), SocketAddr::from(([127, 0, 0, 1], 0)));
    let doc = "overwrite-attack";
    let _owner = peer(relay.addr, doc, Role::Admin).await;
    let victim = peer(relay.addr, doc, Role::Execute).await;
    let _runtime = RuntimeProcess::start(relay.addr, doc, &token(Role::Runtime), "server");
    until("the runtime registers", TIMEOUT, || {
        !victim.notebook().runtimes().is_empty()
    })
    .await;
    let notebook = victim.notebook().clone();
    let cell = notebook.cell_ids()[0].clone();
    notebook.set_source(&cell, "print('victim')").unwrap();
    // Keep the runtime busy so the victim's entry waits in the queue.
    let busy_cell = notebook
        .insert_cell(1, inloop_doc::CellType::Code, "import time; time.sleep(4)")
        .unwrap();
    let busy = notebook
        .request_execution(&busy_cell, &ExecutionTarget::Server, "victim", 1.0)
        .unwrap();
    until("the slow cell runs", TIMEOUT, || {
        notebook.execution(&busy).unwrap().status == ExecutionStatus::Running
    })
    .await;
    let before = notebook.state_vector();
    let run = notebook
        .request_execution(&cell, &ExecutionTarget::Server, "victim", 2.0)
        .unwrap();
    let request = notebook.encode_diff_v1(&before);

    // Another execute peer (who could run its own code anyway) overwrites the victim's
    // snapshot, so that its code would run under the victim's name.
    let other = peer(relay.addr, doc, Role::Execute).await;
    until("the request reaches the other peer", TIMEOUT, || {
        other.notebook().execution(&run).is_ok()
    })
    .await;
    let structs = UpdateStructs::decode_v1(&request).unwrap();
    let entry = structs
        .structs
        .iter()
        .find(|s| matches!(&s.kind, StructKind::Item { parent: Parent::Root(r), .. } if &**r == "executions"))
        .unwrap()
        .id;
    let code = structs.key_history(entry, "code")[0];
    let me = ClientID::new(other.notebook().client_id() + 1);
    let overwrite = encode_items_v1(
        &[ItemSpec {
            id: ID::new(me, 0),
            origin: Some(code),
            right_origin: None,
            parent: Parent::Neighbours,
            parent_sub: None,
            content: Any::from(payload(&marker)),
        }],
        &IdSet::default(),
    );
    other.send_raw(ClientSession::update_frame(&overwrite));
    until("the overwrite reaches the victim", TIMEOUT, || {
        notebook.execution(&run).unwrap().code != "print('victim')"
    })
    .await;

    until("the refused run ends", TIMEOUT, || {
        notebook.execution(&run).is_ok_and(|e| e.status.is_final())
    })
    .await;
    let ended = notebook.execution(&run).unwrap();
    assert_eq!(ended.status, ExecutionStatus::Cancelled, "{ended:?}");
    assert!(
        ended
            .message
            .as_deref()
            .unwrap_or_default()
            .contains("changed after it was requested"),
        "{ended:?}"
    );
    assert!(!marker.exists(), "the overwritten code ran");
    // Running the cell again runs the victim's code.
    let again = notebook
        .request_execution(&cell, &ExecutionTarget::Server, "victim", 3.0)
        .unwrap();
    until("the second run ends", TIMEOUT, || {
        notebook
            .execution(&again)
            .is_ok_and(|e| e.status == ExecutionStatus::Done)
    })
    .await;
    until("the victim's output", TIMEOUT, || {
        printed(&notebook, &cell) == "victim\n"
    })
    .await;
    assert!(!marker.exists());
}
