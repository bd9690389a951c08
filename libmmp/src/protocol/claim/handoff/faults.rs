//! The eight fault cases of issue 16, injected at every operation of the faulted actor, with
//! random timing, on the simulator of [`super::sim`]. Actors: A the source (offer, maybe
//! rollback, then a holder), B the target (claim with the nonce once A's offer returned Ok,
//! then a holder), O the orchestrator (confirm once B's claim returned; on a refusal it tells
//! A to roll back), C a third node (case 6: a normal claim, then down; in a quarter of the
//! other runs a healthy racing claimer), D a fresh node that claims the device once everybody
//! else is done or holding. The cases are in `cases`, the deterministic races in `races`.
//!
//! After every run: (1) no two holding intervals of different nodes overlap; (2) D wins, or is
//! refused only because a holder wrote while it watched; (3) the case's expected outcome.
//! A failure names the case, seed and fault index: `replay(case, seed, Some(k))` reruns it.
//!
//! A holding interval starts when the node's claim (or rollback) returned Ok; it lasts to the
//! end of the run while the holder still holds, otherwise to the holder's last successful MMP
//! write (a fenced mmpd, a dead node, a lost path write nothing more). So the first invariant
//! is "never two nodes writing the block as holders at once". Two limits of the model, both
//! outside the handoff: a SIGSTOP never hits a holder's beat (a heartbeat stopped between its
//! check and its write lands that write late whatever the protocol; the watchdog covers it),
//! and a kmmpd whose writes fail for longer than a reader waits has lapsed (the kernel's own
//! rule lets any node take the device; its interval ends there and the run says so).

use super::sim::{kmmpd, mmpd, Body, Disk, Fault, HoldEnd, Op, Phase, Rng, Sim, SimClock};
use super::*;
use crate::io::MemDevice;
use crate::ondisk::mmp::{EXT4_MMP_SEQ_CLEAN, EXT4_MMP_SEQ_MAX};
use crate::protocol::check::tests::{image, BS, MMP_BLOCK};
use crate::protocol::claim::claim_with;
use crate::protocol::claim::tests::opts;
use crate::protocol::heartbeat::{Heartbeat, HeartbeatConfig};
use std::collections::BTreeMap;
use std::sync::Mutex;

const A: usize = 0;
const B: usize = 1;
const O: usize = 2;
const C: usize = 3;
const D: usize = 4;
// Events and the actor whose end signals them if it did not.
const OFFER_DONE: usize = 0;
const B_DONE: usize = 1;
const GO: usize = 2;
const QUIET: [usize; 4] = [3, 4, 5, 6];
const OWNERS: [usize; 7] = [A, B, O, A, B, O, C];
const NONCE: u64 = 0x5eed_f00d_0000_0001;
const HORIZON: Duration = Duration::from_secs(400);

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Case {
    TargetCrash = 1,
    TargetEio,
    SourceCrash,
    SourceEio,
    Degraded,
    ThirdDown,
    TargetOff,
    SourceOff,
    /// Not one of the eight: a random fault on every actor at once (the invariants only).
    Chaos,
}

/// Case 5: both sides degraded.
const BOTH: usize = 9;

/// What the orchestrator does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Plan {
    /// Hand the nonce to B, confirm once B's claim returned, roll back if not confirmed.
    Handoff,
    /// Roll back right after the offer; the nonce is never handed out.
    Abort,
    /// Hand the nonce to B and roll back too, racing it (no confirm first).
    Race,
    /// Case 8: A is gone after its offer; B's node cancels (rolls back) instead of claiming.
    Cancel,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Kmmpd,
    Mmpd,
}

/// Everything one run draws from its seed.
#[derive(Debug, Clone)]
struct World {
    case: Case,
    seed: u64,
    k: Option<usize>,
    csum: bool,
    poll: Duration,
    plan: Plan,
    kind: [Kind; 5],
    latency: [Duration; 5],
    a_delay: Duration,
    b_delay: Duration,
    rollback_delay: Duration,
    /// The third node claims (always in case 6, where it goes down; else in a quarter of the
    /// runs, healthy: a racing claimer the handoff must keep out).
    third: bool,
    c_start: Duration,
    d_delay: Duration,
    /// Cases 1 and 3: SIGSTOP for this long instead of a crash.
    stop: Option<Duration>,
    /// Case 5: which side is degraded (A with O, B, both), how slow, how often EIO.
    degraded: (usize, Duration, u64),
    /// The chaos runs: every actor's fault.
    chaos: Option<[Fault; 5]>,
    rng: Rng,
    /// The sweep's actors wait for each other's events; the races' do not.
    events: bool,
    /// The races: when each actor starts, and what the run is (for messages).
    starts: Vec<Duration>,
    what: String,
}

