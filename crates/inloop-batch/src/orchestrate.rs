//! `inloop run` from start to end, as the command line runs it: the `--git` branch opened and
//! checked before anything runs ([`open_history`]), then the runs with their progress bars,
//! each recorded on the branch as it ends, the summary table, and an error naming what did not
//! succeed ([`run_batch`]). The `inloop` binary only turns its flags into a [`Config`].

use std::future::Future;
use std::path::Path;
use std::sync::Arc;

use inloop_history::History;

use crate::{
    Bars, Config, Error, Observer, Recorded, RecordingObserver, Result, RunSpec, RunStatus,
    check_outputs, run_all, summary,
};

/// The branch `inloop/NAME` that `--git[=NAME]` records `runs` on, in the repository holding the
/// working directory; `None` without `--git`. `Some("")` (a bare `--git`) names it after the
/// first run's notebook. Checked before anything runs: a repository, a name git accepts, and
/// every run's output inside the repository.
pub fn open_history(name: Option<&str>, runs: &[RunSpec]) -> Result<Option<History>> {
    let name = match name {
        None => return Ok(None),
        Some("") => runs
            .first()
            .and_then(|run| run.input.file_stem())
            .map_or_else(|| "runs".into(), |s| s.to_string_lossy().into_owned()),
        Some(given) => given.to_owned(),
    };
    let history = History::open(Path::new("."), &name)?;
    check_outputs(&history, runs)?;
    Ok(Some(history))
}

/// Runs every run of `config` ([`run_all`]) until they end or `stop` completes (Ctrl+C), with
/// progress bars on stderr when `progress` is set, and each finished run committed on
/// `history` when given. Then says on stderr what was recorded, prints the summary table on
/// stdout, and fails with [`Error::Stopped`], [`Error::Unsuccessful`] or [`Error::NotRecorded`]
/// when not everything ran and was recorded.
pub async fn run_batch(
    config: Config,
    history: Option<History>,
    progress: bool,
    stop: impl Future<Output = ()>,
) -> Result<()> {
    let bars = Arc::new(Bars::new(config.runs.len(), progress));
    let branch = history.as_ref().map(|h| h.branch().to_owned());
    let recorder = history.map(|history| {
        Arc::new(RecordingObserver::new(
            Arc::new(history),
            config.runs.clone(),
            bars.clone(),
        ))
    });
    let observer: Arc<dyn Observer> = match &recorder {
        Some(recorder) => recorder.clone(),
        None => bars.clone(),
    };
    let reports = tokio::select! {
        reports = run_all(config, observer) => Some(reports),
        () = stop => None,
    };
    bars.finish();
    // Runs that ended before a Ctrl-C are recorded all the same.
    let unrecorded = match (recorder, &branch) {
        (Some(recorder), Some(branch)) => report_records(&recorder.finish(), branch),
        _ => 0,
    };
    let Some(reports) = reports else {
        return Err(Error::Stopped);
    };
    print!("{}", summary(&reports));
    let failed = reports.iter().filter(|r| r.status != RunStatus::Ok).count();
    if failed > 0 {
        return Err(Error::Unsuccessful {
            failed,
            total: reports.len(),
        });
    }
    if unrecorded > 0 {
        return Err(Error::NotRecorded {
            count: unrecorded,
            branch: branch.unwrap_or_default(),
        });
    }
    Ok(())
}

/// Says on stderr what `--git` recorded, and returns how many records failed.
fn report_records(records: &[Recorded], branch: &str) -> usize {
    let mut committed = 0;
    let mut failed = 0;
    for record in records {
        match &record.result {
            Ok(Some(_)) => committed += 1,
            Ok(None) => {}
            Err(error) => {
                failed += 1;
                eprintln!("{}: not recorded on {branch}: {error}", record.label);
            }
        }
    }
    eprintln!("{committed} runs recorded on the branch {branch}: git log --oneline {branch}");
    failed
}
