//! `mmp-tool release`: set the MMP block back to CLEAN after `mmp-tool claim`, but only if it
//! still holds our claim.

use super::local::{
    local_mmpd, node_name_or_host, read_claim_record, remove_claim_record, run_dir_or_default,
};
use crate::cli::ReleaseArgs;
use crate::error::Error;
use crate::exit::Outcome;
use crate::output::print_result;
use libmmp::fs::MmpFs;
use libmmp::host::run_dir::HolderState;
use libmmp::io::device::{Access, Device};
use libmmp::ondisk::mmp::{MmpBlock, SeqClass, EXT4_MMP_SEQ_CLEAN};
use libmmp::protocol::check::{self, CheckOptions, SafeReason, Verdict};
use libmmp::protocol::clock::{wall_now, SystemClock};
use serde::Serialize;

#[derive(Serialize)]
struct ReleaseJson {
    device: String,
    released: bool,
    result: &'static str,
    message: String,
}

pub fn run(args: &ReleaseArgs) -> Result<Outcome, Error> {
    let path = &args.dev.device;
    let dev = path.display().to_string();
    let run_dir = run_dir_or_default(args.run_dir.as_deref());
    if let Some(msg) = local_mmpd(&run_dir, path) {
        return report(args, false, "held_by_local_mmpd", msg);
    }
    let fs = MmpFs::open_path(path, Access::ReadWrite)?;
    let blk = fs.read_mmp()?;
    if blk.mmp_seq == EXT4_MMP_SEQ_CLEAN {
        remove_claim_record(&run_dir, path);
        let msg = format!("'{dev}': MMP is already clean");
        return report(args, true, "already_clean", msg);
    }
    let record = read_claim_record(&run_dir, path);
    if let Some(why) = not_ours(args, record.as_ref(), &blk) {
        let msg = format!(
            "'{dev}': NOT released: the MMP block holds sequence {:#010x} from node '{}' device '{}', and {why}. Another node may be using it; nothing was written.",
            blk.mmp_seq,
            blk.nodename(),
            blk.bdevname()
        );
        return report(args, false, "not_ours", msg);
    }
    if record.is_none() {
        if let Some(msg) = in_use(&fs, &blk, &dev)? {
            return report(args, false, "in_use", msg);
        }
    }
    let mut clean = blk.clone();
    clean.mmp_seq = EXT4_MMP_SEQ_CLEAN;
    clean.mmp_time = wall_now();
    fs.write_mmp_synced(&clean)?;
    remove_claim_record(&run_dir, path);
    let msg = format!(
        "released '{dev}': the MMP block (sequence {:#010x}) is CLEAN now",
        blk.mmp_seq
    );
    report(args, true, "released", msg)
}

/// Why the block is not ours to release, or `None` when it is: it holds the claim recorded
/// here, or (`--force`, no record) a live sequence under this node's name.
fn not_ours(args: &ReleaseArgs, record: Option<&HolderState>, blk: &MmpBlock) -> Option<String> {
    let node = node_name_or_host(args.node_name.as_deref());
    let ours = match record {
        Some(r) => r.seq == blk.mmp_seq && r.node_name == blk.nodename(),
        None => {
            args.force && blk.nodename() == node && matches!(blk.seq_class(), SeqClass::Live(_))
        }
    };
    if ours {
        return None;
    }
    Some(match record {
        Some(r) => format!(
            "our claim was sequence {:#010x} as node '{}'",
            r.seq, r.node_name
        ),
        None if args.force => {
            format!("it does not name this node ('{node}') with a live sequence")
        }
        None => "no claim by this host is recorded (use --force if the block names this node)"
            .to_string(),
    })
}

/// `--force` without a record: the refusal message unless `blk` stays unchanged for the
/// kernel's full wait.
fn in_use(fs: &MmpFs<Device>, blk: &MmpBlock, dev: &str) -> Result<Option<String>, Error> {
    // --force has only the node name to go by, and a kernel mount on this host (kmmpd
    // writes the host name) or another node with the same name writes it too. CLEAN over a
    // live block lets any other node's kernel mount at once, so first watch the block for
    // the kernel's full wait, as a mount would: only a stale sequence is released.
    let report = check::check(
        fs,
        &SystemClock::default(),
        CheckOptions::default(),
        &mut |_, _| {},
    )?;
    let still = report.first.encode_raw() == blk.encode_raw();
    if report.verdict == Verdict::Safe(SafeReason::Stale) && still {
        return Ok(None);
    }
    let now = match &report.verdict {
        Verdict::InUse { block } => block.clone(),
        _ => report.first.clone(),
    };
    Ok(Some(format!(
        "'{dev}': NOT released: the MMP block (sequence {:#010x}, node '{}') is {}: a node is using it (a kernel mount on this host writes this host's name too); nothing was written",
        now.mmp_seq,
        now.nodename(),
        if still { report.verdict.name().replace('_', " ") } else { "changed".to_string() }
    )))
}

fn report(
    args: &ReleaseArgs,
    released: bool,
    result: &'static str,
    message: String,
) -> Result<Outcome, Error> {
    let json = ReleaseJson {
        device: args.dev.device.display().to_string(),
        released,
        result,
        message,
    };
    print_result(args.json, &json, released, &json.message)?;
    Ok(if released {
        Outcome::Done
    } else {
        Outcome::Refused
    })
}
