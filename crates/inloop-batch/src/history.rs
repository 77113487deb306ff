//! `--git`: every finished run recorded as a commit of its executed notebook on a branch
//! `inloop/NAME` ([`inloop_history`]), while the other runs go on.

use std::path::Path;
use std::sync::{Arc, Mutex, mpsc};
use std::thread::JoinHandle;

use inloop_history::{Commit, History};

use crate::{Observer, RunReport, RunSpec};

/// What became of one run's record.
#[derive(Debug)]
pub struct Recorded {
    pub label: String,
    /// The commit, `None` if the run changed nothing on the branch or wrote no notebook.
    pub result: inloop_history::Result<Option<Commit>>,
}

/// An [`Observer`] that passes everything on to `inner` and records each finished run on a
/// history branch, in a thread of its own (git runs there, never on the async runtime), in the
/// order the runs finish.
pub struct RecordingObserver {
    inner: Arc<dyn Observer>,
    queue: Mutex<Option<mpsc::Sender<(usize, RunReport)>>>,
    recorder: Mutex<Option<JoinHandle<Vec<Recorded>>>>,
}

impl std::fmt::Debug for RecordingObserver {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RecordingObserver").finish_non_exhaustive()
    }
}

impl RecordingObserver {
    /// Records `runs` (the [`crate::Config::runs`] being run) on `history`. Check
    /// [`check_outputs`] first, so that no run is made for nothing.
    pub fn new(history: Arc<History>, runs: Vec<RunSpec>, inner: Arc<dyn Observer>) -> Self {
        let (queue, finished) = mpsc::channel::<(usize, RunReport)>();
        let recorder = std::thread::spawn(move || {
            finished
                .into_iter()
                .filter_map(|(run, report)| {
                    let output = report.output.as_deref()?;
                    let message = message(&history, &runs[run], &report);
                    let result = std::fs::read(output)
                        .map_err(inloop_history::Error::from)
                        .and_then(|bytes| history.record(&[(output, &bytes)], &message));
                    Some(Recorded {
                        label: report.label,
                        result,
                    })
                })
                .collect()
        });
        Self {
            inner,
            queue: Mutex::new(Some(queue)),
            recorder: Mutex::new(Some(recorder)),
        }
    }

    /// Waits for the records of every run finished so far, and returns them all.
    pub fn finish(&self) -> Vec<Recorded> {
        drop(self.queue.lock().unwrap_or_else(|e| e.into_inner()).take());
        self.recorder
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take()
            .and_then(|recorder| recorder.join().ok())
            .unwrap_or_default()
    }
}

impl Observer for RecordingObserver {
    fn started(&self, run: usize, spec: &RunSpec, cells: usize) {
        self.inner.started(run, spec, cells);
    }

    fn cell(&self, run: usize, index: usize, cells: usize) {
        self.inner.cell(run, index, cells);
    }

    fn page(&self, run: usize, spec: &RunSpec, url: &str) {
        self.inner.page(run, spec, url);
    }

    fn finished(&self, run: usize, report: &RunReport) {
        self.inner.finished(run, report);
        if let Some(queue) = &*self.queue.lock().unwrap_or_else(|e| e.into_inner()) {
            let _ = queue.send((run, report.clone()));
        }
    }
}

/// Refuses, before anything runs, runs whose notebooks would be written outside the repository.
pub fn check_outputs(history: &History, runs: &[RunSpec]) -> inloop_history::Result<()> {
    for run in runs {
        history.path_in_repository(&run.output)?;
    }
    Ok(())
}

/// The commit message of a run: what ran, how it ended, and git trailers to query the history
/// by (`git log --format='%(trailers:key=Inloop-Status,valueonly)'`).
fn message(history: &History, spec: &RunSpec, report: &RunReport) -> String {
    let in_repository = |path: &Path| {
        history
            .path_in_repository(path)
            .unwrap_or_else(|_| path.display().to_string())
    };
    let mut text = format!(
        "{}: {} ({}/{} cells, {:.1} s)\n\nExecuted {} headless (inloop run).\n",
        report.label,
        report.status.as_str(),
        report.cells_done,
        report.cells_total,
        report.duration.as_secs_f64(),
        in_repository(&spec.input),
    );
    if let Some(error) = &report.error {
        text.push_str(&format!("\n{}\n", error.trim()));
    }
    text.push_str(&format!(
        "\nInloop-Run: {}\nInloop-Status: {}\nInloop-Input: {}\n",
        report.label,
        report.status.as_str(),
        in_repository(&spec.input),
    ));
    if !spec.parameters.is_empty() {
        text.push_str(&format!(
            "Inloop-Parameters: {}\n",
            spec.parameters.to_json()
        ));
    }
    if let Some(page) = &report.page {
        text.push_str(&format!("Inloop-Page: {page}\n"));
    }
    text
}
