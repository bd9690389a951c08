//! Failover mode: hold a set of locks while the server fails over, keep writing through them,
//! and report what survived.
//!
//! Three processes, so that each can be blocked or killed without blinding the others:
//! - the **supervisor** (the command the user ran) keeps time, handles SIGINT/SIGTERM, writes
//!   the status file and the report;
//! - the **holder** (`__holder`) takes the locks, then every interval writes a timestamp into
//!   each locked range and fsyncs it (the Longhorn writer loop
//!   `flock -x 7; while date | dd conv=fsync >&7; do sleep 1; done`, reference §5.5 item 8);
//! - the **probe** (`__probe`), another lock owner with its own open file descriptions, asks
//!   every interval whether a conflicting lock would be granted (`F_GETLK`/`F_OFD_GETLK`), or
//!   tries to take one (`--probe setlk`, the only way for flock).
//!
//! A lock counts as lost when the probe finds its range free or held by another process, or
//! when the holder dies. If the holder dies it is restarted (unless `--no-restart`) and retakes
//! the locks, so a run always ends with a clear picture: what was lost, when, and what is held.

use std::collections::BTreeSet;
use std::fs::{File, OpenOptions};
use std::io::{self, BufRead, BufReader, Write};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::mpsc::{self, RecvTimeoutError, Sender};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};
use thiserror::Error;
use tracing::{info, warn};

use crate::lock::{self, errno_name, is_conflict, LockKind, LockType, Range};
use crate::stats::ErrnoCounts;
use crate::sys;

/// One lock the holder keeps: a byte range of a file (the whole file for flock).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Target {
    pub path: PathBuf,
    pub range: Range,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum ProbeMode {
    /// Ask with F_GETLK / F_OFD_GETLK whether a conflicting write lock would be granted.
    Getlk,
    /// Try to take a conflicting write lock without waiting (and release it at once if granted).
    Setlk,
    /// No probe: only the holder's own view (I/O errors, death).
    None,
}

/// Parameters handed to the holder and probe helpers (as JSON on their command line).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct HelperParams {
    pub kind: LockKind,
    pub targets: Vec<Target>,
    pub interval_ms: u64,
    pub probe: ProbeMode,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct IoResult {
    pub lock: u32,
    /// None: the write and fsync succeeded.
    pub errno: Option<String>,
    /// How long write + fsync took.
    pub ms: f64,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "ev", rename_all = "snake_case")]
