//! Holding a claimed device: the heartbeat, the decision to fence, and the release.
//!
//! Every interval (default 1 s) the holder re-reads the MMP block into a buffer of its own and
//! compares it byte for byte with what it last wrote, then writes the next sequence with the
//! time and syncs. The kernel's kmmpd means to do the same check but compares a buffer with
//! itself, so it never fires (Ye Bin, linux-ext4 2021, reference §7.2); ours does.
//!
//! A beat comes in two halves so that many beats can share one sync (group commit):
//! [`Heartbeat::write_unsynced`] does the checks, the re-read and compare and the write, and
//! leaves the write "written, not yet durable"; [`Heartbeat::confirm`] takes the result of a
//! sync that started after that write returned and only then counts the beat. A write whose
//! sync failed may or may not be on disk: it is kept as *pending*, exactly like a write that
//! returned an error. [`Heartbeat::beat`] is both halves with the device's own `fdatasync`.
//!
//! The holder must **fence** (stop writing and let the daemon act) when:
//!
//! - the block holds anything but our last write: another node writes it (a forced mount, an
//!   operator, a split-brained cluster). Writing on would hide it from them and from us.
//! - no write has succeeded for `fail_intervals` intervals (ZFS `zfs_multihost_fail_intervals`),
//!   or the block on disk is getting so old that a reader could soon call it stale: a reader of
//!   our block waits `min(2*CI + 1, CI + 60)` s with the check interval we publish, and once
//!   that passes another node may take the device. We never write after that point, even if the
//!   device comes back, because another node may hold it by then.
//!
//! The published check interval is chosen so that readers always wait longer than the holder
//! may go without writing (see [`HeartbeatConfig::publish_check_interval`]).

use crate::error::Error;
use crate::fs::MmpFs;
use crate::io::device::BlockIo;
use crate::ondisk::mmp::{FenceKind, FenceTag, MmpBlock, FENCE_TAG_MAX_BOUND_MS, MMP_STRUCT_SIZE};
use crate::protocol::check;
use crate::protocol::claim::{self, Claimed, Release};
use crate::protocol::clock::{wall_now, Clock};
use crate::protocol::seq::seq_after;
use std::fmt;
use std::time::Duration;

/// Default heartbeat interval.
pub const DEFAULT_INTERVAL: Duration = Duration::from_secs(1);
/// Default number of intervals without a successful write before fencing.
pub const DEFAULT_FAIL_INTERVALS: u32 = 5;
/// Largest check interval the kernel honours (`EXT4_MMP_MAX_CHECK_INTERVAL`).
pub const MAX_CHECK_INTERVAL: u16 = 300;
/// Margin kept between our last possible write and the moment a reader may call it stale.
const STALE_MARGIN: Duration = Duration::from_millis(500);
/// Added to a watchdog fence bound: between the health check and the pet that follows it, a
/// loaded node may be descheduled.
pub const WATCHDOG_PET_SLACK: Duration = Duration::from_secs(1);

/// How a device is held.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HeartbeatConfig {
    pub interval: Duration,
    pub fail_intervals: u32,
}

impl Default for HeartbeatConfig {
    fn default() -> Self {
        HeartbeatConfig {
            interval: DEFAULT_INTERVAL,
            fail_intervals: DEFAULT_FAIL_INTERVALS,
        }
    }
}

/// Heartbeat settings that cannot be published safely.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HeartbeatConfigError {
    #[error("interval {0:?} out of range (0.1 to 60 seconds)")]
    IntervalOutOfRange(Duration),
    #[error("fail_intervals {0} too small: at least 2 (one late write must not fence)")]
    TooFewFailIntervals(u32),
    #[error("interval x fail_intervals = {0:?} exceeds the kernel's largest check interval ({MAX_CHECK_INTERVAL} s)")]
    FailAfterTooLong(Duration),
}

impl HeartbeatConfig {
    /// Reject settings that cannot be published safely.
    pub fn validate(&self) -> Result<(), HeartbeatConfigError> {
        if self.interval < Duration::from_millis(100) || self.interval > Duration::from_secs(60) {
            return Err(HeartbeatConfigError::IntervalOutOfRange(self.interval));
        }
        if self.fail_intervals < 2 {
            return Err(HeartbeatConfigError::TooFewFailIntervals(
                self.fail_intervals,
            ));
        }
        if self.fail_after() > Duration::from_secs(u64::from(MAX_CHECK_INTERVAL)) {
            return Err(HeartbeatConfigError::FailAfterTooLong(self.fail_after()));
        }
        Ok(())
    }

    /// How long the holder may go without a successful write before it fences.
    pub fn fail_after(&self) -> Duration {
        self.interval * self.fail_intervals
    }

    /// The self-fence tag a holder may publish while a watchdog with timeout `watchdog_timeout`
    /// is armed and petted only while every beat succeeds within [`Self::fail_after`]:
    /// bound = fail_after + watchdog timeout + [`WATCHDOG_PET_SLACK`]. The last pet happens at
    /// most `fail_after` (+ slack) after the submission of the last successful write, and the
    /// watchdog resets the node at most its timeout after the last pet. `None` when the bound
    /// would not fit the tag.
    pub fn watchdog_fence_tag(&self, watchdog_timeout: Duration) -> Option<FenceTag> {
        let bound = self.fail_after() + watchdog_timeout + WATCHDOG_PET_SLACK;
        let ms = u32::try_from(bound.as_nanos().div_ceil(1_000_000)).ok()?;
        (ms <= FENCE_TAG_MAX_BOUND_MS && !watchdog_timeout.is_zero()).then(|| FenceTag {
            bound_ms: ms,
            interval_ms: u32::try_from(self.interval.as_millis()).unwrap_or(u32::MAX),
            kind: FenceKind::Watchdog,
        })
    }

