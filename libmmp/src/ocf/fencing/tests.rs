use super::*;

/// The shape `stonith_admin --history n1 --verbose --output-as=xml` prints (Pacemaker 2.1.5).
fn history(events: &str) -> String {
    format!(
        r#"<pacemaker-result api-version="2.25" request="stonith_admin --history n1 --verbose --output-as=xml">
  <list name="fencing history" count="2">
{events}
  </list>
  <status code="0" message="OK"/>
</pacemaker-result>"#
    )
}

const T0: i64 = 1_796_300_000; // the block's last write

fn ev(action: &str, status: &str, delegate: Option<&str>, completed: i64) -> FenceEvent {
    FenceEvent {
        action: action.into(),
        target: "n1".into(),
        status: status.into(),
        delegate: delegate.map(str::to_string),
        origin: Some("n2".into()),
        completed: Some(completed),
    }
}

fn untrusted() -> Vec<String> {
    UNTRUSTED_AGENTS
        .split_whitespace()
        .map(str::to_string)
        .collect()
}

fn decide_with(events: &[FenceEvent], devices: &[&str], types: &[(&str, &str)]) -> Decision {
    let devices: Vec<String> = devices.iter().map(|s| s.to_string()).collect();
    let types: BTreeMap<String, String> = types
        .iter()
        .map(|(a, b)| (a.to_string(), b.to_string()))
        .collect();
    decide(&Evidence {
        target: "n1",
        last_write: T0,
        events,
        devices: &devices,
        types: &types,
        untrusted: &untrusted(),
    })
}

fn unconfirmed_because(d: Decision, needle: &str) {
    match d {
        Decision::Unconfirmed(why) => assert!(why.contains(needle), "{why}"),
        Decision::Confirmed(e) => panic!("confirmed by {e:?}, expected '{needle}'"),
    }
}

#[test]
fn reads_pacemakers_history_xml() {
    let xml = history(
        r#"    <fence_event action="reboot" target="n1" client="pacemaker-controld.812" origin="n2" status="success" delegate="n2" completed="2026-12-03 14:00:05Z"/>
    <fence_event action="off" target="n1" client="stonith_admin.99" origin="n2" status="success" delegate="a human" completed="2026-12-03 15:00:00 +01:00"/>
    <fence_event action="reboot" target="n1" client="stonith_admin.98" origin="n2" status="failed" exit-reason="timed out" completed="2026-12-03 14:00:00Z"/>
    <fence_event action="reboot" target="n1" client="stonith_admin.97" origin="n2" status="pending" extended-status="1"/>"#,
    );
    let evs = parse_history(&xml).unwrap();
    assert_eq!(evs.len(), 4);
    assert_eq!(evs[0].delegate.as_deref(), Some("n2"));
    assert_eq!(evs[0].completed, parse_time("2026-12-03 14:00:05Z"));
    // 15:00 at +01:00 is 14:00 UTC.
    assert_eq!(evs[1].completed, parse_time("2026-12-03 14:00:00Z"));
    assert_eq!(evs[2].status, "failed");
    assert_eq!(evs[3].completed, None);
    assert_eq!(parse_history(&history("")).unwrap(), vec![]);
}

