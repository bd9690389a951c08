//! mmp-tool: check and inspect ext4 multiple-mount protection before mounting shared storage.

mod cli;
mod cmd;
mod common;
mod exit;

use clap::Parser;
use cli::{Cli, Command};
use cmd::{
    check, claim, clear, disable, dump, enable, format_area, interval, mount, release, status,
};
use std::process::ExitCode;

fn init_logging(verbose: u8) {
    let default = match verbose {
        0 => "warn",
        1 => "info",
        _ => "debug",
    };
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_target(false)
        .try_init();
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    init_logging(cli.verbose);
    let outcome = match &cli.command {
        Command::Status(a) => status::run(a),
        Command::Check(a) => check::run(a),
        Command::Dump(a) => dump::run(a),
        Command::Claim(a) => claim::run(a),
        Command::Release(a) => release::run(a),
        Command::Mount(a) => mount::run(a),
        Command::FormatArea(a) => format_area::run(a),
        Command::Enable(a) => enable::run(a),
        Command::Disable(a) => disable::run(a),
        Command::Interval(a) => interval::run(a),
        Command::Clear(a) => clear::run(a),
    };
    match outcome {
        Ok(code) => ExitCode::from(code),
        Err(e) => {
            eprintln!("mmp-tool: {e}");
            ExitCode::from(e.exit_code())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;
    use std::path::Path;

    #[test]
    fn verify_cli() {
        Cli::command().debug_assert();
    }

    /// The pages in man/ are generated from these clap definitions. `UPDATE_MAN=1 cargo test
    /// -p mmp-tool man_page` rewrites them.
    #[test]
    fn man_page_is_current() {
        // Admin tool: section 8, one page for the tool and one per subcommand. The exit codes
        // are in the after-help text for now (no table to pass yet).
        let man_dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../man");
        test_support::man::assert_current(Cli::command(), "8", &man_dir, true, &[]);
    }
}
