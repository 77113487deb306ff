//! Integration tests of the relay: the real server on 127.0.0.1:0 with SQLite in a temporary
//! folder, real WebSocket clients (ours, and a stock Yjs one under Node).

mod auth;
mod bad_input;
mod hardening;
mod http;
mod lease;
mod node;
mod presence;
mod storage;
mod sync;
mod tokens;

use std::future::Future;
use std::net::SocketAddr;
use std::time::Duration;

use inloop_relay::{Config, Limits, Relay};
use inloop_sync::Role;

pub(crate) use inloop_client::{Client, ClientOptions, Status};
use inloop_doc::Notebook;

/// A relay serving in this process, stopped when dropped.
#[derive(Debug)]
pub(crate) struct TestRelay {
    pub(crate) addr: SocketAddr,
    pub(crate) admin_token: String,
    pub(crate) state: inloop_relay::AppState,
    data: tempfile::TempDir,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<()>>,
}

impl TestRelay {
    pub(crate) async fn start() -> Self {
        Self::with_limits(Limits::default()).await
    }

    pub(crate) async fn with_limits(limits: Limits) -> Self {
        Self::with_config(|config| config.limits = limits).await
    }

    /// A relay whose config `adjust` changes first (address and data folder are set).
    pub(crate) async fn with_config(adjust: impl FnOnce(&mut Config)) -> Self {
        let data = tempfile::tempdir().expect("temporary folder");
        Self::serving(data, SocketAddr::from(([127, 0, 0, 1], 0)), adjust).await
    }

    /// A relay started again on the address and data folder of one that was stopped.
    pub(crate) async fn resume(addr: SocketAddr, data: tempfile::TempDir) -> Self {
        Self::serving(data, addr, |_| {}).await
    }

    /// [`TestRelay::resume`] with its config changed by `adjust`.
    pub(crate) async fn resume_with(
        addr: SocketAddr,
        data: tempfile::TempDir,
        adjust: impl FnOnce(&mut Config),
    ) -> Self {
        Self::serving(data, addr, adjust).await
    }

    /// [`TestRelay::resume`] with these limits.
    pub(crate) async fn resume_with_limits(
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
    pub(crate) async fn over_store(store: Box<dyn inloop_relay::store::Store>) -> Self {
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

    pub(crate) fn ws_url(&self, doc_id: &str, token: &str) -> String {
        format!("ws://{}/api/docs/{doc_id}/ws?token={token}", self.addr)
    }

    /// A new blank document's id.
    pub(crate) async fn create_doc(&self) -> String {
        let (status, body) =
            http_request(self.addr, "POST", "/api/docs", Some(&self.admin_token), b"").await;
        assert_eq!(status, 201, "{body}");
        let created: serde_json::Value = serde_json::from_str(&body).unwrap();
        created["id"].as_str().unwrap().to_owned()
    }

    /// A value from `GET /metrics`.
    pub(crate) async fn metric(&self, name: &str) -> u64 {
        let (_, metrics) = http_request(self.addr, "GET", "/metrics", None, b"").await;
        metrics
            .lines()
            .find_map(|line| line.strip_prefix(&format!("{name} ")))
            .and_then(|value| value.parse().ok())
            .unwrap_or_else(|| panic!("{name} in\n{metrics}"))
    }

    pub(crate) fn token(&self, doc_id: &str, role: Role) -> String {
        self.state.mint(
            Some(doc_id),
            role,
            Duration::from_secs(3600),
            Some(role.as_str()),
        )
    }

    /// Stops serving, waits for the relay to close every connection, and hands back the data
    /// folder (deleted when dropped).
    pub(crate) async fn stop(mut self) -> tempfile::TempDir {
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

/// Connects a fresh notebook and waits until it is synced; the relay's refusal otherwise, as
/// "CODE: reason".
pub(crate) async fn connect(url: &str) -> Result<Client, String> {
    connect_with(url, Notebook::new(), ClientOptions::new()).await
}

pub(crate) async fn connect_with(
    url: &str,
    notebook: Notebook,
    options: ClientOptions,
) -> Result<Client, String> {
    let client = Client::connect(url, notebook, options);
    match client.wait_synced(Duration::from_secs(10)).await {
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
pub(crate) fn source(client: &Client, index: usize) -> String {
    let notebook = client.notebook();
    notebook.source(&notebook.cell_ids()[index]).unwrap()
}

/// Waits until the relay ends the client's connection: its close code and reason.
pub(crate) async fn ended(client: &Client) -> (Option<u16>, String) {
    let mut status = client.watch_status();
    let ended = status.wait_for(|s| matches!(s, Status::Offline { .. } | Status::Closed { .. }));
    let ended = tokio::time::timeout(Duration::from_secs(10), ended)
        .await
        .expect("the relay ended the connection within 10 s")
        .expect("the client is alive")
        .clone();
    match ended {
        Status::Offline { code, reason } | Status::Closed { code, reason } => (code, reason),
        _ => unreachable!("waited for an end"),
    }
}

/// A minimal HTTP/1.1 request (tests need no HTTP client crate): the status and the body.
pub(crate) async fn http_request(
    addr: SocketAddr,
    method: &str,
    path: &str,
    token: Option<&str>,
    body: &[u8],
) -> (u16, String) {
    let (status, _, body) = http_exchange(addr, method, path, token, body).await;
    (status, body)
}

/// [`http_request`], with the response's header block too.
pub(crate) async fn http_exchange(
    addr: SocketAddr,
    method: &str,
    path: &str,
    token: Option<&str>,
    body: &[u8],
) -> (u16, String, String) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream = tokio::net::TcpStream::connect(addr).await.expect("connect");
    let auth = token.map_or(String::new(), |t| format!("Authorization: Bearer {t}\r\n"));
    let head = format!(
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\n{auth}Content-Length: {}\r\nContent-Type: application/json\r\nConnection: close\r\n\r\n",
        body.len()
    );
    stream.write_all(head.as_bytes()).await.unwrap();
    stream.write_all(body).await.unwrap();
    let mut response = Vec::new();
    stream.read_to_end(&mut response).await.unwrap();
    let response = String::from_utf8_lossy(&response).into_owned();
    let status = response
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let (head, body) = response.split_once("\r\n\r\n").unwrap_or((&response, ""));
    (status, head.to_lowercase(), dechunk(body))
}

/// Bodies of unknown length come chunked; tests only need the text.
fn dechunk(body: &str) -> String {
    let mut out = String::new();
    let mut rest = body;
    loop {
        let Some((size, after)) = rest.split_once("\r\n") else {
            return body.to_owned();
        };
        let Ok(size) = usize::from_str_radix(size.trim(), 16) else {
            return body.to_owned();
        };
        if size == 0 {
            return out;
        }
        if after.len() < size {
            return body.to_owned();
        }
        out.push_str(&after[..size]);
        rest = after[size..].trim_start_matches("\r\n");
    }
}

/// Polls `condition` every 10 ms until it holds, or panics after `timeout` with `what`.
pub(crate) async fn eventually<F, Fut>(timeout: Duration, what: &str, mut condition: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        if condition().await {
            return;
        }
        if tokio::time::Instant::now() > deadline {
            panic!("timed out after {timeout:?} waiting for: {what}");
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}
