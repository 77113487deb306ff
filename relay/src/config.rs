use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

/// Everything the relay can be told. `inloop serve` fills it from flags and `INLOOP_*`
/// variables; tests build it directly.
#[derive(Debug, Clone)]
pub struct Config {
    pub addr: SocketAddr,
    /// Holds the SQLite database and the secret key.
    pub data_dir: PathBuf,
    /// The token signing key; when `None`, read from (or created in) `data_dir`.
    pub secret: Option<Vec<u8>>,
    /// The built page (`web/dist`), served at `/` when present.
    pub web_dir: Option<PathBuf>,
    /// Start a server runtime on this machine for documents that queue server runs with no
    /// runtime holding their lease; `None` never does.
    pub local_runtime: Option<crate::LocalRuntime>,
    pub limits: Limits,
}

/// Limits on what peers may do; a peer that breaks one is disconnected with the reason.
#[derive(Debug, Clone)]
pub struct Limits {
    /// Largest WebSocket message, in bytes.
    pub max_message_bytes: usize,
    /// Largest document (snapshot plus log), in bytes.
    pub max_document_bytes: usize,
    pub max_connections_per_document: usize,
    /// Messages per second per connection, averaged over a burst of as many.
    pub max_messages_per_second: u32,
    /// Frames queued for a peer before it counts as not keeping up and is disconnected.
    pub outgoing_queue: usize,
    /// How long one write to a peer may block (it stopped reading) before it is disconnected.
    pub send_timeout: Duration,
    /// How long a document with no peers stays in memory.
    pub idle_unload: Duration,
    /// Updates appended before the log is folded into the snapshot.
    pub compact_after_updates: usize,
    pub lease_ttl: Duration,
    pub lease_grace: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_message_bytes: 16 << 20,
            max_document_bytes: 256 << 20,
            max_connections_per_document: 1_000,
            max_messages_per_second: 500,
            outgoing_queue: 4_096,
            send_timeout: Duration::from_secs(30),
            idle_unload: Duration::from_secs(30),
            compact_after_updates: 1_000,
            lease_ttl: Duration::from_secs(15),
            lease_grace: Duration::from_secs(10),
        }
    }
}

impl Config {
    /// The defaults of `inloop serve`: 127.0.0.1:8787 and `./inloop-data`.
    pub fn new(data_dir: impl Into<PathBuf>) -> Self {
        Self {
            addr: SocketAddr::from(([127, 0, 0, 1], 8787)),
            data_dir: data_dir.into(),
            secret: None,
            web_dir: None,
            local_runtime: None,
            limits: Limits::default(),
        }
    }
}