pub enum HolderEvent {
    Acquired {
        lock: u32,
        /// CLOCK_MONOTONIC (system-wide) when the lock was granted.
        #[serde(default)]
        mono_ns: u64,
    },
    AcquireFailed {
        lock: u32,
        errno: String,
    },
    Ready {
        pid: i32,
    },
    Tick {
        seq: u64,
        results: Vec<IoResult>,
    },
    Stopped,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ProbeState {
    /// A conflicting lock would not be granted (someone holds the range).
    Held,
    /// F_GETLK: a conflicting lock *would* be granted.
    Free,
    /// setlk: a conflicting lock *was* granted (and released at once).
    Granted,
    Error,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ProbeResult {
    pub lock: u32,
    pub state: ProbeState,
    /// l_pid of the holder as F_GETLK reports it (POSIX: a pid; OFD: -1).
    pub pid: Option<i32>,
    pub errno: Option<String>,
    pub ms: f64,
    /// CLOCK_MONOTONIC (system-wide) when this check started.
    #[serde(default)]
    pub mono_ns: u64,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "ev", rename_all = "snake_case")]
pub enum ProbeEvent {
    Round {
        round: u64,
        #[serde(rename = "final")]
        final_round: bool,
        results: Vec<ProbeResult>,
    },
}

/// CLOCK_MONOTONIC in nanoseconds: one clock for every process on the host, so the supervisor
/// can order a probe's check against a holder's grant whatever order their messages arrive in.
pub fn mono_ns() -> u64 {
    nix::time::clock_gettime(nix::time::ClockId::CLOCK_MONOTONIC)
        .map(|t| {
            (t.tv_sec() as u64)
                .saturating_mul(1_000_000_000)
                .saturating_add(t.tv_nsec() as u64)
        })
        .unwrap_or(0)
}

fn write_event<T: Serialize>(out: &mut impl Write, ev: &T) -> io::Result<()> {
    let mut line = serde_json::to_vec(ev).map_err(io::Error::other)?;
    line.push(b'\n');
    out.write_all(&line)?;
    out.flush()
}

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
    let mut held = vec![false; params.targets.len()];
    for (i, (t, f)) in params.targets.iter().zip(&files).enumerate() {
        match lock::lock(f, params.kind, LockType::Write, t.range, false) {
            Ok(()) => {
                held[i] = true;
                write_event(
                    &mut out,
                    &HolderEvent::Acquired {
                        lock: i as u32,
                        mono_ns: mono_ns(),
                    },
                )?;
            }
            Err(e) => write_event(
                &mut out,
                &HolderEvent::AcquireFailed {
                    lock: i as u32,
                    errno: errno_name(e),
                },
            )?,
        }
    }
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
        let mut results = Vec::new();
        for (i, (t, f)) in params.targets.iter().zip(&files).enumerate() {
            if !held[i] {
                // Restarted holder whose lock was taken meanwhile: keep trying, never wait.
                if lock::lock(f, params.kind, LockType::Write, t.range, false).is_ok() {
                    held[i] = true;
                    write_event(
                        &mut out,
                        &HolderEvent::Acquired {
                            lock: i as u32,
                            mono_ns: mono_ns(),
                        },
                    )?;
                } else {
                    continue;
                }
            }
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
            results.push(IoResult {
                lock: i as u32,
                errno: r.err().map(|e| {
                    e.raw_os_error().map_or_else(
                        || format!("{:?}", e.kind()),
                        |n| errno_name(nix::errno::Errno::from_raw(n)),
                    )
                }),
                ms,
            });
        }
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
            let (state, pid, errno) = match mode {
                ProbeMode::Getlk => match lock::test(f, params.kind, LockType::Write, t.range) {
                    Ok(None) => (ProbeState::Free, None, None),
                    Ok(Some(c)) => (ProbeState::Held, Some(c.pid), None),
                    Err(e) => (ProbeState::Error, None, Some(errno_name(e))),
                },
                ProbeMode::Setlk => {
                    match lock::lock(f, params.kind, LockType::Write, t.range, false) {
                        Ok(()) => {
                            let _ = lock::unlock(f, params.kind, t.range);
                            (ProbeState::Granted, None, None)
                        }
                        Err(e) if is_conflict(e) => (ProbeState::Held, None, None),
                        Err(e) => (ProbeState::Error, None, Some(errno_name(e))),
                    }
                }
                ProbeMode::None => return Ok(()),
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

/// What the user asked for.
#[derive(Clone, Debug)]
pub struct FailoverOptions {
    pub dir: PathBuf,
    pub file: String,
    pub kind: LockKind,
    pub locks: u32,
    pub lock_len: u64,
    /// None: until SIGINT/SIGTERM.
    pub duration: Option<Duration>,
    pub interval: Duration,
    pub probe_interval: Duration,
    pub probe: ProbeMode,
    pub restart: bool,
    pub status_file: Option<PathBuf>,
    /// Run only the probe against locks another process (usually on another client) holds.
    pub probe_only: bool,
}

#[derive(Debug, Error)]
pub enum FailoverError {
    #[error("invalid options: {0}")]
    Options(String),
    #[error("cannot create {path}: {source} (is the directory writable?)")]
    Prepare { path: PathBuf, source: io::Error },
    #[error("cannot start the {what} helper: {source}")]
    Spawn {
        what: &'static str,
        source: io::Error,
    },
    #[error("the holder could not take lock {lock} on {path} {range}: {errno} (another process holds it? free it or use another --file)")]
    Acquire {
        lock: u32,
        path: PathBuf,
        range: Range,
        errno: String,
    },
    #[error("the holder did not report ready within {0:?}")]
    NotReady(Duration),
    #[error("cannot install the SIGINT/SIGTERM handlers: {0}")]
    Signals(nix::errno::Errno),
}

/// One held → lost transition.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct LossEvent {
    pub lock: u32,
    pub at_s: f64,
    pub reason: String,
}

/// The failover report (`--json` prints exactly this).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct FailoverReport {
    pub mode: String,
    /// "holder" (holder and probe here) or "probe-only" (the locks are held elsewhere).
    pub role: String,
    pub path: String,
    pub fs_type: String,
    pub kind: LockKind,
    pub probe: ProbeMode,
    pub locks: u32,
    pub duration_s: f64,
    pub stopped_by: String,
    /// Locks held by the holder at the end, confirmed by the final probe where there is one.
    pub locks_held_at_end: u32,
    /// Held → lost transitions (a lock lost twice counts twice).
    pub locks_lost: u32,
    pub loss_events: Vec<LossEvent>,
    pub holder_restarts: u32,
    pub holder_exits: Vec<String>,
    pub writes_ok: u64,
    pub write_errors: ErrnoCounts,
    pub enolck: u64,
    pub eio: u64,
    /// The longest single write + fsync.
    pub longest_io_call_ms: f64,
    /// The longest time between two rounds in which every write succeeded (includes the
    /// interval itself, and the time a dead holder took to come back).
    pub longest_io_gap_ms: f64,
    /// setlk probe: times another owner was granted a conflicting lock.
    pub conflicting_grants: u64,
    /// getlk probe: times a conflicting lock would have been granted on a held range.
    pub free_observations: u64,
    /// getlk probe (POSIX): times the range was held by a process other than the holder.
    pub foreign_holder_observations: u64,
    pub probe_rounds: u64,
    pub probe_errors: ErrnoCounts,
    pub probe_longest_ms: f64,
    pub verdict: String,
}

impl FailoverReport {
    pub fn passed(&self) -> bool {
        self.verdict == "pass"
    }

    fn decide(&mut self) {
        let ok = self.locks_lost == 0
            && self.locks_held_at_end == self.locks
            && self.conflicting_grants == 0
            && self.free_observations == 0
            && self.foreign_holder_observations == 0
            && self.write_errors.is_empty();
        self.verdict = if ok { "pass" } else { "fail" }.into();
    }

