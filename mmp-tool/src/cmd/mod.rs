//! One module per subcommand; each has a `run(args)` that `main` dispatches to.

pub mod check;
pub mod claim;
pub mod clear;
pub mod disable;
pub mod dump;
mod edit;
pub mod enable;
pub mod format_area;
pub mod handoff;
pub mod interval;
mod local;
pub mod mount;
pub mod release;
pub mod status;
