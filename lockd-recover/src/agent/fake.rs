//! Test helpers: a fake proc tree with the knobs the agents use, and a `Ctx` over it.

use super::Ctx;
use libmmp::ocf::Env;
use lockd_recover::knobs::ProcRoot;
use std::fs;
use std::path::Path;

/// A proc tree: nfsd known to the kernel (`filesystems`) or not, its filesystem mounted with
/// `threads` (None: not mounted), the grace knobs empty (as transaction files read), no locks.
pub fn proc_tree(nfsd: bool, threads: Option<u64>) -> tempfile::TempDir {
    lockd_recover::fake_proc::FakeProc {
        nfsd_known: nfsd,
        nfsd_mounted: nfsd && threads.is_some(),
        threads,
        ..Default::default()
    }
    .build()
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
