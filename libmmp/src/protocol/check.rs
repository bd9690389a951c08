//! The read side of the MMP protocol: is it safe to mount this filesystem now?
//!
//! This is the check that `ext4_multi_mount_protect` (fs/ext4/mmp.c) and `ext2fs_mmp_start`
//! (lib/ext2fs/mmp.c) run before they write anything:
//!
//! - `SEQ_CLEAN`: safe at once (the kernel and e2mmpstatus do not wait either).
//! - `SEQ_FSCK`, or any sequence above `SEQ_MAX`: never safe, however old (e2fsprogs rule).
//! - a live sequence: watch the block for the wait time `min(2*CI + 1, CI + 60)` seconds, with
//!   `CI = max(s_mmp_update_interval, 5, mmp_check_interval)`; safe only if it never changed.
//!
//! Where we are faster, and why it is still safe: the kernel reads the block twice, at the
//! start and the end of the wait, and says "in use" only at the end. We re-read it every
//! `poll` interval and say "in use" as soon as any read differs from the first. A change seen
//! early is exactly as conclusive as one seen at the end (somebody wrote the block after we
//! first looked), so the *negative* answer comes sooner. The *positive* answer ("safe") is never
//! given before the full kernel wait has passed with every read identical; polling only adds
//! reads, so it can turn a kernel "safe" into "in use" (a sequence that changed and changed
//! back), never the reverse.
//!
//! A clean answer is not a lock: two nodes that both see `SEQ_CLEAN` can both mount (the
//! kernel does no wait for a clean block, LU-13932). Closing that race needs a claim, which
//! writes; this module only reads.

use crate::error::Error;
use crate::fs::MmpFs;
use crate::io::BlockIo;
use crate::ondisk::fence_tag::FenceTag;
use crate::ondisk::mmp::{MmpBlock, SeqClass, EXT4_MMP_MIN_CHECK_INTERVAL};
use crate::protocol::clock::Clock;
use std::time::Duration;

/// The effective check interval in seconds: `max(s_mmp_update_interval, 5)`, raised to the
/// block's `mmp_check_interval` if that is larger (the writer publishes its own pace there).
pub fn check_interval(sb_update_interval: u16, block_check_interval: u16) -> u32 {
    u32::from(sb_update_interval)
        .max(u32::from(EXT4_MMP_MIN_CHECK_INTERVAL))
        .max(u32::from(block_check_interval))
}

/// The kernel's wait: `min(2*CI + 1, CI + 60)` seconds.
pub fn wait_time(check_interval: u32) -> Duration {
    Duration::from_secs(u64::from((2 * check_interval + 1).min(check_interval + 60)))
}

/// How long a reader watches a block that carries a valid [`FenceTag`]: the holder's bound plus
/// 1 s and 1 % (clock-rate differences between the nodes, scheduling of the reader's polls).
///
/// Why this is safe: the holder measures its bound from the *submission* of its last write
/// that succeeded, which is no later than the moment that write reached the disk, which is no
/// later than our first read of it. Any later write of the holder that succeeds returns before
/// its bound runs out (or the holder would have been reset), so it lands before our watch ends
/// and we see the change. If nothing changes for the whole watch, the holder was reset.
pub fn fence_wait(tag: FenceTag) -> Duration {
    let bound = Duration::from_millis(u64::from(tag.bound_ms));
    bound + Duration::from_secs(1) + bound / 100
}

/// Why the filesystem may be mounted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum SafeReason {
    /// `SEQ_CLEAN`: cleanly unmounted.
    Clean,
    /// A live sequence that did not change for the whole wait: its writer is gone.
    Stale,
}

/// The outcome of a check.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    Safe(SafeReason),
    /// The block changed while we watched: another node is writing it. `block` is what it
    /// wrote (its node, device and time name the holder).
    InUse {
        block: MmpBlock,
    },
    /// `SEQ_FSCK`: e2fsck, tune2fs or debugfs has it open read-write (or was killed doing so).
    FsckRunning,
    /// A sequence above `SEQ_MAX` that is not a known code.
    UnknownSeq(u32),
    /// The checksum does not match (metadata_csum): e2mmpstatus counts this as "in use".
    BadChecksum {
        stored: u32,
        computed: u32,
    },
    /// The caller's timeout ran out before the wait did and nothing changed so far: not proven
    /// safe.
    Undecided,
}

