use std::time::Duration;

use inloop_doc::{CellType, ExecutionStatus, ExecutionTarget, Notebook};
use inloop_sync::Role;
use serde_json::json;

use crate::{TestRelay, finished, runtime, started, until};

const TIMEOUT: Duration = Duration::from_secs(60);

/// Adds a code cell with `source` at the end and queues it for the server; returns the ids.
fn queue(notebook: &Notebook, source: &str, at: f64) -> (String, String) {
    let index = notebook.cell_count();
    let cell = notebook.insert_cell(index, CellType::Code, source).unwrap();
    let run = notebook
        .request_execution(&cell, &ExecutionTarget::Server, "test", at)
        .unwrap();
    (cell, run)
}

fn outputs(notebook: &Notebook, cell: &str) -> serde_json::Value {
    let value = notebook.to_ipynb_value();
    let cells = value["cells"].as_array().unwrap();
    cells.iter().find(|c| c["id"] == cell).unwrap()["outputs"].clone()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_cells_run_in_order_with_every_kind_of_output() {
    let relay = TestRelay::start().await;
    let doc = "outputs";
    let client = relay.peer(doc, Role::Admin).await;
    let _runtime = runtime(&relay, doc, "test-runtime");
    let notebook = client.notebook();

    let png = "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mP8z8BQDwAEhQGAhKmMIQAAAABJRU5ErkJggg==";
    let cells = [
        "print('hello')",
        &format!(
            "from IPython.display import HTML, Image, display\nimport base64\ndisplay(HTML('<b>bold</b>'))\ndisplay(Image(data=base64.b64decode('{png}')))"
        ),
        "40 + 2",
        "h = display('first', display_id=True)\nh.update('second')",
        "1/0",
    ];
    let queued: Vec<(String, String)> = cells
        .iter()
        .enumerate()
        .map(|(i, source)| queue(notebook, source, i as f64))
        .collect();
    let mut ended = Vec::new();
    for (_, run) in &queued {
        ended.push(finished(&client, run, TIMEOUT).await);
    }

    let statuses: Vec<ExecutionStatus> = ended.iter().map(|e| e.status).collect();
    use ExecutionStatus::{Done, Error};
    assert_eq!(statuses, [Done, Done, Done, Done, Error]);
    let counts: Vec<Option<i64>> = ended.iter().map(|e| e.execution_count).collect();
    assert_eq!(counts, [Some(1), Some(2), Some(3), Some(4), Some(5)]);
    assert!(
        ended.iter().all(|e| e.lease_epoch == Some(1)),
        "stamped with the lease epoch"
    );
    let holder = notebook.runtimes();
    assert_eq!(
        holder.iter().map(|r| r.lease_epoch).collect::<Vec<_>>(),
        [Some(1)],
        "the runtime's entry says it holds the lease: {holder:?}"
    );
    assert_eq!(
        ended[4].message.as_deref(),
        Some("ZeroDivisionError: division by zero")
    );

    let cell = |i: usize| queued[i].0.as_str();
    assert_eq!(
        outputs(notebook, cell(0)),
        json!([{"name": "stdout", "output_type": "stream", "text": ["hello\n"]}])
    );
    let displays = outputs(notebook, cell(1));
    assert_eq!(displays[0]["data"]["text/html"], json!(["<b>bold</b>"]));
    assert_eq!(
        displays[1]["data"]["image/png"].as_str().map(str::trim),
        Some(png)
    );
    let result = outputs(notebook, cell(2));
    assert_eq!(result[0]["output_type"], "execute_result");
    assert_eq!(result[0]["data"]["text/plain"], json!(["42"]));
    assert_eq!(result[0]["execution_count"], 3);
    // update_display_data replaced the display in place.
    let updated = outputs(notebook, cell(3));
    assert_eq!(updated.as_array().unwrap().len(), 1, "{updated}");
    assert_eq!(updated[0]["data"]["text/plain"], json!(["'second'"]));
    let error = outputs(notebook, cell(4));
    assert_eq!(error[0]["ename"], "ZeroDivisionError");
    assert!(error[0]["traceback"].as_array().unwrap().len() > 1);

    // The runtime shows itself in the document.
    let runtimes = notebook.runtimes();
    assert_eq!(runtimes.len(), 1);
    assert_eq!(runtimes[0].name, "test-runtime");
    assert_eq!(runtimes[0].kernels, ["python3"]);
    assert_eq!(runtimes[0].kind, inloop_doc::RuntimeKind::Server);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cell_keeps_running_with_no_browser_and_a_late_client_sees_every_line() {
    let relay = TestRelay::start().await;
    let doc = "no-browser";
    let (_runtime, run) = {
        // The admin's client creates the document; the runtime joins it.
        let client = relay.peer(doc, Role::Admin).await;
        let runtime = runtime(&relay, doc, "test-runtime");
        let queued = queue(
            client.notebook(),
            "import time\nfor i in range(10):\n    print(f'line {i}', flush=True)\n    time.sleep(1)",
            0.0,
        );
        // Wait until the runtime has taken it, then leave: no other peer stays connected.
        started(&client, &queued.1).await;
        (runtime, queued.1)
    };
    // No peer but the runtime, until the relay has the run's last line (asked over HTTP,
    // which joins no one).
    inloop_testing::eventually("the relay to hold the last line", TIMEOUT, || async {
        let path = format!("/api/docs/{doc}/ipynb");
        let (status, ipynb) =
            inloop_testing::http_request(relay.addr, "GET", &path, Some(&relay.admin_token), b"")
                .await;
        status == 200 && ipynb.contains("line 9")
    })
    .await;
    assert_eq!(
        relay.metric("inloop_connections").await,
        1,
        "the runtime alone was connected"
    );

    let late = relay.peer(doc, Role::Read).await;
    let ended = finished(&late, &run, TIMEOUT).await;
    assert_eq!(ended.status, ExecutionStatus::Done);
    let cell = late.notebook().execution(&run).unwrap().cell_id;
    let text = outputs(late.notebook(), &cell)[0]["text"].clone();
    let lines: Vec<String> = (0..10).map(|i| format!("line {i}\n")).collect();
    assert_eq!(text, json!(lines));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn interrupt_restart_and_a_dying_kernel_through_the_document() {
    let relay = TestRelay::start().await;
    let doc = "control";
    let client = relay.peer(doc, Role::Admin).await;
    let _runtime = runtime(&relay, doc, "test-runtime");
    let notebook = client.notebook();

    // Interrupt: asked for through the entry, the sleep ends with KeyboardInterrupt.
    let (sleeping_cell, sleeping) = queue(
        notebook,
        "x = 1\nimport time\nprint('sleeping', flush=True)\ntime.sleep(100)",
        0.0,
    );
    started(&client, &sleeping).await;
    until("the cell to be in its sleep", TIMEOUT, || {
        outputs(notebook, &sleeping_cell)
            .to_string()
            .contains("sleeping")
    })
    .await;
    let asked = std::time::Instant::now();
    notebook.stop_execution(&sleeping, 1.0).unwrap();
    let ended = finished(&client, &sleeping, TIMEOUT).await;
    let took = asked.elapsed();
    // As in the browser (the execution state machine's rule): an error after a stop was asked
    // for is the interrupt, not a failure of the code. The server used to end it `error`.
    assert_eq!(ended.status, ExecutionStatus::Interrupted, "{ended:?}");
    assert_eq!(ended.message.as_deref(), Some("interrupted"));
    assert!(
        outputs(notebook, &sleeping_cell)
            .to_string()
            .contains("KeyboardInterrupt"),
        "the traceback is shown"
    );
    assert!(took < Duration::from_secs(2), "interrupted after {took:?}");

    // Restart while a cell runs: the run ends `interrupted` (it used to stay `running` for
    // good, and nothing queued after it ever ran), and the namespace is fresh. The requester's
    // clock is an hour ahead of the runtime's: the restart is answered once, stamped no earlier
    // than the request (it used to be stamped earlier, and so looked unanswered).
    let (_, cut_short) = queue(notebook, "import time\ntime.sleep(100)", 1.5);
    started(&client, &cut_short).await;
    let session = notebook.runtimes()[0].session_id.clone();
    let ahead = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs_f64()
        + 3600.0;
    notebook.request_restart(&session, ahead).unwrap();
    let ended = finished(&client, &cut_short, TIMEOUT).await;
    assert_eq!(ended.status, ExecutionStatus::Interrupted, "{ended:?}");
    assert_eq!(
        ended.message.as_deref(),
        Some("interrupted: the kernel was restarted")
    );
    until("the runtime to restart its kernel", TIMEOUT, || {
        notebook.runtimes()[0].restarted_at.is_some()
    })
    .await;
    let me = notebook.runtimes()[0].clone();
    assert!(!me.restart_pending(), "answered: {me:?}");
    assert_eq!(me.restarted_at, Some(ahead));
    let (_, lookup) = queue(notebook, "x", 3.0);
    let ended = finished(&client, &lookup, TIMEOUT).await;
    assert_eq!(ended.status, ExecutionStatus::Error);
    assert_eq!(
        ended.message.as_deref(),
        Some("NameError: name 'x' is not defined")
    );

    // A kernel that dies ends its entry `error`, saying how; the next one runs on a new kernel.
    let (_, dying) = queue(notebook, "import os\nos._exit(1)", 4.0);
    let (_, after) = queue(notebook, "import os\nos.getpid()", 5.0);
    let died = finished(&client, &dying, TIMEOUT).await;
    assert_eq!(died.status, ExecutionStatus::Error);
    let why = died.message.unwrap_or_default();
    assert!(why.starts_with("the kernel died (exit status: 1)"), "{why}");
    let next = finished(&client, &after, TIMEOUT).await;
    assert_eq!(next.status, ExecutionStatus::Done);
    assert_eq!(next.execution_count, Some(1), "a new kernel counts from 1");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_image_too_large_for_the_document_is_refused_with_an_error_and_the_run_goes_on() {
    let relay = TestRelay::with_config(|config| config.limits.max_document_bytes = 4 << 20).await;
    let doc = "large-outputs";
    let client = relay.peer(doc, Role::Admin).await;
    let _runtime = runtime(&relay, doc, "test-runtime");
    let notebook = client.notebook();

    // Random bytes, so the base64 does not compress: 0.75 MB and 6 MB of image/png.
    let image = |bytes: usize| {
        format!(
            "import os, base64\nfrom IPython.display import Image, display\n\
             display(Image(data=os.urandom({bytes}), format='png'))"
        )
    };
    let runs: Vec<(String, String)> = [
        image(750_000),
        image(6_000_000),
        "print('still here')".into(),
    ]
    .iter()
    .enumerate()
    .map(|(i, source)| queue(notebook, source, i as f64))
    .collect();
    let mut ended = Vec::new();
    for (_, run) in &runs {
        ended.push(finished(&client, run, TIMEOUT).await);
    }
    let statuses: Vec<ExecutionStatus> = ended.iter().map(|e| e.status).collect();
    assert_eq!(
        statuses,
        [ExecutionStatus::Done; 3],
        "the runtime stayed connected: {ended:?}"
    );

    let kept = outputs(notebook, &runs[0].0);
    assert_eq!(kept[0]["output_type"], "display_data", "{kept}");
    assert_eq!(
        kept[0]["data"]["image/png"].as_str().unwrap().len(),
        1_000_000
    );
    let refused = outputs(notebook, &runs[1].0);
    assert_eq!(refused[0]["ename"], "OutputTooLarge", "{refused}");
    let evalue = refused[0]["evalue"].as_str().unwrap();
    assert!(
        evalue.starts_with("a 8.0 MB image/png output was not kept")
            && evalue.contains("size limit of 4.2 MB"),
        "{evalue}"
    );
    assert_eq!(
        outputs(notebook, &runs[2].0),
        json!([{"output_type": "stream", "name": "stdout", "text": ["still here\n"]}])
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_runtime_forgotten_by_a_peer_registers_again_and_forgets_the_long_gone() {
    let relay = TestRelay::start().await;
    let doc = "forgotten";
    let client = relay.peer(doc, Role::Admin).await;
    let notebook = client.notebook().clone();
    // A browser tab closed long ago: its entry is left to be forgotten.
    let long_ago = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs_f64()
        - inloop_doc::FORGET_GONE_AFTER_S
        - 60.0;
    notebook.register_runtime(&inloop_doc::Runtime {
        session_id: "browser-closed".into(),
        kind: inloop_doc::RuntimeKind::Browser,
        name: "a closed tab".into(),
        kernels: vec!["python3".into()],
        gpu: None,
        container_image: None,
        status: inloop_doc::RuntimeStatus::Gone,
        heartbeat_at: long_ago,
        lease_epoch: None,
        restart_requested_at: None,
        restarted_at: None,
    });
    let _runtime = runtime(&relay, doc, "server");
    let servers = |notebook: &Notebook| {
        notebook
            .runtimes()
            .into_iter()
            .filter(|r| r.name == "server")
            .count()
    };
    until(
        "the runtime to register and forget the closed tab",
        Duration::from_secs(10),
        || servers(&notebook) == 1 && notebook.runtimes().len() == 1,
    )
    .await;

    // A peer forgets the runtime (it looked gone to it); its next heartbeat brings it back.
    let session = notebook.runtimes()[0].session_id.clone();
    notebook.remove_runtime(&session);
    until(
        "the runtime to register again",
        Duration::from_secs(10),
        || servers(&notebook) == 1,
    )
    .await;
    let back = &notebook.runtimes()[0];
    assert_eq!(back.session_id, session);
    assert!(
        back.lease_epoch.is_some(),
        "it still holds the lease: {back:?}"
    );
}
