//! The write side of the protocol's start: claim a device for this node.
//!
//! This is the safe start of `ext4_multi_mount_protect` (fs/ext4/mmp.c) and `ext2fs_mmp_start`
//! (lib/ext2fs/mmp.c):
//!
//! 1. Watch the block with [`crate::protocol::check::check`]: refuse `SEQ_FSCK`, an unknown sequence or a
//!    bad checksum; wait out a live sequence for `min(2*CI + 1, CI + 60)` s and refuse if it
//!    changes (another node is writing it).
//! 2. Write a random sequence with this node's name (and the check interval the holder will
//!    keep: readers then wait long enough, as ZFS publishes its tunables in the uberblock).
//! 3. Watch again for `min(2*CI + 1, CI + 60)` s, re-reading every poll interval. If the block
//!    differs at any read from what we wrote, another node wrote after us: we lost.
//!
//! Unlike the kernel, step 3 runs **even when the block was CLEAN**. The kernel mounts a clean
//! filesystem with no wait at all, so two nodes that both see CLEAN can both mount (LU-13932).
//! With the wait, of two claimers that both saw CLEAN the one that wrote last sees its own
//! sequence for the whole wait and wins; the other sees the later write and loses. A claimer
//! never writes twice, so exactly one wins. A kmmpd or mmpd that starts heartbeating while we
//! wait writes within its update interval, which is shorter than the wait, so we see it.
//!
//! Three refinements over the kernel's protocol:
//!
//! - **Compare-and-write with a bounded gap.** Right before each write we re-read the block
//!   and compare it with what we decided on, and the time from that read to the end of the
//!   synced write must stay under [`MAX_WRITE_GAP`] (2 s); a claimer slower than that (a
//!   stopped process, a stalled device) gives up instead of trusting its verification. Our
//!   verification watches always outlast that gap, so a racing claimer's write that was based
//!   on an older read always lands while we still watch.
//! - **A holder's self-fence bound.** When the block we found carries a valid
//!   [`crate::ondisk::fence_tag::FenceTag`] (a holder that is reset by a watchdog when its heartbeats stop),
//!   the first watch is that bound plus a margin ([`crate::protocol::check::fence_wait`]) instead of the
//!   kernel's wait, and the watch after our write only has to catch racing claimers:
//!   [`FENCED_VERIFY`] (3 s). A block written by kmmpd or e2fsprogs never carries a valid tag.
//! - **Bare claims** ([`ClaimMode::Bare`], `mmp-tool claim` with nothing following it): after
//!   the verification (shorter than what any reader of our block waits) they write a fresh
//!   sequence, compare-and-write, and watch for [`MAX_WRITE_GAP`] more. A second claimer that
//!   started watching our first write sees the fresh one and refuses, so two bare claims
//!   started a moment apart cannot both win (without it, the later one outwaited the earlier
//!   one's verification and both exited 0), and the block stays fresh for most of a reader
//!   wait after the claim returns ([`Claimed::stale_after`]).
//!
//! Time is injected ([`Clock`]) so all of this is tested in memory without sleeping.

use crate::error::Error;
use crate::fs::MmpFs;
use crate::host::identity;
use crate::io::BlockIo;
use crate::ondisk::mmp::{MmpBlock, EXT4_MMP_SEQ_MAX, MMP_STRUCT_SIZE};
use crate::protocol::check::{self, CheckOptions, CheckReport, SafeReason, Verdict};
use crate::protocol::clock::{wall_now, Clock};
use crate::protocol::seq::{seq_after, FreshSeq, SeqError};
use std::time::Duration;

pub mod fenced;
pub mod handoff;
mod release;
pub use fenced::{claim_fenced, ClaimPath, FencedClaim, FencedNode};
pub use release::{release, release_for_mount, Handover, Release, LEASE_MARGIN};

/// What a claim writes and how it watches.
#[derive(Debug, Clone)]
pub struct ClaimOptions {
    /// `mmp_nodename`: this node (default: the host name).
    pub nodename: String,
    /// `mmp_bdevname`: the device as this node names it (default: the path's last component).
    pub bdevname: String,
    /// `mmp_check_interval` to publish, in seconds: the holder's pace, so that readers wait long
    /// enough (see [`crate::protocol::heartbeat::HeartbeatConfig::publish_check_interval`]).
    pub check_interval: u16,
    /// How often to re-read the block while watching.
    pub poll: Duration,
}

