//! `inloop run`: the real binary running real notebooks in real ipykernels, many at once.

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::Duration;

use serde_json::Value;

use crate::venv;

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../tests/fixtures/run")
        .join(name)
        .canonicalize()
        .unwrap()
}

/// `inloop run ARGS` with the venv's kernels, to its end.
fn inloop_run(args: &[&str]) -> Output {
    inloop_run_in(Path::new("."), args)
}

/// `inloop run ARGS` run from the folder `dir`.
fn inloop_run_in(dir: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_inloop"))
        .current_dir(dir)
        .env("INLOOP_TEST_MARK", "set-by-test")
        .arg("run")
        .args(args)
        .arg("--kernel-prefix")
        .arg(venv())
        .stdin(Stdio::null())
        .output()
        .expect("inloop run starts")
}

fn read(path: &Path) -> Value {
    serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap()
}

/// Checks every file with `nbformat.validate`, in one Python process.
fn assert_valid(paths: &[PathBuf]) {
    let output = Command::new(venv().join("bin/python"))
        .args([
            "-c",
            "import nbformat, sys\nfor p in sys.argv[1:]:\n    \
             nbformat.validate(nbformat.read(p, as_version=4))\nprint('valid', len(sys.argv) - 1)",
        ])
        .args(paths)
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "nbformat.validate: {}",
        String::from_utf8_lossy(&output.stderr)
    );
}

/// The text of a code cell's stdout.
fn stdout_of(cell: &Value) -> String {
    cell["outputs"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|o| o["output_type"] == "stream" && o["name"] == "stdout")
        .flat_map(|o| o["text"].as_array().unwrap().iter())
        .filter_map(Value::as_str)
        .collect()
}

/// [`stdout_of`] a code cell; nothing for others.
fn stdout_of_code(cell: &Value) -> String {
    if cell["cell_type"] == "code" {
        stdout_of(cell)
    } else {
        String::new()
    }
}

