//! Every refusal, in memory: reason, message, nothing written.

use super::*;
use crate::error::Error;
use crate::ondisk::superblock::EXT2_ERROR_FS;

/// Run each of `ops` (`enable`, `disable`, `interval`) on `img` and insist that it is refused
/// with `reason`, names the device, says what to do next and writes nothing.
fn refused(img: &[u8], ops: &[&str], reason: &str) {
    let clock = FakeClock::default();
    for op in ops {
        let fs = fs_of(img.to_vec());
        let r = match *op {
            "enable" => enable(&fs, Some(5), &env()),
            "disable" => disable(
                &fs,
                &env(),
                &clock,
                Settle::For(CLAIM_SETTLE),
                &mut no_progress(),
            ),
            _ => set_interval(
                &fs,
                6,
                &env(),
                &clock,
                Settle::For(CLAIM_SETTLE),
                &mut no_progress(),
            ),
        };
        let e = r
            .err()
            .unwrap_or_else(|| panic!("{op} was not refused ({reason})"));
        assert_eq!(e.reason(), reason, "{op}: {e}");
        assert!(
            e.to_string().contains("mem.img"),
            "{op}: names the device: {e}"
        );
        assert!(
            e.to_string().contains("Next:") || matches!(e, EditError::Fs(_)),
            "{op}: says what to do: {e}"
        );
        assert_eq!(fs.device().snapshot(), img, "{op} wrote nothing");
    }
}

const ALL: &[&str] = &["enable", "disable", "interval"];

#[test]
fn refuses_unclean_mmp_blocks() {
    let img = enabled(Spec::default());
    let live = with_mmp_block(&img, |b| b.mmp_seq = 42);
    refused(&live, ALL, "mmp_live");
    let fsck = with_mmp_block(&img, |b| b.mmp_seq = EXT4_MMP_SEQ_FSCK);
    refused(&fsck, ALL, "mmp_fsck");
    let unknown = with_mmp_block(&img, |b| b.mmp_seq = EXT4_MMP_SEQ_FSCK + 7);
    refused(&unknown, ALL, "mmp_unknown_sequence");
    let magic = with_mmp_block(&img, |b| b.mmp_magic = 0x1234);
    refused(&magic, ALL, "mmp_bad_magic");
    let mut bad_csum = img.clone();
    let sb = Superblock::parse(&img[1024..2048]).unwrap();
    bad_csum[sb.mmp_offset() as usize + 0x3FC] ^= 1;
    refused(&bad_csum, ALL, "mmp_bad_checksum");
    let fs = fs_of(live);
    let e = disable(
        &fs,
        &env(),
        &FakeClock::default(),
        Settle::Full,
        &mut no_progress(),
    )
    .unwrap_err();
    assert!(e.is_in_use());
    assert!(
        e.to_string().contains("node-a"),
        "names the last writer: {e}"
    );
}

#[test]
fn refuses_what_it_does_not_handle() {
    let plain = build(Spec::default());
    let on = enabled(Spec::default());
    for (bits, name) in [
        (feature::INCOMPAT_RECOVER, "needs_recovery"),
        (feature::INCOMPAT_META_BG, "unsupported_features"),
        (feature::INCOMPAT_JOURNAL_DEV, "unsupported_features"),
        (0x8000_0000, "unsupported_features"),
    ] {
        // Without MMP, disable has nothing to do; enable and interval refuse.
        refused(
            &with_superblock(&plain, |sb| sb.s_feature_incompat |= bits),
            &["enable", "interval"],
            name,
        );
        refused(
            &with_superblock(&on, |sb| sb.s_feature_incompat |= bits),
            ALL,
            name,
        );
    }
    let big = with_superblock(&on, |sb| {
        sb.s_feature_ro_compat |= feature::RO_COMPAT_BIGALLOC
    });
    refused(&big, ALL, "unsupported_features");
    let fs = fs_of(big);
    let e = enable(&fs, None, &env()).unwrap_err();
    assert!(
        e.to_string().contains("bigalloc") && e.to_string().contains("tune2fs"),
        "{e}"
    );
    let errors = with_superblock(&on, |sb| sb.s_state |= EXT2_ERROR_FS);
    refused(&errors, ALL, "has_errors");
    // A bad superblock checksum: the open itself fails.
    let mut bad = on.clone();
    bad[1024 + 0x3FC] ^= 0xFF;
    assert!(matches!(
        MmpFs::open(MemDevice::new("mem.img", bad)),
        Err(Error::Superblock { .. })
    ));
    // A truncated image.
    let short = on[..on.len() - 1024].to_vec();
    refused(&short, ALL, "truncated");
}

