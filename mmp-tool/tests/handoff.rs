//! The planned handoff on real devices with real processes: two loop devices over one image
//! are two hosts sharing a disk (update interval 1 s). The source is `host-a` through loop A
//! (an mmpd holder stopped with SIGTERM, which leaves the block CLEAN under its name as an
//! unmount would); the target mounts through loop B under the host name, so `--confirm` sees
//! its kmmpd. Needs root; fails instead of skipping when CI=true.
//!
//! - Confirm: offer, `mount --handoff` (claim_path handoff, mounted), `--confirm` exits 0,
//!   `status` shows the record's remnant, e2fsck clean after the unmount.
//! - Rollback before the target claims: fast, CLEAN under host-a, the target's claim then
//!   finds no offer; offered again, the old nonce is refused and the new one works. The
//!   target gone after its claim (nothing writes): confirm refused, the source's rollback
//!   succeeds after the full wait. A cancel by another node (`--rollback --nonce`) leaves a live block, and
//!   the target's claim is refused as rolled back.
//! - Bad input, each refused with its exit code, JSON result and message, the MMP block's
//!   bytes unchanged: a wrong nonce, an offer to this node or to a non-name, confirm without a
//!   handoff or before the claim, rollback after the confirm, an offer of another node's block
//!   or of a device mounted here, malformed nonces, a block changed underneath, a record of a
//!   newer version.
//!
//! Crashes (SIGKILL, SIGSTOP) are in handoff_crash.rs, I/O faults in handoff_faults.rs.

mod handoff_support;

use handoff_support::*;
use libmmp::ondisk::handoff::{format_nonce, HandoffRead, HandoffStep};
use libmmp::ondisk::mmp::SeqClass;
use nix::sys::signal::Signal;
use std::path::Path;
use std::time::{Duration, Instant};
use test_support::prelude::*;

/// The source's holder: mmpd as host-a through `dev`, ready (an offer or rollback now is
/// refused: in use here), then stopped with SIGTERM.
fn source_released(img: &Image, dev: &Path) {
    let run = img.file("run-a");
    let log = img.file("mmpd-a.log");
    let mut p = Proc::mmpd(&mmpd().unwrap(), &run, SOURCE, dev, &[], log);
    assert!(
        p.wait_log("ready:", Duration::from_secs(60)),
        "mmpd not ready:\n{}",
        p.log()
    );
    // While it holds: no offer, no rollback (it must let go first), nothing written by them.
    let src = Host::source(img, dev);
    let o = src.offer("host-c");
    o.expect(1, "in_use_here");
    assert!(o.message().contains("mmpd"), "{}", o.message());
    src.rollback(None).expect(1, "in_use_here");
    assert_eq!(record(dev), HandoffRead::None);
    p.signal(Signal::SIGTERM);
    assert_eq!(p.wait_code(Duration::from_secs(20)), Some(0), "{}", p.log());
    assert_clean_under(dev, SOURCE);
}

/// Two hosts over a fresh image: the source through A, the target through B.
struct Pair {
    // Dropped first: unmount before the loop devices go.
    _guard: Mount,
    src: Host,
    tgt: Host,
    a: Loop,
    b: Loop,
    img: Image,
}

impl Pair {
    fn new() -> Pair {
        let img = Image::new();
        let (a, b) = (Loop::attach(&img.path), Loop::attach(&img.path));
        let (src, tgt) = (Host::source(&img, &a.dev), Host::target(&img, &b.dev));
        Pair {
            _guard: Mount::guard(&tgt.mnt),
            src,
            tgt,
            a,
            b,
            img,
        }
    }

    /// Offer from the CLEAN block under host-a: the nonce.
    fn offered(&self) -> String {
        clean_under(&self.a.dev, SOURCE);
        let o = self.src.offer(&hostname());
        o.expect(0, "offered");
        o.nonce()
    }
}

