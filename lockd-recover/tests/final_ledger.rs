//! The final ledger against a real kernel (root, loop devices, e2fsprogs): `record --final` on
//! a mounted ext4 marks the ledger with the mount; after an umount and one mount `wait-reclaim`
//! takes it though it is an hour old, after one more mount it refuses it as stale, naming the
//! mounts in between. A fake proc tree stands in for nfsd (no locks, grace knobs as files).

use lockd_recover::fake_proc::FakeProc;
use lockd_recover::ledger;
use lockd_recover::mount_mark::MountMark;
use std::path::Path;
use std::process::{Command, Output};
use test_support::prelude::*;

const BIN: &str = env!("CARGO_BIN_EXE_lockd-recover");

fn lockd_recover(proc: &Path, args: &[&str], fs: &Path) -> Output {
    let state = fs.join(".statd");
    Command::new(BIN)
        .arg("--proc-root")
        .arg(proc)
        .args(args)
        .arg("--fs")
        .arg(fs)
        .arg("--state-dir")
        .arg(&state)
        .output()
        .unwrap()
}

/// `wait-reclaim` with nothing to wait for: exit 0 once the ledger is taken, 3 when stale.
fn wait_reclaim(proc: &Path, fs: &Path) -> Output {
    let args = ["-v", "wait-reclaim", "--timeout", "1", "--min-grace", "0"];
    lockd_recover(proc, &args, fs)
}

/// The command exited with `code` and said `text` on stderr.
fn expect(o: &Output, code: i32, text: &str) {
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(code), "{err}");
    assert!(err.contains(text), "{err}");
}

#[test]
fn loop_a_final_ledger_counts_on_the_next_mount_only() {
    if !require_loop_devices() {
        return;
    }
    let work = tempfile::tempdir().unwrap();
    let img = mkfs(work.path(), "shared.img", 32, &[]);
    let lp = Loop::attach(&img);
    let dir = work.path().join("mnt");
    let proc = FakeProc::running(8).build();

    // The old server: its final record, an hour before the takeover.
    let m = kernel_mount(&lp.dev, &dir).unwrap();
    let mark = MountMark::read(&dir).unwrap();
    std::fs::create_dir(dir.join(".statd")).unwrap();
    let o = lockd_recover(
        proc.path(),
        &["record", "--final", "--ip", "192.0.2.1"],
        &dir,
    );
    expect(&o, 0, "");
    let mut l = ledger::read(&dir.join(".statd")).unwrap();
    assert_eq!(l.final_mount.as_ref(), Some(&mark));
    assert_eq!(l.format, ledger::FINAL_LEDGER_FORMAT);
    l.taken_at_unix_ms -= 3_600_000;
    ledger::write(&dir.join(".statd"), &l).unwrap();
    drop(m);

    // The new server's mount: the next one, so the age does not count.
    let m = kernel_mount(&lp.dev, &dir).unwrap();
    let now = MountMark::read(&dir).unwrap();
    assert_eq!(now.mount_count, mark.mount_count.wrapping_add(1));
    let o = wait_reclaim(proc.path(), &dir);
    expect(&o, 0, "final ledger of the previous mount");
    drop(m);

    // One more mount in between: stale, and the refusal says why.
    let m = kernel_mount(&lp.dev, &dir).unwrap();
    let o = wait_reclaim(proc.path(), &dir);
    expect(&o, 3, "mounted read-write 2 times since");
    drop(m);
}
