//! The inloop relay: holds notebook documents and syncs them live between their peers
//! (browsers, server runtimes, agents) over WebSockets.
//!
//! # Features
//!
//! - `GET /api/docs/{doc_id}/ws`: the y-websocket protocol, so a stock Yjs client can join;
//!   presence relayed; the runtime lease carried beside it (see `inloop_sync::lease`).
//! - Durable: every update is appended to SQLite (in `--data`) and synced to disk before any
//!   peer receives it; the log is folded into a snapshot in the background; idle documents
//!   leave memory and come back on demand.
//! - Capability tokens (`?token=` or the WebSocket subprotocol) naming a document or all, a
//!   role and an expiry, signed with a key kept in `--data` (or `INLOOP_SECRET`).
//! - HTTP: `POST /api/docs`, `GET /api/docs`, `GET|PUT /api/docs/{id}/ipynb`,
//!   `POST /api/docs/{id}/tokens`, `GET /healthz` (liveness), `GET /readyz` (storage takes
//!   writes), `GET /metrics`. Refusals are JSON, `{"error": "..."}`.
//! - Document ids are `[A-Za-z0-9_-]{1,64}`, checked on every route before anything else.
//! - Timeouts on slow or idle HTTP connections, a cap on connections per client address, and
//!   pings that drop dead WebSocket peers.
//! - Limits on message size, document size, connections per document and messages per second;
//!   a peer that breaks one, sends bytes that do not decode, or does not keep up is disconnected
//!   with the reason. No update is ever dropped silently.
//!
//! # Quick start
//!
//! ```no_run
//! # async fn run() -> Result<(), inloop_relay::Error> {
//! let relay = inloop_relay::Relay::start(inloop_relay::Config::new("./inloop-data")).await?;
//! println!("open {}", relay.admin_url());
//! relay.run_until(async { let _ = tokio::signal::ctrl_c().await; }).await
//! # }
//! ```

mod config;
mod doc_id;
mod error;
mod headers;
mod http;
mod json_errors;
mod local_runtime;
mod metrics;
mod ready;
mod rooms;
mod serve;
mod socket;
mod storage;
pub mod store;

use std::future::Future;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::Router;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use inloop_sync::{Action, Claims, Role, TokenKey};
use tower_http::services::{ServeDir, ServeFile};

pub use config::{Config, Limits};
pub use error::{Error, Result};
pub use local_runtime::LocalRuntime;

use metrics::Metrics;
use rooms::{RoomHandle, Rooms};
use storage::Storage;
use store::SqliteStore;

/// How long the admin token printed at start stays valid.
const ADMIN_TOKEN_LIFETIME: Duration = Duration::from_secs(30 * 24 * 3600);

/// The relay's shared state, as every handler sees it.
#[derive(Clone, Debug)]
pub struct AppState(Arc<Inner>);

#[derive(Debug)]
struct Inner {
    config: Arc<Config>,
    key: TokenKey,
    rooms: Arc<Rooms>,
    storage: Storage,
    metrics: Arc<Metrics>,
    ready: ready::Readiness,
    /// Ids of revoked tokens that have not expired yet: refused like forged ones.
    revoked: std::sync::RwLock<std::collections::HashSet<String>>,
}

/// An HTTP refusal: a status and a message meant for the user, sent as `{"error": message}`.
/// Internal failures are logged and answered with a generic message.
#[derive(Debug)]
pub(crate) struct Refusal(StatusCode, String);

impl Refusal {
    fn internal(error: &Error) -> Self {
        tracing::error!(%error, "internal error");
        Refusal(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal error; the relay's log has the details".into(),
        )
    }
}

impl IntoResponse for Refusal {
    fn into_response(self) -> Response {
        (self.0, axum::Json(serde_json::json!({ "error": self.1 }))).into_response()
    }
}

impl AppState {
    /// Opens the store in `config.data_dir` and loads or creates the signing key.
    pub fn open(config: Config) -> Result<Self> {
        let key = signing_key(&config)?;
        let store = SqliteStore::open(&config.data_dir.join("inloop.sqlite3"))?;
        Self::with_store(config, key, Box::new(store))
    }