#[test]
fn loop_handoff_with_confirm() {
    if !require_mmpd() {
        return;
    }
    let p = Pair::new();
    source_released(&p.img, &p.a.dev);
    let t = Instant::now();
    let o = p.src.offer(&hostname());
    let offer_s = t.elapsed().as_secs_f64();
    o.expect(0, "offered");
    assert_eq!(
        (&o.json["source"], &o.json["target"]),
        (&SOURCE.into(), &hostname().into()),
        "{}",
        o.json
    );
    let n = o.nonce();
    let rec = record(&p.b.dev);
    let rec = rec.valid().expect("a valid record");
    assert_eq!(
        (rec.step, format_nonce(rec.nonce)),
        (HandoffStep::Offered, n.clone())
    );

    let t = Instant::now();
    let m = p.tgt.mount_handoff(&n);
    let gate_s = t.elapsed().as_secs_f64();
    m.expect(0, "mounted");
    assert_eq!(m.json["mounted"], true);
    assert_eq!(m.json["claim_path"], "handoff", "{}", m.json);
    assert_eq!(m.json["handoff_from"], SOURCE);
    assert_eq!(m.json["handoff_nonce"], n.as_str());
    assert!(p.tgt.mounted());

    let t = Instant::now();
    p.src.confirm(&n).expect(0, "confirmed");
    let confirm_s = t.elapsed().as_secs_f64();
    let st = p.src.status();
    assert_eq!(st["handoff"]["state"], "remnant", "{st}");
    assert_eq!(st["handoff"]["record"]["step"], "claimed", "{st}");
    assert_eq!(st["handoff"]["record"]["nonce"], n.as_str(), "{st}");
    assert_eq!(st["node_name"], hostname().as_str(), "kmmpd holds it: {st}");
    eprintln!(
        "offer {offer_s:.2} s (verified {:.2}), target gate {gate_s:.2} s (claim {:.2}), confirm {confirm_s:.2} s",
        o.json["elapsed_seconds"], m.json["claim_seconds"]
    );
    p.tgt.umount();
    assert_fsck_clean(&p.b.dev);
}

#[test]
fn loop_rollback_before_the_target_claims() {
    if !require_mmpd() {
        return;
    }
    let p = Pair::new();
    source_released(&p.img, &p.a.dev);
    let n = p.src.offer(&hostname()).nonce();
    let r = p.src.rollback(None);
    r.expect(0, "rolled_back");
    assert_eq!(r.json["rollback_path"], "fast", "{}", r.json);
    assert_eq!(r.json["nonce"], n.as_str());
    assert_clean_under(&p.a.dev, SOURCE);
    let before = block_bytes(&p.b.dev);
    let m = p.tgt.mount_handoff(&n);
    m.expect(1, "no_offer");
    assert!(
        m.message().contains("no handoff is offered"),
        "{}",
        m.message()
    );
    assert!(!p.tgt.mounted());
    assert_eq!(block_bytes(&p.b.dev), before);
    // Offered again: the old nonce is another handoff's, the new one works.
    let o = p.src.offer(&hostname());
    o.expect(0, "offered");
    p.tgt.mount_handoff(&n).expect(1, "nonce_mismatch");
    p.tgt.mount_handoff(&o.nonce()).expect(0, "mounted");
    p.src.confirm(&o.nonce()).expect(0, "confirmed");
    p.tgt.umount();
    assert_fsck_clean(&p.b.dev);
}

/// The target claims and is gone before any holder writes (it powers off; `claim --handoff`
/// leaves nothing writing): confirm is refused after the reader's wait, and the source takes
/// the device back after the full wait.
#[test]
fn loop_target_gone_after_its_claim_confirm_refused_rollback_done() {
    if !require_devices() {
        return;
    }
    let p = Pair::new();
    let n = p.offered();
    let c = p.tgt.claim_handoff(&n);
    c.expect(0, "claimed");
    assert_eq!(c.json["claim_path"], "handoff", "{}", c.json);
    let t = Instant::now();
    let f = p.src.confirm(&n);
    f.expect(1, "not_confirmed");
    assert!(f.message().contains("did not change"), "{}", f.message());
    let confirm_s = t.elapsed().as_secs_f64();
    let t = Instant::now();
    let r = p.src.rollback(None);
    r.expect(0, "rolled_back");
    assert_eq!(r.json["rollback_path"], "after_full_wait", "{}", r.json);
    eprintln!(
        "bare claim {:.1} s, confirm refused after {confirm_s:.1} s, rollback {:.1} s",
        c.json["elapsed_seconds"],
        t.elapsed().as_secs_f64()
    );
    assert_clean_under(&p.a.dev, SOURCE);
    p.tgt.mount_handoff(&n).expect(1, "no_offer");
    assert_fsck_clean(&p.b.dev);
}

