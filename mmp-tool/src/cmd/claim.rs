//! `mmp-tool claim`: run the claim protocol once, for scripts. Also what `mount` shares with
//! it: running the claim with a countdown, and a refusal's message.

use super::local::{local_mmpd, node_name_or_host, record_claim, run_dir_or_default};
use crate::cli::{ClaimArgs, ClaimFlags};
use crate::error::Error;
use crate::exit::Outcome;
use crate::output::{format_time, print_result};
use crate::progress::{seconds_left, Countdown};
use libmmp::fs::MmpFs;
use libmmp::io::device::{Access, Device};
use libmmp::ondisk::handoff::format_nonce;
use libmmp::protocol::check::SafeReason;
use libmmp::protocol::claim::handoff::{self, HandoffError};
use libmmp::protocol::claim::{
    self, ClaimError, ClaimMode, ClaimOptions, ClaimPath, ClaimPhase, Claimed,
};
use libmmp::protocol::clock::SystemClock;
use libmmp::protocol::seq::random_seq;
use serde::Serialize;
use std::time::Duration;

/// How a claim of `claim` or `mount` went: the won claim, its path for `--json`, and a note
/// for the message (empty on the normal path).
pub struct ClaimRun {
    pub claimed: Claimed,
    pub path: PathJson,
    pub note: String,
}

/// Run the claim with the real clock, a countdown on a terminal: the target's claim of a
/// planned handoff with `--handoff`, the fence-confirmed one with `--fenced`, else the normal
/// one. `mode`: `Bare` for `claim` (nothing writes after it), `HolderFollows` for `mount`.
/// `clock` is the claim's: [`Claimed::lease_until`] is on it.
pub fn run_claim(
    fs: &MmpFs<Device>,
    clock: &SystemClock,
    flags: &ClaimFlags,
    mode: ClaimMode,
) -> Result<ClaimRun, HandoffError> {
    let opts = ClaimOptions {
        nodename: node_name_or_host(flags.node_name.as_deref()),
        bdevname: claim::bdevname_of(fs.device_name()),
        check_interval: flags.check_interval,
        poll: Duration::from_millis(flags.poll_ms),
    };
    let mut progress = claim_progress(fs.device_name(), flags.quiet || flags.json);
    // Without the kernel's CSPRNG the claim refuses before it writes: two nodes must not
    // pick sequences by a predictable rule.
    let never = || false;
    if let Some(nonce) = flags.handoff {
        let c = handoff::claim_handoff(
            fs,
            clock,
            &mut random_seq,
            &opts,
            mode,
            nonce,
            &never,
            &mut progress,
        )?;
        let note = format!(
            " on the handoff from '{}' (nonce {}, verified {:.1} s)",
            c.record.source,
            format_nonce(nonce),
            c.claimed.verify_wait.as_secs_f64()
        );
        let path = PathJson {
            claim_path: "handoff",
            handoff_from: Some(c.record.source.clone()),
            handoff_nonce: Some(format_nonce(nonce)),
            ..PathJson::default()
        };
        return Ok(ClaimRun {
            claimed: c.claimed,
            path,
            note,
        });
    }
    let (claimed, path) = match flags.fence.node() {
        Some(f) => claim::claim_fenced(
            fs,
            clock,
            &mut random_seq,
            &opts,
            mode,
            &f,
            &never,
            &mut progress,
        )
        .map(|c| (c.claimed, Some(c.path)))?,
        None => (
            claim::claim_with(
                fs,
                clock,
                &mut random_seq,
                &opts,
                mode,
                &never,
                &mut progress,
            )?,
            None,
        ),
    };
    Ok(ClaimRun {
        claimed,
        path: PathJson::new(flags, path.as_ref()),
        note: path_note(path.as_ref()),
    })
}

/// The countdown on a terminal and, every 5 s, an info log line (hidden at mmp-tool's default
/// level): the `mmp-fs` agent logs at info, and Pacemaker logs an agent's stderr, so a long
/// wait shows its progress.
pub fn claim_progress(dev: &str, quiet: bool) -> impl FnMut(ClaimPhase, Duration, Duration) {
    let dev = dev.to_string();
    let mut countdown = Countdown::new(quiet);
    let mut logged = None;
    move |phase: ClaimPhase, elapsed: Duration, total: Duration| {
        let what = match phase {
            ClaimPhase::Watching => "watching the live MMP sequence of",
            ClaimPhase::Verifying => "verifying our claim on",
        };
        let left = seconds_left(elapsed, total);
        if logged != Some((phase, left.div_ceil(5))) {
            logged = Some((phase, left.div_ceil(5)));
            tracing::info!("{what} {dev}: {left} s left");
        }
        countdown.show(|| format!("{what} {dev}: {left:>3} s left "));
    }
}

