//! The execution queue and the runtime registry: the `executions` and `runtimes` maps. How an
//! entry moves is decided by [`crate::execution`]; this applies it.

use serde_json::Value;
use yrs::{Any, ArrayPrelim, Map, MapPrelim, MapRef, Out, ReadTxn, Transact};

use super::{
    FORGET_GONE_AFTER_S, FORGET_SILENT_AFTER_S, Notebook, f64_at, i64_at, read_cell, string_at,
};
use crate::execution::{self, Actor, CellWrite, Outcome, Step, Writes};
use crate::ids::new_id;
use crate::json::{any_to_json, float_any};
use crate::schema::{cell as ck, execution as ek, runtime as rk};
use crate::{
    Cell, Error, Execution, ExecutionState, ExecutionStatus, ExecutionTarget, Output, Result,
    Runtime, RuntimeStatus,
};

impl Notebook {
    // ---- executions ---------------------------------------------------------------------------

    /// Queues a run of a code cell with a snapshot of its source, and returns the entry's id.
    pub fn request_execution(
        &self,
        cell_id: &str,
        target: &ExecutionTarget,
        requested_by: &str,
        now: f64,
    ) -> Result<String> {
        let mut txn = self.write();
        let (_, cell) = self.code_cell(&txn, cell_id)?;
        let code = string_at(&txn, &cell, ck::SOURCE).unwrap_or_default();
        let id = new_id();
        let entry = MapPrelim::from([
            (ek::CELL_ID, Any::from(cell_id)),
            (ek::CODE, Any::from(code)),
            (ek::TARGET, Any::from(target.to_string())),
            (ek::REQUESTED_BY, Any::from(requested_by)),
            (ek::REQUESTED_AT, Any::from(now)),
            (ek::STATUS, Any::from(ExecutionStatus::Queued.as_str())),
        ]);
        self.executions.insert(&mut txn, id.as_str(), entry);
        Ok(id)
    }

    /// Takes a step of entry `id`'s life, as [`execution::judge`] decides, and returns the entry
    /// as it is after it: the one way entries change once requested. The entry's writes and its
    /// cell's (outputs cleared as a run begins, `execution_state`) are one transaction.
    pub fn advance_execution(
        &self,
        id: &str,
        actor: &Actor,
        step: &Step,
        now: f64,
    ) -> Result<Execution> {
        let mut txn = self.write();
        let Some(Out::YMap(entry)) = self.executions.get(&txn, id) else {
            return Err(Error::ExecutionNotFound(id.to_owned()));
        };
        let current = read_execution(&txn, id, &entry);
        let writes = execution::judge(&current, actor, step, now, || {
            let (_, cell) = self.find_cell(&txn, &current.cell_id).ok()?;
            last_error(&read_cell(&txn, &cell))
        })
        .map_err(|refusal| Error::Refused {
            id: id.to_owned(),
            refusal,
        })?;
        let Writes {
            status,
            runtime,
            started_at,
            finished_at,
            lease_epoch,
            execution_count,
            message,
            interrupt_requested_at,
            cell,
        } = writes;
        if let Some(status) = status {
            entry.insert(&mut txn, ek::STATUS, status.as_str());
        }
        if let Some(runtime) = runtime {
            entry.insert(&mut txn, ek::RUNTIME, runtime);
        }
        let times = [
            (ek::STARTED_AT, started_at),
            (ek::FINISHED_AT, finished_at),
            (ek::INTERRUPT_REQUESTED_AT, interrupt_requested_at),
        ];
        for (key, time) in times {
            if let Some(time) = time {
                entry.insert(&mut txn, key, time);
            }
        }
        if let Some(epoch) = lease_epoch {
            entry.insert(&mut txn, ek::LEASE_EPOCH, float_any(epoch as i64));
        }
        if let Some(count) = execution_count {
            entry.insert(&mut txn, ek::EXECUTION_COUNT, float_any(count));
        }
        if let Some(message) = message {
            entry.insert(&mut txn, ek::MESSAGE, message);
        }
        // The cell may be gone (deleted while it ran): the entry still ends.
        if let (Some(write), Ok((_, cell_map))) = (cell, self.code_cell(&txn, &current.cell_id)) {
            let state = match write {
                CellWrite::BeginRun => {
                    cell_map.insert(&mut txn, ck::OUTPUTS, ArrayPrelim::default());
                    ExecutionState::Running
                }
                CellWrite::EndRun => ExecutionState::Idle,
            };
            cell_map.insert(&mut txn, ck::EXECUTION_STATE, state.as_str());
        }
        Ok(read_execution(&txn, id, &entry))
    }

