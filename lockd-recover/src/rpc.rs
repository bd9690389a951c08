//! ONC RPC version 2 messages (RFC 5531) with AUTH_NONE, and XID allocation.
//!
//! The encoder and decoder for both CALL and REPLY sit side by side: the client encodes calls and
//! decodes replies; the test peers (and the round-trip tests) do the reverse.

use crate::xdr::{Decoder, Encoder, XdrError};
use std::time::{SystemTime, UNIX_EPOCH};
use thiserror::Error;

pub const RPC_VERSION: u32 = 2;
pub const MSG_CALL: u32 = 0;
pub const MSG_REPLY: u32 = 1;
pub const MSG_ACCEPTED: u32 = 0;
pub const MSG_DENIED: u32 = 1;
pub const AUTH_NONE: u32 = 0;
/// `opaque body<400>` for credentials and verifiers (RFC 5531 `opaque_auth`).
pub const MAX_AUTH_BYTES: u32 = 400;
/// nfs-utils `NSM_MAXMSGSIZE` (support/include/nsm.h); our datagrams and buffers use it.
pub const MAX_MSG_SIZE: usize = 2048;

#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum RpcError {
    #[error(transparent)]
    Xdr(#[from] XdrError),
    #[error("not an RPC reply: msg_type {0}")]
    NotAReply(u32),
    #[error("not an RPC call: msg_type {0}")]
    NotACall(u32),
    #[error("unknown reply_stat {0}")]
    BadReplyStat(u32),
    #[error("unknown reject_stat {0}")]
    BadRejectStat(u32),
}

/// `opaque_auth`: flavor and body.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct OpaqueAuth {
    pub flavor: u32,
    pub body: Vec<u8>,
}

impl OpaqueAuth {
    pub fn none() -> Self {
        Self::default()
    }

    fn encode(&self, e: &mut Encoder) {
        e.u32(self.flavor).opaque(&self.body);
    }

    fn decode(d: &mut Decoder<'_>) -> Result<Self, XdrError> {
        let flavor = d.u32()?;
        let body = d.opaque(MAX_AUTH_BYTES)?.to_vec();
        Ok(Self { flavor, body })
    }
}

/// A CALL message header; the procedure arguments follow it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CallHeader {
    pub xid: u32,
    pub prog: u32,
    pub vers: u32,
    pub proc_num: u32,
    pub cred: OpaqueAuth,
    pub verf: OpaqueAuth,
}

/// `accept_stat` of an accepted reply.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AcceptStat {
    Success,
    ProgUnavail,
    ProgMismatch {
        low: u32,
        high: u32,
    },
    ProcUnavail,
    GarbageArgs,
    SystemErr,
    /// A value RFC 5531 does not define; kept so the caller can report it.
    Other(u32),
}

/// `reject_stat` of a denied reply.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RejectStat {
    RpcMismatch { low: u32, high: u32 },
    AuthError { auth_stat: u32 },
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReplyBody<'a> {
    Accepted {
        verf: OpaqueAuth,
        stat: AcceptStat,
        /// Procedure results (only meaningful for `AcceptStat::Success`).
        results: &'a [u8],
    },
    Denied(RejectStat),
}

/// A well-formed reply that does not carry results: the server refused or failed the call.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
pub enum CallFailed {
    #[error("call accepted but failed: {0:?}")]
    Accepted(AcceptStat),
    #[error("call denied: {0:?}")]
    Denied(RejectStat),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reply<'a> {
    pub xid: u32,
    pub body: ReplyBody<'a>,
}

impl Reply<'_> {
    /// The results of a `MSG_ACCEPTED`/`SUCCESS` reply, the only kind nfs-utils accepts
    /// (`nsm_parse_reply()`), or why the reply is not one.
    pub fn success_results(&self) -> Result<&[u8], CallFailed> {
        match &self.body {
            ReplyBody::Accepted {
                stat: AcceptStat::Success,
                results,
                ..
            } => Ok(results),
            ReplyBody::Accepted { stat, .. } => Err(CallFailed::Accepted(*stat)),
            ReplyBody::Denied(r) => Err(CallFailed::Denied(*r)),
        }
    }
}

