//! Undo and redo of one peer's own edits to the cells (yrs `UndoManager`).

use std::collections::HashSet;
use std::sync::Arc;

use yrs::undo::{Options, UndoManager};
use yrs::{Origin, TransactionMut};

use crate::Notebook;
use crate::notebook::LOCAL_ORIGIN;

impl Notebook {
    /// An undo manager over the cells (their list, sources, metadata, outputs) that records only
    /// this peer's transactions (made through this API, never updates applied from peers) for
    /// which `capture` says yes: a page says yes for the user's edits and no for its runtime's
    /// output writes. `now_ms` is the clock (milliseconds) that groups edits made within 500 ms
    /// into one step. Undoing and redoing are transactions of the manager's own origin, which
    /// observers report as remote and which go to the relay like any local change.
    pub fn undo_manager(
        &self,
        capture: impl Fn() -> bool + Send + Sync + 'static,
        now_ms: impl Fn() -> u64 + Send + Sync + 'static,
    ) -> UndoManager<()> {
        let options = Options {
            capture_timeout_millis: 500,
            tracked_origins: HashSet::from([Origin::from(LOCAL_ORIGIN)]),
            // The manager's own undo and redo transactions are always recorded (on the other stack).
            capture_transaction: Some(Arc::new(move |txn: &TransactionMut| {
                txn.origin()
                    .is_none_or(|origin| origin.as_ref() != LOCAL_ORIGIN.as_bytes())
                    || capture()
            })),
            timestamp: Arc::new(now_ms),
            init_undo_stack: Vec::new(),
            init_redo_stack: Vec::new(),
        };
        let mut manager = UndoManager::with_options(options);
        manager.expand_scope(self.doc(), self.cells_ref());
        manager
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicBool, Ordering};

    use super::*;
    use crate::CellType;

    #[test]
    fn undoes_own_captured_edits_only() {
        let a = Notebook::new();
        let b = Notebook::new();
        let capturing = Arc::new(AtomicBool::new(false));
        let flag = capturing.clone();
        let mut undo = a.undo_manager(move || flag.load(Ordering::Relaxed), || 0);
        capturing.store(true, Ordering::Relaxed);
        let id = a.insert_cell(0, CellType::Code, "x = 1").unwrap();
        undo.reset();
        a.edit_source(
            &id,
            &[
                crate::TextDelta::Retain(5),
                crate::TextDelta::Insert("0".into()),
            ],
        )
        .unwrap();
        capturing.store(false, Ordering::Relaxed);
        // Not captured: this peer's runtime writing an output.
        a.set_execution_count(&id, Some(3)).unwrap();
        // A peer's edit.
        b.apply_update_v1(&a.encode_update_v1()).unwrap();
        b.edit_source(&id, &[crate::TextDelta::Insert("# b\n".into())])
            .unwrap();
        a.apply_update_v1(&b.encode_diff_v1(&a.state_vector()))
            .unwrap();
        assert_eq!(a.source(&id).unwrap(), "# b\nx = 10");

        assert!(undo.undo_blocking());
        assert_eq!(a.source(&id).unwrap(), "# b\nx = 1");
        assert_eq!(a.cell(&id).unwrap().execution_count, Some(3));
        assert!(undo.redo_blocking());
        assert_eq!(a.source(&id).unwrap(), "# b\nx = 10");
        assert!(undo.undo_blocking());
        assert!(undo.undo_blocking());
        assert_eq!(a.cell_count(), 0);
        assert!(!undo.can_undo());
    }
}
