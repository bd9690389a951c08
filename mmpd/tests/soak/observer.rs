//! Another node's view of every held device: its MMP block read through libmmp (O_DIRECT on a
//! block device) every [`POLL`], and for each device the gaps between sequence changes, two
//! ways:
//! - *unchanged*: from the end of the first read that saw a sequence to the start of the last
//!   read that still saw it. The block certainly held that sequence all that time, so this is a
//!   lower bound of the real gap, and exactly what a checker judges ("unchanged for 11 s: dead").
//!   An observer that is itself descheduled sees less, never more. The assertions use it.
//! - *between sightings*: between the ends of the reads that first saw two sequences: the real
//!   gap plus up to one observer pass (the longest pass is reported), for the distribution.
//!
//! One observer thread reads at most [`SHARD`] devices, one after the other.

use libmmp::fs::{ChecksumStatus, MmpFs};
use libmmp::io::device::{Access, Device};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

/// How often every device is read.
pub const POLL: Duration = Duration::from_millis(250);
/// Histogram of gaps: 10 ms buckets up to 60 s (longer ones land in the last bucket).
const BUCKET_MS: u128 = 10;
const BUCKETS: usize = 6000;
/// Devices per observer thread.
const SHARD: usize = 20;
/// How many bad reads are described in the failure message.
const KEEP_BAD: usize = 5;

/// One device being watched.
struct Watch {
    fs: MmpFs<Device>,
    seq: u32,
    /// End of the first read that saw `seq`.
    first_end: Instant,
    /// Start of the last read that saw `seq`.
    last_start: Instant,
    max_unchanged: Duration,
}

/// Gaps in 10 ms buckets.
pub struct Hist(Vec<u64>);

/// What the observer saw.
pub struct Gaps {
    /// Per device: its name and its longest *unchanged* time, including the one still open at
    /// the end.
    pub per_device: Vec<(String, Duration)>,
    pub unchanged: Hist,
    pub between: Hist,
    pub reads: u64,
    /// Reads that failed, or saw a block that is not ours or has a bad checksum.
    pub bad: u64,
    pub bad_examples: Vec<String>,
    /// The longest pass over every device of one thread (reads only, not the sleep).
    pub max_pass: Duration,
}

impl Watch {
    fn open(dev: &Path) -> Self {
        let fs = MmpFs::open_path(dev, Access::ReadOnly)
            .unwrap_or_else(|e| panic!("observer: open {}: {e}", dev.display()));
        let seq = fs.read_mmp_raw().expect("observer: first read").0.mmp_seq;
        let now = Instant::now();
        Watch {
            fs,
            seq,
            first_end: now,
            last_start: now,
            max_unchanged: Duration::ZERO,
        }
    }

    /// Read the block once; a new sequence closes a gap.
    fn poll(&mut self, node: &str, gaps: &mut Gaps) {
        gaps.reads += 1;
        let start = Instant::now();
        let (block, csum) = match self.fs.read_mmp_raw() {
            Ok(r) => r,
            Err(e) => return gaps.bad_read(format!("{e}")),
        };
        if block.nodename() != node || matches!(csum, ChecksumStatus::Invalid { .. }) {
            let name = self.fs.device_name();
            let what = format!("{name}: node {:?}, {csum:?}", block.nodename());
            return gaps.bad_read(what);
        }
        if block.mmp_seq == self.seq {
            self.last_start = start;
            return;
        }
        let end = Instant::now();
        let unchanged = self.unchanged();
        self.max_unchanged = self.max_unchanged.max(unchanged);
        gaps.unchanged.record(unchanged);
        gaps.between.record(end - self.first_end);
        (self.seq, self.first_end, self.last_start) = (block.mmp_seq, end, end);
    }

    fn unchanged(&self) -> Duration {
        self.last_start.saturating_duration_since(self.first_end)
    }

    /// The device's longest unchanged time, counting the one still open now.
    fn finish(self) -> (String, Duration) {
        let longest = self.max_unchanged.max(self.unchanged());
        (self.fs.device_name().to_string(), longest)
    }
}

