//! Measurement: one measured step of the load and its figures, the latency histogram, and the
//! CPU time and memory of a process.

use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;
use std::time::{Duration, Instant};

use anyhow::{Result, ensure};
use tokio::sync::watch;

use crate::peers::{CONNECT_TIMEOUT, Load, Phase, connect_clients, stop_clients, wait_until};
use crate::servers::Server;

pub(crate) const WARM_UP: Duration = Duration::from_secs(1);
const DRAIN: Duration = Duration::from_secs(3);
/// Fan-out steps stop for a server once its p99 passes this.
pub(crate) const P99_CEILING: Duration = Duration::from_secs(1);

// ---------------------------------------------------------------------------------------------
// Latency histogram: log-linear buckets in microseconds, within 1/64 of the value.

const SUB_BUCKETS: u64 = 64;
const BUCKETS: usize = (SUB_BUCKETS as usize) * 40;

#[derive(Clone)]
pub(crate) struct Histogram {
    counts: Vec<u64>,
    total: u64,
}

impl Histogram {
    pub(crate) fn new() -> Self {
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

    pub(crate) fn record(&mut self, latency: Duration) {
        self.counts[Self::bucket(latency.as_micros() as u64)] += 1;
        self.total += 1;
    }

    pub(crate) fn merge(&mut self, other: &Histogram) {
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
// CPU time and memory of a process.

/// CPU time and resident memory of a process, from /proc.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Usage {
    cpu: Duration,
    rss_kib: u64,
}

impl Usage {
    pub(crate) fn of(proc_dir: &str) -> Self {
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
// One measured step and its figures.

/// A step's figures.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Figures {
    pub(crate) offered_per_s: f64,
    pub(crate) delivered_per_s: f64,
    pub(crate) delivered_share: f64,
    pub(crate) p50_ms: Option<f64>,
    pub(crate) p99_ms: Option<f64>,
    pub(crate) server_cpu_percent: f64,
    pub(crate) server_rss_mib: f64,
    pub(crate) bench_cpu_percent: f64,
    pub(crate) dropped: usize,
    /// Clients that did not stop in time (blocked sending to a server that stopped reading).
    pub(crate) stuck: usize,
    pub(crate) unreadable: u64,
    pub(crate) merged: u64,
}

impl Figures {
    pub(crate) fn lossless(&self) -> bool {
        self.delivered_share >= 1.0
    }

    pub(crate) fn exhausted(&self) -> bool {
        !self.lossless()
            || self
                .p99_ms
                .is_none_or(|p99| p99 > P99_CEILING.as_secs_f64() * 1e3)
    }
}

/// One measured run: `clients_per_doc` clients on each of `docs`, each sending `rate` a second.
pub(crate) async fn run_step(
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

/// The server's RSS once it has settled: the median of samples taken over a second, after a
/// second of quiet (allocators hand memory back to the system with a delay).
pub(crate) async fn settled_rss(server: &Server) -> u64 {
    tokio::time::sleep(Duration::from_secs(1)).await;
    let mut samples = Vec::new();
    for _ in 0..5 {
        samples.push(server.usage().rss_kib);
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    samples.sort_unstable();
    samples[samples.len() / 2]
}
