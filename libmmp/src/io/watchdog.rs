//! Watchdog device timeouts (`Documentation/watchdog/watchdog-api.rst`), for holders that
//! publish a self-fence bound ([`crate::ondisk::fence_tag::FenceTag`]) enforced by a watchdog.

use std::os::fd::AsRawFd;
use std::time::Duration;

/// Set the timeout (the driver may round it) and read back the one in force.
pub fn set_timeout(fd: &impl AsRawFd, want: Duration) -> std::io::Result<Duration> {
    let secs = i32::try_from(want.as_secs().max(1)).unwrap_or(i32::MAX);
    crate::io::sys::watchdog_set_timeout(fd, secs)?;
    timeout(fd)
}

/// The timeout in force.
pub fn timeout(fd: &impl AsRawFd) -> std::io::Result<Duration> {
    let v = crate::io::sys::watchdog_get_timeout(fd)?;
    u64::try_from(v)
        .ok()
        .filter(|&v| v > 0)
        .map(Duration::from_secs)
        .ok_or_else(|| std::io::Error::other(format!("the driver reports a timeout of {v} s")))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A plain file is not a watchdog: the ioctls fail (ENOTTY) rather than invent a timeout.
    #[test]
    fn a_plain_file_has_no_timeout() {
        let f = tempfile::tempfile().unwrap();
        assert!(timeout(&f).is_err());
        assert!(set_timeout(&f, Duration::from_secs(5)).is_err());
    }
}
