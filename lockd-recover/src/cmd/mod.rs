//! One file per subcommand; each `run` returns the exit code of a completed command or the
//! error that stopped it. Shared here: the report printer and the option conversions that more
//! than one subcommand uses.

pub mod grace;
pub mod handoff;
pub mod notify;
pub mod record;
pub mod release;
pub mod show;
pub mod start_nfsd;
pub mod takeover;
pub mod tracker;
pub mod wait_reclaim;

use crate::cli::{NotifyOpts, WaitArgs};
use crate::error::{Error, Exit};
use lockd_recover::knobs::ProcRoot;
use lockd_recover::ledger::{WaitOptions, WaitReport};
use lockd_recover::notify::{NotifyConfig, NotifyReport, PortChoice};
use lockd_recover::v4grace::{V4End, V4WaitReport};
use serde::Serialize;
use std::io::{self, Write};
use std::net::IpAddr;
use std::path::Path;
use std::time::Duration;

/// What every subcommand gets from the global options.
pub struct Ctx {
    pub out: Out,
    pub proc: ProcRoot,
}

pub struct Out {
    pub json: bool,
}

impl Out {
    /// Prints the JSON report or the human text. EPIPE (a closed pipe) is not an error.
    pub fn emit<T: Serialize>(
        &self,
        report: &T,
        human: impl FnOnce(&mut dyn Write) -> io::Result<()>,
    ) -> Result<(), Error> {
        let stdout = io::stdout();
        let mut w = stdout.lock();
        let r = if self.json {
            serde_json::to_writer_pretty(&mut w, report)
                .map_err(io::Error::from)
                .and_then(|()| writeln!(w))
        } else {
            human(&mut w)
        };
        match r {
            Err(e) if e.kind() == io::ErrorKind::BrokenPipe => Ok(()),
            Err(e) => Err(Error::Stdout(e)),
            Ok(()) => Ok(()),
        }
    }
}

fn notify_config(
    state_dir: &Path,
    source: Option<IpAddr>,
    o: &NotifyOpts,
    proc_root: &Path,
) -> NotifyConfig {
    let mut c = NotifyConfig::new(state_dir);
    c.proc_root = proc_root.to_path_buf();
    c.source_addr = source;
    c.mon_name = o.mon_name.clone();
    c.source_port = match o.source_port {
        None => PortChoice::Auto,
        Some(0) => PortChoice::Ephemeral,
        Some(p) => PortChoice::Fixed(p),
    };
    c.update_state = !o.no_update_state;
    c.short_names = !o.no_short_name;
    c.deadline = o.deadline;
    c.initial_timeout = o.retry_interval.max(Duration::from_millis(10));
    c.max_timeout = o.max_retry_interval.max(c.initial_timeout);
    c.max_rate = o.rate;
    c.max_in_flight = o.window as usize;
    c.rpcbind_port = o.rpcbind_port;
    c
}

fn print_notify(out: &Out, r: &NotifyReport) -> Result<Exit, Error> {
    out.emit(r, |w| {
        match r.state {
            Some(s) => writeln!(
                w,
                "state {} -> {}",
                s.previous.map_or("none".into(), |p| p.to_string()),
                s.state
            )?,
            None => writeln!(w, "no clients recorded; state left alone")?,
        }
        for c in &r.clients {
            writeln!(
                w,
                "{:<24} {:<20} {}{}",
                c.host,
                format!("{:?}", c.status).to_lowercase(),
                c.acknowledged.join(","),
                c.detail
                    .as_deref()
                    .map_or(String::new(), |d| format!(" ({d})"))
            )?;
        }
        for m in &r.malformed {
            writeln!(
                w,
                "malformed (kept): {}:{}: {}",
                m.file.display(),
                m.line_no,
                m.reason
            )?;
        }
        for s in &r.skipped {
            writeln!(w, "skipped: {}: {}", s.path.display(), s.reason)?;
        }
        writeln!(
            w,
            "{} notified, {} not reached, {} ms",
            r.notified, r.failed, r.elapsed_ms
        )
    })?;
    for warn in &r.warnings {
        tracing::warn!("{warn}");
    }
    Ok(if r.all_reached() {
        Exit::Ok
    } else {
        Exit::Incomplete
    })
}