#[test]
fn not_enabled_and_bad_intervals() {
    let plain = build(Spec::default());
    let clock = FakeClock::default();
    let fs = fs_of(plain.clone());
    let e = set_interval(&fs, 5, &env(), &clock, Settle::Full, &mut no_progress()).unwrap_err();
    assert_eq!(e.reason(), "not_enabled");
    assert!(e.to_string().contains("mmp-tool enable mem.img"));
    assert_eq!(
        clear(&fs, &env(), &clock, false, &mut no_progress())
            .unwrap_err()
            .reason(),
        "not_enabled"
    );
    for bad in [0u16, 301, u16::MAX] {
        assert_eq!(
            enable(&fs, Some(bad), &env()).unwrap_err().reason(),
            "bad_interval"
        );
        assert_eq!(
            set_interval(&fs, bad, &env(), &clock, Settle::Full, &mut no_progress())
                .unwrap_err()
                .reason(),
            "bad_interval"
        );
    }
    assert_eq!(fs.device().snapshot(), plain);
}

#[test]
fn refuses_inconsistent_metadata() {
    let spec = Spec {
        fill_group0: true,
        ..Spec::default()
    };
    let img = build(spec);
    let sb = Superblock::parse(&img[1024..2048]).unwrap();
    let geo = Geometry::from_superblock(&sb).unwrap();
    let gdt_off = geo.gdt_block(0) as usize * 1024;
    // A corrupt descriptor (its checksum no longer matches).
    let mut bad_desc = img.clone();
    bad_desc[gdt_off + 64 + 0x10] ^= 1;
    let fs = fs_of(bad_desc.clone());
    let e = enable(&fs, None, &env()).unwrap_err();
    assert_eq!(e.reason(), "inconsistent", "{e}");
    assert!(e.to_string().contains("e2fsck -f mem.img"));
    assert_eq!(fs.device().snapshot(), bad_desc);
    // A corrupt bitmap in group 0 (its checksum no longer matches).
    let gt =
        GroupTable::from_bytes(&geo, img[gdt_off..gdt_off + geo.gdt_bytes()].to_vec()).unwrap();
    let mut bad_bm = img.clone();
    bad_bm[gt.desc(0).bg_block_bitmap as usize * 1024 + 3] ^= 0x10;
    assert_eq!(
        enable(&fs_of(bad_bm), None, &env()).unwrap_err().reason(),
        "inconsistent"
    );
    // An uninitialised group whose free count does not match its metadata.
    let mut gt2 = gt.clone();
    let mut d = gt2.desc(1);
    d.bg_free_blocks_count -= 1;
    gt2.set_desc(1, &d);
    let mut bad_count = img.clone();
    bad_count[gdt_off..gdt_off + geo.gdt_bytes()].copy_from_slice(gt2.bytes());
    let e = enable(&fs_of(bad_count), None, &env()).unwrap_err();
    assert!(e.to_string().contains("BLOCK_UNINIT"), "{e}");
}

/// Issue 12, defect 3d: no edit writes an MMP block over filesystem metadata or past the end.
/// For each kind, every command that would write the MMP block in place is refused, the
/// message names what lies there and the way out, and nothing is written.
#[test]
fn refuses_an_mmp_block_in_metadata_or_past_the_end() {
    for spec in [
        Spec::default(),
        Spec {
            bs: 4096,
            ..Spec::default()
        },
    ] {
        let on = enabled(spec);
        let c = check_consistent(&on);
        let (geo, d0) = (&c.geo, c.gt.desc(0));
        let backup = geo.backup_groups()[0];
        let cases = [
            (geo.first_data_block, "the primary superblock".to_string()),
            (
                geo.group_first_block(backup),
                format!("the backup superblock of group {backup}"),
            ),
            (
                geo.gdt_block(0),
                "in the primary group descriptor table".into(),
            ),
            (
                geo.gdt_block(backup),
                format!("in the backup group descriptor table of group {backup}"),
            ),
            (
                geo.gdt_block(0) + geo.desc_blocks,
                "a reserved GDT block of group 0".into(),
            ),
            (d0.bg_block_bitmap, "the block bitmap of group 0".into()),
            (d0.bg_inode_bitmap, "the inode bitmap of group 0".into()),
            (
                d0.bg_inode_table + u64::from(geo.inode_blocks_per_group) - 1,
                "in the inode table of group 0".into(),
            ),
            (
                geo.blocks_count + 3,
                format!(
                    "past the end of the filesystem, which has {} blocks",
                    geo.blocks_count
                ),
            ),
        ];
        for (block, what) in cases {
            let img = with_superblock(&on, |sb| sb.s_mmp_block = block);
            let reason = if what.starts_with("past") {
                "bad_mmp_block_number"
            } else {
                "mmp_block_in_metadata"
            };
            refused(&img, ALL, reason);
            let fs = fs_of(img.clone());
            let e =
                clear(&fs, &env(), &FakeClock::default(), true, &mut no_progress()).unwrap_err();
            assert_eq!(e.reason(), reason, "{e}");
            assert_eq!(fs.device().snapshot(), img, "clear wrote nothing");
            let msg = e.to_string();
            assert!(
                msg.contains(&format!("block {block} is {what}"))
                    && msg.contains("tune2fs -f -O ^mmp mem.img")
                    && msg.contains("e2fsck -f mem.img"),
                "{spec:?}: {msg}"
            );
            assert!(
                !e.is_in_use(),
                "a corrupt filesystem, not one in use: {msg}"
            );
        }
    }
}