    /// The state over any [`store::Store`] (tests use the in-memory one).
    pub fn with_store(config: Config, key: TokenKey, store: Box<dyn store::Store>) -> Result<Self> {
        let config = Arc::new(config);
        let storage = Storage::start(store)?;
        let metrics = Arc::new(Metrics::default());
        let local_runtimes =
            local_runtime::LocalRuntimes::new(config.local_runtime.clone(), key.clone());
        let rooms = Arc::new(Rooms::new(
            storage.clone(),
            config.clone(),
            metrics.clone(),
            local_runtimes,
        ));
        Ok(Self(Arc::new(Inner {
            config,
            key,
            rooms,
            storage,
            metrics,
            ready: ready::Readiness::default(),
            revoked: Default::default(),
        })))
    }

    /// Loads the revoked token ids from storage (at start).
    async fn load_revocations(&self) -> Result<()> {
        let ids = self.0.storage.revoked_tokens(unix_now()).await?;
        self.0
            .revoked
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .extend(ids);
        Ok(())
    }

    /// Revokes a document's share token: it is refused from now on and the sockets opened
    /// with it are closed. False if the document has no such live token.
    pub(crate) async fn revoke(&self, doc_id: &str, token_id: &str) -> Result<bool> {
        let revoked = self
            .0
            .storage
            .revoke_token(doc_id, token_id, unix_now())
            .await?;
        if revoked {
            self.0
                .revoked
                .write()
                .unwrap_or_else(|e| e.into_inner())
                .insert(token_id.to_owned());
            self.0.rooms.disconnect_token(doc_id, token_id).await;
        }
        Ok(revoked)
    }

    pub fn config(&self) -> &Config {
        &self.0.config
    }

    pub(crate) fn metrics(&self) -> &Arc<Metrics> {
        &self.0.metrics
    }

    /// Mints a token.
    pub fn mint(
        &self,
        doc: Option<&str>,
        role: Role,
        lifetime: Duration,
        name: Option<&str>,
    ) -> String {
        self.mint_claims(doc, role, lifetime, name).1
    }

    /// Mints a token; returns its claims too.
    pub(crate) fn mint_claims(
        &self,
        doc: Option<&str>,
        role: Role,
        lifetime: Duration,
        name: Option<&str>,
    ) -> (Claims, String) {
        let claims = Claims {
            id: Some(new_token_id()),
            doc: doc.map(str::to_owned),
            role,
            exp: unix_now().saturating_add(lifetime.as_secs()),
            name: name.map(str::to_owned),
        };
        let token = self.0.key.sign(&claims);
        (claims, token)
    }

    /// The token's role, if it is valid, covers `doc_id` (all documents for `None`) and allows
    /// `action`.
    pub(crate) fn authorize(
        &self,
        token: Option<&str>,
        doc_id: &str,
        action: Action,
    ) -> Result<Role, Refusal> {
        self.claims(token, action).and_then(|claims| {
            claims
                .check(doc_id, action)
                .map_err(|e| Refusal(StatusCode::FORBIDDEN, e.to_string()))
        })
    }

    /// Who a WebSocket peer is: its token must be valid and cover `doc_id`.
    pub(crate) fn authorize_peer(
        &self,
        token: Option<&str>,
        doc_id: &str,
    ) -> Result<inloop_sync::Credentials, Refusal> {
        let claims = self.claims(token, Action::Read)?;
        let role = claims
            .check(doc_id, Action::Read)
            .map_err(|e| Refusal(StatusCode::FORBIDDEN, e.to_string()))?;
        let principal = claims.principal(token.unwrap_or_default());
        Ok(inloop_sync::Credentials::new(role, principal))
    }

    /// A token's claims if it is valid and its role allows `action` (any document).
    pub(crate) fn claims(&self, token: Option<&str>, action: Action) -> Result<Claims, Refusal> {
        let token = token.ok_or_else(|| {
            Refusal(
                StatusCode::UNAUTHORIZED,
                "a token is needed: add ?token=… (from the URL `inloop serve` printed, or a share link)".into(),
            )
        })?;
        let claims = self
            .0
            .key
            .verify(token, unix_now())
            .map_err(|e| Refusal(StatusCode::UNAUTHORIZED, e.to_string()))?;
        let revoked = claims.id.as_ref().is_some_and(|id| {
            self.0
                .revoked
                .read()
                .unwrap_or_else(|e| e.into_inner())
                .contains(id)
        });
        if revoked {
            return Err(Refusal(
                StatusCode::UNAUTHORIZED,
                "this link was revoked: ask the notebook's owner for a new one".into(),
            ));
        }
        if !claims.role.allows(action) {
            return Err(Refusal(
                StatusCode::FORBIDDEN,
                inloop_sync::Error::Forbidden {
                    role: claims.role,
                    action,
                }
                .to_string(),
            ));
        }
        Ok(claims)
    }

