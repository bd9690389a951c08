use super::*;
use crate::ondisk::mmp::EXT4_MMP_SEQ_CLEAN;
use crate::protocol::claim::tests::{opts, shared, FakeClock, ScriptedDevice};
use crate::protocol::claim::{claim, ClaimOptions};
use std::cell::Cell;

fn clean() -> MmpBlock {
    MmpBlock::new(EXT4_MMP_SEQ_CLEAN, 0, "old", "sda", 5)
}

fn hold<'a>(dev: &'a ScriptedDevice<'a>, clock: &FakeClock) -> Heartbeat<&'a ScriptedDevice<'a>> {
    let fs = MmpFs::open(dev).unwrap();
    let cfg = HeartbeatConfig::default();
    let o = ClaimOptions {
        check_interval: cfg.publish_check_interval(),
        ..opts("me")
    };
    let c = claim(
        &fs,
        clock,
        &mut || Ok(0x500),
        &o,
        &|| false,
        &mut |_, _, _| {},
    )
    .unwrap();
    Heartbeat::new(fs, &c, cfg, clock)
}

/// Drive the heartbeat on the fake clock for `secs` seconds or until it fences.
fn run(
    hb: &mut Heartbeat<&ScriptedDevice<'_>>,
    clock: &FakeClock,
    secs: u64,
) -> Option<FenceReason> {
    let end = clock.now() + Duration::from_secs(secs);
    while clock.now() < end {
        let due = hb.next_due();
        if due > clock.now() {
            clock.sleep(due - clock.now());
        }
        if let Err(r) = hb.beat(clock) {
            return Some(r);
        }
    }
    None
}

#[test]
fn the_watchdog_fence_bound_covers_fail_after_the_timeout_and_the_pet_slack() {
    let c = HeartbeatConfig {
        interval: Duration::from_secs(1),
        fail_intervals: 2,
    };
    let t = c.watchdog_fence_tag(Duration::from_secs(3)).unwrap();
    assert_eq!(t.bound_ms, 2_000 + 3_000 + 1_000);
    assert_eq!(t.interval_ms, 1_000);
    assert_eq!(t.kind, FenceKind::Watchdog);
    assert_eq!(c.watchdog_fence_tag(Duration::ZERO), None);
    assert_eq!(c.watchdog_fence_tag(Duration::from_secs(700)), None);
}

#[test]
fn with_a_fence_tag_every_beat_carries_a_valid_one_and_stops_in_time() {
    let clock = FakeClock::default();
    let dev = shared(false, &clean(), &clock, |_| None);
    let mut hb = hold(&dev, &clock);
    assert!(run(&mut hb, &clock, 2).is_none());
    assert_eq!(dev.current().fence_tag(), None, "no tag before it is armed");
    let cfg = HeartbeatConfig {
        interval: Duration::from_secs(1),
        fail_intervals: 2,
    };
    let tag = cfg.watchdog_fence_tag(Duration::from_secs(2)).unwrap();
    hb.set_fence_tag(Some(tag));
    assert!(run(&mut hb, &clock, 3).is_none());
    assert_eq!(dev.current().fence_tag(), Some(tag));
    // Readers now call our block stale after 5 s + 1 s + 50 ms: with writes failing, the
    // holder stops writing well before that (its own fail_after of 5 s fires first).
    dev.fail_writes.set(true);
    let start = clock.now();
    let r = run(&mut hb, &clock, 30).expect("fences");
    assert!(matches!(r, FenceReason::NoSuccessfulWrite { .. }), "{r}");
    assert!(clock.now() - start <= check::fence_wait(tag) - STALE_MARGIN);
    // Released blocks carry no tag.
    let dev = shared(false, &clean(), &clock, |_| None);
    let mut hb = hold(&dev, &clock);
    hb.set_fence_tag(Some(tag));
    assert!(run(&mut hb, &clock, 2).is_none());
    assert!(matches!(hb.release(), Ok(Release::Clean(_))));
    assert_eq!(dev.current().fence_tag(), None);
    assert!(dev.current().mmp_pad2.iter().all(|&b| b == 0));
}

/// Ages count from the submission of a write, so a slow write does not buy extra time.
#[test]
fn slow_writes_count_from_their_submission() {
    let clock = FakeClock::default();
    let dev = shared(false, &clean(), &clock, |_| None);
    let mut hb = hold(&dev, &clock);
    assert!(run(&mut hb, &clock, 2).is_none());
    let before = clock.now();
    dev.write_delay.set(Duration::from_millis(1_500));
    assert!(matches!(hb.beat(&clock), Ok(Beat::Wrote { .. })));
    assert_eq!(hb.last_success(), before);
}

