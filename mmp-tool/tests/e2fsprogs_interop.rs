//! mmp-tool against e2fsprogs as the reference: images made by mkfs.ext4, MMP states made by
//! debugfs, verdicts compared with e2mmpstatus and fields with `debugfs -R dump_mmp`.

mod support;

use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};
use support::*;
use test_support::prelude::*;

const SEQ_FSCK: u64 = 0xE24D_4D50;

fn status_json(img: &Path) -> Value {
    let out = run_ok(mmp_tool().args(["status", "--json"]).arg(img));
    serde_json::from_slice(&out.stdout).expect("status --json prints JSON")
}

fn hex(s: &str) -> u64 {
    u64::from_str_radix(s.trim_start_matches("0x"), 16).unwrap_or_else(|_| panic!("not hex: {s}"))
}

fn assert_status_matches_debugfs(img: &Path) {
    let out = run_ok(Command::new("debugfs").args(["-R", "dump_mmp"]).arg(img));
    let d = parse_kv(&String::from_utf8_lossy(&out.stdout));
    let j = status_json(img);
    let ctx = format!("{}: debugfs {d:?} vs ours {j}", img.display());
    assert_eq!(
        j["block_number"].as_u64().unwrap(),
        d["block_number"].parse::<u64>().unwrap(),
        "{ctx}"
    );
    assert_eq!(
        j["update_interval"].as_u64().unwrap(),
        d["update_interval"].parse::<u64>().unwrap(),
        "{ctx}"
    );
    assert_eq!(
        j["check_interval"].as_u64().unwrap(),
        d["check_interval"].parse::<u64>().unwrap(),
        "{ctx}"
    );
    assert_eq!(
        j["sequence"].as_u64().unwrap(),
        hex(&d["sequence"]),
        "{ctx}"
    );
    let time: u64 = d["time"]
        .split_whitespace()
        .next()
        .unwrap()
        .parse()
        .unwrap();
    assert_eq!(j["time"].as_u64().unwrap(), time, "{ctx}");
    assert_eq!(j["node_name"].as_str().unwrap(), d["node_name"], "{ctx}");
    assert_eq!(
        j["device_name"].as_str().unwrap(),
        d["device_name"],
        "{ctx}"
    );
    assert_eq!(j["magic"].as_u64().unwrap(), hex(&d["magic"]), "{ctx}");
    assert_eq!(
        j["checksum"].as_u64().unwrap(),
        hex(&d["checksum"]),
        "{ctx}"
    );
}

