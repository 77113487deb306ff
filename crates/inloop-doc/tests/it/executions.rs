use inloop_doc::execution::{Abandoned, Actor, Outcome, Refusal, Step};
use inloop_doc::{
    CellType, Error, ExecutionStatus, ExecutionTarget, Notebook, Runtime, RuntimeKind,
    RuntimeStatus,
};

fn notebook_with_cell(source: &str) -> (Notebook, String) {
    let notebook = Notebook::new();
    let id = notebook.push_cell(CellType::Code, source).unwrap();
    (notebook, id)
}

#[test]
fn an_entry_snapshots_the_code_and_moves_through_its_states() {
    let (notebook, cell) = notebook_with_cell("print(1)");
    let run = notebook
        .request_execution(&cell, &ExecutionTarget::Server, "ada", 10.0)
        .unwrap();
    notebook.set_source(&cell, "print(2)").unwrap();

    let queued = notebook.execution(&run).unwrap();
    assert_eq!(
        (queued.status, queued.code.as_str(), queued.requested_at),
        (ExecutionStatus::Queued, "print(1)", 10.0)
    );
    assert_eq!(
        notebook.queued_executions(&ExecutionTarget::Server).len(),
        1
    );
    assert!(
        notebook
            .queued_executions(&ExecutionTarget::Browser("b1".into()))
            .is_empty()
    );

    notebook
        .start_execution(&run, "rt-1", Some(3), 11.0)
        .unwrap();
    notebook
        .finish_execution(&run, "rt-1", Some(3), Outcome::ok(Some(1)), 12.0)
        .unwrap();
    let done = notebook.execution(&run).unwrap();
    assert_eq!(done.status, ExecutionStatus::Done);
    assert_eq!(
        (
            done.runtime.as_deref(),
            done.lease_epoch,
            done.execution_count
        ),
        (Some("rt-1"), Some(3), Some(1))
    );
    assert_eq!(
        (done.started_at, done.finished_at),
        (Some(11.0), Some(12.0))
    );
    assert!(
        notebook
            .queued_executions(&ExecutionTarget::Server)
            .is_empty()
    );

    // Final states are final.
    let err = notebook
        .start_execution(&run, "rt-1", Some(3), 13.0)
        .unwrap_err();
    assert!(matches!(
        err,
        Error::Refused {
            refusal: Refusal::Transition {
                from: ExecutionStatus::Done,
                step: "start"
            },
            ..
        }
    ));
}

#[test]
fn writes_from_an_older_lease_epoch_are_refused_and_newer_holders_may_end_entries() {
    let (notebook, cell) = notebook_with_cell("import time; time.sleep(100)");
    let run = notebook
        .request_execution(&cell, &ExecutionTarget::Server, "ada", 0.0)
        .unwrap();
    notebook
        .start_execution(&run, "old-holder", Some(4), 1.0)
        .unwrap();

    let err = notebook
        .finish_execution(&run, "old-holder", Some(3), Outcome::ok(None), 2.0)
        .unwrap_err();
    assert!(
        matches!(
            err,
            Error::Refused {
                refusal: Refusal::StaleLeaseEpoch {
                    current: 4,
                    attempted: 3,
                },
                ..
            }
        ),
        "{err}"
    );
    assert_eq!(
        notebook.execution(&run).unwrap().status,
        ExecutionStatus::Running
    );

    let reclaim = Step::Reclaim(Abandoned::LeaseHolderGone);
    notebook
        .advance_execution(&run, &Actor::runtime("new-holder", Some(5)), &reclaim, 3.0)
        .unwrap();
    let entry = notebook.execution(&run).unwrap();
    assert_eq!(
        (entry.status, entry.lease_epoch),
        (ExecutionStatus::Interrupted, Some(5))
    );
    assert_eq!(
        entry.message.as_deref(),
        Some("interrupted: the runtime running it (old-holder) went away before it finished")
    );
}

#[test]
fn queued_entries_can_be_cancelled_but_not_finished_without_running() {
    let (notebook, cell) = notebook_with_cell("1");
    let run = notebook
        .request_execution(&cell, &ExecutionTarget::Browser("tab".into()), "ada", 0.0)
        .unwrap();
    let err = notebook
        .finish_execution(&run, "browser-tab", None, Outcome::ok(None), 1.0)
        .unwrap_err();
    assert!(matches!(
        err,
        Error::Refused {
            refusal: Refusal::Transition { .. },
            ..
        }
    ));
    notebook.stop_execution(&run, 1.0).unwrap();
    assert_eq!(
        notebook.execution(&run).unwrap().status,
        ExecutionStatus::Cancelled
    );
    assert!(matches!(
        notebook.execution("nope"),
        Err(Error::ExecutionNotFound(_))
    ));
}

#[test]
fn executions_list_in_request_order_and_only_code_cells_run() {
    let (notebook, cell) = notebook_with_cell("1");
    let later = notebook
        .request_execution(&cell, &ExecutionTarget::Server, "a", 20.0)
        .unwrap();
    let earlier = notebook
        .request_execution(&cell, &ExecutionTarget::Server, "a", 10.0)
        .unwrap();
    let order: Vec<_> = notebook.executions().into_iter().map(|e| e.id).collect();
    assert_eq!(order, [earlier, later]);

    let markdown = notebook.push_cell(CellType::Markdown, "# no").unwrap();
    assert!(matches!(
        notebook.request_execution(&markdown, &ExecutionTarget::Server, "a", 0.0),
        Err(Error::NotACodeCell(_))
    ));
}

