//! `inloop mcp --root DIR` confines every path its tools take, checked by a real MCP client
//! (the Python `mcp` SDK, `mcp_root_client.py`) against the real binary over stdio.

use std::os::unix::fs::symlink;
use std::path::Path;
use std::process::{Command, Stdio};

use inloop_testing::files::tree;

use crate::mcp::python_with_mcp;

#[test]
fn an_mcp_client_cannot_reach_outside_the_root() {
    let base = tempfile::tempdir().unwrap();
    let base = base.path().canonicalize().unwrap();
    let (root, outside) = (base.join("root"), base.join("outside"));
    std::fs::create_dir(&root).unwrap();
    std::fs::create_dir(&outside).unwrap();
    let notebook = |source: &str| {
        serde_json::json!({"nbformat": 4, "nbformat_minor": 5, "metadata": {},
            "cells": [{"cell_type": "code", "id": "c1", "source": source, "metadata": {},
                       "execution_count": null, "outputs": []}]})
        .to_string()
    };
    std::fs::write(root.join("inside.ipynb"), notebook("inside = 1")).unwrap();
    std::fs::write(outside.join("secret.ipynb"), notebook("secret = 1")).unwrap();
    symlink(root.join("inside.ipynb"), root.join("link-in.ipynb")).unwrap();
    symlink(outside.join("secret.ipynb"), root.join("link-out.ipynb")).unwrap();
    symlink(&outside, root.join("dir-out")).unwrap();
    let before = (tree(&outside), std::fs::read_dir(&base).unwrap().count());

    let output = Command::new(python_with_mcp())
        .arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/it/mcp_root_client.py"))
        .arg("--root")
        .arg(&root)
        .arg("--outside")
        .arg(&outside)
        .args(["--stdio", env!("CARGO_BIN_EXE_inloop"), "mcp", "--root"])
        .arg(&root)
        .stderr(Stdio::inherit())
        .output()
        .expect("the MCP client runs");
    let stdout = String::from_utf8_lossy(&output.stdout);
    println!("{stdout}");
    assert!(output.status.success(), "the MCP client failed");
    assert!(stdout.contains("RESULT {\"checks\":"), "{stdout}");

    let after = (tree(&outside), std::fs::read_dir(&base).unwrap().count());
    assert_eq!(
        after, before,
        "nothing outside the root was created or changed"
    );
}
