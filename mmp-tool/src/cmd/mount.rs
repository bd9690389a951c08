//! `mmp-tool mount`: claim with our protocol, write CLEAN, and mount at once, so the kernel
//! skips its own wait but no other node can have slipped in.

use super::claim::{refusal, run_claim};
use super::local::{local_mmpd, run_dir_or_default};
use crate::cli::MountArgs;
use crate::common::{print_json, print_out};
use crate::error::Error;
use crate::exit::Outcome;
use libmmp::fs::MmpFs;
use libmmp::io::device::Access;
use libmmp::protocol::claim::{self, Release};
use serde::Serialize;
use std::process::Command;
use std::time::Instant;

#[derive(Serialize)]
struct MountJson {
    device: String,
    dir: String,
    mounted: bool,
    result: &'static str,
    message: String,
    sequence: Option<u32>,
    claim_seconds: f64,
    /// From writing CLEAN to the start of mount(8): the window in which a node that mounts
    /// without claiming could also see CLEAN.
    handoff_window_ms: Option<f64>,
    mount_seconds: Option<f64>,
}

pub fn run(args: &MountArgs) -> Result<Outcome, Error> {
    let path = &args.dev.device;
    let flags = &args.opts;
    let dev = path.display().to_string();
    let dir = args.dir.display().to_string();
    let mut js = MountJson {
        device: dev.clone(),
        dir: dir.clone(),
        mounted: false,
        result: "",
        message: String::new(),
        sequence: None,
        claim_seconds: 0.0,
        handoff_window_ms: None,
        mount_seconds: None,
    };
    let finish = |js: MountJson, outcome: Outcome| -> Result<Outcome, Error> {
        if flags.json {
            print_json(&js)?;
        } else if outcome == Outcome::Done {
            print_out(&format!("mmp-tool: {}\n", js.message))?;
        } else {
            eprintln!("mmp-tool: {}", js.message);
        }
        Ok(outcome)
    };
    if let Some(msg) = local_mmpd(&run_dir_or_default(flags.run_dir.as_deref()), path) {
        js.result = "held_by_local_mmpd";
        js.message = msg;
        return finish(js, Outcome::Refused);
    }
    if !args.dir.is_dir() {
        js.result = "bad_mount_point";
        js.message = format!("{dir}: not a directory; nothing was written to '{dev}'");
        return finish(js, Outcome::Failed);
    }
    let fs = MmpFs::open_path(path, Access::ReadWrite)?;
    fs.require_mmp()?;
    if libmmp::ondisk::area::is_area(fs.superblock()) {
        js.result = "mmp_area";
        js.message = format!(
            "'{dev}' is an MMP area, not a filesystem: hold it with mmpd and mount the filesystem it protects while mmpd holds it; nothing was written"
        );
        return finish(js, Outcome::Failed);
    }
    let claimed = match run_claim(
        &fs,
        flags,
        libmmp::protocol::claim::ClaimMode::HolderFollows,
    ) {
        Ok(c) => c,
        Err(e) => {
            js.result = e.name();
            js.message = format!("{}; not mounting", refusal(e)?);
            return finish(js, Outcome::Refused);
        }
    };
    js.sequence = Some(claimed.block.mmp_seq);
    js.claim_seconds = claimed.elapsed.as_secs_f64();
    // Hand off: CLEAN (only over our own verified write), then mount(2) at once. The kernel
    // mounts a clean block without waiting and starts kmmpd.
    match claim::release(&fs, &claimed.block, &[claimed.on_disk])? {
        Release::Clean(_) => {}
        Release::NotOurs(found) => {
            js.result = "lost";
            js.message = format!(
                "'{dev}': lost the claim at the handoff: node '{}' wrote sequence {:#010x}; not mounting",
                found.nodename(),
                found.mmp_seq
            );
            return finish(js, Outcome::Refused);
        }
    }
    let clean_at = Instant::now();
    drop(fs);
    let mut cmd = Command::new("mount");
    cmd.arg("-t").arg(&args.fstype);
    if let Some(o) = &args.options {
        cmd.arg("-o").arg(o);
    }
    cmd.arg(path).arg(&args.dir);
    let started = Instant::now();
    js.handoff_window_ms = Some(started.duration_since(clean_at).as_secs_f64() * 1000.0);
    let out = cmd.output();
    js.mount_seconds = Some(started.elapsed().as_secs_f64());
    match out {
        Ok(o) if o.status.success() => {
            js.mounted = true;
            js.result = "mounted";
            js.message = format!(
                "mounted '{dev}' on {dir}: claimed with sequence {:#010x} in {:.1} s, CLEAN written and mount started {:.1} ms later; the kernel (kmmpd) holds it now",
                claimed.block.mmp_seq,
                js.claim_seconds,
                js.handoff_window_ms.unwrap_or(0.0)
            );
            finish(js, Outcome::Done)
        }
        Ok(o) => {
            js.result = "mount_failed";
            js.message = format!(
                "mount(8) failed ({}): {}; the MMP block was left CLEAN",
                o.status,
                String::from_utf8_lossy(&o.stderr).trim()
            );
            finish(js, Outcome::Failed)
        }
        Err(e) => {
            js.result = "mount_failed";
            js.message = format!("cannot run mount(8): {e}; the MMP block was left CLEAN");
            finish(js, Outcome::Failed)
        }
    }
}
