//! The agent's description (its meta-data) and its parameters, read from `OCF_RESKEY_*` into a
//! [`Config`]. Everything here is checked without touching a device: a bad value is
//! OCF_ERR_CONFIGURED naming the parameter.

use super::configured;
use super::takeover::Takeover;
use libmmp::ocf::metadata::{ActionSpec, Agent, Param};
use libmmp::ocf::{Env, Outcome};
use std::path::{Path, PathBuf};

/// The agent's type: `/usr/lib/ocf/resource.d/mmp-ha/mmp-fs`, a symlink to mmp-tool.
pub const NAME: &str = "mmp-fs";

/// The start timeout we advertise: covers the worst start at update interval 1 (a dead holder:
/// 11 s of watching, 9 s of verifying, the mount; about 20 s measured) three times over, and
/// check intervals up to 13 s (see the longdesc).
pub const START_TIMEOUT_S: u32 = 60;

/// The check interval the claim publishes (mmp-tool's default, the minimum readers use).
pub const PUBLISHED_CHECK_INTERVAL: u16 = 5;

const LONGDESC: &str = "\
Mounts a shared filesystem on one node at a time, with multiple-mount protection (MMP) as the gate: \
the start never mounts a device that another node is using, and says which node.

holder=ext4 (default): an ext4 (or Lustre ldiskfs) filesystem with the mmp feature \
(tune2fs -O mmp -E mmp_update_interval=1). The start runs the gate of `mmp-tool mount`: it watches \
the MMP block, writes a random sequence as this node, verifies that nobody overwrote it, writes CLEAN \
and mounts at once; the kernel's kmmpd then holds the block. fstype ldiskfs or lustre is accepted \
(ldiskfs uses ext4's MMP) but is untested by this project.

holder=mmpd: any filesystem (xfs, btrfs, ext4 without mmp) with a separate MMP area on a small \
device (area_device, made with `mmp-tool format-area`). The start spawns mmpd on the area, waits \
until it holds it (claimed and heartbeating), then mounts; the stop unmounts first, then stops mmpd, \
which writes CLEAN. mmpd's fence (fence=exit|command|sysrq-reboot|watchdog) acts when the area is \
lost; only the watchdog fence resets a node whose mmpd hangs (needs a watchdog device).

Planned moves (meta allow-migrate=true): `crm resource move` runs migrate_to on the source, which \
stops as usual (unmount; with holder=mmpd also mmpd, which writes CLEAN) and offers the device (or \
the area) to the target through the MMP block (about 2 s), then migrate_from on the target, which \
claims it with the offer's nonce without the full wait (about 0.6 s; with holder=mmpd, an mmpd \
started with --handoff claims the area) and mounts (HANDOFF.md). A failed migrate_to or migrate_from \
makes Pacemaker recover with a stop and a normal start.

Safety: a node mounts only after it has watched the MMP block for longer than any live holder may go \
without writing it, and after its own write survived a second such watch, so of two nodes at most \
one mounts. A device in use elsewhere is refused with OCF_ERR_GENERIC and nothing written or mounted; \
a stop after such a refusal writes nothing and returns 0. A stop fails (and mmpd keeps the area) \
while the filesystem is still mounted in another mount namespace of this node (a process that \
unshared while it was mounted), since no other node can mount it safely then.

Timeouts: with CI = max(5, the superblock's mmp_update_interval, the check interval in the block) and \
W = min(2*CI+1, CI+60) seconds, a start on a CLEAN block takes about W-2 s (9 s at CI 5), after a \
dead holder about 2*W-2 s (20 s at CI 5), plus the mount. Set the start timeout to at least \
2*W + 5 s: the advertised 60 s covers CI up to 13 s. Before a wait that cannot end within \
OCF_RESKEY_CRM_meta_timeout the start fails at once with a reason naming the timeout to set (a \
device whose block changes is still reported as in use on the other node). Monitor depth 10 reads \
the MMP block twice (the kernel's update interval apart: set its timeout above 2*interval + 5 s); \
depth 20 also writes and reads back .mmp-fs_status/NODE in the mount point.";

