//! What every OCF resource agent of ours shares: the exit codes, the environment Pacemaker
//! passes, the meta-data document and the detached worker processes some agents keep.
//!
//! The agents themselves live in the binaries whose logic they drive (`mmp-fs` in mmp-tool,
//! `nfs-grace` and `nfs-locks` in lockd-recover); each binary is installed once and symlinked
//! as `/usr/lib/ocf/resource.d/mmp-ha/TYPE` (Pacemaker's fixed path, `PCMK__OCF_RA_PATH`),
//! and dispatches on the name it was called by ([`agent_name`]).
//!
//! Sources: the OCF resource agent API 1.1 (ClusterLabs/OCF-spec
//! `ra/1.1/resource-agent-api.md`: actions, exit codes, `OCF_RESKEY_*`, `OCF_CHECK_LEVEL`),
//! Pacemaker `include/crm/common/results.h` (codes 0-9) and `doc/sphinx/Pacemaker_Administration/
//! agents.rst` (`ocf-exit-reason:` lines on stderr), resource-agents `tools/ocf-tester.in`
//! (validates the meta-data with `xmllint --valid` against `ra-api-1.dtd`).

pub mod fencing;
pub mod metadata;
pub mod worker;

use std::collections::BTreeMap;
use std::ffi::OsString;
use std::path::Path;
use std::time::Duration;

/// OCF exit codes (OCF 1.1 section "Return codes"). The discriminant is the exit code.
#[repr(u8)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    /// Done; for monitor: running.
    Success = 0,
    /// A generic error (soft: Pacemaker may retry or move the resource).
    ErrGeneric = 1,
    /// Wrong arguments to the agent (an unknown action): a bug in the caller.
    ErrArgs = 2,
    /// The action is not implemented.
    ErrUnimplemented = 3,
    /// Not allowed (permissions).
    ErrPerm = 4,
    /// A binary, kernel feature or file the agent needs is missing on this node.
    ErrInstalled = 5,
    /// The configuration is wrong everywhere (bad or missing parameter): fatal, never retried.
    ErrConfigured = 6,
    /// Surely stopped (monitor and probe only).
    NotRunning = 7,
}

impl Status {
    pub fn code(self) -> u8 {
        self as u8
    }
}

/// The exit-code table every agent's `--help`/meta-data text refers to (OCF names).
pub const STATUS_TABLE: &[(u8, &str)] = &[
    (0, "OCF_SUCCESS: done; monitor: running"),
    (
        1,
        "OCF_ERR_GENERIC: failed (start: the device is in use elsewhere, nothing mounted)",
    ),
    (2, "OCF_ERR_ARGS: unknown action"),
    (3, "OCF_ERR_UNIMPLEMENTED: action not implemented"),
    (4, "OCF_ERR_PERM: permission denied"),
    (
        5,
        "OCF_ERR_INSTALLED: a binary or kernel feature is missing on this node",
    ),
    (6, "OCF_ERR_CONFIGURED: a parameter is missing or wrong"),
    (7, "OCF_NOT_RUNNING: surely stopped"),
];

/// An action's result: the code and, unless it is plain success, the one-line reason printed
/// as `ocf-exit-reason:...` (Pacemaker shows it to the user).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outcome {
    pub status: Status,
    pub reason: Option<String>,
}

impl Outcome {
    pub fn ok() -> Self {
        Outcome {
            status: Status::Success,
            reason: None,
        }
    }

    pub fn new(status: Status, reason: impl Into<String>) -> Self {
        Outcome {
            status,
            reason: Some(reason.into()),
        }
    }

    /// Print the reason (one line, as Pacemaker reads it) and return the exit code.
    pub fn report(&self) -> u8 {
        if let Some(r) = &self.reason {
            let one_line = r.replace('\n', " ");
            eprintln!("ocf-exit-reason:{one_line}");
        }
        self.status.code()
    }
}

/// The actions our agents know (OCF 1.1; no reload, promote, demote or migration).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    Start,
    Stop,
    Monitor,
    ValidateAll,
    MetaData,
    Usage,
    /// Live migration, source side (`allow-migrate=true`; `CRM_meta_migrate_target`).
    MigrateTo,
    /// Live migration, target side: Pacemaker runs it only after a successful migrate_to.
    MigrateFrom,
}

impl Action {
    pub fn parse(s: &str) -> Option<Action> {
        Some(match s {
            "start" => Action::Start,
            "stop" => Action::Stop,
            "monitor" | "status" => Action::Monitor,
            "validate-all" => Action::ValidateAll,
            "meta-data" | "meta_data" => Action::MetaData,
            "usage" | "help" | "--help" | "-h" => Action::Usage,
            "migrate_to" => Action::MigrateTo,
            "migrate_from" => Action::MigrateFrom,
            _ => return None,
        })
    }
}

