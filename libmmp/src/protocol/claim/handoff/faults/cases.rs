//! The eight fault cases, each swept with its fault at every operation of the faulted actor
//! and random timing, and the outcome each case must have (the table in HANDOFF.md).

use super::*;

/// Invariant 3: the expected outcome of each case (the table in HANDOFF.md).
fn check_expected(r: &Run) {
    let o = &r.out;
    let offer_ok = matches!(o.offer, Some(Ok(())));
    let confirm = o.confirm.as_ref().map(|c| c.1.clone());
    let confirmed = matches!(confirm, Some(Ok(())));
    let rollback = o
        .rollback
        .as_ref()
        .map(|x| x.as_ref().map(|p| p.name()).map_err(|e| e.as_str()));
    let d_elapsed = o.d.as_ref().and_then(|d| d.1.as_ref().ok().copied());
    let a_holds = o.holds.iter().any(|h| h.actor == A);
    let no_holder = o.holds.iter().all(|h| h.actor == D);
    let b_landed = r.wrote(B, |p| p == Phase::Claim);
    let b_beat = r.wrote(B, Phase::holder);
    let expect = |ok: bool, what: &str| {
        if !ok {
            r.fail(&format!("expected {what}; got {}", r.signature()));
        }
    };
    // Everywhere: a confirm is a holder's write of the target that it saw.
    if let Some((t0, Ok(()))) = &o.confirm {
        let seen = r.logs[B]
            .iter()
            .any(|x| x.write && x.ok && x.phase.holder() && x.at >= *t0);
        expect(seen, "a confirm only after the target's holder wrote");
    }
    let handoff_done = |r: &Run| {
        expect(o.b_claim == Some(Ok(())), "the target's claim to win");
        expect(confirmed, "the confirm to see the target's holder");
        expect(o.rollback.is_none() && !a_holds, "no rollback");
        expect(
            r.alive(B) && d_elapsed.is_none(),
            "the target to hold at the end",
        );
    };
    // A third node's write changes every step's outcome (the invariants still hold).
    if r.w.case != Case::ThirdDown && r.wrote(C, |_| true) {
        return;
    }
    let stopped = r.w.stop.is_some();
    match r.w.case {
        Case::TargetCrash | Case::TargetEio | Case::TargetOff if !stopped => {
            expect(offer_ok, "the offer to stand (the source is healthy)");
            if !b_landed {
                expect(
                    confirm == Some(Err("not_confirmed".into())),
                    "confirm refused",
                );
                expect(rollback == Some(Ok("fast")) && a_holds, "a fast rollback");
            } else if !b_beat {
                expect(
                    confirm == Some(Err("not_confirmed".into())),
                    "confirm refused",
                );
                expect(
                    rollback == Some(Ok("after_full_wait")) && a_holds,
                    "a rollback after the full wait",
                );
            } else if r.alive(B) {
                handoff_done(r);
            } else if !confirmed {
                expect(
                    confirm == Some(Err("not_confirmed".into())),
                    "confirm refused",
                );
                expect(
                    rollback == Some(Ok("after_full_wait")),
                    "a rollback after the full wait",
                );
            }
        }
        Case::SourceCrash | Case::SourceEio | Case::SourceOff => {
            let a_landed = r.wrote(A, |p| p == Phase::Offer);
            if !offer_ok {
                expect(o.b_claim.is_none() && no_holder, "nobody to claim or hold");
                let full = d_elapsed.is_some_and(|e| e >= Duration::from_secs(20));
                let clean = d_elapsed
                    .is_some_and(|e| e >= Duration::from_secs(9) && e < Duration::from_secs(11));
                expect(
                    if a_landed { full } else { clean },
                    "the normal wait for the fresh node",
                );
                return;
            }
            match r.w.plan {
                Plan::Handoff => handoff_done(r),
                Plan::Abort => {
                    let ok = matches!(rollback, Some(Ok("fast")) | Some(Err("error" | "stalled")));
                    expect(ok, "a fast rollback or an error of the source's own");
                    if matches!(rollback, Some(Err(_))) {
                        expect(no_holder, "no holder");
                        expect(
                            d_elapsed.is_some_and(|e| e >= Duration::from_secs(20)),
                            "the normal wait",
                        );
                    }
                }
                Plan::Cancel => {
                    expect(
                        o.cancel
                            .as_ref()
                            .is_some_and(|c| c.as_ref() == Ok(&RollbackPath::Cancelled)),
                        "the cancel to be accepted",
                    );
                    expect(
                        o.b_after_cancel.as_deref() == Some("rolled_back"),
                        "the target's claim refused after the cancel",
                    );
                    expect(no_holder, "no holder");
                    expect(
                        d_elapsed.is_some_and(|e| e >= Duration::from_secs(20)),
                        "the normal wait",
                    );
                }
                Plan::Race => unreachable!(),
            }
        }
        Case::ThirdDown if !r.wrote(C, |_| true) => {
            expect(offer_ok, "the offer to stand (the third node never wrote)");
            handoff_done(r);
        }
        _ => {}
    }
}

