//! The server queue, read from the document: what runs next, and what a vanished runtime left.

use inloop_doc::execution::{Abandoned, Actor, Refusal, Step};
use inloop_doc::{Execution, ExecutionStatus, ExecutionTarget, Notebook};

/// The next entry for this runtime: the oldest queued `server` entry, unless one is running
/// already (a runtime runs one entry at a time, in request order).
pub fn next_to_run(notebook: &Notebook) -> Option<Execution> {
    let executions = notebook.executions_in(&[ExecutionStatus::Queued, ExecutionStatus::Running]);
    let busy = executions
        .iter()
        .any(|e| e.target == ExecutionTarget::Server && e.status == ExecutionStatus::Running);
    if busy {
        return None;
    }
    executions
        .into_iter()
        .find(|e| e.target == ExecutionTarget::Server && e.status == ExecutionStatus::Queued)
}

/// Ends as `interrupted` every `server` entry left running by a runtime that no longer holds the
/// lease (the state machine's [`Abandoned::LeaseHolderGone`]: entries of older epochs), except
/// `running_here`, the entry this runtime's kernel is still running (it kept going while
/// disconnected). Call on being granted the lease (`epoch`): the relay only grants it once the
/// previous holder's lease has run out, so that holder can no longer write. Returns the ids ended.
pub fn interrupt_orphans(
    notebook: &Notebook,
    session_id: &str,
    running_here: Option<&str>,
    epoch: u64,
    now: f64,
) -> inloop_doc::Result<Vec<String>> {
    let actor = Actor::runtime(session_id, Some(epoch));
    let step = Step::Reclaim(Abandoned::LeaseHolderGone);
    let mut ended = Vec::new();
    for orphan in notebook.executions_in(&[ExecutionStatus::Running]) {
        if orphan.target != ExecutionTarget::Server || Some(orphan.id.as_str()) == running_here {
            continue;
        }
        match notebook.advance_execution(&orphan.id, &actor, &step, now) {
            Ok(_) => ended.push(orphan.id),
            // Written under this very epoch: ours, and still ours to end.
            Err(inloop_doc::Error::Refused {
                refusal: Refusal::NotNewer { .. },
                ..
            }) => {}
            Err(error) => return Err(error),
        }
    }
    Ok(ended)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn notebook_with_runs(count: usize) -> (Notebook, Vec<String>) {
        let notebook = Notebook::blank();
        let cell = notebook.cell_ids()[0].clone();
        let ids = (0..count)
            .map(|i| {
                notebook
                    .request_execution(&cell, &ExecutionTarget::Server, "me", i as f64)
                    .unwrap()
            })
            .collect();
        (notebook, ids)
    }

    #[test]
    fn runs_go_one_at_a_time_in_request_order_and_browser_runs_are_not_ours() {
        let (notebook, ids) = notebook_with_runs(2);
        let cell = notebook.cell_ids()[0].clone();
        notebook
            .request_execution(&cell, &ExecutionTarget::Browser("b1".into()), "me", -1.0)
            .unwrap();
        assert_eq!(next_to_run(&notebook).unwrap().id, ids[0]);
        notebook
            .start_execution(&ids[0], "rt", Some(1), 1.0)
            .unwrap();
        assert!(next_to_run(&notebook).is_none(), "one at a time");
        let done = inloop_doc::execution::Outcome::ok(Some(1));
        notebook
            .finish_execution(&ids[0], "rt", Some(1), done, 2.0)
            .unwrap();
        assert_eq!(next_to_run(&notebook).unwrap().id, ids[1]);
    }

    #[test]
    fn a_new_holder_interrupts_what_the_old_one_left_running() {
        let (notebook, ids) = notebook_with_runs(3);
        notebook
            .start_execution(&ids[0], "old", Some(1), 1.0)
            .unwrap();
        notebook
            .start_execution(&ids[1], "new", Some(1), 1.0)
            .unwrap();
        // Ours, but from before a reconnection that cost us the lease, and no longer running.
        let ended = interrupt_orphans(&notebook, "new", None, 2, 3.0).unwrap();
        assert_eq!(ended, vec![ids[0].clone(), ids[1].clone()]);
        let first = notebook.execution(&ids[0]).unwrap();
        assert_eq!(first.status, ExecutionStatus::Interrupted);
        assert!(first.message.unwrap().contains("(old) went away"));
        assert_eq!(first.lease_epoch, Some(2));
        // The old holder can no longer write to it.
        let done = inloop_doc::execution::Outcome::ok(None);
        assert!(
            notebook
                .finish_execution(&ids[0], "old", Some(1), done, 4.0)
                .is_err()
        );
        // Queued entries are left to run.
        assert_eq!(next_to_run(&notebook).unwrap().id, ids[2]);
        assert!(
            interrupt_orphans(&notebook, "new", None, 2, 5.0)
                .unwrap()
                .is_empty()
        );
    }

    #[test]
    fn the_entry_still_running_here_is_kept() {
        let (notebook, ids) = notebook_with_runs(1);
        notebook
            .start_execution(&ids[0], "rt", Some(1), 1.0)
            .unwrap();
        let ended = interrupt_orphans(&notebook, "rt", Some(&ids[0]), 2, 2.0).unwrap();
        assert!(ended.is_empty());
        assert_eq!(
            notebook.execution(&ids[0]).unwrap().status,
            ExecutionStatus::Running
        );
    }
}
