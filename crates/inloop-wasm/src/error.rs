//! The engine's errors. They become JavaScript `Error`s only at the exported boundary.

use wasm_bindgen::{JsCast, JsValue};

/// Everything that can go wrong in the engine.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    #[error(transparent)]
    Doc(#[from] inloop_doc::Error),

    #[error(transparent)]
    Sync(#[from] inloop_sync::Error),

    #[error(transparent)]
    Kernel(#[from] inloop_kernel::Error),

    /// An argument from JavaScript that does not have the expected shape.
    #[error("invalid argument: {0}")]
    Argument(String),

    /// IndexedDB failed (quota, a blocked upgrade, private mode without storage...).
    #[error("offline store (IndexedDB): {0}")]
    Store(String),

    /// A browser API threw.
    #[error("{0}")]
    Browser(String),

    /// The engine was closed with `close()`.
    #[error("this notebook engine is closed")]
    Closed,
}

/// `Result` with the engine's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl From<serde_wasm_bindgen::Error> for Error {
    fn from(error: serde_wasm_bindgen::Error) -> Self {
        Error::Argument(error.to_string())
    }
}

impl From<Error> for JsValue {
    fn from(error: Error) -> Self {
        js_sys::Error::new(&error.to_string()).into()
    }
}

/// The message of a thrown JavaScript value (an `Error`, a `DOMException`, a string...).
pub(crate) fn js_message(value: &JsValue) -> String {
    if let Some(error) = value.dyn_ref::<js_sys::Error>() {
        return String::from(error.message());
    }
    if let Some(text) = value.as_string() {
        return text;
    }
    let message = js_sys::Reflect::get(value, &JsValue::from_str("message"))
        .ok()
        .and_then(|m| m.as_string());
    message.unwrap_or_else(|| format!("{value:?}"))
}

/// Turns a thrown browser value into [`Error::Browser`], saying what was being done.
pub(crate) fn browser(doing: &str) -> impl FnOnce(JsValue) -> Error + '_ {
    move |value| Error::Browser(format!("{doing}: {}", js_message(&value)))
}
