//! `mmp-tool interval`: set the MMP update interval (libmmp::edit::set_interval).

use super::edit::{finish_edit, settle};
use crate::cli::IntervalArgs;
use crate::error::Error;
use crate::exit::Outcome;
use crate::progress::Countdown;
use libmmp::edit::{self, EditEnv, EditReport};
use libmmp::protocol::clock::SystemClock;

pub fn run(args: &IntervalArgs) -> Result<Outcome, Error> {
    let path = &args.dev.device;
    let env = EditEnv::for_device(&path.display().to_string())?;
    let what = format!("watching the claimed MMP block of {}", path.display());
    let mut countdown = Countdown::new(args.quiet);
    let result = edit::open_for_edit(path).and_then(|fs| {
        edit::set_interval(
            &fs,
            args.seconds,
            &env,
            &SystemClock::default(),
            settle(args.full_wait),
            &mut |e, t| countdown.tick(&what, e, t),
        )
    });
    drop(countdown);
    finish_edit("interval", path, args.json, result, describe)
}

fn describe(r: &EditReport) -> String {
    let ci = r.check_interval.unwrap_or(0);
    if !r.changed {
        return format!(
            "the MMP update interval of {} is already {} s (check interval {ci} s); nothing written",
            r.device, r.update_interval
        );
    }
    format!(
        "set the MMP update interval of {} to {} s and the check interval to {ci} s (the claim was watched for {:.1} s); {} backup superblock(s) updated",
        r.device,
        r.update_interval,
        r.watched_seconds,
        r.backup_groups.len()
    )
}
