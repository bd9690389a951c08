//! The planned handoff when one host's path to the disk fails or degrades: that host's device
//! is a loop device over a FUSE file that fails (EIO) or delays every I/O on command
//! ([`FaultDisk`]); the other host's is a plain loop device over the image behind it. Needs
//! root, loop devices and /dev/fuse (skips otherwise; fails under CI=true).
//!
//! - The target's path fails before its claim: its `mount --handoff` fails, nothing mounted,
//!   and the source's rollback is fast (the claim never landed).
//! - The target's path fails while it verifies its claim: the same, and the rollback succeeds
//!   after the full wait (the target's claim is on the disk, silent).
//! - The source's path fails before or during its offer: the offer fails and prints no nonce;
//!   an offer that landed is rolled back by the source once its path is back.
//! - A degraded target path (each I/O delayed 20, 150, 400 ms): the target claims in time and
//!   mounts (the rollback is then refused) or refuses (stalled; the rollback then succeeds);
//!   never both.

mod handoff_support;

use handoff_support::*;
use libmmp::ondisk::handoff::HandoffStep;
use std::time::Duration;
use test_support::prelude::*;

/// One host on the fault disk, the other on a plain loop device over the same image.
struct FaultRig {
    // Dropped after the fault is cleared (Drop below), before the devices.
    _guards: [Mount; 2],
    src: Host,
    tgt: Host,
    /// A third node for the recovery, on the plain device.
    fresh: Host,
    plain: Loop,
    disk: FaultDisk,
    /// The MMP block's byte offset.
    at: u64,
    _img: Image,
}

impl Drop for FaultRig {
    fn drop(&mut self) {
        self.disk.set(Fault::None);
    }
}

impl FaultRig {
    /// `target_faulty`: the target's device is the fault disk (else the source's).
    fn new(target_faulty: bool) -> Option<FaultRig> {
        if !require_fuse() {
            return None;
        }
        let img = Image::new();
        let disk = FaultDisk::new(&img.path).expect("FUSE disk");
        let plain = Loop::attach(&img.path);
        let (faulty, good) = (disk.dev().to_path_buf(), plain.dev.clone());
        let (s, t) = if target_faulty {
            (good, faulty)
        } else {
            (faulty, good)
        };
        let (src, tgt) = (Host::source(&img, &s), Host::target(&img, &t));
        let fresh = Host::new(&img, "z", &plain.dev, Some("host-z"));
        clean_under(&plain.dev, SOURCE);
        Some(FaultRig {
            _guards: [Mount::guard(&tgt.mnt), Mount::guard(&fresh.mnt)],
            at: mmp_offset(&plain.dev),
            src,
            tgt,
            fresh,
            plain,
            disk,
            _img: img,
        })
    }

    fn offer(&self) -> String {
        clean_under(&self.plain.dev, SOURCE);
        let o = self.src.offer(&hostname());
        o.expect(0, "offered");
        o.nonce()
    }

    /// With the path back: a fresh node's gated mount within the normal wait, e2fsck clean.
    fn recover(&self) {
        self.disk.set(Fault::None);
        assert_not_stuck(&self.plain.dev, "recovery");
        let m = self.fresh.mount();
        m.expect(0, "mounted");
        let took = m.json["claim_seconds"].as_f64().unwrap();
        assert!(took < 30.0, "the fresh claim took {took:.1} s");
        self.fresh.umount();
        assert_fsck_clean(&self.plain.dev);
    }
}

/// Failed on I/O: exit 2, the error's JSON (no result of the step), the error on stderr,
/// nothing mounted.
fn assert_io_failure(r: &Run, host: &Host) {
    assert_eq!(r.code, 2, "{r:?}");
    assert_eq!(r.result(), "error", "{r:?}");
    assert!(
        r.err.contains("Input/output error") || r.err.contains("I/O"),
        "{r:?}"
    );
    assert!(!host.mounted());
}

