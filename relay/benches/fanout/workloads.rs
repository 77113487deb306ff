//! The scenarios (one document stepped up in rate, many documents, idle memory), each run
//! against every server, and their tables and verdicts against the targets of issue 3.

use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;
use std::time::Duration;

use anyhow::{Context, Result};
use tokio::sync::watch;

use crate::measure::{Figures, P99_CEILING, WARM_UP, run_step, settled_rss};
use crate::options::{Options, ServerKind};
use crate::peers::{CONNECT_TIMEOUT, Load, Phase, connect_clients, stop_clients, wait_until};
use crate::report::{HEADER, print_row, thousands};
use crate::servers::Server;

/// Targets of issue 3, printed beside the figures.
const TARGET_SPEEDUP_OVER_Y_SWEET: f64 = 2.0;
const TARGET_P99: Duration = Duration::from_millis(20);
const TARGET_IDLE_KIB: f64 = 12.0;

/// The run: its options and servers, and the verdicts printed at its end.
pub(crate) struct Bench {
    pub(crate) options: Options,
    pub(crate) servers: Vec<ServerKind>,
    /// Yjs client ids are unique across the run.
    pub(crate) next_client_id: u64,
    /// Lines about the targets, printed at the end.
    pub(crate) verdicts: Vec<String>,
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

    pub(crate) async fn one_doc(&mut self) -> Result<()> {
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

    pub(crate) async fn many_docs(&mut self) -> Result<()> {
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

    pub(crate) async fn idle(&mut self) -> Result<()> {
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
