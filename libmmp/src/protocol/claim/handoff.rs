//! The planned handoff: node A hands a device to node B without B's full wait, with confirm
//! and rollback. HANDOFF.md has the state diagram and the outcome of every fault; this is the
//! protocol and why it never lets two nodes write.
//!
//! ```text
//!  A: holds ──unmount/release──▶ CLEAN(A) ──offer()──▶ OFFERED(A→B, nonce N) ──▶ prints N
//!  B:                                       claim_handoff(N) ──▶ CLAIMED(B) ──▶ holder beats
//!  confirm(N): the block is B's heartbeat (it changes, names B)      = confirmed
//!  A: rollback(): OFFERED(A) ──▶ ROLLED_BACK(A) ──(normal verify)──▶ CLEAN(A)
//! ```
//!
//! 1. **The offer** ([`offer`]): A quiesces first (unmounted: kmmpd's stop wrote CLEAN; or its
//!    mmpd released), so the block is CLEAN under A's name. A compare-and-writes a live block
//!    with the record `offered A -> B, nonce N` and verifies it for [`MAX_WRITE_GAP`] + two
//!    polls: a claimer that read the block before our write writes within that gap, so a
//!    racing claim is seen and the offer fails. **N is printed only after that.** The nonce is
//!    the capability: B's tool claims only with the N the orchestrator got from A's successful
//!    offer, so an offer whose write came late (A stopped between its read and its write,
//!    [`ClaimError::Stalled`]) or that a racing write replaced can never be used, even though
//!    its bytes may stay on disk (a live block like any other: others wait it out).
//! 2. **The target's claim** ([`claim_handoff`]): B reads a valid `offered` record naming B
//!    and carrying N, compare-and-writes its own live block (record `claimed`) within
//!    [`HANDOFF_WRITE_GAP`] of that read, and verifies for that gap + two polls, then its
//!    holder follows at once (`mmp-tool mount` writes CLEAN over its own block and mounts;
//!    kmmpd writes at mount and every update interval). No first watch: the offer proves A let
//!    go, and nobody else may skip the wait on it.
//! 3. **Why B and anyone else never both win.** Every other writer of an offered block waits
//!    and verifies the normal way: a third node's claim watches the live block for the full
//!    `min(2*CI+1, CI+60)` s and verifies ≥ 9 s; A's rollback verifies ≥ 9 s; the kernel and
//!    e2fsprogs wait as for any live block; the fence-confirmed claim does not take its short
//!    path on a block with a record ([`super::fenced::Fallback::Handoff`]). So of B and such a
//!    writer W: if W's write lands before B's compare-read, B refuses (no offer); if it lands
//!    between B's read and B's write, B overwrites it and W's verification sees B's block (W
//!    loses); if it lands while B verifies, B loses; if it lands after B's verification, W's
//!    read predates B's write, so W lands within its own gap (≤ 2 s) of B's write and W's
//!    ≥ 9 s verification sees B's holder write (kmmpd at mount and every ≤ 5 s, mmpd every
//!    second): W loses. A kmmpd on B never notices W's stray write (it does not re-read), an
//!    mmpd on B does and fences itself: availability, never two writers. Two target claimers
//!    with N (two processes on B) are both fast, and both use [`HANDOFF_WRITE_GAP`] and verify
//!    longer than it: exactly one wins, as in the normal claim.
//! 4. **Rollback** ([`rollback`]) is a compare-and-write of A's own offer (the target never
//!    claimed) followed by the normal verification (≥ 9 s) and CLEAN: if B's claim raced it, B's
//!    block or its holder's first writes land inside that verification and A refuses. It
//!    never relies on the compare-and-write being atomic. Once B claimed, a rollback is the
//!    normal full-wait claim (it succeeds only when B's holder is silent: B is down, or B's
//!    mount has not written yet and then finds the block changed). B's `mmp-tool mount`
//!    hands over to the kernel only within its claim's lease
//!    ([`super::release_for_mount`]), so a B stopped past it does not mount over A. From
//!    another node (A is gone) it only cancels the offer: B can no longer claim it and the
//!    block needs the normal wait.
//! 5. **Confirm** ([`confirm`]) writes nothing: it watches the block until the target's holder
//!    writes (a live block under the target's name whose padding still carries this
//!    handoff's nonce), proving the target holds the device. From then on A's rollback cannot
//!    race: its fast path needs its own offer (gone), the full wait sees the heartbeat.
//!
//! **What this does not cover** (as every MMP protocol): a kernel mount that bypasses the
//! gate on another node in the moment the block is CLEAN (after A's unmount, before the offer;
//! after B's claim, before its mount). That is the kernel's own CLEAN race (LU-13932); the
//! offer shortens A's window to one compare-and-write.