pub const PARAMS: &[Param] = &[
    Param::string(
        "device",
        "Shared block device",
        "The shared block device holding the filesystem (a stable name such as /dev/disk/by-id/...).",
    )
    .required()
    .unique(),
    Param::string(
        "directory",
        "Mount point",
        "Where to mount the filesystem; it must exist on every node.",
    )
    .required(),
    Param::string(
        "fstype",
        "Filesystem type",
        "The type for mount(8). holder=ext4: ext4, ldiskfs or lustre (ldiskfs MMP, untested here). holder=mmpd: any type the kernel knows (xfs, btrfs, ext4 ...).",
    )
    .default("ext4"),
    Param::string("options", "Mount options", "Passed to mount(8) as -o OPTIONS."),
    Param::string(
        "holder",
        "Who holds the MMP block",
        "ext4: the kernel's MMP of an ext4/ldiskfs filesystem, gated by `mmp-tool mount`. mmpd: an MMP area (area_device) held by an mmpd this agent starts.",
    )
    .default("ext4"),
    Param::string(
        "area_device",
        "MMP area (holder=mmpd)",
        "The MMP area protecting the filesystem, made with `mmp-tool format-area`; required for holder=mmpd.",
    )
    .unique(),
    Param::string(
        "fence",
        "mmpd's fence (holder=mmpd)",
        "What mmpd does when it loses the area: exit, command (fence_command), sysrq-reboot or watchdog (watchdog_device, watchdog_timeout).",
    )
    .default("exit"),
    Param::string(
        "fence_command",
        "Fence command (fence=command)",
        "Shell command mmpd runs when it loses the area.",
    ),
    Param::string(
        "watchdog_device",
        "Watchdog device (fence=watchdog)",
        "The watchdog device mmpd arms (default /dev/watchdog).",
    ),
    Param::string(
        "watchdog_timeout",
        "Watchdog timeout in seconds (fence=watchdog)",
        "The timeout mmpd sets on the watchdog, 1 to 120 (default 10).",
    )
    .integer(),
    Param::string(
        "force_unmount",
        "Kill users of the mount point on stop",
        "If the unmount fails because the filesystem is busy, send SIGTERM, then SIGKILL, to the processes using it (fuser -km) and retry, as Filesystem's force_unmount does.",
    )
    .boolean()
    .default("true"),
    Param::string(
        "fast_takeover",
        "Fence-confirmed takeover",
        "When the MMP block still names another node, ask Pacemaker's fencing history (stonith_admin) whether a fence device powered that node off or reset it after its last MMP write; if so, mount after a short watch of the block (about 2 s at update interval 1) instead of the full wait. Any change of the block during the watch still refuses the start. Manual confirmations (stonith_admin --confirm), watchdog/sbd self-fencing and untrusted_fence_agents never qualify. Needs cluster nodes whose clocks agree (NTP).",
    )
    .boolean()
    .default("true"),
    Param::string(
        "node_map",
        "Cluster node names -> MMP node names",
        "Only when a node writes a different name into the MMP block (its hostname, `mmp-tool status` shows it) than its Pacemaker node name: CLUSTER=MMPNAME pairs separated by spaces, e.g. \"n1=host-a.example n2=host-b.example\" (as `mmp-tool mount --node-map`).",
    ),
    Param::string(
        "untrusted_fence_agents",
        "Fence agents that do not confirm a takeover",
        "Fence agent types whose success does not prove the node was seen off, so they never enable fast_takeover (if any device that can fence the node is one of these, the full wait applies). Space-separated; setting it replaces the default list.",
    )
    .default(libmmp::ocf::fencing::UNTRUSTED_AGENTS),
    Param::string(
        "run_dir",
        "mmpd's run directory",
        "Where mmpd keeps its lock and state files (default $MMPD_RUN_DIR or /run/mmpd).",
    ),
];

pub const ACTIONS: &[ActionSpec] = &[
    ActionSpec::new("start", START_TIMEOUT_S),
    ActionSpec::new("stop", 60),
    ActionSpec::monitor(40, 20, 0),
    ActionSpec::monitor(40, 60, 10),
    ActionSpec::new("validate-all", 20),
    ActionSpec::new("migrate_to", 60),
    ActionSpec::new("migrate_from", 60),
    ActionSpec::new("meta-data", 5),
];

