//! Waits with a deadline on an observable condition.
//!
//! Every wait names what it waits for; a wait that times out panics with that name (and, for
//! [`until_ok`], the last reason the condition gave). A negative check ("the standby ran
//! nothing", "the refused edit went nowhere") is never a sleep followed by an assertion: wait for
//! the event after which the unwanted thing would have shown (the relay's counter moved, a later
//! update arrived behind it, the client tried to reconnect), then assert.

use std::fmt::Debug;
use std::future::Future;
use std::time::Duration;

/// How often a condition is looked at again.
const POLL: Duration = Duration::from_millis(10);

/// Polls `condition` until it gives `Ok`, which it returns; panics after `timeout` with `what`
/// and the last `Err` (say why it is not there yet: the state seen).
pub async fn until_ok<T, E: Debug>(
    what: &str,
    timeout: Duration,
    mut condition: impl FnMut() -> Result<T, E>,
) -> T {
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        let last = match condition() {
            Ok(value) => return value,
            Err(last) => last,
        };
        if tokio::time::Instant::now() >= deadline {
            panic!("timed out after {timeout:?} waiting for: {what} (last seen: {last:?})");
        }
        tokio::time::sleep(POLL).await;
    }
}

/// Polls `condition` until it holds; panics after `timeout` with `what`.
pub async fn until(what: &str, timeout: Duration, mut condition: impl FnMut() -> bool) {
    until_ok(
        what,
        timeout,
        || if condition() { Ok(()) } else { Err("no") },
    )
    .await
}

/// Polls `found` until it gives something, which it returns; panics after `timeout` with `what`.
pub async fn until_some<T>(
    what: &str,
    timeout: Duration,
    mut found: impl FnMut() -> Option<T>,
) -> T {
    until_ok(what, timeout, || found().ok_or("nothing")).await
}

/// [`until`] for a condition that must be awaited (an HTTP request, a child's answer).
pub async fn eventually<F, Fut>(what: &str, timeout: Duration, mut condition: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        if condition().await {
            return;
        }
        if tokio::time::Instant::now() >= deadline {
            panic!("timed out after {timeout:?} waiting for: {what}");
        }
        tokio::time::sleep(POLL).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_wait_returns_as_soon_as_its_condition_holds() {
        let mut polls = 0;
        let found = until_some("the third poll", Duration::from_secs(5), || {
            polls += 1;
            (polls == 3).then_some(polls)
        })
        .await;
        assert_eq!(found, 3);
    }

    #[tokio::test]
    #[should_panic(expected = "waiting for: a condition that never holds (last seen: 7)")]
    async fn a_wait_that_times_out_names_what_it_waited_for_and_what_it_saw() {
        until_ok::<(), _>(
            "a condition that never holds",
            Duration::from_millis(30),
            || Err(7),
        )
        .await;
    }

    #[tokio::test]
    #[should_panic(expected = "waiting for: an answer")]
    async fn an_async_wait_times_out_too() {
        eventually("an answer", Duration::from_millis(30), || async { false }).await;
    }
}