#[test]
fn publishes_a_check_interval_readers_wait_out() {
    let c = HeartbeatConfig::default();
    assert_eq!(c.publish_check_interval(), 5);
    assert!(check::wait_time(5) > c.fail_after());
    let c = HeartbeatConfig {
        interval: Duration::from_millis(1500),
        fail_intervals: 10,
    };
    assert_eq!(c.publish_check_interval(), 15);
    assert!(c.validate().is_ok());
    let bad = [
        (50u64, 5u32, "IntervalOutOfRange"),
        (1000, 1, "TooFewFailIntervals"),
        (60_000, 10, "FailAfterTooLong"),
    ];
    for (i, n, step) in bad {
        let c = HeartbeatConfig {
            interval: Duration::from_millis(i),
            fail_intervals: n,
        };
        let e = c.validate().unwrap_err();
        assert!(format!("{e:?}").starts_with(step), "{c:?}: {e:?}");
    }
}

#[test]
fn steady_heartbeat_counts_up_every_interval() {
    let clock = FakeClock::default();
    let dev = shared(true, &clean(), &clock, |_| None);
    let mut hb = hold(&dev, &clock);
    let writes_before = dev.writes.borrow().len();
    assert!(run(&mut hb, &clock, 30).is_none());
    let writes = dev.writes.borrow()[writes_before..].to_vec();
    assert!((30..=31).contains(&writes.len()), "{}", writes.len());
    for w in writes.windows(2) {
        assert_eq!(w[1].1, w[0].1 + 1, "sequence counts up");
        assert_eq!(w[1].0 - w[0].0, Duration::from_secs(1));
    }
    assert_eq!(writes[0].1, 0x501, "first beat follows the claim sequence");
    assert_eq!(dev.current().nodename(), "me");
    assert_eq!(dev.current().mmp_check_interval, 5);
}

#[test]
fn foreign_sequence_fences_and_nothing_more_is_written() {
    let clock = FakeClock::default();
    let intruder_at = Cell::new(Duration::MAX);
    let dev = shared(false, &clean(), &clock, |t| {
        (t >= intruder_at.get()).then(|| MmpBlock::new(0xBAD, 0, "intruder", "sdz", 5))
    });
    let mut hb = hold(&dev, &clock);
    assert!(run(&mut hb, &clock, 5).is_none());
    intruder_at.set(clock.now() + Duration::from_millis(300));
    let writes = dev.writes.borrow().len();
    let r = run(&mut hb, &clock, 5).expect("must fence");
    match &r {
        FenceReason::ForeignWriter { found, .. } => assert_eq!(found.nodename(), "intruder"),
        r => panic!("{r}"),
    }
    assert!(r.to_string().contains("ANOTHER WRITER"));
    assert_eq!(
        dev.writes.borrow().len(),
        writes,
        "no write after the intrusion"
    );
    assert!(hb.beat(&clock).is_err(), "stays fenced");
    assert!(matches!(hb.release(), Err(ReleaseError::Fenced(_))));
    assert_eq!(
        dev.current().mmp_seq,
        0xBAD,
        "the intruder's block is left alone"
    );
}

#[test]
fn same_sequence_but_other_node_name_is_foreign_too() {
    let clock = FakeClock::default();
    let copy_at = Cell::new(Duration::MAX);
    let dev_cell: Cell<Option<MmpBlock>> = Cell::new(None);
    let dev = shared(false, &clean(), &clock, |t| {
        if t >= copy_at.get() {
            let b = dev_cell.take();
            if let Some(mut b) = b.clone() {
                b.mmp_nodename[0] ^= 1;
                return Some(b);
            }
        }
        None
    });
    let mut hb = hold(&dev, &clock);
    assert!(run(&mut hb, &clock, 3).is_none());
    dev_cell.set(Some(hb.block().clone()));
    copy_at.set(clock.now());
    assert!(matches!(
        run(&mut hb, &clock, 3),
        Some(FenceReason::ForeignWriter { .. })
    ));
}

#[test]
fn write_errors_fence_after_fail_intervals() {
    let clock = FakeClock::default();
    let dev = shared(false, &clean(), &clock, |_| None);
    let mut hb = hold(&dev, &clock);
    assert!(run(&mut hb, &clock, 3).is_none());
    dev.fail_writes.set(true);
    let t0 = clock.now();
    let r = run(&mut hb, &clock, 20).expect("fences");
    let took = clock.now() - t0;
    assert!(matches!(r, FenceReason::NoSuccessfulWrite { .. }), "{r}");
    assert!(r.to_string().contains("injected write error"), "{r}");
    assert!(took <= Duration::from_secs(5), "fenced after {took:?}");
    // The reader's wait is 11 s: we stopped well before anyone may call the block stale.
    assert!(took < check::wait_time(5));
}

