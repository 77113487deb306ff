//! `inloop`: the notebook you work on together and don't lose.
//!
//! Thin by design: parse flags, set up logging, call a library.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context, Result};
use clap::{Parser, Subcommand};
use inloop_doc::Notebook;

// Documents are many small allocations; mimalloc makes importing a large notebook about twice as
// fast as glibc's allocator (measured by `cargo bench -p inloop-doc --bench ipynb`).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Debug, Parser)]
#[command(
    name = "inloop",
    version,
    about = "inloop: notebooks you edit together, run anywhere and never lose"
)]
#[command(
    after_help = "Notebooks are Yrs CRDT documents; `.ydoc` files hold one whole document \
                        as a single Yrs update (v1 encoding)."
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Convert an .ipynb notebook (nbformat 4.0 to 4.5) into a .ydoc document.
    Import {
        /// The notebook to read.
        input: PathBuf,
        /// Where to write the document [default: the input with a .ydoc extension].
        #[arg(long, short)]
        out: Option<PathBuf>,
    },
    /// Convert a .ydoc document into an .ipynb notebook (nbformat 4.5).
    Export {
        /// The document to read.
        input: PathBuf,
        /// Where to write the notebook, `-` for standard output [default: the input with an
        /// .ipynb extension].
        #[arg(long, short)]
        out: Option<PathBuf>,
    },
}

fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("INLOOP_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
        )
        .with_writer(std::io::stderr)
        .init();
    match run(Cli::parse()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("error: {error:#}");
            ExitCode::FAILURE
        }
    }
}

fn run(cli: Cli) -> Result<()> {
    match cli.command {
        Command::Import { input, out } => {
            let bytes = fs::read(&input).with_context(|| format!("reading {}", input.display()))?;
            let update = Notebook::ipynb_to_update_v1(&bytes)
                .with_context(|| format!("reading {}", input.display()))?;
            let out = out.unwrap_or_else(|| input.with_extension("ydoc"));
            write_atomically(&out, &update)
        }
        Command::Export { input, out } => {
            let update =
                fs::read(&input).with_context(|| format!("reading {}", input.display()))?;
            let notebook = Notebook::from_update_v1(&update)
                .with_context(|| format!("reading {}", input.display()))?;
            let text = notebook.to_ipynb();
            match out {
                Some(out) if out.as_os_str() == "-" => {
                    print!("{text}");
                    Ok(())
                }
                out => write_atomically(
                    &out.unwrap_or_else(|| input.with_extension("ipynb")),
                    text.as_bytes(),
                ),
            }
        }
    }
}

/// Writes through a temporary file in the same folder and renames it into place, so a failure
/// never leaves a half-written file where a good one was.
fn write_atomically(path: &Path, bytes: &[u8]) -> Result<()> {
    let context = || format!("writing {}", path.display());
    let dir = match path.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir,
        _ => Path::new("."),
    };
    let name = path.file_name().with_context(context)?.to_string_lossy();
    let tmp = dir.join(format!(".{name}.inloop-tmp"));
    fs::write(&tmp, bytes).with_context(context)?;
    fs::rename(&tmp, path).with_context(context)
}
