//! Command-line definitions (also the source of the man pages in `man/`): clap and std types
//! only; the subcommands in `cmd/` take their arguments from here.

use clap::{Args, Parser, Subcommand};
use std::path::PathBuf;

const LONG_ABOUT: &str = "\
Check, inspect and manage ext4/ldiskfs multiple-mount protection (MMP) on shared storage.

MMP keeps two hosts that see the same disk (a SAN LUN, DRBD, a shared virtual disk) from mounting
one ext4 filesystem at the same time, which would corrupt it. A filesystem with the `mmp` feature
has an MMP block: while a host has it mounted, that host's kernel (kmmpd) writes a new sequence
number into the block every update interval. Another host that wants to mount first watches the
block: if the sequence changes, the filesystem is in use elsewhere. A cleanly unmounted filesystem
carries the CLEAN sequence; one held by e2fsck/tune2fs/debugfs carries FSCK.

`mmp-tool check` is the pre-mount gate for failover scripts: it answers with an exit code that is
compatible with e2mmpstatus(8), but says \"in use\" as soon as it sees the block change (about one
update interval) instead of after the full wait. It never writes to the device.";

/// The rest of the text after `--help`, after the exit-code table (`main` puts them together;
/// the man pages have the table in a section of its own).
pub const AFTER_EXIT_STATUS: &str = "\
FAILOVER SCRIPT EXAMPLE:
  # On the node taking over, after fencing the old one:
  if mmp-tool check /dev/mapper/shared; then
      mount /dev/mapper/shared /srv/nfs
  else
      rc=$?; echo \"refusing to mount: mmp-tool check exited $rc\" >&2; exit 1
  fi

  A clean answer is not a lock: two nodes that both see CLEAN at the same moment can both
  mount (the kernel does not wait for a clean block). Let the cluster manager elect one node.

With --json, a command that fails before it has a result of its own (bad arguments, no such
device, not ext4) still prints JSON on stdout: {\"error\": MESSAGE, \"result\": \"error\" or
\"refused\", \"exit_code\": N}, besides the message on stderr.

Logs go to stderr; set RUST_LOG=debug (or pass -v) for detail.";

#[derive(Debug, Parser)]
#[command(
    name = "mmp-tool",
    version,
    about = "Check and inspect ext4 multiple-mount protection (MMP) before mounting shared storage",
    long_about = LONG_ABOUT,
    propagate_version = true
)]
pub struct Cli {
    /// More log output on stderr (repeat for more).
    #[arg(short, long, action = clap::ArgAction::Count, global = true)]
    pub verbose: u8,

    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Show the MMP state of a device now, without waiting.
    #[command(long_about = "\
Show the MMP state of a device now, without waiting: the state (clean, fsck, live, unknown), the
sequence, the node and device that last wrote the block, when (and how long ago), the update and
check intervals, the MMP block number, whether the checksum is valid, and the filesystem's type,
UUID and label.

A `live` state only says the block holds a running sequence; it cannot say whether its writer is
still alive (the time field is informational and subject to clock skew). Use `check` for that.

Exit status: 0 report printed (whatever the state), 2 error (see mmp-tool --help).")]
    Status(StatusArgs),

