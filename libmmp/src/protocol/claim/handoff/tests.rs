use super::*;
use crate::io::MemDevice;
use crate::ondisk::handoff::HANDOFF_VERSION;
use crate::ondisk::mmp::EXT4_MMP_SEQ_CLEAN;
use crate::protocol::check::tests::{image, shared};
use crate::protocol::claim::tests::opts;
use crate::testing::FakeClock;
use std::cell::Cell;

const NONCE: u64 = 0x5eed_0000_0000_0001;

fn clean_by(node: &str) -> MmpBlock {
    let mut b = MmpBlock::new(0x77, 100, node, "sdb", 10);
    b.mmp_seq = EXT4_MMP_SEQ_CLEAN;
    b
}

fn seqs() -> impl FnMut() -> Result<u32, SeqError> {
    let n = Cell::new(0x1000u32);
    move || {
        n.set(n.get() + 1);
        Ok(n.get())
    }
}

fn offer_on(fs: &MmpFs<impl BlockIo>, clock: &FakeClock) -> Result<Offered, HandoffError> {
    offer(
        fs,
        clock,
        &mut seqs(),
        &mut || Ok(NONCE),
        &opts("a"),
        "b",
        &mut |_, _, _| {},
    )
}

fn claim_on(
    fs: &MmpFs<impl BlockIo>,
    clock: &FakeClock,
    node: &str,
    nonce: u64,
) -> Result<HandoffClaim, HandoffError> {
    let mut s = || Ok(0x2000);
    claim_handoff(
        fs,
        clock,
        &mut s,
        &opts(node),
        ClaimMode::HolderFollows,
        nonce,
        &|| false,
        &mut |_, _, _| {},
    )
}

fn rollback_as(
    fs: &MmpFs<impl BlockIo>,
    clock: &FakeClock,
    node: &str,
    nonce: Option<u64>,
) -> Result<RolledBack, HandoffError> {
    rollback(
        fs,
        clock,
        &mut seqs(),
        &opts(node),
        nonce,
        &mut |_, _, _| {},
    )
}

fn offered_device() -> (MemDevice, MmpBlock) {
    let clock = FakeClock::default();
    let dev = MemDevice::new("img", image(true, &clean_by("a")).snapshot());
    let fs = MmpFs::open(&dev).unwrap();
    let o = offer_on(&fs, &clock).unwrap();
    (dev, o.block)
}

fn bytes(dev: &MemDevice) -> Vec<u8> {
    dev.snapshot()
}

#[test]
fn offer_then_claim_is_fast_and_leaves_the_targets_claim() {
    let clock = FakeClock::default();
    let dev = MemDevice::new("img", image(true, &clean_by("a")).snapshot());
    let fs = MmpFs::open(&dev).unwrap();
    let o = offer_on(&fs, &clock).unwrap();
    assert_eq!(o.record.step, HandoffStep::Offered);
    assert_eq!(o.record.nonce, NONCE);
    // The source's verification: the gap + two polls.
    assert!(o.elapsed >= MAX_WRITE_GAP && o.elapsed < Duration::from_secs(3));
    let blk = fs.read_mmp().unwrap();
    assert_eq!(
        blk.handoff().valid().map(|r| r.step),
        Some(HandoffStep::Offered)
    );
    assert_eq!(blk.nodename(), "a");

    let t0 = clock.now();
    let c = claim_on(&fs, &clock, "b", NONCE).unwrap();
    let took = clock.now() - t0;
    assert!(
        took < Duration::from_millis(700),
        "target claim took {took:?}"
    );
    let now = fs.read_mmp().unwrap();
    assert_eq!(now.nodename(), "b");
    assert_eq!(
        now.handoff().valid().map(|r| (r.step, r.nonce)),
        Some((HandoffStep::Claimed, NONCE))
    );
    assert_eq!(c.claimed.block.mmp_seq, now.mmp_seq);
}