    /// The document's room, if the document exists: HTTP requests never create one.
    pub(crate) async fn existing_room(&self, doc_id: &str) -> Result<RoomHandle, Refusal> {
        self.0
            .rooms
            .get(doc_id)
            .await
            .map_err(|e| Refusal::internal(&e))?
            .ok_or_else(|| {
                Refusal(
                    StatusCode::NOT_FOUND,
                    format!("no document {doc_id:?} on this relay"),
                )
            })
    }

    /// The document's room for a WebSocket peer; admins create documents by opening them.
    pub(crate) async fn room(&self, doc_id: &str, role: Role) -> Result<RoomHandle, Refusal> {
        match self.existing_room(doc_id).await {
            Err(refusal) if refusal.0 == StatusCode::NOT_FOUND && role.allows(Action::Create) => {}
            found => return found,
        }
        self.create(doc_id, &inloop_doc::Notebook::blank().encode_update_v1())
            .await?;
        self.0
            .rooms
            .get(doc_id)
            .await
            .map_err(|e| Refusal::internal(&e))?
            .ok_or_else(|| Refusal::internal(&Error::NotFound(doc_id.into())))
    }

    /// Stores a new document whose content is `update`.
    pub(crate) async fn create(&self, doc_id: &str, update: &[u8]) -> Result<(), Refusal> {
        let storage = &self.0.storage;
        let created = storage
            .create(doc_id, unix_now())
            .await
            .map_err(|e| Refusal::internal(&e))?;
        if created {
            let append = store::Append {
                doc_id: doc_id.into(),
                updates: vec![update.to_vec()],
                lease_epoch: None,
            };
            storage
                .append(append)
                .await
                .map_err(|e| Refusal::internal(&e))?;
        }
        Ok(())
    }
}

/// The relay's routes over `state`.
pub fn app(state: AppState) -> Router {
    let api = Router::new()
        .route("/api/docs", post(http::create).get(http::list))
        .route("/api/docs/{doc_id}/ws", get(socket::upgrade))
        .route(
            "/api/docs/{doc_id}/ipynb",
            get(http::export).put(http::import),
        )
        .route(
            "/api/docs/{doc_id}/tokens",
            post(http::mint).get(http::list_tokens),
        )
        .route(
            "/api/docs/{doc_id}/tokens/{token_id}",
            axum::routing::delete(http::revoke_token),
        )
        .route("/healthz", get(|| async { "ok" }))
        .route("/readyz", get(ready::readyz))
        .route("/metrics", get(http::metrics));
    let app = match &state.config().web_dir {
        // `/` is the list of notebooks (index.html); `/n/{doc_id}` is one notebook, the same
        // page for every (well-formed) id: the page reads the id from its URL.
        Some(dir) if dir.is_dir() => api
            .merge(
                Router::new()
                    .route_service("/n/{doc_id}", ServeFile::new(dir.join("notebook.html")))
                    .route_layer(axum::middleware::from_fn(doc_id::require)),
            )
            .fallback_service(ServeDir::new(dir)),
        _ => api,
    };
    // The Content-Security-Policy, cross-origin isolation (the Pyodide worker's interrupts) and
    // the other security headers, on every response.
    headers::secure(app.layer(axum::middleware::from_fn(json_errors::json_errors)))
        .with_state(state)
}

/// A relay bound to its address, not yet serving.
#[derive(Debug)]
pub struct Relay {
    listener: tokio::net::TcpListener,
    addr: SocketAddr,
    state: AppState,
    admin_token: String,
}

impl Relay {
    /// Opens the data folder and binds `config.addr` (port 0 picks a free port).
    pub async fn start(config: Config) -> Result<Self> {
        let listener = tokio::net::TcpListener::bind(config.addr).await?;
        let state = AppState::open(config)?;
        state.load_revocations().await?;
        Self::bound(listener, state)
    }

