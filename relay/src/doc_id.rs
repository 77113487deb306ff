//! One grammar for document ids, `[A-Za-z0-9_-]{1,64}`, checked on every route that takes one
//! before anything else (the token, loading or creating the document): an id is a file name
//! in exports, a header value, a storage key and part of URLs, and this grammar is safe in all.

use axum::extract::{FromRequestParts, RawPathParams, Request};
use axum::http::StatusCode;
use axum::http::request::Parts;
use axum::middleware::Next;
use axum::response::Response;

use crate::Refusal;

/// The longest id; the relay makes 32 characters (128 random bits in hex).
pub(crate) const MAX_LEN: usize = 64;

/// Whether `id` is a document id.
pub(crate) fn is_valid(id: &str) -> bool {
    (1..=MAX_LEN).contains(&id.len())
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

/// The refusal of an id that is not one. The id itself is not echoed.
pub(crate) fn refusal() -> Refusal {
    Refusal(
        StatusCode::BAD_REQUEST,
        format!("bad document id: it must be 1 to {MAX_LEN} letters, digits, '-' or '_'"),
    )
}

/// The `{doc_id}` of the route, checked: a handler taking it as its first argument refuses a
/// bad id (400) before anything else happens.
#[derive(Debug, Clone)]
pub(crate) struct DocId(pub(crate) String);

impl<S: Send + Sync> FromRequestParts<S> for DocId {
    type Rejection = Refusal;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Refusal> {
        // Percent-decoded; text that does not decode to UTF-8 is refused like any bad id.
        let params = RawPathParams::from_request_parts(parts, state)
            .await
            .map_err(|_| refusal())?;
        match params.iter().find(|(name, _)| *name == "doc_id") {
            Some((_, id)) if is_valid(id) => Ok(Self(id.to_owned())),
            _ => Err(refusal()),
        }
    }
}

/// A middleware refusing a bad `{doc_id}` before the route's service sees the request.
pub(crate) async fn require(_: DocId, request: Request, next: Next) -> Response {
    next.run(request).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_grammar() {
        for good in [
            "a",
            "A-z_0",
            "0123456789abcdef0123456789abcdef",
            &"x".repeat(64),
        ] {
            assert!(is_valid(good), "{good}");
        }
        for bad in [
            "",
            &"x".repeat(65),
            "../../etc/passwd",
            "a.b",
            "a b",
            "a\"b",
            "a\0b",
            "a\r\nb",
            "a/b",
            "é",
            "a%2e",
        ] {
            assert!(!is_valid(bad), "{bad:?}");
        }
    }
}
