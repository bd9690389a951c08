//! The planned handoff when a side crashes, with real processes on loop devices (two loop
//! devices over one image are two hosts; see handoff.rs). Each round starts from the block a
//! clean release by host-a leaves, offers it, and crashes one side at a random moment (a
//! seeded generator: `HANDOFF_SEED` repeats a run; `HANDOFF_CRASH_ROUNDS`, default 6, sets the
//! rounds per test):
//!
//! - the target's `mount --handoff` killed with SIGKILL 0..900 ms into its run (the rounds
//!   cycle through windows: before its claim write, during its 0.6 s verification, around its
//!   mount or after it ended), then the source rolls back;
//! - the target stopped with SIGSTOP at such a moment, the source rolls back, then SIGCONT;
//! - the source's `handoff --to` killed 0..2600 ms into its run (before or after its write,
//!   during its verification); then the source rolls back, or a fresh node claims the block
//!   the normal way (alternately).
//!
//! - a third node's normal gated mount (its own loop device) started just before the offer,
//!   during its write and verification, or while the offer stands: never both it and the
//!   target mounted.
//!
//! After every round: never both the target mounted and the source's rollback done; the block
//! never FSCK or an unknown sequence; recovery within the normal waits: the target that won
//! holds it (kmmpd writes, `--confirm` exits 0), otherwise a fresh node's gated mount succeeds
//! within the normal wait (a CLEAN block: 9 s; a stale one: 20 s); e2fsck clean at the end.

mod handoff_support;

use handoff_support::*;
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use std::process::Child;
use std::time::{Duration, Instant};
use test_support::prelude::*;

/// A gated mount of a block nobody holds: a stale block's full wait (11 s) plus the
/// verification (9 s), and slack for a loaded machine.
const NORMAL_WAIT: f64 = 30.0;

/// Source and target over one image, and a third node for the recovery, all with their own
/// mount directories (unmounted on drop before the loop devices go).
struct Rig {
    _guards: [Mount; 2],
    src: Host,
    tgt: Host,
    fresh: Host,
    a: Loop,
    b: Loop,
    img: Image,
}

impl Rig {
    fn new() -> Rig {
        let img = Image::new();
        let (a, b) = (Loop::attach(&img.path), Loop::attach(&img.path));
        let (src, tgt) = (Host::source(&img, &a.dev), Host::target(&img, &b.dev));
        let fresh = Host::new(&img, "z", &b.dev, Some("host-z"));
        Rig {
            _guards: [Mount::guard(&tgt.mnt), Mount::guard(&fresh.mnt)],
            src,
            tgt,
            fresh,
            a,
            b,
            img,
        }
    }

    /// The block a clean release by host-a leaves, then the source's offer: the nonce.
    fn offer(&self) -> String {
        clean_under(&self.a.dev, SOURCE);
        let o = self.src.offer(&hostname());
        o.expect(0, "offered");
        o.nonce()
    }

    /// The end of a round: the holder is the winner, or a fresh node's gated mount succeeds
    /// within the normal wait; then nothing is mounted and e2fsck finds the filesystem clean.
    fn recover(&self, target_won: Option<&str>, round: &str) {
        assert_not_stuck(&self.b.dev, round);
        if let Some(n) = target_won {
            let b = read_block(&self.b.dev);
            assert_eq!(b.nodename(), hostname(), "{round}: kmmpd holds it");
            assert!(still_written(&self.b.dev), "{round}: kmmpd writes");
            self.src.confirm(n).expect(0, "confirmed");
            self.tgt.umount();
        } else {
            let m = self.fresh.mount();
            m.expect(0, "mounted");
            let took = m.json["claim_seconds"].as_f64().unwrap();
            assert!(
                took < NORMAL_WAIT,
                "{round}: the fresh claim took {took:.1} s"
            );
            self.fresh.umount();
        }
        assert_fsck_clean(&self.b.dev);
    }
}

fn signal(child: &Child, sig: Signal) {
    let _ = kill(Pid::from_raw(child.id() as i32), sig);
}

/// What one round saw, for the log and the checks.
struct Round {
    delay_ms: u128,
    target: String,
    rollback: String,
    mounted: bool,
}

