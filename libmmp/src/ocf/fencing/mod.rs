//! Pacemaker's fencing records: did the cluster power NODE off (or reset it) after NODE last
//! wrote the MMP block? Only then may an agent take the fence-confirmed fast path
//! (`mmp-tool mount --fenced`); every other answer keeps the full MMP wait.
//!
//! What counts (each rule below is why a record may be trusted, or why it may not):
//! - A `fence_event` for the node with `status="success"` and action `off` or `reboot`.
//! - Completed strictly later than the block's last update time (`mmp_time`). An older record
//!   is from an earlier incident: the node came back and wrote since. This compares the
//!   fencer's clock with the old holder's: cluster nodes must keep time (chrony/NTP). If the
//!   holder's clock ran ahead, its last write looks later than the fence and the fast path is
//!   not taken (safe). If it ran behind by more than the time between its last write and the
//!   fence, an older record may qualify; the short watch of `--fenced` still refuses any holder
//!   that writes during it.
//! - Carried out by a fence device, not by a person: Pacemaker records `stonith_admin
//!   --confirm` with the delegate "a human" (`fenced_handle_manual_confirmation` in
//!   daemons/fenced/fenced_remote.c, Pacemaker 2.1.5), and watchdog self-fencing with no
//!   delegate at all (`remote_op_watchdog_done`: the op is finished without a reply).
//! - The history does not say which device did it, so every device that can fence the node
//!   (`stonith_admin --list NODE`) must be a power or storage fence: a CIB stonith resource
//!   whose agent is not a self-fencing or assumed one ([`UNTRUSTED_AGENTS`], e.g. fence_sbd,
//!   whose "success" is msgwait having passed, not the node being seen off). A device that is
//!   not in the CIB (Pacemaker's internal `watchdog` device) cannot be judged and disqualifies.
//!
//! Formats (Pacemaker 2.1.5, Debian 12): `stonith_admin --history NODE --verbose
//! --output-as=xml` prints `<fence_event action target client origin status delegate
//! completed/>` inside `<pacemaker-result><list>` (lib/fencing/st_output.c
//! `stonith_event_xml`, lib/pacemaker/pcmk_fence.c `pcmk__fence_history`); `completed` is
//! `YYYY-MM-DD HH:MM:SSZ` or with ` +HH:MM` (lib/common/iso8601.c `crm_time_as_string`).
//! `stonith_admin --list NODE --output-as=xml` prints `<item name="device">ID</item>`
//! (`pcmk__fence_registered`, lib/common/output_xml.c `xml_list_item`).

use std::collections::BTreeMap;
use std::io::Read;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// Fence agents whose "success" does not mean a device saw the node off: sbd's poison pill
/// and watchdog (success = a wait passed; a node paused by its hypervisor wakes up and
/// writes), kdump (the node is alive in a capture kernel), test and manual devices.
/// Space-separated, as the mmp-fs agent's `untrusted_fence_agents` parameter takes them.
pub const UNTRUSTED_AGENTS: &str = "fence_sbd external/sbd fence_watchdog fence_kdump \
external/kdumpcheck fence_dummy fence_manual meatware external/ssh ssh null suicide";

/// One entry of Pacemaker's fencing history.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FenceEvent {
    pub action: String,
    pub target: String,
    pub status: String,
    pub delegate: Option<String>,
    pub origin: Option<String>,
    /// Completion, seconds since the epoch (absent for pending operations).
    pub completed: Option<i64>,
}

/// Why Pacemaker's output could not be read.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ParseError {
    #[error("not XML: {0}")]
    Xml(String),
    #[error("fence_event without '{0}'")]
    Missing(&'static str),
    #[error("fence_event completed='{0}' is not a Pacemaker time (YYYY-MM-DD HH:MM:SSZ)")]
    Time(String),
}

/// The answer for one node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// A device fenced the node after its last write: the fast path may be used.
    Confirmed(FenceEvent),
    /// No such record (or it cannot be trusted): use the full wait. The reason names why.
    Unconfirmed(String),
}

/// Every `fence_event` in `stonith_admin --history ... --output-as=xml` (or crm_mon's XML).
pub fn parse_history(xml: &str) -> Result<Vec<FenceEvent>, ParseError> {
    let doc = roxmltree::Document::parse(xml).map_err(|e| ParseError::Xml(e.to_string()))?;
    let events = doc
        .descendants()
        .filter(|n| n.has_tag_name("fence_event"))
        .map(|n| {
            let need = |a: &'static str| n.attribute(a).ok_or(ParseError::Missing(a));
            let completed = match n.attribute("completed") {
                Some(t) => Some(parse_time(t).ok_or_else(|| ParseError::Time(t.to_string()))?),
                None => None,
            };
            Ok(FenceEvent {
                action: need("action")?.to_string(),
                target: need("target")?.to_string(),
                status: need("status")?.to_string(),
                delegate: n.attribute("delegate").map(str::to_string),
                origin: n.attribute("origin").map(str::to_string),
                completed,
            })
        })
        .collect::<Result<Vec<_>, _>>()?;
    Ok(events)
}

