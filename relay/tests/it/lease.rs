use std::time::{Duration, Instant};

use inloop_relay::Limits;
use inloop_sync::{LeaseMessage, Role};

use crate::{Client, TestRelay, connect, eventually, until_some};

const TTL: Duration = Duration::from_millis(1_000);
const GRACE: Duration = Duration::from_millis(500);

fn request(session: &str) -> LeaseMessage {
    LeaseMessage::Request {
        session: session.into(),
    }
}

/// A runtime peer on `url` that asked for the lease as `session` and was granted it: the peer
/// and the epoch.
async fn granted(url: &str, session: &str) -> (Client, u64) {
    let peer = connect(url).await.unwrap();
    peer.send_lease(request(session));
    let epoch = until_some(
        &format!("{session} granted the lease"),
        Duration::from_secs(5),
        || granted_epoch(&peer),
    )
    .await;
    (peer, epoch)
}

fn granted_epoch(peer: &Client) -> Option<u64> {
    peer.lease_events().iter().rev().find_map(|m| match m {
        LeaseMessage::Granted { epoch, .. } => Some(*epoch),
        _ => None,
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_runtime_holds_the_lease_and_a_standby_takes_over_when_it_dies() {
    let relay = TestRelay::with_limits(Limits {
        lease_ttl: TTL,
        lease_grace: GRACE,
        ..Limits::default()
    })
    .await;
    let doc = relay.create_doc().await;
    let url = relay.ws_url(&doc, &relay.token(&doc, Role::Runtime));
    let first = connect(&url).await.unwrap();
    let second = connect(&url).await.unwrap();
    first.send_lease(request("runtime-1"));
    second.send_lease(request("runtime-2"));
    eventually(
        "both runtimes hear back",
        Duration::from_secs(5),
        || async { !first.lease_events().is_empty() && !second.lease_events().is_empty() },
    )
    .await;

    // Exactly one holds it; the other waits.
    let (holder, standby) = match (granted_epoch(&first), granted_epoch(&second)) {
        (Some(_), None) => (first, second),
        (None, Some(_)) => (second, first),
        other => panic!("exactly one runtime must hold the lease, got {other:?}"),
    };
    let epoch = granted_epoch(&holder).unwrap();
    assert_eq!(
        standby.lease_events(),
        vec![LeaseMessage::Standby { epoch }]
    );

    // Heartbeats keep it past its time to live. A control on another document, granted after
    // it and silent, loses its lease to its standby: by then the holder's would have lapsed
    // too, had its heartbeats not counted.
    let control_doc = relay.create_doc().await;
    let control_url = relay.ws_url(&control_doc, &relay.token(&control_doc, Role::Runtime));
    let (control, _) = granted(&control_url, "control").await;
    let control_standby = connect(&control_url).await.unwrap();
    control_standby.send_lease(request("control-standby"));
    let silent_since = Instant::now();
    while granted_epoch(&control_standby).is_none() {
        assert!(
            silent_since.elapsed() < TTL * 5,
            "the control's standby took over within {:?}",
            TTL * 5
        );
        holder.send_lease(LeaseMessage::Heartbeat);
        tokio::time::sleep(TTL / 10).await;
    }
    assert!(
        silent_since.elapsed() >= TTL - Duration::from_millis(100),
        "the silent control lost its lease after {:?}, its time to live is {TTL:?}",
        silent_since.elapsed()
    );
    eventually(
        "the control told it lost its lease",
        Duration::from_secs(5),
        || async {
            matches!(
                control.lease_events().last(),
                Some(LeaseMessage::Lost { .. })
            )
        },
    )
    .await;
    assert_eq!(
        granted_epoch(&standby),
        None,
        "no takeover while the holder heartbeats"
    );
    assert!(
        !holder
            .lease_events()
            .iter()
            .any(|m| matches!(m, LeaseMessage::Lost { .. })),
        "the holder kept its lease: {:?}",
        holder.lease_events()
    );

    // The holder dies without a word: the standby gets the lease after the grace period.
    let killed = Instant::now();
    drop(holder);
    eventually(
        "the standby takes over",
        GRACE + Duration::from_secs(5),
        || async { granted_epoch(&standby).is_some() },
    )
    .await;
    let took = killed.elapsed();
    assert_eq!(
        granted_epoch(&standby),
        Some(epoch + 1),
        "the epoch grows with each holder"
    );
    assert!(
        took >= GRACE,
        "taken over after {took:?}, before the grace period ended"
    );

    // A third runtime queues; a release hands it over, with the next epoch.
    let third = connect(&url).await.unwrap();
    third.send_lease(request("runtime-3"));
    eventually(
        "the third runtime is told to wait",
        Duration::from_secs(5),
        || async { third.lease_events() == vec![LeaseMessage::Standby { epoch: epoch + 1 }] },
    )
    .await;
    standby.send_lease(LeaseMessage::Release);
    eventually("the release hands over", Duration::from_secs(5), || async {
        granted_epoch(&third) == Some(epoch + 2)
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_holder_that_reconnects_within_the_grace_period_keeps_its_epoch() {
    let relay = TestRelay::with_limits(Limits {
        lease_ttl: TTL,
        lease_grace: Duration::from_secs(5),
        ..Limits::default()
    })
    .await;
    let doc = relay.create_doc().await;
    let url = relay.ws_url(&doc, &relay.token(&doc, Role::Runtime));
    let (holder, epoch) = granted(&url, "runtime-1").await;
    drop(holder);

    let (_back, again) = granted(&url, "runtime-1").await;
    assert_eq!(again, epoch);
}
