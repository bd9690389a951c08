use std::path::Path;

use super::cases::r;
use super::report::{Status, SuiteReport, TestResult};
use super::{same_bytes, test_ids, MAXEOF};

#[test]
fn ranges_ending_at_offset_max_are_the_same_bytes() {
    assert!(same_bytes(r(MAXEOF, 1), r(MAXEOF, 0)));
    assert!(same_bytes(r(5, 0), r(5, MAXEOF - 4)));
    assert!(!same_bytes(r(0, 1), r(0, 0)));
    assert!(!same_bytes(r(0, 3), r(1, 2)));
}

#[test]
fn ids_are_unique() {
    let mut ids = test_ids();
    let n = ids.len();
    ids.sort_unstable();
    ids.dedup();
    assert_eq!(ids.len(), n);
}

#[test]
fn report_counts_and_verdict() {
    let t = |id: &str, status| TestResult {
        id: id.into(),
        name: "n".into(),
        status,
        errnos: vec!["EAGAIN".into()],
        detail: "why".into(),
        duration_ms: 1,
    };
    let rep = SuiteReport::new(
        Path::new("/d"),
        "tmpfs",
        "local",
        vec![t("a", Status::Pass), t("b", Status::Skip)],
    );
    assert!(rep.passed());
    assert_eq!((rep.passed, rep.failed, rep.skipped), (1, 0, 1));
    let rep = SuiteReport::new(
        Path::new("/d"),
        "tmpfs",
        "local",
        vec![t("a", Status::Pass), t("b", Status::Fail)],
    );
    assert!(!rep.passed());
    assert_eq!(rep.verdict, "fail");
    let text = rep.render_text();
    assert!(text.contains("FAIL b"), "{text}");
    assert!(text.contains("[errno seen: EAGAIN]"), "{text}");
    assert!(text.contains("1 passed, 1 failed, 0 skipped"), "{text}");
}
