//! In-memory tests of the edits, on small filesystems built here block by block. The real
//! proof is the integration matrix against mke2fs/e2fsck/tune2fs/the kernel (mmp-tool/tests);
//! these cover the logic, the refusals and every crash point without a device.

use super::*;
use crate::fs::MmpFs;
use crate::io::BlockIo;
use crate::io::MemDevice;
use crate::ondisk::bitmap::{count_zeros, set_bit, test_bit};
use crate::ondisk::geometry::Geometry;
use crate::ondisk::group_desc::{DescCsum, GroupDesc};
use crate::ondisk::group_desc::{GroupTable, EXT2_BG_BLOCK_UNINIT};
use crate::ondisk::mmp::MmpBlock;
use crate::ondisk::mmp::{EXT4_MMP_MAGIC, EXT4_MMP_SEQ_FSCK};
use crate::ondisk::mmp::{EXT4_MMP_SEQ_CLEAN, MMP_STRUCT_SIZE};
use crate::ondisk::superblock::backup_superblock;
use crate::ondisk::superblock::superblock_state;
use crate::ondisk::superblock::{feature, SUPERBLOCK_SIZE};
use crate::ondisk::superblock::{superblock_csum, Superblock};
use crate::protocol::clock::Clock;
use crate::testing::ScriptedDevice;
use std::cell::Cell;
use std::io;
use std::time::Duration;

// Superblock offsets the builder writes.
mod clear;
mod crash;
mod edits;
mod refusals;

const S_INODES_COUNT: usize = 0x000;
const S_BLOCKS_COUNT_LO: usize = 0x004;
const S_FREE_BLOCKS_COUNT_LO: usize = 0x00C;
const S_FREE_INODES_COUNT: usize = 0x010;
const S_FIRST_DATA_BLOCK: usize = 0x014;
const S_LOG_BLOCK_SIZE: usize = 0x018;
const S_LOG_CLUSTER_SIZE: usize = 0x01C;
const S_BLOCKS_PER_GROUP: usize = 0x020;
const S_INODES_PER_GROUP: usize = 0x028;
const S_MAGIC: usize = 0x038;
const S_STATE: usize = 0x03A;
const S_REV_LEVEL: usize = 0x04C;
const S_INODE_SIZE: usize = 0x058;
const S_FEATURE_COMPAT: usize = 0x05C;
const S_FEATURE_INCOMPAT: usize = 0x060;
const S_FEATURE_RO_COMPAT: usize = 0x064;
const S_UUID: usize = 0x068;
const S_RESERVED_GDT_BLOCKS: usize = 0x0CE;
const S_DESC_SIZE: usize = 0x0FE;
const S_BACKUP_BGS: usize = 0x24C;
const S_CHECKSUM_TYPE: usize = 0x175;
const S_CHECKSUM_SEED: usize = 0x270;
const S_CHECKSUM: usize = 0x3FC;

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

fn put16(b: &mut [u8], off: usize, v: u16) {
    b[off..off + 2].copy_from_slice(&v.to_le_bytes());
}
fn put32(b: &mut [u8], off: usize, v: u32) {
    b[off..off + 4].copy_from_slice(&v.to_le_bytes());
}

fn reseal(sb: &mut [u8]) {
    if u32::from_le_bytes(
        sb[S_FEATURE_RO_COMPAT..S_FEATURE_RO_COMPAT + 4]
            .try_into()
            .unwrap(),
    ) & feature::RO_COMPAT_METADATA_CSUM
        != 0
    {
        let c = superblock_csum(sb);
        put32(sb, S_CHECKSUM, c);
    }
}

