//! What the tools may touch on disk: paths under the root folder (`inloop mcp --root DIR`).
//!
//! Every path a tool takes (a notebook, an export, the folder of parallel runs and each run's
//! file) goes through [`Root::resolve`] before anything is read or written. A path is judged
//! by where it really leads, symbolic links followed, not by how it is spelt: `..`, an absolute
//! path, or a link inside the root to a file or folder outside it are all refused.
//!
//! This confines the tools, not the code a notebook runs: a kernel runs as the user who
//! started `inloop mcp` and can open any file that user can (run it in a container to confine
//! that). It also means a check and the write after it are not one step: a link swapped in
//! between by such code would be followed. Kernel code can write anywhere already, so the
//! tools are not the weaker door.

use std::ffi::OsString;
use std::io;
use std::path::{Component, Path, PathBuf};

/// Why a path was refused.
#[derive(Debug, thiserror::Error)]
pub(crate) enum PathError {
    #[error(
        "path {given} is outside the root {root}: give a path under it (symbolic links are \
         followed, so a link inside the root to a place outside it is refused too)"
    )]
    Outside { given: String, root: PathBuf },
    #[error(
        "path {given}: {link} is a symbolic link to something that does not exist; remove it or \
         give another path"
    )]
    DanglingLink { given: String, link: PathBuf },
    #[error("path {given}: {source}")]
    Unresolvable {
        given: String,
        #[source]
        source: io::Error,
    },
}

/// The root folder, as the real path it names.
#[derive(Debug, Clone)]
pub(crate) struct Root {
    real: PathBuf,
}

impl Root {
    /// The folder `dir` (relative to the working directory), which must exist.
    pub(crate) fn new(dir: &Path) -> io::Result<Self> {
        let real = std::fs::canonicalize(dir)?;
        if !real.is_dir() {
            return Err(io::Error::new(
                io::ErrorKind::NotADirectory,
                "it is not a folder",
            ));
        }
        Ok(Self { real })
    }

    /// The root's real path (no symbolic link in it).
    pub(crate) fn path(&self) -> &Path {
        &self.real
    }

    /// `given` (relative to the root, or absolute) as the real path it leads to, if that is
    /// under the root (or the root itself). The path need not exist yet: its longest part that
    /// exists is resolved (every symbolic link in it followed), and the rest, which a write
    /// would create, is added name by name (`..` there climbs out of what was created, as it
    /// would once the folders exist). A symbolic link whose target does not exist is refused:
    /// where a write through it lands is not known until it is made.
    pub(crate) fn resolve(&self, given: &Path) -> Result<PathBuf, PathError> {
        let shown = || given.display().to_string();
        let joined = self.real.join(given);
        let components: Vec<Component<'_>> = joined.components().collect();
        // `/` always exists, so some prefix resolves.
        let (mut real, missing) = (0..=components.len())
            .rev()
            .find_map(|end| {
                let prefix: PathBuf = components[..end].iter().collect();
                match std::fs::canonicalize(&prefix) {
                    Ok(real) => Some(Ok((real, &components[end..]))),
                    Err(error) if error.kind() == io::ErrorKind::NotFound => None,
                    Err(source) => Some(Err(PathError::Unresolvable {
                        given: shown(),
                        source,
                    })),
                }
            })
            .unwrap_or_else(|| {
                Err(PathError::Unresolvable {
                    given: shown(),
                    source: io::Error::from(io::ErrorKind::NotFound),
                })
            })?;
        if let Some(Component::Normal(name)) = missing.first() {
            // Not found, yet there: a link to nothing.
            let link = real.join(name);
            if link.symlink_metadata().is_ok() {
                return Err(PathError::DanglingLink {
                    given: shown(),
                    link,
                });
            }
        }
        let mut created: Vec<OsString> = Vec::new();
        for component in missing {
            match component {
                Component::Normal(name) => created.push(name.to_os_string()),
                Component::ParentDir => {
                    // Nothing created holds a link, so `..` is the lexical parent; past them,
                    // the parent of a real path (itself free of links) is its real parent.
                    if created.pop().is_none() {
                        real.pop();
                    }
                }
                Component::CurDir | Component::RootDir | Component::Prefix(_) => {}
            }
        }
        real.extend(created);
        if real.starts_with(&self.real) {
            Ok(real)
        } else {
            Err(PathError::Outside {
                given: shown(),
                root: self.real.clone(),
            })
        }
    }
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::symlink;

