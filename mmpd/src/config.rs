//! Configuration: the TOML file merged with the command line, validated before anything runs.

use crate::cli::{Cli, FenceAction};
use libmmp::protocol::heartbeat::HeartbeatConfig;
use serde::Deserialize;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// The settings that may be given at the top of the file, on the command line, or per device.
#[derive(Debug, Clone, Default)]
pub struct Settings {
    pub interval: Option<f64>,
    pub fail_intervals: Option<u32>,
    pub fence: Option<FenceAction>,
    pub fence_command: Option<String>,
}

/// A `[[device]]` table.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DeviceEntry {
    pub path: PathBuf,
    pub interval: Option<f64>,
    pub fail_intervals: Option<u32>,
    pub fence: Option<FenceAction>,
    pub fence_command: Option<String>,
}

/// The configuration file.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileConfig {
    pub run_dir: Option<PathBuf>,
    pub node_name: Option<String>,
    pub watchdog_device: Option<PathBuf>,
    pub watchdog_timeout: Option<u32>,
    pub sysrq_trigger: Option<PathBuf>,
    pub interval: Option<f64>,
    pub fail_intervals: Option<u32>,
    pub fence: Option<FenceAction>,
    pub fence_command: Option<String>,
    #[serde(default)]
    pub device: Vec<DeviceEntry>,
}

/// Errors in the configuration.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("{path}: cannot read the configuration file: {source}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{path}: invalid configuration: {message}")]
    Parse { path: PathBuf, message: String },
    #[error("{device}: {message}")]
    Invalid { device: String, message: String },
    #[error("no device to hold: give DEVICE arguments or [[device]] tables in --config")]
    NoDevice,
    #[error("{device}: listed twice")]
    Duplicate { device: String },
}

/// Everything that decides how one device is held.
#[derive(Debug, Clone, PartialEq)]
pub struct DeviceConfig {
    pub path: PathBuf,
    pub heartbeat: HeartbeatConfig,
    /// The `mmp_check_interval` to publish: readers that do not honour our fence tag (the
    /// kernel, e2fsprogs) wait `min(2*CI + 1, CI + 60)` >= CI + 1 s, which must outlast both
    /// our fail_after and, with the watchdog fence, the whole self-fence bound.
    pub check_interval: u16,
    pub fence: FenceAction,
    pub fence_command: Option<String>,
}

/// The merged configuration.
#[derive(Debug, Clone)]
pub struct Config {
    pub run_dir: PathBuf,
    pub node_name: String,
    pub watchdog_device: PathBuf,
    /// The watchdog timeout mmpd sets (and whose read-back it uses in its fence bound).
    pub watchdog_timeout: Duration,
    pub sysrq_trigger: PathBuf,
    pub poll: Duration,
    pub devices: Vec<DeviceConfig>,
    /// `--fenced NODE` (with `--node-map`): the cluster fenced NODE, so the claims made at
    /// start take the fence-confirmed path (devices added later on SIGHUP never do: the
    /// statement was about the moment mmpd was started).
    pub fenced: Option<libmmp::protocol::claim::FencedNode>,
    /// `--handoff NONCE`: the claim at start is the target's claim of a planned handoff (one
    /// device only).
    pub handoff: Option<u64>,
}

impl Config {
    pub fn uses_watchdog(&self) -> bool {
        self.devices
            .iter()
            .any(|d| d.fence == FenceAction::Watchdog)
    }
}

/// Default watchdog timeout, seconds: short, so that the fence bound a watchdog holder
/// publishes lets other nodes take a dead node's devices quickly (see `mmpd --help`).
pub const DEFAULT_WATCHDOG_TIMEOUT: u32 = 10;

