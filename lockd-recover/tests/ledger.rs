//! `record` and `wait-reclaim` with real POSIX locks taken by this process and read back from
//! the kernel's /proc/locks. The proc root is a directory whose `locks` is a symlink to
//! /proc/locks and whose grace knobs are plain files, so ending grace can be observed.

use std::fs::File;
use std::os::fd::AsRawFd;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_lockd-recover");

fn lock(f: &File, start: i64, len: i64, write: bool) {
    let fl = libc::flock {
        l_type: if write { libc::F_WRLCK } else { libc::F_RDLCK } as libc::c_short,
        l_whence: libc::SEEK_SET as libc::c_short,
        l_start: start,
        l_len: len,
        l_pid: 0,
    };
    nix::fcntl::fcntl(f.as_raw_fd(), nix::fcntl::FcntlArg::F_SETLK(&fl)).unwrap();
}

fn proc_root() -> tempfile::TempDir {
    let t = tempfile::tempdir().unwrap();
    std::os::unix::fs::symlink("/proc/locks", t.path().join("locks")).unwrap();
    for d in ["fs/lockd", "fs/nfsd"] {
        std::fs::create_dir_all(t.path().join(d)).unwrap();
    }
    std::fs::write(t.path().join("fs/lockd/nlm_end_grace"), "").unwrap();
    std::fs::write(t.path().join("fs/nfsd/v4_end_grace"), "").unwrap();
    t
}

/// A directory on its own filesystem if possible (/dev/shm is a tmpfs), so that locks other
/// processes hold on the build filesystem do not enter the ledger.
fn export_dir() -> tempfile::TempDir {
    if Path::new("/dev/shm").is_dir() {
        if let Ok(t) = tempfile::tempdir_in("/dev/shm") {
            return t;
        }
    }
    tempfile::tempdir().unwrap()
}

/// Opens (creates) `p` read-write for a lock.
fn create_rw(p: &Path) -> File {
    File::options()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(p)
        .unwrap()
}

fn ino(p: &Path) -> u64 {
    std::os::unix::fs::MetadataExt::ino(&std::fs::metadata(p).unwrap())
}

/// The tests that take locks hold this: their ledgers record every lock on the filesystem, so
/// another test's locks there (same process, another thread) would enter them.
static LOCKING: std::sync::Mutex<()> = std::sync::Mutex::new(());