impl Hist {
    fn new() -> Self {
        Hist(vec![0; BUCKETS])
    }

    fn record(&mut self, gap: Duration) {
        let b = (gap.as_millis() / BUCKET_MS).min(BUCKETS as u128 - 1) as usize;
        self.0[b] += 1;
    }

    fn add(&mut self, o: &Hist) {
        self.0.iter_mut().zip(&o.0).for_each(|(a, b)| *a += b);
    }

    pub fn count(&self) -> u64 {
        self.0.iter().sum()
    }

    /// The gap `q` (0..1) of all gaps are at most, to the bucket's upper edge.
    pub fn quantile(&self, q: f64) -> Duration {
        let want = ((self.count() as f64 * q).ceil() as u64).max(1);
        let mut seen = 0;
        for (i, n) in self.0.iter().enumerate() {
            seen += n;
            if seen >= want {
                return Duration::from_millis((i as u64 + 1) * BUCKET_MS as u64);
            }
        }
        Duration::ZERO
    }

    /// How many gaps were longer than `limit` (to the bucket).
    pub fn longer_than(&self, limit: Duration) -> u64 {
        let from = (limit.as_millis() / BUCKET_MS) as usize + 1;
        self.0.iter().skip(from).sum()
    }
}

impl Gaps {
    fn new() -> Self {
        Gaps {
            per_device: Vec::new(),
            unchanged: Hist::new(),
            between: Hist::new(),
            reads: 0,
            bad: 0,
            bad_examples: Vec::new(),
            max_pass: Duration::ZERO,
        }
    }

    fn merge(mut self, o: Gaps) -> Gaps {
        self.per_device.extend(o.per_device);
        self.unchanged.add(&o.unchanged);
        self.between.add(&o.between);
        self.reads += o.reads;
        self.bad += o.bad;
        self.bad_examples.extend(o.bad_examples);
        self.bad_examples.truncate(KEEP_BAD);
        self.max_pass = self.max_pass.max(o.max_pass);
        self
    }

    fn bad_read(&mut self, what: String) {
        self.bad += 1;
        if self.bad_examples.len() < KEEP_BAD {
            self.bad_examples.push(what);
        }
    }

    /// The device with the longest gap.
    pub fn worst(&self) -> (String, Duration) {
        self.per_device
            .iter()
            .max_by_key(|(_, g)| *g)
            .cloned()
            .unwrap_or_default()
    }

    /// Devices whose longest unchanged time is longer than `limit`.
    pub fn devices_over(&self, limit: Duration) -> Vec<&(String, Duration)> {
        self.per_device.iter().filter(|(_, g)| *g > limit).collect()
    }
}

/// Watch `devs` (written by `node`) until `stop` is set: one thread per [`SHARD`] devices, so
/// that a pass stays near [`POLL`] even when every read waits behind the load.
pub fn observe(devs: &[PathBuf], node: &str, stop: &AtomicBool) -> Gaps {
    std::thread::scope(|sc| {
        let shards: Vec<_> = devs
            .chunks(SHARD)
            .map(|c| sc.spawn(move || observe_shard(c, node, stop)))
            .collect();
        shards
            .into_iter()
            .map(|h| h.join().expect("observer thread"))
            .fold(Gaps::new(), Gaps::merge)
    })
}

fn observe_shard(devs: &[PathBuf], node: &str, stop: &AtomicBool) -> Gaps {
    let mut watches: Vec<Watch> = devs.iter().map(|d| Watch::open(d)).collect();
    let mut gaps = Gaps::new();
    let mut next = Instant::now();
    while !stop.load(Ordering::Relaxed) {
        let t0 = Instant::now();
        for w in &mut watches {
            w.poll(node, &mut gaps);
        }
        gaps.max_pass = gaps.max_pass.max(t0.elapsed());
        next = (next + POLL).max(Instant::now());
        std::thread::sleep(next.saturating_duration_since(Instant::now()));
    }
    gaps.per_device = watches.into_iter().map(Watch::finish).collect();
    gaps
}
