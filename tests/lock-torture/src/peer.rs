//! Both ends of the peer protocol: [`Channel`] (the side that asks) and [`serve`] (the side that
//! opens files and takes locks on request).

use std::collections::HashMap;
use std::fs::{File, OpenOptions};
use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError};
use std::thread;
use std::time::{Duration, Instant};

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use thiserror::Error;
use tracing::{debug, warn};

use crate::lock::{self, LockKind, LockType, Range};
use crate::protocol::{self, ProtocolError, Request, Response, MAX_LINE};
use crate::torture;

#[derive(Debug, Error)]
pub enum PeerError {
    #[error("cannot start a peer process ({exe}): {source}")]
    Spawn { exe: String, source: io::Error },
    #[error("cannot send to {peer}: {source}")]
    Send { peer: String, source: io::Error },
    #[error("{peer} closed the connection")]
    Closed { peer: String },
    #[error("reading from {peer}: {source}")]
    Receive { peer: String, source: io::Error },
    #[error("{peer} sent an invalid response: {source}")]
    Protocol { peer: String, source: ProtocolError },
    #[error("{peer} did not answer {request} within {timeout:?}")]
    Timeout {
        peer: String,
        request: String,
        timeout: Duration,
    },
}

/// Read one `\n`-terminated line of at most [`MAX_LINE`] bytes; `Ok(None)` at end of input.
pub fn read_line_limited<R: BufRead>(r: &mut R) -> io::Result<Option<Vec<u8>>> {
    let mut buf = Vec::new();
    let n = r
        .by_ref()
        .take(MAX_LINE as u64 + 1)
        .read_until(b'\n', &mut buf)?;
    if n == 0 {
        return Ok(None);
    }
    if buf.last() == Some(&b'\n') {
        buf.pop();
    } else if buf.len() > MAX_LINE {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!("line longer than {MAX_LINE} bytes"),
        ));
    }
    Ok(Some(buf))
}

/// The asking side: a local peer process on a pipe, or a remote worker on TCP.
pub struct Channel {
    name: String,
    writer: Option<Box<dyn Write + Send>>,
    /// Lines from the reader thread; an error ends them (the line was too long or unreadable).
    rx: Receiver<io::Result<Vec<u8>>>,
    child: Option<Child>,
}

impl Channel {
    fn new(
        name: String,
        writer: Box<dyn Write + Send>,
        reader: Box<dyn Read + Send>,
        child: Option<Child>,
    ) -> Channel {
        let (tx, rx) = mpsc::channel();
        thread::spawn(move || {
            let mut reader = BufReader::new(reader);
            loop {
                match read_line_limited(&mut reader) {
                    Ok(Some(line)) => {
                        if tx.send(Ok(line)).is_err() {
                            return;
                        }
                    }
                    Ok(None) => return,
                    Err(e) => {
                        let _ = tx.send(Err(e));
                        return;
                    }
                }
            }
        });
        Channel {
            name,
            writer: Some(writer),
            rx,
            child,
        }
    }

    /// Start `lock-torture __peer --dir DIR` (this same binary) on pipes.
    pub fn spawn_local(dir: &Path) -> Result<Channel, PeerError> {
        let exe = std::env::current_exe().map_err(|source| PeerError::Spawn {
            exe: "current_exe".into(),
            source,
        })?;
        let mut child = Command::new(&exe)
            .arg("__peer")
            .arg("--dir")
            .arg(dir)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .map_err(|source| PeerError::Spawn {
                exe: exe.display().to_string(),
                source,
            })?;
        let stdin: ChildStdin = child.stdin.take().ok_or_else(|| PeerError::Closed {
            peer: "peer".into(),
        })?;
        let stdout = child.stdout.take().ok_or_else(|| PeerError::Closed {
            peer: "peer".into(),
        })?;
        let name = format!("local peer (pid {})", child.id());
        Ok(Channel::new(
            name,
            Box::new(stdin),
            Box::new(stdout),
            Some(child),
        ))
    }

    /// Wrap an accepted TCP connection to a worker.
    pub fn from_tcp(stream: TcpStream) -> io::Result<Channel> {
        let name = format!("worker {}", stream.peer_addr()?);
        stream.set_nodelay(true)?;
        let reader = stream.try_clone()?;
        Ok(Channel::new(name, Box::new(stream), Box::new(reader), None))
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// The pid of a local peer process.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    pub fn send(&mut self, req: &Request) -> Result<(), PeerError> {
        let line = protocol::encode_line(req);
        let w = self.writer.as_mut().ok_or_else(|| PeerError::Closed {
            peer: self.name.clone(),
        })?;
        w.write_all(&line)
            .and_then(|()| w.flush())
            .map_err(|source| PeerError::Send {
                peer: self.name.clone(),
                source,
            })
    }