use super::{
    our_block, verify_wait, Attempt, ClaimError, ClaimMode, ClaimOptions, ClaimPhase, Claimed,
    Watcher, MAX_WRITE_GAP,
};
use crate::fs::MmpFs;
use crate::io::BlockIo;
use crate::ondisk::handoff::{format_nonce, HandoffRead, HandoffRecord, HandoffStep};
use crate::ondisk::mmp::{MmpBlock, SeqClass};
use crate::protocol::check::{self, SafeReason};
use crate::protocol::clock::{wall_now, Clock};
use crate::protocol::seq::{FreshSeq, SeqError};
use std::time::Duration;

/// The target's compare-and-write gap: from the read of the offer to the end of its claim
/// write. Tighter than [`MAX_WRITE_GAP`] so that its verification ([`target_verify`]) is short.
pub const HANDOFF_WRITE_GAP: Duration = Duration::from_millis(500);
/// How often the target re-reads while it verifies (at most).
pub const HANDOFF_POLL: Duration = Duration::from_millis(50);

/// The target's verification after its claim write: the gap plus two polls.
pub fn target_verify(poll: Duration) -> Duration {
    HANDOFF_WRITE_GAP + 2 * poll.min(HANDOFF_POLL)
}

/// A source of nonces: the kernel's CSPRNG in production ([`random_nonce`]), a script in tests.
pub type FreshNonce<'a> = dyn FnMut() -> Result<u64, SeqError> + 'a;

/// A random nonce from getrandom(2).
pub fn random_nonce() -> Result<u64, SeqError> {
    let mut b = [0u8; 8];
    getrandom::fill(&mut b).map_err(SeqError::Csprng)?;
    Ok(u64::from_le_bytes(b))
}

