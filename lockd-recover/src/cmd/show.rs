//! `lockd-recover show`: a statd directory's state number, records and malformed lines.

use super::Ctx;
use crate::cli::ShowArgs;
use crate::error::{Error, Exit};
use lockd_recover::statd::{MalformedLine, MonitorRecord, RecordDir, SkippedEntry, StatdDir};
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
}

pub fn run(a: &ShowArgs, ctx: &Ctx) -> Result<Exit, Error> {
    let rep = read(&StatdDir::open(&a.state_dir)?)?;
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
