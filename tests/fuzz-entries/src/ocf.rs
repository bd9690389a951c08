//! What the mmp-fs agent reads from Pacemaker before the fence-confirmed fast path.

use libmmp::ocf::fencing::{self, Decision, Evidence};

/// Pacemaker's fencing history, device list and CIB resources (three documents separated by
/// NUL): any bytes parse or fail cleanly, and a confirmation is only ever a successful
/// off/reboot of the node, by a device, after the block's last write.
pub fn ocf_fence_history(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    let mut parts = text.split('\0');
    let (h, l, c) = (parts.next(), parts.next(), parts.next());
    let _ = fencing::parse_time(h.unwrap_or(""));
    let events = fencing::parse_history(h.unwrap_or("")).unwrap_or_default();
    let devices = fencing::parse_device_list(l.unwrap_or("")).unwrap_or_default();
    let types = fencing::parse_stonith_types(c.unwrap_or("")).unwrap_or_default();
    let untrusted: Vec<String> = fencing::UNTRUSTED_AGENTS
        .split_whitespace()
        .map(str::to_string)
        .collect();
    let last_write = 1_796_300_000;
    let ev = Evidence {
        target: "n1",
        last_write,
        events: &events,
        devices: &devices,
        types: &types,
        untrusted: &untrusted,
    };
    if let Decision::Confirmed(e) = fencing::decide(&ev) {
        assert_eq!(e.target, "n1");
        assert_eq!(e.status, "success");
        assert!(e.action == "off" || e.action == "reboot");
        assert!(e.completed.is_some_and(|t| t > last_write));
        assert!(e.delegate.is_some_and(|d| d != "a human"));
        assert!(!devices.is_empty());
    }
}