impl ClaimOptions {
    /// Defaults for the device named `device` (a path): host name, the path's last component,
    /// check interval 5 (the minimum readers use anyway), poll every 100 ms.
    pub fn for_device(device: &str) -> Self {
        ClaimOptions {
            nodename: identity::nodename(),
            bdevname: bdevname_of(device),
            check_interval: crate::ondisk::mmp::EXT4_MMP_MIN_CHECK_INTERVAL,
            poll: Duration::from_millis(100),
        }
    }
}

/// The last component of a device path (`/dev/mapper/x` -> `x`), as the kernel's `%pg` names
/// the block device.
pub fn bdevname_of(device: &str) -> String {
    device.rsplit('/').next().unwrap_or(device).to_string()
}

/// Longest time from the compare-read before a claim write to the end of that synced write.
/// A claimer that takes longer gives up ([`ClaimError::Stalled`]).
pub const MAX_WRITE_GAP: Duration = Duration::from_secs(2);
/// The watch after our write when the block we took over was stale with a valid fence tag:
/// its holder has been reset, so only racing claimers remain to be caught, and their writes
/// land within [`MAX_WRITE_GAP`] of a read that predates our write.
pub const FENCED_VERIFY: Duration = Duration::from_secs(3);

/// What follows a won claim.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClaimMode {
    /// A holder writes the block right after the claim: mmpd's heartbeat, or a kernel mount
    /// (`mmp-tool mount` writes CLEAN and mounts at once).
    HolderFollows,
    /// Nothing writes the block after the claim (`mmp-tool claim` for a script).
    Bare,
}

/// Which phase a claim is in, for progress reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClaimPhase {
    /// Watching a live sequence before writing (nothing written yet).
    Watching,
    /// Our sequence is written; watching that nobody overwrites it.
    Verifying,
}

/// A won claim: the block holds `block` and nobody wrote it for the whole verification wait.
#[derive(Debug, Clone)]
pub struct Claimed {
    /// What we wrote (and read back unchanged until the end).
    pub block: MmpBlock,
    /// The exact bytes on disk (with the checksum, if any).
    pub on_disk: [u8; MMP_STRUCT_SIZE],
    /// The state before the claim: clean, or a live sequence whose writer was gone.
    pub previous: SafeReason,
    /// The block as first read.
    pub previous_block: MmpBlock,
    /// The effective check interval of the claim's waits.
    pub check_interval: u32,
    /// How long the claim watched after writing.
    pub verify_wait: Duration,
    /// When (by the claim's clock) our last write was submitted: the block on disk is at
    /// most this old.
    pub written_at: Duration,
    /// From the claim's return, how long until a reader that saw our last write at once may
    /// call it stale (the holder must write before then).
    pub stale_after: Duration,
    /// When (by the claim's clock) a reader that saw our last write at once may call it stale:
    /// from then on another node may have waited it out and claimed. A holder must have
    /// written by then ([`release_for_mount`] checks it for a kernel mount).
    pub lease_until: Duration,
    /// The previous holder's valid self-fence tag, which shortened the first watch.
    pub fence_tag: Option<crate::ondisk::fence_tag::FenceTag>,
    /// The whole claim.
    pub elapsed: Duration,
    /// Reads of the block in the whole claim.
    pub reads: u32,
}

