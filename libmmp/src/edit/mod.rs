//! Changing MMP on an unmounted filesystem: `enable`, `disable`, `interval` and `clear`.
//!
//! `enable` allocates the MMP block exactly as `ext2fs_mmp_init` does (the first free block from
//! `s_first_data_block`, bitmaps of `BLOCK_UNINIT` groups built as libext2fs builds them) and
//! updates every structure the allocation touches, as `ext2fs_block_alloc_stats2` and
//! `ext2fs_flush` do; `disable` undoes it. The integration tests compare the result byte for
//! byte with `tune2fs` on a copy of the same image.
//!
//! Where this differs from e2fsprogs, on purpose (reference notes §3.8–3.10):
//! - no 11 s wait on every MMP filesystem: a CLEAN block is *claimed* with a live sequence and
//!   watched for [`CLAIM_SETTLE`] (or the full kernel wait with [`Settle::Full`]);
//! - nothing is ever written while the device is mounted or attached on this host, or while
//!   the MMP block is live, FSCK or corrupt (tune2fs allows `-O ^mmp` on a mounted filesystem);
//! - `disable` leaves the old block zeroed, not holding an FSCK sequence;
//! - `interval` rewrites the block's check interval too, so the two never disagree.
//!
//! **Write order.** Every step ends with `fdatasync`, so the device sees the steps in order; a
//! crash leaves a prefix of the sequence, and every prefix is a filesystem that `e2fsck -fy`
//! repairs (the integration tests crash at every write and run it). The rule is that the
//! superblock may only point at an MMP block that is already allocated and valid, and stops
//! pointing at it before it is freed, so a crash can leak one block (e2fsck's "block bitmap
//! differences", harmless until then) but never leaves the kernel free to allocate the block
//! kmmpd writes:
//! - `enable`: MMP block (a free block, so harmless) → block bitmap → group descriptor →
//!   primary superblock (MMP on) → backups. The bitmap goes before the descriptor so that
//!   clearing `BLOCK_UNINIT` never exposes an uninitialised bitmap.
//! - `disable`: claim → primary superblock (MMP off) → zero the old block (still allocated, so
//!   nobody can have been given it) → bitmap → descriptor → backups.
//! - `interval`: claim → primary superblock → backup superblocks → CLEAN block with the new
//!   check interval.
//!
//! **The claim** (`disable`, `interval`): the CLEAN block is replaced by a random live sequence
//! before any metadata is written, and re-read before every later write. A kernel that starts
//! mounting meanwhile sees a live sequence, waits, sees it change and refuses ("Device is
//! already active on another node"); e2fsprogs tools wait and refuse likewise. A kernel that had
//! read CLEAN just before the claim writes its own sequence and starts kmmpd within
//! milliseconds, which the settle watch sees. If the tool dies after claiming, the sequence goes
//! stale: mounts and e2fsck wait once, then proceed (an FSCK sequence, as tune2fs leaves, would
//! need a manual `clear`).
//!
//! **Files.** `preflight` holds everything checked before the first write (not used on this
//! host, held exclusively, geometry, counts, the MMP block's place and state), with `metadata`
//! answering "what lies at block B" for it; `writer` the recorded, `fdatasync`-ordered writes;
//! `claim` the claim of `disable` and `interval`; one file per operation (`enable`, `disable`,
//! `interval`, `clear`) holds its sequence of writes; `error` the reasons for a refusal.

mod claim;
mod clear;
mod disable;
mod enable;
mod error;
mod interval;
mod metadata;
mod preflight;
mod writer;

pub use clear::clear;
pub use disable::disable;
pub use enable::enable;
pub use error::EditError;
pub use interval::set_interval;
pub use metadata::Metadata;
pub use preflight::open_for_edit;

use crate::fs::MmpFs;
use crate::io::BlockIo;
use crate::ondisk::mmp::{MmpBlock, EXT4_MMP_MAX_UPDATE_INTERVAL, EXT4_MMP_MIN_CHECK_INTERVAL};
use serde::Serialize;
use std::time::Duration;

/// Smallest update interval we write (`s_mmp_update_interval = 0` would make kmmpd spin; the
/// e2fsprogs "0 means default" convention is not repeated here).
pub const MIN_UPDATE_INTERVAL: u16 = 1;
/// Largest update interval (`EXT4_MMP_MAX_UPDATE_INTERVAL`).
pub const MAX_UPDATE_INTERVAL: u16 = EXT4_MMP_MAX_UPDATE_INTERVAL;
/// How long a claim is watched by default: a kernel that read CLEAN just before the claim
/// writes its own sequence and starts kmmpd well within this (LU-13932 uses 2 s likewise).
pub const CLAIM_SETTLE: Duration = Duration::from_secs(2);
/// How often watched blocks are re-read.
pub const POLL: Duration = Duration::from_millis(100);

