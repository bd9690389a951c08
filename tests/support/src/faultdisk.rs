//! A disk that fails or stalls on command, for the self-fence regressions (sbd's
//! `dm wipe_table` and dm-delay; this host's kernel has no device-mapper): an image file served
//! through a one-file FUSE filesystem run by the test (fuser, mounted by root with mount(2),
//! no libfuse), under a loop device. The FUSE file is opened with `FOPEN_DIRECT_IO`, so every
//! block the loop device reads or writes reaches [`FaultFs`] at once, where the current
//! [`Fault`] applies, and every write is logged with the time it landed (or failed).
//!
//! Drop order matters when the disk stalls: a process blocked in I/O to a stalled disk cannot
//! die, so [`FaultDisk::set`] `Fault::None` (dropping does it too) before killing it.

use crate::loopdev::Loop;
use crate::Error;
use fuser::{
    consts::FOPEN_DIRECT_IO, BackgroundSession, FileAttr, FileType, Filesystem, MountOption,
    ReplyAttr, ReplyData, ReplyEntry, ReplyOpen, ReplyWrite, Request,
};
use std::ffi::OsStr;
use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant, SystemTime};

/// What the disk does with the next reads and writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// Serve them.
    None,
    /// Fail them with EIO, as a disk whose path is gone.
    Fail,
    /// Hold them until the fault changes, as a hung path.
    Stall,
    /// Serve each after this delay, as a slow or congested disk.
    Delay(Duration),
}

/// One write that reached the disk.
#[derive(Debug, Clone)]
pub struct WriteRecord {
    /// When it reached the disk (the fault had not yet applied).
    pub arrived: Instant,
    /// When it landed, or failed.
    pub at: Instant,
    pub offset: u64,
    pub data: Vec<u8>,
    /// `false`: it failed with EIO and the disk is unchanged.
    pub landed: bool,
}

#[derive(Debug)]
struct Shared {
    fault: Mutex<Fault>,
    changed: Condvar,
    writes: Mutex<Vec<WriteRecord>>,
    /// Reads and writes failed with EIO.
    failed: AtomicUsize,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // A panic elsewhere in the test must not hide what the disk saw.
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// The name of the one file in the filesystem.
const FILE_NAME: &str = "disk.img";
const FILE_INO: u64 = 2;
const TTL: Duration = Duration::from_secs(1);
const EIO: i32 = nix::libc::EIO;
const ENOENT: i32 = nix::libc::ENOENT;

/// The FUSE filesystem: a root directory holding `disk.img`, backed by an image file.
struct FaultFs {
    backing: File,
    size: u64,
    shared: Arc<Shared>,
}

impl FaultFs {
    fn attr(&self, ino: u64) -> FileAttr {
        let (kind, perm, size) = if ino == FILE_INO {
            (FileType::RegularFile, 0o600, self.size)
        } else {
            (FileType::Directory, 0o755, 0)
        };
        FileAttr {
            ino,
            size,
            blocks: size.div_ceil(512),
            atime: SystemTime::UNIX_EPOCH,
            mtime: SystemTime::UNIX_EPOCH,
            ctime: SystemTime::UNIX_EPOCH,
            crtime: SystemTime::UNIX_EPOCH,
            kind,
            perm,
            nlink: 1,
            uid: 0,
            gid: 0,
            rdev: 0,
            blksize: 4096,
            flags: 0,
        }
    }

    /// Apply the fault to one I/O: `Err(EIO)` when it must fail.
    fn gate(&self) -> Result<(), i32> {
        let mut f = lock(&self.shared.fault);
        loop {
            match *f {
                Fault::None => return Ok(()),
                Fault::Fail => {
                    self.shared.failed.fetch_add(1, Ordering::Relaxed);
                    return Err(EIO);
                }
                Fault::Delay(d) => {
                    drop(f);
                    std::thread::sleep(d);
                    return Ok(());
                }
                Fault::Stall => {
                    f = self
                        .shared
                        .changed
                        .wait(f)
                        .unwrap_or_else(|e| e.into_inner())
                }
            }
        }
    }
}

impl Filesystem for FaultFs {
    fn lookup(&mut self, _req: &Request<'_>, parent: u64, name: &OsStr, reply: ReplyEntry) {
        if parent == fuser::FUSE_ROOT_ID && name == FILE_NAME {
            reply.entry(&TTL, &self.attr(FILE_INO), 0);
        } else {
            reply.error(ENOENT);
        }
    }

    fn getattr(&mut self, _req: &Request<'_>, ino: u64, _fh: Option<u64>, reply: ReplyAttr) {
        reply.attr(&TTL, &self.attr(ino));
    }

    fn open(&mut self, _req: &Request<'_>, _ino: u64, _flags: i32, reply: ReplyOpen) {
        // Direct I/O: no page cache between the loop device and the fault.
        reply.opened(0, FOPEN_DIRECT_IO);
    }

