//! The notify engine against an in-process peer on 127.0.0.1 that plays rpcbind and statd on
//! one UDP port, so misbehaviour (wrong XIDs, garbage, dropped packets, port 0, RPC errors) can
//! be injected. The real-peer tests are in `netns.rs`.

use lockd_recover::notify::{self, ClientStatus, NotifyConfig, PortChoice};
use lockd_recover::nsm::{self, StatChge};
use lockd_recover::rpc::{self, AcceptStat, OpaqueAuth, Reply, ReplyBody};
use lockd_recover::statd::{MonitorRecord, RecordDir, StatdDir};
use std::net::UdpSocket;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

#[derive(Clone, Default)]
struct Behaviour {
    /// Answer GETPORT with 0 ("no statd registered").
    port_zero: bool,
    /// Before each real reply, send a reply with a wrong XID and a garbage datagram.
    noise: bool,
    /// Drop this many SM_NOTIFY calls before answering.
    drop_notifies: usize,
    /// Answer SM_NOTIFY with PROG_UNAVAIL.
    prog_unavail: bool,
}

#[derive(Debug, Clone)]
struct Seen {
    mon_name: String,
    state: i32,
    /// Contents of sm.bak/<host> at the moment the SM_NOTIFY arrived.
    record_at_receipt: Option<String>,
}

struct FakePeer {
    port: u16,
    stop: Arc<AtomicBool>,
    seen: Arc<Mutex<Vec<Seen>>>,
    handle: Option<JoinHandle<()>>,
}

impl FakePeer {
    fn start(b: Behaviour, watch: PathBuf) -> Self {
        let sock = UdpSocket::bind("127.0.0.1:0").unwrap();
        sock.set_read_timeout(Some(Duration::from_millis(20)))
            .unwrap();
        let port = sock.local_addr().unwrap().port();
        let stop = Arc::new(AtomicBool::new(false));
        let seen = Arc::new(Mutex::new(Vec::new()));
        let (stop2, seen2) = (stop.clone(), seen.clone());
        let handle = std::thread::spawn(move || {
            let mut buf = [0u8; 4096];
            let mut dropped = 0;
            while !stop2.load(Ordering::Relaxed) {
                let Ok((n, from)) = sock.recv_from(&mut buf) else {
                    continue;
                };
                let (h, args) = rpc::parse_call(&buf[..n]).expect("client sent a valid call");
                let results = match (h.prog, h.proc_num) {
                    (nsm::RPCBIND_PROG, nsm::PMAPPROC_GETPORT) => {
                        assert_eq!(h.vers, nsm::PMAP_VERS);
                        assert_eq!(args, nsm::encode_getport_args(nsm::NSM_PROG, 1, 17));
                        nsm::encode_getport_result(if b.port_zero { 0 } else { port })
                    }
                    (nsm::NSM_PROG, nsm::SM_NOTIFY) => {
                        let a = StatChge::decode(args).unwrap();
                        if dropped < b.drop_notifies {
                            dropped += 1;
                            continue;
                        }
                        seen2.lock().unwrap().push(Seen {
                            mon_name: a.mon_name,
                            state: a.state,
                            record_at_receipt: std::fs::read_to_string(&watch).ok(),
                        });
                        if b.prog_unavail {
                            let r = rpc::encode_reply(&Reply {
                                xid: h.xid,
                                body: ReplyBody::Accepted {
                                    verf: OpaqueAuth::none(),
                                    stat: AcceptStat::ProgUnavail,
                                    results: &[],
                                },
                            });
                            sock.send_to(&r, from).unwrap();
                            continue;
                        }
                        Vec::new()
                    }
                    other => panic!("unexpected call {other:?}"),
                };
                if b.noise {
                    sock.send_to(&rpc::encode_success_reply(h.xid ^ 0x5555, &results), from)
                        .unwrap();
                    sock.send_to(&[1, 2, 3], from).unwrap();
                }
                sock.send_to(&rpc::encode_success_reply(h.xid, &results), from)
                    .unwrap();
            }
        });
        Self {
            port,
            stop,
            seen,
            handle: Some(handle),
        }
    }

