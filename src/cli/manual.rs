//! The manual pages and shell completions, generated from what the program itself
//! knows, so they never drift from it: `iptables-ctl(8)` and one page per command from
//! the command line's definitions (clap_mangen), `iptables-ctl.toml(5)` from the
//! policy's key reference ([`crate::policy::reference`]), and completions for bash, zsh
//! and fish (clap_complete). The hidden `iptables-ctl manual --out DIR` writes them for
//! packaging: `DIR/man8/`, `DIR/man5/`, `DIR/completions/`.

use std::fs;
use std::path::{Path, PathBuf};

use anyhow::Context as _;
use clap::CommandFactory as _;
use clap_complete::Shell;
use roff::{Roff, bold, italic, roman};

use crate::cli::Cli;
use crate::policy::reference::{KEYS, SECTIONS};

/// The program's name, as installed.
const PROGRAM: &str = "iptables-ctl";

/// Writes every manual page and completion file under `out`; returns their paths.
pub(super) fn write(out: &Path) -> anyhow::Result<Vec<PathBuf>> {
    let mut written = Vec::new();
    let man8 = out.join("man8");
    let man5 = out.join("man5");
    let completions = out.join("completions");
    for dir in [&man8, &man5, &completions] {
        fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    }

    let mut command = Cli::command().name(PROGRAM).disable_help_subcommand(true);
    command.build();
    let version = format!("{PROGRAM} {}", env!("CARGO_PKG_VERSION"));
    let pages = std::iter::once(command.clone()).chain(
        command
            .get_subcommands()
            .filter(|c| !c.is_hide_set())
            .cloned(),
    );
    for page in pages {
        let man = clap_mangen::Man::new(page)
            .section("8")
            .source(version.clone())
            .manual("System Administration");
        let path = man
            .generate_to(&man8)
            .with_context(|| format!("cannot write a manual page under {}", man8.display()))?;
        written.push(path);
    }

    let policy_page = man5.join(format!("{PROGRAM}.toml.5"));
    fs::write(&policy_page, policy_manual(&version))
        .with_context(|| format!("cannot write {}", policy_page.display()))?;
    written.push(policy_page);

    // The commands only the units run are not offered (clap_complete's bash script
    // would offer hidden commands too), so the completions are made from a copy of the
    // command line without them (copied before it is built: a built command's parts
    // carry their built names).
    let unbuilt = Cli::command();
    let mut visible = clap::Command::new(PROGRAM)
        .version(env!("CARGO_PKG_VERSION"))
        .args(unbuilt.get_arguments().cloned())
        .subcommands(
            unbuilt
                .get_subcommands()
                .filter(|c| !c.is_hide_set())
                .cloned(),
        );
    for shell in [Shell::Zsh, Shell::Fish] {
        let path = clap_complete::generate_to(shell, &mut visible, PROGRAM, &completions)
            .with_context(|| format!("cannot write the {shell} completion"))?;
        written.push(path);
    }
    let mut bash = Vec::new();
    clap_complete::generate(Shell::Bash, &mut visible, PROGRAM, &mut bash);
    let bash_path = completions.join(format!("{PROGRAM}.bash"));
    fs::write(&bash_path, fix_bash_arms(&String::from_utf8_lossy(&bash)))
        .with_context(|| format!("cannot write {}", bash_path.display()))?;
    written.push(bash_path);
    Ok(written)
}

/// clap_complete's bash script names the state of a subcommand of a program with a
/// hyphen in its name one way where it follows the words (`iptables__ctl__subcmd__X`)
/// and another in the arms that complete it (`iptables__subcmd__ctl__subcmd__X`), so no
/// command's options ever complete (clap-rs/clap#6421, open in clap_complete 4.6.12).
/// The arms are renamed to what the loop sets; `tests/manual.rs` completes through it.
fn fix_bash_arms(script: &str) -> String {
    let escaped = PROGRAM.replace('-', "__");
    let misnamed = PROGRAM.replace('-', "__subcmd__");
    script.replace(
        &format!("{misnamed}__subcmd__"),
        &format!("{escaped}__subcmd__"),
    )
}