#[test]
fn read_errors_count_as_failures_too() {
    let clock = FakeClock::default();
    let dev = shared(false, &clean(), &clock, |_| None);
    let mut hb = hold(&dev, &clock);
    dev.fail_reads.set(true);
    assert!(matches!(
        run(&mut hb, &clock, 20),
        Some(FenceReason::NoSuccessfulWrite { .. })
    ));
}

#[test]
fn a_transient_error_does_not_fence() {
    let clock = FakeClock::default();
    let dev = shared(false, &clean(), &clock, |_| None);
    let mut hb = hold(&dev, &clock);
    assert!(run(&mut hb, &clock, 2).is_none());
    dev.fail_writes.set(true);
    assert!(matches!(hb.beat(&clock), Ok(Beat::Failed { .. })));
    dev.fail_writes.set(false);
    assert!(run(&mut hb, &clock, 10).is_none());
}

#[test]
fn a_failed_write_that_landed_is_not_foreign() {
    // The device reports an error but stores the block (e.g. the sync failed).
    struct LyingDev<'a>(&'a ScriptedDevice<'a>, Cell<bool>);
    impl BlockIo for LyingDev<'_> {
        fn read_at(&self, o: u64, b: &mut [u8]) -> std::io::Result<()> {
            self.0.read_at(o, b)
        }
        fn write_at(&self, o: u64, b: &[u8]) -> std::io::Result<()> {
            self.0.write_at(o, b)?;
            if self.1.get() {
                return Err(std::io::Error::other("lost completion"));
            }
            Ok(())
        }
        fn sync(&self) -> std::io::Result<()> {
            Ok(())
        }
        fn size(&self) -> u64 {
            self.0.size()
        }
        fn logical_block_size(&self) -> u32 {
            512
        }
        fn name(&self) -> &str {
            "lying"
        }
    }
    let clock = FakeClock::default();
    let shared = shared(false, &clean(), &clock, |_| None);
    let dev = LyingDev(&shared, Cell::new(false));
    let fs = MmpFs::open(&dev).unwrap();
    let c = claim(
        &fs,
        &clock,
        &mut || Ok(9),
        &opts("me"),
        &|| false,
        &mut |_, _, _| {},
    )
    .unwrap();
    let mut hb = Heartbeat::new(fs, &c, HeartbeatConfig::default(), &clock);
    for _ in 0..3 {
        assert!(matches!(hb.beat(&clock), Ok(Beat::Wrote { .. })));
        clock.sleep(Duration::from_secs(1));
    }
    dev.1.set(true);
    assert!(matches!(hb.beat(&clock), Ok(Beat::Failed { .. })));
    dev.1.set(false);
    clock.sleep(Duration::from_secs(1));
    assert!(matches!(hb.beat(&clock), Ok(Beat::Wrote { .. })));
}

#[test]
fn a_stalled_holder_never_writes_late() {
    // The process was stopped (or the read hung) past the limit: fence without writing.
    let clock = FakeClock::default();
    let dev = shared(false, &clean(), &clock, |_| None);
    let mut hb = hold(&dev, &clock);
    assert!(run(&mut hb, &clock, 2).is_none());
    let writes = dev.writes.borrow().len();
    clock.sleep(Duration::from_secs(8));
    assert!(matches!(
        hb.beat(&clock),
        Err(FenceReason::NoSuccessfulWrite { .. })
    ));
    assert_eq!(dev.writes.borrow().len(), writes);
}

#[test]
fn first_beat_must_follow_the_claim_promptly() {
    // Claim done (its write is 9 s old), but the holder starts 1.6 s late: a reader who saw
    // the claim write may call it stale at 11 s, and we keep a 0.5 s margin: too late.
    let clock = FakeClock::default();
    let dev = shared(false, &clean(), &clock, |_| None);
    let fs = MmpFs::open(&dev).unwrap();
    let c = claim(
        &fs,
        &clock,
        &mut || Ok(9),
        &opts("me"),
        &|| false,
        &mut |_, _, _| {},
    )
    .unwrap();
    clock.sleep(Duration::from_millis(1600));
    let mut hb = Heartbeat::new(fs, &c, HeartbeatConfig::default(), &clock);
    assert!(hb.beat(&clock).is_err());
}

fn sync_failed() -> Result<(), Error> {
    Err(Error::Io {
        device: "shared".into(),
        op: "syncfs after writing the MMP block",
        offset: 0,
        source: std::io::Error::other("injected sync error"),
    })
}