#[test]
fn loop_cancel_from_the_targets_side() {
    if !require_devices() {
        return;
    }
    let p = Pair::new();
    let n = p.offered();
    let r = p.tgt.rollback(Some(&n));
    r.expect(0, "cancelled");
    assert_eq!(r.json["rollback_path"], "cancelled", "{}", r.json);
    let b = read_block(&p.a.dev);
    assert!(matches!(b.seq_class(), SeqClass::Live(_)), "{b:?}");
    assert_eq!(b.nodename(), hostname());
    let rec = b.handoff();
    assert_eq!(
        rec.valid().map(|r| r.step),
        Some(HandoffStep::RolledBack),
        "{rec:?}"
    );
    let before = block_bytes(&p.b.dev);
    let m = p.tgt.mount_handoff(&n);
    m.expect(1, "rolled_back");
    assert!(!p.tgt.mounted());
    // Nor can the source take back what is no longer offered.
    p.src.rollback(None).expect(1, "rolled_back");
    assert_eq!(block_bytes(&p.b.dev), before);
}

/// Exit 2 with the message on stderr and, since the runs ask for `--json`, the error as JSON
/// on stdout too (a usage error is JSON like any other error), nothing written.
fn assert_usage(r: &Run, says: &str) {
    assert_eq!(r.code, 2, "{r:?}");
    if r.result() != "bad_target" {
        assert_eq!(r.result(), "error", "JSON of a usage error: {}", r.json);
        assert_eq!(r.json["exit_code"], 2, "{}", r.json);
        let msg = r.json["error"].as_str().unwrap_or_default();
        assert!(
            msg.contains(says),
            "{says:?} not in the JSON's error {msg:?}"
        );
    }
    assert!(r.err.contains(says), "{says:?} not in {}", r.err);
}

#[test]
fn loop_bad_targets_and_malformed_nonces_write_nothing() {
    if !require_devices() {
        return;
    }
    let p = Pair::new();
    clean_under(&p.a.dev, SOURCE);
    let before = block_bytes(&p.a.dev);
    assert_usage(&p.src.offer(SOURCE), "it is this node");
    assert_usage(&p.src.offer("a b"), "contains blanks");
    assert_usage(&p.src.offer(""), "it is empty");
    assert_usage(&p.src.offer(&"x".repeat(65)), "longer than the 64 bytes");
    let bad = "is not a handoff nonce";
    assert_usage(&p.tgt.mount_handoff("xyz"), bad);
    assert_usage(&p.tgt.claim_handoff("12345678901234567"), bad);
    assert_usage(&p.src.confirm("-1"), "");
    let dev = p.a.dev.to_str().unwrap();
    assert_usage(
        &p.src.run("handoff", &[dev, "--rollback", "--nonce", "g"]),
        bad,
    );
    // One step at a time.
    assert_usage(&p.src.run("handoff", &[dev, "--to", "x", "--rollback"]), "");
    assert_usage(
        &p.src.run("handoff", &[dev, "--confirm", "1", "--rollback"]),
        "",
    );
    // Confirm with no handoff at all (a CLEAN block).
    let c = p.src.confirm("0123456789abcdef");
    c.expect(1, "no_offer");
    assert!(
        c.message().contains("no handoff is offered"),
        "{}",
        c.message()
    );
    // Rollback with nothing to roll back.
    p.src.rollback(None).expect(1, "no_offer");
    assert_eq!(block_bytes(&p.a.dev), before);
}

/// `--nonce` names the handoff to roll back (`requires = "rollback"` in cli.rs); with `--to`
/// or `--confirm` it must be a usage error, not silently ignored while an offer is written.
#[test]
fn loop_nonce_without_rollback_is_a_usage_error() {
    if !require_devices() {
        return;
    }
    let p = Pair::new();
    clean_under(&p.a.dev, SOURCE);
    let before = block_bytes(&p.a.dev);
    let dev = p.a.dev.to_str().unwrap();
    assert_usage(
        &p.src.run("handoff", &[dev, "--to", "x", "--nonce", "1"]),
        "",
    );
    assert_usage(
        &p.src
            .run("handoff", &[dev, "--confirm", "1", "--nonce", "1"]),
        "",
    );
    assert_eq!(block_bytes(&p.a.dev), before);
}

/// Flip the last hex digit of a nonce.
fn other_nonce(n: &str) -> String {
    let last = if n.ends_with('0') { '1' } else { '0' };
    format!("{}{last}", &n[..n.len() - 1])
}

