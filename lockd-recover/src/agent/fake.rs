//! Test helpers: a fake proc tree with the knobs the agents use, and a `Ctx` over it.

use super::Ctx;
use libmmp::ocf::Env;
use lockd_recover::knobs::ProcRoot;
use lockd_recover::knobs::*;
use std::fs;
use std::path::Path;

/// A proc tree: nfsd known to the kernel (`filesystems`) or not, its filesystem mounted with
/// `threads` (None: not mounted), the grace knobs empty (as transaction files read), no locks.
pub fn proc_tree(nfsd: bool, threads: Option<u64>) -> tempfile::TempDir {
    let t = tempfile::tempdir().unwrap();
    let p = t.path();
    fs::create_dir_all(p.join("sys/fs/nfs")).unwrap();
    fs::create_dir_all(p.join("fs/lockd")).unwrap();
    let fstypes = if nfsd {
        "nodev\tproc\nnodev\tnfsd\n"
    } else {
        "nodev\tproc\n"
    };
    fs::write(p.join("filesystems"), fstypes).unwrap();
    fs::write(p.join(LOCKS), "").unwrap();
    if !nfsd {
        return t;
    }
    for f in [NLM_GRACE_PERIOD, NLM_END_GRACE] {
        fs::write(p.join(f), "").unwrap();
    }
    fs::write(p.join(NLM_TIMEOUT), "10\n").unwrap();
    if let Some(n) = threads {
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
        fs::write(p.join(NFSD_THREADS), format!("{n}\n")).unwrap();
    }
    t
}

pub fn ctx(vars: &[(&str, &str)], proc: &Path, state: &Path) -> Ctx {
    let vars = vars
        .iter()
        .map(|(k, v)| (format!("OCF_RESKEY_{k}"), v.to_string()));
    Ctx {
        env: Env::from_vars(vars),
        proc: ProcRoot::new(proc),
        state_dir: state.to_path_buf(),
    }
}

pub fn read(dir: &Path, rel: &str) -> String {
    fs::read_to_string(dir.join(rel)).unwrap()
}
