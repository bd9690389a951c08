//! enable, disable and interval on good images: the results, idempotence, the check interval.

use super::*;

#[test]
fn built_images_are_consistent() {
    for spec in all_specs() {
        check_consistent(&build(spec));
    }
}

#[test]
fn enable_then_disable_round_trips() {
    for spec in all_specs() {
        let orig = build(spec);
        let fs = fs_of(orig.clone());
        let r = enable(&fs, Some(7), &env()).unwrap_or_else(|e| panic!("{spec:?}: {e}"));
        assert!(r.changed);
        let after = fs.device().snapshot();
        let c = check_consistent(&after);
        assert!(c.sb.has_mmp());
        assert_eq!(c.sb.s_mmp_block, r.mmp_block);
        assert_eq!(c.sb.s_mmp_update_interval, 7);
        assert_eq!(c.sb.free_blocks_count + 1, r.free_blocks_before);
        let o = c.sb.mmp_offset() as usize;
        let blk = MmpBlock::parse(&after[o..o + 1024], c.sb.mmp_csum_seed()).unwrap();
        assert_eq!(
            (blk.mmp_check_interval, blk.nodename(), blk.bdevname()),
            (7, "node-a".into(), "mem.img".into())
        );
        // Where: the first free block, in group 1 (uninitialised unless there are no
        // descriptor checksums) when group 0 is full.
        let g = c.geo.group_of(r.mmp_block);
        if spec.fill_group0 && spec.groups > 1 {
            assert_eq!(g, 1, "{spec:?}");
            assert_eq!(
                r.group_was_block_uninit,
                spec.csum != Csum::None && spec.uninit
            );
            assert_eq!(c.gt.desc(1).bg_flags & EXT2_BG_BLOCK_UNINIT, 0);
        } else {
            assert_eq!(g, 0);
        }
        assert_eq!(r.backup_groups, c.geo.backup_groups());

        let fs = fs_of(after);
        let r2 = disable(
            &fs,
            &env(),
            &FakeClock::default(),
            Settle::For(CLAIM_SETTLE),
            &mut no_progress(),
        )
        .unwrap();
        assert!(r2.changed);
        let back = fs.device().snapshot();
        let c2 = check_consistent(&back);
        assert!(!c2.sb.has_mmp());
        assert_eq!(c2.sb.free_blocks_count, r.free_blocks_before);
        // The primary superblock is byte-identical to the original, and the old block zeroed.
        assert_eq!(&back[1024..2048], &orig[1024..2048], "{spec:?}");
        let bs = spec.bs as usize;
        let o = r.mmp_block as usize * bs;
        assert!(back[o..o + bs].iter().all(|&b| b == 0));
    }
}

#[test]
fn idempotent_when_already_as_asked() {
    let fs = fs_of(build(Spec::default()));
    enable(&fs, None, &env()).unwrap();
    let fs = fs_of(fs.device().snapshot());
    let before = fs.device().snapshot();
    let r = enable(&fs, None, &env()).unwrap();
    assert!(!r.changed && r.writes.is_empty());
    assert!(!enable(&fs, Some(5), &env()).unwrap().changed);
    let e = enable(&fs, Some(9), &env()).unwrap_err();
    assert_eq!(e.reason(), "already_enabled");
    assert!(e.to_string().contains("mmp-tool interval mem.img 9"), "{e}");
    let r = set_interval(
        &fs,
        5,
        &env(),
        &FakeClock::default(),
        Settle::For(CLAIM_SETTLE),
        &mut no_progress(),
    )
    .unwrap();
    assert!(!r.changed);
    assert_eq!(fs.device().snapshot(), before);
    let plain = fs_of(build(Spec::default()));
    let r = disable(
        &plain,
        &env(),
        &FakeClock::default(),
        Settle::Full,
        &mut no_progress(),
    )
    .unwrap();
    assert!(!r.changed && r.writes.is_empty());
}

#[test]
fn interval_rewrites_superblock_backups_and_block() {
    let fs = fs_of(enabled(Spec::default()));
    let clock = FakeClock::default();
    let mut last = (Duration::MAX, Duration::ZERO);
    let r = set_interval(
        &fs,
        1,
        &env(),
        &clock,
        Settle::For(CLAIM_SETTLE),
        &mut |e, t| last = (e, t),
    )
    .unwrap();
    assert_eq!(
        last,
        (CLAIM_SETTLE, CLAIM_SETTLE),
        "the countdown runs to the settle time"
    );
    assert!(r.changed);
    assert_eq!(
        clock.now(),
        CLAIM_SETTLE,
        "the claim was watched for the settle time"
    );
    let img = fs.device().snapshot();
    let c = check_consistent(&img);
    assert_eq!(c.sb.s_mmp_update_interval, 1);
    let o = c.sb.mmp_offset() as usize;
    let blk = MmpBlock::parse(&img[o..o + 1024], c.sb.mmp_csum_seed()).unwrap();
    assert_eq!(blk.mmp_seq, EXT4_MMP_SEQ_CLEAN);
    assert_eq!(
        blk.mmp_check_interval, 5,
        "at least EXT4_MMP_MIN_CHECK_INTERVAL"
    );
    let r = set_interval(
        &fs_of(img),
        300,
        &env(),
        &clock,
        Settle::Full,
        &mut no_progress(),
    )
    .unwrap();
    assert_eq!(r.check_interval, Some(300));
    // Full settle: min(2*CI+1, CI+60) with CI = max(1, 5, 5) = 5 → 11 s.
    assert_eq!(r.watched_seconds, 11.0);
}

