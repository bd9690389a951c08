//! The fence-confirmed fast path of a start: when the MMP block still names another node,
//! ask Pacemaker whether a fence device powered that node off (or reset it) after its last
//! write ([`libmmp::ocf::fencing`]). Only then does the gate run with `--fenced NODE`, which
//! watches the block for a few seconds instead of the full wait and still refuses any change.
//! Without such a record (no fencing, a manual `stonith_admin --confirm`, sbd or watchdog
//! self-fencing, a fence older than the last write, Pacemaker not answering) the full wait
//! applies: the fast path is never taken on the caller's word alone.

use super::configured;
use crate::cli::FenceFlags;
use libmmp::ocf::fencing::{self, Decision};
use libmmp::ocf::{Env, Outcome};
use libmmp::ondisk::mmp::{MmpBlock, SeqClass};
use libmmp::protocol::claim;
use std::time::Duration;

/// How long Pacemaker's tools may take to answer (each of three calls).
const ASK_LIMIT: Duration = Duration::from_secs(5);

/// The parameters of the fast path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Takeover {
    /// `fast_takeover` (default true).
    pub enabled: bool,
    /// `node_map`: cluster node name -> the name it writes into the MMP block.
    pub node_map: Vec<(String, String)>,
    /// `untrusted_fence_agents` (default [`fencing::UNTRUSTED_AGENTS`]).
    pub untrusted: Vec<String>,
}

impl Takeover {
    pub fn from_env(env: &Env) -> Result<Takeover, Outcome> {
        let node_map = match env.param("node_map") {
            None => Vec::new(),
            Some(m) => parse_node_map(m)?,
        };
        let untrusted = env
            .param("untrusted_fence_agents")
            .unwrap_or(fencing::UNTRUSTED_AGENTS)
            .split_whitespace()
            .map(str::to_string)
            .collect();
        Ok(Takeover {
            enabled: env.flag("fast_takeover")?.unwrap_or(true),
            node_map,
            untrusted,
        })
    }

    /// The cluster node that writes `mmp_name` into the block (itself unless mapped).
    pub fn cluster_node(&self, mmp_name: &str) -> String {
        self.node_map
            .iter()
            .find(|(_, m)| m == mmp_name)
            .map_or_else(|| mmp_name.to_string(), |(c, _)| c.clone())
    }

    /// The gate's `--fenced` flags for `device` whose MMP block reads `blk`: the cluster node
    /// Pacemaker confirms a device fenced after its last write, or none (the full wait).
    pub fn flags(&self, device: &str, blk: &MmpBlock) -> FenceFlags {
        FenceFlags {
            fenced: self.fenced_node(device, blk),
            node_map: self.node_map.clone(),
        }
    }

    /// For a block about to be claimed: the cluster node to pass as `--fenced`, when
    /// Pacemaker confirms a device fenced its writer after its last write; `None` for the
    /// full wait (logged with the reason).
    pub fn fenced_node(&self, device: &str, blk: &MmpBlock) -> Option<String> {
        if !self.enabled || !matches!(blk.seq_class(), SeqClass::Live(_)) {
            return None;
        }
        let mmp_name = blk.nodename();
        let node = self.cluster_node(&mmp_name);
        let last_write = i64::try_from(blk.mmp_time).unwrap_or(i64::MAX);
        match fencing::query(&node, last_write, &self.untrusted, ASK_LIMIT) {
            Decision::Confirmed(e) => {
                tracing::info!(
                    "{device}: Pacemaker's fencing history shows {} of {node} by a device (delegate {}) at {}, after {node}'s last MMP write at {last_write}: fence-confirmed takeover",
                    e.action,
                    e.delegate.as_deref().unwrap_or("?"),
                    e.completed.unwrap_or_default(),
                );
                Some(node)
            }
            Decision::Unconfirmed(why) => {
                tracing::info!(
                    "{device}: the MMP block names {node}; no fence-confirmed takeover ({why}): the full MMP wait applies"
                );
                None
            }
        }
    }
}

/// `CLUSTER=MMPNAME` pairs separated by spaces or commas (each as `mmp-tool mount --node-map`).
fn parse_node_map(m: &str) -> Result<Vec<(String, String)>, Outcome> {
    m.split(|c: char| c.is_whitespace() || c == ',')
        .filter(|p| !p.is_empty())
        .map(|pair| {
            claim::fenced::parse_node_map(pair)
                .map_err(|e| configured(format!("parameter node_map: {e}")))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(vars: &[(&str, &str)]) -> Env {
        Env::from_vars(
            vars.iter()
                .map(|(k, v)| (format!("OCF_RESKEY_{k}"), v.to_string())),
        )
    }

    #[test]
    fn defaults_and_mapping() {
        let t = Takeover::from_env(&env(&[])).unwrap();
        assert!(t.enabled);
        assert!(t.untrusted.iter().any(|a| a == "fence_sbd"));
        assert_eq!(t.cluster_node("n1"), "n1");
        let t = Takeover::from_env(&env(&[
            ("node_map", "n1=host-a.example, n2=host-b"),
            ("fast_takeover", "false"),
            ("untrusted_fence_agents", "fence_sbd fence_foo"),
        ]))
        .unwrap();
        assert!(!t.enabled);
        assert_eq!(t.untrusted, vec!["fence_sbd", "fence_foo"]);
        assert_eq!(t.cluster_node("host-a.example"), "n1");
        assert_eq!(t.cluster_node("host-b"), "n2");
        assert_eq!(t.cluster_node("other"), "other");
    }

    #[test]
    fn bad_maps_name_the_parameter() {
        for bad in ["n1", "n1=", "=h", "n1:h"] {
            let o = Takeover::from_env(&env(&[("node_map", bad)])).unwrap_err();
            assert!(o.reason.unwrap().contains("node_map"), "{bad}");
        }
        let o = Takeover::from_env(&env(&[("fast_takeover", "maybe")])).unwrap_err();
        assert!(o.reason.unwrap().contains("fast_takeover"));
    }

    #[test]
    fn only_a_live_block_is_asked_about() {
        let t = Takeover::from_env(&env(&[])).unwrap();
        let clean = MmpBlock::new(libmmp::ondisk::mmp::EXT4_MMP_SEQ_CLEAN, 0, "n1", "d", 5);
        assert_eq!(t.fenced_node("/dev/x", &clean), None);
        let off = Takeover {
            enabled: false,
            ..t
        };
        assert_eq!(
            off.fenced_node("/dev/x", &MmpBlock::new(42, 0, "n1", "d", 5)),
            None
        );
    }
}