/// Why a claim did not win.
#[derive(Debug, thiserror::Error)]
pub enum ClaimError {
    /// I/O, no MMP, bad magic, truncated device ... (see [`Error`]).
    #[error(transparent)]
    Fs(#[from] Error),

    #[error("{device}: in use on another node: the MMP block changed while we watched it (now node '{}' device '{}' sequence {:#010x}); not claiming it", block.nodename(), block.bdevname(), block.mmp_seq)]
    InUse {
        device: String,
        block: Box<MmpBlock>,
    },

    #[error("{device}: e2fsck, tune2fs or debugfs has the filesystem open (MMP sequence FSCK, last update by node '{}'), or was killed while it had; not claiming it. If you are sure no node uses it, reset with `tune2fs -f -E clear_mmp {device}`", block.nodename())]
    FsckRunning {
        device: String,
        block: Box<MmpBlock>,
    },

    #[error("{device}: unknown MMP sequence {:#010x} (last update by node '{}'): some tool is in the middle of an operation; not claiming it. If you are sure no node uses it, reset with `tune2fs -f -E clear_mmp {device}`", block.mmp_seq, block.nodename())]
    UnknownSeq {
        device: String,
        block: Box<MmpBlock>,
    },

    #[error("{device}: MMP block checksum does not match (stored {stored:#010x}, computed {computed:#010x}): it may be mid-update by another node; not claiming it. If no node uses it, `e2fsck -f {device}` repairs it")]
    BadChecksum {
        device: String,
        stored: u32,
        computed: u32,
    },

    #[error("{device}: lost the claim: after we wrote sequence {ours:#010x}, node '{}' device '{}' wrote sequence {:#010x}; another node is claiming or holding it", block.nodename(), block.bdevname(), block.mmp_seq)]
    Lost {
        device: String,
        ours: u32,
        block: Box<MmpBlock>,
    },

    #[error("{device}: the claim stalled: {:.1} s from the read before our write to the end of the write (limit {:.1} s). A claimer this slow cannot prove that nobody wrote in between; not claiming it (our sequence stays in the block and goes stale). Check the device and the load, then retry", took.as_secs_f64(), limit.as_secs_f64())]
    Stalled {
        device: String,
        took: Duration,
        limit: Duration,
    },

    #[error("{device}: claim interrupted{}", if *restored_clean { "; the block was set back to CLEAN" } else if *wrote { "; our sequence stays in the block (it goes stale)" } else { " before anything was written" })]
    Cancelled {
        device: String,
        wrote: bool,
        restored_clean: bool,
    },
}

impl ClaimError {
    /// Whether this means "the device is not ours to take" (as opposed to an error).
    pub fn is_refusal(&self) -> bool {
        !matches!(self, ClaimError::Fs(_) | ClaimError::Cancelled { .. })
    }

    /// Short name for logs and JSON.
    pub fn name(&self) -> &'static str {
        match self {
            ClaimError::Fs(_) => "error",
            ClaimError::InUse { .. } => "in_use",
            ClaimError::FsckRunning { .. } => "fsck_running",
            ClaimError::UnknownSeq { .. } => "unknown_sequence",
            ClaimError::BadChecksum { .. } => "bad_checksum",
            ClaimError::Lost { .. } => "lost",
            ClaimError::Stalled { .. } => "stalled",
            ClaimError::Cancelled { .. } => "cancelled",
        }
    }
}

/// The exact bytes `blk` has on disk on this filesystem (checksum included).
pub fn on_disk_bytes<D: BlockIo>(fs: &MmpFs<D>, blk: &MmpBlock) -> [u8; MMP_STRUCT_SIZE] {
    blk.encode(fs.superblock().mmp_csum_seed())
}

/// The MMP block's bytes as they are now, unjudged.
pub fn read_on_disk<D: BlockIo>(fs: &MmpFs<D>) -> Result<(MmpBlock, [u8; MMP_STRUCT_SIZE]), Error> {
    let (blk, _) = fs.read_mmp_raw()?;
    let raw = blk.encode_raw();
    Ok((blk, raw))
}

/// Run a claim that a holder follows at once ([`ClaimMode::HolderFollows`]). `fresh_seq`
/// supplies random candidates (use [`crate::protocol::seq::random_seq`]; if it fails, the claim
/// refuses before writing); `cancel` is polled at every read;
/// `progress` sees the phase, elapsed and total of each wait.
pub fn claim<D: BlockIo>(
    fs: &MmpFs<D>,
    clock: &dyn Clock,
    fresh_seq: &mut FreshSeq<'_>,
    opts: &ClaimOptions,
    cancel: &dyn Fn() -> bool,
    progress: &mut dyn FnMut(ClaimPhase, Duration, Duration),
) -> Result<Claimed, ClaimError> {
    claim_with(
        fs,
        clock,
        fresh_seq,
        opts,
        ClaimMode::HolderFollows,
        cancel,
        progress,
    )
}

