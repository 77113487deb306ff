//! A stock Yjs client (npm `yjs` + `y-websocket`) in a Node child process, driven by JSON lines:
//! `tests/node/yjs_peer.mjs`.

use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::process::{Child, ChildStdin, Command};
use tokio::sync::mpsc;

#[derive(Debug)]
pub(crate) struct NodePeer {
    child: Child,
    stdin: ChildStdin,
    events: mpsc::UnboundedReceiver<Value>,
    /// The latest awareness event seen, whichever wait read it.
    awareness: Option<Value>,
}

impl NodePeer {
    pub(crate) fn spawn(addr: std::net::SocketAddr, doc_id: &str, token: &str, name: &str) -> Self {
        let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..");
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

    pub(crate) async fn send(&mut self, command: Value) {
        let line = format!("{command}\n");
        self.stdin.write_all(line.as_bytes()).await.unwrap();
        self.stdin.flush().await.unwrap();
    }

    /// The next event for which `wanted` holds (others are skipped).
    pub(crate) async fn wait_for(
        &mut self,
        what: &str,
        mut wanted: impl FnMut(&Value) -> bool,
    ) -> Value {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
        loop {
            let event = tokio::time::timeout_at(deadline, self.events.recv())
                .await
                .unwrap_or_else(|_| panic!("the Yjs peer did not report {what} within 15 s"))
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
    pub(crate) async fn wait_for_awareness(
        &mut self,
        what: &str,
        mut wanted: impl FnMut(&Value) -> bool,
    ) {
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
    pub(crate) async fn state(&mut self) -> Value {
        self.send(json!({"cmd": "state"})).await;
        self.wait_for("its state", |e| e["event"] == "state").await
    }

    pub(crate) async fn quit(mut self) {
        self.send(json!({"cmd": "quit"})).await;
        let _ = tokio::time::timeout(Duration::from_secs(5), self.child.wait()).await;
    }
}
