//! This page's replica of the document: the notebook, and the undo history of the person's own
//! edits (never a peer's, nor what this page's runtime writes).

use std::cell::RefCell;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use inloop_doc::Notebook;

/// The document and its undo history.
pub(crate) struct Replica {
    doc_id: String,
    notebook: Notebook,
    undo: RefCell<yrs::UndoManager>,
    /// Set while a user edit runs, so the undo manager records it.
    user_edit: Arc<AtomicBool>,
}

impl std::fmt::Debug for Replica {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Replica")
            .field("doc_id", &self.doc_id)
            .field("client_id", &self.notebook.client_id())
            .finish()
    }
}

impl Replica {
    pub(crate) fn new(doc_id: String, notebook: Notebook) -> Self {
        let user_edit = Arc::new(AtomicBool::new(false));
        let capturing = user_edit.clone();
        let undo = notebook.undo_manager(
            move || capturing.load(Ordering::Relaxed),
            || js_sys::Date::now() as u64,
        );
        Self {
            doc_id,
            notebook,
            undo: RefCell::new(undo),
            user_edit,
        }
    }

    pub(crate) fn doc_id(&self) -> &str {
        &self.doc_id
    }

    pub(crate) fn notebook(&self) -> &Notebook {
        &self.notebook
    }

    /// Runs `f` as a user edit: the undo manager records what it changes in the cells.
    pub(crate) fn as_user_edit<T>(&self, f: impl FnOnce(&Notebook) -> T) -> T {
        let was = self.user_edit.swap(true, Ordering::Relaxed);
        let result = f(&self.notebook);
        self.user_edit.store(was, Ordering::Relaxed);
        result
    }

    /// Takes back the last user edit; `true` if it changed something.
    pub(crate) fn undo(&self) -> bool {
        self.undo.borrow_mut().undo_blocking()
    }

    /// Puts back what `undo` took back; `true` if it changed something.
    pub(crate) fn redo(&self) -> bool {
        self.undo.borrow_mut().redo_blocking()
    }

    pub(crate) fn can_undo(&self) -> bool {
        self.undo.borrow().can_undo()
    }

    pub(crate) fn can_redo(&self) -> bool {
        self.undo.borrow().can_redo()
    }

    /// Ends the current undo step: the next edit starts a new one.
    pub(crate) fn undo_boundary(&self) {
        self.undo.borrow_mut().reset();
    }
}

#[cfg(all(test, target_arch = "wasm32"))]
mod tests {
    use inloop_doc::CellType;
    use wasm_bindgen_test::wasm_bindgen_test;

    use super::*;

    #[wasm_bindgen_test]
    fn undo_takes_back_user_edits_only() {
        let replica = Replica::new("doc".into(), Notebook::new());
        assert_eq!(replica.doc_id(), "doc");
        let cell = replica
            .as_user_edit(|nb| nb.insert_cell(0, CellType::Code, "x = 1"))
            .unwrap();
        replica.undo_boundary();
        replica
            .as_user_edit(|nb| nb.set_source(&cell, "x = 2"))
            .unwrap();
        replica.undo_boundary();
        // Not a user edit (a runtime's output, a change of state): no undo step.
        let nb = replica.notebook();
        nb.set_execution_count(&cell, Some(4)).unwrap();
        // A peer's edit.
        let peer = Notebook::new();
        peer.apply_update_v1(&nb.encode_update_v1()).unwrap();
        peer.insert_cell(1, CellType::Markdown, "peer").unwrap();
        nb.apply_update_v1(&peer.encode_update_v1()).unwrap();
        assert_eq!(nb.cell_count(), 2);

        assert!(replica.can_undo());
        assert!(replica.undo());
        assert_eq!(nb.source(&cell).unwrap(), "x = 1");
        assert_eq!(nb.cell(&cell).unwrap().execution_count, Some(4));
        assert!(replica.can_redo());
        assert!(replica.redo());
        assert_eq!(nb.source(&cell).unwrap(), "x = 2");
        assert!(replica.undo());
        assert!(replica.undo());
        assert_eq!(nb.cell_count(), 1, "the peer's cell stays");
        assert!(!replica.can_undo());
        assert!(!replica.undo());
    }

    #[wasm_bindgen_test]
    fn a_nested_user_edit_leaves_the_flag_as_it_was() {
        let replica = Replica::new("doc".into(), Notebook::new());
        replica.as_user_edit(|_| {
            replica.as_user_edit(|nb| nb.insert_cell(0, CellType::Code, "a").unwrap());
            // Still a user edit after the inner one.
            replica
                .notebook()
                .insert_cell(1, CellType::Code, "b")
                .unwrap();
        });
        replica.undo_boundary();
        replica
            .notebook()
            .insert_cell(2, CellType::Code, "c")
            .unwrap();
        assert!(replica.undo());
        assert_eq!(
            replica.notebook().cell_count(),
            1,
            "only c, not a user edit, stays"
        );
    }
}
