//! Helpers of the `enable`/`disable`/`interval`/`clear` integration tests: images made under a
//! controlled mke2fs.conf, e2fsprogs' view of them, mmp-tool's JSON. The scaffolding every
//! crate shares (loop devices, mounts, require(), ...) is in the `test_support` crate.
#![allow(dead_code)] // each test binary uses a different subset

use libmmp::fs::MmpFs;
use libmmp::io::device::{Access, Device};
use libmmp::ondisk::geometry::Geometry;
use libmmp::ondisk::superblock::Superblock;
use std::fs;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use test_support::cmd::{run, run_ok, text};
use test_support::image::sparse_file;

/// A controlled mke2fs.conf, so that the matrix does not depend on the distribution's defaults.
const MKE2FS_CONF: &str = "\
[defaults]
	base_features = sparse_super,large_file,filetype,resize_inode,dir_index,ext_attr
	blocksize = 4096
	inode_size = 256
	inode_ratio = 16384
	lazy_itable_init = 1
[fs_types]
	ext4 = {
		features = has_journal,extent,huge_file,dir_nlink,extra_isize
	}
	small = {
	}
	floppy = {
	}
";

pub fn tool() -> &'static str {
    env!("CARGO_BIN_EXE_mmp-tool")
}

pub fn mkfs_cmd(dir: &Path) -> Command {
    let conf = dir.join("mke2fs.conf");
    if !conf.exists() {
        fs::write(&conf, MKE2FS_CONF).unwrap();
    }
    let mut c = Command::new("mke2fs");
    c.env("MKE2FS_CONFIG", conf)
        .args(["-q", "-F", "-t", "ext4"]);
    c
}

/// Make an image of `mib` MiB with `mke2fs -t ext4 ARGS`.
pub fn mkfs(dir: &Path, name: &str, mib: u64, args: &[&str]) -> PathBuf {
    let img = dir.join(format!("{name}.img"));
    sparse_file(&img, mib << 20);
    run_ok(mkfs_cmd(dir).args(args).arg(&img));
    img
}

/// Free blocks of each group, as dumpe2fs reports them.
pub fn group_free_blocks(img: &Path) -> Vec<u64> {
    let o = run_ok(Command::new("dumpe2fs").arg(img).stderr(Stdio::null()));
    String::from_utf8_lossy(&o.stdout)
        .lines()
        .filter_map(|l| {
            l.trim()
                .split_once(" free blocks, ")
                .and_then(|(n, _)| n.parse().ok())
        })
        .collect()
}

/// Like [`mkfs`], but with group 0 completely full (a file made with `mke2fs -d` takes its
/// free blocks), so that the first free block lies in a later group.
pub fn mkfs_group0_full(dir: &Path, name: &str, mib: u64, args: &[&str], bs: u64) -> PathBuf {
    let probe = mkfs(dir, &format!("{name}.probe"), mib, args);
    let free0 = group_free_blocks(&probe)[0];
    fs::remove_file(&probe).unwrap();
    let src = dir.join(format!("{name}.src"));
    fs::create_dir_all(&src).unwrap();
    fs::write(src.join("fill"), vec![b'x'; (free0 * bs) as usize]).unwrap();
    let mut a: Vec<&str> = args.to_vec();
    let s = src.to_string_lossy().into_owned();
    a.extend(["-d", s.as_str()]);
    let img = mkfs(dir, name, mib, &a);
    fs::remove_dir_all(&src).unwrap();
    img
}

pub fn superblock(img: &Path) -> Superblock {
    MmpFs::open(Device::open(img, Access::ReadOnly).unwrap())
        .unwrap()
        .superblock()
        .clone()
}

pub fn geometry(img: &Path) -> Geometry {
    Geometry::from_superblock(&superblock(img)).unwrap()
}

pub fn dumpe2fs_h(img: &Path) -> String {
    text(&run_ok(Command::new("dumpe2fs").arg("-h").arg(img)))
}

pub fn e2fsck_n(img: &Path) -> Output {
    run(Command::new("e2fsck").arg("-fn").arg(img))
}

