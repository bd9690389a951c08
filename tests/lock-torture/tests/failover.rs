//! Failover mode on a local filesystem: a killed holder is a lost lock, and must be reported.

mod common;

use std::path::Path;
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use common::{cmd, json};
use lock_torture::failover::{read_status, Status};
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use test_support::cmd::describe;
use test_support::spawn::wait_output;

fn start(dir: &Path, extra: &[&str]) -> Child {
    let mut c = cmd();
    c.args([
        "failover",
        "--json",
        "--locks",
        "3",
        "--interval",
        "50ms",
        "--probe-interval",
        "50ms",
        "--status-file",
    ])
    .arg(dir.join("status.json"))
    .arg("--dir")
    .arg(dir)
    .args(extra)
    .stdout(Stdio::piped())
    .stderr(Stdio::piped());
    c.spawn().expect("spawn failover")
}

/// Wait until the status file shows every lock held by a live holder.
fn wait_ready(dir: &Path, child: &mut Child) -> Status {
    let end = Instant::now() + Duration::from_secs(20);
    loop {
        if let Some(st) = read_status(&dir.join("status.json")) {
            if st.holder_pid.is_some()
                && st.locks.iter().all(|s| s == "held")
                && st.probe_pid.is_some()
            {
                return st;
            }
        }
        if let Ok(Some(status)) = child.try_wait() {
            panic!("failover exited early: {status}");
        }
        assert!(Instant::now() < end, "failover never became ready");
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn failover_reports_lost_locks_when_the_holder_is_killed_and_restarted() {
    let dir = tempfile::tempdir().unwrap();
    let mut child = start(dir.path(), &["--duration", "2500ms"]);
    let st = wait_ready(dir.path(), &mut child);
    let holder = st.holder_pid.unwrap();
    assert_ne!(holder, child.id());
    // Let a few write rounds happen, then kill the holder helper (our own descendant).
    std::thread::sleep(Duration::from_millis(300));
    kill(Pid::from_raw(holder as i32), Signal::SIGKILL).unwrap();
    // The supervisor restarts it: a new holder pid appears and retakes the locks.
    let end = Instant::now() + Duration::from_secs(10);
    loop {
        if let Some(st) = read_status(&dir.path().join("status.json")) {
            if st.holder_generation == 2 && st.holder_pid.is_some_and(|p| p != holder) {
                break;
            }
        }
        assert!(Instant::now() < end, "holder was not restarted");
        std::thread::sleep(Duration::from_millis(20));
    }
    let out = wait_output(child, Duration::from_secs(30));
    let rep = json(&out);
    assert_eq!(out.status.code(), Some(1), "{}", describe(&out));
    assert_eq!(rep["verdict"], "fail");
    assert_eq!(rep["locks"], 3);
    assert_eq!(rep["locks_lost"], 3, "{rep}");
    assert_eq!(rep["holder_restarts"], 1, "{rep}");
    // The restarted holder took them back, and the final probe confirmed it.
    assert_eq!(rep["locks_held_at_end"], 3, "{rep}");
    let events = rep["loss_events"].as_array().unwrap();
    assert_eq!(events.len(), 3);
    assert!(
        events
            .iter()
            .all(|e| e["reason"].as_str().unwrap().contains("SIGKILL")),
        "{rep}"
    );
    assert!(rep["holder_exits"][0].as_str().unwrap().contains("SIGKILL"));
    assert!(rep["writes_ok"].as_u64().unwrap() > 3);
    assert_eq!(rep["conflicting_grants"], 0);
    assert!(rep["longest_io_gap_ms"].as_f64().unwrap() >= 50.0, "{rep}");
    // Every helper is gone.
    assert!(
        kill(Pid::from_raw(holder as i32), None).is_err(),
        "old holder still alive"
    );
}

#[test]
fn failover_without_restart_lets_the_setlk_probe_take_the_lock() {
    let dir = tempfile::tempdir().unwrap();
    let mut child = start(
        dir.path(),
        &[
            "--duration",
            "1500ms",
            "--no-restart",
            "--probe",
            "setlk",
            "--kind",
            "ofd",
        ],
    );
    let st = wait_ready(dir.path(), &mut child);
    std::thread::sleep(Duration::from_millis(200));
    kill(
        Pid::from_raw(st.holder_pid.unwrap() as i32),
        Signal::SIGKILL,
    )
    .unwrap();
    let out = wait_output(child, Duration::from_secs(30));
    let rep = json(&out);
    assert_eq!(out.status.code(), Some(1), "{}", describe(&out));
    assert_eq!(rep["holder_restarts"], 0);
    assert_eq!(rep["locks_lost"], 3);
    assert_eq!(rep["locks_held_at_end"], 0);
    // With nobody holding the ranges, another owner is granted conflicting locks.
    assert!(rep["conflicting_grants"].as_u64().unwrap() >= 3, "{rep}");
}

#[test]
fn failover_runs_until_sigterm_and_reports_a_clean_hold() {
    let dir = tempfile::tempdir().unwrap();
    let mut child = start(dir.path(), &["--kind", "posix"]);
    wait_ready(dir.path(), &mut child);
    std::thread::sleep(Duration::from_millis(500));
    kill(Pid::from_raw(child.id() as i32), Signal::SIGTERM).unwrap();
    let out = wait_output(child, Duration::from_secs(30));
    let rep = json(&out);
    assert_eq!(out.status.code(), Some(0), "{}", describe(&out));
    assert_eq!(rep["stopped_by"], "SIGINT/SIGTERM");
    assert_eq!(rep["verdict"], "pass");
    assert_eq!(rep["locks_lost"], 0);
    assert_eq!(rep["locks_held_at_end"], 3);
    assert_eq!(rep["free_observations"], 0);
    assert_eq!(rep["foreign_holder_observations"], 0);
    assert!(rep["probe_rounds"].as_u64().unwrap() >= 3, "{rep}");
    assert!(rep["writes_ok"].as_u64().unwrap() >= 9, "{rep}");
    // The holder wrote its stamps through the locks.
    let data = std::fs::read(dir.path().join("lock-torture-failover.dat")).unwrap();
    assert!(String::from_utf8_lossy(&data[..200]).contains("lock-torture holder pid"));
    // The final status shows no live helpers.
    let st = read_status(&dir.path().join("status.json")).unwrap();
    assert_eq!(st.holder_pid, None);
}

#[test]
fn failover_refuses_to_start_when_a_lock_is_already_taken() {
    use lock_torture::lock::{lock, LockKind, LockType, Range};
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("lock-torture-failover.dat");
    let f = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(&path)
        .unwrap();
    // An OFD lock held by this test on the second range.
    lock(
        &f,
        LockKind::Ofd,
        LockType::Write,
        Range::new(4096, 1),
        false,
    )
    .unwrap();
    let child = start(dir.path(), &["--duration", "1s"]);
    let out = wait_output(child, Duration::from_secs(30));
    assert_eq!(out.status.code(), Some(2), "{}", describe(&out));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("could not take lock 1") && err.contains("EAGAIN"),
        "{err}"
    );
    assert!(out.stdout.is_empty());
}

#[test]
fn probe_only_instance_sees_the_other_instances_locks_and_their_loss() {
    let dir = tempfile::tempdir().unwrap();
    // "Client A": holds 3 locks, never restarts its holder.
    let mut holder = start(dir.path(), &["--duration", "3s", "--no-restart"]);
    let st = wait_ready(dir.path(), &mut holder);
    // "Client B": only probes the same ranges, with real lock attempts.
    let b_status = dir.path().join("b.json");
    let mut c = cmd();
    c.args([
        "failover",
        "--json",
        "--probe-only",
        "--probe",
        "setlk",
        "--locks",
        "3",
        "--probe-interval",
        "50ms",
        "--duration",
        "2s",
        "--dir",
    ])
    .arg(dir.path())
    .arg("--status-file")
    .arg(&b_status)
    .stdout(Stdio::piped())
    .stderr(Stdio::piped());
    let prober = c.spawn().unwrap();
    // While A holds its locks, B must see every one of them held for a while.
    let end = Instant::now() + Duration::from_secs(20);
    loop {
        if let Some(b) = read_status(&b_status) {
            assert_eq!(
                b.locks_lost, 0,
                "false loss while the holder was alive: {b:?}"
            );
            if b.elapsed_s >= 0.4 {
                assert!(b.locks.iter().all(|s| s == "held"), "{b:?}");
                break;
            }
        }
        assert!(
            Instant::now() < end,
            "probe-only instance never reported status"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    kill(
        Pid::from_raw(st.holder_pid.unwrap() as i32),
        Signal::SIGKILL,
    )
    .unwrap();
    let out = wait_output(prober, Duration::from_secs(30));
    let rep = json(&out);
    assert_eq!(out.status.code(), Some(1), "{}", describe(&out));
    assert_eq!(rep["role"], "probe-only");
    // Refused while A held the locks, granted once A's holder died.
    assert!(rep["probe_rounds"].as_u64().unwrap() >= 5, "{rep}");
    assert!(rep["conflicting_grants"].as_u64().unwrap() >= 3, "{rep}");
    assert_eq!(rep["locks_lost"], 3, "{rep}");
    let reason = rep["loss_events"][0]["reason"].as_str().unwrap();
    assert!(reason.contains("granted"), "{rep}");
    let out = wait_output(holder, Duration::from_secs(30));
    assert_eq!(out.status.code(), Some(1), "{}", describe(&out));
}