    pub fn render_text(&self) -> String {
        use std::fmt::Write as _;
        let mut s = String::new();
        let _ = writeln!(
            s,
            "lock-torture failover ({}): {} {} locks on {} ({}), {:.1} s, stopped by {}",
            self.role,
            self.locks,
            self.kind,
            self.path,
            self.fs_type,
            self.duration_s,
            self.stopped_by
        );
        let _ = writeln!(
            s,
            "  locks held at end      {}/{}",
            self.locks_held_at_end, self.locks
        );
        let _ = writeln!(s, "  locks lost             {}", self.locks_lost);
        for e in &self.loss_events {
            let _ = writeln!(s, "    - lock {} at {:.2} s: {}", e.lock, e.at_s, e.reason);
        }
        let _ = writeln!(s, "  holder restarts        {}", self.holder_restarts);
        for e in &self.holder_exits {
            let _ = writeln!(s, "    - {e}");
        }
        let _ = writeln!(s, "  writes ok              {}", self.writes_ok);
        let _ = writeln!(
            s,
            "  write errors           {} (ENOLCK {}, EIO {})",
            self.write_errors, self.enolck, self.eio
        );
        let _ = writeln!(
            s,
            "  longest write+fsync    {:.1} ms",
            self.longest_io_call_ms
        );
        let _ = writeln!(
            s,
            "  longest I/O gap        {:.1} ms",
            self.longest_io_gap_ms
        );
        let _ = writeln!(
            s,
            "  probe ({:?})           {} rounds, errors {}, slowest {:.1} ms",
            self.probe, self.probe_rounds, self.probe_errors, self.probe_longest_ms
        );
        let _ = writeln!(s, "  conflicting grants     {}", self.conflicting_grants);
        let _ = writeln!(s, "  found free while held  {}", self.free_observations);
        let _ = writeln!(
            s,
            "  held by another pid    {}",
            self.foreign_holder_observations
        );
        let _ = writeln!(
            s,
            "verdict: {}",
            if self.passed() {
                "PASS (every lock held throughout and exclusive, no I/O error)"
            } else {
                "FAIL (see above)"
            }
        );
        s
    }
}

/// The status file, rewritten about once per interval while running (for the failover lab).
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Status {
    pub pid: u32,
    pub elapsed_s: f64,
    pub holder_pid: Option<u32>,
    pub holder_generation: u32,
    pub probe_pid: Option<u32>,
    /// Per lock: "acquiring", "held" or "lost".
    pub locks: Vec<String>,
    pub locks_lost: u32,
    pub ready: bool,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum LockState {
    Acquiring,
    Held,
    Lost,
}

#[derive(Clone, Copy)]
enum Source {
    Holder(u32),
    Probe,
}

struct Msg {
    source: Source,
    /// None: end of the helper's output (it exited).
    line: Option<String>,
    at: Instant,
}

struct Helper {
    child: Child,
    stdin: Option<ChildStdin>,
}

impl Helper {
    fn spawn(
        what: &'static str,
        sub: &str,
        params: &HelperParams,
        source: Source,
        tx: Sender<Msg>,
    ) -> Result<Helper, FailoverError> {
        let exe =
            std::env::current_exe().map_err(|source| FailoverError::Spawn { what, source })?;
        let json =
            serde_json::to_string(params).map_err(|e| FailoverError::Options(e.to_string()))?;
        let mut child = Command::new(exe)
            .arg(sub)
            .arg("--params")
            .arg(json)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .map_err(|source| FailoverError::Spawn { what, source })?;
        let stdin = child.stdin.take();
        let stdout = child.stdout.take();
        thread::spawn(move || {
            if let Some(out) = stdout {
                for line in BufReader::new(out).lines() {
                    let Ok(line) = line else { break };
                    let src = source;
                    if tx
                        .send(Msg {
                            source: src,
                            line: Some(line),
                            at: Instant::now(),
                        })
                        .is_err()
                    {
                        return;
                    }
                }
            }
            let _ = tx.send(Msg {
                source,
                line: None,
                at: Instant::now(),
            });
        });
        Ok(Helper { child, stdin })
    }

    fn pid(&self) -> u32 {
        self.child.id()
    }

    fn tell(&mut self, cmd: &str) {
        if let Some(s) = self.stdin.as_mut() {
            let _ = writeln!(s, "{cmd}").and_then(|()| s.flush());
        }
    }

    /// Close stdin (= stop), wait up to `t`, then SIGKILL. Returns how it ended.
    fn finish(mut self, t: Duration) -> String {
        self.stdin = None;
        let end = Instant::now() + t;
        loop {
            match self.child.try_wait() {
                Ok(Some(st)) => return st.to_string(),
                Ok(None) if Instant::now() < end => thread::sleep(Duration::from_millis(5)),
                _ => {
                    let _ = self.child.kill();
                    let _ = self.child.wait();
                    return format!("killed after not stopping within {t:?}");
                }
            }
        }
    }
}

/// Build the lock targets: N ranges of one file (POSIX/OFD) or N files (flock), creating files.
pub fn prepare_targets(opts: &FailoverOptions) -> Result<Vec<Target>, FailoverError> {
    let mut targets = Vec::new();
    for i in 0..u64::from(opts.locks) {
        let (path, range) = if opts.kind == LockKind::Flock {
            (opts.dir.join(format!("{}.{i}", opts.file)), Range::WHOLE)
        } else {
            (
                opts.dir.join(&opts.file),
                Range::new((i * opts.lock_len) as i64, opts.lock_len as i64),
            )
        };
        targets.push(Target { path, range });
    }
    for t in &targets {
        let f = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&t.path)
            .map_err(|source| FailoverError::Prepare {
                path: t.path.clone(),
                source,
            })?;
        let want = if t.range.len > 0 {
            (t.range.start + t.range.len) as u64
        } else {
            4096
        };
        let have = f.metadata().map(|m| m.len()).unwrap_or(0);
        if have < want {
            f.set_len(want).map_err(|source| FailoverError::Prepare {
                path: t.path.clone(),
                source,
            })?;
        }
    }
    Ok(targets)
}

