//! Changing MMP on an unmounted filesystem: `enable`, `disable`, `interval` and `clear`.
//!
//! `enable` allocates the MMP block exactly as `ext2fs_mmp_init` does (the first free block from
//! `s_first_data_block`, bitmaps of `BLOCK_UNINIT` groups built as libext2fs builds them) and
//! updates every structure the allocation touches, as `ext2fs_block_alloc_stats2` and
//! `ext2fs_flush` do; `disable` undoes it. The integration tests compare the result byte for
//! byte with `tune2fs` on a copy of the same image.
//!
//! Where this differs from e2fsprogs, on purpose (reference notes §3.8–3.10):
//! - no 11 s wait on every MMP filesystem: a CLEAN block is *claimed* with a live sequence and
//!   watched for [`CLAIM_SETTLE`] (or the full kernel wait with [`Settle::Full`]);
//! - nothing is ever written while the device is mounted or attached on this host, or while
//!   the MMP block is live, FSCK or corrupt (tune2fs allows `-O ^mmp` on a mounted filesystem);
//! - `disable` leaves the old block zeroed, not holding an FSCK sequence;
//! - `interval` rewrites the block's check interval too, so the two never disagree.
//!
//! **Write order.** Every step ends with `fdatasync`, so the device sees the steps in order; a
//! crash leaves a prefix of the sequence, and every prefix is a filesystem that `e2fsck -fy`
//! repairs (the integration tests crash at every write and run it). The rule is that the
//! superblock may only point at an MMP block that is already allocated and valid, and stops
//! pointing at it before it is freed, so a crash can leak one block (e2fsck's "block bitmap
//! differences", harmless until then) but never leaves the kernel free to allocate the block
//! kmmpd writes:
//! - `enable`: MMP block (a free block, so harmless) → block bitmap → group descriptor →
//!   primary superblock (MMP on) → backups. The bitmap goes before the descriptor so that
//!   clearing `BLOCK_UNINIT` never exposes an uninitialised bitmap.
//! - `disable`: claim → primary superblock (MMP off) → zero the old block (still allocated, so
//!   nobody can have been given it) → bitmap → descriptor → backups.
//! - `interval`: claim → primary superblock → backup superblocks → CLEAN block with the new
//!   check interval.
//!
//! **The claim** (`disable`, `interval`): the CLEAN block is replaced by a random live sequence
//! before any metadata is written, and re-read before every later write. A kernel that starts
//! mounting meanwhile sees a live sequence, waits, sees it change and refuses ("Device is
//! already active on another node"); e2fsprogs tools wait and refuse likewise. A kernel that had
//! read CLEAN just before the claim writes its own sequence and starts kmmpd within
//! milliseconds, which the settle watch sees. If the tool dies after claiming, the sequence goes
//! stale: mounts and e2fsck wait once, then proceed (an FSCK sequence, as tune2fs leaves, would
//! need a manual `clear`).

use crate::error::Error;
use crate::fs::MmpFs;
use crate::host::busy::{self, LocalUse};
use crate::io::device::{Access, BlockIo, Device, OpenError};
use crate::ondisk::layout::{
    backup_superblock, clear_bit, count_zeros, first_zero, set_bit, test_bit, DescError, Geometry,
    GroupTable, LayoutError, EXT2_BG_BLOCK_UNINIT, EXT2_ERROR_FS,
};
use crate::ondisk::mmp::{
    MmpBlock, MmpError, EXT4_MMP_MAX_UPDATE_INTERVAL, EXT4_MMP_MIN_CHECK_INTERVAL,
    EXT4_MMP_SEQ_CLEAN, MMP_STRUCT_SIZE,
};
use crate::ondisk::superblock::{feature, SUPERBLOCK_OFFSET, SUPERBLOCK_SIZE};
use crate::protocol::check::{self, check_interval, wait_time, CheckOptions, Progress, Verdict};
use crate::protocol::clock::Clock;
use serde::Serialize;
use std::io;
use std::path::Path;
use std::time::Duration;

/// Smallest update interval we write (`s_mmp_update_interval = 0` would make kmmpd spin; the
/// e2fsprogs "0 means default" convention is not repeated here).
pub const MIN_UPDATE_INTERVAL: u16 = 1;
/// Largest update interval (`EXT4_MMP_MAX_UPDATE_INTERVAL`).
pub const MAX_UPDATE_INTERVAL: u16 = EXT4_MMP_MAX_UPDATE_INTERVAL;
/// How long a claim is watched by default: a kernel that read CLEAN just before the claim
/// writes its own sequence and starts kmmpd well within this (LU-13932 uses 2 s likewise).
pub const CLAIM_SETTLE: Duration = Duration::from_secs(2);
/// How often watched blocks are re-read.
pub const POLL: Duration = Duration::from_millis(100);

/// Who is writing: what goes into the MMP blocks we write.
#[derive(Debug, Clone)]
pub struct EditEnv {
    /// `mmp_nodename` (the host name, as e2fsprogs and the kernel write).
    pub nodename: String,
    /// `mmp_bdevname` (the device as named by the user, as e2fsprogs writes).
    pub bdevname: String,
    /// `mmp_time`: seconds since the epoch.
    pub wall_time: u64,
    /// The live sequence a claim writes (1..=SEQ_MAX; see [`crate::protocol::seq::random_seq`]).
    pub claim_seq: u32,
}

impl EditEnv {
    /// This host, now, a random claim sequence (refused without the kernel's CSPRNG).
    pub fn for_device(bdevname: &str) -> Result<Self, crate::Error> {
        let claim_seq =
            crate::protocol::seq::random_seq().map_err(|source| crate::Error::RandomSeq {
                device: bdevname.to_string(),
                source,
            })?;
        Ok(EditEnv {
            nodename: crate::host::identity::nodename(),
            bdevname: bdevname.to_string(),
            wall_time: crate::protocol::clock::wall_now(),
            claim_seq,
        })
    }
}

