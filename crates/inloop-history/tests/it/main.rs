//! `inloop-history` against real git repositories in temporary folders.

use std::path::Path;

use inloop_history::{Error, History};

/// Runs git in `dir` and returns its trimmed output; panics with git's message if it fails.
fn git(dir: &Path, args: &[&str]) -> String {
    inloop_history::run_git(dir, args).unwrap_or_else(|error| panic!("{error}"))
}

/// A repository with its own identity (CI machines have none) and, with `commit`, one commit
/// holding `README.md`.
fn repository(commit: bool) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    git(dir.path(), &["init", "-q", "-b", "main"]);
    git(dir.path(), &["config", "user.name", "Test User"]);
    git(dir.path(), &["config", "user.email", "test@example.com"]);
    if commit {
        std::fs::write(dir.path().join("README.md"), "hello\n").unwrap();
        git(dir.path(), &["add", "README.md"]);
        git(dir.path(), &["commit", "-q", "-m", "start"]);
    }
    dir
}

#[test]
fn records_on_a_branch_from_head_without_touching_the_checkout() {
    let repo = repository(true);
    let root = repo.path();
    // The user's work in progress: a staged change and an unstaged one.
    std::fs::write(root.join("README.md"), "hello, staged\n").unwrap();
    git(root, &["add", "README.md"]);
    std::fs::write(root.join("README.md"), "hello, staged and more\n").unwrap();
    let status_before = git(root, &["status", "--porcelain"]);
    let staged_before = git(root, &["diff", "--cached"]);
    let head_before = git(root, &["rev-parse", "HEAD"]);

    let history = History::open(root, "experiment").unwrap();
    assert_eq!(history.branch(), "inloop/experiment");
    let first = history
        .record(
            &[(&root.join("out/a.ipynb"), b"first")],
            "Run a: ok\n\nInloop-Status: ok",
        )
        .unwrap()
        .expect("a new file is a change");
    let second = history
        .record(&[(&root.join("out/a.ipynb"), b"second")], "Run a again")
        .unwrap()
        .expect("new content is a change");

    assert_eq!(git(root, &["rev-parse", "inloop/experiment"]), second.id);
    assert_eq!(git(root, &["rev-parse", "inloop/experiment~1"]), first.id);
    assert_eq!(
        git(root, &["rev-parse", "inloop/experiment~2"]),
        head_before,
        "the branch starts at HEAD"
    );
    assert_eq!(
        git(root, &["show", "inloop/experiment:out/a.ipynb"]),
        "second"
    );
    assert_eq!(
        git(root, &["show", "inloop/experiment~1:out/a.ipynb"]),
        "first"
    );
    // The repository's committed files are on the branch too (HEAD's, not the staged ones).
    assert_eq!(git(root, &["show", "inloop/experiment:README.md"]), "hello");
    assert_eq!(
        git(
            root,
            &[
                "log",
                "-1",
                "--format=%(trailers:key=Inloop-Status,valueonly)",
                &first.id
            ]
        ),
        "ok"
    );
    assert_eq!(
        git(root, &["log", "-1", "--format=%an", &first.id]),
        "Test User"
    );

    assert_eq!(git(root, &["rev-parse", "HEAD"]), head_before);
    assert_eq!(git(root, &["symbolic-ref", "HEAD"]), "refs/heads/main");
    assert_eq!(git(root, &["status", "--porcelain"]), status_before);
    assert_eq!(git(root, &["diff", "--cached"]), staged_before);
    assert!(
        !root.join("out").exists(),
        "nothing is written to the working tree"
    );
}

#[test]
fn a_record_that_changes_nothing_makes_no_commit() {
    let repo = repository(true);
    let root = repo.path();
    let history = History::open(root, "same").unwrap();
    let file = root.join("result.ipynb");
    assert!(history.record(&[(&file, b"x")], "one").unwrap().is_some());
    assert_eq!(history.record(&[(&file, b"x")], "two").unwrap(), None);
    assert_eq!(
        git(root, &["rev-list", "--count", "main..inloop/same"]),
        "1"
    );
}

