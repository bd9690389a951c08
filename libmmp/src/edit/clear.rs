//! `clear`: watch a stuck MMP block for the kernel's full wait, then reset it to CLEAN.

use super::claim::verify_block;
use super::preflight::{locate_mmp_block, mmp_required, read_mmp_bytes, state_of};
use super::writer::Writer;
use super::{
    check_interval_for, report, EditEnv, EditError, EditReport, MAX_UPDATE_INTERVAL, POLL,
};
use crate::error::Error;
use crate::fs::MmpFs;
use crate::io::BlockIo;
use crate::ondisk::mmp::{MmpBlock, EXT4_MMP_SEQ_CLEAN, MMP_STRUCT_SIZE};
use crate::protocol::check::{check_interval, wait_time, Progress};
use crate::protocol::clock::Clock;
use std::time::Duration;

/// Reset a stuck MMP block (FSCK left by a killed fsck, an unknown sequence, garbage) to CLEAN,
/// like `tune2fs -f -E clear_mmp`, but first watch it for the kernel's full wait (based on the
/// superblock interval, and the block's check interval when the block is valid) and refuse if
/// it changes. `force` skips the watch. Only the MMP block is written, so features, the journal
/// state and the rest of the metadata do not matter (a killed e2fsck can leave both FSCK and
/// needs_recovery; this must work then). A valid CLEAN block is left alone.
pub fn clear<D: BlockIo>(
    fs: &MmpFs<D>,
    env: &EditEnv,
    clock: &dyn Clock,
    force: bool,
    progress: Progress<'_>,
) -> Result<EditReport, EditError> {
    mmp_required(fs, "clear its MMP block")?;
    let block = locate_mmp_block(fs, "clear its MMP block")?;
    let sb = fs.superblock();
    let seed = sb.mmp_csum_seed();
    let raw = read_mmp_bytes(fs)?;
    let blk = MmpBlock::decode(&raw).map_err(|source| Error::Mmp {
        device: fs.device_name().to_string(),
        block,
        source,
    })?;
    let state = state_of(&blk, seed);
    let mut rep = report(fs, "clear");
    rep.previous_state = Some(state);
    if state == "clean" {
        return Ok(rep);
    }
    let mut w = Writer::new(fs.device());
    if !force {
        // Trust the block's check interval only if the block is valid and it is sane; a
        // garbage block must not make us wait for hours. The superblock's interval is clamped
        // likewise.
        let sb_interval = sb.s_mmp_update_interval.min(MAX_UPDATE_INTERVAL);
        let block_ci = if blk.verify(seed).is_ok() && blk.mmp_check_interval <= MAX_UPDATE_INTERVAL
        {
            blk.mmp_check_interval
        } else {
            0
        };
        let wait = wait_time(check_interval(sb_interval, block_ci));
        rep.watched_seconds = watch_unchanged(fs, &w, &raw, wait, clock, progress)?.as_secs_f64();
    }
    verify_block(fs, &raw, &w, "just before writing")?;
    let ci = check_interval_for(sb.s_mmp_update_interval);
    let mmp = env.block(EXT4_MMP_SEQ_CLEAN, ci);
    let mut buf = vec![0u8; sb.block_size() as usize];
    buf[..MMP_STRUCT_SIZE].copy_from_slice(&mmp.encode(seed));
    w.write(format!("MMP block {block} (CLEAN)"), sb.mmp_offset(), &buf)?;
    w.sync()?;
    rep.changed = true;
    rep.check_interval = Some(ci);
    rep.writes = w.done;
    Ok(rep)
}

/// Re-read the MMP block every [`POLL`] for `wait`; any change at all means whoever wrote the
/// block is alive. Returns how long it was watched.
fn watch_unchanged<D: BlockIo>(
    fs: &MmpFs<D>,
    w: &Writer<'_, D>,
    raw: &[u8; MMP_STRUCT_SIZE],
    wait: Duration,
    clock: &dyn Clock,
    progress: Progress<'_>,
) -> Result<Duration, EditError> {
    let start = clock.now();
    loop {
        let elapsed = clock.now().saturating_sub(start);
        progress(elapsed.min(wait), wait);
        if elapsed >= wait {
            return Ok(elapsed);
        }
        clock.sleep(POLL.min(wait - elapsed));
        verify_block(
            fs,
            raw,
            w,
            &format!(
                "{:.1} s into the watch",
                clock.now().saturating_sub(start).as_secs_f64()
            ),
        )?;
    }
}
