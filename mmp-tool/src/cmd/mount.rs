//! `mmp-tool mount`: claim with our protocol, write CLEAN, and mount at once, so the kernel
//! skips its own wait but no other node can have slipped in.

use super::claim::{refusal, run_claim, PathJson};
use super::local::{local_mmpd, run_dir_or_default};
use crate::cli::MountArgs;
use crate::error::Error;
use crate::exit::Outcome;
use crate::output::print_result;
use libmmp::fs::MmpFs;
use libmmp::io::device::Access;
use libmmp::protocol::claim::{self, ClaimMode, Handover};
use libmmp::protocol::clock::SystemClock;
use serde::Serialize;
use std::process::Command;
use std::time::Instant;

/// How a gated mount ended (printed by `mount`, mapped to OCF codes by the `mmp-fs` agent).
#[derive(Serialize)]
pub struct MountJson {
    device: String,
    dir: String,
    pub mounted: bool,
    /// Short name: `mounted`, or the refusal (`in_use`, `lost`, ...) or failure.
    pub result: &'static str,
    /// One line for the user: what happened, naming the device (and the other node).
    pub message: String,
    sequence: Option<u32>,
    claim_seconds: f64,
    /// From writing CLEAN to the start of mount(8): the window in which a node that mounts
    /// without claiming could also see CLEAN.
    handoff_window_ms: Option<f64>,
    mount_seconds: Option<f64>,
    /// Which claim path was taken (`--fenced`), for the agent's log too.
    #[serde(flatten)]
    pub path: PathJson,
    /// How a `--fenced` claim went, for the message.
    #[serde(skip)]
    claim_note: String,
}

impl MountJson {
    /// Record how the command ended.
    fn end(&mut self, outcome: Outcome, result: &'static str, message: String) -> Outcome {
        self.mounted = outcome == Outcome::Done;
        self.result = result;
        self.message = message;
        outcome
    }
}

pub fn run(args: &MountArgs) -> Result<Outcome, Error> {
    let (outcome, js) = gate_and_mount(args)?;
    print_result(args.opts.json, &js, js.mounted, &js.message)?;
    Ok(outcome)
}

/// The gate and the mount, without printing: claim with our protocol, write CLEAN, mount. An
/// `Err` is an error before or during the claim; every other end is in the returned record.
pub fn gate_and_mount(args: &MountArgs) -> Result<(Outcome, MountJson), Error> {
    let mut js = MountJson {
        device: args.dev.device.display().to_string(),
        dir: args.dir.display().to_string(),
        mounted: false,
        result: "",
        message: String::new(),
        sequence: None,
        claim_seconds: 0.0,
        handoff_window_ms: None,
        mount_seconds: None,
        path: PathJson::new(&args.opts, None),
        claim_note: String::new(),
    };
    let outcome = claim_and_mount(args, &mut js)?;
    Ok((outcome, js))
}

fn claim_and_mount(args: &MountArgs, js: &mut MountJson) -> Result<Outcome, Error> {
    let path = &args.dev.device;
    let flags = &args.opts;
    let (dev, dir) = (js.device.clone(), js.dir.clone());
    if let Some(msg) = local_mmpd(&run_dir_or_default(flags.run_dir.as_deref()), path) {
        return Ok(js.end(Outcome::Refused, "held_by_local_mmpd", msg));
    }
    if !args.dir.is_dir() {
        let msg = format!("{dir}: not a directory; nothing was written to '{dev}'");
        return Ok(js.end(Outcome::Failed, "bad_mount_point", msg));
    }
    let fs = MmpFs::open_path(path, Access::ReadWrite)?;
    fs.require_mmp()?;
    if libmmp::ondisk::area::is_area(fs.superblock()) {
        let msg = format!(
            "'{dev}' is an MMP area, not a filesystem: hold it with mmpd and mount the filesystem it protects while mmpd holds it; nothing was written"
        );
        return Ok(js.end(Outcome::Failed, "mmp_area", msg));
    }
    let clock = SystemClock::default();
    let claimed = match run_claim(&fs, &clock, flags, ClaimMode::HolderFollows) {
        Ok(run) => {
            js.path = run.path;
            js.claim_note = run.note;
            run.claimed
        }
        Err(e) => {
            let name = e.name();
            let msg = format!("{}; not mounting", refusal(e)?);
            return Ok(js.end(Outcome::Refused, name, msg));
        }
    };
    js.sequence = Some(claimed.block.mmp_seq);
    js.claim_seconds = claimed.elapsed.as_secs_f64();
    // Hand off: CLEAN (only over our own verified write, within the claim's lease), then
    // mount(2) at once. The kernel mounts a clean block without waiting and starts kmmpd.
    match claim::release_for_mount(&fs, &clock, &claimed)? {
        Handover::Clean => {}
        Handover::NotOurs(found) => {
            let msg = format!(
                "'{dev}': lost the claim at the handoff: node '{}' wrote sequence {:#010x}; not mounting",
                found.nodename(),
                found.mmp_seq
            );
            return Ok(js.end(Outcome::Refused, "lost", msg));
        }
        Handover::Expired { wrote, late_by } => {
            let msg = format!(
                "'{dev}': our claim's lease ran out {:.1} s before the handover to the kernel (this process was stopped or the device stalled), so another node may hold it by now; not mounting{}. Retry the mount",
                late_by.as_secs_f64(),
                if wrote { " (CLEAN was written late: a holder on another node rewrites it at its next update)" } else { ", nothing written" }
            );
            return Ok(js.end(Outcome::Refused, "lease_expired", msg));
        }
    }
    let clean_at = Instant::now();
    drop(fs);
    Ok(mount(args, js, clean_at))
}

/// Run mount(8) on the device, whose MMP block we have just set CLEAN at `clean_at`.
fn mount(args: &MountArgs, js: &mut MountJson, clean_at: Instant) -> Outcome {
    let mut cmd = Command::new("mount");
    cmd.arg("-t").arg(&args.fstype);
    if let Some(o) = &args.options {
        cmd.arg("-o").arg(o);
    }
    cmd.arg(&args.dev.device).arg(&args.dir);
    let started = Instant::now();
    let handoff_ms = started.duration_since(clean_at).as_secs_f64() * 1000.0;
    js.handoff_window_ms = Some(handoff_ms);
    let out = cmd.output();
    js.mount_seconds = Some(started.elapsed().as_secs_f64());
    match out {
        Ok(o) if o.status.success() => {
            let msg = format!(
                "mounted '{}' on {}: claimed{} with sequence {:#010x} in {:.1} s, CLEAN written and mount started {handoff_ms:.1} ms later; the kernel (kmmpd) holds it now",
                js.device,
                js.dir,
                js.claim_note,
                js.sequence.unwrap_or(0),
                js.claim_seconds,
            );
            js.end(Outcome::Done, "mounted", msg)
        }
        Ok(o) => {
            let msg = format!(
                "mount(8) failed ({}): {}; the MMP block was left CLEAN",
                o.status,
                String::from_utf8_lossy(&o.stderr).trim()
            );
            js.end(Outcome::Failed, "mount_failed", msg)
        }
        Err(e) => {
            let msg = format!("cannot run mount(8): {e}; the MMP block was left CLEAN");
            js.end(Outcome::Failed, "mount_failed", msg)
        }
    }
}
