//! Unit tests of the notify steps that need no network.

use super::plan::name_variants;
use super::send::Bucket;
use std::time::{Duration, Instant};

#[test]
fn short_name_variants() {
    assert_eq!(
        name_variants("nfs1.example.com", true),
        vec!["nfs1.example.com", "nfs1"]
    );
    assert_eq!(
        name_variants("nfs1.example.com", false),
        vec!["nfs1.example.com"]
    );
    assert_eq!(name_variants("nfs1", true), vec!["nfs1"]);
    assert_eq!(name_variants("10.0.0.5", true), vec!["10.0.0.5"]);
    assert_eq!(name_variants(".x", true), vec![".x"]);
}

#[test]
fn bucket_limits_rate() {
    let t0 = Instant::now();
    let mut b = Bucket::new(100, t0);
    let mut n = 0;
    while b.take() {
        n += 1;
    }
    assert_eq!(n, 5, "burst is rate/20");
    b.refill(t0 + Duration::from_millis(100));
    let mut m = 0;
    while b.take() {
        m += 1;
    }
    assert_eq!(m, 5, "refill is capped at the burst");
    assert!(b.next_token_in() > Duration::ZERO);
}
