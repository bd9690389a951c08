//! Fence actions and the watchdog device.

use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::{FileTypeExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

/// An open watchdog device (`/dev/watchdog`, or a plain file in tests).
///
/// Opening it arms the watchdog; every write pets it. It is petted only while every held
/// device is healthy and the daemon's loop runs, so a fence, a hung loop or a hung device all
/// end in a reset when the driver's timeout runs out. A clean release writes the magic 'V'
/// before closing, which disarms drivers that support magic close
/// (`Documentation/watchdog/watchdog-api.rst`); any other exit leaves it armed.
#[derive(Debug)]
pub struct Watchdog {
    file: File,
    path: PathBuf,
    petting: bool,
    pets: u64,
}

impl Watchdog {
    pub fn open(path: &Path) -> io::Result<Self> {
        let file = OpenOptions::new()
            .append(true)
            .custom_flags(libc::O_CLOEXEC)
            .open(path)?;
        Ok(Watchdog {
            file,
            path: path.to_path_buf(),
            petting: true,
            pets: 0,
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Set the watchdog's timeout to `want` and return the one in force (the driver may round
    /// it), which goes into the self-fence bound. `Ok(None)`: this is not a watchdog device
    /// (a plain file standing in for one in tests), so no bound can be promised, unless
    /// `MMPD_TEST_FAKE_WATCHDOG=1` says to pretend (tests of the tag only).
    pub fn set_timeout(&mut self, want: Duration) -> io::Result<Option<Duration>> {
        let is_char = self.file.metadata()?.file_type().is_char_device();
        if !is_char {
            let fake = std::env::var_os("MMPD_TEST_FAKE_WATCHDOG").is_some_and(|v| v == "1");
            return Ok(fake.then_some(want));
        }
        match libmmp::io::watchdog::set_timeout(&self.file, want) {
            Ok(t) => Ok(Some(t)),
            // Some drivers have a fixed timeout: use the one they report.
            Err(e) => {
                tracing::warn!(watchdog = %self.path.display(), "cannot set the timeout to {want:?}: {e}; using the driver's");
                libmmp::io::watchdog::timeout(&self.file).map(Some)
            }
        }
    }

    pub fn is_petting(&self) -> bool {
        self.petting
    }

    /// Pet it (unless petting has stopped for good).
    pub fn pet(&mut self) -> io::Result<()> {
        if !self.petting {
            return Ok(());
        }
        self.file.write_all(b"p")?;
        self.pets += 1;
        Ok(())
    }

    /// Never pet again: the node resets when the timeout runs out.
    pub fn stop_petting(&mut self) {
        self.petting = false;
    }

    /// Disarm (magic close) and close: only on a clean release.
    pub fn disarm(mut self) -> io::Result<()> {
        if !self.petting {
            // Fenced: leave it armed.
            return Ok(());
        }
        self.file.write_all(b"V")
    }
}

/// Start the fence command through `/bin/sh -c`, with what happened in its environment. Its
/// output goes to mmpd's stderr (the journal).
pub fn spawn_command(
    cmd: &str,
    device: &Path,
    reason: &str,
    seq: u32,
    node: &str,
) -> io::Result<Child> {
    Command::new("/bin/sh")
        .arg("-c")
        .arg(cmd)
        .env("MMPD_DEVICE", device)
        .env("MMPD_REASON", reason)
        .env("MMPD_SEQ", format!("{seq:#010x}"))
        .env("MMPD_NODE", node)
        .stdin(Stdio::null())
        .spawn()
}

/// `echo b > /proc/sysrq-trigger`: reboot at once, without syncing or unmounting (that is the
/// point: nothing more may reach the shared device).
pub fn sysrq_reboot(trigger: &Path) -> io::Result<()> {
    let mut f = OpenOptions::new().write(true).open(trigger)?;
    f.write_all(b"b")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fake_watchdog_is_petted_until_stopped_and_disarmed_only_when_healthy() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("watchdog");
        std::fs::write(&p, b"").unwrap();
        let mut w = Watchdog::open(&p).unwrap();
        w.pet().unwrap();
        w.pet().unwrap();
        assert_eq!(std::fs::read(&p).unwrap(), b"pp");
        w.disarm().unwrap();
        assert_eq!(std::fs::read(&p).unwrap(), b"ppV");

        std::fs::write(&p, b"").unwrap();
        let mut w = Watchdog::open(&p).unwrap();
        w.pet().unwrap();
        w.stop_petting();
        w.pet().unwrap();
        assert!(!w.is_petting());
        w.disarm().unwrap();
        assert_eq!(
            std::fs::read(&p).unwrap(),
            b"p",
            "a fenced node stays armed"
        );
    }

    #[test]
    fn a_plain_file_promises_no_timeout() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("watchdog");
        std::fs::write(&p, b"").unwrap();
        let mut w = Watchdog::open(&p).unwrap();
        if std::env::var_os("MMPD_TEST_FAKE_WATCHDOG").is_none() {
            assert_eq!(w.set_timeout(Duration::from_secs(3)).unwrap(), None);
        }
    }

    #[test]
    fn command_gets_the_reason() {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("out");
        let cmd = format!(
            "echo \"$MMPD_DEVICE $MMPD_SEQ $MMPD_NODE $MMPD_REASON\" > '{}'",
            out.display()
        );
        let mut c = spawn_command(&cmd, Path::new("/dev/x"), "lost it", 0x12, "n1").unwrap();
        assert!(c.wait().unwrap().success());
        assert_eq!(
            std::fs::read_to_string(&out).unwrap(),
            "/dev/x 0x00000012 n1 lost it\n"
        );
    }

    #[test]
    fn sysrq_writes_b_to_the_trigger() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("sysrq-trigger");
        std::fs::write(&p, b"").unwrap();
        sysrq_reboot(&p).unwrap();
        assert_eq!(std::fs::read(&p).unwrap(), b"b");
        assert!(sysrq_reboot(&dir.path().join("missing")).is_err());
    }
}
