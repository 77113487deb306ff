//! The security headers on every response of the relay (docs/SECURITY.md, "Rendering untrusted
//! content"): a Content-Security-Policy, cross-origin isolation, no referrer, no MIME sniffing.
//!
//! Two policies:
//!
//! - The page's, on everything: scripts only from this origin (no inline script; `eval` only for
//!   WebAssembly), styles from this origin plus the `<style>` elements CodeMirror creates, which
//!   carry a per-response nonce (below); images from this origin, `data:` and `blob:`; every
//!   connection, frame and worker to this origin only; no plugins, no `<base>`, no form
//!   submissions, and no framing by anyone. Nothing a notebook renders in the page can load or
//!   send anything elsewhere, even past the sanitizer.
//! - The HTML output frame's ([`OUTPUT_FRAME_PATH`], in `<iframe sandbox="allow-scripts …">`):
//!   the output's own inline scripts and styles run, but it loads nothing from the network
//!   (`data:` and `blob:` only), its document is sandboxed even when opened on its own, and only
//!   this origin may frame it. A frame inherits nothing from the page (a `srcdoc` frame would
//!   inherit the page's policy, which allows no inline script).
//!
//! The nonce: a page that uses CodeMirror marks where it wants the nonce with
//! [`NONCE_PLACEHOLDER`] (`<link rel="stylesheet" nonce="__INLOOP_CSP_NONCE__" …>`, read by the
//! page as `link.nonce`, which Chromium hides from CSS selectors and `getAttribute`). Such a
//! page is sent with a fresh nonce in its body and its policy, without validators (no 304 may
//! pair a cached body with a new nonce).