pub const AGENT: Agent = Agent {
    name: NAME,
    shortdesc: "Filesystem mounted on one node at a time, gated by MMP",
    longdesc: LONGDESC,
    params: PARAMS,
    actions: ACTIONS,
};

/// Who holds the MMP block while the filesystem is mounted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Holder {
    /// The kernel (kmmpd) of an ext4/ldiskfs filesystem with the mmp feature.
    Ext4,
    /// An mmpd the agent spawns on an MMP area.
    Mmpd(MmpdParams),
}

/// How to run mmpd on the area (mmpd's own option names).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MmpdParams {
    pub area: PathBuf,
    pub fence: &'static str,
    pub fence_command: Option<String>,
    pub watchdog_device: Option<PathBuf>,
    pub watchdog_timeout: Option<u64>,
}

/// One resource's configuration.
#[derive(Debug, Clone)]
pub struct Config {
    pub device: PathBuf,
    pub directory: PathBuf,
    pub fstype: String,
    pub options: Option<String>,
    pub holder: Holder,
    pub force_unmount: bool,
    pub run_dir: PathBuf,
    /// The fence-confirmed fast path's parameters.
    pub takeover: Takeover,
}

fn absolute(env: &Env, name: &str) -> Result<PathBuf, Outcome> {
    let v = env.required(name)?;
    if !Path::new(v).is_absolute() {
        return Err(configured(format!(
            "parameter {name}={v:?} must be an absolute path"
        )));
    }
    Ok(PathBuf::from(v))
}

/// What mount(8) accepts as a type name here (it is also a kernel module name for modprobe).
fn fstype(env: &Env, holder_is_ext4: bool) -> Result<String, Outcome> {
    let t = env.param("fstype").unwrap_or("ext4");
    let ok_chars = !t.is_empty()
        && t.chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'));
    if !ok_chars {
        return Err(configured(format!(
            "parameter fstype={t:?} is not a filesystem type"
        )));
    }
    if holder_is_ext4 && !["ext4", "ldiskfs", "lustre"].contains(&t) {
        return Err(configured(format!(
            "fstype={t} has no MMP of its own: holder=ext4 takes ext4, ldiskfs or lustre; for {t} use holder=mmpd with an area_device made by `mmp-tool format-area`"
        )));
    }
    Ok(t.to_string())
}

/// mmpd's settings, checked as mmpd checks them.
fn mmpd_params(env: &Env, device: &Path) -> Result<MmpdParams, Outcome> {
    let area = absolute(env, "area_device")
        .map_err(|o| configured(format!("holder=mmpd: {}", o.reason.unwrap_or_default())))?;
    if area == device {
        return Err(configured(format!(
            "area_device and device are both {}: the area must be a separate small device",
            area.display()
        )));
    }
    let fence = match env.param("fence").unwrap_or("exit") {
        "exit" => "exit",
        "command" => "command",
        "sysrq-reboot" => "sysrq-reboot",
        "watchdog" => "watchdog",
        f => {
            return Err(configured(format!(
                "parameter fence={f:?} must be exit, command, sysrq-reboot or watchdog"
            )))
        }
    };
    let fence_command = env.param("fence_command").map(str::to_string);
    if (fence == "command") != fence_command.is_some() {
        return Err(configured(
            "fence=command and fence_command go together: set both or neither",
        ));
    }
    let watchdog_timeout = env.integer("watchdog_timeout", 1..=120)?;
    let watchdog_device = env.param("watchdog_device").map(PathBuf::from);
    if fence != "watchdog" && (watchdog_timeout.is_some() || watchdog_device.is_some()) {
        return Err(configured(
            "watchdog_device and watchdog_timeout apply only to fence=watchdog",
        ));
    }
    Ok(MmpdParams {
        area,
        fence,
        fence_command,
        watchdog_device,
        watchdog_timeout,
    })
}

const MMPD_ONLY: &[&str] = &[
    "area_device",
    "fence",
    "fence_command",
    "watchdog_device",
    "watchdog_timeout",
];

impl Config {
    /// The device whose MMP block the holder writes: the filesystem (holder=ext4) or the area.
    pub fn mmp_device(&self) -> &Path {
        match &self.holder {
            Holder::Ext4 => &self.device,
            Holder::Mmpd(m) => &m.area,
        }
    }