/// Encodes a CALL with AUTH_NONE credential and verifier, followed by `args`.
pub fn encode_call(xid: u32, prog: u32, vers: u32, proc_num: u32, args: &[u8]) -> Vec<u8> {
    let header = CallHeader {
        xid,
        prog,
        vers,
        proc_num,
        cred: OpaqueAuth::none(),
        verf: OpaqueAuth::none(),
    };
    encode_call_with(&header, args)
}

pub fn encode_call_with(h: &CallHeader, args: &[u8]) -> Vec<u8> {
    let mut e = Encoder::new();
    e.u32(h.xid)
        .u32(MSG_CALL)
        .u32(RPC_VERSION)
        .u32(h.prog)
        .u32(h.vers)
        .u32(h.proc_num);
    h.cred.encode(&mut e);
    h.verf.encode(&mut e);
    e.raw(args);
    e.into_bytes()
}

/// Decodes a CALL header; returns it and the argument bytes. Used by test peers and fuzzing.
pub fn parse_call(buf: &[u8]) -> Result<(CallHeader, &[u8]), RpcError> {
    let mut d = Decoder::new(buf);
    let xid = d.u32()?;
    let msg_type = d.u32()?;
    if msg_type != MSG_CALL {
        return Err(RpcError::NotACall(msg_type));
    }
    let _rpcvers = d.u32()?;
    let prog = d.u32()?;
    let vers = d.u32()?;
    let proc_num = d.u32()?;
    let cred = OpaqueAuth::decode(&mut d)?;
    let verf = OpaqueAuth::decode(&mut d)?;
    Ok((
        CallHeader {
            xid,
            prog,
            vers,
            proc_num,
            cred,
            verf,
        },
        d.rest(),
    ))
}

/// Decodes a REPLY. Bounds-checked and total: any byte string gives `Ok` or `Err`, never a panic.
pub fn parse_reply(buf: &[u8]) -> Result<Reply<'_>, RpcError> {
    let mut d = Decoder::new(buf);
    let xid = d.u32()?;
    let msg_type = d.u32()?;
    if msg_type != MSG_REPLY {
        return Err(RpcError::NotAReply(msg_type));
    }
    let body = match d.u32()? {
        MSG_ACCEPTED => {
            let verf = OpaqueAuth::decode(&mut d)?;
            let stat = match d.u32()? {
                0 => AcceptStat::Success,
                1 => AcceptStat::ProgUnavail,
                2 => AcceptStat::ProgMismatch {
                    low: d.u32()?,
                    high: d.u32()?,
                },
                3 => AcceptStat::ProcUnavail,
                4 => AcceptStat::GarbageArgs,
                5 => AcceptStat::SystemErr,
                other => AcceptStat::Other(other),
            };
            ReplyBody::Accepted {
                verf,
                stat,
                results: d.rest(),
            }
        }
        MSG_DENIED => match d.u32()? {
            0 => ReplyBody::Denied(RejectStat::RpcMismatch {
                low: d.u32()?,
                high: d.u32()?,
            }),
            1 => ReplyBody::Denied(RejectStat::AuthError {
                auth_stat: d.u32()?,
            }),
            other => return Err(RpcError::BadRejectStat(other)),
        },
        other => return Err(RpcError::BadReplyStat(other)),
    };
    Ok(Reply { xid, body })
}

