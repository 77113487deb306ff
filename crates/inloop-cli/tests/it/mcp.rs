//! `inloop mcp` driven by a real MCP client (the Python `mcp` SDK, `mcp_client.py`), over stdio
//! and over streamable HTTP with a bearer token, on local notebooks and on a relay document that
//! the relay's own server runtime runs, with progress notifications; then a second peer (an
//! `inloop_client::Client`) checks the agent's edits and runs on the relay.

use std::io::{BufRead, BufReader, Lines};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStderr, Command, Stdio};
use std::time::Duration;

use inloop_sync::Role;

use crate::{Serve, token, venv};

/// The venv's Python, with the `mcp` SDK (installed from PyPI if missing).
pub(crate) fn python_with_mcp() -> PathBuf {
    let python = venv().join("bin/python");
    let has = |python: &Path| {
        Command::new(python)
            .args(["-c", "import mcp, nbformat"])
            .status()
            .is_ok_and(|s| s.success())
    };
    if !has(&python) {
        eprintln!("the Python mcp SDK is missing: .venv/bin/pip install mcp");
        let status = Command::new(venv().join("bin/pip"))
            .args(["install", "--disable-pip-version-check", "mcp", "nbformat"])
            .status()
            .expect("pip runs");
        assert!(status.success(), "pip install mcp failed");
    }
    python
}

fn script() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/it/mcp_client.py")
}

/// Runs the client script (`options` before the transport); returns the relay document it used.
fn run_client(
    root: &Path,
    relay: &str,
    admin: &str,
    options: &[&str],
    transport: &[String],
) -> String {
    let output = Command::new(python_with_mcp())
        .arg(script())
        .arg("--root")
        .arg(root)
        .args(["--relay-http", relay, "--token", admin])
        .args(options)
        .args(transport)
        .stderr(Stdio::inherit())
        .output()
        .expect("the MCP client runs");
    let stdout = String::from_utf8_lossy(&output.stdout);
    println!("{stdout}");
    assert!(output.status.success(), "the MCP client failed");
    let result = stdout
        .lines()
        .find_map(|l| l.strip_prefix("RESULT "))
        .expect("the client prints its result");
    let result: serde_json::Value = serde_json::from_str(result).unwrap();
    println!(
        "MCP client over {}: {} checks passed",
        if transport[0] == "--http" {
            "HTTP"
        } else {
            "stdio"
        },
        result["checks"]
    );
    result["relay_doc"].as_str().unwrap().to_owned()
}

fn mcp_args(root: &Path, relay: &str, admin: &str) -> Vec<String> {
    vec![
        "mcp".into(),
        "--root".into(),
        root.display().to_string(),
        "--relay".into(),
        relay.into(),
        "--token".into(),
        admin.into(),
        "--name".into(),
        "test-agent".into(),
        "--kernel-prefix".into(),
        venv().display().to_string(),
    ]
}

/// A second peer on the relay sees the agent's cells, and the outputs of its server runs.
/// With `agent_connected`, the agent's presence (its name) is seen too.
async fn check_relay_document(
    addr: std::net::SocketAddr,
    doc: &str,
    admin: &str,
    agent_connected: bool,
) {
    let client = inloop_testing::connect(&inloop_testing::ws_url(addr, doc, admin))
        .await
        .unwrap();
    let cells = client.notebook().cells();
    let sources: Vec<_> = cells.iter().map(|c| c.source.as_str()).collect();
    assert_eq!(sources, ["x = 6 * 7", "print(6*7)"]);
    let printed = &cells[1];
    let json = serde_json::to_string(&printed.outputs).unwrap();
    assert!(json.contains("42\\n"), "outputs: {json}");
    let runs = client.notebook().executions();
    assert!(!runs.is_empty());
    assert!(
        runs.iter()
            .all(|r| r.requested_by == "test-agent" && r.status.as_str() == "done"),
        "{runs:?}"
    );
    if agent_connected {
        crate::until_ok(
            "the agent's presence to be seen",
            Duration::from_secs(10),
            || {
                let presence = client.presence();
                if presence.iter().any(|p| p.contains("test-agent")) {
                    Ok(())
                } else {
                    Err(presence)
                }
            },
        )
        .await;
    }
    client.close();
}

fn git(dir: &Path, args: &[&str]) -> String {
    inloop_history::run_git(dir, args).unwrap_or_else(|error| panic!("{error}"))
}

/// Makes `dir` a repository with one commit; returns it.
fn git_repository(dir: &Path) -> String {
    git(dir, &["init", "-q", "-b", "main"]);
    git(dir, &["config", "user.name", "Test User"]);
    git(dir, &["config", "user.email", "test@example.com"]);
    std::fs::write(dir.join("README.md"), "agent work\n").unwrap();
    git(dir, &["add", "README.md"]);
    git(dir, &["commit", "-q", "-m", "start"]);
    git(dir, &["rev-parse", "HEAD"])
}

