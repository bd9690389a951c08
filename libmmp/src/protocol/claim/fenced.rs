//! The fence-confirmed claim: the caller states that the cluster fenced (powered off, reset or
//! cut from the storage) the node that last held the device, so most of the full wait protects
//! against nothing. What is still checked, and why the rest is safe:
//!
//! 1. **Only the fenced node's block, or a CLEAN one, qualifies.** The first read must find a
//!    live sequence whose `mmp_nodename` is the fenced node's MMP name (after the optional
//!    cluster-name -> MMP-name mapping), or CLEAN. Everything else goes through the normal
//!    [`claim_with`] path, never a shorter one ([`Fallback`]):
//!    - another node's name (or our own): the fence says nothing about that writer, so the
//!      normal full wait;
//!    - FSCK, an unknown sequence, a bad checksum: the normal path, which refuses them at once
//!      (e2fsck may be running; a torn block may be mid-update);
//!    - unreadable (I/O error, bad magic, no MMP): the normal path, which fails with the error
//!      and writes nothing.
//! 2. **A short watch with real re-reads**: [`fenced_watch`] = `max(2 x update interval, 2 s)`,
//!    longer when the block's mmpd fence tag advertises a longer heartbeat interval, never
//!    longer than the normal watch. Every poll re-reads the block from the device (O_DIRECT on
//!    a block device). Any change (sequence, time, node, any byte) means a live writer: the
//!    fence did not do what the cluster believes. We refuse with [`ClaimError::InUse`] and log
//!    it at error level.
//! 3. **The claim itself** is the normal compare-and-write, watched for [`MAX_WRITE_GAP`] plus
//!    two polls after our write (a bare claim then refreshes its block as usual). That is all a
//!    racing *claimer* needs: whoever claims writes within [`MAX_WRITE_GAP`] of a read that
//!    predates our write (or gives up, [`ClaimError::Stalled`]), so its write lands while we
//!    watch and we lose; a claimer whose read follows our write sees a changed block and
//!    refuses (its compare-and-write or its own watch). Of two fenced claimers exactly one
//!    wins, as in the normal protocol. The longer normal verification exists for a holder that
//!    may still be alive; here the fence and the watch in step 2 stand for it.
//!
//! **What the short watch cannot catch**: a fence that lied (the node is still running and still
//! reaches the storage) **and** a live writer whose gap between two writes is longer than the
//! watch (a kmmpd with a longer interval than the superblock's, an mmpd with a longer interval
//! and no fence tag, a holder frozen for longer than the watch). Either failure alone is caught:
//! a real fence stops every writer, and a writer that writes within the watch is seen. The
//! normal path exists for clusters that cannot rule out the combination.

use super::{
    claim_with, our_block, read_on_disk, safe_to_claim, Attempt, ClaimError, ClaimMode,
    ClaimOptions, ClaimPhase, Claimed, Watcher,
};
use crate::error::Error;
use crate::fs::MmpFs;
use crate::io::BlockIo;
use crate::ondisk::fence_tag::FenceTag;
use crate::ondisk::handoff::HandoffRead;
use crate::ondisk::mmp::{MmpBlock, SeqClass};
use crate::protocol::check::{self, CheckReport, SafeReason, Verdict};
use crate::protocol::clock::Clock;
use crate::protocol::seq::FreshSeq;
use std::time::Duration;

/// The shortest fence-confirmed watch.
pub const MIN_FENCED_WATCH: Duration = Duration::from_secs(2);
/// `s_mmp_update_interval` 0 means the default, 5 s (ext2_fs.h `EXT4_MMP_UPDATE_INTERVAL`).
const DEFAULT_UPDATE_INTERVAL: u16 = 5;

/// The node the cluster fenced, as the caller states it, and the name it writes into MMP blocks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FencedNode {
    /// The cluster's name for the node (Pacemaker's node name).
    pub node: String,
    /// Its `mmp_nodename`: the mapped name, or `node` itself.
    pub mmp_name: String,
}

impl FencedNode {
    /// `node` fenced; `map` pairs cluster node names with MMP node names (`--node-map`). A node
    /// without a pair writes its cluster name (the usual case: both are the host name).
    pub fn new(node: &str, map: &[(String, String)]) -> Self {
        let mmp_name = map
            .iter()
            .find(|(cluster, _)| cluster == node)
            .map_or(node, |(_, mmp)| mmp.as_str());
        FencedNode {
            node: node.to_string(),
            mmp_name: mmp_name.to_string(),
        }
    }
}

/// Parse one `CLUSTER=MMPNAME` mapping (`--node-map`).
pub fn parse_node_map(s: &str) -> Result<(String, String), String> {
    match s.split_once('=') {
        Some((c, m)) if !c.is_empty() && !m.is_empty() && m.len() <= 64 => {
            Ok((c.to_string(), m.to_string()))
        }
        _ => Err(format!(
            "`{s}` is not CLUSTER=MMPNAME (both non-empty, MMPNAME at most 64 bytes)"
        )),
    }
}

