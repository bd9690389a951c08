//! migrate_to / migrate_from: a planned move of a holder=ext4 filesystem as a handoff
//! (libmmp::protocol::claim::handoff, HANDOFF.md), enabled by the resource's
//! `allow-migrate=true` meta attribute.
//!
//! - migrate_to (source): the stop (unmount: kmmpd writes CLEAN under this node's host name),
//!   then the offer to `CRM_meta_migrate_target` (its MMP name through `node_map`).
//! - migrate_from (target): the offer's nonce is read from the block. That is the capability
//!   the protocol requires (a nonce from a *successful* offer) because Pacemaker runs
//!   migrate_from only after migrate_to succeeded on the source (pacemaker's scheduler orders
//!   the target's migrate_from after the source's migrate_to and aborts the transition when it
//!   fails, recovering with stop + start instead); the offer must name this node as target and
//!   `CRM_meta_migrate_source` (mapped) as source. Then the gate of the start with `--handoff`.
//!
//! Anything that does not fit (holder=mmpd, no target or source in the environment, no offer
//! for us) fails the action with OCF_ERR_GENERIC (or ERR_CONFIGURED), and Pacemaker recovers
//! with a stop and a normal start, the full wait.

use super::mounts::{self, MountState};
use super::params::{Config, Holder};
use super::start::gate;
use super::validate::device_error;
use super::{configured, generic, stop, Budget, Res};
use crate::cli::FenceFlags;
use libmmp::fs::MmpFs;
use libmmp::host::identity;
use libmmp::io::device::Access;
use libmmp::ocf::Env;
use libmmp::ondisk::handoff::{format_nonce, HandoffRead, HandoffStep};
use libmmp::protocol::claim::{self, handoff, ClaimOptions, FencedNode};
use libmmp::protocol::clock::SystemClock;
use libmmp::protocol::seq::random_seq;
use std::time::Duration;

fn ext4_only(cfg: &Config) -> Res {
    match cfg.holder {
        Holder::Ext4 => Ok(()),
        Holder::Mmpd(_) => Err(configured(
            "holder=mmpd has no migration: unset allow-migrate (a move is then a stop and a start)",
        )),
    }
}

/// The MMP name of cluster node `node` (`node_map`, else the same name), as the
/// fence-confirmed takeover maps it.
fn mmp_name(cfg: &Config, node: &str) -> String {
    FencedNode::new(node, &cfg.takeover.node_map).mmp_name
}

pub fn to(cfg: &Config, env: &Env, budget: &Budget) -> Res {
    ext4_only(cfg)?;
    let target = env.migrate_target.as_deref().ok_or_else(|| {
        generic("migrate_to without OCF_RESKEY_CRM_meta_migrate_target: not called by Pacemaker?")
    })?;
    let target_mmp = mmp_name(cfg, target);
    stop::stop(cfg, budget)?;
    let fs = MmpFs::open_path(&cfg.device, Access::ReadWrite).map_err(device_error)?;
    let opts = ClaimOptions {
        nodename: identity::nodename(),
        bdevname: claim::bdevname_of(fs.device_name()),
        check_interval: super::params::PUBLISHED_CHECK_INTERVAL,
        poll: Duration::from_millis(100),
    };
    let o = handoff::offer(
        &fs,
        &SystemClock::default(),
        &mut random_seq,
        &mut handoff::random_nonce,
        &opts,
        &target_mmp,
        &mut |_, _, _| {},
    )
    .map_err(|e| generic(format!("{e}; the filesystem stays unmounted here")))?;
    tracing::info!(
        "offered {} to {target} (MMP name {target_mmp}) with nonce {} in {:.1} s",
        cfg.device.display(),
        format_nonce(o.record.nonce),
        o.elapsed.as_secs_f64()
    );
    Ok(())
}

pub fn from(cfg: &Config, env: &Env) -> Res {
    ext4_only(cfg)?;
    super::validate::full(cfg)?;
    if let MountState::Here = mounts::state(cfg)? {
        return Ok(());
    }
    let source = env.migrate_source.as_deref().ok_or_else(|| {
        generic("migrate_from without OCF_RESKEY_CRM_meta_migrate_source: not called by Pacemaker?")
    })?;
    let nonce = offered_nonce(cfg, &mmp_name(cfg, source))?;
    gate(cfg, FenceFlags::default(), Some(nonce))
}

/// The nonce of the offer from `source` to this node that the block carries.
fn offered_nonce(cfg: &Config, source: &str) -> Res<u64> {
    let fs = MmpFs::open_path(&cfg.device, Access::ReadOnly).map_err(device_error)?;
    let blk = fs.read_mmp().map_err(device_error)?;
    let me = identity::nodename();
    match blk.handoff() {
        HandoffRead::Valid(r)
            if r.step == HandoffStep::Offered && r.target == me && r.source == source =>
        {
            Ok(r.nonce)
        }
        other => Err(generic(format!(
            "{}: no handoff offered by {source} to {me} on the MMP block ({}); Pacemaker recovers with a stop and a normal start",
            cfg.device.display(),
            crate::output::handoff_line(&other).unwrap_or_else(|| format!(
                "it is {} under node '{}'",
                blk.seq_class().name(),
                blk.nodename()
            ))
        ))),
    }
}
