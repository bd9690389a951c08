//! Bad input: each case gets a clear message naming the path, exit code 2, and nothing written.

mod support;

use std::path::Path;
use std::process::Command;
use support::*;
use test_support::prelude::*;

fn expect_error(args: &[&str], path: &Path, words: &[&str]) {
    for sub in ["status", "check", "dump"] {
        let out = run(mmp_tool().arg(sub).args(args).arg(path));
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(
            out.status.code(),
            Some(2),
            "{sub} {}: {err}",
            path.display()
        );
        assert!(
            err.contains(&path.display().to_string()),
            "{sub}: message names the path: {err}"
        );
        for w in words {
            assert!(err.contains(w), "{sub}: message says `{w}`: {err}");
        }
        assert!(!err.contains("panicked"), "{err}");
        assert!(out.stdout.is_empty(), "nothing on stdout for an error");
    }
}

#[test]
fn nonexistent_directory_empty_truncated() {
    let tmp = tempfile::tempdir().unwrap();
    expect_error(&[], &tmp.path().join("missing.img"), &["no such file"]);
    expect_error(&[], tmp.path(), &["is a directory"]);
    let empty = tmp.path().join("empty.img");
    std::fs::write(&empty, b"").unwrap();
    expect_error(&[], &empty, &["not an ext2/3/4 filesystem"]);
    assert_eq!(std::fs::metadata(&empty).unwrap().len(), 0);

    if !require_e2fsprogs() {
        return;
    }
    // A truncated copy: the superblock is there, the MMP block is not.
    let full = mkfs(tmp.path(), "full.img", 32, &["-b", "4096", "-O", "mmp"]);
    let sb = sb_info(&full);
    let cut = tmp.path().join("cut.img");
    let bytes = std::fs::read(&full).unwrap();
    std::fs::write(&cut, &bytes[..(sb.mmp_block * sb.block_size) as usize]).unwrap();
    let before = sha256(&cut);
    expect_error(&[], &cut, &["truncated"]);
    assert_eq!(sha256(&cut), before);
    // A garbage superblock region behind a valid magic: corrupt superblock.
    let bad = tmp.path().join("badsb.img");
    let mut b = bytes.clone();
    b[1024 + 0x18] = 9; // s_log_block_size 9: impossible
    std::fs::write(&bad, &b).unwrap();
    expect_error(&[], &bad, &["corrupt superblock", "e2fsck"]);
}

#[test]
fn permission_denied() {
    if !require(
        is_root() && have("setpriv"),
        "needs root and setpriv to run as nobody",
    ) {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let img = tmp.path().join("private.img");
    std::fs::write(&img, vec![0u8; 65536]).unwrap();
    std::fs::set_permissions(
        tmp.path(),
        std::os::unix::fs::PermissionsExt::from_mode(0o755),
    )
    .unwrap();
    std::fs::set_permissions(&img, std::os::unix::fs::PermissionsExt::from_mode(0o600)).unwrap();
    for sub in ["status", "check", "dump"] {
        let out = run(Command::new("setpriv")
            .args(["--reuid=65534", "--regid=65534", "--clear-groups", "--"])
            .arg(env!("CARGO_BIN_EXE_mmp-tool"))
            .arg(sub)
            .arg(&img));
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{err}");
        assert!(
            err.contains("permission denied") && err.contains("private.img"),
            "{err}"
        );
    }
}

#[test]
fn usage_errors_exit_2() {
    let out = run(mmp_tool().arg("check"));
    assert_eq!(out.status.code(), Some(2));
    let out = run(mmp_tool().args(["frobnicate", "/dev/null"]));
    assert_eq!(out.status.code(), Some(2));
    let out = run(mmp_tool().args(["check", "--timeout", "-1", "x"]));
    assert_eq!(out.status.code(), Some(2));
}

#[test]
fn help_teaches() {
    let out = run_ok(mmp_tool().arg("--help"));
    let h = String::from_utf8_lossy(&out.stdout);
    for w in [
        "multiple-mount protection",
        "EXIT STATUS",
        "e2mmpstatus",
        "FAILOVER SCRIPT",
        "mmp-tool check",
    ] {
        assert!(h.contains(w), "--help mentions {w}");
    }
}

/// With `--json` an error is JSON on stdout as well as the message on stderr, for errors of the
/// command (no such device) and usage errors alike (clap's, exit 2), and nothing else.
#[test]
fn errors_are_json_with_json() {
    let tmp = tempfile::tempdir().unwrap();
    let missing = tmp.path().join("missing.img");
    let m = missing.to_str().unwrap();
    let cases: [(&[&str], &str); 3] = [
        (&["status", "--json", m], "no such file"),
        (&["check", "--json", "--timeout", "soon", m], "soon"),
        (
            &["handoff", "--json", m, "--confirm", "xyz"],
            "is not a handoff nonce",
        ),
    ];
    for (args, says) in cases {
        let out = run(mmp_tool().args(args));
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {err}");
        let v: serde_json::Value = serde_json::from_slice(&out.stdout)
            .unwrap_or_else(|e| panic!("{args:?}: stdout is not JSON ({e}): {:?}", out.stdout));
        assert_eq!(v["result"], "error", "{args:?}: {v}");
        assert_eq!(v["exit_code"], 2, "{args:?}: {v}");
        let msg = v["error"].as_str().unwrap_or_default().to_lowercase();
        assert!(msg.contains(says), "{args:?}: {says:?} not in {msg:?}");
        assert!(err.to_lowercase().contains(says), "{args:?}: {err}");
        assert!(!err.contains("panicked"), "{err}");
    }
    assert!(!missing.exists());
    // --help stays clap's, not an error.
    let out = run(mmp_tool().args(["status", "--help", "--json"]));
    assert_eq!(out.status.code(), Some(0));
}
