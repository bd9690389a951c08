//! `mmp-tool release`: set the MMP block back to CLEAN after `mmp-tool claim`, but only if it
//! still holds our claim.

use super::local::{
    local_mmpd, node_name_or_host, read_claim_record, remove_claim_record, run_dir_or_default,
};
use crate::cli::ReleaseArgs;
use crate::common::{print_json, print_out};
use crate::error::Error;
use crate::exit::Outcome;
use libmmp::fs::MmpFs;
use libmmp::io::device::Access;
use libmmp::ondisk::mmp::{SeqClass, EXT4_MMP_SEQ_CLEAN};
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
    let node = node_name_or_host(args.node_name.as_deref());
    let done = |released: bool, result: &'static str, message: String| -> Result<Outcome, Error> {
        if args.json {
            print_json(&ReleaseJson {
                device: dev.clone(),
                released,
                result,
                message,
            })?;
        } else if released {
            print_out(&format!("mmp-tool: {message}\n"))?;
        } else {
            eprintln!("mmp-tool: {message}");
        }
        Ok(if released {
            Outcome::Done
        } else {
            Outcome::Refused
        })
    };
    if let Some(msg) = local_mmpd(&run_dir, path) {
        return done(false, "held_by_local_mmpd", msg);
    }
    let fs = MmpFs::open_path(path, Access::ReadWrite)?;
    let blk = fs.read_mmp()?;
    if blk.mmp_seq == EXT4_MMP_SEQ_CLEAN {
        remove_claim_record(&run_dir, path);
        return done(
            true,
            "already_clean",
            format!("'{dev}': MMP is already clean"),
        );
    }
    let record = read_claim_record(&run_dir, path);
    let ours = match &record {
        Some(r) => r.seq == blk.mmp_seq && r.node_name == blk.nodename(),
        None => {
            args.force && blk.nodename() == node && matches!(blk.seq_class(), SeqClass::Live(_))
        }
    };
    if !ours {
        let why = match &record {
            Some(r) => format!(
                "our claim was sequence {:#010x} as node '{}'",
                r.seq, r.node_name
            ),
            None if args.force => {
                format!("it does not name this node ('{node}') with a live sequence")
            }
            None => "no claim by this host is recorded (use --force if the block names this node)"
                .to_string(),
        };
        return done(
            false,
            "not_ours",
            format!(
                "'{dev}': NOT released: the MMP block holds sequence {:#010x} from node '{}' device '{}', and {why}. Another node may be using it; nothing was written.",
                blk.mmp_seq,
                blk.nodename(),
                blk.bdevname()
            ),
        );
    }
    if record.is_none() {
        // --force has only the node name to go by, and a kernel mount on this host (kmmpd
        // writes the host name) or another node with the same name writes it too. CLEAN over a
        // live block lets any other node's kernel mount at once, so first watch the block for
        // the kernel's full wait, as a mount would: only a stale sequence is released.
        let report = check::check(
            &fs,
            &SystemClock::default(),
            CheckOptions::default(),
            &mut |_, _| {},
        )?;
        let still = report.first.encode_raw() == blk.encode_raw();
        if report.verdict != Verdict::Safe(SafeReason::Stale) || !still {
            let now = match &report.verdict {
                Verdict::InUse { block } => block.clone(),
                _ => report.first.clone(),
            };
            return done(
                false,
                "in_use",
                format!(
                    "'{dev}': NOT released: the MMP block (sequence {:#010x}, node '{}') is {}: a node is using it (a kernel mount on this host writes this host's name too); nothing was written",
                    now.mmp_seq,
                    now.nodename(),
                    if still { report.verdict.name().replace('_', " ") } else { "changed".to_string() }
                ),
            );
        }
    }
    let mut clean = blk.clone();
    clean.mmp_seq = EXT4_MMP_SEQ_CLEAN;
    clean.mmp_time = wall_now();
    fs.write_mmp_synced(&clean)?;
    remove_claim_record(&run_dir, path);
    done(
        true,
        "released",
        format!(
            "released '{dev}': the MMP block (sequence {:#010x}) is CLEAN now",
            blk.mmp_seq
        ),
    )
}
