//! In-memory tests of the edits, on small filesystems built here block by block. The real
//! proof is the integration matrix against mke2fs/e2fsck/tune2fs/the kernel (mmp-tool/tests);
//! these cover the logic, the refusals and every crash point without a device.

use super::*;
use crate::io::device::MemDevice;
use crate::ondisk::layout::{superblock_state, DescCsum, GroupDesc};
use crate::ondisk::mmp::{EXT4_MMP_MAGIC, EXT4_MMP_SEQ_FSCK};
use crate::ondisk::superblock::*;
use std::cell::Cell;

const IPG: u32 = 32;
const RESERVED_GDT: u32 = 2;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Csum {
    None,
    Gdt,
    Meta,
    MetaSeed,
}

#[derive(Debug, Clone, Copy)]
struct Spec {
    bs: u32,
    bpg: u32,
    groups: u32,
    /// Blocks missing from the last group.
    last_short: u32,
    csum: Csum,
    wide: bool,
    uninit: bool,
    fill_group0: bool,
    sparse2: Option<[u32; 2]>,
}

impl Default for Spec {
    fn default() -> Self {
        Spec {
            bs: 1024,
            bpg: 256,
            groups: 6,
            last_short: 40,
            csum: Csum::Meta,
            wide: true,
            uninit: true,
            fill_group0: false,
            sparse2: None,
        }
    }
}

fn reseal(sb: &mut [u8]) {
    if S_FEATURE_RO_COMPAT.get(sb) & feature::RO_COMPAT_METADATA_CSUM != 0 {
        let c = superblock_csum(sb);
        S_CHECKSUM.put(sb, c);
    }
}