/// Run a claim in the given mode (see [`claim`]).
pub fn claim_with<D: BlockIo>(
    fs: &MmpFs<D>,
    clock: &dyn Clock,
    fresh_seq: &mut FreshSeq<'_>,
    opts: &ClaimOptions,
    mode: ClaimMode,
    cancel: &dyn Fn() -> bool,
    progress: &mut dyn FnMut(ClaimPhase, Duration, Duration),
) -> Result<Claimed, ClaimError> {
    let device = fs.device_name().to_string();
    let start = clock.now();
    let check_opts = CheckOptions {
        poll: opts.poll,
        timeout: None,
        honor_fence_tag: true,
    };
    let report = check::check(fs, clock, check_opts, &mut |e, t| {
        progress(ClaimPhase::Watching, e, t)
    })?;
    let previous = safe_to_claim(&device, &report)?;
    if cancel() {
        return Err(ClaimError::Cancelled {
            device,
            wrote: false,
            restored_clean: false,
        });
    }
    let (blk, ours) = our_block(fs, fresh_seq, report.first.mmp_seq, opts)?;
    let sb_interval = fs.superblock().s_mmp_update_interval;
    let fenced_holder = previous == SafeReason::Stale && report.fence_tag.is_some();
    let wait = {
        let w = verify_wait(report.check_interval, sb_interval, opts.check_interval);
        if fenced_holder {
            w.min(FENCED_VERIFY)
        } else {
            w
        }
    };
    let w = Watcher {
        fs,
        clock,
        poll: opts.poll.max(Duration::from_millis(1)),
        device: &device,
        gap: MAX_WRITE_GAP,
    };
    let attempt = Attempt {
        reads: report.reads,
        previous,
        found: report.first,
        check_interval: report.check_interval,
        fence_tag: report.fence_tag,
        blk,
        ours,
        wait,
        report_wait: true,
        start,
    };
    let c = w.win(attempt, mode, opts.check_interval, cancel, progress)?;
    tracing::debug!(device = %device, seq = format_args!("{:#010x}", c.block.mmp_seq), previous = ?previous, fenced_holder, "claim: sequence written and verified");
    Ok(c)
}

/// Step 1 of a claim: what the first watch found, as the state we take over (clean, or a
/// stale live sequence) or the refusal.
fn safe_to_claim(device: &str, report: &CheckReport) -> Result<SafeReason, ClaimError> {
    match &report.verdict {
        Verdict::Safe(reason) => Ok(*reason),
        Verdict::InUse { block } => Err(ClaimError::InUse {
            device: device.to_string(),
            block: Box::new(block.clone()),
        }),
        Verdict::FsckRunning => Err(ClaimError::FsckRunning {
            device: device.to_string(),
            block: Box::new(report.first.clone()),
        }),
        Verdict::UnknownSeq(_) => Err(ClaimError::UnknownSeq {
            device: device.to_string(),
            block: Box::new(report.first.clone()),
        }),
        Verdict::BadChecksum { stored, computed } => Err(ClaimError::BadChecksum {
            device: device.to_string(),
            stored: *stored,
            computed: *computed,
        }),
        // No timeout was given, so the check cannot be undecided; treat it as "in use" rather
        // than trust it.
        Verdict::Undecided => Err(ClaimError::InUse {
            device: device.to_string(),
            block: Box::new(report.first.clone()),
        }),
    }
}

/// What a step after the first watch needs: the filesystem, the clock, how often to re-read,
/// the device's name for errors, and the longest read-to-end-of-write gap a compare-and-write
/// may take ([`MAX_WRITE_GAP`]; the handoff's target uses a tighter one).
pub(crate) struct Watcher<'a, D: BlockIo> {
    pub(crate) fs: &'a MmpFs<D>,
    pub(crate) clock: &'a dyn Clock,
    pub(crate) poll: Duration,
    pub(crate) device: &'a str,
    pub(crate) gap: Duration,
}

