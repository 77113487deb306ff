//! `cargo bench -p inloop-batch --bench papermill`: 64 runs of a 10-cell notebook, 4 at a time,
//! by inloop's batch runner (the library `inloop run` calls) and by papermill (from PyPI,
//! installed into the repository's `.venv` when missing), with the floor: the cells' own compute
//! time. Prints one table.
//!
//! Rows: inloop with forked ipykernels (the default), inloop `--no-fork` (each kernel launched
//! from its kernelspec), papermill's `execute_notebook` in a `ProcessPoolExecutor(4)` (papermill
//! imported once: its best case), and the `papermill` command under `xargs -P 4` (as it is
//! usually run). Each work cell spends ~20 ms of CPU on arithmetic and prints its CPU time; the
//! last one also prints its kernel's whole CPU time, so the table can say what a kernel cost
//! beyond its cells.
//!
//! Environment: `BENCH_RUNS` (64), `BENCH_PARALLEL` (4), `BENCH_CELL_MS` (20).

use std::collections::HashMap;
use std::path::Path;
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
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

/// This process's CPU time, and that of its children it waited for (seconds).
fn cpu_times() -> (f64, f64) {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap();
    let (_, own, children) = stat_times(&stat).unwrap();
    (own, children)
}

/// The CPU times in `/proc/PID/stat`: its own, and its children's it waited for (seconds).
fn stat_times(stat: &str) -> Option<(u32, f64, f64)> {
    let fields: Vec<&str> = stat.rsplit_once(')')?.1.split_whitespace().collect();
    let number = |i: usize| fields.get(i).and_then(|f| f.parse::<f64>().ok());
    let ppid = fields.get(1)?.parse().ok()?;
    let own = (number(11)? + number(12)?) / 100.0;
    let children = (number(13)? + number(14)?) / 100.0;
    Some((ppid, own, children))
}

/// Watches this process's kernel fork servers while a run goes on, for their CPU time: their
/// own, and that of the kernels they forked and reaped, which no other counter sees (the server
/// is killed when the run ends, and reaped uncounted). Sampled every 20 ms: what it does in its
/// last moments is missed.
struct ForkServerWatch {
    stop: Arc<AtomicBool>,
    sampler: std::thread::JoinHandle<HashMap<u32, (f64, f64)>>,
}

impl ForkServerWatch {
    fn start() -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let sampler = std::thread::spawn({
            let stop = stop.clone();
            move || {
                let me = std::process::id();
                let mut seen = HashMap::new();
                while !stop.load(Ordering::SeqCst) {
                    for entry in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
                        let Ok(pid) = entry.file_name().to_string_lossy().parse::<u32>() else {
                            continue;
                        };
                        let stat = std::fs::read_to_string(entry.path().join("stat"));
                        let Some((ppid, own, children)) = stat.ok().as_deref().and_then(stat_times)
                        else {
                            continue;
                        };
                        let cmdline =
                            std::fs::read(entry.path().join("cmdline")).unwrap_or_default();
                        let is_server = String::from_utf8_lossy(&cmdline).contains("forkserver.py");
                        if ppid == me && is_server {
                            seen.insert(pid, (own, children));
                        }
                    }
                    std::thread::sleep(Duration::from_millis(20));
                }
                seen
            }
        });
        Self { stop, sampler }
    }

    /// The servers' own CPU time and their kernels', summed (seconds).
    fn stop(self) -> (f64, f64) {
        self.stop.store(true, Ordering::SeqCst);
        let seen = self.sampler.join().unwrap();
        seen.values()
            .fold((0.0, 0.0), |(own, kernels), (o, k)| (own + o, kernels + k))
    }
}

