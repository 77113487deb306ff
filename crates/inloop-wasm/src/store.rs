//! The offline store: every update of a document, local or remote, appended to IndexedDB, and
//! folded into one snapshot now and then, so a page opened with no network has the last state.
//!
//! One database (`inloop` by default) with one object store, `updates`: records
//! `{doc, update}` under auto-increment keys, indexed by `doc`. Several tabs on the same
//! document append side by side; compaction deletes only the records this engine has read or
//! written (its snapshot contains them), never another tab's newer ones.

use js_sys::{Array, Object, Promise, Reflect, Uint8Array};
use wasm_bindgen::closure::Closure;
use wasm_bindgen::{JsCast, JsValue};
use wasm_bindgen_futures::JsFuture;
use web_sys::{
    IdbDatabase, IdbFactory, IdbObjectStore, IdbRequest, IdbTransaction, IdbTransactionMode,
};

use crate::error::{Error, Result, js_message};

const VERSION: u32 = 1;
const UPDATES: &str = "updates";
const BY_DOC: &str = "doc";
/// Records kept before they are folded into one snapshot.
const COMPACT_AFTER: usize = 200;

/// One document's records in the browser's IndexedDB.
#[derive(Debug)]
pub(crate) struct Store {
    db: IdbDatabase,
    doc_id: String,
    /// The keys of this document's records that this engine read or wrote: all contained in
    /// its document, so a snapshot of it replaces them.
    known: Vec<JsValue>,
}

impl Store {
    /// Opens (creating it if needed) the database `name` and reads `doc_id`'s updates, oldest
    /// first.
    pub(crate) async fn open(name: &str, doc_id: &str) -> Result<(Self, Vec<Vec<u8>>)> {
        let factory = factory()?;
        let open = factory
            .open_with_u32(name, VERSION)
            .map_err(|e| store_error("opening the database", &e))?;
        let upgrade = Closure::<dyn FnMut(web_sys::Event)>::new({
            let open = open.clone();
            move |_| {
                if let Ok(db) = open.result() {
                    let db: IdbDatabase = db.unchecked_into();
                    let _ = create_schema(&db);
                }
            }
        });
        open.set_onupgradeneeded(Some(upgrade.as_ref().unchecked_ref()));
        let db: IdbDatabase = request(open.as_ref()).await?.unchecked_into();
        open.set_onupgradeneeded(None);
        drop(upgrade);

        let tx = db
            .transaction_with_str(UPDATES)
            .map_err(|e| store_error("reading", &e))?;
        let index = object_store(&tx)?
            .index(BY_DOC)
            .map_err(|e| store_error("reading", &e))?;
        let key = JsValue::from_str(doc_id);
        let keys_request = index
            .get_all_keys_with_key(&key)
            .map_err(|e| store_error("reading", &e))?;
        let values_request = index
            .get_all_with_key(&key)
            .map_err(|e| store_error("reading", &e))?;
        let keys: Array = request(&keys_request).await?.unchecked_into();
        let values: Array = request(&values_request).await?.unchecked_into();
        let updates = values
            .iter()
            .filter_map(|record| Reflect::get(&record, &JsValue::from_str("update")).ok())
            .filter_map(|update| update.dyn_into::<Uint8Array>().ok())
            .map(|update| update.to_vec())
            .collect();
        let store = Self {
            db,
            doc_id: doc_id.to_owned(),
            known: keys.iter().collect(),
        };
        Ok((store, updates))
    }

    /// Appends updates, in one IndexedDB transaction.
    pub(crate) async fn append(&mut self, updates: &[Vec<u8>]) -> Result<()> {
        let tx = self.write_transaction()?;
        let store = object_store(&tx)?;
        let mut requests = Vec::with_capacity(updates.len());
        for update in updates {
            let add = store
                .add(self.record(update)?.as_ref())
                .map_err(|e| store_error("writing", &e))?;
            requests.push(add);
        }
        done(&tx).await?;
        for add in requests {
            if let Ok(key) = add.result() {
                self.known.push(key);
            }
        }
        Ok(())
    }

    /// Whether enough records piled up to fold them into a snapshot.
    pub(crate) fn wants_compaction(&self) -> bool {
        self.known.len() > COMPACT_AFTER
    }

    /// Replaces every record this engine knows by `snapshot` (the whole document), atomically.
    pub(crate) async fn compact(&mut self, snapshot: &[u8]) -> Result<()> {
        let tx = self.write_transaction()?;
        let store = object_store(&tx)?;
        let add = store
            .add(self.record(snapshot)?.as_ref())
            .map_err(|e| store_error("compacting", &e))?;
        for key in &self.known {
            store
                .delete(key)
                .map_err(|e| store_error("compacting", &e))?;
        }
        done(&tx).await?;
        self.known = add.result().into_iter().collect();
        Ok(())
    }

