//! The fence-confirmed claim's steps and waits on the injected clock.

use super::*;
use crate::ondisk::fence_tag::FenceKind;
use crate::ondisk::mmp::{EXT4_MMP_SEQ_CLEAN, EXT4_MMP_SEQ_FSCK};
use crate::protocol::claim::tests::{image, opts, FakeClock, ScriptedDevice, BS, MMP_BLOCK};

/// An image without metadata_csum whose superblock says `s_mmp_update_interval = interval`,
/// with `initial` in its MMP block and `other(t)` rewriting it before reads.
fn device<'a>(
    interval: u16,
    initial: &MmpBlock,
    clock: &'a FakeClock,
    other: impl Fn(Duration) -> Option<MmpBlock> + 'a,
) -> ScriptedDevice<'a> {
    let mut data = image(false, initial).snapshot();
    data[1024 + 0x166..1024 + 0x168].copy_from_slice(&interval.to_le_bytes());
    let mem = crate::io::MemDevice::new("mem.img", data);
    ScriptedDevice::new(mem, MMP_BLOCK * BS, None, clock, other)
}

fn dead(node: &str) -> MmpBlock {
    MmpBlock::new(0x77, 100, node, "sda", 5)
}

fn run(
    dev: &ScriptedDevice<'_>,
    clock: &FakeClock,
    fenced: &FencedNode,
    mode: ClaimMode,
) -> Result<FencedClaim, ClaimError> {
    let fs = MmpFs::open(dev).unwrap();
    claim_fenced(
        &fs,
        clock,
        &mut || Ok(0x1234),
        &opts("me"),
        mode,
        fenced,
        &|| false,
        &mut |_, _, _| {},
    )
}

fn node(n: &str) -> FencedNode {
    FencedNode::new(n, &[])
}

#[test]
fn the_fenced_nodes_block_is_watched_two_intervals_then_claimed() {
    let clock = FakeClock::default();
    let dev = device(1, &dead("nodeA"), &clock, |_| None);
    let c = run(&dev, &clock, &node("nodeA"), ClaimMode::HolderFollows).unwrap();
    assert_eq!(
        c.path,
        ClaimPath::Fenced {
            watch: Duration::from_secs(2)
        }
    );
    assert_eq!(c.claimed.previous, SafeReason::Stale);
    assert_eq!(c.claimed.block.mmp_seq, 0x1234);
    assert_eq!(dev.current().nodename(), "me");
    let writes = dev.writes.borrow().clone();
    assert_eq!(writes.len(), 1, "a claimer writes once: {writes:?}");
    assert!(
        writes[0].0 >= Duration::from_secs(2),
        "written only after the watch: {writes:?}"
    );
    // Watch 2 s, then MAX_WRITE_GAP + two polls of verification.
    assert_eq!(clock.now(), Duration::from_millis(4_200));
    assert_eq!(c.claimed.elapsed, Duration::from_millis(4_200));
    // Every poll of the watch and of the verification re-read the block.
    assert!(c.claimed.reads >= 20 + 22, "{}", c.claimed.reads);
}

#[test]
fn the_watch_is_twice_the_update_interval_and_at_least_2_s() {
    let clock = FakeClock::default();
    let dev = device(3, &dead("nodeA"), &clock, |_| None);
    let c = run(&dev, &clock, &node("nodeA"), ClaimMode::HolderFollows).unwrap();
    assert_eq!(c.path.watch(), Some(Duration::from_secs(6)));
    let n = Duration::from_secs(11);
    assert_eq!(
        fenced_watch(0, None, n),
        Duration::from_secs(10),
        "0 means 5 s"
    );
    assert_eq!(fenced_watch(1, None, n), Duration::from_secs(2));
    assert_eq!(
        fenced_watch(30, None, Duration::from_secs(61)),
        Duration::from_secs(60)
    );
    assert_eq!(
        fenced_watch(30, None, Duration::from_secs(30)),
        Duration::from_secs(30),
        "never longer than the normal watch"
    );
}

