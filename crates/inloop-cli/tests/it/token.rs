//! A runtime's token is never on a command line, where every user of the machine reads it
//! (`ps`, /proc/PID/cmdline): `inloop serve` gives its local runtime the token in a file only
//! its user can read, and people do the same with `--token-file` (a file others can read is
//! refused) or `INLOOP_TOKEN`.

use std::net::SocketAddr;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use inloop_doc::{CellType, ExecutionStatus, ExecutionTarget, Notebook};
use inloop_sync::Role;

use crate::{SECRET, Serve, peer, token, until_some, venv};

const TIMEOUT: Duration = Duration::from_secs(60);

/// What every token starts with.
const TOKEN_PREFIX: &str = "il1.";

/// A process's command line (NUL-separated) or environment, as /proc shows it to anyone.
fn proc_file(pid: u32, name: &str) -> String {
    let bytes = std::fs::read(format!("/proc/{pid}/{name}")).unwrap_or_default();
    String::from_utf8_lossy(&bytes).replace('\0', " ")
}

/// The `inloop runtime` processes joined to the relay at `addr`, found as `ps` finds them.
fn runtimes_of(addr: SocketAddr) -> Vec<u32> {
    let relay = format!("ws://{addr}");
    std::fs::read_dir("/proc")
        .unwrap()
        .filter_map(|entry| entry.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter(|&pid| {
            let cmdline = proc_file(pid, "cmdline");
            cmdline.contains(" runtime ") && cmdline.contains(&relay)
        })
        .collect()
}

/// Queues a server run of a cell saying which secret-bearing variables its kernel sees, and
/// whether any variable holds a token or the relay's signing secret: `[] False` for none.
fn queue_environment_probe(notebook: &Notebook) -> (String, String) {
    let source = format!(
        "import os\nprint(sorted(k for k in os.environ if k in \
         ('INLOOP_SECRET', 'INLOOP_TOKEN', 'INLOOP_TOKEN_FILE')), \
         any({TOKEN_PREFIX:?} in v or {SECRET:?} in v for v in os.environ.values()))"
    );
    let cell = notebook
        .insert_cell(notebook.cell_count(), CellType::Code, &source)
        .unwrap();
    let run = notebook
        .request_execution(&cell, &ExecutionTarget::Server, "test", 0.0)
        .unwrap();
    (cell, run)
}

/// The cell's stream text once its run is done.
async fn printed(notebook: &Notebook, cell: &str, run: &str) -> String {
    until_some("the server run is done", TIMEOUT, || {
        let execution = notebook.execution(run).unwrap();
        assert!(
            !execution.status.is_final() || execution.status == ExecutionStatus::Done,
            "{execution:?}"
        );
        (execution.status == ExecutionStatus::Done).then_some(())
    })
    .await;
    serde_json::to_string(&notebook.cell(cell).unwrap().outputs).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_gives_its_local_runtime_the_token_in_a_private_file_not_on_its_command_line() {
    let data = tempfile::tempdir().unwrap();
    let venv = venv().to_string_lossy().into_owned();
    let relay = Serve::start_with(
        data.path(),
        SocketAddr::from(([127, 0, 0, 1], 0)),
        &["--runtime-kernel-prefix", &venv],
    );
    let client = peer(relay.addr, "token-file", Role::Admin).await;
    let notebook = client.notebook().clone();
    let (cell, run) = queue_environment_probe(&notebook);

    // The local runtime, as soon as it is there, and while its run goes on.
    let pid = until_some("the local runtime starts", TIMEOUT, || {
        runtimes_of(relay.addr).first().copied()
    })
    .await;
    let cmdline = proc_file(pid, "cmdline");
    println!("the local runtime: pid {pid}, command line: {cmdline}");
    assert!(!cmdline.contains(TOKEN_PREFIX), "{cmdline}");
    let environment = proc_file(pid, "environ");
    assert!(
        !environment.contains(TOKEN_PREFIX),
        "a token in its environment"
    );
    assert!(
        !environment.contains("INLOOP_SECRET"),
        "the relay's signing secret in its environment"
    );
    let file = PathBuf::from(
        cmdline
            .split(' ')
            .skip_while(|arg| *arg != "--token-file")
            .nth(1)
            .expect("the command names a token file"),
    );
    let mode = |path: &Path| std::fs::metadata(path).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(&file), 0o600, "{}", file.display());
    assert_eq!(mode(file.parent().unwrap()), 0o700);
    assert!(
        std::fs::read_to_string(&file)
            .unwrap()
            .starts_with(TOKEN_PREFIX)
    );

    // The run completes, and its kernel saw no token and no secret either.
    let outputs = printed(&notebook, &cell, &run).await;
    assert!(outputs.contains("[] False"), "{outputs}");
    let still = proc_file(pid, "cmdline");
    assert!(still.is_empty() || !still.contains(TOKEN_PREFIX), "{still}");

    // Stopped cleanly, the relay leaves no token behind.
    client.close();
    let status = relay.terminate(Duration::from_secs(20));
    assert!(status.success(), "{status}");
    assert!(!file.exists(), "{} is left behind", file.display());
    assert!(!file.parent().unwrap().exists());
}

/// `inloop ARGS…` with no token in its environment: how it failed, and what it said.
fn refused(args: &[&str]) -> String {
    let output = Command::new(env!("CARGO_BIN_EXE_inloop"))
        .args(args)
        .env_remove("INLOOP_TOKEN")
        .env_remove("INLOOP_TOKEN_FILE")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    assert!(!output.status.success(), "{args:?} ran: {stderr}");
    stderr
}

#[test]
fn a_token_file_others_can_read_is_refused_by_every_command() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("token");
    std::fs::write(&file, format!("{}\n", token(Role::Admin))).unwrap();
    std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o644)).unwrap();
    let path = file.to_str().unwrap();
    let relay = "ws://127.0.0.1:9";
    let notebook = dir.path().join("nb.ipynb");
    std::fs::write(&notebook, Notebook::blank().to_ipynb()).unwrap();
    let root = dir.path().to_str().unwrap();
    for args in [
        vec![
            "runtime",
            "--relay",
            relay,
            "--doc",
            "d",
            "--token-file",
            path,
        ],
        vec![
            "run",
            notebook.to_str().unwrap(),
            "--relay",
            relay,
            "--token-file",
            path,
        ],
        vec![
            "mcp",
            "--root",
            root,
            "--relay",
            relay,
            "--token-file",
            path,
        ],
    ] {
        let stderr = refused(&args);
        assert!(
            stderr.contains(&format!("the token file {path} has mode 0644"))
                && stderr.contains(&format!("chmod 600 {path}")),
            "{args:?}: {stderr}"
        );
    }

    // Given twice, a token is refused rather than one of the two picked.
    std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o600)).unwrap();
    let token = token(Role::Runtime);
    let stderr = refused(&[
        "runtime",
        "--relay",
        relay,
        "--doc",
        "d",
        "--token",
        &token,
        "--token-file",
        path,
    ]);
    assert!(stderr.contains("a token is given twice"), "{stderr}");
    // And a runtime needs one.
    let stderr = refused(&["runtime", "--relay", relay, "--doc", "d"]);
    assert!(
        stderr.contains("no token") && stderr.contains("--token-file"),
        "{stderr}"
    );
    // --help says where the token is best given, and never shows it.
    let help = Command::new(env!("CARGO_BIN_EXE_inloop"))
        .args(["runtime", "--help"])
        .env("INLOOP_TOKEN", &token)
        .output()
        .unwrap();
    let help = String::from_utf8_lossy(&help.stdout);
    assert!(
        help.contains("visible to every user of this machine") && help.contains("--token-file"),
        "{help}"
    );
    assert!(!help.contains(TOKEN_PREFIX), "{help}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_runtime_started_by_hand_reads_its_token_file() {
    let data = tempfile::tempdir().unwrap();
    let relay = Serve::start(data.path(), SocketAddr::from(([127, 0, 0, 1], 0)));
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("token");
    std::fs::write(&file, format!("  {}\n", token(Role::Runtime))).unwrap();
    std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o600)).unwrap();
    let mut runtime = Command::new(env!("CARGO_BIN_EXE_inloop"))
        .args(["runtime", "--relay", &format!("ws://{}", relay.addr)])
        .args([
            "--doc",
            "by-hand",
            "--name",
            "by hand",
            "--kernel-prefix",
            &venv().to_string_lossy(),
        ])
        .arg("--token-file")
        .arg(&file)
        .env_remove("INLOOP_TOKEN")
        .spawn()
        .unwrap();

    let client = peer(relay.addr, "by-hand", Role::Admin).await;
    let notebook = client.notebook().clone();
    let (cell, run) = queue_environment_probe(&notebook);
    let outputs = printed(&notebook, &cell, &run).await;
    assert!(outputs.contains("[] False"), "{outputs}");
    assert_eq!(notebook.runtimes()[0].name, "by hand");
    let cmdline = proc_file(runtime.id(), "cmdline");
    assert!(!cmdline.contains(TOKEN_PREFIX), "{cmdline}");

    runtime.kill().unwrap();
    runtime.wait().unwrap();
    client.close();
}

#[test]
fn inloop_run_reads_its_relay_token_from_the_file_in_inloop_token_file() {
    let data = tempfile::tempdir().unwrap();
    let relay = Serve::start(data.path(), SocketAddr::from(([127, 0, 0, 1], 0)));
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("token");
    std::fs::write(&file, token(Role::Admin)).unwrap();
    std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o600)).unwrap();
    let notebook = Notebook::new();
    notebook.push_cell(CellType::Code, "print(6 * 7)").unwrap();
    let input = dir.path().join("nb.ipynb");
    std::fs::write(&input, notebook.to_ipynb()).unwrap();

    let output = Command::new(env!("CARGO_BIN_EXE_inloop"))
        .arg("run")
        .arg(&input)
        .args(["--relay", &format!("ws://{}", relay.addr), "--output"])
        .arg(dir.path().join("out"))
        .arg("--kernel-prefix")
        .arg(venv())
        .env_remove("INLOOP_TOKEN")
        .env("INLOOP_TOKEN_FILE", &file)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{stderr}");
    assert!(
        stderr.contains("live at "),
        "the run is a relay document: {stderr}"
    );
}
