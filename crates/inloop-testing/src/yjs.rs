//! A stock Yjs client (npm `yjs` + `y-websocket`'s `WebsocketProvider`, nothing of ours) in a
//! Node child process, driven by JSON lines: `tests/node/yjs_peer.mjs`, whose header lists the
//! commands and events.

use std::net::SocketAddr;
use std::process::Stdio;
use std::time::Duration;

use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::process::{Child, ChildStdin, Command};
use tokio::sync::mpsc;

/// How long the Yjs peer has to report what a test waits for.
const TIMEOUT: Duration = Duration::from_secs(15);

/// A stock Yjs client joined to a document of the relay; killed when dropped.
#[derive(Debug)]
pub struct YjsPeer {
    child: Child,
    stdin: ChildStdin,
    events: mpsc::UnboundedReceiver<Value>,
    /// The latest awareness event seen, whichever wait read it.
    awareness: Option<Value>,
}

impl YjsPeer {
    /// Joins document `doc_id` of the relay at `addr` with `token`, as `name`.
    pub fn spawn(addr: SocketAddr, doc_id: &str, token: &str, name: &str) -> Self {
        let root = crate::repo_root();
        let mut child = Command::new("node")
            .arg(root.join("tests/node/yjs_peer.mjs"))
            .args(["--server", &format!("ws://{addr}/api/docs")])
            .args(["--room", &format!("{doc_id}/ws")])
            .args(["--token", token, "--name", name])
            .current_dir(&root)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .expect("node runs (scripts/setup.sh installs the npm packages)");
        let stdin = child.stdin.take().unwrap();
        let stdout = child.stdout.take().unwrap();
        let (tx, events) = mpsc::unbounded_channel();
        tokio::spawn(async move {
            let mut lines = BufReader::new(stdout).lines();
            while let Ok(Some(line)) = lines.next_line().await {
                if let Ok(event) = serde_json::from_str::<Value>(&line) {
                    let _ = tx.send(event);
                }
            }
        });
        Self {
            child,
            stdin,
            events,
            awareness: None,
        }
    }

    /// Sends one command (`{"cmd": ...}`).
    pub async fn send(&mut self, command: Value) {
        let line = format!("{command}\n");
        self.stdin.write_all(line.as_bytes()).await.unwrap();
        self.stdin.flush().await.unwrap();
    }

    /// The next event for which `wanted` holds (others are skipped); panics naming `what` if
    /// none comes within 15 s.
    pub async fn wait_for(&mut self, what: &str, mut wanted: impl FnMut(&Value) -> bool) -> Value {
        let deadline = tokio::time::Instant::now() + TIMEOUT;
        loop {
            let event = tokio::time::timeout_at(deadline, self.events.recv())
                .await
                .unwrap_or_else(|_| panic!("the Yjs peer did not report {what} within {TIMEOUT:?}"))
                .expect("the Yjs peer is running");
            if event["event"] == "awareness" {
                self.awareness = Some(event.clone());
            }
            if wanted(&event) {
                return event;
            }
        }
    }

    /// Waits until the awareness states the Yjs peer sees satisfy `wanted`.
    pub async fn wait_for_awareness(&mut self, what: &str, mut wanted: impl FnMut(&Value) -> bool) {
        if self
            .awareness
            .as_ref()
            .is_some_and(|a| wanted(&a["states"]))
        {
            return;
        }
        self.wait_for(what, |e| e["event"] == "awareness" && wanted(&e["states"]))
            .await;
    }

    /// The document as the Yjs peer sees it: its cells' sources and the awareness states.
    pub async fn state(&mut self) -> Value {
        self.send(json!({"cmd": "state"})).await;
        self.wait_for("its state", |e| e["event"] == "state").await
    }

    /// Asks for the state until `wanted` holds for it, which it returns; panics naming `what`
    /// (and the last state) after 15 s.
    pub async fn wait_for_state(
        &mut self,
        what: &str,
        mut wanted: impl FnMut(&Value) -> bool,
    ) -> Value {
        let deadline = tokio::time::Instant::now() + TIMEOUT;
        loop {
            let state = self.state().await;
            if wanted(&state) {
                return state;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "the Yjs peer's state did not show {what} within {TIMEOUT:?}: {state}"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Asks the peer to quit, and waits (5 s at most) for it to exit.
    pub async fn quit(mut self) {
        self.send(json!({"cmd": "quit"})).await;
        let _ = tokio::time::timeout(Duration::from_secs(5), self.child.wait()).await;
    }
}
