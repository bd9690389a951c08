//! The checked-in man page must match the clap definition (UPDATE_MAN=1 rewrites it).

use clap::CommandFactory;
use std::path::Path;

#[test]
fn man_page_is_current() {
    // A test tool: section 1, one page with a section per subcommand. The exit codes are in
    // the after-help text for now (no table to pass yet).
    let man_dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../man");
    test_support::man::assert_current(lock_torture::cli::Cli::command(), "1", &man_dir, false, &[]);
}
