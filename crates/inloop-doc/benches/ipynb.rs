//! `.ipynb` import and export of a large notebook, timed beside jupyter_ydoc doing the same work
//! in the same run.
//!
//!     cargo bench -p inloop-doc --bench ipynb [-- --iterations N] [-- --processes P] [-- FIXTURE]
//!
//! import: the file's text -> one v1 update (what `inloop import` does).
//! export: a v1 update -> a document -> .ipynb text in nbformat's layout (`inloop export`).
//! The peer is `tests/python/bench_jupyter_ydoc.py` in the repository's venv (`scripts/setup.sh`
//! creates it).
//!
//! On a shared machine one process can run at half the speed of the next, so each side runs in
//! P fresh processes, alternating ours and the peer's, each warming up before N timed rounds.
//! The fastest and the median of the pooled runs are compared.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use inloop_doc::Notebook;
use serde_json::{Value, json};

const DEFAULT_ITERATIONS: usize = 10;
const DEFAULT_PROCESSES: usize = 3;
const WARM_UP_ROUNDS: usize = 3;

// The allocator the `inloop` binary uses.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() {
    if let Err(problem) = run() {
        eprintln!("error: {problem}");
        std::process::exit(1);
    }
}

struct Args {
    fixture: PathBuf,
    iterations: usize,
    processes: usize,
    /// Set in the child processes that time inloop.
    worker: bool,
}

fn run() -> Result<(), String> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let root = root.canonicalize().unwrap_or(root);
    let args = parse_args(&root)?;
    if args.worker {
        println!("{}", time_inloop(&args.fixture, args.iterations)?);
        return Ok(());
    }

    let mut ours = Vec::new();
    let mut theirs = Vec::new();
    for _ in 0..args.processes {
        ours.push(run_inloop_worker(&args)?);
        theirs.push(run_peer(&root, &args)?);
    }
    let runs = |reports: &[Value], key: &str| -> Result<Vec<f64>, String> {
        let mut pooled = Vec::new();
        for report in reports {
            let runs = report[key]
                .as_array()
                .and_then(|runs| runs.iter().map(Value::as_f64).collect::<Option<Vec<_>>>());
            pooled.extend(runs.ok_or_else(|| format!("a bench printed no {key}: {report}"))?);
        }
        Ok(pooled)
    };

    let (first, peer) = (&ours[0], &theirs[0]);
    let versions = &peer["versions"];
    let megabytes = |value: &Value| value.as_f64().unwrap_or(f64::NAN) / 1e6;
    println!(
        "{} ({} cells, {:.1} MB; update {:.1} MB here, {:.1} MB jupyter_ydoc)",
        args.fixture.display(),
        first["cells"],
        megabytes(&first["ipynb_bytes"]),
        megabytes(&first["update_bytes"]),
        megabytes(&peer["update_bytes"]),
    );
    println!(
        "peer: jupyter-ydoc {} on pycrdt {}, nbformat {}; {} processes a side, {} runs each after {WARM_UP_ROUNDS} untimed",
        versions["jupyter-ydoc"],
        versions["pycrdt"],
        versions["nbformat"],
        args.processes,
        args.iterations,
    );
    println!(
        "{:<42} {:>15} {:>17} {:>15}",
        "step", "inloop ms", "jupyter_ydoc ms", "speed-up"
    );
    println!(
        "{:<42} {:>15} {:>17} {:>15}",
        "", "min / median", "min / median", "min / median"
    );
    let export_ms = runs(&ours, "export_ms")?;
    for (step, ours, theirs) in [
        (
            "import",
            runs(&ours, "import_ms")?,
            runs(&theirs, "import_ms")?,
        ),
        ("export", export_ms.clone(), runs(&theirs, "export_ms")?),
        (
            "export, peer validating (nbformat.writes)",
            export_ms,
            runs(&theirs, "export_validated_ms")?,
        ),
    ] {
        let (ours, theirs) = (Summary::of(&ours), Summary::of(&theirs));
        println!(
            "{step:<42} {:>15} {:>17} {:>15}",
            format!("{:.1} / {:.1}", ours.min, ours.median),
            format!("{:.1} / {:.1}", theirs.min, theirs.median),
            format!(
                "{:.1}x / {:.1}x",
                theirs.min / ours.min,
                theirs.median / ours.median
            ),
        );
    }
    Ok(())
}

