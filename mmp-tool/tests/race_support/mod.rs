//! What the claim-race tests share (claim_race.rs, race_lanes.rs): a `mmp-tool claim` process
//! per "host" ([`ClaimSpec`], [`Racer`]), the winner's holder ([`start_holder`]) and the
//! referee that watches one round until every racer exited ([`referee`]): it starts racers at
//! their offsets, stops and continues them as scheduled ([`Pause`]), follows the first winner
//! with a heartbeat, and fails the round on two winners, an exit code other than 0 or 1, JSON
//! that contradicts the exit code, a block that does not hold the winner's claim, or a round
//! that outlives its limit.
#![allow(dead_code)] // each test binary uses a different subset

use libmmp::fs::MmpFs;
use libmmp::io::device::{Access, Device};
use libmmp::protocol::check::{self, SafeReason};
use libmmp::protocol::claim::{self, Claimed};
use libmmp::protocol::clock::{Clock, SystemClock};
use libmmp::protocol::heartbeat::{Heartbeat, HeartbeatConfig};
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use serde_json::Value;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};
use test_support::prelude::read_block;

pub const TOOL: &str = env!("CARGO_BIN_EXE_mmp-tool");

/// A claim process, killed by pid (and reaped) on drop if it is still running.
pub struct Racer {
    child: Child,
    pub code: Option<i32>,
    pub stdout: String,
    /// When `poll` first saw it exited.
    pub exited_at: Option<Instant>,
}

impl Racer {
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub fn signal(&self, sig: Signal) {
        let _ = kill(Pid::from_raw(self.pid() as i32), sig);
    }

    /// The exit code once it exited (its JSON read then).
    pub fn poll(&mut self) -> Option<i32> {
        if self.code.is_none() {
            if let Some(st) = self.child.try_wait().unwrap() {
                self.code = Some(st.code().unwrap_or(-1));
                self.exited_at = Some(Instant::now());
                if let Some(mut o) = self.child.stdout.take() {
                    let _ = o.read_to_string(&mut self.stdout);
                }
            }
        }
        self.code
    }

    pub fn json(&self) -> Value {
        serde_json::from_str(&self.stdout).unwrap_or(Value::Null)
    }
}

impl Drop for Racer {
    fn drop(&mut self) {
        if self.poll().is_none() {
            self.signal(Signal::SIGKILL);
            let _ = self.child.wait();
        }
    }
}

/// `mmp-tool claim --json --quiet --node-name NODE --run-dir RUN [EXTRA...] DEV`: one host's
/// claim. Its stderr goes to `log` (with `-v`), or nowhere.
#[derive(Clone, Debug)]
pub struct ClaimSpec {
    pub dev: PathBuf,
    pub node: String,
    pub run_dir: PathBuf,
    pub extra: Vec<String>,
    pub log: Option<PathBuf>,
}

impl ClaimSpec {
    pub fn new(dev: &Path, node: &str, run_dir: &Path) -> ClaimSpec {
        ClaimSpec {
            dev: dev.to_path_buf(),
            node: node.to_string(),
            run_dir: run_dir.to_path_buf(),
            extra: Vec::new(),
            log: None,
        }
    }

    /// With more options before the device (`--fenced NODE`, `--handoff NONCE`).
    pub fn with(mut self, extra: &[&str]) -> ClaimSpec {
        self.extra.extend(extra.iter().map(|s| s.to_string()));
        self
    }

    /// The process; with a FIFO it first blocks in opening it (through /bin/sh, which then
    /// execs the tool).
    pub fn spawn(&self, fifo: Option<&Path>) -> Racer {
        let mut cmd = match fifo {
            Some(f) => {
                let mut c = Command::new("/bin/sh");
                c.arg("-c")
                    .arg(": < \"$0\" && exec \"$@\"")
                    .arg(f)
                    .arg(TOOL);
                c
            }
            None => Command::new(TOOL),
        };
        cmd.args(["claim", "--json", "--quiet", "--node-name", &self.node])
            .arg("--run-dir")
            .arg(&self.run_dir)
            .args(&self.extra)
            .arg(&self.dev)
            .stdin(Stdio::null())
            .stdout(Stdio::piped());
        match &self.log {
            Some(l) => {
                cmd.arg("-v")
                    .stderr(std::fs::File::create(l).expect("racer's stderr file"));
            }
            None => {
                cmd.stderr(Stdio::null());
            }
        }
        Racer {
            child: cmd.spawn().expect("spawning mmp-tool claim"),
            code: None,
            stdout: String::new(),
            exited_at: None,
        }
    }

    /// What the racer wrote on stderr (with a log file).
    pub fn stderr(&self) -> String {
        self.log
            .as_ref()
            .and_then(|l| std::fs::read_to_string(l).ok())
            .unwrap_or_default()
    }
}

