//! Progress on a terminal: indicatif bars while the runs go, a table when they are done.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::sync::Mutex;
use std::time::Duration;

use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};

use crate::{Observer, RunReport, RunSpec, RunStatus};

/// indicatif bars on stderr: one per running notebook (its name and current cell), and a total.
/// When stderr is not a terminal the bars are hidden and one line per finished run is printed
/// instead.
#[derive(Debug)]
pub struct Bars {
    multi: MultiProgress,
    total: ProgressBar,
    running: Mutex<HashMap<usize, ProgressBar>>,
    counts: Mutex<[usize; 3]>,
    show: bool,
}

impl Bars {
    /// Bars for `runs` runs; `show: false` draws nothing and prints nothing.
    pub fn new(runs: usize, show: bool) -> Self {
        let target = if show {
            ProgressDrawTarget::stderr()
        } else {
            ProgressDrawTarget::hidden()
        };
        let multi = MultiProgress::with_draw_target(target);
        let total = multi.add(ProgressBar::new(runs as u64));
        total.set_style(
            ProgressStyle::with_template(
                "{prefix:.bold} [{bar:30.green/white}] {pos}/{len} runs  {msg}  {elapsed_precise}",
            )
            .unwrap_or_else(|_| ProgressStyle::default_bar())
            .progress_chars("=> "),
        );
        total.set_prefix("total");
        total.enable_steady_tick(Duration::from_millis(200));
        Self {
            multi,
            total,
            running: Mutex::new(HashMap::new()),
            counts: Mutex::new([0; 3]),
            show,
        }
    }

    /// Prints a line above the bars (or plainly on stderr when they are hidden), unless the bars
    /// were made with `show: false`.
    fn line(&self, text: &str) {
        if !self.show {
        } else if self.multi.is_hidden() {
            eprintln!("{text}");
        } else {
            let _ = self.multi.println(text);
        }
    }

    /// Clears the bars (call before printing the summary).
    pub fn finish(&self) {
        self.total.finish_and_clear();
        let _ = self.multi.clear();
    }
}

impl Observer for Bars {
    fn started(&self, run: usize, spec: &RunSpec, cells: usize) {
        let bar = self
            .multi
            .insert_before(&self.total, ProgressBar::new(cells as u64));
        bar.set_style(
            ProgressStyle::with_template("{prefix:24!} [{bar:30.cyan/blue}] {msg}")
                .unwrap_or_else(|_| ProgressStyle::default_bar())
                .progress_chars("=> "),
        );
        bar.set_prefix(spec.label.clone());
        bar.set_message(format!("cell 0/{cells}"));
        lock(&self.running).insert(run, bar);
    }

    fn cell(&self, run: usize, index: usize, cells: usize) {
        if let Some(bar) = lock(&self.running).get(&run) {
            bar.set_position(index as u64);
            bar.set_message(format!("cell {}/{cells}", index + 1));
        }
    }

    fn page(&self, _run: usize, spec: &RunSpec, url: &str) {
        self.line(&format!("{}: live at {url}", spec.label));
    }

    fn finished(&self, run: usize, report: &RunReport) {
        if let Some(bar) = lock(&self.running).remove(&run) {
            bar.finish_and_clear();
            self.multi.remove(&bar);
        }
        let counts = {
            let mut counts = lock(&self.counts);
            counts[report.status as usize] += 1;
            *counts
        };
        self.total.inc(1);
        self.total.set_message(format!(
            "ok {}  failed {}  timeout {}",
            counts[0], counts[1], counts[2]
        ));
        if report.status != RunStatus::Ok || self.multi.is_hidden() {
            let mut line = format!("{} {}", report.label, report.status.as_str());
            if let Some(error) = &report.error {
                let _ = write!(line, ": {error}");
            }
            self.line(&line);
        }
    }
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|e| e.into_inner())
}

/// The table printed after the runs: notebook, status, cells, duration, output (and the error),
/// then the counts.
pub fn summary(reports: &[RunReport]) -> String {
    let rows: Vec<[String; 5]> = reports
        .iter()
        .map(|r| {
            [
                r.label.clone(),
                r.status.as_str().to_owned(),
                format!("{}/{}", r.cells_done, r.cells_total),
                format!("{:.2}s", r.duration.as_secs_f64()),
                match (&r.output, &r.error) {
                    (Some(out), None) => out.display().to_string(),
                    (Some(out), Some(error)) => format!("{}  ({error})", out.display()),
                    (None, Some(error)) => format!("-  ({error})"),
                    (None, None) => "-".to_owned(),
                },
            ]
        })
        .collect();
    let header = ["notebook", "status", "cells", "duration", "output"];
    let mut widths = header.map(str::len);
    for row in &rows {
        for (width, cell) in widths.iter_mut().zip(row).take(4) {
            *width = (*width).max(cell.chars().count());
        }
    }
    let mut table = String::new();
    let mut line = |cells: [&str; 5]| {
        let _ = writeln!(
            table,
            "{:<w0$}  {:<w1$}  {:>w2$}  {:>w3$}  {}",
            cells[0],
            cells[1],
            cells[2],
            cells[3],
            cells[4],
            w0 = widths[0],
            w1 = widths[1],
            w2 = widths[2],
            w3 = widths[3],
        );
    };
    line(header);
    for row in &rows {
        line([&row[0], &row[1], &row[2], &row[3], &row[4]]);
    }
    let count = |status| reports.iter().filter(|r| r.status == status).count();
    let _ = writeln!(
        table,
        "{} runs: {} ok, {} failed, {} timed out",
        reports.len(),
        count(RunStatus::Ok),
        count(RunStatus::Failed),
        count(RunStatus::Timeout)
    );
    for report in reports {
        if let Some(page) = &report.page {
            let _ = writeln!(table, "{}: {page}", report.label);
        }
    }
    table
}
