//! `man/ocf_mmp-ha_mmp-fs.7` (the name resource-agents gives its pages), generated from the
//! agent's meta-data so the two never disagree. `UPDATE_MAN=1 cargo test -p mmp-tool man_page`
//! rewrites it.

use super::params::AGENT;
use libmmp::ocf::metadata::Kind;
use std::fmt::Write as _;
use std::path::Path;

/// Text safe for roff: backslashes escaped, no line starting with a control character.
fn roff(text: &str) -> String {
    text.replace('\\', "\\e")
        .lines()
        .map(|l| {
            if l.starts_with(['.', '\'']) {
                format!("\\&{l}")
            } else {
                l.to_string()
            }
        })
        .collect::<Vec<_>>()
        .join("\n")
}

fn page() -> String {
    let mut s = String::new();
    let _ = writeln!(
        s,
        ".TH OCF_MMP-HA_MMP-FS 7 \"\" \"mmp-ha {}\" \"OCF resource agents\"",
        env!("CARGO_PKG_VERSION")
    );
    let _ = writeln!(
        s,
        ".SH NAME\nocf_mmp-ha_mmp-fs \\- {}",
        roff(AGENT.shortdesc)
    );
    let _ = writeln!(
        s,
        ".SH SYNOPSIS\n\\fBmmp-fs\\fR {{start|stop|monitor|validate-all|meta-data}}"
    );
    s += ".SH DESCRIPTION\n";
    for para in AGENT.longdesc.split("\n\n") {
        let _ = writeln!(s, ".PP\n{}", roff(&para.replace('\n', " ")));
    }
    s += ".SH SUPPORTED PARAMETERS\n";
    for p in AGENT.params {
        let kind = match p.kind {
            Kind::String => "string",
            Kind::Integer => "integer",
            Kind::Boolean => "boolean",
        };
        let mut attrs = vec![kind.to_string()];
        attrs.extend(p.required.then(|| "required".to_string()));
        attrs.extend(p.unique.then(|| "unique".to_string()));
        attrs.extend(p.default.map(|d| format!("default {d}")));
        let _ = writeln!(
            s,
            ".TP\n\\fB{}\\fR ({})\n{}. {}",
            p.name,
            attrs.join(", "),
            roff(p.shortdesc),
            roff(p.longdesc)
        );
    }
    s += ".SH SUPPORTED ACTIONS\n";
    for a in AGENT.actions {
        let mut what = format!("timeout {} s", a.timeout_s);
        if let (Some(i), Some(d)) = (a.interval_s, a.depth) {
            let _ = write!(what, ", interval {i} s, OCF_CHECK_LEVEL {d}");
        }
        let _ = writeln!(s, ".TP\n\\fB{}\\fR\n{what}", a.name);
    }
    s += ".SH EXIT STATUS\n";
    for (code, text) in libmmp::ocf::STATUS_TABLE {
        let _ = writeln!(s, ".TP\n\\fB{code}\\fR\n{}", roff(text));
    }
    s += EXAMPLE;
    s
}

const EXAMPLE: &str = "\
.SH EXAMPLE
Installed as /usr/lib/ocf/resource.d/mmp-ha/mmp-fs, a symlink to mmp-tool:
.PP
.nf
crm configure primitive fs1 ocf:mmp-ha:mmp-fs \\e
  params device=/dev/disk/by-id/wwn-0x600... directory=/srv/nfs \\e
  op start timeout=60s op stop timeout=60s \\e
  op monitor interval=20s timeout=40s \\e
  op monitor interval=60s timeout=40s OCF_CHECK_LEVEL=10
.fi
.SH SEE ALSO
mmp-tool-mount(8), mmp-tool-format-area(8), mmpd(8), ocf-tester(8), crm_resource(8)
";

#[test]
fn man_page_is_current() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../man/ocf_mmp-ha_mmp-fs.7");
    let want = page();
    if std::env::var_os("UPDATE_MAN").is_some() {
        std::fs::write(&path, &want).unwrap();
        return;
    }
    let have = std::fs::read_to_string(&path).unwrap_or_default();
    assert!(
        have == want,
        "{} is out of date: run `UPDATE_MAN=1 cargo test -p mmp-tool man_page`",
        path.display()
    );
}