/// The device ids in `stonith_admin --list NODE --output-as=xml`.
pub fn parse_device_list(xml: &str) -> Result<Vec<String>, ParseError> {
    let doc = roxmltree::Document::parse(xml).map_err(|e| ParseError::Xml(e.to_string()))?;
    Ok(doc
        .descendants()
        .filter(|n| n.has_tag_name("item") && n.attribute("name") == Some("device"))
        .filter_map(|n| n.text().map(|t| t.trim().to_string()))
        .filter(|t| !t.is_empty())
        .collect())
}

/// Stonith resources in a CIB (`cibadmin --query --scope resources`): id -> agent type
/// (`fence_ipmilan`, `external/sbd`: the provider-less stonith class names its plugin so).
pub fn parse_stonith_types(cib: &str) -> Result<BTreeMap<String, String>, ParseError> {
    let doc = roxmltree::Document::parse(cib).map_err(|e| ParseError::Xml(e.to_string()))?;
    Ok(doc
        .descendants()
        .filter(|n| n.has_tag_name("primitive") && n.attribute("class") == Some("stonith"))
        .filter_map(|n| {
            Some((
                n.attribute("id")?.to_string(),
                n.attribute("type")?.to_string(),
            ))
        })
        .collect())
}

/// `YYYY-MM-DD HH:MM:SS` followed by `Z` or ` +HH:MM` / ` -HH:MM` -> seconds since the epoch.
pub fn parse_time(s: &str) -> Option<i64> {
    let s = s.trim();
    let (date, rest) = s.split_once(' ')?;
    let (clock, offset) = match rest.strip_suffix('Z') {
        Some(c) => (c, 0),
        None => {
            let (c, off) = rest.split_once(' ')?;
            (c, parse_offset(off)?)
        }
    };
    let num = |t: &str, len: usize| -> Option<i64> {
        (t.len() == len && t.bytes().all(|b| b.is_ascii_digit())).then(|| t.parse().ok())?
    };
    let mut d = date.split('-');
    let (y, m, day) = (num(d.next()?, 4)?, num(d.next()?, 2)?, num(d.next()?, 2)?);
    let mut c = clock.split(':');
    let (h, mi, sec) = (num(c.next()?, 2)?, num(c.next()?, 2)?, num(c.next()?, 2)?);
    if d.next().is_some() || c.next().is_some() {
        return None;
    }
    if !(1..=12).contains(&m) || !(1..=31).contains(&day) || h > 23 || mi > 59 || sec > 60 {
        return None;
    }
    Some(days_from_civil(y, m, day) * 86_400 + h * 3600 + mi * 60 + sec - offset)
}

fn parse_offset(off: &str) -> Option<i64> {
    let sign = match off.as_bytes().first()? {
        b'+' => 1,
        b'-' => -1,
        _ => return None,
    };
    let (h, m) = off[1..].split_once(':')?;
    if h.len() != 2 || m.len() != 2 {
        return None;
    }
    let (h, m): (i64, i64) = (h.parse().ok()?, m.parse().ok()?);
    (h < 24 && m < 60).then_some(sign * (h * 3600 + m * 60))
}

/// Days from 1970-01-01 to a proleptic Gregorian date (H. Hinnant's `days_from_civil`).
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// What the decision is made from: the node, the block's last write, what Pacemaker said.
pub struct Evidence<'a> {
    pub target: &'a str,
    /// The MMP block's `mmp_time` (the old holder's clock, seconds since the epoch).
    pub last_write: i64,
    pub events: &'a [FenceEvent],
    /// Devices that can fence `target` (`stonith_admin --list`).
    pub devices: &'a [String],
    /// Stonith resources in the CIB: id -> agent type.
    pub types: &'a BTreeMap<String, String>,
    /// Agents whose success is not trusted ([`UNTRUSTED_AGENTS`] unless configured).
    pub untrusted: &'a [String],
}