#[test]
fn status_fields_equal_debugfs_dump_mmp() {
    if !require_e2fsprogs() {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let cases: &[(&str, &[&str])] = &[
        (
            "1k.img",
            &[
                "-b",
                "1024",
                "-O",
                "mmp,^metadata_csum",
                "-E",
                "mmp_update_interval=1",
            ],
        ),
        ("4k.img", &["-b", "4096", "-O", "mmp,^metadata_csum"]),
        (
            "1k-csum.img",
            &[
                "-b",
                "1024",
                "-O",
                "mmp,metadata_csum",
                "-E",
                "mmp_update_interval=1",
            ],
        ),
        (
            "4k-csum.img",
            &[
                "-b",
                "4096",
                "-O",
                "mmp,metadata_csum",
                "-E",
                "mmp_update_interval=7",
            ],
        ),
    ];
    for (name, args) in cases {
        let img = mkfs(tmp.path(), name, 32, args);
        let before = sha256(&img);
        assert_status_matches_debugfs(&img);
        let j = status_json(&img);
        assert_eq!(j["state"], "clean");
        let want_csum = if name.contains("csum") {
            "valid"
        } else {
            "not_used"
        };
        assert_eq!(j["checksum_status"], want_csum, "{name}");
        assert_eq!(sha256(&img), before, "status must not write to {name}");
    }
}

/// metadata_csum_seed: after `tune2fs -U random` the checksum seed is `s_checksum_seed`, not
/// derived from the (new) UUID. The MMP block is created after the UUID change, so its checksum
/// is only right if we take the seed from the superblock field.
#[test]
fn checksum_seed_after_uuid_change() {
    if !require_e2fsprogs() {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let img = mkfs(
        tmp.path(),
        "seed.img",
        32,
        &["-b", "4096", "-O", "^mmp,metadata_csum,metadata_csum_seed"],
    );
    let uuid_before = status_like_uuid(&img);
    run_ok(Command::new("tune2fs").args(["-U", "random"]).arg(&img));
    run_ok(
        Command::new("tune2fs")
            .args(["-O", "mmp", "-E", "mmp_update_interval=2"])
            .arg(&img),
    );
    assert_ne!(
        status_like_uuid(&img),
        uuid_before,
        "tune2fs -U changed the UUID"
    );
    let j = status_json(&img);
    assert_eq!(j["csum_seed_feature"], true);
    assert_eq!(j["checksum_status"], "valid", "{j}");
    assert_status_matches_debugfs(&img);
    let out = run(mmp_tool().arg("check").arg(&img));
    assert_eq!(out.status.code(), Some(0));
    assert_eq!(
        run(Command::new("e2mmpstatus").arg(&img)).status.code(),
        Some(0)
    );
}

fn status_like_uuid(img: &Path) -> String {
    let out = run_ok(Command::new("dumpe2fs").arg("-h").arg(img));
    parse_kv(&String::from_utf8_lossy(&out.stdout))["Filesystem UUID"].clone()
}

/// Leave an FSCK sequence the way a crashed tool does: start `debugfs -w` (which waits out
/// `ext2fs_mmp_start` and then writes SEQ_FSCK), and kill -9 it once the block says FSCK.
fn leave_fsck_sequence(img: &Path) {
    let mut child = Command::new("debugfs")
        .arg("-w")
        .arg(img)
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let j = status_json(img);
        if j["sequence"].as_u64() == Some(SEQ_FSCK) {
            break;
        }
        assert!(Instant::now() < deadline, "debugfs -w never wrote SEQ_FSCK");
        std::thread::sleep(Duration::from_millis(200));
    }
    child.kill().unwrap();
    child.wait().unwrap();
}

struct Case {
    name: &'static str,
    img: PathBuf,
    expect: i32,
}

/// Build one image per MMP state, each the way a user meets it.
fn make_case(dir: &Path, name: &'static str) -> Case {
    let file = format!("{name}.img");
    let mmp1 = [
        "-b",
        "4096",
        "-O",
        "mmp,^metadata_csum",
        "-E",
        "mmp_update_interval=1",
    ];
    let mmp1_csum = [
        "-b",
        "1024",
        "-O",
        "mmp,metadata_csum",
        "-E",
        "mmp_update_interval=1",
    ];
    let (img, expect) = match name {
        "clean" => (mkfs(dir, &file, 16, &mmp1_csum), 0),
        "fsck" => {
            let img = mkfs(dir, &file, 16, &mmp1);
            leave_fsck_sequence(&img);
            (img, 1)
        }
        "bad_magic" => {
            let img = mkfs(dir, &file, 16, &mmp1_csum);
            run_ok(
                Command::new("debugfs")
                    .args(["-w", "-R", "set_mmp_value magic 0x12345678"])
                    .arg(&img),
            );
            (img, 2)
        }
        "bad_checksum" => {
            let img = mkfs(dir, &file, 16, &mmp1_csum);
            let sb = sb_info(&img);
            poke(&img, sb.mmp_block * sb.block_size + 0x200, &[0xA5]);
            (img, 1)
        }
        "unknown_seq" => {
            let img = mkfs(dir, &file, 16, &mmp1);
            let sb = sb_info(&img);
            poke(
                &img,
                sb.mmp_block * sb.block_size + 4,
                &(SEQ_FSCK as u32 + 1).to_le_bytes(),
            );
            (img, 1)
        }
        "stale_live_seq" => {
            // A crashed holder: a live sequence nobody updates. Safe after the full wait.
            let img = mkfs(dir, &file, 16, &mmp1);
            let sb = sb_info(&img);
            poke(
                &img,
                sb.mmp_block * sb.block_size + 4,
                &0x1234u32.to_le_bytes(),
            );
            (img, 0)
        }
        "mmp_not_enabled" => (mkfs(dir, &file, 16, &["-O", "^mmp"]), 2),
        "not_ext4" => {
            let img = dir.join(&file);
            std::fs::File::create(&img)
                .unwrap()
                .set_len(16 << 20)
                .unwrap();
            run_ok(Command::new("mkswap").arg(&img));
            (img, 2)
        }
        _ => unreachable!(),
    };
    Case { name, img, expect }
}

#[test]
fn check_exit_codes_equal_e2mmpstatus() {
    if !require_e2fsprogs() || !require(have("mkswap"), "needs mkswap (util-linux)") {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let names = [
        "clean",
        "fsck",
        "bad_magic",
        "bad_checksum",
        "unknown_seq",
        "stale_live_seq",
        "mmp_not_enabled",
        "not_ext4",
    ];
    // Several cases wait 11 s (debugfs -w, e2mmpstatus and check on a live sequence): run them
    // side by side.
    let results: Vec<_> = std::thread::scope(|s| {
        let handles: Vec<_> = names
            .iter()
            .map(|&name| {
                let dir = tmp.path();
                s.spawn(move || {
                    let case = make_case(dir, name);
                    let before = sha256(&case.img);
                    let ours = run(mmp_tool().args(["check", "--json"]).arg(&case.img));
                    let theirs = run(Command::new("e2mmpstatus").arg(&case.img));
                    let after = sha256(&case.img);
                    (case, ours, theirs, before == after)
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    for (case, ours, theirs, unchanged) in results {
        let ctx = format!(
            "{}: ours {:?} stdout {} stderr {} / e2mmpstatus {:?} {}{}",
            case.name,
            ours.status.code(),
            String::from_utf8_lossy(&ours.stdout),
            String::from_utf8_lossy(&ours.stderr),
            theirs.status.code(),
            String::from_utf8_lossy(&theirs.stdout),
            String::from_utf8_lossy(&theirs.stderr)
        );
        if case.expect == 2 {
            // e2mmpstatus 1.47.0 documents 2 for "other error", but when its open fails it exits
            // with the low byte of the error code (19 for a bad superblock magic, 21 for a
            // directory, 36 for a short read). Ours is always 2; what must agree is "neither
            // safe (0) nor in use (1)".
            assert!(
                !matches!(theirs.status.code(), Some(0) | Some(1)),
                "reference changed? {ctx}"
            );
        } else {
            assert_eq!(
                theirs.status.code(),
                Some(case.expect),
                "reference changed? {ctx}"
            );
        }
        assert_eq!(ours.status.code(), Some(case.expect), "{ctx}");
        assert!(unchanged, "check wrote to the image: {ctx}");
        if case.expect == 2 {
            let err = String::from_utf8_lossy(&ours.stderr);
            assert!(
                err.contains(&case.img.display().to_string()),
                "error names the device: {ctx}"
            );
        } else {
            let j: Value = serde_json::from_slice(&ours.stdout).unwrap();
            let verdict = j["verdict"].as_str().unwrap();
            let want = match case.name {
                "clean" => "safe_clean",
                "fsck" => "fsck_running",
                "bad_checksum" => "bad_checksum",
                "unknown_seq" => "unknown_sequence",
                "stale_live_seq" => "safe_stale",
                _ => unreachable!(),
            };
            assert_eq!(verdict, want, "{ctx}");
        }
    }
}

/// Issue 12 defect 3b: a wrong magic and a wrong checksum, alone and together. In e2fsprogs'
/// `ext2fs_mmp_read` (lib/ext2fs/mmp.c) the magic error overwrites the checksum error, so
/// e2mmpstatus exits 2 ("not an MMP block": corrupt) when the magic is wrong, whatever the
/// checksum, and 1 ("in use") only for a bad checksum over a good magic.
#[test]
fn bad_magic_wins_over_bad_checksum_as_in_e2mmpstatus() {
    if !require_e2fsprogs() {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let mkfs_args = [
        "-b",
        "1024",
        "-O",
        "mmp,metadata_csum",
        "-E",
        "mmp_update_interval=1",
    ];
    // (name, expected exit code, magic valid, checksum valid)
    let cases = [
        ("wrong_magic_only", 2, false, "valid"),
        ("wrong_checksum_only", 1, true, "invalid"),
        ("wrong_magic_and_checksum", 2, false, "invalid"),
    ];
    for (name, expect, magic_ok, checksum_status) in cases {
        let img = mkfs(tmp.path(), &format!("{name}.img"), 16, &mkfs_args);
        let sb = sb_info(&img);
        let mmp = sb.mmp_block * sb.block_size;
        match name {
            // debugfs writes through ext2fs_mmp_write, which sets a valid checksum.
            "wrong_magic_only" => {
                run_ok(
                    Command::new("debugfs")
                        .args(["-w", "-R", "set_mmp_value magic 0x12345678"])
                        .arg(&img),
                );
            }
            // A byte of mmp_pad2: the magic stays, the checksum no longer matches.
            "wrong_checksum_only" => poke(&img, mmp + 0x200, &[0xA5]),
            // The magic itself, behind the checksum's back: both are wrong.
            "wrong_magic_and_checksum" => poke(&img, mmp, &0x1234_5678u32.to_le_bytes()),
            _ => unreachable!(),
        }
        let j = status_json(&img);
        assert_eq!(
            j["magic"].as_u64() == Some(0x004D_4D50),
            magic_ok,
            "{name}: {j}"
        );
        assert_eq!(j["checksum_status"], checksum_status, "{name}: {j}");
        let ours = run(mmp_tool().arg("check").arg(&img));
        let theirs = run(Command::new("e2mmpstatus").arg(&img));
        let ctx = format!(
            "{name}: ours {:?} {} / e2mmpstatus {:?} {}",
            ours.status.code(),
            String::from_utf8_lossy(&ours.stderr),
            theirs.status.code(),
            String::from_utf8_lossy(&theirs.stderr)
        );
        assert_eq!(
            theirs.status.code(),
            Some(expect),
            "reference changed? {ctx}"
        );
        assert_eq!(ours.status.code(), theirs.status.code(), "{ctx}");
    }
}

/// Messages for the error cases say what was found and what to do.
#[test]
fn error_messages_explain() {
    if !require_e2fsprogs() || !require(have("mkswap"), "needs mkswap (util-linux)") {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let swap = make_case(tmp.path(), "not_ext4");
    let out = run(mmp_tool().arg("status").arg(&swap.img));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("not an ext2/3/4 filesystem") && err.contains("libblkid sees swap"),
        "{err}"
    );
    let nommp = make_case(tmp.path(), "mmp_not_enabled");
    let out = run(mmp_tool().arg("dump").arg(&nommp.img));
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        err.contains("MMP feature not enabled") && err.contains("tune2fs -O mmp"),
        "{err}"
    );
    let fsck_hint = make_case(tmp.path(), "unknown_seq");
    let out = run(mmp_tool().arg("check").arg(&fsck_hint.img));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("clear_mmp"), "{err}");
}

/// On a terminal, the wait shows a countdown on stderr; in a pipe it stays quiet.
#[test]
fn countdown_only_on_a_tty() {
    if !require_e2fsprogs()
        || !require(
            have("script"),
            "needs script (bsdutils) for a pseudo-terminal",
        )
    {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let case = make_case(tmp.path(), "stale_live_seq");
    let cmd = format!(
        "{} check --timeout 1.5 {}",
        env!("CARGO_BIN_EXE_mmp-tool"),
        case.img.display()
    );
    let out = run(Command::new("script").args(["-qec", &cmd, "/dev/null"]));
    let tty = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(3), "{tty}");
    assert!(
        tty.contains("11 s left") && tty.contains("10 s left"),
        "countdown on a tty: {tty}"
    );
    let piped = run(mmp_tool()
        .args(["check", "--timeout", "1.5"])
        .arg(&case.img));
    let err = String::from_utf8_lossy(&piped.stderr);
    assert_eq!(piped.status.code(), Some(3));
    assert!(
        !err.contains("s left") && err.contains("not decided"),
        "{err}"
    );
}
