//! Running the kernel inside a container image (Docker or Podman) instead of on this machine:
//! the runtime stays outside and talks to the kernel through published ports.

use std::path::Path;

use crate::{Error, Result};

/// Where the kernel's connection file is mounted inside the container.
pub const CONTAINER_CONNECTION_DIR: &str = "/inloop";

/// The container engine's command-line program.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Engine {
    Docker,
    Podman,
}

impl Engine {
    pub fn as_str(self) -> &'static str {
        match self {
            Engine::Docker => "docker",
            Engine::Podman => "podman",
        }
    }
}

impl std::str::FromStr for Engine {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self> {
        match s {
            "docker" => Ok(Engine::Docker),
            "podman" => Ok(Engine::Podman),
            other => Err(Error::UnknownEngine(other.to_owned())),
        }
    }
}

/// A kernel in a container: the image must have Python with ipykernel.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Container {
    pub engine: Engine,
    pub image: String,
    /// Passed to `--gpus` (e.g. `all`); `None` gives the container no GPU.
    pub gpus: Option<String>,
}

impl Container {
    /// The command that runs a kernel named `name` in the container: the folder holding the
    /// connection file mounted read-only, each of the kernel's `ports` published on the host's
    /// loopback only (the kernel binds them on all of the container's interfaces), GPUs passed
    /// through, and `--init` so an interrupt (SIGINT, forwarded by the attached client) reaches
    /// the kernel.
    pub fn command(&self, name: &str, connection_dir: &Path, ports: &[u16]) -> Vec<String> {
        let mut command = vec![
            self.engine.as_str().to_owned(),
            "run".into(),
            "--rm".into(),
            "--interactive".into(),
            "--init".into(),
            "--name".into(),
            name.to_owned(),
            "--volume".into(),
            format!(
                "{}:{CONTAINER_CONNECTION_DIR}:ro",
                connection_dir.to_string_lossy()
            ),
        ];
        for port in ports {
            command.push("--publish".into());
            command.push(format!("127.0.0.1:{port}:{port}"));
        }
        if let Some(gpus) = &self.gpus {
            command.push("--gpus".into());
            command.push(gpus.clone());
        }
        command.push(self.image.clone());
        command.extend(
            [
                "python",
                "-m",
                "ipykernel_launcher",
                "-f",
                &format!("{CONTAINER_CONNECTION_DIR}/kernel.json"),
            ]
            .map(str::to_owned),
        );
        command
    }

    /// The command that removes the container, whatever state it is in (run when the kernel
    /// is dropped: killing the attached client does not stop the container).
    pub fn remove_command(&self, name: &str) -> Vec<String> {
        [self.engine.as_str(), "rm", "--force", name]
            .map(str::to_owned)
            .to_vec()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn docker_with_gpus() {
        let container = Container {
            engine: Engine::Docker,
            image: "ghcr.io/acme/torch:2".into(),
            gpus: Some("all".into()),
        };
        let command = container.command("inloop-kernel-1", Path::new("/tmp/k"), &[5000, 5001]);
        assert_eq!(
            command.join(" "),
            "docker run --rm --interactive --init --name inloop-kernel-1 \
             --volume /tmp/k:/inloop:ro --publish 127.0.0.1:5000:5000 \
             --publish 127.0.0.1:5001:5001 --gpus all ghcr.io/acme/torch:2 \
             python -m ipykernel_launcher -f /inloop/kernel.json"
        );
        assert_eq!(
            container.remove_command("inloop-kernel-1"),
            ["docker", "rm", "--force", "inloop-kernel-1"]
        );
    }

    #[test]
    fn podman_without_gpus() {
        let container = Container {
            engine: "podman".parse().unwrap(),
            image: "python:3.12".into(),
            gpus: None,
        };
        let command = container.command("k", Path::new("/c"), &[1]);
        assert_eq!(command[0], "podman");
        assert!(!command.contains(&"--gpus".to_owned()));
        assert!("lxc".parse::<Engine>().is_err());
    }
}