/// One beat in two halves with the given sync result; `None` if it ended in the first.
fn split_beat(
    hb: &mut Heartbeat<&ScriptedDevice<'_>>,
    clock: &FakeClock,
    synced: impl FnOnce() -> Result<(), Error>,
) -> Result<Beat, FenceReason> {
    match hb.write_unsynced(clock)? {
        Written::Done(b) => Ok(b),
        Written::Unsynced => hb.confirm(clock, synced()),
    }
}

/// Beats in two halves with a shared sync that always fails, on the fake clock, until
/// the holder fences (or `secs` pass).
fn run_failing_sync(
    hb: &mut Heartbeat<&ScriptedDevice<'_>>,
    clock: &FakeClock,
    secs: u64,
) -> Option<FenceReason> {
    let end = clock.now() + Duration::from_secs(secs);
    while clock.now() < end {
        let due = hb.next_due();
        if due > clock.now() {
            clock.sleep(due - clock.now());
        }
        match split_beat(hb, clock, sync_failed) {
            Ok(Beat::Wrote { .. }) => panic!("a beat whose sync failed succeeded"),
            Ok(Beat::Failed { .. }) => {}
            Err(r) => return Some(r),
        }
    }
    None
}

#[test]
fn a_beat_counts_only_once_confirmed_and_from_its_submission() {
    let clock = FakeClock::default();
    let dev = shared(false, &clean(), &clock, |_| None);
    let mut hb = hold(&dev, &clock);
    assert!(run(&mut hb, &clock, 2).is_none());
    let (seq, beats, success) = (hb.seq(), hb.beats(), hb.last_success());
    clock.sleep(Duration::from_secs(1));
    let submitted = clock.now();
    assert!(matches!(hb.write_unsynced(&clock), Ok(Written::Unsynced)));
    assert!(hb.is_unsynced());
    // Written (the device has it) but not counted: not a success, not our block yet.
    assert_eq!(dev.current().mmp_seq, seq_after(seq));
    assert_eq!(
        (hb.seq(), hb.beats(), hb.last_success()),
        (seq, beats, success)
    );
    // The shared sync takes 700 ms: the beat's age still counts from the write.
    clock.sleep(Duration::from_millis(700));
    assert!(matches!(
        hb.confirm(&clock, Ok(())),
        Ok(Beat::Wrote { seq: s }) if s == seq_after(seq)
    ));
    assert_eq!(hb.last_success(), submitted);
    assert_eq!(hb.beats(), beats + 1);
    assert!(!hb.is_unsynced());
    // A confirm with nothing written counts nothing.
    assert!(matches!(
        hb.confirm(&clock, Ok(())),
        Ok(Beat::Failed { .. })
    ));
    assert_eq!(hb.last_success(), submitted);
}

#[test]
fn a_failed_group_sync_is_a_failed_beat_and_fences_after_fail_after() {
    let clock = FakeClock::default();
    let dev = shared(false, &clean(), &clock, |_| None);
    let mut hb = hold(&dev, &clock);
    assert!(run(&mut hb, &clock, 3).is_none());
    let last_success = hb.last_success();
    let t0 = clock.now();
    let r = run_failing_sync(&mut hb, &clock, 20).expect("fences");
    let took = clock.now() - t0;
    assert!(matches!(r, FenceReason::NoSuccessfulWrite { .. }), "{r}");
    assert!(r.to_string().contains("injected sync error"), "{r}");
    assert!(took <= Duration::from_secs(5), "fenced after {took:?}");
    assert!(took < check::wait_time(5));
    assert_eq!(hb.last_success(), last_success, "no failed sync counted");
    // Nothing written once fenced, and nothing confirmed either.
    let writes = dev.writes.borrow().len();
    assert!(hb.write_unsynced(&clock).is_err());
    assert!(hb.confirm(&clock, Ok(())).is_err());
    assert_eq!(dev.writes.borrow().len(), writes);
}

#[test]
fn a_write_that_landed_but_whose_sync_failed_is_ours() {
    let clock = FakeClock::default();
    let dev = shared(true, &clean(), &clock, |_| None);
    let mut hb = hold(&dev, &clock);
    assert!(run(&mut hb, &clock, 2).is_none());
    let seq = hb.seq();
    clock.sleep(Duration::from_secs(1));
    assert!(matches!(
        split_beat(&mut hb, &clock, sync_failed),
        Ok(Beat::Failed { .. })
    ));
    // The block on disk is the write whose sync failed; our last known write is older.
    assert_eq!(dev.current().mmp_seq, seq_after(seq));
    assert_eq!(hb.seq(), seq);
    clock.sleep(Duration::from_secs(1));
    // The next beat finds it, takes it as ours and writes the one after.
    assert!(matches!(
        split_beat(&mut hb, &clock, || Ok(())),
        Ok(Beat::Wrote { seq: s }) if s == seq_after(seq_after(seq))
    ));
    assert!(run(&mut hb, &clock, 5).is_none());
}

