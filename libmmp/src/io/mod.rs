//! Device I/O: the one `BlockIo` trait with its block-device (O_DIRECT), file and memory
//! implementations, libblkid's view of a device, and the watchdog ioctls. All of libmmp's
//! `unsafe` code lives in its private `sys` module.

pub mod device;
pub mod probe;
mod sys;
pub mod watchdog;
