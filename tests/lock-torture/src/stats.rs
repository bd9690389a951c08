//! Latency histograms and error counters that can be merged across processes and hosts.
//!
//! Latencies go into a log-linear histogram (16 linear sub-buckets per power of two, so any
//! reported percentile is within 1/16 = 6.25 % of the true value). It has a fixed number of
//! buckets, so a worker that runs for hours uses the same memory as one that runs for a second,
//! and merging two histograms is adding their counts.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::{Deserialize, Serialize};

const SUB_BITS: u32 = 4;
const SUB: u64 = 1 << SUB_BITS;
/// Values below `SUB` get a bucket each; above, each power of two has `SUB` buckets.
const BUCKETS: usize = ((64 - SUB_BITS as usize) + 1) * SUB as usize;

/// Bucket index of a value (nanoseconds).
fn bucket_of(v: u64) -> usize {
    if v < SUB {
        return v as usize;
    }
    let exp = 63 - v.leading_zeros(); // >= SUB_BITS
    let sub = (v >> (exp - SUB_BITS)) & (SUB - 1);
    ((exp - SUB_BITS + 1) as usize) * SUB as usize + sub as usize
}

/// Smallest value that falls in bucket `i`.
fn bucket_low(i: usize) -> u64 {
    let i = i as u64;
    if i < SUB {
        return i;
    }
    let exp = i / SUB - 1 + u64::from(SUB_BITS);
    let sub = i % SUB;
    (1u64 << exp) | (sub << (exp - u64::from(SUB_BITS)))
}

/// Largest value that falls in bucket `i`.
fn bucket_high(i: usize) -> u64 {
    if i + 1 >= BUCKETS {
        u64::MAX
    } else {
        bucket_low(i + 1) - 1
    }
}

/// A mergeable latency histogram in nanoseconds.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Histogram {
    /// Sparse `(bucket, count)` pairs, ascending by bucket: compact on the wire.
    #[serde(with = "sparse")]
    counts: Vec<u64>,
    count: u64,
    /// Saturating: 2^64 ns is 584 years of summed latency.
    sum_ns: u64,
    min_ns: u64,
    max_ns: u64,
}

mod sparse {
    use super::BUCKETS;
    use serde::{Deserialize, Deserializer, Serialize, Serializer};

    pub fn serialize<S: Serializer>(counts: &[u64], s: S) -> Result<S::Ok, S::Error> {
        let pairs: Vec<(usize, u64)> = counts
            .iter()
            .copied()
            .enumerate()
            .filter(|&(_, c)| c != 0)
            .collect();
        pairs.serialize(s)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<u64>, D::Error> {
        let pairs: Vec<(usize, u64)> = Vec::deserialize(d)?;
        let mut counts = vec![0u64; BUCKETS];
        for (i, c) in pairs {
            let slot = counts.get_mut(i).ok_or_else(|| {
                serde::de::Error::custom(format!("histogram bucket {i} out of range"))
            })?;
            *slot = slot.saturating_add(c);
        }
        Ok(counts)
    }
}

impl Default for Histogram {
    fn default() -> Self {
        Histogram {
            counts: vec![0; BUCKETS],
            count: 0,
            sum_ns: 0,
            min_ns: u64::MAX,
            max_ns: 0,
        }
    }
}

impl Histogram {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn record_ns(&mut self, ns: u64) {
        self.counts[bucket_of(ns)] += 1;
        self.count += 1;
        self.sum_ns = self.sum_ns.saturating_add(ns);
        self.min_ns = self.min_ns.min(ns);
        self.max_ns = self.max_ns.max(ns);
    }

    pub fn record(&mut self, d: Duration) {
        self.record_ns(u64::try_from(d.as_nanos()).unwrap_or(u64::MAX));
    }

    pub fn merge(&mut self, other: &Histogram) {
        for (a, b) in self.counts.iter_mut().zip(&other.counts) {
            *a = a.saturating_add(*b);
        }
        self.count += other.count;
        self.sum_ns = self.sum_ns.saturating_add(other.sum_ns);
        self.min_ns = self.min_ns.min(other.min_ns);
        self.max_ns = self.max_ns.max(other.max_ns);
    }

    pub fn count(&self) -> u64 {
        self.count
    }

    /// The value at quantile `q` (0.0..=1.0), as the upper edge of its bucket clamped to the
    /// observed maximum; `None` when empty.
    pub fn quantile_ns(&self, q: f64) -> Option<u64> {
        if self.count == 0 {
            return None;
        }
        let q = q.clamp(0.0, 1.0);
        // Rank of the sample we want, 1-based: the smallest rank r with r/count >= q.
        let rank = ((q * self.count as f64).ceil() as u64).max(1);
        let mut seen = 0u64;
        for (i, &c) in self.counts.iter().enumerate() {
            seen += c;
            if seen >= rank {
                return Some(bucket_high(i).min(self.max_ns).max(self.min_ns));
            }
        }
        Some(self.max_ns)
    }

    pub fn summary(&self) -> LatencySummary {
        let us = |ns: Option<u64>| ns.map(|v| v as f64 / 1_000.0).unwrap_or(0.0);
        LatencySummary {
            count: self.count,
            mean_us: if self.count == 0 {
                0.0
            } else {
                (self.sum_ns as f64 / self.count as f64) / 1_000.0
            },
            min_us: if self.count == 0 {
                0.0
            } else {
                self.min_ns as f64 / 1_000.0
            },
            p50_us: us(self.quantile_ns(0.50)),
            p90_us: us(self.quantile_ns(0.90)),
            p99_us: us(self.quantile_ns(0.99)),
            p999_us: us(self.quantile_ns(0.999)),
            max_us: self.max_ns as f64 / 1_000.0,
        }
    }
}

/// Percentiles in microseconds, as printed in reports.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct LatencySummary {
    pub count: u64,
    pub mean_us: f64,
    pub min_us: f64,
    pub p50_us: f64,
    pub p90_us: f64,
    pub p99_us: f64,
    pub p999_us: f64,
    pub max_us: f64,
}

