//! `mmp-tool enable`: turn MMP on for an unmounted filesystem (libmmp::edit::enable).

use super::edit::finish_edit;
use crate::cli::EnableArgs;
use crate::error::Error;
use crate::exit::Outcome;
use libmmp::edit::{self, EditEnv, EditReport};

pub fn run(args: &EnableArgs) -> Result<Outcome, Error> {
    let path = &args.dev.device;
    let env = EditEnv::for_device(&path.display().to_string())?;
    let result = edit::open_for_edit(path).and_then(|fs| edit::enable(&fs, args.interval, &env));
    finish_edit("enable", path, args.json, result, describe)
}

fn describe(r: &EditReport) -> String {
    if !r.changed {
        return format!(
            "MMP is already enabled on {} (block {}, update interval {} s); nothing written",
            r.device, r.mmp_block, r.update_interval
        );
    }
    let group = match (r.group, r.group_was_block_uninit) {
        (Some(g), true) => format!(" in group {g}, whose block bitmap was initialised for it"),
        (Some(g), false) => format!(" in group {g}"),
        (None, _) => String::new(),
    };
    format!(
        "enabled MMP on {}: MMP block {}{group}, update interval {} s, check interval {} s; free blocks {} -> {}; {} backup superblock(s) and descriptor table(s) updated",
        r.device,
        r.mmp_block,
        r.update_interval,
        r.check_interval.unwrap_or(0),
        r.free_blocks_before,
        r.free_blocks_after,
        r.backup_groups.len()
    )
}
