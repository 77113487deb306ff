//! Kernelspec discovery, as `jupyter_client.kernelspec` does it.

use std::collections::{BTreeMap, HashSet};
use std::ffi::OsString;
use std::path::{Path, PathBuf};

use inloop_doc::JsonMap;
use jupyter_protocol::JupyterKernelspec;

use crate::{Error, Result};

/// The data directories Jupyter searches, in order; kernelspecs live in each one's `kernels/`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SearchPath {
    dirs: Vec<PathBuf>,
}

impl SearchPath {
    /// Jupyter's search path (`jupyter --paths`, data section) from this process's environment:
    ///
    /// 1. each entry of `JUPYTER_PATH`;
    /// 2. the environment's `share/jupyter`: `$VIRTUAL_ENV`, then each of `prefixes` (a runtime
    ///    started from the repository passes its `.venv`, the way Jupyter itself would run from
    ///    inside it);
    /// 3. the user's data directory: `$JUPYTER_DATA_DIR`, else `$XDG_DATA_HOME/jupyter` or
    ///    `~/.local/share/jupyter` (`~/Library/Jupyter` on macOS);
    /// 4. `/usr/local/share/jupyter`, `/usr/share/jupyter`.
    ///
    /// Environment and user swap places when `JUPYTER_PREFER_ENV_PATH` is set to a false value
    /// (`0`, `no`, `false`, `off`): jupyter_core puts a virtualenv's directories before the
    /// user's unless told otherwise, and every environment prefix here is one.
    pub fn from_env<P: Into<PathBuf>>(prefixes: impl IntoIterator<Item = P>) -> Self {
        Self::from_lookup(
            |key| std::env::var_os(key),
            prefixes.into_iter().map(Into::into),
        )
    }

    /// Exactly these data directories, in this order.
    pub fn from_dirs<P: Into<PathBuf>>(dirs: impl IntoIterator<Item = P>) -> Self {
        let mut path = Self::default();
        path.extend(dirs.into_iter().map(Into::into));
        path
    }

    /// The data directories, in search order.
    pub fn dirs(&self) -> &[PathBuf] {
        &self.dirs
    }

    /// [`SearchPath::from_env`] over any environment, so tests need not change the process's.
    fn from_lookup(
        var: impl Fn(&str) -> Option<OsString>,
        prefixes: impl Iterator<Item = PathBuf>,
    ) -> Self {
        let set = |key: &str| var(key).filter(|value| !value.is_empty());
        let mut path = Self::default();
        if let Some(jupyter_path) = set("JUPYTER_PATH") {
            path.extend(std::env::split_paths(&jupyter_path).filter(|d| !d.as_os_str().is_empty()));
        }

        let user = set("JUPYTER_DATA_DIR").map(PathBuf::from).or_else(|| {
            let home = PathBuf::from(set("HOME")?);
            Some(if cfg!(target_os = "macos") {
                home.join("Library/Jupyter")
            } else {
                set("XDG_DATA_HOME")
                    .map_or_else(|| home.join(".local/share"), PathBuf::from)
                    .join("jupyter")
            })
        });
        let system = [
            PathBuf::from("/usr/local/share/jupyter"),
            PathBuf::from("/usr/share/jupyter"),
        ];
        let env: Vec<PathBuf> = set("VIRTUAL_ENV")
            .map(PathBuf::from)
            .into_iter()
            .chain(prefixes)
            .map(|prefix| prefix.join("share/jupyter"))
            .filter(|dir| !system.contains(dir))
            .collect();
        // jupyter_core's `envset`: set and not one of these spellings of false.
        let prefer_env = var("JUPYTER_PREFER_ENV_PATH").is_none_or(|value| {
            let value = value.to_string_lossy().to_lowercase();
            !["no", "n", "false", "off", "0", "0.0"].contains(&value.as_str())
        });
        if prefer_env {
            path.extend(env);
            path.extend(user);
        } else {
            path.extend(user);
            path.extend(env);
        }
        path.extend(system);
        path
    }

    /// Adds directories not already on the path (the first occurrence decides the order).
    fn extend(&mut self, dirs: impl IntoIterator<Item = PathBuf>) {
        for dir in dirs {
            if !self.dirs.contains(&dir) {
                self.dirs.push(dir);
            }
        }
    }
}

