//! What the bench prints: its setup, a row of figures per server and step, and the verdicts
//! against the targets of issue 3.

use inloop_relay::Limits;

use crate::measure::Figures;
use crate::options::{Options, ServerKind};
use crate::servers::inloop_limits;

/// What runs against what, before the first table.
pub(crate) fn print_setup(options: &Options, servers: &[ServerKind]) {
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

/// The lines about the targets of issue 3, at the end of the run.
pub(crate) fn print_verdicts(verdicts: &[String]) {
    if !verdicts.is_empty() {
        println!(
            "\ntargets (issue 3), for inloop on this machine with the load generator beside it"
        );
        for verdict in verdicts {
            println!("  {verdict}");
        }
    }
}

pub(crate) const HEADER: &str = "  server     offered/s  delivered/s  delivered   p50 ms   p99 ms  server CPU  server RSS  bench CPU";

pub(crate) fn print_row(server: ServerKind, figures: &Figures) {
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

pub(crate) fn thousands(value: f64) -> String {
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