/// How long to watch a claim before editing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Settle {
    /// Watch this long ([`CLAIM_SETTLE`] by default).
    For(Duration),
    /// The kernel's full wait, `min(2*CI + 1, CI + 60)`, as e2fsprogs' `ext2fs_mmp_start`.
    Full,
}

/// One write, for the report.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct WriteRecord {
    pub what: String,
    pub offset: u64,
    pub len: usize,
}

/// What an edit did.
#[derive(Debug, Clone, Serialize)]
pub struct EditReport {
    /// `enable`, `disable`, `interval` or `clear`.
    pub action: &'static str,
    pub device: String,
    /// False when the filesystem was already as asked and nothing was written.
    pub changed: bool,
    /// MMP enabled afterwards.
    pub mmp_enabled: bool,
    /// The MMP block (the freed one for `disable`).
    pub mmp_block: u64,
    /// `s_mmp_update_interval` afterwards.
    pub update_interval: u16,
    /// `mmp_check_interval` of the block written, if one was.
    pub check_interval: Option<u16>,
    /// The block group of the MMP block.
    pub group: Option<u32>,
    /// The group's bitmap was uninitialised (`BLOCK_UNINIT`) and had to be built.
    pub group_was_block_uninit: bool,
    pub free_blocks_before: u64,
    pub free_blocks_after: u64,
    /// The MMP block's state before (`clean`, `live`, `fsck`, `unknown`, `bad_magic`,
    /// `bad_checksum`).
    pub previous_state: Option<&'static str>,
    /// How long the block was watched before writing.
    pub watched_seconds: f64,
    /// Groups whose backup superblock (and descriptor table) were rewritten.
    pub backup_groups: Vec<u32>,
    pub writes: Vec<WriteRecord>,
}

/// Why an edit was refused or failed. Every message names the device, the reason and the next
/// step; [`EditError::is_in_use`] says which mean "in use" (exit 1 in mmp-tool).
#[derive(Debug, thiserror::Error)]
pub enum EditError {
    #[error(transparent)]
    Fs(#[from] Error),

    #[error("{device}: cannot tell whether it is in use on this host: {source}; refusing to write. Next: make /proc and /sys readable, or use tune2fs")]
    BusyCheck {
        device: String,
        #[source]
        source: io::Error,
    },

    #[error("{device} is in use on this host: {}; refusing to write. Next: {}, make sure no other node has it mounted, and retry", list(users), steps(users))]
    InUseLocally {
        device: String,
        users: Vec<LocalUse>,
    },

    #[error("{device}: the kernel refuses an exclusive open (EBUSY): it is mounted (perhaps in another mount namespace or container), or device-mapper, md or another program holds it; refusing to write. Next: unmount it or stop the holder, and retry")]
    DeviceBusy { device: String },

    #[error("{device}: another program holds an exclusive lock on the image (another `mmp-tool` edit?); refusing to write. Next: wait for it to finish and retry")]
    Locked { device: String },

    #[error("{device}: {source}; refusing to write. Next: {next}")]
    Layout {
        device: String,
        #[source]
        source: LayoutError,
        next: String,
    },

    #[error("{device}: the journal needs recovery (needs_recovery is set: the filesystem was not cleanly unmounted); refusing to write. Next: run `e2fsck -f {device}` to replay the journal (or mount and unmount it on one node), then retry")]
    NeedsRecovery { device: String },

    #[error("{device}: the kernel recorded filesystem errors (ERROR_FS in s_state); refusing to write. Next: run `e2fsck -f {device}`, then retry")]
    HasErrors { device: String },

    #[error("{device}: MMP is not enabled; refusing to {action}. Next: `mmp-tool enable {device}` enables it")]
    NotEnabled {
        device: String,
        action: &'static str,
    },

    #[error("{device}: MMP is already enabled with update interval {current} s; refusing to enable it again with {requested} s. Next: `mmp-tool interval {device} {requested}`")]
    AlreadyEnabled {
        device: String,
        current: u16,
        requested: u16,
    },

    #[error("{device}: MMP block {block} is {}: {detail}; refusing to {action}. Next: {next}", state.replace('_', " "))]
    MmpNotClean {
        device: String,
        block: u64,
        /// `live`, `fsck`, `unknown`, `bad_checksum`, `bad_magic`.
        state: &'static str,
        detail: String,
        action: &'static str,
        next: String,
    },

    #[error("{device}: MMP block {block} changed while it was watched ({detail}): another node is using the filesystem; {written}. Next: {next}")]
    Changed {
        device: String,
        block: u64,
        detail: String,
        written: String,
        next: String,
    },

    #[error("{device}: {what}; refusing to write. Next: run `e2fsck -f {device}`, then retry")]
    Inconsistent { device: String, what: String },

    #[error(
        "{device}: no free block for the MMP block; refusing. Next: free some space and retry"
    )]
    NoSpace { device: String },

    #[error("{device}: its {block_size}-byte filesystem blocks are smaller than the device's {sector}-byte logical sectors: the kernel cannot mount the filesystem from this device, and e2fsck cannot read an MMP block through it; refusing to enable MMP. Next: enable it through the image file or a device with sectors of at most {block_size} bytes, or recreate the filesystem with blocks of at least {sector} bytes")]
    BlockSmallerThanSector {
        device: String,
        block_size: u32,
        sector: u32,
    },

    #[error("{device}: update interval {interval} s is out of range ({MIN_UPDATE_INTERVAL} to {MAX_UPDATE_INTERVAL} s)")]
    BadInterval { device: String, interval: u16 },

    #[error("{device}: {what} at offset {offset} failed: {source}. {progress}")]
    Write {
        device: String,
        what: String,
        offset: u64,
        #[source]
        source: io::Error,
        progress: String,
    },
}

fn list(users: &[LocalUse]) -> String {
    users
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join("; ")
}

fn steps(users: &[LocalUse]) -> String {
    users
        .iter()
        .map(LocalUse::next_step)
        .collect::<Vec<_>>()
        .join(", then ")
}