/// A claim about to write: the state it takes over and the block it writes.
pub(crate) struct Attempt {
    /// The block as first read, and the state it was in.
    pub(crate) found: MmpBlock,
    pub(crate) previous: SafeReason,
    /// The found block's effective check interval, and the fence tag that shortened its watch.
    pub(crate) check_interval: u32,
    pub(crate) fence_tag: Option<crate::ondisk::fence_tag::FenceTag>,
    /// Our block and its exact on-disk bytes.
    pub(crate) blk: MmpBlock,
    pub(crate) ours: [u8; MMP_STRUCT_SIZE],
    /// The watch after our write, from its submission (at least the gap + two polls after it
    /// completed, see [`Watcher::write_and_verify`]).
    pub(crate) wait: Duration,
    /// Report `wait` as the claim's verification (the normal claim), or the time measured from
    /// our last write to the return (the short paths).
    pub(crate) report_wait: bool,
    /// When the claim started (by its clock), and the reads so far.
    pub(crate) start: Duration,
    pub(crate) reads: u32,
}

impl<D: BlockIo> Watcher<'_, D> {
    /// The write side every claim path shares: compare-and-write our block over the one
    /// found, watch it, refresh a bare claim ([`ClaimMode::Bare`]), and the won claim with
    /// the lease that readers of our last write (publishing `published_ci`) give it.
    pub(crate) fn win(
        &self,
        a: Attempt,
        mode: ClaimMode,
        published_ci: u16,
        cancel: &dyn Fn() -> bool,
        progress: &mut dyn FnMut(ClaimPhase, Duration, Duration),
    ) -> Result<Claimed, ClaimError> {
        let mut reads = a.reads;
        let found_raw = a.found.encode_raw();
        let mut written_at = self.write_and_verify(
            &found_raw, &a.blk, &a.ours, a.wait, &mut reads, cancel, progress,
        )?;
        let (blk, ours) = if mode == ClaimMode::Bare {
            let (fresh, bytes, at) =
                self.refresh_bare(&a.blk, &a.ours, &mut reads, cancel, progress)?;
            written_at = at;
            (fresh, bytes)
        } else {
            (a.blk, a.ours)
        };
        let sb_interval = self.fs.superblock().s_mmp_update_interval;
        let readers = check::wait_time(check::check_interval(sb_interval, published_ci));
        let now = self.clock.now();
        let since_write = now.saturating_sub(written_at);
        Ok(Claimed {
            block: blk,
            on_disk: ours,
            previous: a.previous,
            previous_block: a.found,
            check_interval: a.check_interval,
            verify_wait: if a.report_wait { a.wait } else { since_write },
            written_at,
            stale_after: readers.saturating_sub(since_write),
            lease_until: written_at + readers,
            fence_tag: a.fence_tag,
            elapsed: now.saturating_sub(a.start),
            reads,
        })
    }

    /// Step 2 of a claim: compare-and-write our block over the one we found (`found`, its
    /// bytes as first read), then watch that it stays ours. Returns when our write was
    /// submitted.
    #[allow(clippy::too_many_arguments)]
    fn write_and_verify(
        &self,
        found: &[u8; MMP_STRUCT_SIZE],
        blk: &MmpBlock,
        ours: &[u8; MMP_STRUCT_SIZE],
        wait: Duration,
        reads: &mut u32,
        cancel: &dyn Fn() -> bool,
        progress: &mut dyn FnMut(ClaimPhase, Duration, Duration),
    ) -> Result<Duration, ClaimError> {
        let (fs, clock, poll, device) = (self.fs, self.clock, self.poll, self.device);
        let (written_at, done) = compare_and_write(fs, clock, found, blk, reads, self.gap)?
            .map_err(|f| {
                f.into_claim_error(device.to_string(), |device, block| ClaimError::InUse {
                    device,
                    block,
                })
            })?;
        tracing::debug!(device = %device, seq = format_args!("{:#010x}", blk.mmp_seq), "claim: sequence written, verifying");
        // The watch ends `wait` after the submission of our write (the first heartbeat must
        // land before a reader who saw our write may call it stale), but never less than
        // the gap (and two polls) after the write completed: a racing claimer's write, based
        // on a read from before ours landed, lands within its gap of that read.
        let verify_for = (written_at + wait)
            .saturating_sub(done)
            .max(self.gap + 2 * poll);
        watch_unchanged(
            fs, clock, poll, done, verify_for, ours, reads, cancel, progress,
        )
        .map_err(|e| e.into_claim_error(device, blk.mmp_seq, fs, blk, ours))?;
        Ok(written_at)
    }

    /// The last step of a bare claim ([`ClaimMode::Bare`]): nobody holds the block after us,
    /// so make sure nobody who saw our write can call it stale soon. A reader that first read
    /// our write watches it for `readers` (11 s or more) and our verification was shorter, so
    /// a fresh sequence now is a change every such reader sees; readers that start later see
    /// the fresh block for a full wait from here. Then watch for a racing write based on an
    /// older read. Returns the fresh block, its bytes and when its write was submitted.
    fn refresh_bare(
        &self,
        blk: &MmpBlock,
        ours: &[u8; MMP_STRUCT_SIZE],
        reads: &mut u32,
        cancel: &dyn Fn() -> bool,
        progress: &mut dyn FnMut(ClaimPhase, Duration, Duration),
    ) -> Result<(MmpBlock, [u8; MMP_STRUCT_SIZE], Duration), ClaimError> {
        let (fs, clock, poll, device) = (self.fs, self.clock, self.poll, self.device);
        let seq = blk.mmp_seq;
        let mut fresh = blk.clone();
        fresh.mmp_seq = seq_after(seq);
        fresh.mmp_time = wall_now();
        let fresh_bytes = on_disk_bytes(fs, &fresh);
        let (at, done) =
            compare_and_write(fs, clock, ours, &fresh, reads, self.gap)?.map_err(|f| {
                f.into_claim_error(device.to_string(), |device, block| ClaimError::Lost {
                    device,
                    ours: seq,
                    block,
                })
            })?;
        watch_unchanged(
            fs,
            clock,
            poll,
            done,
            self.gap + poll,
            &fresh_bytes,
            reads,
            cancel,
            progress,
        )
        .map_err(|e| e.into_claim_error(device, fresh.mmp_seq, fs, &fresh, &fresh_bytes))?;
        Ok((fresh, fresh_bytes, at))
    }
}

