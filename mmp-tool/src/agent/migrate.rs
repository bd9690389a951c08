//! migrate_to / migrate_from: a planned move as a handoff (libmmp::protocol::claim::handoff,
//! HANDOFF.md), enabled by the resource's `allow-migrate=true` meta attribute. The handoff
//! runs on the device whose MMP block the holder writes ([`Config::mmp_device`]): the
//! filesystem (holder=ext4) or the MMP area (holder=mmpd).
//!
//! - migrate_to (source): the stop, which leaves the block CLEAN under this node's host name
//!   (holder=ext4: the unmount, kmmpd's last write; holder=mmpd: the unmount, then mmpd's
//!   release on SIGTERM, under the name it writes, the host name, since the agent starts it
//!   without `--node-name`), then the offer to `CRM_meta_migrate_target` (its MMP name
//!   through `node_map`) under that same name.
//! - migrate_from (target): the offer's nonce is read from the block. That is the capability
//!   the protocol requires (a nonce from a *successful* offer) because Pacemaker runs
//!   migrate_from only after migrate_to succeeded on the source (pacemaker's scheduler orders
//!   the target's migrate_from after the source's migrate_to and aborts the transition when it
//!   fails, recovering with stop + start instead); the offer must name this node as target and
//!   `CRM_meta_migrate_source` (mapped) as source. Then the start's own steps with the nonce:
//!   holder=ext4, the gate with `--handoff`; holder=mmpd, an mmpd started with `--handoff
//!   NONCE` (its node name is the host name, the one the offer must name), and the mount once
//!   it holds the area.
//!
//! The moment between the release (CLEAN) and the offer is safe: a normal claim racing it
//! verifies its write for 9 s or more, so either the offer's compare-and-write finds the
//! block no longer CLEAN under our name (refused, nothing printed), or the claimer's
//! verification sees the offer, or the offer's own 2 s verification sees the claimer's write
//! (HANDOFF.md, "Why two nodes never both hold the device"). Only a gate-less kernel mount on
//! another node could take that CLEAN block, as after any stop.
//!
//! Anything that does not fit (no target or source in the environment, no offer for us, an
//! offer from another source, a record of a newer release) fails the action with
//! OCF_ERR_GENERIC before anything is written, and Pacemaker recovers with a stop and a
//! normal start, the full wait.

use super::params::{Config, Holder};
use super::validate::device_error;
use super::{generic, start, stop, Budget, Res};
use crate::cli::FenceFlags;
use libmmp::fs::MmpFs;
use libmmp::host::identity;
use libmmp::io::device::Access;
use libmmp::ocf::Env;
use libmmp::ondisk::handoff::{format_nonce, HandoffRead, HandoffStep};
use libmmp::protocol::claim::{self, handoff, ClaimOptions, FencedNode};
use libmmp::protocol::clock::SystemClock;
use libmmp::protocol::seq::random_seq;
use std::path::Path;
use std::time::Duration;

/// The MMP name of cluster node `node` (`node_map`, else the same name), as the
/// fence-confirmed takeover maps it.
fn mmp_name(cfg: &Config, node: &str) -> String {
    FencedNode::new(node, &cfg.takeover.node_map).mmp_name
}

pub fn to(cfg: &Config, env: &Env, budget: &Budget) -> Res {
    let target = env.migrate_target.as_deref().ok_or_else(|| {
        generic("migrate_to without OCF_RESKEY_CRM_meta_migrate_target: not called by Pacemaker?")
    })?;
    let target_mmp = mmp_name(cfg, target);
    stop::stop(cfg, budget)?;
    let dev = cfg.mmp_device();
    let fs = MmpFs::open_path(dev, Access::ReadWrite).map_err(device_error)?;
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
        dev.display(),
        format_nonce(o.record.nonce),
        o.elapsed.as_secs_f64()
    );
    Ok(())
}

pub fn from(cfg: &Config, env: &Env, budget: &Budget) -> Res {
    super::validate::full(cfg)?;
    if start::mounted_here(cfg, budget)? {
        return Ok(());
    }
    let source = env.migrate_source.as_deref().ok_or_else(|| {
        generic("migrate_from without OCF_RESKEY_CRM_meta_migrate_source: not called by Pacemaker?")
    })?;
    let nonce = offered_nonce(cfg.mmp_device(), &mmp_name(cfg, source))?;
    match &cfg.holder {
        Holder::Ext4 => start::gate(cfg, FenceFlags::default(), Some(nonce)),
        Holder::Mmpd(m) => start::hold_and_mount(cfg, m, Some(nonce), budget),
    }
}

/// The nonce of the offer from `source` to this node that the block of `dev` carries.
fn offered_nonce(dev: &Path, source: &str) -> Res<u64> {
    let fs = MmpFs::open_path(dev, Access::ReadOnly).map_err(device_error)?;
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
            dev.display(),
            crate::output::handoff_line(&other).unwrap_or_else(|| format!(
                "it is {} under node '{}'",
                blk.seq_class().name(),
                blk.nodename()
            ))
        ))),
    }
}