/// Build a consistent filesystem image (metadata only) in memory.
fn build(spec: Spec) -> Vec<u8> {
    let bs = spec.bs as usize;
    let fdb = u32::from(spec.bs == 1024);
    let blocks =
        u64::from(fdb) + u64::from(spec.bpg) * u64::from(spec.groups) - u64::from(spec.last_short);
    let mut img = vec![0u8; blocks as usize * bs];
    let mut sb = [0u8; SUPERBLOCK_SIZE];
    S_INODES_COUNT.put(&mut sb, IPG * spec.groups);
    S_BLOCKS_COUNT_LO.put(&mut sb, blocks as u32);
    S_FREE_INODES_COUNT.put(&mut sb, IPG * spec.groups);
    S_FIRST_DATA_BLOCK.put(&mut sb, fdb);
    let log = spec.bs.trailing_zeros() - 10;
    S_LOG_BLOCK_SIZE.put(&mut sb, log);
    S_LOG_CLUSTER_SIZE.put(&mut sb, log);
    S_BLOCKS_PER_GROUP.put(&mut sb, spec.bpg);
    S_INODES_PER_GROUP.put(&mut sb, IPG);
    S_MAGIC.put(&mut sb, 0xEF53);
    S_STATE.put(&mut sb, 1);
    S_REV_LEVEL.put(&mut sb, 1);
    S_INODE_SIZE.put(&mut sb, 128);
    for (i, b) in sb[S_UUID.range()].iter_mut().enumerate() {
        *b = 0xA0 + i as u8;
    }
    S_RESERVED_GDT_BLOCKS.put(&mut sb, RESERVED_GDT as u16);
    let mut incompat = 0x0002 | 0x0040; // filetype, extents
    let mut ro = 0x0001 | 0x0002; // sparse_super, large_file
    if spec.wide {
        incompat |= feature::INCOMPAT_64BIT;
        S_DESC_SIZE.put(&mut sb, 64);
    }
    match spec.csum {
        Csum::None => {}
        Csum::Gdt => ro |= feature::RO_COMPAT_GDT_CSUM,
        Csum::Meta | Csum::MetaSeed => {
            ro |= feature::RO_COMPAT_METADATA_CSUM;
            S_CHECKSUM_TYPE.put(&mut sb, 1);
        }
    }
    if spec.csum == Csum::MetaSeed {
        incompat |= feature::INCOMPAT_CSUM_SEED;
        S_CHECKSUM_SEED.put(&mut sb, 0x1234_5678);
    }
    if let Some(bgs) = spec.sparse2 {
        S_FEATURE_COMPAT.put(&mut sb, feature::COMPAT_SPARSE_SUPER2);
        S_BACKUP_BGS_0.put(&mut sb, bgs[0]);
        S_BACKUP_BGS_1.put(&mut sb, bgs[1]);
    }
    S_FEATURE_INCOMPAT.put(&mut sb, incompat);
    S_FEATURE_RO_COMPAT.put(&mut sb, ro);
    reseal(&mut sb);
    let parsed = Superblock::parse(&sb).unwrap();
    let geo = Geometry::from_superblock(&parsed).unwrap();
    let ibpg = u64::from(geo.inode_blocks_per_group);
    let mut gdt = vec![0u8; geo.gdt_bytes()];
    let mut total_free = 0u64;
    for g in 0..geo.group_count {
        let first = geo.group_first_block(g);
        let n = geo.group_blocks(g) as usize;
        let meta = first
            + if geo.has_super(g) {
                1 + geo.desc_blocks + u64::from(RESERVED_GDT)
            } else {
                0
            };
        let mut used = (meta - first) as usize + 2 + ibpg as usize;
        if g == 0 {
            used += 3; // root directory, lost+found ...
        }
        if g == 0 && spec.fill_group0 {
            used = n;
        }
        let mut bm = vec![0u8; bs];
        for i in 0..used {
            set_bit(&mut bm, i);
        }
        for i in n..bs * 8 {
            set_bit(&mut bm, i);
        }
        let free = (n - used) as u32;
        total_free += u64::from(free);
        let uninit = spec.uninit && spec.csum != Csum::None && g != 0 && g + 1 != geo.group_count;
        let mut d = GroupDesc::decode(&vec![0u8; geo.desc_size], geo.desc_size).unwrap();
        d.bg_block_bitmap = meta;
        d.bg_inode_bitmap = meta + 1;
        d.bg_inode_table = meta + 2;
        d.bg_free_blocks_count = free;
        d.bg_free_inodes_count = IPG;
        let bm_off = meta as usize * bs;
        if uninit {
            d.bg_flags = EXT2_BG_BLOCK_UNINIT;
            // An uninitialised bitmap block holds garbage; it must never be read.
            img[bm_off..bm_off + bs].fill(0xAA);
        } else {
            img[bm_off..bm_off + bs].copy_from_slice(&bm);
            if let Some(c) = geo.bitmap_csum(&bm) {
                d.bg_block_bitmap_csum = c;
            }
        }
        let enc = d.encode(g, geo.desc_csum);
        gdt[g as usize * geo.desc_size..(g as usize + 1) * geo.desc_size].copy_from_slice(&enc);
    }
    S_FREE_BLOCKS_COUNT_LO.put(&mut sb, total_free as u32);
    reseal(&mut sb);
    img[1024..2048].copy_from_slice(&sb);
    let gdt_off = geo.gdt_block(0) as usize * bs;
    img[gdt_off..gdt_off + gdt.len()].copy_from_slice(&gdt);
    for g in geo.backup_groups() {
        let off = geo.superblock_offset(g) as usize;
        img[off..off + SUPERBLOCK_SIZE].copy_from_slice(&backup_superblock(&sb, g));
        let off = geo.gdt_block(g) as usize * bs;
        img[off..off + gdt.len()].copy_from_slice(&gdt);
    }
    img
}

fn env() -> EditEnv {
    EditEnv {
        nodename: "node-a".into(),
        bdevname: "mem.img".into(),
        wall_time: 1_800_000_000,
        claim_seq: 0x1234_5678,
    }
}

use crate::protocol::check::tests::FakeClock;

fn no_progress() -> impl FnMut(Duration, Duration) {
    |_, _| {}
}

fn fs_of(img: Vec<u8>) -> MmpFs<MemDevice> {
    MmpFs::open(MemDevice::new("mem.img", img)).unwrap()
}

/// Our own consistency check of an image: what e2fsck's passes 5 and the superblock checks
/// would say about the structures an edit touches.
#[derive(Debug)]
struct Checked {
    sb: Superblock,
    geo: Geometry,
    gt: GroupTable,
}

