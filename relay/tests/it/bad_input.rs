//! Peers that misbehave are disconnected with a reason; everyone else carries on.

use std::time::Duration;

use inloop_doc::{CellType, Notebook};
use inloop_relay::Limits;
use inloop_sync::Role;

use crate::{
    Client, ClientOptions, TestRelay, connect, connect_with, ended, eventually, http_request,
};

/// A peer that stopped reading: connected with a fixed 16 KiB TCP receive buffer (the kernel
/// would otherwise grow it to tens of MB), then paused.
async fn stalled_peer(url: &str) -> Client {
    let small_buffer = ClientOptions {
        receive_buffer: Some(16 << 10),
        ..ClientOptions::new()
    };
    let slow = connect_with(url, Notebook::new(), small_buffer)
        .await
        .unwrap();
    slow.pause_reading();
    slow
}

/// Appends `count` markdown cells of `bytes` each, `gap` apart so the client sends each as its
/// own message (it merges what queues up).
async fn write_cells(writer: &Client, count: usize, bytes: usize, gap: Duration) {
    let chunk = "x".repeat(bytes);
    for i in 0..count {
        writer
            .notebook()
            .insert_cell(i as u32 + 1, CellType::Markdown, &chunk)
            .unwrap();
        tokio::time::sleep(gap).await;
    }
}

/// Something a peer sends that it should not.
type Misbehaviour = Box<dyn Fn(&Client)>;