impl World {
    fn new(case: Case, seed: u64, k: Option<usize>) -> Self {
        let mut r = Rng::new(seed.wrapping_mul(31).wrapping_add(case as u64));
        let plan = match case {
            Case::SourceCrash | Case::SourceEio => r.pick(&[Plan::Handoff, Plan::Abort]),
            Case::SourceOff => r.pick(&[Plan::Handoff, Plan::Abort, Plan::Cancel]),
            Case::Degraded => r.pick(&[Plan::Handoff, Plan::Handoff, Plan::Race]),
            Case::Chaos => r.pick(&[Plan::Handoff, Plan::Abort, Plan::Race, Plan::Cancel]),
            _ => Plan::Handoff,
        };
        let mut kind = [Kind::Kmmpd; 5];
        for k in &mut kind {
            *k = r.pick(&[Kind::Kmmpd, Kind::Mmpd]);
        }
        let mut latency = [Duration::ZERO; 5];
        let lat_max = r.pick(&[0, 20, 200]);
        for l in &mut latency {
            *l = r.ms(0, lat_max);
        }
        let stop = matches!(case, Case::TargetCrash | Case::SourceCrash) && r.percent(30);
        World {
            case,
            seed,
            k,
            csum: r.percent(50),
            poll: r.pick(&[100, 150, 200, 250]).pipe(Duration::from_millis),
            plan,
            kind,
            latency,
            // Case 6: the third node may start before the offer, and outwait a standing one.
            a_delay: if case == Case::ThirdDown {
                r.ms(0, 3_000)
            } else {
                Duration::ZERO
            },
            b_delay: if case == Case::ThirdDown && r.percent(30) {
                r.ms(10_000, 14_000)
            } else {
                r.ms(0, 2_000)
            },
            rollback_delay: r.ms(0, 3_000),
            third: case == Case::ThirdDown || r.percent(25),
            c_start: r.ms(0, 12_000),
            d_delay: r.ms(0, 3_000),
            stop: stop.then(|| r.ms(3_000, 40_000)),
            degraded: (
                r.pick(&[A, B, BOTH]),
                r.pick(&[300, 800, 2_500]).pipe(Duration::from_millis),
                r.pick(&[0, 5, 15]),
            ),
            chaos: (case == Case::Chaos).then(|| chaos_faults(&mut r)),
            rng: r.fork(),
            events: true,
            starts: Vec::new(),
            what: String::new(),
        }
    }

    /// The actor whose operations the fault index counts.
    fn faulted(&self) -> usize {
        match self.case {
            Case::TargetCrash | Case::TargetEio | Case::TargetOff => B,
            Case::SourceCrash | Case::SourceEio | Case::SourceOff => A,
            Case::Degraded if self.degraded.0 == B => B,
            Case::Degraded => A,
            Case::ThirdDown => C,
            Case::Chaos => A,
        }
    }

    fn fault(&self, actor: usize) -> Fault {
        if let Some(f) = self.chaos {
            return f[actor];
        }
        let (side, max_delay, eio_percent) = self.degraded;
        if self.case == Case::Degraded {
            // The faulted actor degrades from op k; the rest of its side from the start.
            let on_side = match side {
                A => actor == A || actor == O,
                B => actor == B,
                _ => actor != C && actor != D,
            };
            let at = if actor == self.faulted() {
                self.k.unwrap_or(usize::MAX)
            } else {
                0
            };
            return if on_side && self.k.is_some() {
                Fault::Degraded {
                    at,
                    max_delay,
                    eio_percent,
                }
            } else {
                Fault::None
            };
        }
        let Some(at) = self.k.filter(|_| actor == self.faulted()) else {
            return Fault::None;
        };
        match (self.case, self.stop) {
            (Case::TargetCrash | Case::SourceCrash, Some(for_)) => Fault::Stop { at, for_ },
            (Case::TargetCrash | Case::SourceCrash, None) => Fault::Crash { at, node: false },
            (Case::TargetEio | Case::SourceEio, _) => Fault::Eio { at },
            _ => Fault::Crash { at, node: true },
        }
    }
}

