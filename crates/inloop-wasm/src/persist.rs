//! Persistence: every update of the document, local or remote, kept in the offline store
//! (IndexedDB, `store.rs`). Updates queue up in memory and go to the store in batches, one
//! write at a time, with a compaction into one snapshot now and then.
//!
//! It observes the document itself and knows nothing above it.

use std::cell::{Cell, RefCell};
use std::rc::Rc;

use inloop_doc::Notebook;
use tokio::sync::Notify;

use crate::error::{Error, Result};
use crate::store::Store;

/// The document kept in IndexedDB. The writer task holds a `Weak` to it.
pub(crate) struct Persistence {
    notebook: Notebook,
    /// Out of its cell while the writer writes with it.
    store: RefCell<Option<Store>>,
    /// Records of this document in the store, as far as this engine knows.
    records: Cell<usize>,
    /// Updates (local and remote) not in IndexedDB yet.
    unstored: RefCell<Vec<Vec<u8>>>,
    storing: Cell<bool>,
    stored: Notify,
    /// The last write's failure, until [`Persistence::take_error`] reads it.
    error: RefCell<Option<String>>,
    observing: Cell<bool>,
}

impl std::fmt::Debug for Persistence {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Persistence")
            .field("records", &self.records.get())
            .field("unstored", &self.unstored.borrow().len())
            .finish()
    }
}

impl Persistence {
    /// Opens the store `database` and loads what it holds of `doc_id` into `notebook`; then
    /// every update of `notebook` goes to the store.
    pub(crate) async fn open(
        notebook: &Notebook,
        database: &str,
        doc_id: &str,
    ) -> Result<Rc<Self>> {
        let (store, updates) = Store::open(database, doc_id).await?;
        if !updates.is_empty() {
            let merged = yrs::merge_updates_v1(updates.iter().map(Vec::as_slice))
                .map_err(|e| Error::Store(format!("the stored document is damaged: {e}")))?;
            notebook.apply_update_v1(&merged)?;
        }
        let this = Rc::new(Self {
            notebook: notebook.clone(),
            records: Cell::new(store.records()),
            store: RefCell::new(Some(store)),
            unstored: RefCell::new(Vec::new()),
            storing: Cell::new(false),
            stored: Notify::new(),
            error: RefCell::new(None),
            observing: Cell::new(false),
        });
        let weak = Rc::downgrade(&this);
        this.notebook
            .doc()
            .observe_update_v1(this.observer_key(), move |_, event| {
                if let Some(this) = weak.upgrade() {
                    this.unstored.borrow_mut().push(event.update.clone());
                    this.schedule();
                }
            })
            .map_err(|_| Error::Doc(inloop_doc::Error::Busy))?;
        this.observing.set(true);
        Ok(this)
    }

    /// Stops taking updates (the engine's `close`); what is queued is still written.
    pub(crate) fn stop(&self) {
        if self.observing.replace(false) {
            let _ = self.notebook.doc().unobserve_update_v1(self.observer_key());
        }
    }

    /// Resolves once every update taken so far is in IndexedDB.
    pub(crate) async fn flushed(&self) {
        loop {
            let notified = self.stored.notified();
            if !self.storing.get() && self.unstored.borrow().is_empty() {
                return;
            }
            notified.await;
        }
    }

    /// The last write's failure, if it failed (then forgotten).
    pub(crate) fn take_error(&self) -> Option<String> {
        self.error.borrow_mut().take()
    }

    /// How many records hold this document, as far as this engine knows: it drops to 1 when
    /// they are folded into a snapshot.
    pub(crate) fn records(&self) -> usize {
        self.records.get()
    }

    /// The key of the document observer (one per replica).
    fn observer_key(&self) -> String {
        format!("inloop-wasm:store:{}", self.notebook.client_id())
    }

