//! Claim races at scale (issue 17): rounds of racing `mmp-tool claim` processes in parallel
//! lanes, against each other, a kernel mount, an mmpd holder, on the fence-confirmed path and in
//! the planned handoff.
//!
//! Each lane owns one small ext4 image (4 MiB, `-O mmp -E mmp_update_interval=1`) and one loop
//! device per "host" (three, O_DIRECT when the loop driver allows it), reused round after round:
//! a round starts by writing a CLEAN block (the state an unmount or mmpd's release leaves).
//! Every racer is a separate process with its own node name and run directory, reaching the
//! image through its own host's loop device, as hosts reach a LUN. Round `r` runs on lane
//! `r % RACE_LANES`; its kind, start offsets (0-2 s) and injected delay (SIGSTOP of one racer,
//! or of mmpd, at a random moment, for 0.2-3 s, then SIGCONT; in half the rounds) come from
//! `RACE_SEED` and `r` alone, so a failed round is replayed with the same seed, rounds and lanes.
//!
//! Kinds (`RACE_KINDS`, a comma list; default all):
//! - `claims`: 2-3 claimers on a CLEAN block; the winner's host follows with a holder (libmmp's
//!   `Heartbeat`) or not (random). Exactly one wins.
//! - `kernel`: one host mounts the filesystem with the kernel at a random moment (kmmpd then
//!   holds it until the round ends) while 1-2 claimers run; the winner's host holds. A claim
//!   that wins and a kernel mount that succeeds in the same round is a failure, whichever came
//!   first; both failing is allowed (each saw the other's write).
//! - `mmpd`: an mmpd holds the block (started with `--fenced nobody` on the CLEAN block: a 4 s
//!   claim) while 1-2 claimers run; in half the rounds it is killed with SIGKILL at 0-3 s.
//!   While it lives every claim refuses and it must release cleanly on SIGTERM (exit 0: nothing
//!   else wrote its block); after the kill at most one claimer wins, never before the kill.
//! - `fenced`: the block names a dead node; two survivors `claim --fenced dead-node`, the
//!   winner holds. Exactly one wins, on the fenced path.
//! - `handoff`: the source offers the CLEAN block to B (`mmp-tool handoff --to B`, must
//!   succeed); B's `claim --handoff NONCE` races a third node's normal claim; the winner holds.
//!   B wins.
//!
//! "Exactly one" and "B wins" hold unless the round injected a stop into a racer that was still
//! running, or a racer refused as `stalled` (its read-to-write gap exceeded 2 s, the designed
//! way out of a too-slow claim, which may leave nobody the winner): then at most one wins. Every
//! round fails on two winners, an exit code other than 0/1, a winner while the kernel or a live
//! mmpd holds, a holder that sees another writer, or a round that is not over within 120 s.
//! A failure prints lane, round, kind, seed, the round's plan and timings, and each racer's
//! JSON and stderr (`-v`).
//!
//! Environment: `RACE_ROUNDS` (total, default [`DEFAULT_ROUNDS`]: about a minute here),
//! `RACE_LANES` (default [`DEFAULT_LANES`]), `RACE_SEED` (default: from the clock; printed),
//! `RACE_KINDS`. The long run is `scripts/race.sh` (BENCHMARKS.md). The output ends with a line
//! per kind, `RACE_SUMMARY {json}` and the rounds per minute.

mod handoff_support;
mod race_support;

use handoff_support::{clean_under, mmpd};
use libmmp::ondisk::mmp::SeqClass;
use race_support::{referee, ClaimSpec, Entry, Pause, Tick, TOOL};
use serde_json::json;
use std::collections::BTreeMap;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Mutex;
use std::time::{Duration, Instant};
use test_support::mount::is_mountpoint;
use test_support::prelude::*;

/// Rounds of the default (CI) run.
const DEFAULT_ROUNDS: usize = 200;
const DEFAULT_LANES: usize = 100;
/// A round not over by then "never decides".
const ROUND_LIMIT: Duration = Duration::from_secs(120);
const HOSTS: usize = 3;
const IMAGE_BYTES: u64 = 4 << 20;
/// The node the fenced rounds' block names.
const DEAD: &str = "dead-node";

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Kind {
    Claims,
    Kernel,
    Mmpd,
    Fenced,
    Handoff,
}

