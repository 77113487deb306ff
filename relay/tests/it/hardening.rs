//! Hostile HTTP clients and bad input (issue 14, section 3): slowloris and idle connections
//! time out, one address cannot take every connection, dead WebSocket peers are dropped by
//! pings, document ids have one grammar on every route, and `/readyz` tells when storage
//! cannot write. Each test also checks that everyone else goes on being served, nothing lost.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering::SeqCst};
use std::time::Duration;

use inloop_doc::CellType;
use inloop_relay::Limits;
use inloop_relay::store::{Append, DocSummary, MemoryStore, Store, StoredDoc, TokenRecord};
use inloop_sync::Role;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};
use tokio::time::Instant;

use crate::{TestRelay, connect, eventually, http_exchange, http_request};

/// Two fresh peers on `doc` sync an edit that is stored and exported, and `/healthz` answers:
/// the relay serves everyone else.
async fn still_serves(relay: &TestRelay, doc: &str, text: &str) {
    let url = relay.ws_url(doc, &relay.token(doc, Role::Edit));
    let writer = connect(&url).await.expect("the relay accepts a peer");
    let reader = connect(&url).await.expect("the relay accepts a peer");
    writer
        .notebook()
        .insert_cell(0, CellType::Markdown, text)
        .unwrap();
    eventually(
        "an edit reaches another peer",
        Duration::from_secs(10),
        || async {
            let notebook = reader.notebook();
            notebook
                .cell_ids()
                .iter()
                .any(|id| notebook.source(id).unwrap() == text)
        },
    )
    .await;
    assert!(
        writer.wait_stored(Duration::from_secs(10)).await,
        "the edit is stored"
    );
    let (status, body) = http_request(relay.addr, "GET", "/healthz", None, b"").await;
    assert_eq!((status, body.as_str()), (200, "ok"));
    let (status, ipynb) = http_request(
        relay.addr,
        "GET",
        &format!("/api/docs/{doc}/ipynb"),
        Some(&relay.admin_token),
        b"",
    )
    .await;
    assert_eq!(status, 200, "{ipynb}");
    assert!(ipynb.contains(text), "the export holds the edit: {ipynb}");
}

/// A TCP connection to `addr` from the local address `from` (any of 127.0.0.0/8 works).
async fn connect_from(from: Ipv4Addr, addr: SocketAddr) -> TcpStream {
    let socket = TcpSocket::new_v4().unwrap();
    socket.bind(SocketAddr::new(IpAddr::V4(from), 0)).unwrap();
    socket.connect(addr).await.expect("connect")
}

/// One HTTP/1.1 response read from a kept-alive connection: status and body (by
/// Content-Length); `None` if the connection ended first.
async fn read_response(tcp: &mut TcpStream) -> Option<(u16, String)> {
    let mut received = Vec::new();
    let mut buf = [0; 4096];
    let head_end = loop {
        if let Some(end) = received.windows(4).position(|w| w == b"\r\n\r\n") {
            break end + 4;
        }
        match tcp.read(&mut buf).await {
            Ok(0) | Err(_) => return None,
            Ok(n) => received.extend_from_slice(&buf[..n]),
        }
    };
    let head = String::from_utf8_lossy(&received[..head_end]).to_lowercase();
    let status = head.split_whitespace().nth(1)?.parse().ok()?;
    let length: usize = head
        .lines()
        .find_map(|line| line.strip_prefix("content-length:"))
        .map_or(0, |v| v.trim().parse().unwrap());
    while received.len() < head_end + length {
        match tcp.read(&mut buf).await {
            Ok(0) | Err(_) => return None,
            Ok(n) => received.extend_from_slice(&buf[..n]),
        }
    }
    let body = String::from_utf8_lossy(&received[head_end..head_end + length]).into_owned();
    Some((status, body))
}

