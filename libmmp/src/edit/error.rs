//! Why an edit was refused or failed.

use super::metadata::Metadata;
use super::{MAX_UPDATE_INTERVAL, MIN_UPDATE_INTERVAL};
use crate::error::Error;
use crate::host::busy::LocalUse;
use crate::ondisk::geometry::LayoutError;
use std::io;

/// Why an edit was refused or failed. Every message names the device, the reason and the next
/// step; [`EditError::is_in_use`] says which mean "in use" (exit 1 in mmp-tool).
#[derive(Debug, thiserror::Error)]
pub enum EditError {
    #[error(transparent)]
    Fs(#[from] Error),

    #[error("{device}: cannot tell whether it is in use on this host: {source}; refusing to write. Next: make /proc and /sys readable, or use tune2fs")]
    BusyCheck {
        device: String,
        #[source]
        source: io::Error,
    },

    #[error("{device} is in use on this host: {}; refusing to write. Next: {}, make sure no other node has it mounted, and retry", list(users), steps(users))]
    InUseLocally {
        device: String,
        users: Vec<LocalUse>,
    },

    #[error("{device}: the kernel refuses an exclusive open (EBUSY): it is mounted (perhaps in another mount namespace or container), or device-mapper, md or another program holds it; refusing to write. Next: unmount it or stop the holder, and retry")]
    DeviceBusy { device: String },

    #[error("{device}: another program holds an exclusive lock on the image (another `mmp-tool` edit?); refusing to write. Next: wait for it to finish and retry")]
    Locked { device: String },

    #[error("{device}: {source}; refusing to write. Next: {next}")]
    Layout {
        device: String,
        #[source]
        source: LayoutError,
        next: String,
    },

    #[error("{device}: the journal needs recovery (needs_recovery is set: the filesystem was not cleanly unmounted); refusing to write. Next: run `e2fsck -f {device}` to replay the journal (or mount and unmount it on one node), then retry")]
    NeedsRecovery { device: String },

    #[error("{device}: the kernel recorded filesystem errors (ERROR_FS in s_state); refusing to write. Next: run `e2fsck -f {device}`, then retry")]
    HasErrors { device: String },

    #[error("{device}: MMP is not enabled; refusing to {action}. Next: `mmp-tool enable {device}` enables it")]
    NotEnabled {
        device: String,
        action: &'static str,
    },

    #[error("{device}: MMP is already enabled with update interval {current} s; refusing to enable it again with {requested} s. Next: `mmp-tool interval {device} {requested}`")]
    AlreadyEnabled {
        device: String,
        current: u16,
        requested: u16,
    },

    #[error("{device}: MMP block {block} is {}: {detail}; refusing to {action}. Next: {next}", state.replace('_', " "))]
    MmpNotClean {
        device: String,
        block: u64,
        /// `live`, `fsck`, `unknown`, `bad_checksum`, `bad_magic`.
        state: &'static str,
        detail: String,
        action: &'static str,
        next: String,
    },

    #[error("{device}: the superblock says the MMP block is block {block}, but block {block} is {what}: {}; refusing to {action}. Nothing was written. Next: make sure no node uses the filesystem, then `tune2fs -f -O ^mmp {device}` (it drops the pointer without writing that block), `e2fsck -f {device}` (it frees the old MMP block), and `mmp-tool enable {device}` (it allocates a free one){}", what.harm(), what.e2fsck_warning())]
    MmpBlockInMetadata {
        device: String,
        block: u64,
        what: Metadata,
        action: &'static str,
    },

    #[error("{device}: MMP block {block} changed while it was watched ({detail}): another node is using the filesystem; {written}. Next: {next}")]
    Changed {
        device: String,
        block: u64,
        detail: String,
        written: String,
        next: String,
    },

    #[error("{device}: {what}; refusing to write. Next: run `e2fsck -f {device}`, then retry")]
    Inconsistent { device: String, what: String },

    #[error(
        "{device}: no free block for the MMP block; refusing. Next: free some space and retry"
    )]
    NoSpace { device: String },

    #[error("{device}: its {block_size}-byte filesystem blocks are smaller than the device's {sector}-byte logical sectors: the kernel cannot mount the filesystem from this device, and e2fsck cannot read an MMP block through it; refusing to enable MMP. Next: enable it through the image file or a device with sectors of at most {block_size} bytes, or recreate the filesystem with blocks of at least {sector} bytes")]
    BlockSmallerThanSector {
        device: String,
        block_size: u32,
        sector: u32,
    },

    #[error("{device}: update interval {interval} s is out of range ({MIN_UPDATE_INTERVAL} to {MAX_UPDATE_INTERVAL} s)")]
    BadInterval { device: String, interval: u16 },

    #[error("{device}: the superblock's MMP update interval (s_mmp_update_interval) is {interval} s, above the maximum of {MAX_UPDATE_INTERVAL} s; refusing to enable MMP (tune2fs refuses too). Next: give one with `mmp-tool enable --interval N {device}`")]
    StoredIntervalOutOfRange { device: String, interval: u16 },

    #[error("{device}: {what} at offset {offset} failed: {source}. {progress}")]
    Write {
        device: String,
        what: String,
        offset: u64,
        #[source]
        source: io::Error,
        progress: String,
    },
}

