//! Where cells run and who runs them, as this page decides and shows it: the notebook's target
//! (its metadata's, else the one this browser remembers for it, else the browser) and each
//! cell's, each cell's latest execution, the live server runtimes and which of them holds the
//! runtime lease. The rules are `inloop_doc::placement`'s; this part keeps what they need
//! (each cell's latest execution, followed as executions change) and this browser's memory.
//!
//! It sits above the document, beside the runner, and asks nothing of either: the engine turns
//! its answers into runs and restarts.

use std::cell::{Cell, RefCell};
use std::collections::HashMap;

use inloop_doc::placement::{self, LeaseHolder, METADATA_KEY, Target};
use inloop_doc::{Execution, ExecutionStatus, Notebook, Runtime};

use crate::error::Result;

/// What a restart of "the notebook's kernel" restarts.
#[derive(Debug, PartialEq)]
pub(crate) enum RestartTarget {
    /// This browser's kernel.
    Browser,
    /// The server runtime's (`None`: no server runtime is connected).
    Server(Option<Runtime>),
}

/// The placement of a notebook's runs, for one page.
#[derive(Debug)]
pub(crate) struct Placement {
    notebook: Notebook,
    /// Where this browser remembers the notebook's target (localStorage), for notebooks that
    /// name none.
    storage_key: String,
    /// Each cell's latest execution, once read.
    latest: RefCell<HashMap<String, Execution>>,
    loaded: Cell<bool>,
    /// Executions changed since `latest` was brought up to date.
    changed: RefCell<Vec<String>>,
}

impl Placement {
    pub(crate) fn new(notebook: Notebook, doc_id: &str) -> Self {
        Self {
            notebook,
            storage_key: format!("inloop.target.{doc_id}"),
            latest: RefCell::new(HashMap::new()),
            loaded: Cell::new(false),
            changed: RefCell::new(Vec::new()),
        }
    }

    // ---- targets ----------------------------------------------------------------------------

    /// Where the notebook runs: its metadata's choice, else this browser's, else the browser.
    pub(crate) fn notebook_target(&self) -> Target {
        placement::notebook_target(&self.notebook.metadata())
            .or_else(|| storage_get(&self.storage_key).and_then(|t| Target::parse(&t)))
            .unwrap_or(Target::Browser)
    }

    /// Runs the notebook on `target`: remembered in this browser, and written in the notebook
    /// when `write` (a page that may not edit only remembers it).
    pub(crate) fn set_notebook_target(&self, target: Target, write: bool) {
        storage_set(&self.storage_key, target.as_str());
        if !write {
            return;
        }
        let metadata = self.notebook.metadata();
        let inloop = placement::with_target(metadata.get(METADATA_KEY), Some(target));
        self.notebook.set_notebook_metadata(METADATA_KEY, &inloop);
    }

    /// Where a cell says it runs, if it says.
    pub(crate) fn cell_target(&self, cell_id: &str) -> Result<Option<Target>> {
        Ok(placement::cell_target(
            &self.notebook.cell(cell_id)?.metadata,
        ))
    }

    /// Has a cell run on `target` (`None`: where the notebook runs).
    pub(crate) fn set_cell_target(&self, cell_id: &str, target: Option<Target>) -> Result<()> {
        let cell = self.notebook.cell(cell_id)?;
        let inloop = placement::with_target(cell.metadata.get(METADATA_KEY), target);
        Ok(self
            .notebook
            .set_cell_metadata(cell_id, METADATA_KEY, &inloop)?)
    }

    /// Where a cell runs: where it says, else where the notebook runs.
    pub(crate) fn target_of(&self, cell_id: &str) -> Result<Target> {
        Ok(self
            .cell_target(cell_id)?
            .unwrap_or_else(|| self.notebook_target()))
    }

    // ---- executions -------------------------------------------------------------------------

    /// Executions changed (the engine's document observer says which): `latest` follows them
    /// the next time it is read (the document cannot be read inside the observer).
    pub(crate) fn executions_changed(&self, ids: impl IntoIterator<Item = String>) {
        if self.loaded.get() {
            self.changed.borrow_mut().extend(ids);
        }
    }

