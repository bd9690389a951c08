use super::*;
use crate::io::MemDevice;
use crate::ondisk::mmp::{EXT4_MMP_SEQ_CLEAN, EXT4_MMP_SEQ_FSCK, EXT4_MMP_SEQ_MAX};
use std::cell::Cell;
use std::io;

pub(crate) use crate::protocol::check::tests::{image, shared, FakeClock, BS, MMP_BLOCK};
pub(crate) use crate::testing::ScriptedDevice;

pub(crate) fn opts(node: &str) -> ClaimOptions {
    ClaimOptions {
        nodename: node.to_string(),
        bdevname: "sdb".to_string(),
        check_interval: 5,
        poll: Duration::from_millis(100),
    }
}

fn run_claim(dev: impl BlockIo, clock: &FakeClock, seq: u32) -> Result<Claimed, ClaimError> {
    let fs = MmpFs::open(dev).unwrap();
    claim(
        &fs,
        clock,
        &mut || Ok(seq),
        &opts("me"),
        &|| false,
        &mut |_, _, _| {},
    )
}

fn clean() -> MmpBlock {
    MmpBlock::new(EXT4_MMP_SEQ_CLEAN, 0, "old", "sda", 5)
}

#[test]
fn clean_block_is_claimed_only_after_a_wait() {
    let clock = FakeClock::default();
    let dev = shared(true, &clean(), &clock, |_| None);
    let fs = MmpFs::open(&dev).unwrap();
    let c = claim(
        &fs,
        &clock,
        &mut || Ok(0x1234),
        &opts("me"),
        &|| false,
        &mut |_, _, _| {},
    )
    .unwrap();
    assert_eq!(c.previous, SafeReason::Clean);
    assert_eq!(c.block.mmp_seq, 0x1234);
    // Unlike the kernel: a clean block still gets a verification wait, two seconds less
    // than a reader of our block waits (min(2*5+1, 5+60) = 11 s).
    assert_eq!(c.verify_wait, Duration::from_secs(9));
    assert!(clock.now() >= Duration::from_secs(9));
    assert_eq!(dev.current().nodename(), "me");
    assert_eq!(dev.current().mmp_seq, 0x1234);
    assert_eq!(
        dev.writes.borrow().len(),
        1,
        "a claimer writes exactly once"
    );
    assert!(c.reads >= 90, "{}", c.reads);
}

#[test]
fn stale_live_block_takes_two_waits() {
    let clock = FakeClock::default();
    let dev = shared(
        false,
        &MmpBlock::new(77, 0, "dead", "sda", 5),
        &clock,
        |_| None,
    );
    let c = run_claim(&dev, &clock, 0x55).unwrap();
    assert_eq!(c.previous, SafeReason::Stale);
    assert!(clock.now() >= Duration::from_secs(20));
    assert!(clock.now() < Duration::from_secs(21));
}

/// Without the kernel's CSPRNG there is no sequence to write: the claim refuses after its
/// first watch and writes nothing (it never falls back to a clock-derived value).
#[test]
fn no_random_sequence_no_claim() {
    let clock = FakeClock::default();
    let dev = shared(true, &clean(), &clock, |_| None);
    let fs = MmpFs::open(&dev).unwrap();
    let e = claim(
        &fs,
        &clock,
        &mut || Err(SeqError::Csprng(getrandom::Error::UNSUPPORTED)),
        &opts("me"),
        &|| false,
        &mut |_, _, _| {},
    )
    .unwrap_err();
    assert!(
        matches!(e, ClaimError::Fs(Error::RandomSeq { .. })),
        "{e:?}"
    );
    assert!(!e.is_refusal(), "an error, not a device in use");
    assert!(dev.writes.borrow().is_empty(), "nothing written");
    assert_eq!(dev.current().mmp_seq, clean().mmp_seq);
}

