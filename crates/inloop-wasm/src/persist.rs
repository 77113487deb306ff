//! Feeding the offline store: updates queue up in memory and go to IndexedDB in batches, one
//! write at a time, with a compaction into one snapshot now and then.

use std::rc::Rc;

use crate::engine::Inner;

/// Starts a writer if none is running.
pub(crate) fn schedule(inner: &Rc<Inner>) {
    if inner.storing.replace(true) {
        return;
    }
    let weak = Rc::downgrade(inner);
    wasm_bindgen_futures::spawn_local(async move {
        loop {
            let Some(inner) = weak.upgrade() else { return };
            let updates = std::mem::take(&mut *inner.unstored.borrow_mut());
            if updates.is_empty() {
                inner.storing.set(false);
                inner.stored.notify_waiters();
                return;
            }
            // The store leaves its cell while it writes; `close` waits for the writer.
            let Some(mut store) = inner.store.borrow_mut().take() else {
                inner.storing.set(false);
                inner.stored.notify_waiters();
                return;
            };
            drop(inner);
            let mut result = store.append(&updates).await;
            let Some(inner) = weak.upgrade() else { return };
            if result.is_ok() && store.wants_compaction() {
                // Everything appended is in the document, so its snapshot replaces them all.
                let snapshot = inner.notebook.encode_update_v1();
                drop(inner);
                result = store.compact(&snapshot).await;
            } else {
                drop(inner);
            }
            let Some(inner) = weak.upgrade() else { return };
            if let Err(error) = result {
                web_sys::console::warn_1(&format!("inloop: {error}").into());
                *inner.store_error.borrow_mut() = Some(error.to_string());
            }
            *inner.store.borrow_mut() = Some(store);
        }
    });
}

/// Resolves once every update made so far is in IndexedDB.
pub(crate) async fn flushed(inner: &Rc<Inner>) {
    loop {
        let notified = inner.stored.notified();
        if !inner.storing.get() && inner.unstored.borrow().is_empty() {
            return;
        }
        notified.await;
    }
}
