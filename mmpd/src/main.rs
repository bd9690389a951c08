//! mmpd: the MMP holder daemon. See `mmpd --help` and mmpd(8).

use clap::Parser;
use mmpd::cli::Cli;
use mmpd::config;
use mmpd::daemon::Daemon;
use mmpd::error::{DaemonError, ExitStatus};
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

/// Parse, set up, run; every error leaves through [`DaemonError::exit_status`], the one table.
fn main() -> ExitCode {
    let cli = Cli::parse();
    init_logging(cli.verbose);
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
    use std::path::{Path, PathBuf};

    #[test]
    fn verify_cli() {
        Cli::command().debug_assert();
    }

    fn man_page() -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../man/mmpd.8")
    }

    /// man/mmpd.8 is generated from the clap definition. `UPDATE_MAN=1 cargo test -p mmpd
    /// man_page_is_current` rewrites it.
    #[test]
    fn man_page_is_current() {
        let mut out = Vec::new();
        clap_mangen::Man::new(Cli::command())
            .section("8")
            .render(&mut out)
            .unwrap();
        let fresh = String::from_utf8(out).unwrap();
        if std::env::var_os("UPDATE_MAN").is_some() {
            std::fs::write(man_page(), &fresh).unwrap();
            return;
        }
        let current = std::fs::read_to_string(man_page()).unwrap_or_default();
        assert!(
            current == fresh,
            "{} is out of date: run `UPDATE_MAN=1 cargo test -p mmpd man_page_is_current`",
            man_page().display()
        );
    }
}
