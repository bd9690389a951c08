//! NSM (program 100024) and rpcbind (program 100000) message bodies.
//!
//! Layouts follow nfs-utils `support/nsm/sm_inter.x` and `support/nsm/rpc.c`
//! (`nsm_xmit_getport()`, `nsm_xmit_getaddr()`, `nsm_xmit_notify()`).

use crate::xdr::{Decoder, Encoder, XdrError};
use std::net::{IpAddr, SocketAddr};
use thiserror::Error;

pub const RPCBIND_PROG: u32 = 100_000;
/// PMAP version 2 (IPv4 only).
pub const PMAP_VERS: u32 = 2;
pub const PMAPPROC_GETPORT: u32 = 3;
/// RPCBIND version 3 (universal addresses, used for IPv6 like libtirpc builds of sm-notify).
pub const RPCB_VERS: u32 = 3;
pub const RPCBPROC_GETADDR: u32 = 3;
pub const RPCBIND_PORT: u16 = 111;

pub const NLM_PROG: u32 = 100_021;
pub const NSM_PROG: u32 = 100_024;
pub const NSM_VERS: u32 = 1;
pub const SM_MON: u32 = 2;
pub const SM_NOTIFY: u32 = 6;
/// `SM_MAXSTRLEN` (sm_inter.x).
pub const SM_MAXSTRLEN: u32 = 1024;
pub const SM_PRIV_SIZE: usize = 16;
pub const IPPROTO_UDP: u32 = 17;
/// Longest universal address we accept from rpcbind (an IPv6 address plus ".p1.p2" is < 64).
pub const MAX_UADDR: u32 = 256;

#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum NsmError {
    #[error(transparent)]
    Xdr(#[from] XdrError),
    #[error("rpcbind returned a malformed universal address {0:?}")]
    BadUaddr(String),
    #[error("rpcbind returned port {0}, above 65535")]
    BadPort(u32),
    #[error("{0} bytes of unexpected data after the procedure result")]
    TrailingBytes(usize),
}

/// PMAPPROC_GETPORT arguments: `pmap { prog, vers, prot, port=0 }`.
pub fn encode_getport_args(prog: u32, vers: u32, prot: u32) -> Vec<u8> {
    let mut e = Encoder::new();
    e.u32(prog).u32(vers).u32(prot).u32(0);
    e.into_bytes()
}

/// PMAPPROC_GETPORT result: one `u_int port`; 0 means "not registered".
pub fn decode_getport_result(results: &[u8]) -> Result<u16, NsmError> {
    let mut d = Decoder::new(results);
    let port = d.u32()?;
    u16::try_from(port).map_err(|_| NsmError::BadPort(port))
}

pub fn encode_getport_result(port: u16) -> Vec<u8> {
    let mut e = Encoder::new();
    e.u32(u32::from(port));
    e.into_bytes()
}

/// RPCBPROC_GETADDR arguments: `rpcb { prog, vers, netid, addr, owner }`.
pub fn encode_getaddr_args(prog: u32, vers: u32, netid: &str, uaddr: &str) -> Vec<u8> {
    let mut e = Encoder::new();
    e.u32(prog).u32(vers).string(netid).string(uaddr).string("");
    e.into_bytes()
}

/// RPCBPROC_GETADDR result: a universal address string; empty means "not registered" (port 0).
pub fn decode_getaddr_result(results: &[u8]) -> Result<u16, NsmError> {
    let mut d = Decoder::new(results);
    let uaddr = d.string(MAX_UADDR)?;
    if uaddr.is_empty() {
        return Ok(0);
    }
    uaddr_port(uaddr)
}

pub fn encode_getaddr_result(uaddr: &str) -> Vec<u8> {
    let mut e = Encoder::new();
    e.string(uaddr);
    e.into_bytes()
}

/// Port of a universal address "host.p1.p2" (RFC 5665 section 5.2.3.3): port = p1*256 + p2.
pub fn uaddr_port(uaddr: &str) -> Result<u16, NsmError> {
    let bad = || NsmError::BadUaddr(uaddr.to_owned());
    let mut parts = uaddr.rsplitn(3, '.');
    let p2 = parts.next().ok_or_else(bad)?;
    let p1 = parts.next().ok_or_else(bad)?;
    let host = parts.next().ok_or_else(bad)?;
    if host.parse::<IpAddr>().is_err() {
        return Err(bad());
    }
    let p1: u8 = p1.parse().map_err(|_| bad())?;
    let p2: u8 = p2.parse().map_err(|_| bad())?;
    Ok(u16::from(p1) << 8 | u16::from(p2))
}

/// Universal address of a socket address.
pub fn uaddr_of(addr: SocketAddr) -> String {
    let p = addr.port();
    format!("{}.{}.{}", addr.ip(), p >> 8, p & 0xff)
}

/// SM_NOTIFY arguments: `stat_chge { string mon_name<1024>; int state; }`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StatChge {
    pub mon_name: String,
    pub state: i32,
}

impl StatChge {
    pub fn encode(&self) -> Vec<u8> {
        let mut e = Encoder::new();
        e.string(&self.mon_name).i32(self.state);
        e.into_bytes()
    }

    pub fn decode(args: &[u8]) -> Result<Self, NsmError> {
        let mut d = Decoder::new(args);
        let mon_name = d.string(SM_MAXSTRLEN)?.to_owned();
        let state = d.i32()?;
        Ok(Self { mon_name, state })
    }
}