    /// Read and check the parameters (no device is opened).
    pub fn from_env(env: &Env) -> Result<Config, Outcome> {
        env.reject_unknown(PARAMS)?;
        let device = absolute(env, "device")?;
        let directory = absolute(env, "directory")?;
        let holder = match env.param("holder").unwrap_or("ext4") {
            "ext4" => {
                if let Some(p) = MMPD_ONLY.iter().find(|p| env.param(p).is_some()) {
                    return Err(configured(format!(
                        "parameter {p} applies only to holder=mmpd (holder is ext4)"
                    )));
                }
                Holder::Ext4
            }
            "mmpd" => Holder::Mmpd(mmpd_params(env, &device)?),
            h => {
                return Err(configured(format!(
                    "parameter holder={h:?} must be ext4 or mmpd"
                )))
            }
        };
        Ok(Config {
            fstype: fstype(env, holder == Holder::Ext4)?,
            options: env.param("options").map(str::to_string),
            force_unmount: env.flag("force_unmount")?.unwrap_or(true),
            takeover: Takeover::from_env(env)?,
            run_dir: env
                .param("run_dir")
                .map_or_else(libmmp::host::run_dir::run_dir_from_env, PathBuf::from),
            device,
            directory,
            holder,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg(vars: &[(&str, &str)]) -> Result<Config, Outcome> {
        let env = Env::from_vars(
            vars.iter()
                .map(|(k, v)| (format!("OCF_RESKEY_{k}"), v.to_string())),
        );
        Config::from_env(&env)
    }

    fn reason(r: Result<Config, Outcome>) -> String {
        let o = r.unwrap_err();
        use libmmp::ocf::Status;
        assert_eq!(o.status, Status::ErrConfigured, "{o:?}");
        o.reason.unwrap()
    }

    const BASE: [(&str, &str); 2] = [("device", "/dev/sdx"), ("directory", "/mnt/x")];

    #[test]
    fn defaults_and_holders() {
        let c = cfg(&BASE).unwrap();
        assert_eq!((c.fstype.as_str(), c.force_unmount), ("ext4", true));
        assert_eq!(c.holder, Holder::Ext4);
        let mut v = BASE.to_vec();
        v.extend([
            ("holder", "mmpd"),
            ("area_device", "/dev/sdy"),
            ("fstype", "xfs"),
        ]);
        let c = cfg(&v).unwrap();
        match c.holder {
            Holder::Mmpd(m) => assert_eq!((m.fence, m.area), ("exit", "/dev/sdy".into())),
            h => panic!("{h:?}"),
        }
    }

    #[test]
    fn bad_parameters_name_themselves() {
        assert!(reason(cfg(&[("directory", "/m")])).contains("device"));
        assert!(reason(cfg(&[("device", "sdx"), ("directory", "/m")])).contains("absolute"));
        let with = |extra: &[(&'static str, &'static str)]| {
            let mut v = BASE.to_vec();
            v.extend_from_slice(extra);
            reason(cfg(&v))
        };
        assert!(with(&[("fstype", "xfs")]).contains("holder=mmpd"));
        assert!(with(&[("fstype", "a b")]).contains("fstype"));
        assert!(with(&[("holder", "zfs")]).contains("holder"));
        assert!(with(&[("fence", "exit")]).contains("only to holder=mmpd"));
        assert!(with(&[("holder", "mmpd")]).contains("area_device"));
        assert!(with(&[("bogus", "1")]).contains("bogus"));
        assert!(with(&[("force_unmount", "perhaps")]).contains("force_unmount"));
        let mmpd = [("holder", "mmpd"), ("area_device", "/dev/a")];
        let mut v = mmpd.to_vec();
        v.push(("fence", "command"));
        assert!(with(&v).contains("fence_command"));
        let mut v = mmpd.to_vec();
        v.push(("watchdog_timeout", "5"));
        assert!(with(&v).contains("fence=watchdog"));
        let mut v = mmpd.to_vec();
        v.extend([("fence", "watchdog"), ("watchdog_timeout", "500")]);
        assert!(with(&v).contains("watchdog_timeout"));
    }
}