/// The name an agent binary was called by (`argv[0]`'s file name), if it is one of `agents`.
pub fn agent_name(argv0: &OsString, agents: &[&'static str]) -> Option<&'static str> {
    let name = Path::new(argv0).file_name()?.to_str()?;
    agents.iter().copied().find(|a| *a == name)
}

/// What Pacemaker passes an agent in its environment.
#[derive(Debug, Clone, Default)]
pub struct Env {
    /// `OCF_RESKEY_<name>` for every instance parameter given (empty values dropped, as the
    /// shell agents' `${OCF_RESKEY_x:-default}` treat them).
    params: BTreeMap<String, String>,
    /// `OCF_RESKEY_CRM_meta_interval` in ms: 0 (or absent) = a probe / one-shot.
    pub interval_ms: u64,
    /// `OCF_RESKEY_CRM_meta_timeout` in ms: how long Pacemaker waits for this action.
    pub timeout_ms: Option<u64>,
    /// `OCF_CHECK_LEVEL`: 0, 10 or 20 (monitor depth).
    pub check_level: u32,
    /// `OCF_RESOURCE_INSTANCE`: the resource's name in the cluster (for state file names).
    pub instance: String,
    /// `OCF_RESKEY_CRM_meta_migrate_source` / `_target`: the nodes of a live migration.
    pub migrate_source: Option<String>,
    pub migrate_target: Option<String>,
}

impl Env {
    /// Read the process environment.
    pub fn from_process() -> Env {
        Env::from_vars(std::env::vars())
    }

    /// Build from `(name, value)` pairs (tests pass their own).
    pub fn from_vars(vars: impl IntoIterator<Item = (String, String)>) -> Env {
        let mut env = Env {
            instance: "default".into(),
            ..Env::default()
        };
        for (k, v) in vars {
            if let Some(meta) = k.strip_prefix("OCF_RESKEY_CRM_meta_") {
                match meta {
                    "interval" => env.interval_ms = v.trim().parse().unwrap_or(0),
                    "timeout" => env.timeout_ms = v.trim().parse().ok(),
                    "migrate_source" if !v.is_empty() => env.migrate_source = Some(v),
                    "migrate_target" if !v.is_empty() => env.migrate_target = Some(v),
                    _ => {}
                }
            } else if let Some(p) = k.strip_prefix("OCF_RESKEY_") {
                // Pacemaker's own (crm_resource and the executor pass it to every agent): not
                // an instance parameter, so never "unknown".
                if !v.is_empty() && p != "crm_feature_set" {
                    env.params.insert(p.to_string(), v);
                }
            } else if k == "OCF_CHECK_LEVEL" {
                env.check_level = v.trim().parse().unwrap_or(0);
            } else if k == "OCF_RESOURCE_INSTANCE" && !v.is_empty() {
                env.instance = v;
            }
        }
        env
    }

    /// An instance parameter, if given and not empty.
    pub fn param(&self, name: &str) -> Option<&str> {
        self.params.get(name).map(String::as_str)
    }

    /// Every parameter given, for rejecting unknown ones.
    pub fn param_names(&self) -> impl Iterator<Item = &str> {
        self.params.keys().map(String::as_str)
    }

    /// A monitor with interval 0 is a probe: "is it running here?", asked before any start.
    pub fn is_probe(&self) -> bool {
        self.interval_ms == 0
    }

    /// The action's timeout, if Pacemaker said.
    pub fn timeout(&self) -> Option<Duration> {
        self.timeout_ms.map(Duration::from_millis)
    }

    /// A boolean parameter as the shell agents read it (`ocf_is_true`: yes/true/1/on).
    pub fn flag(&self, name: &str) -> Result<Option<bool>, Outcome> {
        match self.param(name) {
            None => Ok(None),
            Some(v) => match v.to_ascii_lowercase().as_str() {
                "1" | "yes" | "true" | "on" | "y" => Ok(Some(true)),
                "0" | "no" | "false" | "off" | "n" => Ok(Some(false)),
                _ => Err(Outcome::new(
                    Status::ErrConfigured,
                    format!("parameter {name}={v:?} is not a boolean (use true or false)"),
                )),
            },
        }
    }

    /// An integer parameter within `range`; a bad value is OCF_ERR_CONFIGURED naming it.
    pub fn integer(
        &self,
        name: &str,
        range: std::ops::RangeInclusive<u64>,
    ) -> Result<Option<u64>, Outcome> {
        match self.param(name) {
            None => Ok(None),
            Some(v) => match v.trim().parse::<u64>() {
                Ok(n) if range.contains(&n) => Ok(Some(n)),
                _ => Err(Outcome::new(
                    Status::ErrConfigured,
                    format!(
                        "parameter {name}={v:?} must be an integer from {} to {}",
                        range.start(),
                        range.end()
                    ),
                )),
            },
        }
    }

    /// A required parameter; missing is OCF_ERR_CONFIGURED naming it.
    pub fn required(&self, name: &str) -> Result<&str, Outcome> {
        self.param(name).ok_or_else(|| {
            Outcome::new(
                Status::ErrConfigured,
                format!("required parameter {name} is not set"),
            )
        })
    }

    /// Refuse parameters the agent does not know (a typo must not silently change nothing).
    pub fn reject_unknown(&self, known: &[metadata::Param]) -> Result<(), Outcome> {
        for name in self.param_names() {
            if !known.iter().any(|p| p.name == name) {
                return Err(Outcome::new(
                    Status::ErrConfigured,
                    format!("unknown parameter {name:?} (see the agent's meta-data)"),
                ));
            }
        }
        Ok(())
    }
}

/// Where an agent looks for the programs it runs, after `PATH`: Pacemaker's executor may run
/// agents with a PATH that lacks the sbin directories.
const PROGRAM_DIRS: &[&str] = &["/usr/local/sbin", "/usr/sbin", "/sbin", "/usr/bin", "/bin"];

/// A program on `PATH` or in [`PROGRAM_DIRS`] (for OCF_ERR_INSTALLED checks).
pub fn find_program(name: &str) -> Option<std::path::PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain(PROGRAM_DIRS.iter().map(std::path::PathBuf::from))
        .map(|d| d.join(name))
        .find(|p| p.is_file())
}

/// Where agents keep their per-instance state on this node (pid files, markers): volatile, so
/// a reboot forgets it, as it forgets mounts and processes.
pub const STATE_DIR: &str = "/run/mmp-ha";

/// `$MMP_HA_STATE_DIR` (tests) or [`STATE_DIR`].
pub fn state_dir() -> std::path::PathBuf {
    std::env::var_os("MMP_HA_STATE_DIR")
        .filter(|v| !v.is_empty())
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| STATE_DIR.into())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(vars: &[(&str, &str)]) -> Env {
        Env::from_vars(vars.iter().map(|(k, v)| (k.to_string(), v.to_string())))
    }

    #[test]
    fn reads_params_meta_and_check_level() {
        let e = env(&[
            ("OCF_RESKEY_device", "/dev/x"),
            ("OCF_RESKEY_options", ""),
            ("OCF_RESKEY_CRM_meta_interval", "10000"),
            ("OCF_RESKEY_CRM_meta_timeout", "60000"),
            ("OCF_CHECK_LEVEL", "10"),
            ("OCF_RESOURCE_INSTANCE", "fs1"),
            ("OCF_RESKEY_crm_feature_set", "3.16.1"),
            ("PATH", "/bin"),
        ]);
        assert_eq!(e.param_names().collect::<Vec<_>>(), ["device"]);
        assert_eq!(e.param("device"), Some("/dev/x"));
        assert_eq!(e.param("options"), None, "empty values count as unset");
        assert!(!e.is_probe());
        assert_eq!(e.timeout(), Some(Duration::from_secs(60)));
        assert_eq!(e.check_level, 10);
        assert_eq!(e.instance, "fs1");
        assert!(env(&[]).is_probe());
    }

    #[test]
    fn bad_values_are_err_configured_naming_the_parameter() {
        let e = env(&[("OCF_RESKEY_force", "maybe"), ("OCF_RESKEY_n", "x")]);
        let f = e.flag("force").unwrap_err();
        assert_eq!(f.status, Status::ErrConfigured);
        assert!(f.reason.unwrap().contains("force"));
        assert_eq!(
            e.integer("n", 1..=5).unwrap_err().status,
            Status::ErrConfigured
        );
        assert_eq!(
            e.required("device").unwrap_err().status,
            Status::ErrConfigured
        );
        let known = [metadata::Param::string("force", "f", "")];
        assert!(e
            .reject_unknown(&known)
            .unwrap_err()
            .reason
            .unwrap()
            .contains("\"n\""));
    }

    #[test]
    fn agent_name_is_argv0s_file_name() {
        let agents = ["mmp-fs"];
        let a = OsString::from("/usr/lib/ocf/resource.d/mmp-ha/mmp-fs");
        assert_eq!(agent_name(&a, &agents), Some("mmp-fs"));
        assert_eq!(agent_name(&OsString::from("mmp-tool"), &agents), None);
    }

    #[test]
    fn status_table_matches_codes() {
        for (i, (code, _)) in STATUS_TABLE.iter().enumerate() {
            assert_eq!(*code as usize, i);
        }
        assert_eq!(Status::NotRunning.code(), 7);
    }
}
