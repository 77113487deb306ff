//! The HTTP side: documents from `.ipynb`, live import, export, share tokens, the page, metrics.

use std::time::Duration;

use inloop_sync::Role;

use crate::{TestRelay, connect, eventually, http_exchange, http_request};

const NOTEBOOK: &str = r#"{"cells": [{"cell_type": "code", "execution_count": 3, "id": "c1", "metadata": {}, "outputs": [{"name": "stdout", "output_type": "stream", "text": ["hi\n"]}], "source": ["print('hi')"]}], "metadata": {"kernelspec": {"name": "python3", "display_name": "Python 3", "language": "python"}}, "nbformat": 4, "nbformat_minor": 5}"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn create_from_ipynb_export_import_and_share() {
    let relay = TestRelay::start().await;
    let admin = relay.admin_token.clone();

    // Created from an .ipynb, exported back equal.
    let (status, body) = http_request(
        relay.addr,
        "POST",
        "/api/docs",
        Some(&admin),
        NOTEBOOK.as_bytes(),
    )
    .await;
    assert_eq!(status, 201, "{body}");
    let doc = serde_json::from_str::<serde_json::Value>(&body).unwrap()["id"]
        .as_str()
        .unwrap()
        .to_owned();
    assert_eq!(doc.len(), 32, "ids are 128 random bits");
    let (status, exported) = http_request(
        relay.addr,
        "GET",
        &format!("/api/docs/{doc}/ipynb"),
        Some(&admin),
        b"",
    )
    .await;
    assert_eq!(status, 200);
    let exported: serde_json::Value = serde_json::from_str(&exported).unwrap();
    let original: serde_json::Value = serde_json::from_str(NOTEBOOK).unwrap();
    assert_eq!(exported["cells"], original["cells"]);
    assert_eq!(exported["metadata"], original["metadata"]);

    // Listed.
    let (_, list) = http_request(relay.addr, "GET", "/api/docs", Some(&admin), b"").await;
    assert!(list.contains(&doc), "{list}");

    // A bad .ipynb is refused with its JSON path, and changes nothing.
    let bad = r#"{"cells": [{"cell_type": "code", "source": 7}], "metadata": {}, "nbformat": 4, "nbformat_minor": 5}"#;
    let (status, body) = http_request(
        relay.addr,
        "PUT",
        &format!("/api/docs/{doc}/ipynb"),
        Some(&admin),
        bad.as_bytes(),
    )
    .await;
    assert_eq!(status, 400, "{body}");
    assert!(body.contains("$.cells[0]"), "{body}");
    let (status, body) =
        http_request(relay.addr, "POST", "/api/docs", Some(&admin), b"{not json").await;
    assert_eq!(status, 400, "{body}");

    // A live import reaches a connected peer as an edit.
    let peer = connect(&relay.ws_url(&doc, &relay.token(&doc, Role::Read)))
        .await
        .unwrap();
    let replacement = NOTEBOOK.replace("\"c1\"", "\"c2\"");
    let (status, _) = http_request(
        relay.addr,
        "PUT",
        &format!("/api/docs/{doc}/ipynb"),
        Some(&admin),
        replacement.as_bytes(),
    )
    .await;
    assert_eq!(status, 204);
    eventually(
        "the import reaches the peer",
        Duration::from_secs(5),
        || async { peer.notebook().cell_ids() == ["c2"] },
    )
    .await;

    // A minted share token works for its document only, with its role.
    let (status, body) = http_request(
        relay.addr,
        "POST",
        &format!("/api/docs/{doc}/tokens"),
        Some(&admin),
        br#"{"role": "read", "expires_in": 60, "name": "guest"}"#,
    )
    .await;
    assert_eq!(status, 201, "{body}");
    let minted: serde_json::Value = serde_json::from_str(&body).unwrap();
    let token = minted["token"].as_str().unwrap();
    assert!(minted["page"].as_str().unwrap().contains(token));
    connect(&relay.ws_url(&doc, token))
        .await
        .expect("the share token opens the document");
    let (status, _) = http_request(
        relay.addr,
        "PUT",
        &format!("/api/docs/{doc}/ipynb"),
        Some(token),
        NOTEBOOK.as_bytes(),
    )
    .await;
    assert_eq!(status, 403, "a read token cannot import");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serves_the_pages_cross_origin_isolated_and_metrics() {
    let web = tempfile::tempdir().unwrap();
    std::fs::write(
        web.path().join("index.html"),
        "<!doctype html><title>inloop</title>",
    )
    .unwrap();
    std::fs::write(
        web.path().join("notebook.html"),
        "<!doctype html><title>a notebook</title>",
    )
    .unwrap();
    let web_dir = web.path().to_owned();
    let relay = TestRelay::with_config(|config| config.web_dir = Some(web_dir)).await;
    let (status, head, body) = http_exchange(relay.addr, "GET", "/", None, b"").await;
    assert_eq!(status, 200);
    assert!(body.contains("<title>inloop</title>"));
    let (status, _, body) = http_exchange(relay.addr, "GET", "/n/any-doc-id", None, b"").await;
    assert_eq!(status, 200);
    assert!(body.contains("<title>a notebook</title>"), "{body}");
    // SharedArrayBuffer (Pyodide interrupts) needs both.
    assert!(
        head.contains("cross-origin-opener-policy: same-origin"),
        "{head}"
    );
    assert!(
        head.contains("cross-origin-embedder-policy: require-corp"),
        "{head}"
    );

    let (status, head, metrics) = http_exchange(relay.addr, "GET", "/metrics", None, b"").await;
    assert_eq!(status, 200);
    assert!(head.contains("text/plain"));
    for name in [
        "inloop_connections",
        "inloop_documents_loaded",
        "inloop_lease_holders",
        "inloop_updates_in_total",
        "inloop_updates_out_total",
        "inloop_bytes_in_total",
        "inloop_bytes_out_total",
        "inloop_persist_seconds_bucket",
    ] {
        assert!(
            metrics.contains(&format!("\n{name}")),
            "{name} missing:\n{metrics}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_document_over_its_size_limit_refuses_the_change_that_would_pass_it() {
    let relay = TestRelay::with_limits(inloop_relay::Limits {
        max_document_bytes: 64 << 10,
        ..inloop_relay::Limits::default()
    })
    .await;
    let doc = relay.create_doc().await;
    let url = relay.ws_url(&doc, &relay.token(&doc, Role::Edit));
    let writer = connect(&url).await.unwrap();
    let watcher = connect(&url).await.unwrap();
    let checkpoint = relay.checkpoint(&watcher).await;
    writer
        .notebook()
        .insert_cell(1, inloop_doc::CellType::Markdown, &"x".repeat(100 << 10))
        .unwrap();
    let (code, reason) = crate::ended(&writer).await;
    assert_eq!(code, Some(4413), "{reason}");
    assert!(reason.contains("limit"), "{reason}");
    // Judged before it was applied: nothing stored, nothing forwarded.
    relay
        .assert_nothing_since(checkpoint, &doc, &watcher, "the oversized change")
        .await;
}