impl EditError {
    /// The filesystem is in use (here or elsewhere) or its MMP state says so: mmp-tool's
    /// "do not touch" exit code 1 rather than 2.
    pub fn is_in_use(&self) -> bool {
        match self {
            EditError::InUseLocally { .. }
            | EditError::DeviceBusy { .. }
            | EditError::Locked { .. }
            | EditError::Changed { .. } => true,
            EditError::MmpNotClean { state, .. } => *state != "bad_magic",
            EditError::Fs(e) => e.is_bad_mmp_checksum(),
            _ => false,
        }
    }

    /// A short, stable name for `--json`.
    pub fn reason(&self) -> &'static str {
        match self {
            EditError::Fs(Error::NotExt4 { .. }) => "not_ext4",
            EditError::Fs(Error::Superblock { .. }) => "bad_superblock",
            EditError::Fs(Error::Open(_)) => "open_failed",
            EditError::Fs(Error::MmpBlockOutOfRange { .. }) => "bad_mmp_block_number",
            EditError::Fs(Error::Truncated { .. }) => "truncated",
            EditError::Fs(_) => "io_error",
            EditError::BusyCheck { .. } => "busy_check_failed",
            EditError::InUseLocally { .. } => "in_use_locally",
            EditError::DeviceBusy { .. } => "device_busy",
            EditError::Locked { .. } => "locked",
            EditError::Layout {
                source: LayoutError::Unsupported { .. },
                ..
            } => "unsupported_features",
            EditError::Layout { .. } => "bad_geometry",
            EditError::NeedsRecovery { .. } => "needs_recovery",
            EditError::HasErrors { .. } => "has_errors",
            EditError::NotEnabled { .. } => "not_enabled",
            EditError::AlreadyEnabled { .. } => "already_enabled",
            EditError::MmpNotClean { state, .. } => match *state {
                "live" => "mmp_live",
                "fsck" => "mmp_fsck",
                "unknown" => "mmp_unknown_sequence",
                "bad_checksum" => "mmp_bad_checksum",
                _ => "mmp_bad_magic",
            },
            EditError::Changed { .. } => "mmp_changed",
            EditError::Inconsistent { .. } => "inconsistent",
            EditError::NoSpace { .. } => "no_space",
            EditError::BadInterval { .. } => "bad_interval",
            EditError::BlockSmallerThanSector { .. } => "block_smaller_than_sector",
            EditError::Write { .. } => "write_failed",
        }
    }
}

/// Open `path` for an edit: refuse if this host uses it (mounted, loop-attached, held), then
/// open it exclusively ([`Device::open_exclusive`]) and read the superblock. The local check runs
/// again once the exclusive open holds, so a `losetup` in between is caught too.
pub fn open_for_edit(path: &Path) -> Result<MmpFs<Device>, EditError> {
    let device = path.display().to_string();
    // A plain open first, for its precise errors (no such file, permission, directory).
    drop(Device::open(path, Access::ReadOnly).map_err(Error::from)?);
    let check_local = || -> Result<(), EditError> {
        let users = busy::local_users(path).map_err(|source| EditError::BusyCheck {
            device: device.clone(),
            source,
        })?;
        if users.is_empty() {
            Ok(())
        } else {
            Err(EditError::InUseLocally {
                device: device.clone(),
                users,
            })
        }
    };
    check_local()?;
    let dev = Device::open_exclusive(path).map_err(|e| match e {
        OpenError::Io { ref source, op, .. }
            if op.starts_with("exclusive") && source.raw_os_error() == Some(libc::EBUSY) =>
        {
            EditError::DeviceBusy {
                device: device.clone(),
            }
        }
        OpenError::Io { ref source, op, .. }
            if op.starts_with("lock")
                && matches!(
                    source.raw_os_error(),
                    Some(libc::EAGAIN) | Some(libc::EACCES)
                ) =>
        {
            EditError::Locked {
                device: device.clone(),
            }
        }
        e => EditError::Fs(Error::Open(e)),
    })?;
    check_local()?;
    Ok(MmpFs::open(dev).map_err(|e| crate::open::explain_not_ext4(path, e))?)
}

// ---------------------------------------------------------------------------------------------
// Reading

fn read_at<D: BlockIo>(
    dev: &D,
    what: &'static str,
    offset: u64,
    buf: &mut [u8],
) -> Result<(), EditError> {
    dev.read_at(offset, buf).map_err(|source| {
        EditError::Fs(if source.kind() == io::ErrorKind::UnexpectedEof {
            Error::Truncated {
                device: dev.name().to_string(),
                what,
                offset,
                size: dev.size(),
            }
        } else {
            Error::Io {
                device: dev.name().to_string(),
                op: what,
                offset,
                source,
            }
        })
    })
}

fn inconsistent<D: BlockIo>(fs: &MmpFs<D>, what: String) -> EditError {
    EditError::Inconsistent {
        device: fs.device_name().to_string(),
        what,
    }
}

/// The checks every metadata edit (`enable`, `disable`, `interval`) starts with.
fn preflight<D: BlockIo>(fs: &MmpFs<D>) -> Result<Geometry, EditError> {
    let sb = fs.superblock();
    let device = fs.device_name().to_string();
    let geo = Geometry::from_superblock(sb).map_err(|source| {
        let next = match source {
            LayoutError::Unsupported { .. } => format!(
                "use tune2fs on the unmounted filesystem (`tune2fs -O mmp {device}`, `-O ^mmp`, `-E mmp_update_interval=N`); it handles these features"
            ),
            _ => format!("run `e2fsck -f {device}`"),
        };
        EditError::Layout {
            device: device.clone(),
            source,
            next,
        }
    })?;
    if sb.s_feature_incompat & feature::INCOMPAT_RECOVER != 0 {
        return Err(EditError::NeedsRecovery { device });
    }
    if sb.s_state & EXT2_ERROR_FS != 0 {
        return Err(EditError::HasErrors { device });
    }
    let fs_bytes = geo.blocks_count.saturating_mul(u64::from(geo.block_size));
    if fs.device().size() < fs_bytes {
        return Err(EditError::Fs(Error::Truncated {
            device,
            what: "the last block of the filesystem",
            offset: fs_bytes,
            size: fs.device().size(),
        }));
    }
    Ok(geo)
}

