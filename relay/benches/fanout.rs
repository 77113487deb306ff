//! The relay benchmark: inloop's relay, the Node `@y/websocket-server` and y-sweet under the same
//! load, in the same run, each in its own process, one after the other.
//!
//! Run it through `scripts/bench-relay.sh` (installs y-sweet and the npm packages if missing) or
//! as `cargo bench -p inloop-relay --bench fanout -- [options]`; `-- --help` explains the options.
//!
//! The load generator is this process. Each simulated client is one WebSocket doing the smallest
//! y-websocket handshake (an empty SyncStep1, an empty SyncStep2 for any SyncStep1 the server
//! sends) and no Yjs document: updates are hand-encoded, each an independent entry of the root
//! map "m", and receivers read only the client and clock of each update to find its send time.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitCode, Stdio};
use std::sync::Arc;
use std::sync::atomic::{
    AtomicU64, AtomicUsize, Ordering::Acquire, Ordering::Relaxed, Ordering::Release,
};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail, ensure};
use clap::{Parser, ValueEnum};
use futures_util::{SinkExt, StreamExt};
use inloop_relay::{Config, Limits, Relay};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt};
use tokio::sync::{Semaphore, watch};
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::tungstenite::{Bytes, Message};

// As in the `inloop` binary, so the relay measured is the relay shipped.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

const WARM_UP: Duration = Duration::from_secs(1);
const DRAIN: Duration = Duration::from_secs(3);
/// Fan-out steps stop for a server once its p99 passes this.
const P99_CEILING: Duration = Duration::from_secs(1);
/// Targets of issue 3, printed beside the figures.
const TARGET_SPEEDUP_OVER_Y_SWEET: f64 = 2.0;
const TARGET_P99: Duration = Duration::from_millis(20);
const TARGET_IDLE_KIB: f64 = 12.0;
/// WebSocket handshakes in flight at once, so the servers' accept queues do not overflow.
const CONNECTS_IN_FLIGHT: usize = 64;
const CONNECT_TIMEOUT: Duration = Duration::from_secs(30);
const STOP_TIMEOUT: Duration = Duration::from_secs(5);

/// y-websocket frames: SyncStep1 with an empty state vector, and an empty SyncStep2.
const SYNC_STEP1_EMPTY: [u8; 4] = [0, 0, 1, 0];
const SYNC_STEP2_EMPTY: [u8; 5] = [0, 1, 2, 0, 0];
const MSG_SYNC: u8 = 0;
const SYNC_STEP1: u8 = 0;
const SYNC_STEP2: u8 = 1;
const SYNC_UPDATE: u8 = 2;

#[derive(Debug, Parser)]
#[command(
    name = "fanout",
    about = "Fan-out benchmark: inloop's relay beside @y/websocket-server (Node) and y-sweet",
    long_about = "Fan-out benchmark: inloop's relay beside @y/websocket-server (Node) and y-sweet, \
        each in its own process, under the same load from this process (same machine).\n\n\
        Scenarios:\n  \
        one-doc    --clients clients on one document; the per-client rate steps through --rates \
        until a server delivers less than 100% or its p99 passes 1 s (then that server stops).\n  \
        many-docs  --many-clients clients spread over --docs documents, each sending \
        --many-rate updates/s.\n  \
        idle       RSS before and after --idle idle clients join one document.\n\n\
        Each step: a fresh server process and fresh documents; clients connect and sync, send for \
        1 s of warm-up and --seconds measured, then up to 3 s for late deliveries. An update is \
        a new key in the root map \"m\", independent of every other; a delivery is one update \
        reaching one other client of its document (echoes to the sender are not counted). \
        offered/s = updates sent in the window x receivers / seconds; delivered = deliveries \
        received / expected. Latency is send to receipt. Server CPU is % of one core \
        (/proc/PID/stat over the window), RSS at the window's end; bench CPU is this process's.\n\n\
        After the one-doc table, each server's lossless maximum (highest delivered/s with 100% \
        delivered) and its highest with p99 under 20 ms too; at the end, inloop's figures against \
        the targets of issue 3. The defaults take about 4 minutes.",
    after_help = "Run scripts/bench-relay.sh to install y-sweet and the npm packages first."
)]
struct Options {
    /// Clients on the one document of the one-doc scenario.
    #[arg(long, default_value_t = 200)]
    clients: usize,
    /// Updates per second per client, the steps of the one-doc scenario.
    #[arg(long, value_delimiter = ',', default_value = "1,2,3,4,6,8,12,16,24,32")]
    rates: Vec<f64>,
    /// Documents of the many-docs scenario.
    #[arg(long, default_value_t = 100)]
    docs: usize,
    /// Clients of the many-docs scenario, spread evenly over --docs.
    #[arg(long, default_value_t = 1_000)]
    many_clients: usize,
    /// Updates per second per client in the many-docs scenario.
    #[arg(long, default_value_t = 2.0)]
    many_rate: f64,
    /// Measured seconds of each step (after 1 s of warm-up).
    #[arg(long, default_value_t = 5.0)]
    seconds: f64,
    /// Idle clients of the idle-memory scenario.
    #[arg(long, default_value_t = 1_000)]
    idle: usize,
    /// Only these servers (repeatable); default: all three.
    #[arg(long, value_enum)]
    only: Vec<ServerKind>,
    /// Only these scenarios (repeatable); default: all three.
    #[arg(long, value_enum)]
    scenario: Vec<Scenario>,
    /// Another build of this bench (`target/release/deps/fanout-*` built from an earlier
    /// commit): its inloop relay runs too, as `inloop-before`, so that a change's cost shows
    /// side by side in one run.
    #[arg(long, value_name = "BENCH_BINARY")]
    baseline: Option<PathBuf>,
    /// Internal: serve inloop's relay on ADDR with data in DATA_DIR (the bench starts itself so).
    #[arg(long, hide = true, num_args = 2, value_names = ["ADDR", "DATA_DIR"])]
    serve_inloop: Option<Vec<String>>,
    /// Passed by `cargo bench`; ignored.
    #[arg(long, hide = true)]
    bench: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum ServerKind {
    Inloop,
    Node,
    #[value(name = "y-sweet")]
    YSweet,
    /// inloop's relay as built by `--baseline`.
    #[value(name = "inloop-before")]
    Baseline,
}

impl ServerKind {
    const ALL: [ServerKind; 3] = [ServerKind::Inloop, ServerKind::Node, ServerKind::YSweet];

