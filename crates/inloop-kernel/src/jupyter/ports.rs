//! Free ports for kernels that this process starts at the same moment.
//!
//! A kernel is told its ports before it binds them (the Jupyter way), so two kernels started
//! together could be told the same free port, and the second to bind would die. As
//! jupyter_client's `LocalPortCache` does, ports handed out recently are not handed out again
//! by this process. (Another process can still take a port in the window; a kernel that dies
//! while starting is started again by its callers.)

use std::collections::VecDeque;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// How long a port handed to a kernel stays reserved: its kernel has bound it well before.
const RESERVED_FOR: Duration = Duration::from_secs(60);

/// Ports handed out, oldest first, with when.
#[derive(Debug, Default)]
struct Reservations(VecDeque<(Instant, u16)>);

impl Reservations {
    /// Adds to `chosen` the `candidates` not reserved (nor chosen already), up to `count`; once
    /// there are `count`, reserves them all and says so.
    fn choose(
        &mut self,
        chosen: &mut Vec<u16>,
        candidates: &[u16],
        count: usize,
        now: Instant,
    ) -> bool {
        while self
            .0
            .front()
            .is_some_and(|(at, _)| now - *at > RESERVED_FOR)
        {
            self.0.pop_front();
        }
        for port in candidates {
            let taken = chosen.contains(port) || self.0.iter().any(|(_, p)| p == port);
            if chosen.len() < count && !taken {
                chosen.push(*port);
            }
        }
        if chosen.len() < count {
            return false;
        }
        self.0.extend(chosen.iter().map(|port| (now, *port)));
        true
    }
}

static RESERVED: Mutex<Reservations> = Mutex::new(Reservations(VecDeque::new()));

/// `count` free ports on `ip`, none of them handed out by this process in the last minute.
pub(super) async fn free_ports(ip: IpAddr, count: usize) -> std::io::Result<Vec<u16>> {
    let mut chosen = Vec::with_capacity(count);
    // Bounded: the system hands out ports at random among tens of thousands.
    for _ in 0..64 {
        let candidates = jupyter_zmq_client::peek_ports(ip, count)
            .await
            .map_err(std::io::Error::other)?;
        let mut reserved = RESERVED.lock().unwrap_or_else(|e| e.into_inner());
        if reserved.choose(&mut chosen, &candidates, count, Instant::now()) {
            return Ok(chosen);
        }
    }
    Err(std::io::Error::other("no free ports found for the kernel"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_port_handed_out_is_not_handed_out_again_for_a_minute() {
        let mut reserved = Reservations::default();
        let start = Instant::now();
        let mut first = Vec::new();
        assert!(reserved.choose(&mut first, &[10, 11, 12], 3, start));
        assert_eq!(first, [10, 11, 12]);

        // The system offers 11 again (it was free once its listener closed): skipped.
        let mut second = Vec::new();
        assert!(!reserved.choose(&mut second, &[11, 13, 13], 3, start));
        assert!(reserved.choose(&mut second, &[12, 14, 15], 3, start));
        assert_eq!(second, [13, 14, 15]);

        let later = start + RESERVED_FOR + Duration::from_secs(1);
        let mut third = Vec::new();
        assert!(reserved.choose(&mut third, &[10, 11, 12], 3, later));
        assert_eq!(third, [10, 11, 12]);
    }

    #[tokio::test]
    async fn free_ports_are_distinct_and_bindable() {
        let ip = IpAddr::from([127, 0, 0, 1]);
        let ports = free_ports(ip, 5).await.unwrap();
        let again = free_ports(ip, 5).await.unwrap();
        assert!(
            ports.iter().all(|p| !again.contains(p)),
            "{ports:?} {again:?}"
        );
        for port in ports {
            std::net::TcpListener::bind((ip, port)).unwrap();
        }
    }
}
