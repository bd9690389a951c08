//! Block devices and image files: the [`BlockIo`] implementation that reaches the disk.
//!
//! Block devices are opened with `O_DIRECT` so every read of the MMP block reaches the device
//! (or the loop driver) instead of this host's page cache: another node's writes never enter our
//! cache, so a cached read could show a stale sequence forever. This is what the kernel
//! (`read_mmp_block` clears `uptodate` and submits a real read) and e2fsprogs
//! (`ext2fs_mmp_read` opens its own `O_DIRECT` fd) do. `O_DIRECT` needs a buffer, offset and
//! length aligned to the logical sector size (`BLKSSZGET`), so reads go through an aligned bounce
//! buffer covering the sector-aligned span. Regular files (images) use plain I/O: `O_DIRECT`
//! fails on tmpfs (e2fsprogs 947315c8), and a file's page cache is shared by every process and
//! loop device on this host, so plain reads see what a loop-mounted kernel wrote.

use std::fs::{File, OpenOptions};
use std::io;
use std::os::unix::fs::{FileExt, FileTypeExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use super::eof;
use super::BlockIo;

/// What kind of thing a path names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeviceKind {
    BlockDevice,
    RegularFile,
}

/// How to open a device.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    /// `O_RDONLY`: what `status`, `check` and `dump` use. Opening block devices `O_RDWR`
    /// makes udev re-probe them on close (e2fsprogs 5cc83a2e), so read paths never do.
    ReadOnly,
    ReadWrite,
}

/// Errors opening a device.
#[derive(Debug, thiserror::Error)]
pub enum OpenError {
    #[error("{path}: no such file or device")]
    NotFound { path: PathBuf },
    #[error(
        "{path}: permission denied (run as root, or as a user with read access to the device)"
    )]
    PermissionDenied { path: PathBuf },
    #[error("{path}: is a directory, not a block device or image file")]
    IsDirectory { path: PathBuf },
    #[error("{path}: is not a block device or regular image file")]
    NotADevice { path: PathBuf },
    #[error("{path}: {op} failed: {source}")]
    Io {
        path: PathBuf,
        op: &'static str,
        #[source]
        source: io::Error,
    },
}

fn open_error(path: &Path, op: &'static str, e: io::Error) -> OpenError {
    let path = path.to_path_buf();
    match e.kind() {
        io::ErrorKind::NotFound => OpenError::NotFound { path },
        io::ErrorKind::PermissionDenied => OpenError::PermissionDenied { path },
        _ if e.raw_os_error() == Some(libc::EISDIR) => OpenError::IsDirectory { path },
        _ => OpenError::Io {
            path,
            op,
            source: e,
        },
    }
}

/// A block device (O_DIRECT) or a regular image file (plain I/O).
#[derive(Debug)]
pub struct Device {
    file: File,
    name: String,
    kind: DeviceKind,
    size: u64,
    sector: u32,
    /// `st_dev` of a writable image file whose filesystem reports write-back errors to
    /// `syncfs` (see [`syncfs_group`]).
    sync_group: Option<u64>,
}

/// Whether `syncfs(2)` reports write-back errors: since Linux 5.8 it returns an error when any
/// write-back on the filesystem failed since the descriptor was opened (or since its last
/// `syncfs`), through the superblock's error sequence (`s_wb_err`). Before, it returned 0 even
/// after a failed write-back, so a beat could count as durable when it was not.
fn syncfs_reports_errors() -> bool {
    static OK: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *OK.get_or_init(|| {
        std::fs::read_to_string("/proc/sys/kernel/osrelease")
            .ok()
            .and_then(|r| kernel_at_least(&r, (5, 8)))
            .unwrap_or(false)
    })
}

/// Whether a kernel release string (`6.18.44-foo`) is at least `min`; `None` if unparsable.
fn kernel_at_least(release: &str, min: (u32, u32)) -> Option<bool> {
    let mut it = release.trim().split(['.', '-']);
    let major = it.next()?.parse::<u32>().ok()?;
    let minor = it.next()?.parse::<u32>().ok()?;
    Some((major, minor) >= min)
}