    /// Runtime `session` (with lease `epoch`, for server runtimes) takes queued entry `id`:
    /// [`Step::Start`].
    pub fn start_execution(
        &self,
        id: &str,
        session: &str,
        epoch: Option<u64>,
        now: f64,
    ) -> Result<Execution> {
        self.advance_execution(id, &Actor::runtime(session, epoch), &Step::Start, now)
    }

    /// The runtime `session` that runs entry `id` reports how its run ended: [`Step::Finish`].
    pub fn finish_execution(
        &self,
        id: &str,
        session: &str,
        epoch: Option<u64>,
        outcome: Outcome,
        now: f64,
    ) -> Result<Execution> {
        let actor = Actor::runtime(session, epoch);
        self.advance_execution(id, &actor, &Step::Finish(outcome), now)
    }

    /// How a run of `cell_id` that no queue entry stands for (`inloop run`, the MCP server on a
    /// local file) ended: by [`execution::ending`]'s rule, as an entry would, nobody having
    /// asked it to stop.
    pub fn run_ending(&self, cell_id: &str, outcome: &Outcome) -> execution::Ending {
        execution::ending(outcome, false, || {
            self.cell(cell_id).ok().as_ref().and_then(last_error)
        })
    }

    /// A peer asks entry `id` to stop: [`Step::Stop`].
    pub fn stop_execution(&self, id: &str, now: f64) -> Result<Execution> {
        self.advance_execution(id, &Actor::Peer, &Step::Stop, now)
    }

    pub fn execution(&self, id: &str) -> Result<Execution> {
        let txn = self.doc.transact();
        match self.executions.get(&txn, id) {
            Some(Out::YMap(entry)) => Ok(read_execution(&txn, id, &entry)),
            _ => Err(Error::ExecutionNotFound(id.to_owned())),
        }
    }

    /// Whether entry `id`'s code is still the snapshot its requester took: written once, with
    /// the entry, by the peer that made the entry. A runtime runs nothing else: a peer that
    /// changed another's snapshot after the request would otherwise run its code as theirs.
    /// Reads the whole document's structs, so call it once per run, not per change.
    pub fn execution_code_is_original(&self, id: &str) -> Result<bool> {
        let entry = {
            let txn = self.doc.transact();
            match self.executions.get(&txn, id) {
                Some(Out::YMap(entry)) => match AsRef::<yrs::branch::Branch>::as_ref(&entry).id() {
                    yrs::BranchID::Nested(item) => item,
                    yrs::BranchID::Root(_) => return Ok(false),
                },
                _ => return Err(Error::ExecutionNotFound(id.to_owned())),
            }
        };
        let structs = crate::structs::UpdateStructs::decode_v1(&self.encode_update_v1())?;
        let history = structs.key_history(entry, ek::CODE);
        Ok(matches!(&history[..], [only] if only.client == entry.client))
    }

    /// Every entry, oldest request first.
    pub fn executions(&self) -> Vec<Execution> {
        self.executions_where(|_| true)
    }

