//! mmpd: the MMP holder daemon. See `mmpd --help` and mmpd(8).

use clap::Parser;
use mmpd::cli::Cli;
use mmpd::config;
use mmpd::daemon::Daemon;
use mmpd::error::{DaemonError, ExitStatus};
use std::process::ExitCode;

/// Levels for -v counts (a daemon logs info by default), through the one logging setup.
const LOG: libmmp::host::logging::LogDefaults = libmmp::host::logging::LogDefaults {
    levels: &["info", "debug", "trace"],
    only_crate: None,
};

/// Parse, set up, run; every error leaves through [`DaemonError::exit_status`], the one table.
fn main() -> ExitCode {
    let cli = Cli::parse();
    libmmp::host::logging::init(LOG, cli.verbose);
    match run(cli) {
        Ok(status) => status.into(),
        Err(e) => {
            // A configuration error comes before the daemon runs: stderr only.
            if !matches!(e, DaemonError::Config(_)) {
                tracing::error!("{e}");
            }
            eprintln!("mmpd: {e}");
            e.exit_status().into()
        }
    }
}

fn run(cli: Cli) -> Result<ExitStatus, DaemonError> {
    let cfg = config::load(&cli)?;
    let check_only = cli.check_config;
    let daemon = Daemon::new(cli, cfg)?;
    if check_only {
        daemon.check_only()?;
        Ok(ExitStatus::Success)
    } else {
        daemon.run()
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
        // The exit-code table is in the after-help text (ExitStatus::help), so the man page
        // prints it once, from there.
        let man_dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../man");
        test_support::man::assert_current(Cli::command(), "8", &man_dir, false, &[]);
    }
}