#[test]
fn refuses_fsck_unknown_and_bad_checksum_without_writing() {
    for (blk, name) in [
        (
            MmpBlock::new(EXT4_MMP_SEQ_FSCK, 0, "x", "y", 5),
            "fsck_running",
        ),
        (
            MmpBlock::new(EXT4_MMP_SEQ_MAX + 5, 0, "x", "y", 5),
            "unknown_sequence",
        ),
    ] {
        let clock = FakeClock::default();
        let dev = shared(false, &blk, &clock, |_| None);
        let e = run_claim(&dev, &clock, 9).unwrap_err();
        assert_eq!(e.name(), name);
        assert!(e.is_refusal());
        assert!(dev.writes.borrow().is_empty());
        assert_eq!(clock.now(), Duration::ZERO);
    }
    let clock = FakeClock::default();
    let dev = shared(true, &clean(), &clock, |_| None);
    let mut d = dev.inner.snapshot();
    d[(MMP_BLOCK * BS) as usize + 0x3FC] ^= 1;
    let dev = MemDevice::new("bad", d);
    let e = run_claim(&dev, &clock, 9).unwrap_err();
    assert_eq!(e.name(), "bad_checksum");
}

#[test]
fn live_writer_is_refused_without_writing() {
    let clock = FakeClock::default();
    let dev = shared(
        false,
        &MmpBlock::new(1, 0, "nodeA", "sda", 5),
        &clock,
        |t| Some(MmpBlock::new(1 + t.as_secs() as u32, 0, "nodeA", "sda", 5)),
    );
    let e = run_claim(&dev, &clock, 9).unwrap_err();
    match &e {
        ClaimError::InUse { block, .. } => assert_eq!(block.nodename(), "nodeA"),
        e => panic!("{e}"),
    }
    assert!(e.to_string().contains("nodeA"));
    assert!(dev.writes.borrow().is_empty());
}

#[test]
fn a_later_writer_during_verification_makes_us_lose() {
    // Another claimer saw CLEAN too and writes its sequence 3 s after us.
    let clock = FakeClock::default();
    let dev = shared(false, &clean(), &clock, |t| {
        (t >= Duration::from_secs(3)).then(|| MmpBlock::new(0x999, 0, "nodeB", "sdc", 5))
    });
    let e = run_claim(&dev, &clock, 0x111).unwrap_err();
    match e {
        ClaimError::Lost { ours, block, .. } => {
            assert_eq!(ours, 0x111);
            assert_eq!(block.nodename(), "nodeB");
        }
        e => panic!("{e}"),
    }
    assert!(clock.now() < Duration::from_millis(3200), "lost at once");
}

/// Race two claimers that a holder follows on a fresh copy of `initial`, for every start
/// offset and write duration: exactly one wins, and the winner never has to fence.
fn exactly_one_winner(initial: &MmpBlock, offsets_ms: &[u64], fenced: Option<&FencedNode>) {
    for &offset_ms in offsets_ms {
        for delay_ms in [0u64, 700, 1_900] {
            let shared = MemDevice::new("img", image(false, initial).snapshot());
            let results = race(
                &shared,
                Duration::from_millis(offset_ms),
                ClaimMode::HolderFollows,
                Duration::from_millis(delay_ms),
                fenced,
            );
            let at = format!("offset {offset_ms} ms, writes {delay_ms} ms: {results:?}");
            assert_eq!(results.iter().filter(|r| r.is_ok()).count(), 1, "{at}");
            assert!(
                !results
                    .iter()
                    .any(|r| matches!(r, Err(e) if e.contains("fenced"))),
                "a winner had to fence: {at}"
            );
        }
    }
}

/// Two claimers on one in-memory device, interleaved step by step on one fake timeline:
/// whatever their start offsets, exactly one wins.
#[test]
fn two_racing_claimers_exactly_one_wins() {
    exactly_one_winner(&clean(), &[0, 1, 50, 100, 999, 5_000, 10_900, 30_000], None);
}