impl Round {
    /// The invariants of a round with a target crash (see the module documentation).
    fn check(&self, rb: &Run, round: &str) {
        let seen = format!(
            "{round}: signalled at {} ms: target {}, rollback {}, mounted {}",
            self.delay_ms, self.target, self.rollback, self.mounted
        );
        eprintln!("{seen}");
        assert!(
            !(self.mounted && rb.code == 0),
            "the target mounted AND the source rolled back: {seen}\n{rb:?}"
        );
        match rb.code {
            0 => assert!(
                matches!(
                    rb.json["rollback_path"].as_str(),
                    Some("fast" | "after_full_wait")
                ),
                "{round}: {rb:?}"
            ),
            // Refused only because the target holds the device.
            _ => {
                rb.expect(1, "target_holds");
                assert!(self.mounted, "refused, yet nothing mounted: {seen}\n{rb:?}");
            }
        }
    }
}

/// One round of a target crash: `stop` pauses it (SIGSTOP, SIGCONT after the rollback),
/// otherwise it is killed (SIGKILL).
fn target_crash_round(rig: &Rig, delay: Duration, stop: bool, round: &str) {
    let n = rig.offer();
    let child = spawn(rig.tgt.mount_handoff_cmd(&n));
    std::thread::sleep(delay);
    signal(
        &child,
        if stop {
            Signal::SIGSTOP
        } else {
            Signal::SIGKILL
        },
    );
    let t = Instant::now();
    let rb = rig.src.rollback(None);
    let rb_s = t.elapsed().as_secs_f64();
    assert_not_stuck(&rig.a.dev, round);
    if rb.code == 0 {
        // Before the paused target resumes: the rollback left it CLEAN under host-a.
        assert_clean_under(&rig.a.dev, SOURCE);
    }
    if stop {
        signal(&child, Signal::SIGCONT);
    }
    let out = Run::from_output(&wait_output(child, LIMIT));
    let r = Round {
        delay_ms: delay.as_millis(),
        target: format!("{} {}", out.code, out.result()),
        rollback: format!("{} {} {rb_s:.1}s", rb.result(), rb.json["rollback_path"]),
        mounted: rig.tgt.mounted(),
    };
    r.check(&rb, round);
    if stop && !r.mounted {
        // A resumed target that did not mount refused (or failed on I/O, never here).
        assert_eq!(out.code, 1, "{round}: {out:?}");
    }
    rig.recover(r.mounted.then_some(n.as_str()), round);
}

/// When to crash a process in round `i`: the rounds cycle through `windows` (milliseconds
/// after its start, so that each step of its run gets rounds of its own), uniformly within.
fn delay(rng: &mut Rng, i: usize, windows: &[(u64, u64)]) -> Duration {
    let (from, to) = windows[i % windows.len()];
    Duration::from_millis(from) + rng.millis(to - from)
}

/// The target's run (debug build, idle machine): its claim written within ~10 ms of its start,
/// verified for 0.6 s, then CLEAN and mount(8), done by ~650 ms.
const TARGET_WINDOWS: &[(u64, u64)] = &[(0, 10), (10, 600), (550, 900)];
/// The source's offer: its write within ~10 ms of its start, verified for 2.2 s.
const SOURCE_WINDOWS: &[(u64, u64)] = &[(0, 10), (10, 2_200), (2_100, 2_600)];

fn target_crash(stop: bool, seed: u64) {
    let rig = Rig::new();
    let mut rng = Rng::from_env(seed);
    let rounds = crash_rounds();
    for i in 0..rounds {
        let delay = delay(&mut rng, i, TARGET_WINDOWS);
        let sig = if stop {
            "target SIGSTOP"
        } else {
            "target SIGKILL"
        };
        target_crash_round(
            &rig,
            delay,
            stop,
            &format!("{sig} round {}/{rounds}", i + 1),
        );
    }
}

#[test]
fn loop_target_killed_at_random_moments() {
    if !require_devices() {
        return;
    }
    target_crash(false, 16_001);
}

#[test]
fn loop_target_paused_at_random_moments_while_the_source_rolls_back() {
    if !require_devices() {
        return;
    }
    target_crash(true, 16_002);
}

/// One round of a source crash: its offer killed `delay` into its run.
fn source_crash_round(rig: &Rig, delay: Duration, rollback: bool, round: &str) {
    clean_under(&rig.a.dev, SOURCE);
    let child = spawn(rig.src.offer_cmd(&hostname()));
    std::thread::sleep(delay);
    signal(&child, Signal::SIGKILL);
    let out = Run::from_output(&wait_output(child, LIMIT));
    assert_not_stuck(&rig.a.dev, round);
    let offered = record(&rig.a.dev).valid().cloned();
    eprintln!(
        "{round}: killed after {} ms: offer {} {}, on disk {offered:?}",
        delay.as_millis(),
        out.code,
        out.result()
    );
    // The nonce is printed only after the offer was verified: a killed offer printed none.
    if out.code != 0 {
        assert!(out.json["nonce"].is_null(), "{round}: {out:?}");
    }
    if rollback {
        let before = block_bytes(&rig.a.dev);
        let rb = rig.src.rollback(None);
        if offered.is_some() {
            rb.expect(0, "rolled_back");
            assert_eq!(rb.json["rollback_path"], "fast");
            assert_clean_under(&rig.a.dev, SOURCE);
        } else {
            rb.expect(1, "no_offer");
            assert_eq!(block_bytes(&rig.a.dev), before);
        }
    }
    rig.recover(None, round);
}

