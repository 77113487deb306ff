//! The execution state machine: the one owner of how an entry of the execution queue goes from
//! `queued` to its end.
//!
//! Sans-IO and pure: [`judge`] looks at an entry as the document holds it, at who asks
//! ([`Actor`]) and what for ([`Step`]), and either refuses ([`Refusal`]) or says what to write
//! ([`Writes`]). [`crate::Notebook::advance_execution`] applies the writes in one transaction.
//! Every runtime (the server agent, the browser engine) and every peer that stops a run goes
//! through it, so they cannot disagree on what an interrupt, an abort or a dead kernel makes of
//! an entry.
//!
//! ```text
//!                  Start (the target's runtime)
//!   ┌────────┐ ─────────────────────────────────▶ ┌─────────┐  Finish(outcome)  ┌───────────────┐
//!   │ queued │                                    │ running │ ────────────────▶ │ done / error /│
//!   └────────┘ ─┐                                 └─────────┘   (its runtime)   │ interrupted / │
//!      │        │ Decline (the target's runtime):      │  ▲ Stop (anyone):      │ cancelled     │
//!      │        │ code changed → cancelled,            │  └ interrupt asked     └───────────────┘
//!      │        │ no kernel → error                    │                             ▲
//!      │        └──────────────────────────────────────┼─────────────────────────────┘
//!      │ Stop (anyone) → cancelled                     │ Reclaim: a newer lease holder, or a
//!      └───────────────────────────────────────────────┴ browser for a tab gone → interrupted
//! ```
//!
//! The rules, each a row of the table test in `tests/it/machine.rs`:
//! - **Who.** A server entry is started, declined and finished only by the runtime holding the
//!   runtime lease (it passes its epoch); a browser entry only by the browser it names (session
//!   `browser-<client id>`, no epoch). An entry is finished only by the runtime that started it.
//!   Any peer may stop an entry. A running server entry whose runtime went away is reclaimed only
//!   by a holder of a newer lease epoch; a browser entry by any browser runtime (the driver
//!   decides when a tab is gone).
//! - **Epochs.** A write carrying a lease epoch older than the entry's is refused; the entry
//!   keeps the newest epoch that wrote it, so a runtime that lost the lease without knowing can
//!   no longer change what the new holder wrote.
//! - **Endings.** An error reply or a dead kernel after someone asked to stop the entry ends it
//!   `interrupted`; an abort (the kernel dropped its queue after an earlier failure) ends it
//!   `cancelled`; a dead kernel otherwise ends it `error`; a restart ends it `interrupted`.

use crate::{Execution, ExecutionStatus, ExecutionTarget};

/// What a runtime writes when it refuses a run whose code snapshot was changed after the request.
pub const CODE_CHANGED: &str =
    "refused: the code of this run was changed after it was requested; run the cell again";

/// Who asks for a step.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Actor {
    /// A peer that does not run the entry: it asks for runs and asks them to stop.
    Peer,
    /// A runtime, by its session id, with the runtime lease epoch it holds (server runtimes;
    /// browsers hold none).
    Runtime { session: String, epoch: Option<u64> },
}

impl Actor {
    pub fn runtime(session: &str, epoch: Option<u64>) -> Self {
        Self::Runtime {
            session: session.to_owned(),
            epoch,
        }
    }

    fn epoch(&self) -> Option<u64> {
        match self {
            Self::Peer => None,
            Self::Runtime { epoch, .. } => *epoch,
        }
    }
}

/// What a kernel's `execute_reply` said.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Reply {
    Ok,
    /// The code raised (or was interrupted: Python's `KeyboardInterrupt` is an error too).
    Error,
    /// The kernel did not run the code: an earlier execution failed and it dropped its queue.
    Aborted,
}

/// How running an entry's code ended, as the runtime that ran it saw it.
#[derive(Clone, Debug, PartialEq)]
pub enum Outcome {
    /// The kernel replied.
    Replied {
        reply: Reply,
        execution_count: Option<i64>,
    },
    /// The kernel process went away before replying; `reason` says how, as the runtime tells it
    /// (e.g. `the kernel died (signal: 9 (SIGKILL))`).
    KernelDied { reason: String },
    /// The runtime restarted the kernel (a peer asked for it) while the entry ran.
    Restarted,
    /// The run went past its time limit; the runtime interrupted it.
    TimedOut { after_s: f64 },
    /// The runtime could not talk to the kernel (a transport error, say).
    Failed { message: String },
}

