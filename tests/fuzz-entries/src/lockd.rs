//! lockd-recover's parsers: RPC from the network, rpc.statd's files, /proc/locks, the ledger.

use lockd_recover::statd::{parse_file, MonitorRecord};
use lockd_recover::{ledger, locks, nsm, rpc};
use std::path::Path;

/// RPC replies and calls, and the NSM/rpcbind bodies inside them.
pub fn lockd_rpc_reply(data: &[u8]) {
    if let Ok(reply) = rpc::parse_reply(data) {
        if let Ok(results) = reply.success_results() {
            let _ = nsm::decode_getport_result(results);
            let _ = nsm::decode_getaddr_result(results);
            let _ = nsm::check_void_result(results);
            let _ = nsm::decode_sm_stat_res(results);
        }
    }
    if let Ok((_, args)) = rpc::parse_call(data) {
        let _ = nsm::StatChge::decode(args);
        let _ = nsm::SmMon::decode(args);
    }
}

/// `sm/` and `sm.bak/` record files: whatever parses re-encodes to a line that parses to the
/// same record.
pub fn lockd_statd_record(data: &[u8]) {
    let (records, _malformed) = parse_file(Path::new("fuzz"), data);
    for r in records {
        assert_eq!(MonitorRecord::parse_line(&r.to_line()).as_ref(), Ok(&r));
    }
}

/// `/proc/locks` text.
pub fn lockd_proc_locks(data: &[u8]) {
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = locks::parse(text);
    }
}

/// Lock ledger files read from shared storage.
pub fn lockd_ledger(data: &[u8]) {
    let _ = ledger::parse(Path::new("fuzz"), data);
}