fn check_consistent(img: &[u8]) -> Checked {
    let sb = Superblock::parse(&img[1024..2048]).expect("primary superblock");
    let geo = Geometry::from_superblock(&sb).unwrap();
    let bs = geo.block_size as usize;
    let off = geo.gdt_block(0) as usize * bs;
    let gt = GroupTable::from_bytes(&geo, img[off..off + geo.gdt_bytes()].to_vec())
        .expect("descriptor checksums");
    let mut free = 0u64;
    for g in 0..geo.group_count {
        let d = gt.desc(g);
        free += u64::from(d.bg_free_blocks_count);
        let bm = if geo.desc_csum.enabled() && d.bg_flags & EXT2_BG_BLOCK_UNINIT != 0 {
            geo.uninit_bitmap(g, &gt)
        } else {
            let o = d.bg_block_bitmap as usize * bs;
            let bm = img[o..o + bs].to_vec();
            assert!(
                geo.bitmap_csum_matches(&d, &bm),
                "group {g} bitmap checksum"
            );
            bm
        };
        assert_eq!(
            count_zeros(&bm, geo.group_blocks(g) as usize),
            d.bg_free_blocks_count,
            "group {g} free count"
        );
        if sb.has_mmp() && geo.group_of(sb.s_mmp_block) == g {
            let bit = (sb.s_mmp_block - geo.group_first_block(g)) as usize;
            assert!(test_bit(&bm, bit), "MMP block allocated");
        }
    }
    assert_eq!(free, sb.free_blocks_count, "superblock free blocks");
    if sb.has_mmp() {
        let o = sb.mmp_offset() as usize;
        let blk = MmpBlock::parse(&img[o..o + MMP_STRUCT_SIZE], sb.mmp_csum_seed())
            .expect("valid MMP block");
        assert_eq!(blk.mmp_seq, EXT4_MMP_SEQ_CLEAN);
        assert!(img[o + MMP_STRUCT_SIZE..o + bs].iter().all(|&b| b == 0));
    }
    let mut primary = [0u8; SUPERBLOCK_SIZE];
    primary.copy_from_slice(&img[1024..2048]);
    for g in geo.backup_groups() {
        let o = geo.superblock_offset(g) as usize;
        assert_eq!(
            &img[o..o + SUPERBLOCK_SIZE],
            &backup_superblock(&primary, g)[..],
            "backup superblock {g}"
        );
        let o = geo.gdt_block(g) as usize * bs;
        assert_eq!(
            &img[o..o + geo.gdt_bytes()],
            gt.bytes(),
            "backup descriptors {g}"
        );
    }
    Checked { sb, geo, gt }
}

fn all_specs() -> Vec<Spec> {
    let mut v = Vec::new();
    for csum in [Csum::None, Csum::Gdt, Csum::Meta, Csum::MetaSeed] {
        for wide in [false, true] {
            for fill in [false, true] {
                v.push(Spec {
                    csum,
                    wide,
                    fill_group0: fill,
                    ..Spec::default()
                });
            }
        }
    }
    v.push(Spec {
        bs: 4096,
        bpg: 1024,
        groups: 3,
        ..Spec::default()
    });
    v.push(Spec {
        groups: 1,
        last_short: 0,
        ..Spec::default()
    });
    v.push(Spec {
        sparse2: Some([1, 5]),
        ..Spec::default()
    });
    v.push(Spec {
        bs: 2048,
        bpg: 512,
        groups: 40,
        csum: Csum::Gdt,
        wide: false,
        ..Spec::default()
    });
    v
}

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