#[test]
fn runtimes_register_heartbeat_and_leave() {
    let notebook = Notebook::new();
    let runtime = Runtime {
        session_id: "rt-1".into(),
        kind: RuntimeKind::Server,
        name: "gpu-box".into(),
        kernels: vec!["python3".into()],
        gpu: Some("NVIDIA A100".into()),
        container_image: None,
        status: RuntimeStatus::Starting,
        heartbeat_at: 1.0,
        lease_epoch: Some(2),
        restart_requested_at: None,
        restarted_at: None,
    };
    notebook.register_runtime(&runtime);
    notebook
        .runtime_heartbeat("rt-1", Some(RuntimeStatus::Idle), 5.0)
        .unwrap();
    let seen = &notebook.runtimes()[0];
    assert_eq!(
        seen,
        &Runtime {
            status: RuntimeStatus::Idle,
            heartbeat_at: 5.0,
            ..runtime
        }
    );
    assert!(matches!(
        notebook.runtime_heartbeat("rt-2", None, 5.0),
        Err(Error::RuntimeNotFound(_))
    ));
    // A restart is asked for through the document and answered by the runtime.
    notebook.request_restart("rt-1", 6.0).unwrap();
    assert_eq!(notebook.runtimes()[0].restart_requested_at, Some(6.0));
    notebook.mark_restarted("rt-1", 7.0).unwrap();
    assert_eq!(notebook.runtimes()[0].restarted_at, Some(7.0));
    assert!(notebook.request_restart("rt-2", 6.0).is_err());
    // What the kernel holds is published for peers without it, and replaced whole.
    assert_eq!(notebook.runtime_variables("rt-1"), None);
    let first = serde_json::json!([{"name": "x", "type": "int", "repr": "42"}]);
    notebook.set_runtime_variables("rt-1", &first, 8.0).unwrap();
    assert_eq!(notebook.runtime_variables("rt-1"), Some((first, 8.0)));
    let second = serde_json::json!([]);
    notebook
        .set_runtime_variables("rt-1", &second, 9.0)
        .unwrap();
    assert_eq!(
        notebook.runtime_variables("rt-1"),
        Some((second.clone(), 9.0))
    );
    assert!(
        notebook
            .set_runtime_variables("rt-2", &second, 9.0)
            .is_err()
    );
    notebook.remove_runtime("rt-1");
    assert!(notebook.runtimes().is_empty());
}

#[test]
fn runtimes_nobody_will_see_again_are_forgotten() {
    let notebook = Notebook::new();
    let runtime = |id: &str, status: RuntimeStatus, heartbeat_at: f64| Runtime {
        session_id: id.into(),
        kind: RuntimeKind::Browser,
        name: id.into(),
        kernels: vec!["python3".into()],
        gpu: None,
        container_image: None,
        status,
        heartbeat_at,
        lease_epoch: None,
        restart_requested_at: None,
        restarted_at: None,
    };
    let now = 100_000.0;
    let gone_long_ago = now - inloop_doc::FORGET_GONE_AFTER_S - 1.0;
    let silent_long_ago = now - inloop_doc::FORGET_SILENT_AFTER_S - 1.0;
    notebook.register_runtime(&runtime(
        "closed-long-ago",
        RuntimeStatus::Gone,
        gone_long_ago,
    ));
    notebook.register_runtime(&runtime("closed-just-now", RuntimeStatus::Gone, now - 10.0));
    notebook.register_runtime(&runtime("crashed", RuntimeStatus::Idle, silent_long_ago));
    notebook.register_runtime(&runtime("asleep", RuntimeStatus::Idle, gone_long_ago));
    notebook.register_runtime(&runtime("alive", RuntimeStatus::Busy, now - 1.0));
    assert_eq!(notebook.forget_runtimes(now), 2);
    let left: Vec<String> = notebook
        .runtimes()
        .into_iter()
        .map(|r| r.session_id)
        .collect();
    assert_eq!(left, ["alive", "asleep", "closed-just-now"]);
    assert_eq!(notebook.forget_runtimes(now), 0);
}

#[test]
fn interrupting_cancels_a_queued_run_and_flags_a_running_one() {
    let notebook = Notebook::blank();
    let cell = notebook.cell_ids()[0].clone();
    let queued = notebook
        .request_execution(&cell, &ExecutionTarget::Server, "me", 1.0)
        .unwrap();
    notebook.stop_execution(&queued, 2.0).unwrap();
    let cancelled = notebook.execution(&queued).unwrap();
    assert_eq!(cancelled.status, ExecutionStatus::Cancelled);
    assert_eq!(
        cancelled.message.as_deref(),
        Some("cancelled before it ran")
    );

    let running = notebook
        .request_execution(&cell, &ExecutionTarget::Server, "me", 3.0)
        .unwrap();
    notebook
        .start_execution(&running, "rt", Some(1), 4.0)
        .unwrap();
    notebook.stop_execution(&running, 5.0).unwrap();
    let flagged = notebook.execution(&running).unwrap();
    assert_eq!(
        flagged.status,
        ExecutionStatus::Running,
        "the runtime ends it"
    );
    assert_eq!(flagged.interrupt_requested_at, Some(5.0));
    assert!(
        notebook.stop_execution(&queued, 6.0).is_err(),
        "already over"
    );
}
