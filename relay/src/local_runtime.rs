//! Starting a server runtime on this machine when a document queues `server` runs and no
//! runtime holds its lease, so "run on server" works out of the box. The runtime is the
//! `inloop runtime` command, a peer like any other; it stops itself when idle.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Mutex, OnceLock};
use std::time::Duration;

use inloop_sync::{Claims, Role, TokenKey};
use tokio::process::{Child, Command};

/// How to start a local runtime: `program runtime --relay … --doc … --token … ARGS`.
#[derive(Debug, Clone)]
pub struct LocalRuntime {
    /// The `inloop` binary.
    pub program: PathBuf,
    /// Appended to the command (kernel prefixes, idle exit, …).
    pub args: Vec<String>,
}

/// The local runtimes started, one per document at most.
#[derive(Debug)]
pub(crate) struct LocalRuntimes {
    launcher: Option<LocalRuntime>,
    key: TokenKey,
    /// The relay's own address, known once it is bound.
    addr: OnceLock<SocketAddr>,
    children: Mutex<HashMap<String, Child>>,
}

/// How long a local runtime's token lasts; it is minted afresh for each start.
const TOKEN_LIFETIME: Duration = Duration::from_secs(7 * 24 * 3600);

impl LocalRuntimes {
    pub(crate) fn new(launcher: Option<LocalRuntime>, key: TokenKey) -> Self {
        Self {
            launcher,
            key,
            addr: OnceLock::new(),
            children: Mutex::new(HashMap::new()),
        }
    }

    pub(crate) fn set_addr(&self, addr: SocketAddr) {
        let _ = self.addr.set(addr);
    }

    /// Starts a runtime for `doc_id` unless one started here is still running. Returns false
    /// when it started none because one is running: it may be on its way out (idle), so the
    /// caller should ask again shortly if the need remains.
    pub(crate) fn ensure(&self, doc_id: &str) -> bool {
        let (Some(launcher), Some(addr)) = (&self.launcher, self.addr.get()) else {
            return true;
        };
        let mut children = self.children.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(child) = children.get_mut(doc_id) {
            if matches!(child.try_wait(), Ok(None)) {
                return false;
            }
        }
        let token = self.key.sign(&Claims {
            doc: Some(doc_id.to_owned()),
            role: Role::Runtime,
            exp: crate::unix_now() + TOKEN_LIFETIME.as_secs(),
            name: Some("local runtime".into()),
        });
        let spawned = Command::new(&launcher.program)
            .args([
                "runtime",
                "--relay",
                &format!("ws://{addr}"),
                "--doc",
                doc_id,
            ])
            .args(["--token", &token, "--name", "local runtime"])
            .args(&launcher.args)
            .kill_on_drop(true)
            .spawn();
        match spawned {
            Ok(child) => {
                tracing::info!(doc_id, pid = child.id(), "started a local runtime");
                children.insert(doc_id.to_owned(), child);
            }
            Err(error) => {
                tracing::error!(doc_id, %error, program = %launcher.program.display(), "could not start a local runtime");
            }
        }
        true
    }

    /// Stops every runtime started here (the relay is shutting down).
    pub(crate) async fn stop_all(&self) {
        let children: Vec<Child> = self
            .children
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .drain()
            .map(|(_, child)| child)
            .collect();
        for mut child in children {
            let _ = child.kill().await;
        }
    }
}