/// The block of a dead holder that published a self-fence bound: the claim is shorter,
/// and two claimers racing for it still produce exactly one winner.
#[test]
fn two_racing_claimers_of_a_fenced_holders_block_exactly_one_wins() {
    let mut dead = MmpBlock::new(0x4242, 100, "dead", "sda", 5);
    dead.set_fence_tag(Some(crate::protocol::check::tests::watchdog_tag(4_000)));
    exactly_one_winner(
        &dead,
        &[
            0, 1, 50, 100, 999, 2_000, 3_000, 5_000, 5_100, 8_000, 30_000,
        ],
        None,
    );
}

/// Two survivors both told that the dead holder was fenced claim its block at once (and a
/// clean block): exactly one wins, at every offset and write duration.
#[test]
fn two_fence_confirmed_claimers_exactly_one_wins() {
    let f = FencedNode::new("dead", &[]);
    let offsets = [
        0, 1, 50, 100, 999, 1_900, 2_000, 2_100, 3_000, 4_000, 5_000, 30_000,
    ];
    exactly_one_winner(
        &MmpBlock::new(0x4242, 100, "dead", "sda", 5),
        &offsets,
        Some(&f),
    );
    exactly_one_winner(&clean(), &offsets, Some(&f));
}

/// Two bare claims (nothing holds the block afterwards): the first one's block stays
/// fresh for `stale_after` after it returns, and a second claim never wins inside that
/// lease; started within a couple of seconds of each other, exactly one wins.
#[test]
fn two_bare_claims_never_hold_at_the_same_time() {
    for offset_ms in [
        0u64, 1, 50, 100, 999, 1_500, 2_000, 5_000, 10_900, 11_000, 12_000, 13_000, 13_100, 15_000,
        30_000,
    ] {
        for delay_ms in [0u64, 700, 1_900] {
            let shared = MemDevice::new("img", image(false, &clean()).snapshot());
            let results = race(
                &shared,
                Duration::from_millis(offset_ms),
                ClaimMode::Bare,
                Duration::from_millis(delay_ms),
                None,
            );
            let wins: Vec<_> = results.iter().filter_map(|r| r.as_ref().ok()).collect();
            let at = format!("offset {offset_ms} ms, writes {delay_ms} ms: {results:?}");
            assert!(!wins.is_empty(), "{at}");
            if offset_ms <= 5_000 {
                assert_eq!(wins.len(), 1, "{at}");
            }
            if let [a, b] = wins[..] {
                let (first, second) = if a.1 <= b.1 { (a, b) } else { (b, a) };
                assert!(
                    second.1 >= first.1 + first.2,
                    "the second claim won inside the first one's lease: {at}"
                );
            }
        }
    }
}

