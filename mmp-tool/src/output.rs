//! What the subcommands print: stdout writes where a closed pipe is success, JSON, the result
//! line of a command, times, and the block report of `status` and `dump`.

use libmmp::fs::{ChecksumStatus, MmpFs};
use libmmp::io::device::Device;
use libmmp::io::probe;
use libmmp::ondisk::handoff::{format_nonce, HandoffRead};
use libmmp::ondisk::mmp::{MmpBlock, EXT4_MMP_MAGIC};
use libmmp::protocol::check::{check_interval, wait_time};
use libmmp::protocol::clock::wall_now;
use serde::Serialize;
use std::io::{self, Write};
use std::path::Path;
use std::time::{Duration, UNIX_EPOCH};

/// `mmp_time` as RFC 3339 UTC; the raw number when it is out of range.
pub fn format_time(t: u64) -> String {
    UNIX_EPOCH
        .checked_add(Duration::from_secs(t))
        .filter(|_| t < 253_402_300_800) // year 10000
        .map(|st| humantime::format_rfc3339_seconds(st).to_string())
        .unwrap_or_else(|| format!("@{t}"))
}

/// Everything known about a device's MMP block, for `status` and `dump`.
#[derive(Debug, Serialize)]
pub struct BlockReport {
    pub device: String,
    pub fs_type: Option<String>,
    pub uuid: String,
    pub label: String,
    pub block_size: u32,
    pub block_number: u64,
    pub update_interval: u16,
    pub check_interval: u16,
    pub state: &'static str,
    pub sequence: u32,
    pub sequence_hex: String,
    pub time: u64,
    pub time_utc: String,
    /// Seconds between `time` and this host's clock (negative: clock skew).
    pub age_seconds: i64,
    pub node_name: String,
    pub device_name: String,
    pub magic: u32,
    pub magic_valid: bool,
    pub checksum: u32,
    /// `valid`, `invalid` or `not_used` (no metadata_csum).
    pub checksum_status: &'static str,
    pub checksum_computed: Option<u32>,
    pub metadata_csum: bool,
    pub csum_seed_feature: bool,
    /// `max(update interval, 5, check_interval)`: what `check` uses.
    pub effective_check_interval: u32,
    /// How long `check` watches a live sequence.
    pub check_wait_seconds: u64,
    pub pad1: u16,
    pub pad2_nonzero_bytes: usize,
    /// A planned handoff's record in the padding (`none`, `valid`, `remnant` of an earlier
    /// one, or `newer` than this release reads).
    pub handoff: HandoffRead,
}

/// One line on a handoff record, for `status` and `dump` (`None` without one).
pub fn handoff_line(h: &HandoffRead) -> Option<String> {
    let rec = |r: &libmmp::ondisk::handoff::HandoffRecord| {
        format!(
            "{} -> {}, {} (nonce {}, offered {})",
            r.source,
            r.target,
            r.step.name().replace('_', " "),
            format_nonce(r.nonce),
            format_time(r.offered_at)
        )
    };
    match h {
        HandoffRead::None => None,
        HandoffRead::Valid(r) => Some(format!("in progress: {}", rec(r))),
        HandoffRead::Remnant(r) => Some(format!("earlier, no longer current: {}", rec(r))),
        HandoffRead::Newer { version } => Some(format!(
            "a record of version {version}, newer than this release reads: use the newer mmp-tool"
        )),
    }
}

pub fn block_report(
    path: &Path,
    fs: &MmpFs<Device>,
    blk: &MmpBlock,
    csum: ChecksumStatus,
) -> BlockReport {
    let sb = fs.superblock();
    let id = probe::identify(path);
    let ci = check_interval(sb.s_mmp_update_interval, blk.mmp_check_interval);
    let (checksum_status, checksum_computed) = match csum {
        ChecksumStatus::Valid => ("valid", None),
        ChecksumStatus::Invalid { computed } => ("invalid", Some(computed)),
        ChecksumStatus::NotUsed => ("not_used", None),
    };
    let magic_valid = blk.mmp_magic == EXT4_MMP_MAGIC;
    BlockReport {
        device: fs.device_name().to_string(),
        fs_type: id.fs_type,
        uuid: sb.uuid_string(),
        label: sb.label(),
        block_size: sb.block_size(),
        block_number: sb.s_mmp_block,
        update_interval: sb.s_mmp_update_interval,
        check_interval: blk.mmp_check_interval,
        state: if magic_valid {
            blk.seq_class().name()
        } else {
            "bad_magic"
        },
        sequence: blk.mmp_seq,
        sequence_hex: format!("{:08x}", blk.mmp_seq),
        time: blk.mmp_time,
        time_utc: format_time(blk.mmp_time),
        age_seconds: i64::try_from(wall_now()).unwrap_or(i64::MAX)
            - i64::try_from(blk.mmp_time).unwrap_or(i64::MAX),
        node_name: blk.nodename(),
        device_name: blk.bdevname(),
        magic: blk.mmp_magic,
        magic_valid,
        checksum: blk.mmp_checksum,
        checksum_status,
        checksum_computed,
        metadata_csum: sb.has_metadata_csum(),
        csum_seed_feature: sb.has_csum_seed(),
        effective_check_interval: ci,
        check_wait_seconds: wait_time(ci).as_secs(),
        pad1: blk.mmp_pad1,
        pad2_nonzero_bytes: blk.mmp_pad2.iter().filter(|&&b| b != 0).count(),
        handoff: blk.handoff(),
    }
}

/// Write to stdout; a closed pipe (`mmp-tool status | head -1`) is not an error.
pub fn print_out(text: &str) -> io::Result<()> {
    let mut out = io::stdout().lock();
    match out.write_all(text.as_bytes()).and_then(|_| out.flush()) {
        Err(e) if e.kind() == io::ErrorKind::BrokenPipe => Ok(()),
        r => r,
    }
}

/// Set once a command printed its JSON object: an error after that is already in it.
static JSON_PRINTED: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// Pretty JSON plus a newline.
pub fn print_json<T: Serialize>(v: &T) -> io::Result<()> {
    let s = serde_json::to_string_pretty(v).map_err(io::Error::other)?;
    JSON_PRINTED.store(true, std::sync::atomic::Ordering::Relaxed);
    print_out(&(s + "\n"))
}

/// The JSON of a command that failed before it had a result of its own (bad arguments, no such
/// device, not ext4, ...): `{"error": MESSAGE, "result": "error"|"refused", "exit_code": N}`.
/// Nothing when the command already printed its JSON (one object on stdout, always).
pub fn print_error_json(message: &str, outcome: crate::exit::Outcome) {
    if JSON_PRINTED.load(std::sync::atomic::Ordering::Relaxed) {
        return;
    }
    #[derive(Serialize)]
    struct ErrorJson<'a> {
        error: &'a str,
        result: &'static str,
        exit_code: u8,
    }
    let result = match outcome {
        crate::exit::Outcome::Refused => "refused",
        _ => "error",
    };
    let _ = print_json(&ErrorJson {
        error: message,
        result,
        exit_code: outcome.exit_code(),
    });
}

/// A command's result: with `--json` the JSON object on stdout; otherwise the message, on
/// stdout when the command did what was asked and on stderr (a diagnostic) when not.
pub fn print_result<T: Serialize>(
    json: bool,
    value: &T,
    succeeded: bool,
    message: &str,
) -> io::Result<()> {
    if json {
        print_json(value)
    } else if succeeded {
        print_out(&format!("mmp-tool: {message}\n"))
    } else {
        eprintln!("mmp-tool: {message}");
        Ok(())
    }
}
