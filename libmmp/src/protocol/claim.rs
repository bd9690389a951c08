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
//!   [`crate::ondisk::mmp::FenceTag`] (a holder that is reset by a watchdog when its heartbeats stop),
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
use crate::io::device::BlockIo;
use crate::ondisk::mmp::{MmpBlock, EXT4_MMP_SEQ_CLEAN, EXT4_MMP_SEQ_MAX, MMP_STRUCT_SIZE};
use crate::protocol::check::{self, CheckOptions, SafeReason, Verdict};
use crate::protocol::clock::{wall_now, Clock};
use crate::protocol::seq::{seq_after, FreshSeq, SeqError};
use std::time::Duration;

/// What a claim writes and how it watches.
#[derive(Debug, Clone)]
pub struct ClaimOptions {
    /// `mmp_nodename`: this node (default: the host name).
    pub nodename: String,
    /// `mmp_bdevname`: the device as this node names it (default: the path's last component).
    pub bdevname: String,
    /// `mmp_check_interval` to publish, in seconds: the holder's pace, so that readers wait long
    /// enough (see [`crate::protocol::heartbeat::publish_check_interval`]).
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
    /// The previous holder's valid self-fence tag, which shortened the first watch.
    pub fence_tag: Option<crate::ondisk::mmp::FenceTag>,
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
    let previous = match report.verdict {
        Verdict::Safe(reason) => reason,
        Verdict::InUse { block } => {
            return Err(ClaimError::InUse {
                device,
                block: Box::new(block),
            })
        }
        Verdict::FsckRunning => {
            return Err(ClaimError::FsckRunning {
                device,
                block: Box::new(report.first),
            })
        }
        Verdict::UnknownSeq(_) => {
            return Err(ClaimError::UnknownSeq {
                device,
                block: Box::new(report.first),
            })
        }
        Verdict::BadChecksum { stored, computed } => {
            return Err(ClaimError::BadChecksum {
                device,
                stored,
                computed,
            })
        }
        // No timeout was given, so the check cannot be undecided; treat it as "in use" rather
        // than trust it.
        Verdict::Undecided => {
            return Err(ClaimError::InUse {
                device,
                block: Box::new(report.first),
            })
        }
    };
    if cancel() {
        return Err(ClaimError::Cancelled {
            device,
            wrote: false,
            restored_clean: false,
        });
    }
    let mut reads = report.reads;
    let seq = pick_seq(fresh_seq, report.first.mmp_seq).map_err(|source| {
        ClaimError::Fs(Error::RandomSeq {
            device: device.clone(),
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
    let sb_interval = fs.superblock().s_mmp_update_interval;
    let readers = check::wait_time(check::check_interval(sb_interval, opts.check_interval));
    let fenced_holder = previous == SafeReason::Stale && report.fence_tag.is_some();
    let wait = {
        let w = verify_wait(report.check_interval, sb_interval, opts.check_interval);
        if fenced_holder {
            w.min(FENCED_VERIFY)
        } else {
            w
        }
    };
    let poll = opts.poll.max(Duration::from_millis(1));
    let first_raw = report.first.encode_raw();
    let (mut written_at, done) = compare_and_write(fs, clock, &first_raw, &blk, &mut reads)?
        .map_err(|f| {
            f.into_claim_error(device.clone(), |device, block| ClaimError::InUse {
                device,
                block,
            })
        })?;
    tracing::debug!(device = %device, seq = format_args!("{seq:#010x}"), previous = ?previous, fenced_holder, "claim: sequence written, verifying");
    // The watch ends `wait` after the submission of our write (the first heartbeat must land
    // before a reader who saw our write may call it stale), but never less than
    // MAX_WRITE_GAP (and two polls) after the write completed: a racing claimer's write, based
    // on a read from before ours landed, lands within MAX_WRITE_GAP of that read.
    let verify_for = (written_at + wait)
        .saturating_sub(done)
        .max(MAX_WRITE_GAP + 2 * poll);
    watch_unchanged(
        fs, clock, poll, done, verify_for, &ours, &mut reads, cancel, progress,
    )
    .map_err(|e| e.into_claim_error(&device, seq, fs, &blk, &ours))?;
    let (blk, ours) = if mode == ClaimMode::Bare {
        // Nobody holds the block after us, so make sure nobody who saw our write can call it
        // stale soon: a reader that first read our write watches it for `readers` (11 s or
        // more) and our verification was shorter, so a fresh sequence now is a change every
        // such reader sees; readers that start later see the fresh block for a full wait
        // from here. Then watch for a racing write based on an older read.
        let mut fresh = blk.clone();
        fresh.mmp_seq = seq_after(seq);
        fresh.mmp_time = wall_now();
        let fresh_bytes = on_disk_bytes(fs, &fresh);
        let (at, done) = compare_and_write(fs, clock, &ours, &fresh, &mut reads)?.map_err(|f| {
            f.into_claim_error(device.clone(), |device, block| ClaimError::Lost {
                device,
                ours: seq,
                block,
            })
        })?;
        written_at = at;
        watch_unchanged(
            fs,
            clock,
            poll,
            done,
            MAX_WRITE_GAP + poll,
            &fresh_bytes,
            &mut reads,
            cancel,
            progress,
        )
        .map_err(|e| e.into_claim_error(&device, fresh.mmp_seq, fs, &fresh, &fresh_bytes))?;
        (fresh, fresh_bytes)
    } else {
        (blk, ours)
    };
    let now = clock.now();
    Ok(Claimed {
        block: blk,
        on_disk: ours,
        previous,
        previous_block: report.first,
        check_interval: report.check_interval,
        verify_wait: wait,
        written_at,
        stale_after: readers.saturating_sub(now.saturating_sub(written_at)),
        fence_tag: report.fence_tag,
        elapsed: now.saturating_sub(start),
        reads,
    })
}

/// Why a compare-and-write did not end with our block safely written.
enum CasFail {
    /// The block held this instead of what we expected: nothing written.
    Changed(Box<MmpBlock>),
    /// Written, but the read-to-end-of-write gap exceeded [`MAX_WRITE_GAP`].
    Stalled(Duration),
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
            CasFail::Stalled(took) => ClaimError::Stalled {
                device,
                took,
                limit: MAX_WRITE_GAP,
            },
        }
    }
}

/// Re-read the block; if it still holds `expected`, write `blk` and sync, within
/// [`MAX_WRITE_GAP`] of the re-read. Returns the time of the re-read (the write was submitted
/// after it) and of the end of the write.
fn compare_and_write<D: BlockIo>(
    fs: &MmpFs<D>,
    clock: &dyn Clock,
    expected: &[u8; MMP_STRUCT_SIZE],
    blk: &MmpBlock,
    reads: &mut u32,
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
    if took > MAX_WRITE_GAP {
        return Ok(Err(CasFail::Stalled(took)));
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

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::io::device::MemDevice;
    use crate::ondisk::mmp::{EXT4_MMP_SEQ_FSCK, EXT4_MMP_SEQ_MAX};
    use std::cell::Cell;
    use std::io;

    pub(crate) use crate::protocol::check::tests::{image, shared, FakeClock, BS, MMP_BLOCK};
    pub(crate) use crate::testing::ScriptedDevice;

    pub(crate) fn opts(node: &str) -> ClaimOptions {
        ClaimOptions {
            nodename: node.to_string(),
            bdevname: "sdb".to_string(),
            check_interval: 5,
            poll: Duration::from_millis(100),
        }
    }

    fn run_claim(dev: impl BlockIo, clock: &FakeClock, seq: u32) -> Result<Claimed, ClaimError> {
        let fs = MmpFs::open(dev).unwrap();
        claim(
            &fs,
            clock,
            &mut || Ok(seq),
            &opts("me"),
            &|| false,
            &mut |_, _, _| {},
        )
    }

    fn clean() -> MmpBlock {
        MmpBlock::new(EXT4_MMP_SEQ_CLEAN, 0, "old", "sda", 5)
    }

    #[test]
    fn clean_block_is_claimed_only_after_a_wait() {
        let clock = FakeClock::default();
        let dev = shared(true, &clean(), &clock, |_| None);
        let fs = MmpFs::open(&dev).unwrap();
        let c = claim(
            &fs,
            &clock,
            &mut || Ok(0x1234),
            &opts("me"),
            &|| false,
            &mut |_, _, _| {},
        )
        .unwrap();
        assert_eq!(c.previous, SafeReason::Clean);
        assert_eq!(c.block.mmp_seq, 0x1234);
        // Unlike the kernel: a clean block still gets a verification wait, two seconds less
        // than a reader of our block waits (min(2*5+1, 5+60) = 11 s).
        assert_eq!(c.verify_wait, Duration::from_secs(9));
        assert!(clock.now() >= Duration::from_secs(9));
        assert_eq!(dev.current().nodename(), "me");
        assert_eq!(dev.current().mmp_seq, 0x1234);
        assert_eq!(
            dev.writes.borrow().len(),
            1,
            "a claimer writes exactly once"
        );
        assert!(c.reads >= 90, "{}", c.reads);
    }

    #[test]
    fn stale_live_block_takes_two_waits() {
        let clock = FakeClock::default();
        let dev = shared(
            false,
            &MmpBlock::new(77, 0, "dead", "sda", 5),
            &clock,
            |_| None,
        );
        let c = run_claim(&dev, &clock, 0x55).unwrap();
        assert_eq!(c.previous, SafeReason::Stale);
        assert!(clock.now() >= Duration::from_secs(20));
        assert!(clock.now() < Duration::from_secs(21));
    }

    #[test]
    fn refuses_fsck_unknown_and_bad_checksum_without_writing() {
        for (blk, name) in [
            (
                MmpBlock::new(EXT4_MMP_SEQ_FSCK, 0, "x", "y", 5),
                "fsck_running",
            ),
            (
                MmpBlock::new(EXT4_MMP_SEQ_MAX + 5, 0, "x", "y", 5),
                "unknown_sequence",
            ),
        ] {
            let clock = FakeClock::default();
            let dev = shared(false, &blk, &clock, |_| None);
            let e = run_claim(&dev, &clock, 9).unwrap_err();
            assert_eq!(e.name(), name);
            assert!(e.is_refusal());
            assert!(dev.writes.borrow().is_empty());
            assert_eq!(clock.now(), Duration::ZERO);
        }
        let clock = FakeClock::default();
        let dev = shared(true, &clean(), &clock, |_| None);
        let mut d = dev.inner.snapshot();
        d[(MMP_BLOCK * BS) as usize + 0x3FC] ^= 1;
        let dev = MemDevice::new("bad", d);
        let e = run_claim(&dev, &clock, 9).unwrap_err();
        assert_eq!(e.name(), "bad_checksum");
    }

    #[test]
    fn live_writer_is_refused_without_writing() {
        let clock = FakeClock::default();
        let dev = shared(
            false,
            &MmpBlock::new(1, 0, "nodeA", "sda", 5),
            &clock,
            |t| Some(MmpBlock::new(1 + t.as_secs() as u32, 0, "nodeA", "sda", 5)),
        );
        let e = run_claim(&dev, &clock, 9).unwrap_err();
        match &e {
            ClaimError::InUse { block, .. } => assert_eq!(block.nodename(), "nodeA"),
            e => panic!("{e}"),
        }
        assert!(e.to_string().contains("nodeA"));
        assert!(dev.writes.borrow().is_empty());
    }

    #[test]
    fn a_later_writer_during_verification_makes_us_lose() {
        // Another claimer saw CLEAN too and writes its sequence 3 s after us.
        let clock = FakeClock::default();
        let dev = shared(false, &clean(), &clock, |t| {
            (t >= Duration::from_secs(3)).then(|| MmpBlock::new(0x999, 0, "nodeB", "sdc", 5))
        });
        let e = run_claim(&dev, &clock, 0x111).unwrap_err();
        match e {
            ClaimError::Lost { ours, block, .. } => {
                assert_eq!(ours, 0x111);
                assert_eq!(block.nodename(), "nodeB");
            }
            e => panic!("{e}"),
        }
        assert!(clock.now() < Duration::from_millis(3200), "lost at once");
    }

    /// Race two claimers that a holder follows on a fresh copy of `initial`, for every start
    /// offset and write duration: exactly one wins, and the winner never has to fence.
    fn exactly_one_winner(initial: &MmpBlock, offsets_ms: &[u64]) {
        for &offset_ms in offsets_ms {
            for delay_ms in [0u64, 700, 1_900] {
                let shared = MemDevice::new("img", image(false, initial).snapshot());
                let results = race(
                    &shared,
                    Duration::from_millis(offset_ms),
                    ClaimMode::HolderFollows,
                    Duration::from_millis(delay_ms),
                );
                let at = format!("offset {offset_ms} ms, writes {delay_ms} ms: {results:?}");
                assert_eq!(results.iter().filter(|r| r.is_ok()).count(), 1, "{at}");
                assert!(
                    !results
                        .iter()
                        .any(|r| matches!(r, Err(e) if e.contains("fenced"))),
                    "a winner had to fence: {at}"
                );
            }
        }
    }

    /// Two claimers on one in-memory device, interleaved step by step on one fake timeline:
    /// whatever their start offsets, exactly one wins.
    #[test]
    fn two_racing_claimers_exactly_one_wins() {
        exactly_one_winner(&clean(), &[0, 1, 50, 100, 999, 5_000, 10_900, 30_000]);
    }

    /// The block of a dead holder that published a self-fence bound: the claim is shorter,
    /// and two claimers racing for it still produce exactly one winner.
    #[test]
    fn two_racing_claimers_of_a_fenced_holders_block_exactly_one_wins() {
        let mut dead = MmpBlock::new(0x4242, 100, "dead", "sda", 5);
        dead.set_fence_tag(Some(crate::protocol::check::tests::watchdog_tag(4_000)));
        exactly_one_winner(
            &dead,
            &[
                0, 1, 50, 100, 999, 2_000, 3_000, 5_000, 5_100, 8_000, 30_000,
            ],
        );
    }

    /// Two bare claims (nothing holds the block afterwards): the first one's block stays
    /// fresh for `stale_after` after it returns, and a second claim never wins inside that
    /// lease; started within a couple of seconds of each other, exactly one wins.
    #[test]
    fn two_bare_claims_never_hold_at_the_same_time() {
        for offset_ms in [
            0u64, 1, 50, 100, 999, 1_500, 2_000, 5_000, 10_900, 11_000, 12_000, 13_000, 13_100,
            15_000, 30_000,
        ] {
            for delay_ms in [0u64, 700, 1_900] {
                let shared = MemDevice::new("img", image(false, &clean()).snapshot());
                let results = race(
                    &shared,
                    Duration::from_millis(offset_ms),
                    ClaimMode::Bare,
                    Duration::from_millis(delay_ms),
                );
                let wins: Vec<_> = results.iter().filter_map(|r| r.as_ref().ok()).collect();
                let at = format!("offset {offset_ms} ms, writes {delay_ms} ms: {results:?}");
                assert!(!wins.is_empty(), "{at}");
                if offset_ms <= 5_000 {
                    assert_eq!(wins.len(), 1, "{at}");
                }
                if let [a, b] = wins[..] {
                    let (first, second) = if a.1 <= b.1 { (a, b) } else { (b, a) };
                    assert!(
                        second.1 >= first.1 + first.2,
                        "the second claim won inside the first one's lease: {at}"
                    );
                }
            }
        }
    }

    /// Runs two claims as threads on one timeline: a shared fake clock where each sleeper
    /// wakes in time order (a tiny discrete-event scheduler).
    /// Each result: the winner's sequence, when its claim returned, and its `stale_after`.
    #[allow(clippy::type_complexity)]
    fn race(
        dev: &MemDevice,
        offset: Duration,
        mode: ClaimMode,
        write_delay: Duration,
    ) -> Vec<Result<(u32, Duration, Duration), String>> {
        /// Every write takes `delay` on the shared timeline and lands at its end, so the
        /// other claimer can read the old block while it is under way.
        struct SlowWrites<'a, C: Clock> {
            inner: &'a MemDevice,
            clock: &'a C,
            delay: Duration,
        }
        impl<C: Clock> BlockIo for SlowWrites<'_, C> {
            fn read_at(&self, offset: u64, buf: &mut [u8]) -> io::Result<()> {
                self.inner.read_at(offset, buf)
            }
            fn write_at(&self, offset: u64, buf: &[u8]) -> io::Result<()> {
                if !self.delay.is_zero() {
                    self.clock.sleep(self.delay);
                }
                self.inner.write_at(offset, buf)
            }
            fn sync(&self) -> io::Result<()> {
                Ok(())
            }
            fn size(&self) -> u64 {
                self.inner.size()
            }
            fn logical_block_size(&self) -> u32 {
                512
            }
            fn name(&self) -> &str {
                "slow"
            }
        }
        use std::sync::{Arc, Condvar, Mutex};
        struct Sched {
            now: Duration,
            // wake-up time per participant; None = running.
            wake: Vec<Option<Duration>>,
            done: Vec<bool>,
        }
        struct SimClock {
            me: usize,
            s: Arc<(Mutex<Sched>, Condvar)>,
        }
        impl SimClock {
            fn advance(&self, until: Duration) {
                let (m, cv) = &*self.s;
                let mut g = m.lock().unwrap();
                g.wake[self.me] = Some(until);
                cv.notify_all();
                loop {
                    // Whoever has the earliest wake-up among non-running participants runs,
                    // once nobody else is running.
                    let running = (0..g.wake.len()).any(|i| g.wake[i].is_none() && !g.done[i]);
                    let next = (0..g.wake.len())
                        .filter(|&i| !g.done[i])
                        .filter_map(|i| g.wake[i].map(|w| (w, i)))
                        .min();
                    if !running && next.map(|(_, i)| i) == Some(self.me) {
                        g.now = g.now.max(until);
                        g.wake[self.me] = None;
                        cv.notify_all();
                        return;
                    }
                    g = cv.wait(g).unwrap();
                }
            }
        }
        impl Clock for SimClock {
            fn now(&self) -> Duration {
                self.s.0.lock().unwrap().now
            }
            fn sleep(&self, d: Duration) {
                let t = self.now() + d;
                self.advance(t);
            }
        }
        let s = Arc::new((
            Mutex::new(Sched {
                now: Duration::ZERO,
                wake: vec![Some(Duration::ZERO), Some(offset)],
                done: vec![false, false],
            }),
            Condvar::new(),
        ));
        std::thread::scope(|scope| {
            let handles: Vec<_> = (0..2)
                .map(|me| {
                    let s = s.clone();
                    scope.spawn(move || {
                        let clock = SimClock { me, s: s.clone() };
                        let start = if me == 0 { Duration::ZERO } else { offset };
                        clock.advance(start);
                        let slow = SlowWrites {
                            inner: dev,
                            clock: &clock,
                            delay: write_delay,
                        };
                        let fs = MmpFs::open(&slow).unwrap();
                        let cfg = crate::protocol::heartbeat::HeartbeatConfig::default();
                        let r = claim_with(
                            &fs,
                            &clock,
                            &mut || Ok(0x100 + 0x10 * me as u32),
                            &opts(&format!("node{me}")),
                            mode,
                            &|| false,
                            &mut |_, _, _| {},
                        );
                        let returned = clock.now();
                        // With HolderFollows the winner holds the device (as mmpd does) while
                        // the other one is still trying; a bare winner walks away.
                        let r = match r {
                            Err(e) => Err(e.name().to_string()),
                            Ok(c) if mode == ClaimMode::Bare => {
                                Ok((c.block.mmp_seq, returned, c.stale_after))
                            }
                            Ok(c) => {
                                let seq = c.block.mmp_seq;
                                let lease = c.stale_after;
                                let mut hb =
                                    crate::protocol::heartbeat::Heartbeat::new(fs, &c, cfg, &clock);
                                let mut fenced = None;
                                while !s.0.lock().unwrap().done[1 - me] {
                                    if let Err(f) = hb.beat(&clock) {
                                        fenced = Some(format!("the winner fenced: {f}"));
                                        break;
                                    }
                                    clock.sleep(cfg.interval);
                                }
                                fenced.map_or(Ok((seq, returned, lease)), Err)
                            }
                        };
                        let (m, cv) = &*s;
                        m.lock().unwrap().done[me] = true;
                        cv.notify_all();
                        r
                    })
                })
                .collect();
            handles.into_iter().map(|h| h.join().unwrap()).collect()
        })
    }

    #[test]
    fn a_stale_block_with_a_valid_fence_tag_is_claimed_after_the_bound() {
        let clock = FakeClock::default();
        let mut dead = MmpBlock::new(77, 0, "dead", "sda", 5);
        let tag = crate::protocol::check::tests::watchdog_tag(4_000);
        dead.set_fence_tag(Some(tag));
        let dev = shared(true, &dead, &clock, |_| None);
        let c = run_claim(&dev, &clock, 0x55).unwrap();
        assert_eq!((c.previous, c.fence_tag), (SafeReason::Stale, Some(tag)));
        assert_eq!(c.verify_wait, FENCED_VERIFY);
        // 4 s bound + 1 s + 1 % watched, then 3 s after our write.
        assert!(
            clock.now() >= Duration::from_millis(8_040),
            "{:?}",
            clock.now()
        );
        assert!(
            clock.now() < Duration::from_millis(8_300),
            "{:?}",
            clock.now()
        );
        assert_eq!(c.block.fence_tag(), None, "a claim never writes a tag");
    }

    #[test]
    fn a_tag_left_behind_under_kmmpd_gives_no_shortcut() {
        // mmpd held the block, then a kernel mount took over: kmmpd keeps the padding and
        // counts on from its own sequence. Its block is stale now (kmmpd died too).
        let clock = FakeClock::default();
        let mut b = MmpBlock::new(77, 0, "mmpd-node", "sda", 5);
        b.set_fence_tag(Some(crate::protocol::check::tests::watchdog_tag(2_000)));
        b.mmp_seq = 0x9999;
        b.mmp_time = 50;
        b.mmp_nodename = MmpBlock::new(0, 0, "kernel-node", "", 0).mmp_nodename;
        let dev = shared(false, &b, &clock, |_| None);
        let c = run_claim(&dev, &clock, 0x55).unwrap();
        assert_eq!(c.fence_tag, None);
        assert!(clock.now() >= Duration::from_secs(20), "{:?}", clock.now());
    }

    #[test]
    fn a_bare_claim_outlasts_readers_then_refreshes_its_block() {
        let clock = FakeClock::default();
        let dev = shared(true, &clean(), &clock, |_| None);
        let fs = MmpFs::open(&dev).unwrap();
        let c = claim_with(
            &fs,
            &clock,
            &mut || Ok(0x1234),
            &opts("me"),
            ClaimMode::Bare,
            &|| false,
            &mut |_, _, _| {},
        )
        .unwrap();
        // Readers of our block wait 11 s: we watched 9 s, wrote a fresh sequence (which every
        // reader of our first write sees before it may call that stale), watched
        // MAX_WRITE_GAP + one poll more.
        assert_eq!(c.verify_wait, Duration::from_secs(9));
        let writes = dev.writes.borrow().clone();
        assert_eq!(writes.len(), 2, "{writes:?}");
        assert_eq!((writes[0].1, writes[1].1), (0x1234, 0x1235));
        assert!(writes[1].0 >= writes[0].0 + Duration::from_secs(9));
        assert_eq!(dev.current().mmp_seq, 0x1235);
        assert_eq!(c.block.mmp_seq, 0x1235);
        assert!(clock.now() >= Duration::from_millis(11_100));
        // The lease left: 11 s from the refresh, less the watch after it.
        assert!(
            c.stale_after >= Duration::from_millis(8_800),
            "{:?}",
            c.stale_after
        );
        assert!(
            c.stale_after <= Duration::from_millis(8_900),
            "{:?}",
            c.stale_after
        );
    }

    #[test]
    fn a_claimer_whose_write_stalls_gives_up() {
        let clock = FakeClock::default();
        let dev = shared(false, &clean(), &clock, |_| None);
        dev.write_delay
            .set(MAX_WRITE_GAP + Duration::from_millis(100));
        match run_claim(&dev, &clock, 0x66) {
            Err(e @ ClaimError::Stalled { .. }) => {
                assert!(e.is_refusal());
                assert!(e.to_string().contains("stalled"), "{e}");
            }
            r => panic!("expected stalled, got {r:?}"),
        }
        // A slow write within the limit is fine.
        let clock = FakeClock::default();
        let dev = shared(false, &clean(), &clock, |_| None);
        dev.write_delay.set(Duration::from_millis(1_500));
        assert!(run_claim(&dev, &clock, 0x66).is_ok());
    }

    #[test]
    fn a_change_just_before_our_write_is_seen_by_the_compare() {
        // The block is clean at the check's only read and changes right after it.
        let clock = FakeClock::default();
        let reads = Cell::new(0u32);
        let dev = shared(false, &clean(), &clock, |_| {
            reads.set(reads.get() + 1);
            (reads.get() == 2).then(|| MmpBlock::new(0x777, 9, "racer", "sdc", 5))
        });
        match run_claim(&dev, &clock, 0x66) {
            Err(ClaimError::InUse { block, .. }) => assert_eq!(block.nodename(), "racer"),
            r => panic!("expected in use, got {r:?}"),
        }
        assert!(dev.writes.borrow().is_empty(), "nothing written");
    }

    #[test]
    fn cancel_after_writing_restores_clean() {
        let clock = FakeClock::default();
        let dev = shared(false, &clean(), &clock, |_| None);
        let fs = MmpFs::open(&dev).unwrap();
        let e = claim(
            &fs,
            &clock,
            &mut || Ok(0x42),
            &opts("me"),
            &|| clock.now() > Duration::from_secs(2),
            &mut |_, _, _| {},
        )
        .unwrap_err();
        assert!(matches!(
            e,
            ClaimError::Cancelled {
                wrote: true,
                restored_clean: true,
                ..
            }
        ));
        assert_eq!(dev.current().mmp_seq, EXT4_MMP_SEQ_CLEAN);
    }

    #[test]
    fn release_writes_clean_only_over_our_own_block() {
        let clock = FakeClock::default();
        let dev = shared(false, &clean(), &clock, |_| None);
        let fs = MmpFs::open(&dev).unwrap();
        let c = claim(
            &fs,
            &clock,
            &mut || Ok(0x42),
            &opts("me"),
            &|| false,
            &mut |_, _, _| {},
        )
        .unwrap();
        let foreign = MmpBlock::new(0x77, 0, "other", "x", 5);
        fs.write_mmp_synced(&foreign).unwrap();
        assert!(matches!(
            release(&fs, &c.block, &[c.on_disk]).unwrap(),
            Release::NotOurs(_)
        ));
        assert_eq!(dev.current().mmp_seq, 0x77, "foreign block untouched");
        fs.write_mmp_synced(&c.block).unwrap();
        assert!(matches!(
            release(&fs, &c.block, &[c.on_disk]).unwrap(),
            Release::Clean(_)
        ));
        assert_eq!(dev.current().mmp_seq, EXT4_MMP_SEQ_CLEAN);
        assert_eq!(dev.current().nodename(), "me");
    }

    #[test]
    fn verify_wait_is_shorter_than_what_readers_of_our_block_wait() {
        assert_eq!(verify_wait(5, 5, 5), Duration::from_secs(9));
        // We publish 10: readers wait 21 s; the found block's CI 5 gives 11 s.
        assert_eq!(verify_wait(5, 1, 10), Duration::from_secs(11));
        // A previous holder published 60 but is gone; we publish 5: readers wait 11 s.
        assert_eq!(verify_wait(60, 1, 5), Duration::from_secs(9));
        for found in 5..300 {
            for publ in 5..300u16 {
                let w = verify_wait(found, 1, publ);
                assert!(w < check::wait_time(u32::from(publ)));
                assert!(w >= Duration::from_secs(9));
            }
        }
    }

    #[test]
    fn seq_helpers() {
        assert_eq!(
            pick_seq(&mut || Ok(5), 5).unwrap(),
            6,
            "never the found value"
        );
        assert_eq!(
            pick_seq(&mut || Ok(EXT4_MMP_SEQ_CLEAN), EXT4_MMP_SEQ_CLEAN).unwrap(),
            1
        );
        assert_eq!(bdevname_of("/dev/mapper/x"), "x");
    }
}
