//! The few calls of the relay's HTTP API the tools need, over plain HTTP/1.1.

use serde_json::Value;

use crate::RelayConfig;

/// `METHOD path` with the token; the body of a 2xx answer, or a message saying what failed.
pub(crate) async fn call(
    relay: &RelayConfig,
    method: &str,
    path: &str,
    content_type: &str,
    body: &[u8],
) -> Result<Vec<u8>, String> {
    inloop_client::api::request(
        &relay.authority,
        &relay.token,
        method,
        path,
        content_type,
        body,
    )
    .await
    .map_err(|e| e.to_string())
}

/// [`call`], with a JSON answer.
pub(crate) async fn call_json(
    relay: &RelayConfig,
    method: &str,
    path: &str,
    content_type: &str,
    body: &[u8],
) -> Result<Value, String> {
    let body = call(relay, method, path, content_type, body).await?;
    serde_json::from_slice(&body).map_err(|e| format!("{method} {path}: not JSON: {e}"))
}