    /// Brings `latest` up to date: every execution on the first read, then the changed ones.
    fn refresh(&self) {
        if !self.loaded.replace(true) {
            self.changed.borrow_mut().clear();
            let mut latest = self.latest.borrow_mut();
            for execution in placement::latest_executions(self.notebook.executions()) {
                latest.insert(execution.cell_id.clone(), execution);
            }
            return;
        }
        let changed = std::mem::take(&mut *self.changed.borrow_mut());
        if changed.is_empty() {
            return;
        }
        let mut latest = self.latest.borrow_mut();
        for id in changed {
            let Ok(execution) = self.notebook.execution(&id) else {
                continue;
            };
            match latest.get(&execution.cell_id) {
                Some(current) if !placement::supersedes(&execution, current) => {}
                _ => {
                    latest.insert(execution.cell_id.clone(), execution);
                }
            }
        }
    }

    /// A cell's latest execution (the one requested last).
    pub(crate) fn latest_execution(&self, cell_id: &str) -> Option<Execution> {
        self.refresh();
        self.latest.borrow().get(cell_id).cloned()
    }

    /// Each cell's latest execution, oldest request first.
    pub(crate) fn latest_executions(&self) -> Vec<Execution> {
        self.refresh();
        let mut all: Vec<Execution> = self.latest.borrow().values().cloned().collect();
        all.sort_by(Execution::request_order);
        all
    }

    /// The cells' latest executions that are running now.
    pub(crate) fn running(&self) -> Vec<Execution> {
        let mut running = self.latest_executions();
        running.retain(|e| e.status == ExecutionStatus::Running);
        running
    }

    /// Whether any cell's latest execution is queued or running.
    pub(crate) fn busy(&self) -> bool {
        self.refresh();
        self.latest
            .borrow()
            .values()
            .any(|e| matches!(e.status, ExecutionStatus::Queued | ExecutionStatus::Running))
    }

    // ---- runtimes and the lease -------------------------------------------------------------

    /// Who holds the runtime lease, as the document tells.
    pub(crate) fn lease_holder(&self) -> Option<LeaseHolder> {
        placement::lease_holder(&self.notebook.runtimes(), &self.latest_executions())
    }

    /// The server runtime cells go to: the lease holder, else the live one heard from last.
    pub(crate) fn server_runtime(&self) -> Option<Runtime> {
        placement::server_runtime(&self.notebook.runtimes(), &self.latest_executions())
    }

    /// What restarting the notebook's kernel restarts: the server runtime's when the notebook
    /// runs on the server, else this browser's.
    pub(crate) fn restart_target(&self) -> RestartTarget {
        match self.notebook_target() {
            Target::Server => RestartTarget::Server(self.server_runtime()),
            Target::Browser => RestartTarget::Browser,
        }
    }
}

fn local_storage() -> Option<web_sys::Storage> {
    web_sys::window()?.local_storage().ok().flatten()
}

fn storage_get(key: &str) -> Option<String> {
    local_storage()?.get_item(key).ok().flatten()
}

fn storage_set(key: &str, value: &str) {
    // Private mode: the page works without.
    if let Some(storage) = local_storage() {
        let _ = storage.set_item(key, value);
    }
}

#[cfg(all(test, target_arch = "wasm32"))]
mod tests {
    use inloop_doc::execution::{Actor, Outcome, Reply, Step};
    use inloop_doc::{CellType, ExecutionTarget, RuntimeKind, RuntimeStatus};
    use serde_json::json;
    use wasm_bindgen_test::wasm_bindgen_test;

    use super::*;
    use crate::testing::unique;

    fn server(session: &str, epoch: Option<u64>, beat: f64) -> Runtime {
        Runtime {
            session_id: session.into(),
            kind: RuntimeKind::Server,
            name: session.into(),
            kernels: vec!["python3".into()],
            gpu: None,
            container_image: None,
            status: RuntimeStatus::Idle,
            heartbeat_at: beat,
            lease_epoch: epoch,
            restart_requested_at: None,
            restarted_at: None,
        }
    }