/// The check interval a device publishes: [`HeartbeatConfig::publish_check_interval`], raised
/// with the watchdog fence to the whole fence bound (fail_after + watchdog timeout + pet
/// slack), so a kernel or e2fsprogs reader (which ignores our tag) still waits longer than a
/// hung node can go on writing before its watchdog resets it. With the other fences the bound
/// is fail_after (they act as soon as the holder gives up).
pub fn publish_check_interval(
    hb: &HeartbeatConfig,
    fence: FenceAction,
    watchdog_timeout: Duration,
) -> Result<u16, String> {
    let base = hb.publish_check_interval();
    if fence != FenceAction::Watchdog {
        return Ok(base);
    }
    let bound =
        hb.fail_after() + watchdog_timeout + libmmp::protocol::heartbeat::WATCHDOG_PET_SLACK;
    let secs = bound.as_secs() + u64::from(bound.subsec_nanos() > 0);
    let max = u64::from(libmmp::protocol::heartbeat::MAX_CHECK_INTERVAL);
    if secs > max {
        return Err(format!(
            "with fence = watchdog, fail_after ({:?}) + watchdog_timeout ({:?}) + {:?} exceeds the kernel's largest check interval ({max} s): shorten them",
            hb.fail_after(),
            watchdog_timeout,
            libmmp::protocol::heartbeat::WATCHDOG_PET_SLACK
        ));
    }
    Ok(base.max(secs as u16))
}

/// Read and parse the file.
pub fn read_file(path: &Path) -> Result<FileConfig, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
        path: path.to_path_buf(),
        source,
    })?;
    parse_file(path, &text)
}

pub fn parse_file(path: &Path, text: &str) -> Result<FileConfig, ConfigError> {
    toml::from_str(text).map_err(|e| ConfigError::Parse {
        path: path.to_path_buf(),
        message: e.to_string().trim_end().replace('\n', " "),
    })
}

/// Merge the built-in defaults, the file, and the command line (see `mmpd --help`).
pub fn merge(cli: &Cli, file: &FileConfig) -> Result<Config, ConfigError> {
    let cli_settings = Settings {
        interval: cli.interval,
        fail_intervals: cli.fail_intervals,
        fence: cli.fence,
        fence_command: cli.fence_command.clone(),
    };
    let top = Settings {
        interval: file.interval,
        fail_intervals: file.fail_intervals,
        fence: file.fence,
        fence_command: file.fence_command.clone(),
    };
    let entries = device_entries(cli, file)?;
    let watchdog_timeout = watchdog_timeout(cli, file)?;
    let mut devices: Vec<DeviceConfig> = Vec::new();
    for (path, own) in entries {
        // Highest priority last.
        let layers = [&top, &cli_settings, &own];
        let dc = device_config(path, &layers, watchdog_timeout)?;
        if devices.iter().any(|d| d.path == dc.path) {
            return Err(ConfigError::Duplicate {
                device: dc.path.display().to_string(),
            });
        }
        devices.push(dc);
    }
    Ok(Config {
        run_dir: cli
            .run_dir
            .clone()
            .or_else(|| file.run_dir.clone())
            .unwrap_or_else(libmmp::host::run_dir::run_dir_from_env),
        node_name: cli
            .node_name
            .clone()
            .or_else(|| file.node_name.clone())
            .unwrap_or_else(libmmp::host::identity::nodename),
        watchdog_device: cli
            .watchdog_device
            .clone()
            .or_else(|| file.watchdog_device.clone())
            .unwrap_or_else(|| PathBuf::from("/dev/watchdog")),
        watchdog_timeout,
        sysrq_trigger: cli
            .sysrq_trigger
            .clone()
            .or_else(|| file.sysrq_trigger.clone())
            .unwrap_or_else(|| PathBuf::from("/proc/sysrq-trigger")),
        poll: Duration::from_millis(cli.poll_ms),
        fenced: cli
            .fenced
            .as_deref()
            .map(|n| libmmp::protocol::claim::FencedNode::new(n, &cli.node_map)),
        handoff: one_device_handoff(cli.handoff, &devices)?,
        devices,
    })
}