    /// Starts a writer if none is running.
    fn schedule(self: &Rc<Self>) {
        if self.storing.replace(true) {
            return;
        }
        let weak = Rc::downgrade(self);
        wasm_bindgen_futures::spawn_local(async move {
            loop {
                let Some(this) = weak.upgrade() else { return };
                let updates = std::mem::take(&mut *this.unstored.borrow_mut());
                if updates.is_empty() {
                    this.storing.set(false);
                    this.stored.notify_waiters();
                    return;
                }
                // The store leaves its cell while it writes.
                let Some(mut store) = this.store.borrow_mut().take() else {
                    this.storing.set(false);
                    this.stored.notify_waiters();
                    return;
                };
                drop(this);
                let mut result = store.append(&updates).await;
                let Some(this) = weak.upgrade() else { return };
                if result.is_ok() && store.wants_compaction() {
                    // Everything appended is in the document, so its snapshot replaces them all.
                    let snapshot = this.notebook.encode_update_v1();
                    drop(this);
                    result = store.compact(&snapshot).await;
                } else {
                    drop(this);
                }
                let Some(this) = weak.upgrade() else { return };
                if let Err(error) = result {
                    web_sys::console::warn_1(&format!("inloop: {error}").into());
                    *this.error.borrow_mut() = Some(error.to_string());
                }
                this.records.set(store.records());
                *this.store.borrow_mut() = Some(store);
            }
        });
    }
}

#[cfg(all(test, target_arch = "wasm32"))]
mod tests {
    use inloop_doc::CellType;
    use wasm_bindgen_test::wasm_bindgen_test;

    use super::*;
    use crate::testing::unique;

    #[wasm_bindgen_test]
    async fn every_update_is_stored_and_loaded_again() {
        let database = unique("persist");
        let doc = unique("doc");
        let notebook = Notebook::new();
        let persistence = Persistence::open(&notebook, &database, &doc).await.unwrap();
        assert_eq!(persistence.records(), 0);
        let cell = notebook.insert_cell(0, CellType::Code, "x = 1").unwrap();
        // A remote update is stored too.
        let peer = Notebook::new();
        peer.apply_update_v1(&notebook.encode_update_v1()).unwrap();
        peer.insert_cell(1, CellType::Markdown, "peer").unwrap();
        notebook.apply_update_v1(&peer.encode_update_v1()).unwrap();
        persistence.flushed().await;
        assert_eq!(persistence.take_error(), None);
        assert!(persistence.records() >= 2);
        drop(persistence);

        let again = Notebook::new();
        let reopened = Persistence::open(&again, &database, &doc).await.unwrap();
        assert_eq!(again.cell_ids(), notebook.cell_ids());
        assert_eq!(again.source(&cell).unwrap(), "x = 1");

        // After `stop`, updates are no longer taken.
        reopened.stop();
        let records = reopened.records();
        again.insert_cell(0, CellType::Code, "not stored").unwrap();
        reopened.flushed().await;
        assert_eq!(reopened.records(), records);
        drop(reopened);
        crate::store::delete_database(&database).await.unwrap();
    }

    #[wasm_bindgen_test]
    async fn many_records_fold_into_one_snapshot() {
        let database = unique("persist");
        let doc = unique("doc");
        let notebook = Notebook::new();
        let persistence = Persistence::open(&notebook, &database, &doc).await.unwrap();
        let cell = notebook.insert_cell(0, CellType::Code, "").unwrap();
        for i in 0..260 {
            notebook
                .edit_source(
                    &cell,
                    &[inloop_doc::TextDelta::Insert(format!("{}", i % 10))],
                )
                .unwrap();
            if i % 50 == 0 {
                // Several write batches, as a person typing makes.
                persistence.flushed().await;
            }
        }
        persistence.flushed().await;
        let records = persistence.records();
        assert!(records < 100, "compacted to a snapshot: {records} records");
        let expected = notebook.source(&cell).unwrap();
        drop(persistence);

        let again = Notebook::new();
        let _reopened = Persistence::open(&again, &database, &doc).await.unwrap();
        assert_eq!(again.source(&cell).unwrap(), expected);
        assert_eq!(expected.len(), 260);
        drop(_reopened);
        crate::store::delete_database(&database).await.unwrap();
    }
}
