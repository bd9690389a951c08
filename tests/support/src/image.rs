//! ext4 images made by mkfs.ext4 in files the test owns.

use crate::cmd::run_ok;
use std::path::{Path, PathBuf};
use std::process::Command;

/// A sparse file of `bytes` at `path` (replacing any file there).
pub fn sparse_file(path: &Path, bytes: u64) {
    let f =
        std::fs::File::create(path).unwrap_or_else(|e| panic!("create {}: {e}", path.display()));
    f.set_len(bytes).unwrap();
}

/// `mkfs.ext4 -q -F ARGS PATH` on a fresh sparse file of `bytes`.
pub fn mkfs_ext4(path: &Path, bytes: u64, args: &[&str]) {
    sparse_file(path, bytes);
    run_ok(
        Command::new("mkfs.ext4")
            .args(["-q", "-F"])
            .args(args)
            .arg(path),
    );
}

/// [`mkfs_ext4`] of `mib` MiB at `dir/name`.
pub fn mkfs(dir: &Path, name: &str, mib: u64, args: &[&str]) -> PathBuf {
    let img = dir.join(name);
    mkfs_ext4(&img, mib << 20, args);
    img
}

/// A 64 MiB ext4 image with MMP, update interval 1 (check interval 5: waits of 11 s), in a
/// temporary directory of its own that also holds the test's other files.
pub struct Image {
    pub dir: tempfile::TempDir,
    pub path: PathBuf,
}

impl Image {
    pub fn new() -> Self {
        Self::with_options(&["-b", "4096"])
    }

    pub fn with_options(extra: &[&str]) -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("shared.img");
        let mut args = vec!["-O", "mmp", "-E", "mmp_update_interval=1"];
        args.extend_from_slice(extra);
        mkfs_ext4(&path, 64 << 20, &args);
        Image { dir, path }
    }

    /// A path in the image's directory.
    pub fn file(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }
}

impl Default for Image {
    fn default() -> Self {
        Self::new()
    }
}