impl Outcome {
    /// The kernel ran the code without error (`execute_reply` `ok`).
    pub fn ok(execution_count: Option<i64>) -> Self {
        Self::Replied {
            reply: Reply::Ok,
            execution_count,
        }
    }
}

/// Why the runtime an entry targets will not run it.
#[derive(Clone, Debug, PartialEq)]
pub enum Decline {
    /// Its code snapshot is not the one its requester wrote: ends `cancelled` ([`CODE_CHANGED`]).
    CodeChanged,
    /// The runtime has no kernel to run it (it failed to start, say): ends `error`.
    NoKernel(String),
}

/// Why a runtime ends an entry that the runtime it belongs to will never end.
#[derive(Clone, Debug, PartialEq)]
pub enum Abandoned {
    /// The server runtime that held the lease went away; the new holder ends what it left
    /// running.
    LeaseHolderGone,
    /// The browser tab that runs it (or was to) went away without saying so; another browser
    /// ends it.
    TabGone,
    /// The page that runs it (or was to) is closing; it ends its own entries.
    PageClosed,
}

/// What an actor asks of an entry.
#[derive(Clone, Debug, PartialEq)]
pub enum Step {
    /// The target's runtime takes the queued entry.
    Start,
    /// The target's runtime will not run the queued entry.
    Decline(Decline),
    /// The runtime running the entry reports how it ended.
    Finish(Outcome),
    /// Stop it: a queued entry is cancelled at once, a running one's runtime is asked to
    /// interrupt its kernel (the entry ends when the kernel stops).
    Stop,
    /// End an entry whose runtime is gone.
    Reclaim(Abandoned),
}

impl Step {
    fn name(&self) -> &'static str {
        match self {
            Self::Start => "start",
            Self::Decline(_) => "decline",
            Self::Finish(_) => "finish",
            Self::Stop => "stop",
            Self::Reclaim(_) => "reclaim",
        }
    }
}

/// Why a step is refused; the entry is left as it was.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    #[error("an entry that is {from} cannot {step}")]
    Transition {
        from: ExecutionStatus,
        step: &'static str,
    },
    #[error("it belongs to lease epoch {current}; a write from epoch {attempted} is ignored")]
    StaleLeaseEpoch { current: u64, attempted: u64 },
    #[error("only the runtime holding the runtime lease may {step} a server entry")]
    NoLease { step: &'static str },
    #[error("it runs on {target}; runtime {session} may not {step} it")]
    NotTheTarget {
        target: ExecutionTarget,
        session: String,
        step: &'static str,
    },
    #[error("runtime {runner} runs it; {session} may not finish it")]
    NotTheRunner { runner: String, session: String },
    #[error("only a runtime may {step} an entry")]
    NotARuntime { step: &'static str },
    #[error(
        "its runtime ran it under lease epoch {current:?}; only a holder of a newer epoch (not {attempted:?}) may end it"
    )]
    NotNewer {
        current: Option<u64>,
        attempted: Option<u64>,
    },
}

/// A change to the cell an entry runs, made with the entry's.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CellWrite {
    /// The run begins: the cell's outputs are cleared and its `execution_state` is `running`.
    BeginRun,
    /// The run is over: the cell's `execution_state` is `idle`.
    EndRun,
}

/// What a step writes to the entry (fields left `None` stay as they are) and to its cell.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Writes {
    pub status: Option<ExecutionStatus>,
    pub runtime: Option<String>,
    pub started_at: Option<f64>,
    pub finished_at: Option<f64>,
    pub lease_epoch: Option<u64>,
    pub execution_count: Option<i64>,
    pub message: Option<String>,
    pub interrupt_requested_at: Option<f64>,
    pub cell: Option<CellWrite>,
}

/// How an entry ends: its final status, the execution count, and what it says when it did not
/// end `done`.
#[derive(Clone, Debug, PartialEq)]
pub struct Ending {
    pub status: ExecutionStatus,
    pub execution_count: Option<i64>,
    pub message: Option<String>,
}

