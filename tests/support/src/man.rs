//! The one man-page generator of the workspace: clap_mangen renders each binary's page from
//! its clap definition, with an EXIT STATUS section from the binary's exit-code table; the
//! pages in man/ must match (CI runs the tests), and `UPDATE_MAN=1` rewrites them.

use std::io::Write as _;
use std::path::Path;

/// Fail unless the page(s) of `cmd` in `man_dir` are what clap_mangen renders now; with
/// `UPDATE_MAN=1`, write them instead.
///
/// `per_subcommand`: one page per subcommand (`mmp-tool-check.8`, ...) beside the main page,
/// as clap_mangen's own `generate_to` names them; otherwise one page with a section per
/// subcommand. `exit_status`: the binary's exit codes and their meaning, rendered as the
/// EXIT STATUS section of the main page (none when empty).
pub fn assert_current(
    cmd: clap::Command,
    section: &str,
    man_dir: &Path,
    per_subcommand: bool,
    exit_status: &[(u8, &str)],
) {
    let pages = render(cmd, section, per_subcommand, exit_status);
    let update = updating();
    for (file, fresh) in &pages {
        assert_file_current(&man_dir.join(file), fresh);
    }
    // A page of a subcommand that no longer exists would be installed and read as current.
    let main = &pages[0].0;
    let prefix = format!("{}-", main.trim_end_matches(&format!(".{section}")));
    for entry in std::fs::read_dir(man_dir).unwrap().flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        let ours = name.starts_with(&prefix) && name.ends_with(&format!(".{section}"));
        if ours && !pages.iter().any(|(f, _)| *f == name) {
            if update {
                std::fs::remove_file(entry.path()).unwrap();
            } else {
                panic!(
                    "{} has no subcommand any more: {HINT}",
                    entry.path().display()
                );
            }
        }
    }
}

const HINT: &str = "run the test again with UPDATE_MAN=1 to regenerate man/";

fn updating() -> bool {
    std::env::var("UPDATE_MAN").is_ok_and(|v| v == "1")
}

/// Fail unless the page at `path` is `fresh` (a page rendered by other means, such as an OCF
/// agent's from its meta-data); with `UPDATE_MAN=1`, write it instead.
pub fn assert_file_current(path: &Path, fresh: &[u8]) {
    if updating() {
        std::fs::write(path, fresh).unwrap_or_else(|e| panic!("write {}: {e}", path.display()));
        return;
    }
    let current = std::fs::read(path).unwrap_or_default();
    assert!(
        current == fresh,
        "{} is out of date: {HINT}",
        path.display()
    );
}

/// The pages of `cmd`: (file name, roff), the main page first.
pub fn render(
    cmd: clap::Command,
    section: &str,
    per_subcommand: bool,
    exit_status: &[(u8, &str)],
) -> Vec<(String, Vec<u8>)> {
    // `help` is clap's built-in subcommand, not one of ours.
    let mut cmd = cmd.disable_help_subcommand(true);
    cmd.build();
    let mut pages = vec![page(&cmd, section, per_subcommand, exit_status)];
    if per_subcommand {
        let mut subs: Vec<clap::Command> = visible_subcommands(&cmd).cloned().collect();
        while let Some(sub) = subs.pop() {
            subs.extend(visible_subcommands(&sub).cloned());
            // Every page of one binary documents its exit codes: the table is the binary's.
            pages.push(page(&sub, section, true, exit_status));
        }
        pages[1..].sort();
    }
    pages
}

fn visible_subcommands(cmd: &clap::Command) -> impl Iterator<Item = &clap::Command> {
    cmd.get_subcommands().filter(|s| !s.is_hide_set())
}