fn load_gdt<D: BlockIo>(fs: &MmpFs<D>, geo: &Geometry) -> Result<GroupTable, EditError> {
    let mut raw = vec![0u8; geo.gdt_bytes()];
    let off = geo.gdt_block(0) * u64::from(geo.block_size);
    read_at(
        fs.device(),
        "read of the group descriptor table",
        off,
        &mut raw,
    )?;
    GroupTable::from_bytes(geo, raw).map_err(|e| match e {
        DescError::BadChecksum { .. } => inconsistent(fs, format!("{e}")),
        e => inconsistent(fs, format!("group descriptor table: {e}")),
    })
}

/// Group `g`'s block bitmap (one block, padding included) and whether it had to be built
/// because the group is `BLOCK_UNINIT`. Verified: location, checksum (metadata_csum), and for an
/// uninitialised group, that the descriptor's free count matches what its metadata leaves free.
fn load_bitmap<D: BlockIo>(
    fs: &MmpFs<D>,
    geo: &Geometry,
    gt: &GroupTable,
    g: u32,
) -> Result<(Vec<u8>, bool), EditError> {
    let d = gt.desc(g);
    let n = geo.group_blocks(g) as usize;
    if geo.desc_csum.enabled() && d.bg_flags & EXT2_BG_BLOCK_UNINIT != 0 {
        let bm = geo.uninit_bitmap(g, gt);
        let free = count_zeros(&bm, n);
        if free != d.bg_free_blocks_count {
            return Err(inconsistent(fs, format!(
                "group {g} is BLOCK_UNINIT with {} free blocks in its descriptor, but its metadata leaves {free} free",
                d.bg_free_blocks_count
            )));
        }
        return Ok((bm, true));
    }
    let loc = d.bg_block_bitmap;
    if loc <= geo.first_data_block || loc >= geo.blocks_count {
        return Err(inconsistent(
            fs,
            format!("group {g}'s block bitmap location {loc} is outside the filesystem"),
        ));
    }
    let mut bm = vec![0u8; geo.block_size as usize];
    read_at(
        fs.device(),
        "read of a block bitmap",
        loc * u64::from(geo.block_size),
        &mut bm,
    )?;
    if !geo.bitmap_csum_matches(&d, &bm) {
        return Err(inconsistent(
            fs,
            format!("group {g}: block bitmap checksum does not match"),
        ));
    }
    Ok((bm, false))
}

fn check_free_count<D: BlockIo>(
    fs: &MmpFs<D>,
    geo: &Geometry,
    gt: &GroupTable,
    g: u32,
    bm: &[u8],
) -> Result<(), EditError> {
    let counted = count_zeros(bm, geo.group_blocks(g) as usize);
    let stored = gt.desc(g).bg_free_blocks_count;
    if counted != stored {
        return Err(inconsistent(
            fs,
            format!("group {g}: its descriptor counts {stored} free blocks, its bitmap {counted}"),
        ));
    }
    Ok(())
}

fn read_mmp_bytes<D: BlockIo>(fs: &MmpFs<D>) -> Result<[u8; MMP_STRUCT_SIZE], EditError> {
    let mut raw = [0u8; MMP_STRUCT_SIZE];
    read_at(
        fs.device(),
        "read of the MMP block",
        fs.superblock().mmp_offset(),
        &mut raw,
    )?;
    Ok(raw)
}

fn who(b: &MmpBlock) -> String {
    format!(
        "last update by node '{}' device '{}' at {} s since the epoch, sequence {:#010x}",
        b.nodename(),
        b.bdevname(),
        b.mmp_time,
        b.mmp_seq
    )
}

/// The state name of a decoded block under `seed`.
fn state_of(b: &MmpBlock, seed: Option<u32>) -> &'static str {
    match b.verify(seed) {
        Err(MmpError::BadChecksum { .. }) => "bad_checksum",
        Err(_) => "bad_magic",
        Ok(()) => b.seq_class().name(),
    }
}

/// Read the MMP block and insist that it is valid and CLEAN: what `enable`, `disable` and
/// `interval` require before they write.
fn read_clean<D: BlockIo>(fs: &MmpFs<D>, action: &'static str) -> Result<MmpBlock, EditError> {
    let block = fs.require_mmp()?;
    let raw = read_mmp_bytes(fs)?;
    let device = fs.device_name().to_string();
    let blk = MmpBlock::decode(&raw).map_err(|source| Error::Mmp {
        device: device.clone(),
        block,
        source,
    })?;
    let seed = fs.superblock().mmp_csum_seed();
    let state = state_of(&blk, seed);
    let repair = format!(
        "if no node uses the filesystem, `e2fsck -f {device}` repairs the block (or `mmp-tool clear {device}` resets it); then retry"
    );
    let (detail, next) = match state {
        "clean" => return Ok(blk),
        "bad_checksum" => ("its checksum does not match (it may be mid-update by another node, or corrupt)".to_string(), repair),
        "bad_magic" => (format!("its magic number is {:#010x}, not an MMP block", blk.mmp_magic), repair),
        "fsck" => (
            format!("e2fsck, tune2fs or debugfs has the filesystem open, or was killed while it had ({})", who(&blk)),
            format!("wait for that tool to finish; if nothing uses the filesystem, `mmp-tool clear {device}` resets the block; then retry"),
        ),
        "live" => (
            format!("a node has the filesystem mounted, or crashed while it had ({})", who(&blk)),
            format!("unmount it on that node; if that node is down, `mmp-tool check {device}` tells whether the sequence is stale, and `mmp-tool clear {device}` resets it; then retry"),
        ),
        _ => (
            format!("it holds an unknown sequence ({})", who(&blk)),
            format!("if you are sure no node uses the filesystem, `mmp-tool clear {device}` resets the block; then retry"),
        ),
    };
    Err(EditError::MmpNotClean {
        device,
        block,
        state,
        detail,
        action,
        next,
    })
}

// ---------------------------------------------------------------------------------------------
// Writing

