//! File primitives of the statd directory: no symlink is ever followed, and every rewrite is
//! a temp file given the replaced file's owner and mode, fsynced, renamed into place, and the
//! directory fsynced.

use super::{io_err, StatdError};
use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Write};
use std::os::unix::fs::{MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::Path;

pub(super) fn open_nofollow(path: &Path) -> io::Result<File> {
    OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW)
        .open(path)
}

pub(super) fn read_nofollow(path: &Path, what: &'static str) -> Result<Vec<u8>, StatdError> {
    let mut f = open_nofollow(path).map_err(|e| {
        if e.raw_os_error() == Some(libc::ELOOP) {
            StatdError::Symlink {
                path: path.to_path_buf(),
                what,
            }
        } else {
            io_err("cannot read", path)(e)
        }
    })?;
    let mut buf = Vec::new();
    f.read_to_end(&mut buf)
        .map_err(io_err("cannot read", path))?;
    Ok(buf)
}

pub(super) fn sync_dir(dir: &Path) -> Result<(), StatdError> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(io_err("cannot fsync directory", dir))
}

/// Owner and mode to give a file we create: those of the file we replace, else the directory's
/// owner (statd and sm-notify run as the owner of `sm/`, `nsm_drop_privileges()`).
#[derive(Debug, Clone, Copy)]
pub(super) struct Owner {
    pub(super) uid: u32,
    pub(super) gid: u32,
    pub(super) mode: u32,
}

/// Writes `data` to `dir/.<name>.new` and renames it over `dir/<name>`, keeping `owner`.
pub(super) fn atomic_replace(
    dir: &Path,
    name: &str,
    data: &[u8],
    owner: Owner,
) -> Result<(), StatdError> {
    let tmp = dir.join(format!(".{name}.new"));
    let target = dir.join(name);
    // A stale temp file from a crash would make O_EXCL fail; it holds nothing of value.
    match fs::symlink_metadata(&tmp) {
        Ok(_) => fs::remove_file(&tmp).map_err(io_err("cannot remove stale", &tmp))?,
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(e) => return Err(io_err("cannot stat", &tmp)(e)),
    }
    let result = (|| {
        let mut f = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(owner.mode & 0o7777)
            .custom_flags(libc::O_NOFOLLOW | libc::O_SYNC)
            .open(&tmp)
            .map_err(io_err("cannot create", &tmp))?;
        f.write_all(data).map_err(io_err("cannot write", &tmp))?;
        std::os::unix::fs::fchown(&f, Some(owner.uid), Some(owner.gid))
            .map_err(io_err("cannot set owner of", &tmp))?;
        f.set_permissions(fs::Permissions::from_mode(owner.mode & 0o7777))
            .map_err(io_err("cannot set mode of", &tmp))?;
        f.sync_all().map_err(io_err("cannot fsync", &tmp))?;
        fs::rename(&tmp, &target).map_err(io_err("cannot rename into place", &target))
    })();
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result?;
    sync_dir(dir)
}

pub(super) fn check_real_dir(path: &Path) -> Result<fs::Metadata, StatdError> {
    let md = fs::symlink_metadata(path).map_err(io_err("cannot open", path))?;
    if md.file_type().is_symlink() {
        return Err(StatdError::Symlink {
            path: path.to_path_buf(),
            what: "directory",
        });
    }
    if !md.is_dir() {
        return Err(StatdError::NotADirectory {
            path: path.to_path_buf(),
        });
    }
    Ok(md)
}

pub(super) fn owner_of(md: &fs::Metadata) -> Owner {
    Owner {
        uid: md.uid(),
        gid: md.gid(),
        mode: md.mode(),
    }
}

/// `old` followed by each line of `new` not already present in `old`.
pub(super) fn merge_lines(old: &[u8], new: &[u8]) -> Vec<u8> {
    let mut out = old.to_vec();
    if !out.is_empty() && !out.ends_with(b"\n") {
        out.push(b'\n');
    }
    let have: Vec<&[u8]> = old
        .split(|&b| b == b'\n')
        .filter(|l| !l.is_empty())
        .collect();
    for line in new.split(|&b| b == b'\n').filter(|l| !l.is_empty()) {
        if !have.contains(&line) {
            out.extend_from_slice(line);
            out.push(b'\n');
        }
    }
    out
}
