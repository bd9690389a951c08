//! What nfsd logs when it starts: which NFSv4 client tracker it chose and what it did with
//! grace. nfsd falls back silently (for the caller) from nfsdcld to the usermode helper or the
//! legacy directory when nfsdcld does not answer within about 1 s
//! (`nfsd4_client_tracking_init()`, `fs/nfsd/nfs4recover.c`); the kernel log is the one place
//! that says which it uses.
//!
//! Records are read from /dev/kmsg (`Documentation/ABI/testing/dev-kmsg`): one record per
//! read, `PRIO,SEQ,TIMESTAMP_US,FLAGS[,...];MESSAGE`, continuation lines starting with a space.

use serde::Serialize;
use std::fs::{File, OpenOptions};
use std::io::{self, Read, Seek, SeekFrom};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

/// The NFSv4 client tracker nfsd chose, from its log line (`fs/nfsd/nfs4recover.c`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Tracking {
    /// "NFSD: Using nfsdcld client tracking operations."
    Nfsdcld,
    /// "NFSD: Using UMH upcall client tracking operations." (nfsdcltrack)
    Umh,
    /// "NFSD: Using legacy client tracking operations." (/var/lib/nfs/v4recovery)
    Legacy,
    /// "NFSD: Unable to initialize client recovery tracking!"
    None,
}

/// What nfsd's start logged about grace (`nfs4_state_start_net()`, `fs/nfsd/nfs4state.c`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum GraceStart {
    /// "NFSD: starting N-second grace period"
    Started { seconds: u64 },
    /// "NFSD: no clients to reclaim, skipping NFSv4 grace period" (nfsdcld with no client)
    Skipped,
}

/// What nfsd's start logged.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct NfsdStartLog {
    pub tracking: Option<Tracking>,
    pub grace: Option<GraceStart>,
    /// The NFSD lines seen, for the report.
    pub lines: Vec<String>,
}

/// The message of one /dev/kmsg record (total: `None` for anything that is not one).
pub fn message(record: &str) -> Option<&str> {
    let (prefix, msg) = record.split_once(';')?;
    let mut fields = prefix.split(',');
    fields.next()?.parse::<u32>().ok()?;
    fields.next()?.parse::<u64>().ok()?;
    Some(msg.lines().next().unwrap_or(""))
}

/// The tracker or grace a message names, if any.
pub fn classify(msg: &str, log: &mut NfsdStartLog) {
    let Some(rest) = msg.strip_prefix("NFSD: ") else {
        return;
    };
    let tracking = if rest.starts_with("Using nfsdcld client tracking") {
        Some(Tracking::Nfsdcld)
    } else if rest.starts_with("Using UMH upcall client tracking") {
        Some(Tracking::Umh)
    } else if rest.starts_with("Using legacy client tracking") {
        Some(Tracking::Legacy)
    } else if rest.starts_with("Unable to initialize client recovery tracking") {
        Some(Tracking::None)
    } else {
        None
    };
    let grace = if rest.starts_with("no clients to reclaim, skipping NFSv4 grace") {
        Some(GraceStart::Skipped)
    } else {
        rest.strip_prefix("starting ")
            .and_then(|r| r.split_once("-second grace period"))
            .and_then(|(n, _)| n.parse().ok())
            .map(|seconds| GraceStart::Started { seconds })
    };
    if tracking.is_none() && grace.is_none() {
        return;
    }
    log.tracking = tracking.or(log.tracking);
    log.grace = grace.or(log.grace);
    log.lines.push(msg.to_owned());
}

/// Parses a sequence of records (one per line, as a test file or a dump holds them).
pub fn parse(records: &str) -> NfsdStartLog {
    let mut log = NfsdStartLog::default();
    for r in records.lines() {
        if let Some(m) = message(r) {
            classify(m, &mut log);
        }
    }
    log
}

/// A reader positioned after the last record logged so far, so that only what comes after
/// (nfsd's start) is read.
pub struct KmsgReader {
    path: PathBuf,
    file: File,
}

impl KmsgReader {
    /// Opens `path` (/dev/kmsg, or a regular file in tests) non-blocking at its end
    /// (`SEEK_END` on /dev/kmsg: "seek after the last record").
    pub fn at_end(path: &Path) -> io::Result<KmsgReader> {
        let mut file = OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_NONBLOCK)
            .open(path)?;
        file.seek(SeekFrom::End(0))?;
        Ok(KmsgReader {
            path: path.to_path_buf(),
            file,
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Every record logged since the last call, classified. /dev/kmsg returns one record per
    /// read and EAGAIN when none is left; EPIPE means records were overwritten (skip on).
    pub fn read_new(&mut self, log: &mut NfsdStartLog) -> io::Result<()> {
        let mut buf = vec![0u8; 8192];
        let mut pending = String::new();
        loop {
            match self.file.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => pending.push_str(&String::from_utf8_lossy(&buf[..n])),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) if e.raw_os_error() == Some(libc::EPIPE) => continue,
                Err(e) => return Err(e),
            }
        }
        for r in pending.lines() {
            if let Some(m) = message(r) {
                classify(m, log);
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn nfsd_start_lines() {
        let log = parse(
            "6,1201,960880355,-;NFSD: Using nfsdcld client tracking operations.\n\
             6,1202,960880956,-;NFSD: starting 15-second grace period (net f0000098)\n\
             4,1203,960880999,-;unrelated\n",
        );
        assert_eq!(log.tracking, Some(Tracking::Nfsdcld));
        assert_eq!(log.grace, Some(GraceStart::Started { seconds: 15 }));
        assert_eq!(log.lines.len(), 2);
        let log = parse(
            "6,1,1,-;NFSD: Using legacy client tracking operations.\n\
             6,2,2,-;NFSD: no clients to reclaim, skipping NFSv4 grace period (net f0000098)\n",
        );
        assert_eq!(log.tracking, Some(Tracking::Legacy));
        assert_eq!(log.grace, Some(GraceStart::Skipped));
        let log = parse("3,9,9,-;NFSD: Unable to initialize client recovery tracking! (-110)\n");
        assert_eq!(log.tracking, Some(Tracking::None));
    }

    #[test]
    fn garbage_is_not_a_record() {
        assert_eq!(message("no semicolon"), None);
        assert_eq!(message("x,1,2;NFSD: Using nfsdcld"), None);
        assert_eq!(
            parse("NFSD: Using nfsdcld client tracking operations.\n").tracking,
            None
        );
    }

    #[test]
    fn reader_sees_only_what_comes_after_opening() {
        let t = tempfile::NamedTempFile::new().unwrap();
        std::fs::write(
            t.path(),
            "6,1,1,-;NFSD: Using legacy client tracking operations.\n",
        )
        .unwrap();
        let mut r = KmsgReader::at_end(t.path()).unwrap();
        let mut f = OpenOptions::new().append(true).open(t.path()).unwrap();
        io::Write::write_all(
            &mut f,
            b"6,2,2,-;NFSD: Using nfsdcld client tracking operations.\n",
        )
        .unwrap();
        let mut log = NfsdStartLog::default();
        r.read_new(&mut log).unwrap();
        assert_eq!(log.tracking, Some(Tracking::Nfsdcld));
        assert_eq!(log.lines.len(), 1);
    }

    proptest! {
        #[test]
        fn parse_never_panics(s in ".{0,200}") {
            let _ = parse(&s);
        }
    }
}