/// Write `data` at `offset`. Block devices (`O_DIRECT`) need whole logical sectors; a span that
/// is not sector-aligned (a 1 KiB superblock or block on a 4 KiB-sector disk) is read, patched
/// and written back. That read-modify-write is safe here because the filesystem is held
/// exclusively and no node has it mounted; the MMP *heartbeat* path must not do it.
fn write_span<D: BlockIo>(dev: &D, offset: u64, data: &[u8]) -> io::Result<()> {
    let s = u64::from(dev.logical_block_size().max(1));
    let len = data.len() as u64;
    if offset % s == 0 && len % s == 0 {
        return dev.write_at(offset, data);
    }
    let start = offset / s * s;
    let end = (offset + len).div_ceil(s) * s;
    let mut buf = vec![0u8; (end - start) as usize];
    dev.read_at(start, &mut buf)?;
    let skip = (offset - start) as usize;
    buf[skip..skip + data.len()].copy_from_slice(data);
    dev.write_at(start, &buf)
}

/// Records every write, so that a failure can say what was already written.
struct Writer<'a, D: BlockIo> {
    dev: &'a D,
    done: Vec<WriteRecord>,
}

impl<'a, D: BlockIo> Writer<'a, D> {
    fn new(dev: &'a D) -> Self {
        Writer {
            dev,
            done: Vec::new(),
        }
    }

    fn progress(&self) -> String {
        if self.done.is_empty() {
            "Nothing was written".to_string()
        } else {
            format!(
                "Written before this: {}. The writes are ordered so that `e2fsck -fy {}` repairs the filesystem from this point",
                self.done.iter().map(|w| w.what.as_str()).collect::<Vec<_>>().join(", "),
                self.dev.name()
            )
        }
    }

    fn write(&mut self, what: String, offset: u64, data: &[u8]) -> Result<(), EditError> {
        if let Err(source) = write_span(self.dev, offset, data) {
            return Err(EditError::Write {
                device: self.dev.name().to_string(),
                what: format!("write of the {what}"),
                offset,
                source,
                progress: self.progress(),
            });
        }
        tracing::debug!(
            device = self.dev.name(),
            offset,
            len = data.len(),
            "wrote {what}"
        );
        self.done.push(WriteRecord {
            what,
            offset,
            len: data.len(),
        });
        Ok(())
    }

    /// End of a step: `fdatasync`, so the next step cannot reach the device first.
    fn sync(&mut self) -> Result<(), EditError> {
        self.dev.sync().map_err(|source| EditError::Write {
            device: self.dev.name().to_string(),
            what: "fdatasync".to_string(),
            offset: 0,
            source,
            progress: self.progress(),
        })
    }
}

/// Store group `g`'s descriptor with the checksum of its new block bitmap `bm`, and write and
/// sync the primary descriptor-table block that holds it (enable and disable, step 3).
fn write_group_desc<D: BlockIo>(
    w: &mut Writer<'_, D>,
    geo: &Geometry,
    gt: &mut GroupTable,
    g: u32,
    mut d: crate::ondisk::layout::GroupDesc,
    bm: &[u8],
) -> Result<(), EditError> {
    if let Some(c) = geo.bitmap_csum(bm) {
        d.bg_block_bitmap_csum = c;
    }
    gt.set_desc(g, &d);
    let idx = gt.block_index_of(g);
    w.write(
        format!("group descriptor table block {idx} (group {g})"),
        (geo.gdt_block(0) + idx) * u64::from(geo.block_size),
        gt.block(idx),
    )?;
    w.sync()
}

fn write_backups<D: BlockIo>(
    w: &mut Writer<'_, D>,
    geo: &Geometry,
    primary: &[u8; SUPERBLOCK_SIZE],
    gt: Option<&GroupTable>,
) -> Result<Vec<u32>, EditError> {
    let groups = geo.backup_groups();
    for &g in &groups {
        let copy = backup_superblock(primary, g);
        w.write(
            format!("backup superblock in group {g}"),
            geo.superblock_offset(g),
            &copy,
        )?;
        if let Some(gt) = gt {
            w.write(
                format!("backup group descriptor table in group {g}"),
                geo.gdt_block(g) * u64::from(geo.block_size),
                gt.bytes(),
            )?;
        }
    }
    if !groups.is_empty() {
        w.sync()?;
    }
    Ok(groups)
}

fn check_interval_for(update_interval: u16) -> u16 {
    // ext2fs_mmp_reset: the check interval is the update interval, at least 5 s.
    update_interval.max(EXT4_MMP_MIN_CHECK_INTERVAL)
}

fn validate_interval(device: &str, interval: u16) -> Result<(), EditError> {
    if (MIN_UPDATE_INTERVAL..=MAX_UPDATE_INTERVAL).contains(&interval) {
        Ok(())
    } else {
        Err(EditError::BadInterval {
            device: device.to_string(),
            interval,
        })
    }
}

fn report<D: BlockIo>(fs: &MmpFs<D>, action: &'static str) -> EditReport {
    let sb = fs.superblock();
    EditReport {
        action,
        device: fs.device_name().to_string(),
        changed: false,
        mmp_enabled: sb.has_mmp(),
        mmp_block: sb.s_mmp_block,
        update_interval: sb.s_mmp_update_interval,
        check_interval: None,
        group: None,
        group_was_block_uninit: false,
        free_blocks_before: sb.free_blocks_count,
        free_blocks_after: sb.free_blocks_count,
        previous_state: None,
        watched_seconds: 0.0,
        backup_groups: Vec::new(),
        writes: Vec::new(),
    }
}

// ---------------------------------------------------------------------------------------------
// enable

