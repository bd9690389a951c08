//! `mmp-tool check`: the pre-mount gate.

use crate::cli::CheckArgs;
use crate::error::Error;
use crate::exit::Outcome;
use crate::output::{format_time, print_result};
use crate::progress::Countdown;
use libmmp::fs::MmpFs;
use libmmp::io::device::Access;
use libmmp::ondisk::mmp::MmpBlock;
use libmmp::protocol::check::{check, CheckOptions, CheckReport, SafeReason, Verdict};
use libmmp::protocol::clock::{wall_now, SystemClock};
use serde::Serialize;
use std::time::Duration;

#[derive(Serialize)]
struct Holder {
    node_name: String,
    device_name: String,
    sequence: u32,
    time: u64,
    time_utc: String,
}

impl From<&MmpBlock> for Holder {
    fn from(b: &MmpBlock) -> Self {
        Holder {
            node_name: b.nodename(),
            device_name: b.bdevname(),
            sequence: b.mmp_seq,
            time: b.mmp_time,
            time_utc: format_time(b.mmp_time),
        }
    }
}

#[derive(Serialize)]
struct CheckJson<'a> {
    device: &'a str,
    verdict: &'static str,
    safe: bool,
    exit_code: u8,
    message: String,
    /// The block's last writer: the holder when in use, otherwise who wrote it last.
    last_update: Holder,
    /// The block as first read, when it differs from `last_update`.
    first_read: Option<Holder>,
    check_interval: u32,
    /// The wait a live sequence needs, whole seconds rounded up (the kernel's, or the holder's
    /// fence bound + margin when `fence_tag` is set).
    wait_seconds: u64,
    /// What the kernel waits for this block.
    kernel_wait_seconds: u64,
    /// The holder's self-fence bound, when the block carries a valid one and it was honoured.
    fence_tag: Option<libmmp::ondisk::fence_tag::FenceTag>,
    elapsed_seconds: f64,
    reads: u32,
}

fn who(b: &MmpBlock) -> String {
    format!(
        "node '{}' device '{}' at {} (sequence {:#010x}, {} s ago by this host's clock)",
        b.nodename(),
        b.bdevname(),
        format_time(b.mmp_time),
        b.mmp_seq,
        i128::from(wall_now()) - i128::from(b.mmp_time)
    )
}

fn message(dev: &str, r: &CheckReport) -> String {
    match &r.verdict {
        Verdict::Safe(SafeReason::Clean) => format!("it is safe to mount '{dev}', MMP is clean"),
        Verdict::Safe(SafeReason::Stale) => match r.fence_tag {
            Some(t) => format!(
                "it is safe to mount '{dev}': the MMP sequence did not change for {:.1} s, longer than its holder's self-fence bound ({:.1} s, {:?}), so its last writer ({}) has been reset",
                r.wait.as_secs_f64(),
                f64::from(t.bound_ms) / 1000.0,
                t.kind,
                who(&r.first)
            ),
            None => format!(
                "it is safe to mount '{dev}': the MMP sequence did not change for {} s, so its last writer ({}) is gone",
                r.wait.as_secs(),
                who(&r.first)
            ),
        },
        Verdict::InUse { block } if block.seq_class() == libmmp::ondisk::mmp::SeqClass::Clean => format!(
            "'{dev}' was IN USE until a moment ago: its holder released it (MMP now clean) {:.1} s into the check; last update by {}. Not mounting on a block that was just changing: run the check again.",
            r.elapsed.as_secs_f64(),
            who(block)
        ),
        Verdict::InUse { block } => format!(
            "'{dev}' is IN USE on another node: the MMP block changed {:.1} s into the check; last update by {}. Do not mount.",
            r.elapsed.as_secs_f64(),
            who(block)
        ),
        Verdict::FsckRunning => format!(
            "'{dev}': e2fsck, tune2fs or debugfs has the filesystem open (MMP sequence FSCK), or was killed while it had; last update by {}. Do not mount. If you are sure no node uses it, reset with `tune2fs -f -E clear_mmp {dev}`.",
            who(&r.first)
        ),
        Verdict::UnknownSeq(s) => format!(
            "'{dev}': unknown MMP sequence {s:#010x} (undergoing an unknown operation); last update by {}. Do not mount. If you are sure no node uses it, reset with `tune2fs -f -E clear_mmp {dev}`.",
            who(&r.first)
        ),
        Verdict::BadChecksum { stored, computed } => format!(
            "'{dev}': MMP block checksum does not match (stored {stored:#010x}, computed {computed:#010x}); last update by {}. Do not mount. If no node uses it, `e2fsck -f {dev}` repairs the block.",
            who(&r.first)
        ),
        Verdict::Undecided => format!(
            "'{dev}': not decided: no change seen in {:.1} s, but a live sequence must stay unchanged for {} s before it is safe (--timeout ran out). Last update by {}.",
            r.elapsed.as_secs_f64(),
            r.wait.as_secs(),
            who(&r.first)
        ),
    }
}

/// Safe to mount, do not mount (as e2mmpstatus: in use, FSCK, unknown sequence, bad
/// checksum), or `--timeout` ran out first.
fn outcome(verdict: &Verdict) -> Outcome {
    match verdict {
        Verdict::Safe(_) => Outcome::Done,
        Verdict::Undecided => Outcome::Undecided,
        Verdict::InUse { .. }
        | Verdict::FsckRunning
        | Verdict::UnknownSeq(_)
        | Verdict::BadChecksum { .. } => Outcome::Refused,
    }
}

pub fn run(args: &CheckArgs) -> Result<Outcome, Error> {
    let path = &args.dev.device;
    let fs = MmpFs::open_path(path, Access::ReadOnly)?;
    let dev = fs.device_name().to_string();
    let opts = CheckOptions {
        poll: Duration::from_millis(args.poll_ms),
        timeout: args.timeout,
        honor_fence_tag: !args.ignore_fence_tag,
    };
    let what = format!("watching the MMP block of {dev}");
    let mut countdown = Countdown::new(args.quiet);
    let report = check(&fs, &SystemClock::default(), opts, &mut |elapsed, total| {
        countdown.tick(&what, elapsed, total)
    })?;
    drop(countdown);
    tracing::debug!(reads = report.reads, elapsed = ?report.elapsed, verdict = report.verdict.name(), "check finished");
    let outcome = outcome(&report.verdict);
    let msg = message(&dev, &report);
    let (last, first) = match &report.verdict {
        Verdict::InUse { block } => (Holder::from(block), Some(Holder::from(&report.first))),
        _ => (Holder::from(&report.first), None),
    };
    let json = CheckJson {
        device: &dev,
        verdict: report.verdict.name(),
        safe: outcome == Outcome::Done,
        exit_code: outcome.exit_code(),
        message: msg,
        last_update: last,
        first_read: first,
        check_interval: report.check_interval,
        wait_seconds: report.wait.as_millis().div_ceil(1000) as u64,
        kernel_wait_seconds: report.kernel_wait.as_secs(),
        fence_tag: report.fence_tag,
        elapsed_seconds: report.elapsed.as_secs_f64(),
        reads: report.reads,
    };
    print_result(args.json, &json, outcome == Outcome::Done, &json.message)?;
    Ok(outcome)
}