/// The winner's node takes over at once, as mmpd does after a claim: a heartbeat over the
/// winner's claim. Checks that the block holds exactly the winner's claim first.
pub fn start_holder(
    dev: &Path,
    seq: u32,
    node: &str,
    claim_elapsed: Duration,
    stale_after: Duration,
    clock: &SystemClock,
) -> Result<Heartbeat<Device>, String> {
    let fs = MmpFs::open(Device::open(dev, Access::ReadWrite).map_err(|e| e.to_string())?)
        .map_err(|e| e.to_string())?;
    let blk = fs.read_mmp_raw().map_err(|e| e.to_string())?.0;
    if blk.mmp_seq != seq || blk.nodename() != node {
        return Err(format!(
            "when the winner {node} exited the block held sequence {:#010x} of '{}', not its claim {seq:#010x}",
            blk.mmp_seq,
            blk.nodename()
        ));
    }
    let published_ci = blk.mmp_check_interval;
    let claimed = Claimed {
        on_disk: claim::on_disk_bytes(&fs, &blk),
        block: blk.clone(),
        previous: SafeReason::Clean,
        previous_block: blk,
        check_interval: check::check_interval(fs.superblock().s_mmp_update_interval, 0),
        verify_wait: claim_elapsed,
        // The claim said (when it returned, a moment ago) how long its last write stays fresh
        // for readers: the holder keeps its margin from the write that implies.
        written_at: (clock.now() + stale_after).saturating_sub(check::wait_time(
            check::check_interval(fs.superblock().s_mmp_update_interval, published_ci),
        )),
        stale_after,
        lease_until: clock.now() + stale_after,
        fence_tag: None,
        elapsed: claim_elapsed,
        reads: 0,
    };
    Ok(Heartbeat::new(
        fs,
        &claimed,
        HeartbeatConfig::default(),
        clock,
    ))
}

/// An injected delay: SIGSTOP `at` after the racer started, SIGCONT `length` later.
#[derive(Clone, Copy, Debug)]
pub struct Pause {
    pub at: Duration,
    pub length: Duration,
}

#[derive(Clone, Copy, Debug, PartialEq)]
enum PauseState {
    Pending,
    /// Stopped until this time since the round's start.
    Stopped(Duration),
    Done,
    /// The racer had exited before its moment.
    Missed,
}

/// One racer of a round: what it runs, when it starts (from the round's start), whether it is
/// stopped for a while; the process once started.
pub struct Entry {
    pub spec: ClaimSpec,
    pub start_at: Duration,
    pub pause: Option<Pause>,
    pub racer: Option<Racer>,
    pause_state: PauseState,
    pub started: Option<Duration>,
    pub exited: Option<Duration>,
}

impl Entry {
    /// Started by the referee at `start_at`.
    pub fn new(spec: ClaimSpec, start_at: Duration, pause: Option<Pause>) -> Entry {
        Entry {
            spec,
            start_at,
            pause,
            racer: None,
            pause_state: PauseState::Pending,
            started: None,
            exited: None,
        }
    }

    /// Already running (started together through a barrier).
    pub fn running(spec: ClaimSpec, racer: Racer) -> Entry {
        let mut e = Entry::new(spec, Duration::ZERO, None);
        e.racer = Some(racer);
        e.started = Some(Duration::ZERO);
        e
    }

    pub fn code(&self) -> Option<i32> {
        self.racer.as_ref().and_then(|r| r.code)
    }

    pub fn json(&self) -> Value {
        self.racer.as_ref().map_or(Value::Null, Racer::json)
    }

    /// Whether its injected stop really happened (it was still running at its moment).
    pub fn was_paused(&self) -> bool {
        matches!(self.pause_state, PauseState::Stopped(_) | PauseState::Done)
    }

    /// One line for a failure report: node, device, timings, exit code, JSON.
    pub fn describe(&self) -> String {
        format!(
            "{} on {}: start {:.2} s, pause {:?} ({:?}), exited {:?}, code {:?}, json {}",
            self.spec.node,
            self.spec.dev.display(),
            self.start_at.as_secs_f64(),
            self.pause,
            self.pause_state,
            self.exited.map(|d| format!("{:.2} s", d.as_secs_f64())),
            self.code(),
            self.json()
        )
    }