    fn name(self) -> &'static str {
        match self {
            ServerKind::Inloop => "inloop",
            ServerKind::Node => "node",
            ServerKind::YSweet => "y-sweet",
            ServerKind::Baseline => "inloop-before",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Scenario {
    OneDoc,
    ManyDocs,
    Idle,
}

fn main() -> ExitCode {
    let options = Options::parse();
    let outcome = tokio::runtime::Runtime::new()
        .map_err(anyhow::Error::from)
        .and_then(|runtime| match &options.serve_inloop {
            Some(serve) => {
                let addr = serve[0].parse().context("--serve-inloop ADDR")?;
                runtime.block_on(serve_inloop(addr, PathBuf::from(&serve[1]), &options))
            }
            None => runtime.block_on(run(options)),
        });
    match outcome {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("error: {error:#}");
            ExitCode::FAILURE
        }
    }
}

/// The relay's limits for this load; the defaults except where the load would break them.
fn inloop_limits(options: &Options) -> Limits {
    let defaults = Limits::default();
    let max_rate = options
        .rates
        .iter()
        .copied()
        .fold(options.many_rate, f64::max);
    // Jittered sends can bunch up to twice the mean rate within a second.
    let messages_per_second = (max_rate * 2.0).ceil() as u32 + 10;
    let connections = options.clients.max(options.idle + 1);
    Limits {
        max_messages_per_second: defaults.max_messages_per_second.max(messages_per_second),
        max_connections_per_document: defaults.max_connections_per_document.max(connections),
        // Every client connects from this machine's one address: no cap per address.
        max_connections_per_ip: 0,
        ..defaults
    }
}

/// The child process that serves inloop's relay: prints `ready TOKEN` once it listens.
async fn serve_inloop(addr: SocketAddr, data_dir: PathBuf, options: &Options) -> Result<()> {
    let mut config = Config::new(data_dir);
    config.addr = addr;
    config.limits = inloop_limits(options);
    let relay = Relay::start(config).await?;
    println!("ready {}", relay.admin_token());
    relay
        .run_until(async {
            let _ = tokio::signal::ctrl_c().await;
        })
        .await?;
    Ok(())
}

async fn run(options: Options) -> Result<()> {
    ensure!(options.seconds > 0.0, "--seconds must be positive");
    ensure!(
        options.clients >= 2,
        "--clients needs at least 2 (a sender and a receiver)"
    );
    ensure!(
        options.docs >= 1 && options.many_clients >= 2 * options.docs,
        "--many-clients must give every one of --docs at least 2 clients"
    );
    ensure!(
        options.rates.iter().all(|r| *r > 0.0) && options.many_rate > 0.0,
        "rates must be positive"
    );
    check_update_encoding()?;
    let servers = servers_to_run(&options)?;
    let scenarios = if options.scenario.is_empty() {
        vec![Scenario::OneDoc, Scenario::ManyDocs, Scenario::Idle]
    } else {
        options.scenario.clone()
    };
    check_file_limit(&options, &scenarios)?;
    print_setup(&options, &servers);
    let mut bench = Bench {
        options,
        servers,
        next_client_id: 1,
        verdicts: Vec::new(),
    };
    for scenario in scenarios {
        match scenario {
            Scenario::OneDoc => bench.one_doc().await?,
            Scenario::ManyDocs => bench.many_docs().await?,
            Scenario::Idle => bench.idle().await?,
        }
    }
    if !bench.verdicts.is_empty() {
        println!(
            "\ntargets (issue 3), for inloop on this machine with the load generator beside it"
        );
        for verdict in &bench.verdicts {
            println!("  {verdict}");
        }
    }
    Ok(())
}

/// The servers asked for, failing with what to run if one of them is not installed.
fn servers_to_run(options: &Options) -> Result<Vec<ServerKind>> {
    let mut servers = Vec::new();
    let baseline = options.baseline.is_some().then_some(ServerKind::Baseline);
    for kind in ServerKind::ALL.into_iter().chain(baseline) {
        if !options.only.is_empty() && !options.only.contains(&kind) {
            println!("note: {} skipped (--only)", kind.name());
            continue;
        }
        let missing = match kind {
            ServerKind::Inloop => None,
            ServerKind::Baseline if !options.baseline.as_ref().is_some_and(|p| p.is_file()) => {
                Some("--baseline names no file".to_owned())
            }
            ServerKind::Node if !node_server_script().is_file() => Some(format!(
                "the Node server is not installed ({} is missing)",
                node_server_script().display()
            )),
            ServerKind::Node if Command::new("node").arg("--version").output().is_err() => {
                Some("`node` is not on the PATH".to_owned())
            }
            ServerKind::YSweet if y_sweet_binary().is_none() => {
                Some("y-sweet is not installed (no ~/.cargo/bin/y-sweet)".to_owned())
            }
            _ => None,
        };
        if let Some(missing) = missing {
            bail!(
                "{missing}: run scripts/bench-relay.sh, which installs it and runs this bench \
                 (or leave it out with --only inloop)"
            );
        }
        servers.push(kind);
    }
    Ok(servers)
}

fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn node_server_script() -> PathBuf {
    workspace_root().join("node_modules/@y/websocket-server/src/server.js")
}

fn y_sweet_binary() -> Option<PathBuf> {
    let home = std::env::var_os("HOME")?;
    let installed = Path::new(&home).join(".cargo/bin/y-sweet");
    installed.is_file().then_some(installed)
}

/// Every client is a socket here and one on the server: fail early, clearly, if the open-file
/// limit (inherited by the servers) cannot hold them.
fn check_file_limit(options: &Options, scenarios: &[Scenario]) -> Result<()> {
    let most_clients = scenarios
        .iter()
        .map(|scenario| match scenario {
            Scenario::OneDoc => options.clients,
            Scenario::ManyDocs => options.many_clients,
            Scenario::Idle => options.idle + 1,
        })
        .max()
        .unwrap_or(0);
    let limits = std::fs::read_to_string("/proc/self/limits").unwrap_or_default();
    let soft_limit = limits
        .lines()
        .find(|line| line.starts_with("Max open files"))
        .and_then(|line| line.split_whitespace().nth(3))
        .and_then(|soft| soft.parse::<usize>().ok());
    if let Some(soft_limit) = soft_limit {
        ensure!(
            soft_limit >= most_clients + 256,
            "the open-file limit is {soft_limit}, too low for {most_clients} clients: raise it \
             (`ulimit -n 65536`) or use fewer clients"
        );
    }
    Ok(())
}

fn print_setup(options: &Options, servers: &[ServerKind]) {
    println!(
        "relay fan-out bench: {} on {} cores, load generator in this process (same machine)",
        servers
            .iter()
            .map(|s| s.name())
            .collect::<Vec<_>>()
            .join(", "),
        std::thread::available_parallelism().map_or(0, |n| n.get())
    );
    if servers.contains(&ServerKind::Inloop) {
        let defaults = Limits::default();
        let limits = inloop_limits(options);
        let mut changed = Vec::new();
        if limits.max_messages_per_second != defaults.max_messages_per_second {
            changed.push(format!(
                "max_messages_per_second {} -> {}",
                defaults.max_messages_per_second, limits.max_messages_per_second
            ));
        }
        if limits.max_connections_per_document != defaults.max_connections_per_document {
            changed.push(format!(
                "max_connections_per_document {} -> {}",
                defaults.max_connections_per_document, limits.max_connections_per_document
            ));
        }
        if changed.is_empty() {
            changed.push("none".into());
        }
        println!(
            "inloop: relay in a child process, SQLite synced before every send; limits changed: {}",
            changed.join(", ")
        );
    }
    if servers.contains(&ServerKind::Node) {
        println!("node: @y/websocket-server, no persistence (documents in memory only)");
    }
    if servers.contains(&ServerKind::YSweet) {
        println!(
            "y-sweet: `y-sweet serve` with a filesystem store (checkpointed every 10 s), no auth"
        );
    }
}

// ---------------------------------------------------------------------------------------------
// Updates: encoded by hand, read back by header.

fn write_varuint(out: &mut Vec<u8>, mut value: u64) {
    while value >= 0x80 {
        out.push((value as u8 & 0x7f) | 0x80);
        value >>= 7;
    }
    out.push(value as u8);
}

fn write_varstring(out: &mut Vec<u8>, text: &str) {
    write_varuint(out, text.len() as u64);
    out.extend_from_slice(text.as_bytes());
}

/// lib0's signed varint of a non-negative number: 6 bits (and a sign bit) first, then 7 a byte.
fn write_non_negative_varint(out: &mut Vec<u8>, value: u64) {
    let more = if value > 0x3f { 0x80 } else { 0 };
    out.push((value as u8 & 0x3f) | more);
    if value > 0x3f {
        write_varuint(out, value >> 6);
    }
}

/// An item's info byte: its content is Any (ref 8) and it has a parent key (a map entry).
const ITEM_ANY_IN_MAP: u8 = 8 | 0x20;
/// A parent given by root name rather than by item id.
const PARENT_IS_ROOT: u64 = 1;
const ANY_INTEGER: u8 = 125;

/// The y-websocket update frame by which `client` sets "m"["{client}.{clock}"] = clock: an
/// item with no origins, so it depends on no other update.
fn update_frame(client: u64, clock: u64) -> Vec<u8> {
    let mut update = Vec::with_capacity(32);
    write_varuint(&mut update, 1); // clients
    write_varuint(&mut update, 1); // structs of this client
    write_varuint(&mut update, client);
    write_varuint(&mut update, clock);
    update.push(ITEM_ANY_IN_MAP);
    write_varuint(&mut update, PARENT_IS_ROOT);
    write_varstring(&mut update, "m");
    write_varstring(&mut update, &format!("{client}.{clock}"));
    write_varuint(&mut update, 1); // values
    update.push(ANY_INTEGER);
    write_non_negative_varint(&mut update, clock);
    write_varuint(&mut update, 0); // delete set: no clients
    let mut frame = vec![MSG_SYNC, SYNC_UPDATE];
    write_varuint(&mut frame, update.len() as u64);
    frame.extend_from_slice(&update);
    frame
}

/// Applies two encoded updates to a real Yrs document and reads them back, and checks that the
/// receivers' parser finds their client and clock: a broken encoder would otherwise show up only
/// as servers refusing or dropping everything.
fn check_update_encoding() -> Result<()> {
    use yrs::updates::decoder::Decode;
    use yrs::{Any, Doc, Map, Out, Transact, Update};
    let client = 4_242;
    let doc = Doc::new();
    let map = doc.get_or_insert_map("m");
    for clock in [0, 1] {
        let frame = update_frame(client, clock);
        let update = update_payload(&frame).context("the update frame's header")?;
        let decoded = Update::decode_v1(update)
            .map_err(|e| anyhow::anyhow!("yrs cannot decode the bench's update: {e}"))?;
        doc.transact_mut()
            .apply_update(decoded)
            .map_err(|e| anyhow::anyhow!("yrs cannot apply the bench's update: {e}"))?;
        let mut found = Vec::new();
        for_each_item_range(update, |c, range| found.push((c, range)))
            .context("the bench's parser cannot read its own update")?;
        ensure!(
            found == [(client, clock..clock + 1)],
            "the bench's parser read {found:?}"
        );
    }
    let txn = doc.transact();
    for clock in [0, 1] {
        let value = map.get(&txn, &format!("{client}.{clock}"));
        ensure!(
            value == Some(Out::Any(Any::from(clock as i64))),
            "the bench's update for clock {clock} decoded as {value:?}"
        );
    }
    Ok(())
}

struct Reader<'a> {
    bytes: &'a [u8],
}

impl Reader<'_> {
    fn byte(&mut self) -> Option<u8> {
        let (first, rest) = self.bytes.split_first()?;
        self.bytes = rest;
        Some(*first)
    }