#[test]
fn a_cluster_name_is_mapped_to_the_mmp_name() {
    let map = [("pcmk-1".to_string(), "host-a".to_string())];
    let f = FencedNode::new("pcmk-1", &map);
    assert_eq!(f.mmp_name, "host-a");
    assert_eq!(FencedNode::new("pcmk-2", &map).mmp_name, "pcmk-2");
    let clock = FakeClock::default();
    let dev = device(1, &dead("host-a"), &clock, |_| None);
    let c = run(&dev, &clock, &f, ClaimMode::HolderFollows).unwrap();
    assert_eq!(c.path.name(), "fenced");
    // Unmapped, the cluster name does not match the block: the normal path.
    let clock = FakeClock::default();
    let dev = device(1, &dead("host-a"), &clock, |_| None);
    let c = run(&dev, &clock, &node("pcmk-1"), ClaimMode::HolderFollows).unwrap();
    assert_eq!(c.path.name(), "normal");
    assert_eq!(parse_node_map("a=b"), Ok(("a".into(), "b".into())));
    assert!(parse_node_map("a").is_err() && parse_node_map("=b").is_err());
}

#[test]
fn another_nodes_block_takes_the_full_normal_wait() {
    let clock = FakeClock::default();
    let dev = device(1, &dead("nodeB"), &clock, |_| None);
    let c = run(&dev, &clock, &node("nodeA"), ClaimMode::HolderFollows).unwrap();
    assert_eq!(
        c.path,
        ClaimPath::Normal {
            fallback: Fallback::OtherNode {
                found: "nodeB".into()
            }
        }
    );
    // The normal claim: 11 s watch + 9 s verification (CI 5).
    assert!(clock.now() >= Duration::from_secs(20), "{:?}", clock.now());
}

/// A writer that writes once during the watch (a holder paused by SIGSTOP that resumes, a
/// fence that did not fence): refused as in use, nothing written, the block left to it.
#[test]
fn a_block_that_changes_once_during_the_watch_is_refused() {
    for at_ms in [100u64, 1_000, 1_950] {
        let clock = FakeClock::default();
        let dev = device(1, &dead("nodeA"), &clock, move |t| {
            (t >= Duration::from_millis(at_ms)).then(|| MmpBlock::new(0x78, 101, "nodeA", "sda", 5))
        });
        let e = run(&dev, &clock, &node("nodeA"), ClaimMode::HolderFollows).unwrap_err();
        assert_eq!(e.name(), "in_use", "{e}");
        assert!(dev.writes.borrow().is_empty(), "nothing written");
        assert_eq!(dev.current().mmp_seq, 0x78, "the block is its owner's");
        assert!(
            clock.now() <= Duration::from_millis(at_ms + 100),
            "refused at the first changed read"
        );
    }
}

/// Only the time or only the node changes: still a live writer.
#[test]
fn a_change_of_time_or_node_alone_is_a_live_writer() {
    for changed in [
        MmpBlock::new(0x77, 101, "nodeA", "sda", 5),
        MmpBlock::new(0x77, 100, "nodeC", "sda", 5),
    ] {
        let clock = FakeClock::default();
        let dev = device(1, &dead("nodeA"), &clock, move |t| {
            (t >= Duration::from_millis(500)).then(|| changed.clone())
        });
        let e = run(&dev, &clock, &node("nodeA"), ClaimMode::Bare).unwrap_err();
        assert_eq!(e.name(), "in_use");
        assert!(dev.writes.borrow().is_empty());
    }
}

#[test]
fn an_fsck_block_is_refused_without_a_wait() {
    let clock = FakeClock::default();
    let dev = device(
        1,
        &MmpBlock::new(EXT4_MMP_SEQ_FSCK, 0, "nodeA", "sda", 5),
        &clock,
        |_| None,
    );
    let e = run(&dev, &clock, &node("nodeA"), ClaimMode::HolderFollows).unwrap_err();
    assert_eq!(e.name(), "fsck_running");
    assert!(dev.writes.borrow().is_empty());
    assert_eq!(clock.now(), Duration::ZERO);
}

