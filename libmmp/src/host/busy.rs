//! Is a device or image in use on this host? Checked before any edit, so that a refusal can say
//! exactly where it is mounted or attached.
//!
//! - Block devices: `/proc/self/mountinfo` entries with the device's `major:minor`, and the
//!   kernel's holders (`/sys/dev/block/M:m/holders`: dm, md, ...). The exclusive open
//!   ([`crate::io::device::Device::open_exclusive`], `O_EXCL`) then catches what this misses, such
//!   as a mount in another mount namespace.
//! - Image files: every loop device whose `/sys/block/loopN/loop/backing_file` is this file
//!   (compared by device and inode, so symlinks and bind mounts do not hide it), attached or
//!   mounted, plus the mounts of those loop devices.

use serde::Serialize;
use std::fs;
use std::io;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};

/// One line of `/proc/self/mountinfo` (`proc(5)`): the fields we use.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MountEntry {
    pub major: u32,
    pub minor: u32,
    pub mount_point: PathBuf,
    pub fs_type: String,
    pub source: String,
}

/// Undo the octal escapes mountinfo uses for space, tab, newline and backslash (`\040`...).
fn unescape(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\\'
            && i + 3 < b.len()
            && b[i + 1..i + 4].iter().all(|c| (b'0'..=b'7').contains(c))
        {
            let v = (u32::from(b[i + 1] - b'0') << 6)
                | (u32::from(b[i + 2] - b'0') << 3)
                | u32::from(b[i + 3] - b'0');
            out.push(v as u8);
            i += 4;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Parse mountinfo text. Total: malformed lines are skipped, never a panic.
///
/// Format: `ID PARENT MAJ:MIN ROOT MOUNT_POINT OPTIONS [OPTIONAL...] - FSTYPE SOURCE SUPER_OPTS`.
pub fn parse_mountinfo(text: &str) -> Vec<MountEntry> {
    text.lines()
        .filter_map(|line| {
            let fields: Vec<&str> = line.split(' ').collect();
            let sep = fields.iter().position(|f| *f == "-")?;
            if sep < 6 || fields.len() < sep + 3 {
                return None;
            }
            let (major, minor) = fields[2].split_once(':')?;
            Some(MountEntry {
                major: major.parse().ok()?,
                minor: minor.parse().ok()?,
                mount_point: PathBuf::from(unescape(fields[4])),
                fs_type: unescape(fields[sep + 1]),
                source: unescape(fields[sep + 2]),
            })
        })
        .collect()
}

/// A way in which this host uses the device.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case", tag = "kind")]
pub enum LocalUse {
    /// Mounted at `mount_point` (through `via`, a loop device, for an image file).
    Mounted {
        mount_point: PathBuf,
        fs_type: String,
        via: Option<PathBuf>,
    },
    /// An image file attached to a loop device.
    LoopAttached { loop_device: PathBuf },
    /// Block devices stacked on this one (`/sys/dev/block/M:m/holders`).
    Held { holders: Vec<String> },
}

impl std::fmt::Display for LocalUse {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            LocalUse::Mounted {
                mount_point,
                fs_type,
                via: Some(l),
            } => write!(
                f,
                "mounted at {} ({fs_type}) through {}",
                mount_point.display(),
                l.display()
            ),
            LocalUse::Mounted {
                mount_point,
                fs_type,
                via: None,
            } => write!(f, "mounted at {} ({fs_type})", mount_point.display()),
            LocalUse::LoopAttached { loop_device } => {
                write!(f, "attached to {}", loop_device.display())
            }
            LocalUse::Held { holders } => write!(f, "held by {}", holders.join(", ")),
        }
    }
}

impl LocalUse {
    /// What to do about it.
    pub fn next_step(&self) -> String {
        match self {
            LocalUse::Mounted { mount_point, .. } => {
                format!("unmount it (`umount {}`)", mount_point.display())
            }
            LocalUse::LoopAttached { loop_device } => {
                format!("detach it (`losetup -d {}`)", loop_device.display())
            }
            LocalUse::Held { holders } => format!(
                "stop what is stacked on it ({}: e.g. `dmsetup remove`, `mdadm --stop`)",
                holders.join(", ")
            ),
        }
    }
}

/// This process's mount table (`/proc/self/mountinfo`).
pub fn read_mountinfo() -> io::Result<Vec<MountEntry>> {
    Ok(parse_mountinfo(&fs::read_to_string(
        "/proc/self/mountinfo",
    )?))
}

fn mounts_of(mounts: &[MountEntry], major: u32, minor: u32, via: Option<&Path>) -> Vec<LocalUse> {
    mounts
        .iter()
        .filter(|m| m.major == major && m.minor == minor)
        .map(|m| LocalUse::Mounted {
            mount_point: m.mount_point.clone(),
            fs_type: m.fs_type.clone(),
            via: via.map(Path::to_path_buf),
        })
        .collect()
}

