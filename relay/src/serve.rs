//! The accept loop: hyper driven by hand, because `axum::serve` has no timeouts. Every
//! connection has limits: a request head must arrive whole within `header_read_timeout` (of the
//! connection opening, or of the first byte of a later request), an HTTP connection on which
//! no byte moves for `http_idle_timeout` is closed, and one client IP address holds at most
//! `max_connections_per_ip` connections. Once a connection is upgraded to a WebSocket, pings
//! watch it instead (`socket.rs`).
//!
//! hyper's own `header_read_timeout` is left off: its clock starts when hyper waits for a head,
//! which on a kept-alive connection is right after the previous response, so it would also be
//! the idle time between requests, and the two could not be set apart.

use std::collections::HashMap;
use std::convert::Infallible;
use std::future::Future;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::pin::{Pin, pin};
use std::sync::atomic::{AtomicU8, AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use axum::Router;
use axum::http::StatusCode;
use axum::response::Response;
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use hyper_util::service::TowerToHyperService;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Notify, watch};
use tokio::time::Instant;

use crate::Limits;
use crate::metrics::Metrics;

/// Serves `router` on `listener` until `shutdown` resolves; then stops accepting, lets every
/// HTTP connection finish its request (each still under its timeouts) and returns.
pub(crate) async fn serve(
    listener: TcpListener,
    router: Router,
    limits: &Limits,
    metrics: Arc<Metrics>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) {
    let timeouts = Timeouts {
        head: nonzero(limits.header_read_timeout),
        idle: nonzero(limits.http_idle_timeout),
    };
    let addresses = Arc::new(Addresses {
        limit: limits.max_connections_per_ip,
        open: Mutex::default(),
    });
    let (stop_tx, stop_rx) = watch::channel(false);
    // Each connection task holds a receiver; the sender sees them all gone.
    let (done_tx, done_rx) = watch::channel(());
    let mut shutdown = pin!(shutdown);
    loop {
        let (tcp, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(error) => {
                    accept_failed(error).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        let Some(slot) = Slot::take(&addresses, &metrics, peer) else {
            metrics.tcp_refused.fetch_add(1, Relaxed);
            tracing::warn!(
                address = %peer.ip(),
                limit = addresses.limit,
                "connection refused: the address holds its limit of connections"
            );
            refuse(tcp, addresses.limit);
            continue;
        };
        // Updates are small and latency matters: without this, Nagle's algorithm and the
        // peer's delayed ACK hold frames back by tens of milliseconds.
        if let Err(error) = tcp.set_nodelay(true) {
            tracing::warn!(%error, "could not set TCP_NODELAY");
        }
        let clock = Arc::new(Clock::new());
        let io = TokioIo::new(Watched {
            tcp,
            clock: clock.clone(),
            _slot: slot,
        });
        let service = Observed {
            inner: TowerToHyperService::new(router.clone()),
            clock: clock.clone(),
        };
        let stop = stop_rx.clone();
        let done = done_rx.clone();
        let metrics = metrics.clone();
        tokio::spawn(async move {
            drive(io, service, clock, timeouts, stop, &metrics, peer).await;
            drop(done);
        });
    }
    drop(listener);
    stop_tx.send_replace(true);
    drop(done_rx);
    done_tx.closed().await;
}

fn nonzero(duration: Duration) -> Option<Duration> {
    (!duration.is_zero()).then_some(duration)
}

/// As hyper's server did: connection errors concern one client; others (out of file
/// descriptors) are logged and waited out, since connections closing will free some.
async fn accept_failed(error: io::Error) {
    use io::ErrorKind::*;
    if matches!(
        error.kind(),
        ConnectionRefused | ConnectionAborted | ConnectionReset
    ) {
        return;
    }
    tracing::error!(%error, "accepting a connection failed; retrying in 1 s");
    tokio::time::sleep(Duration::from_secs(1)).await;
}

/// Answers a connection over its address's limit with a 429 and closes it, without waiting.
fn refuse(tcp: TcpStream, limit: usize) {
    let body = serde_json::json!({
        "error": format!(
            "too many connections from your address (the limit is {limit}); close some and try again"
        )
    })
    .to_string();
    let response = format!(
        "HTTP/1.1 429 Too Many Requests\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\nretry-after: 5\r\n\r\n{body}",
        body.len()
    );
    // What the client sent already: unread at close, it would turn our FIN into a reset and
    // the client could lose the answer.
    let mut discard = [0; 4096];
    let _ = tcp.try_read(&mut discard);
    let _ = tcp.try_write(response.as_bytes());
}

#[derive(Debug, Clone, Copy)]
struct Timeouts {
    head: Option<Duration>,
    idle: Option<Duration>,
}

/// Open connections per client address.
#[derive(Debug)]
struct Addresses {
    /// 0: no limit.
    limit: usize,
    open: Mutex<HashMap<IpAddr, usize>>,
}

/// One open connection, counted against its address until dropped (with the socket, which an
/// upgraded WebSocket keeps after the HTTP connection task ended).
#[derive(Debug)]
struct Slot {
    addresses: Arc<Addresses>,
    ip: IpAddr,
    metrics: Arc<Metrics>,
}

impl Slot {
    fn take(addresses: &Arc<Addresses>, metrics: &Arc<Metrics>, peer: SocketAddr) -> Option<Self> {
        let ip = peer.ip().to_canonical();
        let mut open = addresses.open.lock().unwrap_or_else(|e| e.into_inner());
        let count = open.entry(ip).or_default();
        if addresses.limit > 0 && *count >= addresses.limit {
            return None;
        }
        *count += 1;
        metrics.tcp_connections.fetch_add(1, Relaxed);
        Some(Self {
            addresses: addresses.clone(),
            ip,
            metrics: metrics.clone(),
        })
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        self.metrics.tcp_connections.fetch_sub(1, Relaxed);
        let mut open = self
            .addresses
            .open
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        if let Some(count) = open.get_mut(&self.ip) {
            *count -= 1;
            if *count == 0 {
                open.remove(&self.ip);
            }
        }
    }
}

/// Where an HTTP connection is: its phase decides its deadline.
const AWAITING_REQUEST: u8 = 0;
const READING_HEAD: u8 = 1;
const HANDLING: u8 = 2;
const UPGRADED: u8 = 3;

/// A connection's phase and times (milliseconds since it opened), updated by its socket and
/// its service, read by the task that enforces the deadline. Everything but the upgraded
/// socket runs on that one task.
#[derive(Debug)]
struct Clock {
    opened: Instant,
    phase: AtomicU8,
    head_started: AtomicU64,
    last_io: AtomicU64,
    /// A phase change that can bring the deadline forward.
    changed: Notify,
}

impl Clock {
    fn new() -> Self {
        Self {
            opened: Instant::now(),
            // The first head's clock starts when the connection opens.
            phase: AtomicU8::new(READING_HEAD),
            head_started: AtomicU64::new(0),
            last_io: AtomicU64::new(0),
            changed: Notify::new(),
        }
    }

    fn now(&self) -> u64 {
        self.opened.elapsed().as_millis() as u64
    }

    fn set_phase(&self, phase: u8) {
        self.phase.store(phase, Relaxed);
        self.changed.notify_one();
    }

    fn moved(&self, read: bool) {
        match self.phase.load(Relaxed) {
            UPGRADED => {}
            AWAITING_REQUEST if read => {
                let now = self.now();
                self.last_io.store(now, Relaxed);
                self.head_started.store(now, Relaxed);
                self.set_phase(READING_HEAD);
            }
            _ => self.last_io.store(self.now(), Relaxed),
        }
    }

    /// When the connection must be closed if nothing changes, and why.
    fn deadline(&self, timeouts: Timeouts) -> Option<(Instant, &'static str)> {
        let at = |millis: &AtomicU64, limit: Duration| {
            self.opened + Duration::from_millis(millis.load(Relaxed)) + limit
        };
        match self.phase.load(Relaxed) {
            READING_HEAD => timeouts
                .head
                .map(|limit| (at(&self.head_started, limit), "request head too slow")),
            UPGRADED => None,
            _ => timeouts
                .idle
                .map(|limit| (at(&self.last_io, limit), "idle")),
        }
    }
}

/// The socket, noting when bytes move.
#[derive(Debug)]
struct Watched {
    tcp: TcpStream,
    clock: Arc<Clock>,
    _slot: Slot,
}

impl AsyncRead for Watched {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let before = buf.filled().len();
        let polled = Pin::new(&mut this.tcp).poll_read(cx, buf);
        if matches!(polled, Poll::Ready(Ok(()))) && buf.filled().len() > before {
            this.clock.moved(true);
        }
        polled
    }
}

impl AsyncWrite for Watched {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let polled = Pin::new(&mut this.tcp).poll_write(cx, buf);
        if matches!(polled, Poll::Ready(Ok(n)) if n > 0) {
            this.clock.moved(false);
        }
        polled
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let polled = Pin::new(&mut this.tcp).poll_write_vectored(cx, bufs);
        if matches!(polled, Poll::Ready(Ok(n)) if n > 0) {
            this.clock.moved(false);
        }
        polled
    }

    fn is_write_vectored(&self) -> bool {
        self.tcp.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().tcp).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().tcp).poll_shutdown(cx)
    }
}

