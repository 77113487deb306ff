//! What the parts' own tests (in headless Chromium) share.

use wasm_bindgen::JsValue;

/// A name no other test uses (documents, IndexedDB databases).
pub(crate) fn unique(prefix: &str) -> String {
    format!("{prefix}-{}", js_sys::Math::random().to_bits())
}

pub(crate) async fn sleep(ms: u32) {
    gloo_timers::future::TimeoutFuture::new(ms).await;
}

/// Polls `check` every 20 ms until it holds; panics naming `what` after `ms`.
pub(crate) async fn wait_for(what: &str, ms: u32, mut check: impl FnMut() -> bool) {
    let mut waited = 0;
    while !check() {
        assert!(waited < ms, "timed out after {ms} ms waiting for {what}");
        sleep(20).await;
        waited += 20;
    }
}

/// A Blob URL of `tests/fake_worker.js`, a stand-in for the Pyodide worker speaking its
/// protocol.
pub(crate) fn fake_worker_url() -> String {
    let parts = js_sys::Array::of1(&JsValue::from_str(include_str!("../tests/fake_worker.js")));
    let options = web_sys::BlobPropertyBag::new();
    options.set_type("text/javascript");
    let blob = web_sys::Blob::new_with_str_sequence_and_options(&parts, &options)
        .expect("a Blob of the fake worker");
    web_sys::Url::create_object_url_with_blob(&blob).expect("a URL of the fake worker")
}
