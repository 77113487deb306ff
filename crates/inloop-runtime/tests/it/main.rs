//! The runtime against a real relay (in this process, SQLite in a temporary folder) and a real
//! ipykernel from the repository's venv; the harness is `inloop-testing`'s.

mod execution;

use std::time::Duration;

use inloop_client::Client;
use inloop_doc::{Execution, ExecutionStatus};
use inloop_runtime::agent::{self, Config};
use inloop_sync::Role;
pub(crate) use inloop_testing::{TestRelay, until, until_ok};

/// Starts a runtime on `doc` with the venv's ipykernel; it stops when the returned sender is
/// dropped or fired.
pub(crate) fn runtime(
    relay: &TestRelay,
    doc: &str,
    name: &str,
) -> tokio::sync::oneshot::Sender<()> {
    let config = Config {
        relay: format!("ws://{}", relay.addr),
        doc_id: doc.into(),
        token: relay.token(doc, Role::Runtime),
        kernel: "python3".into(),
        name: name.into(),
        kernel_search: inloop_testing::kernel::search_path(),
        stream_limit: Some(1 << 20),
        heartbeat: Duration::from_millis(500),
        idle_exit: None,
        container: None,
    };
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(async move {
        agent::run(config, async {
            let _ = stopped.await;
        })
        .await
        .expect("the runtime runs");
    });
    stop
}

/// Waits until `done` holds for the entry; panics after `timeout` with `what` and the entry.
async fn wait_for_entry(
    client: &Client,
    id: &str,
    timeout: Duration,
    what: &str,
    done: impl Fn(&Execution) -> bool,
) -> Execution {
    until_ok(
        &format!("execution {id} {what}"),
        timeout,
        || match client.notebook().execution(id) {
            Ok(execution) if done(&execution) => Ok(execution),
            other => Err(format!("{other:?}")),
        },
    )
    .await
}

/// Waits until the entry has ended.
pub(crate) async fn finished(client: &Client, id: &str, timeout: Duration) -> Execution {
    wait_for_entry(client, id, timeout, "to finish", |e| {
        !matches!(e.status, ExecutionStatus::Queued | ExecutionStatus::Running)
    })
    .await
}

/// Waits until a runtime has taken the entry.
pub(crate) async fn started(client: &Client, id: &str) -> Execution {
    wait_for_entry(client, id, Duration::from_secs(60), "to be taken", |e| {
        e.status == ExecutionStatus::Running
    })
    .await
}