/// The `syncfs` group of an image file opened read-write: its `st_dev`, if the kernel reports
/// write-back errors to `syncfs` and the file lives on a local filesystem that records them on
/// its own superblock (ext2/3/4, XFS, btrfs, tmpfs). Stacked or remote filesystems (overlayfs,
/// NFS, FUSE, ...) may record a data write-back error on another superblock than the one
/// `syncfs` checks, so their files keep one `fdatasync` per write.
fn syncfs_group(file: &File, meta: &std::fs::Metadata) -> Option<u64> {
    use nix::sys::statfs::{BTRFS_SUPER_MAGIC, EXT4_SUPER_MAGIC, TMPFS_MAGIC, XFS_SUPER_MAGIC};
    if !syncfs_reports_errors() {
        return None;
    }
    let ty = nix::sys::statfs::fstatfs(file).ok()?.filesystem_type();
    [
        EXT4_SUPER_MAGIC,
        XFS_SUPER_MAGIC,
        BTRFS_SUPER_MAGIC,
        TMPFS_MAGIC,
    ]
    .contains(&ty)
    .then(|| std::os::unix::fs::MetadataExt::dev(meta))
}

impl Device {
    /// Open `path` for MMP I/O.
    pub fn open(path: &Path, access: Access) -> Result<Self, OpenError> {
        Self::open_with(path, access, false)
    }

    /// Open `path` read-write for an exclusive metadata edit (`mmp-tool enable` and friends).
    ///
    /// - Block devices are opened with `O_EXCL`: the kernel then refuses with `EBUSY` (reported
    ///   as [`OpenError::Io`] with op `"exclusive open (O_EXCL)"`) while the device is mounted
    ///   in any mount namespace, stacked under dm/md, or opened exclusively by another program,
    ///   and it refuses new mounts for as long as this descriptor is open.
    /// - Image files get an open-file-description write lock on the whole file
    ///   (`F_OFD_SETLK`; `EAGAIN` is reported with op `"lock (F_OFD_SETLK)"`), which keeps two
    ///   exclusive editors apart. It does not stop `losetup`; callers check loop devices too.
    pub fn open_exclusive(path: &Path) -> Result<Self, OpenError> {
        let dev = Self::open_with(path, Access::ReadWrite, true)?;
        if dev.kind == DeviceKind::RegularFile {
            let fl = libc::flock {
                l_type: libc::F_WRLCK as libc::c_short,
                l_whence: libc::SEEK_SET as libc::c_short,
                l_start: 0,
                l_len: 0, // to the end of the file, however it grows
                l_pid: 0,
            };
            nix::fcntl::fcntl(
                std::os::fd::AsRawFd::as_raw_fd(&dev.file),
                nix::fcntl::FcntlArg::F_OFD_SETLK(&fl),
            )
            .map_err(|e| OpenError::Io {
                path: path.to_path_buf(),
                op: "lock (F_OFD_SETLK)",
                source: e.into(),
            })?;
        }
        Ok(dev)
    }

    fn open_with(path: &Path, access: Access, exclusive: bool) -> Result<Self, OpenError> {
        let meta = std::fs::metadata(path).map_err(|e| open_error(path, "stat", e))?;
        let ft = meta.file_type();
        let kind = if ft.is_block_device() {
            DeviceKind::BlockDevice
        } else if ft.is_file() {
            DeviceKind::RegularFile
        } else if ft.is_dir() {
            return Err(OpenError::IsDirectory {
                path: path.to_path_buf(),
            });
        } else {
            return Err(OpenError::NotADevice {
                path: path.to_path_buf(),
            });
        };
        let mut opts = OpenOptions::new();
        opts.read(true).write(access == Access::ReadWrite);
        // Never follow the open into something that makes us the controlling tty, and keep
        // the descriptor out of any child we spawn.
        let mut flags = libc::O_NOCTTY | libc::O_CLOEXEC;
        if kind == DeviceKind::BlockDevice {
            flags |= libc::O_DIRECT;
            if exclusive {
                flags |= libc::O_EXCL;
            }
        }
        opts.custom_flags(flags);
        let op = if exclusive && kind == DeviceKind::BlockDevice {
            "exclusive open (O_EXCL)"
        } else {
            "open"
        };
        let file = opts.open(path).map_err(|e| open_error(path, op, e))?;
        let (size, sector) = match kind {
            DeviceKind::BlockDevice => (
                crate::io::sys::device_size(&file)
                    .map_err(|e| open_error(path, "ioctl(BLKGETSIZE64)", e))?,
                crate::io::sys::logical_sector_size(&file)
                    .map_err(|e| open_error(path, "ioctl(BLKSSZGET)", e))?,
            ),
            DeviceKind::RegularFile => (meta.len(), 512),
        };
        let sync_group = (kind == DeviceKind::RegularFile && access == Access::ReadWrite)
            .then(|| syncfs_group(&file, &meta))
            .flatten();
        Ok(Device {
            file,
            name: path.display().to_string(),
            kind,
            size,
            sector,
            sync_group,
        })
    }