/// `--handoff` names one handoff, so it goes with exactly one device.
fn one_device_handoff(
    nonce: Option<u64>,
    devices: &[DeviceConfig],
) -> Result<Option<u64>, ConfigError> {
    match (nonce, devices) {
        (Some(_), [_]) | (None, _) => Ok(nonce),
        (Some(_), _) => Err(ConfigError::Invalid {
            device: devices
                .iter()
                .map(|d| d.path.display().to_string())
                .collect::<Vec<_>>()
                .join(", "),
            message: "--handoff takes over one device: start one mmpd per handed-off device".into(),
        }),
    }
}

/// The devices of the file (with their own settings), then those named on the command line.
fn device_entries(cli: &Cli, file: &FileConfig) -> Result<Vec<(PathBuf, Settings)>, ConfigError> {
    let mut entries: Vec<(PathBuf, Settings)> = file
        .device
        .iter()
        .map(|d| {
            let own = Settings {
                interval: d.interval,
                fail_intervals: d.fail_intervals,
                fence: d.fence,
                fence_command: d.fence_command.clone(),
            };
            (d.path.clone(), own)
        })
        .collect();
    entries.extend(cli.devices.iter().map(|p| (p.clone(), Settings::default())));
    if entries.is_empty() {
        return Err(ConfigError::NoDevice);
    }
    Ok(entries)
}

fn watchdog_timeout(cli: &Cli, file: &FileConfig) -> Result<Duration, ConfigError> {
    let secs = cli
        .watchdog_timeout
        .or(file.watchdog_timeout)
        .unwrap_or(DEFAULT_WATCHDOG_TIMEOUT);
    if !(1..=120).contains(&secs) {
        return Err(ConfigError::Invalid {
            device: "watchdog_timeout".into(),
            message: format!("{secs} s out of range (1 to 120 seconds)"),
        });
    }
    Ok(Duration::from_secs(u64::from(secs)))
}

/// One device's settings from its layers (highest priority last), checked.
fn device_config(
    path: PathBuf,
    layers: &[&Settings; 3],
    watchdog_timeout: Duration,
) -> Result<DeviceConfig, ConfigError> {
    let interval = layers.iter().rev().find_map(|s| s.interval).unwrap_or(1.0);
    let fail_intervals = layers
        .iter()
        .rev()
        .find_map(|s| s.fail_intervals)
        .unwrap_or(libmmp::protocol::heartbeat::DEFAULT_FAIL_INTERVALS);
    let fence = layers
        .iter()
        .rev()
        .find_map(|s| s.fence)
        .unwrap_or(FenceAction::Exit);
    let fence_command = layers.iter().rev().find_map(|s| s.fence_command.clone());
    let device = path.display().to_string();
    let invalid = |message: String| ConfigError::Invalid {
        device: device.clone(),
        message,
    };
    if !(0.1..=60.0).contains(&interval) {
        return Err(invalid(format!(
            "interval {interval} out of range (0.1 to 60 seconds)"
        )));
    }
    let heartbeat = HeartbeatConfig {
        interval: Duration::from_secs_f64(interval),
        fail_intervals,
    };
    heartbeat.validate().map_err(|e| invalid(e.to_string()))?;
    if fence == FenceAction::Command && fence_command.as_deref().is_none_or(str::is_empty) {
        return Err(invalid(
            "fence = command needs a fence_command (--fence-command CMD)".to_string(),
        ));
    }
    let check_interval =
        publish_check_interval(&heartbeat, fence, watchdog_timeout).map_err(invalid)?;
    Ok(DeviceConfig {
        path,
        heartbeat,
        check_interval,
        fence,
        fence_command,
    })
}

