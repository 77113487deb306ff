//! `--root`: every path a tool takes is judged by where it really leads. `..`, absolute paths
//! elsewhere, and symbolic links inside the root to a file or a folder outside are refused with
//! a tool error naming the root, and nothing is read, written or created outside it; a link
//! inside to a place inside works, and so does a path whose folders do not exist yet.

use std::collections::BTreeMap;
use std::os::unix::fs::symlink;
use std::path::PathBuf;

use inloop_testing::files::tree;
use serde_json::json;

use crate::{Answer, Session};

/// A notebook of one code cell.
fn notebook(source: &str) -> String {
    json!({"nbformat": 4, "nbformat_minor": 5, "metadata": {},
           "cells": [{"cell_type": "code", "id": "c1", "source": source, "metadata": {},
                      "execution_count": null, "outputs": []}]})
    .to_string()
}

/// `base/root` (the server's root) and `base/outside` beside it.
struct Fixture {
    base: tempfile::TempDir,
    root: PathBuf,
    outside: PathBuf,
}

impl Fixture {
    /// The root holds `inside.ipynb`, and links: to it (`link-in.ipynb`), to a notebook outside
    /// (`link-out.ipynb`), to the folder outside (`dir-out`) and to nothing (`dangling.ipynb`).
    fn new() -> Self {
        let base = tempfile::tempdir().unwrap();
        // Real paths, so that messages can be compared whatever links the temp folder has.
        let real = base.path().canonicalize().unwrap();
        let root = real.join("root");
        let outside = real.join("outside");
        std::fs::create_dir(&root).unwrap();
        std::fs::create_dir(&outside).unwrap();
        std::fs::write(root.join("inside.ipynb"), notebook("inside = 1")).unwrap();
        std::fs::write(
            outside.join("secret.ipynb"),
            notebook("secret = 'do not read'"),
        )
        .unwrap();
        symlink(root.join("inside.ipynb"), root.join("link-in.ipynb")).unwrap();
        symlink(outside.join("secret.ipynb"), root.join("link-out.ipynb")).unwrap();
        symlink(&outside, root.join("dir-out")).unwrap();
        symlink(outside.join("nothing.ipynb"), root.join("dangling.ipynb")).unwrap();
        Self {
            base,
            root,
            outside,
        }
    }

    /// Everything outside the root: the folder beside it, and what the base folder holds.
    fn outside_state(&self) -> BTreeMap<PathBuf, Option<Vec<u8>>> {
        let mut state = tree(&self.outside);
        for entry in std::fs::read_dir(self.base.path()).unwrap() {
            state.insert(entry.unwrap().path(), None);
        }
        state
    }

    fn config(&self) -> inloop_mcp::Config {
        let mut config = inloop_mcp::Config::new(&self.root);
        // No kernel is needed: every call that would start one is refused first, or runs none.
        config.kernel_search = inloop_kernel::SearchPath::from_dirs(Vec::<PathBuf>::new());
        config
    }

    /// The paths that lead outside, each way there is: `..`, absolute, a link to a file, a link
    /// to a folder, and `..` past folders that do not exist yet.
    fn escapes(&self, file: &str) -> Vec<String> {
        vec![
            format!("../outside/{file}"),
            format!("sub/../../outside/{file}"),
            format!("new/folders/../../../outside/{file}"),
            self.outside.join(file).display().to_string(),
            format!("dir-out/{file}"),
            format!("dir-out/new/{file}"),
        ]
    }

    /// `answer` is the refusal of `given`: it names the path and the root.
    fn assert_outside(&self, tool: &str, given: &str, answer: Answer) {
        let message = answer.expect_err(&format!("{tool} refuses {given}"));
        let expected = format!("path {given} is outside the root {}", self.root.display());
        assert!(message.starts_with(&expected), "{tool} {given}: {message}");
    }
}

