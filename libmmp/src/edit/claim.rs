//! The claim of `disable` and `interval`: the CLEAN block replaced by a live sequence and
//! watched, then re-read before every later write (see the module comment).

use super::preflight::{read_mmp_bytes, who};
use super::writer::Writer;
use super::{EditEnv, EditError, Settle, POLL};
use crate::fs::MmpFs;
use crate::io::BlockIo;
use crate::ondisk::mmp::{MmpBlock, MMP_STRUCT_SIZE};
use crate::protocol::check::{self, CheckOptions, Progress, Verdict};
use crate::protocol::clock::Clock;
use std::time::Duration;

/// Replace the CLEAN block `clean` (as read) with a live claim and watch it; returns the claim's
/// bytes and how long it was watched.
pub(super) fn claim<D: BlockIo>(
    fs: &MmpFs<D>,
    w: &mut Writer<'_, D>,
    env: &EditEnv,
    clock: &dyn Clock,
    settle: Settle,
    clean: &MmpBlock,
    progress: Progress<'_>,
) -> Result<([u8; MMP_STRUCT_SIZE], Duration), EditError> {
    let sb = fs.superblock();
    let block = sb.s_mmp_block;
    let claim = env.block(env.claim_seq, clean.mmp_check_interval);
    let enc = claim.encode(sb.mmp_csum_seed());
    verify_block(fs, &clean.encode_raw(), w, "before claiming it")?;
    w.write(
        format!(
            "MMP block {block} (claim, sequence {:#010x})",
            env.claim_seq
        ),
        sb.mmp_offset(),
        &enc,
    )?;
    w.sync()?;
    let opts = CheckOptions {
        poll: POLL,
        timeout: match settle {
            Settle::For(d) => Some(d),
            Settle::Full => None,
        },
        // The block watched is our own untagged claim.
        honor_fence_tag: false,
    };
    // check() watches a live sequence and reports any change at once.
    // check() reports progress against the kernel's full wait; with a shorter settle, report
    // against the settle time so that a countdown ends at zero.
    let mut shown = |elapsed: Duration, wait: Duration| {
        let total = opts.timeout.map_or(wait, |t| t.min(wait));
        progress(elapsed.min(total), total)
    };
    let r = check::check(fs, clock, opts, &mut shown)?;
    let ours = r.first.encode_raw() == enc;
    match r.verdict {
        Verdict::Undecided | Verdict::Safe(_) if ours => Ok((enc, r.elapsed)),
        Verdict::InUse { block: now } => Err(changed(fs, w, format!("now {}", who(&now)))),
        _ => Err(changed(fs, w, format!("now {}", who(&r.first)))),
    }
}

pub(super) fn changed<D: BlockIo>(fs: &MmpFs<D>, w: &Writer<'_, D>, detail: String) -> EditError {
    let device = fs.device_name().to_string();
    let only_mmp = w.done.iter().all(|r| r.what.starts_with("MMP block"));
    EditError::Changed {
        block: fs.superblock().s_mmp_block,
        detail,
        written: if w.done.is_empty() {
            "nothing was written".to_string()
        } else if only_mmp {
            "only the MMP block was written, which its user keeps rewriting".to_string()
        } else {
            format!("stopped after writing {}", w.done.iter().map(|r| r.what.as_str()).collect::<Vec<_>>().join(", "))
        },
        next: format!("find the node that uses '{device}' (`mmp-tool status {device}`) and leave the filesystem to it"),
        device,
    }
}

/// Re-read the MMP block: it must still hold `expected`.
pub(super) fn verify_block<D: BlockIo>(
    fs: &MmpFs<D>,
    expected: &[u8; MMP_STRUCT_SIZE],
    w: &Writer<'_, D>,
    when: &str,
) -> Result<(), EditError> {
    let now = read_mmp_bytes(fs)?;
    if &now == expected {
        return Ok(());
    }
    let detail = match MmpBlock::decode(&now) {
        Ok(b) => format!("{when}: now {}", who(&b)),
        Err(e) => format!("{when}: {e}"),
    };
    Err(changed(fs, w, detail))
}
