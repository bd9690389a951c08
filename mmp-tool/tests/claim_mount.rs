//! `mmp-tool claim`, `release`, `mount` and `status` (local holder) against real peers: the
//! kernel's ext4 MMP through loop devices (root; skipped otherwise, failing under CI=true), and
//! image files.

mod support;

use libmmp::ondisk::mmp::{SeqClass, EXT4_MMP_SEQ_CLEAN};
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};
use support::*;
use test_support::prelude::*;

const TOOL: &str = env!("CARGO_BIN_EXE_mmp-tool");

fn json(s: &str) -> serde_json::Value {
    serde_json::from_str(s).unwrap_or_else(|e| panic!("not JSON ({e}): {s}"))
}

#[test]
fn loop_two_mounts_racing_exactly_one_mounts_and_the_kernel_holds_it() {
    if !require_loop_devices() {
        return;
    }
    let img = Image::new();
    let a = Loop::attach(&img.path);
    let b = Loop::attach(&img.path);
    let run = img.file("run");
    let (da, db) = (img.file("mnt-a"), img.file("mnt-b"));
    std::fs::create_dir_all(&da).unwrap();
    std::fs::create_dir_all(&db).unwrap();
    let spawn = |dev: &Path, dir: &Path, node: &str| {
        Command::new(TOOL)
            .args(["mount", "--json", "--node-name", node])
            .arg(dev)
            .arg(dir)
            .env("MMPD_RUN_DIR", &run)
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap()
    };
    let t = Instant::now();
    let pa = spawn(&a.dev, &da, "node-a");
    let pb = spawn(&b.dev, &db, "node-b");
    let oa = pa.wait_with_output().unwrap();
    let ob = pb.wait_with_output().unwrap();
    // Unmount whatever got mounted, whatever the assertions say.
    let _ma = Mount::guard(&da);
    let _mb = Mount::guard(&db);
    let (ja, jb) = (
        json(&String::from_utf8_lossy(&oa.stdout)),
        json(&String::from_utf8_lossy(&ob.stdout)),
    );
    let codes = (oa.status.code(), ob.status.code());
    let both = format!("a: {ja}\nb: {jb}");
    assert!(
        codes == (Some(0), Some(1)) || codes == (Some(1), Some(0)),
        "exactly one must mount: {codes:?}\n{both}"
    );
    let (winner, loser) = if codes.0 == Some(0) {
        (&ja, &jb)
    } else {
        (&jb, &ja)
    };
    assert_eq!(winner["mounted"], true, "{both}");
    assert_eq!(loser["mounted"], false, "{both}");
    assert!(
        ["lost", "in_use"].contains(&loser["result"].as_str().unwrap()),
        "{both}"
    );
    assert!(
        winner["handoff_window_ms"].as_f64().unwrap() < 100.0,
        "{both}"
    );
    assert!(t.elapsed() < Duration::from_secs(40));
    // kmmpd holds it now: the block moves, and a third claim is refused at once.
    let s1 = read_block(&a.dev);
    assert!(matches!(s1.seq_class(), SeqClass::Live(_)), "{s1:?}");
    let t = Instant::now();
    let (code, _, err) = tool(&run, &["claim", b.dev.to_str().unwrap()]);
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("in use on another node"), "{err}");
    assert!(t.elapsed() < Duration::from_secs(6), "{:?}", t.elapsed());
}

#[test]
fn loop_claims_racing_on_a_clean_block() {
    if !require_loop_devices() {
        return;
    }
    let img = Image::new();
    let a = Loop::attach(&img.path);
    let b = Loop::attach(&img.path);
    let run = img.file("run");
    let spawn = |dev: &Path, node: &str| {
        Command::new(TOOL)
            .args(["claim", "--json", "--node-name", node])
            .arg(dev)
            .env("MMPD_RUN_DIR", &run)
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap()
    };
    let pa = spawn(&a.dev, "node-a");
    let pb = spawn(&b.dev, "node-b");
    let ja = json(&String::from_utf8_lossy(
        &pa.wait_with_output().unwrap().stdout,
    ));
    let jb = json(&String::from_utf8_lossy(
        &pb.wait_with_output().unwrap().stdout,
    ));
    let both = format!("a: {ja}\nb: {jb}");
    let won: Vec<&serde_json::Value> = [&ja, &jb]
        .into_iter()
        .filter(|j| j["claimed"] == true)
        .collect();
    // Exactly one wins. The loser either saw the winner's write before writing its own (its
    // compare-read, or its watch of the winner's live block, which the winner refreshes:
    // "in_use"), or wrote first and saw the winner's later write ("lost").
    assert_eq!(won.len(), 1, "{both}");
    let loser = if ja["claimed"] == true { &jb } else { &ja };
    assert!(
        loser["result"] == "lost" || loser["result"] == "in_use",
        "{both}"
    );
    assert_eq!(
        read_block(&a.dev).nodename(),
        won[0]["node_name"].as_str().unwrap()
    );
}

