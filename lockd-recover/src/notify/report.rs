//! The per-client outcome of a round, from the target's final state.

use super::plan::{Phase, Target};
use super::{ClientReport, ClientStatus, NotifyReport};
use std::time::Instant;

/// Adds target `t`'s outcome to `report` and counts it as notified or failed.
pub(super) fn add_client(report: &mut NotifyReport, t: Target, send_start: Instant) {
    let status = match t.phase {
        Phase::Done if t.record_removed => ClientStatus::Notified,
        Phase::Done => ClientStatus::NotifiedRecordKept,
        _ => t
            .problem
            .as_ref()
            .map_or(ClientStatus::NoReply, |(s, _)| *s),
    };
    let detail = match (&t.problem, t.phase) {
        (Some((_, d)), _) => Some(d.clone()),
        (None, Phase::Lookup) => Some(format!(
            "no answer from rpcbind at {} before the deadline",
            t.addr.map_or("?".into(), |a| a.to_string())
        )),
        (None, Phase::Notify) => Some(format!(
            "no answer to SM_NOTIFY at port {} before the deadline",
            t.port
        )),
        _ => None,
    };
    if status.reached() {
        report.notified += 1;
    } else {
        report.failed += 1;
        tracing::warn!(host = %t.host, status = ?status, detail = detail.as_deref().unwrap_or(""), "client not notified; record kept in sm.bak");
    }
    report.clients.push(ClientReport {
        host: t.host,
        address: t.addr,
        record_mon_names: t.records.iter().map(|r| r.mon_name.clone()).collect(),
        acknowledged: t.acknowledged,
        status,
        detail,
        packets: t.packets,
        elapsed_ms: t
            .done_at
            .map(|d| d.duration_since(send_start).as_millis() as u64),
        record_removed: t.record_removed,
    });
}
