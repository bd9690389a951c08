//! The end of a claim: CLEAN over our own block, when the claimer lets go ([`release`]) or
//! hands the device to a kernel mount within the claim's lease ([`release_for_mount`]).

use super::{read_on_disk, Claimed};
use crate::error::Error;
use crate::fs::MmpFs;
use crate::io::BlockIo;
use crate::ondisk::mmp::{MmpBlock, EXT4_MMP_SEQ_CLEAN, MMP_STRUCT_SIZE};
use crate::protocol::clock::{wall_now, Clock};
use std::time::Duration;

/// How much of a claim's lease the kernel's mount keeps for its own first write (it writes
/// within milliseconds of reading our CLEAN).
pub const LEASE_MARGIN: Duration = Duration::from_secs(1);

/// How the handover of a won claim to a kernel mount went ([`release_for_mount`]).
#[derive(Debug, Clone)]
pub enum Handover {
    /// The block held our claim and is CLEAN now, within the lease: mount at once.
    Clean,
    /// Somebody else wrote the block: nothing written, do not mount.
    NotOurs(Box<MmpBlock>),
    /// The lease ran out (this process was stopped, or the device stalled) before the CLEAN
    /// write, or during it (`wrote`: CLEAN may now lie over another node's block, which its
    /// holder rewrites at its next beat). Do not mount.
    Expired { wrote: bool, late_by: Duration },
}

/// Hand a won claim to a kernel mount: write CLEAN over our own block ([`release`]), but only
/// within the claim's lease ([`Claimed::lease_until`] less [`LEASE_MARGIN`]), checked before
/// the compare-read and again after the write. A claimer stopped past its lease (SIGSTOP, a
/// paused VM) may find another node holding the device by then: that node waited our block
/// out, claimed and mounted, and a CLEAN over its kmmpd's block followed by our mount would
/// make two holders (found by the handoff's fault simulation). The compare-and-write is not
/// atomic, so the check after the write is what decides: a write that ended late does not
/// mount.
pub fn release_for_mount<D: BlockIo>(
    fs: &MmpFs<D>,
    clock: &dyn Clock,
    c: &Claimed,
) -> Result<Handover, Error> {
    let deadline = c.lease_until.saturating_sub(LEASE_MARGIN);
    let late = |wrote| {
        let now = clock.now();
        (now >= deadline).then(|| Handover::Expired {
            wrote,
            late_by: now - deadline,
        })
    };
    if let Some(e) = late(false) {
        return Ok(e);
    }
    match release(fs, &c.block, &[c.on_disk])? {
        Release::NotOurs(b) => Ok(Handover::NotOurs(b)),
        Release::Clean(_) => Ok(late(true).unwrap_or(Handover::Clean)),
    }
}

/// The outcome of a release.
#[derive(Debug, Clone)]
pub enum Release {
    /// The block held our last write; it now holds this CLEAN block.
    Clean(MmpBlock),
    /// The block did not hold what we wrote: somebody else wrote it. Nothing was written.
    NotOurs(Box<MmpBlock>),
}

/// Write CLEAN, but only if the block still holds one of `ours` (the exact on-disk bytes of our
/// last write, and of a write whose outcome is unknown). `last` supplies the node, device and
/// check interval fields of the CLEAN block, as `ext2fs_mmp_stop` keeps `mmp_cmp`'s fields.
pub fn release<D: BlockIo>(
    fs: &MmpFs<D>,
    last: &MmpBlock,
    ours: &[[u8; MMP_STRUCT_SIZE]],
) -> Result<Release, Error> {
    let (found, raw) = read_on_disk(fs)?;
    if !ours.contains(&raw) {
        return Ok(Release::NotOurs(Box::new(found)));
    }
    let mut clean = last.clone();
    clean.mmp_seq = EXT4_MMP_SEQ_CLEAN;
    clean.mmp_time = wall_now();
    clean.set_fence_tag(None);
    fs.write_mmp_synced(&clean)?;
    Ok(Release::Clean(clean))
}
