//! A real ipykernel: the one in the repository's venv (`.venv`, made by `scripts/setup.sh`
//! with ipykernel, nbformat, pycrdt and jupyter_ydoc).

use std::path::PathBuf;

/// The repository's venv; fails the test, saying how to make it, when it is missing.
pub fn venv() -> PathBuf {
    let venv = crate::repo_root().join(".venv");
    assert!(
        venv.join("bin/python").is_file(),
        "no venv at {}: run scripts/setup.sh to create it with ipykernel",
        venv.display()
    );
    venv.canonicalize().unwrap_or(venv)
}

/// The venv's Python interpreter.
pub fn python() -> PathBuf {
    venv().join("bin/python")
}

/// Where the venv's kernelspecs are, and only there (the machine's own kernels play no part).
#[cfg(feature = "kernel")]
pub fn search_path() -> inloop_kernel::SearchPath {
    inloop_kernel::SearchPath::from_dirs([venv().join("share/jupyter")])
}

/// The venv's `python3` kernelspec: ipykernel.
#[cfg(feature = "kernel")]
pub fn python_spec() -> inloop_kernel::KernelSpec {
    inloop_kernel::KernelSpec::find("python3", &search_path())
        .unwrap_or_else(|error| panic!("the venv's python3 kernelspec: {error}"))
}
