#![no_main]
//! RPC replies and NSM/rpcbind bodies from the network: must never panic.
use libfuzzer_sys::fuzz_target;
use lockd_recover::{nsm, rpc};

fuzz_target!(|data: &[u8]| {
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
});
