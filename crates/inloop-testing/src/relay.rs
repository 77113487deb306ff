//! The real relay serving in the test's process, and peers connected to it.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use inloop_client::{Client, ClientOptions, Status};
use inloop_doc::{CellType, Notebook};
use inloop_relay::{Config, Limits, Relay};
use inloop_sync::Role;

use crate::http::http_request;

/// How long a peer may take to connect and sync.
const SYNC_TIMEOUT: Duration = Duration::from_secs(10);

/// A relay serving on 127.0.0.1 (port 0: any free one) with SQLite in a temporary folder,
/// stopped when dropped.
#[derive(Debug)]
pub struct TestRelay {
    pub addr: SocketAddr,
    pub admin_token: String,
    pub state: inloop_relay::AppState,
    data: tempfile::TempDir,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<()>>,
}

impl TestRelay {
    pub async fn start() -> Self {
        Self::with_config(|_| {}).await
    }

    pub async fn with_limits(limits: Limits) -> Self {
        Self::with_config(|config| config.limits = limits).await
    }

    /// A relay whose config `adjust` changes first (address and data folder are set).
    pub async fn with_config(adjust: impl FnOnce(&mut Config)) -> Self {
        let data = tempfile::tempdir().expect("temporary folder");
        Self::serving(data, SocketAddr::from(([127, 0, 0, 1], 0)), adjust).await
    }

    /// A relay started again on the address and data folder of one that was stopped
    /// ([`TestRelay::stop`] hands the folder back).
    pub async fn resume(addr: SocketAddr, data: tempfile::TempDir) -> Self {
        Self::serving(data, addr, |_| {}).await
    }

    /// [`TestRelay::resume`] with its config changed by `adjust`.
    pub async fn resume_with(
        addr: SocketAddr,
        data: tempfile::TempDir,
        adjust: impl FnOnce(&mut Config),
    ) -> Self {
        Self::serving(data, addr, adjust).await
    }

    /// [`TestRelay::resume`] with these limits.
    pub async fn resume_with_limits(
        addr: SocketAddr,
        data: tempfile::TempDir,
        limits: Limits,
    ) -> Self {
        Self::serving(data, addr, |config| config.limits = limits).await
    }

    async fn serving(
        data: tempfile::TempDir,
        addr: SocketAddr,
        adjust: impl FnOnce(&mut Config),
    ) -> Self {
        let mut config = Config::new(data.path());
        config.addr = addr;
        adjust(&mut config);
        let relay = Relay::start(config).await.expect("relay starts");
        Self::run(relay, data)
    }

    /// A relay serving over `store` instead of SQLite (tests' stores that fail on purpose).
    pub async fn over_store(store: Box<dyn inloop_relay::store::Store>) -> Self {
        let data = tempfile::tempdir().expect("temporary folder");
        let mut config = Config::new(data.path());
        config.addr = SocketAddr::from(([127, 0, 0, 1], 0));
        let relay = Relay::start_with_store(config, store)
            .await
            .expect("relay starts");
        Self::run(relay, data)
    }

    /// Serves `relay` in a task until the returned handle is stopped or dropped.
    fn run(relay: Relay, data: tempfile::TempDir) -> Self {
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let addr = relay.addr();
        let admin_token = relay.admin_token().to_owned();
        let state = relay.state().clone();
        let task = tokio::spawn(async move {
            relay
                .run_until(async {
                    let _ = stopped.await;
                })
                .await
                .expect("relay serves");
        });
        Self {
            addr,
            admin_token,
            state,
            data,
            stop: Some(stop),
            task: Some(task),
        }
    }

    /// The WebSocket URL of document `doc_id` with `token`.
    pub fn ws_url(&self, doc_id: &str, token: &str) -> String {
        ws_url(self.addr, doc_id, token)
    }

    /// A new blank document's id.
    pub async fn create_doc(&self) -> String {
        let (status, body) =
            http_request(self.addr, "POST", "/api/docs", Some(&self.admin_token), b"").await;
        assert_eq!(status, 201, "{body}");
        let created: serde_json::Value = serde_json::from_str(&body).unwrap();
        created["id"].as_str().unwrap().to_owned()
    }

    /// A value from `GET /metrics` (a counter or gauge, e.g. `inloop_updates_in_total`).
    pub async fn metric(&self, name: &str) -> u64 {
        let (_, metrics) = http_request(self.addr, "GET", "/metrics", None, b"").await;
        metrics
            .lines()
            .find_map(|line| line.strip_prefix(&format!("{name} ")))
            .and_then(|value| value.parse().ok())
            .unwrap_or_else(|| panic!("{name} in\n{metrics}"))
    }

    /// A token for `doc_id` with `role`, valid for an hour.
    pub fn token(&self, doc_id: &str, role: Role) -> String {
        self.state.mint(
            Some(doc_id),
            role,
            Duration::from_secs(3600),
            Some(role.as_str()),
        )
    }

    /// A peer of `doc_id` with `role`, synced (an admin opening a new id creates the document);
    /// panics with the relay's refusal otherwise.
    pub async fn peer(&self, doc_id: &str, role: Role) -> Client {
        let url = self.ws_url(doc_id, &self.token(doc_id, role));
        connect(&url)
            .await
            .unwrap_or_else(|refusal| panic!("a {role} peer of {doc_id}: {refusal}"))
    }

