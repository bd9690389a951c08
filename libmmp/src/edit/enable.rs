//! `enable`: allocate the MMP block as `ext2fs_mmp_init` does and write it, the bitmap, the
//! descriptor, the superblock and the backups, in that order.

use super::preflight::{
    check_free_count, inconsistent, load_bitmap, load_gdt, preflight, read_clean,
};
use super::writer::{write_backups, write_group_desc, Writer};
use super::{
    check_interval_for, report, validate_interval, EditEnv, EditError, EditReport,
    MAX_UPDATE_INTERVAL,
};
use crate::fs::MmpFs;
use crate::io::BlockIo;
use crate::ondisk::bitmap::{first_zero, set_bit};
use crate::ondisk::geometry::Geometry;
use crate::ondisk::group_desc::{GroupTable, EXT2_BG_BLOCK_UNINIT};
use crate::ondisk::mmp::{EXT4_MMP_SEQ_CLEAN, EXT4_MMP_UPDATE_INTERVAL, MMP_STRUCT_SIZE};
use crate::ondisk::superblock::feature;

/// Enable MMP: allocate the block, write a CLEAN MMP block, update bitmap, descriptor,
/// superblock and backups (see the module comment for the order). `interval` is the update
/// interval; without it, the one already in the superblock is kept, or 5 s if there is none
/// (as `tune2fs -O mmp`). An already enabled, CLEAN filesystem with the same (or no requested)
/// interval is left alone (`changed: false`).
pub fn enable<D: BlockIo>(
    fs: &MmpFs<D>,
    interval: Option<u16>,
    env: &EditEnv,
) -> Result<EditReport, EditError> {
    let device = fs.device_name().to_string();
    if let Some(i) = interval {
        validate_interval(&device, i)?;
    }
    let geo = preflight(fs)?;
    let sb = fs.superblock();
    let mut rep = report(fs, "enable");
    if sb.has_mmp() {
        read_clean(fs, "enable it")?;
        rep.previous_state = Some("clean");
        return match interval {
            Some(i) if i != sb.s_mmp_update_interval => Err(EditError::AlreadyEnabled {
                device,
                current: sb.s_mmp_update_interval,
                requested: i,
            }),
            _ => Ok(rep),
        };
    }
    let sector = fs.device().logical_block_size();
    if sector > geo.block_size {
        // e2fsprogs reads the MMP block with O_DIRECT, one block long: a short read on such a
        // device ("fix mmp tests on hard 4k devices"), so e2fsck would refuse to run at all.
        return Err(EditError::BlockSmallerThanSector {
            device,
            block_size: geo.block_size,
            sector,
        });
    }
    let interval = match interval {
        Some(i) => i,
        None => interval_to_keep(fs)?,
    };
    let mut gt = load_gdt(fs, &geo)?;
    let alloc = allocate(fs, &geo, &gt)?;
    let ci = check_interval_for(interval);
    let w = write_enable(fs, &geo, &mut gt, &alloc, interval, env, &mut rep)?;
    rep.changed = true;
    rep.mmp_enabled = true;
    rep.mmp_block = alloc.block;
    rep.update_interval = interval;
    rep.check_interval = Some(ci);
    rep.group = Some(alloc.group);
    rep.group_was_block_uninit = alloc.uninit;
    rep.free_blocks_after = sb.free_blocks_count - 1;
    rep.writes = w;
    Ok(rep)
}

/// The update interval `enable` writes when none is given: the one already in the superblock,
/// as `tune2fs -O mmp` keeps it. tune2fs (misc/tune2fs.c, `update_feature_set`) calls
/// `ext2fs_mmp_init` (lib/ext2fs/mmp.c) without touching `s_mmp_update_interval`, and that
/// replaces only 0 with `EXT4_MMP_UPDATE_INTERVAL` and refuses a value above
/// `EXT4_MMP_MAX_UPDATE_INTERVAL` (`EXT2_ET_INVALID_ARGUMENT`). So an interval set with
/// `tune2fs -E mmp_update_interval=N` while MMP was off survives the enable.
fn interval_to_keep<D: BlockIo>(fs: &MmpFs<D>) -> Result<u16, EditError> {
    match fs.superblock().s_mmp_update_interval {
        0 => Ok(EXT4_MMP_UPDATE_INTERVAL),
        i if i > MAX_UPDATE_INTERVAL => Err(EditError::StoredIntervalOutOfRange {
            device: fs.device_name().to_string(),
            interval: i,
        }),
        i => Ok(i),
    }
}

