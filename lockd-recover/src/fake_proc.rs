//! A fake proc tree for tests (unit tests, and the integration tests through the `testing`
//! feature, which only lockd-recover's own dev-dependency enables): the knobs this crate reads
//! and writes at their paths under /proc, as empty files like the kernel's transaction files.

use crate::knobs::*;
use std::fs;
use std::path::Path;

/// What the fake kernel has. `Default`: a 6.18 kernel whose nfsd is loaded and mounted, the
/// threads file absent, no locks.
#[derive(Debug, Clone)]
pub struct FakeProc {
    pub osrelease: String,
    /// `nfsd` in /proc/filesystems (the module is there).
    pub nfsd_known: bool,
    /// The nfsd filesystem mounted: its knobs (unlock_*, v4 grace and lease) exist.
    pub nfsd_mounted: bool,
    /// /proc/fs/nfsd/threads, when given.
    pub threads: Option<u64>,
    /// /proc/locks.
    pub locks: String,
}

impl Default for FakeProc {
    fn default() -> Self {
        FakeProc {
            osrelease: "6.18.0\n".into(),
            nfsd_known: true,
            nfsd_mounted: true,
            threads: None,
            locks: String::new(),
        }
    }
}

impl FakeProc {
    /// A kernel with nfsd mounted and `threads` running.
    pub fn running(threads: u64) -> FakeProc {
        FakeProc {
            threads: Some(threads),
            ..FakeProc::default()
        }
    }

    /// A kernel without nfsd at all.
    pub fn without_nfsd() -> FakeProc {
        FakeProc {
            nfsd_known: false,
            nfsd_mounted: false,
            ..FakeProc::default()
        }
    }

    /// Write the tree into a new temporary directory.
    pub fn build(&self) -> tempfile::TempDir {
        let t = tempfile::tempdir().unwrap();
        self.write_to(t.path());
        t
    }

    fn write_to(&self, p: &Path) {
        for d in ["fs/lockd", "sys/fs/nfs", "sys/kernel"] {
            fs::create_dir_all(p.join(d)).unwrap();
        }
        let mut fstypes = String::from("nodev\tproc\n");
        if self.nfsd_known {
            fstypes += "nodev\tnfsd\n";
        }
        fs::write(p.join("filesystems"), fstypes).unwrap();
        fs::write(p.join(OSRELEASE), &self.osrelease).unwrap();
        fs::write(p.join(LOCKS), &self.locks).unwrap();
        fs::write(p.join(NLM_TIMEOUT), "10\n").unwrap();
        for f in [NLM_GRACE_PERIOD, NLM_END_GRACE] {
            fs::write(p.join(f), "").unwrap();
        }
        if self.nfsd_mounted {
            fs::create_dir_all(p.join("fs/nfsd")).unwrap();
            for f in [
                UNLOCK_IP,
                UNLOCK_FS,
                V4_END_GRACE,
                V4_GRACE_TIME,
                V4_LEASE_TIME,
            ] {
                fs::write(p.join(f), "").unwrap();
            }
            if let Some(n) = self.threads {
                fs::write(p.join(NFSD_THREADS), format!("{n}\n")).unwrap();
            }
        }
    }
}

/// A file's contents in a fake tree.
pub fn read(t: &tempfile::TempDir, rel: &str) -> String {
    fs::read_to_string(t.path().join(rel)).unwrap()
}
