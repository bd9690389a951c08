//! The `lockd-recover` command: parse, set up logging, run the subcommand, map its outcome to
//! the documented exit code (`error.rs`). Called as `nfs-grace` or `nfs-locks` (the OCF agents'
//! symlinks), it runs that agent instead (`agent/`).

mod agent;
mod cli;
mod cmd;
mod error;

use clap::Parser;
use cli::{Cli, Command};
use cmd::Ctx;
use lockd_recover::knobs::ProcRoot;
use std::process::ExitCode;

/// Levels for -v counts; lockd-recover's own events only unless RUST_LOG says otherwise.
const LOG: libmmp::host::logging::LogDefaults = libmmp::host::logging::LogDefaults {
    levels: &["warn", "info", "debug", "trace"],
    only_crate: Some("lockd_recover"),
};

fn main() -> ExitCode {
    let argv0 = std::env::args_os().next().unwrap_or_default();
    if let Some(name) = libmmp::ocf::agent_name(&argv0, agent::AGENTS) {
        return agent::main(name, LOG);
    }
    let cli = Cli::parse();
    libmmp::host::logging::init(LOG, cli.verbose);
    let ctx = Ctx {
        out: cmd::Out { json: cli.json },
        proc: ProcRoot::new(&cli.proc_root),
    };
    let outcome = match &cli.command {
        Command::Notify(a) => cmd::notify::run(a, &ctx),
        Command::Release(a) => cmd::release::run(a, &ctx),
        Command::Grace(c) => cmd::grace::run(c, &ctx),
        Command::Record(a) => cmd::record::run(a, &ctx),
        Command::WaitReclaim(a) => cmd::wait_reclaim::run(a, &ctx),
        Command::Takeover(a) => cmd::takeover::run(a, &ctx),
        Command::Handoff(a) => cmd::handoff::run(a, &ctx),
        Command::Show(a) => cmd::show::run(a, &ctx),
        Command::Tracker(a) => cmd::tracker::run(a, &ctx),
        Command::StartNfsd(a) => cmd::start_nfsd::run(a, &ctx),
    };
    match outcome {
        Ok(code) => ExitCode::from(code as u8),
        Err(e) => {
            eprintln!("lockd-recover: error: {e}");
            ExitCode::from(e.exit_code() as u8)
        }
    }
}