/// The block `enable` takes, and the bitmap of its group as read (or built).
struct Allocation {
    block: u64,
    group: u32,
    bit: usize,
    bitmap: Vec<u8>,
    /// The group was `BLOCK_UNINIT`: its bitmap was built, not read.
    uninit: bool,
}

/// `ext2fs_new_block3` with goal 0: the first zero bit from `s_first_data_block`; then the
/// checks that the counts agree with the bitmap found.
fn allocate<D: BlockIo>(
    fs: &MmpFs<D>,
    geo: &Geometry,
    gt: &GroupTable,
) -> Result<Allocation, EditError> {
    let mut found = None;
    for g in 0..geo.group_count {
        let d = gt.desc(g);
        if geo.desc_csum.enabled()
            && d.bg_flags & EXT2_BG_BLOCK_UNINIT != 0
            && d.bg_free_blocks_count == 0
        {
            // All metadata: nothing to find, and building its bitmap (which looks at every
            // group's descriptor) for each such group would make a full scan quadratic.
            continue;
        }
        let (bm, uninit) = load_bitmap(fs, geo, gt, g)?;
        if let Some(bit) = first_zero(&bm, geo.group_blocks(g) as usize) {
            found = Some((g, bit, bm, uninit));
            break;
        }
    }
    let (group, bit, bitmap, uninit) = found.ok_or_else(|| EditError::NoSpace {
        device: fs.device_name().to_string(),
    })?;
    let block = geo.group_first_block(group) + bit as u64;
    if block <= geo.first_data_block + geo.desc_blocks {
        return Err(inconsistent(fs, format!("the block bitmap of group 0 marks block {block} (superblock or descriptor table) free")));
    }
    check_free_count(fs, geo, gt, group, &bitmap)?;
    if fs.superblock().free_blocks_count == 0 {
        return Err(inconsistent(
            fs,
            "the superblock counts no free blocks, the bitmaps do".to_string(),
        ));
    }
    Ok(Allocation {
        block,
        group,
        bit,
        bitmap,
        uninit,
    })
}

/// The writes of `enable`, in crash order; returns what was written and fills in the report's
/// backup groups.
fn write_enable<D: BlockIo>(
    fs: &MmpFs<D>,
    geo: &Geometry,
    gt: &mut GroupTable,
    alloc: &Allocation,
    interval: u16,
    env: &EditEnv,
    rep: &mut EditReport,
) -> Result<Vec<super::WriteRecord>, EditError> {
    let sb = fs.superblock();
    let (block, g) = (alloc.block, alloc.group);
    let bs = u64::from(geo.block_size);
    let mut w = Writer::new(fs.device());

    // 1. The MMP block: a free block, so writing it first cannot hurt. Zero-filled as
    //    ext2fs_alloc_block does, with the CLEAN struct of ext2fs_mmp_reset.
    let mmp = env.block(EXT4_MMP_SEQ_CLEAN, check_interval_for(interval));
    let mut buf = vec![0u8; geo.block_size as usize];
    buf[..MMP_STRUCT_SIZE].copy_from_slice(&mmp.encode(sb.mmp_csum_seed()));
    w.write(format!("MMP block {block}"), block * bs, &buf)?;
    w.sync()?;

    // 2. The bitmap, before the descriptor that may declare it initialised.
    let mut d = gt.desc(g);
    let mut bm = alloc.bitmap.clone();
    set_bit(&mut bm, alloc.bit);
    w.write(
        format!("block bitmap of group {g}"),
        d.bg_block_bitmap * bs,
        &bm,
    )?;
    w.sync()?;

    // 3. The descriptor (ext2fs_block_alloc_stats2): free count, BLOCK_UNINIT, checksums.
    d.bg_free_blocks_count -= 1;
    d.bg_flags &= !EXT2_BG_BLOCK_UNINIT;
    write_group_desc(&mut w, geo, gt, g, d, &bm)?;

    // 4. The superblock: from here on the filesystem has MMP.
    let mut new_sb = sb.clone();
    new_sb.free_blocks_count -= 1;
    new_sb.s_feature_incompat |= feature::INCOMPAT_MMP;
    new_sb.s_mmp_block = block;
    new_sb.s_mmp_update_interval = interval;
    let primary = new_sb.encode();
    w.write_primary_superblock(&primary)?;

    // 5. Backups, as ext2fs_flush rewrites them.
    rep.backup_groups = write_backups(&mut w, geo, &primary, Some(gt))?;
    Ok(w.done)
}