#[test]
fn an_unreadable_block_fails_without_writing() {
    let clock = FakeClock::default();
    let dev = device(1, &dead("nodeA"), &clock, |_| None);
    dev.fail_reads.set(true);
    let e = run(&dev, &clock, &node("nodeA"), ClaimMode::HolderFollows).unwrap_err();
    assert!(matches!(e, ClaimError::Fs(_)), "{e:?}");
    assert!(dev.writes.borrow().is_empty());
}

/// The block becomes unreadable during the watch: an error, never a claim.
#[test]
fn a_read_error_during_the_watch_fails_without_writing() {
    let clock = FakeClock::default();
    let dev = device(1, &dead("nodeA"), &clock, |_| None);
    let fs = MmpFs::open(&dev).unwrap();
    let e = claim_fenced(
        &fs,
        &clock,
        &mut || Ok(0x1234),
        &opts("me"),
        ClaimMode::HolderFollows,
        &node("nodeA"),
        &|| false,
        &mut |_, e, _| dev.fail_reads.set(e >= Duration::from_secs(1)),
    )
    .unwrap_err();
    assert!(matches!(e, ClaimError::Fs(_)), "{e:?}");
    assert!(dev.writes.borrow().is_empty());
}

#[test]
fn a_clean_block_takes_the_short_path() {
    let clock = FakeClock::default();
    let dev = device(
        1,
        &MmpBlock::new(EXT4_MMP_SEQ_CLEAN, 0, "whoever", "sda", 5),
        &clock,
        |_| None,
    );
    let c = run(&dev, &clock, &node("nodeA"), ClaimMode::HolderFollows).unwrap();
    assert_eq!(c.path.watch(), Some(Duration::from_secs(2)));
    assert_eq!(c.claimed.previous, SafeReason::Clean);
    assert!(clock.now() <= Duration::from_millis(4_200));
}

/// An mmpd holder whose fence tag advertises a 3 s heartbeat interval: the watch is two of
/// its intervals, 6 s, not the superblock's 2 s.
#[test]
fn an_mmpd_tag_with_a_longer_interval_lengthens_the_watch() {
    let mut blk = dead("nodeA");
    blk.set_fence_tag(Some(FenceTag {
        bound_ms: 10_000,
        interval_ms: 3_000,
        kind: FenceKind::Watchdog,
    }));
    let clock = FakeClock::default();
    let dev = device(1, &blk, &clock, |_| None);
    let c = run(&dev, &clock, &node("nodeA"), ClaimMode::HolderFollows).unwrap();
    assert_eq!(c.path.watch(), Some(Duration::from_secs(6)));
    assert_eq!(c.claimed.elapsed, Duration::from_millis(8_200));
    // A writer at 5 s, inside the longer watch, is caught.
    let clock = FakeClock::default();
    let dev = device(1, &blk, &clock, |t| {
        (t >= Duration::from_secs(5)).then(|| MmpBlock::new(0x78, 101, "nodeA", "sda", 5))
    });
    let e = run(&dev, &clock, &node("nodeA"), ClaimMode::HolderFollows).unwrap_err();
    assert_eq!(e.name(), "in_use");
    assert!(dev.writes.borrow().is_empty());
}

/// A bare fence-confirmed claim still refreshes its block like a normal bare claim.
#[test]
fn a_bare_fenced_claim_refreshes_its_block() {
    let clock = FakeClock::default();
    let dev = device(1, &dead("nodeA"), &clock, |_| None);
    let c = run(&dev, &clock, &node("nodeA"), ClaimMode::Bare).unwrap();
    assert_eq!(dev.writes.borrow().len(), 2);
    assert_eq!(dev.current().mmp_seq, c.claimed.block.mmp_seq);
    assert!(
        clock.now() <= Duration::from_millis(6_500),
        "{:?}",
        clock.now()
    );
}
