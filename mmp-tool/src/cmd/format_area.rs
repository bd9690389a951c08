//! `mmp-tool format-area`: make an MMP area on a small dedicated device, partition or file, to
//! protect a filesystem that has no MMP of its own (XFS, btrfs) or a raw device.

use super::local::{local_mmpd, run_dir_or_default};
use crate::cli::FormatAreaArgs;
use crate::error::Error;
use crate::exit::Outcome;
use crate::output::print_result;
use libmmp::fs::MmpFs;
use libmmp::host::identity;
use libmmp::io::device::{Access, Device};
use libmmp::io::BlockIo;
use libmmp::ondisk::area::{self, AREA_SIZE};
use libmmp::ondisk::mmp::SeqClass;
use libmmp::protocol::claim::bdevname_of;
use libmmp::protocol::clock::wall_now;
use serde::Serialize;
use std::io::Read;

#[derive(Serialize)]
struct FormatJson {
    device: String,
    formatted: bool,
    result: &'static str,
    message: String,
    uuid: Option<String>,
    update_interval: u16,
}

fn random_uuid() -> std::io::Result<[u8; 16]> {
    let mut u = [0u8; 16];
    std::fs::File::open("/dev/urandom")?.read_exact(&mut u)?;
    // RFC 4122 version 4, variant 1.
    u[6] = (u[6] & 0x0F) | 0x40;
    u[8] = (u[8] & 0x3F) | 0x80;
    Ok(u)
}

/// Why `format-area` stops before writing: the outcome, `result` and message.
type Refusal = (Outcome, &'static str, String);

pub fn run(args: &FormatAreaArgs) -> Result<Outcome, Error> {
    let path = &args.area;
    let dev = path.display().to_string();
    if !path.exists() {
        std::fs::File::create(path)
            .and_then(|f| f.set_len(AREA_SIZE as u64))
            .map_err(|e| io_error(&dev, "creation of the area file", e))?;
    }
    let run_dir = run_dir_or_default(args.run_dir.as_deref());
    if let Some(msg) = local_mmpd(&run_dir, path) {
        return report(args, Outcome::Refused, "held_by_local_mmpd", msg, None);
    }
    let device = Device::open(path, Access::ReadWrite).map_err(libmmp::Error::from)?;
    if let Some((outcome, result, msg)) = refusal(args, &device)? {
        return report(args, outcome, result, msg, None);
    }
    let uuid = random_uuid().map_err(Error::Uuid)?;
    let img = area::area_image(
        uuid,
        args.interval,
        wall_now(),
        &identity::nodename(),
        &bdevname_of(&dev),
    );
    device
        .write_at(0, &img)
        .map_err(|e| io_error(&dev, "write of the MMP area", e))?;
    device
        .sync()
        .map_err(|e| io_error(&dev, "fdatasync of the MMP area", e))?;
    drop(device);
    // Read it back through a fresh descriptor.
    let fs = MmpFs::open(Device::open(path, Access::ReadOnly).map_err(libmmp::Error::from)?)?;
    let blk = fs.read_mmp()?;
    let uuid_s = fs.superblock().uuid_string();
    let msg = format!(
        "formatted an MMP area on '{}' (uuid {uuid_s}, update interval {} s, MMP block {}, {}). \
         Hold it with `mmpd {}` (or an mmpd@.service configuration) and use the filesystem it protects \
         only while mmpd holds it: bind the mount to mmpd@NAME.service with BindsTo= and After=.",
        path.display(),
        args.interval,
        fs.superblock().s_mmp_block,
        blk.seq_class().name(),
        path.display()
    );
    report(args, Outcome::Done, "formatted", msg, Some(uuid_s))
}

/// Why the area must not be written, if it must not: too small, sectors too large, or what is
/// there now. Never overwrite a live area, nor (without --force) anything else.
fn refusal(args: &FormatAreaArgs, device: &Device) -> Result<Option<Refusal>, Error> {
    let dev = args.area.display().to_string();
    if device.size() < AREA_SIZE as u64 {
        let msg = format!(
            "{dev}: {} bytes; an MMP area needs {AREA_SIZE}",
            device.size()
        );
        return Ok(Some((Outcome::Failed, "too_small", msg)));
    }
    if device.logical_block_size() > area::AREA_BLOCK_SIZE {
        let msg = format!(
            "{dev}: {}-byte sectors; an MMP area uses {}-byte blocks",
            device.logical_block_size(),
            area::AREA_BLOCK_SIZE
        );
        return Ok(Some((Outcome::Failed, "sector_too_large", msg)));
    }
    match MmpFs::open(device) {
        Ok(fs) if area::is_area(fs.superblock()) => {
            let (blk, _) = fs.read_mmp_raw()?;
            if blk.seq_class() != SeqClass::Clean && !args.force {
                let msg = format!(
                    "{dev}: already an MMP area, and its block is {} (sequence {:#010x}, node '{}'): it may be held by a node. Not reformatting; check with `mmp-tool check {dev}`, or pass --force",
                    blk.seq_class().name(),
                    blk.mmp_seq,
                    blk.nodename()
                );
                return Ok(Some((Outcome::Refused, "area_not_clean", msg)));
            }
        }
        Ok(_) if !args.force => {
            let msg = format!("{dev}: holds an ext2/3/4 filesystem; an ext4 filesystem has MMP of its own (`mmp-tool enable`). Not overwriting it without --force");
            return Ok(Some((Outcome::Failed, "ext4_found", msg)));
        }
        Err(_) if !args.force => {
            if let Some(t) = libmmp::io::probe::identify(&args.area).describe() {
                let msg = format!("{dev}: libblkid sees {t} on it; an MMP area needs a device of its own. Not overwriting it without --force");
                return Ok(Some((Outcome::Failed, "signature_found", msg)));
            }
        }
        _ => {}
    }
    Ok(None)
}

fn io_error(dev: &str, op: &'static str, source: std::io::Error) -> Error {
    Error::Mmp(libmmp::Error::Io {
        device: dev.to_string(),
        op,
        offset: 0,
        source,
    })
}

fn report(
    args: &FormatAreaArgs,
    outcome: Outcome,
    result: &'static str,
    message: String,
    uuid: Option<String>,
) -> Result<Outcome, Error> {
    let json = FormatJson {
        device: args.area.display().to_string(),
        formatted: outcome == Outcome::Done,
        result,
        message,
        uuid,
        update_interval: args.interval,
    };
    print_result(args.json, &json, json.formatted, &json.message)?;
    Ok(outcome)
}