impl Verdict {
    pub fn name(&self) -> &'static str {
        match self {
            Verdict::Safe(SafeReason::Clean) => "safe_clean",
            Verdict::Safe(SafeReason::Stale) => "safe_stale",
            Verdict::InUse { .. } => "in_use",
            Verdict::FsckRunning => "fsck_running",
            Verdict::UnknownSeq(_) => "unknown_sequence",
            Verdict::BadChecksum { .. } => "bad_checksum",
            Verdict::Undecided => "undecided",
        }
    }
}

/// Options of a check.
#[derive(Debug, Clone, Copy)]
pub struct CheckOptions {
    /// How often to re-read the block during the wait.
    pub poll: Duration,
    /// Give up (verdict `Undecided`) after this long if the wait is longer.
    pub timeout: Option<Duration>,
    /// Honour a holder's [`FenceTag`]: watch a tagged live block for [`fence_wait`] instead of
    /// the kernel's wait when that is shorter. `false` always waits as the kernel does.
    pub honor_fence_tag: bool,
}

impl Default for CheckOptions {
    fn default() -> Self {
        CheckOptions {
            poll: Duration::from_millis(100),
            timeout: None,
            honor_fence_tag: true,
        }
    }
}

/// Everything a check saw.
#[derive(Debug, Clone)]
pub struct CheckReport {
    pub verdict: Verdict,
    /// The block as first read.
    pub first: MmpBlock,
    /// Effective check interval, seconds.
    pub check_interval: u32,
    /// The full wait a live sequence needs (shortened by a valid fence tag).
    pub wait: Duration,
    /// What the kernel would wait: `min(2*CI + 1, CI + 60)`.
    pub kernel_wait: Duration,
    /// The holder's valid self-fence tag, when the first read found one and it was honoured.
    pub fence_tag: Option<FenceTag>,
    /// How long the check took.
    pub elapsed: Duration,
    /// How many times the block was read.
    pub reads: u32,
}

/// Progress during the wait: `(elapsed, total wait)`.
pub type Progress<'a> = &'a mut dyn FnMut(Duration, Duration);

/// Run the check. I/O errors, a bad magic, MMP not enabled and the like are `Err` (e2mmpstatus
/// exit 2); a bad checksum is a verdict, as it is for e2mmpstatus (exit 1).
pub fn check<D: BlockIo>(
    fs: &MmpFs<D>,
    clock: &dyn Clock,
    opts: CheckOptions,
    progress: Progress<'_>,
) -> Result<CheckReport, Error> {
    let start = clock.now();
    let mut reads = 1;
    let first = match read_verified(fs)? {
        Ok(b) => b,
        Err((block, stored, computed)) => {
            let ci = check_interval(
                fs.superblock().s_mmp_update_interval,
                block.mmp_check_interval,
            );
            return Ok(CheckReport {
                verdict: Verdict::BadChecksum { stored, computed },
                first: block,
                check_interval: ci,
                wait: wait_time(ci),
                kernel_wait: wait_time(ci),
                fence_tag: None,
                elapsed: clock.now().saturating_sub(start),
                reads,
            });
        }
    };
    let ci = check_interval(
        fs.superblock().s_mmp_update_interval,
        first.mmp_check_interval,
    );
    let kernel_wait = wait_time(ci);
    let fence_tag = if opts.honor_fence_tag {
        first.fence_tag()
    } else {
        None
    };
    let wait = fence_tag.map_or(kernel_wait, |t| kernel_wait.min(fence_wait(t)));
    // The wait runs from when the first read returned, as the kernel sleeps only after its
    // read: a slow first read must not shorten the time the data it returned is watched.
    let watch_start = clock.now();
    let report = |verdict, reads| CheckReport {
        verdict,
        first: first.clone(),
        check_interval: ci,
        wait,
        kernel_wait,
        fence_tag,
        elapsed: clock.now().saturating_sub(start),
        reads,
    };
    match first.seq_class() {
        SeqClass::Clean => return Ok(report(Verdict::Safe(SafeReason::Clean), reads)),
        SeqClass::Fsck => return Ok(report(Verdict::FsckRunning, reads)),
        SeqClass::Unknown(s) => return Ok(report(Verdict::UnknownSeq(s), reads)),
        SeqClass::Live(_) => {}
    }
    let verdict = watch_live(
        fs,
        clock,
        &opts,
        &first,
        watch_start,
        wait,
        &mut reads,
        progress,
    )?;
    Ok(report(verdict, reads))
}