    fn skip(&mut self, len: usize) -> Option<()> {
        self.bytes = self.bytes.get(len..)?;
        Some(())
    }

    fn varuint(&mut self) -> Option<u64> {
        let mut value = 0u64;
        for shift in (0..64).step_by(7) {
            let byte = self.byte()?;
            value |= u64::from(byte & 0x7f) << shift;
            if byte & 0x80 == 0 {
                return Some(value);
            }
        }
        None
    }

    fn skip_varint(&mut self) -> Option<()> {
        while self.byte()? & 0x80 != 0 {}
        Some(())
    }

    fn skip_varbytes(&mut self) -> Option<()> {
        let len = self.varuint()?;
        self.skip(usize::try_from(len).ok()?)
    }

    /// Skips one lib0 Any value.
    fn skip_any(&mut self) -> Option<()> {
        match self.byte()? {
            127 | 126 | 121 | 120 => Some(()), // undefined, null, false, true
            125 => self.skip_varint(),
            124 => self.skip(4),
            123 | 122 => self.skip(8),
            119 | 116 => self.skip_varbytes(), // string, buffer
            118 => {
                for _ in 0..self.varuint()? {
                    self.skip_varbytes()?;
                    self.skip_any()?;
                }
                Some(())
            }
            117 => {
                for _ in 0..self.varuint()? {
                    self.skip_any()?;
                }
                Some(())
            }
            _ => None,
        }
    }
}

/// The update inside a y-websocket update frame.
fn update_payload(frame: &[u8]) -> Option<&[u8]> {
    let mut reader = Reader { bytes: frame };
    if reader.byte()? != MSG_SYNC || reader.byte()? != SYNC_UPDATE {
        return None;
    }
    let len = usize::try_from(reader.varuint()?).ok()?;
    reader.bytes.get(..len)
}

/// Calls `found` with every client and clock range of the items of a v1 update, so an update a
/// server merged from several is counted in full. Knows the contents this bench sends (Any)
/// besides GC and skips; `None` for anything else.
fn for_each_item_range(
    update: &[u8],
    mut found: impl FnMut(u64, std::ops::Range<u64>),
) -> Option<()> {
    let mut reader = Reader { bytes: update };
    for _ in 0..reader.varuint()? {
        let structs = reader.varuint()?;
        let client = reader.varuint()?;
        let mut clock = reader.varuint()?;
        for _ in 0..structs {
            let info = reader.byte()?;
            let len = match info & 0x1f {
                0 | 10 => {
                    // GC or skip: a length, no content.
                    clock += reader.varuint()?;
                    continue;
                }
                8 => {
                    let has_origin = info & 0x80 != 0;
                    let has_right_origin = info & 0x40 != 0;
                    if has_origin {
                        reader.varuint()?;
                        reader.varuint()?;
                    }
                    if has_right_origin {
                        reader.varuint()?;
                        reader.varuint()?;
                    }
                    if !has_origin && !has_right_origin {
                        if reader.varuint()? == PARENT_IS_ROOT {
                            reader.skip_varbytes()?;
                        } else {
                            reader.varuint()?;
                            reader.varuint()?;
                        }
                        if info & 0x20 != 0 {
                            reader.skip_varbytes()?;
                        }
                    }
                    let values = reader.varuint()?;
                    for _ in 0..values {
                        reader.skip_any()?;
                    }
                    values
                }
                _ => return None,
            };
            found(client, clock..clock + len);
            clock += len;
        }
    }
    Some(())
}