use axum::Router;
use axum::body::Body;
use axum::extract::Request;
use axum::http::{HeaderMap, HeaderName, HeaderValue, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::Response;

/// The page that shows one HTML output, under its own policy (web/static/output-frame.html).
const OUTPUT_FRAME_PATH: &str = "/output-frame.html";

/// What a page writes where its per-response style nonce goes.
const NONCE_PLACEHOLDER: &str = "__INLOOP_CSP_NONCE__";

/// Pages larger than this are sent as they are (ours are a few KiB).
const MAX_TEMPLATED_PAGE: usize = 1 << 20;

/// The page's policy, with the page's style nonce if it asked for one.
fn page_policy(nonce: Option<&str>) -> String {
    let style_nonce = nonce.map_or_else(String::new, |n| format!(" 'nonce-{n}'"));
    format!(
        "default-src 'self'; \
         script-src 'self' 'wasm-unsafe-eval'; \
         style-src 'self'{style_nonce}; \
         img-src 'self' data: blob:; \
         font-src 'self'; \
         connect-src 'self'; \
         frame-src 'self'; \
         worker-src 'self'; \
         object-src 'none'; \
         base-uri 'none'; \
         form-action 'none'; \
         frame-ancestors 'none'"
    )
}

/// The HTML output frame's policy. `sandbox` keeps its origin opaque even if it is opened as a
/// page of its own; `frame-ancestors 'self'` lets only the notebook page show it.
const OUTPUT_FRAME_POLICY: &str = "default-src 'none'; \
     script-src 'unsafe-inline' 'unsafe-eval'; \
     style-src 'unsafe-inline'; \
     img-src data: blob:; \
     font-src data:; \
     media-src data: blob:; \
     base-uri 'none'; \
     form-action 'none'; \
     frame-ancestors 'self'; \
     sandbox allow-scripts allow-popups";

/// Headers every response carries, whatever its policy.
const COMMON: [(&str, &str); 5] = [
    // Cross-origin isolation: the Pyodide worker's SharedArrayBuffer (interrupts).
    // `require-corp` rather than `credentialless`: the page loads nothing from other origins
    // (its policy says so), and output frames load nothing from the network at all.
    ("cross-origin-opener-policy", "same-origin"),
    ("cross-origin-embedder-policy", "require-corp"),
    // No other origin may embed our responses (scripts, JSON, wasm) as no-cors resources.
    ("cross-origin-resource-policy", "same-origin"),
    // A link followed from a notebook tells its target nothing about the page.
    ("referrer-policy", "no-referrer"),
    ("x-content-type-options", "nosniff"),
];

/// `router` with the security headers on every response.
pub(crate) fn secure<S>(router: Router<S>) -> Router<S>
where
    S: Clone + Send + Sync + 'static,
{
    router.layer(middleware::from_fn(security_headers))
}

async fn security_headers(mut request: Request, next: Next) -> Response {
    let path = request.uri().path();
    let output_frame = path == OUTPUT_FRAME_PATH;
    if serves_page(path) {
        // A page is templated anew every time: a 304 would pair the browser's cached body with
        // this response's nonce (and an old cached page with the new policy).
        let headers = request.headers_mut();
        headers.remove(header::IF_NONE_MATCH);
        headers.remove(header::IF_MODIFIED_SINCE);
    }
    let response = next.run(request).await;
    let (mut response, policy) = if output_frame {
        (response, OUTPUT_FRAME_POLICY.to_owned())
    } else {
        let (response, nonce) = with_fresh_nonce(response).await;
        (response, page_policy(nonce.as_deref()))
    };
    let headers = response.headers_mut();
    set(headers, header::CONTENT_SECURITY_POLICY, &policy);
    for (name, value) in COMMON {
        set(headers, HeaderName::from_static(name), value);
    }
    response
}

/// Whether `path` is one of the HTML pages (`/`, `/n/{id}`, `*.html`).
fn serves_page(path: &str) -> bool {
    path == "/" || path.starts_with("/n/") || path.ends_with(".html")
}

/// An HTML page that asks for a nonce gets a fresh one in its body; anything else is returned
/// as it is. Returns the response and the nonce it now carries.
async fn with_fresh_nonce(response: Response) -> (Response, Option<String>) {
    let is_html = response
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("text/html"));
    let small = response
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok()?.parse::<usize>().ok())
        .is_some_and(|len| len <= MAX_TEMPLATED_PAGE);
    if response.status() != StatusCode::OK || !is_html || !small {
        return (response, None);
    }
    let (mut parts, body) = response.into_parts();
    let bytes = match axum::body::to_bytes(body, MAX_TEMPLATED_PAGE).await {
        Ok(bytes) => bytes,
        Err(error) => {
            tracing::warn!(%error, "could not read a page to template");
            let mut refused = Response::new(Body::empty());
            *refused.status_mut() = StatusCode::INTERNAL_SERVER_ERROR;
            return (refused, None);
        }
    };
    let page = match std::str::from_utf8(&bytes) {
        Ok(page) if page.contains(NONCE_PLACEHOLDER) => page,
        _ => return (Response::from_parts(parts, Body::from(bytes)), None),
    };
    let nonce = match crate::random_bytes::<16>() {
        Ok(bytes) => bytes.iter().map(|b| format!("{b:02x}")).collect::<String>(),
        Err(error) => {
            // No nonce: the page shows without CodeMirror's styles rather than not at all.
            tracing::error!(%error, "no randomness for a style nonce");
            return (Response::from_parts(parts, Body::from(bytes)), None);
        }
    };
    let templated = page.replace(NONCE_PLACEHOLDER, &nonce);
    parts.headers.remove(header::CONTENT_LENGTH);
    parts.headers.remove(header::ETAG);
    parts.headers.remove(header::LAST_MODIFIED);
    set(&mut parts.headers, header::CACHE_CONTROL, "no-cache");
    (
        Response::from_parts(parts, Body::from(templated)),
        Some(nonce),
    )
}

fn set(headers: &mut HeaderMap, name: HeaderName, value: &str) {
    match HeaderValue::from_str(value) {
        Ok(value) => {
            headers.insert(name, value);
        }
        Err(error) => tracing::error!(%error, %name, "invalid header value"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_policy_is_a_valid_header_value() {
        for policy in [
            page_policy(None),
            page_policy(Some("00ff")),
            OUTPUT_FRAME_POLICY.to_owned(),
        ] {
            assert!(HeaderValue::from_str(&policy).is_ok(), "{policy}");
            assert!(!policy.contains("  "), "{policy}");
        }
    }

    #[test]
    fn the_page_policy_allows_no_inline_script_and_nothing_from_elsewhere() {
        let policy = page_policy(Some("abc"));
        assert!(policy.contains("script-src 'self' 'wasm-unsafe-eval';"));
        assert!(policy.contains("style-src 'self' 'nonce-abc';"));
        assert!(!policy.contains("unsafe-inline"));
        assert!(!policy.contains("http"));
        assert!(page_policy(None).contains("style-src 'self';"));
    }

    #[test]
    fn pages_are_recognised_by_their_path() {
        for page in [
            "/",
            "/n/abc",
            "/index.html",
            "/output-frame.html",
            "/dev/engine.html",
        ] {
            assert!(serves_page(page), "{page}");
        }
        for other in ["/app/notebook.js", "/api/docs", "/pyodide/pyodide.asm.wasm"] {
            assert!(!serves_page(other), "{other}");
        }
    }
}
