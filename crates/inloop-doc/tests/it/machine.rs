//! The execution state machine, table-driven: every transition and every refusal is a row, and
//! every combination of state, target, actor and step is checked against the allowed moves.

use inloop_doc::execution::{
    Abandoned, Actor, CellWrite, Decline, Outcome, Refusal, Reply, Step, ending, judge,
};
use inloop_doc::{CellType, Execution, ExecutionStatus, ExecutionTarget, Notebook, Output};

use ExecutionStatus::{Cancelled, Done, Error, Interrupted, Queued, Running};

/// An entry in `status`, for `target`; a running one was started by `rt` (server, epoch 3) or
/// `browser-7` (its browser).
fn entry(status: ExecutionStatus, target: &ExecutionTarget, interrupt_asked: bool) -> Execution {
    let started = status != Queued;
    let server = *target == ExecutionTarget::Server;
    Execution {
        id: "e".into(),
        cell_id: "c".into(),
        code: "1".into(),
        target: target.clone(),
        requested_by: "ada".into(),
        requested_at: 1.0,
        status,
        runtime: started.then(|| if server { "rt" } else { "browser-7" }.to_owned()),
        lease_epoch: (started && server).then_some(3),
        started_at: started.then_some(2.0),
        finished_at: status.is_final().then_some(3.0),
        execution_count: None,
        message: None,
        interrupt_requested_at: interrupt_asked.then_some(2.5),
    }
}

fn server() -> ExecutionTarget {
    ExecutionTarget::Server
}

fn browser() -> ExecutionTarget {
    ExecutionTarget::Browser("7".into())
}

fn rt(epoch: u64) -> Actor {
    Actor::runtime("rt", Some(epoch))
}

fn replied(reply: Reply) -> Step {
    Step::Finish(Outcome::Replied {
        reply,
        execution_count: Some(4),
    })
}

fn last_error() -> Option<String> {
    Some("ZeroDivisionError: division by zero".into())
}