    /// The entries in one of `statuses`, oldest request first. Only their status is read from
    /// the others, so asking for the live ones stays cheap as the history grows.
    pub fn executions_in(&self, statuses: &[ExecutionStatus]) -> Vec<Execution> {
        self.executions_where(|status| statuses.contains(&status))
    }

    fn executions_where(&self, wanted: impl Fn(ExecutionStatus) -> bool) -> Vec<Execution> {
        let txn = self.doc.transact();
        let mut all: Vec<Execution> = self
            .executions
            .iter(&txn)
            .filter_map(|(id, entry)| match entry {
                Out::YMap(entry) => {
                    let status = string_at(&txn, &entry, ek::STATUS)
                        .and_then(|s| s.parse().ok())
                        .unwrap_or(ExecutionStatus::Error);
                    wanted(status).then(|| read_execution(&txn, id, &entry))
                }
                _ => None,
            })
            .collect();
        all.sort_by(Execution::request_order);
        all
    }

    /// The queued entries for `target`, in the order they were requested.
    pub fn queued_executions(&self, target: &ExecutionTarget) -> Vec<Execution> {
        let mut queued = self.executions_in(&[ExecutionStatus::Queued]);
        queued.retain(|e| &e.target == target);
        queued
    }

    // ---- runtimes -----------------------------------------------------------------------------

    /// Adds or replaces a runtime's entry.
    pub fn register_runtime(&self, runtime: &Runtime) {
        let mut txn = self.write();
        let mut entry = MapPrelim::from([
            (rk::KIND, Any::from(runtime.kind.as_str())),
            (rk::NAME, Any::from(runtime.name.as_str())),
            (
                rk::KERNELS,
                Any::from(
                    runtime
                        .kernels
                        .iter()
                        .map(|k| Any::from(k.as_str()))
                        .collect::<Vec<_>>(),
                ),
            ),
            (rk::STATUS, Any::from(runtime.status.as_str())),
            (rk::HEARTBEAT_AT, Any::from(runtime.heartbeat_at)),
        ]);
        let optional = [
            (rk::GPU, runtime.gpu.as_deref().map(Any::from)),
            (
                rk::CONTAINER_IMAGE,
                runtime.container_image.as_deref().map(Any::from),
            ),
            (
                rk::LEASE_EPOCH,
                runtime.lease_epoch.map(|e| float_any(e as i64)),
            ),
        ];
        for (key, value) in optional {
            if let Some(value) = value {
                entry.insert(key.into(), value.into());
            }
        }
        self.runtimes
            .insert(&mut txn, runtime.session_id.as_str(), entry);
    }

    /// Records a runtime's heartbeat and, if given, its new status.
    pub fn runtime_heartbeat(
        &self,
        session_id: &str,
        status: Option<RuntimeStatus>,
        now: f64,
    ) -> Result<()> {
        let mut txn = self.write();
        let Some(Out::YMap(entry)) = self.runtimes.get(&txn, session_id) else {
            return Err(Error::RuntimeNotFound(session_id.to_owned()));
        };
        entry.insert(&mut txn, rk::HEARTBEAT_AT, now);
        if let Some(status) = status {
            entry.insert(&mut txn, rk::STATUS, status.as_str());
        }
        Ok(())
    }

    /// A runtime's heartbeat with its status as `runtime` says, registering it again (as
    /// `runtime` describes it) if a peer forgot it while it was away, asleep or cut off: every
    /// runtime calls this with its heartbeats.
    pub fn runtime_beat(&self, runtime: &Runtime) {
        let (session, now) = (&runtime.session_id, runtime.heartbeat_at);
        if self
            .runtime_heartbeat(session, Some(runtime.status), now)
            .is_err()
        {
            self.register_runtime(runtime);
        }
    }

    /// Asks a runtime to restart its kernel (a fresh namespace).
    pub fn request_restart(&self, session_id: &str, now: f64) -> Result<()> {
        self.set_runtime_field(session_id, rk::RESTART_REQUESTED_AT, now)
    }