    /// Wait up to `timeout` for the next response; `Ok(None)` if none came.
    pub fn recv(&mut self, timeout: Duration) -> Result<Option<Response>, PeerError> {
        match self.rx.recv_timeout(timeout) {
            Ok(Ok(line)) => protocol::decode_response(&line)
                .map(Some)
                .map_err(|source| PeerError::Protocol {
                    peer: self.name.clone(),
                    source,
                }),
            Ok(Err(source)) => Err(PeerError::Receive {
                peer: self.name.clone(),
                source,
            }),
            Err(RecvTimeoutError::Timeout) => Ok(None),
            Err(RecvTimeoutError::Disconnected) => Err(PeerError::Closed {
                peer: self.name.clone(),
            }),
        }
    }

    /// Send a request and wait for its response.
    pub fn call(&mut self, req: &Request, timeout: Duration) -> Result<Response, PeerError> {
        self.send(req)?;
        self.recv(timeout)?.ok_or_else(|| PeerError::Timeout {
            peer: self.name.clone(),
            request: request_name(req),
            timeout,
        })
    }

    /// SIGKILL a local peer and reap it (its locks are then released by the kernel).
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        self.writer = None;
    }
}

impl Drop for Channel {
    fn drop(&mut self) {
        if self.child.is_some() {
            let _ = self.send(&Request::Exit);
        }
        self.writer = None;
        if let Some(mut child) = self.child.take() {
            let deadline = Instant::now() + Duration::from_secs(2);
            loop {
                match child.try_wait() {
                    Ok(Some(_)) => return,
                    Ok(None) if Instant::now() < deadline => {
                        thread::sleep(Duration::from_millis(10))
                    }
                    _ => {
                        let _ = child.kill();
                        let _ = child.wait();
                        return;
                    }
                }
            }
        }
    }
}

fn request_name(req: &Request) -> String {
    let json = serde_json::to_string(req).unwrap_or_default();
    if json.len() > 120 {
        format!(
            "{}…",
            &json[..json
                .char_indices()
                .take_while(|(i, _)| *i < 120)
                .last()
                .map_or(0, |(i, _)| i)]
        )
    } else {
        json
    }
}

/// The answering side's state: open files by slot, all inside `dir`.
pub struct Server {
    dir: PathBuf,
    files: HashMap<u32, File>,
}

impl Server {
    pub fn new(dir: PathBuf) -> Server {
        Server {
            dir,
            files: HashMap::new(),
        }
    }

    fn file(&self, slot: u32) -> Result<&File, Response> {
        self.files.get(&slot).ok_or_else(|| Response::Failed {
            message: format!("slot {slot} is not open"),
        })
    }

    /// Carry out one request. Returns the response and whether to stop serving.
    pub fn handle(&mut self, req: Request) -> (Response, bool) {
        let r = match req {
            Request::Exit => return (Response::Ok, true),
            other => self.handle_inner(other),
        };
        (r.unwrap_or_else(|e| e), false)
    }

    fn handle_inner(&mut self, req: Request) -> Result<Response, Response> {
        let answer = |r: Result<(), nix::errno::Errno>| match r {
            Ok(()) => Response::Ok,
            Err(e) => Response::errno(e),
        };
        Ok(match req {
            Request::Hello => Response::Hello {
                pid: std::process::id() as i32,
                host: libmmp::host::identity::nodename(),
                dir: self.dir.display().to_string(),
                version: env!("CARGO_PKG_VERSION").to_string(),
            },
            // A lock call's errno is an answer, not a failure.
            Request::Lock {
                slot,
                kind,
                ty,
                range,
                wait,
            } => answer(lock::lock(self.file(slot)?, kind, ty, range, wait)),
            Request::Unlock { slot, kind, range } => {
                answer(lock::unlock(self.file(slot)?, kind, range))
            }
            Request::Test {
                slot,
                kind,
                ty,
                range,
            } => match lock::test(self.file(slot)?, kind, ty, range) {
                Ok(None) => Response::Free,
                Ok(Some(conflict)) => Response::Conflict { conflict },
                Err(e) => Response::errno(e),
            },
            Request::HoldAndDie { name, kind, range } => self.hold_and_die(&name, kind, range),
            Request::Torture { params } => match torture::run_local(&self.dir, &params) {
                Ok(run) => Response::Torture {
                    stats: Box::new(run.stats),
                    procs: run.procs,
                    elapsed_ms: run.elapsed.as_millis() as u64,
                },
                Err(e) => Response::Failed {
                    message: e.to_string(),
                },
            },
            Request::Exit => Response::Ok,
            other => self.handle_file(other)?,
        })
    }

