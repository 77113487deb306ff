//! Where cells run and who runs them: pure queries over the document's values, shared by every
//! peer that shows or decides them (the browser engine, tools).
//!
//! - **Targets.** A notebook runs in the browser or on the server (`metadata.inloop.target`); a
//!   cell may say otherwise (its own `metadata.inloop.target`). [`notebook_target`],
//!   [`cell_target`] read them, [`with_target`] writes one into an `inloop` object.
//! - **Each cell's latest execution**: the entry requested last ([`supersedes`],
//!   [`latest_executions`]).
//! - **The runtime lease** as a peer sees it: [`lease_holder`] (a live server runtime that states
//!   its epoch, else the one that started the newest entry under an epoch, else the only live
//!   server runtime) and [`server_runtime`], where server cells go.

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::{Execution, JsonMap, Runtime, RuntimeKind, RuntimeStatus};

/// The metadata key (of the notebook and of each cell) holding inloop's settings.
pub const METADATA_KEY: &str = "inloop";
/// The key, within [`METADATA_KEY`], saying where the notebook or the cell runs.
const TARGET_KEY: &str = "target";

/// Where a notebook or a cell runs: the browser that asks, or the server runtime.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Target {
    Browser,
    Server,
}

impl Target {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Browser => "browser",
            Self::Server => "server",
        }
    }

    /// `"browser"` or `"server"`; anything else is no target.
    pub fn parse(text: &str) -> Option<Self> {
        match text {
            "browser" => Some(Self::Browser),
            "server" => Some(Self::Server),
            _ => None,
        }
    }
}

/// The target `metadata.inloop.target` names (notebook or cell metadata), if any.
fn target_in(metadata: &JsonMap) -> Option<Target> {
    metadata
        .get(METADATA_KEY)?
        .get(TARGET_KEY)?
        .as_str()
        .and_then(Target::parse)
}

/// Where the notebook says it runs (its metadata's `inloop.target`), if it says.
pub fn notebook_target(metadata: &JsonMap) -> Option<Target> {
    target_in(metadata)
}

/// Where a cell says it runs (its metadata's `inloop.target`), if it says; else it runs where
/// the notebook does.
pub fn cell_target(metadata: &JsonMap) -> Option<Target> {
    target_in(metadata)
}

/// The `inloop` metadata object `inloop` (a notebook's or a cell's, `None` if it has none) with
/// its target set to `target`, or removed for `None`; its other keys kept.
pub fn with_target(inloop: Option<&Value>, target: Option<Target>) -> Value {
    let mut object = match inloop {
        Some(Value::Object(object)) => object.clone(),
        _ => JsonMap::new(),
    };
    match target {
        Some(target) => {
            object.insert(TARGET_KEY.into(), target.as_str().into());
        }
        None => {
            object.remove(TARGET_KEY);
        }
    }
    Value::Object(object)
}

/// Whether `candidate` replaces `current` as its cell's latest execution: it is the same entry
/// (newer news of it), or was requested no earlier.
pub fn supersedes(candidate: &Execution, current: &Execution) -> bool {
    current.id == candidate.id || current.requested_at <= candidate.requested_at
}

/// Each cell's latest execution among `executions` (given oldest request first, as
/// [`Notebook::executions`](crate::Notebook::executions) gives them), oldest request first.
pub fn latest_executions(executions: Vec<Execution>) -> Vec<Execution> {
    let mut latest: Vec<Execution> = Vec::new();
    let mut at = std::collections::HashMap::<String, usize>::new();
    for execution in executions {
        match at.get(&execution.cell_id) {
            Some(&index) if supersedes(&execution, &latest[index]) => {
                latest[index] = execution;
            }
            Some(_) => {}
            None => {
                at.insert(execution.cell_id.clone(), latest.len());
                latest.push(execution);
            }
        }
    }
    latest.sort_by(Execution::request_order);
    latest
}

/// The server runtimes that are not gone, in `runtimes`' order.
pub fn live_servers(runtimes: &[Runtime]) -> Vec<&Runtime> {
    runtimes
        .iter()
        .filter(|r| r.kind == RuntimeKind::Server && r.status != RuntimeStatus::Gone)
        .collect()
}

/// Who holds the runtime lease, as far as the document tells.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct LeaseHolder {
    pub runtime: Runtime,
    /// The lease's epoch, when the runtime states it or an entry it started carries it.
    pub epoch: Option<u64>,
}

