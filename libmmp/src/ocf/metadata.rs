//! The meta-data document an agent prints for `meta-data`: valid against resource-agents'
//! `ra-api-1.dtd` (what `ocf-tester` checks with `xmllint --valid`, hence the DOCTYPE), which
//! is the OCF 1.0 subset: parameter types string/integer/boolean, no `select` content and no
//! `reload-agent` action. Pacemaker reads the same document (`crm_resource --show-metadata`).

/// One instance parameter.
#[derive(Debug, Clone)]
pub struct Param {
    pub name: &'static str,
    pub shortdesc: &'static str,
    pub longdesc: &'static str,
    pub kind: Kind,
    pub required: bool,
    /// Two resources may not share a value (e.g. the device).
    pub unique: bool,
    pub default: Option<&'static str>,
}

/// A parameter's type, as the 1.0 DTD allows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    String,
    Integer,
    Boolean,
}

impl Param {
    pub const fn string(
        name: &'static str,
        shortdesc: &'static str,
        longdesc: &'static str,
    ) -> Param {
        Param {
            name,
            shortdesc,
            longdesc,
            kind: Kind::String,
            required: false,
            unique: false,
            default: None,
        }
    }

    pub const fn integer(self) -> Param {
        Param {
            kind: Kind::Integer,
            ..self
        }
    }

    pub const fn boolean(self) -> Param {
        Param {
            kind: Kind::Boolean,
            ..self
        }
    }

    pub const fn required(self) -> Param {
        Param {
            required: true,
            ..self
        }
    }

    pub const fn unique(self) -> Param {
        Param {
            unique: true,
            ..self
        }
    }

    pub const fn default(self, value: &'static str) -> Param {
        Param {
            default: Some(value),
            ..self
        }
    }
}

/// One advertised action with its default timeout (seconds) and, for monitors, interval and
/// check depth.
#[derive(Debug, Clone, Copy)]
pub struct ActionSpec {
    pub name: &'static str,
    pub timeout_s: u32,
    pub interval_s: Option<u32>,
    pub depth: Option<u32>,
}

impl ActionSpec {
    pub const fn new(name: &'static str, timeout_s: u32) -> ActionSpec {
        ActionSpec {
            name,
            timeout_s,
            interval_s: None,
            depth: None,
        }
    }

    pub const fn monitor(timeout_s: u32, interval_s: u32, depth: u32) -> ActionSpec {
        ActionSpec {
            name: "monitor",
            timeout_s,
            interval_s: Some(interval_s),
            depth: Some(depth),
        }
    }
}

/// An agent's whole description.
#[derive(Debug, Clone)]
pub struct Agent {
    pub name: &'static str,
    pub shortdesc: &'static str,
    pub longdesc: &'static str,
    pub params: &'static [Param],
    pub actions: &'static [ActionSpec],
}

fn escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

impl Agent {
    /// The XML document, with the DOCTYPE ocf-tester validates against.
    pub fn xml(&self) -> String {
        let mut s = String::from("<?xml version=\"1.0\"?>\n");
        s += "<!DOCTYPE resource-agent SYSTEM \"ra-api-1.dtd\">\n";
        s += &format!(
            "<resource-agent name=\"{}\" version=\"{}\">\n",
            self.name,
            env!("CARGO_PKG_VERSION")
        );
        s += "<version>1.1</version>\n";
        s += &format!(
            "<longdesc lang=\"en\">\n{}\n</longdesc>\n",
            escape(self.longdesc)
        );
        s += &format!(
            "<shortdesc lang=\"en\">{}</shortdesc>\n",
            escape(self.shortdesc)
        );
        s += "<parameters>\n";
        for p in self.params {
            s += &param_xml(p);
        }
        s += "</parameters>\n<actions>\n";
        for a in self.actions {
            s += &format!("<action name=\"{}\" timeout=\"{}s\"", a.name, a.timeout_s);
            if let Some(i) = a.interval_s {
                s += &format!(" interval=\"{i}s\"");
            }
            if let Some(d) = a.depth {
                s += &format!(" depth=\"{d}\"");
            }
            s += " />\n";
        }
        s += "</actions>\n</resource-agent>\n";
        s
    }

    /// The action names, each once (monitor is advertised once per depth).
    fn action_names(&self) -> Vec<&'static str> {
        let mut names: Vec<&str> = self.actions.iter().map(|a| a.name).collect();
        names.dedup();
        names
    }

    /// `usage` text: the actions, then the OCF exit codes.
    pub fn usage(&self) -> String {
        let names = self.action_names();
        let mut s = format!(
            "usage: {} {{{}}}\n\n{}\n\nParameters come from OCF_RESKEY_<name> (see meta-data). EXIT STATUS:\n",
            self.name,
            names.join("|"),
            self.shortdesc
        );
        for (code, text) in super::STATUS_TABLE {
            s += &format!("  {code}  {text}\n");
        }
        s
    }
}