/// The router, noting when a request's head is complete (it is called) and when its response
/// is ready (then the next byte starts a new head, unless the connection was upgraded).
#[derive(Debug, Clone)]
struct Observed {
    inner: TowerToHyperService<Router>,
    clock: Arc<Clock>,
}

impl hyper::service::Service<hyper::Request<Incoming>> for Observed {
    type Response = Response;
    type Error = Infallible;
    type Future = Pin<Box<dyn Future<Output = Result<Response, Infallible>> + Send>>;

    fn call(&self, request: hyper::Request<Incoming>) -> Self::Future {
        self.clock.set_phase(HANDLING);
        let clock = self.clock.clone();
        let response = self.inner.call(request);
        Box::pin(async move {
            let response = response.await?;
            clock.set_phase(if response.status() == StatusCode::SWITCHING_PROTOCOLS {
                UPGRADED
            } else {
                AWAITING_REQUEST
            });
            Ok(response)
        })
    }
}

/// Serves one connection until it ends, its deadline passes (then it is dropped: closed), or
/// the relay stops (then it finishes the request under way and closes).
async fn drive(
    io: TokioIo<Watched>,
    service: Observed,
    clock: Arc<Clock>,
    timeouts: Timeouts,
    mut stop: watch::Receiver<bool>,
    metrics: &Metrics,
    peer: SocketAddr,
) {
    let connection = hyper::server::conn::http1::Builder::new()
        .header_read_timeout(None)
        .keep_alive(true)
        .serve_connection(io, service)
        .with_upgrades();
    let mut connection = pin!(connection);
    let mut stopping = false;
    loop {
        let deadline = clock.deadline(timeouts);
        let expired = async {
            match deadline {
                Some((at, _)) => tokio::time::sleep_until(at).await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            served = connection.as_mut() => {
                if let Err(error) = served {
                    tracing::debug!(%error, %peer, "HTTP connection ended");
                }
                return;
            }
            () = expired => {
                // The phase may have moved the deadline on since.
                match clock.deadline(timeouts) {
                    Some((at, why)) if at <= Instant::now() => {
                        metrics.http_timeouts.fetch_add(1, Relaxed);
                        tracing::debug!(%peer, why, "closing an HTTP connection");
                        return;
                    }
                    _ => {}
                }
            }
            () = clock.changed.notified() => {}
            _ = stop.changed(), if !stopping => {
                stopping = true;
                connection.as_mut().graceful_shutdown();
            }
        }
    }
}