fn enabled(spec: Spec) -> Vec<u8> {
    let fs = fs_of(build(spec));
    enable(&fs, None, &env()).unwrap();
    fs.device().snapshot()
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

fn with_mmp_block(img: &[u8], f: impl FnOnce(&mut MmpBlock)) -> Vec<u8> {
    let mut img = img.to_vec();
    let sb = Superblock::parse(&img[1024..2048]).unwrap();
    let o = sb.mmp_offset() as usize;
    let mut blk = MmpBlock::decode(&img[o..o + 1024]).unwrap();
    f(&mut blk);
    img[o..o + 1024].copy_from_slice(&blk.encode(sb.mmp_csum_seed()));
    img
}

fn with_superblock(img: &[u8], f: impl FnOnce(&mut Superblock)) -> Vec<u8> {
    let mut img = img.to_vec();
    let mut sb = Superblock::parse(&img[1024..2048]).unwrap();
    f(&mut sb);
    img[1024..2048].copy_from_slice(&sb.encode());
    img
}

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

/// A device that fails every write after the first `ok` writes: a crash at that point.
struct Crashing {
    inner: MemDevice,
    ok: usize,
    writes: Cell<usize>,
}

impl BlockIo for Crashing {
    fn read_at(&self, offset: u64, buf: &mut [u8]) -> io::Result<()> {
        self.inner.read_at(offset, buf)
    }
    fn write_at(&self, offset: u64, buf: &[u8]) -> io::Result<()> {
        if self.writes.get() >= self.ok {
            return Err(io::Error::other("simulated crash"));
        }
        self.writes.set(self.writes.get() + 1);
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
        "mem.img"
    }
}

/// The safety invariant every crash point must keep: the superblock points at an MMP block only
/// if that block is allocated in its group's bitmap and holds a valid MMP structure, and every
/// descriptor still verifies. (Counts and bitmap checksums may lag: e2fsck -fy fixes those, as
/// the integration tests show with the real e2fsck.)
fn crash_safe(img: &[u8]) {
    let sb = Superblock::parse(&img[1024..2048]).expect("superblock");
    let geo = Geometry::from_superblock(&sb).unwrap();
    let bs = geo.block_size as usize;
    let off = geo.gdt_block(0) as usize * bs;
    let gt = GroupTable::from_bytes(&geo, img[off..off + geo.gdt_bytes()].to_vec())
        .expect("descriptors");
    if sb.has_mmp() {
        let g = geo.group_of(sb.s_mmp_block);
        let d = gt.desc(g);
        assert_eq!(d.bg_flags & EXT2_BG_BLOCK_UNINIT, 0);
        let o = d.bg_block_bitmap as usize * bs;
        assert!(test_bit(
            &img[o..o + bs],
            (sb.s_mmp_block - geo.group_first_block(g)) as usize
        ));
        let m = sb.mmp_offset() as usize;
        let blk = MmpBlock::parse(&img[m..m + 1024], sb.mmp_csum_seed()).expect("valid MMP block");
        assert_eq!(blk.mmp_magic, EXT4_MMP_MAGIC);
    }
}

#[test]
fn every_crash_point_is_safe() {
    for spec in [
        Spec {
            fill_group0: true,
            ..Spec::default()
        },
        Spec {
            csum: Csum::None,
            wide: false,
            ..Spec::default()
        },
    ] {
        let plain = build(spec);
        let on = enabled(spec);
        let full_enable = {
            let fs = fs_of(plain.clone());
            enable(&fs, None, &env()).unwrap().writes.len()
        };
        for ok in 0..full_enable {
            let fs = MmpFs::open(Crashing {
                inner: MemDevice::new("mem.img", plain.clone()),
                ok,
                writes: Cell::new(0),
            })
            .unwrap();
            let e = enable(&fs, None, &env()).unwrap_err();
            assert_eq!(e.reason(), "write_failed");
            if ok > 0 {
                assert!(e.to_string().contains("e2fsck -fy mem.img"), "{e}");
            }
            crash_safe(&fs.device().inner.snapshot());
        }
        for op in ["disable", "interval"] {
            for ok in 0..12 {
                let fs = MmpFs::open(Crashing {
                    inner: MemDevice::new("mem.img", on.clone()),
                    ok,
                    writes: Cell::new(0),
                })
                .unwrap();
                let clock = FakeClock::default();
                let r = if op == "disable" {
                    disable(
                        &fs,
                        &env(),
                        &clock,
                        Settle::For(CLAIM_SETTLE),
                        &mut no_progress(),
                    )
                } else {
                    set_interval(
                        &fs,
                        9,
                        &env(),
                        &clock,
                        Settle::For(CLAIM_SETTLE),
                        &mut no_progress(),
                    )
                };
                let img = fs.device().inner.snapshot();
                crash_safe(&img);
                if r.is_ok() {
                    check_consistent(&img);
                }
            }
        }
    }
}

/// A device whose MMP block another "node" starts rewriting at a given time.
struct Racing<'a> {
    inner: MemDevice,
    clock: &'a FakeClock,
    from: Duration,
    mmp_offset: u64,
    seed: Option<u32>,
}

impl BlockIo for Racing<'_> {
    fn read_at(&self, offset: u64, buf: &mut [u8]) -> io::Result<()> {
        let t = self.clock.now();
        if t >= self.from {
            let b = MmpBlock::new(1 + t.as_millis() as u32 / 500, 0, "node-b", "sdb", 10);
            self.inner.write_at(self.mmp_offset, &b.encode(self.seed))?;
        }
        self.inner.read_at(offset, buf)
    }
    fn write_at(&self, offset: u64, buf: &[u8]) -> io::Result<()> {
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
        "mem.img"
    }
}