    #[wasm_bindgen_test]
    fn targets_come_from_the_cell_then_the_notebook_then_this_browser() {
        let notebook = Notebook::new();
        let placement = Placement::new(notebook.clone(), &unique("targets"));
        let cell = notebook.push_cell(CellType::Code, "1").unwrap();
        assert_eq!(placement.notebook_target(), Target::Browser, "the default");
        assert_eq!(placement.target_of(&cell).unwrap(), Target::Browser);

        // Remembered in this browser only (a page that may not edit).
        placement.set_notebook_target(Target::Server, false);
        assert_eq!(placement.notebook_target(), Target::Server);
        assert!(notebook.metadata().get("inloop").is_none());
        let elsewhere = Placement::new(Notebook::new(), &unique("targets"));
        assert_eq!(elsewhere.notebook_target(), Target::Browser, "per notebook");

        // Written in the notebook, beside what else its `inloop` metadata holds.
        notebook.set_notebook_metadata("inloop", &json!({"other": 1}));
        placement.set_notebook_target(Target::Browser, true);
        assert_eq!(
            notebook.metadata()["inloop"],
            json!({"other": 1, "target": "browser"})
        );
        placement.set_notebook_target(Target::Server, false);
        assert_eq!(
            placement.notebook_target(),
            Target::Browser,
            "the notebook's choice first"
        );

        // A cell's own target wins, and goes again.
        placement
            .set_cell_target(&cell, Some(Target::Server))
            .unwrap();
        assert_eq!(placement.cell_target(&cell).unwrap(), Some(Target::Server));
        assert_eq!(placement.target_of(&cell).unwrap(), Target::Server);
        placement.set_cell_target(&cell, None).unwrap();
        assert_eq!(placement.cell_target(&cell).unwrap(), None);
        assert_eq!(notebook.cell(&cell).unwrap().metadata["inloop"], json!({}));
        assert_eq!(placement.target_of(&cell).unwrap(), Target::Browser);
        assert!(placement.set_cell_target("nope", None).is_err());
        assert_eq!(placement.restart_target(), RestartTarget::Browser);
    }

    #[wasm_bindgen_test]
    fn each_cells_latest_execution_follows_the_changes() {
        let notebook = Notebook::new();
        let placement = Placement::new(notebook.clone(), &unique("latest"));
        let a = notebook.push_cell(CellType::Code, "a").unwrap();
        let b = notebook.push_cell(CellType::Code, "b").unwrap();
        let first = notebook
            .request_execution(&a, &ExecutionTarget::Server, "p", 1.0)
            .unwrap();
        assert_eq!(
            placement.latest_execution(&a).unwrap().id,
            first,
            "read at first use"
        );
        assert!(placement.busy());

        let second = notebook
            .request_execution(&a, &ExecutionTarget::Server, "p", 2.0)
            .unwrap();
        let other = notebook
            .request_execution(&b, &ExecutionTarget::Server, "p", 3.0)
            .unwrap();
        assert_eq!(
            placement.latest_execution(&a).unwrap().id,
            first,
            "not told yet"
        );
        placement.executions_changed([second.clone(), other.clone()]);
        assert_eq!(placement.latest_execution(&a).unwrap().id, second);
        // News of an older entry does not replace the newer one.
        notebook.stop_execution(&first, 4.0).unwrap();
        placement.executions_changed([first.clone()]);
        assert_eq!(placement.latest_execution(&a).unwrap().id, second);

        notebook
            .start_execution(&other, "s1", Some(7), 5.0)
            .unwrap();
        placement.executions_changed([other.clone()]);
        let ids: Vec<String> = placement
            .latest_executions()
            .into_iter()
            .map(|e| e.id)
            .collect();
        assert_eq!(ids, [second.clone(), other.clone()]);
        let running: Vec<String> = placement.running().into_iter().map(|e| e.id).collect();
        assert_eq!(running, std::slice::from_ref(&other));

        // The lease: nobody states it; the runtime that started the newest entry under an
        // epoch holds it while it lives.
        notebook.register_runtime(&server("s1", None, 10.0));
        notebook.register_runtime(&server("s2", None, 20.0));
        let holder = placement.lease_holder().unwrap();
        assert_eq!(
            (holder.runtime.session_id.as_str(), holder.epoch),
            ("s1", Some(7))
        );
        assert_eq!(placement.server_runtime().unwrap().session_id, "s1");
        placement.set_notebook_target(Target::Server, false);
        assert!(matches!(
            placement.restart_target(),
            RestartTarget::Server(Some(r)) if r.session_id == "s1"
        ));

        let replied = Outcome::Replied {
            reply: Reply::Ok,
            execution_count: Some(1),
        };
        notebook
            .advance_execution(
                &other,
                &Actor::runtime("s1", Some(7)),
                &Step::Finish(replied),
                6.0,
            )
            .unwrap();
        notebook.stop_execution(&second, 6.0).unwrap();
        placement.executions_changed([other, second]);
        assert!(!placement.busy());
        assert!(placement.running().is_empty());
    }
}