#[tokio::test]
async fn every_tool_refuses_paths_that_lead_outside_the_root() {
    let fixture = Fixture::new();
    let before = fixture.outside_state();
    let session = Session::start(fixture.config()).await;

    // Notebooks read or changed: each tool that takes one, on each way out.
    let mut notebooks = fixture.escapes("secret.ipynb");
    notebooks.push("link-out.ipynb".into());
    for given in &notebooks {
        let nb = given.as_str();
        let calls = [
            (
                "notebook_get_state",
                json!({"notebook": nb, "variables": false}),
            ),
            (
                "notebook_edit_cell",
                json!({"notebook": nb, "action": "replace", "index": 0,
                                          "source": "overwritten"}),
            ),
            (
                "notebook_edit_cell",
                json!({"notebook": nb, "action": "insert", "source": "x"}),
            ),
            ("notebook_execute_cell", json!({"notebook": nb, "index": 0})),
            ("notebook_execute_all", json!({"notebook": nb})),
            (
                "notebook_export",
                json!({"notebook": nb, "format": "script"}),
            ),
            (
                "notebook_parallel_run",
                json!({"notebook": nb, "parameter_sets": [{"a": 1}],
                                             "output_dir": "runs"}),
            ),
        ];
        for (tool, arguments) in calls {
            fixture.assert_outside(tool, nb, session.call(tool, arguments).await);
        }
    }

    // Files written: a new notebook, an export, the folder of parallel runs.
    let mut written = fixture.escapes("new.ipynb");
    // Through the link, over the notebook outside.
    written.push("link-out.ipynb".into());
    for given in &written {
        let path = given.as_str();
        let created = session
            .call(
                "notebook_create",
                json!({"path": path, "cells": [{"source": "1"}]}),
            )
            .await;
        fixture.assert_outside("notebook_create", path, created);
        let exported = session
            .call(
                "notebook_export",
                json!({"notebook": "inside.ipynb", "format": "ipynb",
                                             "path": path}),
            )
            .await;
        fixture.assert_outside("notebook_export", path, exported);
    }
    for output_dir in ["../outside/runs", "dir-out", "dir-out/runs", "/tmp"] {
        let runs = session
            .call(
                "notebook_parallel_run",
                json!({"notebook": "inside.ipynb",
                  "parameter_sets": [{"a": 1}], "output_dir": output_dir}),
            )
            .await;
        fixture.assert_outside("notebook_parallel_run", output_dir, runs);
    }
    // A run's `_name` names its file: it may not climb out of the folder (inloop-batch
    // refuses a name with a `/` before the root is even asked).
    let named = session
        .call(
            "notebook_parallel_run",
            json!({"notebook": "inside.ipynb",
              "parameter_sets": [{"a": 1, "_name": "../../../outside/named"}],
              "output_dir": "runs"}),
        )
        .await
        .expect_err("a _name climbing out is refused");
    assert!(named.contains("cannot name a file"), "{named}");
    let runs_dir = fixture.root.join("runs");

    // A link to nothing: where a write through it would land is refused, not guessed.
    let dangling = session
        .call("notebook_create", json!({"path": "dangling.ipynb"}))
        .await
        .expect_err("a link to nothing is refused");
    assert!(
        dangling.contains("symbolic link to something that does not exist"),
        "{dangling}"
    );

    // The listing shows what the tools accept: not the notebook behind links that lead out.
    let listed = session.call("notebook_list", json!({})).await.unwrap();
    let mut names: Vec<&str> = listed["local"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| n["notebook"].as_str().unwrap())
        .collect();
    names.sort_unstable();
    assert_eq!(names, ["inside.ipynb", "link-in.ipynb"], "{listed}");

    session.close().await;
    assert_eq!(
        fixture.outside_state(),
        before,
        "nothing outside the root changed"
    );
    assert!(!runs_dir.exists(), "no run started");
}

#[tokio::test]
async fn links_inside_the_root_and_new_folders_work() {
    let fixture = Fixture::new();
    let before = fixture.outside_state();
    let session = Session::start(fixture.config()).await;

    // A link to a notebook inside reads and writes that notebook.
    let state = session
        .call(
            "notebook_get_state",
            json!({"notebook": "link-in.ipynb", "variables": false}),
        )
        .await
        .unwrap();
    assert_eq!(state["cells"][0]["source"], "inside = 1", "{state}");
    session
        .call(
            "notebook_edit_cell",
            json!({"notebook": "link-in.ipynb", "action": "replace",
                                            "index": 0, "source": "inside = 2"}),
        )
        .await
        .unwrap();
    let saved = std::fs::read_to_string(fixture.root.join("inside.ipynb")).unwrap();
    assert!(saved.contains("inside = 2"), "{saved}");
    assert!(
        std::fs::symlink_metadata(fixture.root.join("link-in.ipynb"))
            .unwrap()
            .file_type()
            .is_symlink(),
        "the link is left as it was"
    );

    // Folders that do not exist yet are made, inside the root.
    let created = session
        .call("notebook_create", json!({"path": "new/deeper/made.ipynb"}))
        .await
        .unwrap();
    assert_eq!(created["notebook"], "new/deeper/made.ipynb");
    assert!(fixture.root.join("new/deeper/made.ipynb").is_file());
    // `..` among new folders stays inside when it does not climb past the root.
    session
        .call(
            "notebook_export",
            json!({"notebook": "new/deeper/made.ipynb",
              "format": "markdown", "path": "fresh/../exports/made.md"}),
        )
        .await
        .unwrap();
    assert!(fixture.root.join("exports/made.md").is_file());
    assert!(!fixture.root.join("fresh").exists());
    // An absolute path inside the root is fine.
    let absolute = fixture.root.join("exports/abs.py");
    session
        .call(
            "notebook_export",
            json!({"notebook": "inside.ipynb", "format": "script",
              "path": absolute.display().to_string()}),
        )
        .await
        .unwrap();
    assert!(absolute.is_file());

    session.close().await;
    assert_eq!(
        fixture.outside_state(),
        before,
        "nothing outside the root changed"
    );
}