/// Who holds the runtime lease: the live server runtime stating the highest epoch, else the one
/// that started the newest entry under an epoch (the highest epoch, then the latest start)
/// among `latest` (each cell's latest execution), else the only live server runtime. Ties go to
/// the first in `runtimes` and in `latest`.
pub fn lease_holder(runtimes: &[Runtime], latest: &[Execution]) -> Option<LeaseHolder> {
    let live = live_servers(runtimes);
    let mut stated: Option<(&Runtime, u64)> = None;
    for runtime in &live {
        if let Some(epoch) = runtime.lease_epoch {
            if stated.is_none_or(|(_, best)| epoch > best) {
                stated = Some((runtime, epoch));
            }
        }
    }
    if let Some((runtime, epoch)) = stated {
        return Some(LeaseHolder {
            runtime: runtime.clone(),
            epoch: Some(epoch),
        });
    }
    let mut best: Option<(&Runtime, u64, f64)> = None;
    for execution in latest {
        let Some(epoch) = execution.lease_epoch else {
            continue;
        };
        let Some(session) = execution.runtime.as_deref().filter(|s| !s.is_empty()) else {
            continue;
        };
        let Some(runtime) = live.iter().find(|r| r.session_id == session) else {
            continue;
        };
        let started = execution.started_at.unwrap_or(0.0);
        let newer = best.is_none_or(|(_, best_epoch, best_started)| {
            epoch > best_epoch || (epoch == best_epoch && started > best_started)
        });
        if newer {
            best = Some((runtime, epoch, started));
        }
    }
    if let Some((runtime, epoch, _)) = best {
        return Some(LeaseHolder {
            runtime: runtime.clone(),
            epoch: Some(epoch),
        });
    }
    match live[..] {
        [only] => Some(LeaseHolder {
            runtime: only.clone(),
            epoch: None,
        }),
        _ => None,
    }
}