    /// [`Relay::start`] over any [`store::Store`] instead of SQLite in the data folder (which
    /// still holds the signing key unless `config.secret` is set).
    pub async fn start_with_store(config: Config, store: Box<dyn store::Store>) -> Result<Self> {
        let listener = tokio::net::TcpListener::bind(config.addr).await?;
        let key = signing_key(&config)?;
        let state = AppState::with_store(config, key, store)?;
        state.load_revocations().await?;
        Self::bound(listener, state)
    }

    fn bound(listener: tokio::net::TcpListener, state: AppState) -> Result<Self> {
        let addr = listener.local_addr()?;
        state.0.rooms.local_runtimes().set_addr(addr);
        let admin_token = state.mint(None, Role::Admin, ADMIN_TOKEN_LIFETIME, Some("admin"));
        Ok(Self {
            listener,
            addr,
            state,
            admin_token,
        })
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    pub fn state(&self) -> &AppState {
        &self.state
    }

    /// A token for every document with every right, valid for 30 days.
    pub fn admin_token(&self) -> &str {
        &self.admin_token
    }

    /// The URL to open, the way Jupyter prints its token URL.
    pub fn admin_url(&self) -> String {
        format!("http://{}/?token={}", self.addr, self.admin_token)
    }

    /// Serves until `shutdown` resolves, then closes every connection and returns.
    pub async fn run_until(
        self,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> Result<()> {
        let rooms = self.state.0.rooms.clone();
        let limits = self.state.config().limits.clone();
        let metrics = self.state.metrics().clone();
        let shutdown = async move {
            shutdown.await;
            rooms.shut_down().await;
        };
        serve::serve(self.listener, app(self.state), &limits, metrics, shutdown).await;
        Ok(())
    }
}

pub(crate) fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// The key tokens are signed with: `config.secret`, or the one kept in the data folder.
fn signing_key(config: &Config) -> Result<TokenKey> {
    std::fs::create_dir_all(&config.data_dir)?;
    let path = config.data_dir.join("secret.key");
    if config.rotate_key {
        if config.secret.is_some() {
            return Err(Error::Config(
                "the signing key comes from INLOOP_SECRET: to rotate it, set a new one".into(),
            ));
        }
        // A new key: every token signed with the old one stops working.
        match std::fs::remove_file(&path) {
            Err(error) if error.kind() != std::io::ErrorKind::NotFound => return Err(error.into()),
            _ => tracing::warn!("signing key rotated: every token made before is refused"),
        }
    }
    let secret = match &config.secret {
        Some(secret) => secret.clone(),
        None => load_or_create_secret(&path)?,
    };
    Ok(TokenKey::new(&secret)?)
}

/// Reads the signing key, or makes one from the OS's randomness on first start.
fn load_or_create_secret(path: &Path) -> Result<Vec<u8>> {
    match std::fs::read(path) {
        Ok(secret) => Ok(secret),
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => {
            let secret = random_bytes::<32>()?.to_vec();
            let temp = path.with_extension("tmp");
            write_private(&temp, &secret)?;
            std::fs::rename(&temp, path)?;
            Ok(secret)
        }
        Err(error) => Err(error.into()),
    }
}

#[cfg(unix)]
fn write_private(path: &Path, bytes: &[u8]) -> Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)?;
    file.write_all(bytes)?;
    file.sync_all()?;
    Ok(())
}

#[cfg(not(unix))]
fn write_private(path: &Path, bytes: &[u8]) -> Result<()> {
    Ok(std::fs::write(path, bytes)?)
}

/// A fresh token id: 96 random bits, base64url. (If the system's randomness fails, a clock-based
/// id still keeps tokens apart; ids are names, not secrets.)
pub(crate) fn new_token_id() -> String {
    use base64::Engine;
    let bytes = random_bytes::<12>().unwrap_or_else(|_| {
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos());
        let mut bytes = [0; 12];
        bytes.copy_from_slice(&nanos.to_le_bytes()[..12]);
        bytes
    });
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

pub(crate) fn random_bytes<const N: usize>() -> Result<[u8; N]> {
    let mut bytes = [0; N];
    getrandom::fill(&mut bytes).map_err(|e| Error::Random(e.to_string()))?;
    Ok(bytes)
}
