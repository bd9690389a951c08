//! `mmp-tool clear`: reset a stuck MMP block to CLEAN after watching it (libmmp::edit::clear).

use super::edit::finish_edit;
use crate::cli::ClearArgs;
use crate::error::Error;
use crate::exit::Outcome;
use crate::progress::Countdown;
use libmmp::edit::{self, EditEnv, EditReport};
use libmmp::protocol::clock::SystemClock;

pub fn run(args: &ClearArgs) -> Result<Outcome, Error> {
    let path = &args.dev.device;
    let env = EditEnv::for_device(&path.display().to_string())?;
    let what = format!("watching the MMP block of {}", path.display());
    let mut countdown = Countdown::new(args.quiet);
    let result = edit::open_for_edit(path).and_then(|fs| {
        edit::clear(
            &fs,
            &env,
            &SystemClock::default(),
            args.force,
            &mut |e, t| countdown.tick(&what, e, t),
        )
    });
    drop(countdown);
    finish_edit("clear", path, args.json, result, describe)
}

fn describe(r: &EditReport) -> String {
    let was = r.previous_state.unwrap_or("unknown").replace('_', " ");
    if !r.changed {
        return format!(
            "the MMP block {} of {} is already clean; nothing written",
            r.mmp_block, r.device
        );
    }
    let watched = if r.watched_seconds > 0.0 {
        format!("after it stayed unchanged for {:.1} s", r.watched_seconds)
    } else {
        "without watching it (--force)".to_string()
    };
    format!(
        "reset the MMP block {} of {} from {was} to CLEAN {watched}",
        r.mmp_block, r.device
    )
}