/// Load: the file if any, then merge.
pub fn load(cli: &Cli) -> Result<Config, ConfigError> {
    let file = match &cli.config {
        Some(p) => read_file(p)?,
        None => FileConfig::default(),
    };
    merge(cli, &file)
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    fn cli(args: &[&str]) -> Cli {
        Cli::try_parse_from(std::iter::once("mmpd").chain(args.iter().copied())).unwrap()
    }

    #[test]
    fn layers_in_order() {
        let file = parse_file(
            Path::new("t.toml"),
            r#"
            interval = 2.0
            fence = "command"
            fence_command = "true"
            [[device]]
            path = "/dev/a"
            [[device]]
            path = "/dev/b"
            fail_intervals = 7
            fence = "watchdog"
            "#,
        )
        .unwrap();
        let c = merge(&cli(&["--interval", "0.5", "/dev/c"]), &file).unwrap();
        assert_eq!(c.devices.len(), 3);
        let a = &c.devices[0];
        assert_eq!(
            a.heartbeat.interval,
            Duration::from_millis(500),
            "cli beats file"
        );
        assert_eq!(a.fence, FenceAction::Command);
        let b = &c.devices[1];
        assert_eq!(b.heartbeat.fail_intervals, 7);
        assert_eq!(b.fence, FenceAction::Watchdog);
        assert!(c.uses_watchdog());
        assert_eq!(c.devices[2].path, PathBuf::from("/dev/c"));
    }

    #[test]
    fn bad_configurations_are_named() {
        let p = Path::new("/etc/mmpd/x.toml");
        let e = parse_file(p, "intervall = 1").unwrap_err();
        assert!(e.to_string().contains("/etc/mmpd/x.toml"), "{e}");
        assert!(e.to_string().contains("intervall"), "{e}");
        let e = parse_file(p, "fence = \"explode\"").unwrap_err();
        assert!(e.to_string().contains("explode"), "{e}");
        let e = merge(&cli(&[]), &FileConfig::default()).unwrap_err();
        assert!(matches!(e, ConfigError::NoDevice));
        let e = merge(
            &cli(&["--fence", "command", "/dev/x"]),
            &FileConfig::default(),
        )
        .unwrap_err();
        assert!(e.to_string().contains("fence_command"), "{e}");
        let e = merge(&cli(&["/dev/x", "/dev/x"]), &FileConfig::default()).unwrap_err();
        assert!(matches!(e, ConfigError::Duplicate { .. }));
        let e = merge(
            &cli(&["--interval", "60", "--fail-intervals", "10", "/dev/x"]),
            &FileConfig::default(),
        )
        .unwrap_err();
        assert!(e.to_string().contains("300"), "{e}");
    }

    #[test]
    fn the_watchdog_fence_publishes_a_check_interval_that_covers_its_bound() {
        // Default: 1 s x 5, exit fence: the base rule (5).
        let c = merge(&cli(&["/dev/x"]), &FileConfig::default()).unwrap();
        assert_eq!(c.devices[0].check_interval, 5);
        assert_eq!(c.watchdog_timeout, Duration::from_secs(10));
        // Watchdog, 10 s timeout: 5 + 10 + 1 = 16; the kernel then waits 33 s.
        let c = merge(
            &cli(&["--fence", "watchdog", "/dev/x"]),
            &FileConfig::default(),
        )
        .unwrap();
        assert_eq!(c.devices[0].check_interval, 16);
        // A fast setup: 1 s x 2 + 3 s + 1 s = 6.
        let c = merge(
            &cli(&[
                "--fence",
                "watchdog",
                "--fail-intervals",
                "2",
                "--watchdog-timeout",
                "3",
                "/dev/x",
            ]),
            &FileConfig::default(),
        )
        .unwrap();
        assert_eq!(c.devices[0].check_interval, 6);
        let tag = c.devices[0]
            .heartbeat
            .watchdog_fence_tag(c.watchdog_timeout)
            .unwrap();
        assert!(u64::from(tag.bound_ms) <= u64::from(c.devices[0].check_interval) * 1000);
        // Too long for the kernel's largest check interval.
        let e = merge(
            &cli(&[
                "--fence",
                "watchdog",
                "--interval",
                "60",
                "--fail-intervals",
                "4",
                "--watchdog-timeout",
                "120",
                "/dev/x",
            ]),
            &FileConfig::default(),
        )
        .unwrap_err();
        assert!(e.to_string().contains("watchdog_timeout"), "{e}");
        let e = merge(
            &cli(&["--watchdog-timeout", "0", "/dev/x"]),
            &FileConfig::default(),
        )
        .unwrap_err();
        assert!(e.to_string().contains("out of range"), "{e}");
    }
}