fn list(users: &[LocalUse]) -> String {
    users
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join("; ")
}

fn steps(users: &[LocalUse]) -> String {
    users
        .iter()
        .map(LocalUse::next_step)
        .collect::<Vec<_>>()
        .join(", then ")
}

impl EditError {
    /// The filesystem is in use (here or elsewhere) or its MMP state says so: mmp-tool's
    /// "do not touch" exit code 1 rather than 2.
    pub fn is_in_use(&self) -> bool {
        match self {
            EditError::InUseLocally { .. }
            | EditError::DeviceBusy { .. }
            | EditError::Locked { .. }
            | EditError::Changed { .. } => true,
            EditError::MmpNotClean { state, .. } => *state != "bad_magic",
            EditError::Fs(e) => e.is_bad_mmp_checksum(),
            _ => false,
        }
    }

    /// A short, stable name for `--json`.
    pub fn reason(&self) -> &'static str {
        match self {
            EditError::Fs(Error::NotExt4 { .. }) => "not_ext4",
            EditError::Fs(Error::Superblock { .. }) => "bad_superblock",
            EditError::Fs(Error::Open(_)) => "open_failed",
            EditError::Fs(Error::MmpBlockOutOfRange { .. }) => "bad_mmp_block_number",
            EditError::Fs(Error::Truncated { .. }) => "truncated",
            EditError::Fs(_) => "io_error",
            EditError::BusyCheck { .. } => "busy_check_failed",
            EditError::InUseLocally { .. } => "in_use_locally",
            EditError::DeviceBusy { .. } => "device_busy",
            EditError::Locked { .. } => "locked",
            EditError::Layout {
                source: LayoutError::Unsupported { .. },
                ..
            } => "unsupported_features",
            EditError::Layout { .. } => "bad_geometry",
            EditError::NeedsRecovery { .. } => "needs_recovery",
            EditError::HasErrors { .. } => "has_errors",
            EditError::NotEnabled { .. } => "not_enabled",
            EditError::AlreadyEnabled { .. } => "already_enabled",
            EditError::MmpNotClean { state, .. } => match *state {
                "live" => "mmp_live",
                "fsck" => "mmp_fsck",
                "unknown" => "mmp_unknown_sequence",
                "bad_checksum" => "mmp_bad_checksum",
                _ => "mmp_bad_magic",
            },
            EditError::Changed { .. } => "mmp_changed",
            EditError::MmpBlockInMetadata {
                what: Metadata::PastTheEnd { .. },
                ..
            } => "bad_mmp_block_number",
            EditError::MmpBlockInMetadata { .. } => "mmp_block_in_metadata",
            EditError::Inconsistent { .. } => "inconsistent",
            EditError::NoSpace { .. } => "no_space",
            EditError::BadInterval { .. } | EditError::StoredIntervalOutOfRange { .. } => {
                "bad_interval"
            }
            EditError::BlockSmallerThanSector { .. } => "block_smaller_than_sector",
            EditError::Write { .. } => "write_failed",
        }
    }
}