    /// The `mmp_check_interval` to publish: `max(5, fail_after, 2 x interval)` seconds, rounded
    /// up, at most 300. A reader waits `min(2*CI + 1, CI + 60)` >= CI + 1 s, so it always waits
    /// longer than we may go without writing before we fence.
    pub fn publish_check_interval(&self) -> u16 {
        let secs = |d: Duration| d.as_secs() + u64::from(d.subsec_nanos() > 0);
        let ci = secs(self.fail_after())
            .max(secs(self.interval * 2))
            .max(u64::from(crate::ondisk::mmp::EXT4_MMP_MIN_CHECK_INTERVAL));
        u16::try_from(ci)
            .unwrap_or(MAX_CHECK_INTERVAL)
            .min(MAX_CHECK_INTERVAL)
    }
}

/// Why the holder fenced.
#[derive(Debug, Clone)]
pub enum FenceReason {
    /// The block held something we did not write.
    ForeignWriter {
        found: Box<MmpBlock>,
        expected_seq: u32,
    },
    /// No write succeeded for too long (I/O errors, a hung device, a stopped process).
    NoSuccessfulWrite {
        since: Duration,
        limit: Duration,
        last_error: Option<String>,
    },
}

impl FenceReason {
    pub fn name(&self) -> &'static str {
        match self {
            FenceReason::ForeignWriter { .. } => "foreign_writer",
            FenceReason::NoSuccessfulWrite { .. } => "no_successful_write",
        }
    }
}

impl fmt::Display for FenceReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            FenceReason::ForeignWriter { found, expected_seq } => write!(
                f,
                "ANOTHER WRITER: the MMP block should hold our sequence {expected_seq:#010x} but holds sequence {:#010x} from node '{}' device '{}'; another node is using the device",
                found.mmp_seq,
                found.nodename(),
                found.bdevname()
            ),
            FenceReason::NoSuccessfulWrite {
                since,
                limit,
                last_error,
            } => write!(
                f,
                "NO SUCCESSFUL MMP WRITE for {:.1} s (limit {:.1} s){}; another node may already consider the device free",
                since.as_secs_f64(),
                limit.as_secs_f64(),
                last_error
                    .as_deref()
                    .map(|e| format!(", last error: {e}"))
                    .unwrap_or_default()
            ),
        }
    }
}

/// The result of one heartbeat that did not fence.
#[derive(Debug)]
pub enum Beat {
    /// The block was ours and the next sequence is written.
    Wrote { seq: u32 },
    /// This beat failed (I/O error); not fenced yet.
    Failed {
        error: Error,
        since_success: Duration,
    },
}

/// The first half of a beat, [`Heartbeat::write_unsynced`].
#[derive(Debug)]
#[must_use = "a written beat counts only once confirmed (Heartbeat::confirm)"]
pub enum Written {
    /// The next sequence is written but not known to be durable: sync (the device, or its whole
    /// filesystem), then pass the result to [`Heartbeat::confirm`].
    Unsynced,
    /// The beat is over without a write to confirm (a read or write error).
    Done(Beat),
}

/// A device held by this node.
pub struct Heartbeat<D: BlockIo> {
    fs: MmpFs<D>,
    cfg: HeartbeatConfig,
    /// Our last write known to be on disk, and its bytes.
    block: MmpBlock,
    ours: [u8; MMP_STRUCT_SIZE],
    /// A write that returned an error, or whose sync did: it may or may not have reached the
    /// disk.
    pending: Option<(MmpBlock, [u8; MMP_STRUCT_SIZE], Duration)>,
    /// A write that returned and waits for [`Heartbeat::confirm`] (the first half of a beat).
    unsynced: Option<(MmpBlock, [u8; MMP_STRUCT_SIZE], Duration)>,
    /// When our last write on disk was submitted: the block on disk is at most this old.
    last_write: Duration,
    /// When the last successful beat's write was submitted (or the heartbeat started).
    last_success: Duration,
    /// The self-fence tag written with every beat, if any.
    fence_tag: Option<FenceTag>,
    /// What a reader waits for an untagged block of ours (the kernel's rule with the check
    /// interval we publish).
    readers_wait: Duration,
    /// When (clock time) a reader who saw our last write on disk at once could call it stale,
    /// less [`STALE_MARGIN`]: we never write after it.
    stale_deadline: Duration,
    next_due: Duration,
    last_error: Option<String>,
    fenced: Option<FenceReason>,
    beats: u64,
}

impl<D: BlockIo> Heartbeat<D> {
    /// Start holding `fs` after `claimed` won (with the same clock). The first beat is due at
    /// once: the claim's write is already `verify_wait` old.
    pub fn new(fs: MmpFs<D>, claimed: &Claimed, cfg: HeartbeatConfig, clock: &dyn Clock) -> Self {
        let readers_wait = check::wait_time(check::check_interval(
            fs.superblock().s_mmp_update_interval,
            claimed.block.mmp_check_interval,
        ));
        let now = clock.now();
        Heartbeat {
            fs,
            cfg,
            block: claimed.block.clone(),
            ours: claimed.on_disk,
            pending: None,
            unsynced: None,
            last_write: claimed.written_at,
            last_success: now,
            fence_tag: None,
            readers_wait,
            stale_deadline: (claimed.written_at + readers_wait).saturating_sub(STALE_MARGIN),
            next_due: now,
            last_error: None,
            fenced: None,
            beats: 0,
        }
    }