#[test]
fn bad_history_is_an_error_not_a_guess() {
    assert!(matches!(parse_history("not xml"), Err(ParseError::Xml(_))));
    let no_target = history(r#"<fence_event action="off" status="success"/>"#);
    assert_eq!(
        parse_history(&no_target),
        Err(ParseError::Missing("target"))
    );
    let bad_time = history(
        r#"<fence_event action="off" target="n1" status="success" completed="yesterday"/>"#,
    );
    assert!(matches!(parse_history(&bad_time), Err(ParseError::Time(_))));
}

#[test]
fn pacemaker_times() {
    assert_eq!(parse_time("1970-01-01 00:00:00Z"), Some(0));
    assert_eq!(parse_time("2000-03-01 00:00:00Z"), Some(951_868_800));
    assert_eq!(parse_time("2026-12-03 14:00:00Z"), Some(1_796_306_400));
    assert_eq!(
        parse_time("2026-12-03 09:00:00 -05:00"),
        Some(1_796_306_400)
    );
    for bad in [
        "",
        "2026-12-03",
        "2026-12-03 14:00Z",
        "2026-13-03 14:00:00Z",
        "2026-12-03 24:00:00Z",
        "2026-12-03 14:00:00",
        "2026-12-03 14:00:00 0100",
        "2026-12-03 14:00:00 +1:00",
        "+026-12-03 14:00:00Z",
        "2026-12-03-1 14:00:00Z",
    ] {
        assert_eq!(parse_time(bad), None, "{bad}");
    }
}

#[test]
fn devices_and_stonith_types() {
    let list = r#"<pacemaker-result api-version="2.25" request="stonith_admin --list n1 --output-as=xml">
  <list name="Registered fence devices" count="2">
    <item name="device">ipmi-n1</item>
    <item name="device">sbd</item>
  </list>
  <status code="0" message="OK"/>
</pacemaker-result>"#;
    assert_eq!(parse_device_list(list).unwrap(), vec!["ipmi-n1", "sbd"]);
    let cib = r#"<resources>
  <primitive id="ipmi-n1" class="stonith" type="fence_ipmilan"><instance_attributes id="i"/></primitive>
  <primitive id="sbd" class="stonith" type="external/sbd"/>
  <group id="g"><primitive id="fs" class="ocf" provider="mmp-ha" type="mmp-fs"/></group>
</resources>"#;
    let t = parse_stonith_types(cib).unwrap();
    assert_eq!(t.len(), 2);
    assert_eq!(t["ipmi-n1"], "fence_ipmilan");
    assert_eq!(t["sbd"], "external/sbd");
}

#[test]
fn a_power_fence_after_the_last_write_confirms() {
    let events = [
        ev("reboot", "success", Some("n2"), T0 + 3),
        ev("off", "success", Some("n2"), T0 + 9),
    ];
    let d = decide_with(&events, &["ipmi-n1"], &[("ipmi-n1", "fence_ipmilan")]);
    assert_eq!(d, Decision::Confirmed(events[1].clone()));
}

#[test]
fn what_does_not_confirm() {
    let ipmi = [("ipmi-n1", "fence_ipmilan")];
    // Nothing, a failure, a pending op, an "on".
    unconfirmed_because(decide_with(&[], &["ipmi-n1"], &ipmi), "no successful");
    let others = [
        ev("reboot", "failed", Some("n2"), T0 + 5),
        ev("on", "success", Some("n2"), T0 + 5),
        FenceEvent {
            completed: None,
            ..ev("off", "pending", None, 0)
        },
    ];
    unconfirmed_because(decide_with(&others, &["ipmi-n1"], &ipmi), "no successful");
    // Another node's fence.
    let other_node = FenceEvent {
        target: "n3".into(),
        ..ev("off", "success", Some("n2"), T0 + 5)
    };
    unconfirmed_because(
        decide_with(&[other_node], &["ipmi-n1"], &ipmi),
        "no successful",
    );
    // Before (or in the same second as) the last write: an earlier incident.
    let old = [
        ev("off", "success", Some("n2"), T0),
        ev("off", "success", Some("n2"), T0 - 600),
    ];
    unconfirmed_because(decide_with(&old, &["ipmi-n1"], &ipmi), "came back since");
    // A person's confirmation; watchdog self-fencing (no delegate).
    let human = [ev("off", "success", Some("a human"), T0 + 5)];
    unconfirmed_because(decide_with(&human, &["ipmi-n1"], &ipmi), "by hand");
    let watchdog = [ev("reboot", "success", None, T0 + 5)];
    unconfirmed_because(decide_with(&watchdog, &["ipmi-n1"], &ipmi), "by hand");
}

#[test]
fn every_device_that_can_fence_the_node_must_be_trusted() {
    let ok = [ev("reboot", "success", Some("n2"), T0 + 5)];
    unconfirmed_because(decide_with(&ok, &[], &[]), "no registered fence device");
    // sbd as a second level: the history cannot say which level did it.
    let types = [("ipmi-n1", "fence_ipmilan"), ("sbd", "fence_sbd")];
    unconfirmed_because(decide_with(&ok, &["ipmi-n1", "sbd"], &types), "fence_sbd");
    // Pacemaker's own watchdog device is not in the CIB.
    unconfirmed_because(
        decide_with(&ok, &["ipmi-n1", "watchdog"], &types),
        "not a stonith resource",
    );
    let scsi = [("scsi", "fence_scsi")];
    assert!(matches!(
        decide_with(&ok, &["scsi"], &scsi),
        Decision::Confirmed(_)
    ));
}

#[test]
fn without_pacemaker_the_answer_is_unconfirmed() {
    // No stonith_admin on PATH (or no cluster): never an error, never a confirmation.
    let d = query("n1", T0, &untrusted(), Duration::from_secs(2));
    assert!(matches!(d, Decision::Unconfirmed(_)), "{d:?}");
}