/// A random fault (or none) for each actor but the fresh node, at one of its first 40 steps.
fn chaos_faults(r: &mut Rng) -> [Fault; 5] {
    let mut f = [Fault::None; 5];
    for x in &mut f[..D] {
        let at = r.below(40) as usize;
        *x = match r.below(7) {
            0 | 1 => Fault::None,
            2 => Fault::Crash { at, node: false },
            3 => Fault::Crash { at, node: true },
            4 => Fault::Eio { at },
            5 => Fault::Degraded {
                at,
                max_delay: r.pick(&[300, 800, 2_500]).pipe(Duration::from_millis),
                eio_percent: r.pick(&[0, 5, 15]),
            },
            _ => Fault::Stop {
                at,
                for_: r.ms(3_000, 40_000),
            },
        };
    }
    f
}

trait Pipe: Sized {
    fn pipe<R>(self, f: impl FnOnce(Self) -> R) -> R {
        f(self)
    }
}
impl<T> Pipe for T {}

/// A node's holding interval as it happened.
#[derive(Debug, Clone)]
struct Hold {
    actor: usize,
    start: Duration,
    end: HoldEnd,
}

/// What the actors did (results by error name).
#[derive(Debug, Default)]
struct Outcome {
    offer: Option<Result<(), String>>,
    b_claim: Option<Result<(), String>>,
    confirm: Option<(Duration, Result<(), String>)>,
    rollback_wanted: bool,
    rollback: Option<Result<RollbackPath, String>>,
    cancel: Option<Result<RollbackPath, String>>,
    b_after_cancel: Option<String>,
    c_claim: Option<Result<(), String>>,
    d: Option<(Duration, Result<Duration, String>)>,
    holds: Vec<Hold>,
    quiet_ops: [Option<usize>; 5],
    /// The races: each target claimer's result.
    claims: Vec<(usize, Result<(), String>)>,
}

fn name<T>(r: &Result<T, HandoffError>) -> Result<(), String> {
    r.as_ref().map(|_| ()).map_err(|e| e.name().to_string())
}

/// One actor's context inside a run.
struct Ctx<'a> {
    w: &'a World,
    out: &'a Mutex<Outcome>,
    clock: SimClock<'a>,
    disk: &'a Disk<'a>,
    fs: MmpFs<&'a Disk<'a>>,
    me: usize,
    node: &'static str,
    rng: Rng,
}

impl Ctx<'_> {
    fn out(&self) -> std::sync::MutexGuard<'_, Outcome> {
        self.out.lock().unwrap_or_else(|e| e.into_inner())
    }
    fn opts(&self) -> ClaimOptions {
        ClaimOptions {
            poll: self.w.poll,
            ..opts(self.node)
        }
    }
    fn seqs(&mut self) -> impl FnMut() -> Result<u32, crate::protocol::seq::SeqError> {
        let mut r = self.rng.fork();
        move || Ok(1 + r.below(u64::from(EXT4_MMP_SEQ_MAX) - 1) as u32)
    }
    fn quiet(&self) {
        if self.w.events && self.me != D {
            self.out().quiet_ops[self.me] = Some(self.disk.ops());
            self.clock.signal(QUIET[self.me.min(C)]);
        }
    }

    /// Hold the device: from now (a claim or rollback just returned Ok) until the holder ends.
    /// `claimed` is the claim a holder follows (none after a rollback: the block is CLEAN).
    fn hold(mut self, claimed: Option<&Claimed>) {
        let i = {
            let mut out = self.out();
            out.holds.push(Hold {
                actor: self.me,
                start: self.clock.now(),
                end: HoldEnd::Alive,
            });
            out.holds.len() - 1
        };
        self.quiet();
        let out = self.out;
        let end = match (self.w.kind[self.me], claimed) {
            (Kind::Kmmpd, c) => kmmpd(&self.fs, self.disk, &self.clock, c, &mut self.rng),
            (Kind::Mmpd, Some(c)) => {
                let cfg = HeartbeatConfig::default();
                let hb = Heartbeat::new(self.fs, c, cfg, &self.clock);
                mmpd(hb, self.disk, &self.clock)
            }
            (Kind::Mmpd, None) => unreachable!("mmpd holds after a claim"),
        };
        out.lock().unwrap_or_else(|e| e.into_inner()).holds[i].end = end;
    }

    /// A rollback left the block CLEAN under our name: a kernel mount, or mmpd's own claim
    /// and heartbeat.
    fn hold_after_rollback(self) {
        match self.w.kind[self.me] {
            Kind::Kmmpd => self.hold(None),
            Kind::Mmpd => self.claim_then_hold(),
        }
    }

    /// mmpd after a rollback, or the third node: a normal claim, then a holder.
    fn claim_then_hold(mut self) {
        self.disk.set_phase(Phase::Claim);
        let o = self.opts();
        let mut s = self.seqs();
        let r = claim_with(
            &self.fs,
            &self.clock,
            &mut s,
            &o,
            ClaimMode::HolderFollows,
            &|| false,
            &mut |_, _, _| {},
        );
        if self.me == C {
            self.out().c_claim = Some(r.as_ref().map(|_| ()).map_err(|e| e.name().into()));
        }
        match r {
            Ok(c) if !self.disk.crashed() => self.hold(Some(&c)),
            _ => {}
        }
    }
}

