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

/// /proc/fs/nfsd/clients/*/info and states as nfsd prints them.
pub fn lockd_nfsd_clients(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    let _ = lockd_recover::v4state::parse_info(&text);
    let _ = lockd_recover::v4state::parse_states(&text);
}

/// Kernel log records (/dev/kmsg) read after nfsd starts.
pub fn lockd_kmsg(data: &[u8]) {
    let _ = lockd_recover::kmsg::parse(&String::from_utf8_lossy(data));
}

/// Arbitrary bytes as nfsdcld's main.sqlite, read by the tracker check: an error, never a
/// panic.
pub fn lockd_tracker_db(data: &[u8]) {
    let path = std::env::temp_dir().join(format!(
        "lockd-tracker-fuzz-{}-{:?}.sqlite",
        std::process::id(),
        std::thread::current().id()
    ));
    if std::fs::write(&path, data).is_ok() {
        let _ = lockd_recover::tracker::read(&path);
        let _ = lockd_recover::tracker::reclaim_progress(&path);
        let _ = std::fs::remove_file(&path);
    }
}