/// SM_NOTIFY returns void: any bytes after the reply header are a protocol error.
pub fn check_void_result(results: &[u8]) -> Result<(), NsmError> {
    if results.is_empty() {
        Ok(())
    } else {
        Err(NsmError::TrailingBytes(results.len()))
    }
}

/// SM_MON arguments (`mon { mon_id { mon_name; my_id { my_name, prog, vers, proc } }; priv[16] }`).
/// Only the local lockd sends this; we use it in tests to make a real rpc.statd write `sm/`
/// records in its own format.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SmMon {
    pub mon_name: String,
    pub my_name: String,
    pub my_prog: u32,
    pub my_vers: u32,
    pub my_proc: u32,
    pub priv_cookie: [u8; SM_PRIV_SIZE],
}

impl SmMon {
    pub fn encode(&self) -> Vec<u8> {
        let mut e = Encoder::new();
        e.string(&self.mon_name)
            .string(&self.my_name)
            .u32(self.my_prog)
            .u32(self.my_vers)
            .u32(self.my_proc)
            .fixed_opaque(&self.priv_cookie);
        e.into_bytes()
    }

    pub fn decode(args: &[u8]) -> Result<Self, NsmError> {
        let mut d = Decoder::new(args);
        let mon_name = d.string(SM_MAXSTRLEN)?.to_owned();
        let my_name = d.string(SM_MAXSTRLEN)?.to_owned();
        let my_prog = d.u32()?;
        let my_vers = d.u32()?;
        let my_proc = d.u32()?;
        let mut priv_cookie = [0u8; SM_PRIV_SIZE];
        priv_cookie.copy_from_slice(d.fixed_opaque(SM_PRIV_SIZE)?);
        Ok(Self {
            mon_name,
            my_name,
            my_prog,
            my_vers,
            my_proc,
            priv_cookie,
        })
    }
}

/// `sm_stat_res { res res_stat; int state; }` (reply to SM_MON/SM_STAT).
pub fn decode_sm_stat_res(results: &[u8]) -> Result<(u32, i32), NsmError> {
    let mut d = Decoder::new(results);
    Ok((d.u32()?, d.i32()?))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn notify_args_match_the_reference_example() {
        let a = StatChge {
            mon_name: "nfs1".into(),
            state: 7,
        }
        .encode();
        assert_eq!(a, vec![0, 0, 0, 4, b'n', b'f', b's', b'1', 0, 0, 0, 7]);
    }

    #[test]
    fn universal_addresses() {
        assert_eq!(uaddr_port("127.0.0.1.0.111").unwrap(), 111);
        assert_eq!(uaddr_port("::1.3.232").unwrap(), 1000);
        assert_eq!(uaddr_of("[::1]:1000".parse().unwrap()), "::1.3.232");
        assert_eq!(uaddr_of("10.0.0.5:2049".parse().unwrap()), "10.0.0.5.8.1");
        for bad in [
            "",
            "1.2",
            "host.1.2",
            "::1.256.0",
            "127.0.0.1.x.1",
            "::1.-1.0",
        ] {
            assert!(uaddr_port(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn empty_getaddr_result_means_unregistered() {
        assert_eq!(
            decode_getaddr_result(&encode_getaddr_result("")).unwrap(),
            0
        );
    }

    #[test]
    fn getport_result_above_u16_is_rejected() {
        assert_eq!(
            decode_getport_result(&[0, 1, 0, 0]),
            Err(NsmError::BadPort(65536))
        );
        assert!(decode_getport_result(&[0, 0]).is_err());
    }

    #[test]
    fn void_result_with_trailing_bytes_is_rejected() {
        assert!(check_void_result(&[]).is_ok());
        assert_eq!(
            check_void_result(&[0, 0, 0, 0]),
            Err(NsmError::TrailingBytes(4))
        );
    }

    #[test]
    fn truncated_notify_args_are_rejected() {
        let a = StatChge {
            mon_name: "server.example".into(),
            state: 3,
        }
        .encode();
        for cut in 0..a.len() {
            assert!(StatChge::decode(&a[..cut]).is_err());
        }
    }

    proptest! {
        #[test]
        fn stat_chge_round_trips(mon_name in "[a-z0-9.-]{0,200}", state in any::<i32>()) {
            let s = StatChge { mon_name, state };
            prop_assert_eq!(StatChge::decode(&s.encode()).unwrap(), s);
        }

        #[test]
        fn sm_mon_round_trips(mon_name in "[a-z0-9.:-]{1,64}", my_name in "[a-z0-9.-]{1,64}",
                              p in any::<u32>(), v in any::<u32>(), q in any::<u32>(), c in any::<[u8; 16]>()) {
            let m = SmMon { mon_name, my_name, my_prog: p, my_vers: v, my_proc: q, priv_cookie: c };
            prop_assert_eq!(SmMon::decode(&m.encode()).unwrap(), m);
        }

        #[test]
        fn getport_round_trips(port in any::<u16>()) {
            prop_assert_eq!(decode_getport_result(&encode_getport_result(port)).unwrap(), port);
        }

        #[test]
        fn getaddr_round_trips(addr in any::<SocketAddr>()) {
            let u = uaddr_of(addr);
            prop_assert_eq!(decode_getaddr_result(&encode_getaddr_result(&u)).unwrap(), addr.port());
        }

        #[test]
        fn getaddr_arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..64)) {
            let _ = decode_getaddr_result(&bytes);
            let _ = decode_getport_result(&bytes);
            let _ = StatChge::decode(&bytes);
        }
    }
}
