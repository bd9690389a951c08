//! Loop devices over image files, detached on drop.

use crate::cmd::run_ok;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

/// A loop device attached to an image; detached on drop (even when the test panics).
pub struct Loop {
    pub dev: PathBuf,
}

impl Loop {
    pub fn attach(img: &Path) -> Loop {
        Self::attach_with(img, &[])
    }

    /// With extra `losetup` options (e.g. `--sector-size 4096`).
    pub fn attach_with(img: &Path, opts: &[&str]) -> Loop {
        let o = run_ok(
            Command::new("losetup")
                .args(opts)
                .args(["-f", "--show"])
                .arg(img),
        );
        Loop {
            dev: PathBuf::from(String::from_utf8_lossy(&o.stdout).trim()),
        }
    }

    /// `loop3` for `/dev/loop3`: the name in kernel messages and the one the kernel writes
    /// into the MMP block.
    pub fn name(&self) -> String {
        self.dev.file_name().unwrap().to_string_lossy().into_owned()
    }
}

impl Drop for Loop {
    fn drop(&mut self) {
        let _ = Command::new("losetup").arg("-d").arg(&self.dev).status();
        // `losetup -d` of a device that is still briefly busy (udev's blkid probe after a
        // umount) only sets autoclear: the detach happens later. Wait for it, so the next step
        // (or test) does not find the image still attached.
        if let Some(name) = self.dev.file_name() {
            let backing = Path::new("/sys/block").join(name).join("loop/backing_file");
            for _ in 0..100 {
                if !backing.exists() {
                    break;
                }
                std::thread::sleep(Duration::from_millis(100));
            }
        }
    }
}