fn validate(opts: &FailoverOptions) -> Result<(), FailoverError> {
    crate::protocol::check_name(&opts.file)
        .map_err(|e| FailoverError::Options(format!("--file: {e}")))?;
    if !(1..=4096).contains(&opts.locks) {
        return Err(FailoverError::Options("--locks must be 1..=4096".into()));
    }
    if !(1..=1 << 30).contains(&opts.lock_len) {
        return Err(FailoverError::Options(
            "--lock-len must be 1..=1073741824".into(),
        ));
    }
    if opts.probe_only && opts.probe == ProbeMode::None {
        return Err(FailoverError::Options(
            "--probe-only needs --probe getlk or setlk".into(),
        ));
    }
    if opts.interval < Duration::from_millis(10) || opts.probe_interval < Duration::from_millis(10)
    {
        return Err(FailoverError::Options(
            "--interval and --probe-interval must be at least 10ms".into(),
        ));
    }
    Ok(())
}

/// Run failover mode until the duration ends or SIGINT/SIGTERM arrives.
pub fn run(opts: &FailoverOptions, fs_type: &str) -> Result<FailoverReport, FailoverError> {
    validate(opts)?;
    let targets = prepare_targets(opts)?;
    sys::install_stop_handlers().map_err(FailoverError::Signals)?;
    let n = targets.len();
    let params = HelperParams {
        kind: opts.kind,
        targets: targets.clone(),
        interval_ms: opts.interval.as_millis() as u64,
        probe: opts.probe,
    };
    let probe_params = HelperParams {
        interval_ms: opts.probe_interval.as_millis() as u64,
        ..params.clone()
    };
    let (tx, rx) = mpsc::channel::<Msg>();
    let start = Instant::now();
    let mut generation = 1u32;
    let mut holder: Option<Helper> = None;
    let mut holder_pids: BTreeSet<i64> = BTreeSet::new();
    let mut state = vec![LockState::Acquiring; n];
    // When each lock was last granted: probe checks made before that say nothing about it.
    let mut acquired_at = vec![0u64; n];
    if opts.probe_only {
        // The locks are held elsewhere (another client of the same export): every range is
        // presumed held, and whatever the probe can take is reported.
        state = vec![LockState::Held; n];
    } else {
        holder = Some(Helper::spawn(
            "holder",
            "__holder",
            &params,
            Source::Holder(generation),
            tx.clone(),
        )?);
        holder_pids.insert(i64::from(holder.as_ref().map_or(0, Helper::pid)));

        // Wait for the first holder to take every lock: anything else is a setup error.
        let ready_timeout = Duration::from_secs(30);
        loop {
            let msg = match rx.recv_timeout(ready_timeout) {
                Ok(m) => m,
                Err(_) => {
                    if let Some(h) = holder.take() {
                        h.finish(Duration::ZERO);
                    }
                    return Err(FailoverError::NotReady(ready_timeout));
                }
            };
            let Some(line) = msg.line else {
                let how = holder
                    .take()
                    .map(|h| h.finish(Duration::from_secs(1)))
                    .unwrap_or_default();
                return Err(FailoverError::Spawn {
                    what: "holder",
                    source: io::Error::other(format!("exited before taking its locks ({how})")),
                });
            };
            match serde_json::from_str::<HolderEvent>(&line) {
                Ok(HolderEvent::Acquired { lock, mono_ns }) => {
                    if let Some(s) = state.get_mut(lock as usize) {
                        *s = LockState::Held;
                        acquired_at[lock as usize] = mono_ns;
                    }
                }
                Ok(HolderEvent::AcquireFailed { lock, errno }) => {
                    if let Some(h) = holder.take() {
                        h.finish(Duration::from_secs(5));
                    }
                    let t = &targets[lock as usize];
                    return Err(FailoverError::Acquire {
                        lock,
                        path: t.path.clone(),
                        range: t.range,
                        errno,
                    });
                }
                Ok(HolderEvent::Ready { .. }) => break,
                Ok(_) => {}
                Err(e) => warn!("holder said something unreadable: {e}: {line}"),
            }
        }
        info!(
            "holder pid {} holds {n} {} locks",
            holder.as_ref().map_or(0, Helper::pid),
            opts.kind
        );
    }

    let mut probe = if opts.probe == ProbeMode::None {
        None
    } else {
        Some(Helper::spawn(
            "probe",
            "__probe",
            &probe_params,
            Source::Probe,
            tx.clone(),
        )?)
    };

    let mut rep = FailoverReport {
        mode: "failover".into(),
        role: if opts.probe_only {
            "probe-only"
        } else {
            "holder"
        }
        .into(),
        path: targets[0].path.display().to_string(),
        fs_type: fs_type.into(),
        kind: opts.kind,
        probe: if opts.kind == LockKind::Flock && opts.probe == ProbeMode::Getlk {
            ProbeMode::Setlk
        } else {
            opts.probe
        },
        locks: n as u32,
        duration_s: 0.0,
        stopped_by: String::new(),
        locks_held_at_end: 0,
        locks_lost: 0,
        loss_events: Vec::new(),
        holder_restarts: 0,
        holder_exits: Vec::new(),
        writes_ok: 0,
        write_errors: ErrnoCounts::default(),
        enolck: 0,
        eio: 0,
        longest_io_call_ms: 0.0,
        longest_io_gap_ms: 0.0,
        conflicting_grants: 0,
        free_observations: 0,
        foreign_holder_observations: 0,
        probe_rounds: 0,
        probe_errors: ErrnoCounts::default(),
        probe_longest_ms: 0.0,
        verdict: String::new(),
    };
    let mut last_ok_round = Instant::now();
    let mut last_status = Instant::now() - opts.interval;
    let deadline = opts.duration.map(|d| start + d);
    let lose = |rep: &mut FailoverReport, state: &mut [LockState], lock: usize, reason: String| {
        if state[lock] == LockState::Held {
            state[lock] = LockState::Lost;
            rep.locks_lost += 1;
            warn!("lock {lock} lost: {reason}");
            if rep.loss_events.len() < 100 {
                rep.loss_events.push(LossEvent {
                    lock: lock as u32,
                    at_s: start.elapsed().as_secs_f64(),
                    reason,
                });
            }
        }
    };

    let stopped_by = loop {
        if sys::stop_requested() {
            break "signal";
        }
        if deadline.is_some_and(|d| Instant::now() >= d) {
            break "duration";
        }
        if let Some(path) = &opts.status_file {
            if last_status.elapsed() >= opts.interval.min(Duration::from_millis(500)) {
                last_status = Instant::now();
                write_status(
                    path,
                    start,
                    holder.as_ref(),
                    generation,
                    probe.as_ref(),
                    &state,
                    rep.locks_lost,
                );
            }
        }
        let msg = match rx.recv_timeout(Duration::from_millis(50)) {
            Ok(m) => m,
            Err(RecvTimeoutError::Timeout) => continue,
            Err(RecvTimeoutError::Disconnected) => break "error",
        };
        let current_pid = holder.as_ref().map(|h| i64::from(h.pid()));
        match (msg.source, msg.line) {
            (Source::Holder(g), Some(line)) if g == generation => {
                match serde_json::from_str::<HolderEvent>(&line) {
                    Ok(HolderEvent::Acquired { lock, mono_ns }) => {
                        if let Some(s) = state.get_mut(lock as usize) {
                            if *s == LockState::Lost {
                                info!("lock {lock} taken again by holder generation {g}");
                            }
                            *s = LockState::Held;
                            acquired_at[lock as usize] = mono_ns;
                        }
                    }
                    Ok(HolderEvent::Tick { results, .. }) => {
                        let mut all_ok = !results.is_empty();
                        for r in &results {
                            rep.longest_io_call_ms = rep.longest_io_call_ms.max(r.ms);
                            match &r.errno {
                                None => rep.writes_ok += 1,
                                Some(e) => {
                                    all_ok = false;
                                    rep.write_errors.add(e, 1);
                                }
                            }
                        }
                        if all_ok && results.len() == n {
                            let gap = msg.at.duration_since(last_ok_round).as_secs_f64() * 1e3;
                            rep.longest_io_gap_ms = rep.longest_io_gap_ms.max(gap);
                            last_ok_round = msg.at;
                        }
                    }
                    Ok(_) => {}
                    Err(e) => warn!("holder said something unreadable: {e}: {line}"),
                }
            }
            (Source::Holder(g), None) if g == generation => {
                // The holder died: every lock it held is gone with it.
                let how = holder
                    .take()
                    .map(|h| h.finish(Duration::from_secs(1)))
                    .unwrap_or_default();
                let at = start.elapsed().as_secs_f64();
                rep.holder_exits
                    .push(format!("holder generation {g} exited at {at:.2} s: {how}"));
                for i in 0..n {
                    lose(
                        &mut rep,
                        &mut state,
                        i,
                        format!("holder process exited ({how})"),
                    );
                    state[i] = LockState::Lost;
                }
                if opts.restart {
                    generation += 1;
                    rep.holder_restarts += 1;
                    let h = Helper::spawn(
                        "holder",
                        "__holder",
                        &params,
                        Source::Holder(generation),
                        tx.clone(),
                    )?;
                    holder_pids.insert(i64::from(h.pid()));
                    info!("restarted the holder as pid {}", h.pid());
                    holder = Some(h);
                }
            }
            (Source::Holder(_), _) => {} // an older generation's last words
            (Source::Probe, Some(line)) => match serde_json::from_str::<ProbeEvent>(&line) {
                Ok(ProbeEvent::Round { results, .. }) => {
                    rep.probe_rounds += 1;
                    judge_probe(
                        &mut rep,
                        &mut state,
                        &results,
                        &Holders {
                            kind: opts.kind,
                            current_pid,
                            pids: &holder_pids,
                            acquired_at: &acquired_at,
                        },
                        &lose,
                    );
                }
                Err(e) => warn!("probe said something unreadable: {e}: {line}"),
            },
            (Source::Probe, None) => {
                let how = probe
                    .take()
                    .map(|p| p.finish(Duration::from_secs(1)))
                    .unwrap_or_default();
                warn!("the probe exited early ({how}); continuing without it");
            }
        }
    };

    // Final check while the holder still holds everything.
    let mut confirmed: Option<Vec<bool>> = None;
    if let Some(mut p) = probe.take() {
        p.tell("final");
        let wait = opts.probe_interval + Duration::from_secs(10);
        let end = Instant::now() + wait;
        while confirmed.is_none() && Instant::now() < end {
            match rx.recv_timeout(Duration::from_millis(50)) {
                Ok(Msg {
                    source: Source::Probe,
                    line: Some(line),
                    ..
                }) => {
                    if let Ok(ProbeEvent::Round {
                        results,
                        final_round,
                        ..
                    }) = serde_json::from_str::<ProbeEvent>(&line)
                    {
                        rep.probe_rounds += 1;
                        let current_pid = holder.as_ref().map(|h| i64::from(h.pid()));
                        judge_probe(
                            &mut rep,
                            &mut state,
                            &results,
                            &Holders {
                                kind: opts.kind,
                                current_pid,
                                pids: &holder_pids,
                                acquired_at: &acquired_at,
                            },
                            &lose,
                        );
                        if final_round {
                            let mut v = vec![false; n];
                            for r in &results {
                                if let Some(slot) = v.get_mut(r.lock as usize) {
                                    *slot = r.state == ProbeState::Held;
                                }
                            }
                            confirmed = Some(v);
                        }
                    }
                }
                Ok(Msg {
                    source: Source::Probe,
                    line: None,
                    ..
                }) => break,
                Ok(_) | Err(RecvTimeoutError::Timeout) => {}
                Err(RecvTimeoutError::Disconnected) => break,
            }
        }
        let how = p.finish(Duration::from_secs(2));
        if confirmed.is_none() {
            warn!("the final probe round did not come back ({how})");
        }
    }
    rep.longest_io_gap_ms = rep
        .longest_io_gap_ms
        .max(last_ok_round.elapsed().as_secs_f64() * 1e3);
    rep.locks_held_at_end = state
        .iter()
        .enumerate()
        .filter(|(i, s)| {
            **s == LockState::Held
                && match &confirmed {
                    None => true,
                    Some(c) => c[*i],
                }
        })
        .count() as u32;
    if let Some(mut h) = holder.take() {
        h.tell("stop");
        let how = h.finish(Duration::from_secs(10));
        info!("holder stopped: {how}");
    }
    rep.duration_s = start.elapsed().as_secs_f64();
    rep.stopped_by = match stopped_by {
        "signal" => "SIGINT/SIGTERM".into(),
        other => other.into(),
    };
    rep.enolck = rep.write_errors.get("ENOLCK");
    rep.eio = rep.write_errors.get("EIO");
    rep.decide();
    if let Some(path) = &opts.status_file {
        write_status(path, start, None, generation, None, &state, rep.locks_lost);
    }
    Ok(rep)
}

