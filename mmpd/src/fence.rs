//! Fence actions and the watchdog.
//!
//! The watchdog is reached through the [`Watchdog`] trait: the one implementation in a release
//! build is [`DeviceWatchdog`], a watchdog character device (`/dev/watchdog`), whose timeout
//! mmpd sets and reads back with the `WDIOC_*` ioctls. Builds with `cfg(test)` or mmpd's
//! `testing` feature (enabled only through mmpd's own dev-dependency, so only by `cargo test`)
//! add [`FileWatchdog`], a regular file standing in for one. A release build refuses a regular
//! file: otherwise a stray `MMPD_TEST_FAKE_WATCHDOG=1` would make it publish a self-fence bound
//! that no watchdog enforces, and another node would mount while this one may still write.

use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::{FileTypeExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

/// Why the watchdog cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum WatchdogError {
    #[error("cannot open the watchdog device {}: {source}", path.display())]
    Open {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error(
        "{}: not a watchdog device ({found}); the watchdog fence needs a watchdog character \
         device such as /dev/watchdog (load the board's driver, or softdog)",
        path.display()
    )]
    NotAWatchdog { path: PathBuf, found: &'static str },
    #[error("cannot set or read the timeout of the watchdog {}: {source}", path.display())]
    Timeout {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
}

/// A watchdog: armed once opened, reset by the kernel when it is not petted within its
/// timeout (`Documentation/watchdog/watchdog-api.rst`).
pub trait Watchdog: std::fmt::Debug + Send {
    fn path(&self) -> &Path;

    /// Set the timeout to `want` and return the one in force (the driver may round it), which
    /// goes into the self-fence bound. `Ok(None)`: this watchdog promises no timeout (the test
    /// fake, unless `MMPD_TEST_FAKE_WATCHDOG=1`), so no bound may be published.
    fn set_timeout(&mut self, want: Duration) -> Result<Option<Duration>, WatchdogError>;

    /// Pet it: the timeout starts again.
    fn pet(&mut self) -> io::Result<()>;

    /// Write the magic 'V', which disarms drivers that support magic close when the file is
    /// closed.
    fn magic_close(&mut self) -> io::Result<()>;
}

/// What is at `path`, for the error that says it is not a watchdog.
fn kind_of(ft: std::fs::FileType) -> &'static str {
    if ft.is_file() {
        "a regular file"
    } else if ft.is_dir() {
        "a directory"
    } else if ft.is_block_device() {
        "a block device"
    } else if ft.is_fifo() {
        "a FIFO"
    } else if ft.is_socket() {
        "a socket"
    } else {
        "not a character device"
    }
}

/// Whether `path` can be the watchdog, without opening it (opening arms it): checked before
/// anything is claimed, so a wrong path fails the start with nothing written.
pub fn check_watchdog_path(path: &Path) -> Result<(), WatchdogError> {
    let meta = std::fs::metadata(path).map_err(|source| WatchdogError::Open {
        path: path.to_path_buf(),
        source,
    })?;
    accept(path, meta.file_type())
}

/// A character device is a watchdog candidate (its ioctls decide); a regular file only in test
/// builds (the fake); anything else never.
fn accept(path: &Path, ft: std::fs::FileType) -> Result<(), WatchdogError> {
    if ft.is_char_device() || (cfg!(any(test, feature = "testing")) && ft.is_file()) {
        return Ok(());
    }
    Err(WatchdogError::NotAWatchdog {
        path: path.to_path_buf(),
        found: kind_of(ft),
    })
}

/// Open (and so arm) the watchdog at `path`. The type is checked on the open file, not on the
/// path, so nothing can swap it in between.
pub fn open_watchdog(path: &Path) -> Result<Box<dyn Watchdog>, WatchdogError> {
    let open_err = |source| WatchdogError::Open {
        path: path.to_path_buf(),
        source,
    };
    let file = OpenOptions::new()
        .append(true)
        .custom_flags(libc::O_CLOEXEC)
        .open(path)
        .map_err(open_err)?;
    let ft = file.metadata().map_err(open_err)?.file_type();
    accept(path, ft)?;
    let path = path.to_path_buf();
    #[cfg(any(test, feature = "testing"))]
    if ft.is_file() {
        let promises_timeout =
            std::env::var_os("MMPD_TEST_FAKE_WATCHDOG").is_some_and(|v| v == "1");
        return Ok(Box::new(FileWatchdog {
            file,
            path,
            promises_timeout,
        }));
    }
    Ok(Box::new(DeviceWatchdog { file, path }))
}

/// A watchdog character device (`/dev/watchdog`): the one kind a release build uses.
#[derive(Debug)]
pub struct DeviceWatchdog {
    file: File,
    path: PathBuf,
}

impl Watchdog for DeviceWatchdog {
    fn path(&self) -> &Path {
        &self.path
    }

    fn set_timeout(&mut self, want: Duration) -> Result<Option<Duration>, WatchdogError> {
        let timeout_err = |source| WatchdogError::Timeout {
            path: self.path.clone(),
            source,
        };
        match libmmp::io::watchdog::set_timeout(&self.file, want) {
            Ok(t) => Ok(Some(t)),
            // Some drivers have a fixed timeout: use the one they report.
            Err(e) => {
                tracing::warn!(watchdog = %self.path.display(), "cannot set the timeout to {want:?}: {e}; using the driver's");
                libmmp::io::watchdog::timeout(&self.file)
                    .map(Some)
                    .map_err(timeout_err)
            }
        }
    }

    fn pet(&mut self) -> io::Result<()> {
        self.file.write_all(b"p")
    }

    fn magic_close(&mut self) -> io::Result<()> {
        self.file.write_all(b"V")
    }
}

/// A regular file standing in for a watchdog, in tests only: every pet appends 'p', the magic
/// close 'V'. It promises the configured timeout (so the self-fence tag is published, and a
/// test can check it) only with `MMPD_TEST_FAKE_WATCHDOG=1`.
#[cfg(any(test, feature = "testing"))]
#[derive(Debug)]
pub struct FileWatchdog {
    file: File,
    path: PathBuf,
    promises_timeout: bool,
}

#[cfg(any(test, feature = "testing"))]
impl Watchdog for FileWatchdog {
    fn path(&self) -> &Path {
        &self.path
    }

    fn set_timeout(&mut self, want: Duration) -> Result<Option<Duration>, WatchdogError> {
        Ok(self.promises_timeout.then_some(want))
    }

    fn pet(&mut self) -> io::Result<()> {
        self.file.write_all(b"p")
    }

    fn magic_close(&mut self) -> io::Result<()> {
        self.file.write_all(b"V")
    }
}

/// The open watchdog (`/dev/watchdog`, or the fake in tests) and whether it is still petted.
///
/// Opening it arms the watchdog; every pet resets its timer. It is petted only while every held
/// device is healthy and the daemon's loop runs, so a fence, a hung loop or a hung device all
/// end in a reset when the driver's timeout runs out. A clean release writes the magic 'V'
/// before closing, which disarms drivers that support magic close
/// (`Documentation/watchdog/watchdog-api.rst`); any other exit leaves it armed.
#[derive(Debug)]
pub struct ArmedWatchdog {
    dog: Box<dyn Watchdog>,
    petting: bool,
    pets: u64,
}

impl ArmedWatchdog {
    pub fn open(path: &Path) -> Result<Self, WatchdogError> {
        Ok(ArmedWatchdog {
            dog: open_watchdog(path)?,
            petting: true,
            pets: 0,
        })
    }

    pub fn path(&self) -> &Path {
        self.dog.path()
    }

    /// See [`Watchdog::set_timeout`].
    pub fn set_timeout(&mut self, want: Duration) -> Result<Option<Duration>, WatchdogError> {
        self.dog.set_timeout(want)
    }

    pub fn is_petting(&self) -> bool {
        self.petting
    }

    /// Pet it (unless petting has stopped for good).
    pub fn pet(&mut self) -> io::Result<()> {
        if !self.petting {
            return Ok(());
        }
        self.dog.pet()?;
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
        self.dog.magic_close()
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
        let mut w = ArmedWatchdog::open(&p).unwrap();
        w.pet().unwrap();
        w.pet().unwrap();
        assert_eq!(std::fs::read(&p).unwrap(), b"pp");
        w.disarm().unwrap();
        assert_eq!(std::fs::read(&p).unwrap(), b"ppV");

        std::fs::write(&p, b"").unwrap();
        let mut w = ArmedWatchdog::open(&p).unwrap();
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
        let mut w = ArmedWatchdog::open(&p).unwrap();
        if std::env::var_os("MMPD_TEST_FAKE_WATCHDOG").is_none() {
            assert_eq!(w.set_timeout(Duration::from_secs(3)).unwrap(), None);
        }
    }

    /// Neither a directory nor a block device is ever a watchdog, in any build.
    #[test]
    fn only_character_devices_and_the_test_fake_are_accepted() {
        let dir = tempfile::tempdir().unwrap();
        let e = check_watchdog_path(dir.path()).unwrap_err();
        assert!(
            e.to_string()
                .contains("not a watchdog device (a directory)"),
            "{e}"
        );
        let e = check_watchdog_path(&dir.path().join("missing")).unwrap_err();
        assert!(matches!(e, WatchdogError::Open { .. }), "{e}");
        check_watchdog_path(Path::new("/dev/null")).unwrap();
        let f = dir.path().join("fake");
        std::fs::write(&f, b"").unwrap();
        check_watchdog_path(&f).unwrap();
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
