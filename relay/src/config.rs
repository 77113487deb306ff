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
    /// Replace the signing key kept in `data_dir` by a new one at start: every token made
    /// before stops working (all share links, the old admin URL).
    pub rotate_key: bool,
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
    /// How long a client has to send a request's head (request line and headers) whole,
    /// counted from when its connection opens, or from the first byte of a later request on a
    /// kept-alive connection; then the connection is closed. Stops slowloris clients that hold
    /// connections by sending headers slowly or never. Zero: no limit.
    pub header_read_timeout: Duration,
    /// How long an HTTP connection may go with no byte read or written: idle between requests
    /// (keep-alive), or a request body or a response that stopped moving; then it is closed.
    /// WebSocket connections are watched by pings instead. Zero: no limit.
    pub http_idle_timeout: Duration,
    /// Open TCP connections (HTTP and WebSocket together) one client IP address may hold; a
    /// connection over it is answered 429 and closed at once. Enough for a team behind one NAT;
    /// behind a reverse proxy every connection comes from the proxy, so raise it or use 0 (no
    /// cap) and cap at the proxy.
    pub max_connections_per_ip: usize,
    /// How often the relay pings each WebSocket peer. Zero: never.
    pub ping_interval: Duration,
    /// Pings in a row a WebSocket peer may leave unanswered (nothing at all heard from it)
    /// before it counts as dead (a half-open connection) and is dropped: within
    /// `ping_interval * (max_missed_pongs + 1)` of the last thing it sent.
    pub max_missed_pongs: u32,
    /// Presence (names, colours, cursors, relayed to everyone): the largest state in bytes, the
    /// states one connection may show, all states of a document together, and the bytes a
    /// peer may send per second (with a burst of four times as many). A peer past them is cut.
    pub max_presence_bytes: usize,
    pub max_presences_per_connection: usize,
    pub max_document_presence_bytes: usize,
    pub presence_bytes_per_second: u64,
    /// The longest a minted token may live; longer `expires_in` is refused.
    pub max_token_lifetime: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        let room = inloop_sync::RoomLimits::default();
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
            header_read_timeout: Duration::from_secs(10),
            http_idle_timeout: Duration::from_secs(60),
            max_connections_per_ip: 256,
            ping_interval: Duration::from_secs(20),
            max_missed_pongs: 2,
            max_presence_bytes: room.max_presence_bytes,
            max_presences_per_connection: room.max_presences_per_peer,
            max_document_presence_bytes: room.max_room_presence_bytes,
            presence_bytes_per_second: room.presence_bytes_per_second,
            max_token_lifetime: Duration::from_secs(90 * 24 * 3600),
        }
    }
}

impl Limits {
    /// What a document's room enforces.
    pub(crate) fn room(&self) -> inloop_sync::RoomLimits {
        inloop_sync::RoomLimits {
            max_document_bytes: self.max_document_bytes,
            max_message_bytes: self.max_message_bytes,
            lease_ttl_ms: self.lease_ttl.as_millis() as u64,
            lease_grace_ms: self.lease_grace.as_millis() as u64,
            max_presence_bytes: self.max_presence_bytes,
            max_presences_per_peer: self.max_presences_per_connection,
            max_room_presence_bytes: self.max_document_presence_bytes,
            presence_bytes_per_second: self.presence_bytes_per_second,
            presence_burst_bytes: self.presence_bytes_per_second.saturating_mul(4),
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
            rotate_key: false,
            web_dir: None,
            local_runtime: None,
            limits: Limits::default(),
        }
    }
}