#[test]
fn loop_fault_target_path_fails_before_its_claim() {
    let Some(r) = FaultRig::new(true) else { return };
    let n = r.offer();
    let before = block_bytes(&r.plain.dev);
    r.disk.set(Fault::Fail);
    assert_io_failure(&r.tgt.mount_handoff(&n), &r.tgt);
    assert_eq!(block_bytes(&r.plain.dev), before, "the claim never landed");
    r.disk.set(Fault::None);
    let rb = r.src.rollback(None);
    rb.expect(0, "rolled_back");
    assert_eq!(rb.json["rollback_path"], "fast", "{}", rb.json);
    assert_clean_under(&r.plain.dev, SOURCE);
    r.recover();
}

#[test]
fn loop_fault_target_path_fails_while_it_verifies_its_claim() {
    let Some(r) = FaultRig::new(true) else { return };
    let n = r.offer();
    let child = spawn(r.tgt.mount_handoff_cmd(&n));
    let landed = wait_landed(&r.disk, r.at, HandoffStep::Claimed, Duration::from_secs(10));
    r.disk.set(Fault::Fail);
    let out = Run::from_output(&wait_output(child, LIMIT));
    assert!(landed, "the target's claim never landed: {out:?}");
    assert_io_failure(&out, &r.tgt);
    r.disk.set(Fault::None);
    let rec = record(&r.plain.dev);
    assert_eq!(
        rec.valid().map(|r| r.step),
        Some(HandoffStep::Claimed),
        "{rec:?}"
    );
    let rb = r.src.rollback(None);
    rb.expect(0, "rolled_back");
    assert_eq!(rb.json["rollback_path"], "after_full_wait", "{}", rb.json);
    assert_clean_under(&r.plain.dev, SOURCE);
    r.recover();
}

#[test]
fn loop_fault_source_path_fails_before_and_during_its_offer() {
    let Some(r) = FaultRig::new(false) else {
        return;
    };
    // Before: nothing written, no nonce.
    let before = block_bytes(&r.plain.dev);
    r.disk.set(Fault::Fail);
    let o = r.src.offer(&hostname());
    assert_io_failure(&o, &r.src);
    assert_eq!(block_bytes(&r.plain.dev), before);
    // During its verification: the offer landed, but no nonce is printed.
    r.disk.set(Fault::None);
    let child = spawn(r.src.offer_cmd(&hostname()));
    let landed = wait_landed(&r.disk, r.at, HandoffStep::Offered, Duration::from_secs(10));
    r.disk.set(Fault::Fail);
    let out = Run::from_output(&wait_output(child, LIMIT));
    assert!(landed, "the offer never landed: {out:?}");
    assert_io_failure(&out, &r.src);
    r.disk.set(Fault::None);
    let rec = record(&r.plain.dev);
    assert_eq!(
        rec.valid().map(|r| r.step),
        Some(HandoffStep::Offered),
        "{rec:?}"
    );
    // Its path back, the source takes its offer back.
    let rb = r.src.rollback(None);
    rb.expect(0, "rolled_back");
    assert_eq!(rb.json["rollback_path"], "fast", "{}", rb.json);
    assert_clean_under(&r.plain.dev, SOURCE);
    r.recover();
}

#[test]
fn loop_fault_degraded_target_path_claims_in_time_or_refuses() {
    let Some(r) = FaultRig::new(true) else { return };
    for ms in [20, 150, 400] {
        let n = r.offer();
        r.disk.set(Fault::Delay(Duration::from_millis(ms)));
        let m = r.tgt.mount_handoff(&n);
        // The source's own path is fine; the target's stays slow (its kmmpd writes through it).
        let rb = r.src.rollback(None);
        let mounted = r.tgt.mounted();
        eprintln!(
            "delay {ms} ms: target {} {} (claim {} s), rollback {} {} {}, mounted {mounted}",
            m.code,
            m.result(),
            m.json["claim_seconds"],
            rb.code,
            rb.result(),
            rb.json["rollback_path"]
        );
        assert!(!(mounted && rb.code == 0), "two holders: {m:?}\n{rb:?}");
        if mounted {
            m.expect(0, "mounted");
            rb.expect(1, "target_holds");
            r.disk.set(Fault::None);
            r.tgt.umount();
        } else {
            assert!(
                matches!(m.result(), "stalled" | "lost"),
                "a slow path refuses as stalled: {m:?}"
            );
            rb.expect(0, "rolled_back");
        }
        r.recover();
    }
}