#[test]
fn gdt_csum_images_have_superblock_state_in_backups_cleared() {
    let img = enabled(Spec {
        csum: Csum::Gdt,
        ..Spec::default()
    });
    let c = check_consistent(&img);
    assert_eq!(c.geo.desc_csum, DescCsum::Crc16 { uuid: c.sb.s_uuid });
    let g = c.geo.backup_groups()[0];
    let o = c.geo.superblock_offset(g) as usize;
    let mut b = [0u8; SUPERBLOCK_SIZE];
    b.copy_from_slice(&img[o..o + SUPERBLOCK_SIZE]);
    assert_eq!(superblock_state(&b), 0);
}

proptest::proptest! {
    #![proptest_config(proptest::prelude::ProptestConfig::with_cases(256))]

    /// Corrupt metadata never makes an edit panic: every edit either refuses or leaves an image
    /// whose primary superblock still parses.
    #[test]
    fn edits_never_panic_on_corrupt_images(
        flips in proptest::collection::vec((0usize..24 * 1024, proptest::prelude::any::<u8>()), 1..8),
        csum in 0u8..4,
        fill in proptest::prelude::any::<bool>(),
    ) {
        let spec = Spec {
            csum: [Csum::None, Csum::Gdt, Csum::Meta, Csum::MetaSeed][csum as usize],
            fill_group0: fill,
            ..Spec::default()
        };
        for base in [build(spec), enabled(spec)] {
            let mut img = base.clone();
            for &(pos, v) in &flips {
                img[pos] ^= v;
            }
            let clock = FakeClock::default();
            if let Ok(fs) = MmpFs::open(MemDevice::new("mem.img", img.clone())) {
                if enable(&fs, None, &env()).is_ok() {
                    proptest::prop_assert!(Superblock::parse(&fs.device().snapshot()[1024..2048]).is_ok());
                }
            }
            if let Ok(fs) = MmpFs::open(MemDevice::new("mem.img", img.clone())) {
                let _ = clear(&fs, &env(), &clock, true, &mut no_progress());
                let _ = disable(&fs, &env(), &clock, Settle::For(CLAIM_SETTLE), &mut no_progress());
                let _ = set_interval(&fs, 3, &env(), &clock, Settle::For(CLAIM_SETTLE), &mut no_progress());
            }
        }
    }
}

/// Defect 3c of issue 12: an `s_mmp_update_interval` already in the superblock (set with
/// `tune2fs -E mmp_update_interval=N` while MMP was off) is kept by `enable` without
/// `--interval`, as `ext2fs_mmp_init` keeps it; `--interval` replaces it; one above the maximum
/// is refused, as `ext2fs_mmp_init` refuses it.
#[test]
fn enable_keeps_the_interval_already_in_the_superblock() {
    let img = with_superblock(&build(Spec::default()), |sb| sb.s_mmp_update_interval = 17);
    let fs = fs_of(img.clone());
    let r = enable(&fs, None, &env()).unwrap();
    assert_eq!((r.update_interval, r.check_interval), (17, Some(17)));
    let c = check_consistent(&fs.device().snapshot());
    assert_eq!(c.sb.s_mmp_update_interval, 17);

    let fs = fs_of(img);
    let r = enable(&fs, Some(3), &env()).unwrap();
    assert_eq!((r.update_interval, r.check_interval), (3, Some(5)));

    let img = with_superblock(&build(Spec::default()), |sb| sb.s_mmp_update_interval = 301);
    let fs = fs_of(img.clone());
    let e = enable(&fs, None, &env()).unwrap_err();
    assert_eq!(e.reason(), "bad_interval", "{e}");
    assert!(
        e.to_string().contains("301") && e.to_string().contains("--interval"),
        "{e}"
    );
    assert_eq!(fs.device().snapshot(), img, "nothing written");
    assert!(enable(&fs, Some(8), &env()).unwrap().changed);
}

/// A superblock whose descriptor table would reach past the device (here 191 GB of it, what a
/// corrupt image gave proptest's `edits_never_panic_on_corrupt_images` in CI through `clear`)
/// is refused before anything is allocated or read: the process aborted on the allocation.
#[test]
fn a_descriptor_table_past_the_device_is_refused_before_allocating() {
    let fs = fs_of(build(Spec::default()));
    let mut geo = crate::ondisk::geometry::Geometry::from_superblock(fs.superblock()).unwrap();
    geo.desc_blocks = 191_126_045_696 / u64::from(geo.block_size);
    let e = match super::super::preflight::load_gdt(&fs, &geo) {
        Err(e) => e.to_string(),
        Ok(_) => panic!("a table past the device was read"),
    };
    assert!(e.contains("group descriptor table"), "{e}");
}