fn parse_dev(s: &str) -> Option<(u32, u32)> {
    let (a, b) = s.trim().split_once(':')?;
    Some((a.parse().ok()?, b.parse().ok()?))
}

/// Everything on this host that uses `path` (empty: nothing found).
pub fn local_users(path: &Path) -> io::Result<Vec<LocalUse>> {
    let meta = fs::metadata(path)?;
    let mounts = read_mountinfo()?;
    if meta.file_type().is_block_device() {
        Ok(block_device_users(&meta, &mounts))
    } else {
        image_file_users(path, &meta, &mounts)
    }
}

/// A block device: its mounts, and the devices stacked on it (dm, md: `holders/` in sysfs).
fn block_device_users(meta: &fs::Metadata, mounts: &[MountEntry]) -> Vec<LocalUse> {
    let mut out = Vec::new();
    let rdev = meta.rdev();
    let (major, minor) = (libc::major(rdev), libc::minor(rdev));
    out.extend(mounts_of(mounts, major, minor, None));
    let holders_dir = PathBuf::from(format!("/sys/dev/block/{major}:{minor}/holders"));
    if let Ok(rd) = fs::read_dir(&holders_dir) {
        let mut holders: Vec<String> = rd
            .filter_map(Result::ok)
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .collect();
        holders.sort();
        if !holders.is_empty() {
            out.push(LocalUse::Held { holders });
        }
    }
    out
}

/// An image file: the loop devices backed by it, and their mounts (and their partitions').
/// Failing to read /sys/block is an error, not "not attached": without it we cannot tell.
fn image_file_users(
    path: &Path,
    meta: &fs::Metadata,
    mounts: &[MountEntry],
) -> io::Result<Vec<LocalUse>> {
    let mut out = Vec::new();
    let canonical = fs::canonicalize(path)?;
    let mut loops: Vec<(String, PathBuf)> = Vec::new();
    for entry in fs::read_dir("/sys/block")? {
        let entry = entry?;
        let name = entry.file_name().to_string_lossy().into_owned();
        if !name.starts_with("loop") {
            continue;
        }
        let Ok(backing) = fs::read_to_string(entry.path().join("loop/backing_file")) else {
            continue; // not attached
        };
        let backing = backing.trim_end_matches('\n');
        if backing.ends_with(" (deleted)") {
            continue; // a removed file, so not the one we opened by name
        }
        let same = Path::new(backing) == canonical
            || fs::metadata(backing).is_ok_and(|m| m.dev() == meta.dev() && m.ino() == meta.ino());
        if same {
            loops.push((name, entry.path()));
        }
    }
    loops.sort();
    for (name, sys) in loops {
        let loop_device = PathBuf::from(format!("/dev/{name}"));
        out.push(LocalUse::LoopAttached {
            loop_device: loop_device.clone(),
        });
        // The loop device itself and any partitions on it (loopNp1 ...).
        let mut devs = Vec::new();
        if let Ok(d) = fs::read_to_string(sys.join("dev")) {
            devs.extend(parse_dev(&d));
        }
        if let Ok(rd) = fs::read_dir(&sys) {
            for e in rd.filter_map(Result::ok) {
                if e.file_name().to_string_lossy().starts_with(&name) {
                    if let Ok(d) = fs::read_to_string(e.path().join("dev")) {
                        devs.extend(parse_dev(&d));
                    }
                }
            }
        }
        for (major, minor) in devs {
            out.extend(mounts_of(mounts, major, minor, Some(&loop_device)));
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const SAMPLE: &str = "\
22 1 253:1 / / rw,relatime shared:1 - ext4 /dev/mapper/root rw
36 22 7:3 / /mnt/with\\040space rw,noatime master:1 - ext4 /dev/loop3 rw,errors=continue
37 22 0:5 / /dev rw - devtmpfs udev rw
broken line
";

    #[test]
    fn parses_mountinfo() {
        let m = parse_mountinfo(SAMPLE);
        assert_eq!(m.len(), 3);
        assert_eq!((m[1].major, m[1].minor), (7, 3));
        assert_eq!(m[1].mount_point, PathBuf::from("/mnt/with space"));
        assert_eq!(m[1].fs_type, "ext4");
        assert_eq!(m[1].source, "/dev/loop3");
        let found = mounts_of(&m, 7, 3, Some(Path::new("/dev/loop3")));
        assert_eq!(
            found[0].to_string(),
            "mounted at /mnt/with space (ext4) through /dev/loop3"
        );
    }

    #[test]
    fn an_unused_image_has_no_users() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("img");
        fs::write(&f, [0u8; 4096]).unwrap();
        assert_eq!(local_users(&f).unwrap(), vec![]);
        assert!(local_users(&dir.path().join("missing")).is_err());
    }

    proptest! {
        #[test]
        fn parse_never_panics(text in "\\PC*") {
            let _ = parse_mountinfo(&text);
        }

        #[test]
        fn unescape_never_panics(text in "[\\\\0-9a ]{0,12}") {
            let _ = unescape(&text);
        }
    }
}
