//! Text the daemons and tools read: mmpd's config and state files, the OCF environment,
//! /proc/self/mountinfo, sysfs uevent files, and lock-torture's wire and record formats.

use libmmp::host::backing::devname;
use libmmp::host::busy::parse_mountinfo;
use libmmp::host::run_dir::HolderState;
use libmmp::ocf::{Env, Status};
use lock_torture::duration::parse_duration;
use lock_torture::protocol::{decode_request, decode_response, encode_line};
use lock_torture::record::{decode_all, Record, RECORD_SIZE};
use mmpd::cli::Cli;
use mmpd::config::{merge, parse_file};
use std::path::Path;

/// mmpd's TOML configuration: parsing and merging any text never panics; what merges is valid.
pub fn mmpd_config(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    if let Ok(file) = parse_file(Path::new("fuzz.toml"), &text) {
        if let Ok(cfg) = merge(&Cli::empty(), &file) {
            for d in &cfg.devices {
                assert!(d.heartbeat.validate().is_ok());
            }
        }
    }
}

/// mmpd's state file (`<run_dir>/<key>.state`, read by `mmp-tool status`): decode(encode(x))
/// is a fixed point.
pub fn mmpd_holder_state(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    let st = HolderState::decode(&text);
    let again = HolderState::decode(&st.encode());
    assert_eq!(again.encode(), st.encode());
}

/// The OCF environment an agent reads, one `name=value` pair per line: every typed read either
/// gives a value in range or an OCF_ERR_CONFIGURED outcome naming the parameter.
pub fn ocf_env(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    let vars = text.lines().filter_map(|l| {
        let (k, v) = l.split_once('=')?;
        Some((k.to_string(), v.to_string()))
    });
    let env = Env::from_vars(vars);
    let names: Vec<String> = env.param_names().map(str::to_string).collect();
    for name in &names {
        if let Err(o) = env.flag(name) {
            assert_eq!(o.status, Status::ErrConfigured);
            assert!(o.reason.unwrap_or_default().contains(name.as_str()));
        }
        match env.integer(name, 1..=3600) {
            Ok(Some(n)) => assert!((1..=3600).contains(&n)),
            Ok(None) => panic!("a listed parameter {name:?} reads as unset"),
            Err(o) => assert_eq!(o.status, Status::ErrConfigured),
        }
    }
    let _ = env.timeout();
    let _ = env.is_probe();
}

/// `/proc/self/mountinfo` (the busy check and the agents read it): total, and every entry it
/// returns comes from a line with a `-` separator.
pub fn mountinfo(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    let entries = parse_mountinfo(&text);
    assert!(entries.len() <= text.lines().filter(|l| l.contains(" - ")).count());
}

/// A sysfs uevent file (`/sys/dev/block/MAJ:MIN/uevent`, read to name the block device under
/// a filesystem): a name found is a plain relative one, never a way out of /dev.
pub fn sysfs_uevent(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    if let Some(name) = devname(&text) {
        assert!(!name.is_empty() && !name.starts_with('/'));
        assert!(name.split('/').all(|c| c != ".."));
        assert!(text.lines().any(|l| l == format!("DEVNAME={name}")));
    }
}

/// Peer-protocol lines from the network (multi-host workers): whatever decodes survives a
/// re-encode.
pub fn lock_torture_protocol(data: &[u8]) {
    if let Ok(req) = decode_request(data) {
        let line = encode_line(&req);
        assert_eq!(decode_request(&line).ok(), Some(req));
    }
    if let Ok(resp) = decode_response(data) {
        let line = encode_line(&resp);
        assert_eq!(decode_response(&line).ok(), Some(resp));
    }
}

/// Torture records read back from a shared file another client may have mangled: a decoded
/// non-initial record re-encodes to the same bytes.
pub fn lock_torture_record(data: &[u8]) {
    let _ = decode_all(data);
    if data.len() == RECORD_SIZE {
        if let Ok(r) = Record::decode(data) {
            if data.iter().any(|&b| b != 0) {
                assert_eq!(&r.encode()[..], data);
            }
        }
    }
}

/// Command-line durations.
pub fn lock_torture_duration(data: &[u8]) {
    if let Ok(s) = std::str::from_utf8(data) {
        let _ = parse_duration(s);
    }
}
