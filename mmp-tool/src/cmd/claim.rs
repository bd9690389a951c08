//! `mmp-tool claim`: run the claim protocol once, for scripts. Also the pieces `release` and
//! `mount` share: opening read-write, refusing under a local mmpd, the claim record.

use crate::cli::DeviceArg;
use crate::common::{format_time, print_json, print_out};
use crate::exit::{self, Outcome, ToolError};
use clap::Args;
use libmmp::fs::MmpFs;
use libmmp::host::run_dir::{self, HolderState};
use libmmp::io::device::{Access, Device};
use libmmp::protocol::check::SafeReason;
use libmmp::protocol::claim::{self, ClaimError, ClaimMode, ClaimOptions, ClaimPhase, Claimed};
use libmmp::protocol::clock::SystemClock;
use libmmp::protocol::seq::random_seq;
use serde::Serialize;
use std::io::{IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::time::Duration;

#[derive(Debug, Args)]
pub struct ClaimArgs {
    #[command(flatten)]
    pub dev: DeviceArg,
    #[command(flatten)]
    pub opts: ClaimFlags,
}

/// Options shared by `claim` and `mount`.
#[derive(Debug, Args)]
pub struct ClaimFlags {
    /// Print a JSON object on stdout instead of text.
    #[arg(long)]
    pub json: bool,
    /// Name written into the MMP block [default: the host name].
    #[arg(long, value_name = "NAME")]
    pub node_name: Option<String>,
    /// Check interval to publish in the block, seconds (readers wait min(2*CI+1, CI+60) s).
    #[arg(long, value_name = "SECONDS", default_value_t = 5, value_parser = clap::value_parser!(u16).range(5..=300))]
    pub check_interval: u16,
    /// How often to re-read the MMP block while waiting, in milliseconds.
    #[arg(long, value_name = "MS", default_value_t = 100, value_parser = clap::value_parser!(u64).range(10..=10_000))]
    pub poll_ms: u64,
    /// mmpd's run directory (its locks) and where claims are recorded for `release`
    /// [default: $MMPD_RUN_DIR or /run/mmpd].
    #[arg(long, value_name = "DIR")]
    pub run_dir: Option<PathBuf>,
    /// Never show the countdown, even on a terminal.
    #[arg(short, long)]
    pub quiet: bool,
}

impl ClaimFlags {
    pub fn run_dir(&self) -> PathBuf {
        self.run_dir
            .clone()
            .unwrap_or_else(run_dir::run_dir_from_env)
    }

    pub fn node_name(&self) -> String {
        self.node_name
            .clone()
            .unwrap_or_else(libmmp::host::identity::nodename)
    }
}

/// Refuse when an mmpd on this host holds the device: writing under it would make it fence.
/// `Ok(Some(message))` is a refusal.
pub fn local_mmpd(run_dir: &Path, device: &Path) -> Option<String> {
    match run_dir::lock_holder(run_dir, device) {
        Ok(Some(pid)) => Some(format!(
            "{}: held by mmpd on this host{}; stop that mmpd (systemctl stop mmpd@NAME, or SIGTERM), which releases it",
            device.display(),
            pid.map(|p| format!(" (pid {p})")).unwrap_or_default()
        )),
        _ => None,
    }
}

fn record_path(run_dir: &Path, device: &Path) -> Option<PathBuf> {
    run_dir::device_key(device)
        .ok()
        .map(|k| run_dir.join(format!("{k}.claim")))
}

/// Record a won claim for `release` (best effort: a claim is valid without it).
pub fn record_claim(run_dir: &Path, device: &Path, c: &Claimed) {
    let st = HolderState {
        pid: std::process::id(),
        device: device.display().to_string(),
        state: Some(run_dir::HolderPhase::Claimed),
        node_name: c.block.nodename(),
        seq: c.block.mmp_seq,
        since: c.block.mmp_time,
        updated: c.block.mmp_time,
        check_interval: c.block.mmp_check_interval,
        ..Default::default()
    };
    let Some(path) = record_path(run_dir, device) else {
        return;
    };
    if let Err(e) =
        std::fs::create_dir_all(run_dir).and_then(|()| std::fs::write(&path, st.encode()))
    {
        tracing::warn!("cannot record the claim in {}: {e}", path.display());
    }
}

pub fn read_claim_record(run_dir: &Path, device: &Path) -> Option<HolderState> {
    let text = std::fs::read_to_string(record_path(run_dir, device)?).ok()?;
    Some(HolderState::decode(&text))
}

pub fn remove_claim_record(run_dir: &Path, device: &Path) {
    if let Some(p) = record_path(run_dir, device) {
        let _ = std::fs::remove_file(p);
    }
}

/// Run the claim with the real clock, a countdown on a terminal.
/// `mode`: `Bare` for `claim` (nothing writes after it), `HolderFollows` for `mount`.
pub fn run_claim(
    fs: &MmpFs<Device>,
    flags: &ClaimFlags,
    mode: ClaimMode,
) -> Result<Claimed, ClaimError> {
    let opts = ClaimOptions {
        nodename: flags.node_name(),
        bdevname: claim::bdevname_of(fs.device_name()),
        check_interval: flags.check_interval,
        poll: Duration::from_millis(flags.poll_ms),
    };
    let tty = !flags.quiet && !flags.json && std::io::stderr().is_terminal();
    let dev = fs.device_name().to_string();
    let mut last = (None, u64::MAX);
    let mut progress = |phase: ClaimPhase, elapsed: Duration, total: Duration| {
        if !tty {
            return;
        }
        let left = total.saturating_sub(elapsed).as_secs();
        if last != (Some(phase), left) {
            last = (Some(phase), left);
            let what = match phase {
                ClaimPhase::Watching => "watching the live MMP sequence of",
                ClaimPhase::Verifying => "verifying our claim on",
            };
            let mut e = std::io::stderr().lock();
            let _ = write!(e, "\r\x1b[Kmmp-tool: {what} {dev}: {left:>3} s left ");
            let _ = e.flush();
        }
    };
    let r = claim::claim_with(
        fs,
        &SystemClock::default(),
        // Without the kernel's CSPRNG the claim refuses before it writes: two nodes must not
        // pick sequences by a predictable rule.
        &mut random_seq,
        &opts,
        mode,
        &|| false,
        &mut progress,
    );
    if tty {
        eprint!("\r\x1b[K");
    }
    r
}

/// Map a claim failure to an exit code and message (refusals are exit 1, not errors).
pub fn refusal(e: ClaimError) -> Result<(u8, String), ToolError> {
    match e {
        ClaimError::Fs(e) if !e.is_bad_mmp_checksum() => Err(ToolError::Mmp(e)),
        e => Ok((exit::UNSAFE, e.to_string())),
    }
}

#[derive(Serialize)]
struct ClaimJson {
    device: String,
    claimed: bool,
    result: &'static str,
    message: String,
    sequence: Option<u32>,
    node_name: String,
    previous_state: Option<&'static str>,
    elapsed_seconds: f64,
    /// How long after the claim a reader who saw our write may call the block stale.
    stale_after_seconds: Option<f64>,
}

pub fn run(args: &ClaimArgs) -> Outcome {
    let path = &args.dev.device;
    let flags = &args.opts;
    let run_dir = flags.run_dir();
    let dev = path.display().to_string();
    let report = |claimed: bool, result, message: String, c: Option<&Claimed>| -> Outcome {
        if flags.json {
            print_json(&ClaimJson {
                device: dev.clone(),
                claimed,
                result,
                message,
                sequence: c.map(|c| c.block.mmp_seq),
                node_name: flags.node_name(),
                previous_state: c.map(|c| match c.previous {
                    SafeReason::Clean => "clean",
                    SafeReason::Stale => "stale",
                }),
                elapsed_seconds: c.map_or(0.0, |c| c.elapsed.as_secs_f64()),
                stale_after_seconds: c.map(|c| stale_after(c).as_secs_f64()),
            })?;
        } else if claimed {
            print_out(&format!("mmp-tool: {message}\n"))?;
        } else {
            eprintln!("mmp-tool: {message}");
        }
        Ok(if claimed { exit::OK } else { exit::UNSAFE })
    };
    if let Some(msg) = local_mmpd(&run_dir, path) {
        return report(false, "held_by_local_mmpd", msg, None);
    }
    let fs = MmpFs::open_path(path, Access::ReadWrite)?;
    fs.require_mmp()?;
    match run_claim(&fs, flags, ClaimMode::Bare) {
        Ok(c) => {
            record_claim(&run_dir, path, &c);
            let msg = format!(
                "claimed '{dev}': wrote sequence {:#010x} as node '{}' and nobody wrote after us for {:.1} s (the block was {} before). \
                 Nothing keeps writing it now: a node that saw our write may call it stale about {:.0} s from now. \
                 Start mmpd or mount before then (or use `mmp-tool mount`); `mmp-tool release` sets it back to CLEAN.",
                c.block.mmp_seq,
                c.block.nodename(),
                c.elapsed.as_secs_f64(),
                match c.previous {
                    SafeReason::Clean => "clean".to_string(),
                    SafeReason::Stale => format!(
                        "held by node '{}' (last update {}) whose writer was gone",
                        c.previous_block.nodename(),
                        format_time(c.previous_block.mmp_time)
                    ),
                },
                stale_after(&c).as_secs_f64()
            );
            report(true, "claimed", msg, Some(&c))
        }
        Err(e) => {
            let name = e.name();
            let (_, msg) = refusal(e)?;
            report(false, name, msg, None)
        }
    }
}

/// How long after the claim returned a reader that saw our write at once may call it stale.
fn stale_after(c: &Claimed) -> Duration {
    c.stale_after
}
