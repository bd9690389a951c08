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
use crate::io::BlockIo;
use crate::ondisk::fence_tag::{FenceKind, FenceTag, FENCE_TAG_MAX_BOUND_MS};
use crate::ondisk::mmp::{MmpBlock, MMP_STRUCT_SIZE};
use crate::protocol::check;
use crate::protocol::claim::{self, Claimed, Release};
use crate::protocol::clock::{wall_now, Clock};
use crate::protocol::seq::seq_after;
use std::fmt;
use std::sync::Arc;
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
        /// The error of the last failed write or read, if the last beat failed.
        last_error: Option<Arc<Error>>,
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
                    .as_ref()
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
        /// Shared with the [`FenceReason`] that names it if the failures go on.
        error: Arc<Error>,
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
    last_error: Option<Arc<Error>>,
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
        let error = Arc::new(error);
        self.last_error = Some(Arc::clone(&error));
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
mod tests;
