//! One thread per held device: claim, then heartbeat until told to release or until it fences.
//!
//! The thread does the device's I/O and nothing else; the main thread handles signals, systemd,
//! the watchdog, state files and the fence actions, and watches that every heartbeat thread
//! keeps succeeding (a thread stuck in I/O cannot fence itself). Signals are blocked in every
//! thread (the main thread blocks them before spawning), so only the main thread's signalfd
//! sees them.

use libmmp::check::{Clock, SafeReason};
use libmmp::claim::{self, ClaimOptions, Release};
use libmmp::device::Device;
use libmmp::fs::MmpFs;
use libmmp::heartbeat::{Beat, FenceReason, Heartbeat, HeartbeatConfig, ReleaseError};
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering::SeqCst};
use std::sync::mpsc::Sender;
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// Monotonic time since the daemon started, shared by every thread.
#[derive(Debug, Clone, Copy)]
pub struct EpochClock {
    pub origin: Instant,
}

impl Clock for EpochClock {
    fn now(&self) -> Duration {
        self.origin.elapsed()
    }
    fn sleep(&self, d: Duration) {
        std::thread::sleep(d)
    }
}

/// What a device thread reports to the main thread.
#[derive(Debug)]
pub enum Event {
    Claimed {
        id: usize,
        seq: u32,
        previous: SafeReason,
        elapsed: Duration,
    },
    ClaimFailed {
        id: usize,
        error: String,
        refusal: bool,
    },
    Fenced {
        id: usize,
        reason: FenceReason,
        seq: u32,
    },
    Released {
        id: usize,
        outcome: Result<(), String>,
    },
}

/// State shared between the main thread and one device thread.
#[derive(Debug, Default)]
pub struct Shared {
    stop: AtomicBool,
    /// Set by the main thread when it fenced this device itself: never write again.
    main_fenced: AtomicBool,
    /// The thread has written, or is about to: on shutdown the main thread must wait for it to
    /// release. (Before that it only reads, and may be abandoned.)
    pub writing: AtomicBool,
    pub seq: AtomicU32,
    /// Epoch-clock milliseconds of the last successful write.
    pub last_success_ms: AtomicU64,
    wake: (Mutex<()>, Condvar),
}

impl Shared {
    pub fn request_stop(&self) {
        let _g = self.wake.0.lock().unwrap_or_else(|e| e.into_inner());
        self.stop.store(true, SeqCst);
        self.wake.1.notify_all();
    }

    pub fn stop_requested(&self) -> bool {
        self.stop.load(SeqCst)
    }

    pub fn fence_from_main(&self) {
        self.main_fenced.store(true, SeqCst);
        self.request_stop();
    }

    pub fn main_fenced(&self) -> bool {
        self.main_fenced.load(SeqCst)
    }

    /// Sleep until `due` (epoch clock) or a stop request; true if stop was requested.
    fn wait_until(&self, clock: &EpochClock, due: Duration) -> bool {
        let mut g = self.wake.0.lock().unwrap_or_else(|e| e.into_inner());
        loop {
            if self.stop.load(SeqCst) {
                return true;
            }
            let now = clock.now();
            if now >= due {
                return false;
            }
            g = match self.wake.1.wait_timeout(g, due - now) {
                Ok((g, _)) => g,
                Err(e) => e.into_inner().0,
            };
        }
    }

    /// Called by the claim right before it writes and at every verification read. Marks the
    /// thread as writing *before* looking at the stop flag, so that the main thread either sees
    /// it writing (and waits for it) or the thread sees the stop (and writes nothing).
    fn claim_cancel(&self) -> bool {
        self.writing.store(true, SeqCst);
        self.stop.load(SeqCst)
    }
}

/// Everything a device thread needs.
pub struct Job {
    pub id: usize,
    pub fs: MmpFs<Device>,
    pub heartbeat: HeartbeatConfig,
    pub claim: ClaimOptions,
    pub shared: Arc<Shared>,
    pub events: Sender<Event>,
    pub clock: EpochClock,
}

pub fn spawn(job: Job) -> std::io::Result<JoinHandle<()>> {
    std::thread::Builder::new()
        .name(format!("mmpd-dev{}", job.id))
        .spawn(move || run(job))
}

fn run(job: Job) {
    let Job {
        id,
        fs,
        heartbeat,
        claim: opts,
        shared,
        events,
        clock,
    } = job;
    let device = fs.device_name().to_string();
    // A closed channel means the main thread is gone: nothing left to tell.
    let send = |e: Event| {
        let _ = events.send(e);
    };
    tracing::info!(device = %device, node = %opts.nodename, check_interval = opts.check_interval, "claiming");
    let mut last_phase = None;
    let result = claim::claim(
        &fs,
        &clock,
        &mut || claim::random_seq().unwrap_or_else(|_| fallback_seq(&clock)),
        &opts,
        &|| shared.claim_cancel(),
        &mut |phase, _elapsed, total| {
            if last_phase != Some(phase) {
                last_phase = Some(phase);
                tracing::info!(device = %device, ?phase, wait_s = total.as_secs_f64(), "claim: waiting");
            }
        },
    );
    let claimed = match result {
        Ok(c) => c,
        Err(e) => {
            shared.writing.store(false, SeqCst);
            send(Event::ClaimFailed {
                id,
                refusal: e.is_refusal(),
                error: e.to_string(),
            });
            return;
        }
    };
    shared.seq.store(claimed.block.mmp_seq, SeqCst);
    shared
        .last_success_ms
        .store(clock.now().as_millis() as u64, SeqCst);
    let mut hb = Heartbeat::new(fs, &claimed, heartbeat, &clock);
    send(Event::Claimed {
        id,
        seq: claimed.block.mmp_seq,
        previous: claimed.previous,
        elapsed: claimed.elapsed,
    });
    let mut failing = false;
    loop {
        if shared.wait_until(&clock, hb.next_due()) {
            if shared.main_fenced() {
                return;
            }
            let outcome = match hb.release() {
                Ok(Release::Clean(_)) => Ok(()),
                Ok(Release::NotOurs(found)) => Err(format!(
                    "the MMP block holds sequence {:#010x} from node '{}' device '{}', not our last write: another node wrote it; CLEAN NOT written",
                    found.mmp_seq,
                    found.nodename(),
                    found.bdevname()
                )),
                Err(ReleaseError::Fenced(r)) => Err(r.to_string()),
                Err(ReleaseError::Io(e)) => Err(e.to_string()),
            };
            send(Event::Released { id, outcome });
            return;
        }
        match hb.beat(&clock) {
            Ok(Beat::Wrote { seq }) => {
                if failing {
                    tracing::warn!(device = %device, "MMP writes succeed again");
                    failing = false;
                }
                shared.seq.store(seq, SeqCst);
                shared
                    .last_success_ms
                    .store(clock.now().as_millis() as u64, SeqCst);
            }
            Ok(Beat::Failed {
                error,
                since_success,
            }) => {
                failing = true;
                tracing::warn!(device = %device, since_success_s = since_success.as_secs_f64(), "MMP heartbeat failed: {error}");
            }
            Err(reason) => {
                send(Event::Fenced {
                    id,
                    reason,
                    seq: hb.seq(),
                });
                return;
            }
        }
    }
}

/// If /dev/urandom fails: still a live, non-zero sequence (uniqueness is what matters, and
/// the time in nanoseconds differs between nodes).
fn fallback_seq(clock: &EpochClock) -> u32 {
    let ns = clock.origin.elapsed().as_nanos() as u32 ^ std::process::id().rotate_left(16);
    (ns % libmmp::mmp::EXT4_MMP_SEQ_MAX).max(1)
}
