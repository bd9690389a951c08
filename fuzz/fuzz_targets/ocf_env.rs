//! The OCF environment an agent reads (`OCF_RESKEY_*`, `CRM_meta_*`, `OCF_CHECK_LEVEL`): any
//! names and values never panic, and every typed read either gives a value in range or an
//! OCF_ERR_CONFIGURED outcome naming the parameter.
#![no_main]

use libfuzzer_sys::fuzz_target;
use libmmp::ocf::{Env, Status};

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    // One "name=value" pair per line.
    let vars = text.lines().filter_map(|l| {
        let (k, v) = l.split_once('=')?;
        Some((k.to_string(), v.to_string()))
    });
    let env = Env::from_vars(vars);
    let names: Vec<String> = env.param_names().map(str::to_string).collect();
    for name in &names {
        if let Err(o) = env.flag(name) {
            assert_eq!(o.status, Status::ErrConfigured);
            assert!(o.reason.unwrap().contains(name.as_str()));
        }
        match env.integer(name, 1..=3600) {
            Ok(Some(n)) => assert!((1..=3600).contains(&n)),
            Ok(None) => unreachable!("a listed parameter is set"),
            Err(o) => assert_eq!(o.status, Status::ErrConfigured),
        }
    }
    let _ = env.timeout();
    let _ = env.is_probe();
});