    fn seen(&self) -> Vec<Seen> {
        self.seen.lock().unwrap().clone()
    }
}

impl Drop for FakePeer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(h) = self.handle.take() {
            let _ = h.join();
        }
    }
}

fn config(dir: &std::path::Path, proc_root: &std::path::Path, rpcbind_port: u16) -> NotifyConfig {
    let mut c = NotifyConfig::new(dir);
    c.proc_root = proc_root.to_path_buf();
    c.source_port = PortChoice::Ephemeral;
    c.rpcbind_port = rpcbind_port;
    c.initial_timeout = Duration::from_millis(50);
    c.max_timeout = Duration::from_millis(200);
    c.deadline = Duration::from_millis(1500);
    c
}

fn rec(my_name: &str) -> MonitorRecord {
    MonitorRecord::lockd("127.0.0.1", my_name, [7; 16])
}

#[test]
fn record_is_removed_only_after_the_reply_and_noise_is_ignored() {
    let t = tempfile::tempdir().unwrap();
    let proc_root = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(proc_root.path().join("sys/fs/nfs")).unwrap();
    std::fs::write(proc_root.path().join("sys/fs/nfs/nsm_local_state"), "").unwrap();
    let d = StatdDir::create(t.path()).unwrap();
    d.add_record(RecordDir::Sm, "127.0.0.1", &rec("srv-a"))
        .unwrap();
    d.add_record(RecordDir::Sm, "127.0.0.1", &rec("srv-b"))
        .unwrap();
    // Nothing answers on 127.0.0.2 at the peer's port.
    d.add_record(
        RecordDir::Sm,
        "127.0.0.2",
        &MonitorRecord::lockd("127.0.0.2", "srv-a", [8; 16]),
    )
    .unwrap();
    d.write_state(5).unwrap();
    let watch = d.dir(RecordDir::SmBak).join("127.0.0.1");
    let peer = FakePeer::start(
        Behaviour {
            noise: true,
            ..Default::default()
        },
        watch.clone(),
    );

    let r = notify::run(&config(t.path(), proc_root.path(), peer.port)).unwrap();

    assert_eq!(r.state.unwrap().state, 7);
    assert_eq!(d.read_state().unwrap(), Some(7));
    assert_eq!(
        std::fs::read_to_string(proc_root.path().join("sys/fs/nfs/nsm_local_state")).unwrap(),
        "7"
    );
    let seen = peer.seen();
    let mut names: Vec<&str> = seen.iter().map(|s| s.mon_name.as_str()).collect();
    names.sort();
    assert_eq!(names, vec!["srv-a", "srv-b"]);
    for s in &seen {
        assert_eq!(s.state, 7);
        let at = s.record_at_receipt.as_deref().unwrap_or("");
        assert!(
            at.contains(&format!(" {}\n", s.mon_name)),
            "record for {} must still exist when its notify arrives; sm.bak had {at:?}",
            s.mon_name
        );
    }
    assert!(!watch.exists(), "both lines removed after their replies");
    assert!(
        r.ignored_replies >= 4,
        "wrong-XID replies and garbage are ignored: {}",
        r.ignored_replies
    );
    assert_eq!((r.notified, r.failed), (2, 1));
    let unreachable = r.clients.iter().find(|c| c.host == "127.0.0.2").unwrap();
    assert_eq!(unreachable.status, ClientStatus::NoReply);
    assert!(!unreachable.record_removed);
    assert!(
        d.dir(RecordDir::SmBak).join("127.0.0.2").exists(),
        "unreached record kept in sm.bak"
    );
    assert!(
        std::fs::read_dir(d.dir(RecordDir::Sm))
            .unwrap()
            .next()
            .is_none(),
        "sm/ emptied"
    );
}