/// Reads until the relay closes the connection (end of stream or reset): what it sent.
async fn read_to_close(tcp: &mut TcpStream) -> Vec<u8> {
    let mut received = Vec::new();
    let mut buf = [0; 4096];
    loop {
        match tcp.read(&mut buf).await {
            Ok(0) | Err(_) => return received,
            Ok(n) => received.extend_from_slice(&buf[..n]),
        }
    }
}

/// [`read_to_close`], failing if the relay keeps the connection open past `limit`.
async fn closed_within(tcp: &mut TcpStream, limit: Duration) -> Vec<u8> {
    tokio::time::timeout(limit, read_to_close(tcp))
        .await
        .unwrap_or_else(|_| panic!("the relay kept the connection open for {limit:?}"))
}

/// A slowloris client: opens a connection and sends a request head one byte a second, never
/// finishing it. Returns how long the relay took to close the connection.
async fn slowloris(addr: SocketAddr) -> Duration {
    let started = Instant::now();
    let mut tcp = TcpStream::connect(addr).await.expect("connect");
    let head = format!(
        "GET /healthz HTTP/1.1\r\nHost: {addr}\r\nX-Padding: {}\r\n",
        "a".repeat(100)
    );
    let (mut read, mut write) = tcp.split();
    let mut ticks = tokio::time::interval(Duration::from_secs(1));
    let mut buf = [0; 1024];
    for byte in head.as_bytes().chunks(1) {
        tokio::select! {
            read = read.read(&mut buf) => match read {
                Ok(0) | Err(_) => return started.elapsed(),
                Ok(_) => panic!("the relay answered a request it never got whole"),
            },
            _ = ticks.tick() => {
                if write.write_all(byte).await.is_err() {
                    return started.elapsed();
                }
            }
        }
    }
    panic!(
        "the head was sent whole ({} s) and the connection is still open",
        head.len()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slowloris_of_200_sockets_is_closed_within_the_header_timeout_while_others_are_served() {
    let timeout = Duration::from_secs(4);
    let relay = TestRelay::with_limits(Limits {
        header_read_timeout: timeout,
        ..Limits::default()
    })
    .await;
    let doc = relay.create_doc().await;
    let url = relay.ws_url(&doc, &relay.token(&doc, Role::Edit));
    let before = connect(&url).await.unwrap();

    let started = Instant::now();
    let attackers: Vec<_> = (0..200)
        .map(|_| tokio::spawn(slowloris(relay.addr)))
        .collect();
    eventually(
        "the relay holds the 200 slow connections",
        Duration::from_secs(5),
        || async { relay.metric("inloop_tcp_connections").await >= 200 },
    )
    .await;

    // Meanwhile: HTTP answered, a peer connected before and new ones sync and store an edit.
    still_serves(&relay, &doc, "served during the slowloris").await;
    assert!(
        attackers.iter().all(|attacker| !attacker.is_finished()),
        "the others were served while every slow socket was open ({:?} in)",
        started.elapsed()
    );
    eventually(
        "the earlier peer has it",
        Duration::from_secs(5),
        || async { crate::source(&before, 0) == "served during the slowloris" },
    )
    .await;

    let mut closed_after = Vec::new();
    for attacker in attackers {
        let closed = tokio::time::timeout(timeout * 3, attacker)
            .await
            .expect("the relay closes a slow socket");
        closed_after.push(closed.unwrap());
    }
    let slowest = closed_after.iter().max().unwrap();
    let fastest = closed_after.iter().min().unwrap();
    assert!(
        *slowest < timeout + Duration::from_secs(2),
        "every slow socket was closed within the header timeout ({timeout:?}); the slowest after {slowest:?}"
    );
    assert!(
        *fastest >= timeout - Duration::from_millis(500),
        "closed by the header timeout, not before ({fastest:?})"
    );
    assert!(relay.metric("inloop_http_timeouts_total").await >= 200);
    still_serves(&relay, &doc, "served after the slowloris").await;
    assert_eq!(crate::source(&before, 0), "served after the slowloris");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_and_silent_connections_are_closed_and_kept_alive_ones_still_serve() {
    let header = Duration::from_millis(1500);
    let idle = Duration::from_millis(3000);
    let relay = TestRelay::with_limits(Limits {
        header_read_timeout: header,
        http_idle_timeout: idle,
        ..Limits::default()
    })
    .await;
    let doc = relay.create_doc().await;
    let request = format!("GET /healthz HTTP/1.1\r\nHost: {}\r\n\r\n", relay.addr);

    // A connection that never sends a byte: closed by the header timeout.
    let mut silent = TcpStream::connect(relay.addr).await.unwrap();
    let opened = Instant::now();
    assert!(closed_within(&mut silent, header * 3).await.is_empty());
    let silent_for = opened.elapsed();
    assert!(
        silent_for >= header - Duration::from_millis(300)
            && silent_for < header + Duration::from_secs(2),
        "closed after {silent_for:?}"
    );

    // A kept-alive connection: a second request after a pause longer than the header timeout
    // (the idle time between requests is not head time) is answered on the same connection.
    // The pause lasts until a silent connection opened at its start has been closed by the
    // header timeout: as the relay measures it, longer than the header timeout.
    let mut kept = TcpStream::connect(relay.addr).await.unwrap();
    kept.write_all(request.as_bytes()).await.unwrap();
    assert_eq!(read_response(&mut kept).await, Some((200, "ok".to_owned())));
    let timeouts = relay.metric("inloop_http_timeouts_total").await;
    let mut witness = TcpStream::connect(relay.addr).await.unwrap();
    assert!(closed_within(&mut witness, header * 3).await.is_empty());
    assert_eq!(
        relay.metric("inloop_http_timeouts_total").await,
        timeouts + 1,
        "the silent connection timed out, and only it"
    );
    kept.write_all(request.as_bytes()).await.unwrap();
    assert_eq!(
        read_response(&mut kept).await,
        Some((200, "ok".to_owned())),
        "kept alive through a pause within the idle timeout"
    );
    // Then idle: closed after the idle timeout.
    let answered = Instant::now();
    assert!(closed_within(&mut kept, idle * 3).await.is_empty());
    let idle_for = answered.elapsed();
    assert!(
        idle_for >= idle - Duration::from_millis(300) && idle_for < idle + Duration::from_secs(2),
        "an idle kept-alive connection closed after {idle_for:?}"
    );

    // A kept-alive connection whose next head trickles in: its clock starts at its first byte.
    let mut trickle = TcpStream::connect(relay.addr).await.unwrap();
    trickle.write_all(request.as_bytes()).await.unwrap();
    assert_eq!(
        read_response(&mut trickle).await,
        Some((200, "ok".to_owned()))
    );
    let first_byte = Instant::now();
    let closed = async {
        for byte in request.as_bytes().chunks(1) {
            if trickle.write_all(byte).await.is_err() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(300)).await;
        }
        read_to_close(&mut trickle).await
    };
    let got = tokio::time::timeout(Duration::from_secs(10), closed)
        .await
        .expect("the trickling connection is closed");
    assert!(got.is_empty(), "no answer to a head that never finished");
    let trickled_for = first_byte.elapsed();
    assert!(
        trickled_for < header + Duration::from_secs(2),
        "closed {trickled_for:?} after the head's first byte"
    );

    assert!(relay.metric("inloop_http_timeouts_total").await >= 3);
    still_serves(&relay, &doc, "still here").await;
}

/// `method path` from `from`, with `Connection: close`: the status and body, or `None` if the
/// connection ended without an answer.
async fn request_from(
    from: Ipv4Addr,
    addr: SocketAddr,
    method: &str,
    path: &str,
) -> Option<(u16, String)> {
    let mut tcp = connect_from(from, addr).await;
    let request = format!("{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
    tcp.write_all(request.as_bytes()).await.ok()?;
    read_response(&mut tcp).await
}

/// A metric read from a second loopback address (the first may be at its limit).
async fn metric_from(from: Ipv4Addr, addr: SocketAddr, name: &str) -> u64 {
    let (_, metrics) = request_from(from, addr, "GET", "/metrics").await.unwrap();
    metrics
        .lines()
        .find_map(|line| line.strip_prefix(&format!("{name} ")))
        .and_then(|value| value.parse().ok())
        .unwrap_or_else(|| panic!("{name} in\n{metrics}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_address_holds_at_most_its_limit_of_connections_and_others_are_served() {
    const LOCAL: Ipv4Addr = Ipv4Addr::new(127, 0, 0, 1);
    const OTHER: Ipv4Addr = Ipv4Addr::new(127, 0, 0, 2);
    let relay = TestRelay::with_limits(Limits {
        max_connections_per_ip: 4,
        ..Limits::default()
    })
    .await;
    let doc = relay.create_doc().await;
    let url = relay.ws_url(&doc, &relay.token(&doc, Role::Edit));
    // Four connections from 127.0.0.1: two WebSocket peers and two idle sockets.
    let writer = connect(&url).await.unwrap();
    let reader = connect(&url).await.unwrap();
    let idle = TcpStream::connect(relay.addr).await.unwrap();
    let _idle_too = TcpStream::connect(relay.addr).await.unwrap();
    eventually(
        "the relay holds the four (and the metrics request)",
        Duration::from_secs(5),
        || async { metric_from(OTHER, relay.addr, "inloop_tcp_connections").await == 5 },
    )
    .await;

    // A fifth from the same address is refused at once, with the reason when it can be read.
    match request_from(LOCAL, relay.addr, "GET", "/healthz").await {
        None => {}
        Some((status, body)) => {
            assert_eq!(status, 429, "{body}");
            let body: serde_json::Value = serde_json::from_str(&body).unwrap();
            assert!(
                body["error"]
                    .as_str()
                    .unwrap()
                    .contains("too many connections"),
                "{body}"
            );
        }
    }
    let handshake = format!("/api/docs/{doc}/ws?token={}", relay.token(&doc, Role::Read));
    assert!(
        matches!(
            request_from(LOCAL, relay.addr, "GET", &handshake).await,
            None | Some((429, _))
        ),
        "a fifth WebSocket peer is refused too"
    );
    assert_eq!(
        metric_from(OTHER, relay.addr, "inloop_tcp_refused_total").await,
        2
    );

    // Another address is served, and the peers already connected go on syncing.
    assert_eq!(
        request_from(OTHER, relay.addr, "GET", "/healthz").await,
        Some((200, "ok".to_owned()))
    );
    writer
        .notebook()
        .insert_cell(0, CellType::Markdown, "at the limit")
        .unwrap();
    eventually(
        "the edit reaches the reader",
        Duration::from_secs(5),
        || async { crate::source(&reader, 0) == "at the limit" },
    )
    .await;
    assert!(writer.wait_stored(Duration::from_secs(5)).await);

    // A connection closed frees its place.
    drop(idle);
    eventually(
        "127.0.0.1 is served again",
        Duration::from_secs(5),
        || async {
            request_from(LOCAL, relay.addr, "GET", "/healthz").await == Some((200, "ok".into()))
        },
    )
    .await;
}

/// Opens a WebSocket to `path` by hand and then never reads nor writes again, as a peer whose
/// machine vanished (a half-open connection: no pong will ever come).
async fn dead_websocket_peer(addr: SocketAddr, path: &str) -> TcpStream {
    let mut tcp = TcpStream::connect(addr).await.unwrap();
    let request = format!(
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
    );
    tcp.write_all(request.as_bytes()).await.unwrap();
    let mut head = Vec::new();
    while !head.ends_with(b"\r\n\r\n") {
        let mut byte = [0];
        tcp.read_exact(&mut byte).await.unwrap();
        head.push(byte[0]);
    }
    let head = String::from_utf8_lossy(&head);
    assert!(head.starts_with("HTTP/1.1 101"), "{head}");
    tcp
}

/// The opcodes of the (unmasked) frames a server sent, and the close code if one closed.
fn server_frames(mut bytes: &[u8]) -> (Vec<u8>, Option<u16>) {
    let mut opcodes = Vec::new();
    let mut close = None;
    while bytes.len() >= 2 {
        let opcode = bytes[0] & 0x0f;
        let (length, header) = match bytes[1] & 0x7f {
            126 if bytes.len() >= 4 => (u16::from_be_bytes([bytes[2], bytes[3]]) as usize, 4),
            127 if bytes.len() >= 10 => (
                u64::from_be_bytes(bytes[2..10].try_into().unwrap()) as usize,
                10,
            ),
            n @ 0..=125 => (n as usize, 2),
            _ => break,
        };
        let Some(payload) = bytes.get(header..header + length) else {
            break;
        };
        if opcode == 8 && payload.len() >= 2 {
            close = Some(u16::from_be_bytes([payload[0], payload[1]]));
        }
        opcodes.push(opcode);
        bytes = &bytes[header + length..];
    }
    (opcodes, close)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_peer_that_answers_no_ping_is_dropped_and_one_that_does_stays() {
    let interval = Duration::from_millis(200);
    let relay = TestRelay::with_limits(Limits {
        ping_interval: interval,
        max_missed_pongs: 2,
        ..Limits::default()
    })
    .await;
    let doc = relay.create_doc().await;
    let url = relay.ws_url(&doc, &relay.token(&doc, Role::Edit));
    let alive = connect(&url).await.unwrap();
    let token = relay.token(&doc, Role::Read);
    let mut dead =
        dead_websocket_peer(relay.addr, &format!("/api/docs/{doc}/ws?token={token}")).await;
    let joined = Instant::now();
    eventually("both peers count", Duration::from_secs(5), || async {
        relay.metric("inloop_connections").await == 2
    })
    .await;

    eventually(
        "the relay drops the silent peer",
        Duration::from_secs(10),
        || async { relay.metric("inloop_disconnects_unresponsive_total").await == 1 },
    )
    .await;
    let dropped_after = joined.elapsed();
    assert!(
        dropped_after >= interval * 3 - Duration::from_millis(50),
        "only after missing two pings ({dropped_after:?})"
    );
    assert!(
        dropped_after < interval * 3 + Duration::from_secs(2),
        "within three ping intervals ({dropped_after:?})"
    );
    // What it would have read: the sync, two pings, and a close saying why.
    let sent = tokio::time::timeout(Duration::from_secs(10), read_to_close(&mut dead))
        .await
        .expect("the relay closed the dead peer's socket");
    let (opcodes, close) = server_frames(&sent);
    assert_eq!(
        opcodes.iter().filter(|&&op| op == 9).count(),
        2,
        "{opcodes:?}"
    );
    assert_eq!(close, Some(1001), "{opcodes:?}");
    eventually("one connection left", Duration::from_secs(5), || async {
        relay.metric("inloop_connections").await == 1
    })
    .await;

    // The peer that answers pings stayed through many of them, and still syncs.
    assert!(joined.elapsed() > interval * 5);
    assert!(
        matches!(alive.status(), crate::Status::Synced),
        "{:?}",
        alive.status()
    );
    let other = connect(&url).await.unwrap();
    other
        .notebook()
        .insert_cell(0, CellType::Markdown, "pinged")
        .unwrap();
    eventually(
        "the edit reaches the live peer",
        Duration::from_secs(5),
        || async { crate::source(&alive, 0) == "pinged" },
    )
    .await;
    // Four more pings each to the two live peers (two would have dropped one that answers
    // none), counted by the relay as it sends them.
    let pings = relay.metric("inloop_pings_total").await;
    eventually(
        "eight more pings sent",
        interval * 4 + Duration::from_secs(10),
        || async { relay.metric("inloop_pings_total").await >= pings + 8 },
    )
    .await;
    assert_eq!(
        relay.metric("inloop_disconnects_unresponsive_total").await,
        1
    );
    assert_eq!(relay.metric("inloop_connections").await, 2);
    still_serves(&relay, &doc, "after the dead peer").await;
}

/// Bad document ids as they go in a URL path segment, raw or percent-encoded.
const BAD_IDS: [&str; 14] = [
    "..",
    "..%2F..%2Fetc%2Fpasswd",
    "%2e%2e%2f%2e%2e%2fetc%2fpasswd",
    "%2E%2E",
    "a.b",
    "a%22b",
    "a%22%3B%20x%3D%22y",
    "a%00b",
    "%00",
    "a%0d%0aSet-Cookie:%20stolen=1",
    "a%20b",
    "%C3%A9t%C3%A9",
    "%ff%fe",
    "xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx",
];

/// The error message of a JSON refusal.
fn json_error(body: &str) -> String {
    let value: serde_json::Value =
        serde_json::from_str(body).unwrap_or_else(|_| panic!("a JSON refusal: {body:?}"));
    value["error"]
        .as_str()
        .unwrap_or_else(|| panic!("an error message: {body}"))
        .to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_document_ids_are_refused_on_every_route_before_anything_else() {
    let web = tempfile::tempdir().unwrap();
    std::fs::write(web.path().join("index.html"), "<title>inloop</title>").unwrap();
    std::fs::write(
        web.path().join("notebook.html"),
        "<title>a notebook</title>",
    )
    .unwrap();
    let web_dir = web.path().to_owned();
    let relay = TestRelay::with_config(|config| config.web_dir = Some(web_dir)).await;
    let doc = relay.create_doc().await;
    let admin = relay.admin_token.clone();
    let notebook = r#"{"cells": [], "metadata": {}, "nbformat": 4, "nbformat_minor": 5}"#;
    let assert_65_is_bad = BAD_IDS[13].len();
    assert_eq!(assert_65_is_bad, 65);

    for id in BAD_IDS {
        for (method, path, body) in [
            ("GET", format!("/api/docs/{id}/ipynb"), &b""[..]),
            ("PUT", format!("/api/docs/{id}/ipynb"), notebook.as_bytes()),
            (
                "POST",
                format!("/api/docs/{id}/tokens"),
                br#"{"role": "read"}"#,
            ),
            ("GET", format!("/api/docs/{id}/ws"), b""),
            ("GET", format!("/n/{id}"), b""),
        ] {
            // With the admin token, and with none: the id is refused before the token.
            for token in [Some(admin.as_str()), None] {
                let (status, head, body) =
                    http_exchange(relay.addr, method, &path, token, body).await;
                assert_eq!(status, 400, "{method} {path}: {head}{body}");
                assert!(
                    json_error(&body).contains("bad document id"),
                    "{method} {path}: {body}"
                );
                assert!(head.contains("content-type: application/json"), "{head}");
                assert!(!head.contains("set-cookie"), "{method} {path}: {head}");
                assert!(
                    !head.contains("content-disposition"),
                    "{method} {path}: {head}"
                );
            }
        }
        // A WebSocket handshake is refused the way a browser can hear: closed at once, 4400.
        let url = format!("ws://{}/api/docs/{id}/ws?token={admin}", relay.addr);
        let refusal = connect(&url).await.expect_err(id);
        assert!(
            refusal.starts_with("4400: bad document id"),
            "{id}: {refusal}"
        );
    }

    // A valid id that names no document: found nowhere, created by no HTTP request.
    let unknown = "no-such_doc-1";
    for (method, body) in [("GET", &b""[..]), ("PUT", notebook.as_bytes())] {
        let (status, body) = http_request(
            relay.addr,
            method,
            &format!("/api/docs/{unknown}/ipynb"),
            Some(&admin),
            body,
        )
        .await;
        assert_eq!(status, 404, "{method}: {body}");
        assert!(json_error(&body).contains("no document"), "{body}");
    }
    // An empty id is a bad id too.
    let (status, body) =
        http_request(relay.addr, "GET", "/api/docs//ipynb", Some(&admin), b"").await;
    assert_eq!(status, 400, "{body}");
    assert!(json_error(&body).contains("bad document id"), "{body}");

    // Nothing was created: the one document made by POST is all there is.
    let (status, list) = http_request(relay.addr, "GET", "/api/docs", Some(&admin), b"").await;
    assert_eq!(status, 200);
    let ids: Vec<String> = serde_json::from_str::<Vec<serde_json::Value>>(&list)
        .unwrap()
        .iter()
        .map(|d| d["id"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(ids, vec![doc.clone()]);

    // Good ids still work everywhere, and an admin's WebSocket join still creates.
    let (status, _, page) = http_exchange(relay.addr, "GET", &format!("/n/{doc}"), None, b"").await;
    assert_eq!((status, page.contains("a notebook")), (200, true));
    let (status, head, _) = http_exchange(
        relay.addr,
        "GET",
        &format!("/api/docs/{doc}/ipynb"),
        Some(&admin),
        b"",
    )
    .await;
    assert_eq!(status, 200);
    assert!(
        head.contains(&format!(
            "content-disposition: attachment; filename=\"{doc}.ipynb\""
        )),
        "{head}"
    );
    let made = "made-by_joining";
    connect(&relay.ws_url(made, &admin))
        .await
        .expect("an admin's join creates the document");
    let (_, list) = http_request(relay.addr, "GET", "/api/docs", Some(&admin), b"").await;
    assert!(list.contains(made), "{list}");
    still_serves(&relay, &doc, "ids checked").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_refusal_is_json() {
    let relay = TestRelay::start().await;
    let doc = relay.create_doc().await;
    let admin = relay.admin_token.clone();
    for (method, path, token, body, status) in [
        ("GET", "/api/docs".to_owned(), None, &b""[..], 401),
        (
            "GET",
            format!("/api/docs/{doc}/ipynb"),
            Some("il1.forged"),
            b"",
            401,
        ),
        (
            "PUT",
            format!("/api/docs/{doc}/ipynb"),
            Some(admin.as_str()),
            b"{not json",
            400,
        ),
        (
            "POST",
            format!("/api/docs/{doc}/tokens"),
            Some(admin.as_str()),
            b"{not json",
            400,
        ),
        (
            "GET",
            format!("/api/docs/{doc}/ws"),
            Some(admin.as_str()),
            b"",
            400,
        ),
        (
            "DELETE",
            format!("/api/docs/{doc}/ipynb"),
            Some(admin.as_str()),
            b"",
            405,
        ),
        ("GET", "/api/nothing-here".to_owned(), None, b"", 404),
    ] {
        let (got, head, body) = http_exchange(relay.addr, method, &path, token, body).await;
        assert_eq!(got, status, "{method} {path}: {body}");
        assert!(
            head.contains("content-type: application/json"),
            "{method} {path}: {head}"
        );
        assert!(!json_error(&body).is_empty());
    }
}

/// A store whose writes fail while `broken` is set (a full or read-only disk), counting probes.
#[derive(Debug, Default)]
struct FailingStore {
    inner: MemoryStore,
    broken: Arc<AtomicBool>,
    probes: Arc<AtomicUsize>,
}

impl FailingStore {
    fn writable(&self) -> inloop_relay::Result<()> {
        if self.broken.load(SeqCst) {
            return Err(std::io::Error::other("no space left on device (a test)").into());
        }
        Ok(())
    }
}

impl Store for FailingStore {
    fn create(&mut self, doc_id: &str, created_at: u64) -> inloop_relay::Result<bool> {
        self.writable()?;
        self.inner.create(doc_id, created_at)
    }

    fn load(&mut self, doc_id: &str) -> inloop_relay::Result<Option<StoredDoc>> {
        self.inner.load(doc_id)
    }

    fn append(&mut self, appends: &[Append]) -> inloop_relay::Result<()> {
        self.writable()?;
        self.inner.append(appends)
    }

    fn compact(
        &mut self,
        doc_id: &str,
        snapshot: &[u8],
        compacted_updates: usize,
    ) -> inloop_relay::Result<()> {
        self.writable()?;
        self.inner.compact(doc_id, snapshot, compacted_updates)
    }

    fn list(&mut self) -> inloop_relay::Result<Vec<DocSummary>> {
        self.inner.list()
    }

    fn record_token(&mut self, token: &TokenRecord) -> inloop_relay::Result<()> {
        self.writable()?;
        self.inner.record_token(token)
    }

    fn live_tokens(&mut self, doc_id: &str, now: u64) -> inloop_relay::Result<Vec<TokenRecord>> {
        self.inner.live_tokens(doc_id, now)
    }

    fn revoke_token(&mut self, doc_id: &str, id: &str, now: u64) -> inloop_relay::Result<bool> {
        self.writable()?;
        self.inner.revoke_token(doc_id, id, now)
    }

    fn revoked_tokens(&mut self, now: u64) -> inloop_relay::Result<Vec<String>> {
        self.inner.revoked_tokens(now)
    }

    fn probe(&mut self) -> inloop_relay::Result<()> {
        self.probes.fetch_add(1, SeqCst);
        self.writable()
    }
}

async fn get(relay: &TestRelay, path: &str) -> (u16, String) {
    http_request(relay.addr, "GET", path, None, b"").await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readyz_fails_while_storage_cannot_write_and_healthz_stays_ok() {
    // The real store answers the probe.
    let sqlite = TestRelay::start().await;
    assert_eq!(get(&sqlite, "/readyz").await, (200, "ok".into()));
    let (_, list) = http_request(
        sqlite.addr,
        "GET",
        "/api/docs",
        Some(&sqlite.admin_token),
        b"",
    )
    .await;
    assert_eq!(list, "[]", "the probe's row is no document");

    let store = FailingStore::default();
    let broken = store.broken.clone();
    let probes = store.probes.clone();
    let relay = TestRelay::over_store(Box::new(store)).await;
    let doc = relay.create_doc().await;
    assert_eq!(get(&relay, "/readyz").await, (200, "ok".into()));
    let url = relay.ws_url(&doc, &relay.token(&doc, Role::Edit));
    let writer = connect(&url).await.unwrap();
    let reader = connect(&url).await.unwrap();

    broken.store(true, SeqCst);
    eventually("/readyz says not ready", Duration::from_secs(5), || async {
        get(&relay, "/readyz").await.0 == 503
    })
    .await;
    let (status, body) = get(&relay, "/readyz").await;
    assert_eq!(status, 503);
    assert!(json_error(&body).contains("storage cannot write"), "{body}");
    assert!(
        !body.contains("no space left"),
        "internal error text stays in the log: {body}"
    );
    assert_eq!(get(&relay, "/healthz").await, (200, "ok".into()));

    // A flood of probes costs at most about one storage write a second.
    let before = probes.load(SeqCst);
    let started = Instant::now();
    let flood: Vec<_> = (0..100)
        .map(|_| {
            let addr = relay.addr;
            tokio::spawn(async move { http_request(addr, "GET", "/readyz", None, b"").await.0 })
        })
        .collect();
    for answer in flood {
        assert_eq!(answer.await.unwrap(), 503);
    }
    let seconds = started.elapsed().as_secs() as usize;
    let ran = probes.load(SeqCst) - before;
    assert!(ran <= seconds + 2, "{ran} probes in {seconds} s");

    // Storage back: ready again, and the peers sync and store edits.
    broken.store(false, SeqCst);
    eventually(
        "/readyz says ready again",
        Duration::from_secs(5),
        || async { get(&relay, "/readyz").await == (200, "ok".into()) },
    )
    .await;
    writer
        .notebook()
        .insert_cell(0, CellType::Markdown, "stored again")
        .unwrap();
    eventually(
        "the edit reaches the reader",
        Duration::from_secs(5),
        || async { crate::source(&reader, 0) == "stored again" },
    )
    .await;
    assert!(writer.wait_stored(Duration::from_secs(5)).await);
}
