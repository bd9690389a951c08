//! `lockd-recover show`: a statd directory's state number, records and malformed lines.

use super::Ctx;
use crate::cli::ShowArgs;
use crate::error::{Error, Exit};
use lockd_recover::ledger::{self, LedgerV4Client};
use lockd_recover::statd::{MalformedLine, MonitorRecord, RecordDir, SkippedEntry, StatdDir};
use lockd_recover::v4state::{self, V4Client};
use serde::Serialize;

#[derive(Serialize)]
struct Rec {
    dir: &'static str,
    host: String,
    record: MonitorRecord,
}

#[derive(Serialize)]
struct ShowReport {
    state: Option<i32>,
    records: Vec<Rec>,
    malformed: Vec<MalformedLine>,
    skipped: Vec<SkippedEntry>,
    /// NFSv4 clients connected to this node's nfsd now (/proc/fs/nfsd/clients).
    v4_clients: Vec<V4Client>,
    /// NFSv4 clients in the ledger of --state-dir, as the server that recorded it saw them.
    ledger_v4_clients: Vec<LedgerV4Client>,
}

pub fn run(a: &ShowArgs, ctx: &Ctx) -> Result<Exit, Error> {
    let mut rep = read(&StatdDir::open(&a.state_dir)?)?;
    rep.v4_clients = v4state::read_clients(&ctx.proc).map_err(ledger::LedgerError::from)?;
    if ledger::ledger_path(&a.state_dir).exists() {
        rep.ledger_v4_clients = ledger::read(&a.state_dir)?.v4_clients;
    }
    ctx.out.emit(&rep, |w| {
        writeln!(
            w,
            "state: {}",
            rep.state.map_or("none".into(), |s| s.to_string())
        )?;
        for r in &rep.records {
            writeln!(
                w,
                "{}/{}: mon_name {} my_name {}",
                r.dir, r.host, r.record.mon_name, r.record.my_name
            )?;
        }
        for m in &rep.malformed {
            writeln!(
                w,
                "malformed: {}:{}: {}",
                m.file.display(),
                m.line_no,
                m.reason
            )?;
        }
        for c in &rep.v4_clients {
            writeln!(
                w,
                "v4 client (connected): {} from {} (4.{}): {} lock stateids, {} opens, {} delegations",
                c.info.name,
                c.info.address,
                c.info.minor_version,
                c.locks.len(),
                c.opens,
                c.delegations
            )?;
            for l in &c.locks {
                writeln!(w, "  lock {} inode {} {}", l.stateid, l.ino, l.filename)?;
            }
        }
        for c in &rep.ledger_v4_clients {
            writeln!(
                w,
                "v4 client (ledger): {} from {} (4.{}): {} lock stateids",
                c.name,
                c.address,
                c.minor_version,
                c.locks.len()
            )?;
            for l in &c.locks {
                writeln!(w, "  lock {} inode {} {}", l.stateid, l.ino, l.filename)?;
            }
        }
        Ok(())
    })?;
    Ok(if rep.malformed.is_empty() {
        Exit::Ok
    } else {
        Exit::BadInput
    })
}

fn read(d: &StatdDir) -> Result<ShowReport, Error> {
    let mut rep = ShowReport {
        state: d.read_state()?,
        records: Vec::new(),
        malformed: Vec::new(),
        skipped: Vec::new(),
        v4_clients: Vec::new(),
        ledger_v4_clients: Vec::new(),
    };
    for which in [RecordDir::Sm, RecordDir::SmBak] {
        let l = d.list(which)?;
        for h in l.hosts {
            for r in h.records {
                rep.records.push(Rec {
                    dir: which.name(),
                    host: h.name.clone(),
                    record: r,
                });
            }
        }
        rep.malformed.extend(l.malformed);
        rep.skipped.extend(l.skipped);
    }
    Ok(rep)
}
