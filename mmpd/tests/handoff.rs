//! mmpd as the target of a planned handoff (`--handoff NONCE`, HANDOFF.md): host A's mmpd lets
//! go (SIGTERM: CLEAN under host-a), `mmp-tool handoff --to host-b` offers the device, host B's
//! mmpd claims it with the nonce without the full wait and heartbeats; `--confirm` sees it. A
//! wrong nonce is refused (exit 3) with nothing written. Two loop devices over one image are the
//! two hosts. Root only (skips otherwise; fails under CI=true).

use test_support::prelude::*;

use libmmp::ondisk::mmp::EXT4_MMP_SEQ_CLEAN;
use nix::sys::signal::Signal;
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

const MMPD: &str = env!("CARGO_BIN_EXE_mmpd");

/// mmp-tool as cargo builds it beside mmpd (`cargo test --workspace` builds both).
fn mmp_tool() -> Option<PathBuf> {
    let p = Path::new(MMPD).parent()?.join("mmp-tool");
    p.is_file().then_some(p)
}

fn mmpd(img: &Image, node: &str, dev: &Path, extra: &[&str]) -> Proc {
    let run = img.file(&format!("run-{node}"));
    let log = img.file(&format!("{node}.log"));
    Proc::mmpd(Path::new(MMPD), &run, node, dev, extra, log)
}

fn tool(args: &[&str]) -> (i32, Value) {
    let out = Command::new(mmp_tool().unwrap())
        .args(args)
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        serde_json::from_slice(&out.stdout).unwrap_or(Value::Null),
    )
}

/// host-a's mmpd holds the device through `a`, then releases it: CLEAN under host-a.
fn held_then_released(img: &Image, a: &Loop) {
    let mut holder = mmpd(img, "host-a", &a.dev, &[]);
    assert!(
        holder.wait_log("ready:", Duration::from_secs(60)),
        "{}",
        holder.log()
    );
    holder.signal(Signal::SIGTERM);
    assert_eq!(
        holder.wait_code(Duration::from_secs(20)),
        Some(0),
        "{}",
        holder.log()
    );
    let blk = read_block(&a.dev);
    assert_eq!(
        (blk.mmp_seq, blk.nodename()),
        (EXT4_MMP_SEQ_CLEAN, "host-a".into())
    );
}

fn offer(a: &Loop) -> String {
    let (code, j) = tool(&[
        "handoff",
        "--json",
        "--node-name",
        "host-a",
        "--to",
        "host-b",
        a.dev.to_str().unwrap(),
    ]);
    assert_eq!(code, 0, "{j}");
    j["nonce"].as_str().unwrap().to_string()
}

#[test]
fn mmpd_takes_over_a_handoff_at_once_and_a_wrong_nonce_is_refused() {
    if !require_loop_devices()
        || !require(
            mmp_tool().is_some(),
            "mmp-tool is not built (cargo build -p mmp-tool)",
        )
    {
        return;
    }
    let img = Image::new();
    let (a, b) = (Loop::attach(&img.path), Loop::attach(&img.path));
    held_then_released(&img, &a);
    let nonce = offer(&a);

    // A wrong nonce: refused, nothing written.
    let before = read_block(&b.dev);
    let mut wrong = mmpd(&img, "host-b", &b.dev, &["--handoff", "0123456789abcdef"]);
    assert_eq!(
        wrong.wait_code(Duration::from_secs(20)),
        Some(3),
        "{}",
        wrong.log()
    );
    assert!(wrong.log().contains("does not match"), "{}", wrong.log());
    assert_eq!(read_block(&b.dev), before, "nothing written");

    let t = Instant::now();
    let mut target = mmpd(&img, "host-b", &b.dev, &["--handoff", &nonce]);
    assert!(
        target.wait_log("ready:", Duration::from_secs(30)),
        "{}",
        target.log()
    );
    let took = t.elapsed();
    eprintln!(
        "mmpd --handoff: ready {:.2} s after its start",
        took.as_secs_f64()
    );
    assert!(
        target.log().contains("handoff claim won"),
        "{}",
        target.log()
    );
    assert!(took < Duration::from_secs(8), "not the full wait: {took:?}");
    let (code, j) = tool(&[
        "handoff",
        "--json",
        "--confirm",
        &nonce,
        a.dev.to_str().unwrap(),
    ]);
    assert_eq!(code, 0, "{j}");
    assert_eq!(j["result"], "confirmed", "{j}");
    // The source's rollback is refused while host-b beats (the normal full wait sees it).
    let (code, j) = tool(&[
        "handoff",
        "--json",
        "--node-name",
        "host-a",
        "--rollback",
        "-q",
        a.dev.to_str().unwrap(),
    ]);
    assert_eq!(code, 1, "{j}");
    assert_eq!(j["result"], "target_holds", "{j}");
    target.signal(Signal::SIGTERM);
    assert_eq!(
        target.wait_code(Duration::from_secs(20)),
        Some(0),
        "{}",
        target.log()
    );
    assert_eq!(read_block(&a.dev).mmp_seq, EXT4_MMP_SEQ_CLEAN);
}
