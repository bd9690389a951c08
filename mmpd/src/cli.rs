//! Command line (also the source of `man/mmpd.8`).

use crate::error::ExitStatus;
use clap::{Parser, ValueEnum};
use std::path::PathBuf;

const LONG_ABOUT: &str = "\
Hold shared block devices for this node through their MMP (multiple-mount protection) block.

For every device it holds, mmpd claims the MMP block, then writes a new sequence number into it
every interval (default 1 s), so that another node's `mmp-tool check`, `e2mmpstatus`, e2fsck or
kernel mount sees that the device is in use and stays away. The devices are ext4 filesystems with
the `mmp` feature (`tune2fs -O mmp -E mmp_update_interval=1 DEV` on an unmounted filesystem), or
MMP areas made with `mmp-tool format-area` for XFS, btrfs or raw devices.

CLAIM. Before it holds a device, mmpd runs the start of the kernel's MMP protocol, but safer:
it refuses a block in FSCK state, with an unknown sequence or a bad checksum; it watches a live
sequence for min(2*CI+1, CI+60) s and refuses if it changes; then it writes a random sequence,
waits again and re-reads it. Unlike the kernel it does this even when the block is CLEAN, so two
nodes that both see CLEAN cannot both win. A claim takes about 9 s for a clean block and about
20 s for a stale one (check interval 5). READY=1 is sent to systemd only after every device is
claimed.

HEARTBEAT. Before each write mmpd re-reads the block and compares it with what it last wrote.
It publishes its pace in the block's check interval (max(5, interval x fail-intervals) s), so a
reader always waits longer than mmpd may go without writing.

FENCING. When another writer appears (the block holds anything but our last write), or no write
has succeeded for fail-intervals intervals, mmpd stops writing that device for good, logs why at
error level, and runs the fence action:
  exit          exit with status 1 (stop the services bound to mmpd@.service with BindsTo=)
  command       run --fence-command through /bin/sh -c with MMPD_DEVICE, MMPD_REASON, MMPD_SEQ
                and MMPD_NODE in its environment (remount read-only, stop a service ...);
                mmpd exits 1 when it holds no device any more
  sysrq-reboot  write 'b' to /proc/sysrq-trigger: immediate reboot, no sync
  watchdog      stop petting the watchdog device (kept open, petted every interval only while
                every device is healthy), so the node resets when its timeout runs out; this
                also resets a node whose mmpd hangs
SELF-FENCE BOUND. With the watchdog fence, mmpd sets the watchdog's timeout (--watchdog-timeout)
and, once the watchdog is armed, writes with every heartbeat a tag in the MMP block's padding:
'this node is reset at most fail_after + watchdog timeout + 1 s after the submission of my last
write that succeeded'. `mmp-tool check`, `claim`, `mount` and other mmpd instances then call a
block that stopped changing stale after that bound + 1 s + 1 % (e.g. 2 s + 3 s + 1 s -> 7.1 s)
instead of the kernel's min(2*CI+1, CI+60) s, and claim it with a 3 s verification. The tag is
bound by a checksum to the exact block mmpd wrote (sequence, time, node, device): a block
written afterwards by kmmpd, a kernel mount or e2fsprogs never carries a valid one, so their
blocks always get the full wait. The published check interval covers the whole bound, so readers
that ignore the tag (the kernel) also wait it out. Other fences publish no tag: `exit` and
`command` cannot stop the services that use the device by themselves, and `sysrq-reboot` does
not fire when mmpd itself hangs. Limit: the bound holds only while this node's clocks run; a VM
paused by its hypervisor with its clocks stopped, then continued after another node took over,
writes until the next heartbeat sees the other node and the watchdog fires (measured in the lab:
3-3.6 s). Such nodes need power or storage fencing as well.

A device fenced by `exit` ends the daemon: its other devices are not released (no CLEAN is
written), they go stale, so other nodes may take them after their full wait.

RELEASE. SIGTERM or SIGINT: write CLEAN to every held device whose block still holds our last
write, and exit 0. SIGHUP re-reads the configuration file: new devices are claimed, removed ones
released, fence settings changed; a changed interval needs a restart.

A second mmpd for the same device on this host refuses to start (lock in the run directory),
where mmpd also keeps a state file per device for `mmp-tool status`.";

const CONFIG_HELP: &str = "\
CONFIGURATION FILE (TOML; every key optional except path):
  run_dir = \"/run/mmpd\"
  node_name = \"nfs-a\"                 # default: the host name
  watchdog_device = \"/dev/watchdog\"
  watchdog_timeout = 10               # seconds, set on the device, part of the fence bound
  interval = 1.0                      # seconds, 0.1 to 60
  fail_intervals = 5
  fence = \"command\"
  fence_command = \"systemctl stop nfs-server.service\"

  [[device]]
  path = \"/dev/disk/by-id/wwn-0x600...\"
  [[device]]
  path = \"/dev/vg0/mmp-area\"          # an area made with `mmp-tool format-area`
  fence = \"watchdog\"                  # per-device keys override the ones above

  Settings come from, in increasing priority: built-in defaults, the file's top level, the
  command-line options, the device's own [[device]] table.
";

const SYSTEMD_HELP: &str = "\
SYSTEMD: mmpd@NAME.service runs `mmpd --config /etc/mmpd/NAME.toml` (Type=notify,
WatchdogSec=). Logs go to stderr (the journal); RUST_LOG=debug for detail.";

/// The text after the options: the configuration file, the exit status table
/// ([`ExitStatus::help`]), systemd.
fn after_long_help() -> String {
    format!("{CONFIG_HELP}\n{}\n{SYSTEMD_HELP}", ExitStatus::help())
}

