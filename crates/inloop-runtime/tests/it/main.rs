//! The runtime against a real relay (in this process, SQLite in a temporary folder) and a real
//! ipykernel from the repository's venv.

mod execution;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use inloop_client::{Client, ClientOptions};
use inloop_doc::{Execution, ExecutionStatus, Notebook};
use inloop_kernel::SearchPath;
use inloop_relay::{Config as RelayConfig, Relay};
use inloop_runtime::agent::{self, Config};
use inloop_sync::Role;

/// A relay serving in this process.
pub(crate) struct TestRelay {
    pub(crate) addr: SocketAddr,
    pub(crate) state: inloop_relay::AppState,
    _data: tempfile::TempDir,
}

impl TestRelay {
    pub(crate) async fn start() -> Self {
        Self::with_limits(|_| {}).await
    }

    /// A relay whose limits `adjust` changes first.
    pub(crate) async fn with_limits(adjust: impl FnOnce(&mut inloop_relay::Limits)) -> Self {
        let data = tempfile::tempdir().unwrap();
        let mut config = RelayConfig::new(data.path());
        config.addr = SocketAddr::from(([127, 0, 0, 1], 0));
        adjust(&mut config.limits);
        let relay = Relay::start(config).await.unwrap();
        let addr = relay.addr();
        let state = relay.state().clone();
        tokio::spawn(relay.run_until(std::future::pending()));
        Self {
            addr,
            state,
            _data: data,
        }
    }

    pub(crate) fn token(&self, doc: &str, role: Role) -> String {
        self.state.mint(
            Some(doc),
            role,
            Duration::from_secs(3600),
            Some(role.as_str()),
        )
    }

    /// A synced client on `doc` (an admin opening a new id creates it).
    pub(crate) async fn client(&self, doc: &str, role: Role) -> Client {
        let url = format!(
            "ws://{}/api/docs/{doc}/ws?token={}",
            self.addr,
            self.token(doc, role)
        );
        let client = Client::connect(&url, Notebook::new(), ClientOptions::new());
        client.wait_synced(Duration::from_secs(10)).await.unwrap();
        client
    }

    /// Starts a runtime on `doc`; it stops when the returned sender is dropped or fired.
    pub(crate) fn runtime(&self, doc: &str, name: &str) -> tokio::sync::oneshot::Sender<()> {
        let venv = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../.venv");
        assert!(
            venv.join("bin/python").exists(),
            "no venv at {}: run scripts/setup.sh to create it with ipykernel",
            venv.display()
        );
        let config = Config {
            relay: format!("ws://{}", self.addr),
            doc_id: doc.into(),
            token: self.token(doc, Role::Runtime),
            kernel: "python3".into(),
            name: name.into(),
            kernel_search: SearchPath::from_env([venv]),
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
}

/// Waits until `done` holds for the entry; panics after `timeout` with `what`.
async fn wait_for_entry(
    client: &Client,
    id: &str,
    timeout: Duration,
    what: &str,
    done: impl Fn(&Execution) -> bool,
) -> Execution {
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        if let Ok(execution) = client.notebook().execution(id) {
            if done(&execution) {
                return execution;
            }
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "execution {id} {what} within {timeout:?}: {:?}",
            client.notebook().execution(id)
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Waits until the entry has ended.
pub(crate) async fn finished(client: &Client, id: &str, timeout: Duration) -> Execution {
    wait_for_entry(client, id, timeout, "did not finish", |e| {
        !matches!(e.status, ExecutionStatus::Queued | ExecutionStatus::Running)
    })
    .await
}

/// Waits until a runtime has taken the entry.
pub(crate) async fn started(client: &Client, id: &str) -> Execution {
    wait_for_entry(client, id, Duration::from_secs(60), "was not taken", |e| {
        e.status == ExecutionStatus::Running
    })
    .await
}
