//! The relay benchmark: inloop's relay, the Node `@y/websocket-server` and y-sweet under the same
//! load, in the same run, each in its own process, one after the other.
//!
//! Run it through `scripts/bench-relay.sh` (installs y-sweet and the npm packages if missing) or
//! as `cargo bench -p inloop-relay --bench fanout -- [options]`; `-- --help` explains the options.
//!
//! The load generator is this process. Each simulated client is one WebSocket doing the smallest
//! y-websocket handshake (an empty SyncStep1, an empty SyncStep2 for any SyncStep1 the server
//! sends) and no Yjs document: updates are hand-encoded, each an independent entry of the root
//! map "m", and receivers read only the client and clock of each update to find its send time.
//!
//! The modules, by concern: [`options`] (the command line), [`servers`] (the servers under
//! test, each a child process), [`wire`] (the updates, encoded by hand and read back),
//! [`peers`] (the simulated clients), [`measure`] (one measured step and its figures),
//! [`workloads`] (the scenarios and their tables) and [`report`] (what is printed).

mod measure;
mod options;
mod peers;
mod report;
mod servers;
mod wire;
mod workloads;

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, Result, ensure};
use clap::Parser;

use options::{Options, Scenario};
use report::{print_setup, print_verdicts};
use servers::{serve_inloop, servers_to_run};
use wire::check_update_encoding;
use workloads::Bench;

// As in the `inloop` binary, so the relay measured is the relay shipped.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    let options = Options::parse();
    let outcome = tokio::runtime::Runtime::new()
        .map_err(anyhow::Error::from)
        .and_then(|runtime| match &options.serve_inloop {
            Some(serve) => {
                let addr = serve[0].parse().context("--serve-inloop ADDR")?;
                runtime.block_on(serve_inloop(addr, PathBuf::from(&serve[1]), &options))
            }
            None => runtime.block_on(run(options)),
        });
    match outcome {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("error: {error:#}");
            ExitCode::FAILURE
        }
    }
}

async fn run(options: Options) -> Result<()> {
    ensure!(options.seconds > 0.0, "--seconds must be positive");
    ensure!(
        options.clients >= 2,
        "--clients needs at least 2 (a sender and a receiver)"
    );
    ensure!(
        options.docs >= 1 && options.many_clients >= 2 * options.docs,
        "--many-clients must give every one of --docs at least 2 clients"
    );
    ensure!(
        options.rates.iter().all(|r| *r > 0.0) && options.many_rate > 0.0,
        "rates must be positive"
    );
    check_update_encoding()?;
    let servers = servers_to_run(&options)?;
    let scenarios = if options.scenario.is_empty() {
        vec![Scenario::OneDoc, Scenario::ManyDocs, Scenario::Idle]
    } else {
        options.scenario.clone()
    };
    check_file_limit(&options, &scenarios)?;
    print_setup(&options, &servers);
    let mut bench = Bench {
        options,
        servers,
        next_client_id: 1,
        verdicts: Vec::new(),
    };
    for scenario in scenarios {
        match scenario {
            Scenario::OneDoc => bench.one_doc().await?,
            Scenario::ManyDocs => bench.many_docs().await?,
            Scenario::Idle => bench.idle().await?,
        }
    }
    print_verdicts(&bench.verdicts);
    Ok(())
}

/// Every client is a socket here and one on the server: fail early, clearly, if the open-file
/// limit (inherited by the servers) cannot hold them.
fn check_file_limit(options: &Options, scenarios: &[Scenario]) -> Result<()> {
    let most_clients = scenarios
        .iter()
        .map(|scenario| match scenario {
            Scenario::OneDoc => options.clients,
            Scenario::ManyDocs => options.many_clients,
            Scenario::Idle => options.idle + 1,
        })
        .max()
        .unwrap_or(0);
    let limits = std::fs::read_to_string("/proc/self/limits").unwrap_or_default();
    let soft_limit = limits
        .lines()
        .find(|line| line.starts_with("Max open files"))
        .and_then(|line| line.split_whitespace().nth(3))
        .and_then(|soft| soft.parse::<usize>().ok());
    if let Some(soft_limit) = soft_limit {
        ensure!(
            soft_limit >= most_clients + 256,
            "the open-file limit is {soft_limit}, too low for {most_clients} clients: raise it \
             (`ulimit -n 65536`) or use fewer clients"
        );
    }
    Ok(())
}