#[test]
fn a_node_that_starts_during_the_claim_stops_the_edit() {
    let on = enabled(Spec::default());
    let sb = Superblock::parse(&on[1024..2048]).unwrap();
    for op in ["disable", "interval"] {
        let clock = FakeClock::default();
        let fs = MmpFs::open(Racing {
            inner: MemDevice::new("mem.img", on.clone()),
            clock: &clock,
            from: Duration::from_millis(700),
            mmp_offset: sb.mmp_offset(),
            seed: sb.mmp_csum_seed(),
        })
        .unwrap();
        let r = if op == "disable" {
            disable(
                &fs,
                &env(),
                &clock,
                Settle::For(CLAIM_SETTLE),
                &mut no_progress(),
            )
        } else {
            set_interval(
                &fs,
                9,
                &env(),
                &clock,
                Settle::For(CLAIM_SETTLE),
                &mut no_progress(),
            )
        };
        let e = r.unwrap_err();
        assert_eq!(e.reason(), "mmp_changed", "{op}: {e}");
        assert!(e.is_in_use());
        assert!(e.to_string().contains("node-b"), "{e}");
        assert!(
            e.to_string().contains("only the MMP block was written"),
            "{e}"
        );
        // Nothing but the MMP block differs from before.
        let img = fs.device().inner.snapshot();
        let m = sb.mmp_offset() as usize;
        assert_eq!(img[..m], on[..m]);
        assert_eq!(img[m + 1024..], on[m + 1024..]);
        assert!(
            clock.now() < Duration::from_millis(900),
            "seen at the first read after it started"
        );
    }
}

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
    let fs = MmpFs::open(Racing {
        inner: MemDevice::new("mem.img", stuck),
        clock: &clock,
        from: Duration::from_secs(3),
        mmp_offset: sb.mmp_offset(),
        seed: sb.mmp_csum_seed(),
    })
    .unwrap();
    let e = clear(&fs, &env(), &clock, false, &mut no_progress()).unwrap_err();
    assert_eq!(e.reason(), "mmp_changed");
    assert!(e.to_string().contains("nothing was written"), "{e}");
    assert!(clock.now() < Duration::from_millis(3200));
}

/// A 4 KiB-sector device that rejects unaligned writes, like O_DIRECT.
struct BigSectors(MemDevice);

impl BlockIo for BigSectors {
    fn read_at(&self, offset: u64, buf: &mut [u8]) -> io::Result<()> {
        self.0.read_at(offset, buf)
    }
    fn write_at(&self, offset: u64, buf: &[u8]) -> io::Result<()> {
        if offset % 4096 != 0 || buf.len() % 4096 != 0 {
            return Err(io::Error::new(io::ErrorKind::InvalidInput, "unaligned"));
        }
        self.0.write_at(offset, buf)
    }
    fn sync(&self) -> io::Result<()> {
        Ok(())
    }
    fn size(&self) -> u64 {
        self.0.size()
    }
    fn logical_block_size(&self) -> u32 {
        4096
    }
    fn name(&self) -> &str {
        "mem.img"
    }
}

#[test]
fn enable_refuses_blocks_smaller_than_the_sectors() {
    let plain = build(Spec::default()); // 1 KiB blocks
    let fs = MmpFs::open(BigSectors(MemDevice::new("mem.img", plain.clone()))).unwrap();
    let e = enable(&fs, None, &env()).unwrap_err();
    assert_eq!(e.reason(), "block_smaller_than_sector", "{e}");
    assert!(e.to_string().contains("4096-byte logical sectors"), "{e}");
    assert_eq!(fs.device().0.snapshot(), plain);
}

#[test]
fn unaligned_structures_on_big_sectors_are_read_modify_written() {
    let spec = Spec {
        bs: 4096,
        bpg: 1024,
        groups: 5,
        last_short: 0,
        ..Spec::default()
    };
    let plain = build(spec);
    let fs = MmpFs::open(BigSectors(MemDevice::new("mem.img", plain.clone()))).unwrap();
    enable(&fs, None, &env()).unwrap();
    let a = fs.device().0.snapshot();
    let fs2 = fs_of(plain);
    enable(&fs2, None, &env()).unwrap();
    assert_eq!(
        a,
        fs2.device().snapshot(),
        "same result as with 512-byte sectors"
    );
    check_consistent(&a);
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