/// The server runtime that server cells go to: the lease holder, else the live one heard from
/// last (the first of those tied).
pub fn server_runtime(runtimes: &[Runtime], latest: &[Execution]) -> Option<Runtime> {
    if let Some(holder) = lease_holder(runtimes, latest) {
        return Some(holder.runtime);
    }
    let mut freshest: Option<&Runtime> = None;
    for runtime in live_servers(runtimes) {
        if freshest.is_none_or(|f| runtime.heartbeat_at > f.heartbeat_at) {
            freshest = Some(runtime);
        }
    }
    freshest.cloned()
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::{ExecutionStatus, ExecutionTarget};

    fn server(session: &str, status: RuntimeStatus, epoch: Option<u64>, beat: f64) -> Runtime {
        Runtime {
            session_id: session.into(),
            kind: RuntimeKind::Server,
            name: format!("name of {session}"),
            kernels: vec!["python3".into()],
            gpu: None,
            container_image: None,
            status,
            heartbeat_at: beat,
            lease_epoch: epoch,
            restart_requested_at: None,
            restarted_at: None,
        }
    }

    fn browser(session: &str) -> Runtime {
        Runtime {
            kind: RuntimeKind::Browser,
            ..server(session, RuntimeStatus::Idle, Some(99), 1000.0)
        }
    }

    fn entry(id: &str, cell: &str, requested_at: f64) -> Execution {
        Execution {
            id: id.into(),
            cell_id: cell.into(),
            code: String::new(),
            target: ExecutionTarget::Server,
            requested_by: "p".into(),
            requested_at,
            status: ExecutionStatus::Done,
            runtime: None,
            lease_epoch: None,
            started_at: None,
            finished_at: None,
            execution_count: None,
            message: None,
            interrupt_requested_at: None,
        }
    }

    fn started(id: &str, runtime: &str, epoch: u64, at: f64) -> Execution {
        Execution {
            runtime: Some(runtime.into()),
            lease_epoch: Some(epoch),
            started_at: Some(at),
            ..entry(id, &format!("cell-{id}"), at)
        }
    }

    fn map(value: Value) -> JsonMap {
        match value {
            Value::Object(map) => map,
            _ => unreachable!(),
        }
    }

    #[test]
    fn targets_are_read_from_the_inloop_metadata() {
        let cases = [
            (json!({}), None),
            (
                json!({"inloop": {"target": "server"}}),
                Some(Target::Server),
            ),
            (
                json!({"inloop": {"target": "browser"}}),
                Some(Target::Browser),
            ),
            (json!({"inloop": {"target": "gpu"}}), None),
            (json!({"inloop": {"target": 3}}), None),
            (json!({"inloop": "server"}), None),
            (json!({"target": "server"}), None),
        ];
        for (metadata, expected) in cases {
            assert_eq!(
                notebook_target(&map(metadata.clone())),
                expected,
                "{metadata}"
            );
            assert_eq!(cell_target(&map(metadata.clone())), expected, "{metadata}");
        }
    }

    #[test]
    fn a_target_is_written_beside_the_other_inloop_keys() {
        let other = json!({"other": 1, "target": "browser"});
        assert_eq!(
            with_target(Some(&other), Some(Target::Server)),
            json!({"other": 1, "target": "server"})
        );
        assert_eq!(with_target(Some(&other), None), json!({"other": 1}));
        assert_eq!(
            with_target(None, Some(Target::Browser)),
            json!({"target": "browser"})
        );
        assert_eq!(with_target(Some(&json!("junk")), None), json!({}));
        assert_eq!(Target::parse("server"), Some(Target::Server));
        assert_eq!(
            Target::parse(Target::Browser.as_str()),
            Some(Target::Browser)
        );
        assert_eq!(Target::parse(""), None);
    }

    #[test]
    fn each_cells_latest_execution_is_the_one_requested_last() {
        let all = vec![
            entry("a1", "a", 1.0),
            entry("b1", "b", 2.0),
            entry("a2", "a", 3.0),
            entry("a3", "a", 3.0),
        ];
        let latest = latest_executions(all);
        let ids: Vec<&str> = latest.iter().map(|e| e.id.as_str()).collect();
        assert_eq!(ids, ["b1", "a3"], "a tie goes to the later one");
        let old = entry("a0", "a", 0.5);
        assert!(!supersedes(&old, &latest[1]));
        assert!(supersedes(&latest[1], &latest[1]), "news of the same entry");
        let mut changed = latest[1].clone();
        changed.requested_at = 0.0;
        assert!(
            supersedes(&changed, &latest[1]),
            "the same id always replaces"
        );
    }

    #[test]
    fn the_lease_holder_is_the_runtime_stating_the_highest_epoch() {
        let runtimes = [
            server("s1", RuntimeStatus::Idle, Some(2), 10.0),
            server("s2", RuntimeStatus::Busy, Some(3), 5.0),
            server("s3", RuntimeStatus::Gone, Some(9), 50.0),
            server("s4", RuntimeStatus::Idle, Some(3), 5.0),
            browser("b"),
        ];
        let latest = [started("x", "s1", 7, 100.0)];
        let holder = lease_holder(&runtimes, &latest).unwrap();
        assert_eq!(
            holder.runtime.session_id, "s2",
            "the first of the tied, gone ones aside"
        );
        assert_eq!(holder.epoch, Some(3));
        assert_eq!(server_runtime(&runtimes, &latest).unwrap().session_id, "s2");
    }

    #[test]
    fn without_a_stated_epoch_the_runtime_of_the_newest_epoch_holds_it() {
        let runtimes = [
            server("s1", RuntimeStatus::Idle, None, 10.0),
            server("s2", RuntimeStatus::Idle, None, 50.0),
            server("gone", RuntimeStatus::Gone, None, 90.0),
        ];
        let latest = [
            started("a", "s1", 4, 20.0),
            started("b", "s2", 4, 10.0),
            started("c", "s2", 3, 30.0),
            started("d", "gone", 8, 40.0),
            Execution {
                runtime: Some(String::new()),
                ..started("e", "s2", 9, 50.0)
            },
            Execution {
                lease_epoch: None,
                ..started("f", "s2", 9, 50.0)
            },
        ];
        let holder = lease_holder(&runtimes, &latest).unwrap();
        assert_eq!(
            (holder.runtime.session_id.as_str(), holder.epoch),
            ("s1", Some(4)),
            "epoch 4 started last by s1; the gone runtime and entries without a runtime or an \
             epoch do not count"
        );
        // Equal epochs and starts: the first entry's runtime.
        let tied = [started("a", "s2", 4, 20.0), started("b", "s1", 4, 20.0)];
        assert_eq!(
            lease_holder(&runtimes, &tied).unwrap().runtime.session_id,
            "s2"
        );
    }

    #[test]
    fn the_only_live_server_holds_it_and_otherwise_nobody_does() {
        let one = [
            server("s1", RuntimeStatus::Starting, None, 10.0),
            server("old", RuntimeStatus::Gone, Some(5), 1.0),
            browser("b"),
        ];
        let holder = lease_holder(&one, &[]).unwrap();
        assert_eq!(
            (holder.runtime.session_id.as_str(), holder.epoch),
            ("s1", None)
        );

        let two = [
            server("s1", RuntimeStatus::Idle, None, 10.0),
            server("s2", RuntimeStatus::Idle, None, 30.0),
            server("s3", RuntimeStatus::Idle, None, 30.0),
        ];
        assert_eq!(lease_holder(&two, &[]), None);
        assert_eq!(
            server_runtime(&two, &[]).unwrap().session_id,
            "s2",
            "no holder: the one heard from last, the first of those tied"
        );
        assert_eq!(lease_holder(&[browser("b")], &[]), None);
        assert_eq!(server_runtime(&[browser("b")], &[]), None);
    }
}