#[test]
fn file_claim_release_and_status_of_a_local_mmpd() {
    if !require_e2fsprogs() {
        return;
    }
    let img = Image::new();
    let p = img.path.to_str().unwrap();
    let run = img.file("run");
    let (code, out, err) = tool(&run, &["claim", "--json", p]);
    assert_eq!(code, 0, "{out}{err}");
    let j = json(&out);
    let seq = j["sequence"].as_u64().unwrap() as u32;
    assert_eq!(j["previous_state"], "clean");
    assert!(j["elapsed_seconds"].as_f64().unwrap() >= 9.0);
    let blk = read_block(&img.path);
    assert_eq!(blk.mmp_seq, seq);
    assert_eq!(blk.mmp_check_interval, 5);

    // Another node's block is never released.
    write_foreign(&img.path, 0x4242, "other");
    let (code, _, err) = tool(&run, &["release", p]);
    assert_eq!(code, 1, "{err}");
    assert!(
        err.contains("NOT released") && err.contains("other"),
        "{err}"
    );
    assert_eq!(read_block(&img.path).mmp_seq, 0x4242);
    let (code, _, _) = tool(&run, &["release", "--force", "--node-name", "me", p]);
    assert_eq!(code, 1, "--force still needs our node name");

    // Our own claim is.
    write_foreign(&img.path, seq, &libmmp::host::identity::nodename());
    let (code, out, err) = tool(&run, &["release", "--json", p]);
    assert_eq!(code, 0, "{out}{err}");
    assert_eq!(json(&out)["result"], "released");
    assert_eq!(read_block(&img.path).mmp_seq, EXT4_MMP_SEQ_CLEAN);

    // An mmpd holding the device on this host (its lock and state file): status shows it,
    // release, claim and mount refuse to write under it.
    let lock = libmmp::host::run_dir::lock_device(&run, &img.path).unwrap();
    let st = libmmp::host::run_dir::HolderState {
        pid: 4242,
        device: p.to_string(),
        state: Some(libmmp::host::run_dir::HolderPhase::Holding),
        seq: 0x77,
        interval_ms: 1000,
        fence: "exit".into(),
        ..Default::default()
    };
    libmmp::host::run_dir::write_state(&run, &lock, &st).unwrap();
    let (code, out, _) = tool(&run, &["status", p]);
    assert_eq!(code, 0);
    assert!(
        out.contains("held by:          mmpd pid 4242 on this host (holding"),
        "{out}"
    );
    let (_, out, _) = tool(&run, &["status", "--json", p]);
    assert_eq!(json(&out)["local_holder"]["pid"], 4242);
    assert_eq!(json(&out)["state"], "clean");
    for args in [
        vec!["release", p],
        vec!["claim", p],
        vec!["mount", p, run.to_str().unwrap()],
    ] {
        let (code, _, err) = tool(&run, &args);
        assert_eq!(code, 1, "{args:?}: {err}");
        assert!(err.contains("held by mmpd on this host"), "{err}");
    }
    drop(lock);
    let (_, out, _) = tool(&run, &["status", "--json", p]);
    assert!(json(&out)["local_holder"].is_null(), "{out}");
}

#[test]
fn file_claim_refusals_write_nothing() {
    if !require_e2fsprogs() {
        return;
    }
    let img = Image::new();
    let p = img.path.to_str().unwrap();
    let run = img.file("run");
    write_foreign(&img.path, libmmp::ondisk::mmp::EXT4_MMP_SEQ_FSCK, "fsck");
    let before = std::fs::read(&img.path).unwrap();
    let (code, _, err) = tool(&run, &["claim", p]);
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("clear_mmp"), "{err}");
    let (code, _, err) = tool(&run, &["mount", p, img.dir.path().to_str().unwrap()]);
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("not mounting"), "{err}");
    assert!(
        std::fs::read(&img.path).unwrap() == before,
        "nothing written"
    );
    let (code, _, err) = tool(&run, &["claim", "/nonexistent/x"]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("/nonexistent/x"), "{err}");
}

/// `release --force` has no record of a claim, only a node name, which a kernel mount on this
/// host (kmmpd writes the host name) or another node with the same name also writes. It must
/// watch the block first: CLEAN over a live block lets another node's kernel mount at once.
#[test]
fn file_release_force_refuses_a_block_that_is_still_written() {
    if !require_e2fsprogs() {
        return;
    }
    let img = Image::new();
    let p = img.path.to_str().unwrap();
    let run = img.file("run");
    write_foreign(&img.path, 100, "me");
    let stop = std::sync::atomic::AtomicBool::new(false);
    let (code, out, err) = std::thread::scope(|s| {
        // A live writer naming "me", like kmmpd, every 300 ms.
        s.spawn(|| {
            let mut seq = 100;
            while !stop.load(std::sync::atomic::Ordering::SeqCst) {
                std::thread::sleep(Duration::from_millis(300));
                seq += 1;
                write_foreign(&img.path, seq, "me");
            }
        });
        let r = tool(
            &run,
            &["release", "--json", "--force", "--node-name", "me", p],
        );
        stop.store(true, std::sync::atomic::Ordering::SeqCst);
        r
    });
    assert_eq!(code, 1, "{out}{err}");
    assert_eq!(json(&out)["released"], false, "{out}");
    assert_ne!(read_block(&img.path).mmp_seq, EXT4_MMP_SEQ_CLEAN);

    // A stale block naming us is released, after the kernel's wait (11 s here).
    write_foreign(&img.path, 200, "me");
    let t = Instant::now();
    let (code, out, err) = tool(
        &run,
        &["release", "--json", "--force", "--node-name", "me", p],
    );
    assert_eq!(code, 0, "{out}{err}");
    assert!(t.elapsed() >= Duration::from_secs(11), "{:?}", t.elapsed());
    assert_eq!(read_block(&img.path).mmp_seq, EXT4_MMP_SEQ_CLEAN);
}