#[test]
fn loop_source_killed_at_random_moments_of_its_offer() {
    if !require_devices() {
        return;
    }
    let rig = Rig::new();
    let mut rng = Rng::from_env(16_003);
    let rounds = crash_rounds();
    for i in 0..rounds {
        let delay = delay(&mut rng, i, SOURCE_WINDOWS);
        let round = format!("source SIGKILL round {}/{rounds}", i + 1);
        // Alternate so that each window gets both recoveries.
        source_crash_round(&rig, delay, (i / SOURCE_WINDOWS.len()) % 2 == 0, &round);
    }
}

/// When a third node's normal gated mount (through its own device) starts, relative to the
/// source's offer.
#[derive(Debug, Clone, Copy)]
enum Third {
    /// Its claim write lands before, or right around, the offer's read.
    First,
    /// The offer starts first; the third's claim write lands during the offer's verification.
    During,
    /// After the verified offer: it watches the offer block (11 s) while the target claims.
    After,
}

/// One round of a race of the third node with the handoff, `delay` apart. Never both it and
/// the target mounted; the one that won holds the device.
fn third_node_round(rig: &Rig, third: &Host, when: Third, delay: Duration, round: &str) {
    clean_under(&rig.a.dev, SOURCE);
    let (o, third_child) = match when {
        Third::First => {
            let t = spawn(third.mount_cmd());
            std::thread::sleep(delay);
            (rig.src.offer(&hostname()), t)
        }
        Third::During => {
            let offer = spawn(rig.src.offer_cmd(&hostname()));
            std::thread::sleep(delay);
            let t = spawn(third.mount_cmd());
            (Run::from_output(&wait_output(offer, LIMIT)), t)
        }
        Third::After => {
            let o = rig.src.offer(&hostname());
            o.expect(0, "offered");
            let t = spawn(third.mount_cmd());
            std::thread::sleep(delay);
            (o, t)
        }
    };
    // The nonce only from an offer that was verified (the orchestrator gets nothing else).
    let n = (o.code == 0).then(|| o.nonce());
    let target = n.as_ref().map(|n| rig.tgt.mount_handoff(n));
    let out = Run::from_output(&wait_output(third_child, LIMIT));
    let (t_m, c_m) = (rig.tgt.mounted(), third.mounted());
    eprintln!(
        "{round}: third {when:?}, {} ms: offer {} {}, target {:?}, third {} {}; mounted: target {t_m}, third {c_m}",
        delay.as_millis(),
        o.code,
        o.result(),
        target.as_ref().map(|t| (t.code, t.result().to_string())),
        out.code,
        out.result()
    );
    assert!(!(t_m && c_m), "{round}: both mounted");
    if c_m {
        assert!(still_written(&rig.a.dev), "{round}: the third node's kmmpd");
        third.umount();
    }
    if t_m {
        rig.src
            .confirm(n.as_deref().unwrap())
            .expect(0, "confirmed");
        rig.tgt.umount();
    }
    assert_not_stuck(&rig.a.dev, round);
    assert_fsck_clean(&rig.b.dev);
}

#[test]
fn loop_a_third_nodes_mount_never_wins_beside_the_handoff() {
    if !require_devices() {
        return;
    }
    let rig = Rig::new();
    let c = Loop::attach(&rig.img.path);
    let third = Host::new(&rig.img, "c", &c.dev, Some("host-c"));
    let _guard = Mount::guard(&third.mnt);
    let mut rng = Rng::from_env(16_004);
    let rounds = crash_rounds();
    for i in 0..rounds {
        let round = format!("third node round {}/{rounds}", i + 1);
        let (when, delay) = match i % 3 {
            0 => (Third::First, rng.millis(20)),
            1 => (Third::During, rng.millis(40)),
            _ => (Third::After, rng.millis(3_000)),
        };
        third_node_round(&rig, &third, when, delay, &round);
    }
}