/// One page, in clap_mangen's order of sections, with EXIT STATUS before VERSION.
fn page(
    cmd: &clap::Command,
    section: &str,
    per_subcommand: bool,
    exit_status: &[(u8, &str)],
) -> (String, Vec<u8>) {
    let man = clap_mangen::Man::new(cmd.clone()).section(section);
    let mut out = Vec::new();
    man.render_title(&mut out).unwrap();
    out.extend(part(|w| man.render_name_section(w)));
    out.extend(part(|w| man.render_synopsis_section(w)));
    out.extend(part(|w| man.render_description_section(w)));
    if cmd.get_arguments().any(|a| !a.is_hide_set()) {
        out.extend(part(|w| man.render_options_section(w)));
    }
    if visible_subcommands(cmd).next().is_some() {
        if per_subcommand {
            out.extend(part(|w| man.render_subcommands_section(w)));
        } else {
            let name = cmd.get_bin_name().unwrap_or(cmd.get_name()).to_string();
            for sub in visible_subcommands(cmd) {
                inline_subcommand(&mut out, &name, sub, section);
            }
        }
    }
    if cmd.get_after_long_help().is_some() || cmd.get_after_help().is_some() {
        out.extend(part(|w| man.render_extra_section(w)));
    }
    exit_status_section(&mut out, exit_status);
    if cmd.get_version().or(cmd.get_long_version()).is_some() {
        out.extend(part(|w| man.render_version_section(w)));
    }
    if cmd.get_author().is_some() {
        out.extend(part(|w| man.render_authors_section(w)));
    }
    (man.get_filename(), out)
}

/// One section rendered by clap_mangen, without the two-line `Aq` string definition that
/// each of its `render_*` calls prepends (the title already carries it, once).
fn part(render: impl FnOnce(&mut Vec<u8>) -> std::io::Result<()>) -> Vec<u8> {
    const PREAMBLE: &str = ".ie \\n(.g .ds Aq \\(aq\n.el .ds Aq '\n";
    let mut buf = Vec::new();
    // Writing into a Vec cannot fail.
    render(&mut buf).unwrap();
    match buf.strip_prefix(PREAMBLE.as_bytes()) {
        Some(rest) => rest.to_vec(),
        None => buf,
    }
}

/// A subcommand as a section of its parent's page (`.SH "TOOL SUB"`, its own sections as
/// `.SS`), then its own subcommands the same way.
fn inline_subcommand(out: &mut Vec<u8>, parent: &str, sub: &clap::Command, section: &str) {
    let name = format!("{parent} {}", sub.get_name());
    // Global options are documented once, on the main page.
    let globals: Vec<clap::Id> = sub
        .get_arguments()
        .filter(|a| a.is_global_set())
        .map(|a| a.get_id().clone())
        .collect();
    let sub = globals
        .iter()
        .fold(sub.clone(), |c, id| c.mut_arg(id, |a| a.hide(true)));
    let man = clap_mangen::Man::new(sub.clone().bin_name(&name)).section(section);
    let mut body = part(|w| man.render_synopsis_section(w));
    body.extend(part(|w| man.render_description_section(w)));
    if sub.get_arguments().any(|a| !a.is_hide_set()) {
        body.extend(part(|w| man.render_options_section(w)));
    }
    writeln!(out, ".SH \"{}\"", name.to_uppercase()).unwrap();
    for line in String::from_utf8_lossy(&body).lines() {
        match line.strip_prefix(".SH ") {
            Some(title) => writeln!(out, ".SS {title}").unwrap(),
            None => writeln!(out, "{line}").unwrap(),
        }
    }
    for s in visible_subcommands(&sub) {
        inline_subcommand(out, &name, s, section);
    }
}

fn exit_status_section(out: &mut Vec<u8>, exit_status: &[(u8, &str)]) {
    if exit_status.is_empty() {
        return;
    }
    writeln!(out, ".SH \"EXIT STATUS\"").unwrap();
    for (code, meaning) in exit_status {
        writeln!(out, ".TP\n\\fB{code}\\fR\n{}", roff_text(meaning)).unwrap();
    }
}

/// Plain text as roff body text: backslashes and hyphens escaped, no line taken as a request.
fn roff_text(s: &str) -> String {
    s.lines()
        .map(|l| {
            let l = l.replace('\\', "\\e").replace('-', "\\-");
            if l.starts_with('.') || l.starts_with('\'') {
                format!("\\&{l}")
            } else {
                l
            }
        })
        .collect::<Vec<_>>()
        .join("\n")
}
