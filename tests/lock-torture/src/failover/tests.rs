use std::collections::BTreeSet;
use std::time::Duration;

use super::events::{
    mono_ns, HolderEvent, IoResult, ProbeEvent, ProbeMode, ProbeResult, ProbeState,
};
use super::plan::{prepare_targets, validate};
use super::verdict::{judge_probe, FailoverReport, Holders, LockState, LossEvent};
use super::{FailoverError, FailoverOptions};
use crate::lock::{LockKind, Range};
use crate::stats::ErrnoCounts;

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

/// Judge `results` with no grant times recorded (every check counts).
fn judge(
    rep: &mut FailoverReport,
    state: &mut [LockState],
    results: &[ProbeResult],
    kind: LockKind,
    current_pid: Option<i64>,
    pids: &BTreeSet<i64>,
) {
    judge_probe(
        rep,
        state,
        results,
        &Holders {
            kind,
            current_pid,
            pids,
            acquired_at: &[],
        },
        &lose_fn,
    );
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
    judge(
        &mut rep,
        &mut state,
        &results,
        LockKind::Posix,
        Some(200),
        &pids,
    );
    assert_eq!(
        state,
        vec![LockState::Held, LockState::Held, LockState::Lost]
    );
    assert_eq!((rep.locks_lost, rep.free_observations), (1, 1));
    // Seeing it free again does not count a second loss, but counts the observation only
    // while it was believed held.
    judge(
        &mut rep,
        &mut state,
        &[pr(2, ProbeState::Free, None)],
        LockKind::Posix,
        Some(200),
        &pids,
    );
    assert_eq!((rep.locks_lost, rep.free_observations), (1, 1));
    // Another pid holds lock 0.
    judge(
        &mut rep,
        &mut state,
        &[pr(0, ProbeState::Held, Some(999))],
        LockKind::Posix,
        Some(200),
        &pids,
    );
    assert_eq!((rep.locks_lost, rep.foreign_holder_observations), (2, 1));
    // OFD locks report l_pid -1: never "foreign".
    let mut state = vec![LockState::Held];
    judge(
        &mut rep,
        &mut state,
        &[pr(0, ProbeState::Held, Some(-1))],
        LockKind::Ofd,
        Some(200),
        &pids,
    );
    assert_eq!(state, vec![LockState::Held]);
    // setlk probe granted: a conflicting grant and a loss.
    judge(
        &mut rep,
        &mut state,
        &[pr(0, ProbeState::Granted, None)],
        LockKind::Flock,
        Some(200),
        &pids,
    );
    assert_eq!((rep.conflicting_grants, state[0]), (1, LockState::Lost));
    // Out-of-range lock numbers are ignored, errors counted.
    let mut e = pr(0, ProbeState::Error, None);
    e.errno = Some("ENOLCK".into());
    judge(
        &mut rep,
        &mut state,
        &[pr(9, ProbeState::Free, None), e],
        LockKind::Posix,
        None,
        &pids,
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