/// `iptables-ctl.toml(5)`: every key of the policy file, section by section, with its
/// type, default and meaning, and an example.
fn policy_manual(version: &str) -> String {
    let mut page = Roff::new();
    page.control(
        "TH",
        ["IPTABLES-CTL.TOML", "5", "", version, "File Formats"],
    )
    .control("SH", ["NAME"])
    .text([roman(format!(
        "{PROGRAM}.toml - the firewall policy of an {PROGRAM} instance"
    ))])
    .control("SH", ["SYNOPSIS"])
    .text([roman("/etc/iptables/"), italic("INSTANCE"), roman(".toml")])
    .control("SH", ["DESCRIPTION"])
    .text([roman(
        "A TOML file that says what the admin means, not iptables syntax. Unknown keys are \
         errors, and every error names the file, line, column and key. Rules allow; \
         what no rule allows is denied. The policy of instance base is \
         /etc/iptables/base.toml; iptables-ctl init writes a starter policy that keeps \
         the host's SSH port open.",
    )]);
    for (section, about) in SECTIONS {
        let heading = if section.contains('.') {
            format!("[[{section}]]")
        } else if section == "raw" {
            "[[raw]]".to_owned()
        } else {
            format!("[{section}]")
        };
        page.control("SH", [heading.as_str()])
            .text([roman(about.replace('`', ""))]);
        if let Some(key) = KEYS
            .iter()
            .find(|k| k.path == section && k.kind != "array of tables")
        {
            page.text([roman(format!("Each entry: {}. {}", key.kind, key.meaning))]);
        }
        for key in KEYS.iter().filter(|k| {
            k.path.rsplit_once('.').map_or(k.path, |(s, _)| s) == section
                && !SECTIONS.iter().any(|(s, _)| *s == k.path)
        }) {
            let name = key.path.rsplit_once('.').map_or(key.path, |(_, k)| k);
            page.control("TP", [] as [&str; 0])
                .text([bold(name), roman(" ("), italic(key.kind), roman(")")])
                .text([roman(if key.default == "required" {
                    format!("{} Required.", key.meaning)
                } else {
                    format!("{} Default: {}.", key.meaning, key.default)
                })]);
        }
    }
    page.control("SH", ["EXAMPLE"])
        .control("EX", [] as [&str; 0])
        .text([roman(EXAMPLE)])
        .control("EE", [] as [&str; 0])
        .control("SH", ["SEE ALSO"])
        .text([roman(format!("{PROGRAM}(8)"))]);
    page.render()
}

/// The manual's example: the same as the README's.
const EXAMPLE: &str = "[interfaces]
external = \"auto\"
docker_bridges = [\"docker0\", \"br-+\"]

[lists]
office = [\"192.0.2.0/24\", \"2001:db8:1::/48\"]

[[host.services]]
port = 22
from = [\"office\"]
comment = \"ssh\"

[docker]
default = \"deny\"

[[docker.published]]
port = 8080
from = [\"office\"]

[[raw]]
chain = \"input\"
rule = \"-p udp --dport 51820 -j ACCEPT\"";

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;
    use crate::policy::Policy;

    /// The page's example is a valid policy.
    #[test]
    fn the_example_is_a_valid_policy() {
        Policy::parse(Path::new("example.toml"), EXAMPLE.as_bytes()).unwrap();
    }

    #[test]
    fn the_policy_page_describes_every_key() {
        let page = policy_manual("iptables-ctl 0");
        for key in KEYS {
            let name = key.path.rsplit_once('.').map_or(key.path, |(_, k)| k);
            assert!(
                page.contains(&format!("\\fB{name}\\fR"))
                    || page.contains(&format!("[{}]", key.path)),
                "{}",
                key.path
            );
        }
    }
}
