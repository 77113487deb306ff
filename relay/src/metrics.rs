//! Counters for `GET /metrics`, in Prometheus' text format.

use std::fmt::Write;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::Duration;

/// Upper bounds of the persistence latency histogram, in seconds.
const LATENCY_BUCKETS: [f64; 10] = [0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.5, 1.0];

#[derive(Debug, Default)]
pub(crate) struct Metrics {
    pub(crate) connections: AtomicU64,
    pub(crate) documents_loaded: AtomicU64,
    pub(crate) lease_holders: AtomicU64,
    pub(crate) updates_in: AtomicU64,
    pub(crate) updates_out: AtomicU64,
    pub(crate) bytes_in: AtomicU64,
    pub(crate) bytes_out: AtomicU64,
    pub(crate) disconnects_slow: AtomicU64,
    pub(crate) disconnects_protocol: AtomicU64,
    pub(crate) disconnects_unresponsive: AtomicU64,
    pub(crate) pings: AtomicU64,
    pub(crate) tcp_connections: AtomicU64,
    pub(crate) tcp_refused: AtomicU64,
    pub(crate) http_timeouts: AtomicU64,
    persist_buckets: [AtomicU64; LATENCY_BUCKETS.len()],
    persist_count: AtomicU64,
    persist_micros: AtomicU64,
}

impl Metrics {
    pub(crate) fn observe_persist(&self, took: Duration) {
        let seconds = took.as_secs_f64();
        for (bound, bucket) in LATENCY_BUCKETS.iter().zip(&self.persist_buckets) {
            if seconds <= *bound {
                bucket.fetch_add(1, Relaxed);
            }
        }
        self.persist_count.fetch_add(1, Relaxed);
        self.persist_micros
            .fetch_add(took.as_micros() as u64, Relaxed);
    }

    pub(crate) fn render(&self) -> String {
        let mut out = String::new();
        let mut metric = |name: &str, kind: &str, help: &str, value: &AtomicU64| {
            let _ = writeln!(
                out,
                "# HELP inloop_{name} {help}\n# TYPE inloop_{name} {kind}"
            );
            let _ = writeln!(out, "inloop_{name} {}", value.load(Relaxed));
        };
        metric(
            "connections",
            "gauge",
            "Open WebSocket connections.",
            &self.connections,
        );
        metric(
            "documents_loaded",
            "gauge",
            "Documents held in memory.",
            &self.documents_loaded,
        );
        metric(
            "lease_holders",
            "gauge",
            "Documents whose runtime lease is held.",
            &self.lease_holders,
        );
        metric(
            "updates_in_total",
            "counter",
            "Document updates received from peers.",
            &self.updates_in,
        );
        metric(
            "updates_out_total",
            "counter",
            "Document updates sent to peers (once per receiver).",
            &self.updates_out,
        );
        metric(
            "bytes_in_total",
            "counter",
            "WebSocket payload bytes received.",
            &self.bytes_in,
        );
        metric(
            "bytes_out_total",
            "counter",
            "WebSocket payload bytes sent.",
            &self.bytes_out,
        );
        metric(
            "disconnects_slow_total",
            "counter",
            "Peers disconnected because they did not keep up.",
            &self.disconnects_slow,
        );
        metric(
            "disconnects_protocol_total",
            "counter",
            "Peers disconnected for bad messages or broken limits.",
            &self.disconnects_protocol,
        );
        metric(
            "disconnects_unresponsive_total",
            "counter",
            "Peers dropped because they answered no ping (dead or half-open connections).",
            &self.disconnects_unresponsive,
        );
        metric(
            "pings_total",
            "counter",
            "WebSocket pings sent to peers (a peer that answers none is dropped).",
            &self.pings,
        );
        metric(
            "tcp_connections",
            "gauge",
            "Open TCP connections, HTTP and WebSocket.",
            &self.tcp_connections,
        );
        metric(
            "tcp_refused_total",
            "counter",
            "Connections refused at accept: their address held its limit of connections.",
            &self.tcp_refused,
        );
        metric(
            "http_timeouts_total",
            "counter",
            "HTTP connections closed for a request head too slow or nothing moving.",
            &self.http_timeouts,
        );

        let name = "inloop_persist_seconds";
        let _ = writeln!(
            out,
            "# HELP {name} Time to append a batch of updates durably."
        );
        let _ = writeln!(out, "# TYPE {name} histogram");
        for (bound, bucket) in LATENCY_BUCKETS.iter().zip(&self.persist_buckets) {
            let _ = writeln!(
                out,
                "{name}_bucket{{le=\"{bound}\"}} {}",
                bucket.load(Relaxed)
            );
        }
        let count = self.persist_count.load(Relaxed);
        let _ = writeln!(out, "{name}_bucket{{le=\"+Inf\"}} {count}");
        let sum = self.persist_micros.load(Relaxed) as f64 / 1e6;
        let _ = writeln!(out, "{name}_sum {sum}\n{name}_count {count}");
        out
    }
}
