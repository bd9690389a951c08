//! `mmp-tool disable`: turn MMP off for an unmounted filesystem (libmmp::edit::disable).

use super::edit::{finish_edit, settle};
use crate::cli::DisableArgs;
use crate::error::Error;
use crate::exit::Outcome;
use crate::progress::Countdown;
use libmmp::edit::{self, EditEnv, EditReport};
use libmmp::protocol::clock::SystemClock;

pub fn run(args: &DisableArgs) -> Result<Outcome, Error> {
    let path = &args.dev.device;
    let env = EditEnv::for_device(&path.display().to_string())?;
    let what = format!("watching the claimed MMP block of {}", path.display());
    let mut countdown = Countdown::new(args.quiet);
    let result = edit::open_for_edit(path).and_then(|fs| {
        edit::disable(
            &fs,
            &env,
            &SystemClock::default(),
            settle(args.full_wait),
            &mut |e, t| countdown.tick(&what, e, t),
        )
    });
    drop(countdown);
    finish_edit("disable", path, args.json, result, describe)
}

fn describe(r: &EditReport) -> String {
    if !r.changed {
        return format!("MMP is not enabled on {}; nothing written", r.device);
    }
    format!(
        "disabled MMP on {}: block {} zeroed and freed (the claim was watched for {:.1} s); free blocks {} -> {}; {} backup superblock(s) and descriptor table(s) updated",
        r.device,
        r.mmp_block,
        r.watched_seconds,
        r.free_blocks_before,
        r.free_blocks_after,
        r.backup_groups.len()
    )
}
