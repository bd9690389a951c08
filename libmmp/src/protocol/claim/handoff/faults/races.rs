//! Deterministic races on an offered block, at every start offset in small steps and with
//! slow writes: the source's fast rollback against the target's claim, and two target
//! claimers (two processes on the target) with the same nonce. Exactly one wins, and exactly
//! one holder is left, its holding never overlapping the loser's.

use super::*;
use crate::protocol::check::tests::image;
use crate::testing::FakeClock;

/// The device after A's verified offer to B.
fn offered() -> Vec<u8> {
    let mut clean = MmpBlock::new(0x77, 100, "a", "sdb", 5);
    clean.mmp_seq = EXT4_MMP_SEQ_CLEAN;
    let dev = MemDevice::new("img", image(true, &clean).snapshot());
    let fs = MmpFs::open(&dev).unwrap();
    let mut n = 0x4000;
    let mut seqs = || {
        n += 1;
        Ok(n)
    };
    offer(
        &fs,
        &FakeClock::default(),
        &mut seqs,
        &mut || Ok(NONCE),
        &opts("a"),
        "b",
        &mut |_, _, _| {},
    )
    .unwrap();
    dev.snapshot()
}

fn racer_rollback(cx: Ctx<'_>) {
    cx.clock.sleep(cx.w.starts[cx.me]);
    cx.disk.set_phase(Phase::Rollback);
    let o = cx.opts();
    let mut n = 0x100;
    let mut seqs = || {
        n += 1;
        Ok(n)
    };
    let r = rollback(
        &cx.fs,
        &cx.clock,
        &mut seqs,
        &o,
        Some(NONCE),
        &mut |_, _, _| {},
    );
    cx.out().rollback = Some(
        r.as_ref()
            .map(|r| r.path.clone())
            .map_err(|e| e.name().into()),
    );
    if r.is_ok() {
        cx.hold_after_rollback();
    }
}

fn racer_claim(cx: Ctx<'_>) {
    cx.clock.sleep(cx.w.starts[cx.me]);
    cx.disk.set_phase(Phase::Claim);
    let o = cx.opts();
    // Distinct sequences per claimer: two processes on one node draw different ones.
    let mut n = 0x1000 * (cx.me as u32 + 1);
    let mut seqs = || {
        n += 1;
        Ok(n)
    };
    let mode = ClaimMode::HolderFollows;
    let r = claim_handoff(
        &cx.fs,
        &cx.clock,
        &mut seqs,
        &o,
        mode,
        NONCE,
        &|| false,
        &mut |_, _, _| {},
    );
    cx.out().claims.push((cx.me, name(&r)));
    if let Ok(c) = r {
        cx.hold(Some(&c.claimed));
    }
}

fn stopper(cx: Ctx<'_>) {
    cx.clock.sleep(Duration::from_secs(50));
    cx.clock.sim.stop();
}

/// Race `actors` (the last one stops the run) on the offered device: every write takes
/// `delay`, holders are `kind`, polls every 50 ms.
fn race(actors: &[Actor], starts: &[Duration], delay: Duration, kind: Kind, seed: u64) -> Run {
    let mut w = World::new(Case::TargetCrash, seed, None);
    w.events = false;
    w.stop = None;
    w.poll = Duration::from_millis(50);
    w.kind = [kind; 5];
    w.latency = [delay; 5];
    w.starts = starts.to_vec();
    w.what = format!(
        "race of {:?} starting at {starts:?}, writes {delay:?}, holders {kind:?}",
        actors.iter().map(|a| a.0).collect::<Vec<_>>()
    );
    simulate(w, offered(), actors, Vec::new())
}

/// Exactly one claim-level winner and exactly one holder left, which is that winner.
fn exactly_one(r: &Run, winner_of: impl Fn(&Run) -> Vec<usize>) {
    r.check_one_holder_at_a_time();
    let winners = winner_of(r);
    if winners.len() != 1 {
        r.fail(&format!("{} winners: {winners:?}", winners.len()));
    }
    let alive: Vec<_> = r
        .out
        .holds
        .iter()
        .filter(|h| h.end == HoldEnd::Alive)
        .map(|h| h.actor)
        .collect();
    if alive != winners {
        r.fail(&format!(
            "holders alive at the end {alive:?}, winner {winners:?}"
        ));
    }
}

fn claim_winners(r: &Run) -> Vec<usize> {
    r.out
        .claims
        .iter()
        .filter(|c| c.1.is_ok())
        .map(|c| c.0)
        .collect()
}

