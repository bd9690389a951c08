//! start: validate, then (unless already mounted here) the MMP gate and the mount. A device
//! in use on another node is OCF_ERR_GENERIC naming the node, with nothing written or mounted.

use super::mounts::{self, MountState};
use super::params::{Config, Holder, MmpdParams, PUBLISHED_CHECK_INTERVAL};
use super::takeover::Takeover;
use super::validate::{self, device_error};
use super::{generic, mmpd, Budget, Res};
use crate::cli::{ClaimFlags, DeviceArg, FenceFlags, MountArgs};
use crate::cmd::mount::gate_and_mount;
use crate::exit::Outcome as ToolOutcome;
use libmmp::fs::MmpFs;
use libmmp::io::device::{Access, Device};
use libmmp::ondisk::mmp::{MmpBlock, SeqClass};
use libmmp::protocol::check::{self, CheckOptions, Verdict};
use libmmp::protocol::claim::{self, ClaimError};
use libmmp::protocol::clock::SystemClock;
use std::path::Path;
use std::time::Duration;

/// What the mount (or mmpd's start) may take after the claim.
const MOUNT_MARGIN: Duration = Duration::from_secs(5);
/// The polls after the fence-confirmed claim's write, rounded up.
const FENCED_VERIFY_POLLS: Duration = Duration::from_secs(1);

pub fn start(cfg: &Config, budget: &Budget) -> Res {
    validate::full(cfg)?;
    if mounted_here(cfg, budget)? {
        return Ok(());
    }
    match &cfg.holder {
        Holder::Ext4 => start_ext4(cfg, budget),
        Holder::Mmpd(m) => hold_and_mount(cfg, m, None, budget),
    }
}

/// Whether the filesystem is mounted on the directory here already (then, with holder=mmpd,
/// made sure our mmpd holds the area). Something else mounted there is refused.
pub(super) fn mounted_here(cfg: &Config, budget: &Budget) -> Res<bool> {
    match mounts::state(cfg)? {
        MountState::Here => {
            tracing::info!(
                "{} is mounted on {} already",
                cfg.device.display(),
                cfg.directory.display()
            );
            match &cfg.holder {
                Holder::Ext4 => Ok(true),
                Holder::Mmpd(m) => mmpd::ensure_holding(cfg, m, None, budget).map(|()| true),
            }
        }
        MountState::Other(why) => Err(generic(format!("{why}; not mounting"))),
        MountState::NotMounted => Ok(false),
    }
}

/// holder=mmpd: our mmpd holds the area (one we start claims it the normal way, or as the
/// target of a planned handoff with `handoff`'s nonce: the migrate_from), then the mount.
pub(super) fn hold_and_mount(
    cfg: &Config,
    m: &MmpdParams,
    handoff: Option<u64>,
    budget: &Budget,
) -> Res {
    mmpd::ensure_holding(cfg, m, handoff, budget)?;
    mounts::mount(cfg).inspect_err(|_| {
        // Nothing uses the area now: release it rather than leave it for the stop.
        let _ = mmpd::stop(m, budget);
    })
}

/// holder=ext4: `mmp-tool mount`'s gate (claim, CLEAN, mount at once), with our run dir.
fn start_ext4(cfg: &Config, budget: &Budget) -> Res {
    let fence = fits_or_refuse(&cfg.device, MOUNT_MARGIN, budget, &cfg.takeover)?;
    gate(cfg, fence, None)
}

/// The gate and the mount of holder=ext4: the normal or fence-confirmed claim (`fence`), or
/// the target's claim of a planned handoff (`handoff`: its nonce; the migrate_from).
pub(super) fn gate(cfg: &Config, fence: FenceFlags, handoff: Option<u64>) -> Res {
    let args = MountArgs {
        dev: DeviceArg {
            device: cfg.device.clone(),
        },
        dir: cfg.directory.clone(),
        options: cfg.options.clone(),
        fstype: cfg.fstype.clone(),
        opts: ClaimFlags {
            json: true,
            node_name: None,
            check_interval: PUBLISHED_CHECK_INTERVAL,
            poll_ms: 100,
            run_dir: Some(cfg.run_dir.clone()),
            quiet: true,
            fence,
            handoff,
        },
    };
    tracing::info!(
        "claiming {} through its MMP block, then mounting it on {}",
        cfg.device.display(),
        cfg.directory.display()
    );
    match gate_and_mount(&args) {
        Ok((ToolOutcome::Done, js)) => {
            tracing::info!("{}", js.message);
            Ok(())
        }
        Ok((_, js)) => Err(generic(js.message)),
        Err(e) => Err(generic(format!("{e}; not mounting"))),
    }
}

/// How long a claim of a device whose MMP block is `blk` takes, from libmmp's waits (the
/// formulas `claim::claim_with` waits by): nothing to wait for a block that is refused at once
/// (FSCK, unknown); the verification for a CLEAN one; the watch of a live one (shortened by a
/// valid fence tag) and then the verification. `fenced`: the fence-confirmed claim's short
/// watch and its verification against other claimers (`claim::fenced`).
pub fn claim_time(sb_interval: u16, blk: &MmpBlock, fenced: bool) -> Duration {
    let ci = check::check_interval(sb_interval, blk.mmp_check_interval);
    let verify =
        claim::verify_wait(ci, sb_interval, PUBLISHED_CHECK_INTERVAL).max(claim::MAX_WRITE_GAP);
    match blk.seq_class() {
        SeqClass::Live(_) if fenced => {
            let normal = check::wait_time(ci);
            claim::fenced::fenced_watch(sb_interval, blk.fence_tag(), normal)
                + claim::MAX_WRITE_GAP
                + FENCED_VERIFY_POLLS
        }
        SeqClass::Clean => verify,
        SeqClass::Live(_) => match blk.fence_tag() {
            Some(tag) => {
                check::wait_time(ci).min(check::fence_wait(tag)) + verify.min(claim::FENCED_VERIFY)
            }
            None => check::wait_time(ci) + verify,
        },
        SeqClass::Fsck | SeqClass::Unknown(_) => Duration::ZERO,
    }
}