type LoseFn<'a> = dyn Fn(&mut FailoverReport, &mut [LockState], usize, String) + 'a;

/// What the supervisor knows about the holder, to judge probe results against.
struct Holders<'a> {
    kind: LockKind,
    /// The live holder's pid, if any.
    current_pid: Option<i64>,
    /// Every holder pid so far (an earlier holder's lock may still be reported in flight).
    pids: &'a BTreeSet<i64>,
    /// When each lock was last granted (CLOCK_MONOTONIC ns).
    acquired_at: &'a [u64],
}

fn judge_probe(
    rep: &mut FailoverReport,
    state: &mut [LockState],
    results: &[ProbeResult],
    h: &Holders<'_>,
    lose: &LoseFn<'_>,
) {
    let (kind, current_pid, holder_pids, acquired_at) =
        (h.kind, h.current_pid, h.pids, h.acquired_at);
    for r in results {
        let i = r.lock as usize;
        if i >= state.len() {
            continue;
        }
        if r.mono_ns < acquired_at.get(i).copied().unwrap_or(0) {
            // Checked before the current holder was granted the lock (e.g. while a restarted
            // holder was on its way): stale.
            continue;
        }
        rep.probe_longest_ms = rep.probe_longest_ms.max(r.ms);
        let held = state[i] == LockState::Held;
        match r.state {
            ProbeState::Held => {
                // F_GETLK names the owner of a POSIX lock. A pid that is not the current
                // holder's (and not an earlier holder's, whose last lock may still be in
                // flight) means somebody else has the range.
                if let (LockKind::Posix, Some(pid)) = (kind, r.pid) {
                    let pid = i64::from(pid);
                    let known = current_pid.is_some() || !holder_pids.is_empty();
                    if held
                        && known
                        && pid > 0
                        && Some(pid) != current_pid
                        && !holder_pids.contains(&pid)
                    {
                        rep.foreign_holder_observations += 1;
                        lose(
                            rep,
                            state,
                            i,
                            format!("probe found the range held by pid {pid}, not by the holder"),
                        );
                    }
                }
            }
            ProbeState::Free if held => {
                rep.free_observations += 1;
                lose(
                    rep,
                    state,
                    i,
                    "probe found the range free: a conflicting lock would have been granted".into(),
                );
            }
            ProbeState::Granted => {
                if held {
                    lose(rep, state, i, "probe was granted a conflicting lock".into());
                }
                rep.conflicting_grants += 1;
            }
            ProbeState::Error => rep
                .probe_errors
                .add(r.errno.as_deref().unwrap_or("unknown"), 1),
            ProbeState::Free => {}
        }
    }
}