    fn read(
        &mut self,
        _req: &Request<'_>,
        _ino: u64,
        _fh: u64,
        offset: i64,
        size: u32,
        _flags: i32,
        _lock_owner: Option<u64>,
        reply: ReplyData,
    ) {
        if let Err(e) = self.gate() {
            return reply.error(e);
        }
        let offset = offset.max(0) as u64;
        let len = (u64::from(size)).min(self.size.saturating_sub(offset)) as usize;
        let mut buf = vec![0u8; len];
        match self.backing.read_exact_at(&mut buf, offset) {
            Ok(()) => reply.data(&buf),
            Err(_) => reply.error(EIO),
        }
    }

    fn write(
        &mut self,
        _req: &Request<'_>,
        _ino: u64,
        _fh: u64,
        offset: i64,
        data: &[u8],
        _write_flags: u32,
        _flags: i32,
        _lock_owner: Option<u64>,
        reply: ReplyWrite,
    ) {
        let arrived = Instant::now();
        let offset = offset.max(0) as u64;
        let res = self.gate().and_then(|()| {
            self.backing
                .write_all_at(data, offset)
                .and_then(|()| self.backing.sync_data())
                .map_err(|_| EIO)
        });
        lock(&self.shared.writes).push(WriteRecord {
            arrived,
            at: Instant::now(),
            offset,
            data: data.to_vec(),
            landed: res.is_ok(),
        });
        match res {
            Ok(()) => reply.written(data.len() as u32),
            Err(e) => reply.error(e),
        }
    }
}

/// An image file behind a FUSE filesystem that fails or stalls on command, and a loop device
/// over it: [`FaultDisk::dev`] is the disk under test. Unmounted and detached on drop (after
/// clearing the fault).
pub struct FaultDisk {
    shared: Arc<Shared>,
    lp: Option<Loop>,
    session: Option<BackgroundSession>,
    mnt: tempfile::TempDir,
}

impl FaultDisk {
    /// Serve `image` (which must outlive this) and attach a loop device to it. Needs root and
    /// `/dev/fuse` (see [`crate::require::require_fuse`]).
    pub fn new(image: &Path) -> Result<FaultDisk, Error> {
        let backing = File::options()
            .read(true)
            .write(true)
            .open(image)
            .map_err(Error::io(format!("open {}", image.display())))?;
        let size = backing
            .metadata()
            .map_err(Error::io(format!("stat {}", image.display())))?
            .len();
        let shared = Arc::new(Shared {
            fault: Mutex::new(Fault::None),
            changed: Condvar::new(),
            writes: Mutex::new(Vec::new()),
            failed: AtomicUsize::new(0),
        });
        let mnt = tempfile::tempdir().map_err(Error::io("make a FUSE mount point"))?;
        let fs = FaultFs {
            backing,
            size,
            shared: Arc::clone(&shared),
        };
        let options = [
            MountOption::FSName("mmp-faultdisk".into()),
            MountOption::AllowOther,
            MountOption::RW,
        ];
        let session = fuser::spawn_mount2(fs, mnt.path(), &options)
            .map_err(Error::io(format!("mount FUSE at {}", mnt.path().display())))?;
        let mut disk = FaultDisk {
            shared,
            lp: None,
            session: Some(session),
            mnt,
        };
        disk.lp = Some(Loop::attach(&disk.file()));
        Ok(disk)
    }

    /// The loop device: the disk under test.
    pub fn dev(&self) -> &Path {
        &self.lp.as_ref().expect("attached until drop").dev
    }

    /// The FUSE file (attach another loop device to it for a second "host").
    pub fn file(&self) -> PathBuf {
        self.mnt.path().join(FILE_NAME)
    }

    /// From now on, do `fault` with every read and write (a stalled one resumes at once when
    /// the fault changes).
    pub fn set(&self, fault: Fault) {
        *lock(&self.shared.fault) = fault;
        self.shared.changed.notify_all();
    }

    /// Every write so far, in the order they landed or failed.
    pub fn writes(&self) -> Vec<WriteRecord> {
        lock(&self.shared.writes).clone()
    }

    /// How many reads and writes failed so far.
    pub fn failed_ios(&self) -> usize {
        self.shared.failed.load(Ordering::Relaxed)
    }

    /// The writes so far that covered byte `offset`.
    pub fn writes_at(&self, offset: u64) -> Vec<WriteRecord> {
        let mut w = self.writes();
        w.retain(|r| r.offset <= offset && offset < r.offset + r.data.len() as u64);
        w
    }
}

impl Drop for FaultDisk {
    fn drop(&mut self) {
        self.set(Fault::None);
        self.lp = None;
        self.session = None;
    }
}