/// Times our import and export in this process; the report has the peer's shape.
fn time_inloop(fixture: &Path, iterations: usize) -> Result<Value, String> {
    let text = std::fs::read_to_string(fixture)
        .map_err(|e| format!("reading {}: {e}", fixture.display()))?;
    let mut import_ms = Vec::new();
    let mut export_ms = Vec::new();
    let mut update = Vec::new();
    let mut cells = 0;
    // Untimed rounds first, as the peer does, so neither side pays for a cold start (a heap
    // still growing, caches not yet filled).
    for round in 0..WARM_UP_ROUNDS + iterations {
        // Each step ends with its document dropped, as the Python peer's does.
        let start = Instant::now();
        update = Notebook::ipynb_to_update_v1(text.as_bytes()).map_err(|e| e.to_string())?;
        let import = elapsed_ms(start);

        let start = Instant::now();
        let notebook = Notebook::from_update_v1(&update).map_err(|e| e.to_string())?;
        let exported = notebook.to_ipynb();
        cells = notebook.cell_count();
        drop(notebook);
        let export = elapsed_ms(start);
        std::hint::black_box(exported);
        if round >= WARM_UP_ROUNDS {
            import_ms.push(import);
            export_ms.push(export);
        }
    }
    Ok(json!({
        "import_ms": import_ms,
        "export_ms": export_ms,
        "cells": cells,
        "ipynb_bytes": text.len(),
        "update_bytes": update.len(),
    }))
}

fn parse_args(root: &Path) -> Result<Args, String> {
    let mut args = Args {
        fixture: root.join("tests/fixtures/large-2000-cells.ipynb"),
        iterations: DEFAULT_ITERATIONS,
        processes: DEFAULT_PROCESSES,
        worker: false,
    };
    let mut given = std::env::args().skip(1);
    let count = |flag: &str, value: Option<String>| {
        value
            .and_then(|n| n.parse().ok())
            .filter(|&n: &usize| n > 0)
            .ok_or(format!("{flag} takes a number above 0"))
    };
    while let Some(arg) = given.next() {
        match arg.as_str() {
            // cargo bench passes this to every bench binary.
            "--bench" => {}
            "--worker" => args.worker = true,
            "--iterations" => args.iterations = count("--iterations", given.next())?,
            "--processes" => args.processes = count("--processes", given.next())?,
            flag if flag.starts_with("--") => return Err(format!("unknown option {flag}")),
            path => args.fixture = PathBuf::from(path),
        }
    }
    Ok(args)
}

fn run_inloop_worker(args: &Args) -> Result<Value, String> {
    let this = std::env::current_exe().map_err(|e| format!("finding this bench: {e}"))?;
    let mut worker = Command::new(this);
    worker
        .arg("--worker")
        .arg(&args.fixture)
        .args(["--iterations", &args.iterations.to_string()]);
    report_of(worker, "the inloop bench worker")
}

fn run_peer(root: &Path, args: &Args) -> Result<Value, String> {
    let python = root.join(".venv/bin/python");
    if !python.exists() {
        return Err(format!(
            "{} is missing: run scripts/setup.sh to create the venv with jupyter_ydoc",
            python.display()
        ));
    }
    let mut peer = Command::new(&python);
    peer.arg(root.join("tests/python/bench_jupyter_ydoc.py"))
        .arg(&args.fixture)
        .args(["--iterations", &args.iterations.to_string()])
        .args(["--warm-up", &WARM_UP_ROUNDS.to_string()]);
    report_of(peer, "the jupyter_ydoc bench")
}

/// Runs a bench process and reads the one JSON line it prints.
fn report_of(mut command: Command, name: &str) -> Result<Value, String> {
    let output = command
        .output()
        .map_err(|e| format!("starting {name}: {e}"))?;
    if !output.status.success() {
        return Err(format!(
            "{name} failed ({}): {}",
            output.status,
            String::from_utf8_lossy(&output.stderr)
        ));
    }
    serde_json::from_slice(&output.stdout).map_err(|e| format!("reading {name}'s output: {e}"))
}

fn elapsed_ms(start: Instant) -> f64 {
    start.elapsed().as_secs_f64() * 1000.0
}

/// The fastest run (the least disturbed by other work on a shared machine) and the median.
struct Summary {
    min: f64,
    median: f64,
}

impl Summary {
    fn of(runs: &[f64]) -> Self {
        let mut sorted = runs.to_vec();
        sorted.sort_by(f64::total_cmp);
        Self {
            min: sorted[0],
            median: sorted[sorted.len() / 2],
        }
    }
}
