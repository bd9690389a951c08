//! The write side of the protocol's start: claim a device for this node.
//!
//! This is the safe start of `ext4_multi_mount_protect` (fs/ext4/mmp.c) and `ext2fs_mmp_start`
//! (lib/ext2fs/mmp.c):
//!
//! 1. Watch the block with [`crate::check::check`]: refuse `SEQ_FSCK`, an unknown sequence or a
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
//! Time is injected ([`Clock`]) so all of this is tested in memory without sleeping.

use crate::check::{self, CheckOptions, Clock, SafeReason, Verdict};
use crate::device::BlockIo;
use crate::error::Error;
use crate::fs::MmpFs;
use crate::mmp::{MmpBlock, EXT4_MMP_SEQ_CLEAN, EXT4_MMP_SEQ_MAX, MMP_STRUCT_SIZE};
use std::io::Read;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// What a claim writes and how it watches.
#[derive(Debug, Clone)]
pub struct ClaimOptions {
    /// `mmp_nodename`: this node (default: the host name).
    pub nodename: String,
    /// `mmp_bdevname`: the device as this node names it (default: the path's last component).
    pub bdevname: String,
    /// `mmp_check_interval` to publish, in seconds: the holder's pace, so that readers wait long
    /// enough (see [`crate::heartbeat::publish_check_interval`]).
    pub check_interval: u16,
    /// How often to re-read the block while watching.
    pub poll: Duration,
}

impl ClaimOptions {
    /// Defaults for the device named `device` (a path): host name, the path's last component,
    /// check interval 5 (the minimum readers use anyway), poll every 100 ms.
    pub fn for_device(device: &str) -> Self {
        ClaimOptions {
            nodename: local_nodename(),
            bdevname: bdevname_of(device),
            check_interval: crate::mmp::EXT4_MMP_MIN_CHECK_INTERVAL,
            poll: Duration::from_millis(100),
        }
    }
}

/// This host's name (`uname -n`), as the kernel writes `init_utsname()->nodename`.
pub fn local_nodename() -> String {
    nix::unistd::gethostname()
        .map(|h| h.to_string_lossy().into_owned())
        .unwrap_or_else(|_| "(unknown)".to_string())
}

/// The last component of a device path (`/dev/mapper/x` -> `x`), as the kernel's `%pg` names
/// the block device.
pub fn bdevname_of(device: &str) -> String {
    device.rsplit('/').next().unwrap_or(device).to_string()
}

/// Wall-clock seconds for `mmp_time` (informational only: readers never trust it).
pub fn wall_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// A random live sequence in `1..=SEQ_MAX` from the kernel's CSPRNG (`/dev/urandom`), like the
/// kernel's `mmp_new_seq()` (which may also return 0; we skip it so 0 never means "ours").
pub fn random_seq() -> std::io::Result<u32> {
    let mut f = std::fs::File::open("/dev/urandom")?;
    loop {
        let mut b = [0u8; 4];
        f.read_exact(&mut b)?;
        let v = u32::from_le_bytes(b);
        if (1..=EXT4_MMP_SEQ_MAX).contains(&v) {
            return Ok(v);
        }
    }
}