/// Why a handoff step did not happen. Every refusal wrote nothing, except where it says so.
#[derive(Debug, thiserror::Error)]
pub enum HandoffError {
    #[error(transparent)]
    Claim(#[from] ClaimError),
    #[error("{device}: '{target}' is not a node name a handoff can go to: {why}; nothing written")]
    BadTarget {
        device: String,
        target: String,
        why: &'static str,
    },
    #[error("{device}: not this node's to hand off: the MMP block is {state} (node '{node}'), but an offer needs the block CLEAN under this node's name ('{me}'), as this node's unmount or mmpd release leaves it. Unmount or stop the holder here first; nothing written")]
    NotOurs {
        device: String,
        state: &'static str,
        node: String,
        me: String,
    },
    #[error("{device}: the MMP block carries a handoff record of version {version}, newer than this release reads (version {}): a node runs a newer mmp-tool. Finish or roll back the handoff there, or upgrade this node; nothing written", crate::ondisk::handoff::HANDOFF_VERSION)]
    Newer { device: String, version: u32 },
    #[error("{device}: a handoff is already {}: {} -> {} (nonce {}); nothing written", rec.step.name().replace('_', " "), rec.source, rec.target, format_nonce(rec.nonce))]
    InProgress {
        device: String,
        rec: Box<HandoffRecord>,
    },
    #[error("{device}: no handoff is offered: the MMP block is {state} (node '{node}'){}. Claim it the normal way (full wait), or ask the source to offer it; nothing written", remnant.as_ref().map(|r| format!("; it last saw handoff {} {} -> {}, {}", format_nonce(r.nonce), r.source, r.target, r.step.name().replace('_', " "))).unwrap_or_default())]
    NoOffer {
        device: String,
        state: &'static str,
        node: String,
        remnant: Option<Box<HandoffRecord>>,
    },
    #[error("{device}: the handoff offered by '{}' is for node '{}', not for this node ('{me}'); nothing written", rec.source, rec.target)]
    NotForUs {
        device: String,
        me: String,
        rec: Box<HandoffRecord>,
    },
    #[error("{device}: the nonce {} does not match the handoff on the device ({} -> {}, nonce {}): it is another handoff (a newer offer, or one rolled back and offered again); nothing written", format_nonce(*given), rec.source, rec.target, format_nonce(rec.nonce))]
    NonceMismatch {
        device: String,
        given: u64,
        rec: Box<HandoffRecord>,
    },
    #[error("{device}: the handoff {} -> {} (nonce {}) was rolled back by node '{by}'; nothing written", rec.source, rec.target, format_nonce(rec.nonce))]
    RolledBack {
        device: String,
        by: String,
        rec: Box<HandoffRecord>,
    },
    #[error("{device}: not confirmed: {why}; nothing written")]
    NotConfirmed { device: String, why: String },
    #[error("{device}: the handoff went through: {why}. Rollback refused; to move it back, hand it off from there (`mmp-tool handoff {device} --to <this node>`); nothing written")]
    TargetHolds { device: String, why: String },
    #[error("cannot draw a random nonce: {0}")]
    Nonce(#[source] SeqError),
}

impl HandoffError {
    /// Short name for logs and JSON.
    pub fn name(&self) -> &'static str {
        match self {
            HandoffError::Claim(e) => e.name(),
            HandoffError::BadTarget { .. } => "bad_target",
            HandoffError::NotOurs { .. } => "not_ours",
            HandoffError::Newer { .. } => "newer_record",
            HandoffError::InProgress { .. } => "handoff_in_progress",
            HandoffError::NoOffer { .. } => "no_offer",
            HandoffError::NotForUs { .. } => "not_for_us",
            HandoffError::NonceMismatch { .. } => "nonce_mismatch",
            HandoffError::RolledBack { .. } => "rolled_back",
            HandoffError::NotConfirmed { .. } => "not_confirmed",
            HandoffError::TargetHolds { .. } => "target_holds",
            HandoffError::Nonce(_) => "error",
        }
    }

    /// Whether this means "not ours to take" (a refusal, nothing written) rather than an error
    /// or bad arguments.
    pub fn is_refusal(&self) -> bool {
        !self.is_error() && !self.is_usage()
    }

    /// Usage errors (exit 2 in mmp-tool) as opposed to refusals (exit 1) and errors.
    pub fn is_usage(&self) -> bool {
        matches!(self, HandoffError::BadTarget { .. })
    }

    /// An error (I/O, no MMP, no randomness) rather than a refusal.
    pub fn is_error(&self) -> bool {
        match self {
            HandoffError::Claim(e) => !e.is_refusal(),
            HandoffError::Nonce(_) => true,
            _ => false,
        }
    }
}

/// Check a target node name: not ours, not empty, fits `mmp_nodename`, no blanks or control
/// characters (what a host name or a Pacemaker node name can be).
pub fn check_target(device: &str, me: &str, target: &str) -> Result<(), HandoffError> {
    let why = if target.is_empty() {
        Some("it is empty")
    } else if target == me {
        Some("it is this node: a handoff goes to another node")
    } else if target.len() > 64 {
        Some("it is longer than the 64 bytes of mmp_nodename")
    } else if target
        .chars()
        .any(|c| c.is_control() || c.is_whitespace() || c == '=')
    {
        Some("it contains blanks, '=' or control characters")
    } else {
        None
    };
    match why {
        Some(why) => Err(HandoffError::BadTarget {
            device: device.to_string(),
            target: target.to_string(),
            why,
        }),
        None => Ok(()),
    }
}

fn state_name(b: &MmpBlock) -> &'static str {
    b.seq_class().name()
}

/// A block's record, refusing a newer version.
fn record_of(device: &str, b: &MmpBlock) -> Result<HandoffRead, HandoffError> {
    match b.handoff() {
        HandoffRead::Newer { version } => Err(HandoffError::Newer {
            device: device.to_string(),
            version,
        }),
        r => Ok(r),
    }
}