/// A's fast rollback (at 1.5 s) against B's claim with the nonce (at 0 to 3 s by 50 ms),
/// writes taking 0, 300 or 450 ms, both holder kinds.
#[test]
fn fast_rollback_races_the_targets_claim_at_every_offset() {
    let actors: [Actor; 3] = [("a", racer_rollback), ("b", racer_claim), ("s", stopper)];
    let mut seen = BTreeMap::new();
    for offset_ms in (0..=3_000).step_by(50) {
        for delay_ms in [0, 300, 450] {
            for kind in [Kind::Kmmpd, Kind::Mmpd] {
                let starts = [
                    Duration::from_millis(1_500),
                    Duration::from_millis(offset_ms),
                    Duration::ZERO,
                ];
                let r = race(
                    &actors,
                    &starts,
                    Duration::from_millis(delay_ms),
                    kind,
                    offset_ms,
                );
                exactly_one(&r, |r| {
                    let mut w = claim_winners(r);
                    if matches!(r.out.rollback, Some(Ok(_))) {
                        w.insert(0, 0);
                    }
                    w
                });
                *seen.entry(r.signature()).or_insert(0) += 1;
            }
        }
    }
    eprintln!("rollback against claim: {seen:#?}");
    assert!(seen.keys().any(|s| s.contains("rollback=fast")), "{seen:?}");
    assert!(
        seen.keys().any(|s| s.contains("rollback=target_holds")),
        "{seen:?}"
    );
}

/// Two claimers on the target with the same nonce, the second 0 to 1 s after the first by
/// 10 ms, writes taking 0, 300 or 450 ms, both holder kinds.
#[test]
fn two_target_claimers_with_the_same_nonce_exactly_one_wins() {
    let actors: [Actor; 3] = [("b", racer_claim), ("b", racer_claim), ("s", stopper)];
    for offset_ms in (0..=1_000).step_by(10) {
        for delay_ms in [0, 300, 450] {
            for kind in [Kind::Kmmpd, Kind::Mmpd] {
                let starts = [
                    Duration::ZERO,
                    Duration::from_millis(offset_ms),
                    Duration::ZERO,
                ];
                let r = race(
                    &actors,
                    &starts,
                    Duration::from_millis(delay_ms),
                    kind,
                    offset_ms,
                );
                exactly_one(&r, claim_winners);
            }
        }
    }
}

/// The target claimed and its `mmp-tool mount` wrote CLEAN; the source's rollback (its
/// full-wait claim, which does not wait on CLEAN) writes at once and then sees the target's
/// kernel mount write: the target holds the device, and the rollback should say so as it
/// does when its watch sees the holder (`target_holds`), not `lost`.
#[test]
fn a_rollback_that_races_the_targets_mount_says_the_target_holds() {
    let actors: [Actor; 3] = [("a", racer_rollback), ("b", racer_claim), ("s", stopper)];
    let starts = [Duration::from_millis(1_500), Duration::ZERO, Duration::ZERO];
    let r = race(&actors, &starts, Duration::from_millis(300), Kind::Kmmpd, 0);
    exactly_one(&r, claim_winners);
    assert_eq!(
        r.out.rollback,
        Some(Err("target_holds".to_string())),
        "{}",
        r.signature()
    );
}

/// The target's `mmp-tool mount` is stopped (SIGSTOP, a paused VM) after its claim returned,
/// between the compare-read of `claim::release` and its CLEAN write, for 35 s. The source's
/// confirm is refused and its rollback takes the device back after the full wait (the
/// target's claim block is stale) and mounts. Then the target resumes: its CLEAN lands over
/// the source's kmmpd block, and the kernel mounts the CLEAN block at once: two holders.
#[test]
fn a_target_mount_stopped_past_its_lease_must_not_mount() {
    let actors: [Actor; 3] = [("a", racer_rollback), ("b", racer_claim), ("s", stopper)];
    let mut w = World::new(Case::TargetCrash, 0, None);
    w.events = false;
    w.stop = None;
    w.poll = Duration::from_millis(50);
    w.kind = [Kind::Kmmpd; 5];
    w.latency = [Duration::ZERO; 5];
    w.starts = vec![Duration::from_secs(3), Duration::ZERO, Duration::ZERO];
    // B's claim reads once, compare-reads, writes and verifies in 12 reads (0.6 s at 50 ms);
    // op 15 is release's compare-read, op 16 its CLEAN write.
    let stop = Fault::Stop {
        at: 16,
        for_: Duration::from_secs(35),
    };
    w.chaos = Some([Fault::None, stop, Fault::None, Fault::None, Fault::None]);
    w.what = "target mount stopped 35 s before its CLEAN write, source rolls back at 3 s".into();
    let r = simulate(w, offered(), &actors, Vec::new());
    let late_clean = r.logs[B]
        .iter()
        .any(|o| o.write && o.phase == Phase::Tool && o.at > Duration::from_secs(30));
    assert!(
        late_clean,
        "the stop did not hit the CLEAN write: {:?}",
        r.logs[B]
    );
    assert_eq!(r.out.rollback, Some(Ok(RollbackPath::AfterFullWait)));
    // release_for_mount: the write came after the lease, so the target does not mount (its
    // kernel never writes). The late CLEAN itself cannot be stopped (the compare-and-write is
    // not atomic); the source's kmmpd rewrites it at its next update (HANDOFF.md).
    let b_holds: Vec<_> = r.out.holds.iter().filter(|h| h.actor == B).collect();
    assert!(
        b_holds.iter().all(|h| h.end == HoldEnd::MountAborted),
        "{:?}",
        r.out.holds
    );
    assert!(
        !r.logs[B]
            .iter()
            .any(|o| o.write && o.phase == Phase::Kernel),
        "the target's kernel wrote: it mounted"
    );
    assert!(r
        .out
        .holds
        .iter()
        .any(|h| h.actor == 0 && h.end == HoldEnd::Alive));
}
