//! What this host knows about itself and its devices: its name and boot, which devices are in
//! use here, and the holder state mmpd keeps in its run directory.

pub mod busy;
pub mod identity;
pub mod logging;
pub mod run_dir;
