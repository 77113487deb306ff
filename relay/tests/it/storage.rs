//! What the relay keeps in memory and on disk: idle documents unload, logs fold into snapshots.

use std::time::Duration;

use inloop_doc::CellType;
use inloop_relay::Limits;
use inloop_relay::store::{SqliteStore, Store};
use inloop_sync::Role;

use crate::{TestRelay, connect, eventually};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idle_document_unloads_and_comes_back_on_demand() {
    let relay = TestRelay::with_limits(Limits {
        idle_unload: Duration::from_millis(200),
        ..Limits::default()
    })
    .await;
    let doc = relay.create_doc().await;
    let url = relay.ws_url(&doc, &relay.token(&doc, Role::Edit));
    let peer = connect(&url).await.unwrap();
    peer.notebook()
        .insert_cell(1, CellType::Markdown, "still here")
        .unwrap();
    eventually("the edit is stored", Duration::from_secs(5), || async {
        relay.metric("inloop_updates_in_total").await == 1
    })
    .await;
    assert_eq!(relay.metric("inloop_documents_loaded").await, 1);
    drop(peer);
    eventually(
        "the idle document unloads",
        Duration::from_secs(5),
        || async { relay.metric("inloop_documents_loaded").await == 0 },
    )
    .await;

    let back = connect(&url).await.unwrap();
    assert_eq!(back.notebook().cell_count(), 2, "reloaded from storage");
    assert_eq!(relay.metric("inloop_documents_loaded").await, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_log_folds_into_a_snapshot() {
    let relay = TestRelay::with_limits(Limits {
        compact_after_updates: 10,
        ..Limits::default()
    })
    .await;
    let doc = relay.create_doc().await;
    let url = relay.ws_url(&doc, &relay.token(&doc, Role::Edit));
    let peer = connect(&url).await.unwrap();
    for i in 0..25 {
        peer.notebook()
            .insert_cell(i + 1, CellType::Markdown, &format!("cell {i}"))
            .unwrap();
        // One update per batch, so the count of log entries is predictable.
        let stored = i as u64 + 1;
        eventually("the edit is stored", Duration::from_secs(5), || async {
            relay.metric("inloop_updates_in_total").await == stored
        })
        .await;
    }
    let expected = peer.notebook().to_ipynb();
    drop(peer);
    let data = relay.stop().await;

    let mut store = SqliteStore::open(&data.path().join("inloop.sqlite3")).unwrap();
    let stored = store.load(&doc).unwrap().unwrap();
    assert!(stored.snapshot.is_some(), "a snapshot was written");
    assert!(
        stored.updates.len() < 10,
        "the log was folded: {} entries left",
        stored.updates.len()
    );
    let notebook = stored.notebook().unwrap();
    assert_eq!(
        notebook.to_ipynb(),
        expected,
        "snapshot plus log is the whole document"
    );
}
