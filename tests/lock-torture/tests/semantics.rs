//! The semantics suite against real filesystems: tmpfs and ext4 on a loop device.

mod common;

use std::time::Duration;

use common::{cmd, json};
use test_support::cmd::describe;
use test_support::mount::Mount;
use test_support::require::{cannot_run, have, is_root};
use test_support::spawn::run_with_timeout;

fn suite_passes_in(dir: &std::path::Path, fs: &str) {
    let mut c = cmd();
    c.args(["semantics", "--json", "--dir"]).arg(dir);
    let out = run_with_timeout(c, Duration::from_secs(60));
    let rep = json(&out);
    assert_eq!(rep["fs_type"], fs, "{}", describe(&out));
    let tests = rep["tests"].as_array().expect("tests array");
    let failed: Vec<String> = tests
        .iter()
        .filter(|t| t["status"] != "pass")
        .map(|t| format!("{} {}: {}", t["id"], t["status"], t["detail"]))
        .collect();
    assert!(failed.is_empty(), "tests not passing on {fs}: {failed:#?}");
    assert_eq!(tests.len(), 19, "{}", describe(&out));
    assert_eq!(out.status.code(), Some(0), "{}", describe(&out));
    // Denials must have been observed with the errno fcntl(2) documents.
    let cthon2 = tests.iter().find(|t| t["id"] == "cthon-2").unwrap();
    let errnos = cthon2["errnos"].as_array().unwrap();
    assert!(
        errnos.iter().any(|e| e == "EAGAIN" || e == "EACCES"),
        "{cthon2}"
    );
    let dl = tests.iter().find(|t| t["id"] == "edeadlk").unwrap();
    assert!(
        dl["errnos"]
            .as_array()
            .unwrap()
            .iter()
            .any(|e| e == "EDEADLK"),
        "{dl}"
    );
    // The suite removes its files.
    let left: Vec<_> = std::fs::read_dir(dir)
        .unwrap()
        .filter_map(Result::ok)
        .map(|e| e.file_name())
        .collect();
    assert!(
        left.iter().all(|n| n.to_string_lossy() == "lost+found"),
        "left behind: {left:?}"
    );
}

#[test]
fn semantics_suite_passes_on_tmpfs() {
    if is_root() {
        let m = match Mount::tmpfs() {
            Ok(m) => m,
            Err(e) => return cannot_run(&format!("cannot mount tmpfs: {e}")),
        };
        suite_passes_in(m.path(), "tmpfs");
    } else if std::path::Path::new("/dev/shm").is_dir() {
        // Without root: an existing tmpfs, if /dev/shm is one.
        let d = match tempfile::tempdir_in("/dev/shm") {
            Ok(d) => d,
            Err(e) => return cannot_run(&format!("no tmpfs to test on: {e}")),
        };
        if lock_torture::fsinfo::fs_type_name(d.path()) != "tmpfs" {
            return cannot_run("not root and /dev/shm is not tmpfs");
        }
        suite_passes_in(d.path(), "tmpfs");
    } else {
        cannot_run("not root and no /dev/shm tmpfs");
    }
}

#[test]
fn loop_semantics_and_torture_pass_on_ext4() {
    if !is_root() {
        return cannot_run("ext4 on a loop device needs root");
    }
    if !have("mkfs.ext4") || !have("losetup") {
        return cannot_run("mkfs.ext4 or losetup missing (Debian: e2fsprogs, mount)");
    }
    let m = match Mount::ext4_loop(32) {
        Ok(m) => m,
        Err(e) => return cannot_run(&format!("cannot set up ext4 on a loop device: {e}")),
    };
    suite_passes_in(m.path(), "ext2/3/4");

    // And real locks on ext4 stay exclusive under contention (the positive control for the
    // LD_PRELOAD test in torture.rs).
    let mut c = cmd();
    c.args([
        "torture",
        "--json",
        "--procs",
        "4",
        "--duration",
        "1s",
        "--dir",
    ])
    .arg(m.path());
    let out = run_with_timeout(c, Duration::from_secs(60));
    let rep = json(&out);
    assert_eq!(out.status.code(), Some(0), "{}", describe(&out));
    assert_eq!(rep["violations"], 0);
    assert!(rep["ops"].as_u64().unwrap() > 100, "{rep}");
    assert_eq!(
        rep["file_check"]["sum_counts"],
        rep["file_check"]["expected"]
    );
}

#[test]
fn semantics_only_selects_tests_and_rejects_unknown_ids() {
    let dir = tempfile::tempdir().unwrap();
    let mut c = cmd();
    c.args(["semantics", "--json", "--only", "cthon-10,ofd-2", "--dir"])
        .arg(dir.path());
    let out = run_with_timeout(c, Duration::from_secs(30));
    let rep = json(&out);
    let ids: Vec<&str> = rep["tests"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, ["cthon-10", "ofd-2"], "{}", describe(&out));
    assert_eq!(out.status.code(), Some(0));

    let mut c = cmd();
    c.args(["semantics", "--only", "cthon-99", "--dir"])
        .arg(dir.path());
    let out = run_with_timeout(c, Duration::from_secs(30));
    assert_eq!(out.status.code(), Some(2), "{}", describe(&out));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("unknown test \"cthon-99\"") && err.contains("cthon-12"),
        "{err}"
    );
    assert!(out.stdout.is_empty());
}

#[test]
fn missing_directory_is_a_setup_error() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("nope");
    for sub in ["semantics", "torture", "failover"] {
        let mut c = cmd();
        c.args([sub, "--dir"]).arg(&missing);
        let out = run_with_timeout(c, Duration::from_secs(30));
        assert_eq!(out.status.code(), Some(2), "{sub}: {}", describe(&out));
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            err.contains("nope") && err.contains("create it"),
            "{sub}: {err}"
        );
        assert!(!missing.exists(), "{sub} created the directory");
    }
}