/// Enable MMP: allocate the block, write a CLEAN MMP block, update bitmap, descriptor,
/// superblock and backups (see the module comment for the order). `interval` is the update
/// interval (default 5 s). An already enabled, CLEAN filesystem with the same (or no requested)
/// interval is left alone (`changed: false`).
pub fn enable<D: BlockIo>(
    fs: &MmpFs<D>,
    interval: Option<u16>,
    env: &EditEnv,
) -> Result<EditReport, EditError> {
    let device = fs.device_name().to_string();
    let interval_given = interval;
    let interval = interval.unwrap_or(crate::ondisk::mmp::EXT4_MMP_UPDATE_INTERVAL);
    validate_interval(&device, interval)?;
    let geo = preflight(fs)?;
    let sb = fs.superblock();
    let mut rep = report(fs, "enable");
    if sb.has_mmp() {
        read_clean(fs, "enable it")?;
        rep.previous_state = Some("clean");
        return match interval_given {
            Some(i) if i != sb.s_mmp_update_interval => Err(EditError::AlreadyEnabled {
                device,
                current: sb.s_mmp_update_interval,
                requested: i,
            }),
            _ => Ok(rep),
        };
    }
    let sector = fs.device().logical_block_size();
    if sector > geo.block_size {
        // e2fsprogs reads the MMP block with O_DIRECT, one block long: a short read on such a
        // device ("fix mmp tests on hard 4k devices"), so e2fsck would refuse to run at all.
        return Err(EditError::BlockSmallerThanSector {
            device,
            block_size: geo.block_size,
            sector,
        });
    }
    let mut gt = load_gdt(fs, &geo)?;

    // ext2fs_new_block3 with goal 0: the first zero bit from s_first_data_block.
    let mut found = None;
    for g in 0..geo.group_count {
        let d = gt.desc(g);
        if geo.desc_csum.enabled()
            && d.bg_flags & EXT2_BG_BLOCK_UNINIT != 0
            && d.bg_free_blocks_count == 0
        {
            // All metadata: nothing to find, and building its bitmap (which looks at every
            // group's descriptor) for each such group would make a full scan quadratic.
            continue;
        }
        let (bm, uninit) = load_bitmap(fs, &geo, &gt, g)?;
        if let Some(bit) = first_zero(&bm, geo.group_blocks(g) as usize) {
            found = Some((g, bit, bm, uninit));
            break;
        }
    }
    let (g, bit, mut bm, uninit) = found.ok_or_else(|| EditError::NoSpace {
        device: device.clone(),
    })?;
    let block = geo.group_first_block(g) + bit as u64;
    if block <= geo.first_data_block + geo.desc_blocks {
        return Err(inconsistent(fs, format!("the block bitmap of group 0 marks block {block} (superblock or descriptor table) free")));
    }
    check_free_count(fs, &geo, &gt, g, &bm)?;
    if sb.free_blocks_count == 0 {
        return Err(inconsistent(
            fs,
            "the superblock counts no free blocks, the bitmaps do".to_string(),
        ));
    }
    let bs = u64::from(geo.block_size);
    let seed = sb.mmp_csum_seed();
    let ci = check_interval_for(interval);
    let mut w = Writer::new(fs.device());

    // 1. The MMP block: a free block, so writing it first cannot hurt. Zero-filled as
    //    ext2fs_alloc_block does, with the CLEAN struct of ext2fs_mmp_reset.
    let mmp = MmpBlock::new(
        EXT4_MMP_SEQ_CLEAN,
        env.wall_time,
        &env.nodename,
        &env.bdevname,
        ci,
    );
    let mut buf = vec![0u8; geo.block_size as usize];
    buf[..MMP_STRUCT_SIZE].copy_from_slice(&mmp.encode(seed));
    w.write(format!("MMP block {block}"), block * bs, &buf)?;
    w.sync()?;

    // 2. The bitmap, before the descriptor that may declare it initialised.
    let mut d = gt.desc(g);
    set_bit(&mut bm, bit);
    w.write(
        format!("block bitmap of group {g}"),
        d.bg_block_bitmap * bs,
        &bm,
    )?;
    w.sync()?;

    // 3. The descriptor (ext2fs_block_alloc_stats2): free count, BLOCK_UNINIT, checksums.
    d.bg_free_blocks_count -= 1;
    d.bg_flags &= !EXT2_BG_BLOCK_UNINIT;
    write_group_desc(&mut w, &geo, &mut gt, g, d, &bm)?;

    // 4. The superblock: from here on the filesystem has MMP.
    let mut new_sb = sb.clone();
    new_sb.free_blocks_count -= 1;
    new_sb.s_feature_incompat |= feature::INCOMPAT_MMP;
    new_sb.s_mmp_block = block;
    new_sb.s_mmp_update_interval = interval;
    let primary = new_sb.encode();
    w.write(
        "primary superblock".to_string(),
        SUPERBLOCK_OFFSET,
        &primary,
    )?;
    w.sync()?;

    // 5. Backups, as ext2fs_flush rewrites them.
    rep.backup_groups = write_backups(&mut w, &geo, &primary, Some(&gt))?;
    rep.changed = true;
    rep.mmp_enabled = true;
    rep.mmp_block = block;
    rep.update_interval = interval;
    rep.check_interval = Some(ci);
    rep.group = Some(g);
    rep.group_was_block_uninit = uninit;
    rep.free_blocks_after = new_sb.free_blocks_count;
    rep.writes = w.done;
    Ok(rep)
}

// ---------------------------------------------------------------------------------------------
// Claim (disable, interval)

