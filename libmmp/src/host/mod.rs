//! What this host knows about itself and its devices: its name and boot, which devices are in
//! use here, the block device under a mounted path, and the holder state mmpd keeps in its run
//! directory.

pub mod backing;
pub mod busy;
pub mod identity;
pub mod logging;
pub mod run_dir;