/// The watch of a live sequence: re-read every poll interval until `wait` has passed since
/// `watch_start` (stale: safe), the block changes (in use), its checksum fails, or the
/// timeout ends the watch undecided.
#[allow(clippy::too_many_arguments)]
fn watch_live<D: BlockIo>(
    fs: &MmpFs<D>,
    clock: &dyn Clock,
    opts: &CheckOptions,
    first: &MmpBlock,
    watch_start: Duration,
    wait: Duration,
    reads: &mut u32,
    progress: Progress<'_>,
) -> Result<Verdict, Error> {
    let first_raw = first.encode_raw();
    let poll = opts.poll.max(Duration::from_millis(1));
    loop {
        let elapsed = clock.now().saturating_sub(watch_start);
        progress(elapsed.min(wait), wait);
        if elapsed >= wait {
            return Ok(Verdict::Safe(SafeReason::Stale));
        }
        if opts.timeout.is_some_and(|t| elapsed >= t) {
            return Ok(Verdict::Undecided);
        }
        let mut step = poll.min(wait - elapsed);
        if let Some(t) = opts.timeout {
            step = step.min(t.saturating_sub(elapsed));
        }
        clock.sleep(step);
        *reads += 1;
        match read_verified(fs)? {
            // Any difference, not only the sequence: whoever rewrote the block is alive.
            Ok(now) if now.encode_raw() == first_raw => {}
            Ok(now) => return Ok(Verdict::InUse { block: now }),
            Err((_, stored, computed)) => return Ok(Verdict::BadChecksum { stored, computed }),
        }
    }
}

type ChecksumMismatch = (MmpBlock, u32, u32);

