//! `cargo bench -p inloop-batch --bench papermill`: 64 runs of a 10-cell notebook, 4 at a time,
//! by inloop's batch runner (the library `inloop run` calls) and by papermill (from PyPI,
//! installed into the repository's `.venv` when missing) in a pool of 4 worker processes; with
//! the floor, the cells' own compute time. Prints one table.
//!
//! Environment: `BENCH_RUNS` (64), `BENCH_PARALLEL` (4), `BENCH_CELL_MS` (20).

use std::path::Path;
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

use inloop_batch::{Config, NoProgress, OutputMode, ParameterSources, RunStatus, SearchPath};
use serde_json::{Value, json};

fn env_number(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn python(venv: &Path, code: &str) -> std::process::Output {
    Command::new(venv.join("bin/python"))
        .args(["-c", code])
        .output()
        .expect("the venv's python runs")
}

/// A notebook with a `parameters` cell and `cells - 1` cells of `loops` iterations of arithmetic
/// each, every one printing the CPU time it took (`cpu_ms=`).
fn notebook(cells: usize, loops: u64) -> Value {
    let mut list = vec![json!({
        "cell_type": "code", "id": "parameters", "metadata": {"tags": ["parameters"]},
        "execution_count": null, "outputs": [], "source": "seed = 0",
    })];
    for i in 1..cells {
        let source = format!(
            "import time\n_t = time.process_time()\n_x = seed\nfor _i in range({loops}):\n    \
             _x = (_x * 1103515245 + 12345) % 2147483648\nprint(f\"cpu_ms={{(time.process_time() - _t) * 1000:.3f}}\")"
        );
        list.push(json!({
            "cell_type": "code", "id": format!("work-{i}"), "metadata": {},
            "execution_count": null, "outputs": [], "source": source,
        }));
    }
    json!({
        "nbformat": 4, "nbformat_minor": 5, "cells": list,
        "metadata": {"kernelspec": {"name": "python3", "display_name": "Python 3",
                                    "language": "python"}},
    })
}

/// The sum of the `cpu_ms=` lines in every notebook of `dir` whose name starts with `prefix`,
/// and how many cells printed one.
fn cells_cpu(dir: &Path, prefix: &str) -> (Duration, usize) {
    let mut total = 0.0;
    let mut count = 0;
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        if !name.starts_with(prefix) || !name.ends_with(".ipynb") {
            continue;
        }
        let text = std::fs::read_to_string(&path).unwrap();
        for part in text.split("cpu_ms=").skip(1) {
            let number: String = part
                .chars()
                .take_while(|c| c.is_ascii_digit() || *c == '.')
                .collect();
            if let Ok(ms) = number.parse::<f64>() {
                total += ms;
                count += 1;
            }
        }
    }
    (Duration::from_secs_f64(total / 1000.0), count)
}