fn actor_a(mut cx: Ctx<'_>) {
    cx.clock.sleep(cx.w.a_delay);
    let o = cx.opts();
    let mut s = cx.seqs();
    cx.disk.set_phase(Phase::Offer);
    let r = offer(
        &cx.fs,
        &cx.clock,
        &mut s,
        &mut || Ok(NONCE),
        &o,
        "b",
        &mut |_, _, _| {},
    );
    cx.out().offer = Some(name(&r));
    cx.clock.signal(OFFER_DONE);
    if r.is_err() || cx.disk.crashed() {
        return;
    }
    match cx.w.plan {
        Plan::Handoff => {
            cx.clock.wait(GO);
            if !cx.out().rollback_wanted {
                return;
            }
        }
        Plan::Abort | Plan::Race => cx.clock.sleep(cx.w.rollback_delay),
        Plan::Cancel => return,
    }
    cx.disk.set_phase(Phase::Rollback);
    let r = rollback(
        &cx.fs,
        &cx.clock,
        &mut s,
        &o,
        Some(NONCE),
        &mut |_, _, _| {},
    );
    cx.out().rollback = Some(
        r.as_ref()
            .map(|r| r.path.clone())
            .map_err(|e| e.name().into()),
    );
    if r.is_err() || cx.disk.crashed() {
        return;
    }
    cx.hold_after_rollback();
}

fn actor_b(mut cx: Ctx<'_>) {
    cx.clock.wait(OFFER_DONE);
    if !matches!(cx.out().offer, Some(Ok(()))) || cx.w.plan == Plan::Abort {
        return;
    }
    cx.clock.sleep(cx.w.b_delay);
    let o = cx.opts();
    let mut s = cx.seqs();
    let mut claim = |cx: &Ctx<'_>| {
        cx.disk.set_phase(Phase::Claim);
        let mode = ClaimMode::HolderFollows;
        claim_handoff(
            &cx.fs,
            &cx.clock,
            &mut s,
            &o,
            mode,
            NONCE,
            &|| false,
            &mut |_, _, _| {},
        )
    };
    if cx.w.plan == Plan::Cancel {
        cx.disk.set_phase(Phase::Rollback);
        let mut s2 = cx.seqs();
        let r = rollback(
            &cx.fs,
            &cx.clock,
            &mut s2,
            &o,
            Some(NONCE),
            &mut |_, _, _| {},
        );
        cx.out().cancel = Some(r.map(|r| r.path).map_err(|e| e.name().into()));
        let again = claim(&cx);
        cx.out().b_after_cancel = Some(name(&again).err().unwrap_or_else(|| "ok".into()));
        return;
    }
    let r = claim(&cx);
    cx.out().b_claim = Some(name(&r));
    cx.clock.signal(B_DONE);
    match r {
        Ok(c) if !cx.disk.crashed() => cx.hold(Some(&c.claimed)),
        _ => {}
    }
}

fn actor_o(cx: Ctx<'_>) {
    cx.clock.wait(B_DONE);
    let offered = matches!(cx.out().offer, Some(Ok(())));
    if !offered || matches!(cx.w.plan, Plan::Abort | Plan::Cancel) {
        return;
    }
    cx.disk.set_phase(Phase::Confirm);
    let t0 = cx.clock.now();
    let r = confirm(&cx.fs, &cx.clock, NONCE, cx.w.poll, &mut |_, _, _| {});
    let mut out = cx.out();
    out.rollback_wanted = r.is_err();
    out.confirm = Some((t0, name(&r)));
    drop(out);
    cx.clock.signal(GO);
}