/// How a kernel wants to be interrupted (`interrupt_mode` in `kernel.json`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum InterruptMode {
    /// SIGINT to the kernel's process group (Jupyter's default).
    #[default]
    Signal,
    /// An `interrupt_request` on the control channel.
    Message,
}

/// A kernelspec: how to launch a kernel, read from `<data dir>/kernels/<name>/kernel.json`.
#[derive(Clone, Debug, PartialEq)]
pub struct KernelSpec {
    /// The directory's name, lowercased as Jupyter treats it.
    pub name: String,
    /// The kernelspec's directory (`{resource_dir}` in `argv`).
    pub resource_dir: PathBuf,
    /// The command line; `{connection_file}` stands for the connection file's path.
    pub argv: Vec<String>,
    pub display_name: String,
    pub language: String,
    pub interrupt_mode: InterruptMode,
    /// Variables set for the kernel's process, on top of the inherited environment.
    pub env: BTreeMap<String, String>,
    pub metadata: JsonMap,
}

impl KernelSpec {
    /// The kernelspec called `name` (case-insensitive): the first directory on the search path
    /// that has `kernels/<name>/kernel.json` wins, as in Jupyter.
    pub fn find(name: &str, search: &SearchPath) -> Result<KernelSpec> {
        let wanted = name.to_lowercase();
        for (found, dir) in kernel_dirs(search) {
            if found == wanted {
                return KernelSpec::from_dir(&found, &dir);
            }
        }
        Err(Error::KernelSpecNotFound {
            name: name.to_owned(),
            available: Self::list(search).into_iter().map(|s| s.name).collect(),
            searched: search.dirs().to_vec(),
        })
    }

    /// Every kernelspec on the search path, by name; a name found twice is the first one's.
    /// Directories whose `kernel.json` cannot be used are skipped (and logged).
    pub fn list(search: &SearchPath) -> Vec<KernelSpec> {
        let mut seen = HashSet::new();
        let mut specs: Vec<KernelSpec> = kernel_dirs(search)
            .filter(|(name, _)| seen.insert(name.clone()))
            .filter_map(|(name, dir)| {
                KernelSpec::from_dir(&name, &dir)
                    .inspect_err(|error| tracing::warn!(%error, "skipping kernelspec"))
                    .ok()
            })
            .collect();
        specs.sort_by(|a, b| a.name.cmp(&b.name));
        specs
    }

    /// Reads the kernelspec in `resource_dir` (which holds `kernel.json`) under `name`.
    pub fn from_dir(name: &str, resource_dir: &Path) -> Result<KernelSpec> {
        let path = resource_dir.join("kernel.json");
        let invalid = |problem: String| Error::InvalidKernelSpec {
            path: path.clone(),
            problem,
        };
        let text = std::fs::read(&path).map_err(|e| invalid(e.to_string()))?;
        let spec: JupyterKernelspec =
            serde_json::from_slice(&text).map_err(|e| invalid(e.to_string()))?;
        if spec.argv.is_empty() {
            return Err(invalid("`argv` is empty".to_owned()));
        }
        let interrupt_mode = match spec.interrupt_mode.as_deref() {
            None | Some("signal") => InterruptMode::Signal,
            Some("message") => InterruptMode::Message,
            Some(other) => {
                return Err(invalid(format!(
                    "`interrupt_mode` is {other:?}, not \"signal\" or \"message\""
                )));
            }
        };
        Ok(KernelSpec {
            name: name.to_lowercase(),
            resource_dir: resource_dir.to_owned(),
            argv: spec.argv,
            display_name: spec.display_name,
            language: spec.language,
            interrupt_mode,
            env: spec.env.unwrap_or_default().into_iter().collect(),
            metadata: spec.metadata.unwrap_or_default().into_iter().collect(),
        })
    }
}

