//! The peer protocol: one JSON object per line, request then response.
//!
//! The same messages flow over a pipe to a local peer process (the "child" of the Connectathon
//! tests) and over TCP to a worker on another host (the second client of Linux-HA `mlock`). A
//! worker only ever touches files inside the directory it was started with: file names in
//! requests must be a single path component.

use serde::{Deserialize, Serialize};
use thiserror::Error;

use crate::lock::{Conflict, LockKind, LockType, Range};
use crate::torture::{ParamsError, TortureParams, WorkerStats};

/// Longest line accepted from a peer; anything longer is a protocol error, not an allocation.
pub const MAX_LINE: usize = 1 << 20;
/// Largest read or write a request may ask for.
pub const MAX_IO: usize = 1 << 16;
/// Open files a peer keeps at once.
pub const MAX_SLOTS: u32 = 64;

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case", deny_unknown_fields)]
pub enum Request {
    Hello,
    /// Open `name` (inside the peer's directory) read-write as a new open file description.
    Open {
        slot: u32,
        name: String,
        create: bool,
    },
    /// `dup(2)` of slot `from` into slot `to` (same open file description).
    Dup {
        from: u32,
        to: u32,
    },
    Close {
        slot: u32,
    },
    /// Close every open file (releasing all locks this peer holds).
    Reset,
    Lock {
        slot: u32,
        kind: LockKind,
        ty: LockType,
        range: Range,
        wait: bool,
    },
    Unlock {
        slot: u32,
        kind: LockKind,
        range: Range,
    },
    Test {
        slot: u32,
        kind: LockKind,
        ty: LockType,
        range: Range,
    },
    Write {
        slot: u32,
        offset: u64,
        data: Vec<u8>,
    },
    Read {
        slot: u32,
        offset: u64,
        len: u32,
    },
    Truncate {
        slot: u32,
        len: u64,
    },
    /// Start a helper process that opens `name` and takes a write lock on `range`, then kill
    /// it with SIGKILL (Connectathon test 12: a killed process must release its locks).
    HoldAndDie {
        name: String,
        kind: LockKind,
        range: Range,
    },
    /// Run torture mode here for `params.duration_ms` and report this host's statistics.
    Torture {
        params: TortureParams,
    },
    Exit,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "r", rename_all = "snake_case", deny_unknown_fields)]
pub enum Response {
    Hello {
        pid: i32,
        host: String,
        dir: String,
        version: String,
    },
    Ok,
    /// A system call failed with this errno.
    Errno {
        errno: i32,
        name: String,
    },
    /// A test found nothing in the way.
    Free,
    Conflict {
        conflict: Conflict,
    },
    Data {
        data: Vec<u8>,
    },
    Torture {
        stats: Box<WorkerStats>,
        procs: u32,
        elapsed_ms: u64,
    },
    /// The request was malformed or could not be carried out (not an errno from a lock call).
    Failed {
        message: String,
    },
}

impl Response {
    pub fn errno(e: nix::errno::Errno) -> Response {
        Response::Errno {
            errno: e as i32,
            name: crate::lock::errno_name(e),
        }
    }
}

#[derive(Debug, Error, PartialEq, Eq)]
pub enum ProtocolError {
    #[error("message of {0} bytes exceeds the {MAX_LINE}-byte limit")]
    TooLong(usize),
    #[error("message is not valid JSON for this protocol: {0}")]
    Json(String),
    #[error(
        "file name {0:?} must be a single path component (no '/', not '.' or '..', not empty)"
    )]
    BadName(String),
    #[error("{0}")]
    Invalid(String),
    /// Torture parameters a worker refuses to run.
    #[error("{0}")]
    Params(Box<ParamsError>),
}

/// A file name a peer may open: one plain path component.
pub fn check_name(name: &str) -> Result<(), ProtocolError> {
    if name.is_empty()
        || name == "."
        || name == ".."
        || name.contains('/')
        || name.contains('\0')
        || name.len() > 255
    {
        return Err(ProtocolError::BadName(name.to_string()));
    }
    Ok(())
}

/// Decode and validate one request line (untrusted input from the network).
pub fn decode_request(line: &[u8]) -> Result<Request, ProtocolError> {
    if line.len() > MAX_LINE {
        return Err(ProtocolError::TooLong(line.len()));
    }
    let req: Request =
        serde_json::from_slice(line).map_err(|e| ProtocolError::Json(e.to_string()))?;
    match &req {
        Request::Open { slot, name, .. } => {
            check_slot(*slot)?;
            check_name(name)?;
        }
        Request::HoldAndDie { name, .. } => check_name(name)?,
        Request::Dup { from, to } => {
            check_slot(*from)?;
            check_slot(*to)?;
        }
        Request::Close { slot }
        | Request::Lock { slot, .. }
        | Request::Unlock { slot, .. }
        | Request::Test { slot, .. }
        | Request::Truncate { slot, .. } => check_slot(*slot)?,
        Request::Write { slot, data, .. } => {
            check_slot(*slot)?;
            if data.len() > MAX_IO {
                return Err(ProtocolError::Invalid(format!(
                    "write of {} bytes exceeds {MAX_IO}",
                    data.len()
                )));
            }
        }
        Request::Read { slot, len, .. } => {
            check_slot(*slot)?;
            if *len as usize > MAX_IO {
                return Err(ProtocolError::Invalid(format!(
                    "read of {len} bytes exceeds {MAX_IO}"
                )));
            }
        }
        Request::Torture { params } => params
            .validate()
            .map_err(|e| ProtocolError::Params(Box::new(e)))?,
        Request::Hello | Request::Reset | Request::Exit => {}
    }
    Ok(req)
}

