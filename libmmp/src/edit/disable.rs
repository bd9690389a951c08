//! `disable`: claim the CLEAN block, then superblock, zeroed old block, bitmap, descriptor,
//! backups, in that order.

use super::claim::{claim, verify_block};
use super::preflight::{
    check_free_count, inconsistent, load_bitmap, load_gdt, preflight, read_clean,
};
use super::writer::{write_backups, write_group_desc, Writer};
use super::{report, EditEnv, EditError, EditReport, Settle};
use crate::fs::MmpFs;
use crate::io::BlockIo;
use crate::ondisk::bitmap::{clear_bit, test_bit};
use crate::ondisk::geometry::Geometry;
use crate::ondisk::group_desc::{GroupDesc, GroupTable, EXT2_BG_BLOCK_UNINIT};
use crate::ondisk::superblock::feature;
use crate::protocol::check::Progress;
use crate::protocol::clock::Clock;

/// Disable MMP: claim the CLEAN block, drop the feature from the superblock, zero the old block,
/// free it in the bitmap and descriptor, rewrite the backups. A filesystem without MMP is left
/// alone (`changed: false`).
pub fn disable<D: BlockIo>(
    fs: &MmpFs<D>,
    env: &EditEnv,
    clock: &dyn Clock,
    settle: Settle,
    progress: Progress<'_>,
) -> Result<EditReport, EditError> {
    let sb = fs.superblock();
    let mut rep = report(fs, "disable");
    if !sb.has_mmp() {
        return Ok(rep);
    }
    let geo = preflight(fs)?;
    let clean = read_clean(fs, "disable it")?;
    rep.previous_state = Some("clean");
    let mut gt = load_gdt(fs, &geo)?;
    let owner = owner_of_mmp_block(fs, &geo, &gt)?;
    let mut w = Writer::new(fs.device());

    let (claim_raw, watched) = claim(fs, &mut w, env, clock, settle, &clean, progress)?;
    rep.watched_seconds = watched.as_secs_f64();
    verify_block(fs, &claim_raw, &w, "before writing the superblock")?;
    rep.backup_groups = write_disable(fs, &mut w, &geo, &mut gt, owner)?;
    rep.changed = true;
    rep.mmp_enabled = false;
    rep.update_interval = 0;
    rep.group = Some(geo.group_of(sb.s_mmp_block));
    rep.free_blocks_after = sb.free_blocks_count + 1;
    rep.writes = w.done;
    Ok(rep)
}

/// The group that holds the MMP block, its descriptor and bitmap, checked: the block is
/// allocated there and the counts agree, so freeing it leaves a consistent filesystem.
struct Owner {
    group: u32,
    bit: usize,
    desc: GroupDesc,
    bitmap: Vec<u8>,
}

fn owner_of_mmp_block<D: BlockIo>(
    fs: &MmpFs<D>,
    geo: &Geometry,
    gt: &GroupTable,
) -> Result<Owner, EditError> {
    let block = fs.superblock().s_mmp_block;
    let g = geo.group_of(block);
    let bit = (block - geo.group_first_block(g)) as usize;
    let d = gt.desc(g);
    if geo.desc_csum.enabled() && d.bg_flags & EXT2_BG_BLOCK_UNINIT != 0 {
        return Err(inconsistent(
            fs,
            format!("the MMP block {block} lies in group {g}, which is marked BLOCK_UNINIT"),
        ));
    }
    let (bm, _) = load_bitmap(fs, geo, gt, g)?;
    if !test_bit(&bm, bit) {
        return Err(inconsistent(
            fs,
            format!("the MMP block {block} is marked free in the block bitmap"),
        ));
    }
    check_free_count(fs, geo, gt, g, &bm)?;
    if d.bg_free_blocks_count >= d.max_free_blocks() {
        return Err(inconsistent(
            fs,
            format!("group {g}'s free block count is at its maximum"),
        ));
    }
    Ok(Owner {
        group: g,
        bit,
        desc: d,
        bitmap: bm,
    })
}

/// The writes of `disable` after the claim, in crash order; returns the backup groups.
fn write_disable<D: BlockIo>(
    fs: &MmpFs<D>,
    w: &mut Writer<'_, D>,
    geo: &Geometry,
    gt: &mut GroupTable,
    owner: Owner,
) -> Result<Vec<u32>, EditError> {
    let sb = fs.superblock();
    let block = sb.s_mmp_block;
    let bs = u64::from(geo.block_size);
    let Owner {
        group: g,
        bit,
        desc: mut d,
        bitmap: mut bm,
    } = owner;

    // 1. Superblock first: once it no longer points at the block, a crash can only leak it.
    let mut new_sb = sb.clone();
    new_sb.free_blocks_count += 1;
    new_sb.s_feature_incompat &= !feature::INCOMPAT_MMP;
    new_sb.s_mmp_block = 0;
    new_sb.s_mmp_update_interval = 0;
    let primary = new_sb.encode();
    w.write_primary_superblock(&primary)?;

    // 2. Zero the old block while it is still allocated (nobody can have been given it yet):
    //    no stale MMP structure is left behind, and unlike tune2fs no FSCK sequence.
    w.write(
        format!("old MMP block {block} (zeroed)"),
        block * bs,
        &vec![0u8; geo.block_size as usize],
    )?;
    w.sync()?;

    // 3. + 4. Free it: bitmap, then descriptor.
    clear_bit(&mut bm, bit);
    w.write(
        format!("block bitmap of group {g}"),
        d.bg_block_bitmap * bs,
        &bm,
    )?;
    w.sync()?;
    d.bg_free_blocks_count += 1;
    write_group_desc(w, geo, gt, g, d, &bm)?;

    // 5. Backups.
    write_backups(w, geo, &primary, Some(gt))
}