/// `mmp-tool ARGS --json`: exit code and the JSON object it printed.
pub fn tool_json(args: &[&str]) -> (i32, serde_json::Value, String) {
    let o = run(Command::new(tool()).args(args).arg("--json"));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap_or_else(|e| {
        panic!(
            "mmp-tool {args:?} --json printed no JSON ({e}): {}",
            text(&o)
        )
    });
    (
        o.status.code().unwrap_or(-1),
        v,
        String::from_utf8_lossy(&o.stderr).into_owned(),
    )
}

/// Mount `dev` (ext4, rw) at `dir`, check that the kernel runs `kmmpd-<dev>`, and unmount, all
/// inside a private mount namespace of a child shell. A mount in our own namespace would be
/// copied into any namespace another process creates meanwhile (`unshare -m`, `ip netns exec`
/// in concurrently running tests); such a copy keeps the filesystem alive after our umount, so
/// kmmpd would never write CLEAN. In a private namespace nobody else can see the mount.
pub fn kernel_mount_cycle(dev: &Path, dir: &Path) -> Result<(), String> {
    fs::create_dir_all(dir).unwrap();
    let name = dev.file_name().unwrap().to_string_lossy().into_owned();
    let script = format!(
        "mount -t ext4 -o noinit_itable '{dev}' '{dir}' || exit 3; \
         if cat /proc/[0-9]*/comm 2>/dev/null | grep -qx 'kmmpd-{name}'; then r=0; else r=4; fi; \
         umount '{dir}' || exit 5; exit $r",
        dev = dev.display(),
        dir = dir.display()
    );
    let o = run(Command::new("unshare").args([
        "--mount",
        "--propagation",
        "private",
        "--",
        "sh",
        "-c",
        &script,
    ]));
    match o.status.code() {
        Some(0) => Ok(()),
        Some(3) => Err(format!("mount of {} failed: {}", dev.display(), text(&o))),
        Some(4) => Err(format!("no kmmpd-{name} thread while mounted")),
        Some(5) => Err(format!("umount failed: {}", text(&o))),
        c => Err(format!("unshare exited {c:?}: {}", text(&o))),
    }
}

/// A short digest of a file, for messages (equality is checked on the bytes themselves).
pub fn digest(b: &[u8]) -> u32 {
    libmmp::ondisk::crc::raw_crc32c(!0, b)
}

/// Run `mmp-tool <sub> <device> [extra] --json` and insist on a refusal: `code`, `reason`,
/// the device named, a next step, and the image unchanged.
pub fn refused(
    img: &Path,
    device: &str,
    sub: &str,
    extra: &[&str],
    code: i32,
    reason: &str,
) -> String {
    let before = fs::read(img).unwrap();
    let mut args = vec![sub, device];
    args.extend_from_slice(extra);
    let (got, j, stderr) = tool_json(&args);
    let after = fs::read(img).unwrap();
    assert_eq!(
        digest(&before),
        digest(&after),
        "{sub} {device}: the image changed although refused ({stderr})"
    );
    assert_eq!(before, after);
    assert_eq!(got, code, "{sub} {device}: exit code; {stderr}");
    assert_eq!(j["ok"], false, "{j}");
    assert_eq!(j["reason"], reason, "{sub} {device}: {stderr}");
    assert_eq!(j["exit_code"], code);
    let msg = j["message"].as_str().unwrap().to_string();
    assert!(msg.contains(device), "names the device: {msg}");
    assert!(
        stderr.contains(&msg),
        "the same message on stderr: {stderr}"
    );
    msg
}

/// Change the primary superblock of an image in place (its checksum recomputed by encode).
pub fn edit_superblock(img: &Path, f: impl FnOnce(&mut Superblock)) {
    let mut sb = superblock(img);
    f(&mut sb);
    fs::OpenOptions::new()
        .write(true)
        .open(img)
        .unwrap()
        .write_all_at(&sb.encode(), 1024)
        .unwrap();
}

/// mkfs options of a metadata_csum filesystem with MMP, several groups, flex_bg.
pub const META_MMP: &[&str] = &[
    "-b",
    "4096",
    "-g",
    "1024",
    "-O",
    "64bit,flex_bg,metadata_csum,mmp",
];
