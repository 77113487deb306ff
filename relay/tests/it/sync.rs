use std::time::Duration;

use inloop_sync::Role;
use serde_json::json;

use inloop_testing::YjsPeer;

use crate::{ClientOptions, TestRelay, connect, connect_with, eventually, source, until};

const EDITS: usize = 40;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn native_and_stock_yjs_clients_converge_and_see_each_others_presence() {
    let relay = TestRelay::start().await;
    let doc = relay.create_doc().await;
    let token = relay.token(&doc, Role::Edit);
    let a = connect(&relay.ws_url(&doc, &token)).await.unwrap();
    let b = connect(&relay.ws_url(&doc, &token)).await.unwrap();
    let mut yjs = YjsPeer::spawn(relay.addr, &doc, &token, "yjs");
    yjs.wait_for("sync", |e| e["event"] == "synced").await;

    a.set_presence(r#"{"user":"a"}"#);
    b.set_presence(r#"{"user":"b"}"#);
    yjs.send(json!({"cmd": "set_awareness", "state": {"user": "yjs"}}))
        .await;

    // All three type into the one cell at once, at the start, middle and end.
    let cell = a.notebook().cell_ids()[0].clone();
    for i in 0..EDITS {
        for (peer, mark) in [(&a, "a"), (&b, "b")] {
            let len = source(peer, 0).encode_utf16().count() as u32;
            let at = [0, len / 2, len][i % 3];
            let delta = [
                inloop_doc::TextDelta::Retain(at),
                inloop_doc::TextDelta::Insert(mark.into()),
            ];
            peer.notebook().edit_source(&cell, &delta).unwrap();
        }
        yjs.send(json!({"cmd": "insert_text", "cell": 0, "at": i, "text": "y"}))
            .await;
        if i % 10 == 0 {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }

    let expected_len = 3 * EDITS;
    eventually(
        "all three sources equal",
        Duration::from_secs(15),
        || async { source(&a, 0).len() == expected_len && source(&b, 0) == source(&a, 0) },
    )
    .await;
    let converged = source(&a, 0);
    yjs.wait_for_state(&format!("the source {converged:?}"), |state| {
        state["cells"][0]["source"] == converged
    })
    .await;
    for mark in ['a', 'b', 'y'] {
        assert_eq!(
            source(&a, 0).matches(mark).count(),
            EDITS,
            "every {mark} arrived"
        );
    }

    // Presence: each native peer sees the two others; the Yjs peer sees both native ones.
    eventually(
        "native peers see each other's presence",
        Duration::from_secs(10),
        || async { a.presence().len() == 2 && b.presence().len() == 2 },
    )
    .await;
    assert!(
        a.presence().iter().any(|p| p.contains("yjs")),
        "{:?}",
        a.presence()
    );
    assert!(
        b.presence().iter().any(|p| p.contains("\"a\"")),
        "{:?}",
        b.presence()
    );
    yjs.wait_for_awareness("presence of a and b", |states| {
        let states = states.to_string();
        states.contains("\"a\"") && states.contains("\"b\"")
    })
    .await;
    yjs.quit().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn offline_edits_merge_on_reconnect() {
    let relay = TestRelay::start().await;
    let doc = relay.create_doc().await;
    let token = relay.token(&doc, Role::Edit);
    let url = relay.ws_url(&doc, &token);
    let a = connect(&url).await.unwrap();
    let notebook = a.notebook().clone();
    drop(a);

    // Edited while disconnected, then reconnected: the relay gets what it lacked.
    notebook
        .insert_cell(1, inloop_doc::CellType::Markdown, "written offline")
        .unwrap();
    let _reconnected = connect_with(&url, notebook.clone(), ClientOptions::new())
        .await
        .unwrap();
    let other = connect(&url).await.unwrap();
    eventually(
        "the offline cell reaches another peer",
        Duration::from_secs(5),
        || async { other.notebook().cell_count() == 2 },
    )
    .await;
    assert_eq!(source(&other, 1), "written offline");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutting_down_tells_peers_to_reconnect_and_keeps_every_update() {
    let relay = TestRelay::start().await;
    let doc = relay.create_doc().await;
    let url = relay.ws_url(&doc, &relay.token(&doc, Role::Edit));
    let peer = connect(&url).await.unwrap();
    peer.notebook()
        .insert_cell(1, inloop_doc::CellType::Markdown, "kept")
        .unwrap();
    eventually("the edit is stored", Duration::from_secs(5), || async {
        relay.metric("inloop_updates_in_total").await == 1
    })
    .await;
    let data = relay.stop().await;
    let (code, reason) = crate::ended(&peer).await;
    assert_eq!(
        code,
        Some(1001),
        "going away, so clients reconnect: {reason}"
    );

    // The same data folder, a new relay: the edit is there.
    let store =
        inloop_relay::store::SqliteStore::open(&data.path().join("inloop.sqlite3")).unwrap();
    let mut store: Box<dyn inloop_relay::store::Store> = Box::new(store);
    let notebook = store.load(&doc).unwrap().unwrap().notebook().unwrap();
    assert_eq!(notebook.cell_count(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unacknowledged_changes_count_down_once_the_relay_has_stored_them() {
    let relay = TestRelay::start().await;
    let doc = relay.create_doc().await;
    let token = relay.token(&doc, Role::Edit);
    let peer = connect(&relay.ws_url(&doc, &token)).await.unwrap();
    for i in 0..20 {
        peer.notebook()
            .insert_cell(1, inloop_doc::CellType::Markdown, &format!("online {i}"))
            .unwrap();
    }
    eventually(
        "every change acknowledged",
        Duration::from_secs(5),
        || async { peer.unacknowledged() == 0 },
    )
    .await;
    // A peer that asks for acknowledgements is told the relay's limits too.
    let limits = peer.relay_limits().expect("the relay told its limits");
    let defaults = inloop_relay::Limits::default();
    assert_eq!(
        limits.max_document_bytes,
        defaults.max_document_bytes as u64
    );
    assert_eq!(limits.max_message_bytes, defaults.max_message_bytes as u64);

    // The relay goes away: changes made meanwhile stay counted until a relay has them, through
    // the client's failed attempts to reconnect (each followed by a wait in which it takes
    // local changes off its queue).
    let addr = relay.addr;
    let data = relay.stop().await;
    crate::ended(&peer).await;
    let attempts = peer.connection_attempts();
    for i in 0..5 {
        peer.notebook()
            .insert_cell(1, inloop_doc::CellType::Markdown, &format!("offline {i}"))
            .unwrap();
    }
    until(
        "two more attempts to reconnect",
        Duration::from_secs(10),
        || peer.connection_attempts() >= attempts + 2,
    )
    .await;
    assert!(
        matches!(
            peer.status(),
            crate::Status::Offline { .. } | crate::Status::Connecting
        ),
        "{:?}",
        peer.status()
    );
    assert_eq!(peer.unacknowledged(), 5);

    let relay = TestRelay::resume(addr, data).await;
    eventually(
        "the offline changes acknowledged",
        Duration::from_secs(15),
        || async { peer.unacknowledged() == 0 },
    )
    .await;
    let reader = connect(&relay.ws_url(&doc, &token)).await.unwrap();
    assert_eq!(reader.notebook().cell_count(), 26);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_peer_offline_for_more_than_a_message_syncs_in_chunks() {
    let limits = inloop_relay::Limits {
        max_message_bytes: 64 << 10,
        max_document_bytes: 8 << 20,
        ..inloop_relay::Limits::default()
    };
    let relay = TestRelay::with_limits(limits.clone()).await;
    let doc = relay.create_doc().await;
    let url = relay.ws_url(&doc, &relay.token(&doc, Role::Edit));
    let writer = connect(&url).await.unwrap();
    eventually("the relay's limits", Duration::from_secs(5), || async {
        writer.relay_limits().is_some()
    })
    .await;

    // The relay goes away; the peer writes four messages' worth meanwhile (a runtime's
    // outputs, say), which one sync step 2 could not carry.
    let addr = relay.addr;
    let data = relay.stop().await;
    let text: String = (0..80_000).map(|i| format!("{i:x}")).collect();
    assert!(text.len() > 4 * limits.max_message_bytes);
    writer
        .notebook()
        .push_cell(inloop_doc::CellType::Code, &text)
        .unwrap();
    let relay = TestRelay::resume_with_limits(addr, data, limits).await;
    eventually(
        "the relay stores what was written offline",
        Duration::from_secs(20),
        || async { writer.unacknowledged() == 0 && writer.status() == crate::Status::Synced },
    )
    .await;

    // A peer joining gets the document, larger than a message, in chunks.
    let reader = connect(&url).await.unwrap();
    assert_eq!(source(&reader, 1), text);
    assert_eq!(writer.status(), crate::Status::Synced);
    drop(relay);
}