/// Our block for a handoff step: a fresh sequence, this node's names, the record.
fn record_block<D: BlockIo>(
    fs: &MmpFs<D>,
    fresh_seq: &mut FreshSeq<'_>,
    found: &MmpBlock,
    opts: &ClaimOptions,
    rec: &HandoffRecord,
) -> Result<(MmpBlock, [u8; 1024]), ClaimError> {
    let (mut blk, _) = our_block(fs, fresh_seq, found.mmp_seq, opts)?;
    blk.set_handoff(Some(rec));
    let bytes = super::on_disk_bytes(fs, &blk);
    Ok((blk, bytes))
}

fn watcher<'a, D: BlockIo>(
    fs: &'a MmpFs<D>,
    clock: &'a dyn Clock,
    poll: Duration,
    device: &'a str,
    gap: Duration,
) -> Watcher<'a, D> {
    Watcher {
        fs,
        clock,
        poll: poll.max(Duration::from_millis(1)),
        device,
        gap,
    }
}

/// A verified offer: the nonce may now be handed to the target.
#[derive(Debug, Clone)]
pub struct Offered {
    pub record: HandoffRecord,
    pub block: MmpBlock,
    /// From the first read to the end of the verification.
    pub elapsed: Duration,
}

/// Step 1, on the source: offer the device to `target` (see the module documentation).
/// `progress` sees the verification.
pub fn offer<D: BlockIo>(
    fs: &MmpFs<D>,
    clock: &dyn Clock,
    fresh_seq: &mut FreshSeq<'_>,
    fresh_nonce: &mut FreshNonce<'_>,
    opts: &ClaimOptions,
    target: &str,
    progress: &mut dyn FnMut(ClaimPhase, Duration, Duration),
) -> Result<Offered, HandoffError> {
    let device = fs.device_name().to_string();
    check_target(&device, &opts.nodename, target)?;
    let start = clock.now();
    let found = fs.read_mmp().map_err(ClaimError::Fs)?;
    if let HandoffRead::Valid(rec) = record_of(&device, &found)? {
        return Err(HandoffError::InProgress {
            device,
            rec: Box::new(rec),
        });
    }
    if found.seq_class() != SeqClass::Clean || found.nodename() != opts.nodename {
        return Err(HandoffError::NotOurs {
            device,
            state: state_name(&found),
            node: found.nodename(),
            me: opts.nodename.clone(),
        });
    }
    let record = HandoffRecord {
        step: HandoffStep::Offered,
        nonce: fresh_nonce().map_err(HandoffError::Nonce)?,
        offered_at: wall_now(),
        source: opts.nodename.clone(),
        target: target.to_string(),
    };
    let (blk, ours) = record_block(fs, fresh_seq, &found, opts, &record)?;
    let w = watcher(fs, clock, opts.poll, &device, MAX_WRITE_GAP);
    let mut reads = 1;
    w.write_and_verify(
        &found.encode_raw(),
        &blk,
        &ours,
        Duration::ZERO,
        &mut reads,
        &|| false,
        progress,
    )?;
    tracing::info!(device = %device, target, nonce = %format_nonce(record.nonce), "handoff offered and verified");
    Ok(Offered {
        record,
        block: blk,
        elapsed: clock.now().saturating_sub(start),
    })
}

/// A target's won claim.
#[derive(Debug, Clone)]
pub struct HandoffClaim {
    pub claimed: Claimed,
    pub record: HandoffRecord,
}

/// The valid record `found` carries for `nonce`, judged from `me`'s side as the target.
fn offer_for_us(
    device: &str,
    me: &str,
    nonce: u64,
    found: &MmpBlock,
) -> Result<HandoffRecord, HandoffError> {
    let dev = device.to_string();
    let rec = match record_of(device, found)? {
        HandoffRead::Valid(r) => r,
        HandoffRead::Remnant(r) => {
            return Err(HandoffError::NoOffer {
                device: dev,
                state: state_name(found),
                node: found.nodename(),
                remnant: Some(Box::new(r)),
            })
        }
        _ => {
            return Err(HandoffError::NoOffer {
                device: dev,
                state: state_name(found),
                node: found.nodename(),
                remnant: None,
            })
        }
    };
    let rec_box = Box::new(rec.clone());
    if rec.nonce != nonce {
        return Err(HandoffError::NonceMismatch {
            device: dev,
            given: nonce,
            rec: rec_box,
        });
    }
    match rec.step {
        HandoffStep::Offered if rec.target == me => Ok(rec),
        HandoffStep::Offered => Err(HandoffError::NotForUs {
            device: dev,
            me: me.to_string(),
            rec: rec_box,
        }),
        HandoffStep::Claimed => Err(HandoffError::InProgress {
            device: dev,
            rec: rec_box,
        }),
        HandoffStep::RolledBack => Err(HandoffError::RolledBack {
            device: dev,
            by: found.nodename(),
            rec: rec_box,
        }),
    }
}

