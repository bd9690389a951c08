//! The ordered writer: every write recorded, every step ended with `fdatasync`, so the device
//! sees the steps in the order the module comment gives and a failure can say what was written.

use super::{EditError, WriteRecord};
use crate::io::BlockIo;
use crate::ondisk::geometry::Geometry;
use crate::ondisk::group_desc::{GroupDesc, GroupTable};
use crate::ondisk::superblock::backup_superblock;
use crate::ondisk::superblock::{SUPERBLOCK_OFFSET, SUPERBLOCK_SIZE};
use std::io;

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
pub(super) struct Writer<'a, D: BlockIo> {
    dev: &'a D,
    pub(super) done: Vec<WriteRecord>,
}

impl<'a, D: BlockIo> Writer<'a, D> {
    pub(super) fn new(dev: &'a D) -> Self {
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

    pub(super) fn write(
        &mut self,
        what: String,
        offset: u64,
        data: &[u8],
    ) -> Result<(), EditError> {
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

    /// The step that commits an edit in the primary superblock: write it, then `fdatasync`.
    pub(super) fn write_primary_superblock(&mut self, primary: &[u8]) -> Result<(), EditError> {
        self.write("primary superblock".to_string(), SUPERBLOCK_OFFSET, primary)?;
        self.sync()
    }

    /// End of a step: `fdatasync`, so the next step cannot reach the device first.
    pub(super) fn sync(&mut self) -> Result<(), EditError> {
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
pub(super) fn write_group_desc<D: BlockIo>(
    w: &mut Writer<'_, D>,
    geo: &Geometry,
    gt: &mut GroupTable,
    g: u32,
    mut d: GroupDesc,
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

pub(super) fn write_backups<D: BlockIo>(
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
