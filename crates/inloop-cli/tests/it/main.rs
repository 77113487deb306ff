//! Integration tests of the `inloop` binary: the real process, killed and restarted.

mod durability;

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::Path;
use std::process::{Child, Command, Stdio};

/// A fixed signing key, so tokens minted by the test hold across restarts.
pub(crate) const SECRET: &str = "durability-test-secret-0123456789abcdef";

/// `inloop serve` running as a child process.
#[derive(Debug)]
pub(crate) struct Serve {
    child: Child,
    pub(crate) addr: SocketAddr,
}

impl Serve {
    /// Starts `inloop serve` on `addr` (port 0: any) with its data in `data`.
    pub(crate) fn start(data: &Path, addr: SocketAddr) -> Self {
        let mut child = Command::new(env!("CARGO_BIN_EXE_inloop"))
            .args(["serve", "--addr", &addr.to_string(), "--data"])
            .arg(data)
            .env("INLOOP_SECRET", SECRET)
            .stdout(Stdio::piped())
            .spawn()
            .expect("inloop serve starts");
        let stdout = child.stdout.take().unwrap();
        let mut lines = BufReader::new(stdout).lines();
        let addr = loop {
            let line = lines
                .next()
                .expect("inloop serve prints where it listens")
                .unwrap();
            if let Some(rest) = line.strip_prefix("inloop relay listening on http://") {
                break rest.split_whitespace().next().unwrap().parse().unwrap();
            }
        };
        // Keep reading so the child never blocks on a full pipe.
        std::thread::spawn(move || for _ in lines {});
        Self { child, addr }
    }

    /// SIGKILL: no chance to flush or close anything.
    pub(crate) fn kill(mut self) {
        self.child.kill().expect("SIGKILL");
        self.child.wait().expect("reaped");
    }
}

impl Serve {
    /// SIGTERM, then waits for the process to exit (SIGKILL after `timeout`).
    pub(crate) fn terminate(mut self, timeout: std::time::Duration) -> std::process::ExitStatus {
        let pid = self.child.id().to_string();
        let sent = Command::new("kill").args(["-TERM", &pid]).status();
        assert!(sent.is_ok_and(|s| s.success()), "kill -TERM {pid}");
        let deadline = std::time::Instant::now() + timeout;
        loop {
            if let Some(status) = self.child.try_wait().expect("waiting for inloop serve") {
                return status;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "inloop serve did not exit within {timeout:?} of SIGTERM"
            );
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
    }
}

impl Drop for Serve {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