    /// Waits until `watcher` has received everything the relay forwarded to it before this
    /// call: a new peer appends a markdown cell with a text of its own, and `watcher` receives
    /// it (the relay delivers a document's updates to each peer in the order it took them). A
    /// refused or dropped update that would have reached `watcher` has reached it by then.
    /// Returns the marker's text.
    pub async fn barrier(&self, doc_id: &str, watcher: &Client) -> String {
        static MARKERS: AtomicU64 = AtomicU64::new(0);
        let marker = format!("barrier {}", MARKERS.fetch_add(1, Ordering::Relaxed));
        let writer = connect(&self.ws_url(doc_id, &self.admin_token))
            .await
            .expect("the barrier's peer connects");
        let end = writer.notebook().cell_count();
        writer
            .notebook()
            .insert_cell(end, CellType::Markdown, &marker)
            .unwrap();
        crate::until(
            &format!("{marker} to reach the watcher"),
            SYNC_TIMEOUT,
            || sources(watcher).contains(&marker),
        )
        .await;
        marker
    }

    /// What the relay has stored and `watcher` has received now, for
    /// [`TestRelay::assert_nothing_since`].
    pub async fn checkpoint(&self, watcher: &Client) -> Checkpoint {
        Checkpoint {
            stored: self.metric("inloop_updates_in_total").await,
            received: sources(watcher),
        }
    }

    /// Asserts that a refused update (the sender's connection closed already, so the relay has
    /// judged it) did nothing since `checkpoint`: the relay stored no update
    /// (`inloop_updates_in_total`), and [`TestRelay::barrier`] reaches `watcher` with nothing
    /// before it.
    pub async fn assert_nothing_since(
        &self,
        checkpoint: Checkpoint,
        doc_id: &str,
        watcher: &Client,
        what: &str,
    ) {
        assert_eq!(
            self.metric("inloop_updates_in_total").await,
            checkpoint.stored,
            "{what}: the relay stored nothing"
        );
        let marker = self.barrier(doc_id, watcher).await;
        let mut expected = checkpoint.received;
        expected.push(marker);
        assert_eq!(
            sources(watcher),
            expected,
            "{what}: nothing reached the watcher"
        );
    }

    /// Stops serving, waits for the relay to close every connection, and hands back the data
    /// folder (deleted when dropped), for [`TestRelay::resume`].
    pub async fn stop(mut self) -> tempfile::TempDir {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(task) = self.task.take() {
            let _ = task.await;
        }
        let empty = tempfile::tempdir().expect("temporary folder");
        std::mem::replace(&mut self.data, empty)
    }
}

impl Drop for TestRelay {
    fn drop(&mut self) {
        if let Some(task) = &self.task {
            task.abort();
        }
    }
}

/// What the relay had stored and a watcher had received ([`TestRelay::checkpoint`]).
#[derive(Debug)]
pub struct Checkpoint {
    stored: u64,
    received: Vec<String>,
}

/// The WebSocket URL of document `doc_id` on the relay at `addr`, with `token`.
pub fn ws_url(addr: SocketAddr, doc_id: &str, token: &str) -> String {
    format!("ws://{addr}/api/docs/{doc_id}/ws?token={token}")
}

/// Connects a fresh notebook and waits until it is synced; the relay's refusal otherwise, as
/// "CODE: reason".
pub async fn connect(url: &str) -> Result<Client, String> {
    connect_with(url, Notebook::new(), ClientOptions::new()).await
}

/// [`connect`] with this notebook and these options.
pub async fn connect_with(
    url: &str,
    notebook: Notebook,
    options: ClientOptions,
) -> Result<Client, String> {
    let client = Client::connect(url, notebook, options);
    match client.wait_synced(SYNC_TIMEOUT).await {
        Ok(()) => Ok(client),
        Err(error) => Err(match client.status() {
            Status::Closed { code, reason } => {
                format!(
                    "{}: {reason}",
                    code.map_or("no code".into(), |c| c.to_string())
                )
            }
            other => format!("{error} ({other:?})"),
        }),
    }
}

/// The source of the client's cell at `index`.
pub fn source(client: &Client, index: usize) -> String {
    let notebook = client.notebook();
    notebook.source(&notebook.cell_ids()[index]).unwrap()
}

/// The sources of the client's cells, in order.
pub fn sources(client: &Client) -> Vec<String> {
    let notebook = client.notebook();
    let ids = notebook.cell_ids();
    ids.iter().map(|id| notebook.source(id).unwrap()).collect()
}

/// Waits until the relay ends the client's connection: its close code and reason.
pub async fn ended(client: &Client) -> (Option<u16>, String) {
    let mut status = client.watch_status();
    let ended = status.wait_for(|s| matches!(s, Status::Offline { .. } | Status::Closed { .. }));
    let ended = tokio::time::timeout(SYNC_TIMEOUT, ended)
        .await
        .expect("the relay ended the connection within 10 s")
        .expect("the client is alive")
        .clone();
    match ended {
        Status::Offline { code, reason } | Status::Closed { code, reason } => (code, reason),
        _ => unreachable!("waited for an end"),
    }
}
