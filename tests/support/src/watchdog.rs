//! The driver's side of mmpd's test watchdog. mmpd's fake (`mmpd::fence::FileWatchdog`, test
//! builds only) is a plain file it appends `p` to on every pet and `V` on a magic close;
//! [`WatchdogSim`] watches that file as a watchdog driver would count, and when no pet came
//! for the timeout it "resets the node": SIGKILL of the daemon, recording when. As in sbd's
//! regression suite, which fakes the watchdog and the reboot, nothing is really reset.

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// How often the file is looked at: the precision of the times measured.
const POLL: Duration = Duration::from_millis(5);

#[derive(Debug, Default, Clone)]
pub struct WatchdogEvents {
    /// When each pet was seen.
    pub pets: Vec<Instant>,
    /// When the magic close was seen (a clean release disarms it).
    pub closed: Option<Instant>,
    /// When it fired: the timeout ran out after the last pet, and the victim was killed.
    pub fired: Option<Instant>,
}

/// A watchdog counting down from every pet seen in `file`; armed at the first pet (mmpd pets
/// right after it opens, that is arms, its watchdog). Stops on drop.
pub struct WatchdogSim {
    events: Arc<Mutex<WatchdogEvents>>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
    pub timeout: Duration,
}

impl WatchdogSim {
    /// Watch `file`; when it fires, SIGKILL `victim`.
    pub fn start(file: &Path, timeout: Duration, victim: Pid) -> Self {
        let events = Arc::new(Mutex::new(WatchdogEvents::default()));
        let stop = Arc::new(AtomicBool::new(false));
        let (ev, st, file) = (Arc::clone(&events), Arc::clone(&stop), file.to_path_buf());
        let thread = std::thread::spawn(move || run(&file, timeout, victim, &ev, &st));
        WatchdogSim {
            events,
            stop,
            thread: Some(thread),
            timeout,
        }
    }

    pub fn events(&self) -> WatchdogEvents {
        self.events
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    pub fn fired(&self) -> Option<Instant> {
        self.events().fired
    }

    pub fn last_pet(&self) -> Option<Instant> {
        self.events().pets.last().copied()
    }
}

fn run(
    file: &PathBuf,
    timeout: Duration,
    victim: Pid,
    events: &Mutex<WatchdogEvents>,
    stop: &AtomicBool,
) {
    let mut seen = 0usize;
    while !stop.load(Ordering::Relaxed) {
        let bytes = std::fs::read(file).unwrap_or_default();
        let now = Instant::now();
        let mut ev = events.lock().unwrap_or_else(|e| e.into_inner());
        for &b in bytes.get(seen..).unwrap_or_default() {
            match b {
                b'p' => ev.pets.push(now),
                b'V' => ev.closed = Some(now),
                _ => {}
            }
        }
        seen = bytes.len().max(seen);
        if ev.closed.is_none() && ev.fired.is_none() {
            if let Some(&last) = ev.pets.last() {
                if now.duration_since(last) > timeout {
                    let _ = kill(victim, Signal::SIGKILL);
                    ev.fired = Some(now);
                }
            }
        }
        drop(ev);
        std::thread::sleep(POLL);
    }
}

impl Drop for WatchdogSim {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}
