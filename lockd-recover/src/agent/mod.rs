//! The OCF resource agents compiled into lockd-recover, run when the binary is called by one of
//! their names (`/usr/lib/ocf/resource.d/mmp-ha/nfs-grace` and `.../nfs-locks` are symlinks to
//! it). They drive the same functions as the subcommands (`grace set`, `takeover`, `record`,
//! `handoff`).
//!
//! The order in a Pacemaker group (decided for issue 13): grace must be set before nfsd starts,
//! clients notified only once the service IP is up, and locks released only once it is down
//! while nfsd still runs, so that no lock is granted between the release and the IP going away:
//!
//! ```text
//! fs (mmp-ha:mmp-fs) -> nfs-grace -> nfsserver -> exportfs -> nfs-locks -> IPaddr2
//! ```
//!
//! - [`nfs_grace`]: grace and lease times, the statd directory.
//! - [`nfs_locks`]: a detached worker ([`worker`]) that waits for the IP, notifies, waits for
//!   the ledger's locks, ends grace and records the ledger; stop releases this node's locks.

mod checks;
#[cfg(test)]
mod fake;
mod nfs_grace;
mod nfs_locks;
mod records;
mod worker;

use libmmp::ocf::{metadata::Agent, Action, Env, Outcome, Status};
use lockd_recover::knobs::ProcRoot;
use std::path::PathBuf;
use std::process::ExitCode;

/// The names the binary answers to as an agent.
pub const AGENTS: &[&str] = &["nfs-grace", "nfs-locks"];

/// The proc root the agents use: `/proc`, or a fake tree for tests (as `--proc-root` for the
/// subcommands).
pub const PROC_ROOT_VAR: &str = "LOCKD_RECOVER_PROC_ROOT";

/// What every action gets: Pacemaker's environment, the proc root and the state directory.
pub struct Ctx {
    pub env: Env,
    pub proc: ProcRoot,
    pub state_dir: PathBuf,
}

impl Ctx {
    fn from_process() -> Ctx {
        let proc = std::env::var_os(PROC_ROOT_VAR)
            .filter(|v| !v.is_empty())
            .map_or_else(|| PathBuf::from("/proc"), PathBuf::from);
        Ctx {
            env: Env::from_process(),
            proc: ProcRoot::new(proc),
            state_dir: libmmp::ocf::state_dir(),
        }
    }

    /// A per-instance file in the state directory (`nfs-locks-RESOURCE.status`).
    fn state_file(&self, agent: &str, ext: &str) -> PathBuf {
        let inst = self.env.instance.replace('/', "_");
        self.state_dir.join(format!("{agent}-{inst}.{ext}"))
    }
}

/// Runs agent `name` with the action in argv[1]; the exit code is an OCF one.
pub fn main(name: &'static str, log: libmmp::host::logging::LogDefaults) -> ExitCode {
    let action = std::env::args().nth(1).unwrap_or_default();
    let worker = name == "nfs-locks" && action == worker::ACTION;
    libmmp::host::logging::init(log, u8::from(worker));
    let ctx = Ctx::from_process();
    let code = if worker {
        worker::run(&ctx)
    } else if name == "nfs-grace" {
        dispatch(&nfs_grace::AGENT, &action, |a| nfs_grace::act(a, &ctx))
    } else {
        dispatch(&nfs_locks::AGENT, &action, |a| nfs_locks::act(a, &ctx))
    };
    ExitCode::from(code)
}

/// meta-data and usage here; the other actions through `act`. An unknown action is
/// OCF_ERR_UNIMPLEMENTED (what ocf-tester expects of notify, promote, reload...).
fn dispatch(agent: &Agent, action: &str, act: impl FnOnce(Action) -> Outcome) -> u8 {
    match Action::parse(action) {
        Some(Action::MetaData) => {
            print!("{}", agent.xml());
            0
        }
        Some(Action::Usage) => {
            print!("{}", agent.usage());
            0
        }
        Some(a @ (Action::Start | Action::Stop | Action::Monitor | Action::ValidateAll)) => {
            act(a).report()
        }
        // These agents have no migration: a move is a stop and a start (what Pacemaker does
        // without allow-migrate, the default).
        Some(Action::MigrateTo | Action::MigrateFrom) | None => {
            eprint!("{}", agent.usage());
            Outcome::new(
                Status::ErrUnimplemented,
                format!("{}: action {action:?} is not implemented", agent.name),
            )
            .report()
        }
    }
}

#[cfg(test)]
mod man_tests {
    use std::path::Path;

    /// man/ocf_mmp-ha_<agent>.7 are rendered from the agents' meta-data (`UPDATE_MAN=1 cargo
    /// test -p lockd-recover man_page` rewrites them).
    #[test]
    fn agent_man_page_is_current() {
        let man_dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../man");
        for agent in [&super::nfs_grace::AGENT, &super::nfs_locks::AGENT] {
            let file = man_dir.join(format!("ocf_mmp-ha_{}.7", agent.name));
            test_support::man::assert_file_current(&file, agent.man("mmp-ha").as_bytes());
        }
    }
}
