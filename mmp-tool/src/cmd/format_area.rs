//! `mmp-tool format-area`: make an MMP area on a small dedicated device, partition or file, to
//! protect a filesystem that has no MMP of its own (XFS, btrfs) or a raw device.

use crate::cmd::claim::local_mmpd;
use crate::common::{print_json, print_out};
use crate::exit::{self, Outcome, ToolError};
use clap::Args;
use libmmp::fs::MmpFs;
use libmmp::host::identity;
use libmmp::host::run_dir;
use libmmp::io::device::{Access, BlockIo, Device};
use libmmp::ondisk::area::{self, AREA_SIZE};
use libmmp::ondisk::mmp::SeqClass;
use libmmp::protocol::claim::bdevname_of;
use libmmp::protocol::clock::wall_now;
use libmmp::Error;
use serde::Serialize;
use std::io::Read;
use std::path::PathBuf;

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

pub fn run(args: &FormatAreaArgs) -> Outcome {
    let path = &args.area;
    let dev = path.display().to_string();
    let done = |code: u8, result: &'static str, message: String, uuid: Option<String>| -> Outcome {
        if args.json {
            print_json(&FormatJson {
                device: dev.clone(),
                formatted: code == exit::OK,
                result,
                message,
                uuid,
                update_interval: args.interval,
            })?;
        } else if code == exit::OK {
            print_out(&format!("mmp-tool: {message}\n"))?;
        } else {
            eprintln!("mmp-tool: {message}");
        }
        Ok(code)
    };
    let io_err = |op: &'static str, source: std::io::Error| {
        ToolError::Mmp(Error::Io {
            device: dev.clone(),
            op,
            offset: 0,
            source,
        })
    };
    if !path.exists() {
        std::fs::File::create(path)
            .and_then(|f| f.set_len(AREA_SIZE as u64))
            .map_err(|e| io_err("creation of the area file", e))?;
    }
    let run_dir = args
        .run_dir
        .clone()
        .unwrap_or_else(run_dir::run_dir_from_env);
    if let Some(msg) = local_mmpd(&run_dir, path) {
        return done(exit::UNSAFE, "held_by_local_mmpd", msg, None);
    }
    let device = Device::open(path, Access::ReadWrite).map_err(Error::from)?;
    if device.size() < AREA_SIZE as u64 {
        return done(
            exit::ERROR,
            "too_small",
            format!(
                "{dev}: {} bytes; an MMP area needs {AREA_SIZE}",
                device.size()
            ),
            None,
        );
    }
    if device.logical_block_size() > area::AREA_BLOCK_SIZE {
        return done(
            exit::ERROR,
            "sector_too_large",
            format!(
                "{dev}: {}-byte sectors; an MMP area uses {}-byte blocks",
                device.logical_block_size(),
                area::AREA_BLOCK_SIZE
            ),
            None,
        );
    }
    // What is there now? Never overwrite a live area, nor (without --force) anything else.
    match MmpFs::open(&device) {
        Ok(fs) if area::is_area(fs.superblock()) => {
            let (blk, _) = fs.read_mmp_raw()?;
            if blk.seq_class() != SeqClass::Clean && !args.force {
                return done(
                    exit::UNSAFE,
                    "area_not_clean",
                    format!(
                        "{dev}: already an MMP area, and its block is {} (sequence {:#010x}, node '{}'): it may be held by a node. Not reformatting; check with `mmp-tool check {dev}`, or pass --force",
                        blk.seq_class().name(),
                        blk.mmp_seq,
                        blk.nodename()
                    ),
                    None,
                );
            }
        }
        Ok(_) if !args.force => {
            return done(
                exit::ERROR,
                "ext4_found",
                format!("{dev}: holds an ext2/3/4 filesystem; an ext4 filesystem has MMP of its own (`mmp-tool enable`). Not overwriting it without --force"),
                None,
            );
        }
        Err(_) if !args.force => {
            if let Some(t) = libmmp::io::probe::identify(path).describe() {
                return done(
                    exit::ERROR,
                    "signature_found",
                    format!("{dev}: libblkid sees {t} on it; an MMP area needs a device of its own. Not overwriting it without --force"),
                    None,
                );
            }
        }
        _ => {}
    }
    let uuid = random_uuid().map_err(ToolError::Output)?;
    let img = area::area_image(
        uuid,
        args.interval,
        wall_now(),
        &identity::nodename(),
        &bdevname_of(&dev),
    );
    device
        .write_at(0, &img)
        .map_err(|e| io_err("write of the MMP area", e))?;
    device
        .sync()
        .map_err(|e| io_err("fdatasync of the MMP area", e))?;
    drop(device);
    // Read it back through a fresh descriptor.
    let fs = MmpFs::open(Device::open(path, Access::ReadOnly).map_err(Error::from)?)?;
    let blk = fs.read_mmp()?;
    let uuid_s = fs.superblock().uuid_string();
    done(
        exit::OK,
        "formatted",
        format!(
            "formatted an MMP area on '{}' (uuid {uuid_s}, update interval {} s, MMP block {}, {}). \
             Hold it with `mmpd {}` (or an mmpd@.service configuration) and use the filesystem it protects \
             only while mmpd holds it: bind the mount to mmpd@NAME.service with BindsTo= and After=.",
            path.display(),
            args.interval,
            fs.superblock().s_mmp_block,
            blk.seq_class().name(),
            path.display()
        ),
        Some(uuid_s),
    )
}