fn write_status(
    path: &Path,
    start: Instant,
    holder: Option<&Helper>,
    generation: u32,
    probe: Option<&Helper>,
    state: &[LockState],
    lost: u32,
) {
    let st = Status {
        pid: std::process::id(),
        elapsed_s: start.elapsed().as_secs_f64(),
        holder_pid: holder.map(Helper::pid),
        holder_generation: generation,
        probe_pid: probe.map(Helper::pid),
        locks: state
            .iter()
            .map(|s| match s {
                LockState::Acquiring => "acquiring",
                LockState::Held => "held",
                LockState::Lost => "lost",
            })
            .map(String::from)
            .collect(),
        locks_lost: lost,
        ready: holder.is_some(),
    };
    let tmp = path.with_extension("tmp");
    let r = serde_json::to_vec_pretty(&st)
        .map_err(io::Error::other)
        .and_then(|v| std::fs::write(&tmp, v))
        .and_then(|()| std::fs::rename(&tmp, path));
    if let Err(e) = r {
        warn!("cannot write the status file {}: {e}", path.display());
    }
}

/// Read a status file (for tests and for the lab's scripts).
pub fn read_status(path: &Path) -> Option<Status> {
    std::fs::read(path)
        .ok()
        .and_then(|b| serde_json::from_slice(&b).ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn report() -> FailoverReport {
        FailoverReport {
            mode: "failover".into(),
            role: "holder".into(),
            path: "/x".into(),
            fs_type: "nfs".into(),
            kind: LockKind::Posix,
            probe: ProbeMode::Getlk,
            locks: 2,
            duration_s: 1.0,
            stopped_by: "duration".into(),
            locks_held_at_end: 2,
            locks_lost: 0,
            loss_events: vec![],
            holder_restarts: 0,
            holder_exits: vec![],
            writes_ok: 10,
            write_errors: ErrnoCounts::default(),
            enolck: 0,
            eio: 0,
            longest_io_call_ms: 1.0,
            longest_io_gap_ms: 1000.0,
            conflicting_grants: 0,
            free_observations: 0,
            foreign_holder_observations: 0,
            probe_rounds: 3,
            probe_errors: ErrnoCounts::default(),
            probe_longest_ms: 0.1,
            verdict: String::new(),
        }
    }

    fn lose_fn(rep: &mut FailoverReport, state: &mut [LockState], lock: usize, reason: String) {
        if state[lock] == LockState::Held {
            state[lock] = LockState::Lost;
            rep.locks_lost += 1;
            rep.loss_events.push(LossEvent {
                lock: lock as u32,
                at_s: 0.0,
                reason,
            });
        }
    }

    fn pr(lock: u32, state: ProbeState, pid: Option<i32>) -> ProbeResult {
        ProbeResult {
            lock,
            state,
            pid,
            errno: None,
            ms: 0.5,
            mono_ns: 1_000,
        }
    }

    #[test]
    fn verdict_needs_everything_clean() {
        let mut r = report();
        r.decide();
        assert!(r.passed());
        assert!(r.render_text().contains("verdict: PASS"));
        for spoil in [
            |r: &mut FailoverReport| r.locks_lost = 1,
            |r: &mut FailoverReport| r.locks_held_at_end = 1,
            |r: &mut FailoverReport| r.conflicting_grants = 1,
            |r: &mut FailoverReport| r.free_observations = 1,
            |r: &mut FailoverReport| r.foreign_holder_observations = 1,
            |r: &mut FailoverReport| r.write_errors.add("EIO", 1),
        ] {
            let mut r = report();
            spoil(&mut r);
            r.decide();
            assert!(!r.passed(), "{r:?}");
        }
    }

    #[test]
    fn probe_judgement() {
        let pids: BTreeSet<i64> = [100, 200].into_iter().collect();
        let mut rep = report();
        let mut state = vec![LockState::Held; 3];
        let results = [
            pr(0, ProbeState::Held, Some(200)), // the current holder: fine
            pr(1, ProbeState::Held, Some(100)), // an earlier holder's stale lock: not a new loss
            pr(2, ProbeState::Free, None),      // lost
        ];
        judge_probe(
            &mut rep,
            &mut state,
            &results,
            &Holders {
                kind: LockKind::Posix,
                current_pid: Some(200),
                pids: &pids,
                acquired_at: &[],
            },
            &lose_fn,
        );
        assert_eq!(
            state,
            vec![LockState::Held, LockState::Held, LockState::Lost]
        );
        assert_eq!((rep.locks_lost, rep.free_observations), (1, 1));
        // Seeing it free again does not count a second loss, but counts the observation only
        // while it was believed held.
        judge_probe(
            &mut rep,
            &mut state,
            &[pr(2, ProbeState::Free, None)],
            &Holders {
                kind: LockKind::Posix,
                current_pid: Some(200),
                pids: &pids,
                acquired_at: &[],
            },
            &lose_fn,
        );
        assert_eq!((rep.locks_lost, rep.free_observations), (1, 1));
        // Another pid holds lock 0.
        judge_probe(
            &mut rep,
            &mut state,
            &[pr(0, ProbeState::Held, Some(999))],
            &Holders {
                kind: LockKind::Posix,
                current_pid: Some(200),
                pids: &pids,
                acquired_at: &[],
            },
            &lose_fn,
        );
        assert_eq!((rep.locks_lost, rep.foreign_holder_observations), (2, 1));
        // OFD locks report l_pid -1: never "foreign".
        let mut state = vec![LockState::Held];
        judge_probe(
            &mut rep,
            &mut state,
            &[pr(0, ProbeState::Held, Some(-1))],
            &Holders {
                kind: LockKind::Ofd,
                current_pid: Some(200),
                pids: &pids,
                acquired_at: &[],
            },
            &lose_fn,
        );
        assert_eq!(state, vec![LockState::Held]);
        // setlk probe granted: a conflicting grant and a loss.
        judge_probe(
            &mut rep,
            &mut state,
            &[pr(0, ProbeState::Granted, None)],
            &Holders {
                kind: LockKind::Flock,
                current_pid: Some(200),
                pids: &pids,
                acquired_at: &[],
            },
            &lose_fn,
        );
        assert_eq!((rep.conflicting_grants, state[0]), (1, LockState::Lost));
        // Out-of-range lock numbers are ignored, errors counted.
        let mut e = pr(0, ProbeState::Error, None);
        e.errno = Some("ENOLCK".into());
        judge_probe(
            &mut rep,
            &mut state,
            &[pr(9, ProbeState::Free, None), e],
            &Holders {
                kind: LockKind::Posix,
                current_pid: None,
                pids: &pids,
                acquired_at: &[],
            },
            &lose_fn,
        );
        assert_eq!(rep.probe_errors.get("ENOLCK"), 1);
    }

    #[test]
    fn probe_checks_older_than_the_grant_are_stale() {
        let pids = BTreeSet::new();
        let mut rep = report();
        let mut state = vec![LockState::Held];
        // Granted at 2000 ns; a "free" seen at 1000 ns predates it.
        judge_probe(
            &mut rep,
            &mut state,
            &[pr(0, ProbeState::Free, None)],
            &Holders {
                kind: LockKind::Posix,
                current_pid: Some(1),
                pids: &pids,
                acquired_at: &[2_000],
            },
            &lose_fn,
        );
        assert_eq!((rep.locks_lost, state[0]), (0, LockState::Held));
        let mut late = pr(0, ProbeState::Free, None);
        late.mono_ns = 3_000;
        judge_probe(
            &mut rep,
            &mut state,
            &[late],
            &Holders {
                kind: LockKind::Posix,
                current_pid: Some(1),
                pids: &pids,
                acquired_at: &[2_000],
            },
            &lose_fn,
        );
        assert_eq!((rep.locks_lost, state[0]), (1, LockState::Lost));
        assert!(mono_ns() > 0);
    }

    #[test]
    fn events_round_trip() {
        let ev = HolderEvent::Tick {
            seq: 3,
            results: vec![IoResult {
                lock: 0,
                errno: Some("EIO".into()),
                ms: 2.5,
            }],
        };
        let s = serde_json::to_string(&ev).unwrap();
        assert!(s.starts_with(r#"{"ev":"tick""#), "{s}");
        assert_eq!(serde_json::from_str::<HolderEvent>(&s).unwrap(), ev);
        let ev = ProbeEvent::Round {
            round: 1,
            final_round: true,
            results: vec![pr(0, ProbeState::Free, None)],
        };
        let s = serde_json::to_string(&ev).unwrap();
        assert!(s.contains(r#""final":true"#), "{s}");
        assert_eq!(serde_json::from_str::<ProbeEvent>(&s).unwrap(), ev);
    }

    #[test]
    fn targets_for_ranges_and_flock() {
        let dir = tempfile::tempdir().unwrap();
        let mut o = FailoverOptions {
            dir: dir.path().into(),
            file: "f".into(),
            kind: LockKind::Posix,
            locks: 3,
            lock_len: 100,
            duration: None,
            interval: Duration::from_secs(1),
            probe_interval: Duration::from_secs(1),
            probe: ProbeMode::Getlk,
            restart: true,
            status_file: None,
            probe_only: false,
        };
        let t = prepare_targets(&o).unwrap();
        assert_eq!(t.len(), 3);
        assert_eq!(t[2].range, Range::new(200, 100));
        assert_eq!(std::fs::metadata(dir.path().join("f")).unwrap().len(), 300);
        o.kind = LockKind::Flock;
        let t = prepare_targets(&o).unwrap();
        assert_eq!(t[1].path, dir.path().join("f.1"));
        assert_eq!(t[1].range, Range::WHOLE);
        o.file = "../escape".into();
        assert!(matches!(validate(&o), Err(FailoverError::Options(_))));
    }
}
