//! What each reply does to its target: an rpcbind answer gives statd's port (or says there is
//! none), an SM_NOTIFY answer acknowledges one name, and the last one removes the record.

use super::plan::{Phase, Target};
use super::send::Pending;
use super::{ClientStatus, NotifyConfig};
use crate::nsm;
use crate::rpc;
use crate::statd::{RecordDir, StatdDir};
use std::collections::HashMap;
use std::net::IpAddr;
use std::time::Instant;

/// Handles one datagram; returns false if it was ignored (unparsable or unknown XID).
pub(super) fn handle_reply(
    data: &[u8],
    now: Instant,
    cfg: &NotifyConfig,
    dir: &StatdDir,
    targets: &mut [Target],
    pending: &mut HashMap<u32, Pending>,
) -> bool {
    let reply = match rpc::parse_reply(data) {
        Ok(r) => r,
        Err(e) => {
            tracing::debug!(error = %e, "ignoring unparsable datagram");
            return false;
        }
    };
    let Some(p) = pending.remove(&reply.xid) else {
        tracing::debug!(xid = reply.xid, "ignoring reply with unknown XID");
        return false;
    };
    let t = &mut targets[p.idx];
    t.awaiting = false;
    if t.phase != p.phase || t.name_idx != p.name_idx {
        // A late answer to an earlier retransmission of a step already completed.
        return true;
    }
    let results = match reply.success_results() {
        Ok(r) => r,
        Err(why) => {
            t.problem = Some((ClientStatus::RpcError, why.to_string()));
            // statd may be gone or restarting: look its port up again on the next try.
            t.phase = Phase::Lookup;
            t.sends_in_phase = 0;
            return true;
        }
    };
    match p.phase {
        Phase::Lookup => on_lookup(t, results, now, cfg),
        Phase::Notify => on_notify(t, results, now, cfg, dir),
        Phase::Done | Phase::Failed => {}
    }
    true
}

/// rpcbind's answer: statd's UDP port, or 0 when no statd is registered.
fn on_lookup(t: &mut Target, results: &[u8], now: Instant, cfg: &NotifyConfig) {
    let port = match t.addr {
        Some(IpAddr::V4(_)) => nsm::decode_getport_result(results),
        _ => nsm::decode_getaddr_result(results),
    };
    match port {
        Ok(0) => {
            t.problem = Some((
                ClientStatus::NoStatd,
                "rpcbind answered: no statd (program 100024 v1 UDP) registered".into(),
            ));
        }
        Ok(port) => {
            t.port = port;
            t.phase = Phase::Notify;
            t.sends_in_phase = 0;
            t.next_send = now;
            t.timeout = cfg.initial_timeout;
        }
        Err(e) => t.problem = Some((ClientStatus::RpcError, format!("rpcbind reply: {e}"))),
    }
}

/// statd acknowledged one name: send the next variant, or finish and remove the record.
fn on_notify(t: &mut Target, results: &[u8], now: Instant, cfg: &NotifyConfig, dir: &StatdDir) {
    if let Err(e) = nsm::check_void_result(results) {
        t.problem = Some((ClientStatus::RpcError, format!("SM_NOTIFY reply: {e}")));
        return;
    }
    t.acknowledged.push(t.names[t.name_idx].clone());
    t.name_idx += 1;
    if t.name_idx < t.names.len() {
        t.next_send = now;
        t.sends_in_phase = 0;
        t.timeout = cfg.initial_timeout;
        return;
    }
    t.phase = Phase::Done;
    t.done_at = Some(now);
    t.problem = None;
    // Only now, after the final reply, is the record removed.
    let mut removed_all = true;
    for rec in &t.records {
        match dir.remove_record(RecordDir::SmBak, &t.host, rec) {
            Ok(true) => {}
            Ok(false) => removed_all = false,
            Err(e) => {
                removed_all = false;
                t.problem = Some((ClientStatus::NotifiedRecordKept, e.to_string()));
            }
        }
    }
    t.record_removed = removed_all;
    tracing::debug!(host = %t.host, "notified");
}