/// Why a compare-and-write did not end with our block safely written.
enum CasFail {
    /// The block held this instead of what we expected: nothing written.
    Changed(Box<MmpBlock>),
    /// Written, but the read-to-end-of-write gap (first) exceeded the limit (second).
    Stalled(Duration, Duration),
}

impl CasFail {
    /// `changed` names the claim error for a block found changed (in use, or lost).
    fn into_claim_error(
        self,
        device: String,
        changed: impl FnOnce(String, Box<MmpBlock>) -> ClaimError,
    ) -> ClaimError {
        match self {
            CasFail::Changed(found) => changed(device, found),
            CasFail::Stalled(took, limit) => ClaimError::Stalled {
                device,
                took,
                limit,
            },
        }
    }
}

/// Re-read the block; if it still holds `expected`, write `blk` and sync, within `gap` of the
/// re-read. Returns the time of the re-read (the write was submitted after it) and of the end
/// of the write.
fn compare_and_write<D: BlockIo>(
    fs: &MmpFs<D>,
    clock: &dyn Clock,
    expected: &[u8; MMP_STRUCT_SIZE],
    blk: &MmpBlock,
    reads: &mut u32,
    gap: Duration,
) -> Result<Result<(Duration, Duration), CasFail>, Error> {
    let before = clock.now();
    *reads += 1;
    let (found, raw) = read_on_disk(fs)?;
    if &raw != expected {
        return Ok(Err(CasFail::Changed(Box::new(found))));
    }
    fs.write_mmp_synced(blk)?;
    let done = clock.now();
    let took = done.saturating_sub(before);
    if took > gap {
        return Ok(Err(CasFail::Stalled(took, gap)));
    }
    Ok(Ok((before, done)))
}

/// Why a watch after our write ended early.
enum WatchEnd {
    Changed(Box<MmpBlock>),
    Cancelled,
    Fs(Error),
}