fn main() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let venv = root
        .join(".venv")
        .canonicalize()
        .unwrap_or_else(|_| panic!("no .venv in {}: run scripts/setup.sh first", root.display()));
    let runs = env_number("BENCH_RUNS", 64) as usize;
    let parallel = env_number("BENCH_PARALLEL", 4) as usize;
    let cell_ms = env_number("BENCH_CELL_MS", 20);
    let cells = 10;
    let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());

    if !python(&venv, "import papermill").status.success() {
        eprintln!(
            "papermill is not in .venv: installing it from PyPI (.venv/bin/pip install papermill)"
        );
        let status = Command::new(venv.join("bin/pip"))
            .args(["install", "--quiet", "papermill"])
            .status()
            .expect("pip runs");
        assert!(status.success(), "pip install papermill failed");
    }
    let version = python(&venv, "import papermill; print(papermill.__version__)");
    let papermill_version = String::from_utf8_lossy(&version.stdout).trim().to_owned();

    // Iterations for about `cell_ms` of CPU per cell, measured on this machine.
    let calibrate = python(
        &venv,
        "import time\nt = time.process_time()\nx = 0\nfor i in range(2_000_000):\n    \
         x = (x * 1103515245 + 12345) % 2147483648\nprint(time.process_time() - t)",
    );
    let seconds: f64 = String::from_utf8_lossy(&calibrate.stdout)
        .trim()
        .parse()
        .expect("the calibration prints seconds");
    let loops = ((2_000_000.0 * cell_ms as f64 / 1000.0) / seconds).round() as u64;

    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("bench.ipynb");
    std::fs::write(&input, notebook(cells, loops).to_string()).unwrap();
    let sets = dir.path().join("sets.yaml");
    let yaml: String = (0..runs).map(|i| format!("- {{seed: {i}}}\n")).collect();
    std::fs::write(&sets, yaml).unwrap();
    let out = dir.path().join("out");
    std::fs::create_dir_all(&out).unwrap();

    // inloop: the library `inloop run` calls, with the same pool and options; kernels forked
    // from a preloaded process (the default), then launched from the kernelspec (--no-fork).
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let inloop = |fork: bool, prefix: &str| -> (Duration, Duration) {
        let sources = ParameterSources {
            files: vec![sets.clone()],
            ..Default::default()
        };
        let renamed = dir.path().join(format!("{prefix}bench.ipynb"));
        std::fs::copy(&input, &renamed).unwrap();
        let plan = inloop_batch::plan(
            std::slice::from_ref(&renamed),
            &sources,
            &OutputMode::Dir(out.clone()),
        )
        .unwrap();
        let mut config = Config::new(plan);
        config.parallel = parallel;
        config.fork_kernels = fork;
        config.kernel_search = SearchPath::from_dirs([venv.join("share/jupyter")]);
        let started = Instant::now();
        let reports = runtime.block_on(inloop_batch::run_all(config, Arc::new(NoProgress)));
        let wall = started.elapsed();
        let failed = reports.iter().filter(|r| r.status != RunStatus::Ok).count();
        assert_eq!(failed, 0, "inloop runs failed: {reports:?}");
        let (cpu, count) = cells_cpu(&out, &format!("{prefix}bench-"));
        assert_eq!(count, runs * (cells - 1));
        (wall, cpu)
    };
    let (inloop_wall, inloop_cpu) = inloop(true, "fork-");
    let (spawn_wall, _) = inloop(false, "spawn-");

    // papermill: execute_notebook in a pool of `parallel` worker processes (each imports
    // papermill once, as a long-lived service would), the same notebook and parameters.
    let script = format!(
        r#"
import sys, time
from concurrent.futures import ProcessPoolExecutor
import papermill

def run(i):
    papermill.execute_notebook({input:?}, {out:?} + f"/pm-{{i}}.ipynb", parameters={{"seed": i}},
                               progress_bar=False, log_output=False, kernel_name="python3")

if __name__ == "__main__":
    with ProcessPoolExecutor({parallel}) as pool:
        start = time.perf_counter()
        list(pool.map(run, range({runs})))
        print(time.perf_counter() - start)
"#,
        input = input.display().to_string(),
        out = out.display().to_string(),
    );
    let started = Instant::now();
    let papermill = Command::new(venv.join("bin/python"))
        .args(["-c", &script])
        .current_dir(dir.path())
        .output()
        .expect("python runs");
    let papermill_process_wall = started.elapsed();
    assert!(
        papermill.status.success(),
        "papermill failed: {}",
        String::from_utf8_lossy(&papermill.stderr)
    );
    let papermill_wall = Duration::from_secs_f64(
        String::from_utf8_lossy(&papermill.stdout)
            .trim()
            .parse()
            .expect("the papermill script prints its wall time"),
    );
    let (papermill_cpu, papermill_cells) = cells_cpu(&out, "pm-");
    assert_eq!(papermill_cells, runs * (cells - 1));

    let per_run = |wall: Duration| wall.as_secs_f64() / runs as f64;
    let floor = inloop_cpu.as_secs_f64();
    let ideal = floor / parallel.min(cpus) as f64;
    println!();
    println!(
        "{runs} runs of a {cells}-cell notebook ({} cells of ~{cell_ms} ms CPU each), {parallel} at a time, {cpus} CPUs",
        cells - 1
    );
    println!(
        "{:<58} {:>9} {:>9} {:>9}",
        "", "wall", "per run", "vs inloop"
    );
    let row = |name: &str, wall: Duration| {
        println!(
            "{:<58} {:>8.2}s {:>8.3}s {:>8.2}x",
            name,
            wall.as_secs_f64(),
            per_run(wall),
            wall.as_secs_f64() / inloop_wall.as_secs_f64()
        );
    };
    row("inloop run (warm pool of forked ipykernels)", inloop_wall);
    row("inloop run --no-fork (each kernel launched)", spawn_wall);
    row(
        &format!("papermill {papermill_version} (ProcessPoolExecutor({parallel}), imported)"),
        papermill_wall,
    );
    row(
        "  the same with its Python workers' start-up",
        papermill_process_wall,
    );
    println!(
        "{:<58} {:>8.2}s   (CPU; {:.2}s spread over min({parallel}, {cpus} CPUs); papermill's cells: {:.2}s)",
        "floor: the cells' own compute time, summed",
        floor,
        ideal,
        papermill_cpu.as_secs_f64()
    );
    println!(
        "inloop is {:.2}x faster than papermill (target: 3x)",
        papermill_wall.as_secs_f64() / inloop_wall.as_secs_f64()
    );
}
