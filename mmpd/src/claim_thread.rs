//! Claim threads: one per device being claimed, ending with the claim.
//!
//! A won claim hands its [`Heartbeat`] to the main loop, which schedules the beats and runs
//! them on the I/O pool ([`crate::pool`]). Signals are blocked in every thread (the main thread
//! blocks them before spawning), so only the main thread's signalfd sees them.

use libmmp::fs::MmpFs;
use libmmp::io::device::Device;
use libmmp::ondisk::handoff::format_nonce;
use libmmp::protocol::check::SafeReason;
use libmmp::protocol::claim::handoff::{self, HandoffError};
use libmmp::protocol::claim::{self, ClaimMode, ClaimOptions, FencedNode};
use libmmp::protocol::clock::SystemClock;
use libmmp::protocol::heartbeat::{Heartbeat, HeartbeatConfig};
use libmmp::protocol::seq::random_seq;
use std::sync::atomic::{AtomicBool, Ordering::SeqCst};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

/// What a claim thread reports to the main loop.
pub enum Event {
    /// The claim won: the main loop holds the device from now on with `hb`.
    Claimed {
        id: usize,
        hb: Box<Heartbeat<Device>>,
        previous: SafeReason,
        elapsed: Duration,
    },
    ClaimFailed {
        id: usize,
        /// A claim error, or a refused handoff (`--handoff`).
        error: HandoffError,
    },
}

/// How the main loop controls one claim thread, and what it learns of it.
#[derive(Debug, Default)]
pub struct ClaimControl {
    stop: AtomicBool,
    /// The claim has written, or is about to: on shutdown the main loop must wait for the
    /// thread to finish (a cancelled claim restores CLEAN; a won one is released). Before that
    /// it only reads, and may be abandoned.
    pub writing: AtomicBool,
    /// The thread has returned (after sending its event).
    pub finished: AtomicBool,
}

impl ClaimControl {
    pub fn request_stop(&self) {
        self.stop.store(true, SeqCst);
    }

    pub fn stop_requested(&self) -> bool {
        self.stop.load(SeqCst)
    }

    /// Called by the claim right before it writes and at every verification read. Marks the
    /// thread as writing *before* looking at the stop flag, so that the main loop either sees
    /// it writing (and waits for it) or the thread sees the stop (and writes nothing).
    fn claim_cancel(&self) -> bool {
        self.writing.store(true, SeqCst);
        self.stop.load(SeqCst)
    }
}

/// Everything a claim thread needs: one device to claim.
pub struct ClaimTask {
    pub id: usize,
    pub fs: MmpFs<Device>,
    pub heartbeat: HeartbeatConfig,
    pub claim: ClaimOptions,
    pub control: Arc<ClaimControl>,
    /// Delivers the event to the main loop and wakes it.
    pub events: Arc<dyn Fn(Event) + Send + Sync>,
    pub clock: SystemClock,
    /// `--fenced`: claim on the fence-confirmed path.
    pub fenced: Option<FencedNode>,
    /// `--handoff`: the target's claim of a planned handoff with this nonce.
    pub handoff: Option<u64>,
}

/// Claim on a thread of its own (a claim waits 10 to 20 s, and many run in parallel). The thread
/// ends with the claim: the heartbeat is the main loop's.
pub fn spawn(task: ClaimTask) -> std::io::Result<JoinHandle<()>> {
    std::thread::Builder::new()
        .name(format!("mmpd-claim{}", task.id))
        .stack_size(512 * 1024)
        .spawn(move || {
            let control = task.control.clone();
            run(task);
            control.finished.store(true, SeqCst);
        })
}

fn run(task: ClaimTask) {
    let ClaimTask {
        id,
        fs,
        heartbeat,
        claim: opts,
        control,
        events,
        clock,
        fenced,
        handoff,
    } = task;
    let device = fs.device_name().to_string();
    tracing::info!(device = %device, node = %opts.nodename, check_interval = opts.check_interval, "claiming");
    let mut last_phase = None;
    let cancel = || control.claim_cancel();
    let mut progress = |phase, _elapsed, total: Duration| {
        if last_phase != Some(phase) {
            last_phase = Some(phase);
            tracing::info!(device = %device, ?phase, wait_s = total.as_secs_f64(), "claim: waiting");
        }
    };
    let result = match (&fenced, handoff) {
        (_, Some(nonce)) => handoff::claim_handoff(
            &fs,
            &clock,
            &mut random_seq,
            &opts,
            ClaimMode::HolderFollows,
            nonce,
            &cancel,
            &mut progress,
        )
        .map(|c| {
            tracing::info!(device = %device, source = %c.record.source, nonce = %format_nonce(nonce), "handoff claim won");
            c.claimed
        }),
        (None, None) => claim::claim(&fs, &clock, &mut random_seq, &opts, &cancel, &mut progress)
            .map_err(HandoffError::from),
        (Some(f), None) => claim::claim_fenced(
            &fs,
            &clock,
            &mut random_seq,
            &opts,
            ClaimMode::HolderFollows,
            f,
            &cancel,
            &mut progress,
        )
        .map(|c| {
            tracing::info!(device = %device, fenced = %f.node, path = c.path.name(), watch_s = c.path.watch().map(|w| w.as_secs_f64()), "fence-confirmed claim won");
            c.claimed
        })
        .map_err(HandoffError::from),
    };
    match result {
        Ok(claimed) => {
            let hb = Heartbeat::new(fs, &claimed, heartbeat, &clock);
            events(Event::Claimed {
                id,
                hb: Box::new(hb),
                previous: claimed.previous,
                elapsed: claimed.elapsed,
            });
        }
        Err(e) => {
            control.writing.store(false, SeqCst);
            events(Event::ClaimFailed { id, error: e });
        }
    }
}
