//! Network namespaces for tests, deleted on drop (with the veth pairs in them).

use crate::cmd::try_run;
use crate::Error;
use std::ffi::OsStr;
use std::process::Command;
use std::sync::atomic::{AtomicU32, Ordering};

static COUNTER: AtomicU32 = AtomicU32::new(0);

/// A name unique to this process and call: namespaces of parallel tests never collide.
fn unique(prefix: &str) -> String {
    format!(
        "{prefix}{}-{}",
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::SeqCst)
    )
}

/// A network namespace with its loopback up; deleted on drop.
pub struct Netns {
    name: String,
}

impl Netns {
    /// `ip netns add PREFIX-PID-N` (needs root and iproute2).
    pub fn new(prefix: &str) -> Result<Netns, Error> {
        let name = unique(&format!("{prefix}-"));
        try_run(Command::new("ip").args(["netns", "add", &name]))?;
        // From here on Drop deletes the namespace, also if the next step fails.
        let ns = Netns { name };
        ns.ip(&["link", "set", "lo", "up"])?;
        Ok(ns)
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// `ip netns exec NAME PROGRAM`: a command that runs in the namespace.
    pub fn exec(&self, program: impl AsRef<OsStr>) -> Command {
        let mut c = Command::new("ip");
        c.args(["netns", "exec", &self.name]).arg(program);
        c
    }

    /// `ip -n NAME ARGS`.
    pub fn ip(&self, args: &[&str]) -> Result<String, Error> {
        try_run(Command::new("ip").args(["-n", &self.name]).args(args))
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = Command::new("ip")
            .args(["netns", "del", &self.name])
            .output();
    }
}

/// Join `a` and `b` by a veth pair, addresses `addr_a` and `addr_b` (CIDR), both ends up.
/// The pair lives only inside the two namespaces and goes with them.
pub fn veth_pair(a: &Netns, addr_a: &str, b: &Netns, addr_b: &str) -> Result<(), Error> {
    // Interface names are at most 15 bytes: "vt" + pid + "-" + n + "a".
    let base = unique("vt");
    let (va, vb) = (format!("{base}a"), format!("{base}b"));
    try_run(Command::new("ip").args(["link", "add", &va, "type", "veth", "peer", "name", &vb]))?;
    let moved = try_run(Command::new("ip").args(["link", "set", &va, "netns", a.name()]))
        .and_then(|_| try_run(Command::new("ip").args(["link", "set", &vb, "netns", b.name()])));
    if let Err(e) = moved {
        // Still in our namespace: deleting one end deletes the pair.
        let _ = Command::new("ip").args(["link", "del", &va]).output();
        let _ = Command::new("ip").args(["link", "del", &vb]).output();
        return Err(e);
    }
    for (ns, dev, addr) in [(a, &va, addr_a), (b, &vb, addr_b)] {
        ns.ip(&["addr", "add", addr, "dev", dev])?;
        ns.ip(&["link", "set", dev, "up"])?;
    }
    Ok(())
}
