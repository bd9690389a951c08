//! The in-memory [`BlockIo`]: every parser, protocol and fuzz test runs on it without a device.

use super::{eof, BlockIo};
use std::io;
use std::sync::Mutex;

/// An in-memory device for tests and fuzzing. Interior mutability so it can be shared by
/// reference between a simulated writer and a reader.
#[derive(Debug)]
pub struct MemDevice {
    data: Mutex<Vec<u8>>,
    name: String,
}

impl MemDevice {
    pub fn new(name: &str, data: Vec<u8>) -> Self {
        MemDevice {
            data: Mutex::new(data),
            name: name.to_string(),
        }
    }

    /// A copy of the current contents.
    pub fn snapshot(&self) -> Vec<u8> {
        self.lock().clone()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<u8>> {
        // A poisoned lock only means a test thread panicked; the bytes are still valid.
        self.data.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl BlockIo for MemDevice {
    fn read_at(&self, offset: u64, buf: &mut [u8]) -> io::Result<()> {
        let d = self.lock();
        let start = usize::try_from(offset)
            .ok()
            .filter(|s| s.checked_add(buf.len()).is_some_and(|e| e <= d.len()));
        match start {
            Some(s) => {
                buf.copy_from_slice(&d[s..s + buf.len()]);
                Ok(())
            }
            None => Err(eof(&self.name, offset, buf.len(), d.len() as u64)),
        }
    }

    fn write_at(&self, offset: u64, buf: &[u8]) -> io::Result<()> {
        let mut d = self.lock();
        let start = usize::try_from(offset)
            .ok()
            .filter(|s| s.checked_add(buf.len()).is_some_and(|e| e <= d.len()));
        match start {
            Some(s) => {
                d[s..s + buf.len()].copy_from_slice(buf);
                Ok(())
            }
            None => Err(io::Error::new(
                io::ErrorKind::WriteZero,
                format!("{}: write past the end at {offset}", self.name),
            )),
        }
    }

    fn sync(&self) -> io::Result<()> {
        Ok(())
    }

    fn size(&self) -> u64 {
        self.lock().len() as u64
    }

    fn logical_block_size(&self) -> u32 {
        512
    }

    fn name(&self) -> &str {
        &self.name
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mem_device_bounds() {
        let d = MemDevice::new("mem", vec![0u8; 4096]);
        let mut buf = [0u8; 16];
        assert!(d.read_at(4090, &mut buf).is_err());
        assert!(d.read_at(u64::MAX, &mut buf).is_err());
        d.write_at(100, &[1, 2, 3]).unwrap();
        d.read_at(100, &mut buf[..3]).unwrap();
        assert_eq!(&buf[..3], &[1, 2, 3]);
        assert!(d.write_at(4095, &[1, 2]).is_err());
    }
}