    /// Publish (or stop publishing) a self-fence tag with every later beat. Call it with a tag
    /// only once the fence that enforces it is armed (the watchdog is open). Readers of a
    /// tagged block may call it stale after [`check::fence_wait`], so for every tagged block
    /// on disk the holder stops writing before that.
    pub fn set_fence_tag(&mut self, tag: Option<FenceTag>) {
        self.fence_tag = tag;
    }

    /// The deadline a block of ours written (submitted) at `at` sets.
    fn deadline_of(&self, blk: &MmpBlock, at: Duration) -> Duration {
        let wait = blk.fence_tag().map_or(self.readers_wait, |t| {
            self.readers_wait.min(check::fence_wait(t))
        });
        (at + wait).saturating_sub(STALE_MARGIN)
    }

    pub fn fence_tag(&self) -> Option<FenceTag> {
        self.fence_tag
    }

    pub fn fs(&self) -> &MmpFs<D> {
        &self.fs
    }

    pub fn config(&self) -> HeartbeatConfig {
        self.cfg
    }

    /// Our last write on disk.
    pub fn block(&self) -> &MmpBlock {
        &self.block
    }

    pub fn seq(&self) -> u32 {
        self.block.mmp_seq
    }

    /// When the next beat is due (clock time).
    pub fn next_due(&self) -> Duration {
        self.next_due
    }

    /// When the last beat succeeded.
    pub fn last_success(&self) -> Duration {
        self.last_success
    }

    pub fn beats(&self) -> u64 {
        self.beats
    }

    pub fn fenced(&self) -> Option<&FenceReason> {
        self.fenced.as_ref()
    }

    /// Whether it is too late to write: no success for `fail_after`, or the block on disk is
    /// nearly old enough for a reader to call it stale.
    fn too_late(&self, now: Duration) -> Option<FenceReason> {
        let since_success = now.saturating_sub(self.last_success);
        let age = now.saturating_sub(self.last_write);
        let (since, limit) = if since_success >= self.cfg.fail_after() {
            (since_success, self.cfg.fail_after())
        } else if now >= self.stale_deadline {
            (age, self.stale_deadline.saturating_sub(self.last_write))
        } else {
            return None;
        };
        Some(FenceReason::NoSuccessfulWrite {
            since,
            limit,
            last_error: self.last_error.clone(),
        })
    }

    fn fence(&mut self, reason: FenceReason) -> Result<Beat, FenceReason> {
        self.fenced = Some(reason.clone());
        Err(reason)
    }

    /// One heartbeat: re-read and compare, then write the next sequence and `fdatasync` it.
    /// `Err` means fence: the holder has stopped writing for good, and every later call returns
    /// the same reason.
    pub fn beat(&mut self, clock: &dyn Clock) -> Result<Beat, FenceReason> {
        match self.write_unsynced(clock)? {
            Written::Done(beat) => Ok(beat),
            Written::Unsynced => {
                let synced = self.fs.sync_mmp();
                self.confirm(clock, synced)
            }
        }
    }

    /// The first half of a beat: the too-late checks, the re-read and compare, and the write of
    /// the next sequence, not synced. On [`Written::Unsynced`] the caller syncs and calls
    /// [`Heartbeat::confirm`] with the result before anything else: until then the beat has not
    /// succeeded (the last success, the ages and the stale deadline are unchanged). A write
    /// left unconfirmed when the next beat starts counts as one whose sync failed.
    pub fn write_unsynced(&mut self, clock: &dyn Clock) -> Result<Written, FenceReason> {
        if let Some(r) = &self.fenced {
            return Err(r.clone());
        }
        if let Some(w) = self.unsynced.take() {
            self.pending = Some(w);
        }
        let start = clock.now();
        self.next_due = (self.next_due + self.cfg.interval).max(start);
        if let Some(r) = self.too_late(start) {
            // Too late to write. Look (reading is harmless) so that the reason names whoever
            // took the device while we could not write, e.g. after a SIGSTOP or a long stall.
            let r = match claim::read_on_disk(&self.fs) {
                Ok((found, raw))
                    if raw != self.ours
                        && self.pending.as_ref().is_none_or(|(_, b, _)| *b != raw) =>
                {
                    FenceReason::ForeignWriter {
                        found: Box::new(found),
                        expected_seq: self.block.mmp_seq,
                    }
                }
                _ => r,
            };
            return self.fence(r).map(Written::Done);
        }
        let (found, raw) = match claim::read_on_disk(&self.fs) {
            Ok(x) => x,
            Err(error) => return self.failed(error, clock).map(Written::Done),
        };
        if raw != self.ours {
            match self.pending.take() {
                // A write that reported an error did land after all.
                Some((blk, bytes, at)) if bytes == raw => {
                    self.block = blk;
                    self.ours = bytes;
                    self.last_write = at;
                    self.stale_deadline = self.deadline_of(&self.block, at);
                }
                _ => {
                    return self
                        .fence(FenceReason::ForeignWriter {
                            found: Box::new(found),
                            expected_seq: self.block.mmp_seq,
                        })
                        .map(Written::Done)
                }
            }
        }
        self.pending = None;
        // The read may have hung: check again right before writing.
        if let Some(r) = self.too_late(clock.now()) {
            return self.fence(r).map(Written::Done);
        }
        let mut next = self.block.clone();
        next.mmp_seq = seq_after(self.block.mmp_seq);
        next.mmp_time = wall_now();
        next.set_fence_tag(self.fence_tag);
        let bytes = claim::on_disk_bytes(&self.fs, &next);
        // Ages count from the submission: the write reaches the disk no earlier, so a reader
        // who saw it started watching no earlier either.
        let submitted = clock.now();
        // From here the write may land whatever happens next: its readers' deadline counts
        // too, if it is earlier (a tagged block after an untagged one).
        self.stale_deadline = self.stale_deadline.min(self.deadline_of(&next, submitted));
        match self.fs.write_mmp_unsynced(&next) {
            Ok(()) => {
                self.unsynced = Some((next, bytes, submitted));
                Ok(Written::Unsynced)
            }
            Err(error) => {
                self.pending = Some((next, bytes, submitted));
                self.failed(error, clock).map(Written::Done)
            }
        }
    }