    /// Decide whether it is safe to mount: the pre-mount gate for failover scripts.
    #[command(long_about = "\
Decide whether it is safe to mount the filesystem on this node, as the kernel and e2mmpstatus do,
and exit 0 (safe), 1 (do not mount), 2 (error) or 3 (undecided, with --timeout).

- CLEAN: safe at once.
- FSCK or an unknown sequence: never safe, however old. If you are sure that no node uses the
  filesystem, reset the block with `tune2fs -f -E clear_mmp DEVICE`.
- A live sequence: the block is watched for min(2*CI+1, CI+60) seconds, with
  CI = max(update interval, 5, the block's check interval). If it changes at any time, the
  device is in use and the answer comes at once, naming the node and device that hold it. Only a
  sequence that stays unchanged for the whole wait is safe (its writer is gone).

The device is opened read-only (O_DIRECT for block devices) and never written. A countdown is
shown on stderr when it is a terminal.")]
    Check(CheckArgs),

    /// Print every field of the MMP block, like `debugfs -R dump_mmp`.
    #[command(long_about = "\
Print every field of the MMP block in the format of `debugfs -R dump_mmp` (block_number,
update_interval, check_interval, sequence, time, node_name, device_name, magic, checksum),
followed by what debugfs does not show: the checksum verdict, the padding, the sequence class, and
the wait a check would need. The block is shown even when its magic or checksum is bad.

Exit status: 0 printed, 2 error.")]
    Dump(DumpArgs),

    /// Claim the device for this node with the MMP protocol (also when CLEAN), for scripts.
    #[command(long_about = "\
Claim the device for this node, once: refuse FSCK, an unknown sequence or a bad checksum; watch a
live sequence for min(2*CI+1, CI+60) s and refuse if it changes (shorter when its holder, an mmpd
with the watchdog fence, published a self-fence bound in the block: that bound + 1 s + 1 %); then
re-read the block and, if unchanged, write a random sequence with this node's name, watch it for
about 9 s more (3 s after a fenced holder), write a fresh sequence and watch 2 s more. Unlike the
kernel this runs even when the block is CLEAN, so of two nodes that claim a clean block at the
same time exactly one wins; the other exits 1. A claimer whose read-to-write gap exceeds 2 s (a
stopped process, a stalled device) gives up instead of trusting its watch.

A claim is a short lease: nothing keeps writing the block afterwards, so a node that saw our last
write may call it stale about 9 s after `claim` returns (`stale_after_seconds` in --json). Start
mmpd or mount within that time, or use `mmp-tool mount`, which hands the device to the kernel at
once. The claim is recorded in the run directory for `mmp-tool release`. Refused while an mmpd on
this host holds the device.

--fenced NODE is for a node the cluster has fenced (its fence device confirmed it off or reset):
if the block names NODE (or is CLEAN), it is watched for only 2 update intervals (at least 2 s;
longer when an mmpd tag advertises a longer interval) and verified for 2.2 s after our write,
about 4 s in all at interval 1 s. Any change during the watch means the fence did not stop NODE:
exit 1, nothing written, an error logged. Any other block takes the normal path (full wait, or
refused as above).

Exit status: 0 claimed, 1 refused (in use, FSCK, unknown sequence, bad checksum, lost the race,
stalled, held by a local mmpd), 2 error.")]
    Claim(ClaimArgs),

    /// Set the MMP block back to CLEAN after `claim`, if it still holds our claim.
    #[command(long_about = "\
Set the MMP block back to CLEAN, but only if it still holds the sequence this host's last
`mmp-tool claim` wrote (recorded in the run directory), or, with --force, a live sequence
written under this node's name that stays unchanged for the kernel's full wait (about 11 s; a
kernel mount on this host writes this node's name too). Anything else is another node's: nothing
is written and the exit status is 1. Refused while an mmpd on this host holds the device (stop mmpd instead: it releases
on SIGTERM). An already clean block is success.

Exit status: 0 released (or already clean), 1 not ours or held by a local mmpd, 2 error.")]
    Release(ReleaseArgs),

    /// Planned move to another node: offer, confirm or roll back a handoff.
    #[command(long_about = HANDOFF_ABOUT)]
    Handoff(HandoffArgs),

    /// Claim, write CLEAN and mount at once: the kernel skips its wait, nobody slips in.
    #[command(long_about = "\
Mount an ext4 filesystem with MMP safely: claim it with the MMP protocol (see `claim`; about 9 s
for a clean block, 20 s for a stale one), write CLEAN over our own verified sequence, and run
`mount -t ext4 [-o OPTS] DEVICE DIR` at once. The kernel mounts a clean filesystem without its
own wait and starts kmmpd, which holds the device from then on.

The remaining window: from our CLEAN write until the kernel's first write inside mount(2)
(milliseconds, reported as handoff_window_ms in --json plus the mount's own start), the block
reads CLEAN. A node that claims with mmp-tool or mmpd during that window still loses: it waits
at least 9 s after its write and sees kmmpd's updates. A node that runs a plain `mount` without
claiming, and reads the block exactly then, mounts too: that is the kernel's own clean-mount race
(LU-13932), which only a claim on every node closes.

The handover happens only within the claim's lease (about 9 s after our last write, when a
reader who saw it may call it stale): a mount stopped past it (SIGSTOP, a paused VM) does not
mount, exit 1 (lease_expired), since another node may have taken the device meanwhile.

--fenced NODE: after the cluster fenced NODE, the claim is the short fence-confirmed one (see
`claim`; about 4 s at update interval 1 s instead of 20 s), then the same CLEAN write and mount.

Exit status: 0 mounted, 1 refused (as for claim), 2 error (including a failed mount(8); the block
is then left CLEAN).")]
    Mount(MountArgs),

    /// Make an MMP area on a small device or file, for XFS, btrfs or raw devices.
    #[command(long_about = "\
Make an MMP area: the ext4 multiple-mount protection for a filesystem that has none of its own
(XFS, btrfs) or for a raw device, on a small dedicated device, partition or file (8 KiB is
enough; a missing file is created). The area holds an ext4-like superblock that no kernel or
e2fsprogs will mount or open (an unknown incompatible feature bit) and an MMP block in the same
format as ext4's, so `mmpd`, `check`, `status`, `claim` and `release` work on it unchanged.

Hold the area with mmpd on the node that uses the protected filesystem, and mount that
filesystem only while mmpd holds the area (BindsTo= and After= mmpd@NAME.service). The kernel
does not look at the area: only nodes that go through mmpd or mmp-tool are kept out.

Refuses (writing nothing) when a local mmpd holds the area, when the area's MMP block is not
CLEAN, or when libblkid finds a filesystem or other signature on the device; --force overrides
the last two.

Exit status: 0 formatted, 1 the area is (or may be) in use, 2 error or a signature found.")]
    FormatArea(FormatAreaArgs),

    /// Turn MMP on for an unmounted filesystem (what `tune2fs -O mmp` does, without the wait).
    #[command(long_about = "\
Turn multiple-mount protection on for an unmounted ext4 filesystem, natively: what
`tune2fs -O mmp` does, without its wait.

The MMP block is allocated where e2fsprogs puts it (the first free block from the start of the
filesystem), zeroed, and given a CLEAN MMP structure; the block bitmap (built first if the group
was never initialised), the group's free count and checksums, the superblock (feature, block,
interval, free count, checksum) and every backup superblock and descriptor table are updated.
The writes are ordered so that a crash at any point leaves a filesystem `e2fsck -fy` repairs.

Nothing is written, and the reason and next step are printed, if the device is mounted or
attached to a loop device on this host or cannot be opened exclusively, the journal needs
recovery, the superblock checksum is bad, the metadata is inconsistent, the filesystem uses
features this tool does not edit (bigalloc, meta_bg, an external journal device, unknown
features: use tune2fs for those), or its blocks are smaller than the device's logical sectors
(neither the kernel nor e2fsck could use the MMP block through that device). An already
enabled, clean filesystem is left alone; an enabled one whose MMP block number points into
filesystem metadata or past the end is refused.

MMP only protects against nodes that mount after it is on: enable it before the filesystem is
shared, and mount it on one node at a time.

Exit status: 0 done (or already enabled), 1 refused because the filesystem is in use (mounted
here, or its MMP block is live or FSCK), 2 refused for any other reason or failed.")]
    Enable(EnableArgs),

    /// Turn MMP off for an unmounted filesystem, freeing and zeroing its block.
    #[command(long_about = "\
Turn multiple-mount protection off for an unmounted ext4 filesystem: what `tune2fs -O ^mmp`
does, without its wait and without leaving an FSCK sequence in the freed block.

The MMP block must be CLEAN. It is first claimed with a live sequence and watched for 2 s
(--full-wait: the kernel's full wait, as e2fsprogs does), so that a node starting to mount at the
same moment either refuses or is seen, and the edit stops. (The window left: a mounter that read
CLEAN before our claim and writes its own sequence more than 2 s later is not seen. The kernel
writes within milliseconds of its read; --full-wait widens the watch to e2fsprogs' 11 s.) Then
the superblock drops the
feature, the old block is zeroed and freed (bitmap, group free count and checksums), and the
backups are rewritten. A crash at any point leaves a filesystem `e2fsck -fy` repairs.

Refused, with nothing written, when the device is mounted or attached here, its MMP block is
live (mounted elsewhere, or its node crashed), FSCK, unknown or corrupt, the journal needs
recovery, the superblock checksum is bad, it uses features this tool does not edit, or the
superblock's MMP block number points into filesystem metadata (a superblock or descriptor table
copy, reserved GDT blocks, a bitmap, an inode table) or past the end: the message names what
lies there and how to move the MMP block. A filesystem without MMP is left alone.

Exit status: 0 done (or MMP already off), 1 refused because the filesystem is in use (mounted
here, MMP block not clean, or it changed while watched), 2 refused for any other reason or
failed.")]
    Disable(DisableArgs),

    /// Set the MMP update interval of an unmounted filesystem.
    #[command(long_about = "\
Set the MMP update interval (seconds between two updates of the MMP block by the node that has
the filesystem mounted; 1 to 300, default 5 when MMP is enabled). A mount after a crash waits
2 * min(2*CI+1, CI+60) seconds, where CI, the check interval the crashed node published, is
about twice its update interval and at least 5 s: 42 s with the default 5 s, 22 s with 1 s. A
short interval means faster failover and more writes.

Unlike `tune2fs -E mmp_update_interval=N`, the MMP block's check interval is rewritten too
(max(N, 5)), so the two never disagree. The block is claimed and watched first, as for
`disable`; the same refusals apply.

Exit status: 0 done (or already set), 1 refused because the filesystem is in use, 2 refused for
any other reason or failed.")]
    Interval(IntervalArgs),

    /// Reset a stuck MMP block (FSCK from a killed e2fsck, garbage) to CLEAN.
    #[command(long_about = "\
Reset the MMP block to CLEAN, like `tune2fs -f -E clear_mmp`: for a block left holding FSCK by a
killed e2fsck, tune2fs or debugfs (\"fsck is running on the filesystem\" at mount), an unknown
sequence, a stale live sequence, or garbage.

Unlike tune2fs, the block is first watched for the kernel's full wait (min(2*CI+1, CI+60)
seconds, with CI the check interval, 11 s by default) and nothing is written if it changes at
all: then a node is using the filesystem. --force skips the watch; use it only when you know
that no node has the filesystem open. Only the MMP block is written, so this works even when
the journal needs recovery (e2fsck needs a clean MMP block to run). A clean block is left alone.
A device mounted or attached on this host is always refused, and so is an MMP block number that
points into filesystem metadata or past the end (writing there would destroy the metadata; the
message names what lies there and how to move the MMP block).

Exit status: 0 done (or already clean), 1 refused because the block changed while watched or the
filesystem is in use here, 2 refused for any other reason or failed.")]
    Clear(ClearArgs),
}

impl Command {
    /// `--json` was given: errors are printed as JSON on stdout too.
    pub fn json(&self) -> bool {
        match self {
            Command::Status(a) => a.json,
            Command::Check(a) => a.json,
            Command::Dump(a) => a.json,
            Command::Claim(a) => a.opts.json,
            Command::Release(a) => a.json,
            Command::Handoff(a) => a.json,
            Command::Mount(a) => a.opts.json,
            Command::FormatArea(a) => a.json,
            Command::Enable(a) => a.json,
            Command::Disable(a) => a.json,
            Command::Interval(a) => a.json,
            Command::Clear(a) => a.json,
        }
    }
}

#[derive(Debug, Args)]
pub struct DeviceArg {
    /// Block device or image file holding the ext4 filesystem.
    #[arg(value_name = "DEVICE")]
    pub device: PathBuf,
}

#[derive(Debug, Args)]
pub struct StatusArgs {
    #[command(flatten)]
    pub dev: DeviceArg,
    /// Print a JSON object on stdout instead of text.
    #[arg(long)]
    pub json: bool,
    /// mmpd's run directory, to show whether an mmpd on this host holds the device
    /// [default: $MMPD_RUN_DIR or /run/mmpd].
    #[arg(long, value_name = "DIR")]
    pub run_dir: Option<PathBuf>,
}

#[derive(Debug, Args)]
pub struct CheckArgs {
    #[command(flatten)]
    pub dev: DeviceArg,
    /// Print a JSON object on stdout instead of text.
    #[arg(long)]
    pub json: bool,
    /// Give up after SECONDS if the wait is longer (exit 3 unless a change was seen: then 1).
    #[arg(long, value_name = "SECONDS", value_parser = parse_seconds)]
    pub timeout: Option<std::time::Duration>,
    /// How often to re-read the MMP block during the wait, in milliseconds.
    #[arg(long, value_name = "MS", default_value_t = 100, value_parser = clap::value_parser!(u64).range(10..=10_000))]
    pub poll_ms: u64,
    /// Wait as the kernel does even when the holder advertised a self-fence bound (mmpd with
    /// the watchdog fence writes one into the block; without this flag a block that carries a
    /// valid one is stale after that bound + 1 s + 1 %).
    #[arg(long)]
    pub ignore_fence_tag: bool,
    /// Never show the countdown, even on a terminal.
    #[arg(short, long)]
    pub quiet: bool,
}

#[derive(Debug, Args)]
pub struct DumpArgs {
    #[command(flatten)]
    pub dev: DeviceArg,
    /// Print a JSON object on stdout instead of text (same fields as `status --json`).
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct EnableArgs {
    #[command(flatten)]
    pub dev: DeviceArg,
    /// MMP update interval in seconds (1 to 300). Default: the interval already in the
    /// superblock (set with `tune2fs -E mmp_update_interval=N`), else 5, as `tune2fs -O mmp`.
    #[arg(long, value_name = "SECONDS", value_parser = clap::value_parser!(u16).range(1..=300))]
    pub interval: Option<u16>,
    /// Print a JSON object on stdout instead of text.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct DisableArgs {
    #[command(flatten)]
    pub dev: DeviceArg,
    /// Watch the claimed MMP block for the kernel's full wait (11 s by default) instead of 2 s.
    #[arg(long)]
    pub full_wait: bool,
    /// Print a JSON object on stdout instead of text.
    #[arg(long)]
    pub json: bool,
    /// Never show the countdown, even on a terminal.
    #[arg(short, long)]
    pub quiet: bool,
}

#[derive(Debug, Args)]
pub struct IntervalArgs {
    #[command(flatten)]
    pub dev: DeviceArg,
    /// The new MMP update interval in seconds (1 to 300).
    #[arg(value_name = "SECONDS", value_parser = clap::value_parser!(u16).range(1..=300))]
    pub seconds: u16,
    /// Watch the claimed MMP block for the kernel's full wait (11 s by default) instead of 2 s.
    #[arg(long)]
    pub full_wait: bool,
    /// Print a JSON object on stdout instead of text.
    #[arg(long)]
    pub json: bool,
    /// Never show the countdown, even on a terminal.
    #[arg(short, long)]
    pub quiet: bool,
}

#[derive(Debug, Args)]
pub struct ClearArgs {
    #[command(flatten)]
    pub dev: DeviceArg,
    /// Do not watch the block first: reset it at once. Only when no node can be using it.
    #[arg(long)]
    pub force: bool,
    /// Print a JSON object on stdout instead of text.
    #[arg(long)]
    pub json: bool,
    /// Never show the countdown, even on a terminal.
    #[arg(short, long)]
    pub quiet: bool,
}

#[derive(Debug, Args)]
pub struct ClaimArgs {
    #[command(flatten)]
    pub dev: DeviceArg,
    #[command(flatten)]
    pub opts: ClaimFlags,
}

/// Options shared by `claim` and `mount`.
#[derive(Debug, Args)]
pub struct ClaimFlags {
    /// Print a JSON object on stdout instead of text.
    #[arg(long)]
    pub json: bool,
    /// Name written into the MMP block [default: the host name].
    #[arg(long, value_name = "NAME")]
    pub node_name: Option<String>,
    /// Check interval to publish in the block, seconds (readers wait min(2*CI+1, CI+60) s).
    #[arg(long, value_name = "SECONDS", default_value_t = 5, value_parser = clap::value_parser!(u16).range(5..=300))]
    pub check_interval: u16,
    /// How often to re-read the MMP block while waiting, in milliseconds.
    #[arg(long, value_name = "MS", default_value_t = 100, value_parser = clap::value_parser!(u64).range(10..=10_000))]
    pub poll_ms: u64,
    /// mmpd's run directory (its locks) and where claims are recorded for `release`
    /// [default: $MMPD_RUN_DIR or /run/mmpd].
    #[arg(long, value_name = "DIR")]
    pub run_dir: Option<PathBuf>,
    /// Never show the countdown, even on a terminal.
    #[arg(short, long)]
    pub quiet: bool,
    #[command(flatten)]
    pub fence: FenceFlags,
    /// On the TARGET of a planned handoff: claim with the nonce that `mmp-tool handoff --to
    /// THIS-NODE` printed on the source. No full wait (the offer proves the source let go):
    /// the offer must name this node and carry NONCE, and our claim is verified for about
    /// 0.6 s (as long as the normal claim's for `claim`, which nothing follows). Anything else
    /// (no offer, another node's or another nonce, rolled back, a newer record) is refused
    /// with nothing written: then start the normal way.
    #[arg(long, value_name = "NONCE", conflicts_with = "fenced", value_parser = libmmp::ondisk::handoff::parse_nonce)]
    pub handoff: Option<u64>,
}

/// The fence-confirmed path of `claim` and `mount` (and of the `mmp-fs` agent, which fills it
/// in from Pacemaker's fencing history).
#[derive(Debug, Clone, Default, Args)]
pub struct FenceFlags {
    /// Only for a node the CLUSTER HAS FENCED (its fence device confirmed it off or reset):
    /// take over its device after a short watch (2 update intervals, at least 2 s) instead of
    /// the full wait. Still checked: the block must name NODE (see --node-map) or be CLEAN,
    /// else the normal full wait (FSCK and bad blocks are refused as always); the block is
    /// re-read all through the watch and any change means NODE (or someone) still writes: the
    /// fence failed, exit 1, nothing written. A lying fence AND a writer slower than the watch
    /// is the one combination this cannot catch. Do not use it on a mere suspicion.
    #[arg(long, value_name = "NODE")]
    pub fenced: Option<String>,
    /// Map a cluster node name to the name it writes into MMP blocks (its host name, or its
    /// mmpd --node-name), when they differ. Repeatable.
    #[arg(long, value_name = "CLUSTER=MMPNAME", requires = "fenced", value_parser = libmmp::protocol::claim::fenced::parse_node_map)]
    pub node_map: Vec<(String, String)>,
}

impl FenceFlags {
    /// The fenced node, with its MMP name, when `--fenced` was given.
    pub fn node(&self) -> Option<libmmp::protocol::claim::FencedNode> {
        self.fenced
            .as_deref()
            .map(|n| libmmp::protocol::claim::FencedNode::new(n, &self.node_map))
    }
}

const HANDOFF_ABOUT: &str = "\
A planned move of a device from this node (the source) to another (the target) without the
target's full wait, in three steps, with the record of each step in the MMP block's padding
(which the kernel and e2fsprogs ignore):

  source:  umount DIR   (or stop its mmpd)  -> the block is CLEAN under this node's name
  source:  mmp-tool handoff DEVICE --to NODE   -> prints a NONCE (about 2.2 s: it verifies
           that nobody wrote over the offer before it hands out the nonce)
  target:  mmp-tool mount DEVICE DIR --handoff NONCE   -> mounted in about 1 s
  any:     mmp-tool handoff DEVICE --confirm NONCE   -> 0 once the target's holder writes the
           block (the source can no longer roll back)

--rollback, on the source: take back its own offer that the target has not claimed (the normal
claim's 9 s verification, then CLEAN as after the unmount); once the target claimed, only after
the normal full wait (it succeeds only when the target's holder is silent: the target is down).
On another node (the source is gone): cancel the offer; the target can no longer claim it and
the block needs the normal wait. --nonce names the handoff (needed off the source).

Every other node's claim, mount and e2fsprogs tool sees the offer as a live block and waits for
it as for any other: only the target, with the nonce, skips the wait. Why two nodes can never
both hold the device, and what each crash does: HANDOFF.md.

Refused with nothing written: the device mounted or held by mmpd here, a block that is not CLEAN
under this node's name (--to), a handoff already in progress, a target that is this node or not
a node name (exit 2), a nonce that does not match, confirm before the target claimed, rollback
after the target confirmed, a record of a newer release.

Exit status: 0 done, 1 refused (nothing written) or not confirmed, 2 error or bad arguments.";

#[derive(Debug, Args)]
#[command(group(clap::ArgGroup::new("step").required(true).args(["to", "confirm", "rollback"])))]
pub struct HandoffArgs {
    #[command(flatten)]
    pub dev: DeviceArg,
    /// Offer the device (unmounted here, its block CLEAN under this node's name) to NODE, the
    /// name NODE writes into MMP blocks (its host name, or its --node-name). Prints the nonce.
    #[arg(long, value_name = "NODE")]
    pub to: Option<String>,
    /// Exit 0 once the target's holder writes the block for handoff NONCE (watches up to the
    /// normal reader wait, about 11 s); 1 if it does not. Writes nothing.
    #[arg(long, value_name = "NONCE", value_parser = libmmp::ondisk::handoff::parse_nonce)]
    pub confirm: Option<u64>,
    /// Roll the handoff back (see above).
    #[arg(long)]
    pub rollback: bool,
    /// The handoff to roll back (default on the source: its own).
    #[arg(long, value_name = "NONCE", conflicts_with_all = ["to", "confirm"], value_parser = libmmp::ondisk::handoff::parse_nonce)]
    pub nonce: Option<u64>,
    /// This node's name in the MMP block [default: the host name].
    #[arg(long, value_name = "NAME")]
    pub node_name: Option<String>,
    /// How often to re-read the MMP block while verifying, in milliseconds.
    #[arg(long, value_name = "MS", default_value_t = 100, value_parser = clap::value_parser!(u64).range(10..=10_000))]
    pub poll_ms: u64,
    /// mmpd's run directory (to refuse while a local mmpd holds the device)
    /// [default: $MMPD_RUN_DIR or /run/mmpd].
    #[arg(long, value_name = "DIR")]
    pub run_dir: Option<PathBuf>,
    /// Print a JSON object on stdout instead of text.
    #[arg(long)]
    pub json: bool,
    /// Never show the countdown, even on a terminal.
    #[arg(short, long)]
    pub quiet: bool,
}

#[derive(Debug, Args)]
pub struct ReleaseArgs {
    #[command(flatten)]
    pub dev: DeviceArg,
    /// Print a JSON object on stdout instead of text.
    #[arg(long)]
    pub json: bool,
    /// Release even without a claim recorded on this host, if the block names this node
    /// (`--node-name`) and holds a live sequence that does not change for the kernel's full
    /// wait (e.g. after a reboot emptied /run).
    #[arg(long)]
    pub force: bool,
    /// This node's name in the MMP block, for `--force` [default: the host name].
    #[arg(long, value_name = "NAME")]
    pub node_name: Option<String>,
    /// mmpd's run directory and the claim records [default: $MMPD_RUN_DIR or /run/mmpd].
    #[arg(long, value_name = "DIR")]
    pub run_dir: Option<PathBuf>,
}

#[derive(Debug, Args)]
pub struct MountArgs {
    #[command(flatten)]
    pub dev: DeviceArg,
    /// Mount point.
    #[arg(value_name = "DIR")]
    pub dir: PathBuf,
    /// Mount options, passed to mount(8) as `-o OPTS`.
    #[arg(short = 'o', long = "options", value_name = "OPTS")]
    pub options: Option<String>,
    /// Filesystem type for mount(8): ext4, or ldiskfs.
    #[arg(short = 't', long = "type", value_name = "TYPE", default_value = "ext4", value_parser = ["ext4", "ldiskfs"])]
    pub fstype: String,
    #[command(flatten)]
    pub opts: ClaimFlags,
}

#[derive(Debug, Args)]
pub struct FormatAreaArgs {
    /// Small dedicated block device, partition or file for the area (8 KiB is enough; a file
    /// that does not exist is created).
    #[arg(value_name = "AREA")]
    pub area: PathBuf,
    /// The area's update interval in seconds (`s_mmp_update_interval`; readers wait at least
    /// min(2*CI+1, CI+60) s with CI = max(interval, 5, what the holder publishes)).
    #[arg(long, value_name = "SECONDS", default_value_t = 1, value_parser = clap::value_parser!(u16).range(1..=300))]
    pub interval: u16,
    /// Overwrite a filesystem or other signature found on the device, or an area whose MMP
    /// block is not CLEAN.
    #[arg(long)]
    pub force: bool,
    /// Print a JSON object on stdout instead of text.
    #[arg(long)]
    pub json: bool,
    /// mmpd's run directory (to refuse while a local mmpd holds the area)
    /// [default: $MMPD_RUN_DIR or /run/mmpd].
    #[arg(long, value_name = "DIR")]
    pub run_dir: Option<PathBuf>,
}

fn parse_seconds(s: &str) -> Result<std::time::Duration, String> {
    let v: f64 = s
        .parse()
        .map_err(|_| format!("`{s}` is not a number of seconds"))?;
    if !(0.0..=86_400.0).contains(&v) {
        return Err("must be between 0 and 86400 seconds".into());
    }
    Ok(std::time::Duration::from_secs_f64(v))
}
