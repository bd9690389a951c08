//! clear: the watch, then the reset.

use super::*;

#[test]
fn clear_watches_then_resets() {
    let on = enabled(Spec::default());
    let sb = Superblock::parse(&on[1024..2048]).unwrap();
    let stuck = with_mmp_block(&on, |b| {
        b.mmp_seq = EXT4_MMP_SEQ_FSCK;
        b.mmp_check_interval = 10;
    });
    // Unchanged for the whole wait (CI = max(5, 5, 10) = 10: min(21, 70) = 21 s): cleared.
    let clock = FakeClock::default();
    let fs = fs_of(stuck.clone());
    let mut calls = 0;
    let r = clear(&fs, &env(), &clock, false, &mut |_, _| calls += 1).unwrap();
    assert!(r.changed && calls > 100);
    assert_eq!(r.previous_state, Some("fsck"));
    assert_eq!(clock.now(), Duration::from_secs(21));
    check_consistent(&fs.device().snapshot());
    // --force: no wait.
    let clock = FakeClock::default();
    let fs = fs_of(stuck.clone());
    clear(&fs, &env(), &clock, true, &mut no_progress()).unwrap();
    assert_eq!(clock.now(), Duration::ZERO);
    check_consistent(&fs.device().snapshot());
    // Garbage (bad magic, absurd check interval): the wait comes from the superblock only.
    let garbage = with_mmp_block(&on, |b| {
        b.mmp_magic = 0xDEAD_BEEF;
        b.mmp_check_interval = u16::MAX;
    });
    let clock = FakeClock::default();
    let fs = fs_of(garbage);
    assert_eq!(
        clear(&fs, &env(), &clock, false, &mut no_progress())
            .unwrap()
            .previous_state,
        Some("bad_magic")
    );
    assert_eq!(clock.now(), Duration::from_secs(11));
    // Already clean: nothing to do.
    let fs = fs_of(on.clone());
    let r = clear(
        &fs,
        &env(),
        &FakeClock::default(),
        false,
        &mut no_progress(),
    )
    .unwrap();
    assert!(!r.changed);
    assert_eq!(fs.device().snapshot(), on);
    // Changing during the watch: refused, the block left to its writer.
    let clock = FakeClock::default();
    let fs = MmpFs::open(racing(stuck, &sb, &clock, Duration::from_secs(3))).unwrap();
    let e = clear(&fs, &env(), &clock, false, &mut no_progress()).unwrap_err();
    assert_eq!(e.reason(), "mmp_changed");
    assert!(e.to_string().contains("nothing was written"), "{e}");
    assert!(clock.now() < Duration::from_millis(3200));
}