/// How a claim went, for `--json` of `claim` and `mount`: which path (`normal`, `fenced` for
/// `--fenced`, `handoff` for `--handoff`), the fenced node, the short watch, why a `--fenced`
/// claim fell back to the normal path, and the handoff's source and nonce.
#[derive(Serialize, Default)]
pub struct PathJson {
    pub claim_path: &'static str,
    pub fenced_node: Option<String>,
    pub fenced_watch_seconds: Option<f64>,
    pub fallback: Option<&'static str>,
    pub handoff_from: Option<String>,
    pub handoff_nonce: Option<String>,
}

impl PathJson {
    pub fn new(flags: &ClaimFlags, path: Option<&ClaimPath>) -> Self {
        PathJson {
            claim_path: path.map_or("normal", ClaimPath::name),
            fenced_node: flags.fence.fenced.clone(),
            fenced_watch_seconds: path.and_then(ClaimPath::watch).map(|w| w.as_secs_f64()),
            fallback: match path {
                Some(ClaimPath::Normal { fallback }) => Some(fallback.name()),
                _ => None,
            },
            ..PathJson::default()
        }
    }
}

/// The message of a claim refused because the device is (or may be) in use, or a handoff that
/// is not ours to take ([`Outcome::Refused`]), or the error when the claim failed for another
/// reason.
pub fn refusal(e: HandoffError) -> Result<String, Error> {
    match e {
        HandoffError::Claim(ClaimError::Fs(e)) if !e.is_bad_mmp_checksum() => Err(Error::Mmp(e)),
        e if e.is_error() || e.is_usage() => Err(Error::Handoff(e)),
        e => Ok(e.to_string()),
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
    #[serde(flatten)]
    path: PathJson,
}

pub fn run(args: &ClaimArgs) -> Result<Outcome, Error> {
    let path = &args.dev.device;
    let flags = &args.opts;
    let run_dir = run_dir_or_default(flags.run_dir.as_deref());
    if let Some(msg) = local_mmpd(&run_dir, path) {
        return report(args, "held_by_local_mmpd", msg, None);
    }
    let fs = MmpFs::open_path(path, Access::ReadWrite)?;
    fs.require_mmp()?;
    match run_claim(&fs, &SystemClock::default(), flags, ClaimMode::Bare) {
        Ok(run) => {
            record_claim(&run_dir, path, &run.claimed);
            let msg = claimed_message(&path.display().to_string(), &run.claimed, &run.note);
            report(args, "claimed", msg, Some(run))
        }
        Err(e) => {
            let name = e.name();
            let msg = refusal(e)?;
            report(args, name, msg, None)
        }
    }
}

/// Print the result (`claimed` is `Some` when we won) and say how the claim ended.
fn report(
    args: &ClaimArgs,
    result: &'static str,
    message: String,
    run: Option<ClaimRun>,
) -> Result<Outcome, Error> {
    let flags = &args.opts;
    let (claimed, path) = match run {
        Some(r) => (Some(r.claimed), r.path),
        None => (None, PathJson::new(flags, None)),
    };
    let claimed = claimed.as_ref();
    let json = ClaimJson {
        device: args.dev.device.display().to_string(),
        claimed: claimed.is_some(),
        result,
        message,
        sequence: claimed.map(|c| c.block.mmp_seq),
        node_name: node_name_or_host(flags.node_name.as_deref()),
        previous_state: claimed.map(|c| match c.previous {
            SafeReason::Clean => "clean",
            SafeReason::Stale => "stale",
        }),
        elapsed_seconds: claimed.map_or(0.0, |c| c.elapsed.as_secs_f64()),
        stale_after_seconds: claimed.map(|c| c.stale_after.as_secs_f64()),
        path,
    };
    print_result(flags.json, &json, claimed.is_some(), &json.message)?;
    Ok(if claimed.is_some() {
        Outcome::Done
    } else {
        Outcome::Refused
    })
}

fn claimed_message(dev: &str, c: &Claimed, note: &str) -> String {
    format!(
        "claimed '{dev}'{note}: wrote sequence {:#010x} as node '{}' and nobody wrote after us for {:.1} s (the block was {} before). \
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
        c.stale_after.as_secs_f64()
    )
}

/// How a `--fenced` claim went, for messages: empty without `--fenced`.
pub fn path_note(path: Option<&ClaimPath>) -> String {
    match path {
        None => String::new(),
        Some(ClaimPath::Fenced { watch }) => format!(
            " on the fence-confirmed path (the block stood still for {:.1} s)",
            watch.as_secs_f64()
        ),
        Some(ClaimPath::Normal { fallback }) => format!(
            " on the normal path: the block did not qualify for --fenced ({})",
            fallback.name()
        ),
    }
}