    /// Records that a runtime restarted its kernel, answering the request it saw. Stamped never
    /// before that request, even when the requester's clock runs ahead of the runtime's: an answer
    /// stamped earlier would look unanswered, and the runtime would restart again and again.
    pub fn mark_restarted(&self, session_id: &str, now: f64) -> Result<()> {
        let requested = self
            .runtimes()
            .into_iter()
            .find(|r| r.session_id == session_id)
            .and_then(|r| r.restart_requested_at)
            .unwrap_or(f64::MIN);
        self.set_runtime_field(session_id, rk::RESTARTED_AT, now.max(requested))
    }

    /// Records the lease epoch a server runtime holds (`None`: it holds none), so peers can show
    /// which runtime runs the `server` cells.
    pub fn set_runtime_lease(&self, session_id: &str, epoch: Option<u64>) -> Result<()> {
        match epoch {
            Some(epoch) => self.set_runtime_field(session_id, rk::LEASE_EPOCH, epoch as f64),
            None => {
                let mut txn = self.write();
                let Some(Out::YMap(entry)) = self.runtimes.get(&txn, session_id) else {
                    return Err(Error::RuntimeNotFound(session_id.to_owned()));
                };
                entry.remove(&mut txn, rk::LEASE_EPOCH);
                Ok(())
            }
        }
    }

    /// Publishes what a runtime's kernel holds (its variables, as read after its last run), so
    /// that peers without the kernel (an agent, a variable inspector) can show them.
    pub fn set_runtime_variables(
        &self,
        session_id: &str,
        variables: &Value,
        now: f64,
    ) -> Result<()> {
        let mut txn = self.write();
        let Some(Out::YMap(entry)) = self.runtimes.get(&txn, session_id) else {
            return Err(Error::RuntimeNotFound(session_id.to_owned()));
        };
        entry.insert(&mut txn, rk::VARIABLES, variables.to_string());
        entry.insert(&mut txn, rk::VARIABLES_AT, now);
        Ok(())
    }

    /// A runtime's variables as it last published them, and when it read them.
    pub fn runtime_variables(&self, session_id: &str) -> Option<(Value, f64)> {
        let txn = self.doc.transact();
        let Some(Out::YMap(entry)) = self.runtimes.get(&txn, session_id) else {
            return None;
        };
        let variables = serde_json::from_str(&string_at(&txn, &entry, rk::VARIABLES)?).ok()?;
        Some((
            variables,
            f64_at(&txn, &entry, rk::VARIABLES_AT).unwrap_or_default(),
        ))
    }

    fn set_runtime_field(&self, session_id: &str, key: &str, value: f64) -> Result<()> {
        let mut txn = self.write();
        let Some(Out::YMap(entry)) = self.runtimes.get(&txn, session_id) else {
            return Err(Error::RuntimeNotFound(session_id.to_owned()));
        };
        entry.insert(&mut txn, key, value);
        Ok(())
    }

    /// Removes the entries of runtimes nobody will see again: `gone` for
    /// [`FORGET_GONE_AFTER_S`], or silent (no heartbeat) for [`FORGET_SILENT_AFTER_S`]. Every
    /// page load is a new browser runtime, so without this the map only grows. Runtimes call it
    /// with their heartbeats; one that comes back after being forgotten registers again. Returns
    /// how many were removed.
    pub fn forget_runtimes(&self, now: f64) -> usize {
        let (gone_for, silent_for) = (FORGET_GONE_AFTER_S, FORGET_SILENT_AFTER_S);
        let forgotten: Vec<String> = self
            .runtimes()
            .into_iter()
            .filter(|r| {
                let quiet = now - r.heartbeat_at;
                (r.status == RuntimeStatus::Gone && quiet > gone_for) || quiet > silent_for
            })
            .map(|r| r.session_id)
            .collect();
        if !forgotten.is_empty() {
            let mut txn = self.write();
            for session_id in &forgotten {
                self.runtimes.remove(&mut txn, session_id);
            }
        }
        forgotten.len()
    }

