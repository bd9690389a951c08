//! The two helper processes: the **holder** (`__holder`) takes the locks and writes through
//! them every interval; the **probe** (`__probe`), another lock owner, checks every interval
//! whether a conflicting lock would be granted. Each prints its events on stdout and takes
//! commands ("final", "stop") on stdin.

use std::fs::{File, OpenOptions};
use std::io::{self, BufRead, Write};
use std::os::unix::fs::FileExt;
use std::path::Path;
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use tracing::warn;

use super::events::{
    mono_ns, write_event, HelperParams, HolderEvent, IoResult, ProbeEvent, ProbeMode, ProbeResult,
    ProbeState, Target,
};
use crate::lock::{self, errno_name, is_conflict, LockKind, LockType};
use crate::sys;

/// Commands from the supervisor on a helper's stdin.
const CMD_NONE: u8 = 0;
const CMD_STOP: u8 = 1;
const CMD_FINAL: u8 = 2;

fn watch_stdin() -> Arc<AtomicU8> {
    let flag = Arc::new(AtomicU8::new(CMD_NONE));
    let f = flag.clone();
    thread::spawn(move || {
        let stdin = io::stdin();
        for line in stdin.lock().lines() {
            match line.as_deref().map(str::trim) {
                Ok("final") => f.store(CMD_FINAL, Ordering::SeqCst),
                Ok("stop") | Err(_) => break,
                Ok(_) => {}
            }
        }
        // End of input (the supervisor is gone or asked us to stop).
        f.store(CMD_STOP, Ordering::SeqCst);
    });
    flag
}

fn helper_setup() {
    // The supervisor decides when helpers stop; Ctrl-C on the terminal reaches the whole
    // process group, and must not drop the locks before the report is written.
    if let Err(e) = sys::ignore_stop_signals() {
        warn!("cannot ignore SIGINT/SIGTERM: {e}");
    }
    // Never outlive a supervisor that was killed.
    let _ = nix::sys::prctl::set_pdeathsig(nix::sys::signal::Signal::SIGKILL);
}

/// Sleep up to `d`, waking early when a command arrives.
fn nap(d: Duration, cmd: &AtomicU8) {
    let end = Instant::now() + d;
    while Instant::now() < end && cmd.load(Ordering::SeqCst) == CMD_NONE {
        thread::sleep(Duration::from_millis(5).min(end.saturating_duration_since(Instant::now())));
    }
}

fn open_targets(targets: &[Target]) -> io::Result<Vec<File>> {
    // One description per distinct path: for POSIX locks, closing *any* descriptor of a file
    // drops all of this process's locks on it, so a path is opened exactly once.
    let mut paths: Vec<&Path> = Vec::new();
    let mut files = Vec::new();
    let mut index = Vec::new();
    for t in targets {
        let i = match paths.iter().position(|p| *p == t.path.as_path()) {
            Some(i) => i,
            None => {
                files.push(OpenOptions::new().read(true).write(true).open(&t.path)?);
                paths.push(&t.path);
                files.len() - 1
            }
        };
        index.push(i);
    }
    index
        .into_iter()
        .map(|i| files[i].try_clone())
        .collect::<io::Result<Vec<File>>>()
}

/// Body of the hidden `__holder` subcommand.
pub fn holder_main(params: &HelperParams) -> io::Result<()> {
    helper_setup();
    let cmd = watch_stdin();
    let mut out = io::stdout().lock();
    // `try_clone` shares the description, so POSIX/OFD/flock ownership is per path as wanted;
    // every clone stays open until we exit, so no close can drop a POSIX lock early.
    let files = open_targets(&params.targets)?;
    let mut held = take_locks(params, &files, &mut out)?;
    write_event(
        &mut out,
        &HolderEvent::Ready {
            pid: std::process::id() as i32,
        },
    )?;
    let interval = Duration::from_millis(params.interval_ms);
    let mut seq = 0u64;
    while cmd.load(Ordering::SeqCst) != CMD_STOP {
        seq += 1;
        let results = write_round(params, &files, &mut held, seq, &mut out)?;
        write_event(&mut out, &HolderEvent::Tick { seq, results })?;
        nap(interval, &cmd);
    }
    for ((t, f), h) in params.targets.iter().zip(&files).zip(&held) {
        if *h {
            let _ = lock::unlock(f, params.kind, t.range);
        }
    }
    write_event(&mut out, &HolderEvent::Stopped)?;
    Ok(())
}

/// The holder's first attempt at every lock, without waiting; reports each grant or refusal.
/// Returns which locks are held.
fn take_locks(
    params: &HelperParams,
    files: &[File],
    out: &mut impl Write,
) -> io::Result<Vec<bool>> {
    let mut held = vec![false; params.targets.len()];
    for (i, (t, f)) in params.targets.iter().zip(files).enumerate() {
        match lock::lock(f, params.kind, LockType::Write, t.range, false) {
            Ok(()) => {
                held[i] = true;
                write_event(
                    out,
                    &HolderEvent::Acquired {
                        lock: i as u32,
                        mono_ns: mono_ns(),
                    },
                )?;
            }
            Err(e) => write_event(
                out,
                &HolderEvent::AcquireFailed {
                    lock: i as u32,
                    errno: errno_name(e),
                },
            )?,
        }
    }
    Ok(held)
}