    use super::*;

    /// A root with `inside/a.ipynb`, beside a folder `outside` with `secret.ipynb`; the root
    /// holds links to each, to the folder outside, and to nothing.
    fn fixture() -> (tempfile::TempDir, Root) {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("root");
        std::fs::create_dir_all(root.join("inside")).unwrap();
        std::fs::write(root.join("inside/a.ipynb"), "{}").unwrap();
        std::fs::create_dir(dir.path().join("outside")).unwrap();
        std::fs::write(dir.path().join("outside/secret.ipynb"), "{}").unwrap();
        symlink(root.join("inside/a.ipynb"), root.join("link-in.ipynb")).unwrap();
        symlink(root.join("inside"), root.join("dir-in")).unwrap();
        symlink(
            dir.path().join("outside/secret.ipynb"),
            root.join("link-out.ipynb"),
        )
        .unwrap();
        symlink(dir.path().join("outside"), root.join("dir-out")).unwrap();
        symlink(dir.path().join("nothing"), root.join("dangling.ipynb")).unwrap();
        let resolved = Root::new(&root).unwrap();
        (dir, resolved)
    }

    #[test]
    fn paths_inside_resolve_to_where_they_lead() {
        let (_dir, root) = fixture();
        let real = root.path().to_owned();
        let ok = |given: &str| root.resolve(Path::new(given)).unwrap();
        assert_eq!(ok("inside/a.ipynb"), real.join("inside/a.ipynb"));
        assert_eq!(
            ok("./inside/../inside/a.ipynb"),
            real.join("inside/a.ipynb")
        );
        assert_eq!(ok("link-in.ipynb"), real.join("inside/a.ipynb"));
        assert_eq!(ok("dir-in/new.ipynb"), real.join("inside/new.ipynb"));
        assert_eq!(ok("new/deeper/b.ipynb"), real.join("new/deeper/b.ipynb"));
        assert_eq!(ok("new/../b.ipynb"), real.join("b.ipynb"));
        assert_eq!(ok("."), real);
        assert_eq!(ok(""), real);
        let absolute = real.join("inside/a.ipynb");
        assert_eq!(ok(absolute.to_str().unwrap()), absolute);
    }

    #[test]
    fn paths_leading_outside_are_refused() {
        let (dir, root) = fixture();
        let outside = dir.path().join("outside/secret.ipynb");
        for given in [
            "../outside/secret.ipynb",
            "inside/../../outside/secret.ipynb",
            "new/../../outside/x.ipynb",
            "new/../../../etc/passwd",
            "/etc/passwd",
            "/tmp/x.ipynb",
            outside.to_str().unwrap(),
            "link-out.ipynb",
            "dir-out/secret.ipynb",
            "dir-out/new.ipynb",
            "dir-out/new/deeper.ipynb",
            "dir-out",
            "..",
        ] {
            let error = root.resolve(Path::new(given)).unwrap_err();
            assert!(
                matches!(error, PathError::Outside { .. }),
                "{given}: {error}"
            );
            let message = error.to_string();
            assert!(
                message.starts_with(&format!(
                    "path {given} is outside the root {}",
                    root.path().display()
                )),
                "{message}"
            );
        }
    }

    #[test]
    fn a_link_to_nothing_is_refused() {
        let (_dir, root) = fixture();
        for given in ["dangling.ipynb", "dangling.ipynb/x.ipynb"] {
            let error = root.resolve(Path::new(given)).unwrap_err();
            assert!(
                matches!(error, PathError::DanglingLink { .. }),
                "{given}: {error}"
            );
        }
        let error = root.resolve(Path::new("inside/a.ipynb/x")).unwrap_err();
        assert!(
            matches!(error, PathError::Unresolvable { .. }),
            "under a file: {error}"
        );
    }

    #[test]
    fn the_root_must_be_a_folder() {
        let (_dir, root) = fixture();
        assert!(Root::new(&root.path().join("inside/a.ipynb")).is_err());
        assert!(Root::new(&root.path().join("missing")).is_err());
    }
}