    /// The second half of a beat: `synced` is the result of a sync that started after
    /// [`Heartbeat::write_unsynced`] returned [`Written::Unsynced`] and covers this device
    /// (its `fdatasync`, or a `syncfs` of its filesystem). Success counts the beat, with its
    /// age from the write's submission; an error leaves the write pending (it may or may not
    /// be on disk; the next beat's re-read tells) and counts a failed beat.
    pub fn confirm(
        &mut self,
        clock: &dyn Clock,
        synced: Result<(), Error>,
    ) -> Result<Beat, FenceReason> {
        if let Some(r) = &self.fenced {
            return Err(r.clone());
        }
        let Some((next, bytes, submitted)) = self.unsynced.take() else {
            // Nothing written since the last beat: nothing to count.
            return self.failed(
                self.fs.sync_error(
                    "confirm without an unsynced MMP write",
                    std::io::Error::other("no write to confirm (a bug in the caller)"),
                ),
                clock,
            );
        };
        match synced {
            Ok(()) => {
                self.block = next;
                self.ours = bytes;
                self.last_write = submitted;
                self.stale_deadline = self.deadline_of(&self.block, submitted);
                self.last_success = submitted;
                self.last_error = None;
                self.beats += 1;
                Ok(Beat::Wrote {
                    seq: self.block.mmp_seq,
                })
            }
            Err(error) => {
                self.pending = Some((next, bytes, submitted));
                self.failed(error, clock)
            }
        }
    }

    /// Whether a write waits for [`Heartbeat::confirm`].
    pub fn is_unsynced(&self) -> bool {
        self.unsynced.is_some()
    }

    fn failed(&mut self, error: Error, clock: &dyn Clock) -> Result<Beat, FenceReason> {
        self.last_error = Some(error.to_string());
        let now = clock.now();
        if let Some(r) = self.too_late(now) {
            return self.fence(r);
        }
        Ok(Beat::Failed {
            error,
            since_success: now.saturating_sub(self.last_success),
        })
    }

    /// Stop holding: write CLEAN if the block still holds our last write (or a write whose
    /// outcome was unknown). A fenced holder never writes: it returns the fence reason.
    pub fn release(self) -> Result<Release, ReleaseError> {
        if let Some(r) = self.fenced {
            return Err(ReleaseError::Fenced(r));
        }
        let mut ours = vec![self.ours];
        for (_, b, _) in self.pending.iter().chain(&self.unsynced) {
            ours.push(*b);
        }
        claim::release(&self.fs, &self.block, &ours).map_err(ReleaseError::Io)
    }
}

/// Why a release wrote nothing.
#[derive(Debug, thiserror::Error)]
pub enum ReleaseError {
    #[error("not releasing: the holder had fenced ({0})")]
    Fenced(FenceReason),
    #[error(transparent)]
    Io(Error),
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ondisk::mmp::EXT4_MMP_SEQ_CLEAN;
    use crate::protocol::claim::tests::{opts, shared, FakeClock, ScriptedDevice};
    use crate::protocol::claim::{claim, ClaimOptions};
    use std::cell::Cell;

    fn clean() -> MmpBlock {
        MmpBlock::new(EXT4_MMP_SEQ_CLEAN, 0, "old", "sda", 5)
    }

