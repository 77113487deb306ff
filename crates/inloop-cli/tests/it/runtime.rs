//! Runtimes as real processes: two competing for one document, and a relay restarted under one.

use std::net::SocketAddr;
use std::time::Duration;

use inloop_doc::{CellType, ExecutionStatus, ExecutionTarget, Notebook};
use inloop_sync::Role;

use crate::{RuntimeProcess, Serve, peer, token, until};

const TIMEOUT: Duration = Duration::from_secs(60);

/// Seconds since the Unix epoch, as the document stores times.
fn now() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs_f64()
}

fn queue(notebook: &Notebook, source: &str, at: f64) -> String {
    let cell = notebook
        .insert_cell(notebook.cell_count(), CellType::Code, source)
        .unwrap();
    notebook
        .request_execution(&cell, &ExecutionTarget::Server, "test", at)
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_the_lease_holder_runs_and_a_standby_finishes_the_queue_after_kill_9() {
    let data = tempfile::tempdir().unwrap();
    // A time to live below `inloop runtime`'s default heartbeat (every 3 s): the runtime must
    // heartbeat within the lifetime the relay grants (`Granted { ttl_ms }`), or the holder
    // loses the lease between heartbeats and the standby runs the queue beside it (it did,
    // until the runtime followed the grant). The kill -9 below is taken over after the grace
    // period.
    let relay = Serve::start_with(
        data.path(),
        SocketAddr::from(([127, 0, 0, 1], 0)),
        &[
            "--no-runtime",
            "--lease-ttl-secs",
            "2",
            "--lease-grace-secs",
            "1",
        ],
    );
    let doc = "two-runtimes";
    let client = peer(relay.addr, doc, Role::Admin).await;
    let notebook = client.notebook().clone();
    let first = RuntimeProcess::start(relay.addr, doc, &token(Role::Runtime), "first");
    until("the first runtime registers", TIMEOUT, || {
        notebook.runtimes().len() == 1
    })
    .await;
    let second = RuntimeProcess::start(relay.addr, doc, &token(Role::Runtime), "second");
    until("the second runtime registers", TIMEOUT, || {
        notebook.runtimes().len() == 2
    })
    .await;

    // A slow cell, then three quick ones that print which process ran them.
    let slow = queue(&notebook, "import time\ntime.sleep(30)", 0.0);
    let quick: Vec<String> = (0..3)
        .map(|i| queue(&notebook, "import os\nprint(os.getpid())", 1.0 + i as f64))
        .collect();
    until("the slow cell runs", TIMEOUT, || {
        notebook.execution(&slow).unwrap().status == ExecutionStatus::Running
    })
    .await;
    let started = notebook.execution(&slow).unwrap();
    let holder = started.runtime.clone().unwrap();
    let holder_name = notebook
        .runtimes()
        .into_iter()
        .find(|r| r.session_id == holder)
        .unwrap()
        .name;
    // The standby has been through its loop (which looks for work) since the quick cells
    // reached it: it wrote a heartbeat stamped after that.
    let standby_name = if holder_name == "first" {
        "second"
    } else {
        "first"
    };
    let queued_seen = now() + 0.5;
    until("a heartbeat of the standby written since", TIMEOUT, || {
        notebook
            .runtimes()
            .iter()
            .any(|r| r.name == standby_name && r.heartbeat_at > queued_seen)
    })
    .await;
    assert!(
        quick
            .iter()
            .all(|id| notebook.execution(id).unwrap().status == ExecutionStatus::Queued),
        "the standby runs nothing while the holder works: {:?}",
        quick
            .iter()
            .map(|id| notebook.execution(id).unwrap())
            .collect::<Vec<_>>()
    );

    // kill -9 of the holder mid-cell.
    match holder_name.as_str() {
        "first" => first.kill(),
        _ => second.kill(),
    }
    until("the orphaned cell is interrupted", TIMEOUT, || {
        notebook.execution(&slow).unwrap().status == ExecutionStatus::Interrupted
    })
    .await;
    let orphan = notebook.execution(&slow).unwrap();
    assert!(orphan.message.unwrap().contains("went away"));
    for id in &quick {
        until("the standby runs the rest of the queue", TIMEOUT, || {
            notebook.execution(id).unwrap().status == ExecutionStatus::Done
        })
        .await;
    }
    let standby = notebook.execution(&quick[0]).unwrap();
    assert_ne!(standby.runtime.as_deref(), Some(holder.as_str()));
    assert!(
        standby.lease_epoch > orphan.lease_epoch.map(|e| e - 1),
        "a newer epoch"
    );
    // Each entry ran once: counts 1, 2, 3 on the standby's kernel.
    let counts: Vec<Option<i64>> = quick
        .iter()
        .map(|id| notebook.execution(id).unwrap().execution_count)
        .collect();
    assert_eq!(counts, [Some(1), Some(2), Some(3)]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_relay_restarted_mid_execution_loses_no_output() {
    let data = tempfile::tempdir().unwrap();
    let mut relay = Serve::start(data.path(), SocketAddr::from(([127, 0, 0, 1], 0)));
    let addr = relay.addr;
    let doc = "relay-restart";
    let client = peer(addr, doc, Role::Admin).await;
    let notebook = client.notebook().clone();
    let _runtime = RuntimeProcess::start(addr, doc, &token(Role::Runtime), "runtime");
    until("the runtime registers", TIMEOUT, || {
        notebook.runtimes().len() == 1
    })
    .await;

    let run = queue(
        &notebook,
        "import time\nfor i in range(6):\n    print(f'line {i}', flush=True)\n    time.sleep(0.5)",
        0.0,
    );
    until("the cell runs", TIMEOUT, || {
        notebook.execution(&run).unwrap().status == ExecutionStatus::Running
    })
    .await;
    let printed = |notebook: &Notebook| {
        let cell = notebook.execution(&run).unwrap().cell_id;
        match &notebook.cell(&cell).unwrap().outputs[..] {
            [inloop_doc::Output::Stream { text, .. }] => text.clone(),
            _ => String::new(),
        }
    };
    until("the first lines reach the client", TIMEOUT, || {
        printed(&notebook).contains("line 1")
    })
    .await;
    relay.kill();
    // Down while the cell prints on (a line every 0.5 s): until the client has failed to
    // reconnect three times (backoffs of 0.1, 0.2 and 0.4 s).
    let attempts = client.connection_attempts();
    until("three failed attempts to reconnect", TIMEOUT, || {
        client.connection_attempts() >= attempts + 3
    })
    .await;
    relay = Serve::start(data.path(), addr);

    until(
        "the run ends and its end reaches the client",
        TIMEOUT,
        || notebook.execution(&run).unwrap().status == ExecutionStatus::Done,
    )
    .await;
    let cell = notebook.execution(&run).unwrap().cell_id;
    let outputs = notebook.cell(&cell).unwrap().outputs;
    let text = match &outputs[..] {
        [inloop_doc::Output::Stream { text, .. }] => text.clone(),
        other => panic!("one stream output, got {other:?}"),
    };
    let expected: String = (0..6).map(|i| format!("line {i}\n")).collect();
    assert_eq!(text, expected);
    drop(relay);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_starts_a_local_runtime_for_the_first_server_run_and_it_stops_when_idle() {
    let data = tempfile::tempdir().unwrap();
    let venv = crate::venv().to_string_lossy().into_owned();
    let relay = Serve::start_with(
        data.path(),
        SocketAddr::from(([127, 0, 0, 1], 0)),
        &["--runtime-kernel-prefix", &venv, "--runtime-idle-secs", "3"],
    );
    let client = peer(relay.addr, "local", Role::Admin).await;
    let notebook = client.notebook().clone();
    assert!(notebook.runtimes().is_empty());

    let run = queue(&notebook, "6 * 7", 0.0);
    until("a local runtime runs it", TIMEOUT, || {
        notebook.execution(&run).unwrap().status == ExecutionStatus::Done
    })
    .await;
    let runtimes = notebook.runtimes();
    assert_eq!(runtimes.len(), 1);
    assert_eq!(runtimes[0].name, "local runtime");

    until("the idle runtime stops", TIMEOUT, || {
        notebook.runtimes()[0].status == inloop_doc::RuntimeStatus::Gone
    })
    .await;
    // A new run starts a runtime again.
    let again = queue(&notebook, "1 + 1", 1.0);
    until("a new local runtime runs it", TIMEOUT, || {
        notebook.execution(&again).unwrap().status == ExecutionStatus::Done
    })
    .await;
}