impl WatchEnd {
    fn into_claim_error<D: BlockIo>(
        self,
        device: &str,
        seq: u32,
        fs: &MmpFs<D>,
        blk: &MmpBlock,
        ours: &[u8; MMP_STRUCT_SIZE],
    ) -> ClaimError {
        match self {
            WatchEnd::Changed(found) => ClaimError::Lost {
                device: device.to_string(),
                ours: seq,
                block: found,
            },
            WatchEnd::Fs(e) => ClaimError::Fs(e),
            WatchEnd::Cancelled => match release(fs, blk, &[*ours]) {
                Ok(r) => ClaimError::Cancelled {
                    device: device.to_string(),
                    wrote: true,
                    restored_clean: matches!(r, Release::Clean(_)),
                },
                Err(e) => ClaimError::Fs(e),
            },
        }
    }
}

/// Re-read every `poll` until `wait` has passed since `from`; any byte that differs from
/// `ours` ends the watch.
#[allow(clippy::too_many_arguments)]
fn watch_unchanged<D: BlockIo>(
    fs: &MmpFs<D>,
    clock: &dyn Clock,
    poll: Duration,
    from: Duration,
    wait: Duration,
    ours: &[u8; MMP_STRUCT_SIZE],
    reads: &mut u32,
    cancel: &dyn Fn() -> bool,
    progress: &mut dyn FnMut(ClaimPhase, Duration, Duration),
) -> Result<(), WatchEnd> {
    loop {
        let elapsed = clock.now().saturating_sub(from);
        progress(ClaimPhase::Verifying, elapsed.min(wait), wait);
        if elapsed >= wait {
            return Ok(());
        }
        clock.sleep(poll.min(wait - elapsed));
        *reads += 1;
        let (now_blk, now_raw) = read_on_disk(fs).map_err(WatchEnd::Fs)?;
        if &now_raw != ours {
            return Err(WatchEnd::Changed(Box::new(now_blk)));
        }
        if cancel() {
            return Err(WatchEnd::Cancelled);
        }
    }
}

/// How long to watch after writing our sequence.
///
/// `min(2*CI + 1, CI + 60)` for the CI of the block we found (what e2fsprogs waits, even for a
/// clean block), but two seconds shorter than what a reader of *our* block waits (from the
/// `published` check interval, at least 11 s): a holder writes its first heartbeat right after
/// the claim, and that write must land before a reader who saw our claim write, and watched ever
/// since, could call it stale (the holder keeps 0.5 s of that as its own margin, which leaves
/// 1.5 s for a loaded machine to get the first heartbeat out). A racing writer (a claimer or a
/// kernel mount that read the block before our write) writes within milliseconds of its own
/// read, and a kmmpd writes every `s_mmp_update_interval` <= CI, so 9 s or more still catches
/// them by a wide margin.
pub fn verify_wait(found_ci: u32, sb_update_interval: u16, published: u16) -> Duration {
    let readers = check::wait_time(check::check_interval(sb_update_interval, published));
    check::wait_time(found_ci).min(readers.saturating_sub(Duration::from_secs(2)))
}

/// A random live sequence different from the one we found.
/// The block a claim writes: a fresh sequence (never `found`, the one read), this node's names,
/// the time now; with its on-disk bytes.
pub(crate) fn our_block<D: BlockIo>(
    fs: &MmpFs<D>,
    fresh_seq: &mut FreshSeq<'_>,
    found: u32,
    opts: &ClaimOptions,
) -> Result<(MmpBlock, [u8; MMP_STRUCT_SIZE]), ClaimError> {
    let seq = pick_seq(fresh_seq, found).map_err(|source| {
        ClaimError::Fs(Error::RandomSeq {
            device: fs.device_name().to_string(),
            source,
        })
    })?;
    let blk = MmpBlock::new(
        seq,
        wall_now(),
        &opts.nodename,
        &opts.bdevname,
        opts.check_interval,
    );
    let ours = on_disk_bytes(fs, &blk);
    Ok((blk, ours))
}

fn pick_seq(fresh_seq: &mut FreshSeq<'_>, found: u32) -> Result<u32, SeqError> {
    for _ in 0..64 {
        let s = fresh_seq()?;
        if (1..=EXT4_MMP_SEQ_MAX).contains(&s) && s != found {
            return Ok(s);
        }
    }
    // A broken generator: still never the found value nor a special code.
    Ok(seq_after(found))
}

#[cfg(test)]
pub(crate) mod tests;