    fn hold<'a>(
        dev: &'a ScriptedDevice<'a>,
        clock: &FakeClock,
    ) -> Heartbeat<&'a ScriptedDevice<'a>> {
        let fs = MmpFs::open(dev).unwrap();
        let cfg = HeartbeatConfig::default();
        let o = ClaimOptions {
            check_interval: cfg.publish_check_interval(),
            ..opts("me")
        };
        let c = claim(
            &fs,
            clock,
            &mut || Ok(0x500),
            &o,
            &|| false,
            &mut |_, _, _| {},
        )
        .unwrap();
        Heartbeat::new(fs, &c, cfg, clock)
    }

    /// Drive the heartbeat on the fake clock for `secs` seconds or until it fences.
    fn run(
        hb: &mut Heartbeat<&ScriptedDevice<'_>>,
        clock: &FakeClock,
        secs: u64,
    ) -> Option<FenceReason> {
        let end = clock.now() + Duration::from_secs(secs);
        while clock.now() < end {
            let due = hb.next_due();
            if due > clock.now() {
                clock.sleep(due - clock.now());
            }
            if let Err(r) = hb.beat(clock) {
                return Some(r);
            }
        }
        None
    }

    #[test]
    fn the_watchdog_fence_bound_covers_fail_after_the_timeout_and_the_pet_slack() {
        let c = HeartbeatConfig {
            interval: Duration::from_secs(1),
            fail_intervals: 2,
        };
        let t = c.watchdog_fence_tag(Duration::from_secs(3)).unwrap();
        assert_eq!(t.bound_ms, 2_000 + 3_000 + 1_000);
        assert_eq!(t.interval_ms, 1_000);
        assert_eq!(t.kind, FenceKind::Watchdog);
        assert_eq!(c.watchdog_fence_tag(Duration::ZERO), None);
        assert_eq!(c.watchdog_fence_tag(Duration::from_secs(700)), None);
    }

    #[test]
    fn with_a_fence_tag_every_beat_carries_a_valid_one_and_stops_in_time() {
        let clock = FakeClock::default();
        let dev = shared(false, &clean(), &clock, |_| None);
        let mut hb = hold(&dev, &clock);
        assert!(run(&mut hb, &clock, 2).is_none());
        assert_eq!(dev.current().fence_tag(), None, "no tag before it is armed");
        let cfg = HeartbeatConfig {
            interval: Duration::from_secs(1),
            fail_intervals: 2,
        };
        let tag = cfg.watchdog_fence_tag(Duration::from_secs(2)).unwrap();
        hb.set_fence_tag(Some(tag));
        assert!(run(&mut hb, &clock, 3).is_none());
        assert_eq!(dev.current().fence_tag(), Some(tag));
        // Readers now call our block stale after 5 s + 1 s + 50 ms: with writes failing, the
        // holder stops writing well before that (its own fail_after of 5 s fires first).
        dev.fail_writes.set(true);
        let start = clock.now();
        let r = run(&mut hb, &clock, 30).expect("fences");
        assert!(matches!(r, FenceReason::NoSuccessfulWrite { .. }), "{r}");
        assert!(clock.now() - start <= check::fence_wait(tag) - STALE_MARGIN);
        // Released blocks carry no tag.
        let dev = shared(false, &clean(), &clock, |_| None);
        let mut hb = hold(&dev, &clock);
        hb.set_fence_tag(Some(tag));
        assert!(run(&mut hb, &clock, 2).is_none());
        assert!(matches!(hb.release(), Ok(Release::Clean(_))));
        assert_eq!(dev.current().fence_tag(), None);
        assert!(dev.current().mmp_pad2.iter().all(|&b| b == 0));
    }

    /// Ages count from the submission of a write, so a slow write does not buy extra time.
    #[test]
    fn slow_writes_count_from_their_submission() {
        let clock = FakeClock::default();
        let dev = shared(false, &clean(), &clock, |_| None);
        let mut hb = hold(&dev, &clock);
        assert!(run(&mut hb, &clock, 2).is_none());
        let before = clock.now();
        dev.write_delay.set(Duration::from_millis(1_500));
        assert!(matches!(hb.beat(&clock), Ok(Beat::Wrote { .. })));
        assert_eq!(hb.last_success(), before);
    }

    #[test]
    fn publishes_a_check_interval_readers_wait_out() {
        let c = HeartbeatConfig::default();
        assert_eq!(c.publish_check_interval(), 5);
        assert!(check::wait_time(5) > c.fail_after());
        let c = HeartbeatConfig {
            interval: Duration::from_millis(1500),
            fail_intervals: 10,
        };
        assert_eq!(c.publish_check_interval(), 15);
        assert!(c.validate().is_ok());
        let bad = [
            (50u64, 5u32, "IntervalOutOfRange"),
            (1000, 1, "TooFewFailIntervals"),
            (60_000, 10, "FailAfterTooLong"),
        ];
        for (i, n, step) in bad {
            let c = HeartbeatConfig {
                interval: Duration::from_millis(i),
                fail_intervals: n,
            };
            let e = c.validate().unwrap_err();
            assert!(format!("{e:?}").starts_with(step), "{c:?}: {e:?}");
        }
    }

    #[test]
    fn steady_heartbeat_counts_up_every_interval() {
        let clock = FakeClock::default();
        let dev = shared(true, &clean(), &clock, |_| None);
        let mut hb = hold(&dev, &clock);
        let writes_before = dev.writes.borrow().len();
        assert!(run(&mut hb, &clock, 30).is_none());
        let writes = dev.writes.borrow()[writes_before..].to_vec();
        assert!((30..=31).contains(&writes.len()), "{}", writes.len());
        for w in writes.windows(2) {
            assert_eq!(w[1].1, w[0].1 + 1, "sequence counts up");
            assert_eq!(w[1].0 - w[0].0, Duration::from_secs(1));
        }
        assert_eq!(writes[0].1, 0x501, "first beat follows the claim sequence");
        assert_eq!(dev.current().nodename(), "me");
        assert_eq!(dev.current().mmp_check_interval, 5);
    }

    #[test]
    fn foreign_sequence_fences_and_nothing_more_is_written() {
        let clock = FakeClock::default();
        let intruder_at = Cell::new(Duration::MAX);
        let dev = shared(false, &clean(), &clock, |t| {
            (t >= intruder_at.get()).then(|| MmpBlock::new(0xBAD, 0, "intruder", "sdz", 5))
        });
        let mut hb = hold(&dev, &clock);
        assert!(run(&mut hb, &clock, 5).is_none());
        intruder_at.set(clock.now() + Duration::from_millis(300));
        let writes = dev.writes.borrow().len();
        let r = run(&mut hb, &clock, 5).expect("must fence");
        match &r {
            FenceReason::ForeignWriter { found, .. } => assert_eq!(found.nodename(), "intruder"),
            r => panic!("{r}"),
        }
        assert!(r.to_string().contains("ANOTHER WRITER"));
        assert_eq!(
            dev.writes.borrow().len(),
            writes,
            "no write after the intrusion"
        );
        assert!(hb.beat(&clock).is_err(), "stays fenced");
        assert!(matches!(hb.release(), Err(ReleaseError::Fenced(_))));
        assert_eq!(
            dev.current().mmp_seq,
            0xBAD,
            "the intruder's block is left alone"
        );
    }

    #[test]
    fn same_sequence_but_other_node_name_is_foreign_too() {
        let clock = FakeClock::default();
        let copy_at = Cell::new(Duration::MAX);
        let dev_cell: Cell<Option<MmpBlock>> = Cell::new(None);
        let dev = shared(false, &clean(), &clock, |t| {
            if t >= copy_at.get() {
                let b = dev_cell.take();
                if let Some(mut b) = b.clone() {
                    b.mmp_nodename[0] ^= 1;
                    return Some(b);
                }
            }
            None
        });
        let mut hb = hold(&dev, &clock);
        assert!(run(&mut hb, &clock, 3).is_none());
        dev_cell.set(Some(hb.block().clone()));
        copy_at.set(clock.now());
        assert!(matches!(
            run(&mut hb, &clock, 3),
            Some(FenceReason::ForeignWriter { .. })
        ));
    }

    #[test]
    fn write_errors_fence_after_fail_intervals() {
        let clock = FakeClock::default();
        let dev = shared(false, &clean(), &clock, |_| None);
        let mut hb = hold(&dev, &clock);
        assert!(run(&mut hb, &clock, 3).is_none());
        dev.fail_writes.set(true);
        let t0 = clock.now();
        let r = run(&mut hb, &clock, 20).expect("fences");
        let took = clock.now() - t0;
        assert!(matches!(r, FenceReason::NoSuccessfulWrite { .. }), "{r}");
        assert!(r.to_string().contains("injected write error"), "{r}");
        assert!(took <= Duration::from_secs(5), "fenced after {took:?}");
        // The reader's wait is 11 s: we stopped well before anyone may call the block stale.
        assert!(took < check::wait_time(5));
    }

    #[test]
    fn read_errors_count_as_failures_too() {
        let clock = FakeClock::default();
        let dev = shared(false, &clean(), &clock, |_| None);
        let mut hb = hold(&dev, &clock);
        dev.fail_reads.set(true);
        assert!(matches!(
            run(&mut hb, &clock, 20),
            Some(FenceReason::NoSuccessfulWrite { .. })
        ));
    }

    #[test]
    fn a_transient_error_does_not_fence() {
        let clock = FakeClock::default();
        let dev = shared(false, &clean(), &clock, |_| None);
        let mut hb = hold(&dev, &clock);
        assert!(run(&mut hb, &clock, 2).is_none());
        dev.fail_writes.set(true);
        assert!(matches!(hb.beat(&clock), Ok(Beat::Failed { .. })));
        dev.fail_writes.set(false);
        assert!(run(&mut hb, &clock, 10).is_none());
    }

    #[test]
    fn a_failed_write_that_landed_is_not_foreign() {
        // The device reports an error but stores the block (e.g. the sync failed).
        struct LyingDev<'a>(&'a ScriptedDevice<'a>, Cell<bool>);
        impl BlockIo for LyingDev<'_> {
            fn read_at(&self, o: u64, b: &mut [u8]) -> std::io::Result<()> {
                self.0.read_at(o, b)
            }
            fn write_at(&self, o: u64, b: &[u8]) -> std::io::Result<()> {
                self.0.write_at(o, b)?;
                if self.1.get() {
                    return Err(std::io::Error::other("lost completion"));
                }
                Ok(())
            }
            fn sync(&self) -> std::io::Result<()> {
                Ok(())
            }
            fn size(&self) -> u64 {
                self.0.size()
            }
            fn logical_block_size(&self) -> u32 {
                512
            }
            fn name(&self) -> &str {
                "lying"
            }
        }
        let clock = FakeClock::default();
        let shared = shared(false, &clean(), &clock, |_| None);
        let dev = LyingDev(&shared, Cell::new(false));
        let fs = MmpFs::open(&dev).unwrap();
        let c = claim(
            &fs,
            &clock,
            &mut || Ok(9),
            &opts("me"),
            &|| false,
            &mut |_, _, _| {},
        )
        .unwrap();
        let mut hb = Heartbeat::new(fs, &c, HeartbeatConfig::default(), &clock);
        for _ in 0..3 {
            assert!(matches!(hb.beat(&clock), Ok(Beat::Wrote { .. })));
            clock.sleep(Duration::from_secs(1));
        }
        dev.1.set(true);
        assert!(matches!(hb.beat(&clock), Ok(Beat::Failed { .. })));
        dev.1.set(false);
        clock.sleep(Duration::from_secs(1));
        assert!(matches!(hb.beat(&clock), Ok(Beat::Wrote { .. })));
    }

    #[test]
    fn a_stalled_holder_never_writes_late() {
        // The process was stopped (or the read hung) past the limit: fence without writing.
        let clock = FakeClock::default();
        let dev = shared(false, &clean(), &clock, |_| None);
        let mut hb = hold(&dev, &clock);
        assert!(run(&mut hb, &clock, 2).is_none());
        let writes = dev.writes.borrow().len();
        clock.sleep(Duration::from_secs(8));
        assert!(matches!(
            hb.beat(&clock),
            Err(FenceReason::NoSuccessfulWrite { .. })
        ));
        assert_eq!(dev.writes.borrow().len(), writes);
    }

    #[test]
    fn first_beat_must_follow_the_claim_promptly() {
        // Claim done (its write is 9 s old), but the holder starts 1.6 s late: a reader who saw
        // the claim write may call it stale at 11 s, and we keep a 0.5 s margin: too late.
        let clock = FakeClock::default();
        let dev = shared(false, &clean(), &clock, |_| None);
        let fs = MmpFs::open(&dev).unwrap();
        let c = claim(
            &fs,
            &clock,
            &mut || Ok(9),
            &opts("me"),
            &|| false,
            &mut |_, _, _| {},
        )
        .unwrap();
        clock.sleep(Duration::from_millis(1600));
        let mut hb = Heartbeat::new(fs, &c, HeartbeatConfig::default(), &clock);
        assert!(hb.beat(&clock).is_err());
    }

    fn sync_failed() -> Result<(), Error> {
        Err(Error::Io {
            device: "shared".into(),
            op: "syncfs after writing the MMP block",
            offset: 0,
            source: std::io::Error::other("injected sync error"),
        })
    }

    /// One beat in two halves with the given sync result; `None` if it ended in the first.
    fn split_beat(
        hb: &mut Heartbeat<&ScriptedDevice<'_>>,
        clock: &FakeClock,
        synced: impl FnOnce() -> Result<(), Error>,
    ) -> Result<Beat, FenceReason> {
        match hb.write_unsynced(clock)? {
            Written::Done(b) => Ok(b),
            Written::Unsynced => hb.confirm(clock, synced()),
        }
    }

    /// Beats in two halves with a shared sync that always fails, on the fake clock, until
    /// the holder fences (or `secs` pass).
    fn run_failing_sync(
        hb: &mut Heartbeat<&ScriptedDevice<'_>>,
        clock: &FakeClock,
        secs: u64,
    ) -> Option<FenceReason> {
        let end = clock.now() + Duration::from_secs(secs);
        while clock.now() < end {
            let due = hb.next_due();
            if due > clock.now() {
                clock.sleep(due - clock.now());
            }
            match split_beat(hb, clock, sync_failed) {
                Ok(Beat::Wrote { .. }) => panic!("a beat whose sync failed succeeded"),
                Ok(Beat::Failed { .. }) => {}
                Err(r) => return Some(r),
            }
        }
        None
    }

    #[test]
    fn a_beat_counts_only_once_confirmed_and_from_its_submission() {
        let clock = FakeClock::default();
        let dev = shared(false, &clean(), &clock, |_| None);
        let mut hb = hold(&dev, &clock);
        assert!(run(&mut hb, &clock, 2).is_none());
        let (seq, beats, success) = (hb.seq(), hb.beats(), hb.last_success());
        clock.sleep(Duration::from_secs(1));
        let submitted = clock.now();
        assert!(matches!(hb.write_unsynced(&clock), Ok(Written::Unsynced)));
        assert!(hb.is_unsynced());
        // Written (the device has it) but not counted: not a success, not our block yet.
        assert_eq!(dev.current().mmp_seq, seq_after(seq));
        assert_eq!(
            (hb.seq(), hb.beats(), hb.last_success()),
            (seq, beats, success)
        );
        // The shared sync takes 700 ms: the beat's age still counts from the write.
        clock.sleep(Duration::from_millis(700));
        assert!(matches!(
            hb.confirm(&clock, Ok(())),
            Ok(Beat::Wrote { seq: s }) if s == seq_after(seq)
        ));
        assert_eq!(hb.last_success(), submitted);
        assert_eq!(hb.beats(), beats + 1);
        assert!(!hb.is_unsynced());
        // A confirm with nothing written counts nothing.
        assert!(matches!(
            hb.confirm(&clock, Ok(())),
            Ok(Beat::Failed { .. })
        ));
        assert_eq!(hb.last_success(), submitted);
    }

    #[test]
    fn a_failed_group_sync_is_a_failed_beat_and_fences_after_fail_after() {
        let clock = FakeClock::default();
        let dev = shared(false, &clean(), &clock, |_| None);
        let mut hb = hold(&dev, &clock);
        assert!(run(&mut hb, &clock, 3).is_none());
        let last_success = hb.last_success();
        let t0 = clock.now();
        let r = run_failing_sync(&mut hb, &clock, 20).expect("fences");
        let took = clock.now() - t0;
        assert!(matches!(r, FenceReason::NoSuccessfulWrite { .. }), "{r}");
        assert!(r.to_string().contains("injected sync error"), "{r}");
        assert!(took <= Duration::from_secs(5), "fenced after {took:?}");
        assert!(took < check::wait_time(5));
        assert_eq!(hb.last_success(), last_success, "no failed sync counted");
        // Nothing written once fenced, and nothing confirmed either.
        let writes = dev.writes.borrow().len();
        assert!(hb.write_unsynced(&clock).is_err());
        assert!(hb.confirm(&clock, Ok(())).is_err());
        assert_eq!(dev.writes.borrow().len(), writes);
    }

    #[test]
    fn a_write_that_landed_but_whose_sync_failed_is_ours() {
        let clock = FakeClock::default();
        let dev = shared(true, &clean(), &clock, |_| None);
        let mut hb = hold(&dev, &clock);
        assert!(run(&mut hb, &clock, 2).is_none());
        let seq = hb.seq();
        clock.sleep(Duration::from_secs(1));
        assert!(matches!(
            split_beat(&mut hb, &clock, sync_failed),
            Ok(Beat::Failed { .. })
        ));
        // The block on disk is the write whose sync failed; our last known write is older.
        assert_eq!(dev.current().mmp_seq, seq_after(seq));
        assert_eq!(hb.seq(), seq);
        clock.sleep(Duration::from_secs(1));
        // The next beat finds it, takes it as ours and writes the one after.
        assert!(matches!(
            split_beat(&mut hb, &clock, || Ok(())),
            Ok(Beat::Wrote { seq: s }) if s == seq_after(seq_after(seq))
        ));
        assert!(run(&mut hb, &clock, 5).is_none());
    }

    #[test]
    fn an_unconfirmed_write_is_pending_at_the_next_beat_and_at_release() {
        let clock = FakeClock::default();
        let dev = shared(false, &clean(), &clock, |_| None);
        let mut hb = hold(&dev, &clock);
        assert!(run(&mut hb, &clock, 2).is_none());
        let success = hb.last_success();
        clock.sleep(Duration::from_secs(1));
        assert!(matches!(hb.write_unsynced(&clock), Ok(Written::Unsynced)));
        // Never confirmed: the next beat (with its own sync) treats it as a write of unknown
        // outcome, finds it on disk and goes on.
        clock.sleep(Duration::from_secs(1));
        assert!(matches!(hb.beat(&clock), Ok(Beat::Wrote { .. })));
        assert!(hb.last_success() > success);
        // Released with a write unconfirmed: the block is ours, CLEAN is written.
        clock.sleep(Duration::from_secs(1));
        assert!(matches!(hb.write_unsynced(&clock), Ok(Written::Unsynced)));
        assert!(matches!(hb.release(), Ok(Release::Clean(_))));
        assert_eq!(dev.current().mmp_seq, EXT4_MMP_SEQ_CLEAN);
    }

    #[test]
    fn a_foreign_write_between_write_and_confirm_is_caught_at_the_next_beat() {
        let clock = FakeClock::default();
        let dev = shared(false, &clean(), &clock, |_| None);
        let mut hb = hold(&dev, &clock);
        assert!(run(&mut hb, &clock, 2).is_none());
        clock.sleep(Duration::from_secs(1));
        assert!(matches!(hb.write_unsynced(&clock), Ok(Written::Unsynced)));
        // Another node writes the block while our sync runs.
        let intruder = MmpBlock::new(0xBAD, 0, "intruder", "sdz", 5);
        dev.inner
            .write_at(
                crate::protocol::check::tests::MMP_BLOCK * crate::protocol::check::tests::BS,
                &intruder.encode(dev.seed),
            )
            .unwrap();
        assert!(matches!(hb.confirm(&clock, Ok(())), Ok(Beat::Wrote { .. })));
        let writes = dev.writes.borrow().len();
        clock.sleep(Duration::from_secs(1));
        match split_beat(&mut hb, &clock, || Ok(())) {
            Err(FenceReason::ForeignWriter { found, .. }) => {
                assert_eq!(found.nodename(), "intruder")
            }
            r => panic!("{r:?}"),
        }
        assert_eq!(dev.writes.borrow().len(), writes, "nothing written over it");
        assert_eq!(dev.current().mmp_seq, 0xBAD);
        assert!(matches!(hb.release(), Err(ReleaseError::Fenced(_))));
    }

    #[test]
    fn a_group_sync_that_hung_past_the_limit_fences_at_the_next_beat() {
        // The shared sync returned fine, but only after the block on disk could be called
        // stale: the beat counts from its submission, so the next beat is too late to write.
        let clock = FakeClock::default();
        let dev = shared(false, &clean(), &clock, |_| None);
        let mut hb = hold(&dev, &clock);
        assert!(run(&mut hb, &clock, 2).is_none());
        clock.sleep(Duration::from_secs(1));
        assert!(matches!(hb.write_unsynced(&clock), Ok(Written::Unsynced)));
        clock.sleep(Duration::from_secs(9));
        assert!(matches!(hb.confirm(&clock, Ok(())), Ok(Beat::Wrote { .. })));
        let writes = dev.writes.borrow().len();
        assert!(matches!(
            hb.write_unsynced(&clock),
            Err(FenceReason::NoSuccessfulWrite { .. })
        ));
        assert_eq!(dev.writes.borrow().len(), writes);
    }

    #[test]
    fn release_writes_clean() {
        let clock = FakeClock::default();
        let dev = shared(false, &clean(), &clock, |_| None);
        let mut hb = hold(&dev, &clock);
        assert!(run(&mut hb, &clock, 3).is_none());
        match hb.release().unwrap() {
            Release::Clean(b) => assert_eq!(b.nodename(), "me"),
            r => panic!("{r:?}"),
        }
        assert_eq!(dev.current().mmp_seq, EXT4_MMP_SEQ_CLEAN);
    }
}
