//! Test doubles for the protocol: a fake clock and a scripted device. Compiled for libmmp's
//! own tests, and for other crates' tests through the `testing` feature, which only
//! dev-dependencies may enable (a shipped binary must never carry a fake).

use crate::io::{BlockIo, MemDevice};
use crate::ondisk::mmp::MmpBlock;
use crate::protocol::clock::Clock;
use std::cell::{Cell, RefCell};
use std::io;
use std::time::Duration;

/// A fake clock: sleeping advances time at once, so a claim's 11 s wait takes no time.
#[derive(Debug, Default)]
pub struct FakeClock {
    pub t: Cell<Duration>,
}

impl Clock for FakeClock {
    fn now(&self) -> Duration {
        self.t.get()
    }
    fn sleep(&self, d: Duration) {
        self.t.set(self.t.get() + d);
    }
}

/// What another (simulated) node writes into the MMP block: given the fake time, the block
/// it holds then, or `None` to leave the bytes as they are.
pub type OtherWriter<'a> = Box<dyn Fn(Duration) -> Option<MmpBlock> + 'a>;

/// An in-memory device whose MMP block another (simulated) node writes as the fake clock
/// advances: before each read of the MMP block, [`ScriptedDevice::other`] may store a block.
/// Reads and writes can be made to fail, writes to take time, and every write is recorded.
pub struct ScriptedDevice<'a> {
    pub inner: MemDevice,
    pub clock: &'a FakeClock,
    pub other: OtherWriter<'a>,
    /// Byte offset of the MMP block.
    pub mmp_offset: u64,
    /// The checksum seed the other node encodes with (`None` without metadata_csum).
    pub seed: Option<u32>,
    pub fail_writes: Cell<bool>,
    pub fail_reads: Cell<bool>,
    /// Each write takes this long (on the fake clock).
    pub write_delay: Cell<Duration>,
    /// Every write: when it ended and the sequence it carried.
    pub writes: RefCell<Vec<(Duration, u32)>>,
}

impl<'a> ScriptedDevice<'a> {
    pub fn new(
        inner: MemDevice,
        mmp_offset: u64,
        seed: Option<u32>,
        clock: &'a FakeClock,
        other: impl Fn(Duration) -> Option<MmpBlock> + 'a,
    ) -> Self {
        ScriptedDevice {
            inner,
            clock,
            other: Box::new(other),
            mmp_offset,
            seed,
            fail_writes: Cell::new(false),
            fail_reads: Cell::new(false),
            write_delay: Cell::new(Duration::ZERO),
            writes: RefCell::new(Vec::new()),
        }
    }

    /// The MMP block as it is on the device now.
    ///
    /// # Panics
    /// If it does not decode (a test that corrupts it reads the bytes instead).
    pub fn current(&self) -> MmpBlock {
        let d = self.inner.snapshot();
        let off = usize::try_from(self.mmp_offset).expect("offset fits memory");
        MmpBlock::decode(&d[off..off + 1024]).expect("the MMP block decodes")
    }
}

impl BlockIo for ScriptedDevice<'_> {
    fn read_at(&self, offset: u64, buf: &mut [u8]) -> io::Result<()> {
        if offset == self.mmp_offset {
            if self.fail_reads.get() {
                return Err(io::Error::other("injected read error"));
            }
            if let Some(b) = (self.other)(self.clock.now()) {
                self.inner.write_at(self.mmp_offset, &b.encode(self.seed))?;
            }
        }
        self.inner.read_at(offset, buf)
    }
    fn write_at(&self, offset: u64, buf: &[u8]) -> io::Result<()> {
        if self.fail_writes.get() {
            return Err(io::Error::other("injected write error"));
        }
        let seq = MmpBlock::decode(buf).map(|b| b.mmp_seq).unwrap_or(0);
        self.clock.sleep(self.write_delay.get());
        self.writes.borrow_mut().push((self.clock.now(), seq));
        self.inner.write_at(offset, buf)
    }
    fn sync(&self) -> io::Result<()> {
        Ok(())
    }
    fn size(&self) -> u64 {
        self.inner.size()
    }
    fn logical_block_size(&self) -> u32 {
        512
    }
    fn name(&self) -> &str {
        "scripted"
    }
}