impl Kind {
    const ALL: [Kind; 5] = [
        Kind::Claims,
        Kind::Kernel,
        Kind::Mmpd,
        Kind::Fenced,
        Kind::Handoff,
    ];

    fn name(self) -> &'static str {
        match self {
            Kind::Claims => "claims",
            Kind::Kernel => "kernel",
            Kind::Mmpd => "mmpd",
            Kind::Fenced => "fenced",
            Kind::Handoff => "handoff",
        }
    }
}

/// A round's parameters from the seed and the round number alone (handoff_support's splitmix64).
struct Rng(handoff_support::Rng);

impl Rng {
    fn for_round(seed: u64, round: usize) -> Rng {
        Rng(handoff_support::Rng::new(
            seed ^ (round as u64).wrapping_mul(0xD1B5_4A32_D192_ED03),
        ))
    }

    fn next(&mut self) -> u64 {
        self.0.next()
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }

    fn coin(&mut self) -> bool {
        self.next() & 1 == 1
    }

    /// Uniform in `lo..hi` seconds.
    fn secs(&mut self, lo: f64, hi: f64) -> Duration {
        let u = (self.next() >> 11) as f64 / (1u64 << 53) as f64;
        Duration::from_secs_f64(lo + u * (hi - lo))
    }

    /// The hosts in random order.
    fn hosts(&mut self) -> [usize; HOSTS] {
        let mut h = [0, 1, 2];
        for i in (1..HOSTS).rev() {
            h.swap(i, self.below(i + 1));
        }
        h
    }

    /// In half the rounds a stop: at 0-0.3 s after the start (reads and the first write) or
    /// 0-10 s (the watches), for 0.2-3 s.
    fn pause(&mut self) -> Option<Pause> {
        if !self.coin() {
            return None;
        }
        let at = if self.coin() {
            self.secs(0.0, 0.3)
        } else {
            self.secs(0.0, 10.0)
        };
        Some(Pause {
            at,
            length: self.secs(0.2, 3.0),
        })
    }
}

struct Config {
    rounds: usize,
    lanes: usize,
    seed: u64,
    kinds: Vec<Kind>,
}

fn env_num<T: std::str::FromStr>(name: &str, default: T) -> T {
    match std::env::var(name) {
        Ok(v) if !v.trim().is_empty() => v
            .trim()
            .parse()
            .unwrap_or_else(|_| panic!("{name}={v} is not a number")),
        _ => default,
    }
}

fn config() -> Config {
    let clock_seed = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos() as u64;
    let kinds = match std::env::var("RACE_KINDS") {
        Ok(v) if !v.trim().is_empty() && v.trim() != "all" => v
            .split(',')
            .map(|k| {
                *Kind::ALL
                    .iter()
                    .find(|x| x.name() == k.trim())
                    .unwrap_or_else(|| panic!("RACE_KINDS: unknown kind '{k}'"))
            })
            .collect(),
        _ => Kind::ALL.to_vec(),
    };
    let c = Config {
        rounds: env_num("RACE_ROUNDS", DEFAULT_ROUNDS),
        lanes: env_num("RACE_LANES", DEFAULT_LANES).max(1),
        seed: env_num("RACE_SEED", clock_seed),
        kinds,
    };
    assert!(!c.kinds.is_empty(), "RACE_KINDS names no kind");
    c
}

/// One lane: an image, a loop device per host, run directories, a mount point. Dropped in
/// field order: unmount, detach, remove the directory.
struct Lane {
    _mounted: Mount,
    loops: Vec<Loop>,
    dir: tempfile::TempDir,
    index: usize,
    mmpd: Option<PathBuf>,
}

/// A loop device over `img` with direct I/O if the driver takes it.
fn attach(img: &Path) -> Loop {
    let out = Command::new("losetup")
        .args(["--direct-io=on", "-f", "--show"])
        .arg(img)
        .output()
        .expect("losetup");
    if out.status.success() {
        Loop {
            dev: PathBuf::from(String::from_utf8_lossy(&out.stdout).trim()),
        }
    } else {
        Loop::attach(img)
    }
}

fn direct_io(l: &Loop) -> bool {
    std::fs::read_to_string(format!("/sys/block/{}/loop/dio", l.name()))
        .is_ok_and(|s| s.trim() == "1")
}