    /// How many records of this document this engine knows of (tests look at compaction).
    pub(crate) fn records(&self) -> usize {
        self.known.len()
    }

    fn record(&self, update: &[u8]) -> Result<Object> {
        let record = Object::new();
        let set = |key: &str, value: &JsValue| {
            Reflect::set(&record, &JsValue::from_str(key), value)
                .map(|_| ())
                .map_err(|e| store_error("writing", &e))
        };
        set(BY_DOC, &JsValue::from_str(&self.doc_id))?;
        set("update", &Uint8Array::from(update).into())?;
        Ok(record)
    }

    fn write_transaction(&self) -> Result<IdbTransaction> {
        self.db
            .transaction_with_str_and_mode(UPDATES, IdbTransactionMode::Readwrite)
            .map_err(|e| store_error("writing", &e))
    }
}

impl Drop for Store {
    fn drop(&mut self) {
        self.db.close();
    }
}

/// Deletes a whole database (tests start from nothing).
pub(crate) async fn delete_database(name: &str) -> Result<()> {
    let delete = factory()?
        .delete_database(name)
        .map_err(|e| store_error("deleting the database", &e))?;
    request(delete.as_ref()).await.map(|_| ())
}

fn factory() -> Result<IdbFactory> {
    // `indexedDB` on the global object: a window or a worker.
    let factory = Reflect::get(&js_sys::global(), &JsValue::from_str("indexedDB"))
        .ok()
        .filter(|f| !f.is_undefined() && !f.is_null())
        .ok_or_else(|| Error::Store("IndexedDB is not available in this browser context".into()))?;
    Ok(factory.unchecked_into())
}

fn create_schema(db: &IdbDatabase) -> std::result::Result<(), JsValue> {
    if !db.object_store_names().contains(UPDATES) {
        let parameters = web_sys::IdbObjectStoreParameters::new();
        parameters.set_auto_increment(true);
        let store = db.create_object_store_with_optional_parameters(UPDATES, &parameters)?;
        store.create_index_with_str(BY_DOC, BY_DOC)?;
    }
    Ok(())
}

fn object_store(tx: &IdbTransaction) -> Result<IdbObjectStore> {
    tx.object_store(UPDATES)
        .map_err(|e| store_error("opening the object store", &e))
}

fn store_error(doing: &str, value: &JsValue) -> Error {
    Error::Store(format!("{doing}: {}", js_message(value)))
}

/// Resolves with a request's result once it succeeds.
async fn request(request: &IdbRequest) -> Result<JsValue> {
    let promise = Promise::new(&mut |resolve, reject| {
        let done = request.clone();
        let success = Closure::once_into_js(move || {
            let _ = resolve.call1(&JsValue::NULL, &done.result().unwrap_or(JsValue::UNDEFINED));
        });
        let failed = request.clone();
        let error = Closure::once_into_js(move || {
            let error = failed
                .error()
                .ok()
                .flatten()
                .map_or(JsValue::from_str("the request failed"), JsValue::from);
            let _ = reject.call1(&JsValue::NULL, &error);
        });
        request.set_onsuccess(Some(success.unchecked_ref()));
        request.set_onerror(Some(error.unchecked_ref()));
        // A blocked open or delete (another tab holds an older version) waits, as IndexedDB does.
    });
    JsFuture::from(promise)
        .await
        .map_err(|e| store_error("request", &e))
}

/// Resolves once a transaction has committed.
async fn done(tx: &IdbTransaction) -> Result<()> {
    let promise = Promise::new(&mut |resolve, reject| {
        let complete = Closure::once_into_js(move || {
            let _ = resolve.call0(&JsValue::NULL);
        });
        let failed = tx.clone();
        let reject_with_error = move || {
            let error = failed.error().map_or(
                JsValue::from_str("the transaction was aborted"),
                JsValue::from,
            );
            let _ = reject.call1(&JsValue::NULL, &error);
        };
        let error = Closure::once_into_js(reject_with_error.clone());
        let abort = Closure::once_into_js(reject_with_error);
        tx.set_oncomplete(Some(complete.unchecked_ref()));
        tx.set_onerror(Some(error.unchecked_ref()));
        tx.set_onabort(Some(abort.unchecked_ref()));
    });
    JsFuture::from(promise)
        .await
        .map(|_| ())
        .map_err(|e| store_error("committing", &e))
}
