//! Confirm a planned handoff (see the parent module's step 5): the target's holder writes the
//! block. Writes nothing.

use super::{this_handoff, HandoffError};
use crate::fs::MmpFs;
use crate::io::BlockIo;
use crate::ondisk::handoff::{HandoffRead, HandoffRecord, HandoffStep};
use crate::ondisk::mmp::{MmpBlock, SeqClass};
use crate::protocol::check;
use crate::protocol::claim::{read_on_disk, ClaimError, ClaimPhase};
use crate::protocol::clock::Clock;
use std::time::Duration;

/// A confirmed handoff: the target's holder writes the block.
#[derive(Debug, Clone)]
pub struct Confirmed {
    pub record: HandoffRecord,
    /// The target's heartbeat as seen.
    pub block: MmpBlock,
    pub waited: Duration,
}

/// Confirm the handoff `nonce`: watch (up to the normal reader wait) until the target's holder
/// writes the block. Writes nothing.
pub fn confirm<D: BlockIo>(
    fs: &MmpFs<D>,
    clock: &dyn Clock,
    nonce: u64,
    poll: Duration,
    progress: &mut dyn FnMut(ClaimPhase, Duration, Duration),
) -> Result<Confirmed, HandoffError> {
    let device = fs.device_name().to_string();
    let start = clock.now();
    let first = fs.read_mmp().map_err(ClaimError::Fs)?;
    let (rec, valid) = this_handoff(&device, &first, Some(nonce), None)?;
    let not = |why: String| HandoffError::NotConfirmed {
        device: device.clone(),
        why,
    };
    match (valid, rec.step) {
        (true, HandoffStep::Offered) => {
            return Err(not(format!(
                "node '{}' has not claimed the device yet (the offer from '{}' stands)",
                rec.target, rec.source
            )))
        }
        (true, HandoffStep::RolledBack) => {
            return Err(HandoffError::RolledBack {
                device,
                by: first.nodename(),
                rec: Box::new(rec),
            })
        }
        _ => {}
    }
    let sb_interval = fs.superblock().s_mmp_update_interval;
    let watch = check::wait_time(check::check_interval(sb_interval, first.mmp_check_interval));
    let poll = poll.max(Duration::from_millis(1));
    let mut last = first.encode_raw();
    loop {
        let elapsed = clock.now().saturating_sub(start);
        progress(ClaimPhase::Watching, elapsed.min(watch), watch);
        if elapsed >= watch {
            let clean = MmpBlock::decode(&last).is_ok_and(|b| b.seq_class() == SeqClass::Clean);
            return Err(not(format!(
                "the MMP block did not change for {:.0} s: node '{}' has no holder writing it ({})",
                watch.as_secs_f64(),
                rec.target,
                if clean {
                    "it is CLEAN: released, or never mounted"
                } else {
                    "down, or never mounted"
                }
            )));
        }
        clock.sleep(poll.min(watch - elapsed));
        let (now, raw) = read_on_disk(fs).map_err(ClaimError::Fs)?;
        if raw == last {
            continue;
        }
        last = raw;
        // The target's holder: a live block that is not the claim itself, under the target's
        // name, or (kmmpd writes the kernel's host name, which may differ from the name the
        // target claimed under) carrying the remnant of this handoff's claim, which only the
        // target wrote and which kmmpd and mmpd keep in the padding.
        let descends = matches!(now.handoff(), HandoffRead::Remnant(r)
            if r.nonce == rec.nonce && r.step == HandoffStep::Claimed);
        let beat = matches!(now.seq_class(), SeqClass::Live(_))
            && now.handoff().valid().is_none()
            && (now.nodename() == rec.target || descends);
        if beat {
            return Ok(Confirmed {
                record: rec,
                block: now,
                waited: clock.now().saturating_sub(start),
            });
        }
        if !matches!(now.seq_class(), SeqClass::Clean) && now.nodename() != rec.target && !descends
        {
            return Err(not(format!(
                "node '{}' wrote the MMP block (sequence {:#010x}), not the target '{}'",
                now.nodename(),
                now.mmp_seq,
                rec.target
            )));
        }
    }
}