impl Lane {
    fn new(index: usize, mmpd: Option<PathBuf>) -> Lane {
        let dir = tempfile::tempdir().unwrap();
        let img = dir.path().join("lane.img");
        mkfs_ext4(
            &img,
            IMAGE_BYTES,
            &["-O", "mmp", "-E", "mmp_update_interval=1"],
        );
        let loops = (0..HOSTS).map(|_| attach(&img)).collect();
        for d in ["mnt", "run-mmpd"]
            .into_iter()
            .chain(["run-h0", "run-h1", "run-h2"])
        {
            std::fs::create_dir_all(dir.path().join(d)).unwrap();
        }
        Lane {
            _mounted: Mount::guard(&dir.path().join("mnt")),
            loops,
            dir,
            index,
            mmpd,
        }
    }

    fn dev(&self, h: usize) -> &Path {
        &self.loops[h].dev
    }

    fn node(&self, h: usize) -> String {
        format!("h{h}")
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// Host `h`'s claim, its stderr in a log named after it and the round's slot.
    fn claim(&self, h: usize, slot: usize) -> ClaimSpec {
        let mut s = ClaimSpec::new(self.dev(h), &self.node(h), &self.path(&format!("run-h{h}")));
        s.log = Some(self.path(&format!("racer{slot}-h{h}.log")));
        s
    }

    /// Back to a CLEAN block under `node`, with no handoff record.
    fn reset(&self, node: &str) {
        clean_under(self.dev(0), node);
    }
}

/// The parties and timings of one round, drawn from the seed (printed on failure).
#[derive(Debug)]
struct Plan {
    kind: Kind,
    /// Hosts in the order the kind uses them.
    hosts: [usize; HOSTS],
    /// Claimers (1-3 depending on the kind).
    claimers: usize,
    offsets: Vec<Duration>,
    /// Which claimer is stopped (`claimers` = mmpd) and how.
    pause: Option<(usize, Pause)>,
    hold: bool,
    /// kernel: when the mount starts; mmpd: when it is killed.
    event_at: Option<Duration>,
}

fn plan(rng: &mut Rng, kinds: &[Kind]) -> Plan {
    let kind = kinds[rng.below(kinds.len())];
    let hosts = rng.hosts();
    let claimers = match kind {
        Kind::Claims => 2 + rng.below(2),
        Kind::Kernel | Kind::Mmpd => 1 + rng.below(2),
        Kind::Fenced | Kind::Handoff => 2,
    };
    let offsets = (0..claimers).map(|_| rng.secs(0.0, 2.0)).collect();
    let targets = claimers + usize::from(kind == Kind::Mmpd);
    let pause = rng.pause().map(|p| (rng.below(targets), p));
    let hold = match kind {
        Kind::Claims | Kind::Mmpd => rng.coin(),
        _ => true,
    };
    let event_at = match kind {
        Kind::Kernel => Some(rng.secs(0.0, 2.0)),
        Kind::Mmpd => rng.coin().then(|| rng.secs(0.0, 3.0)),
        _ => None,
    };
    Plan {
        kind,
        hosts,
        claimers,
        offsets,
        pause,
        hold,
        event_at,
    }
}

/// How a round went, for the summary.
#[derive(Default)]
struct Outcome {
    winner: bool,
    refusals: usize,
    /// The refusals' `result`s, and what else happened (kernel_mounted, mmpd_killed, ...).
    notes: Vec<String>,
}

/// A failed round: the message and everything needed to understand it.
fn report(what: &str, entries: &[Entry], extra: &str) -> String {
    let mut s = format!("{what}\n");
    for e in entries {
        s += &format!(
            "  {}\n    stderr: {}\n",
            e.describe(),
            e.spec.stderr().trim().replace('\n', "\n            ")
        );
    }
    s + extra
}

/// The claimers of a round: host `plan.hosts[first + i]` for claimer `i`.
fn entries(lane: &Lane, plan: &Plan, first: usize) -> Vec<Entry> {
    (0..plan.claimers)
        .map(|i| {
            let pause = plan.pause.filter(|p| p.0 == i).map(|p| p.1);
            Entry::new(lane.claim(plan.hosts[first + i], i), plan.offsets[i], pause)
        })
        .collect()
}

/// Whether "exactly one wins" may fail by design: a stopped racer, or one that refused as
/// stalled.
fn excused(entries: &[Entry]) -> bool {
    entries
        .iter()
        .any(|e| e.was_paused() || e.json()["result"] == "stalled")
}

fn outcome(entries: &[Entry], winner: bool, mut notes: Vec<String>) -> Outcome {
    let mut refusals = 0;
    for e in entries.iter().filter(|e| e.code() == Some(1)) {
        refusals += 1;
        notes.push(e.json()["result"].as_str().unwrap_or("?").to_string());
    }
    if entries.iter().any(|e| e.was_paused()) {
        notes.push("paused".into());
    }
    Outcome {
        winner,
        refusals,
        notes,
    }
}

/// claims and fenced: 2-3 claimers, exactly one wins (unless excused).
fn race_claims(lane: &Lane, plan: &Plan) -> Result<Outcome, String> {
    let fenced = plan.kind == Kind::Fenced;
    lane.reset("reset");
    // Fenced: hosts[0] is the dead node's, the survivors the others.
    let mut es = entries(lane, plan, usize::from(fenced));
    if fenced {
        write_foreign(lane.dev(plan.hosts[0]), 0x4000 + plan.hosts[0] as u32, DEAD);
        for e in &mut es {
            e.spec = e.spec.clone().with(&["--fenced", DEAD]);
        }
    }
    let r =
        referee(&mut es, plan.hold, ROUND_LIMIT, |_| Ok(false)).map_err(|e| report(&e, &es, ""))?;
    match r.winner {
        None if !excused(&es) => return Err(report("no winner", &es, "")),
        Some(w) if fenced && !excused(&es) && es[w].json()["claim_path"] != "fenced" => {
            return Err(report("the winner did not take the fenced path", &es, ""))
        }
        _ => {}
    }
    let held = if r.held { "held" } else { "not_held" };
    Ok(outcome(&es, r.winner.is_some(), vec![held.into()]))
}

/// What the kernel mount of a round did: when it started and ended, whether it mounted.
struct KernelMount {
    started: Duration,
    ended: Duration,
    mount: Result<Mount, String>,
}

/// kernel: host `hosts[0]` mounts at `event_at`; claimers on the other hosts.
fn race_kernel(lane: &Lane, plan: &Plan) -> Result<Outcome, String> {
    lane.reset("reset");
    let mut es = entries(lane, plan, 1);
    let dev = lane.dev(plan.hosts[0]).to_path_buf();
    let mnt = lane.path("mnt");
    let state: Mutex<Option<KernelMount>> = Mutex::new(None);
    let at = plan.event_at.unwrap();
    let t0 = Instant::now();
    let res = std::thread::scope(|s| {
        s.spawn(|| {
            std::thread::sleep(at);
            let started = t0.elapsed();
            let mount = kernel_mount(&dev, &mnt).map_err(|e| e.to_string());
            *state.lock().unwrap() = Some(KernelMount {
                started,
                ended: t0.elapsed(),
                mount,
            });
        });
        referee(&mut es, plan.hold, ROUND_LIMIT, |tick: &Tick| {
            let st = state.lock().unwrap();
            match (&*st, tick.winner) {
                (None, _) => Ok(true),
                (Some(k), Some((w, won))) if k.mount.is_ok() => Err(format!(
                    "claimer {w} won (exit seen at {:.2} s) and the kernel mounted (mount from {:.2} s to {:.2} s)",
                    won.as_secs_f64(),
                    k.started.as_secs_f64(),
                    k.ended.as_secs_f64()
                )),
                _ => Ok(false),
            }
        })
    });
    // Unmount (kmmpd writes CLEAN) before anything else touches the block.
    let k = state.into_inner().unwrap();
    let kernel = match &k {
        Some(k) => format!(
            "kernel mount on {} from {:.2} s to {:.2} s: {}",
            dev.display(),
            k.started.as_secs_f64(),
            k.ended.as_secs_f64(),
            k.mount.as_ref().map_or_else(|e| e.as_str(), |_| "mounted")
        ),
        None => "the kernel mount never finished".into(),
    };
    let mounted = k.as_ref().is_some_and(|k| k.mount.is_ok());
    let live = mounted && matches!(read_block(&dev).seq_class(), SeqClass::Live(_));
    drop(k);
    assert!(!is_mountpoint(&mnt), "{} stays mounted", mnt.display());
    let r = res.map_err(|e| report(&e, &es, &kernel))?;
    if mounted && !live {
        return Err(report("mounted, but the block is not live", &es, &kernel));
    }
    let note = match (mounted, r.winner.is_some()) {
        (true, _) => "kernel_mounted",
        (false, true) => "claim_won",
        (false, false) => "neither",
    };
    Ok(outcome(&es, r.winner.is_some(), vec![note.into()]))
}

/// mmpd: an mmpd on `hosts[0]` holds; killed at `event_at` if any; claimers on the others.
fn race_mmpd(lane: &Lane, plan: &Plan) -> Result<Outcome, String> {
    lane.reset("reset");
    let h = plan.hosts[0];
    let node = format!("{}-mmpd", lane.node(h));
    let log = lane.path("mmpd.log");
    let bin = lane.mmpd.as_ref().expect("mmpd built");
    let mut d = Proc::mmpd(
        bin,
        &lane.path("run-mmpd"),
        &node,
        lane.dev(h),
        &["--fenced", "nobody"],
        log,
    );
    if !d.wait_log("ready:", Duration::from_secs(60)) {
        return Err(format!("mmpd not ready:\n{}", d.log()));
    }
    let mut es = entries(lane, plan, 1);
    let pause = plan.pause.filter(|p| p.0 == plan.claimers).map(|p| p.1);
    let mut stopped: Option<Duration> = None;
    let mut continued = false;
    let mut killed: Option<Duration> = None;
    let r = referee(&mut es, plan.hold, ROUND_LIMIT, |tick: &Tick| {
        let t = tick.t;
        if let Some(p) = pause {
            if stopped.is_none() && t >= p.at && killed.is_none() {
                d.signal(nix::sys::signal::Signal::SIGSTOP);
                stopped = Some(t);
            }
            if !continued && stopped.is_some_and(|s| t >= s + p.length) {
                d.signal(nix::sys::signal::Signal::SIGCONT);
                continued = true;
            }
        }
        if killed.is_none() && plan.event_at.is_some_and(|k| t >= k) {
            d.signal(nix::sys::signal::Signal::SIGKILL);
            killed = Some(t);
        }
        if killed.is_none() {
            if let Some(c) = d.try_code() {
                return Err(format!("mmpd exited {c} while it held the block"));
            }
            if let Some((w, won)) = tick.winner {
                return Err(format!(
                    "claimer {w} won (exit seen at {:.2} s) while mmpd holds",
                    won.as_secs_f64()
                ));
            }
        }
        Ok(false)
    });
    let r = r.map_err(|e| {
        report(
            &e,
            &es,
            &format!(
                "mmpd {node} on {}: stopped at {stopped:?}, killed at {killed:?}, log:\n{}",
                lane.dev(h).display(),
                d.log()
            ),
        )
    })?;
    let mut notes = vec![];
    if killed.is_some() {
        notes.push("mmpd_killed".to_string());
        let _ = d.wait_code(Duration::from_secs(10));
    } else {
        d.signal(nix::sys::signal::Signal::SIGCONT);
        d.signal(nix::sys::signal::Signal::SIGTERM);
        let code = d.wait_code(Duration::from_secs(20));
        let b = read_block(lane.dev(h));
        if code != Some(0) || b.seq_class() != SeqClass::Clean || b.nodename() != node {
            return Err(report(
                &format!(
                    "mmpd's release on SIGTERM: exit {code:?}, block {} of '{}'",
                    b.seq_class().name(),
                    b.nodename()
                ),
                &es,
                &d.log(),
            ));
        }
        notes.push("mmpd_released".to_string());
    }
    if stopped.is_some() {
        notes.push("mmpd_paused".to_string());
    }
    Ok(outcome(&es, r.winner.is_some(), notes))
}

/// handoff: `hosts[0]` offers to `hosts[1]` (B), whose `claim --handoff` races `hosts[2]`'s
/// normal claim.
fn race_handoff(lane: &Lane, plan: &Plan) -> Result<Outcome, String> {
    let (src, tgt) = (plan.hosts[0], plan.hosts[1]);
    lane.reset(&lane.node(src));
    let mut offer = Command::new(TOOL);
    offer
        .args([
            "handoff",
            "--json",
            "--quiet",
            "--node-name",
            &lane.node(src),
        ])
        .arg("--run-dir")
        .arg(lane.path(&format!("run-h{src}")))
        .arg(lane.dev(src))
        .args(["--to", &lane.node(tgt)]);
    let out = run_with_timeout(offer, Duration::from_secs(60));
    let j: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap_or_default();
    let Some(nonce) = j["nonce"].as_str().filter(|_| out.status.success()) else {
        return Err(format!(
            "the offer failed ({}): {j}\n{}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        ));
    };
    let mut es = entries(lane, plan, 1);
    es[0].spec = es[0].spec.clone().with(&["--handoff", nonce]);
    let r = referee(&mut es, plan.hold, ROUND_LIMIT, |_| Ok(false))
        .map_err(|e| report(&e, &es, &format!("offer: {j}")))?;
    let b_excused = es[0].was_paused() || es[0].json()["result"] == "stalled";
    if !b_excused && (r.winner != Some(0) || es[0].json()["claim_path"] != "handoff") {
        return Err(report(
            "the target did not win on the handoff path",
            &es,
            &format!("offer: {j}"),
        ));
    }
    let note = match r.winner {
        Some(0) => "target_won",
        Some(_) => "third_won",
        None => "nobody_won",
    };
    Ok(outcome(&es, r.winner.is_some(), vec![note.into()]))
}

fn run_round(lane: &Lane, plan: &Plan) -> Result<Outcome, String> {
    match plan.kind {
        Kind::Claims | Kind::Fenced => race_claims(lane, plan),
        Kind::Kernel => race_kernel(lane, plan),
        Kind::Mmpd => race_mmpd(lane, plan),
        Kind::Handoff => race_handoff(lane, plan),
    }
}

#[derive(Default)]
struct KindStats {
    rounds: usize,
    winners: usize,
    refusals: usize,
    failures: usize,
    total: Duration,
    max: Duration,
    notes: BTreeMap<String, usize>,
}

/// Run lane `l`'s share of the rounds: the stats per kind and the failures.
fn run_lane(lane: &Lane, cfg: &Config) -> (BTreeMap<Kind, KindStats>, Vec<String>) {
    let mut stats: BTreeMap<Kind, KindStats> = BTreeMap::new();
    let mut failures = Vec::new();
    for round in (lane.index..cfg.rounds).step_by(cfg.lanes) {
        let p = plan(&mut Rng::for_round(cfg.seed, round), &cfg.kinds);
        let t = Instant::now();
        let res = catch_unwind(AssertUnwindSafe(|| run_round(lane, &p)))
            .unwrap_or_else(|e| Err(format!("panicked: {}", panic_text(&e))));
        let took = t.elapsed();
        let s = stats.entry(p.kind).or_default();
        s.rounds += 1;
        s.total += took;
        s.max = s.max.max(took);
        match res {
            Ok(o) => {
                s.winners += usize::from(o.winner);
                s.refusals += o.refusals;
                for n in o.notes {
                    *s.notes.entry(n).or_default() += 1;
                }
            }
            Err(e) => {
                s.failures += 1;
                let msg = format!(
                    "FAILED lane {} round {round} kind {} seed {} ({:.1} s): plan {p:?}\n{e}",
                    lane.index,
                    p.kind.name(),
                    cfg.seed,
                    took.as_secs_f64()
                );
                eprintln!("{msg}");
                failures.push(msg);
                // A lane whose fixture broke cannot go on meaningfully.
                if e.starts_with("panicked") {
                    break;
                }
            }
        }
    }
    (stats, failures)
}

fn panic_text(e: &Box<dyn std::any::Any + Send>) -> String {
    e.downcast_ref::<String>()
        .cloned()
        .or_else(|| e.downcast_ref::<&str>().map(|s| s.to_string()))
        .unwrap_or_else(|| "?".into())
}

fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .unwrap_or_default()
        .split_whitespace()
        .take(3)
        .collect::<Vec<_>>()
        .join(" ")
}

#[test]
fn loop_claim_races_in_lanes() {
    if !require_loop_devices() {
        return;
    }
    let mut cfg = config();
    let mmpd_bin = mmpd();
    if mmpd_bin.is_none() && cfg.kinds.contains(&Kind::Mmpd) {
        cannot_run("mmpd is not built (cargo build -p mmpd): its kind is left out");
        cfg.kinds.retain(|k| *k != Kind::Mmpd);
        if cfg.kinds.is_empty() {
            return;
        }
    }
    let kinds: Vec<&str> = cfg.kinds.iter().map(|k| k.name()).collect();
    eprintln!(
        "RACE seed={} rounds={} lanes={} kinds={} (replay: RACE_SEED={} RACE_ROUNDS={} RACE_LANES={} RACE_KINDS={}); load average {}",
        cfg.seed,
        cfg.rounds,
        cfg.lanes,
        kinds.join(","),
        cfg.seed,
        cfg.rounds,
        cfg.lanes,
        kinds.join(","),
        load_average()
    );
    let lanes_used = cfg.lanes.min(cfg.rounds.max(1));
    // Attached one after the other (parallel `losetup -f` calls race for the same free device).
    let lanes: Vec<Lane> = (0..lanes_used)
        .map(|i| Lane::new(i, mmpd_bin.clone()))
        .collect();
    let dio = lanes
        .iter()
        .flat_map(|l| &l.loops)
        .filter(|l| direct_io(l))
        .count();
    eprintln!(
        "{} lanes, {} loop devices ({dio} with direct I/O)",
        lanes.len(),
        lanes.len() * HOSTS
    );
    let t = Instant::now();
    let results: Vec<_> = std::thread::scope(|s| {
        let hs: Vec<_> = lanes
            .iter()
            .map(|l| s.spawn(|| run_lane(l, &cfg)))
            .collect();
        hs.into_iter()
            .map(|h| {
                h.join().unwrap_or_else(|e| {
                    (
                        BTreeMap::new(),
                        vec![format!("lane panicked: {}", panic_text(&e))],
                    )
                })
            })
            .collect()
    });
    let wall = t.elapsed();
    drop(lanes);
    let mut total: BTreeMap<Kind, KindStats> = BTreeMap::new();
    let mut failures = Vec::new();
    for (stats, f) in results {
        failures.extend(f);
        for (k, s) in stats {
            let a = total.entry(k).or_default();
            a.rounds += s.rounds;
            a.winners += s.winners;
            a.refusals += s.refusals;
            a.failures += s.failures;
            a.total += s.total;
            a.max = a.max.max(s.max);
            for (n, c) in s.notes {
                *a.notes.entry(n).or_default() += c;
            }
        }
    }
    let rounds: usize = total.values().map(|s| s.rounds).sum();
    let mut per_kind = serde_json::Map::new();
    for (k, s) in &total {
        let mean = s.total.as_secs_f64() / s.rounds.max(1) as f64;
        eprintln!(
            "RACE {:<8} rounds {:>5}  winners {:>5}  refusals {:>5}  failures {}  round mean {mean:.1} s max {:.1} s  {:?}",
            k.name(),
            s.rounds,
            s.winners,
            s.refusals,
            s.failures,
            s.max.as_secs_f64(),
            s.notes
        );
        per_kind.insert(
            k.name().into(),
            json!({
                "rounds": s.rounds, "winners": s.winners, "refusals": s.refusals,
                "failures": s.failures, "mean_round_seconds": (mean * 100.0).round() / 100.0,
                "max_round_seconds": (s.max.as_secs_f64() * 100.0).round() / 100.0,
                "notes": s.notes,
            }),
        );
    }
    let per_minute = rounds as f64 / wall.as_secs_f64() * 60.0;
    eprintln!(
        "RACE_SUMMARY {}",
        json!({
            "seed": cfg.seed, "rounds": rounds, "lanes": lanes_used, "failures": failures.len(),
            "wall_seconds": (wall.as_secs_f64() * 10.0).round() / 10.0,
            "rounds_per_minute": (per_minute * 10.0).round() / 10.0,
            "load_average": load_average(), "kinds": per_kind,
        })
    );
    eprintln!(
        "RACE {rounds} rounds in {:.1} s: {per_minute:.1} rounds/minute, {} failed",
        wall.as_secs_f64(),
        failures.len()
    );
    assert!(
        failures.is_empty(),
        "{} of {rounds} rounds failed (seed {}):\n{}",
        failures.len(),
        cfg.seed,
        failures.join("\n")
    );
    assert_eq!(rounds, cfg.rounds, "rounds run");
}
