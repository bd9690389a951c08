//! mmpd: hold shared block devices for this node through their MMP block.
//!
//! - [`cli`] and [`config`]: the command line and the TOML file, merged and validated.
//! - [`worker`]: one thread per device: claim, heartbeat, release (protocol in `libmmp`).
//! - [`daemon`]: the main thread: signals, systemd, watchdog, state files, fence actions.
//! - [`fence`]: the fence actions and the watchdog device.

pub mod cli;
pub mod config;
pub mod daemon;
pub mod exit;
pub mod fence;
pub mod worker;