/// Text for roff: a leading dot or quote would start a request, a backslash an escape.
fn roff(s: &str) -> String {
    s.replace('\\', "\\e")
        .lines()
        .map(|l| l.trim())
        .map(|l| {
            if l.starts_with('.') || l.starts_with('\'') {
                format!("\\&{l}")
            } else {
                l.to_string()
            }
        })
        .collect::<Vec<_>>()
        .join("\n")
}

impl Agent {
    /// The man page `ocf_PROVIDER_NAME.7`, as resource-agents ships one per agent: the same
    /// texts as the meta-data, so the two never disagree.
    pub fn man(&self, provider: &str) -> String {
        let title = format!("ocf_{provider}_{}", self.name);
        let mut s = format!(
            ".TH {} 7 \"\" \"mmp-ha {}\" \"OCF resource agents\"\n.SH NAME\n{title} \\- {}\n",
            title.to_uppercase(),
            env!("CARGO_PKG_VERSION"),
            roff(self.shortdesc)
        );
        let names = self.action_names();
        s += &format!(".SH SYNOPSIS\n{} [{}]\n", self.name, names.join(" | "));
        s += ".SH DESCRIPTION\n";
        for para in self.longdesc.split("\n\n") {
            s += &format!(".PP\n{}\n", roff(&para.replace('\n', " ")));
        }
        s += ".SH SUPPORTED PARAMETERS\n";
        for p in self.params {
            let kind = match p.kind {
                Kind::String => "string",
                Kind::Integer => "integer",
                Kind::Boolean => "boolean",
            };
            let need = if p.required { "required" } else { "optional" };
            let default = p
                .default
                .map_or("no default".to_string(), |d| format!("default {d}"));
            s += &format!(
                ".TP\n\\fB{}\\fR\n{}\n.br\n({need}, {kind}, {})\n",
                p.name,
                roff(&p.longdesc.replace('\n', " ")),
                roff(&default)
            );
        }
        s += ".SH SUPPORTED ACTIONS\n";
        for a in self.actions {
            let mut line = format!("suggested minimum timeout {} s", a.timeout_s);
            if let Some(i) = a.interval_s {
                line += &format!(", interval {i} s");
            }
            if let Some(d) = a.depth {
                line += &format!(", depth {d}");
            }
            s += &format!(".TP\n\\fB{}\\fR\n{line}\n", a.name);
        }
        s += ".SH EXIT STATUS\n";
        for (code, text) in super::STATUS_TABLE {
            s += &format!(".TP\n{code}\n{}\n", roff(text));
        }
        s += &format!(
            ".SH FILES\n/usr/lib/ocf/resource.d/{provider}/{}\n.SH SEE ALSO\nmmp-tool(8), mmpd(8), lockd-recover(8), ocf-tester(8), crm_resource(8)\n",
            self.name
        );
        s
    }
}

fn param_xml(p: &Param) -> String {
    let kind = match p.kind {
        Kind::String => "string",
        Kind::Integer => "integer",
        Kind::Boolean => "boolean",
    };
    let default = p
        .default
        .map(|d| format!(" default=\"{}\"", escape(d)))
        .unwrap_or_default();
    format!(
        "<parameter name=\"{}\" required=\"{}\" unique=\"{}\">\n<longdesc lang=\"en\">\n{}\n</longdesc>\n<shortdesc lang=\"en\">{}</shortdesc>\n<content type=\"{kind}\"{default} />\n</parameter>\n",
        p.name,
        u8::from(p.required),
        u8::from(p.unique),
        escape(p.longdesc),
        escape(p.shortdesc),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    const PARAMS: &[Param] = &[
        Param::string("device", "Device", "The <shared> device & more")
            .required()
            .unique(),
        Param::string("n", "N", "a number").integer().default("3"),
    ];
    const ACTIONS: &[ActionSpec] = &[
        ActionSpec::new("start", 60),
        ActionSpec::monitor(20, 20, 10),
    ];

    #[test]
    fn document_has_doctype_escapes_and_types() {
        let a = Agent {
            name: "t",
            shortdesc: "short",
            longdesc: "long",
            params: PARAMS,
            actions: ACTIONS,
        };
        let x = a.xml();
        assert!(x.contains("<!DOCTYPE resource-agent SYSTEM \"ra-api-1.dtd\">"));
        assert!(x.contains("&lt;shared&gt; device &amp; more"));
        assert!(x.contains("required=\"1\" unique=\"1\""));
        assert!(x.contains("<content type=\"integer\" default=\"3\" />"));
        assert!(
            x.contains("<action name=\"monitor\" timeout=\"20s\" interval=\"20s\" depth=\"10\" />")
        );
        assert!(a.usage().contains("7  OCF_NOT_RUNNING"));
        let man = a.man("mmp-ha");
        assert!(man.starts_with(".TH OCF_MMP-HA_T 7"));
        assert!(man.contains(
            "\\fBdevice\\fR\nThe <shared> device & more\n.br\n(required, string, no default)"
        ));
    }
}