/// How a run that ended with `outcome` ends its entry. `interrupt_asked`: someone asked it to
/// stop, so an error or a dead kernel is the interrupt taking effect, not a failure of the code.
/// `last_error` is the cell's last error output (`ename: evalue`), read only for error replies.
/// Runs without a queue entry (`inloop run`, the MCP server on a local file) end their cells by
/// the same rule.
pub fn ending(
    outcome: &Outcome,
    interrupt_asked: bool,
    last_error: impl FnOnce() -> Option<String>,
) -> Ending {
    let end = |status, execution_count, message: &str| Ending {
        status,
        execution_count,
        message: Some(message.to_owned()),
    };
    match outcome {
        Outcome::Replied {
            reply: Reply::Ok,
            execution_count,
        } => Ending {
            status: ExecutionStatus::Done,
            execution_count: *execution_count,
            message: None,
        },
        Outcome::Replied {
            reply: Reply::Error,
            execution_count,
        } if interrupt_asked => end(
            ExecutionStatus::Interrupted,
            *execution_count,
            "interrupted",
        ),
        Outcome::Replied {
            reply: Reply::Error,
            execution_count,
        } => end(
            ExecutionStatus::Error,
            *execution_count,
            &last_error().unwrap_or_else(|| "the code raised an error".to_owned()),
        ),
        Outcome::Replied {
            reply: Reply::Aborted,
            execution_count,
        } => end(
            ExecutionStatus::Cancelled,
            *execution_count,
            "aborted: an earlier cell failed",
        ),
        Outcome::KernelDied { reason } if interrupt_asked => end(
            ExecutionStatus::Interrupted,
            None,
            &format!("interrupted: {reason}"),
        ),
        Outcome::KernelDied { reason } => end(ExecutionStatus::Error, None, reason),
        Outcome::Restarted => end(
            ExecutionStatus::Interrupted,
            None,
            "interrupted: the kernel was restarted",
        ),
        Outcome::TimedOut { after_s } => end(
            ExecutionStatus::Interrupted,
            None,
            &format!("interrupted: it ran longer than its limit of {after_s:.1} s"),
        ),
        Outcome::Failed { message } => end(ExecutionStatus::Error, None, message),
    }
}

/// The session id of the browser runtime whose document client id is `client`: browsers run
/// the entries whose target is `browser:<client>` under it.
pub fn browser_session(client: impl std::fmt::Display) -> String {
    format!("browser-{client}")
}

