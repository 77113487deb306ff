use std::time::Duration;

use inloop_sync::{Claims, LeaseMessage, Role, TokenKey};

use crate::{Status, TestRelay, connect, eventually, http_request, until_some};

/// What each role may do, written out as the product promises it (not derived from the code).
/// Columns: read, edit, hold the lease, mint a token, import, export.
const TABLE: [(Role, [bool; 6]); 5] = [
    (Role::Read, [true, false, false, false, false, true]),
    (Role::Edit, [true, true, false, false, false, true]),
    (Role::Execute, [true, true, false, false, false, true]),
    (Role::Runtime, [true, true, true, false, false, true]),
    (Role::Admin, [true, true, false, true, true, true]),
];

const NOTEBOOK: &[u8] = br#"{"cells": [{"cell_type": "markdown", "id": "imported", "metadata": {}, "source": "imported"}], "metadata": {}, "nbformat": 4, "nbformat_minor": 5}"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_role_against_every_action() {
    let relay = TestRelay::start().await;
    for (role, expected) in TABLE {
        let doc = relay.create_doc().await;
        let token = relay.token(&doc, role);
        let url = relay.ws_url(&doc, &token);
        let watcher = connect(&relay.ws_url(&doc, &relay.admin_token))
            .await
            .unwrap();

        // read
        let peer = connect(&url).await.expect("every role may connect");
        let read = peer.notebook().cell_count() == 1;

        // edit: the change reaches another peer, or the relay closes the connection.
        let checkpoint = relay.checkpoint(&watcher).await;
        peer.notebook()
            .insert_cell(1, inloop_doc::CellType::Markdown, "edited")
            .unwrap();
        let refused = until_some(
            "the edit reaching the watcher, or the relay refusing it",
            Duration::from_secs(5),
            || match peer.status() {
                _ if watcher.notebook().cell_count() == 2 => Some(None),
                Status::Closed { code, reason } => Some(Some((code, reason))),
                _ => None,
            },
        )
        .await;
        let edited = refused.is_none();
        if let Some((code, reason)) = refused {
            assert_eq!(code, Some(4403), "{role}: {reason}");
            assert!(reason.contains("read-only"), "{role}: {reason}");
            // Judged before the close: nothing stored, nothing forwarded.
            relay
                .assert_nothing_since(checkpoint, &doc, &watcher, &format!("{role}'s edit"))
                .await;
        }

        // hold the lease
        let lease_peer = connect(&url).await.unwrap();
        lease_peer.send_lease(LeaseMessage::Request {
            session: format!("session-{role}"),
        });
        eventually("a lease answer", Duration::from_secs(5), || async {
            !lease_peer.lease_events().is_empty()
        })
        .await;
        let lease = matches!(lease_peer.lease_events()[0], LeaseMessage::Granted { .. });

        // mint, import, export over HTTP
        let mint = http_request(
            relay.addr,
            "POST",
            &format!("/api/docs/{doc}/tokens"),
            Some(&token),
            br#"{"role": "read"}"#,
        )
        .await;
        let import = http_request(
            relay.addr,
            "PUT",
            &format!("/api/docs/{doc}/ipynb"),
            Some(&token),
            NOTEBOOK,
        )
        .await;
        let export = http_request(
            relay.addr,
            "GET",
            &format!("/api/docs/{doc}/ipynb"),
            Some(&token),
            b"",
        )
        .await;
        let allowed = |(status, _): &(u16, String), ok: u16| {
            assert!(
                status == &ok || *status == 403,
                "{role}: unexpected status {status}"
            );
            *status == ok
        };
        let outcome = [
            read,
            edited,
            lease,
            allowed(&mint, 201),
            allowed(&import, 204),
            allowed(&export, 200),
        ];
        assert_eq!(
            outcome, expected,
            "{role}: read, edit, lease, mint, import, export"
        );
        if outcome[5] {
            let exported: serde_json::Value = serde_json::from_str(&export.1).unwrap();
            assert_eq!(exported["nbformat"], 4, "{role}: an export is a notebook");
        }
        if outcome[4] {
            eventually(
                "the import reaches a connected peer",
                Duration::from_secs(5),
                || async { watcher.notebook().cell_ids() == ["imported"] },
            )
            .await;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forged_expired_and_wrong_document_tokens_are_refused_at_the_handshake() {
    let relay = TestRelay::start().await;
    let doc = relay.create_doc().await;
    let other_doc = relay.create_doc().await;
    let claims = Claims {
        id: None,
        doc: Some(doc.clone()),
        role: Role::Admin,
        exp: u64::MAX / 2,
        name: None,
    };
    let forged = TokenKey::new(&[9; 32]).unwrap().sign(&claims);
    let expired = relay
        .state
        .mint(Some(&doc), Role::Edit, Duration::ZERO, None);
    let wrong_doc = relay.token(&other_doc, Role::Admin);
    let mut mangled = relay.token(&doc, Role::Edit);
    mangled.insert(10, 'x');
    for (what, token, status, message) in [
        ("forged", forged.as_str(), 401, "bad signature"),
        ("expired", expired.as_str(), 401, "expired"),
        (
            "for another document",
            wrong_doc.as_str(),
            403,
            "another document",
        ),
        ("mangled", mangled.as_str(), 401, "token"),
        ("garbage", "not-a-token", 401, "malformed"),
    ] {
        // Closed at once with 4400 + the HTTP status: browsers see no handshake status.
        let refusal = connect(&relay.ws_url(&doc, token)).await.expect_err(what);
        assert!(
            refusal.starts_with(&format!("{}: ", 4000 + status)),
            "{what}: {refusal}"
        );
        assert!(refusal.contains(message), "{what}: {refusal}");
        let (http_status, body) = http_request(
            relay.addr,
            "GET",
            &format!("/api/docs/{doc}/ipynb"),
            Some(token),
            b"",
        )
        .await;
        assert_eq!(http_status, status, "{what} over HTTP: {body}");
    }
    let no_token = connect(&format!("ws://{}/api/docs/{doc}/ws", relay.addr))
        .await
        .expect_err("no token");
    assert!(no_token.starts_with("4401: "), "{no_token}");
    // A valid token still works, and a missing document is a clear 404.
    connect(&relay.ws_url(&doc, &relay.token(&doc, Role::Read)))
        .await
        .expect("a valid token");
    let missing = relay.token("no-such-doc", Role::Edit);
    let refusal = connect(&relay.ws_url("no-such-doc", &missing))
        .await
        .unwrap_err();
    assert!(refusal.starts_with("4404: "), "{refusal}");
}

/// Every status a client goes through, recorded as it changes.
fn record_statuses(client: &crate::Client) -> std::sync::Arc<std::sync::Mutex<Vec<Status>>> {
    let seen = std::sync::Arc::new(std::sync::Mutex::new(vec![client.status()]));
    let mut changes = client.watch_status();
    let record = seen.clone();
    tokio::spawn(async move {
        while changes.changed().await.is_ok() {
            let status = changes.borrow_and_update().clone();
            record.lock().unwrap().push(status);
        }
    });
    seen
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_edit_token_cannot_queue_runs_and_only_the_sender_is_cut() {
    use inloop_doc::ExecutionTarget;
    let relay = TestRelay::start().await;
    let doc = relay.create_doc().await;
    let editor = connect(&relay.ws_url(&doc, &relay.token(&doc, Role::Edit)))
        .await
        .unwrap();
    let watcher = connect(&relay.ws_url(&doc, &relay.token(&doc, Role::Read)))
        .await
        .unwrap();
    let statuses = record_statuses(&watcher);
    let cell = editor.notebook().cell_ids()[0].clone();

    editor
        .notebook()
        .request_execution(&cell, &ExecutionTarget::Server, "editor", 1.0)
        .unwrap();
    let (code, reason) = crate::ended(&editor).await;
    assert_eq!(code, Some(4403), "{reason}");
    assert!(reason.contains("edit tokens may not run cells"), "{reason}");

    // Judged before it was applied: nobody else reconnects, nothing reached anyone.
    let fresh = connect(&relay.ws_url(&doc, &relay.admin_token))
        .await
        .unwrap();
    fresh.notebook().set_source(&cell, "after").unwrap();
    eventually(
        "a later edit reaches the watcher",
        Duration::from_secs(5),
        || async { watcher.notebook().source(&cell).unwrap() == "after" },
    )
    .await;
    assert!(watcher.notebook().executions().is_empty());
    assert!(fresh.notebook().executions().is_empty());
    let seen = statuses.lock().unwrap().clone();
    assert!(
        seen.iter()
            .all(|s| matches!(s, Status::Synced | Status::Syncing | Status::Connecting)),
        "the watcher stayed connected: {seen:?}"
    );

    // An execute token may.
    let runner = connect(&relay.ws_url(&doc, &relay.token(&doc, Role::Execute)))
        .await
        .unwrap();
    runner
        .notebook()
        .request_execution(&cell, &ExecutionTarget::Server, "runner", 2.0)
        .unwrap();
    eventually(
        "the run request reaches others",
        Duration::from_secs(5),
        || async { fresh.notebook().executions().len() == 1 },
    )
    .await;
}
