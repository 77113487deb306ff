//! Runs and agent sessions kept as git history, the container-use way: each run of `inloop run
//! --git` or each change an agent makes through `inloop mcp --git` becomes a commit of the
//! executed notebook on a branch `inloop/NAME` of the repository the command runs in, so
//! results can be listed (`git log inloop/NAME`), compared (`git diff`) and merged like any
//! other work.
//!
//! # Features
//!
//! - **Hands off the checkout**: commits are made with git's plumbing (`hash-object`,
//!   `update-index` on a private index file, `write-tree`, `commit-tree`, `update-ref`), so the
//!   working tree, the index and the checked-out branch are never touched, whatever state they
//!   are in. A record still works while the user has staged or conflicting changes.
//! - **A branch of the current work**: the branch starts at `HEAD` (the repository's files plus
//!   the notebooks recorded), and each record adds a commit on top of its tip, so merging it
//!   brings the results into the current branch.
//! - **Safe under concurrency**: the branch moves with a compare-and-swap (`update-ref NEW
//!   OLD`); a record that lost the race to another process is made again on the new tip. Within
//!   a process, records are serialized.
//! - **Nothing recorded twice**: a record that changes no file makes no commit.
//! - **Works without a git identity**: commits are made as the user's configured identity, or
//!   as `inloop <inloop@localhost>` where none is configured (a fresh CI machine).
//!
//! # Example
//!
//! ```no_run
//! use inloop_history::History;
//!
//! # fn demo() -> Result<(), inloop_history::Error> {
//! let history = History::open(std::path::Path::new("."), "experiment")?;
//! let bytes = std::fs::read("out/analysis.ipynb")?;
//! let commit = history.record(&[("out/analysis.ipynb".as_ref(), &bytes)], "Run analysis: ok")?;
//! println!("{} is now {commit:?}", history.branch());
//! # Ok(()) }
//! ```

use std::io::Write;
use std::path::{Component, Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::Mutex;

/// The prefix of every branch this crate writes.
pub const BRANCH_PREFIX: &str = "inloop/";

/// How many times a record is made again after another writer moved the branch under it.
const UPDATE_ATTEMPTS: usize = 16;

/// Why history could not be opened or written.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    #[error("git was not found: install git to record runs with --git ({0})")]
    GitMissing(std::io::Error),
    #[error(
        "{} is not inside a git repository: run from one, or `git init` first",
        .0.display()
    )]
    NotARepository(PathBuf),
    #[error("{name:?} cannot name a git branch (inloop/{name}): {reason}")]
    BadName { name: String, reason: String },
    #[error(
        "{} is outside the repository at {}: only files inside it can be recorded \
         (write the outputs inside it, e.g. --output inloop-runs)",
        path.display(),
        root.display()
    )]
    OutsideRepository { path: PathBuf, root: PathBuf },
    #[error("`git {command}` failed: {stderr}")]
    Git { command: String, stderr: String },
    #[error("the branch {0} kept moving under this record; try again")]
    Contended(String),
    #[error(transparent)]
    Io(#[from] std::io::Error),
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// A branch `inloop/NAME` of one repository, and how to add commits to it.
#[derive(Debug)]
pub struct History {
    /// The top of the working tree: recorded paths are taken relative to it.
    root: PathBuf,
    /// `refs/heads/inloop/NAME`.
    reference: String,
    /// Environment for commits when the user has no git identity.
    identity: Vec<(&'static str, &'static str)>,
    /// One record at a time in this process (each uses its own index file, but commits made in
    /// parallel would race for the branch for nothing).
    recording: Mutex<()>,
}

/// One commit made by [`History::record`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Commit {
    /// Its full hexadecimal id.
    pub id: String,
}

