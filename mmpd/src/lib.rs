//! mmpd: hold shared block devices for this node through their MMP block.
//!
//! - [`cli`] and [`config`]: the command line and the TOML file, merged and validated.
//! - [`claim_thread`]: claim threads, one per device being claimed (protocol in `libmmp`).
//! - [`daemon`]: the main loop: the heartbeat schedule, signals, systemd, watchdog, state
//!   files, fence actions.
//! - [`clock`]: the daemon's clock (`CLOCK_BOOTTIME` since the start), shared by every thread.
//! - [`pool`]: the I/O threads that run the beats and releases for the main loop.
//! - [`fence`]: the fence actions and the watchdog device.
//! - [`error`]: the daemon's errors and the one table of exit statuses.

pub mod claim_thread;
pub mod cli;
pub mod config;
pub mod daemon;
pub mod error;
pub mod fence;
pub mod pool;
