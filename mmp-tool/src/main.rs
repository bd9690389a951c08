//! mmp-tool: check and inspect ext4 multiple-mount protection before mounting shared storage.
//!
//! `main` parses the command line, sets up logging, runs the subcommand (one module per
//! subcommand in `cmd/`) and maps how it ended to an exit code through the one table in
//! `exit.rs`. Called as `mmp-fs` (the OCF resource agent's symlink), it is that agent instead
//! (`agent/`).

mod agent;
mod cli;
mod cmd;
mod error;
mod exit;
mod output;
mod progress;

use clap::{CommandFactory, FromArgMatches};
use cli::{Cli, Command};
use cmd::{
    check, claim, clear, disable, dump, enable, format_area, handoff, interval, mount, release,
    status,
};
use exit::Outcome;
use std::process::ExitCode;

/// The command line: the clap definitions, with the exit-code table in `--help`.
fn command() -> clap::Command {
    Cli::command().after_long_help(format!(
        "{}\n\n{}",
        exit::help_text(),
        cli::AFTER_EXIT_STATUS
    ))
}

/// Levels for -v counts, through the one logging setup (libmmp::host::logging).
const LOG: libmmp::host::logging::LogDefaults = libmmp::host::logging::LogDefaults {
    levels: &["warn", "info", "debug"],
    only_crate: None,
};

fn run(command: &Command) -> Result<Outcome, error::Error> {
    match command {
        Command::Status(a) => status::run(a),
        Command::Check(a) => check::run(a),
        Command::Dump(a) => dump::run(a),
        Command::Claim(a) => claim::run(a),
        Command::Release(a) => release::run(a),
        Command::Handoff(a) => handoff::run(a),
        Command::Mount(a) => mount::run(a),
        Command::FormatArea(a) => format_area::run(a),
        Command::Enable(a) => enable::run(a),
        Command::Disable(a) => disable::run(a),
        Command::Interval(a) => interval::run(a),
        Command::Clear(a) => clear::run(a),
    }
}

fn main() -> ExitCode {
    let argv0 = std::env::args_os().next().unwrap_or_default();
    if libmmp::ocf::agent_name(&argv0, agent::AGENTS).is_some() {
        return agent::main();
    }
    // Usage errors exit 2 (clap's own code, the table's Failed).
    let cli = match command()
        .try_get_matches()
        .and_then(|m| Cli::from_arg_matches(&m))
    {
        Ok(cli) => cli,
        Err(e) => return usage_error(e),
    };
    libmmp::host::logging::init(LOG, cli.verbose);
    let outcome = run(&cli.command).unwrap_or_else(|e| {
        eprintln!("mmp-tool: {e}");
        let outcome = e.outcome();
        if cli.command.json() {
            output::print_error_json(&e.to_string(), outcome);
        }
        outcome
    });
    ExitCode::from(outcome.exit_code())
}

/// clap's message on stderr and its exit code (2 for usage errors); with `--json` anywhere on
/// the command line, also the error as JSON on stdout, so that a script reading the JSON is
/// never left with nothing. `--help` and `--version` are clap's to print.
fn usage_error(e: clap::Error) -> ExitCode {
    use clap::error::ErrorKind;
    let json = std::env::args_os().skip(1).any(|a| a == "--json");
    if json && !matches!(e.kind(), ErrorKind::DisplayHelp | ErrorKind::DisplayVersion) {
        let _ = e.print();
        let msg = e.render().to_string();
        let first = msg.lines().next().unwrap_or("usage error");
        output::print_error_json(first.trim_start_matches("error: "), Outcome::Failed);
        return ExitCode::from(Outcome::Failed.exit_code());
    }
    e.exit()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    #[test]
    fn verify_cli() {
        command().debug_assert();
    }

    /// The pages in man/ are generated from these clap definitions by the one generator in
    /// tests/support, with the exit-code table as their EXIT STATUS section. `UPDATE_MAN=1
    /// cargo test -p mmp-tool man_page` rewrites them.
    #[test]
    fn man_page_is_current() {
        // Admin tool: section 8, one page for the tool and one per subcommand. The table has
        // its own section there, so the main page's extra text is only the rest.
        let cmd = Cli::command().after_long_help(cli::AFTER_EXIT_STATUS);
        let man_dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../man");
        test_support::man::assert_current(cmd, "8", &man_dir, true, exit::EXIT_CODES);
    }
}