/// Encodes a REPLY (the mirror of [`parse_reply`]); used by test peers and round-trip tests.
pub fn encode_reply(reply: &Reply<'_>) -> Vec<u8> {
    let mut e = Encoder::new();
    e.u32(reply.xid).u32(MSG_REPLY);
    match &reply.body {
        ReplyBody::Accepted {
            verf,
            stat,
            results,
        } => {
            e.u32(MSG_ACCEPTED);
            verf.encode(&mut e);
            match *stat {
                AcceptStat::Success => e.u32(0),
                AcceptStat::ProgUnavail => e.u32(1),
                AcceptStat::ProgMismatch { low, high } => e.u32(2).u32(low).u32(high),
                AcceptStat::ProcUnavail => e.u32(3),
                AcceptStat::GarbageArgs => e.u32(4),
                AcceptStat::SystemErr => e.u32(5),
                AcceptStat::Other(v) => e.u32(v),
            };
            e.raw(results);
        }
        ReplyBody::Denied(r) => {
            e.u32(MSG_DENIED);
            match *r {
                RejectStat::RpcMismatch { low, high } => e.u32(0).u32(low).u32(high),
                RejectStat::AuthError { auth_stat } => e.u32(1).u32(auth_stat),
            };
        }
    }
    e.into_bytes()
}

/// A successful reply to `xid` with the given result bytes.
pub fn encode_success_reply(xid: u32, results: &[u8]) -> Vec<u8> {
    encode_reply(&Reply {
        xid,
        body: ReplyBody::Accepted {
            verf: OpaqueAuth::none(),
            stat: AcceptStat::Success,
            results,
        },
    })
}

/// XID source: starts from `pid ^ sec ^ usec` like nfs-utils `nsm_next_xid()`, increments per
/// call, and never yields 0.
#[derive(Debug, Clone)]
pub struct XidGen {
    next: u32,
}

impl XidGen {
    pub fn new() -> Self {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default();
        // Truncation to 32 bits is the intent: this only seeds the sequence.
        let seed = std::process::id() ^ (now.as_secs() as u32) ^ now.subsec_micros();
        Self::starting_at(seed)
    }

    pub fn starting_at(seed: u32) -> Self {
        Self { next: seed }
    }

    pub fn next_xid(&mut self) -> u32 {
        if self.next == 0 {
            self.next = 1;
        }
        let x = self.next;
        self.next = self.next.wrapping_add(1);
        x
    }
}