/// Step 2, on the target: claim the device offered to this node with `nonce` (see the module
/// documentation). `HolderFollows` (mount, mmpd) verifies for [`target_verify`]; `Bare` (a
/// claim nothing follows) verifies as long as the normal claim and refreshes its block.
#[allow(clippy::too_many_arguments)]
pub fn claim_handoff<D: BlockIo>(
    fs: &MmpFs<D>,
    clock: &dyn Clock,
    fresh_seq: &mut FreshSeq<'_>,
    opts: &ClaimOptions,
    mode: ClaimMode,
    nonce: u64,
    cancel: &dyn Fn() -> bool,
    progress: &mut dyn FnMut(ClaimPhase, Duration, Duration),
) -> Result<HandoffClaim, HandoffError> {
    let device = fs.device_name().to_string();
    let start = clock.now();
    let found = fs.read_mmp().map_err(ClaimError::Fs)?;
    let offered = offer_for_us(&device, &opts.nodename, nonce, &found)?;
    let record = HandoffRecord {
        step: HandoffStep::Claimed,
        ..offered
    };
    let (blk, ours) = record_block(fs, fresh_seq, &found, opts, &record)?;
    let poll = opts.poll.min(HANDOFF_POLL);
    let w = watcher(fs, clock, poll, &device, HANDOFF_WRITE_GAP);
    let sb_interval = fs.superblock().s_mmp_update_interval;
    let ci = check::check_interval(sb_interval, found.mmp_check_interval);
    let wait = match mode {
        ClaimMode::HolderFollows => Duration::ZERO,
        ClaimMode::Bare => verify_wait(ci, sb_interval, opts.check_interval),
    };
    let attempt = Attempt {
        found,
        previous: SafeReason::Stale,
        check_interval: ci,
        fence_tag: None,
        blk,
        ours,
        wait,
        report_wait: false,
        start,
        reads: 1,
    };
    let claimed = w.win(attempt, mode, opts.check_interval, cancel, progress)?;
    tracing::info!(device = %device, source = %record.source, nonce = %format_nonce(nonce), "handoff claimed");
    Ok(HandoffClaim { claimed, record })
}

/// The handoff a rollback or confirm acts on: the valid record, or this handoff's remnant.
fn this_handoff(
    device: &str,
    found: &MmpBlock,
    nonce: Option<u64>,
    me_source: Option<&str>,
) -> Result<(HandoffRecord, bool), HandoffError> {
    let (rec, valid) = match record_of(device, found)? {
        HandoffRead::Valid(r) => (r, true),
        HandoffRead::Remnant(r) => (r, false),
        _ => {
            return Err(HandoffError::NoOffer {
                device: device.to_string(),
                state: state_name(found),
                node: found.nodename(),
                remnant: None,
            })
        }
    };
    let ours = nonce.map_or_else(
        || me_source == Some(rec.source.as_str()),
        |n| n == rec.nonce,
    );
    if !ours {
        return Err(match nonce {
            Some(given) => HandoffError::NonceMismatch {
                device: device.to_string(),
                given,
                rec: Box::new(rec),
            },
            None => HandoffError::NoOffer {
                device: device.to_string(),
                state: state_name(found),
                node: found.nodename(),
                remnant: Some(Box::new(rec)),
            },
        });
    }
    Ok((rec, valid))
}

mod confirm;
mod rollback;
pub use confirm::{confirm, Confirmed};
pub use rollback::{rollback, RollbackPath, RolledBack};

#[cfg(test)]
mod tests;

#[cfg(test)]
mod faults;
#[cfg(test)]
mod sim;
