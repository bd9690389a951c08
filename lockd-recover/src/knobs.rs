//! Kernel knobs for NLM/NFSv4 lock release and grace (`fs/nfsd/nfsctl.c`, `fs/lockd/procfs.c`,
//! `fs/lockd/svc.c`), reached under a configurable proc root so tests run against a fake tree.

use crate::locks::{self, LockEntry};
use std::fs::{self, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use thiserror::Error;

pub const UNLOCK_IP: &str = "fs/nfsd/unlock_ip";
pub const UNLOCK_FS: &str = "fs/nfsd/unlock_filesystem";
pub const NFSD_THREADS: &str = "fs/nfsd/threads";
pub const V4_END_GRACE: &str = "fs/nfsd/v4_end_grace";
pub const V4_GRACE_TIME: &str = "fs/nfsd/nfsv4gracetime";
pub const V4_LEASE_TIME: &str = "fs/nfsd/nfsv4leasetime";
pub const NLM_END_GRACE: &str = "fs/lockd/nlm_end_grace";
pub const NLM_GRACE_PERIOD: &str = "sys/fs/nfs/nlm_grace_period";
pub const NLM_TIMEOUT: &str = "sys/fs/nfs/nlm_timeout";
pub const NSM_LOCAL_STATE: &str = "sys/fs/nfs/nsm_local_state";
pub const OSRELEASE: &str = "sys/kernel/osrelease";
pub const LOCKS: &str = "locks";

#[derive(Debug, Error)]
pub enum KnobError {
    #[error("{path} does not exist: {hint}")]
    Missing { path: PathBuf, hint: &'static str },
    #[error("{path}: the kernel refused {value:?} (EBUSY): {hint}")]
    Busy {
        path: PathBuf,
        value: String,
        hint: &'static str,
    },
    #[error("{path}: the kernel rejected {value:?}: {source}")]
    Rejected {
        path: PathBuf,
        value: String,
        #[source]
        source: io::Error,
    },
    #[error("{op} {path}: {source}")]
    Io {
        op: &'static str,
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("short write to {path}: {written} of {len} bytes")]
    ShortWrite {
        path: PathBuf,
        written: usize,
        len: usize,
    },
    #[error("{path} holds {text:?}, expected {expected}")]
    Unexpected {
        path: PathBuf,
        text: String,
        expected: &'static str,
    },
    #[error(transparent)]
    Locks(#[from] locks::LocksParseError),
}

fn hint_for(rel: &str) -> &'static str {
    if rel.starts_with("fs/nfsd/") {
        "the nfsd control filesystem is not mounted here (modprobe nfsd; mount -t nfsd nfsd /proc/fs/nfsd), or this kernel lacks the knob"
    } else if rel.starts_with("fs/lockd/") {
        "lockd's procfs needs Linux >= 3.19 with the lockd module loaded (modprobe lockd)"
    } else if rel.starts_with("sys/fs/nfs/") {
        "the lockd sysctls appear once the lockd module is loaded (modprobe lockd)"
    } else {
        "check --proc-root"
    }
}

/// What EBUSY from writing the knob `rel` means. The grace, lease and version knobs refuse
/// changes while nfsd runs; v4_end_grace is the other way round: `write_v4_end_grace`
/// (fs/nfsd/nfsctl.c) returns EBUSY when no nfsd runs in the network namespace that this nfsd
/// filesystem was mounted in, and, with `nfsd4_force_end_grace` (2025, backported to stable
/// kernels: Debian's 6.1.0-57 refused it in the many-volumes lab), also when nfsd has no active
/// client tracker there.
fn busy_hint(rel: &str) -> &'static str {
    if rel == V4_END_GRACE {
        "nfsd cannot end NFSv4 grace in the network namespace this nfsd filesystem belongs to: no nfsd runs there (start it, or run this inside the namespace nfsd serves, with that namespace's nfsd filesystem on /proc/fs/nfsd), or nfsd has no client tracker there (nfsdcld not running for it); NFSv4 grace then ends by itself after nfsv4gracetime"
    } else {
        "this knob can only be changed while nfsd is stopped (rpc.nfsd 0)"
    }
}

/// The proc root (`/proc` on a real system).
#[derive(Debug, Clone)]
pub struct ProcRoot {
    root: PathBuf,
}

impl ProcRoot {
    pub fn new(root: impl Into<PathBuf>) -> Self {
        Self { root: root.into() }
    }

    pub fn path(&self, rel: &str) -> PathBuf {
        self.root.join(rel)
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Whether this is the running system's /proc (and not a test tree).
    pub fn is_real_proc(&self) -> bool {
        fs::canonicalize(&self.root).is_ok_and(|p| p == Path::new("/proc"))
    }

    pub fn exists(&self, rel: &str) -> bool {
        self.path(rel).exists()
    }

    pub fn read(&self, rel: &str) -> Result<String, KnobError> {
        let path = self.path(rel);
        fs::read_to_string(&path).map_err(|e| {
            if e.kind() == io::ErrorKind::NotFound {
                KnobError::Missing {
                    path,
                    hint: hint_for(rel),
                }
            } else {
                KnobError::Io {
                    op: "cannot read",
                    path,
                    source: e,
                }
            }
        })
    }

    pub fn read_u64(&self, rel: &str) -> Result<u64, KnobError> {
        let text = self.read(rel)?;
        text.trim().parse().map_err(|_| KnobError::Unexpected {
            path: self.path(rel),
            text,
            expected: "a decimal number",
        })
    }

    /// Writes `value` in one `write()` call, as the nfsd transaction files require (they act on
    /// the first write and need the trailing newline, `write_unlock_ip()`). The file must exist:
    /// proc knobs are never created, so a wrong proc root cannot create stray files.
    pub fn write(&self, rel: &str, value: &str) -> Result<(), KnobError> {
        let path = self.path(rel);
        let mut f = OpenOptions::new().write(true).open(&path).map_err(|e| {
            if e.kind() == io::ErrorKind::NotFound {
                KnobError::Missing {
                    path: path.clone(),
                    hint: hint_for(rel),
                }
            } else {
                KnobError::Io {
                    op: "cannot open for writing",
                    path: path.clone(),
                    source: e,
                }
            }
        })?;
        let n =
            f.write(value.as_bytes())
                .map_err(|e| match e.raw_os_error() {
                    Some(libc::EBUSY) => KnobError::Busy {
                        path: path.clone(),
                        value: value.trim_end().to_owned(),
                        hint: busy_hint(rel),
                    },
                    Some(libc::EINVAL) | Some(libc::EIO) | Some(libc::ENOENT)
                    | Some(libc::ERANGE) => KnobError::Rejected {
                        path: path.clone(),
                        value: value.trim_end().to_owned(),
                        source: e,
                    },
                    _ => KnobError::Io {
                        op: "cannot write",
                        path: path.clone(),
                        source: e,
                    },
                })?;
        if n != value.len() {
            return Err(KnobError::ShortWrite {
                path,
                written: n,
                len: value.len(),
            });
        }
        Ok(())
    }

    /// `/proc/locks`, parsed.
    pub fn locks(&self) -> Result<Vec<LockEntry>, KnobError> {
        Ok(locks::parse(&self.read(LOCKS)?)?)
    }

    /// (major, minor) from `sys/kernel/osrelease` ("6.18.44-..." gives (6, 18)).
    pub fn kernel_version(&self) -> Result<(u32, u32), KnobError> {
        let text = self.read(OSRELEASE)?;
        parse_kernel_version(&text).ok_or_else(|| KnobError::Unexpected {
            path: self.path(OSRELEASE),
            text,
            expected: "a kernel release like 6.1.0-18-amd64",
        })
    }

    /// nfsd thread count; 0 when the nfsd filesystem is mounted but nfsd is stopped.
    pub fn nfsd_threads(&self) -> Result<u64, KnobError> {
        self.read_u64(NFSD_THREADS)
    }
}

pub fn parse_kernel_version(s: &str) -> Option<(u32, u32)> {
    let mut it = s.trim().split(['.', '-']);
    let major = it.next()?.parse().ok()?;
    let minor_digits: String = it
        .next()?
        .chars()
        .take_while(char::is_ascii_digit)
        .collect();
    Some((major, minor_digits.parse().ok()?))
}

/// (major, minor) of the filesystem holding `path`.
pub fn fs_dev(path: &Path) -> io::Result<(u32, u32)> {
    Ok(locks::dev_major_minor(fs::metadata(path)?.dev()))
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    pub(crate) use crate::fake_proc::read;

    /// EBUSY from v4_end_grace means no nfsd in that namespace, not "stop nfsd first" (the
    /// many-volumes lab printed the latter when it wrote the knob of a namespace without nfsd).
    #[test]
    fn ebusy_is_explained_per_knob() {
        assert!(busy_hint(V4_END_GRACE).contains("no nfsd runs there"));
        assert!(busy_hint(V4_GRACE_TIME).contains("while nfsd is stopped"));
    }

    /// A fake proc tree (nfsd mounted) with `threads` and the given locks text.
    pub(crate) fn fake_proc(
        osrelease: &str,
        threads: Option<u64>,
        locks: &str,
    ) -> tempfile::TempDir {
        crate::fake_proc::FakeProc {
            osrelease: osrelease.into(),
            threads,
            locks: locks.into(),
            ..Default::default()
        }
        .build()
    }

    #[test]
    fn kernel_versions() {
        assert_eq!(parse_kernel_version("6.18.44-fc-v669\n"), Some((6, 18)));
        assert_eq!(parse_kernel_version("6.1.0-18-amd64"), Some((6, 1)));
        assert_eq!(parse_kernel_version("5.15"), Some((5, 15)));
        assert_eq!(parse_kernel_version("6.6-rc1"), Some((6, 6)));
        assert_eq!(parse_kernel_version("garbage"), None);
    }
}
