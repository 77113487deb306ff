//! The bench's command line: what to load the servers with, and which servers and scenarios.

use std::path::PathBuf;

use clap::{Parser, ValueEnum};

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
pub(crate) struct Options {
    /// Clients on the one document of the one-doc scenario.
    #[arg(long, default_value_t = 200)]
    pub(crate) clients: usize,
    /// Updates per second per client, the steps of the one-doc scenario.
    #[arg(long, value_delimiter = ',', default_value = "1,2,3,4,6,8,12,16,24,32")]
    pub(crate) rates: Vec<f64>,
    /// Documents of the many-docs scenario.
    #[arg(long, default_value_t = 100)]
    pub(crate) docs: usize,
    /// Clients of the many-docs scenario, spread evenly over --docs.
    #[arg(long, default_value_t = 1_000)]
    pub(crate) many_clients: usize,
    /// Updates per second per client in the many-docs scenario.
    #[arg(long, default_value_t = 2.0)]
    pub(crate) many_rate: f64,
    /// Measured seconds of each step (after 1 s of warm-up).
    #[arg(long, default_value_t = 5.0)]
    pub(crate) seconds: f64,
    /// Idle clients of the idle-memory scenario.
    #[arg(long, default_value_t = 1_000)]
    pub(crate) idle: usize,
    /// Only these servers (repeatable); default: all three.
    #[arg(long, value_enum)]
    pub(crate) only: Vec<ServerKind>,
    /// Only these scenarios (repeatable); default: all three.
    #[arg(long, value_enum)]
    pub(crate) scenario: Vec<Scenario>,
    /// Another build of this bench (`target/release/deps/fanout-*` built from an earlier
    /// commit): its inloop relay runs too, as `inloop-before`, so that a change's cost shows
    /// side by side in one run.
    #[arg(long, value_name = "BENCH_BINARY")]
    pub(crate) baseline: Option<PathBuf>,
    /// Internal: serve inloop's relay on ADDR with data in DATA_DIR (the bench starts itself so).
    #[arg(long, hide = true, num_args = 2, value_names = ["ADDR", "DATA_DIR"])]
    pub(crate) serve_inloop: Option<Vec<String>>,
    /// Passed by `cargo bench`; ignored.
    #[arg(long, hide = true)]
    bench: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub(crate) enum ServerKind {
    Inloop,
    Node,
    #[value(name = "y-sweet")]
    YSweet,
    /// inloop's relay as built by `--baseline`.
    #[value(name = "inloop-before")]
    Baseline,
}

impl ServerKind {
    pub(crate) const ALL: [ServerKind; 3] =
        [ServerKind::Inloop, ServerKind::Node, ServerKind::YSweet];

    pub(crate) fn name(self) -> &'static str {
        match self {
            ServerKind::Inloop => "inloop",
            ServerKind::Node => "node",
            ServerKind::YSweet => "y-sweet",
            ServerKind::Baseline => "inloop-before",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub(crate) enum Scenario {
    OneDoc,
    ManyDocs,
    Idle,
}
