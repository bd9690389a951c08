//! `mmp-tool handoff`: the source's offer (`--to`), `--confirm` and `--rollback` of a planned
//! handoff (libmmp::protocol::claim::handoff; the target's side is `mount/claim --handoff`).

use super::claim::{claim_progress, refusal};
use super::local::{local_mmpd, node_name_or_host, run_dir_or_default};
use crate::cli::HandoffArgs;
use crate::error::Error;
use crate::exit::Outcome;
use crate::output::print_result;
use libmmp::fs::MmpFs;
use libmmp::host::busy;
use libmmp::io::device::{Access, Device};
use libmmp::ondisk::handoff::{format_nonce, HandoffRecord};
use libmmp::protocol::claim::handoff::{self, HandoffError};
use libmmp::protocol::claim::{self, ClaimOptions};
use libmmp::protocol::clock::SystemClock;
use libmmp::protocol::seq::random_seq;
use serde::Serialize;
use std::time::Duration;

#[derive(Serialize)]
struct HandoffJson {
    device: String,
    /// `offer`, `confirm` or `rollback`.
    step: &'static str,
    done: bool,
    /// `offered`, `confirmed`, `rolled_back`, `cancelled`, or the refusal (`nonce_mismatch`,
    /// `not_confirmed`, `target_holds`, ...).
    result: &'static str,
    message: String,
    nonce: Option<String>,
    source: Option<String>,
    target: Option<String>,
    /// For rollback: `fast`, `after_full_wait` or `cancelled`.
    rollback_path: Option<&'static str>,
    elapsed_seconds: f64,
}

pub fn run(args: &HandoffArgs) -> Result<Outcome, Error> {
    let path = &args.dev.device;
    let dev = path.display().to_string();
    let mut js = HandoffJson {
        device: dev.clone(),
        step: if args.to.is_some() {
            "offer"
        } else if args.confirm.is_some() {
            "confirm"
        } else {
            "rollback"
        },
        done: false,
        result: "",
        message: String::new(),
        nonce: None,
        source: None,
        target: None,
        rollback_path: None,
        elapsed_seconds: 0.0,
    };
    let access = if args.confirm.is_some() {
        Access::ReadOnly
    } else {
        Access::ReadWrite
    };
    let fs = MmpFs::open_path(path, access)?;
    fs.require_mmp()?;
    if args.confirm.is_none() {
        if let Some(msg) = local_use(args)? {
            js.result = "in_use_here";
            js.message = msg;
            return finish(args, js);
        }
    }
    let outcome = match (&args.to, args.confirm) {
        (Some(target), _) => offer(&fs, args, target, &mut js),
        (None, Some(nonce)) => confirm(&fs, args, nonce, &mut js),
        (None, None) => rollback(&fs, args, &mut js),
    };
    match outcome {
        Ok(()) => js.done = true,
        Err(e) => {
            js.result = e.name();
            js.message = refusal(e)?;
        }
    }
    finish(args, js)
}

fn finish(args: &HandoffArgs, js: HandoffJson) -> Result<Outcome, Error> {
    print_result(args.json, &js, js.done, &js.message)?;
    Ok(if js.done {
        Outcome::Done
    } else {
        Outcome::Refused
    })
}

/// Refuse an offer or rollback while this host still uses the device: an mmpd holds it, or it
/// is mounted (the source must let go before it offers; a rollback only hands it back CLEAN).
fn local_use(args: &HandoffArgs) -> Result<Option<String>, Error> {
    let path = &args.dev.device;
    if let Some(msg) = local_mmpd(&run_dir_or_default(args.run_dir.as_deref()), path) {
        return Ok(Some(msg));
    }
    let users = busy::local_users(path).map_err(|source| libmmp::Error::Io {
        device: path.display().to_string(),
        op: "looking for this host's mounts of it (/proc/self/mountinfo)",
        offset: 0,
        source,
    })?;
    let mounted: Vec<_> = users
        .iter()
        .filter(|u| matches!(u, busy::LocalUse::Mounted { .. }))
        .collect();
    Ok(mounted.first().map(|u| {
        format!(
            "{}: {u} on this host: {} first; nothing written",
            path.display(),
            u.next_step()
        )
    }))
}