/// Replace the CLEAN block `clean` (as read) with a live claim and watch it; returns the claim's
/// bytes and how long it was watched.
fn claim<D: BlockIo>(
    fs: &MmpFs<D>,
    w: &mut Writer<'_, D>,
    env: &EditEnv,
    clock: &dyn Clock,
    settle: Settle,
    clean: &MmpBlock,
    progress: Progress<'_>,
) -> Result<([u8; MMP_STRUCT_SIZE], Duration), EditError> {
    let sb = fs.superblock();
    let block = sb.s_mmp_block;
    let claim = MmpBlock::new(
        env.claim_seq,
        env.wall_time,
        &env.nodename,
        &env.bdevname,
        clean.mmp_check_interval,
    );
    let enc = claim.encode(sb.mmp_csum_seed());
    verify_block(fs, &clean.encode_raw(), w, "before claiming it")?;
    w.write(
        format!(
            "MMP block {block} (claim, sequence {:#010x})",
            env.claim_seq
        ),
        sb.mmp_offset(),
        &enc,
    )?;
    w.sync()?;
    let opts = CheckOptions {
        poll: POLL,
        timeout: match settle {
            Settle::For(d) => Some(d),
            Settle::Full => None,
        },
        // The block watched is our own untagged claim.
        honor_fence_tag: false,
    };
    // check() watches a live sequence and reports any change at once.
    // check() reports progress against the kernel's full wait; with a shorter settle, report
    // against the settle time so that a countdown ends at zero.
    let mut shown = |elapsed: Duration, wait: Duration| {
        let total = opts.timeout.map_or(wait, |t| t.min(wait));
        progress(elapsed.min(total), total)
    };
    let r = check::check(fs, clock, opts, &mut shown)?;
    let ours = r.first.encode_raw() == enc;
    match r.verdict {
        Verdict::Undecided | Verdict::Safe(_) if ours => Ok((enc, r.elapsed)),
        Verdict::InUse { block: now } => Err(changed(fs, w, format!("now {}", who(&now)))),
        _ => Err(changed(fs, w, format!("now {}", who(&r.first)))),
    }
}

fn changed<D: BlockIo>(fs: &MmpFs<D>, w: &Writer<'_, D>, detail: String) -> EditError {
    let device = fs.device_name().to_string();
    let only_mmp = w.done.iter().all(|r| r.what.starts_with("MMP block"));
    EditError::Changed {
        block: fs.superblock().s_mmp_block,
        detail,
        written: if w.done.is_empty() {
            "nothing was written".to_string()
        } else if only_mmp {
            "only the MMP block was written, which its user keeps rewriting".to_string()
        } else {
            format!("stopped after writing {}", w.done.iter().map(|r| r.what.as_str()).collect::<Vec<_>>().join(", "))
        },
        next: format!("find the node that uses '{device}' (`mmp-tool status {device}`) and leave the filesystem to it"),
        device,
    }
}

/// Re-read the MMP block: it must still hold `expected`.
fn verify_block<D: BlockIo>(
    fs: &MmpFs<D>,
    expected: &[u8; MMP_STRUCT_SIZE],
    w: &Writer<'_, D>,
    when: &str,
) -> Result<(), EditError> {
    let now = read_mmp_bytes(fs)?;
    if &now == expected {
        return Ok(());
    }
    let detail = match MmpBlock::decode(&now) {
        Ok(b) => format!("{when}: now {}", who(&b)),
        Err(e) => format!("{when}: {e}"),
    };
    Err(changed(fs, w, detail))
}

fn mmp_required<D: BlockIo>(fs: &MmpFs<D>, action: &'static str) -> Result<(), EditError> {
    if fs.superblock().has_mmp() {
        Ok(())
    } else {
        Err(EditError::NotEnabled {
            device: fs.device_name().to_string(),
            action,
        })
    }
}

// ---------------------------------------------------------------------------------------------
// disable

/// Disable MMP: claim the CLEAN block, drop the feature from the superblock, zero the old block,
/// free it in the bitmap and descriptor, rewrite the backups. A filesystem without MMP is left
/// alone (`changed: false`).
pub fn disable<D: BlockIo>(
    fs: &MmpFs<D>,
    env: &EditEnv,
    clock: &dyn Clock,
    settle: Settle,
    progress: Progress<'_>,
) -> Result<EditReport, EditError> {
    let sb = fs.superblock();
    let mut rep = report(fs, "disable");
    if !sb.has_mmp() {
        return Ok(rep);
    }
    let geo = preflight(fs)?;
    let clean = read_clean(fs, "disable it")?;
    rep.previous_state = Some("clean");
    let block = sb.s_mmp_block;
    let mut gt = load_gdt(fs, &geo)?;
    let g = geo.group_of(block);
    let bit = (block - geo.group_first_block(g)) as usize;
    let mut d = gt.desc(g);
    if geo.desc_csum.enabled() && d.bg_flags & EXT2_BG_BLOCK_UNINIT != 0 {
        return Err(inconsistent(
            fs,
            format!("the MMP block {block} lies in group {g}, which is marked BLOCK_UNINIT"),
        ));
    }
    let (mut bm, _) = load_bitmap(fs, &geo, &gt, g)?;
    if !test_bit(&bm, bit) {
        return Err(inconsistent(
            fs,
            format!("the MMP block {block} is marked free in the block bitmap"),
        ));
    }
    check_free_count(fs, &geo, &gt, g, &bm)?;
    if d.bg_free_blocks_count >= d.max_free_blocks() {
        return Err(inconsistent(
            fs,
            format!("group {g}'s free block count is at its maximum"),
        ));
    }
    let bs = u64::from(geo.block_size);
    let mut w = Writer::new(fs.device());

    let (claim_raw, watched) = claim(fs, &mut w, env, clock, settle, &clean, progress)?;
    rep.watched_seconds = watched.as_secs_f64();
    verify_block(fs, &claim_raw, &w, "before writing the superblock")?;

    // 1. Superblock first: once it no longer points at the block, a crash can only leak it.
    let mut new_sb = sb.clone();
    new_sb.free_blocks_count += 1;
    new_sb.s_feature_incompat &= !feature::INCOMPAT_MMP;
    new_sb.s_mmp_block = 0;
    new_sb.s_mmp_update_interval = 0;
    let primary = new_sb.encode();
    w.write(
        "primary superblock".to_string(),
        SUPERBLOCK_OFFSET,
        &primary,
    )?;
    w.sync()?;

    // 2. Zero the old block while it is still allocated (nobody can have been given it yet):
    //    no stale MMP structure is left behind, and unlike tune2fs no FSCK sequence.
    w.write(
        format!("old MMP block {block} (zeroed)"),
        block * bs,
        &vec![0u8; geo.block_size as usize],
    )?;
    w.sync()?;

    // 3. + 4. Free it: bitmap, then descriptor.
    clear_bit(&mut bm, bit);
    w.write(
        format!("block bitmap of group {g}"),
        d.bg_block_bitmap * bs,
        &bm,
    )?;
    w.sync()?;
    d.bg_free_blocks_count += 1;
    write_group_desc(&mut w, &geo, &mut gt, g, d, &bm)?;

    // 5. Backups.
    rep.backup_groups = write_backups(&mut w, &geo, &primary, Some(&gt))?;
    rep.changed = true;
    rep.mmp_enabled = false;
    rep.update_interval = 0;
    rep.group = Some(g);
    rep.free_blocks_after = new_sb.free_blocks_count;
    rep.writes = w.done;
    Ok(rep)
}