fn actor_c(cx: Ctx<'_>) {
    if !cx.w.third {
        return;
    }
    cx.clock.sleep(cx.w.c_start);
    cx.claim_then_hold();
}

/// The fresh node: claims once everybody else is done or holding; if it wins it holds for
/// 12 s with mmpd (a holder still writing would overlap it). Then the run ends.
fn actor_d(mut cx: Ctx<'_>) {
    for e in QUIET {
        cx.clock.wait(e);
    }
    cx.clock.sleep(cx.w.d_delay);
    let t0 = cx.clock.now();
    cx.disk.set_phase(Phase::Claim);
    let o = cx.opts();
    let mut s = cx.seqs();
    let r = claim_with(
        &cx.fs,
        &cx.clock,
        &mut s,
        &o,
        ClaimMode::HolderFollows,
        &|| false,
        &mut |_, _, _| {},
    );
    cx.out().d = Some((
        t0,
        r.as_ref().map(|c| c.elapsed).map_err(|e| e.name().into()),
    ));
    if let Ok(c) = r {
        let start = cx.clock.now();
        cx.out().holds.push(Hold {
            actor: D,
            start,
            end: HoldEnd::Alive,
        });
        cx.disk.set_phase(Phase::Mmpd);
        let mut hb = Heartbeat::new(cx.fs, &c, HeartbeatConfig::default(), &cx.clock);
        while cx.clock.now() < start + Duration::from_secs(12) {
            if hb.beat(&cx.clock).is_err() {
                break;
            }
            cx.clock.sleep(Duration::from_secs(1));
        }
    }
    cx.clock.sim.stop();
}

/// A finished run.
struct Run {
    w: World,
    out: Outcome,
    logs: Vec<Vec<Op>>,
    end: Duration,
}

/// An actor of a run: its node name and its body.
type Actor = (&'static str, fn(Ctx<'_>));

fn run(case: Case, seed: u64, k: Option<usize>) -> Run {
    let w = World::new(case, seed, k);
    let initial = {
        let mut b = MmpBlock::new(0x77, 100, "a", "sdb", 5);
        b.mmp_seq = EXT4_MMP_SEQ_CLEAN;
        b
    };
    let dev = image(w.csum, &initial).snapshot();
    let actors: [Actor; 5] = [
        ("a", actor_a),
        ("b", actor_b),
        ("o", actor_o),
        ("c", actor_c),
        ("d", actor_d),
    ];
    simulate(w, dev, &actors, OWNERS.to_vec())
}

/// Run `actors` on a device holding `initial`; event `e` belongs to actor `owners[e]`.
fn simulate(w: World, initial: Vec<u8>, actors: &[Actor], owners: Vec<usize>) -> Run {
    let dev = MemDevice::new("img", initial);
    let out = Mutex::new(Outcome::default());
    let sim = Sim::new(actors.len(), owners, HORIZON);
    let bodies: Vec<Body<'_, Vec<Op>>> = actors
        .iter()
        .enumerate()
        .map(|(me, &(node, body))| {
            let (w, dev, out) = (&w, &dev, &out);
            Box::new(move |clock: SimClock<'_>| {
                let mut rng = w.rng.clone();
                for _ in 0..=me {
                    rng = rng.fork();
                }
                let disk = Disk::new(
                    dev,
                    clock,
                    MMP_BLOCK * BS,
                    w.fault(me),
                    w.latency.get(me).copied().unwrap_or_default(),
                    rng.fork(),
                );
                let cx = Ctx {
                    w,
                    out,
                    clock,
                    disk: &disk,
                    fs: MmpFs::open(&disk).expect("the image opens"),
                    me,
                    node,
                    rng,
                };
                body(cx);
                let mut o = out.lock().unwrap_or_else(|e| e.into_inner());
                if let Some(q) = o.quiet_ops.get_mut(me) {
                    q.get_or_insert(disk.ops());
                }
                disk.log.take()
            }) as Body<'_, Vec<Op>>
        })
        .collect();
    let logs = sim.run(bodies);
    let end = sim.end();
    let out = out.into_inner().unwrap_or_else(|e| e.into_inner());
    Run { w, out, logs, end }
}

mod cases;
mod races;
mod verdict;