/// One holder round: retake any lock not held yet, then write a timestamp into every held
/// range and fsync it.
fn write_round(
    params: &HelperParams,
    files: &[File],
    held: &mut [bool],
    seq: u64,
    out: &mut impl Write,
) -> io::Result<Vec<IoResult>> {
    let mut results = Vec::new();
    for (i, (t, f)) in params.targets.iter().zip(files).enumerate() {
        if !held[i] {
            // Restarted holder whose lock was taken meanwhile: keep trying, never wait.
            if lock::lock(f, params.kind, LockType::Write, t.range, false).is_ok() {
                held[i] = true;
                write_event(
                    out,
                    &HolderEvent::Acquired {
                        lock: i as u32,
                        mono_ns: mono_ns(),
                    },
                )?;
            } else {
                continue;
            }
        }
        results.push(write_stamp(i, t, f, seq));
    }
    Ok(results)
}

/// Write "time, pid, lock, round" into lock `i`'s range (cut to the range's length) and fsync.
fn write_stamp(i: usize, t: &Target, f: &File, seq: u64) -> IoResult {
    let stamp = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    let mut line = format!(
        "{}.{:06} lock-torture holder pid {} lock {i} write {seq}\n",
        stamp.as_secs(),
        stamp.subsec_micros(),
        std::process::id()
    )
    .into_bytes();
    let room = if t.range.len > 0 {
        t.range.len as usize
    } else {
        line.len()
    };
    line.truncate(room);
    let t0 = Instant::now();
    let r = f
        .write_all_at(&line, t.range.start as u64)
        .and_then(|()| f.sync_data());
    let ms = t0.elapsed().as_secs_f64() * 1e3;
    IoResult {
        lock: i as u32,
        errno: r.err().map(|e| {
            e.raw_os_error().map_or_else(
                || format!("{:?}", e.kind()),
                |n| errno_name(nix::errno::Errno::from_raw(n)),
            )
        }),
        ms,
    }
}

/// Body of the hidden `__probe` subcommand.
pub fn probe_main(params: &HelperParams) -> io::Result<()> {
    helper_setup();
    let cmd = watch_stdin();
    let mut out = io::stdout().lock();
    // Our own open file descriptions: a different owner for POSIX, OFD and flock alike.
    let files = open_targets(&params.targets)?;
    let mode = if params.kind == LockKind::Flock && params.probe == ProbeMode::Getlk {
        ProbeMode::Setlk
    } else {
        params.probe
    };
    let interval = Duration::from_millis(params.interval_ms);
    let mut round = 0u64;
    loop {
        let c = cmd.load(Ordering::SeqCst);
        if c == CMD_STOP {
            return Ok(());
        }
        let final_round = c == CMD_FINAL;
        round += 1;
        let mut results = Vec::new();
        for (i, (t, f)) in params.targets.iter().zip(&files).enumerate() {
            let t0 = Instant::now();
            let checked_at = mono_ns();
            let Some((state, pid, errno)) = probe_one(mode, params.kind, t, f) else {
                return Ok(());
            };
            results.push(ProbeResult {
                lock: i as u32,
                state,
                pid,
                errno,
                ms: t0.elapsed().as_secs_f64() * 1e3,
                mono_ns: checked_at,
            });
        }
        write_event(
            &mut out,
            &ProbeEvent::Round {
                round,
                final_round,
                results,
            },
        )?;
        if final_round {
            return Ok(());
        }
        nap(interval, &cmd);
    }
}

/// One check of one target: its state, the owner's pid (F_GETLK on POSIX locks) and the errno
/// of a failed check. `None` for `ProbeMode::None`: there is nothing to check.
fn probe_one(
    mode: ProbeMode,
    kind: LockKind,
    t: &Target,
    f: &File,
) -> Option<(ProbeState, Option<i32>, Option<String>)> {
    Some(match mode {
        ProbeMode::Getlk => match lock::test(f, kind, LockType::Write, t.range) {
            Ok(None) => (ProbeState::Free, None, None),
            Ok(Some(c)) => (ProbeState::Held, Some(c.pid), None),
            Err(e) => (ProbeState::Error, None, Some(errno_name(e))),
        },
        ProbeMode::Setlk => match lock::lock(f, kind, LockType::Write, t.range, false) {
            Ok(()) => {
                let _ = lock::unlock(f, kind, t.range);
                (ProbeState::Granted, None, None)
            }
            Err(e) if is_conflict(e) => (ProbeState::Held, None, None),
            Err(e) => (ProbeState::Error, None, Some(errno_name(e))),
        },
        ProbeMode::None => return None,
    })
}
