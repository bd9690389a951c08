//! Rollback of a planned handoff (see the parent module's step 4): on the source, its own
//! unclaimed offer back to CLEAN, or the device after the normal full wait once the target
//! claimed; on another node, a cancel.

use super::{record_block, this_handoff, watcher, HandoffError};
use crate::fs::MmpFs;
use crate::io::BlockIo;
use crate::ondisk::handoff::{HandoffRead, HandoffRecord, HandoffStep};
use crate::ondisk::mmp::MmpBlock;
use crate::protocol::check;
use crate::protocol::claim::{
    claim_with, release, verify_wait, ClaimError, ClaimMode, ClaimOptions, ClaimPhase, Release,
    MAX_WRITE_GAP,
};
use crate::protocol::clock::Clock;
use crate::protocol::seq::FreshSeq;
use std::time::Duration;

/// How a rollback went.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RollbackPath {
    /// The source took back its own unclaimed offer: the block is CLEAN under its name again.
    Fast,
    /// The target had claimed: the source took the device back after the normal full wait
    /// (the target's holder was silent), and left it CLEAN.
    AfterFullWait,
    /// Not the source: the offer is cancelled; the block stays live (the normal wait applies).
    Cancelled,
}

impl RollbackPath {
    pub fn name(&self) -> &'static str {
        match self {
            RollbackPath::Fast => "fast",
            RollbackPath::AfterFullWait => "after_full_wait",
            RollbackPath::Cancelled => "cancelled",
        }
    }
}

/// A done rollback.
#[derive(Debug, Clone)]
pub struct RolledBack {
    pub path: RollbackPath,
    pub record: HandoffRecord,
    pub elapsed: Duration,
}

/// Roll back a handoff (see the module documentation): on the source, take back its own
/// unclaimed offer (or, once the target claimed, the device after the normal full wait); on
/// another node, cancel the offer. `nonce` names the handoff (without it, the source's own).
pub fn rollback<D: BlockIo>(
    fs: &MmpFs<D>,
    clock: &dyn Clock,
    fresh_seq: &mut FreshSeq<'_>,
    opts: &ClaimOptions,
    nonce: Option<u64>,
    progress: &mut dyn FnMut(ClaimPhase, Duration, Duration),
) -> Result<RolledBack, HandoffError> {
    let device = fs.device_name().to_string();
    let start = clock.now();
    let me = opts.nodename.as_str();
    let found = fs.read_mmp().map_err(ClaimError::Fs)?;
    let (rec, valid) = this_handoff(&device, &found, nonce, Some(me))?;
    let done = |path, rec| RolledBack {
        path,
        record: rec,
        elapsed: clock.now().saturating_sub(start),
    };
    match (valid, rec.step) {
        (true, HandoffStep::RolledBack) => Err(HandoffError::RolledBack {
            device,
            by: found.nodename(),
            rec: Box::new(rec),
        }),
        (true, HandoffStep::Offered) => {
            let rolled = HandoffRecord {
                step: HandoffStep::RolledBack,
                ..rec
            };
            let source = rolled.source == me;
            withdraw(fs, clock, fresh_seq, opts, &found, &rolled, source, progress)?;
            let path = if source {
                RollbackPath::Fast
            } else {
                RollbackPath::Cancelled
            };
            tracing::info!(device = %device, path = path.name(), "handoff rolled back");
            Ok(done(path, rolled))
        }
        _ if rec.source != me => Err(HandoffError::TargetHolds {
            device,
            why: format!(
                "node '{}' claimed it; only the source ('{}') can take it back, after the full wait",
                rec.target, rec.source
            ),
        }),
        _ => {
            // The target claimed (its block, or its holder's, is there): the normal claim,
            // which waits the block out and refuses while the target's holder writes.
            let c = claim_with(
                fs,
                clock,
                fresh_seq,
                opts,
                ClaimMode::HolderFollows,
                &|| false,
                progress,
            )
            .map_err(|e| target_holds(e, &rec.target, &device))?;
            back_to_clean(fs, &c.block, &c.on_disk, &device)?;
            Ok(done(RollbackPath::AfterFullWait, rec))
        }
    }
}

/// A refusal of the rollback's full-wait claim: the target holds the device when the block it
/// saw (a change while it watched, or a write that beat its own) is the target's; any other
/// writer keeps the claim's own refusal, which names that node.
fn target_holds(e: ClaimError, target: &str, device: &str) -> HandoffError {
    match e {
        ClaimError::InUse { block, .. } | ClaimError::Lost { block, .. }
            if block.nodename() == target
                || matches!(block.handoff(), HandoffRead::Remnant(ref r) if r.target == target && r.step == HandoffStep::Claimed) =>
        {
            HandoffError::TargetHolds {
                device: device.to_string(),
                why: format!(
                    "node '{}' writes the MMP block (sequence {:#010x}): it holds the device",
                    block.nodename(),
                    block.mmp_seq
                ),
            }
        }
        e => HandoffError::Claim(e),
    }
}

/// Write the rolled-back record over the offer `found` and verify it for the normal claim's
/// verification (a target claim that raced us lands inside it); the source then sets CLEAN.
#[allow(clippy::too_many_arguments)]
fn withdraw<D: BlockIo>(
    fs: &MmpFs<D>,
    clock: &dyn Clock,
    fresh_seq: &mut FreshSeq<'_>,
    opts: &ClaimOptions,
    found: &MmpBlock,
    rolled: &HandoffRecord,
    source: bool,
    progress: &mut dyn FnMut(ClaimPhase, Duration, Duration),
) -> Result<(), HandoffError> {
    let device = fs.device_name().to_string();
    let (blk, ours) = record_block(fs, fresh_seq, found, opts, rolled)?;
    let sb_interval = fs.superblock().s_mmp_update_interval;
    let ci = check::check_interval(sb_interval, found.mmp_check_interval);
    let wait = verify_wait(ci, sb_interval, opts.check_interval);
    let w = watcher(fs, clock, opts.poll, &device, MAX_WRITE_GAP);
    let mut reads = 1;
    w.write_and_verify(
        &found.encode_raw(),
        &blk,
        &ours,
        wait,
        &mut reads,
        &|| false,
        progress,
    )
    .map_err(|e| match e {
        ClaimError::Lost { block, .. } | ClaimError::InUse { block, .. }
            if block.nodename() == rolled.target =>
        {
            HandoffError::TargetHolds {
                device: device.clone(),
                why: format!("node '{}' claimed it during the rollback", rolled.target),
            }
        }
        e => HandoffError::Claim(e),
    })?;
    if source {
        back_to_clean(fs, &blk, &ours, &device)?;
    }
    Ok(())
}

fn back_to_clean<D: BlockIo>(
    fs: &MmpFs<D>,
    blk: &MmpBlock,
    ours: &[u8; 1024],
    device: &str,
) -> Result<(), HandoffError> {
    match release(fs, blk, &[*ours]).map_err(ClaimError::Fs)? {
        Release::Clean(_) => Ok(()),
        Release::NotOurs(found) => Err(HandoffError::Claim(ClaimError::Lost {
            device: device.to_string(),
            ours: blk.mmp_seq,
            block: found,
        })),
    }
}
