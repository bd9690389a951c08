//! mmpd: the MMP holder daemon. See `mmpd --help` and mmpd(8).

use clap::Parser;
use mmpd::cli::Cli;
use mmpd::daemon::Daemon;
use mmpd::{config, exit};
use std::io::IsTerminal;
use std::process::ExitCode;

fn init_logging(verbose: u8) {
    let default = match verbose {
        0 => "info",
        1 => "debug",
        _ => "trace",
    };
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    // Under systemd stderr goes to the journal, which adds its own timestamps.
    let journal = std::env::var_os("JOURNAL_STREAM").is_some();
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .with_target(false);
    let _ = if journal {
        builder.without_time().try_init()
    } else {
        builder.try_init()
    };
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    init_logging(cli.verbose);
    let cfg = match config::load(&cli) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("mmpd: {e}");
            return ExitCode::from(exit::ERROR);
        }
    };
    let check_only = cli.check_config;
    let result = Daemon::new(cli, cfg).and_then(|daemon| {
        if check_only {
            daemon.check_only().map(|()| exit::OK)
        } else {
            daemon.run()
        }
    });
    match result {
        Ok(code) => ExitCode::from(code),
        Err(f) => {
            tracing::error!("{}", f.message);
            eprintln!("mmpd: {}", f.message);
            ExitCode::from(f.code)
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

    /// man/mmpd.8 is generated from the clap definition. `UPDATE_MAN=1 cargo test -p mmpd
    /// man_page_is_current` rewrites it.
    #[test]
    fn man_page_is_current() {
        // The exit codes are in the after-help text for now (no table to pass yet).
        let man_dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../man");
        test_support::man::assert_current(Cli::command(), "8", &man_dir, false, &[]);
    }
}