/// Runs two claims as threads on one timeline: a shared fake clock where each sleeper
/// wakes in time order (a tiny discrete-event scheduler).
/// Each result: the winner's sequence, when its claim returned, and its `stale_after`.
#[allow(clippy::type_complexity)]
fn race(
    dev: &MemDevice,
    offset: Duration,
    mode: ClaimMode,
    write_delay: Duration,
    fenced: Option<&FencedNode>,
) -> Vec<Result<(u32, Duration, Duration), String>> {
    /// Every write takes `delay` on the shared timeline and lands at its end, so the
    /// other claimer can read the old block while it is under way.
    struct SlowWrites<'a, C: Clock> {
        inner: &'a MemDevice,
        clock: &'a C,
        delay: Duration,
    }
    impl<C: Clock> BlockIo for SlowWrites<'_, C> {
        fn read_at(&self, offset: u64, buf: &mut [u8]) -> io::Result<()> {
            self.inner.read_at(offset, buf)
        }
        fn write_at(&self, offset: u64, buf: &[u8]) -> io::Result<()> {
            if !self.delay.is_zero() {
                self.clock.sleep(self.delay);
            }
            self.inner.write_at(offset, buf)
        }
        fn sync(&self) -> io::Result<()> {
            Ok(())
        }
        fn size(&self) -> u64 {
            self.inner.size()
        }
        fn logical_block_size(&self) -> u32 {
            512
        }
        fn name(&self) -> &str {
            "slow"
        }
    }
    use std::sync::{Arc, Condvar, Mutex};
    struct Sched {
        now: Duration,
        // wake-up time per participant; None = running.
        wake: Vec<Option<Duration>>,
        done: Vec<bool>,
    }
    struct SimClock {
        me: usize,
        s: Arc<(Mutex<Sched>, Condvar)>,
    }
    impl SimClock {
        fn advance(&self, until: Duration) {
            let (m, cv) = &*self.s;
            let mut g = m.lock().unwrap();
            g.wake[self.me] = Some(until);
            cv.notify_all();
            loop {
                // Whoever has the earliest wake-up among non-running participants runs,
                // once nobody else is running.
                let running = (0..g.wake.len()).any(|i| g.wake[i].is_none() && !g.done[i]);
                let next = (0..g.wake.len())
                    .filter(|&i| !g.done[i])
                    .filter_map(|i| g.wake[i].map(|w| (w, i)))
                    .min();
                if !running && next.map(|(_, i)| i) == Some(self.me) {
                    g.now = g.now.max(until);
                    g.wake[self.me] = None;
                    cv.notify_all();
                    return;
                }
                g = cv.wait(g).unwrap();
            }
        }
    }
    impl Clock for SimClock {
        fn now(&self) -> Duration {
            self.s.0.lock().unwrap().now
        }
        fn sleep(&self, d: Duration) {
            let t = self.now() + d;
            self.advance(t);
        }
    }
    let s = Arc::new((
        Mutex::new(Sched {
            now: Duration::ZERO,
            wake: vec![Some(Duration::ZERO), Some(offset)],
            done: vec![false, false],
        }),
        Condvar::new(),
    ));
    std::thread::scope(|scope| {
        let handles: Vec<_> = (0..2)
            .map(|me| {
                let s = s.clone();
                scope.spawn(move || {
                    let clock = SimClock { me, s: s.clone() };
                    let start = if me == 0 { Duration::ZERO } else { offset };
                    clock.advance(start);
                    let slow = SlowWrites {
                        inner: dev,
                        clock: &clock,
                        delay: write_delay,
                    };
                    let fs = MmpFs::open(&slow).unwrap();
                    let cfg = crate::protocol::heartbeat::HeartbeatConfig::default();
                    let seq = 0x100 + 0x10 * me as u32;
                    let o = opts(&format!("node{me}"));
                    let r = match fenced {
                        None => claim_with(
                            &fs,
                            &clock,
                            &mut || Ok(seq),
                            &o,
                            mode,
                            &|| false,
                            &mut |_, _, _| {},
                        ),
                        Some(f) => claim_fenced(
                            &fs,
                            &clock,
                            &mut || Ok(seq),
                            &o,
                            mode,
                            f,
                            &|| false,
                            &mut |_, _, _| {},
                        )
                        .map(|c| c.claimed),
                    };
                    let returned = clock.now();
                    // With HolderFollows the winner holds the device (as mmpd does) while
                    // the other one is still trying; a bare winner walks away.
                    let r = match r {
                        Err(e) => Err(e.name().to_string()),
                        Ok(c) if mode == ClaimMode::Bare => {
                            Ok((c.block.mmp_seq, returned, c.stale_after))
                        }
                        Ok(c) => {
                            let seq = c.block.mmp_seq;
                            let lease = c.stale_after;
                            let mut hb =
                                crate::protocol::heartbeat::Heartbeat::new(fs, &c, cfg, &clock);
                            let mut fenced = None;
                            while !s.0.lock().unwrap().done[1 - me] {
                                if let Err(f) = hb.beat(&clock) {
                                    fenced = Some(format!("the winner fenced: {f}"));
                                    break;
                                }
                                clock.sleep(cfg.interval);
                            }
                            fenced.map_or(Ok((seq, returned, lease)), Err)
                        }
                    };
                    let (m, cv) = &*s;
                    m.lock().unwrap().done[me] = true;
                    cv.notify_all();
                    r
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    })
}

#[test]
fn a_stale_block_with_a_valid_fence_tag_is_claimed_after_the_bound() {
    let clock = FakeClock::default();
    let mut dead = MmpBlock::new(77, 0, "dead", "sda", 5);
    let tag = crate::protocol::check::tests::watchdog_tag(4_000);
    dead.set_fence_tag(Some(tag));
    let dev = shared(true, &dead, &clock, |_| None);
    let c = run_claim(&dev, &clock, 0x55).unwrap();
    assert_eq!((c.previous, c.fence_tag), (SafeReason::Stale, Some(tag)));
    assert_eq!(c.verify_wait, FENCED_VERIFY);
    // 4 s bound + 1 s + 1 % watched, then 3 s after our write.
    assert!(
        clock.now() >= Duration::from_millis(8_040),
        "{:?}",
        clock.now()
    );
    assert!(
        clock.now() < Duration::from_millis(8_300),
        "{:?}",
        clock.now()
    );
    assert_eq!(c.block.fence_tag(), None, "a claim never writes a tag");
}

#[test]
fn a_tag_left_behind_under_kmmpd_gives_no_shortcut() {
    // mmpd held the block, then a kernel mount took over: kmmpd keeps the padding and
    // counts on from its own sequence. Its block is stale now (kmmpd died too).
    let clock = FakeClock::default();
    let mut b = MmpBlock::new(77, 0, "mmpd-node", "sda", 5);
    b.set_fence_tag(Some(crate::protocol::check::tests::watchdog_tag(2_000)));
    b.mmp_seq = 0x9999;
    b.mmp_time = 50;
    b.mmp_nodename = MmpBlock::new(0, 0, "kernel-node", "", 0).mmp_nodename;
    let dev = shared(false, &b, &clock, |_| None);
    let c = run_claim(&dev, &clock, 0x55).unwrap();
    assert_eq!(c.fence_tag, None);
    assert!(clock.now() >= Duration::from_secs(20), "{:?}", clock.now());
}

#[test]
fn a_bare_claim_outlasts_readers_then_refreshes_its_block() {
    let clock = FakeClock::default();
    let dev = shared(true, &clean(), &clock, |_| None);
    let fs = MmpFs::open(&dev).unwrap();
    let c = claim_with(
        &fs,
        &clock,
        &mut || Ok(0x1234),
        &opts("me"),
        ClaimMode::Bare,
        &|| false,
        &mut |_, _, _| {},
    )
    .unwrap();
    // Readers of our block wait 11 s: we watched 9 s, wrote a fresh sequence (which every
    // reader of our first write sees before it may call that stale), watched
    // MAX_WRITE_GAP + one poll more.
    assert_eq!(c.verify_wait, Duration::from_secs(9));
    let writes = dev.writes.borrow().clone();
    assert_eq!(writes.len(), 2, "{writes:?}");
    assert_eq!((writes[0].1, writes[1].1), (0x1234, 0x1235));
    assert!(writes[1].0 >= writes[0].0 + Duration::from_secs(9));
    assert_eq!(dev.current().mmp_seq, 0x1235);
    assert_eq!(c.block.mmp_seq, 0x1235);
    assert!(clock.now() >= Duration::from_millis(11_100));
    // The lease left: 11 s from the refresh, less the watch after it.
    assert!(
        c.stale_after >= Duration::from_millis(8_800),
        "{:?}",
        c.stale_after
    );
    assert!(
        c.stale_after <= Duration::from_millis(8_900),
        "{:?}",
        c.stale_after
    );
}

#[test]
fn a_claimer_whose_write_stalls_gives_up() {
    let clock = FakeClock::default();
    let dev = shared(false, &clean(), &clock, |_| None);
    dev.write_delay
        .set(MAX_WRITE_GAP + Duration::from_millis(100));
    match run_claim(&dev, &clock, 0x66) {
        Err(e @ ClaimError::Stalled { .. }) => {
            assert!(e.is_refusal());
            assert!(e.to_string().contains("stalled"), "{e}");
        }
        r => panic!("expected stalled, got {r:?}"),
    }
    // A slow write within the limit is fine.
    let clock = FakeClock::default();
    let dev = shared(false, &clean(), &clock, |_| None);
    dev.write_delay.set(Duration::from_millis(1_500));
    assert!(run_claim(&dev, &clock, 0x66).is_ok());
}

#[test]
fn a_change_just_before_our_write_is_seen_by_the_compare() {
    // The block is clean at the check's only read and changes right after it.
    let clock = FakeClock::default();
    let reads = Cell::new(0u32);
    let dev = shared(false, &clean(), &clock, |_| {
        reads.set(reads.get() + 1);
        (reads.get() == 2).then(|| MmpBlock::new(0x777, 9, "racer", "sdc", 5))
    });
    match run_claim(&dev, &clock, 0x66) {
        Err(ClaimError::InUse { block, .. }) => assert_eq!(block.nodename(), "racer"),
        r => panic!("expected in use, got {r:?}"),
    }
    assert!(dev.writes.borrow().is_empty(), "nothing written");
}

#[test]
fn cancel_after_writing_restores_clean() {
    let clock = FakeClock::default();
    let dev = shared(false, &clean(), &clock, |_| None);
    let fs = MmpFs::open(&dev).unwrap();
    let e = claim(
        &fs,
        &clock,
        &mut || Ok(0x42),
        &opts("me"),
        &|| clock.now() > Duration::from_secs(2),
        &mut |_, _, _| {},
    )
    .unwrap_err();
    assert!(matches!(
        e,
        ClaimError::Cancelled {
            wrote: true,
            restored_clean: true,
            ..
        }
    ));
    assert_eq!(dev.current().mmp_seq, EXT4_MMP_SEQ_CLEAN);
}

#[test]
fn release_writes_clean_only_over_our_own_block() {
    let clock = FakeClock::default();
    let dev = shared(false, &clean(), &clock, |_| None);
    let fs = MmpFs::open(&dev).unwrap();
    let c = claim(
        &fs,
        &clock,
        &mut || Ok(0x42),
        &opts("me"),
        &|| false,
        &mut |_, _, _| {},
    )
    .unwrap();
    let foreign = MmpBlock::new(0x77, 0, "other", "x", 5);
    fs.write_mmp_synced(&foreign).unwrap();
    assert!(matches!(
        release(&fs, &c.block, &[c.on_disk]).unwrap(),
        Release::NotOurs(_)
    ));
    assert_eq!(dev.current().mmp_seq, 0x77, "foreign block untouched");
    fs.write_mmp_synced(&c.block).unwrap();
    assert!(matches!(
        release(&fs, &c.block, &[c.on_disk]).unwrap(),
        Release::Clean(_)
    ));
    assert_eq!(dev.current().mmp_seq, EXT4_MMP_SEQ_CLEAN);
    assert_eq!(dev.current().nodename(), "me");
}

#[test]
fn verify_wait_is_shorter_than_what_readers_of_our_block_wait() {
    assert_eq!(verify_wait(5, 5, 5), Duration::from_secs(9));
    // We publish 10: readers wait 21 s; the found block's CI 5 gives 11 s.
    assert_eq!(verify_wait(5, 1, 10), Duration::from_secs(11));
    // A previous holder published 60 but is gone; we publish 5: readers wait 11 s.
    assert_eq!(verify_wait(60, 1, 5), Duration::from_secs(9));
    for found in 5..300 {
        for publ in 5..300u16 {
            let w = verify_wait(found, 1, publ);
            assert!(w < check::wait_time(u32::from(publ)));
            assert!(w >= Duration::from_secs(9));
        }
    }
}

#[test]
fn seq_helpers() {
    assert_eq!(
        pick_seq(&mut || Ok(5), 5).unwrap(),
        6,
        "never the found value"
    );
    assert_eq!(
        pick_seq(&mut || Ok(EXT4_MMP_SEQ_CLEAN), EXT4_MMP_SEQ_CLEAN).unwrap(),
        1
    );
    assert_eq!(bdevname_of("/dev/mapper/x"), "x");
}
