use std::process::ExitCode;

use clap::Parser;
use lock_torture::app::{self, Outcome};
use lock_torture::cli::{Cli, EXIT_OK, EXIT_USAGE, EXIT_VIOLATION};

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            // --help and --version are not errors; everything else clap rejects is usage.
            let code = if e.use_stderr() { EXIT_USAGE } else { EXIT_OK };
            let _ = e.print();
            return ExitCode::from(code);
        }
    };
    app::init_logging(cli.verbose);
    // The one table from outcome to exit code (documented in --help and the man page).
    ExitCode::from(match app::run(cli) {
        Ok(Outcome::Clean) => EXIT_OK,
        Ok(Outcome::Violation) => EXIT_VIOLATION,
        Err(e) => {
            eprintln!("lock-torture: error: {e}");
            EXIT_USAGE
        }
    })
}