    pub fn kind(&self) -> DeviceKind {
        self.kind
    }

    /// The underlying file (for locking or `fstat`).
    pub fn file(&self) -> &File {
        &self.file
    }
}

/// A heap buffer whose usable slice starts at an `align`-byte boundary, as O_DIRECT requires.
/// Built by over-allocating a `Vec` and slicing at the first aligned address: no unsafe code.
struct AlignedBuf {
    storage: Vec<u8>,
    start: usize,
    len: usize,
}

impl AlignedBuf {
    fn new(len: usize, align: usize) -> Self {
        let storage = vec![0u8; len + align];
        let misalign = storage.as_ptr() as usize % align;
        let start = if misalign == 0 { 0 } else { align - misalign };
        AlignedBuf {
            storage,
            start,
            len,
        }
    }
    fn as_slice(&self) -> &[u8] {
        &self.storage[self.start..self.start + self.len]
    }
    fn as_mut_slice(&mut self) -> &mut [u8] {
        &mut self.storage[self.start..self.start + self.len]
    }
}

impl BlockIo for Device {
    fn read_at(&self, offset: u64, buf: &mut [u8]) -> io::Result<()> {
        let end = offset.checked_add(buf.len() as u64);
        if end.is_none_or(|e| e > self.size) {
            return Err(eof(&self.name, offset, buf.len(), self.size));
        }
        match self.kind {
            DeviceKind::RegularFile => self.file.read_exact_at(buf, offset),
            DeviceKind::BlockDevice => {
                let s = u64::from(self.sector);
                let start = offset / s * s;
                let stop = (offset + buf.len() as u64).div_ceil(s) * s;
                let mut bounce = AlignedBuf::new((stop - start) as usize, self.sector as usize);
                self.file.read_exact_at(bounce.as_mut_slice(), start)?;
                let skip = (offset - start) as usize;
                buf.copy_from_slice(&bounce.as_slice()[skip..skip + buf.len()]);
                Ok(())
            }
        }
    }

    fn write_at(&self, offset: u64, buf: &[u8]) -> io::Result<()> {
        match self.kind {
            DeviceKind::RegularFile => self.file.write_all_at(buf, offset),
            DeviceKind::BlockDevice => {
                // No read-modify-write: on a shared device, rewriting the rest of a sector we
                // read a moment ago could undo another node's write to it.
                let s = u64::from(self.sector);
                if offset % s != 0 || buf.len() as u64 % s != 0 {
                    return Err(io::Error::new(
                        io::ErrorKind::InvalidInput,
                        format!(
                            "{}: write of {} bytes at {offset} is not aligned to the {s}-byte sector size",
                            self.name,
                            buf.len()
                        ),
                    ));
                }
                let mut bounce = AlignedBuf::new(buf.len(), self.sector as usize);
                bounce.as_mut_slice().copy_from_slice(buf);
                self.file.write_all_at(bounce.as_slice(), offset)
            }
        }
    }

    fn sync(&self) -> io::Result<()> {
        self.file.sync_data()
    }

    fn sync_group(&self) -> Option<u64> {
        self.sync_group
    }

    /// `syncfs` for an image file with a sync group (every dirty page of its filesystem is
    /// written back and the device's cache flushed; an error of any write-back on that
    /// filesystem since this descriptor last looked is returned), `fdatasync` otherwise.
    fn sync_filesystem(&self) -> io::Result<()> {
        if self.sync_group.is_none() {
            return self.sync();
        }
        nix::unistd::syncfs(std::os::fd::AsRawFd::as_raw_fd(&self.file)).map_err(io::Error::from)
    }

    fn size(&self) -> u64 {
        self.size
    }

    fn logical_block_size(&self) -> u32 {
        self.sector
    }

    fn name(&self) -> &str {
        &self.name
    }
}

#[cfg(test)]
mod tests;