fn check_slot(slot: u32) -> Result<(), ProtocolError> {
    if slot >= MAX_SLOTS {
        return Err(ProtocolError::Invalid(format!(
            "slot {slot} out of range (0..{MAX_SLOTS})"
        )));
    }
    Ok(())
}

/// Decode one response line.
pub fn decode_response(line: &[u8]) -> Result<Response, ProtocolError> {
    if line.len() > MAX_LINE {
        return Err(ProtocolError::TooLong(line.len()));
    }
    serde_json::from_slice(line).map_err(|e| ProtocolError::Json(e.to_string()))
}

/// Encode a message as one line (with the trailing newline).
pub fn encode_line<T: Serialize>(msg: &T) -> Vec<u8> {
    // Serialising these enums cannot fail: no maps with non-string keys, no custom errors.
    let mut v = serde_json::to_vec(msg)
        .unwrap_or_else(|e| format!("{{\"r\":\"failed\",\"message\":\"{e}\"}}").into_bytes());
    v.push(b'\n');
    v
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn decoding_never_panics(bytes in prop::collection::vec(any::<u8>(), 0..300)) {
            let _ = decode_request(&bytes);
            let _ = decode_response(&bytes);
        }

        #[test]
        fn json_shaped_garbage_never_panics(op in "(hello|open|dup|close|reset|lock|unlock|test|write|read|truncate|hold_and_die|torture|exit)",
                                            body in "[a-z_\":,0-9\\[\\]{}-]{0,80}") {
            let line = format!("{{\"op\":\"{op}\",{body}}}");
            let _ = decode_request(line.as_bytes());
        }
    }

    #[test]
    fn request_round_trip() {
        let reqs = vec![
            Request::Hello,
            Request::Open {
                slot: 1,
                name: "f.dat".into(),
                create: true,
            },
            Request::Lock {
                slot: 1,
                kind: LockKind::Ofd,
                ty: LockType::Write,
                range: Range::new(i64::MAX, 1),
                wait: false,
            },
            Request::Write {
                slot: 0,
                offset: 4092,
                data: b"abcde".to_vec(),
            },
            Request::HoldAndDie {
                name: "x".into(),
                kind: LockKind::Posix,
                range: Range::WHOLE,
            },
            Request::Exit,
        ];
        for r in reqs {
            let line = encode_line(&r);
            assert_eq!(line.last(), Some(&b'\n'));
            assert_eq!(decode_request(&line[..line.len() - 1]).unwrap(), r);
        }
    }

    #[test]
    fn response_round_trip() {
        let rs = vec![
            Response::Ok,
            Response::errno(nix::errno::Errno::ENOLCK),
            Response::Conflict {
                conflict: Conflict {
                    ty: LockType::Read,
                    range: Range::new(0, 3),
                    pid: -1,
                },
            },
        ];
        for r in rs {
            let line = encode_line(&r);
            assert_eq!(decode_response(&line).unwrap(), r);
        }
    }

    #[test]
    fn torture_response_round_trips_inside_the_tagged_enum() {
        // Internally tagged enums buffer their content: every field type must survive that.
        let mut stats = WorkerStats {
            ops: 3,
            increments: 9,
            ..Default::default()
        };
        stats.lock_latency.record_ns(1_500);
        stats.lock_latency.record_ns(u64::MAX);
        stats.errors.add("ENOLCK", 2);
        let r = Response::Torture {
            stats: Box::new(stats),
            procs: 2,
            elapsed_ms: 1000,
        };
        assert_eq!(decode_response(&encode_line(&r)).unwrap(), r);
        let params = crate::torture::TortureParams {
            kind: LockKind::Flock,
            procs: 2,
            threads: 3,
            duration_ms: 10,
            file: "t".into(),
            records: 4,
            max_records: 2,
            read_percent: 0,
            hold_us: 0,
            id_base: 1_000_000,
            seed: u64::MAX,
        };
        let q = Request::Torture { params };
        assert_eq!(decode_request(&encode_line(&q)).unwrap(), q);
    }

    #[test]
    fn names_must_stay_inside_the_directory() {
        for bad in ["", ".", "..", "../etc/passwd", "a/b", "/abs"] {
            let line = format!(r#"{{"op":"open","slot":0,"name":{bad:?},"create":true}}"#);
            assert!(
                matches!(
                    decode_request(line.as_bytes()),
                    Err(ProtocolError::BadName(_))
                ),
                "{bad}"
            );
        }
    }

    #[test]
    fn limits_are_enforced() {
        let line = r#"{"op":"close","slot":64}"#;
        assert!(matches!(
            decode_request(line.as_bytes()),
            Err(ProtocolError::Invalid(_))
        ));
        let line = r#"{"op":"read","slot":0,"offset":0,"len":100000000}"#;
        assert!(matches!(
            decode_request(line.as_bytes()),
            Err(ProtocolError::Invalid(_))
        ));
        let huge = vec![b' '; MAX_LINE + 1];
        assert_eq!(
            decode_request(&huge),
            Err(ProtocolError::TooLong(MAX_LINE + 1))
        );
        assert!(matches!(
            decode_request(br#"{"op":"close","slot":1,"extra":1}"#),
            Err(ProtocolError::Json(_))
        ));
        assert!(matches!(
            decode_request(b"\xff\xfe"),
            Err(ProtocolError::Json(_))
        ));
    }
}