/// The session the client drove is on `inloop/session`, a commit per tool call that wrote a
/// file, starting at `head`, with the executed notebook (and the relay document `doc` as a
/// snapshot); the checkout is untouched.
fn check_session_history(root: &Path, head: &str, doc: &str) {
    let subjects = git(
        root,
        &["log", "--reverse", "--format=%s", "main..inloop/session"],
    );
    let subjects: Vec<&str> = subjects.lines().collect();
    println!("the agent's session in git:\n  {}", subjects.join("\n  "));
    assert_eq!(
        subjects.first().copied(),
        Some("notebook_create: created with 4 cells in work/nb.ipynb")
    );
    for expected in [
        "notebook_edit_cell: insert cell 0 in work/nb.ipynb",
        "notebook_execute_cell: ran cell 3 (done) in work/nb.ipynb",
        "notebook_execute_all: ran all: 3 of 3 cells done in work/nb.ipynb",
        "notebook_execute_cell: ran cell 4 (error) in work/nb.ipynb",
    ] {
        assert!(
            subjects.contains(&expected),
            "{expected:?} in {subjects:#?}"
        );
    }
    assert!(
        subjects.contains(&"notebook_export: work/nb.ipynb as html to out/nb.html"),
        "{subjects:#?}"
    );
    for run in ["params-0: ok", "params-1: ok", "params-ten: ok"] {
        assert!(
            subjects.iter().any(|s| s.starts_with(run)),
            "{run} in {subjects:#?}"
        );
    }
    let agents = git(
        root,
        &[
            "log",
            "--format=%(trailers:key=Inloop-Agent,valueonly,separator=)",
            "-1",
            "inloop/session",
            "--",
            "work/nb.ipynb",
        ],
    );
    assert_eq!(agents, "test-agent");
    let first = git(root, &["rev-list", "--reverse", "main..inloop/session"]);
    let first = first.lines().next().unwrap();
    assert_eq!(git(root, &["rev-parse", &format!("{first}^")]), head);
    let executed: serde_json::Value =
        serde_json::from_str(&git(root, &["show", "inloop/session:work/nb.ipynb"])).unwrap();
    assert!(executed.to_string().contains("42\\n"), "{executed}");
    let ten = git(root, &["show", "inloop/session:runs/params-ten.ipynb"]);
    assert!(ten.contains("20\\n"), "{ten}");
    let relay = git(
        root,
        &["show", &format!("inloop/session:relay/{doc}.ipynb")],
    );
    assert!(
        relay.contains("print(6*7)") && relay.contains("42\\n"),
        "{relay}"
    );
    assert!(
        !root.join("relay").exists(),
        "snapshots are on the branch only"
    );
    assert_eq!(git(root, &["rev-parse", "HEAD"]), head);
    assert_eq!(git(root, &["diff", "--cached", "--name-only"]), "");
}

#[derive(Debug)]
struct Killed(Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// `inloop mcp ARGS` with its stderr read up to the line saying where it listens: the server, its
/// URL and the rest of its stderr.
fn start_http(args: &[String]) -> (Killed, String, Lines<BufReader<ChildStderr>>) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_inloop"))
        .args(args)
        .env_remove("INLOOP_MCP_TOKEN")
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
    let server = Killed(child);
    let url = loop {
        let line = lines
            .next()
            .expect("inloop mcp says where it listens")
            .unwrap();
        if let Some(url) = line.strip_prefix("inloop mcp listening on ") {
            break url.trim().to_owned();
        }
    };
    (server, url, lines)
}

#[test]
fn without_a_token_http_stays_on_loopback() {
    let root = tempfile::tempdir().unwrap();
    let root = root.path().display().to_string();
    let refused = Command::new(env!("CARGO_BIN_EXE_inloop"))
        .args(["mcp", "--root", &root, "--http", "0.0.0.0:0"])
        .env_remove("INLOOP_MCP_TOKEN")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(!refused.status.success(), "{stderr}");
    assert!(
        stderr.contains("needs a bearer token") && stderr.contains("--http-token TOKEN"),
        "{stderr}"
    );

    let args = ["mcp", "--root", &root, "--http", "127.0.0.1:0"].map(str::to_owned);
    let (_server, _, mut lines) = start_http(&args);
    let note = lines.next().unwrap().unwrap();
    assert!(note.contains("no --http-token"), "{note}");
}

#[tokio::test(flavor = "multi_thread")]
async fn an_mcp_client_calls_every_tool_over_stdio_and_http() {
    let data = tempfile::tempdir().unwrap();
    let venv = venv();
    let serve = Serve::start_with(
        data.path(),
        "127.0.0.1:0".parse().unwrap(),
        &["--runtime-kernel-prefix", venv.to_str().unwrap()],
    );
    let admin = token(Role::Admin);
    let relay = format!("http://{}", serve.addr);

    // stdio: the client starts `inloop mcp` itself, recording its session in git.
    let root = tempfile::tempdir().unwrap();
    let head = git_repository(root.path());
    let mut transport = vec![
        "--stdio".to_owned(),
        env!("CARGO_BIN_EXE_inloop").to_owned(),
    ];
    transport.extend(mcp_args(root.path(), &relay, &admin));
    transport.push("--git=session".into());
    let options = ["--expect-git", "inloop/session"];
    let doc = tokio::task::block_in_place(|| {
        run_client(root.path(), &relay, &admin, &options, &transport)
    });
    check_relay_document(serve.addr, &doc, &admin, false).await;
    check_session_history(root.path(), &head, &doc);

    // Streamable HTTP: one `inloop mcp --http` with a token, which the client connects to.
    let root = tempfile::tempdir().unwrap();
    let http_token = "an-mcp-http-token";
    let mut args = mcp_args(root.path(), &relay, &admin);
    args.extend(["--http", "127.0.0.1:0", "--http-token", http_token].map(str::to_owned));
    let (server, url, lines) = start_http(&args);
    std::thread::spawn(move || for _ in lines {});
    let transport = vec![
        "--http".to_owned(),
        url,
        "--http-token".to_owned(),
        http_token.to_owned(),
    ];
    let doc =
        tokio::task::block_in_place(|| run_client(root.path(), &relay, &admin, &[], &transport));
    // The HTTP server is still up, still a peer of the document: its presence shows.
    check_relay_document(serve.addr, &doc, &admin, true).await;
    drop(server);
    drop(serve);
}