/// Before the claim of `dev`: if its wait plus `extra` cannot end within the operation timeout,
/// refuse now (OCF_ERR_CONFIGURED, naming the timeout to set). A live block is first watched
/// for as long as its holder may go between writes (its check interval), so a device in use
/// on another node is still reported as such. The same read decides the fence-confirmed path
/// (`takeover`): the flags returned are the gate's.
pub fn fits_or_refuse(
    dev: &Path,
    extra: Duration,
    budget: &Budget,
    takeover: &Takeover,
) -> Res<FenceFlags> {
    let fs = MmpFs::open_path(dev, Access::ReadOnly).map_err(device_error)?;
    let (blk, _) = fs.read_mmp_raw().map_err(device_error)?;
    let fence = takeover.flags(&dev.display().to_string(), &blk);
    let sb_interval = fs.superblock().s_mmp_update_interval;
    let need = claim_time(sb_interval, &blk, fence.fenced.is_some()) + extra;
    if budget.fits(need) {
        return Ok(fence);
    }
    let d = dev.display();
    let what = match blk.seq_class() {
        SeqClass::Live(_) => {
            let watched = watch_for_writer(&fs, &blk, budget)?;
            format!(
                "{d}: its MMP block names node '{}' (device '{}') and did not change for {} s: that holder looks dead, and proving it takes the kernel's full wait and then our claim",
                blk.nodename(),
                blk.bdevname(),
                watched.as_secs()
            )
        }
        _ => format!("{d}: the claim of its MMP block"),
    };
    Err(budget.too_short(&what, need))
}

/// Watch a live block for its check interval (what the budget allows): a change is a holder
/// at work, refused as the claim would refuse it. Returns how long it was watched.
fn watch_for_writer(fs: &MmpFs<Device>, blk: &MmpBlock, budget: &Budget) -> Res<Duration> {
    let ci = check::check_interval(
        fs.superblock().s_mmp_update_interval,
        blk.mmp_check_interval,
    );
    let watch = Duration::from_secs(u64::from(ci)).min(budget.remaining().unwrap_or_default());
    tracing::info!(
        "{}: the MMP block is live; watching it for {} s",
        fs.device_name(),
        watch.as_secs()
    );
    let opts = CheckOptions {
        poll: Duration::from_millis(100),
        timeout: Some(watch),
        honor_fence_tag: true,
    };
    let report =
        check::check(fs, &SystemClock::default(), opts, &mut |_, _| {}).map_err(device_error)?;
    match report.verdict {
        Verdict::InUse { block } => Err(generic(format!(
            "{}; not mounting",
            ClaimError::InUse {
                device: fs.device_name().to_string(),
                block: Box::new(block),
            }
        ))),
        _ => Ok(report.elapsed),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use libmmp::ondisk::mmp::{EXT4_MMP_SEQ_CLEAN, EXT4_MMP_SEQ_FSCK};

    fn block(seq: u32, ci: u16) -> MmpBlock {
        MmpBlock::new(seq, 0, "n", "d", ci)
    }

    #[test]
    fn claim_time_follows_the_claims_waits() {
        // Update interval 1, check interval 5: W = 11 s; the verification is 9 s.
        assert_eq!(
            claim_time(1, &block(EXT4_MMP_SEQ_CLEAN, 5), false),
            Duration::from_secs(9)
        );
        assert_eq!(claim_time(1, &block(42, 5), false), Duration::from_secs(20));
        // Fence-confirmed: a 2 s watch, 2 s against other claimers, the polls.
        assert_eq!(claim_time(1, &block(42, 5), true), Duration::from_secs(5));
        assert_eq!(claim_time(3, &block(42, 5), true), Duration::from_secs(9));
        // A holder publishing check interval 10: W = 21 s, still verified for 9 s.
        assert_eq!(
            claim_time(1, &block(42, 10), false),
            Duration::from_secs(30)
        );
        // Update interval 10 in the superblock: W = 21 s and readers of ours wait 21 s too.
        assert_eq!(
            claim_time(10, &block(42, 5), false),
            Duration::from_secs(21 + 19)
        );
        assert_eq!(
            claim_time(1, &block(EXT4_MMP_SEQ_FSCK, 5), true),
            Duration::ZERO
        );
    }

    #[test]
    fn budget_names_the_timeout_to_set() {
        let env = libmmp::ocf::Env::from_vars([(
            "OCF_RESKEY_CRM_meta_timeout".to_string(),
            "20000".to_string(),
        )]);
        let b = Budget::new(&env);
        assert!(b.fits(Duration::from_secs(14)));
        assert!(!b.fits(Duration::from_secs(25)));
        let o = b.too_short("x", Duration::from_secs(25));
        assert_eq!(o.status, libmmp::ocf::Status::ErrConfigured);
        assert!(o.reason.unwrap().contains("op start timeout=60s"));
        let o = b.too_short("x", Duration::from_secs(125));
        assert!(o.reason.unwrap().contains("op start timeout=130s"));
        assert!(Budget::new(&libmmp::ocf::Env::default()).fits(Duration::MAX));
    }
}