impl Default for XidGen {
    fn default() -> Self {
        Self::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn successful_void_reply_is_six_words() {
        // The example in the reference notes: `xid, 1, 0, 0, 0, 0`.
        let r = encode_success_reply(0x1234_5678, &[]);
        assert_eq!(r.len(), 24);
        let p = parse_reply(&r).unwrap();
        assert_eq!(p.xid, 0x1234_5678);
        assert_eq!(p.success_results().unwrap(), &[] as &[u8]);
    }

    #[test]
    fn call_header_layout_matches_rfc5531() {
        let c = encode_call(7, 100_024, 1, 6, &[0, 0, 0, 9]);
        let words: Vec<u32> = c
            .chunks(4)
            .map(|w| u32::from_be_bytes([w[0], w[1], w[2], w[3]]))
            .collect();
        assert_eq!(words, vec![7, 0, 2, 0x186b8, 1, 6, 0, 0, 0, 0, 9]);
    }

    #[test]
    fn every_truncation_of_a_reply_is_an_error_not_a_panic() {
        let r = encode_reply(&Reply {
            xid: 9,
            body: ReplyBody::Accepted {
                verf: OpaqueAuth {
                    flavor: 1,
                    body: vec![1, 2, 3, 4, 5],
                },
                stat: AcceptStat::ProgMismatch { low: 2, high: 4 },
                results: &[],
            },
        });
        for cut in 0..r.len() {
            assert!(parse_reply(&r[..cut]).is_err(), "cut at {cut}");
        }
        assert!(parse_reply(&r).is_ok());
    }

    #[test]
    fn a_call_is_not_a_reply() {
        let c = encode_call(1, 2, 3, 4, &[]);
        assert_eq!(parse_reply(&c), Err(RpcError::NotAReply(MSG_CALL)));
    }

    #[test]
    fn unknown_reply_stat_is_rejected() {
        let mut e = Encoder::new();
        e.u32(1).u32(MSG_REPLY).u32(7);
        assert_eq!(parse_reply(&e.into_bytes()), Err(RpcError::BadReplyStat(7)));
    }

    #[test]
    fn oversize_verifier_is_rejected() {
        let mut e = Encoder::new();
        e.u32(1).u32(MSG_REPLY).u32(MSG_ACCEPTED).u32(0).u32(401);
        assert!(matches!(
            parse_reply(&e.into_bytes()),
            Err(RpcError::Xdr(XdrError::TooLong { len: 401, .. }))
        ));
    }

    #[test]
    fn denied_and_failed_replies_are_not_success() {
        let denied = encode_reply(&Reply {
            xid: 3,
            body: ReplyBody::Denied(RejectStat::AuthError { auth_stat: 1 }),
        });
        assert!(parse_reply(&denied).unwrap().success_results().is_err());
        let unavail = encode_reply(&Reply {
            xid: 3,
            body: ReplyBody::Accepted {
                verf: OpaqueAuth::none(),
                stat: AcceptStat::ProgUnavail,
                results: &[],
            },
        });
        assert!(parse_reply(&unavail).unwrap().success_results().is_err());
    }

    #[test]
    fn xid_is_never_zero() {
        let mut g = XidGen::starting_at(u32::MAX);
        assert_eq!(g.next_xid(), u32::MAX);
        assert_eq!(g.next_xid(), 1);
        assert_eq!(g.next_xid(), 2);
    }

    fn accept_stat() -> impl Strategy<Value = AcceptStat> {
        prop_oneof![
            Just(AcceptStat::Success),
            Just(AcceptStat::ProgUnavail),
            (any::<u32>(), any::<u32>())
                .prop_map(|(low, high)| AcceptStat::ProgMismatch { low, high }),
            Just(AcceptStat::ProcUnavail),
            Just(AcceptStat::GarbageArgs),
            Just(AcceptStat::SystemErr),
            (6u32..).prop_map(AcceptStat::Other),
        ]
    }

    proptest! {
        #[test]
        fn call_round_trips(xid in any::<u32>(), prog in any::<u32>(), vers in any::<u32>(),
                            proc_num in any::<u32>(), flavor in any::<u32>(),
                            body in proptest::collection::vec(any::<u8>(), 0..400),
                            args in proptest::collection::vec(any::<u8>(), 0..64)) {
            let h = CallHeader { xid, prog, vers, proc_num,
                cred: OpaqueAuth { flavor, body: body.clone() }, verf: OpaqueAuth::none() };
            let bytes = encode_call_with(&h, &args);
            let (back, rest) = parse_call(&bytes).unwrap();
            prop_assert_eq!(back, h);
            prop_assert_eq!(rest, args.as_slice());
        }

        #[test]
        fn accepted_reply_round_trips(xid in any::<u32>(), stat in accept_stat(),
                                      verf_body in proptest::collection::vec(any::<u8>(), 0..400),
                                      results in proptest::collection::vec(any::<u8>(), 0..64)) {
            let r = Reply { xid, body: ReplyBody::Accepted {
                verf: OpaqueAuth { flavor: 0, body: verf_body }, stat, results: &results } };
            let bytes = encode_reply(&r);
            prop_assert_eq!(parse_reply(&bytes).unwrap(), r);
        }

        #[test]
        fn denied_reply_round_trips(xid in any::<u32>(), a in any::<u32>(), b in any::<u32>(), auth in any::<bool>()) {
            let rej = if auth { RejectStat::AuthError { auth_stat: a } } else { RejectStat::RpcMismatch { low: a, high: b } };
            let r = Reply { xid, body: ReplyBody::Denied(rej) };
            let bytes = encode_reply(&r);
            prop_assert_eq!(parse_reply(&bytes).unwrap(), r);
        }

        #[test]
        fn corrupt_one_byte_never_panics(idx in 0usize..40, val in any::<u8>()) {
            let mut r = encode_success_reply(42, &[0, 0, 3, 0xe8]);
            let i = idx % r.len();
            r[i] = val;
            let _ = parse_reply(&r);
        }

        #[test]
        fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..128)) {
            let _ = parse_reply(&bytes);
            let _ = parse_call(&bytes);
        }
    }
}