fn replay(case: Case, seed: u64, k: Option<usize>) -> Run {
    let r = run(case, seed, k);
    r.check_invariants();
    check_expected(&r);
    r
}

/// Run `case` with the fault at every operation of the faulted actor (as counted in the run
/// without the fault, up to its holder's first writes, and a few beyond), seed after seed,
/// until at least `min_runs` runs. Returns the outcomes and how often each happened.
fn sweep(case: Case, min_runs: usize) -> BTreeMap<String, usize> {
    let mut seen = BTreeMap::new();
    let mut runs = 0;
    let mut seed = 0;
    while runs < min_runs {
        let base = replay(case, seed, None);
        let faulted = base.w.faulted();
        let n = base.out.quiet_ops[faulted].unwrap_or(0) + 5;
        for k in 0..n {
            let r = replay(case, seed, Some(k));
            *seen.entry(r.signature()).or_insert(0) += 1;
        }
        runs += n + 1;
        seed += 1;
    }
    eprintln!("case {} ({case:?}): {runs} runs, {seed} seeds", case as u8);
    for (sig, n) in &seen {
        eprintln!("  {n:5}  {sig}");
    }
    seen
}

const RUNS: usize = 1_000;

#[test]
fn case1_target_process_crashes_or_stops_at_every_step() {
    sweep(Case::TargetCrash, RUNS);
}

#[test]
fn case2_targets_path_fails_at_every_step() {
    sweep(Case::TargetEio, RUNS);
}

#[test]
fn case3_source_process_crashes_or_stops_at_every_step() {
    sweep(Case::SourceCrash, RUNS);
}

#[test]
fn case4_sources_path_fails_at_every_step() {
    sweep(Case::SourceEio, RUNS);
}

#[test]
fn case5_degraded_disk_on_either_side_from_every_step() {
    sweep(Case::Degraded, RUNS);
}

#[test]
fn case6_third_node_goes_down_at_every_step_of_its_claim() {
    sweep(Case::ThirdDown, RUNS);
}

#[test]
fn case7_target_powers_off_at_every_step() {
    sweep(Case::TargetOff, RUNS);
}

#[test]
fn case8_source_powers_off_at_every_step() {
    sweep(Case::SourceOff, RUNS);
}

/// Every actor but the fresh node faulted at once, at random steps: the invariants hold.
/// `MMP_HANDOFF_CHAOS_RUNS=N` runs more (a longer hunt than CI's).
#[test]
fn chaos_random_faults_on_every_actor_at_once() {
    let runs = std::env::var("MMP_HANDOFF_CHAOS_RUNS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(RUNS as u64);
    let mut seen = BTreeMap::new();
    for seed in 0..runs {
        let r = replay(Case::Chaos, seed, Some(0));
        *seen.entry(r.signature()).or_insert(0) += 1;
    }
    eprintln!("chaos: {runs} runs, {} outcomes", seen.len());
}

/// B claimed and went down; a third node then claimed the device the normal way and holds it.
/// The source's rollback must refuse, naming the third node; but it says the handoff went
/// through to the target and to hand the device back from there.
#[test]
fn a_rollback_refused_by_a_third_holder_names_it_not_the_target() {
    use crate::protocol::check::tests::shared;
    use crate::testing::FakeClock;
    let clock = FakeClock::default();
    let mut clean = MmpBlock::new(0x77, 100, "a", "sdb", 5);
    clean.mmp_seq = EXT4_MMP_SEQ_CLEAN;
    let dev = MemDevice::new("img", image(true, &clean).snapshot());
    let fs = MmpFs::open(&dev).unwrap();
    let mut n = 0x100;
    let mut seqs = || {
        n += 1;
        Ok(n)
    };
    let noop = &mut |_: ClaimPhase, _: Duration, _: Duration| {};
    offer(
        &fs,
        &clock,
        &mut seqs,
        &mut || Ok(NONCE),
        &opts("a"),
        "b",
        noop,
    )
    .unwrap();
    let mode = ClaimMode::HolderFollows;
    let b = claim_handoff(
        &fs,
        &clock,
        &mut seqs,
        &opts("b"),
        mode,
        NONCE,
        &|| false,
        noop,
    );
    let claimed = b.unwrap().claimed.block;
    // From now on node c's heartbeat (a new sequence every second).
    let t0 = clock.now();
    let held = shared(true, &claimed, &clock, move |t| {
        let s = t.saturating_sub(t0).as_millis() as u32 / 1000;
        (t > t0).then(|| MmpBlock::new(0x9000 + s, 1, "c", "sdc", 5))
    });
    let fs = MmpFs::open(&held).unwrap();
    let e = rollback(&fs, &clock, &mut seqs, &opts("a"), Some(NONCE), noop).unwrap_err();
    assert!(held.writes.borrow().is_empty(), "the rollback wrote");
    assert_ne!(e.name(), "target_holds", "{e}");
    assert!(e.to_string().contains("'c'"), "{e}");
}