/// A notebook with a `parameters` cell and `cells - 1` cells of `loops` iterations of arithmetic
/// each, every one printing the CPU time it took (`cpu_ms=`); the last also prints its kernel
/// process's CPU time so far (`kernel_ms=`).
fn notebook(cells: usize, loops: u64) -> Value {
    let mut list = vec![json!({
        "cell_type": "code", "id": "parameters", "metadata": {"tags": ["parameters"]},
        "execution_count": null, "outputs": [], "source": "seed = 0",
    })];
    for i in 1..cells {
        let mut source = format!(
            "import time\n_t = time.process_time()\n_x = seed\nfor _i in range({loops}):\n    \
             _x = (_x * 1103515245 + 12345) % 2147483648\n\
             print(f\"cpu_ms={{(time.process_time() - _t) * 1000:.3f}}\")"
        );
        if i == cells - 1 {
            source.push_str("\nimport os\nprint(f\"kernel_ms={sum(os.times()[:2]) * 1000:.3f}\")");
        }
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

/// The sum of the numbers after `key` in every notebook of `dir` whose name starts with
/// `prefix` (seconds), and how many there were.
fn sum_printed(dir: &Path, prefix: &str, key: &str) -> (f64, usize) {
    let mut total = 0.0;
    let mut count = 0;
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        if !name.starts_with(prefix) || !name.ends_with(".ipynb") {
            continue;
        }
        let text = std::fs::read_to_string(&path).unwrap();
        for part in text.split(key).skip(1) {
            let number: String = part
                .chars()
                .take_while(|c| c.is_ascii_digit() || *c == '.')
                .collect();
            if let Ok(ms) = number.parse::<f64>() {
                total += ms / 1000.0;
                count += 1;
            }
        }
    }
    (total, count)
}

/// One row of the table.
struct Row {
    name: String,
    wall: Duration,
    /// The kernels' CPU beyond their cells (start-up, protocol, shutdown), per run.
    kernel: f64,
    /// The runner's own CPU (its processes, not the kernels), per run.
    runner: f64,
    /// Runs that did not finish.
    unfinished: usize,
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
    let load = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();

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

    // Under target/ (a shared /tmp may be cleaned while this runs).
    let dir = tempfile::Builder::new()
        .prefix("bench-papermill-")
        .tempdir_in(env!("CARGO_TARGET_TMPDIR"))
        .unwrap();
    let input = dir.path().join("bench.ipynb");
    std::fs::write(&input, notebook(cells, loops).to_string()).unwrap();
    let sets = dir.path().join("sets.yaml");
    let yaml: String = (0..runs).map(|i| format!("- {{seed: {i}}}\n")).collect();
    std::fs::write(&sets, yaml).unwrap();
    let out = dir.path().join("out");
    std::fs::create_dir_all(&out).unwrap();
    let per_run = |total: f64| total / runs as f64;
    // What the kernels of the runs written as `prefix*` cost beyond their cells, in total.
    // Runs that did not finish (papermill's kernels can lose a race for a port) are counted,
    // not fatal: the row says how many.
    let kernels_beyond_cells = |prefix: &str| -> (f64, f64, usize) {
        let (cells_cpu, cells_count) = sum_printed(&out, prefix, "cpu_ms=");
        let (kernels_cpu, finished) = sum_printed(&out, prefix, "kernel_ms=");
        // Only the cells of finished runs (a failed run may have run some).
        let cells_cpu = cells_cpu * (finished * (cells - 1)) as f64 / cells_count.max(1) as f64;
        (cells_cpu, kernels_cpu - cells_cpu, runs - finished)
    };
    // inloop: the library `inloop run` calls, with the same pool and options.
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let inloop_row = |fork: bool| -> (Row, f64) {
        let (prefix, name) = if fork {
            ("fork-", "inloop run (forked ipykernels, the default)")
        } else {
            ("spawn-", "inloop run --no-fork (each kernel launched)")
        };
        let renamed = dir.path().join(format!("{prefix}bench.ipynb"));
        std::fs::copy(&input, &renamed).unwrap();
        let sources = ParameterSources {
            files: vec![sets.clone()],
            ..Default::default()
        };
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
        let servers = ForkServerWatch::start();
        let before = cpu_times();
        let started = Instant::now();
        let reports = runtime.block_on(inloop_batch::run_all(config, Arc::new(NoProgress)));
        let wall = started.elapsed();
        let after = cpu_times();
        let (server_own, server_kernels) = servers.stop();
        let failed = reports.iter().filter(|r| r.status != RunStatus::Ok).count();
        assert_eq!(failed, 0, "inloop runs failed: {reports:?}");
        let (cells_cpu, kernels, unfinished) = kernels_beyond_cells(&format!("{prefix}bench-"));
        assert_eq!(unfinished, 0);
        // Launched kernels are this process's children, counted in its children's time; forked
        // ones are the fork server's, counted in its children's time. What they spent after
        // their last cell (exit) is the runner's, as in papermill's rows.
        let children = after.1 - before.1 + server_own + server_kernels - kernels - cells_cpu;
        let row = Row {
            unfinished,
            name: name.into(),
            wall,
            kernel: per_run(kernels),
            runner: per_run(after.0 - before.0 + children),
        };
        (row, cells_cpu)
    };
    // The forked row last: its fork server, killed when the run ends, is reaped later,
    // uncounted, and must not land in another row's children's time.
    let (spawned, _) = inloop_row(false);

    // papermill's execute_notebook in a pool of `parallel` worker processes, papermill imported
    // once before the workers fork: its best case, as a long-lived service would run it.
    let script = format!(
        r#"
import resource, time
from concurrent.futures import ProcessPoolExecutor
import papermill

def run(i):
    papermill.execute_notebook({input:?}, {out:?} + f"/pool-{{i}}.ipynb", parameters={{"seed": i}},
                               progress_bar=False, log_output=False, kernel_name="python3")

if __name__ == "__main__":
    start = time.perf_counter()
    with ProcessPoolExecutor({parallel}) as pool:
        list(pool.map(run, range({runs})))
    wall = time.perf_counter() - start
    usage = [resource.getrusage(who) for who in (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN)]
    print(wall, sum(u.ru_utime + u.ru_stime for u in usage))
"#,
        input = input.display().to_string(),
        out = out.display().to_string(),
    );
    let pool_started = Instant::now();
    let pool = Command::new(venv.join("bin/python"))
        .args(["-c", &script])
        .current_dir(dir.path())
        .output()
        .expect("python runs");
    if !pool.status.success() {
        eprintln!(
            "papermill (pool) failed: {}",
            String::from_utf8_lossy(&pool.stderr)
        );
    }
    let printed = String::from_utf8_lossy(&pool.stdout);
    let numbers: Vec<f64> = printed
        .split_whitespace()
        .filter_map(|n| n.parse().ok())
        .collect();
    let (cells_cpu, kernels, unfinished) = kernels_beyond_cells("pool-");
    let pool = Row {
        unfinished,
        name: format!("papermill {papermill_version}, ProcessPoolExecutor({parallel})"),
        // Its own measure when it got to print it (it leaves Python's start-up out).
        wall: numbers
            .first()
            .map_or(pool_started.elapsed(), |&w| Duration::from_secs_f64(w)),
        kernel: per_run(kernels),
        runner: numbers
            .get(1)
            .map_or(f64::NAN, |&cpu| per_run(cpu - kernels - cells_cpu)),
    };

    // The papermill command, one process per run, `parallel` at a time.
    let before = cpu_times();
    let started = Instant::now();
    let xargs = Command::new("sh")
        .arg("-c")
        .arg(format!(
            "seq 0 {last} | xargs -P {parallel} -I N {papermill} --no-progress-bar --log-level ERROR \
             -k python3 {input} {out}/cli-N.ipynb -p seed N",
            last = runs - 1,
            papermill = venv.join("bin/papermill").display(),
            input = input.display(),
            out = out.display(),
        ))
        .current_dir(dir.path())
        .output()
        .expect("sh runs");
    let wall = started.elapsed();
    let after = cpu_times();
    if !xargs.status.success() {
        eprintln!(
            "papermill (CLI) failed: {}",
            String::from_utf8_lossy(&xargs.stderr)
        );
    }
    let (cells_cpu, kernels, unfinished) = kernels_beyond_cells("cli-");
    let cli = Row {
        unfinished,
        name: format!("papermill {papermill_version} CLI, xargs -P {parallel}"),
        wall,
        kernel: per_run(kernels),
        runner: per_run(after.1 - before.1 - kernels - cells_cpu),
    };

    let (forked, floor) = inloop_row(true);
    let rows = [forked, spawned, pool, cli];

    let inloop = rows[0].wall.as_secs_f64();
    println!();
    println!(
        "{runs} runs of a {cells}-cell notebook ({} cells of ~{cell_ms} ms CPU each), {parallel} at a \
         time, {cpus} CPUs, load average at start {}",
        cells - 1,
        load.split_whitespace().next().unwrap_or("?")
    );
    println!(
        "{:<48} {:>8} {:>8} {:>9} {:>16} {:>15}",
        "", "wall", "per run", "vs inloop", "kernel CPU/run*", "runner CPU/run"
    );
    for row in &rows {
        println!(
            "{:<48} {:>7.2}s {:>7.3}s {:>8.2}x {:>15.3}s {:>14.3}s{}",
            row.name,
            row.wall.as_secs_f64(),
            per_run(row.wall.as_secs_f64()),
            row.wall.as_secs_f64() / inloop,
            row.kernel,
            row.runner,
            match row.unfinished {
                0 => String::new(),
                n => format!("  ({n} runs failed: see above)"),
            },
        );
    }
    let spread = floor / parallel.min(cpus) as f64;
    println!(
        "{:<48} {:>7.2}s {:>7.3}s   (CPU; {spread:.2}s of wall over min({parallel} runs, {cpus} CPUs))",
        "floor: the cells' own compute time, summed",
        floor,
        per_run(floor),
    );
    println!("* beyond its cells: start-up, messages, shutdown");
    println!(
        "inloop is {:.2}x faster than papermill's pool and {:.2}x faster than its CLI (target: 3x)",
        rows[2].wall.as_secs_f64() / inloop,
        rows[3].wall.as_secs_f64() / inloop,
    );
}