    /// Start, stop or continue as scheduled at `t`; the exit code once exited.
    fn step(&mut self, t: Duration) -> Option<i32> {
        if self.racer.is_none() {
            if t < self.start_at {
                return None;
            }
            self.racer = Some(self.spec.spawn(None));
            self.started = Some(t);
        }
        let started = self.started.unwrap_or_default();
        let r = self.racer.as_mut().unwrap();
        let code = r.poll();
        if code.is_some() && self.exited.is_none() {
            self.exited = Some(t);
        }
        match (self.pause, self.pause_state) {
            (Some(p), PauseState::Pending) if t >= started + p.at => {
                if code.is_some() {
                    self.pause_state = PauseState::Missed;
                } else {
                    r.signal(Signal::SIGSTOP);
                    self.pause_state = PauseState::Stopped(t + p.length);
                }
            }
            (_, PauseState::Stopped(until)) if t >= until => {
                r.signal(Signal::SIGCONT);
                self.pause_state = PauseState::Done;
            }
            _ => {}
        }
        code
    }
}

/// How a round ended when the referee found nothing wrong.
pub struct Refereed {
    /// The racer that exited 0, if any.
    pub winner: Option<usize>,
    /// The winner's node held the block (its heartbeat wrote at least once).
    pub held: bool,
    pub elapsed: Duration,
}

/// What the referee tells the round's other parties each tick: the time since the round's
/// start and the winner (index, when it exited) once there is one.
pub struct Tick {
    pub t: Duration,
    pub winner: Option<(usize, Duration)>,
}

/// Referee one round until every racer exited and `others` says the rest of the round is over
/// (it returns `Ok(true)` while something else still runs: a kernel mount, an mmpd; `Err` fails
/// the round). With `hold`, the winner's node heartbeats the block from the moment its claim
/// returned until the end. At most one racer may exit 0, every other one 1.
pub fn referee(
    entries: &mut [Entry],
    hold: bool,
    limit: Duration,
    mut others: impl FnMut(&Tick) -> Result<bool, String>,
) -> Result<Refereed, String> {
    let clock = SystemClock::default();
    let start = Instant::now();
    let mut holder: Option<Heartbeat<Device>> = None;
    let mut winner: Option<(usize, Duration)> = None;
    loop {
        let t = start.elapsed();
        let codes: Vec<Option<i32>> = entries.iter_mut().map(|e| e.step(t)).collect();
        let winners: Vec<usize> = (0..codes.len()).filter(|&i| codes[i] == Some(0)).collect();
        if winners.len() > 1 {
            return Err(format!("two winners: racers {winners:?} exited 0"));
        }
        if let (Some(&w), None) = (winners.first(), winner) {
            winner = Some((w, t));
            let j = entries[w].json();
            let seq = j["sequence"].as_u64().unwrap_or(0) as u32;
            let elapsed = Duration::from_secs_f64(j["elapsed_seconds"].as_f64().unwrap_or(0.0));
            let stale_after =
                Duration::from_secs_f64(j["stale_after_seconds"].as_f64().unwrap_or(0.0));
            let spec = &entries[w].spec;
            let hb = start_holder(&spec.dev, seq, &spec.node, elapsed, stale_after, &clock)?;
            if hold {
                holder = Some(hb);
            }
        }
        let busy = others(&Tick { t, winner })?;
        // Over before the holder beats: a round whose racers all exited in the same tick as
        // the winner never needed the winner's holder (`held` stays false, as the frozen race
        // of claim_race.rs asserts: both read CLEAN, the loser exits at once).
        if !busy && codes.iter().all(Option::is_some) {
            break;
        }
        if let Some(hb) = holder.as_mut() {
            if clock.now() >= hb.next_due() {
                hb.beat(&clock).map_err(|r| {
                    format!("the winner's holder fenced, so somebody else wrote the block: {r}")
                })?;
            }
        }
        if t > limit {
            return Err(format!(
                "the round did not decide within {limit:?}: exit codes {codes:?}"
            ));
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    for (i, e) in entries.iter().enumerate() {
        let (code, j) = (e.code().unwrap(), e.json());
        if code != 0 && code != 1 {
            return Err(format!("racer {i} exited {code}, not 0 or 1"));
        }
        if j["claimed"] != (code == 0) {
            return Err(format!(
                "racer {i}: JSON does not match its exit code {code}: {j}"
            ));
        }
    }
    // The block afterwards: the winner's claim (or its holder's heartbeat over it).
    if let Some((w, _)) = winner {
        let seq = entries[w].json()["sequence"].as_u64().unwrap_or(0) as u32;
        let blk = read_block(&entries[w].spec.dev);
        let expected = holder.as_ref().map_or(seq, |h| h.seq());
        if blk.mmp_seq != expected || blk.nodename() != entries[w].spec.node {
            return Err(format!(
                "afterwards the block holds {:#010x} of '{}', expected {expected:#010x} of {}",
                blk.mmp_seq,
                blk.nodename(),
                entries[w].spec.node
            ));
        }
    }
    Ok(Refereed {
        winner: winner.map(|w| w.0),
        held: holder.is_some_and(|h| h.beats() > 0),
        elapsed: start.elapsed(),
    })
}
