//! The skip-or-fail rule: a test whose prerequisite (root, a loop device, a program) is
//! missing skips with a message, except under `CI=true`, where it fails, so that CI never
//! passes by running nothing.

use std::path::Path;

/// The e2fsprogs programs the tests compare against or make images with (Debian: e2fsprogs).
pub const E2FSPROGS: &[&str] = &[
    "mkfs.ext4",
    "mke2fs",
    "e2fsck",
    "tune2fs",
    "dumpe2fs",
    "debugfs",
    "e2mmpstatus",
];

pub fn in_ci() -> bool {
    std::env::var("CI").is_ok_and(|v| v == "true")
}

/// This test cannot run here: print why and go on (the caller returns), or panic under
/// CI=true. The test harness names each test's thread after the test, so the message says
/// which test skipped even when tests run in parallel.
pub fn cannot_run(why: &str) {
    let thread = std::thread::current();
    let test = thread.name().unwrap_or("test");
    if in_ci() {
        panic!("{test}: cannot run: {why} (CI=true: this test must run)");
    }
    eprintln!("SKIPPED {test}: {why}");
}

/// `true` if the test may go on; otherwise [`cannot_run`].
pub fn require(ok: bool, what: &str) -> bool {
    if !ok {
        cannot_run(what);
    }
    ok
}

pub fn is_root() -> bool {
    nix::unistd::geteuid().is_root()
}

/// Whether `tool` is installed: on PATH, or in an sbin directory (a user's PATH often lacks
/// /usr/sbin, where mkfs.ext4, losetup and rpc.statd live).
pub fn have(tool: &str) -> bool {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain(["/usr/sbin", "/sbin", "/usr/bin", "/bin"].map(Into::into))
        .any(|d| d.join(tool).is_file())
}

/// All of `tools` installed; the message lists the missing ones.
pub fn require_tools(tools: &[&str]) -> bool {
    let missing: Vec<&str> = tools.iter().copied().filter(|t| !have(t)).collect();
    require(
        missing.is_empty(),
        &format!("programs not installed: {missing:?}"),
    )
}

pub fn require_e2fsprogs() -> bool {
    require_tools(E2FSPROGS)
}

pub fn require_root(why: &str) -> bool {
    require(is_root(), &format!("needs root ({why})"))
}

/// Everything a test with images on loop devices needs: e2fsprogs, root, the loop driver
/// and util-linux's losetup, mount and umount.
pub fn require_loop_devices() -> bool {
    require_e2fsprogs()
        && require_root("loop devices, mount")
        && require(
            Path::new("/dev/loop-control").exists(),
            "no /dev/loop-control (loop driver)",
        )
        && require_tools(&["losetup", "mount", "umount"])
}

/// A FUSE-backed disk under a loop device ([`crate::faultdisk`]): root (mount(2) of a FUSE
/// filesystem), the FUSE driver and loop devices.
pub fn require_fuse() -> bool {
    require_loop_devices() && require(Path::new("/dev/fuse").exists(), "no /dev/fuse (FUSE)")
}