/// Read the block; a checksum mismatch is returned as a value, every other problem as `Err`.
fn read_verified<D: BlockIo>(fs: &MmpFs<D>) -> Result<Result<MmpBlock, ChecksumMismatch>, Error> {
    match fs.read_mmp() {
        Ok(b) => Ok(Ok(b)),
        Err(Error::Mmp {
            source: crate::ondisk::mmp::MmpError::BadChecksum { stored, computed },
            ..
        }) => {
            let (block, _) = fs.read_mmp_raw()?;
            Ok(Err((block, stored, computed)))
        }
        Err(e) => Err(e),
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::io::MemDevice;
    use crate::ondisk::mmp::{EXT4_MMP_SEQ_CLEAN, EXT4_MMP_SEQ_FSCK, EXT4_MMP_SEQ_MAX};
    use crate::ondisk::superblock::tests::sample;
    use std::cell::Cell;
    use std::io;

    pub(crate) use crate::testing::{FakeClock, ScriptedDevice};

    pub(crate) const MMP_BLOCK: u64 = 1000;
    pub(crate) const BS: u64 = 4096;

    /// An image with `sample()`'s superblock (MMP at block 1000, update interval 5).
    pub(crate) fn image(metadata_csum: bool, blk: &MmpBlock) -> MemDevice {
        let mut data = vec![0u8; ((MMP_BLOCK + 1) * BS) as usize];
        data[1024..2048].copy_from_slice(&sample(metadata_csum));
        let sb = crate::ondisk::superblock::Superblock::parse(&sample(metadata_csum)).unwrap();
        let off = (MMP_BLOCK * BS) as usize;
        data[off..off + 1024].copy_from_slice(&blk.encode(sb.mmp_csum_seed()));
        MemDevice::new("mem.img", data)
    }

    /// [`image`] as a [`ScriptedDevice`]: the MMP block starts as `initial`, and `other(t)`
    /// may rewrite it before each read.
    pub(crate) fn shared<'a>(
        csum: bool,
        initial: &MmpBlock,
        clock: &'a FakeClock,
        other: impl Fn(Duration) -> Option<MmpBlock> + 'a,
    ) -> ScriptedDevice<'a> {
        let sb = crate::ondisk::superblock::Superblock::parse(&sample(csum)).unwrap();
        ScriptedDevice::new(
            image(csum, initial),
            MMP_BLOCK * BS,
            sb.mmp_csum_seed(),
            clock,
            other,
        )
    }

    fn run(dev: impl BlockIo, clock: &FakeClock, timeout: Option<Duration>) -> CheckReport {
        let fs = MmpFs::open(dev).unwrap();
        let opts = CheckOptions {
            poll: Duration::from_millis(100),
            timeout,
            honor_fence_tag: true,
        };
        check(&fs, clock, opts, &mut |_, _| {}).unwrap()
    }

    #[test]
    fn intervals_follow_the_kernel() {
        assert_eq!(check_interval(1, 0), 5);
        assert_eq!(check_interval(1, 10), 10);
        assert_eq!(check_interval(20, 10), 20);
        assert_eq!(wait_time(5), Duration::from_secs(11));
        assert_eq!(wait_time(10), Duration::from_secs(21));
        assert_eq!(wait_time(300), Duration::from_secs(360));
    }

    #[test]
    fn clean_is_safe_at_once() {
        let clock = FakeClock::default();
        let r = run(
            image(true, &MmpBlock::new(EXT4_MMP_SEQ_CLEAN, 0, "a", "b", 5)),
            &clock,
            None,
        );
        assert_eq!(r.verdict, Verdict::Safe(SafeReason::Clean));
        assert_eq!(clock.now(), Duration::ZERO, "no wait for a clean block");
    }

    #[test]
    fn fsck_and_unknown_are_never_safe_and_do_not_wait() {
        let clock = FakeClock::default();
        let r = run(
            image(false, &MmpBlock::new(EXT4_MMP_SEQ_FSCK, 0, "a", "b", 5)),
            &clock,
            None,
        );
        assert_eq!(r.verdict, Verdict::FsckRunning);
        let r = run(
            image(false, &MmpBlock::new(EXT4_MMP_SEQ_MAX + 2, 0, "a", "b", 5)),
            &clock,
            None,
        );
        assert_eq!(r.verdict, Verdict::UnknownSeq(EXT4_MMP_SEQ_MAX + 2));
        assert_eq!(clock.now(), Duration::ZERO);
    }

    #[test]
    fn stale_live_sequence_is_safe_only_after_the_full_wait() {
        let clock = FakeClock::default();
        // Block check interval 10 beats the superblock's 5: wait = min(21, 70) = 21 s.
        let r = run(
            image(true, &MmpBlock::new(42, 0, "dead", "sda", 10)),
            &clock,
            None,
        );
        assert_eq!(r.verdict, Verdict::Safe(SafeReason::Stale));
        assert_eq!(r.wait, Duration::from_secs(21));
        assert!(clock.now() >= Duration::from_secs(21));
        assert!(clock.now() < Duration::from_millis(21_200));
        assert!(
            r.reads >= 200,
            "polled throughout the wait, got {} reads",
            r.reads
        );
    }

    pub(crate) fn watchdog_tag(bound_ms: u32) -> FenceTag {
        FenceTag {
            bound_ms,
            interval_ms: 1000,
            kind: crate::ondisk::fence_tag::FenceKind::Watchdog,
        }
    }

    #[test]
    fn a_valid_fence_tag_shortens_the_wait_to_the_bound_plus_margin() {
        let clock = FakeClock::default();
        let mut blk = MmpBlock::new(42, 100, "holder", "sda", 5);
        blk.set_fence_tag(Some(watchdog_tag(4_000)));
        let r = run(image(true, &blk), &clock, None);
        assert_eq!(r.verdict, Verdict::Safe(SafeReason::Stale));
        assert_eq!(r.fence_tag, Some(watchdog_tag(4_000)));
        assert_eq!(r.kernel_wait, Duration::from_secs(11));
        assert_eq!(r.wait, Duration::from_millis(4_000 + 1_000 + 40));
        assert!(clock.now() >= r.wait && clock.now() < r.wait + Duration::from_millis(200));
    }

    #[test]
    fn a_fence_bound_longer_than_the_kernel_wait_changes_nothing() {
        let clock = FakeClock::default();
        let mut blk = MmpBlock::new(42, 100, "holder", "sda", 5);
        blk.set_fence_tag(Some(watchdog_tag(30_000)));
        let r = run(image(false, &blk), &clock, None);
        assert_eq!(r.wait, Duration::from_secs(11));
        assert!(clock.now() >= Duration::from_secs(11));
    }

    #[test]
    fn the_tag_is_ignored_when_asked_and_when_it_is_not_valid() {
        let mut blk = MmpBlock::new(42, 100, "holder", "sda", 5);
        blk.set_fence_tag(Some(watchdog_tag(2_000)));
        let fs = MmpFs::open(image(true, &blk)).unwrap();
        let clock = FakeClock::default();
        let opts = CheckOptions {
            honor_fence_tag: false,
            ..CheckOptions::default()
        };
        let r = check(&fs, &clock, opts, &mut |_, _| {}).unwrap();
        assert_eq!((r.wait, r.fence_tag), (Duration::from_secs(11), None));
        // kmmpd took the block over (mount after the holder died): the padding is kept, the
        // sequence moves on. Full kernel wait.
        let mut kmmpd = blk.clone();
        kmmpd.mmp_seq += 1;
        kmmpd.mmp_time += 1;
        let clock = FakeClock::default();
        let r = run(image(true, &kmmpd), &clock, None);
        assert_eq!((r.wait, r.fence_tag), (Duration::from_secs(11), None));
    }

    /// The holder beats on: each write carries a fresh valid tag, and the change is seen.
    #[test]
    fn a_tagged_holder_that_keeps_writing_is_in_use() {
        let clock = FakeClock::default();
        let writer = |t: Duration| {
            let mut b = MmpBlock::new(1 + t.as_secs() as u32, 100 + t.as_secs(), "h", "sda", 5);
            b.set_fence_tag(Some(watchdog_tag(3_000)));
            Some(b)
        };
        let dev = shared(true, &writer(Duration::ZERO).unwrap(), &clock, writer);
        let r = run(dev, &clock, None);
        assert!(
            matches!(r.verdict, Verdict::InUse { .. }),
            "{:?}",
            r.verdict
        );
        assert!(clock.now() <= Duration::from_millis(1_100));
    }

    #[test]
    fn active_writer_is_reported_as_soon_as_it_writes() {
        let clock = FakeClock::default();
        // A kmmpd-like writer with a 1 s update interval: seq = 1 + whole seconds elapsed.
        let writer = |t: Duration| {
            Some(MmpBlock::new(
                1 + t.as_secs() as u32,
                100 + t.as_secs(),
                "nodeA",
                "loop0",
                5,
            ))
        };
        let dev = shared(true, &writer(Duration::ZERO).unwrap(), &clock, writer);
        let r = run(dev, &clock, None);
        match &r.verdict {
            Verdict::InUse { block } => {
                assert_eq!(block.nodename(), "nodeA");
                assert_eq!(block.mmp_seq, 2);
            }
            v => panic!("expected in use, got {v:?}"),
        }
        assert!(
            clock.now() <= Duration::from_millis(1100),
            "fast negative, took {:?}",
            clock.now()
        );
    }

    /// The wait runs from when the first read returned, as the kernel sleeps after its read:
    /// a first read that takes long (a loaded or failing-over path) must not shorten the time
    /// the data it returned is watched.
    #[test]
    fn a_slow_first_read_does_not_shorten_the_wait() {
        struct SlowFirst<'a> {
            inner: MemDevice,
            clock: &'a FakeClock,
            first: Cell<bool>,
        }
        // A writer that wrote at 4.9 s and writes again at 15 s: 10.1 s apart, inside the
        // kernel's 11 s wait.
        fn writer(t: Duration) -> MmpBlock {
            let seq = match t.as_millis() {
                0..=4899 => 1,
                4900..=14_999 => 2,
                _ => 3,
            };
            MmpBlock::new(seq, 0, "holder", "sda", 5)
        }
        impl BlockIo for SlowFirst<'_> {
            fn read_at(&self, offset: u64, buf: &mut [u8]) -> io::Result<()> {
                if offset == MMP_BLOCK * BS && self.first.replace(false) {
                    // The read is queued for 5 s; the device returns what it holds then.
                    self.clock.sleep(Duration::from_secs(5));
                }
                let b = writer(self.clock.now());
                self.inner.write_at(MMP_BLOCK * BS, &b.encode(None))?;
                self.inner.read_at(offset, buf)
            }
            fn write_at(&self, offset: u64, buf: &[u8]) -> io::Result<()> {
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
        let clock = FakeClock::default();
        let dev = SlowFirst {
            inner: image(false, &writer(Duration::ZERO)),
            clock: &clock,
            first: Cell::new(true),
        };
        let r = run(dev, &clock, None);
        match &r.verdict {
            Verdict::InUse { block } => assert_eq!(block.mmp_seq, 3),
            v => panic!(
                "the writer at 15 s must be seen, got {v:?} at {:?}",
                clock.now()
            ),
        }
    }

    #[test]
    fn change_and_change_back_is_still_in_use() {
        // The kernel compares only the first and last reads; a sequence that changes and
        // returns to its old value between them would pass it. Polling sees it.
        let clock = FakeClock::default();
        let writer = |t: Duration| {
            let seq = if (5..6).contains(&t.as_secs()) { 8 } else { 7 };
            Some(MmpBlock::new(seq, 0, "n", "d", 5))
        };
        let dev = shared(false, &MmpBlock::new(7, 0, "n", "d", 5), &clock, writer);
        assert!(matches!(
            run(dev, &clock, None).verdict,
            Verdict::InUse { .. }
        ));
    }

    #[test]
    fn timeout_before_the_wait_is_undecided_not_safe() {
        let clock = FakeClock::default();
        let r = run(
            image(false, &MmpBlock::new(42, 0, "n", "d", 5)),
            &clock,
            Some(Duration::from_secs(3)),
        );
        assert_eq!(r.verdict, Verdict::Undecided);
        assert_eq!(clock.now(), Duration::from_secs(3));
    }

    #[test]
    fn bad_checksum_is_a_verdict_and_changing_to_bad_checksum_too() {
        let clock = FakeClock::default();
        let mut dev = image(true, &MmpBlock::new(42, 0, "n", "d", 5));
        let mut data = dev.snapshot();
        data[(MMP_BLOCK * BS) as usize + 0x3FC] ^= 1;
        dev = MemDevice::new("mem.img", data);
        let r = run(dev, &clock, None);
        assert!(matches!(r.verdict, Verdict::BadChecksum { .. }));
    }

    #[test]
    fn errors_are_errors() {
        let clock = FakeClock::default();
        let mut blk = MmpBlock::new(42, 0, "n", "d", 5);
        blk.mmp_magic = 0x1234_5678;
        let fs = MmpFs::open(image(true, &blk)).unwrap();
        let e = check(&fs, &clock, CheckOptions::default(), &mut |_, _| {}).unwrap_err();
        assert!(matches!(e, Error::Mmp { .. }), "{e}");
        // MMP not enabled.
        let mut data = image(false, &blk).snapshot();
        data[1024 + 0x60] = 0;
        data[1024 + 0x61] = 0;
        let fs = MmpFs::open(MemDevice::new("nommp.img", data)).unwrap();
        let e = check(&fs, &clock, CheckOptions::default(), &mut |_, _| {}).unwrap_err();
        assert!(matches!(e, Error::MmpNotEnabled { .. }));
        assert!(e.to_string().contains("nommp.img"));
        // Truncated image: the MMP block lies past the end.
        let data = image(false, &MmpBlock::new(1, 0, "n", "d", 5)).snapshot();
        let fs = MmpFs::open(MemDevice::new("short.img", data[..8192].to_vec())).unwrap();
        let e = check(&fs, &clock, CheckOptions::default(), &mut |_, _| {}).unwrap_err();
        assert!(matches!(e, Error::Truncated { .. }), "{e}");
    }

    #[test]
    fn progress_is_reported() {
        let clock = FakeClock::default();
        let fs = MmpFs::open(image(false, &MmpBlock::new(42, 0, "n", "d", 5))).unwrap();
        let mut calls = 0;
        let mut last = Duration::ZERO;
        check(&fs, &clock, CheckOptions::default(), &mut |e, total| {
            calls += 1;
            assert!(e >= last && e <= total);
            last = e;
        })
        .unwrap();
        assert!(calls > 100);
        assert_eq!(last, Duration::from_secs(11));
    }
}