    /// Requests on the open files: open, dup, close, reset, read, write, truncate.
    fn handle_file(&mut self, req: Request) -> Result<Response, Response> {
        let io_err = |e: io::Error| match e.raw_os_error() {
            Some(n) => Response::errno(nix::errno::Errno::from_raw(n)),
            None => Response::Failed {
                message: e.to_string(),
            },
        };
        Ok(match req {
            Request::Open { slot, name, create } => {
                protocol::check_name(&name).map_err(|e| Response::Failed {
                    message: e.to_string(),
                })?;
                let f = OpenOptions::new()
                    .read(true)
                    .write(true)
                    .create(create)
                    .truncate(false)
                    .open(self.dir.join(&name))
                    .map_err(io_err)?;
                self.files.insert(slot, f);
                Response::Ok
            }
            Request::Dup { from, to } => {
                let f = self.file(from)?.try_clone().map_err(io_err)?;
                self.files.insert(to, f);
                Response::Ok
            }
            Request::Close { slot } => {
                self.files.remove(&slot);
                Response::Ok
            }
            Request::Reset => {
                self.files.clear();
                Response::Ok
            }
            Request::Write { slot, offset, data } => {
                self.file(slot)?
                    .write_all_at(&data, offset)
                    .map_err(io_err)?;
                Response::Ok
            }
            Request::Read { slot, offset, len } => {
                let mut data = vec![0u8; len as usize];
                let n = self
                    .file(slot)?
                    .read_at(&mut data, offset)
                    .map_err(io_err)?;
                data.truncate(n);
                Response::Data { data }
            }
            Request::Truncate { slot, len } => {
                self.file(slot)?.set_len(len).map_err(io_err)?;
                Response::Ok
            }
            other => unreachable_request(&other),
        })
    }

    fn hold_and_die(&mut self, name: &str, kind: LockKind, range: Range) -> Response {
        let mut holder = match Channel::spawn_local(&self.dir) {
            Ok(c) => c,
            Err(e) => {
                return Response::Failed {
                    message: e.to_string(),
                }
            }
        };
        let t = Duration::from_secs(30);
        let steps = [
            Request::Open {
                slot: 0,
                name: name.to_string(),
                create: true,
            },
            Request::Lock {
                slot: 0,
                kind,
                ty: LockType::Write,
                range,
                wait: false,
            },
        ];
        for step in &steps {
            match holder.call(step, t) {
                Ok(Response::Ok) => {}
                Ok(other) => return other,
                Err(e) => {
                    return Response::Failed {
                        message: e.to_string(),
                    }
                }
            }
        }
        // SIGKILL, not an orderly exit: the kernel (or the NFS client) must clean up after a
        // process that never called unlock or close.
        if let Some(pid) = holder.pid() {
            let _ = kill(Pid::from_raw(pid as i32), Signal::SIGKILL);
        }
        holder.kill();
        Response::Ok
    }
}

/// [`Server::handle_inner`] sends only file requests to [`Server::handle_file`]; reaching this
/// is a bug in that routing, answered as a failure rather than a panic in the peer.
fn unreachable_request(req: &Request) -> Response {
    Response::Failed {
        message: format!(
            "internal error: request {} routed to the wrong handler",
            request_name(req)
        ),
    }
}

/// Serve requests from `reader` until `Exit` or end of input.
pub fn serve<R: BufRead, W: Write>(dir: PathBuf, mut reader: R, mut writer: W) -> io::Result<()> {
    let mut server = Server::new(dir);
    loop {
        let Some(line) = read_line_limited(&mut reader)? else {
            debug!("peer input closed");
            return Ok(());
        };
        let (resp, stop) = match protocol::decode_request(&line) {
            Ok(req) => server.handle(req),
            Err(e) => {
                warn!("rejected request: {e}");
                (
                    Response::Failed {
                        message: e.to_string(),
                    },
                    false,
                )
            }
        };
        writer.write_all(&protocol::encode_line(&resp))?;
        writer.flush()?;
        if stop {
            return Ok(());
        }
    }
}
