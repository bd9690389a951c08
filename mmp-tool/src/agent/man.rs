//! `man/ocf_mmp-ha_mmp-fs.7` (the name resource-agents gives its pages), rendered from the
//! agent's description by the one renderer every agent uses
//! (`libmmp::ocf::metadata::Agent::man`), so page and meta-data never disagree.
//! `UPDATE_MAN=1 cargo test -p mmp-tool man_page` rewrites it.

use super::params::AGENT;
use std::path::Path;

#[test]
fn agent_man_page_is_current() {
    let file = Path::new(env!("CARGO_MANIFEST_DIR")).join("../man/ocf_mmp-ha_mmp-fs.7");
    test_support::man::assert_file_current(&file, AGENT.man("mmp-ha").as_bytes());
}