/// What a row expects: the new status (`None`: unchanged) and message, or the refusal.
type Expected = Result<(Option<ExecutionStatus>, Option<&'static str>), Refusal>;

#[test]
fn every_transition_and_every_refusal() {
    let stale = |current, attempted| Refusal::StaleLeaseEpoch { current, attempted };
    let transition = |from, step| Refusal::Transition { from, step };
    let ok = |status, message| -> Expected { Ok((Some(status), message)) };
    let rows: Vec<(&str, Execution, Actor, Step, Expected)> = vec![
        // Start: the target's runtime only.
        (
            "the lease holder starts a server entry",
            entry(Queued, &server(), false),
            rt(3),
            Step::Start,
            ok(Running, None),
        ),
        (
            "a server entry needs the lease",
            entry(Queued, &server(), false),
            Actor::runtime("rt", None),
            Step::Start,
            Err(Refusal::NoLease { step: "start" }),
        ),
        (
            "the browser named starts a browser entry",
            entry(Queued, &browser(), false),
            Actor::runtime("browser-7", None),
            Step::Start,
            ok(Running, None),
        ),
        (
            "another browser may not start it",
            entry(Queued, &browser(), false),
            Actor::runtime("browser-8", None),
            Step::Start,
            Err(Refusal::NotTheTarget {
                target: browser(),
                session: "browser-8".into(),
                step: "start",
            }),
        ),
        (
            "the server may not start a browser entry",
            entry(Queued, &browser(), false),
            rt(3),
            Step::Start,
            Err(Refusal::NotTheTarget {
                target: browser(),
                session: "rt".into(),
                step: "start",
            }),
        ),
        (
            "a peer may not start anything",
            entry(Queued, &server(), false),
            Actor::Peer,
            Step::Start,
            Err(Refusal::NotARuntime { step: "start" }),
        ),
        (
            "a running entry does not start again",
            entry(Running, &server(), false),
            rt(3),
            Step::Start,
            Err(transition(Running, "start")),
        ),
        (
            "a final entry does not start again",
            entry(Done, &server(), false),
            rt(3),
            Step::Start,
            Err(transition(Done, "start")),
        ),
        // Decline: the target's runtime, queued entries only.
        (
            "changed code is declined, cancelled",
            entry(Queued, &server(), false),
            rt(3),
            Step::Decline(Decline::CodeChanged),
            ok(Cancelled, Some(inloop_doc::execution::CODE_CHANGED)),
        ),
        (
            "no kernel: declined, error",
            entry(Queued, &browser(), false),
            Actor::runtime("browser-7", None),
            Step::Decline(Decline::NoKernel("Pyodide failed to load".into())),
            ok(Error, Some("Pyodide failed to load")),
        ),
        (
            "only the target declines",
            entry(Queued, &browser(), false),
            Actor::runtime("browser-8", None),
            Step::Decline(Decline::CodeChanged),
            Err(Refusal::NotTheTarget {
                target: browser(),
                session: "browser-8".into(),
                step: "decline",
            }),
        ),
        (
            "a running entry is not declined",
            entry(Running, &server(), false),
            rt(3),
            Step::Decline(Decline::CodeChanged),
            Err(transition(Running, "decline")),
        ),
        // Finish: the runtime that runs it; the endings.
        (
            "ok: done",
            entry(Running, &server(), false),
            rt(3),
            replied(Reply::Ok),
            ok(Done, None),
        ),
        (
            "error: error, with the cell's error",
            entry(Running, &server(), false),
            rt(3),
            replied(Reply::Error),
            ok(Error, Some("ZeroDivisionError: division by zero")),
        ),
        (
            "error after a stop was asked: interrupted",
            entry(Running, &server(), true),
            rt(3),
            replied(Reply::Error),
            ok(Interrupted, Some("interrupted")),
        ),
        (
            "aborted: cancelled",
            entry(Running, &server(), false),
            rt(3),
            replied(Reply::Aborted),
            ok(Cancelled, Some("aborted: an earlier cell failed")),
        ),
        (
            "a dead kernel: error, saying how",
            entry(Running, &server(), false),
            rt(3),
            Step::Finish(Outcome::KernelDied {
                reason: "the kernel died (signal: 9)".into(),
            }),
            ok(Error, Some("the kernel died (signal: 9)")),
        ),
        (
            "a kernel stopped after a stop was asked: interrupted",
            entry(Running, &browser(), true),
            Actor::runtime("browser-7", None),
            Step::Finish(Outcome::KernelDied {
                reason: "the worker was replaced".into(),
            }),
            ok(Interrupted, Some("interrupted: the worker was replaced")),
        ),
        (
            "a restart: interrupted",
            entry(Running, &server(), false),
            rt(3),
            Step::Finish(Outcome::Restarted),
            ok(Interrupted, Some("interrupted: the kernel was restarted")),
        ),
        (
            "a time limit: interrupted",
            entry(Running, &server(), false),
            rt(3),
            Step::Finish(Outcome::TimedOut { after_s: 2.0 }),
            ok(
                Interrupted,
                Some("interrupted: it ran longer than its limit of 2.0 s"),
            ),
        ),
        (
            "a transport failure: error",
            entry(Running, &server(), false),
            rt(3),
            Step::Finish(Outcome::Failed {
                message: "socket closed".into(),
            }),
            ok(Error, Some("socket closed")),
        ),
        (
            "a newer holder of the same session finishes it",
            entry(Running, &server(), false),
            rt(4),
            replied(Reply::Ok),
            ok(Done, None),
        ),
        (
            "an older epoch may not finish it",
            entry(Running, &server(), false),
            rt(2),
            replied(Reply::Ok),
            Err(stale(3, 2)),
        ),
        (
            "another runtime may not finish it",
            entry(Running, &server(), false),
            Actor::runtime("other", Some(3)),
            replied(Reply::Ok),
            Err(Refusal::NotTheRunner {
                runner: "rt".into(),
                session: "other".into(),
            }),
        ),
        (
            "a peer may not finish it",
            entry(Running, &server(), false),
            Actor::Peer,
            replied(Reply::Ok),
            Err(Refusal::NotARuntime { step: "finish" }),
        ),
        (
            "a queued entry is not finished",
            entry(Queued, &server(), false),
            rt(3),
            replied(Reply::Ok),
            Err(transition(Queued, "finish")),
        ),
        (
            "a final entry is not finished again",
            entry(Interrupted, &browser(), false),
            Actor::runtime("browser-7", None),
            replied(Reply::Ok),
            Err(transition(Interrupted, "finish")),
        ),
        // Stop: anyone.
        (
            "stopping a queued entry cancels it",
            entry(Queued, &server(), false),
            Actor::Peer,
            Step::Stop,
            ok(Cancelled, Some("cancelled before it ran")),
        ),
        (
            "stopping a running entry asks its runtime",
            entry(Running, &server(), false),
            Actor::Peer,
            Step::Stop,
            Ok((None, None)),
        ),
        (
            "asking twice keeps the first request",
            entry(Running, &server(), true),
            Actor::Peer,
            Step::Stop,
            Ok((None, None)),
        ),
        (
            "a finished entry cannot be stopped",
            entry(Done, &server(), false),
            Actor::Peer,
            Step::Stop,
            Err(transition(Done, "stop")),
        ),
        // Reclaim: what a runtime that went away leaves.
        (
            "a newer lease holder ends the old holder's run",
            entry(Running, &server(), false),
            Actor::runtime("new", Some(4)),
            Step::Reclaim(Abandoned::LeaseHolderGone),
            ok(
                Interrupted,
                Some("interrupted: the runtime running it (rt) went away before it finished"),
            ),
        ),
        (
            "not under the same epoch: its runtime may still end it",
            entry(Running, &server(), false),
            rt(3),
            Step::Reclaim(Abandoned::LeaseHolderGone),
            Err(Refusal::NotNewer {
                current: Some(3),
                attempted: Some(3),
            }),
        ),
        (
            "not without a lease",
            entry(Running, &server(), false),
            Actor::runtime("browser-8", None),
            Step::Reclaim(Abandoned::LeaseHolderGone),
            Err(Refusal::NotNewer {
                current: Some(3),
                attempted: None,
            }),
        ),
        (
            "queued server entries are left to run",
            entry(Queued, &server(), false),
            Actor::runtime("new", Some(4)),
            Step::Reclaim(Abandoned::LeaseHolderGone),
            Err(transition(Queued, "reclaim")),
        ),
        (
            "another browser ends a gone tab's run",
            entry(Running, &browser(), false),
            Actor::runtime("browser-8", None),
            Step::Reclaim(Abandoned::TabGone),
            ok(
                Interrupted,
                Some("interrupted: the browser tab running it went away"),
            ),
        ),
        (
            "and its queued entries",
            entry(Queued, &browser(), false),
            Actor::runtime("browser-8", None),
            Step::Reclaim(Abandoned::TabGone),
            ok(
                Cancelled,
                Some("cancelled: the browser tab that was to run it went away"),
            ),
        ),
        (
            "a tab does not call itself gone",
            entry(Running, &browser(), false),
            Actor::runtime("browser-7", None),
            Step::Reclaim(Abandoned::TabGone),
            Err(Refusal::NotTheTarget {
                target: browser(),
                session: "browser-7".into(),
                step: "reclaim",
            }),
        ),
        (
            "a server runtime does not end browser runs",
            entry(Running, &browser(), false),
            rt(4),
            Step::Reclaim(Abandoned::TabGone),
            Err(Refusal::NotTheTarget {
                target: browser(),
                session: "rt".into(),
                step: "reclaim",
            }),
        ),
        (
            "a closing page ends its own runs",
            entry(Running, &browser(), false),
            Actor::runtime("browser-7", None),
            Step::Reclaim(Abandoned::PageClosed),
            ok(
                Interrupted,
                Some("interrupted: the page running it was closed"),
            ),
        ),
        (
            "and its queued ones",
            entry(Queued, &browser(), false),
            Actor::runtime("browser-7", None),
            Step::Reclaim(Abandoned::PageClosed),
            ok(
                Cancelled,
                Some("cancelled: the page that was to run it was closed"),
            ),
        ),
        (
            "but not another page's",
            entry(Queued, &browser(), false),
            Actor::runtime("browser-8", None),
            Step::Reclaim(Abandoned::PageClosed),
            Err(Refusal::NotTheTarget {
                target: browser(),
                session: "browser-8".into(),
                step: "reclaim",
            }),
        ),
        (
            "a peer reclaims nothing",
            entry(Running, &browser(), false),
            Actor::Peer,
            Step::Reclaim(Abandoned::TabGone),
            Err(Refusal::NotARuntime { step: "reclaim" }),
        ),
        (
            "a final entry is not reclaimed",
            entry(Cancelled, &browser(), false),
            Actor::runtime("browser-8", None),
            Step::Reclaim(Abandoned::TabGone),
            Err(transition(Cancelled, "reclaim")),
        ),
    ];
    for (name, entry, actor, step, expected) in rows {
        let got = judge(&entry, &actor, &step, 9.0, last_error)
            .map(|writes| (writes.status, writes.message));
        let expected = expected.map(|(status, message)| (status, message.map(str::to_owned)));
        assert_eq!(got, expected, "{name}");
    }
}

#[test]
fn what_each_step_writes() {
    let start = judge(
        &entry(Queued, &server(), false),
        &rt(5),
        &Step::Start,
        9.0,
        last_error,
    )
    .unwrap();
    assert_eq!(
        (
            start.runtime.as_deref(),
            start.started_at,
            start.lease_epoch,
            start.cell
        ),
        (Some("rt"), Some(9.0), Some(5), Some(CellWrite::BeginRun)),
        "who runs it, when, under which epoch; the cell's outputs are cleared"
    );
    let done = judge(
        &entry(Running, &server(), false),
        &rt(3),
        &replied(Reply::Ok),
        9.0,
        last_error,
    )
    .unwrap();
    assert_eq!(
        (done.finished_at, done.execution_count, done.cell),
        (Some(9.0), Some(4), Some(CellWrite::EndRun))
    );
    let stop = judge(
        &entry(Running, &server(), false),
        &Actor::Peer,
        &Step::Stop,
        9.0,
        last_error,
    )
    .unwrap();
    assert_eq!(
        (stop.interrupt_requested_at, stop.status),
        (Some(9.0), None)
    );
    let cancelled = judge(
        &entry(Queued, &server(), false),
        &Actor::Peer,
        &Step::Stop,
        9.0,
        last_error,
    )
    .unwrap();
    assert_eq!(
        cancelled.cell, None,
        "a run that never began leaves its cell alone"
    );
}

/// Every state × target × actor × step: a step either is refused and writes nothing, or moves
/// the entry only as `ExecutionStatus::can_become` allows; final states refuse every step.
#[test]
fn no_combination_escapes_the_allowed_moves() {
    let statuses = [Queued, Running, Done, Error, Cancelled, Interrupted];
    let actors = [
        Actor::Peer,
        rt(2),
        rt(3),
        rt(4),
        Actor::runtime("rt", None),
        Actor::runtime("other", Some(9)),
        Actor::runtime("browser-7", None),
        Actor::runtime("browser-8", None),
    ];
    let steps = [
        Step::Start,
        Step::Decline(Decline::CodeChanged),
        Step::Decline(Decline::NoKernel("x".into())),
        replied(Reply::Ok),
        replied(Reply::Error),
        replied(Reply::Aborted),
        Step::Finish(Outcome::KernelDied { reason: "x".into() }),
        Step::Finish(Outcome::Restarted),
        Step::Finish(Outcome::TimedOut { after_s: 1.0 }),
        Step::Finish(Outcome::Failed {
            message: "x".into(),
        }),
        Step::Stop,
        Step::Reclaim(Abandoned::LeaseHolderGone),
        Step::Reclaim(Abandoned::TabGone),
        Step::Reclaim(Abandoned::PageClosed),
    ];
    let mut allowed = 0;
    for status in statuses {
        for target in [server(), browser()] {
            for asked in [false, true] {
                let entry = entry(status, &target, asked && status == Running);
                for actor in &actors {
                    for step in &steps {
                        let Ok(writes) = judge(&entry, actor, step, 9.0, last_error) else {
                            continue;
                        };
                        allowed += 1;
                        assert!(!status.is_final(), "{status} {actor:?} {step:?}");
                        if let Some(next) = writes.status {
                            assert!(
                                status.can_become(next),
                                "{status} → {next} by {actor:?} {step:?}"
                            );
                        }
                        if let (Some(current), Some(written)) =
                            (entry.lease_epoch, writes.lease_epoch)
                        {
                            assert!(written >= current, "epochs never go back");
                        }
                    }
                }
            }
        }
    }
    assert!(allowed > 20, "the table allows some steps ({allowed})");
}

/// Through the document: one transaction writes the entry and its cell.
#[test]
fn the_notebook_applies_the_writes_to_the_entry_and_the_cell() {
    let notebook = Notebook::new();
    let cell = notebook.push_cell(CellType::Code, "1/0").unwrap();
    notebook
        .append_output(
            &cell,
            &Output::Stream {
                name: inloop_doc::StreamName::Stdout,
                text: "old\n".into(),
            },
        )
        .unwrap();
    let run = notebook
        .request_execution(&cell, &browser(), "ada", 1.0)
        .unwrap();
    notebook
        .start_execution(&run, "browser-7", None, 2.0)
        .unwrap();
    let begun = notebook.cell(&cell).unwrap();
    assert!(
        begun.outputs.is_empty(),
        "the last run's outputs are cleared as this one starts"
    );
    assert_eq!(
        begun.execution_state,
        Some(inloop_doc::ExecutionState::Running)
    );
    notebook
        .append_output(
            &cell,
            &Output::Error {
                ename: "ZeroDivisionError".into(),
                evalue: "division by zero".into(),
                traceback: vec![],
            },
        )
        .unwrap();
    let ended = notebook
        .finish_execution(
            &run,
            "browser-7",
            None,
            Outcome::Replied {
                reply: Reply::Error,
                execution_count: Some(1),
            },
            3.0,
        )
        .unwrap();
    assert_eq!(
        (
            ended.status,
            ended.message.as_deref(),
            ended.execution_count
        ),
        (Error, Some("ZeroDivisionError: division by zero"), Some(1))
    );
    assert_eq!(
        notebook.cell(&cell).unwrap().execution_state,
        Some(inloop_doc::ExecutionState::Idle)
    );
    // A refused step writes nothing.
    let before = notebook.encode_update_v1();
    assert!(notebook.stop_execution(&run, 4.0).is_err());
    assert_eq!(notebook.encode_update_v1(), before);
}

/// The rule runs without a queue entry as well (`inloop run`, the MCP server on a local file).
#[test]
fn runs_without_an_entry_end_by_the_same_rule() {
    let aborted = Outcome::Replied {
        reply: Reply::Aborted,
        execution_count: None,
    };
    assert_eq!(
        ending(&aborted, false, || None).status,
        Cancelled,
        "the MCP server used to say error"
    );
    let error = Outcome::Replied {
        reply: Reply::Error,
        execution_count: None,
    };
    assert_eq!(
        ending(&error, false, || None).message.as_deref(),
        Some("the code raised an error")
    );
}

/// A requester whose clock runs ahead of the runtime's: the answer is stamped no earlier than
/// the request, so the restart is not asked for again and again (the server runtime stamped it
/// with its own clock and restarted in a loop).
#[test]
fn a_restart_is_answered_once_whatever_the_clocks_say() {
    let notebook = Notebook::new();
    let runtime = inloop_doc::Runtime {
        session_id: "rt".into(),
        kind: inloop_doc::RuntimeKind::Server,
        name: "rt".into(),
        kernels: vec![],
        gpu: None,
        container_image: None,
        status: inloop_doc::RuntimeStatus::Idle,
        heartbeat_at: 0.0,
        lease_epoch: None,
        restart_requested_at: None,
        restarted_at: None,
    };
    notebook.register_runtime(&runtime);
    notebook.request_restart("rt", 1000.0).unwrap();
    assert!(notebook.runtimes()[0].restart_pending());
    notebook.mark_restarted("rt", 400.0).unwrap();
    let answered = &notebook.runtimes()[0];
    assert!(!answered.restart_pending(), "{answered:?}");
    assert_eq!(answered.restarted_at, Some(1000.0));
    // A later request is pending again.
    notebook.request_restart("rt", 1001.0).unwrap();
    assert!(notebook.runtimes()[0].restart_pending());
}
