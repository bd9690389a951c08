//! The MMP block as another node sees it and writes it, through libmmp.

use libmmp::fs::MmpFs;
use libmmp::io::device::{Access, Device};
use libmmp::ondisk::mmp::MmpBlock;
use std::path::Path;

/// The MMP block as it is now.
pub fn read_block(dev: &Path) -> MmpBlock {
    let fs = MmpFs::open(Device::open(dev, Access::ReadOnly).unwrap()).unwrap();
    fs.read_mmp_raw().unwrap().0
}

/// Another node's write: a block with a foreign sequence and node name, through `dev`.
pub fn write_foreign(dev: &Path, seq: u32, node: &str) {
    let fs = MmpFs::open(Device::open(dev, Access::ReadWrite).unwrap()).unwrap();
    fs.write_mmp_synced(&MmpBlock::new(seq, 0, node, "intruder", 5))
        .unwrap();
}
