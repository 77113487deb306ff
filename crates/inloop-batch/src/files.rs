//! Writing notebooks and documents to disk, for every crate that does.
//!
//! [`write_atomically`] is written once, here, and used by all three crates that write such
//! files: this one (each run's executed notebook), `inloop-mcp` (notebooks and exports under
//! `--root`) and the `inloop` binary (`inloop import` and `inloop export`). No crate of the
//! workspace is about files as such, so it lives in the lowest crate that both others already
//! depend on and that may touch the file system at all: `inloop-doc`, `inloop-sync` and
//! `inloop-kernel` also build for wasm32 and do no I/O of their own (notebooks go in and out of
//! them as bytes), and `inloop-client` and `inloop-history` are about a relay and git.

use std::path::Path;

use crate::{Error, Result};

/// Writes `bytes` through a temporary file in the same folder (created if missing) and renames
/// it into place, so a reader never sees half a file and a failure never leaves a half-written
/// one where a good one was.
///
/// The error says which file: `writing PATH: REASON`.
pub fn write_atomically(path: &Path, bytes: &[u8]) -> Result<()> {
    let write = || {
        let dir = match path.parent() {
            Some(dir) if !dir.as_os_str().is_empty() => dir,
            _ => Path::new("."),
        };
        let name = path.file_name().ok_or_else(|| {
            std::io::Error::new(std::io::ErrorKind::InvalidInput, "not a file name")
        })?;
        std::fs::create_dir_all(dir)?;
        let tmp = dir.join(format!(".{}.inloop-tmp", name.to_string_lossy()));
        std::fs::write(&tmp, bytes)?;
        std::fs::rename(&tmp, path)
    };
    write().map_err(|source| Error::Write {
        path: path.to_owned(),
        source,
    })
}

#[cfg(test)]
mod tests {
    use super::write_atomically;

    #[test]
    fn writes_whole_files_into_new_folders_and_says_which_file_failed() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("new/folder/a.ipynb");
        write_atomically(&path, b"first").unwrap();
        write_atomically(&path, b"second").unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), b"second");
        let names: Vec<_> = std::fs::read_dir(path.parent().unwrap())
            .unwrap()
            .map(|entry| entry.unwrap().file_name())
            .collect();
        assert_eq!(names, ["a.ipynb"], "no temporary file is left behind");

        let blocked = dir.path().join("new/folder/a.ipynb/b.ipynb");
        let error = write_atomically(&blocked, b"x").unwrap_err().to_string();
        assert!(
            error.starts_with(&format!("writing {}: ", blocked.display())),
            "{error}"
        );
    }
}
