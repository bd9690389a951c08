use std::fs::OpenOptions;
use std::os::unix::fs::FileExt;
use std::path::Path;
use std::time::{Duration, Instant};

use super::worker::{contend, Rng};
use super::*;
use crate::lock::LockKind;
use crate::record::Record;

pub(crate) fn params() -> TortureParams {
    TortureParams {
        kind: LockKind::Posix,
        procs: 2,
        threads: 1,
        duration_ms: 100,
        file: "t.dat".into(),
        records: 16,
        max_records: 4,
        read_percent: 20,
        hold_us: 0,
        id_base: 0,
        seed: 1,
    }
}

#[test]
fn validation() {
    assert_eq!(params().validate(), Ok(()));
    let mut p = params();
    p.threads = 2;
    assert!(p.validate().unwrap_err().to_string().contains("POSIX"));
    p.kind = LockKind::Ofd;
    assert_eq!(p.validate(), Ok(()));
    let mut p = params();
    p.max_records = 17;
    assert!(p.validate().is_err());
    let mut p = params();
    p.file = "../x".into();
    assert!(p.validate().is_err());
    let mut p = params();
    p.procs = 0;
    assert!(p.validate().is_err());
}

#[test]
fn single_thread_contention_in_process_is_consistent() {
    // One thread, real locks, real file: the bookkeeping must add up exactly.
    let dir = tempfile::tempdir().unwrap();
    let mut p = params();
    p.kind = LockKind::Ofd;
    let path = prepare_file(dir.path(), &p).unwrap();
    let f = OpenOptions::new()
        .read(true)
        .write(true)
        .open(&path)
        .unwrap();
    let st = contend(
        &f,
        &p,
        7,
        Rng(42),
        Instant::now() + Duration::from_millis(50),
    );
    assert!(st.ops > 0);
    assert_eq!(st.ops, st.write_ops + st.read_ops);
    assert_eq!(st.violations, 0, "{:?}", st.violation_samples);
    assert_eq!(st.lock_latency.count(), st.ops);
    let check = verify_file(&path, p.kind, st.increments).unwrap();
    assert!(check.ok(), "{check:?}");
    assert_eq!(check.records, 16);
}

#[test]
fn verify_detects_lost_updates_and_corruption() {
    let dir = tempfile::tempdir().unwrap();
    let p = params();
    let path = prepare_file(dir.path(), &p).unwrap();
    let f = OpenOptions::new().write(true).open(&path).unwrap();
    f.write_all_at(
        &Record {
            writer: 1,
            seq: 1,
            count: 5,
        }
        .encode(),
        0,
    )
    .unwrap();
    let check = verify_file(&path, p.kind, 6).unwrap();
    assert_eq!((check.sum_counts, check.ok()), (5, false));
    f.write_all_at(b"garbage!", 64).unwrap();
    let check = verify_file(&path, p.kind, 5).unwrap();
    assert_eq!(check.corrupt_count, 1);
    assert!(!check.ok());
    assert!(
        check.corrupt[0].starts_with("record 2:"),
        "{:?}",
        check.corrupt
    );
}

fn run(stats: WorkerStats) -> LocalRun {
    LocalRun {
        stats,
        procs: 1,
        elapsed: Duration::from_secs(2),
    }
}

#[test]
fn report_verdicts() {
    let p = params();
    let good = FileCheck {
        records: 16,
        sum_counts: 10,
        expected: 10,
        corrupt: vec![],
        corrupt_count: 0,
    };
    let mut st = WorkerStats {
        ops: 100,
        increments: 10,
        ..Default::default()
    };
    st.lock_latency.record_ns(1_000);
    let r = TortureReport::build(
        Path::new("/x"),
        "tmpfs",
        &p,
        vec![("a".into(), run(st.clone()))],
        good.clone(),
    );
    assert!(r.passed());
    assert_eq!(r.ops_per_sec, 50.0);
    assert!(r.render_text().contains("verdict: PASS"));

    let lost = FileCheck {
        sum_counts: 9,
        ..good.clone()
    };
    let r = TortureReport::build(
        Path::new("/x"),
        "tmpfs",
        &p,
        vec![("a".into(), run(st.clone()))],
        lost,
    );
    assert!(!r.passed());
    assert_eq!(r.violations, 1);
    assert!(r.violation_samples[0].contains("lost updates"));

    let mut failing = st.clone();
    failing.errors.add("ENOLCK", 3);
    let r = TortureReport::build(
        Path::new("/x"),
        "nfs",
        &p,
        vec![("a".into(), run(failing))],
        good.clone(),
    );
    assert!(!r.passed());
    assert_eq!(r.violations, 0);
    assert!(r.render_text().contains("ENOLCK=3"));

    // Two hosts: counts add, elapsed is the longest.
    let r = TortureReport::build(
        Path::new("/x"),
        "nfs",
        &p,
        vec![("a".into(), run(st.clone())), ("b".into(), run(st))],
        FileCheck {
            expected: 20,
            sum_counts: 20,
            ..good
        },
    );
    assert_eq!((r.ops, r.hosts.len()), (200, 2));
    let json = serde_json::to_string(&r).unwrap();
    let back: TortureReport = serde_json::from_str(&json).unwrap();
    assert_eq!(back, r);
}

#[test]
fn merge_caps_samples() {
    let mut a = WorkerStats::default();
    for i in 0..20 {
        a.violation(format!("v{i}"));
    }
    let mut b = WorkerStats::default();
    b.merge(&a);
    b.merge(&a);
    assert_eq!(b.violations, 40);
    assert_eq!(b.violation_samples.len(), MAX_SAMPLES);
}
