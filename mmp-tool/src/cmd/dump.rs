//! `mmp-tool dump`: every field, in `debugfs -R dump_mmp` format plus what debugfs omits.

use crate::cli::DumpArgs;
use crate::error::Error;
use crate::exit::Outcome;
use crate::output::{block_report, print_json, print_out};
use libmmp::fs::MmpFs;
use libmmp::io::device::Access;

pub fn run(args: &DumpArgs) -> Result<Outcome, Error> {
    let path = &args.dev.device;
    let fs = MmpFs::open_path(path, Access::ReadOnly)?;
    let (blk, csum) = fs.read_mmp_raw()?;
    let r = block_report(path, &fs, &blk, csum);
    if args.json {
        print_json(&r)?;
        return Ok(Outcome::Done);
    }
    // The first nine lines use debugfs' field names and formats (debugfs/debugfs.c
    // do_dump_mmp), with UTC instead of ctime for the date.
    let mut t = String::new();
    t += &format!("block_number: {}\n", r.block_number);
    t += &format!("update_interval: {}\n", r.update_interval);
    t += &format!("check_interval: {}\n", r.check_interval);
    t += &format!("sequence: {:08x}\n", r.sequence);
    t += &format!("time: {} -- {}\n", r.time, r.time_utc);
    t += &format!("node_name: {}\n", r.node_name);
    t += &format!("device_name: {}\n", r.device_name);
    t += &format!("magic: {:#x}\n", r.magic);
    t += &format!("checksum: {:#010x}\n", r.checksum);
    t += &format!("checksum_status: {}\n", r.checksum_status);
    if let Some(c) = r.checksum_computed {
        t += &format!("checksum_expected: {c:#010x}\n");
    }
    t += &format!("magic_valid: {}\n", r.magic_valid);
    t += &format!("state: {}\n", r.state);
    t += &format!("pad1: {}\n", r.pad1);
    t += &format!("pad2_nonzero_bytes: {}\n", r.pad2_nonzero_bytes);
    if let Some(line) = crate::output::handoff_line(&r.handoff) {
        t += &format!("handoff: {line}\n");
    }
    t += &format!("block_size: {}\n", r.block_size);
    t += &format!("effective_check_interval: {}\n", r.effective_check_interval);
    t += &format!("check_wait_seconds: {}\n", r.check_wait_seconds);
    print_out(&t)?;
    Ok(Outcome::Done)
}
