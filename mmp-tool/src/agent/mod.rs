//! `mmp-fs`: the OCF 1.1 resource agent for a filesystem mounted on one node at a time with MMP
//! as the gate. mmp-tool runs it when called by that name (argv[0]), through the symlink
//! `/usr/lib/ocf/resource.d/mmp-ha/mmp-fs -> /usr/sbin/mmp-tool`.
//!
//! - [`params`]: meta-data and the parameters ([`params::Config`]).
//! - [`validate`]: validate-all (tools, kernel, the device and area), also the start's first step.
//! - [`mounts`]: is it mounted here, mount, unmount (killing users if asked).
//! - [`start`], [`stop`], [`monitor`]: the actions; [`mmpd`]: the holder=mmpd worker.
//! - [`migrate`]: migrate_to / migrate_from, a planned handoff (HANDOFF.md), for both holders.
//!
//! The gate of holder=ext4 is `mmp-tool mount`'s own code ([`crate::cmd::mount::gate_and_mount`]).

#[cfg(test)]
mod man;
mod migrate;
mod mmpd;
mod monitor;
mod mounts;
mod params;
mod start;
mod stop;
mod takeover;
mod validate;

use libmmp::ocf::{Action, Env, Outcome, Status};
use std::process::ExitCode;
use std::time::{Duration, Instant};

/// The agents this binary is (argv[0] file names).
pub const AGENTS: &[&str] = &[params::NAME];

/// info: a long wait shows its progress on stderr, which Pacemaker logs.
const LOG: libmmp::host::logging::LogDefaults = libmmp::host::logging::LogDefaults {
    levels: &["info"],
    only_crate: None,
};

/// Run the action named by the first argument and exit with its OCF code.
pub fn main() -> ExitCode {
    let arg = std::env::args().nth(1);
    let action = match arg.as_deref().map(Action::parse) {
        Some(Some(a)) => a,
        // No action: a usage error. An action we do not have (notify, promote, reload ...):
        // "not implemented", as ocf-tester expects.
        none_or_unknown => {
            eprint!("{}", params::AGENT.usage());
            let status = if none_or_unknown.is_none() {
                Status::ErrArgs
            } else {
                Status::ErrUnimplemented
            };
            return ExitCode::from(status.code());
        }
    };
    match action {
        Action::MetaData => {
            print!("{}", params::AGENT.xml());
            return ExitCode::SUCCESS;
        }
        Action::Usage => {
            print!("{}", params::AGENT.usage());
            return ExitCode::SUCCESS;
        }
        _ => {}
    }
    libmmp::host::logging::init(LOG, 0);
    let env = Env::from_process();
    let budget = Budget::new(&env);
    ExitCode::from(run(action, &env, &budget).report())
}

fn run(action: Action, env: &Env, budget: &Budget) -> Outcome {
    let cfg = match params::Config::from_env(env) {
        Ok(c) => c,
        Err(o) => return o,
    };
    let result = match action {
        Action::Start => start::start(&cfg, budget),
        Action::Stop => stop::stop(&cfg, budget),
        Action::Monitor => monitor::monitor(&cfg, env),
        Action::ValidateAll => validate::full(&cfg),
        Action::MigrateTo => migrate::to(&cfg, env, budget),
        Action::MigrateFrom => migrate::from(&cfg, env, budget),
        Action::MetaData | Action::Usage => Ok(()),
    };
    result.map_or_else(|o| o, |()| Outcome::ok())
}

/// What an action's result is when it fails: an OCF outcome with its reason.
type Res<T = ()> = Result<T, Outcome>;

fn generic(reason: impl Into<String>) -> Outcome {
    Outcome::new(Status::ErrGeneric, reason)
}

fn configured(reason: impl Into<String>) -> Outcome {
    Outcome::new(Status::ErrConfigured, reason)
}

/// The time an action has: Pacemaker's `OCF_RESKEY_CRM_meta_timeout`, from our start, less a
/// second for us to exit and report before Pacemaker kills us.
pub struct Budget {
    start: Instant,
    timeout: Option<Duration>,
}

const EXIT_MARGIN: Duration = Duration::from_secs(1);

impl Budget {
    pub fn new(env: &Env) -> Budget {
        Budget {
            start: Instant::now(),
            timeout: env.timeout(),
        }
    }

    /// Time left before we must have answered; None: no timeout given.
    pub fn remaining(&self) -> Option<Duration> {
        self.timeout
            .map(|t| t.saturating_sub(self.start.elapsed() + EXIT_MARGIN))
    }

    pub fn fits(&self, need: Duration) -> bool {
        self.remaining().is_none_or(|r| need <= r)
    }

    pub fn expired(&self) -> bool {
        self.remaining().is_some_and(|r| r.is_zero())
    }

    /// The refusal when `need` more seconds do not fit (`what` needs them): which timeout to
    /// set.
    pub fn too_short(&self, what: &str, need: Duration) -> Outcome {
        let total = self.start.elapsed() + need + EXIT_MARGIN;
        let suggest = (total.as_secs() + 1)
            .div_ceil(10)
            .max(u64::from(params::START_TIMEOUT_S / 10))
            * 10;
        // What to do comes first: Pacemaker keeps only the first 128 characters of a reason.
        configured(format!(
            "timeout {} s too short: set `op start timeout={suggest}s` or more; {what}, which needs about {} s more; nothing was written",
            self.timeout.unwrap_or_default().as_secs(),
            need.as_secs(),
        ))
    }
}