/// `(lowercased name, directory)` of every kernelspec directory on the path, in search order.
fn kernel_dirs(search: &SearchPath) -> impl Iterator<Item = (String, PathBuf)> + '_ {
    search.dirs().iter().flat_map(|data_dir| {
        let mut found: Vec<(String, PathBuf)> = std::fs::read_dir(data_dir.join("kernels"))
            .into_iter()
            .flatten()
            .filter_map(|entry| {
                let dir = entry.ok()?.path();
                let name = dir.file_name()?.to_str()?.to_lowercase();
                dir.join("kernel.json").is_file().then_some((name, dir))
            })
            .collect();
        // Directory order is the file system's; sort so a case-insensitive clash is decided
        // the same way on every machine.
        found.sort();
        found
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn search(vars: &[(&str, &str)], prefixes: &[&str]) -> Vec<String> {
        let var = |key: &str| {
            vars.iter()
                .find(|(k, _)| *k == key)
                .map(|(_, v)| OsString::from(v))
        };
        SearchPath::from_lookup(var, prefixes.iter().map(PathBuf::from))
            .dirs()
            .iter()
            .map(|d| d.display().to_string())
            .collect()
    }

    #[test]
    fn jupyter_path_then_environment_then_user_then_system() {
        let dirs = search(
            &[
                ("JUPYTER_PATH", "/a:/b"),
                ("HOME", "/home/ada"),
                ("VIRTUAL_ENV", "/venv"),
            ],
            &["/repo/.venv"],
        );
        assert_eq!(
            dirs,
            [
                "/a",
                "/b",
                "/venv/share/jupyter",
                "/repo/.venv/share/jupyter",
                "/home/ada/.local/share/jupyter",
                "/usr/local/share/jupyter",
                "/usr/share/jupyter",
            ]
        );
    }

    #[test]
    fn user_first_when_jupyter_prefer_env_path_is_false() {
        let dirs = search(
            &[
                ("JUPYTER_DATA_DIR", "/data"),
                ("HOME", "/home/ada"),
                ("JUPYTER_PREFER_ENV_PATH", "no"),
            ],
            &["/repo/.venv", "/repo/.venv"],
        );
        assert_eq!(
            dirs,
            [
                "/data",
                "/repo/.venv/share/jupyter",
                "/usr/local/share/jupyter",
                "/usr/share/jupyter",
            ]
        );
    }

    #[test]
    fn xdg_data_home_and_no_home() {
        let dirs = search(&[("HOME", "/h"), ("XDG_DATA_HOME", "/xdg")], &[]);
        assert_eq!(dirs[0], "/xdg/jupyter");
        // A system prefix is not listed twice.
        let dirs = search(&[], &["/usr"]);
        assert_eq!(dirs, ["/usr/local/share/jupyter", "/usr/share/jupyter"]);
    }

    fn write_spec(data_dir: &Path, name: &str, json: &str) {
        let dir = data_dir.join("kernels").join(name);
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("kernel.json"), json).unwrap();
    }

    #[test]
    fn first_directory_wins_names_ignore_case_and_bad_specs_are_reported() {
        let first = tempfile::tempdir().unwrap();
        let second = tempfile::tempdir().unwrap();
        write_spec(
            first.path(),
            "Ruby",
            r#"{"argv": ["irb", "{connection_file}"], "display_name": "Ruby 1", "language": "ruby",
                "interrupt_mode": "message", "env": {"A": "1"}}"#,
        );
        write_spec(
            second.path(),
            "ruby",
            r#"{"argv": ["x"], "display_name": "Ruby 2", "language": "ruby"}"#,
        );
        write_spec(
            second.path(),
            "broken",
            r#"{"argv": ["x"], "display_name": "B", "language": "x", "interrupt_mode": "poke"}"#,
        );
        let path = SearchPath::from_dirs([first.path(), second.path()]);

        let ruby = KernelSpec::find("RUBY", &path).unwrap();
        assert_eq!(ruby.name, "ruby");
        assert_eq!(ruby.display_name, "Ruby 1");
        assert_eq!(ruby.interrupt_mode, InterruptMode::Message);
        assert_eq!(ruby.env["A"], "1");
        assert_eq!(ruby.resource_dir, first.path().join("kernels/Ruby"));

        let names: Vec<_> = KernelSpec::list(&path)
            .into_iter()
            .map(|s| s.name)
            .collect();
        assert_eq!(names, ["ruby"]);

        let error = KernelSpec::find("broken", &path).unwrap_err().to_string();
        assert!(error.contains("\"poke\""), "{error}");

        let error = KernelSpec::find("julia", &path).unwrap_err().to_string();
        assert!(error.contains("\"julia\""), "{error}");
        assert!(error.contains("found: ruby"), "{error}");
        assert!(
            error.contains(&first.path().display().to_string()),
            "{error}"
        );
        assert!(
            error.contains(&second.path().display().to_string()),
            "{error}"
        );
    }
}