// ---------------------------------------------------------------------------------------------
// Latency histogram: log-linear buckets in microseconds, within 1/64 of the value.

const SUB_BUCKETS: u64 = 64;
const BUCKETS: usize = (SUB_BUCKETS as usize) * 40;

#[derive(Clone)]
struct Histogram {
    counts: Vec<u64>,
    total: u64,
}

impl Histogram {
    fn new() -> Self {
        Self {
            counts: vec![0; BUCKETS],
            total: 0,
        }
    }

    fn bucket(micros: u64) -> usize {
        if micros < 2 * SUB_BUCKETS {
            return micros as usize;
        }
        let shift = u64::from(63 - micros.leading_zeros()) - 6;
        let index = 2 * SUB_BUCKETS + (shift - 1) * SUB_BUCKETS + ((micros >> shift) - SUB_BUCKETS);
        (index as usize).min(BUCKETS - 1)
    }

    /// The middle of a bucket, in microseconds.
    fn value(bucket: usize) -> f64 {
        let bucket = bucket as u64;
        if bucket < 2 * SUB_BUCKETS {
            return bucket as f64;
        }
        let past = bucket - 2 * SUB_BUCKETS;
        let shift = past / SUB_BUCKETS + 1;
        let low = (past % SUB_BUCKETS + SUB_BUCKETS) << shift;
        low as f64 + (1u64 << shift) as f64 / 2.0
    }

    fn record(&mut self, latency: Duration) {
        self.counts[Self::bucket(latency.as_micros() as u64)] += 1;
        self.total += 1;
    }

    fn merge(&mut self, other: &Histogram) {
        for (mine, theirs) in self.counts.iter_mut().zip(&other.counts) {
            *mine += theirs;
        }
        self.total += other.total;
    }

    /// The `q` quantile in milliseconds; `None` when empty.
    fn quantile_ms(&self, q: f64) -> Option<f64> {
        if self.total == 0 {
            return None;
        }
        let rank = ((self.total as f64 * q).ceil() as u64).max(1);
        let mut seen = 0;
        for (bucket, count) in self.counts.iter().enumerate() {
            seen += count;
            if seen >= rank {
                return Some(Self::value(bucket) / 1_000.0);
            }
        }
        None
    }
}

// ---------------------------------------------------------------------------------------------
// Servers under test, each a child process.

struct Server {
    kind: ServerKind,
    addr: SocketAddr,
    child: Child,
    /// inloop's admin token.
    token: Option<String>,
    /// The data folder and the child's log.
    dir: tempfile::TempDir,
}

impl Server {
    async fn start(kind: ServerKind, options: &Options) -> Result<Self> {
        let dir = tempfile::tempdir()?;
        let port = std::net::TcpListener::bind("127.0.0.1:0")?
            .local_addr()?
            .port();
        let addr = SocketAddr::from(([127, 0, 0, 1], port));
        let log = std::fs::File::create(dir.path().join("server.log"))?;
        let mut command = match kind {
            ServerKind::Inloop | ServerKind::Baseline => {
                let program = match (kind, &options.baseline) {
                    (ServerKind::Baseline, Some(baseline)) => baseline.clone(),
                    _ => std::env::current_exe()?,
                };
                let mut command = Command::new(program);
                command.arg("--serve-inloop").arg(addr.to_string());
                command.arg(dir.path().join("data"));
                // The child computes the same limits from the same options.
                command.arg("--clients").arg(options.clients.to_string());
                command.arg("--idle").arg(options.idle.to_string());
                command
                    .arg("--many-rate")
                    .arg(options.many_rate.to_string());
                let rates: Vec<String> = options.rates.iter().map(f64::to_string).collect();
                command.arg("--rates").arg(rates.join(","));
                command.stdout(Stdio::piped());
                command
            }
            ServerKind::Node => {
                let mut command = Command::new("node");
                command.arg(node_server_script());
                command
                    .env("HOST", "127.0.0.1")
                    .env("PORT", port.to_string());
                command.stdout(log.try_clone()?);
                command
            }
            ServerKind::YSweet => {
                let mut command = Command::new(y_sweet_binary().context("y-sweet")?);
                command.arg("serve").arg("--port").arg(port.to_string());
                command.arg("--host").arg("127.0.0.1");
                command.arg(dir.path().join("store"));
                command.stdout(log.try_clone()?);
                command
            }
        };
        command.stdin(Stdio::null()).stderr(log);
        let mut child = command
            .spawn()
            .with_context(|| format!("starting {}", kind.name()))?;
        let token = match child.stdout.take() {
            Some(stdout) => Some(read_ready_token(stdout).await),
            None => None,
        };
        let mut server = Self {
            kind,
            addr,
            child,
            token: None,
            dir,
        };
        let ready = async {
            server.token = token.transpose()?;
            wait_for_port(addr).await
        };
        if let Err(error) = ready.await {
            bail!(
                "{} did not start: {error:#}\n{}",
                kind.name(),
                server.log_tail()
            );
        }
        Ok(server)
    }

    fn pid(&self) -> u32 {
        self.child.id()
    }

    fn log_tail(&self) -> String {
        let log = std::fs::read_to_string(self.dir.path().join("server.log")).unwrap_or_default();
        let lines: Vec<&str> = log.lines().collect();
        lines[lines.len().saturating_sub(20)..].join("\n")
    }

    /// A new document's WebSocket URL.
    async fn new_doc(&self, name: &str) -> Result<String> {
        let addr = self.addr;
        Ok(match self.kind {
            ServerKind::Inloop | ServerKind::Baseline => {
                let token = self.token.as_deref().context("inloop's token")?;
                let created = http_post_json(addr, "/api/docs", Some(token), "").await?;
                let id = created["id"].as_str().context("POST /api/docs: no id")?;
                format!("ws://{addr}/api/docs/{id}/ws?token={token}")
            }
            ServerKind::Node => format!("ws://{addr}/{name}"),
            ServerKind::YSweet => {
                let created = http_post_json(addr, "/doc/new", None, "{}").await?;
                let id = created["docId"]
                    .as_str()
                    .context("POST /doc/new: no docId")?;
                format!("ws://{addr}/d/{id}/ws/{id}")
            }
        })
    }