/// Why a fence-confirmed claim went the normal way.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Fallback {
    /// The block's last writer is not the fenced node: the fence says nothing about it.
    OtherNode { found: String },
    /// FSCK or an unknown sequence: the normal path refuses it.
    NotLive,
    /// The first read failed or did not verify: the normal path decides (refuses or fails).
    Unreadable,
    /// The block carries a planned handoff's record (or one of a newer version): its target
    /// claims with a short verification, so a second short-cut claimer could race it; the
    /// normal path's full waits see the target's holder.
    Handoff,
}

impl Fallback {
    /// Short name for logs and JSON.
    pub fn name(&self) -> &'static str {
        match self {
            Fallback::OtherNode { .. } => "other_node",
            Fallback::NotLive => "not_live",
            Fallback::Unreadable => "unreadable",
            Fallback::Handoff => "handoff_in_progress",
        }
    }
}

/// Which path a fence-confirmed claim took.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ClaimPath {
    /// The short watch of [`fenced_watch`], then the short verification.
    Fenced { watch: Duration },
    /// The normal claim with its full waits.
    Normal { fallback: Fallback },
}

impl ClaimPath {
    /// `fenced` or `normal`, for logs and JSON.
    pub fn name(&self) -> &'static str {
        match self {
            ClaimPath::Fenced { .. } => "fenced",
            ClaimPath::Normal { .. } => "normal",
        }
    }

    /// The short watch, on the fenced path.
    pub fn watch(&self) -> Option<Duration> {
        match self {
            ClaimPath::Fenced { watch } => Some(*watch),
            ClaimPath::Normal { .. } => None,
        }
    }
}

/// A won fence-confirmed claim.
#[derive(Debug, Clone)]
pub struct FencedClaim {
    pub claimed: Claimed,
    pub path: ClaimPath,
}

/// How long a fence-confirmed claim watches the block before writing: twice the holder's
/// update interval (`s_mmp_update_interval`, or the interval an mmpd fence tag advertises when
/// longer), at least [`MIN_FENCED_WATCH`], never longer than the normal watch `normal`.
pub fn fenced_watch(sb_update_interval: u16, tag: Option<FenceTag>, normal: Duration) -> Duration {
    let sb = match sb_update_interval {
        0 => DEFAULT_UPDATE_INTERVAL,
        i => i,
    };
    let interval = Duration::from_secs(u64::from(sb)).max(tag.map_or(Duration::ZERO, |t| {
        Duration::from_millis(u64::from(t.interval_ms))
    }));
    (2 * interval).max(MIN_FENCED_WATCH).min(normal)
}

/// Which path the block read first allows, with the watch for the fenced one.
fn choose_path<D: BlockIo>(fs: &MmpFs<D>, fenced: &FencedNode) -> (ClaimPath, Option<MmpBlock>) {
    let first = match fs.read_mmp() {
        Ok(b) => b,
        Err(_) => {
            let fallback = Fallback::Unreadable;
            return (ClaimPath::Normal { fallback }, None);
        }
    };
    let sb_interval = fs.superblock().s_mmp_update_interval;
    let ci = check::check_interval(sb_interval, first.mmp_check_interval);
    let tag = first.fence_tag();
    let normal = tag.map_or(check::wait_time(ci), |t| {
        check::wait_time(ci).min(check::fence_wait(t))
    });
    let in_handoff = !matches!(first.handoff(), HandoffRead::None | HandoffRead::Remnant(_));
    let fallback = match first.seq_class() {
        _ if in_handoff => Some(Fallback::Handoff),
        SeqClass::Clean => None,
        SeqClass::Live(_) if first.nodename() == fenced.mmp_name => None,
        SeqClass::Live(_) => Some(Fallback::OtherNode {
            found: first.nodename(),
        }),
        SeqClass::Fsck | SeqClass::Unknown(_) => Some(Fallback::NotLive),
    };
    match fallback {
        Some(fallback) => (ClaimPath::Normal { fallback }, None),
        None => {
            let watch = fenced_watch(sb_interval, tag, normal);
            (ClaimPath::Fenced { watch }, Some(first))
        }
    }
}

