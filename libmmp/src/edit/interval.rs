//! `interval`: claim the CLEAN block, then superblock, backups, and a CLEAN block with the new
//! check interval, in that order.

use super::claim::{claim, verify_block};
use super::preflight::{mmp_required, preflight, read_clean};
use super::writer::{write_backups, Writer};
use super::{
    check_interval_for, report, validate_interval, EditEnv, EditError, EditReport, Settle,
};
use crate::fs::MmpFs;
use crate::io::BlockIo;
use crate::ondisk::mmp::EXT4_MMP_SEQ_CLEAN;
use crate::protocol::check::Progress;
use crate::protocol::clock::Clock;

/// Set `s_mmp_update_interval` and the block's check interval (`max(interval, 5)`).
pub fn set_interval<D: BlockIo>(
    fs: &MmpFs<D>,
    interval: u16,
    env: &EditEnv,
    clock: &dyn Clock,
    settle: Settle,
    progress: Progress<'_>,
) -> Result<EditReport, EditError> {
    validate_interval(fs.device_name(), interval)?;
    let geo = preflight(fs)?;
    mmp_required(fs, "set its interval")?;
    let sb = fs.superblock();
    let clean = read_clean(fs, "change its interval")?;
    let mut rep = report(fs, "interval");
    rep.previous_state = Some("clean");
    let ci = check_interval_for(interval);
    rep.check_interval = Some(ci);
    if sb.s_mmp_update_interval == interval && clean.mmp_check_interval == ci {
        return Ok(rep);
    }
    let mut w = Writer::new(fs.device());
    let (claim_raw, watched) = claim(fs, &mut w, env, clock, settle, &clean, progress)?;
    rep.watched_seconds = watched.as_secs_f64();
    verify_block(fs, &claim_raw, &w, "before writing the superblock")?;

    let mut new_sb = sb.clone();
    new_sb.s_mmp_update_interval = interval;
    let primary = new_sb.encode();
    w.write_primary_superblock(&primary)?;
    rep.backup_groups = write_backups(&mut w, &geo, &primary, None)?;

    // Release the claim with the new check interval.
    verify_block(fs, &claim_raw, &w, "before releasing the claim")?;
    let mmp = env.block(EXT4_MMP_SEQ_CLEAN, ci);
    w.write(
        format!("MMP block {} (CLEAN)", sb.s_mmp_block),
        sb.mmp_offset(),
        &mmp.encode(sb.mmp_csum_seed()),
    )?;
    w.sync()?;
    rep.changed = true;
    rep.update_interval = interval;
    rep.writes = w.done;
    Ok(rep)
}