    pub fn remove_runtime(&self, session_id: &str) {
        self.runtimes.remove(&mut self.write(), session_id);
    }

    pub fn runtimes(&self) -> Vec<Runtime> {
        let txn = self.doc.transact();
        let mut all: Vec<Runtime> = self
            .runtimes
            .iter(&txn)
            .filter_map(|(id, entry)| match entry {
                Out::YMap(entry) => read_runtime(&txn, id, &entry),
                _ => None,
            })
            .collect();
        all.sort_by(|a, b| a.session_id.cmp(&b.session_id));
        all
    }
}

/// `ename: evalue` of the cell's last error output: what an entry that ended in an error says.
pub fn last_error(cell: &Cell) -> Option<String> {
    cell.outputs.iter().rev().find_map(|output| match output {
        Output::Error { ename, evalue, .. } => Some(format!("{ename}: {evalue}")),
        _ => None,
    })
}

fn read_execution<T: ReadTxn>(txn: &T, id: &str, entry: &MapRef) -> Execution {
    Execution {
        id: id.to_owned(),
        cell_id: string_at(txn, entry, ek::CELL_ID).unwrap_or_default(),
        code: string_at(txn, entry, ek::CODE).unwrap_or_default(),
        target: string_at(txn, entry, ek::TARGET)
            .and_then(|t| t.parse().ok())
            .unwrap_or(ExecutionTarget::Server),
        requested_by: string_at(txn, entry, ek::REQUESTED_BY).unwrap_or_default(),
        requested_at: f64_at(txn, entry, ek::REQUESTED_AT).unwrap_or_default(),
        status: string_at(txn, entry, ek::STATUS)
            .and_then(|s| s.parse().ok())
            .unwrap_or(ExecutionStatus::Error),
        runtime: string_at(txn, entry, ek::RUNTIME),
        lease_epoch: i64_at(txn, entry, ek::LEASE_EPOCH).map(|e| e.max(0) as u64),
        started_at: f64_at(txn, entry, ek::STARTED_AT),
        finished_at: f64_at(txn, entry, ek::FINISHED_AT),
        execution_count: i64_at(txn, entry, ek::EXECUTION_COUNT),
        message: string_at(txn, entry, ek::MESSAGE),
        interrupt_requested_at: f64_at(txn, entry, ek::INTERRUPT_REQUESTED_AT),
    }
}

fn read_runtime<T: ReadTxn>(txn: &T, id: &str, entry: &MapRef) -> Option<Runtime> {
    let kernels = match entry.get(txn, rk::KERNELS) {
        Some(Out::Any(Any::Array(kernels))) => kernels
            .iter()
            .filter_map(|k| match any_to_json(k) {
                Value::String(k) => Some(k),
                _ => None,
            })
            .collect(),
        _ => Vec::new(),
    };
    Some(Runtime {
        session_id: id.to_owned(),
        kind: string_at(txn, entry, rk::KIND)?.parse().ok()?,
        name: string_at(txn, entry, rk::NAME).unwrap_or_default(),
        kernels,
        gpu: string_at(txn, entry, rk::GPU),
        container_image: string_at(txn, entry, rk::CONTAINER_IMAGE),
        status: string_at(txn, entry, rk::STATUS)
            .and_then(|s| s.parse().ok())
            .unwrap_or(RuntimeStatus::Gone),
        heartbeat_at: f64_at(txn, entry, rk::HEARTBEAT_AT).unwrap_or_default(),
        lease_epoch: i64_at(txn, entry, rk::LEASE_EPOCH).map(|e| e.max(0) as u64),
        restart_requested_at: f64_at(txn, entry, rk::RESTART_REQUESTED_AT),
        restarted_at: f64_at(txn, entry, rk::RESTARTED_AT),
    })
}