/// What to do when a device is lost.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum FenceAction {
    /// Exit with status 1.
    Exit,
    /// Run the fence command, then exit 1 when no device is held any more.
    Command,
    /// Reboot at once through /proc/sysrq-trigger.
    SysrqReboot,
    /// Stop petting the watchdog device: the node resets when it times out.
    Watchdog,
}

impl FenceAction {
    pub fn name(self) -> &'static str {
        match self {
            FenceAction::Exit => "exit",
            FenceAction::Command => "command",
            FenceAction::SysrqReboot => "sysrq-reboot",
            FenceAction::Watchdog => "watchdog",
        }
    }
}

#[derive(Debug, Parser)]
#[command(
    name = "mmpd",
    version,
    about = "Hold shared block devices for this node through their MMP block: heartbeat, self-fencing, clean release",
    long_about = LONG_ABOUT,
    after_long_help = after_long_help()
)]
pub struct Cli {
    /// Devices to hold: ext4 filesystems with the mmp feature, or MMP areas.
    #[arg(value_name = "DEVICE")]
    pub devices: Vec<PathBuf>,

    /// Configuration file (TOML); re-read on SIGHUP.
    #[arg(short, long, value_name = "FILE")]
    pub config: Option<PathBuf>,

    /// Heartbeat interval in seconds [default: 1].
    #[arg(long, value_name = "SECONDS", value_parser = parse_interval)]
    pub interval: Option<f64>,

    /// Fence when no MMP write succeeded for this many intervals [default: 5].
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(2..=3000))]
    pub fail_intervals: Option<u32>,

    /// What to do when a device is lost [default: exit].
    #[arg(long, value_enum, value_name = "ACTION")]
    pub fence: Option<FenceAction>,

    /// Shell command for `--fence command`.
    #[arg(long, value_name = "CMD")]
    pub fence_command: Option<String>,

    /// Name written into the MMP block [default: the host name].
    #[arg(long, value_name = "NAME")]
    pub node_name: Option<String>,

    /// Directory for lock and state files [default: $MMPD_RUN_DIR or /run/mmpd].
    #[arg(long, value_name = "DIR")]
    pub run_dir: Option<PathBuf>,

    /// Watchdog device for `--fence watchdog` [default: /dev/watchdog].
    #[arg(long, value_name = "PATH")]
    pub watchdog_device: Option<PathBuf>,

    /// Timeout to set on the watchdog device, seconds (1 to 120) [default: 10]. It is part of
    /// the self-fence bound published in the block (see SELF-FENCE BOUND).
    #[arg(long, value_name = "SECONDS")]
    pub watchdog_timeout: Option<u32>,

    /// Where `--fence sysrq-reboot` writes 'b' [default: /proc/sysrq-trigger] (for testing).
    #[arg(long, value_name = "PATH")]
    pub sysrq_trigger: Option<PathBuf>,

    /// How often the claim re-reads the MMP block, in milliseconds.
    #[arg(long, value_name = "MS", default_value_t = 100, value_parser = clap::value_parser!(u64).range(10..=1000))]
    pub poll_ms: u64,

    /// Only for a node the CLUSTER HAS FENCED (its fence device confirmed it off or reset):
    /// the claims at start take over a device whose block names NODE (see --node-map) or is
    /// CLEAN after a short watch (2 update intervals, at least 2 s; longer when the block's mmpd
    /// tag advertises a longer interval) and a 2.2 s verification, instead of the full wait;
    /// then mmpd heartbeats as usual. Any change during the watch means NODE still writes (the
    /// fence failed): that claim is refused and logged as an error. Any other block takes the
    /// normal claim. A lying fence AND a writer slower than the watch is the one combination
    /// this cannot catch. Devices added later (SIGHUP) always claim the normal way.
    #[arg(long, value_name = "NODE")]
    pub fenced: Option<String>,

    /// The TARGET of a planned handoff (HANDOFF.md): claim the one device at start with the
    /// nonce `mmp-tool handoff DEVICE --to THIS-NODE` printed on the source, without the full
    /// wait (the offer proves the source let go; about 0.6 s), then heartbeat as usual. The
    /// offer must name this node (--node-name) and carry NONCE; anything else is refused with
    /// nothing written (exit 3): start mmpd the normal way then.
    #[arg(long, value_name = "NONCE", conflicts_with = "fenced", value_parser = libmmp::ondisk::handoff::parse_nonce)]
    pub handoff: Option<u64>,

    /// Map a cluster node name to the name it writes into MMP blocks, for --fenced.
    /// Repeatable.
    #[arg(long, value_name = "CLUSTER=MMPNAME", requires = "fenced", value_parser = libmmp::protocol::claim::fenced::parse_node_map)]
    pub node_map: Vec<(String, String)>,

    /// Check the configuration and devices (read-only), print what would be held, and exit.
    #[arg(long)]
    pub check_config: bool,

    /// More log output (repeat for more).
    #[arg(short, long, action = clap::ArgAction::Count)]
    pub verbose: u8,
}

impl Cli {
    /// No arguments at all (for callers that merge a configuration file alone).
    pub fn empty() -> Self {
        Cli::parse_from(["mmpd"])
    }
}

fn parse_interval(s: &str) -> Result<f64, String> {
    let v: f64 = s
        .parse()
        .map_err(|_| format!("`{s}` is not a number of seconds"))?;
    if !(0.1..=60.0).contains(&v) {
        return Err("must be between 0.1 and 60 seconds".into());
    }
    Ok(v)
}