#[test]
fn port_zero_means_no_statd_and_the_record_stays() {
    let t = tempfile::tempdir().unwrap();
    let d = StatdDir::create(t.path()).unwrap();
    d.add_record(RecordDir::SmBak, "127.0.0.1", &rec("srv"))
        .unwrap();
    let peer = FakePeer::start(
        Behaviour {
            port_zero: true,
            ..Default::default()
        },
        PathBuf::from("/nonexistent"),
    );
    let mut c = config(t.path(), t.path(), peer.port);
    c.deadline = Duration::from_millis(600);
    let r = notify::run(&c).unwrap();
    assert_eq!(r.failed, 1);
    assert_eq!(r.clients[0].status, ClientStatus::NoStatd);
    assert!(r.clients[0].packets >= 2, "lookups are retried");
    assert!(peer.seen().is_empty());
    assert!(d.dir(RecordDir::SmBak).join("127.0.0.1").exists());
}

#[test]
fn dropped_notifies_are_retried_and_short_name_follows() {
    let t = tempfile::tempdir().unwrap();
    let d = StatdDir::create(t.path()).unwrap();
    d.add_record(RecordDir::SmBak, "127.0.0.1", &rec("nfs1.example.com"))
        .unwrap();
    let peer = FakePeer::start(
        Behaviour {
            drop_notifies: 2,
            ..Default::default()
        },
        PathBuf::from("/nonexistent"),
    );
    let r = notify::run(&config(t.path(), t.path(), peer.port)).unwrap();
    assert_eq!(r.notified, 1, "{:?}", r.clients);
    let c = &r.clients[0];
    assert_eq!(c.acknowledged, vec!["nfs1.example.com", "nfs1"]);
    assert!(
        c.packets >= 5,
        "2 lookups-or-more + dropped retries: {}",
        c.packets
    );
    let names: Vec<String> = peer.seen().into_iter().map(|s| s.mon_name).collect();
    assert_eq!(names, vec!["nfs1.example.com", "nfs1"]);
}

#[test]
fn rpc_error_is_reported_and_mon_name_override_is_sent() {
    let t = tempfile::tempdir().unwrap();
    let d = StatdDir::create(t.path()).unwrap();
    d.add_record(RecordDir::SmBak, "127.0.0.1", &rec("old-node"))
        .unwrap();
    let peer = FakePeer::start(
        Behaviour {
            prog_unavail: true,
            ..Default::default()
        },
        PathBuf::from("/nonexistent"),
    );
    let mut c = config(t.path(), t.path(), peer.port);
    c.mon_name = Some("floating".into());
    c.deadline = Duration::from_millis(500);
    let r = notify::run(&c).unwrap();
    assert_eq!(r.clients[0].status, ClientStatus::RpcError);
    assert!(r.clients[0]
        .detail
        .as_deref()
        .unwrap()
        .contains("ProgUnavail"));
    assert!(peer.seen().iter().all(|s| s.mon_name == "floating"));
    assert!(d.dir(RecordDir::SmBak).join("127.0.0.1").exists());
}

#[test]
fn malformed_lines_are_reported_kept_and_do_not_block_others() {
    let t = tempfile::tempdir().unwrap();
    let d = StatdDir::create(t.path()).unwrap();
    let path = d.dir(RecordDir::SmBak).join("127.0.0.1");
    std::fs::write(&path, format!("garbage line\n{}", rec("srv").to_line())).unwrap();
    let peer = FakePeer::start(Behaviour::default(), PathBuf::from("/nonexistent"));
    let r = notify::run(&config(t.path(), t.path(), peer.port)).unwrap();
    assert_eq!(r.notified, 1);
    assert_eq!(r.malformed.len(), 1);
    assert_eq!(r.malformed[0].line_no, 1);
    assert_eq!(std::fs::read_to_string(&path).unwrap(), "garbage line\n");
}

#[test]
fn no_clients_leaves_the_state_alone() {
    let t = tempfile::tempdir().unwrap();
    let d = StatdDir::create(t.path()).unwrap();
    d.write_state(9).unwrap();
    let r = notify::run(&config(t.path(), t.path(), 9)).unwrap();
    assert!(r.state.is_none());
    assert!(r.clients.is_empty());
    assert_eq!(d.read_state().unwrap(), Some(9));
}