#[test]
fn an_unconfirmed_write_is_pending_at_the_next_beat_and_at_release() {
    let clock = FakeClock::default();
    let dev = shared(false, &clean(), &clock, |_| None);
    let mut hb = hold(&dev, &clock);
    assert!(run(&mut hb, &clock, 2).is_none());
    let success = hb.last_success();
    clock.sleep(Duration::from_secs(1));
    assert!(matches!(hb.write_unsynced(&clock), Ok(Written::Unsynced)));
    // Never confirmed: the next beat (with its own sync) treats it as a write of unknown
    // outcome, finds it on disk and goes on.
    clock.sleep(Duration::from_secs(1));
    assert!(matches!(hb.beat(&clock), Ok(Beat::Wrote { .. })));
    assert!(hb.last_success() > success);
    // Released with a write unconfirmed: the block is ours, CLEAN is written.
    clock.sleep(Duration::from_secs(1));
    assert!(matches!(hb.write_unsynced(&clock), Ok(Written::Unsynced)));
    assert!(matches!(hb.release(), Ok(Release::Clean(_))));
    assert_eq!(dev.current().mmp_seq, EXT4_MMP_SEQ_CLEAN);
}

#[test]
fn a_foreign_write_between_write_and_confirm_is_caught_at_the_next_beat() {
    let clock = FakeClock::default();
    let dev = shared(false, &clean(), &clock, |_| None);
    let mut hb = hold(&dev, &clock);
    assert!(run(&mut hb, &clock, 2).is_none());
    clock.sleep(Duration::from_secs(1));
    assert!(matches!(hb.write_unsynced(&clock), Ok(Written::Unsynced)));
    // Another node writes the block while our sync runs.
    let intruder = MmpBlock::new(0xBAD, 0, "intruder", "sdz", 5);
    dev.inner
        .write_at(
            crate::protocol::check::tests::MMP_BLOCK * crate::protocol::check::tests::BS,
            &intruder.encode(dev.seed),
        )
        .unwrap();
    assert!(matches!(hb.confirm(&clock, Ok(())), Ok(Beat::Wrote { .. })));
    let writes = dev.writes.borrow().len();
    clock.sleep(Duration::from_secs(1));
    match split_beat(&mut hb, &clock, || Ok(())) {
        Err(FenceReason::ForeignWriter { found, .. }) => {
            assert_eq!(found.nodename(), "intruder")
        }
        r => panic!("{r:?}"),
    }
    assert_eq!(dev.writes.borrow().len(), writes, "nothing written over it");
    assert_eq!(dev.current().mmp_seq, 0xBAD);
    assert!(matches!(hb.release(), Err(ReleaseError::Fenced(_))));
}

#[test]
fn a_group_sync_that_hung_past_the_limit_fences_at_the_next_beat() {
    // The shared sync returned fine, but only after the block on disk could be called
    // stale: the beat counts from its submission, so the next beat is too late to write.
    let clock = FakeClock::default();
    let dev = shared(false, &clean(), &clock, |_| None);
    let mut hb = hold(&dev, &clock);
    assert!(run(&mut hb, &clock, 2).is_none());
    clock.sleep(Duration::from_secs(1));
    assert!(matches!(hb.write_unsynced(&clock), Ok(Written::Unsynced)));
    clock.sleep(Duration::from_secs(9));
    assert!(matches!(hb.confirm(&clock, Ok(())), Ok(Beat::Wrote { .. })));
    let writes = dev.writes.borrow().len();
    assert!(matches!(
        hb.write_unsynced(&clock),
        Err(FenceReason::NoSuccessfulWrite { .. })
    ));
    assert_eq!(dev.writes.borrow().len(), writes);
}

#[test]
fn release_writes_clean() {
    let clock = FakeClock::default();
    let dev = shared(false, &clean(), &clock, |_| None);
    let mut hb = hold(&dev, &clock);
    assert!(run(&mut hb, &clock, 3).is_none());
    match hb.release().unwrap() {
        Release::Clean(b) => assert_eq!(b.nodename(), "me"),
        r => panic!("{r:?}"),
    }
    assert_eq!(dev.current().mmp_seq, EXT4_MMP_SEQ_CLEAN);
}
