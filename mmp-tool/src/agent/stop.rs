//! stop: unmount (killing users if force_unmount), then release. Idempotent, and it never
//! writes to a device it has not mounted: a stop after a refused start (the device in use on
//! another node) finds nothing mounted here and returns 0 (a failed stop gets the node
//! fenced).
//!
//! holder=ext4: the kernel's unmount writes CLEAN (kmmpd stops). holder=mmpd: after the
//! unmount, SIGTERM makes mmpd write CLEAN and exit; never before, so the area is held for as
//! long as the filesystem is mounted.

use super::mounts::{self, MountState};
use super::params::{Config, Holder};
use super::{mmpd, Budget, Res};

pub fn stop(cfg: &Config, budget: &Budget) -> Res {
    match mounts::state(cfg)? {
        MountState::Here => {
            tracing::info!(
                "unmounting {} from {}",
                cfg.device.display(),
                cfg.directory.display()
            );
            mounts::unmount(cfg, budget)?;
        }
        MountState::NotMounted => {}
        // Not ours to touch: our resource is not mounted here.
        MountState::Other(why) => tracing::info!("not mounted here ({why}); leaving it alone"),
    }
    match &cfg.holder {
        Holder::Ext4 => Ok(()),
        Holder::Mmpd(m) => mmpd::stop(m, budget),
    }
}
