//! Integration tests of the `inloop` binary: the real process, killed and restarted. Peers,
//! waits and the venv come from `inloop-testing`.

mod attacks;
mod durability;
mod mcp;
mod mcp_root;
mod run;
mod runtime;
mod token;

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Child, Command, Stdio};

pub(crate) use inloop_testing::kernel::venv;
pub(crate) use inloop_testing::{until, until_ok, until_some};

/// A fixed signing key, so tokens minted by the test hold across restarts.
pub(crate) const SECRET: &str = "durability-test-secret-0123456789abcdef";

/// A token for every document with `role`, signed with the relay's key.
pub(crate) fn token(role: inloop_sync::Role) -> String {
    let key = inloop_sync::TokenKey::new(SECRET.as_bytes()).unwrap();
    key.sign(&inloop_sync::Claims {
        id: None,
        doc: None,
        role,
        exp: u64::MAX / 4,
        name: None,
    })
}

/// `inloop serve` running as a child process.
#[derive(Debug)]
pub(crate) struct Serve {
    child: Child,
    pub(crate) addr: SocketAddr,
}

impl Serve {
    /// Starts `inloop serve` on `addr` (port 0: any) with its data in `data`, starting no
    /// local runtime (tests start the runtimes they want).
    pub(crate) fn start(data: &Path, addr: SocketAddr) -> Self {
        Self::start_with(data, addr, &["--no-runtime"])
    }

    /// [`Serve::start`] with more flags.
    pub(crate) fn start_with(data: &Path, addr: SocketAddr, flags: &[&str]) -> Self {
        let mut child = Command::new(env!("CARGO_BIN_EXE_inloop"))
            .args(["serve", "--addr", &addr.to_string(), "--data"])
            .arg(data)
            .args(flags)
            .env("INLOOP_SECRET", SECRET)
            .stdout(Stdio::piped())
            // A group of its own, so that dropping it also stops the local runtimes it started
            // (they would otherwise outlive the test, holding its output pipes open).
            .process_group(0)
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
        let group = format!("-{}", self.child.id());
        let _ = Command::new("kill").args(["-KILL", "--", &group]).status();
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A peer of `doc` on the relay at `addr` with a token of `role`, synced.
pub(crate) async fn peer(
    addr: SocketAddr,
    doc: &str,
    role: inloop_sync::Role,
) -> inloop_client::Client {
    let url = inloop_testing::ws_url(addr, doc, &token(role));
    inloop_testing::connect(&url)
        .await
        .unwrap_or_else(|refusal| panic!("a {role} peer of {doc}: {refusal}"))
}

/// `inloop runtime` running as a child process, with the repository venv's kernels.
#[derive(Debug)]
pub(crate) struct RuntimeProcess {
    child: Child,
}

impl RuntimeProcess {
    pub(crate) fn start(relay: SocketAddr, doc: &str, token: &str, name: &str) -> Self {
        let child = Command::new(env!("CARGO_BIN_EXE_inloop"))
            .args(["runtime", "--relay", &format!("ws://{relay}"), "--doc", doc])
            .args(["--token", token, "--name", name, "--kernel-prefix"])
            .arg(venv())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("inloop runtime starts");
        Self { child }
    }

    /// SIGKILL: its kernel is left behind (in its own process group) and must not matter.
    pub(crate) fn kill(mut self) {
        self.child.kill().expect("SIGKILL");
        self.child.wait().expect("reaped");
    }
}

impl Drop for RuntimeProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