impl History {
    /// The branch `inloop/{name}` of the repository that holds `dir` (which need not exist
    /// yet). Checks the name and that git works; creates nothing.
    pub fn open(dir: &Path, name: &str) -> Result<Self> {
        let dir = std::path::absolute(dir)?;
        // Asked from the nearest folder that exists: `dir` may be an output folder to be made.
        let existing = dir.ancestors().find(|d| d.is_dir()).unwrap_or(&dir);
        let root =
            run_git(existing, &["rev-parse", "--show-toplevel"]).map_err(|error| match error {
                Error::Git { .. } => Error::NotARepository(dir.clone()),
                other => other,
            })?;
        let root = PathBuf::from(root);
        let reference = format!("refs/heads/{BRANCH_PREFIX}{name}");
        let checked = run_git(&root, &["check-ref-format", &reference]);
        if name.is_empty() || checked.is_err() {
            return Err(Error::BadName {
                name: name.to_owned(),
                reason: "use letters, digits, '-', '_', '.' and '/' (see git check-ref-format)"
                    .into(),
            });
        }
        let identity = if run_git(&root, &["var", "GIT_COMMITTER_IDENT"]).is_ok() {
            Vec::new()
        } else {
            [
                ("GIT_AUTHOR_NAME", "inloop"),
                ("GIT_AUTHOR_EMAIL", "inloop@localhost"),
                ("GIT_COMMITTER_NAME", "inloop"),
                ("GIT_COMMITTER_EMAIL", "inloop@localhost"),
            ]
            .into()
        };
        Ok(Self {
            root,
            reference,
            identity,
            recording: Mutex::new(()),
        })
    }

    /// `inloop/NAME`, as `git log` and `git merge` take it.
    pub fn branch(&self) -> &str {
        self.reference.trim_start_matches("refs/heads/")
    }

    /// The top of the repository's working tree.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Where `path` (absolute, or relative to the current directory) is in the repository, as
    /// git names it; an error if it is outside. Lets a caller refuse before doing any work.
    pub fn path_in_repository(&self, path: &Path) -> Result<String> {
        let absolute = std::path::absolute(path)?;
        // Symbolic links in the folders (a /tmp that is /private/tmp, say) are resolved the way
        // git resolved the root; the file itself need not exist yet.
        let resolved = match (absolute.parent(), absolute.file_name()) {
            (Some(dir), Some(name)) => resolve_existing(dir).join(name),
            _ => absolute.clone(),
        };
        let outside = || Error::OutsideRepository {
            path: path.to_owned(),
            root: self.root.clone(),
        };
        let relative = resolved.strip_prefix(&self.root).map_err(|_| outside())?;
        let mut parts = Vec::new();
        for component in relative.components() {
            match component {
                Component::Normal(part) => parts.push(part.to_string_lossy().into_owned()),
                Component::CurDir => {}
                _ => return Err(outside()),
            }
        }
        if parts.is_empty() || parts[0] == ".git" {
            return Err(outside());
        }
        Ok(parts.join("/"))
    }

    /// Commits `files` (path, content) on the branch with `message`: on its tip, or on `HEAD`
    /// when the branch does not exist yet. `None` when no file changed.
    pub fn record(&self, files: &[(&Path, &[u8])], message: &str) -> Result<Option<Commit>> {
        let entries = files
            .iter()
            .map(|(path, bytes)| Ok((self.path_in_repository(path)?, *bytes)))
            .collect::<Result<Vec<_>>>()?;
        let _recording = self.recording.lock().unwrap_or_else(|e| e.into_inner());
        let mut blobs = String::new();
        for (path, bytes) in &entries {
            let blob = self.git(&["hash-object", "-w", "--stdin"], Some(bytes), &[])?;
            // NUL-terminated (`-z`), so no path needs quoting.
            blobs.push_str(&format!("100644 {blob}\t{path}\0"));
        }
        for _ in 0..UPDATE_ATTEMPTS {
            let tip = self.commit_of(&self.reference)?;
            let parent = match &tip {
                Some(tip) => Some(tip.clone()),
                None => self.commit_of("HEAD")?,
            };
            let index = tempfile::Builder::new()
                .prefix("inloop-history-")
                .tempdir()?;
            let index_file = index.path().join("index");
            let index_env = [("GIT_INDEX_FILE", index_file.as_os_str())];
            match &parent {
                Some(parent) => self.git(&["read-tree", parent], None, &index_env)?,
                None => self.git(&["read-tree", "--empty"], None, &index_env)?,
            };
            self.git(
                &["update-index", "-z", "--index-info"],
                Some(blobs.as_bytes()),
                &index_env,
            )?;
            let tree = self.git(&["write-tree"], None, &index_env)?;
            if let Some(parent) = &parent {
                if self.git(&["rev-parse", &format!("{parent}^{{tree}}")], None, &[])? == tree {
                    return Ok(None);
                }
            }
            let mut args = vec!["commit-tree", &tree];
            if let Some(parent) = &parent {
                args.extend(["-p", parent]);
            }
            args.extend(["-F", "-"]);
            let identity: Vec<_> = self
                .identity
                .iter()
                .map(|(k, v)| (*k, std::ffi::OsStr::new(*v)))
                .collect();
            let commit = self.git(&args, Some(message.as_bytes()), &identity)?;
            // The old value makes this a compare-and-swap: empty means "must not exist yet".
            let old = tip.as_deref().unwrap_or("");
            let subject = message.lines().next().unwrap_or_default();
            let reflog = format!("inloop: {subject}");
            match self.git(
                &["update-ref", "-m", &reflog, &self.reference, &commit, old],
                None,
                &[],
            ) {
                Ok(_) => return Ok(Some(Commit { id: commit })),
                // Someone else moved the branch: build on their commit instead.
                Err(Error::Git { .. }) if self.commit_of(&self.reference)? != tip => continue,
                Err(error) => return Err(error),
            }
        }
        Err(Error::Contended(self.branch().to_owned()))
    }