#[test]
fn the_target_refuses_without_writing() {
    let (dev, _) = offered_device();
    let clock = FakeClock::default();
    let fs = MmpFs::open(&dev).unwrap();
    let before = bytes(&dev);
    let e = claim_on(&fs, &clock, "b", NONCE ^ 1).unwrap_err();
    assert_eq!(e.name(), "nonce_mismatch", "{e}");
    let e = claim_on(&fs, &clock, "c", NONCE).unwrap_err();
    assert_eq!(e.name(), "not_for_us", "{e}");
    assert!(e.to_string().contains("for node 'b'"), "{e}");
    assert_eq!(bytes(&dev), before);
    // No offer at all: a plain live block and a CLEAN one.
    for b in [MmpBlock::new(9, 1, "a", "sdb", 5), clean_by("a")] {
        let d = MemDevice::new("img", image(false, &b).snapshot());
        let fs = MmpFs::open(&d).unwrap();
        let before = bytes(&d);
        let e = claim_on(&fs, &clock, "b", NONCE).unwrap_err();
        assert_eq!(e.name(), "no_offer", "{e}");
        assert_eq!(bytes(&d), before);
    }
}

#[test]
fn a_newer_record_is_refused_by_every_step() {
    let (_, mut blk) = offered_device();
    blk.set_handoff_version_for_test(HANDOFF_VERSION + 1);
    let clock = FakeClock::default();
    let dev = MemDevice::new("img", image(false, &blk).snapshot());
    let fs = MmpFs::open(&dev).unwrap();
    let before = bytes(&dev);
    let msg = |e: HandoffError| {
        assert_eq!(e.name(), "newer_record", "{e}");
        assert!(e.to_string().contains("version 2, newer"), "{e}");
    };
    msg(claim_on(&fs, &clock, "b", NONCE).unwrap_err());
    msg(rollback_as(&fs, &clock, "a", None).unwrap_err());
    msg(confirm(
        &fs,
        &clock,
        NONCE,
        Duration::from_millis(100),
        &mut |_, _, _| {},
    )
    .unwrap_err());
    assert_eq!(bytes(&dev), before);
}

#[test]
fn the_offer_needs_our_own_clean_block_and_another_node() {
    let clock = FakeClock::default();
    for (b, name) in [
        (clean_by("x"), "not_ours"),
        (MmpBlock::new(9, 1, "a", "sdb", 5), "not_ours"),
        (
            MmpBlock::new(crate::ondisk::mmp::EXT4_MMP_SEQ_FSCK, 1, "a", "sdb", 5),
            "not_ours",
        ),
    ] {
        let dev = MemDevice::new("img", image(false, &b).snapshot());
        let fs = MmpFs::open(&dev).unwrap();
        let before = bytes(&dev);
        let e = offer_on(&fs, &clock).unwrap_err();
        assert_eq!(e.name(), name, "{e}");
        assert_eq!(bytes(&dev), before);
    }
    let dev = MemDevice::new("img", image(false, &clean_by("a")).snapshot());
    let fs = MmpFs::open(&dev).unwrap();
    for bad in ["a", "", "with space", &"x".repeat(65)] {
        let e = offer(
            &fs,
            &clock,
            &mut seqs(),
            &mut || Ok(1),
            &opts("a"),
            bad,
            &mut |_, _, _| {},
        )
        .unwrap_err();
        assert!(e.is_usage(), "{bad}: {e}");
    }
    // A second offer over a standing one.
    offer_on(&fs, &clock).unwrap();
    let before = bytes(&dev);
    assert_eq!(
        offer_on(&fs, &clock).unwrap_err().name(),
        "handoff_in_progress"
    );
    assert_eq!(bytes(&dev), before);
}

/// A write by another node while the source verifies its offer fails the offer: the nonce
/// is never handed out.
#[test]
fn a_write_during_the_offer_verification_fails_the_offer() {
    let clock = FakeClock::default();
    let intruder = MmpBlock::new(0x4444, 5, "c", "sdc", 5);
    let dev = shared(false, &clean_by("a"), &clock, |t| {
        (t >= Duration::from_millis(1500)).then(|| intruder.clone())
    });
    let fs = MmpFs::open(&dev).unwrap();
    let e = offer_on(&fs, &clock).unwrap_err();
    assert_eq!(e.name(), "lost", "{e}");
}

#[test]
fn rollback_of_an_unclaimed_offer_is_clean_again_and_the_target_is_refused() {
    let (dev, _) = offered_device();
    let clock = FakeClock::default();
    let fs = MmpFs::open(&dev).unwrap();
    let r = rollback_as(&fs, &clock, "a", Some(NONCE)).unwrap();
    assert_eq!(r.path, RollbackPath::Fast);
    // The normal verification: a target claim that raced us is seen.
    assert!(r.elapsed >= Duration::from_secs(9), "{:?}", r.elapsed);
    let now = fs.read_mmp().unwrap();
    assert_eq!(now.seq_class(), SeqClass::Clean);
    assert_eq!(now.nodename(), "a");
    let e = claim_on(&fs, &clock, "b", NONCE).unwrap_err();
    assert_eq!(e.name(), "no_offer", "{e}");
}