#[test]
fn an_unborn_head_gives_a_root_commit() {
    let repo = repository(false);
    let root = repo.path();
    let history = History::open(root, "fresh").unwrap();
    let commit = history
        .record(&[(&root.join("nb.ipynb"), b"{}")], "first run")
        .unwrap()
        .unwrap();
    assert_eq!(git(root, &["rev-list", "--count", "inloop/fresh"]), "1");
    assert_eq!(
        git(root, &["rev-list", "--parents", "-1", &commit.id]),
        commit.id
    );
    assert_eq!(
        git(root, &["ls-tree", "--name-only", "inloop/fresh"]),
        "nb.ipynb"
    );
}

#[test]
fn records_from_several_writers_are_all_kept() {
    let repo = repository(true);
    let root = repo.path().to_owned();
    // Two handles: each has its own lock, so they race for the branch as two processes would.
    let writers: Vec<_> = (0..2)
        .map(|writer| {
            let root = root.clone();
            std::thread::spawn(move || {
                let history = History::open(&root, "shared").unwrap();
                for i in 0..8 {
                    let path = root.join(format!("runs/{writer}-{i}.ipynb"));
                    let message = format!("run {writer}-{i}");
                    history
                        .record(&[(&path, message.as_bytes())], &message)
                        .unwrap()
                        .unwrap();
                }
            })
        })
        .collect();
    for writer in writers {
        writer.join().unwrap();
    }
    assert_eq!(
        git(&root, &["rev-list", "--count", "main..inloop/shared"]),
        "16"
    );
    let files = git(&root, &["ls-tree", "--name-only", "inloop/shared:runs"]);
    assert_eq!(files.lines().count(), 16, "{files}");
}

#[test]
fn commits_as_inloop_when_the_user_has_no_identity() {
    let repo = repository(true);
    let root = repo.path();
    // An empty name stands for none configured (it also hides a global one).
    git(root, &["config", "user.name", ""]);
    let history = History::open(root, "anonymous").unwrap();
    let commit = history
        .record(&[(&root.join("a.ipynb"), b"a")], "run")
        .unwrap()
        .unwrap();
    assert_eq!(
        git(root, &["log", "-1", "--format=%an <%ae>", &commit.id]),
        "inloop <inloop@localhost>"
    );
}

#[test]
fn mistakes_are_refused_with_what_to_do() {
    let outside = tempfile::tempdir().unwrap();
    let error = History::open(outside.path(), "x").unwrap_err();
    assert!(matches!(error, Error::NotARepository(_)), "{error}");
    assert!(error.to_string().contains("git init"), "{error}");

    let repo = repository(true);
    for name in ["", "two words", "a..b", "end.lock", "-x/../y"] {
        let error = History::open(repo.path(), name).unwrap_err();
        assert!(matches!(error, Error::BadName { .. }), "{name:?}: {error}");
    }

    let history = History::open(repo.path(), "ok").unwrap();
    let error = history
        .record(&[(&outside.path().join("a.ipynb"), b"a")], "run")
        .unwrap_err();
    assert!(matches!(error, Error::OutsideRepository { .. }), "{error}");
    assert!(error.to_string().contains("--output"), "{error}");
    let error = history
        .record(&[(&repo.path().join(".git/config"), b"a")], "run")
        .unwrap_err();
    assert!(matches!(error, Error::OutsideRepository { .. }), "{error}");
    assert!(git(repo.path(), &["branch", "--list", "inloop/*"]).is_empty());
}

#[test]
fn paths_are_taken_relative_to_the_working_tree() {
    let repo = repository(true);
    let history = History::open(&repo.path().join("not/made/yet"), "paths").unwrap();
    assert_eq!(
        history
            .path_in_repository(&repo.path().join("a/./b/c.ipynb"))
            .unwrap(),
        "a/b/c.ipynb"
    );
    assert_eq!(history.root(), repo.path().canonicalize().unwrap());
}