    /// The commit `revision` names, `None` if it names none (no such branch, an unborn `HEAD`).
    fn commit_of(&self, revision: &str) -> Result<Option<String>> {
        match self.git(
            &[
                "rev-parse",
                "--verify",
                "--quiet",
                &format!("{revision}^{{commit}}"),
            ],
            None,
            &[],
        ) {
            Ok(id) => Ok(Some(id)),
            Err(Error::Git { .. }) => Ok(None),
            Err(error) => Err(error),
        }
    }

    fn git(
        &self,
        args: &[&str],
        stdin: Option<&[u8]>,
        env: &[(&str, &std::ffi::OsStr)],
    ) -> Result<String> {
        git_env(&self.root, args, stdin, env)
    }
}

/// The longest existing ancestor of `dir` with its links resolved, and the rest as given.
fn resolve_existing(dir: &Path) -> PathBuf {
    let mut missing = Vec::new();
    let mut current = dir;
    loop {
        if let Ok(resolved) = current.canonicalize() {
            return missing
                .iter()
                .rev()
                .fold(resolved, |path, part| path.join(part));
        }
        match (current.parent(), current.file_name()) {
            (Some(parent), Some(name)) => {
                missing.push(name.to_owned());
                current = parent;
            }
            _ => return dir.to_owned(),
        }
    }
}

/// Runs `git ARGS` in `dir` (headless: it never prompts) and returns its output, trimmed; its
/// error output in [`Error::Git`] when it fails. For looking at what was recorded.
pub fn run_git(dir: &Path, args: &[&str]) -> Result<String> {
    git_env(dir, args, None, &[])
}

/// Runs git in `dir` and returns its output, trimmed; its error output when it fails.
fn git_env(
    dir: &Path,
    args: &[&str],
    stdin: Option<&[u8]>,
    env: &[(&str, &std::ffi::OsStr)],
) -> Result<String> {
    let mut command = Command::new("git");
    command
        .current_dir(dir)
        .args(args)
        .envs(env.iter().copied())
        // Never stop to ask (for a password or an editor): this runs headless.
        .env("GIT_TERMINAL_PROMPT", "0")
        .stdin(if stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = command.spawn().map_err(Error::GitMissing)?;
    if let Some(bytes) = stdin {
        let mut pipe = child.stdin.take().expect("stdin was piped");
        pipe.write_all(bytes)?;
    }
    let Output {
        status,
        stdout,
        stderr,
    } = child.wait_with_output()?;
    if !status.success() {
        return Err(Error::Git {
            command: args.join(" "),
            stderr: String::from_utf8_lossy(&stderr).trim().to_owned(),
        });
    }
    Ok(String::from_utf8_lossy(&stdout).trim().to_owned())
}