/// Whether `ip` is configured on an interface of this node (in this network namespace). The
/// interface list, not a test bind: with net.ipv4.ip_nonlocal_bind=1 (set on many HA nodes)
/// binding to any address succeeds.
pub fn ip_is_local(ip: IpAddr) -> io::Result<()> {
    let found = nix::ifaddrs::getifaddrs()?.any(|a| {
        a.address.is_some_and(|s| {
            let v4 = s.as_sockaddr_in().map(|x| IpAddr::V4(x.ip()));
            let v6 = s.as_sockaddr_in6().map(|x| IpAddr::V6(x.ip()));
            v4.or(v6) == Some(ip)
        })
    });
    if found {
        Ok(())
    } else {
        Err(io::Error::new(
            io::ErrorKind::AddrNotAvailable,
            "on no interface of this node",
        ))
    }
}

fn wait_opts(w: &WaitArgs) -> WaitOptions {
    WaitOptions {
        timeout: w.timeout,
        min_grace: w.min_grace,
        poll: Duration::from_millis(200),
        end_grace: if w.no_end_grace { None } else { Some(w.end) },
        max_age: w.max_age,
        v4_tracker: w
            .tracker_dir
            .as_ref()
            .map(|d| d.join(lockd_recover::tracker::DB_FILE)),
    }
}

/// Whether the v4 half of a wait left a client behind (grace ended at the deadline).
fn v4_incomplete(r: &WaitReport) -> bool {
    r.v4.as_ref()
        .is_some_and(|v| v.ended != Some(V4End::Kernel) && v.ended != Some(V4End::AlreadyEnded))
}

fn print_v4(w: &mut dyn Write, v: &V4WaitReport) -> io::Result<()> {
    match (v.ended, v.ended_after_ms) {
        (Some(V4End::AlreadyEnded), _) => writeln!(
            w,
            "NFSv4 grace: already over (skipped: no client in the tracker, or ended)"
        )?,
        (Some(V4End::Kernel), Some(ms)) => writeln!(
            w,
            "NFSv4 grace: ended by the kernel after {ms} ms (every client sent RECLAIM_COMPLETE)"
        )?,
        (Some(V4End::Deadline), Some(ms)) => writeln!(
            w,
            "NFSv4 grace: NOT ended by the kernel; ended at the deadline after {ms} ms"
        )?,
        _ => writeln!(w, "NFSv4 grace: still running (not ended: --no-end-grace)")?,
    }
    for n in &v.never_reconnected {
        writeln!(w, "NFSv4 client never reconnected: {n}")?;
    }
    for n in v.not_completed.iter().flatten() {
        writeln!(w, "NFSv4 client without RECLAIM_COMPLETE: {n}")?;
    }
    Ok(())
}

fn print_wait(out: &Out, r: &WaitReport) -> Result<Exit, Error> {
    out.emit(r, |w| {
        writeln!(
            w,
            "{} of {} recorded locks held again on {} (ledger from {}, {} s old)",
            r.reclaimed.len(),
            r.expected,
            r.fs.display(),
            r.ledger_node,
            r.ledger_age_ms / 1000
        )?;
        for m in &r.missing {
            writeln!(
                w,
                "not reclaimed: inode {} {} {}-{} (pid {} before)",
                m.ino,
                m.access,
                m.start,
                m.end.map_or("EOF".into(), |e| e.to_string()),
                m.pid
            )?;
        }
        match &r.grace_ended {
            Some(g) => writeln!(w, "grace ended after {} ms: {:?}", r.waited_ms, g.ended)?,
            None => writeln!(w, "grace not ended (waited {} ms)", r.waited_ms)?,
        }
        match &r.v4 {
            Some(v) => print_v4(w, v),
            None => Ok(()),
        }
    })?;
    Ok(if r.all_reclaimed && !v4_incomplete(r) {
        Exit::Ok
    } else {
        Exit::Incomplete
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ip_is_local_looks_at_the_interfaces() {
        assert!(ip_is_local("127.0.0.1".parse().unwrap()).is_ok());
        // TEST-NET-1: on no interface, whatever ip_nonlocal_bind says.
        let e = ip_is_local("192.0.2.1".parse().unwrap()).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::AddrNotAvailable);
    }
}