/// The next heartbeat sequence after `seq`: kmmpd counts 1, 2, 3, ... and so do we, wrapping
/// below the special codes.
pub fn next_seq(seq: u32) -> u32 {
    if seq >= EXT4_MMP_SEQ_MAX {
        1
    } else {
        seq + 1
    }
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
    /// When (by the claim's clock) our sequence was written: the age of the block on disk.
    pub written_at: Duration,
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

/// Run a claim. `next_seq` supplies random candidates (use [`random_seq`]); `cancel` is polled
/// at every read; `progress` sees the phase, elapsed and total of each wait.
pub fn claim<D: BlockIo>(
    fs: &MmpFs<D>,
    clock: &dyn Clock,
    next_seq: &mut dyn FnMut() -> u32,
    opts: &ClaimOptions,
    cancel: &dyn Fn() -> bool,
    progress: &mut dyn FnMut(ClaimPhase, Duration, Duration),
) -> Result<Claimed, ClaimError> {
    let device = fs.device_name().to_string();
    let start = clock.now();
    let check_opts = CheckOptions {
        poll: opts.poll,
        timeout: None,
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
    let seq = pick_seq(next_seq, report.first.mmp_seq);
    let blk = MmpBlock::new(
        seq,
        wall_now(),
        &opts.nodename,
        &opts.bdevname,
        opts.check_interval,
    );
    let ours = on_disk_bytes(fs, &blk);
    fs.write_mmp_synced(&blk)?;
    tracing::debug!(device = %device, seq = format_args!("{seq:#010x}"), previous = ?previous, "claim: sequence written, verifying");
    let wait = verify_wait(
        report.check_interval,
        fs.superblock().s_mmp_update_interval,
        opts.check_interval,
    );
    let written_at = clock.now();
    let poll = opts.poll.max(Duration::from_millis(1));
    loop {
        let elapsed = clock.now().saturating_sub(written_at);
        progress(ClaimPhase::Verifying, elapsed.min(wait), wait);
        if elapsed >= wait {
            break;
        }
        clock.sleep(poll.min(wait - elapsed));
        reads += 1;
        let (now_blk, now_raw) = read_on_disk(fs)?;
        if now_raw != ours {
            return Err(ClaimError::Lost {
                device,
                ours: seq,
                block: Box::new(now_blk),
            });
        }
        if cancel() {
            let restored = matches!(release(fs, &blk, &[ours])?, Release::Clean(_));
            return Err(ClaimError::Cancelled {
                device,
                wrote: true,
                restored_clean: restored,
            });
        }
    }
    Ok(Claimed {
        block: blk,
        on_disk: ours,
        previous,
        previous_block: report.first,
        check_interval: report.check_interval,
        verify_wait: wait,
        written_at,
        elapsed: clock.now().saturating_sub(start),
        reads,
    })
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
fn pick_seq(next_seq: &mut dyn FnMut() -> u32, found: u32) -> u32 {
    for _ in 0..64 {
        let s = next_seq();
        if (1..=EXT4_MMP_SEQ_MAX).contains(&s) && s != found {
            return s;
        }
    }
    // A broken generator: still never the found value nor a special code.
    next_seq_from(found)
}

fn next_seq_from(found: u32) -> u32 {
    if (1..EXT4_MMP_SEQ_MAX).contains(&found) {
        found + 1
    } else {
        1
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
    fs.write_mmp_synced(&clean)?;
    Ok(Release::Clean(clean))
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::device::MemDevice;
    use crate::mmp::{EXT4_MMP_SEQ_FSCK, EXT4_MMP_SEQ_MAX};
    use crate::superblock::tests::sample;
    use std::cell::{Cell, RefCell};
    use std::io;

    pub(crate) use crate::check::tests::{image, FakeClock, BS, MMP_BLOCK};

    /// A device that another (simulated) node writes: before each read, `other(t)` may return
    /// a block to store, given the fake time. Writes can be made to fail.
    pub(crate) struct Shared<'a> {
        pub inner: MemDevice,
        pub clock: &'a FakeClock,
        pub other: Box<dyn Fn(Duration) -> Option<MmpBlock> + 'a>,
        pub seed: Option<u32>,
        pub fail_writes: Cell<bool>,
        pub fail_reads: Cell<bool>,
        pub writes: RefCell<Vec<(Duration, u32)>>,
    }

    impl<'a> Shared<'a> {
        pub fn new(
            csum: bool,
            initial: &MmpBlock,
            clock: &'a FakeClock,
            other: impl Fn(Duration) -> Option<MmpBlock> + 'a,
        ) -> Self {
            let sb = crate::superblock::Superblock::parse(&sample(csum)).unwrap();
            Shared {
                inner: image(csum, initial),
                clock,
                other: Box::new(other),
                seed: sb.mmp_csum_seed(),
                fail_writes: Cell::new(false),
                fail_reads: Cell::new(false),
                writes: RefCell::new(Vec::new()),
            }
        }
        pub fn current(&self) -> MmpBlock {
            let d = self.inner.snapshot();
            let off = (MMP_BLOCK * BS) as usize;
            MmpBlock::decode(&d[off..off + 1024]).unwrap()
        }
    }

    impl BlockIo for Shared<'_> {
        fn read_at(&self, offset: u64, buf: &mut [u8]) -> io::Result<()> {
            if offset == MMP_BLOCK * BS {
                if self.fail_reads.get() {
                    return Err(io::Error::other("injected read error"));
                }
                if let Some(b) = (self.other)(self.clock.now()) {
                    self.inner.write_at(MMP_BLOCK * BS, &b.encode(self.seed))?;
                }
            }
            self.inner.read_at(offset, buf)
        }
        fn write_at(&self, offset: u64, buf: &[u8]) -> io::Result<()> {
            if self.fail_writes.get() {
                return Err(io::Error::other("injected write error"));
            }
            let seq = MmpBlock::decode(buf).map(|b| b.mmp_seq).unwrap_or(0);
            self.writes.borrow_mut().push((self.clock.now(), seq));
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
            "shared"
        }
    }

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
            &mut || seq,
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
        let dev = Shared::new(true, &clean(), &clock, |_| None);
        let fs = MmpFs::open(&dev).unwrap();
        let c = claim(
            &fs,
            &clock,
            &mut || 0x1234,
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
        let dev = Shared::new(
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
            let dev = Shared::new(false, &blk, &clock, |_| None);
            let e = run_claim(&dev, &clock, 9).unwrap_err();
            assert_eq!(e.name(), name);
            assert!(e.is_refusal());
            assert!(dev.writes.borrow().is_empty());
            assert_eq!(clock.now(), Duration::ZERO);
        }
        let clock = FakeClock::default();
        let dev = Shared::new(true, &clean(), &clock, |_| None);
        let mut d = dev.inner.snapshot();
        d[(MMP_BLOCK * BS) as usize + 0x3FC] ^= 1;
        let dev = MemDevice::new("bad", d);
        let e = run_claim(&dev, &clock, 9).unwrap_err();
        assert_eq!(e.name(), "bad_checksum");
    }

    #[test]
    fn live_writer_is_refused_without_writing() {
        let clock = FakeClock::default();
        let dev = Shared::new(
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
        let dev = Shared::new(false, &clean(), &clock, |t| {
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

    /// Two claimers on one in-memory device, interleaved step by step on one fake timeline:
    /// whatever their start offsets, exactly one wins.
    #[test]
    fn two_racing_claimers_exactly_one_wins() {
        for offset_ms in [0u64, 1, 50, 100, 999, 5_000, 10_900, 30_000] {
            let shared = MemDevice::new("img", image(false, &clean()).snapshot());
            let results = race(&shared, Duration::from_millis(offset_ms));
            let wins = results.iter().filter(|r| r.is_ok()).count();
            assert_eq!(wins, 1, "offset {offset_ms} ms: {results:?}");
        }
    }

    /// Runs two claims as threads on one timeline: a shared fake clock where each sleeper
    /// wakes in time order (a tiny discrete-event scheduler).
    fn race(dev: &MemDevice, offset: Duration) -> Vec<Result<u32, String>> {
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
                        let fs = MmpFs::open(dev).unwrap();
                        let cfg = crate::heartbeat::HeartbeatConfig::default();
                        let r = claim(
                            &fs,
                            &clock,
                            &mut || 0x100 + me as u32,
                            &opts(&format!("node{me}")),
                            &|| false,
                            &mut |_, _, _| {},
                        );
                        // The winner holds the device (as mmpd does) while the other one is
                        // still trying: a claim alone is not a lease.
                        let r = r.map(|c| {
                            let seq = c.block.mmp_seq;
                            let mut hb = crate::heartbeat::Heartbeat::new(fs, &c, cfg, &clock);
                            while !s.0.lock().unwrap().done[1 - me] {
                                hb.beat(&clock).expect("the winner is never fenced");
                                clock.sleep(cfg.interval);
                            }
                            seq
                        });
                        let (m, cv) = &*s;
                        m.lock().unwrap().done[me] = true;
                        cv.notify_all();
                        r.map_err(|e| e.name().to_string())
                    })
                })
                .collect();
            handles.into_iter().map(|h| h.join().unwrap()).collect()
        })
    }

    #[test]
    fn cancel_after_writing_restores_clean() {
        let clock = FakeClock::default();
        let dev = Shared::new(false, &clean(), &clock, |_| None);
        let fs = MmpFs::open(&dev).unwrap();
        let e = claim(
            &fs,
            &clock,
            &mut || 0x42,
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
        let dev = Shared::new(false, &clean(), &clock, |_| None);
        let fs = MmpFs::open(&dev).unwrap();
        let c = claim(
            &fs,
            &clock,
            &mut || 0x42,
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
        assert_eq!(next_seq(1), 2);
        assert_eq!(next_seq(EXT4_MMP_SEQ_MAX), 1);
        assert_eq!(pick_seq(&mut || 5, 5), 6, "never the found value");
        assert_eq!(pick_seq(&mut || EXT4_MMP_SEQ_CLEAN, EXT4_MMP_SEQ_CLEAN), 1);
        let s = random_seq().unwrap();
        assert!((1..=EXT4_MMP_SEQ_MAX).contains(&s));
        assert_eq!(bdevname_of("/dev/mapper/x"), "x");
        assert!(!local_nodename().is_empty());
    }
}
