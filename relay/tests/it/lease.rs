use std::time::{Duration, Instant};

use inloop_relay::Limits;
use inloop_sync::{LeaseMessage, Role};

use crate::{Client, TestRelay, connect, eventually};

const TTL: Duration = Duration::from_millis(1_000);
const GRACE: Duration = Duration::from_millis(500);

fn request(session: &str) -> LeaseMessage {
    LeaseMessage::Request {
        session: session.into(),
    }
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
        Duration::from_secs(5),
        "both runtimes hear back",
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

    // Heartbeats keep it past its time to live.
    let started = Instant::now();
    while started.elapsed() < TTL * 2 {
        holder.send_lease(LeaseMessage::Heartbeat);
        tokio::time::sleep(TTL / 5).await;
    }
    assert_eq!(
        granted_epoch(&standby),
        None,
        "no takeover while the holder heartbeats"
    );

    // The holder dies without a word: the standby gets the lease after the grace period.
    let killed = Instant::now();
    drop(holder);
    eventually(
        GRACE + Duration::from_secs(5),
        "the standby takes over",
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
        Duration::from_secs(5),
        "the third runtime is told to wait",
        || async { third.lease_events() == vec![LeaseMessage::Standby { epoch: epoch + 1 }] },
    )
    .await;
    standby.send_lease(LeaseMessage::Release);
    eventually(Duration::from_secs(5), "the release hands over", || async {
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
    let holder = connect(&url).await.unwrap();
    holder.send_lease(request("runtime-1"));
    eventually(Duration::from_secs(5), "granted", || async {
        granted_epoch(&holder).is_some()
    })
    .await;
    let epoch = granted_epoch(&holder).unwrap();
    drop(holder);

    let back = connect(&url).await.unwrap();
    back.send_lease(request("runtime-1"));
    eventually(Duration::from_secs(5), "granted again", || async {
        granted_epoch(&back).is_some()
    })
    .await;
    assert_eq!(granted_epoch(&back), Some(epoch));
}