/// Who is writing: what goes into the MMP blocks we write.
#[derive(Debug, Clone)]
pub struct EditEnv {
    /// `mmp_nodename` (the host name, as e2fsprogs and the kernel write).
    pub nodename: String,
    /// `mmp_bdevname` (the device as named by the user, as e2fsprogs writes).
    pub bdevname: String,
    /// `mmp_time`: seconds since the epoch.
    pub wall_time: u64,
    /// The live sequence a claim writes (1..=SEQ_MAX; see [`crate::protocol::seq::random_seq`]).
    pub claim_seq: u32,
}

impl EditEnv {
    /// This host, now, a random claim sequence (refused without the kernel's CSPRNG).
    pub fn for_device(bdevname: &str) -> Result<Self, crate::Error> {
        let claim_seq =
            crate::protocol::seq::random_seq().map_err(|source| crate::Error::RandomSeq {
                device: bdevname.to_string(),
                source,
            })?;
        Ok(EditEnv {
            nodename: crate::host::identity::nodename(),
            bdevname: bdevname.to_string(),
            wall_time: crate::protocol::clock::wall_now(),
            claim_seq,
        })
    }

    /// The MMP block this writer writes: `seq` (the claim's, or CLEAN) with our node, device
    /// and time, and `check_interval`.
    pub fn block(&self, seq: u32, check_interval: u16) -> MmpBlock {
        MmpBlock::new(
            seq,
            self.wall_time,
            &self.nodename,
            &self.bdevname,
            check_interval,
        )
    }
}

/// How long to watch a claim before editing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Settle {
    /// Watch this long ([`CLAIM_SETTLE`] by default).
    For(Duration),
    /// The kernel's full wait, `min(2*CI + 1, CI + 60)`, as e2fsprogs' `ext2fs_mmp_start`.
    Full,
}

/// One write, for the report.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct WriteRecord {
    pub what: String,
    pub offset: u64,
    pub len: usize,
}

/// What an edit did.
#[derive(Debug, Clone, Serialize)]
pub struct EditReport {
    /// `enable`, `disable`, `interval` or `clear`.
    pub action: &'static str,
    pub device: String,
    /// False when the filesystem was already as asked and nothing was written.
    pub changed: bool,
    /// MMP enabled afterwards.
    pub mmp_enabled: bool,
    /// The MMP block (the freed one for `disable`).
    pub mmp_block: u64,
    /// `s_mmp_update_interval` afterwards.
    pub update_interval: u16,
    /// `mmp_check_interval` of the block written, if one was.
    pub check_interval: Option<u16>,
    /// The block group of the MMP block.
    pub group: Option<u32>,
    /// The group's bitmap was uninitialised (`BLOCK_UNINIT`) and had to be built.
    pub group_was_block_uninit: bool,
    pub free_blocks_before: u64,
    pub free_blocks_after: u64,
    /// The MMP block's state before (`clean`, `live`, `fsck`, `unknown`, `bad_magic`,
    /// `bad_checksum`).
    pub previous_state: Option<&'static str>,
    /// How long the block was watched before writing.
    pub watched_seconds: f64,
    /// Groups whose backup superblock (and descriptor table) were rewritten.
    pub backup_groups: Vec<u32>,
    pub writes: Vec<WriteRecord>,
}

fn check_interval_for(update_interval: u16) -> u16 {
    // ext2fs_mmp_reset: the check interval is the update interval, at least 5 s.
    update_interval.max(EXT4_MMP_MIN_CHECK_INTERVAL)
}

fn validate_interval(device: &str, interval: u16) -> Result<(), EditError> {
    if (MIN_UPDATE_INTERVAL..=MAX_UPDATE_INTERVAL).contains(&interval) {
        Ok(())
    } else {
        Err(EditError::BadInterval {
            device: device.to_string(),
            interval,
        })
    }
}

fn report<D: BlockIo>(fs: &MmpFs<D>, action: &'static str) -> EditReport {
    let sb = fs.superblock();
    EditReport {
        action,
        device: fs.device_name().to_string(),
        changed: false,
        mmp_enabled: sb.has_mmp(),
        mmp_block: sb.s_mmp_block,
        update_interval: sb.s_mmp_update_interval,
        check_interval: None,
        group: None,
        group_was_block_uninit: false,
        free_blocks_before: sb.free_blocks_count,
        free_blocks_after: sb.free_blocks_count,
        previous_state: None,
        watched_seconds: 0.0,
        backup_groups: Vec::new(),
        writes: Vec::new(),
    }
}

#[cfg(test)]
mod tests;
