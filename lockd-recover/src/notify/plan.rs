//! Steps 1, 2 and 4a: load the records, turn them into one target per (host file, name sent),
//! and resolve each host file's name to the address to notify.

use super::{ClientStatus, NotifyConfig, NotifyError};
use crate::statd::{HostFile, Listing, MonitorRecord, RecordDir, SkippedEntry, StatdDir};
use std::collections::HashMap;
use std::io;
use std::net::{IpAddr, ToSocketAddrs};
use std::time::{Duration, Instant};
use thiserror::Error;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Phase {
    Lookup,
    Notify,
    Done,
    Failed,
}

pub(super) struct Target {
    pub(super) host: String,
    pub(super) records: Vec<MonitorRecord>,
    pub(super) names: Vec<String>,
    pub(super) name_idx: usize,
    pub(super) addr: Option<IpAddr>,
    pub(super) phase: Phase,
    pub(super) port: u16,
    pub(super) next_send: Instant,
    pub(super) timeout: Duration,
    pub(super) sends_in_phase: u32,
    pub(super) packets: u32,
    pub(super) problem: Option<(ClientStatus, String)>,
    pub(super) done_at: Option<Instant>,
    pub(super) record_removed: bool,
    pub(super) acknowledged: Vec<String>,
    /// A request is out and its retry time has not come yet.
    pub(super) awaiting: bool,
}

/// Steps 1 and 2: retires `sm/` into `sm.bak/` and lists `sm.bak/`. Returns the listing and
/// every entry skipped on the way (both logged).
pub(super) fn load_records(dir: &StatdDir) -> Result<(Listing, Vec<SkippedEntry>), NotifyError> {
    let mut skipped = dir.retire_monitored()?;
    let mut listing = dir.list(RecordDir::SmBak)?;
    skipped.append(&mut listing.skipped);
    for m in &listing.malformed {
        tracing::warn!(file = %m.file.display(), line = m.line_no, reason = %m.reason, "malformed record kept");
    }
    for s in &skipped {
        tracing::warn!(path = %s.path.display(), reason = %s.reason, "entry skipped");
    }
    Ok((listing, skipped))
}

/// One target per (host file, name sent); several lines of one file that would send the same
/// name are covered by one notify.
pub(super) fn targets(hosts: &[HostFile], cfg: &NotifyConfig, started: Instant) -> Vec<Target> {
    let mut targets: Vec<Target> = Vec::new();
    let mut by_key: HashMap<(String, String), usize> = HashMap::new();
    for hf in hosts {
        for rec in &hf.records {
            let base = cfg.mon_name.clone().unwrap_or_else(|| rec.my_name.clone());
            let key = (hf.name.clone(), base.clone());
            if let Some(&i) = by_key.get(&key) {
                targets[i].records.push(rec.clone());
                continue;
            }
            by_key.insert(key, targets.len());
            targets.push(Target {
                host: hf.name.clone(),
                records: vec![rec.clone()],
                names: name_variants(&base, cfg.short_names),
                name_idx: 0,
                addr: None,
                phase: Phase::Lookup,
                port: 0,
                next_send: started,
                timeout: cfg.initial_timeout,
                sends_in_phase: 0,
                packets: 0,
                problem: None,
                done_at: None,
                record_removed: false,
                acknowledged: Vec::new(),
                awaiting: false,
            });
        }
    }
    targets
}

/// Step 4a: the address of each target, preferring the source address's family. A target
/// whose name does not resolve fails here.
pub(super) fn resolve_targets(targets: &mut [Target], source: Option<IpAddr>) {
    let (want_v4, want_v6) = match source {
        Some(IpAddr::V4(_)) => (true, false),
        Some(IpAddr::V6(_)) => (false, true),
        None => (true, true),
    };
    let hosts: Vec<String> = targets.iter().map(|t| t.host.clone()).collect();
    for (t, r) in targets
        .iter_mut()
        .zip(resolve_all(&hosts, want_v4, want_v6))
    {
        match r {
            Ok(ip) => {
                let ip = match ip {
                    IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
                    v4 => v4,
                };
                t.addr = Some(ip);
            }
            Err(e) => {
                t.phase = Phase::Failed;
                t.problem = Some((ClientStatus::ResolveFailed, e.to_string()));
            }
        }
    }
}

/// The names to send: `base`, then `base` cut at its first dot (sm-notify
/// `recv_notify_reply()`), unless `base` is an IP address.
pub fn name_variants(base: &str, short_names: bool) -> Vec<String> {
    let mut v = vec![base.to_owned()];
    if short_names && base.parse::<IpAddr>().is_err() {
        if let Some((short, _)) = base.split_once('.') {
            if !short.is_empty() {
                v.push(short.to_owned());
            }
        }
    }
    v
}

/// Why a record's host name gave no address (reported as the client's detail).
#[derive(Debug, Error)]
pub(super) enum ResolveError {
    #[error("cannot resolve {host}: {source}")]
    Lookup {
        host: String,
        #[source]
        source: io::Error,
    },
    #[error("{0} resolves to no address")]
    NoAddress(String),
    #[error("resolver thread panicked")]
    ThreadPanicked,
}

fn resolve(host: &str, want_v4: bool, want_v6: bool) -> Result<IpAddr, ResolveError> {
    if let Ok(ip) = host.parse::<IpAddr>() {
        return Ok(ip);
    }
    let addrs: Vec<IpAddr> = (host, 0u16)
        .to_socket_addrs()
        .map_err(|source| ResolveError::Lookup {
            host: host.to_owned(),
            source,
        })?
        .map(|a| a.ip())
        .collect();
    addrs
        .iter()
        .find(|a| (a.is_ipv4() && want_v4) || (a.is_ipv6() && want_v6))
        .or(addrs.first())
        .copied()
        .ok_or_else(|| ResolveError::NoAddress(host.to_owned()))
}

/// Resolves names in a few threads: literal addresses cost nothing, DNS names may block.
pub(super) fn resolve_all(
    hosts: &[String],
    want_v4: bool,
    want_v6: bool,
) -> Vec<Result<IpAddr, ResolveError>> {
    let needs_dns = hosts
        .iter()
        .filter(|h| h.parse::<IpAddr>().is_err())
        .count();
    if needs_dns < 4 {
        return hosts.iter().map(|h| resolve(h, want_v4, want_v6)).collect();
    }
    let threads = needs_dns.min(16);
    let chunk = hosts.len().div_ceil(threads);
    std::thread::scope(|s| {
        let handles: Vec<_> = hosts
            .chunks(chunk)
            .map(|c| {
                s.spawn(move || {
                    c.iter()
                        .map(|h| resolve(h, want_v4, want_v6))
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        handles
            .into_iter()
            .flat_map(|h| {
                h.join().unwrap_or_else(|_| {
                    (0..chunk)
                        .map(|_| Err(ResolveError::ThreadPanicked))
                        .collect()
                })
            })
            .collect()
    })
}