// ---------------------------------------------------------------------------------------------
// interval

/// Set `s_mmp_update_interval` and the block's check interval (`max(interval, 5)`).
pub fn set_interval<D: BlockIo>(
    fs: &MmpFs<D>,
    interval: u16,
    env: &EditEnv,
    clock: &dyn Clock,
    settle: Settle,
    progress: Progress<'_>,
) -> Result<EditReport, EditError> {
    validate_interval(fs.device_name(), interval)?;
    let geo = preflight(fs)?;
    mmp_required(fs, "set its interval")?;
    let sb = fs.superblock();
    let clean = read_clean(fs, "change its interval")?;
    let mut rep = report(fs, "interval");
    rep.previous_state = Some("clean");
    let ci = check_interval_for(interval);
    rep.check_interval = Some(ci);
    if sb.s_mmp_update_interval == interval && clean.mmp_check_interval == ci {
        return Ok(rep);
    }
    let mut w = Writer::new(fs.device());
    let (claim_raw, watched) = claim(fs, &mut w, env, clock, settle, &clean, progress)?;
    rep.watched_seconds = watched.as_secs_f64();
    verify_block(fs, &claim_raw, &w, "before writing the superblock")?;

    let mut new_sb = sb.clone();
    new_sb.s_mmp_update_interval = interval;
    let primary = new_sb.encode();
    w.write(
        "primary superblock".to_string(),
        SUPERBLOCK_OFFSET,
        &primary,
    )?;
    w.sync()?;
    rep.backup_groups = write_backups(&mut w, &geo, &primary, None)?;

    // Release the claim with the new check interval.
    verify_block(fs, &claim_raw, &w, "before releasing the claim")?;
    let mmp = MmpBlock::new(
        EXT4_MMP_SEQ_CLEAN,
        env.wall_time,
        &env.nodename,
        &env.bdevname,
        ci,
    );
    w.write(
        format!("MMP block {} (CLEAN)", sb.s_mmp_block),
        sb.mmp_offset(),
        &mmp.encode(sb.mmp_csum_seed()),
    )?;
    w.sync()?;
    rep.changed = true;
    rep.update_interval = interval;
    rep.writes = w.done;
    Ok(rep)
}

// ---------------------------------------------------------------------------------------------
// clear

/// Reset a stuck MMP block (FSCK left by a killed fsck, an unknown sequence, garbage) to CLEAN,
/// like `tune2fs -f -E clear_mmp`, but first watch it for the kernel's full wait (based on the
/// superblock interval, and the block's check interval when the block is valid) and refuse if
/// it changes. `force` skips the watch. Only the MMP block is written, so features, the journal
/// state and the rest of the metadata do not matter (a killed e2fsck can leave both FSCK and
/// needs_recovery; this must work then). A valid CLEAN block is left alone.
pub fn clear<D: BlockIo>(
    fs: &MmpFs<D>,
    env: &EditEnv,
    clock: &dyn Clock,
    force: bool,
    progress: Progress<'_>,
) -> Result<EditReport, EditError> {
    mmp_required(fs, "clear its MMP block")?;
    let block = fs.require_mmp()?;
    let sb = fs.superblock();
    let seed = sb.mmp_csum_seed();
    let raw = read_mmp_bytes(fs)?;
    let blk = MmpBlock::decode(&raw).map_err(|source| Error::Mmp {
        device: fs.device_name().to_string(),
        block,
        source,
    })?;
    let state = state_of(&blk, seed);
    let mut rep = report(fs, "clear");
    rep.previous_state = Some(state);
    if state == "clean" {
        return Ok(rep);
    }
    // Trust the block's check interval only if the block is valid and it is sane; a garbage
    // block must not make us wait for hours. The superblock's interval is clamped likewise.
    let sb_interval = sb.s_mmp_update_interval.min(MAX_UPDATE_INTERVAL);
    let block_ci = if blk.verify(seed).is_ok() && blk.mmp_check_interval <= MAX_UPDATE_INTERVAL {
        blk.mmp_check_interval
    } else {
        0
    };
    let w = Writer::new(fs.device());
    if !force {
        let wait = wait_time(check_interval(sb_interval, block_ci));
        let start = clock.now();
        loop {
            let elapsed = clock.now().saturating_sub(start);
            progress(elapsed.min(wait), wait);
            if elapsed >= wait {
                rep.watched_seconds = elapsed.as_secs_f64();
                break;
            }
            clock.sleep(POLL.min(wait - elapsed));
            // Any change at all: whoever wrote the block is alive.
            verify_block(
                fs,
                &raw,
                &w,
                &format!(
                    "{:.1} s into the watch",
                    clock.now().saturating_sub(start).as_secs_f64()
                ),
            )?;
        }
    }
    verify_block(fs, &raw, &w, "just before writing")?;
    let mut w = w;
    let ci = check_interval_for(sb.s_mmp_update_interval);
    let mmp = MmpBlock::new(
        EXT4_MMP_SEQ_CLEAN,
        env.wall_time,
        &env.nodename,
        &env.bdevname,
        ci,
    );
    let mut buf = vec![0u8; sb.block_size() as usize];
    buf[..MMP_STRUCT_SIZE].copy_from_slice(&mmp.encode(seed));
    w.write(format!("MMP block {block} (CLEAN)"), sb.mmp_offset(), &buf)?;
    w.sync()?;
    rep.changed = true;
    rep.check_interval = Some(ci);
    rep.writes = w.done;
    Ok(rep)
}

#[cfg(test)]
mod tests;