#[test]
fn record_then_wait_reclaim_with_real_kernel_locks() {
    let _serial = LOCKING.lock().unwrap_or_else(|e| e.into_inner());
    let exp = export_dir();
    let state = tempfile::tempdir().unwrap();
    let proc = proc_root();
    let pr = proc.path().to_str().unwrap();
    let path_a = exp.path().join("a");
    let path_b = exp.path().join("b");
    let a = create_rw(&path_a);
    let b = create_rw(&path_b);
    lock(&a, 0, 0, true);
    lock(&b, 100, 50, false);

    let o = Command::new(BIN)
        .args([
            "--proc-root",
            pr,
            "--json",
            "record",
            "--count",
            "1",
            "--fs",
        ])
        .arg(exp.path())
        .arg("--state-dir")
        .arg(state.path())
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let ledger: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let locks = ledger["locks"].as_array().unwrap();
    let pid = i64::from(std::process::id());
    // (Our pid's locks on these two files: the tests of this file run in one process.)
    let mine = [ino(&path_a), ino(&path_b)];
    let ours: Vec<&serde_json::Value> = locks
        .iter()
        .filter(|l| l["pid"] == pid && mine.iter().any(|&i| l["ino"] == i))
        .collect();
    assert_eq!(ours.len(), 2, "{ledger}");
    assert!(ours
        .iter()
        .any(|l| l["ino"] == ino(&path_a) && l["access"] == "WRITE" && l["end"].is_null()));
    assert!(ours.iter().any(|l| l["ino"] == ino(&path_b)
        && l["access"] == "READ"
        && l["start"] == 100
        && l["end"] == 149));

    // "Failover": the locks go away. wait-reclaim times out, reports them, leaves grace alone.
    drop(a);
    drop(b);
    let o = Command::new(BIN)
        .args([
            "--proc-root",
            pr,
            "--json",
            "wait-reclaim",
            "--timeout",
            "0.5",
            "--min-grace",
            "0",
            "--fs",
        ])
        .arg(exp.path())
        .arg("--state-dir")
        .arg(state.path())
        .output()
        .unwrap();
    assert_eq!(
        o.status.code(),
        Some(1),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    let r: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(r["missing"].as_array().unwrap().len(), 2);
    assert!(r["grace_ended"].is_null());
    assert_eq!(
        std::fs::read_to_string(proc.path().join("fs/lockd/nlm_end_grace")).unwrap(),
        ""
    );

    // The locks come back (as a reclaim would) while wait-reclaim watches: it ends grace, but
    // not before the --min-grace floor.
    let child = Command::new(BIN)
        .args([
            "--proc-root",
            pr,
            "--json",
            "wait-reclaim",
            "--timeout",
            "20",
            "--min-grace",
            "1",
            "--fs",
        ])
        .arg(exp.path())
        .arg("--state-dir")
        .arg(state.path())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let started = Instant::now();
    std::thread::sleep(Duration::from_millis(300));
    let a = File::options()
        .read(true)
        .write(true)
        .open(&path_a)
        .unwrap();
    let b = File::options()
        .read(true)
        .write(true)
        .open(&path_b)
        .unwrap();
    lock(&a, 0, 0, true);
    lock(&b, 100, 50, false);
    let o = child.wait_with_output().unwrap();
    let took = started.elapsed();
    assert_eq!(o.status.code(), Some(0));
    let r: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(r["all_reclaimed"], true);
    assert!(r["missing"].as_array().unwrap().is_empty());
    assert!(
        took >= Duration::from_secs(1) && took < Duration::from_secs(10),
        "{took:?}"
    );
    assert_eq!(
        std::fs::read_to_string(proc.path().join("fs/lockd/nlm_end_grace")).unwrap(),
        "Y\n"
    );
    assert_eq!(
        std::fs::read_to_string(proc.path().join("fs/nfsd/v4_end_grace")).unwrap(),
        "Y\n"
    );
    drop((a, b));
}

#[test]
fn corrupt_and_stale_ledgers_are_refused() {
    let exp = export_dir();
    let state = tempfile::tempdir().unwrap();
    let proc = proc_root();
    let pr = proc.path().to_str().unwrap();
    let ledger = state.path().join("lockd-recover-ledger.json");
    std::fs::write(&ledger, b"not json").unwrap();
    let run = || {
        Command::new(BIN)
            .args([
                "--proc-root",
                pr,
                "wait-reclaim",
                "--timeout",
                "0.1",
                "--fs",
            ])
            .arg(exp.path())
            .arg("--state-dir")
            .arg(state.path())
            .output()
            .unwrap()
    };
    let o = run();
    assert_eq!(o.status.code(), Some(6));
    assert!(String::from_utf8_lossy(&o.stderr).contains("not a lock ledger"));
    std::fs::write(
        &ledger,
        br#"{"format":1,"node":"old","fs":"/x","taken_at_unix_ms":1000,"locks":[]}"#,
    )
    .unwrap();
    let o = run();
    assert_eq!(o.status.code(), Some(3), "a ledger from 1970 is stale");
    assert!(String::from_utf8_lossy(&o.stderr).contains("--max-age"));
    assert_eq!(
        std::fs::read_to_string(proc.path().join("fs/lockd/nlm_end_grace")).unwrap(),
        ""
    );
}

/// `record` over two filesystems in one process: each ledger holds the locks of its own
/// filesystem only, in its own directory (a tmpfs and the build filesystem: two devices).
#[test]
fn one_recorder_keeps_two_filesystems_apart() {
    let _serial = LOCKING.lock().unwrap_or_else(|e| e.into_inner());
    let exp1 = export_dir();
    let exp2 = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).unwrap();
    let dev = |p: &Path| std::os::unix::fs::MetadataExt::dev(&std::fs::metadata(p).unwrap());
    assert_ne!(dev(exp1.path()), dev(exp2.path()), "need two filesystems");
    let (state1, state2) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let proc = proc_root();
    let (f1, f2) = (
        create_rw(&exp1.path().join("x")),
        create_rw(&exp2.path().join("y")),
    );
    lock(&f1, 0, 10, true);
    lock(&f2, 20, 5, true);
    let o = Command::new(BIN)
        .args(["--proc-root", proc.path().to_str().unwrap(), "--json"])
        .args(["record", "--count", "2", "--interval", "0.1"])
        .arg("--fs")
        .arg(exp1.path())
        .arg("--state-dir")
        .arg(state1.path())
        .arg("--fs")
        .arg(exp2.path())
        .arg("--state-dir")
        .arg(state2.path())
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let printed: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(printed.as_array().map(Vec::len), Some(2), "{printed}");
    let pid = i64::from(std::process::id());
    let mine = [ino(&exp1.path().join("x")), ino(&exp2.path().join("y"))];
    for (state, exp, start) in [(&state1, &exp1, 0), (&state2, &exp2, 20)] {
        let text = std::fs::read_to_string(state.path().join("lockd-recover-ledger.json")).unwrap();
        let l: serde_json::Value = serde_json::from_str(&text).unwrap();
        assert_eq!(l["fs"], exp.path().to_str().unwrap());
        let ours: Vec<_> = l["locks"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|k| k["pid"] == pid && mine.iter().any(|&i| k["ino"] == i))
            .collect();
        assert_eq!(ours.len(), 1, "{l}");
        assert_eq!(ours[0]["start"], start, "{l}");
    }
}

/// Bad pairings are usage errors (exit 2) that name the fix, and nothing is written.
#[test]
fn record_refuses_unpaired_or_shared_state_dirs() {
    let exp = export_dir();
    let state = tempfile::tempdir().unwrap();
    let proc = proc_root();
    let run = |extra: &[&Path]| {
        let mut c = Command::new(BIN);
        c.args(["--proc-root", proc.path().to_str().unwrap()])
            .args(["record", "--count", "1", "--fs"])
            .arg(exp.path());
        for (i, p) in extra.iter().enumerate() {
            c.arg(if i % 2 == 0 { "--state-dir" } else { "--fs" })
                .arg(p);
        }
        c.output().unwrap()
    };
    // Two --fs, one --state-dir.
    let o = run(&[state.path(), exp.path()]);
    assert_eq!(o.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&o.stderr).contains("one --state-dir per --fs"));
    // One directory for two filesystems.
    let o = run(&[state.path(), exp.path(), state.path()]);
    assert_eq!(o.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&o.stderr).contains("is given twice"));
    assert_eq!(std::fs::read_dir(state.path()).unwrap().count(), 0);
}
