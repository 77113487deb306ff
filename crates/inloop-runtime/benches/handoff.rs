//! Hand-off latency: a client enqueues `pass` for the server and waits until it sees the entry
//! `done`, through a real relay and the runtime; beside it, in the same run, the floor: the same
//! `pass` sent straight to a kernel over ZMQ.
//!
//!     cargo bench -p inloop-runtime --bench handoff [-- --runs N]
//!
//! Both sides use the repository venv's ipykernel (`scripts/setup.sh` creates it).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use inloop_client::{Client, ClientOptions};
use inloop_doc::{CellType, ExecutionStatus, ExecutionTarget, Notebook};
use inloop_kernel::{JupyterConfig, JupyterKernel, Kernel, KernelSpec, SearchPath};
use inloop_relay::{Config as RelayConfig, Relay};
use inloop_runtime::agent::{self, Config};
use inloop_sync::Role;

// The allocator the `inloop` binary uses.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

const DEFAULT_RUNS: usize = 500;
const WARM_UP: usize = 20;

#[tokio::main]
async fn main() {
    let runs = parse_runs();
    let venv = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../.venv");
    if !venv.join("bin/python").exists() {
        eprintln!(
            "error: no venv at {}: run scripts/setup.sh to create it with ipykernel",
            venv.display()
        );
        std::process::exit(1);
    }
    let search = SearchPath::from_env([venv]);

    // The floor: `pass` straight to a kernel.
    let spec = KernelSpec::find("python3", &search).expect("the python3 kernelspec");
    let kernel = JupyterKernel::start(spec, JupyterConfig::default())
        .await
        .expect("a kernel");
    let mut direct = Vec::new();
    for i in 0..WARM_UP + runs {
        let (events, _ignored) = tokio::sync::mpsc::unbounded_channel();
        let started = Instant::now();
        kernel.execute("pass", events).await.expect("pass runs");
        if i >= WARM_UP {
            direct.push(started.elapsed());
        }
    }
    kernel.shutdown().await.expect("shutdown");

    // Through the relay and the runtime.
    let data = tempfile::tempdir().expect("a temporary folder");
    let mut relay_config = RelayConfig::new(data.path());
    relay_config.addr = SocketAddr::from(([127, 0, 0, 1], 0));
    let relay = Relay::start(relay_config).await.expect("the relay starts");
    let addr = relay.addr();
    let state = relay.state().clone();
    tokio::spawn(relay.run_until(std::future::pending()));
    let doc = "handoff";
    let token = |role: Role| state.mint(Some(doc), role, Duration::from_secs(3600), None);
    let client = Client::connect(
        &format!("ws://{addr}/api/docs/{doc}/ws?token={}", token(Role::Admin)),
        Notebook::new(),
        ClientOptions::new(),
    );
    client
        .wait_synced(Duration::from_secs(10))
        .await
        .expect("synced");
    let config = Config {
        relay: format!("ws://{addr}"),
        doc_id: doc.into(),
        token: token(Role::Runtime),
        kernel: "python3".into(),
        name: "bench".into(),
        kernel_search: search,
        stream_limit: None,
        heartbeat: Duration::from_secs(3),
        idle_exit: None,
        container: None,
    };
    tokio::spawn(agent::run(config, std::future::pending()));

    let notebook = client.notebook().clone();
    let cell = notebook
        .insert_cell(0, CellType::Code, "pass")
        .expect("a cell");
    let notify = std::sync::Arc::new(tokio::sync::Notify::new());
    let waker = notify.clone();
    let _watch = notebook.observe_runs(move || waker.notify_one());
    let mut handoff = Vec::new();
    for i in 0..WARM_UP + runs {
        let started = Instant::now();
        let id = notebook
            .request_execution(&cell, &ExecutionTarget::Server, "bench", i as f64)
            .expect("queued");
        loop {
            if notebook
                .execution(&id)
                .is_ok_and(|e| e.status == ExecutionStatus::Done)
            {
                break;
            }
            if started.elapsed() > Duration::from_secs(30) {
                eprintln!(
                    "error: run {i} not done after 30 s: {:?}",
                    notebook.execution(&id)
                );
                std::process::exit(1);
            }
            let _ = tokio::time::timeout(Duration::from_millis(50), notify.notified()).await;
        }
        if i >= WARM_UP {
            handoff.push(started.elapsed());
        }
    }

    let (floor_p50, floor_p99) = percentiles(&mut direct);
    let (p50, p99) = percentiles(&mut handoff);
    println!(
        "hand-off of `pass`, {runs} runs after {WARM_UP} warm-up, ipykernel from the venv, relay with SQLite on loopback"
    );
    println!("{:<46} {:>9} {:>9}", "", "p50 ms", "p99 ms");
    println!(
        "{:<46} {:>9.2} {:>9.2}",
        "direct: execute_request over ZMQ (the floor)",
        ms(floor_p50),
        ms(floor_p99)
    );
    println!(
        "{:<46} {:>9.2} {:>9.2}",
        "client enqueues -> relay -> runtime -> done",
        ms(p50),
        ms(p99)
    );
    println!(
        "{:<46} {:>9.2} {:>9.2}   (target: p50 overhead <= 5 ms)",
        "overhead over the floor",
        ms(p50) - ms(floor_p50),
        ms(p99) - ms(floor_p99)
    );
}

fn parse_runs() -> usize {
    let mut args = std::env::args().skip(1);
    let mut runs = DEFAULT_RUNS;
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--bench" => {}
            "--runs" => {
                runs = args
                    .next()
                    .and_then(|n| n.parse().ok())
                    .filter(|&n| n > 0)
                    .unwrap_or_else(|| {
                        eprintln!("error: --runs takes a number above 0");
                        std::process::exit(2);
                    });
            }
            other => {
                eprintln!("error: unknown option {other} (try --runs N)");
                std::process::exit(2);
            }
        }
    }
    runs
}

fn percentiles(samples: &mut [Duration]) -> (Duration, Duration) {
    samples.sort();
    let at = |q: f64| samples[((samples.len() - 1) as f64 * q).round() as usize];
    (at(0.5), at(0.99))
}

fn ms(duration: Duration) -> f64 {
    duration.as_secs_f64() * 1000.0
}