/// Build a consistent filesystem image (metadata only) in memory.
fn build(spec: Spec) -> Vec<u8> {
    let bs = spec.bs as usize;
    let fdb = u32::from(spec.bs == 1024);
    let blocks =
        u64::from(fdb) + u64::from(spec.bpg) * u64::from(spec.groups) - u64::from(spec.last_short);
    let mut img = vec![0u8; blocks as usize * bs];
    let mut sb = spec_superblock(spec, blocks, fdb);
    let parsed = Superblock::parse(&sb).unwrap();
    let geo = Geometry::from_superblock(&parsed).unwrap();
    let mut gdt = vec![0u8; geo.gdt_bytes()];
    let mut total_free = 0u64;
    for g in 0..geo.group_count {
        let (enc, free) = build_group(&mut img, &geo, spec, g);
        total_free += u64::from(free);
        gdt[g as usize * geo.desc_size..(g as usize + 1) * geo.desc_size].copy_from_slice(&enc);
    }
    put32(&mut sb, S_FREE_BLOCKS_COUNT_LO, total_free as u32);
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

/// The primary superblock of `spec`, free block count still 0.
fn spec_superblock(spec: Spec, blocks: u64, fdb: u32) -> [u8; SUPERBLOCK_SIZE] {
    let mut sb = [0u8; SUPERBLOCK_SIZE];
    put32(&mut sb, S_INODES_COUNT, IPG * spec.groups);
    put32(&mut sb, S_BLOCKS_COUNT_LO, blocks as u32);
    put32(&mut sb, S_FREE_INODES_COUNT, IPG * spec.groups);
    put32(&mut sb, S_FIRST_DATA_BLOCK, fdb);
    let log = spec.bs.trailing_zeros() - 10;
    put32(&mut sb, S_LOG_BLOCK_SIZE, log);
    put32(&mut sb, S_LOG_CLUSTER_SIZE, log);
    put32(&mut sb, S_BLOCKS_PER_GROUP, spec.bpg);
    put32(&mut sb, S_INODES_PER_GROUP, IPG);
    put16(&mut sb, S_MAGIC, 0xEF53);
    put16(&mut sb, S_STATE, 1);
    put32(&mut sb, S_REV_LEVEL, 1);
    put16(&mut sb, S_INODE_SIZE, 128);
    for (i, b) in sb[S_UUID..S_UUID + 16].iter_mut().enumerate() {
        *b = 0xA0 + i as u8;
    }
    put16(&mut sb, S_RESERVED_GDT_BLOCKS, RESERVED_GDT as u16);
    let mut incompat = 0x0002 | 0x0040; // filetype, extents
    let mut ro = 0x0001 | 0x0002; // sparse_super, large_file
    if spec.wide {
        incompat |= feature::INCOMPAT_64BIT;
        put16(&mut sb, S_DESC_SIZE, 64);
    }
    match spec.csum {
        Csum::None => {}
        Csum::Gdt => ro |= feature::RO_COMPAT_GDT_CSUM,
        Csum::Meta | Csum::MetaSeed => {
            ro |= feature::RO_COMPAT_METADATA_CSUM;
            sb[S_CHECKSUM_TYPE] = 1;
        }
    }
    if spec.csum == Csum::MetaSeed {
        incompat |= feature::INCOMPAT_CSUM_SEED;
        put32(&mut sb, S_CHECKSUM_SEED, 0x1234_5678);
    }
    if let Some(bgs) = spec.sparse2 {
        put32(&mut sb, S_FEATURE_COMPAT, feature::COMPAT_SPARSE_SUPER2);
        put32(&mut sb, S_BACKUP_BGS, bgs[0]);
        put32(&mut sb, S_BACKUP_BGS + 4, bgs[1]);
    }
    put32(&mut sb, S_FEATURE_INCOMPAT, incompat);
    put32(&mut sb, S_FEATURE_RO_COMPAT, ro);
    reseal(&mut sb);
    sb
}

/// Lay out group `g` (its bitmap written into `img`): returns its encoded descriptor and its
/// free block count.
fn build_group(img: &mut [u8], geo: &Geometry, spec: Spec, g: u32) -> (Vec<u8>, u32) {
    let bs = spec.bs as usize;
    let ibpg = u64::from(geo.inode_blocks_per_group);
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
    (d.encode(g, geo.desc_csum), free)
}

fn env() -> EditEnv {
    EditEnv {
        nodename: "node-a".into(),
        bdevname: "mem.img".into(),
        wall_time: 1_800_000_000,
        claim_seq: 0x1234_5678,
    }
}

use crate::testing::FakeClock;

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

fn enabled(spec: Spec) -> Vec<u8> {
    let fs = fs_of(build(spec));
    enable(&fs, None, &env()).unwrap();
    fs.device().snapshot()
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

/// A device whose MMP block another "node" (node-b) starts rewriting at `from`: from then on,
/// every read of the MMP block finds a newer sequence.
fn racing<'a>(
    data: Vec<u8>,
    sb: &Superblock,
    clock: &'a FakeClock,
    from: Duration,
) -> ScriptedDevice<'a> {
    ScriptedDevice::new(
        MemDevice::new("mem.img", data),
        sb.mmp_offset(),
        sb.mmp_csum_seed(),
        clock,
        move |t| {
            (t >= from)
                .then(|| MmpBlock::new(1 + t.as_millis() as u32 / 500, 0, "node-b", "sdb", 10))
        },
    )
}