#[test]
fn a_cancel_from_another_node_leaves_a_live_block_to_wait_out() {
    let (dev, _) = offered_device();
    let clock = FakeClock::default();
    let fs = MmpFs::open(&dev).unwrap();
    let r = rollback_as(&fs, &clock, "b", Some(NONCE)).unwrap();
    assert_eq!(r.path, RollbackPath::Cancelled);
    let now = fs.read_mmp().unwrap();
    assert!(matches!(now.seq_class(), SeqClass::Live(_)));
    assert_eq!(
        now.handoff().valid().map(|r| r.step),
        Some(HandoffStep::RolledBack)
    );
    let e = claim_on(&fs, &clock, "b", NONCE).unwrap_err();
    assert_eq!(e.name(), "rolled_back", "{e}");
    // The source's rollback now: already rolled back.
    let e = rollback_as(&fs, &clock, "a", Some(NONCE)).unwrap_err();
    assert_eq!(e.name(), "rolled_back", "{e}");
}

/// After the target claimed: confirm watches for its holder; rollback waits the block out and
/// refuses while the holder writes, succeeds when it is silent (the target powered off).
#[test]
fn confirm_and_rollback_after_the_targets_claim() {
    let (dev, _) = offered_device();
    let clock = FakeClock::default();
    let fs = MmpFs::open(&dev).unwrap();
    let c = claim_on(&fs, &clock, "b", NONCE).unwrap();
    // Not confirmed while nobody beats: the claim block stands still.
    let e = confirm(
        &fs,
        &clock,
        NONCE,
        Duration::from_millis(100),
        &mut |_, _, _| {},
    )
    .unwrap_err();
    assert_eq!(e.name(), "not_confirmed", "{e}");
    // A holder (kmmpd-like: keeps the padding, counts from 1) writing every 5 s.
    let claimed = c.claimed.block.clone();
    let start = clock.now();
    let initial = claimed.clone();
    let beating = shared(true, &initial, &clock, move |t| {
        let n = (t.saturating_sub(start).as_secs() / 5) as u32;
        let mut b = claimed.clone();
        b.mmp_seq = n + 1;
        b.mmp_time = 1000 + u64::from(n);
        Some(b)
    });
    let fs2 = MmpFs::open(&beating).unwrap();
    let ok = confirm(
        &fs2,
        &clock,
        NONCE,
        Duration::from_millis(100),
        &mut |_, _, _| {},
    )
    .unwrap();
    assert_eq!(ok.block.nodename(), "b");
    let before = beating.inner.snapshot();
    let e = rollback_as(&fs2, &clock, "a", Some(NONCE)).unwrap_err();
    assert_eq!(e.name(), "target_holds", "{e}");
    let _ = before;
    assert!(beating.writes.borrow().is_empty(), "rollback wrote");
    // The target went silent (powered off): the rollback takes it back after the full wait.
    let r = rollback_as(&fs, &clock, "a", Some(NONCE)).unwrap();
    assert_eq!(r.path, RollbackPath::AfterFullWait);
    assert_eq!(fs.read_mmp().unwrap().seq_class(), SeqClass::Clean);
}

#[test]
fn the_fence_confirmed_claim_never_shortcuts_a_handoff_block() {
    use crate::protocol::claim::fenced::{claim_fenced, ClaimPath, Fallback, FencedNode};
    let (dev, _) = offered_device();
    let clock = FakeClock::default();
    let fs = MmpFs::open(&dev).unwrap();
    let c = claim_fenced(
        &fs,
        &clock,
        &mut seqs(),
        &opts("c"),
        ClaimMode::HolderFollows,
        &FencedNode::new("a", &[]),
        &|| false,
        &mut |_, _, _| {},
    )
    .unwrap();
    assert_eq!(
        c.path,
        ClaimPath::Normal {
            fallback: Fallback::Handoff
        }
    );
    assert!(c.claimed.elapsed >= Duration::from_secs(20));
}
