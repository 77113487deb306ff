//! A folder as it is on disk, to show that a test changed nothing outside where it may.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// Every file and folder under `dir`, links not followed: a file's content, a link's target
/// (as bytes), `None` for a folder.
pub fn tree(dir: &Path) -> BTreeMap<PathBuf, Option<Vec<u8>>> {
    let mut found = BTreeMap::new();
    let mut dirs = vec![dir.to_owned()];
    while let Some(dir) = dirs.pop() {
        for entry in std::fs::read_dir(&dir).unwrap() {
            let entry = entry.unwrap();
            let path = entry.path();
            let kind = entry.file_type().unwrap();
            let content = if kind.is_dir() {
                dirs.push(path.clone());
                None
            } else if kind.is_symlink() {
                let target = std::fs::read_link(&path).unwrap();
                Some(target.into_os_string().into_encoded_bytes())
            } else {
                Some(std::fs::read(&path).unwrap())
            };
            found.insert(path, content);
        }
    }
    found
}