/// Claim a device whose last holder the cluster fenced (see the module documentation). The
/// arguments are [`claim_with`]'s plus the fenced node; the result says which path was taken.
#[allow(clippy::too_many_arguments)]
pub fn claim_fenced<D: BlockIo>(
    fs: &MmpFs<D>,
    clock: &dyn Clock,
    fresh_seq: &mut FreshSeq<'_>,
    opts: &ClaimOptions,
    mode: ClaimMode,
    fenced: &FencedNode,
    cancel: &dyn Fn() -> bool,
    progress: &mut dyn FnMut(ClaimPhase, Duration, Duration),
) -> Result<FencedClaim, ClaimError> {
    let device = fs.device_name().to_string();
    let start = clock.now();
    let (path, first) = choose_path(fs, fenced);
    let (ClaimPath::Fenced { watch }, Some(first)) = (&path, first) else {
        if let ClaimPath::Normal { fallback } = &path {
            tracing::warn!(device = %device, fenced = %fenced.node, mmp_name = %fenced.mmp_name, ?fallback, "fence-confirmed claim: the block does not qualify, claiming the normal way (full wait)");
        }
        let claimed = claim_with(fs, clock, fresh_seq, opts, mode, cancel, progress)?;
        return Ok(FencedClaim { claimed, path });
    };
    let watch = *watch;
    tracing::info!(device = %device, fenced = %fenced.node, node = %first.nodename(), watch_s = watch.as_secs_f64(), "fence-confirmed claim: watching the block");
    let mut reads = 1;
    let report = watch_fenced(fs, clock, opts.poll, &first, watch, &mut reads, progress)?;
    let previous = safe_to_claim(&device, &report).inspect_err(|e| {
        if let ClaimError::InUse { block, .. } = e {
            tracing::error!(device = %device, fenced = %fenced.node, writer = %block.nodename(), seq = format_args!("{:#010x}", block.mmp_seq), "the MMP block changed during the fence-confirmed watch: a live writer is still using the device, so the fence of '{}' did NOT do what the cluster believes; refusing", fenced.node);
        }
    })?;
    if cancel() {
        return Err(ClaimError::Cancelled {
            device,
            wrote: false,
            restored_clean: false,
        });
    }
    let claimed = write_claim(
        fs, clock, fresh_seq, opts, mode, report, previous, reads, cancel, progress, start,
    )?;
    Ok(FencedClaim { claimed, path })
}

/// Step 2: re-read every `poll` until `watch` has passed since the first read; any difference
/// from `first` is a live writer. Reported as a [`CheckReport`] so the claim judges it as the
/// normal path does.
fn watch_fenced<D: BlockIo>(
    fs: &MmpFs<D>,
    clock: &dyn Clock,
    poll: Duration,
    first: &MmpBlock,
    watch: Duration,
    reads: &mut u32,
    progress: &mut dyn FnMut(ClaimPhase, Duration, Duration),
) -> Result<CheckReport, Error> {
    let poll = poll.max(Duration::from_millis(1));
    let first_raw = first.encode_raw();
    let from = clock.now();
    let verdict = loop {
        let elapsed = clock.now().saturating_sub(from);
        progress(ClaimPhase::Watching, elapsed.min(watch), watch);
        if elapsed >= watch {
            break Verdict::Safe(match first.seq_class() {
                SeqClass::Clean => SafeReason::Clean,
                _ => SafeReason::Stale,
            });
        }
        clock.sleep(poll.min(watch - elapsed));
        *reads += 1;
        let (now, raw) = read_on_disk(fs)?;
        if raw != first_raw {
            break Verdict::InUse { block: now };
        }
    };
    let sb_interval = fs.superblock().s_mmp_update_interval;
    let ci = check::check_interval(sb_interval, first.mmp_check_interval);
    Ok(CheckReport {
        verdict,
        first: first.clone(),
        check_interval: ci,
        wait: watch,
        kernel_wait: check::wait_time(ci),
        fence_tag: first.fence_tag(),
        elapsed: clock.now().saturating_sub(from),
        reads: *reads,
    })
}

/// Step 3: compare-and-write over the block we watched, verify for what a racing claimer
/// needs ([`MAX_WRITE_GAP`](super::MAX_WRITE_GAP) + two polls), refresh a bare claim.
#[allow(clippy::too_many_arguments)]
fn write_claim<D: BlockIo>(
    fs: &MmpFs<D>,
    clock: &dyn Clock,
    fresh_seq: &mut FreshSeq<'_>,
    opts: &ClaimOptions,
    mode: ClaimMode,
    report: CheckReport,
    previous: SafeReason,
    reads: u32,
    cancel: &dyn Fn() -> bool,
    progress: &mut dyn FnMut(ClaimPhase, Duration, Duration),
    start: Duration,
) -> Result<Claimed, ClaimError> {
    let device = fs.device_name().to_string();
    let (blk, ours) = our_block(fs, fresh_seq, report.first.mmp_seq, opts)?;
    let w = Watcher {
        fs,
        clock,
        poll: opts.poll.max(Duration::from_millis(1)),
        device: &device,
        gap: super::MAX_WRITE_GAP,
    };
    // A zero wait: the watch after our write is then exactly MAX_WRITE_GAP + two polls
    // after its end, the part of the verification that catches racing claimers.
    let attempt = Attempt {
        found: report.first,
        previous,
        check_interval: report.check_interval,
        fence_tag: report.fence_tag,
        blk,
        ours,
        wait: Duration::ZERO,
        report_wait: false,
        start,
        reads,
    };
    w.win(attempt, mode, opts.check_interval, cancel, progress)
}

#[cfg(test)]
mod tests;
