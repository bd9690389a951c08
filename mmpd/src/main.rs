//! mmpd: the MMP heartbeat daemon.
//!
//! Not implemented yet (issue 4). This binary exists so the workspace layout is
//! complete; it refuses to run rather than pretend to hold a device.

use std::process::ExitCode;

fn main() -> ExitCode {
    eprintln!(
        "mmpd: not implemented yet; it does NOT protect any device. \
         Use `mmp-tool check` before mounting."
    );
    ExitCode::from(2)
}