    fn usage(&self) -> Usage {
        Usage::of(&format!("/proc/{}", self.pid()))
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The admin token from the `ready TOKEN` line of the inloop child.
async fn read_ready_token(stdout: std::process::ChildStdout) -> Result<String> {
    let stdout = tokio::process::ChildStdout::from_std(stdout)?;
    let mut lines = tokio::io::BufReader::new(stdout).lines();
    let line = tokio::time::timeout(CONNECT_TIMEOUT, lines.next_line())
        .await
        .context("no `ready` line in time")??
        .context("exited before it was ready")?;
    let token = line
        .strip_prefix("ready ")
        .with_context(|| format!("unexpected first line {line:?}"))?;
    Ok(token.to_owned())
}

async fn wait_for_port(addr: SocketAddr) -> Result<()> {
    let deadline = Instant::now() + CONNECT_TIMEOUT;
    loop {
        match tokio::net::TcpStream::connect(addr).await {
            Ok(_) => return Ok(()),
            Err(error) if Instant::now() > deadline => {
                return Err(error).context(format!("nothing listens on {addr}"));
            }
            Err(_) => tokio::time::sleep(Duration::from_millis(20)).await,
        }
    }
}

/// A bare HTTP/1.1 POST answered with JSON (the servers set Content-Length on these).
async fn http_post_json(
    addr: SocketAddr,
    path: &str,
    token: Option<&str>,
    body: &str,
) -> Result<serde_json::Value> {
    let mut stream = tokio::net::TcpStream::connect(addr).await?;
    let auth = token.map_or(String::new(), |t| format!("Authorization: Bearer {t}\r\n"));
    let request = format!(
        "POST {path} HTTP/1.1\r\nHost: {addr}\r\n{auth}Content-Type: application/json\r\n\
         Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    stream.write_all(request.as_bytes()).await?;
    let mut response = Vec::new();
    stream.read_to_end(&mut response).await?;
    let response = String::from_utf8_lossy(&response);
    let (head, body) = response
        .split_once("\r\n\r\n")
        .with_context(|| format!("POST {path}: no response"))?;
    let status = head.split_whitespace().nth(1).unwrap_or("");
    ensure!(status.starts_with('2'), "POST {path}: {head}\n{body}");
    serde_json::from_str(body).with_context(|| format!("POST {path}: not JSON: {body:?}"))
}

/// CPU time and resident memory of a process, from /proc.
#[derive(Debug, Clone, Copy)]
struct Usage {
    cpu: Duration,
    rss_kib: u64,
}

impl Usage {
    fn of(proc_dir: &str) -> Self {
        let stat = std::fs::read_to_string(format!("{proc_dir}/stat")).unwrap_or_default();
        // Fields after the command name (which may hold spaces) start at "state": utime and
        // stime are the 14th and 15th fields of the line, the 12th and 13th after it.
        let after_name = stat.rsplit_once(')').map_or("", |(_, rest)| rest);
        let ticks: u64 = after_name
            .split_whitespace()
            .skip(11)
            .take(2)
            .filter_map(|t| t.parse::<u64>().ok())
            .sum();
        let status = std::fs::read_to_string(format!("{proc_dir}/status")).unwrap_or_default();
        let rss_kib = status
            .lines()
            .find_map(|line| line.strip_prefix("VmRSS:"))
            .and_then(|v| v.split_whitespace().next())
            .and_then(|v| v.parse().ok())
            .unwrap_or(0);
        Self {
            cpu: Duration::from_secs_f64(ticks as f64 / clock_ticks_per_second()),
            rss_kib,
        }
    }

    fn own() -> Self {
        Self::of("/proc/self")
    }
}

fn clock_ticks_per_second() -> f64 {
    static TICKS: std::sync::OnceLock<f64> = std::sync::OnceLock::new();
    *TICKS.get_or_init(|| {
        Command::new("getconf")
            .arg("CLK_TCK")
            .output()
            .ok()
            .and_then(|out| String::from_utf8(out.stdout).ok())
            .and_then(|text| text.trim().parse().ok())
            .unwrap_or(100.0)
    })
}

// ---------------------------------------------------------------------------------------------
// The load: clients, a step, its figures.

type Socket =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// What the clients of a step share.
struct Load {
    /// The clock of every timestamp below.
    epoch: Instant,
    /// The Yjs client id of sender 0; sender `i` is `first_client + i`.
    first_client: u64,
    /// Send time of each sender's clock, in nanoseconds since `epoch` plus one; 0: not sent.
    sent_at: Vec<Vec<AtomicU64>>,
    /// Updates sent in [measure_from, measure_until) (nanoseconds since `epoch`) are measured.
    measure_from: AtomicU64,
    measure_until: AtomicU64,
    /// Updates sent in the measured window.
    measured_sent: AtomicU64,
    /// Deliveries of measured updates.
    delivered: AtomicU64,
    /// Clients that finished the handshake.
    synced: AtomicUsize,
    /// Connections that ended before the step did.
    dropped: AtomicUsize,
    /// Update frames whose items the parser could not read, or with unknown senders.
    unreadable: AtomicU64,
    /// Update frames that carried more than one item (merged by the server).
    merged: AtomicU64,
}

impl Load {
    /// Shared state for `senders` clients sending up to `per_sender` updates each.
    fn new(first_client: u64, senders: usize, per_sender: usize) -> Self {
        Self {
            epoch: Instant::now(),
            first_client,
            sent_at: (0..senders)
                .map(|_| (0..per_sender).map(|_| AtomicU64::new(0)).collect())
                .collect(),
            measure_from: AtomicU64::new(u64::MAX),
            measure_until: AtomicU64::new(u64::MAX),
            measured_sent: AtomicU64::new(0),
            delivered: AtomicU64::new(0),
            synced: AtomicUsize::new(0),
            dropped: AtomicUsize::new(0),
            unreadable: AtomicU64::new(0),
            merged: AtomicU64::new(0),
        }
    }

    fn nanos(&self, at: Instant) -> u64 {
        at.duration_since(self.epoch).as_nanos() as u64
    }
}

/// What a client is doing; clients watch it.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Phase {
    Syncing,
    Sending { start: Instant, until: Instant },
    Stopped,
}

/// One client's result.
struct Tally {
    latencies: Histogram,
}

struct Peer {
    /// Index into `Load::sent_at`.
    index: usize,
    client_id: u64,
    /// Updates per second; 0 for an idle client.
    rate: f64,
}

/// A step's figures.
#[derive(Debug, Clone, Copy)]
struct Figures {
    offered_per_s: f64,
    delivered_per_s: f64,
    delivered_share: f64,
    p50_ms: Option<f64>,
    p99_ms: Option<f64>,
    server_cpu_percent: f64,
    server_rss_mib: f64,
    bench_cpu_percent: f64,
    dropped: usize,
    /// Clients that did not stop in time (blocked sending to a server that stopped reading).
    stuck: usize,
    unreadable: u64,
    merged: u64,
}

impl Figures {
    fn lossless(&self) -> bool {
        self.delivered_share >= 1.0
    }

    fn exhausted(&self) -> bool {
        !self.lossless()
            || self
                .p99_ms
                .is_none_or(|p99| p99 > P99_CEILING.as_secs_f64() * 1e3)
    }
}

async fn connect(url: &str) -> Result<Socket> {
    let config = WebSocketConfig::default().max_message_size(Some(64 << 20));
    let (socket, _) = tokio_tungstenite::connect_async_with_config(url, Some(config), true).await?;
    Ok(socket)
}

/// A client's life: handshake, then sending at its rate (with jitter) while counting what it
/// receives, until the phase says stop.
async fn run_client(
    mut socket: Socket,
    peer: Peer,
    load: Arc<Load>,
    mut phase: watch::Receiver<Phase>,
) -> Tally {
    let mut tally = Tally {
        latencies: Histogram::new(),
    };
    let mut synced = false;
    let mut clock = 0u64;
    let mut next_send: Option<tokio::time::Instant> = None;
    let mut send_until = Instant::now();
    let mut measure = (u64::MAX, u64::MAX);
    let interval = (peer.rate > 0.0).then(|| Duration::from_secs_f64(1.0 / peer.rate));
    if socket
        .send(Message::binary(Bytes::from_static(&SYNC_STEP1_EMPTY)))
        .await
        .is_err()
    {
        load.dropped.fetch_add(1, Relaxed);
        return tally;
    }
    loop {
        let send_due = async {
            match next_send {
                Some(at) => tokio::time::sleep_until(at).await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            message = socket.next() => {
                let frame = match message {
                    Some(Ok(Message::Binary(frame))) => frame,
                    Some(Ok(Message::Close(_)) | Err(_)) | None => {
                        if *phase.borrow() != Phase::Stopped {
                            load.dropped.fetch_add(1, Relaxed);
                        }
                        return tally;
                    }
                    Some(Ok(_)) => continue,
                };
                match frame.get(..2) {
                    Some([MSG_SYNC, SYNC_STEP1]) => {
                        let reply = Message::binary(Bytes::from_static(&SYNC_STEP2_EMPTY));
                        if socket.send(reply).await.is_err() {
                            load.dropped.fetch_add(1, Relaxed);
                            return tally;
                        }
                    }
                    Some([MSG_SYNC, SYNC_STEP2]) if !synced => {
                        synced = true;
                        load.synced.fetch_add(1, Relaxed);
                    }
                    Some([MSG_SYNC, SYNC_UPDATE]) => {
                        count_update(&frame, &peer, &load, measure, &mut tally);
                    }
                    _ => {}
                }
            }
            _ = send_due => {
                let now = Instant::now();
                let sent_at = load.sent_at[peer.index].get(clock as usize);
                let (Some(interval), Some(sent_at)) = (interval, sent_at) else {
                    next_send = None;
                    continue;
                };
                if now >= send_until {
                    next_send = None;
                    continue;
                }
                let nanos = load.nanos(now);
                sent_at.store(nanos + 1, Release);
                if (measure.0..measure.1).contains(&nanos) {
                    load.measured_sent.fetch_add(1, Relaxed);
                }
                let frame = Message::binary(update_frame(peer.client_id, clock));
                clock += 1;
                if socket.send(frame).await.is_err() {
                    load.dropped.fetch_add(1, Relaxed);
                    return tally;
                }
                let jitter = 0.5 + fastrand::f64();
                let after = next_send.unwrap_or_else(tokio::time::Instant::now);
                next_send = Some(after + interval.mul_f64(jitter));
            }
            changed = phase.changed() => {
                if changed.is_err() {
                    return tally;
                }
                let current = *phase.borrow_and_update();
                match current {
                    Phase::Syncing => {}
                    Phase::Sending { start, until } => {
                        send_until = until;
                        measure = (
                            load.measure_from.load(Relaxed),
                            load.measure_until.load(Relaxed),
                        );
                        next_send = interval.map(|interval| {
                            tokio::time::Instant::from_std(start) + interval.mul_f64(fastrand::f64())
                        });
                    }
                    Phase::Stopped => {
                        let _ = socket.close(None).await;
                        return tally;
                    }
                }
            }
        }
    }
}

/// Counts the measured deliveries in an update frame, skipping the receiver's own updates.
fn count_update(
    frame: &[u8],
    peer: &Peer,
    load: &Load,
    (measure_from, measure_until): (u64, u64),
    tally: &mut Tally,
) {
    let Some(update) = update_payload(frame) else {
        load.unreadable.fetch_add(1, Relaxed);
        return;
    };
    let now = load.nanos(Instant::now());
    let mut items = 0;
    let mut delivered = 0;
    let mut unknown = false;
    let parsed = for_each_item_range(update, |client, clocks| {
        items += clocks.end - clocks.start;
        if client == peer.client_id {
            return; // an echo of our own update
        }
        let Some(sender) = client
            .checked_sub(load.first_client)
            .and_then(|i| load.sent_at.get(i as usize))
        else {
            unknown = true;
            return;
        };
        for clock in clocks {
            let sent = sender.get(clock as usize).map_or(0, |t| t.load(Acquire));
            if sent == 0 {
                unknown = true;
                continue;
            }
            let sent = sent - 1;
            if (measure_from..measure_until).contains(&sent) {
                delivered += 1;
                tally
                    .latencies
                    .record(Duration::from_nanos(now.saturating_sub(sent)));
            }
        }
    });
    if parsed.is_none() || unknown {
        load.unreadable.fetch_add(1, Relaxed);
    }
    if items > 1 {
        load.merged.fetch_add(1, Relaxed);
    }
    if delivered > 0 {
        load.delivered.fetch_add(delivered, Relaxed);
    }
}

/// One measured run: `clients_per_doc` clients on each of `docs`, each sending `rate` a second.
async fn run_step(
    server: &Server,
    docs: &[String],
    clients_per_doc: usize,
    rate: f64,
    seconds: f64,
    first_client: u64,
) -> Result<Figures> {
    let senders = docs.len() * clients_per_doc;
    let window = Duration::from_secs_f64(seconds);
    // Room for every update the schedule can produce; jitter keeps it near rate x duration.
    let per_sender = (rate * (WARM_UP + window).as_secs_f64() * 1.5).ceil() as usize + 8;
    let load = Arc::new(Load::new(first_client, senders, per_sender));
    let (phase_tx, phase_rx) = watch::channel(Phase::Syncing);
    let clients = connect_clients(docs, clients_per_doc, 0, rate, &load, &phase_rx).await?;
    wait_until("every client synced", CONNECT_TIMEOUT, || {
        load.synced.load(Relaxed) + load.dropped.load(Relaxed) >= senders
    })
    .await?;
    ensure!(
        load.dropped.load(Relaxed) == 0,
        "{} clients were disconnected during the handshake",
        load.dropped.load(Relaxed)
    );

    let start = Instant::now() + Duration::from_millis(50);
    let measure_from = start + WARM_UP;
    let until = measure_from + window;
    load.measure_from.store(load.nanos(measure_from), Relaxed);
    load.measure_until.store(load.nanos(until), Relaxed);
    phase_tx.send_replace(Phase::Sending { start, until });

    tokio::time::sleep_until(measure_from.into()).await;
    let (server_before, bench_before) = (server.usage(), Usage::own());
    tokio::time::sleep_until(until.into()).await;
    let (server_after, bench_after) = (server.usage(), Usage::own());

    let receivers = (clients_per_doc - 1) as u64;
    let expected = || load.measured_sent.load(Relaxed) * receivers;
    let _ = wait_until("late deliveries", DRAIN, || {
        load.delivered.load(Relaxed) >= expected()
    })
    .await;
    phase_tx.send_replace(Phase::Stopped);
    let (latencies, stuck) = stop_clients(clients).await?;

    let expected = expected();
    let delivered = load.delivered.load(Relaxed);
    let cpu_percent = |before: Usage, after: Usage| {
        (after.cpu.saturating_sub(before.cpu)).as_secs_f64() / seconds * 100.0
    };
    Ok(Figures {
        offered_per_s: expected as f64 / seconds,
        delivered_per_s: delivered as f64 / seconds,
        delivered_share: if expected == 0 {
            0.0
        } else {
            delivered as f64 / expected as f64
        },
        p50_ms: latencies.quantile_ms(0.50),
        p99_ms: latencies.quantile_ms(0.99),
        server_cpu_percent: cpu_percent(server_before, server_after),
        server_rss_mib: server_after.rss_kib as f64 / 1024.0,
        bench_cpu_percent: cpu_percent(bench_before, bench_after),
        dropped: load.dropped.load(Relaxed),
        stuck,
        unreadable: load.unreadable.load(Relaxed),
        merged: load.merged.load(Relaxed),
    })
}

/// Connects and starts `clients_per_doc` clients on each document, numbered from `first_index`.
async fn connect_clients(
    docs: &[String],
    clients_per_doc: usize,
    first_index: usize,
    rate: f64,
    load: &Arc<Load>,
    phase: &watch::Receiver<Phase>,
) -> Result<Vec<tokio::task::JoinHandle<Tally>>> {
    let in_flight = Arc::new(Semaphore::new(CONNECTS_IN_FLIGHT));
    let mut connecting = Vec::new();
    for (d, url) in docs.iter().enumerate() {
        for c in 0..clients_per_doc {
            let url = url.clone();
            let in_flight = in_flight.clone();
            let index = first_index + d * clients_per_doc + c;
            let peer = Peer {
                index,
                client_id: load.first_client + index as u64,
                rate,
            };
            let (load, phase) = (load.clone(), phase.clone());
            connecting.push(tokio::spawn(async move {
                let permit = in_flight.acquire_owned().await?;
                let socket = tokio::time::timeout(CONNECT_TIMEOUT, connect(&url))
                    .await
                    .with_context(|| format!("connecting to {url}: timed out"))?
                    .with_context(|| format!("connecting to {url}"))?;
                drop(permit);
                anyhow::Ok(tokio::spawn(run_client(socket, peer, load, phase)))
            }));
        }
    }
    let mut clients = Vec::with_capacity(connecting.len());
    for connection in connecting {
        clients.push(connection.await??);
    }
    Ok(clients)
}

/// Waits for the clients to stop (after `Phase::Stopped`) and merges their latencies. A client
/// blocked sending to a server that no longer reads is ended instead; returns how many were.
async fn stop_clients(clients: Vec<tokio::task::JoinHandle<Tally>>) -> Result<(Histogram, usize)> {
    let deadline = tokio::time::Instant::now() + STOP_TIMEOUT;
    let mut latencies = Histogram::new();
    let mut stuck = 0;
    for mut client in clients {
        match tokio::time::timeout_at(deadline, &mut client).await {
            Ok(tally) => latencies.merge(&tally?.latencies),
            Err(_) => {
                client.abort();
                stuck += 1;
            }
        }
    }
    Ok((latencies, stuck))
}

/// The server's RSS once it has settled: the median of samples taken over a second, after a
/// second of quiet (allocators hand memory back to the system with a delay).
async fn settled_rss(server: &Server) -> u64 {
    tokio::time::sleep(Duration::from_secs(1)).await;
    let mut samples = Vec::new();
    for _ in 0..5 {
        samples.push(server.usage().rss_kib);
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    samples.sort_unstable();
    samples[samples.len() / 2]
}

async fn wait_until(what: &str, limit: Duration, done: impl Fn() -> bool) -> Result<()> {
    let deadline = Instant::now() + limit;
    while !done() {
        ensure!(Instant::now() < deadline, "{what}: not within {limit:?}");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// Scenarios and their tables.

struct Bench {
    options: Options,
    servers: Vec<ServerKind>,
    /// Yjs client ids are unique across the run.
    next_client_id: u64,
    /// Lines about the targets, printed at the end.
    verdicts: Vec<String>,
}

const HEADER: &str = "  server     offered/s  delivered/s  delivered   p50 ms   p99 ms  server CPU  server RSS  bench CPU";

fn print_row(server: ServerKind, figures: &Figures) {
    let ms = |v: Option<f64>| v.map_or("-".to_owned(), |v| format!("{v:.1}"));
    let mut notes = Vec::new();
    if figures.dropped > 0 {
        notes.push(format!("{} clients disconnected", figures.dropped));
    }
    if figures.stuck > 0 {
        notes.push(format!(
            "{} clients stuck, their latencies left out",
            figures.stuck
        ));
    }
    if figures.merged > 0 {
        notes.push(format!(
            "{} merged updates (counted in full)",
            figures.merged
        ));
    }
    if figures.unreadable > 0 {
        notes.push(format!("{} unreadable update frames", figures.unreadable));
    }
    println!(
        "  {:<8} {:>11} {:>12} {:>9.2}% {:>8} {:>8} {:>10.0}% {:>6.1} MiB {:>9.0}%{}",
        server.name(),
        thousands(figures.offered_per_s),
        thousands(figures.delivered_per_s),
        figures.delivered_share * 100.0,
        ms(figures.p50_ms),
        ms(figures.p99_ms),
        figures.server_cpu_percent,
        figures.server_rss_mib,
        figures.bench_cpu_percent,
        if notes.is_empty() {
            String::new()
        } else {
            format!("  ({})", notes.join("; "))
        }
    );
}

fn thousands(value: f64) -> String {
    let digits = format!("{:.0}", value);
    let mut out = String::new();
    for (i, digit) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(digit);
    }
    out
}

impl Bench {
    fn client_ids(&mut self, count: usize) -> u64 {
        let first = self.next_client_id;
        self.next_client_id += count as u64;
        first
    }

    async fn measure(
        &mut self,
        kind: ServerKind,
        docs: usize,
        clients_per_doc: usize,
        rate: f64,
    ) -> Result<Figures> {
        let server = Server::start(kind, &self.options).await?;
        let mut urls = Vec::with_capacity(docs);
        for d in 0..docs {
            urls.push(server.new_doc(&format!("bench-{d}")).await?);
        }
        let first_client = self.client_ids(docs * clients_per_doc);
        let seconds = self.options.seconds;
        run_step(&server, &urls, clients_per_doc, rate, seconds, first_client)
            .await
            .with_context(|| format!("{} at {rate}/s per client", kind.name()))
    }

    async fn one_doc(&mut self) -> Result<()> {
        let clients = self.options.clients;
        println!(
            "\none document, {clients} clients ({} receivers per update), {} s measured after \
             {} s warm-up; per-client rate stepped up until a server loses updates or p99 > {} s",
            clients - 1,
            self.options.seconds,
            WARM_UP.as_secs(),
            P99_CEILING.as_secs()
        );
        println!("rate/client{HEADER}");
        let mut running = self.servers.clone();
        let mut steps: Vec<(ServerKind, f64, Figures)> = Vec::new();
        for rate in self.options.rates.clone() {
            if running.is_empty() {
                break;
            }
            let mut label = format!("{rate}/s");
            for kind in running.clone() {
                let figures = self.measure(kind, 1, clients, rate).await?;
                print!("{label:<11}");
                label.clear();
                print_row(kind, &figures);
                if figures.exhausted() {
                    running.retain(|k| *k != kind);
                }
                steps.push((kind, rate, figures));
            }
        }
        let target_p99_ms = TARGET_P99.as_secs_f64() * 1e3;
        // The highest delivered/s of a server's steps that pass `keep`.
        let best = |kind: ServerKind, keep: &dyn Fn(&Figures) -> bool| {
            steps
                .iter()
                .filter(|(k, _, f)| *k == kind && keep(f))
                .map(|(_, rate, f)| (*rate, *f))
                .max_by(|a, b| a.1.delivered_per_s.total_cmp(&b.1.delivered_per_s))
        };
        let lossless = |kind| best(kind, &|f: &Figures| f.lossless());
        let fast = |kind| {
            best(kind, &|f: &Figures| {
                f.lossless() && f.p99_ms.is_some_and(|p| p < target_p99_ms)
            })
        };
        let describe = |found: Option<(f64, Figures)>| match found {
            Some((rate, f)) => format!(
                "{:>9}/s at {rate}/s per client (p99 {} ms)",
                thousands(f.delivered_per_s),
                f.p99_ms.map_or("-".into(), |v| format!("{v:.1}"))
            ),
            None => "none".to_owned(),
        };
        println!(
            "highest delivered/s with 100% delivered (lossless maximum), and with p99 under {} \
             ms too:",
            TARGET_P99.as_millis()
        );
        for kind in self.servers.clone() {
            println!(
                "  {:<8} lossless {:<46} p99 < {} ms: {}{}",
                kind.name(),
                describe(lossless(kind)),
                TARGET_P99.as_millis(),
                describe(fast(kind)),
                if running.contains(&kind) {
                    "  (no limit reached: add higher --rates)"
                } else {
                    ""
                }
            );
        }
        if self.servers.contains(&ServerKind::Inloop) {
            let inloop_fast = fast(ServerKind::Inloop).map_or(0.0, |(_, f)| f.delivered_per_s);
            let verdict = if self.servers.contains(&ServerKind::YSweet) {
                let y_sweet = lossless(ServerKind::YSweet).map_or(0.0, |(_, f)| f.delivered_per_s);
                let ratio = inloop_fast / y_sweet;
                format!(
                    "one document, {clients} clients: inloop delivers {}/s losslessly with p99 \
                     < {} ms: {ratio:.2}x y-sweet's lossless maximum of {}/s (target >= {}x): {}",
                    thousands(inloop_fast),
                    TARGET_P99.as_millis(),
                    thousands(y_sweet),
                    TARGET_SPEEDUP_OVER_Y_SWEET,
                    if ratio >= TARGET_SPEEDUP_OVER_Y_SWEET {
                        "met"
                    } else {
                        "NOT met"
                    }
                )
            } else {
                format!(
                    "one document, {clients} clients: inloop delivers {}/s losslessly with p99 \
                     < {} ms (y-sweet not run: no ratio)",
                    thousands(inloop_fast),
                    TARGET_P99.as_millis()
                )
            };
            self.verdicts.push(verdict);
        }
        Ok(())
    }

    async fn many_docs(&mut self) -> Result<()> {
        let docs = self.options.docs;
        let per_doc = self.options.many_clients / docs;
        let rate = self.options.many_rate;
        println!(
            "\n{} clients on {docs} documents ({per_doc} each, {} receivers per update), {rate} \
             updates/s per client, {} s measured after {} s warm-up",
            per_doc * docs,
            per_doc - 1,
            self.options.seconds,
            WARM_UP.as_secs()
        );
        println!("           {HEADER}");
        for kind in self.servers.clone() {
            let figures = self.measure(kind, docs, per_doc, rate).await?;
            print!("{:<11}", "");
            print_row(kind, &figures);
            if kind == ServerKind::Inloop {
                let met = figures.lossless()
                    && figures
                        .p99_ms
                        .is_some_and(|p| p < TARGET_P99.as_secs_f64() * 1e3);
                self.verdicts.push(format!(
                    "{} clients on {docs} documents: inloop p99 {} ms, {:.2}% delivered (target \
                     p99 < {} ms, 100%): {}",
                    per_doc * docs,
                    figures.p99_ms.map_or("-".into(), |v| format!("{v:.1}")),
                    figures.delivered_share * 100.0,
                    TARGET_P99.as_millis(),
                    if met { "met" } else { "NOT met" }
                ));
            }
        }
        Ok(())
    }

    async fn idle(&mut self) -> Result<()> {
        let idle = self.options.idle;
        println!(
            "\nidle memory: server RSS with 1 client on a document, then with {idle} more idle \
             clients (synced, silent)"
        );
        println!("  server     RSS before    RSS after   KiB per idle connection");
        for kind in self.servers.clone() {
            let server = Server::start(kind, &self.options).await?;
            let url = server.new_doc("idle").await?;
            let first_client = self.client_ids(idle + 1);
            let load = Arc::new(Load::new(first_client, 0, 0));
            let (phase_tx, phase_rx) = watch::channel(Phase::Syncing);
            let mut clients =
                connect_clients(std::slice::from_ref(&url), 1, 0, 0.0, &load, &phase_rx).await?;
            wait_until("the first client synced", CONNECT_TIMEOUT, || {
                load.synced.load(Relaxed) >= 1
            })
            .await?;
            let before = settled_rss(&server).await;
            clients.extend(connect_clients(&[url], idle, 1, 0.0, &load, &phase_rx).await?);
            wait_until("every idle client synced", CONNECT_TIMEOUT, || {
                load.synced.load(Relaxed) + load.dropped.load(Relaxed) > idle
            })
            .await?;
            let after = settled_rss(&server).await;
            let dropped = load.dropped.load(Relaxed);
            phase_tx.send_replace(Phase::Stopped);
            stop_clients(clients).await?;
            let per_connection = after.saturating_sub(before) as f64 / idle as f64;
            println!(
                "  {:<8} {:>8.1} MiB {:>8.1} MiB {:>12.1}{}",
                kind.name(),
                before as f64 / 1024.0,
                after as f64 / 1024.0,
                per_connection,
                if dropped > 0 {
                    format!("  ({dropped} clients disconnected)")
                } else {
                    String::new()
                }
            );
            if kind == ServerKind::Inloop {
                self.verdicts.push(format!(
                    "idle: inloop {per_connection:.1} KiB per idle connection (target <= \
                     {TARGET_IDLE_KIB} KiB): {}",
                    if per_connection <= TARGET_IDLE_KIB {
                        "met"
                    } else {
                        "NOT met"
                    }
                ));
            }
        }
        Ok(())
    }
}
