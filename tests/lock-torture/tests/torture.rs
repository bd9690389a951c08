//! Torture mode must *detect* a broken lock implementation, not assume locks work.

mod common;

use std::time::Duration;

use common::{build_nolock_shim, cmd, json};
use test_support::cmd::describe;
use test_support::require::{cannot_run, have};
use test_support::spawn::run_with_timeout;

fn torture(
    dir: &std::path::Path,
    extra: &[&str],
    preload: Option<&std::path::Path>,
) -> (std::process::Output, serde_json::Value) {
    let mut c = cmd();
    c.args(["torture", "--json", "--duration", "1s", "--dir"])
        .arg(dir)
        .args(extra);
    if let Some(so) = preload {
        c.env("LD_PRELOAD", so);
    }
    let out = run_with_timeout(c, Duration::from_secs(60));
    let rep = json(&out);
    (out, rep)
}

#[test]
fn torture_detects_broken_locks_under_ld_preload_shim() {
    if !have("cc") {
        return cannot_run("no C compiler (Debian: gcc) to build the LD_PRELOAD shim");
    }
    let dir = tempfile::tempdir().unwrap();
    let so = match build_nolock_shim(dir.path()) {
        Ok(so) => so,
        Err(e) => return cannot_run(&format!("cannot build the shim: {e}")),
    };
    for (kind, extra) in [
        ("posix", vec!["--kind", "posix", "--procs", "4"]),
        (
            "ofd",
            vec!["--kind", "ofd", "--procs", "2", "--threads", "2"],
        ),
        ("flock", vec!["--kind", "flock", "--procs", "4"]),
    ] {
        let (out, rep) = torture(dir.path(), &extra, Some(&so));
        assert_eq!(out.status.code(), Some(1), "{kind}: {}", describe(&out));
        assert_eq!(rep["verdict"], "fail", "{kind}");
        assert!(rep["violations"].as_u64().unwrap() > 0, "{kind}: {rep}");
        // The shim really was in effect: a lock that always succeeds never conflicts.
        assert_eq!(rep["conflicts"], 0, "{kind}: {rep}");
        assert!(
            !rep["violation_samples"].as_array().unwrap().is_empty(),
            "{kind}"
        );
        let text = rep["violation_samples"].to_string();
        assert!(
            text.contains("changed while writer")
                || text.contains("lost updates")
                || text.contains("corrupt"),
            "{kind}: {text}"
        );
        // The file is kept for inspection after a failure.
        assert!(dir.path().join("lock-torture.dat").exists());
        std::fs::remove_file(dir.path().join("lock-torture.dat")).unwrap();
    }
}

#[test]
fn torture_passes_with_real_locks() {
    let dir = tempfile::tempdir().unwrap();
    for (kind, extra) in [
        ("posix", vec!["--kind", "posix", "--procs", "4"]),
        (
            "ofd",
            vec!["--kind", "ofd", "--procs", "2", "--threads", "2"],
        ),
    ] {
        let (out, rep) = torture(dir.path(), &extra, None);
        assert_eq!(out.status.code(), Some(0), "{kind}: {}", describe(&out));
        assert_eq!(rep["verdict"], "pass");
        assert_eq!(rep["violations"], 0);
        assert!(
            rep["conflicts"].as_u64().unwrap() > 0,
            "{kind}: no contention at all? {rep}"
        );
        let fc = &rep["file_check"];
        assert_eq!(fc["sum_counts"], fc["expected"], "{kind}");
        assert!(fc["expected"].as_u64().unwrap() > 0);
        assert!(rep["lock_latency"]["p99_us"].as_f64().unwrap() > 0.0);
        assert_eq!(rep["ops"], rep["lock_latency"]["count"]);
        // A clean run removes its file.
        assert!(!dir.path().join("lock-torture.dat").exists());
    }
}

#[test]
fn torture_rejects_bad_options_with_exit_2() {
    let dir = tempfile::tempdir().unwrap();
    for (args, needle) in [
        (vec!["--threads", "2"], "POSIX"),
        (vec!["--procs", "0"], "--procs"),
        (
            vec!["--max-records", "100", "--records", "10"],
            "--max-records",
        ),
        (vec!["--file", "../escape"], "single path component"),
        (vec!["--duration", "forever"], "not a duration"),
        (vec!["--kind", "mandatory"], "invalid value"),
    ] {
        let mut c = cmd();
        c.args(["torture", "--dir"]).arg(dir.path()).args(&args);
        let out = run_with_timeout(c, Duration::from_secs(30));
        assert_eq!(out.status.code(), Some(2), "{args:?}: {}", describe(&out));
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains(needle), "{args:?}: {err}");
        assert!(out.stdout.is_empty(), "{args:?}");
    }
    assert_eq!(
        std::fs::read_dir(dir.path()).unwrap().count(),
        0,
        "nothing may be written"
    );
}