#[test]
fn loop_wrong_nonce_early_confirm_and_a_block_changed_underneath() {
    if !require_devices() {
        return;
    }
    let p = Pair::new();
    let n = p.offered();
    let wrong = other_nonce(&n);
    let before = block_bytes(&p.a.dev);
    let m = p.tgt.mount_handoff(&wrong);
    m.expect(1, "nonce_mismatch");
    assert!(m.message().contains("does not match"), "{}", m.message());
    assert!(!p.tgt.mounted());
    p.tgt.claim_handoff(&wrong).expect(1, "nonce_mismatch");
    p.src.confirm(&wrong).expect(1, "nonce_mismatch");
    p.tgt.rollback(Some(&wrong)).expect(1, "nonce_mismatch");
    let c = p.src.confirm(&n);
    c.expect(1, "not_confirmed");
    assert!(c.message().contains("has not claimed"), "{}", c.message());
    // The right nonce on the wrong node.
    let c_host = Host::new(&p.img, "c", &p.b.dev, Some("host-c"));
    let m = c_host.mount_handoff(&n);
    m.expect(1, "not_for_us");
    assert!(!c_host.mounted());
    // An offer over an offer.
    p.src.offer("host-c").expect(1, "handoff_in_progress");
    assert_eq!(block_bytes(&p.a.dev), before);

    // Another node writes over the offer: nobody acts on it any more.
    write_foreign(&p.b.dev, 0x4242, "host-c");
    let before = block_bytes(&p.a.dev);
    p.tgt.mount_handoff(&n).expect(1, "no_offer");
    p.src.rollback(None).expect(1, "no_offer");
    p.src.confirm(&n).expect(1, "no_offer");
    let o = p.src.offer(&hostname());
    o.expect(1, "not_ours");
    assert!(o.message().contains("node 'host-c'"), "{}", o.message());
    assert!(!p.tgt.mounted());
    assert_eq!(block_bytes(&p.a.dev), before);
}

#[test]
fn loop_rollback_after_the_confirm_and_offers_of_a_used_device_are_refused() {
    if !require_devices() {
        return;
    }
    let p = Pair::new();
    let n = p.offered();
    p.tgt.mount_handoff(&n).expect(0, "mounted");
    p.src.confirm(&n).expect(0, "confirmed");
    let t = Instant::now();
    let r = p.src.rollback(None);
    r.expect(1, "target_holds");
    assert!(r.message().contains("went through"), "{}", r.message());
    eprintln!("rollback refused after {:.1} s", t.elapsed().as_secs_f64());
    // Off the source: refused at once; through the mounted device, refused as in use here.
    let c_host = Host::new(&p.img, "c", &p.a.dev, Some("host-c"));
    c_host.rollback(Some(&n)).expect(1, "target_holds");
    p.tgt.rollback(Some(&n)).expect(1, "in_use_here");
    // Offers: through the mounted device here, and of the block kmmpd writes.
    let o = p.tgt.offer("host-c");
    o.expect(1, "in_use_here");
    assert!(o.message().contains("mounted at"), "{}", o.message());
    p.src.offer("host-c").expect(1, "not_ours");
    // Nothing of ours reached the block: kmmpd still writes it, with no record.
    assert!(p.tgt.mounted());
    let b = read_block(&p.a.dev);
    assert_eq!(b.nodename(), hostname());
    assert!(!matches!(b.handoff(), HandoffRead::Valid(_)), "{b:?}");
    assert!(still_written(&p.a.dev));
    p.src.confirm(&n).expect(0, "confirmed");
    p.tgt.umount();
    assert_fsck_clean(&p.b.dev);
}

#[test]
fn loop_a_newer_record_is_refused_by_every_step() {
    if !require_devices() {
        return;
    }
    let p = Pair::new();
    let nonce = 0x0123_4567_89ab_cdef;
    write_offer(&p.a.dev, &hostname(), nonce, |b| {
        b.set_handoff_version_for_test(2)
    });
    let n = format_nonce(nonce);
    let before = block_bytes(&p.a.dev);
    let c = p.tgt.claim_handoff(&n);
    c.expect(1, "newer_record");
    assert!(c.message().contains("version 2, newer"), "{}", c.message());
    p.tgt.mount_handoff(&n).expect(1, "newer_record");
    assert!(!p.tgt.mounted());
    p.src.rollback(None).expect(1, "newer_record");
    p.tgt.rollback(Some(&n)).expect(1, "newer_record");
    p.src.confirm(&n).expect(1, "newer_record");
    p.src.offer("host-c").expect(1, "newer_record");
    let st = p.src.status();
    assert_eq!(st["handoff"]["state"], "newer", "{st}");
    assert_eq!(block_bytes(&p.a.dev), before);
}
