//! The workspace's one test harness, a dev-dependency of the crates whose tests need it (never a
//! dependency of shipped code).
//!
//! - [`wait`]: waits with a deadline on an observable condition (a counter, a status, the
//!   document), panicking with what was awaited. Tests never sleep and then assert that
//!   nothing happened: they wait for the event after which it would have happened (a metric, a
//!   later update that the relay orders behind it, a reconnection attempt) and assert then.
//! - [`relay`] (feature `relay`): the real relay serving in the test's process on port 0, over
//!   SQLite in a temporary folder or any `Store`, stopped and resumed on the same address and
//!   data; peers connected and synced; `/metrics`; barriers through a document.
//! - [`http`]: a minimal HTTP/1.1 client for the relay's API.
//! - [`kernel`]: the repository's venv (made by `scripts/setup.sh`) and, with the feature
//!   `kernel`, its ipykernel as a kernelspec.
//! - [`yjs`]: a stock Yjs client (npm `yjs` + `y-websocket`, `tests/node/yjs_peer.mjs`) under
//!   Node, driven over JSON lines.
//! - [`files`]: a snapshot of a folder, to show that nothing outside a root changed.

pub mod files;
pub mod http;
pub mod kernel;
#[cfg(feature = "relay")]
pub mod relay;
pub mod wait;
pub mod yjs;

pub use http::{http_exchange, http_request};
#[cfg(feature = "relay")]
pub use relay::{TestRelay, connect, connect_with, ended, source, sources, ws_url};
pub use wait::{eventually, until, until_ok, until_some};
pub use yjs::YjsPeer;

use std::path::PathBuf;

/// The repository's root folder (where `tests/`, `.venv` and `node_modules` are).
pub fn repo_root() -> PathBuf {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..");
    root.canonicalize().unwrap_or(root)
}