fn tags(cell: &Value) -> Vec<&str> {
    cell["metadata"]["tags"]
        .as_array()
        .map(|t| t.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default()
}

/// Whether a process with this id is still there (a zombie counts as gone), after giving a
/// SIGKILL sent at the end of its run a moment to take effect.
fn alive(pid: u32) -> bool {
    let deadline = std::time::Instant::now() + Duration::from_secs(3);
    loop {
        let running = std::fs::read_to_string(format!("/proc/{pid}/stat"))
            .is_ok_and(|stat| !stat.contains(") Z ") && !stat.contains(") X "));
        if !running || std::time::Instant::now() > deadline {
            if running {
                eprintln!(
                    "still there: {:?}",
                    std::fs::read_to_string(format!("/proc/{pid}/stat"))
                );
            }
            return running;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn twenty_runs_four_at_a_time_each_with_its_own_parameters() {
    let dir = tempfile::tempdir().unwrap();
    let sets = dir.path().join("sets.yaml");
    let mut yaml = String::new();
    for n in 0..20 {
        let mode = match n {
            7 => "fail",
            13 => "hang",
            _ => "ok",
        };
        yaml.push_str(&format!("- {{n: {n}, mode: {mode}}}\n"));
    }
    std::fs::write(&sets, yaml).unwrap();
    let out = dir.path().join("out");
    let started = std::time::Instant::now();
    let run = inloop_run(&[
        fixture("params.ipynb").to_str().unwrap(),
        "-f",
        sets.to_str().unwrap(),
        "--parallel",
        "4",
        "--timeout",
        "3",
        "--output",
        out.to_str().unwrap(),
    ]);
    let elapsed = started.elapsed();
    let stdout = String::from_utf8_lossy(&run.stdout);
    let stderr = String::from_utf8_lossy(&run.stderr);
    eprintln!("{stdout}{stderr}took {elapsed:?}");
    assert_eq!(
        run.status.code(),
        Some(1),
        "a failed run makes the exit status 1"
    );
    assert!(
        stdout.contains("20 runs: 18 ok, 1 failed, 1 timed out"),
        "{stdout}"
    );
    assert!(stderr.contains("params-07 failed: ValueError: failing on purpose for n=7"));
    assert!(stderr.contains("params-13 timeout: cell 6 timed out after 3.0 s"));

    let mut pids = HashSet::new();
    let mut files = Vec::new();
    for n in 0..20i64 {
        let path = out.join(format!("params-{n:02}.ipynb"));
        let notebook = read(&path);
        files.push(path);
        // A run that stopped is marked as papermill marks it: a note on top, one before the cell.
        let (markers, cells): (Vec<&Value>, Vec<&Value>) = notebook["cells"]
            .as_array()
            .unwrap()
            .iter()
            .partition(|cell| tags(cell).contains(&"papermill-error-cell-tag"));
        let cells: Vec<Value> = cells.into_iter().cloned().collect();
        let stopped_at = match n {
            7 => Some(("In [4]", 4)),
            13 => Some(("In [5]", 5)),
            _ => None,
        };
        match stopped_at {
            None => assert!(markers.is_empty()),
            Some((count, index)) => {
                let all = notebook["cells"].as_array().unwrap();
                assert!(
                    all[0]["source"]
                        .as_array()
                        .unwrap()
                        .concat_strs()
                        .contains(count)
                );
                // Before the failed cell: it is one further down for the note on top.
                assert_eq!(tags(&all[index + 1]), ["papermill-error-cell-tag"]);
                assert_eq!(all[index + 2]["id"], cells[index]["id"]);
            }
        }
        let papermill = &notebook["metadata"]["papermill"];
        assert_eq!(papermill["parameters"]["n"], n);
        // The injected cell comes right after the `parameters` cell.
        assert_eq!(tags(&cells[1]), ["parameters"]);
        assert_eq!(tags(&cells[2]), ["injected-parameters"]);
        let mode = if n == 7 {
            "fail"
        } else if n == 13 {
            "hang"
        } else {
            "ok"
        };
        assert_eq!(
            cells[2]["source"].as_array().unwrap().concat_strs(),
            format!("# Parameters\nn = {n}\nmode = \"{mode}\"\n")
        );
        // Its own parameter's result, from its own kernel.
        let printed = stdout_of(&cells[3]);
        let prefix = format!("n={n} square={} pid=", n * n);
        let pid: u32 = printed
            .trim()
            .strip_prefix(&prefix)
            .unwrap_or_else(|| panic!("run {n} printed {printed:?}"))
            .parse()
            .unwrap();
        assert!(pids.insert(pid), "pid {pid} ran two notebooks");
        assert!(
            !alive(pid),
            "the kernel of run {n} (pid {pid}) was not killed"
        );
        // nbclient's timing and papermill's status on every executed code cell.
        let timing = &cells[3]["metadata"]["execution"];
        for key in [
            "iopub.status.busy",
            "iopub.execute_input",
            "shell.execute_reply",
            "iopub.status.idle",
        ] {
            assert!(
                timing[key].as_str().is_some_and(|t| t.ends_with('Z')),
                "{timing}"
            );
        }
        assert_eq!(cells[3]["metadata"]["papermill"]["status"], "completed");
        assert!(cells[3]["metadata"]["papermill"]["duration"].is_f64());
        match n {
            7 => {
                assert_eq!(papermill["status"], "failed");
                assert_eq!(papermill["exception"], true);
                assert_eq!(cells[4]["metadata"]["papermill"]["status"], "failed");
                assert_eq!(cells[4]["outputs"][0]["ename"], "ValueError");
                // Nothing ran after the error.
                assert_eq!(cells[5]["metadata"]["papermill"]["status"], "pending");
                assert_eq!(cells[6]["execution_count"], Value::Null);
            }
            13 => {
                assert_eq!(papermill["status"], "timeout");
                let enames: Vec<&Value> = cells[5]["outputs"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|o| &o["ename"])
                    .collect();
                assert!(
                    enames.contains(&&Value::from("CellTimeoutError")),
                    "{enames:?}"
                );
                assert_eq!(cells[6]["metadata"]["papermill"]["status"], "pending");
            }
            _ => {
                assert_eq!(papermill["status"], "ok");
                assert_eq!(papermill["exception"], false);
                let result = &cells[6]["outputs"][0];
                assert_eq!(result["output_type"], "execute_result");
                let text = result["data"]["text/plain"]
                    .as_array()
                    .unwrap()
                    .concat_strs();
                assert_eq!(
                    text,
                    format!("{{'n': {n}, 'square': {}, 'pid': {pid}}}", n * n)
                );
                assert_eq!(cells[6]["execution_count"], 6);
            }
        }
    }
    assert_eq!(pids.len(), 20);
    assert_valid(&files);
}

trait ConcatStrs {
    fn concat_strs(&self) -> String;
}

impl ConcatStrs for Vec<Value> {
    fn concat_strs(&self) -> String {
        self.iter().filter_map(Value::as_str).collect()
    }
}

#[test]
fn parameters_arrive_as_python_values_of_their_types() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out");
    let run = inloop_run(&[
        fixture("types.ipynb").to_str().unwrap(),
        "-y",
        "{i: 3, f: 2.5, b: true, s: 'it''s \"q\"', l: [1, two, 3.0], d: {a: 1, b: [true, null]}}",
        "-p",
        "pi=7",
        "-p",
        "pf=0.25",
        "-p",
        "pb=False",
        "-p",
        "ps=some text",
        "-p",
        "pn=None",
        "-o",
        out.to_str().unwrap(),
    ]);
    assert!(
        run.status.success(),
        "{}",
        String::from_utf8_lossy(&run.stderr)
    );
    let path = out.join("types.ipynb");
    let notebook = read(&path);
    let printed = stdout_of(&notebook["cells"][2]);
    let seen: Value = serde_json::from_str(printed.trim()).unwrap();
    // The kernel (forked by default) runs in the notebook's folder, with inloop's environment.
    let folder = fixture("types.ipynb")
        .parent()
        .unwrap()
        .display()
        .to_string();
    assert_eq!(
        stdout_of(&notebook["cells"][3]),
        format!("{folder}\nset-by-test\n")
    );
    let expect = |name: &str, ty: &str, repr: &str| {
        assert_eq!(seen[name], serde_json::json!([ty, repr]), "{name}: {seen}");
    };
    expect("i", "int", "3");
    expect("f", "float", "2.5");
    expect("b", "bool", "True");
    expect("s", "str", "'it\\'s \"q\"'");
    expect("l", "list", "[1, 'two', 3.0]");
    expect("d", "dict", "{'a': 1, 'b': [True, None]}");
    expect("pi", "int", "7");
    expect("pf", "float", "0.25");
    expect("pb", "bool", "False");
    expect("ps", "str", "'some text'");
    expect("pn", "NoneType", "None");

    // With no `parameters` cell the values go on top; --inplace writes over the input; a kernel
    // launched from its kernelspec (--no-fork) behaves the same.
    let copy = dir.path().join("untagged.ipynb");
    std::fs::copy(fixture("untagged.ipynb"), &copy).unwrap();
    let run = inloop_run(&[
        copy.to_str().unwrap(),
        "-p",
        "greeting=hello",
        "--inplace",
        "--no-fork",
    ]);
    assert!(
        run.status.success(),
        "{}",
        String::from_utf8_lossy(&run.stderr)
    );
    let notebook = read(&copy);
    assert_eq!(tags(&notebook["cells"][0]), ["injected-parameters"]);
    let folder = dir.path().canonicalize().unwrap().display().to_string();
    assert_eq!(
        stdout_of(&notebook["cells"][1]),
        format!("hello\n{folder}\n")
    );
    assert_valid(&[path, copy]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_relay_each_run_is_a_live_document() {
    use std::io::{BufRead, BufReader};

    let data = tempfile::tempdir().unwrap();
    let relay = crate::Serve::start(data.path(), std::net::SocketAddr::from(([127, 0, 0, 1], 0)));
    let admin = crate::token(inloop_sync::Role::Admin);
    let out = data.path().join("out");
    let mut child = Command::new(env!("CARGO_BIN_EXE_inloop"))
        .arg("run")
        .arg(fixture("live.ipynb"))
        .args(["--relay", &format!("ws://{}?token={admin}", relay.addr)])
        .arg("--output")
        .arg(&out)
        .arg("--kernel-prefix")
        .arg(venv())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // stderr says where to watch: http://ADDR/n/ID?token=READ_TOKEN
    let stderr = child.stderr.take().unwrap();
    let (page_tx, page_rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            if let Some((_, url)) = line.split_once("live at ") {
                let _ = page_tx.send(url.to_owned());
            }
        }
    });
    let page = page_rx
        .recv_timeout(Duration::from_secs(60))
        .expect("inloop run prints the run's page");
    let rest = page
        .strip_prefix(&format!("http://{}/n/", relay.addr))
        .unwrap_or_else(|| panic!("page {page}"));
    let (doc, read_token) = rest.split_once("?token=").unwrap();
    // Watch with the page's own (read-only) token.
    let watcher = inloop_testing::connect(&inloop_testing::ws_url(relay.addr, doc, read_token))
        .await
        .unwrap();
    let notebook = watcher.notebook().clone();
    let text = |index: usize| -> String {
        notebook
            .cells()
            .get(index)
            .map(|cell| {
                cell.outputs
                    .iter()
                    .filter_map(|o| match o {
                        inloop_doc::Output::Stream { text, .. } => Some(text.as_str()),
                        _ => None,
                    })
                    .collect()
            })
            .unwrap_or_default()
    };
    // The first cell's output arrives while the run is still going (its second cell sleeps).
    crate::until(
        "the first cell's live output",
        Duration::from_secs(60),
        || text(0) == "first\n",
    )
    .await;
    assert!(
        child.try_wait().unwrap().is_none(),
        "the run was over already"
    );
    assert_eq!(text(2), "", "the last cell has not run yet");
    let status = tokio::task::spawn_blocking(move || child.wait())
        .await
        .unwrap()
        .unwrap();
    assert!(status.success());
    crate::until("the last cell's output", Duration::from_secs(10), || {
        text(2) == "second\n"
    })
    .await;
    let status = notebook.metadata()["papermill"]["status"].clone();
    assert_eq!(status, "ok");
    // The file written and the live document agree.
    let written = read(&out.join("live.ipynb"));
    assert_eq!(written["cells"][2]["outputs"][0]["text"][0], "second\n");
    assert_valid(&[out.join("live.ipynb")]);
}

/// Runs git in `dir`; its trimmed output (panics with git's message if it fails).
fn git(dir: &Path, args: &[&str]) -> String {
    inloop_history::run_git(dir, args).unwrap_or_else(|error| panic!("{error}"))
}

#[test]
fn with_git_each_run_is_a_commit_on_the_branch() {
    let repo = tempfile::tempdir().unwrap();
    let root = repo.path();
    git(root, &["init", "-q", "-b", "main"]);
    git(root, &["config", "user.name", "Test User"]);
    git(root, &["config", "user.email", "test@example.com"]);
    std::fs::copy(fixture("params.ipynb"), root.join("sweep.ipynb")).unwrap();
    std::fs::write(root.join("notes.md"), "draft\n").unwrap();
    git(root, &["add", "."]);
    git(root, &["commit", "-q", "-m", "the notebook"]);
    // The user's work in progress, which recording must leave as it is.
    std::fs::write(root.join("notes.md"), "draft, staged\n").unwrap();
    git(root, &["add", "notes.md"]);
    let head = git(root, &["rev-parse", "HEAD"]);
    std::fs::write(
        root.join("sets.yaml"),
        "- {n: 2}\n- {n: 3}\n- {n: 4, mode: fail}\n",
    )
    .unwrap();

    let run = inloop_run_in(
        root,
        &["sweep.ipynb", "-f", "sets.yaml", "-j", "2", "--git=exp"],
    );
    let stderr = String::from_utf8_lossy(&run.stderr);
    assert_eq!(
        run.status.code(),
        Some(1),
        "one run fails on purpose: {stderr}"
    );
    assert!(
        stderr.contains("3 runs recorded on the branch inloop/exp"),
        "{stderr}"
    );
    assert_eq!(git(root, &["rev-list", "--count", "main..inloop/exp"]), "3");
    assert_eq!(git(root, &["rev-parse", "inloop/exp~3"]), head);

    // Each commit holds its run's executed notebook, found by the run's trailers.
    let log = git(
        root,
        &[
            "log",
            "--format=%H %(trailers:key=Inloop-Run,valueonly,separator=) \
             %(trailers:key=Inloop-Status,valueonly,separator=)",
            "main..inloop/exp",
        ],
    );
    let mut shown = Vec::new();
    for (n, status) in [(2, "ok"), (3, "ok"), (4, "failed")] {
        let label = format!("sweep-{}", n - 2);
        let line = log
            .lines()
            .find(|line| line.split(' ').nth(1) == Some(label.as_str()))
            .unwrap_or_else(|| panic!("no commit of {label} in\n{log}"));
        let fields: Vec<&str> = line.split(' ').collect();
        assert_eq!(fields[2], status, "{line}");
        let text = git(
            root,
            &["show", &format!("{}:inloop-runs/{label}.ipynb", fields[0])],
        );
        let notebook: Value = serde_json::from_str(&text).unwrap();
        // Found by its text: a failed run also has papermill's error banner cells.
        let printed: String = notebook["cells"]
            .as_array()
            .unwrap()
            .iter()
            .map(stdout_of_code)
            .collect();
        assert!(
            printed.contains(&format!("n={n} square={}", n * n)),
            "{label}: {printed}"
        );
        assert_eq!(notebook["metadata"]["papermill"]["status"], status);
        let copy = repo.path().join(format!(".shown-{label}.ipynb"));
        std::fs::write(&copy, text).unwrap();
        shown.push(copy);
    }
    assert_valid(&shown);

    // A later run goes on top, and the branch keeps the earlier results.
    let run = inloop_run_in(root, &["sweep.ipynb", "-p", "n=5", "--git=exp"]);
    assert!(
        run.status.success(),
        "{}",
        String::from_utf8_lossy(&run.stderr)
    );
    assert_eq!(git(root, &["rev-list", "--count", "main..inloop/exp"]), "4");
    let tip = git(root, &["show", "inloop/exp:inloop-runs/sweep.ipynb"]);
    assert!(tip.contains("n=5 square=25"));
    assert_eq!(
        git(root, &["diff", "--name-only", "main", "inloop/exp"]),
        "inloop-runs/sweep-0.ipynb\ninloop-runs/sweep-1.ipynb\ninloop-runs/sweep-2.ipynb\n\
         inloop-runs/sweep.ipynb"
    );

    // The checkout is as the user left it.
    assert_eq!(git(root, &["rev-parse", "HEAD"]), head);
    assert_eq!(git(root, &["symbolic-ref", "--short", "HEAD"]), "main");
    assert_eq!(git(root, &["diff", "--cached", "--name-only"]), "notes.md");
    assert_eq!(git(root, &["show", ":notes.md"]), "draft, staged");

    // Mistakes are refused before anything runs.
    for (args, says) in [
        (
            vec!["sweep.ipynb", "--git=two words"],
            "cannot name a git branch",
        ),
        (
            vec!["sweep.ipynb", "--git", "-o", "/"],
            "outside the repository",
        ),
    ] {
        let run = inloop_run_in(root, &args);
        let stderr = String::from_utf8_lossy(&run.stderr);
        assert_eq!(run.status.code(), Some(1), "{args:?}: {stderr}");
        assert!(stderr.contains(says), "{args:?}: {stderr}");
    }
    let elsewhere = tempfile::tempdir().unwrap();
    std::fs::copy(fixture("params.ipynb"), elsewhere.path().join("p.ipynb")).unwrap();
    let run = inloop_run_in(elsewhere.path(), &["p.ipynb", "--git"]);
    let stderr = String::from_utf8_lossy(&run.stderr);
    assert!(
        stderr.contains("is not inside a git repository"),
        "{stderr}"
    );
    assert!(!elsewhere.path().join("inloop-runs").exists());
    assert_eq!(git(root, &["rev-list", "--count", "main..inloop/exp"]), "4");
}
