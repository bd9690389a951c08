//! `mmp-tool status`: the MMP state now, no waiting.

use super::local::run_dir_or_default;
use crate::cli::StatusArgs;
use crate::error::Error;
use crate::exit::Outcome;
use crate::output::{block_report, format_time, print_json, print_out, BlockReport};
use libmmp::fs::MmpFs;
use libmmp::host::run_dir::{local_holder, HolderState};
use libmmp::io::device::Access;

#[derive(serde::Serialize)]
struct StatusJson<'a> {
    #[serde(flatten)]
    report: &'a BlockReport,
    /// The mmpd on this host that holds the device, if any.
    local_holder: Option<HolderState>,
}

pub fn run(args: &StatusArgs) -> Result<Outcome, Error> {
    let path = &args.dev.device;
    let fs = MmpFs::open_path(path, Access::ReadOnly)?;
    let (blk, csum) = fs.read_mmp_raw()?;
    let r = block_report(path, &fs, &blk, csum);
    // An mmpd on this host holding the device (its lock is held and its state file says so).
    let run_dir = run_dir_or_default(args.run_dir.as_deref());
    let holder = local_holder(&run_dir, path).ok().flatten();
    if args.json {
        print_json(&StatusJson {
            report: &r,
            local_holder: holder,
        })?;
    } else {
        print_out(&text(&r, holder.as_ref()))?;
    }
    Ok(Outcome::Done)
}

/// The report as `status` prints it.
fn text(r: &BlockReport, holder: Option<&HolderState>) -> String {
    let meaning = match r.state {
        "clean" => "cleanly unmounted; no node has it mounted",
        "fsck" => "e2fsck/tune2fs/debugfs has it open read-write, or was killed while it had",
        "live" => "a node is updating it, or crashed while it was (run `mmp-tool check` to tell)",
        "unknown" => "unknown sequence: not safe to mount",
        _ => "MMP block magic is bad: not safe to mount; run e2fsck -f",
    };
    let mut t = String::new();
    t += &format!("device:           {}\n", r.device);
    t += &format!(
        "filesystem:       {} uuid {}{}\n",
        r.fs_type.as_deref().unwrap_or("ext2/3/4"),
        r.uuid,
        if r.label.is_empty() {
            String::new()
        } else {
            format!(" label '{}'", r.label)
        }
    );
    t += &format!("state:            {} ({meaning})\n", r.state);
    t += &format!("sequence:         {:#010x}\n", r.sequence);
    t += &format!(
        "last update:      node '{}' device '{}'\n",
        r.node_name, r.device_name
    );
    t += &format!(
        "update time:      {} ({} s ago)\n",
        r.time_utc, r.age_seconds
    );
    t += &format!(
        "intervals:        update {} s, check {} s (check waits {} s for a live sequence)\n",
        r.update_interval, r.check_interval, r.check_wait_seconds
    );
    t += &format!(
        "MMP block:        {} ({}-byte blocks)\n",
        r.block_number, r.block_size
    );
    t += &format!(
        "checksum:         {:#010x} {}\n",
        r.checksum,
        match r.checksum_status {
            "valid" => "(valid)".to_string(),
            "not_used" => "(not used: no metadata_csum)".to_string(),
            _ => format!(
                "(INVALID, expected {:#010x})",
                r.checksum_computed.unwrap_or(0)
            ),
        }
    );
    if let Some(line) = crate::output::handoff_line(&r.handoff) {
        t += &format!("handoff:          {line}\n");
    }
    if let Some(h) = holder {
        t += &format!(
            "held by:          mmpd pid {} on this host ({} since {}, sequence {:#010x} at that change, interval {} ms, fence {}{})\n",
            h.pid,
            h.state.map_or("unknown state", |p| p.name()),
            format_time(h.since),
            h.seq,
            h.interval_ms,
            h.fence,
            if h.reason.is_empty() {
                String::new()
            } else {
                format!(": {}", h.reason)
            }
        );
    }
    t
}