/// Decides a step: what to write, or why not. `now` stamps the writes; `last_error` is as for
/// [`ending`].
pub fn judge(
    entry: &Execution,
    actor: &Actor,
    step: &Step,
    now: f64,
    last_error: impl FnOnce() -> Option<String>,
) -> Result<Writes, Refusal> {
    let from = entry.status;
    let refuse_transition = || Refusal::Transition {
        from,
        step: step.name(),
    };
    // The epoch rule, for every write that carries one.
    if let (Some(current), Some(attempted)) = (entry.lease_epoch, actor.epoch()) {
        if attempted < current {
            return Err(Refusal::StaleLeaseEpoch { current, attempted });
        }
    }
    let epoch = actor.epoch();
    let ended = |ending: Ending, cell: Option<CellWrite>| Writes {
        status: Some(ending.status),
        finished_at: Some(now),
        lease_epoch: epoch,
        execution_count: ending.execution_count,
        message: ending.message,
        cell,
        ..Writes::default()
    };
    let fixed = |status, message: &str| Ending {
        status,
        execution_count: None,
        message: Some(message.to_owned()),
    };
    match step {
        Step::Start => {
            let session = queued_for(entry, actor, step.name())?;
            Ok(Writes {
                status: Some(ExecutionStatus::Running),
                runtime: Some(session.to_owned()),
                started_at: Some(now),
                lease_epoch: epoch,
                cell: Some(CellWrite::BeginRun),
                ..Writes::default()
            })
        }
        Step::Decline(why) => {
            queued_for(entry, actor, step.name())?;
            let (status, message) = match why {
                Decline::CodeChanged => (ExecutionStatus::Cancelled, CODE_CHANGED),
                Decline::NoKernel(why) => (ExecutionStatus::Error, why.as_str()),
            };
            Ok(ended(fixed(status, message), None))
        }
        Step::Finish(outcome) => {
            if from != ExecutionStatus::Running {
                return Err(refuse_transition());
            }
            let Actor::Runtime { session, .. } = actor else {
                return Err(Refusal::NotARuntime { step: step.name() });
            };
            let runner = entry.runtime.as_deref().unwrap_or_default();
            if runner != session {
                return Err(Refusal::NotTheRunner {
                    runner: runner.to_owned(),
                    session: session.clone(),
                });
            }
            let asked = entry.interrupt_requested_at.is_some();
            Ok(ended(
                ending(outcome, asked, last_error),
                Some(CellWrite::EndRun),
            ))
        }
        Step::Stop => match from {
            ExecutionStatus::Queued => Ok(ended(
                fixed(ExecutionStatus::Cancelled, "cancelled before it ran"),
                None,
            )),
            // Asked once: the first request is the one the runtime answers.
            ExecutionStatus::Running if entry.interrupt_requested_at.is_some() => {
                Ok(Writes::default())
            }
            ExecutionStatus::Running => Ok(Writes {
                interrupt_requested_at: Some(now),
                ..Writes::default()
            }),
            _ => Err(refuse_transition()),
        },
        Step::Reclaim(why) => {
            let Actor::Runtime { session, .. } = actor else {
                return Err(Refusal::NotARuntime { step: step.name() });
            };
            match (&entry.target, why) {
                (ExecutionTarget::Server, Abandoned::LeaseHolderGone) => {
                    if from != ExecutionStatus::Running {
                        return Err(refuse_transition());
                    }
                    // Strictly newer: under the same epoch the runtime that ran it still holds
                    // the lease, and ends it itself.
                    if epoch.is_none() || epoch <= entry.lease_epoch {
                        return Err(Refusal::NotNewer {
                            current: entry.lease_epoch,
                            attempted: epoch,
                        });
                    }
                    let message = match &entry.runtime {
                        Some(runtime) => format!(
                            "interrupted: the runtime running it ({runtime}) went away before it finished"
                        ),
                        None => "interrupted: the runtime running it went away before it finished"
                            .to_owned(),
                    };
                    Ok(ended(
                        fixed(ExecutionStatus::Interrupted, &message),
                        Some(CellWrite::EndRun),
                    ))
                }
                (ExecutionTarget::Browser(client), Abandoned::TabGone | Abandoned::PageClosed) => {
                    let own = *session == browser_session(client);
                    // Another tab's entries when it went away; a page's own when it closes.
                    let allowed = match why {
                        Abandoned::TabGone => !own && session.starts_with("browser-"),
                        _ => own,
                    };
                    if !allowed {
                        return Err(Refusal::NotTheTarget {
                            target: entry.target.clone(),
                            session: session.clone(),
                            step: step.name(),
                        });
                    }
                    let (if_running, if_queued) = match why {
                        Abandoned::TabGone => (
                            "interrupted: the browser tab running it went away",
                            "cancelled: the browser tab that was to run it went away",
                        ),
                        _ => (
                            "interrupted: the page running it was closed",
                            "cancelled: the page that was to run it was closed",
                        ),
                    };
                    match from {
                        ExecutionStatus::Running => Ok(ended(
                            fixed(ExecutionStatus::Interrupted, if_running),
                            Some(CellWrite::EndRun),
                        )),
                        ExecutionStatus::Queued => {
                            Ok(ended(fixed(ExecutionStatus::Cancelled, if_queued), None))
                        }
                        _ => Err(refuse_transition()),
                    }
                }
                _ => Err(Refusal::NotTheTarget {
                    target: entry.target.clone(),
                    session: session.clone(),
                    step: step.name(),
                }),
            }
        }
    }
}

/// The session of the runtime that may start or decline `entry`: the actor, if the entry is
/// queued and the actor is the runtime its target names.
fn queued_for<'a>(
    entry: &Execution,
    actor: &'a Actor,
    step: &'static str,
) -> Result<&'a str, Refusal> {
    if entry.status != ExecutionStatus::Queued {
        return Err(Refusal::Transition {
            from: entry.status,
            step,
        });
    }
    let Actor::Runtime { session, epoch } = actor else {
        return Err(Refusal::NotARuntime { step });
    };
    match &entry.target {
        ExecutionTarget::Server if epoch.is_none() => Err(Refusal::NoLease { step }),
        ExecutionTarget::Server => Ok(session),
        ExecutionTarget::Browser(client) if *session == browser_session(client) => Ok(session),
        target => Err(Refusal::NotTheTarget {
            target: target.clone(),
            session: session.clone(),
            step,
        }),
    }
}
