//! Starting a server runtime on this machine when a document queues `server` runs and no
//! runtime holds its lease, so "run on server" works out of the box. The runtime is the
//! `inloop runtime` command, a peer like any other; it stops itself when idle.
//!
//! Its token never goes on its command line, which every user of the machine can read (`ps`,
//! /proc/PID/cmdline). Nor in its environment: its kernels inherit that, and a cell printing
//! `os.environ` would show the token to everyone who can read the notebook. It goes in a file
//! only this user can read (mode 0600, in a folder of mode 0700), named by `--token-file` and
//! removed once that runtime has exited.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, OnceLock};
use std::time::Duration;

use inloop_sync::{Claims, Role, TokenKey};
use tokio::process::{Child, Command};

/// How to start a local runtime: `program runtime --relay … --doc … --token-file … ARGS`.
#[derive(Debug, Clone)]
pub struct LocalRuntime {
    /// The `inloop` binary.
    pub program: PathBuf,
    /// Appended to the command (kernel prefixes, idle exit, …).
    pub args: Vec<String>,
}

/// The local runtimes started, one per document at most.
#[derive(Debug)]
pub(crate) struct LocalRuntimes {
    launcher: Option<LocalRuntime>,
    key: TokenKey,
    /// The relay's own address, known once it is bound.
    addr: OnceLock<SocketAddr>,
    started: Mutex<Started>,
}

/// The runtimes running, and where their tokens are.
#[derive(Debug, Default)]
struct Started {
    children: HashMap<String, Running>,
    /// Made for the first runtime started.
    tokens: Option<TokenDir>,
}

#[derive(Debug)]
struct Running {
    child: Child,
    token_file: PathBuf,
}

impl Running {
    fn has_exited(&mut self) -> bool {
        !matches!(self.child.try_wait(), Ok(None))
    }
}

impl Drop for Running {
    /// The runtime read its token when it started; the file is not needed once it is gone.
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.token_file);
    }
}

/// Variables of the relay's environment a runtime must not inherit: secrets (its kernels
/// would inherit them in turn), and a token other than its own (given twice, it would refuse).
const WITHHELD_VARIABLES: [&str; 4] = [
    "INLOOP_SECRET",
    "INLOOP_TOKEN",
    "INLOOP_TOKEN_FILE",
    "INLOOP_MCP_TOKEN",
];

/// A folder of the system's temporary one, of mode 0700, holding the token files of local
/// runtimes (mode 0600); removed with what is left in it when the relay stops.
#[derive(Debug)]
struct TokenDir {
    path: PathBuf,
    /// Files are numbered: a document id may hold characters a file name must not.
    next: u64,
}

impl TokenDir {
    fn create() -> crate::Result<Self> {
        let name: String = crate::random_bytes::<8>()?
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        let path = std::env::temp_dir().join(format!("inloop-runtime-tokens-{name}"));
        let mut builder = std::fs::DirBuilder::new();
        #[cfg(unix)]
        std::os::unix::fs::DirBuilderExt::mode(&mut builder, 0o700);
        // `create`, not `create_all`: a folder someone else made there first is not ours.
        builder.create(&path)?;
        Ok(Self { path, next: 0 })
    }

    /// A new file holding `token`, readable by this user only from its creation on.
    fn write(&mut self, token: &str) -> crate::Result<PathBuf> {
        self.next += 1;
        let path = self.path.join(format!("runtime-{}.token", self.next));
        crate::write_private(&path, token.as_bytes())?;
        Ok(path)
    }
}

impl Drop for TokenDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.path);
    }
}

/// How long a local runtime's token lasts; it is minted afresh for each start.
const TOKEN_LIFETIME: Duration = Duration::from_secs(7 * 24 * 3600);

impl LocalRuntimes {
    pub(crate) fn new(launcher: Option<LocalRuntime>, key: TokenKey) -> Self {
        Self {
            launcher,
            key,
            addr: OnceLock::new(),
            started: Mutex::new(Started::default()),
        }
    }

    pub(crate) fn set_addr(&self, addr: SocketAddr) {
        let _ = self.addr.set(addr);
    }

    /// Starts a runtime for `doc_id` unless one started here is still running. Returns false
    /// when it started none because one is running: it may be on its way out (idle), so the
    /// caller should ask again shortly if the need remains.
    pub(crate) fn ensure(&self, doc_id: &str) -> bool {
        let (Some(launcher), Some(addr)) = (&self.launcher, self.addr.get()) else {
            return true;
        };
        let mut started = self.started.lock().unwrap_or_else(|e| e.into_inner());
        // Those that exited are forgotten, and their token files removed.
        started.children.retain(|_, running| !running.has_exited());
        if started.children.contains_key(doc_id) {
            return false;
        }
        let token = self.key.sign(&Claims {
            id: Some(crate::new_token_id()),
            doc: Some(doc_id.to_owned()),
            role: Role::Runtime,
            exp: crate::unix_now() + TOKEN_LIFETIME.as_secs(),
            name: Some("local runtime".into()),
        });
        let token_file = match started.token_file(&token) {
            Ok(path) => path,
            Err(error) => {
                tracing::error!(doc_id, %error, "could not write a local runtime's token file");
                return true;
            }
        };
        match spawn(launcher, addr, doc_id, &token_file) {
            Ok(child) => {
                tracing::info!(doc_id, pid = child.id(), "started a local runtime");
                started
                    .children
                    .insert(doc_id.to_owned(), Running { child, token_file });
            }
            Err(error) => {
                let _ = std::fs::remove_file(&token_file);
                tracing::error!(doc_id, %error, program = %launcher.program.display(), "could not start a local runtime");
            }
        }
        true
    }

    /// Stops every runtime started here (the relay is shutting down).
    pub(crate) async fn stop_all(&self) {
        let running: Vec<Running> = self
            .started
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .children
            .drain()
            .map(|(_, running)| running)
            .collect();
        for mut running in running {
            let _ = running.child.kill().await;
        }
    }
}

impl Started {
    /// A new token file holding `token`, in the folder made on first use.
    fn token_file(&mut self, token: &str) -> crate::Result<PathBuf> {
        let dir = match &mut self.tokens {
            Some(dir) => dir,
            None => self.tokens.insert(TokenDir::create()?),
        };
        dir.write(token)
    }
}

/// `program runtime --relay ws://ADDR --doc DOC_ID --token-file FILE --name "local runtime"
/// ARGS`, with none of [`WITHHELD_VARIABLES`].
fn spawn(
    launcher: &LocalRuntime,
    addr: &SocketAddr,
    doc_id: &str,
    token_file: &Path,
) -> std::io::Result<Child> {
    let mut command = Command::new(&launcher.program);
    command
        .args([
            "runtime",
            "--relay",
            &format!("ws://{addr}"),
            "--doc",
            doc_id,
        ])
        .arg("--token-file")
        .arg(token_file)
        .args(["--name", "local runtime"])
        .args(&launcher.args)
        .kill_on_drop(true);
    for variable in WITHHELD_VARIABLES {
        command.env_remove(variable);
    }
    command.spawn()
}