/// Two healthy peers on `doc` still sync an edit, and the relay still answers HTTP.
async fn relay_still_serves(relay: &TestRelay, doc: &str, text: &str) {
    let url = relay.ws_url(doc, &relay.token(doc, Role::Edit));
    let writer = connect(&url).await.expect("the relay still accepts peers");
    let reader = connect(&url).await.unwrap();
    writer
        .notebook()
        .insert_cell(0, CellType::Markdown, text)
        .unwrap();
    eventually(
        "a healthy peer's edit reaches another",
        Duration::from_secs(5),
        || async {
            reader
                .notebook()
                .cell_ids()
                .iter()
                .any(|id| reader.notebook().source(id).unwrap() == text)
        },
    )
    .await;
    let (status, body) = http_request(relay.addr, "GET", "/healthz", None, b"").await;
    assert_eq!((status, body.as_str()), (200, "ok"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn garbage_truncated_oversized_text_and_flooding_peers_are_disconnected_with_a_reason() {
    let relay = TestRelay::with_limits(Limits {
        max_message_bytes: 64 << 10,
        max_messages_per_second: 50,
        ..Limits::default()
    })
    .await;
    let doc = relay.create_doc().await;
    let other_doc = relay.create_doc().await;
    let url = relay.ws_url(&doc, &relay.token(&doc, Role::Edit));

    // A valid update frame, to cut short.
    let source = Notebook::new();
    source.insert_cell(0, CellType::Code, "x = 1").unwrap();
    let update = inloop_sync::ClientSession::update_frame(&source.encode_update_v1());

    let mut fill = vec![0u8, 2];
    fill.extend(std::iter::repeat_n(7u8, 100 << 10));
    let cases: [(&str, Misbehaviour, u16, &str); 5] = [
        (
            "garbage",
            Box::new(|p: &Client| p.send_raw(vec![0xff, 0x13, 0x37, 0x00, 0x42])),
            4400,
            "malformed",
        ),
        (
            "an empty frame",
            Box::new(|p: &Client| p.send_raw(Vec::new())),
            4400,
            "malformed",
        ),
        (
            "a truncated update",
            Box::new(move |p: &Client| p.send_raw(update[..update.len() / 2].to_vec())),
            4400,
            "malformed",
        ),
        (
            "an oversized message",
            Box::new(move |p: &Client| p.send_raw(fill.clone())),
            1009,
            "too big",
        ),
        (
            "a flood",
            Box::new(|p: &Client| {
                for i in 0..500u32 {
                    let presence = format!(r#"{{"flood":{i}}}"#);
                    p.set_presence(&presence);
                }
            }),
            4429,
            "too many messages",
        ),
    ];
    for (what, send, code, reason) in cases {
        let bad = connect(&url).await.unwrap();
        send(&bad);
        let (got_code, got_reason) = ended(&bad).await;
        assert_eq!(got_code, Some(code), "{what}: {got_reason}");
        assert!(got_reason.contains(reason), "{what}: {got_reason}");
        relay_still_serves(&relay, &doc, &format!("after {what}")).await;
    }
    relay_still_serves(&relay, &other_doc, "the other document").await;
    assert_eq!(relay.metric("inloop_disconnects_protocol_total").await, 5);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_peer_that_stops_reading_is_disconnected_and_resyncs_with_no_gap() {
    const EDITS: usize = 400;
    let relay = TestRelay::with_limits(Limits {
        outgoing_queue: 64,
        max_messages_per_second: 100_000,
        ..Limits::default()
    })
    .await;
    let doc = relay.create_doc().await;
    let url = relay.ws_url(&doc, &relay.token(&doc, Role::Edit));
    let writer = connect(&url).await.unwrap();
    let reader = connect(&url).await.unwrap();
    let slow = stalled_peer(&url).await;

    // 16 KiB per edit, 6.5 MB in all: more than the relay's send buffer (4 MB at most here),
    // the stalled peer's 16 KiB and its 64-frame queue hold.
    write_cells(&writer, EDITS, 16 << 10, Duration::from_millis(1)).await;
    let expected = EDITS as u32 + 1;
    eventually(
        "the reading peer gets every update",
        Duration::from_secs(30),
        || async { reader.notebook().cell_count() == expected },
    )
    .await;
    eventually(
        "the stalled peer is disconnected",
        Duration::from_secs(10),
        || async { relay.metric("inloop_disconnects_slow_total").await == 1 },
    )
    .await;

    assert!(
        slow.notebook().cell_count() < expected,
        "the stalled peer could not have had it all"
    );

    // Once it reads again it learns it was dropped, reconnects, and converges with no gap.
    slow.resume_reading();
    let (code, reason) = ended(&slow).await;
    if let Some(code) = code {
        assert_eq!(code, 1013, "{reason}");
        assert!(reason.contains("too slow"), "{reason}");
    }
    eventually(
        "the stalled peer catches up",
        Duration::from_secs(30),
        || async { slow.notebook().cell_count() == expected },
    )
    .await;
    assert_eq!(slow.notebook().to_ipynb(), reader.notebook().to_ipynb());
    relay_still_serves(&relay, &doc, "after the slow peer").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_text_frame_is_refused_with_a_reason() {
    use futures_util::{SinkExt, StreamExt};
    use tokio_tungstenite::tungstenite::Message;
    let relay = TestRelay::start().await;
    let doc = relay.create_doc().await;
    let url = relay.ws_url(&doc, &relay.token(&doc, Role::Edit));
    let (mut socket, _) = tokio_tungstenite::connect_async(url.as_str())
        .await
        .unwrap();
    socket.send(Message::Text("hello".into())).await.unwrap();
    let close = loop {
        match socket.next().await {
            Some(Ok(Message::Close(frame))) => break frame.expect("a close frame with a reason"),
            Some(Ok(_)) => continue,
            other => panic!("expected a close frame, got {other:?}"),
        }
    };
    assert_eq!(u16::from(close.code), 4400);
    assert!(close.reason.contains("binary"), "{}", close.reason);
    relay_still_serves(&relay, &doc, "after a text frame").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stalled_peer_is_dropped_even_when_its_queue_never_fills() {
    let relay = TestRelay::with_limits(Limits {
        send_timeout: Duration::from_secs(1),
        max_messages_per_second: 100_000,
        ..Limits::default()
    })
    .await;
    let doc = relay.create_doc().await;
    let url = relay.ws_url(&doc, &relay.token(&doc, Role::Edit));
    let writer = connect(&url).await.unwrap();
    let slow = stalled_peer(&url).await;
    // Few, large messages: 24 of 512 KiB, far from the 4,096-frame queue, but more than the
    // socket buffers take.
    write_cells(&writer, 24, 512 << 10, Duration::from_millis(5)).await;
    eventually(
        "the stalled peer is dropped",
        Duration::from_secs(20),
        || async { relay.metric("inloop_disconnects_slow_total").await == 1 },
    )
    .await;
    slow.resume_reading();
    eventually(
        "it reconnects and catches up",
        Duration::from_secs(30),
        || async { slow.notebook().cell_count() == 25 },
    )
    .await;
}