/// Errors by errno name ("ENOLCK" → 3), ordered for stable output.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct ErrnoCounts(pub BTreeMap<String, u64>);

impl ErrnoCounts {
    pub fn add(&mut self, name: &str, n: u64) {
        *self.0.entry(name.to_string()).or_insert(0) += n;
    }

    pub fn merge(&mut self, other: &ErrnoCounts) {
        for (k, v) in &other.0 {
            self.add(k, *v);
        }
    }

    pub fn total(&self) -> u64 {
        self.0.values().sum()
    }

    pub fn get(&self, name: &str) -> u64 {
        self.0.get(name).copied().unwrap_or(0)
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl std::fmt::Display for ErrnoCounts {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.0.is_empty() {
            return f.write_str("none");
        }
        let parts: Vec<String> = self.0.iter().map(|(k, v)| format!("{k}={v}")).collect();
        f.write_str(&parts.join(" "))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn buckets_are_contiguous_and_ordered() {
        for i in 0..BUCKETS - 1 {
            assert_eq!(
                bucket_high(i) + 1,
                bucket_low(i + 1),
                "gap after bucket {i}"
            );
            assert_eq!(bucket_of(bucket_low(i)), i);
            assert_eq!(bucket_of(bucket_high(i)), i);
        }
        assert_eq!(bucket_of(u64::MAX), BUCKETS - 1);
    }

    #[test]
    fn empty_histogram_has_no_quantiles() {
        let h = Histogram::new();
        assert_eq!(h.quantile_ns(0.5), None);
        let s = h.summary();
        assert_eq!(s.count, 0);
        assert_eq!(s.p99_us, 0.0);
        assert_eq!(s.min_us, 0.0);
    }

    #[test]
    fn percentiles_of_1_to_10000() {
        let mut h = Histogram::new();
        for v in 1..=10_000u64 {
            h.record_ns(v * 1_000); // 1 µs .. 10 ms
        }
        let s = h.summary();
        assert_eq!(s.count, 10_000);
        assert!((s.mean_us - 5_000.5).abs() < 1e-6, "mean {}", s.mean_us);
        assert_eq!(s.min_us, 1.0);
        assert_eq!(s.max_us, 10_000.0);
        for (got, want) in [
            (s.p50_us, 5_000.0),
            (s.p90_us, 9_000.0),
            (s.p99_us, 9_900.0),
        ] {
            assert!(
                got >= want && got <= want * 1.0625,
                "got {got}, want {want} (+6.25 %)"
            );
        }
    }

    #[test]
    fn single_sample_is_every_percentile() {
        let mut h = Histogram::new();
        h.record(Duration::from_micros(123));
        let s = h.summary();
        assert_eq!(
            (s.p50_us, s.p99_us, s.max_us, s.min_us),
            (123.0, 123.0, 123.0, 123.0)
        );
    }

    #[test]
    fn json_round_trip_is_sparse() {
        let mut h = Histogram::new();
        h.record_ns(5);
        h.record_ns(5);
        h.record_ns(1_000_000);
        let json = serde_json::to_string(&h).unwrap();
        assert!(json.len() < 200, "{json}");
        let back: Histogram = serde_json::from_str(&json).unwrap();
        assert_eq!(back, h);
    }

    #[test]
    fn out_of_range_bucket_is_rejected() {
        let bad = r#"{"counts":[[100000,1]],"count":1,"sum_ns":1,"min_ns":1,"max_ns":1}"#;
        assert!(serde_json::from_str::<Histogram>(bad).is_err());
    }

    #[test]
    fn errno_counts_merge_and_print() {
        let mut a = ErrnoCounts::default();
        a.add("EIO", 2);
        let mut b = ErrnoCounts::default();
        b.add("ENOLCK", 1);
        b.add("EIO", 1);
        a.merge(&b);
        assert_eq!(a.get("EIO"), 3);
        assert_eq!(a.total(), 4);
        assert_eq!(a.to_string(), "EIO=3 ENOLCK=1");
        assert_eq!(ErrnoCounts::default().to_string(), "none");
    }

    proptest! {
        #[test]
        fn merge_equals_recording_everything_in_one(xs in prop::collection::vec(any::<u64>(), 0..200),
                                                    ys in prop::collection::vec(any::<u64>(), 0..200)) {
            let mut a = Histogram::new();
            let mut b = Histogram::new();
            let mut all = Histogram::new();
            for &x in &xs { a.record_ns(x); all.record_ns(x); }
            for &y in &ys { b.record_ns(y); all.record_ns(y); }
            a.merge(&b);
            prop_assert_eq!(a, all);
        }

        #[test]
        fn quantile_is_within_one_bucket_of_exact(mut xs in prop::collection::vec(1u64..1_000_000_000_000, 1..500),
                                                  q in 0.0f64..=1.0) {
            let mut h = Histogram::new();
            for &x in &xs { h.record_ns(x); }
            xs.sort_unstable();
            let rank = ((q * xs.len() as f64).ceil() as usize).max(1);
            let exact = xs[rank - 1];
            let got = h.quantile_ns(q).unwrap();
            prop_assert!(got >= exact, "got {} < exact {}", got, exact);
            prop_assert!(got as f64 <= exact as f64 * (1.0 + 1.0 / SUB as f64) + 1.0, "got {} exact {}", got, exact);
        }
    }
}
