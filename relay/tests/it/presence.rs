//! Presence floods: a read-link peer sending huge or endless presence is cut with the reason,
//! and everyone else goes on being served and sees a bounded amount of it.

use std::time::Duration;

use inloop_sync::Role;
use inloop_sync::wire::Message;

use crate::{TestRelay, connect, ended, eventually};

fn presence(client: u64, clock: u32, json: String) -> Vec<u8> {
    Message::presence(client, clock, &json).encode()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn presence_floods_cut_the_sender_only() {
    let relay = TestRelay::start().await;
    let limits = inloop_relay::Limits::default();
    let doc = relay.create_doc().await;
    let owner = connect(&relay.ws_url(&doc, &relay.admin_token))
        .await
        .unwrap();
    let watcher = connect(&relay.ws_url(&doc, &relay.token(&doc, Role::Read)))
        .await
        .unwrap();
    let cell = owner.notebook().cell_ids()[0].clone();

    // One state over the size limit.
    let big = connect(&relay.ws_url(&doc, &relay.token(&doc, Role::Read)))
        .await
        .unwrap();
    let huge = format!(r#"{{"name":"{}"}}"#, "x".repeat(limits.max_presence_bytes));
    big.send_raw(presence(1, 1, huge));
    let (code, reason) = ended(&big).await;
    assert_eq!(code, Some(4413), "{reason}");

    // Many states under the limit, as fast as the socket goes: 10 MB offered.
    let flood = connect(&relay.ws_url(&doc, &relay.token(&doc, Role::Read)))
        .await
        .unwrap();
    let state = format!(
        r#"{{"name":"{}"}}"#,
        "y".repeat(limits.max_presence_bytes - 20)
    );
    for clock in 1..=(10 << 20) / state.len() as u32 {
        flood.send_raw(presence(2, clock, state.clone()));
    }
    let (code, reason) = ended(&flood).await;
    assert_eq!(code, Some(4429), "{reason}");
    assert!(reason.contains("presence"), "{reason}");

    // The others are still served.
    owner.notebook().set_source(&cell, "still here").unwrap();
    eventually(
        "an edit reaches the watcher",
        Duration::from_secs(5),
        || async { watcher.notebook().source(&cell).unwrap() == "still here" },
    )
    .await;
    // What the flood got through is bounded by the burst, and it is gone with its sender.
    let relayed = relay.metric("inloop_bytes_out_total").await;
    assert!(
        relayed < limits.presence_bytes_per_second * 4 * 3 + (1 << 20),
        "{relayed} bytes went out"
    );
    eventually(
        "the flood's presence is removed",
        Duration::from_secs(5),
        || async { watcher.presence().iter().all(|p| !p.contains("yyyy")) },
    )
    .await;
}