/// Apply the rules of this module's documentation.
pub fn decide(ev: &Evidence) -> Decision {
    let t = ev.target;
    let done: Vec<&FenceEvent> = ev
        .events
        .iter()
        .filter(|e| e.target == t && e.status == "success")
        .filter(|e| e.action == "off" || e.action == "reboot")
        .collect();
    let after: Vec<&FenceEvent> = done
        .iter()
        .copied()
        .filter(|e| e.completed.is_some_and(|c| c > ev.last_write))
        .collect();
    if after.is_empty() {
        return Decision::Unconfirmed(match done.len() {
            0 => format!("Pacemaker has no successful off/reboot of {t} in its fencing history"),
            _ => format!(
                "{t}'s last successful fence completed before it last wrote the MMP block (at {}): it came back since",
                ev.last_write
            ),
        });
    }
    let by_device: Vec<&&FenceEvent> = after
        .iter()
        .filter(|e| e.delegate.as_deref().is_some_and(|d| d != "a human"))
        .collect();
    let Some(event) = by_device.iter().max_by_key(|e| e.completed) else {
        return Decision::Unconfirmed(format!(
            "the fence of {t} after its last write was confirmed by hand (stonith_admin --confirm) or by watchdog self-fencing, not by a device"
        ));
    };
    if ev.devices.is_empty() {
        return Decision::Unconfirmed(format!("no registered fence device can fence {t}"));
    }
    for d in ev.devices {
        match ev.types.get(d) {
            None => {
                return Decision::Unconfirmed(format!(
                    "fence device '{d}' for {t} is not a stonith resource in the CIB (Pacemaker's watchdog device?): its success may be a self-fence"
                ))
            }
            Some(ty) if ev.untrusted.iter().any(|u| u == ty) => {
                return Decision::Unconfirmed(format!(
                    "fence device '{d}' ({ty}) can fence {t}, and its success only means a wait passed, not that the node was seen off"
                ))
            }
            Some(_) => {}
        }
    }
    Decision::Confirmed((**event).clone())
}

/// Ask the local Pacemaker (stonith_admin, cibadmin) and decide. Any failure to ask is an
/// `Unconfirmed` naming it: without an answer the full wait applies.
pub fn query(target: &str, last_write: i64, untrusted: &[String], limit: Duration) -> Decision {
    match gather(target, limit) {
        Ok((events, devices, types)) => decide(&Evidence {
            target,
            last_write,
            events: &events,
            devices: &devices,
            types: &types,
            untrusted,
        }),
        Err(why) => Decision::Unconfirmed(why),
    }
}

type Gathered = (Vec<FenceEvent>, Vec<String>, BTreeMap<String, String>);

fn gather(target: &str, limit: Duration) -> Result<Gathered, String> {
    let secs = limit.as_secs().max(1).to_string();
    let history = run(
        "stonith_admin",
        &[
            "--history",
            target,
            "--verbose",
            "--output-as=xml",
            "--timeout",
            &secs,
        ],
        limit,
    )?;
    let events = parse_history(&history).map_err(|e| format!("stonith_admin --history: {e}"))?;
    let list = run(
        "stonith_admin",
        &["--list", target, "--output-as=xml", "--timeout", &secs],
        limit,
    )?;
    let devices = parse_device_list(&list).map_err(|e| format!("stonith_admin --list: {e}"))?;
    let cib = run("cibadmin", &["--query", "--scope", "resources"], limit)?;
    let types = parse_stonith_types(&cib).map_err(|e| format!("cibadmin --query: {e}"))?;
    Ok((events, devices, types))
}

/// Run a Pacemaker tool with TZ=UTC (its times then end in `Z`), at most `limit`; its stdout.
fn run(program: &str, args: &[&str], limit: Duration) -> Result<String, String> {
    let path = super::find_program(program)
        .ok_or_else(|| format!("{program} is not installed (pacemaker-cli-utils)"))?;
    let mut child = Command::new(&path)
        .args(args)
        .env("TZ", "UTC")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .map_err(|e| format!("{program}: {e}"))?;
    let mut out = child.stdout.take().expect("piped stdout");
    let reader = std::thread::spawn(move || {
        let mut s = String::new();
        out.read_to_string(&mut s).map(|_| s)
    });
    let deadline = Instant::now() + limit;
    let status = loop {
        match child.try_wait().map_err(|e| format!("{program}: {e}"))? {
            Some(st) => break st,
            None if Instant::now() >= deadline => {
                let _ = child.kill();
                let _ = child.wait();
                return Err(format!(
                    "{program} did not answer within {} s",
                    limit.as_secs()
                ));
            }
            None => std::thread::sleep(Duration::from_millis(50)),
        }
    };
    let text = reader
        .join()
        .map_err(|_| format!("{program}: reader failed"))?
        .map_err(|e| format!("{program}: {e}"))?;
    if !status.success() {
        return Err(format!("{} {} failed ({status})", program, args.join(" ")));
    }
    Ok(text)
}

#[cfg(test)]
mod tests;