fn options(fs: &MmpFs<Device>, args: &HandoffArgs) -> ClaimOptions {
    ClaimOptions {
        nodename: node_name_or_host(args.node_name.as_deref()),
        bdevname: claim::bdevname_of(fs.device_name()),
        check_interval: libmmp::ondisk::mmp::EXT4_MMP_MIN_CHECK_INTERVAL,
        poll: Duration::from_millis(args.poll_ms),
    }
}

fn fill(js: &mut HandoffJson, rec: &HandoffRecord, elapsed: Duration) {
    js.nonce = Some(format_nonce(rec.nonce));
    js.source = Some(rec.source.clone());
    js.target = Some(rec.target.clone());
    js.elapsed_seconds = elapsed.as_secs_f64();
}

fn offer(
    fs: &MmpFs<Device>,
    args: &HandoffArgs,
    target: &str,
    js: &mut HandoffJson,
) -> Result<(), HandoffError> {
    let opts = options(fs, args);
    let mut progress = claim_progress(fs.device_name(), args.quiet || args.json);
    let o = handoff::offer(
        fs,
        &SystemClock::default(),
        &mut random_seq,
        &mut handoff::random_nonce,
        &opts,
        target,
        &mut progress,
    )?;
    fill(js, &o.record, o.elapsed);
    let nonce = format_nonce(o.record.nonce);
    js.result = "offered";
    js.message = format!(
        "offered '{dev}' to node '{target}' with nonce {nonce} (verified {:.1} s). On '{target}': \
         `mmp-tool mount {dev} DIR --handoff {nonce}`; then `mmp-tool handoff {dev} --confirm {nonce}`. \
         To take it back before '{target}' claims it: `mmp-tool handoff {dev} --rollback`",
        o.elapsed.as_secs_f64(),
        dev = js.device,
    );
    Ok(())
}

fn confirm(
    fs: &MmpFs<Device>,
    args: &HandoffArgs,
    nonce: u64,
    js: &mut HandoffJson,
) -> Result<(), HandoffError> {
    let mut progress = claim_progress(fs.device_name(), args.quiet || args.json);
    let c = handoff::confirm(
        fs,
        &SystemClock::default(),
        nonce,
        Duration::from_millis(args.poll_ms),
        &mut progress,
    )?;
    fill(js, &c.record, c.waited);
    js.result = "confirmed";
    js.message = format!(
        "confirmed: node '{}' holds '{}' (its holder wrote sequence {:#010x}); the source '{}' can no longer roll back",
        c.record.target, js.device, c.block.mmp_seq, c.record.source
    );
    Ok(())
}

fn rollback(
    fs: &MmpFs<Device>,
    args: &HandoffArgs,
    js: &mut HandoffJson,
) -> Result<(), HandoffError> {
    let opts = options(fs, args);
    let mut progress = claim_progress(fs.device_name(), args.quiet || args.json);
    let r = handoff::rollback(
        fs,
        &SystemClock::default(),
        &mut random_seq,
        &opts,
        args.nonce,
        &mut progress,
    )?;
    fill(js, &r.record, r.elapsed);
    js.rollback_path = Some(r.path.name());
    let dev = &js.device;
    (js.result, js.message) = match r.path {
        handoff::RollbackPath::Cancelled => ("cancelled", format!(
            "cancelled the handoff of '{dev}' from '{}' to '{}': the target can no longer claim it; the block is live under this node's name, so a claim waits it out (full wait)",
            r.record.source, r.record.target
        )),
        _ => ("rolled_back", format!(
            "rolled back the handoff of '{dev}' to '{}' in {:.1} s: the block is CLEAN under this node's name again; mount it with `mmp-tool mount`",
            r.record.target,
            r.elapsed.as_secs_f64()
        )),
    };
    Ok(())
}
