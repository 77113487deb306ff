use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use inloop_doc::{Notebook, TextDelta};
use inloop_relay::store::{SqliteStore, Store};
use inloop_sync::Role;

use crate::{Serve, peer};

const ROUNDS: usize = 5;
const WRITERS: usize = 3;

/// The source of each writer's cell, by the cell's id (`writer-N`).
fn writer_cells(notebook: &Notebook) -> Vec<(String, String)> {
    (0..WRITERS)
        .map(|w| {
            let id = format!("writer-{w}");
            let source = notebook.source(&id).unwrap_or_default();
            (id, source)
        })
        .collect()
}

/// The document as the relay stored it (read while the relay is down).
fn stored(data: &std::path::Path, doc: &str) -> Notebook {
    let mut store = SqliteStore::open(&data.join("inloop.sqlite3")).unwrap();
    let stored = store.load(doc).unwrap().expect("the document is stored");
    stored.notebook().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn updates_clients_received_survive_sigkill_and_everyone_reconverges() {
    let data = tempfile::tempdir().unwrap();
    let mut relay = Serve::start(data.path(), SocketAddr::from(([127, 0, 0, 1], 0)));
    let addr = relay.addr;
    let doc = "durability";

    // An admin opening a new id creates it; each writer then gets a cell of its own.
    let mut clients = Vec::new();
    for _ in 0..WRITERS {
        clients.push(peer(addr, doc, Role::Admin).await);
    }
    for (w, client) in clients.iter().enumerate() {
        let cell = serde_json::json!({"cell_type": "code", "id": format!("writer-{w}"), "metadata": {}, "source": "", "outputs": [], "execution_count": null});
        client.notebook().insert_cell_from_json(0, cell).unwrap();
    }
    let clients = Arc::new(clients);

    for round in 0..ROUNDS {
        // Every writer appends to its own cell as fast as it can.
        let writing = Arc::new(AtomicBool::new(true));
        let writers: Vec<_> = (0..WRITERS)
            .map(|w| {
                let clients = clients.clone();
                let writing = writing.clone();
                tokio::spawn(async move {
                    let notebook = clients[w].notebook();
                    let id = format!("writer-{w}");
                    let mut written = 0;
                    while writing.load(Ordering::Relaxed) {
                        let len = notebook.source(&id).unwrap().encode_utf16().count() as u32;
                        let token = format!("{round}.{written} ");
                        notebook
                            .edit_source(&id, &[TextDelta::Retain(len), TextDelta::Insert(token)])
                            .unwrap();
                        written += 1;
                        tokio::time::sleep(Duration::from_millis(2)).await;
                    }
                    written
                })
            })
            .collect();
        tokio::time::sleep(Duration::from_millis(300)).await;

        relay.kill();
        // What each client had received from the relay when it died: the others' cells.
        let seen: Vec<Vec<(String, String)>> =
            clients.iter().map(|c| writer_cells(c.notebook())).collect();
        writing.store(false, Ordering::Relaxed);
        let mut total_written = 0;
        for writer in writers {
            total_written += writer.await.unwrap();
        }
        assert!(total_written > 0, "round {round}: the writers wrote");

        let on_disk = writer_cells(&stored(data.path(), doc));
        for (c, view) in seen.iter().enumerate() {
            for (w, (id, text)) in view.iter().enumerate() {
                if w == c {
                    continue; // its own edits it had not necessarily sent yet
                }
                assert!(
                    on_disk[w].1.starts_with(text.as_str()),
                    "round {round}: client {c} had received {} characters of {id} from the \
                     relay, but the relay stored only {}",
                    text.len(),
                    on_disk[w].1.len()
                );
            }
        }

        // Restarted on the same folder and address, every client reconnects and converges.
        relay = Serve::start(data.path(), addr);
        crate::until_ok(
            &format!("round {round}: the clients to reconverge after the restart"),
            Duration::from_secs(30),
            || {
                let views: Vec<String> = clients.iter().map(|c| c.notebook().to_ipynb()).collect();
                if views.windows(2).all(|pair| pair[0] == pair[1]) {
                    Ok(())
                } else {
                    Err(views.iter().map(String::len).collect::<Vec<_>>())
                }
            },
        )
        .await;
        // Nobody's own edits were lost either: each cell ends with its writer's last token.
        for (w, client) in clients.iter().enumerate() {
            let mine = writer_cells(client.notebook())[w].1.clone();
            let everyone = writer_cells(clients[(w + 1) % WRITERS].notebook())[w]
                .1
                .clone();
            assert_eq!(
                mine, everyone,
                "round {round}: writer {w}'s edits all arrived"
            );
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_closes_connections_and_exits_cleanly() {
    let data = tempfile::tempdir().unwrap();
    let relay = Serve::start(data.path(), SocketAddr::from(([127, 0, 0, 1], 0)));
    let client = peer(relay.addr, "term", Role::Admin).await;
    let mut watch = client.watch_status();

    let status = relay.terminate(Duration::from_secs(10));
    assert!(
        status.success(),
        "inloop serve exits 0 on SIGTERM: {status}"
    );
    let offline = watch.wait_for(|s| matches!(s, inloop_client::Status::Offline { .. }));
    let offline = tokio::time::timeout(Duration::from_secs(5), offline)
        .await
        .unwrap()
        .unwrap()
        .clone();
    assert_eq!(
        offline,
        inloop_client::Status::Offline {
            code: Some(1001),
            reason: "the relay is shutting down; reconnect".into()
        }
    );
}
