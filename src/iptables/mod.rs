//! Everything that speaks iptables: the backend the flows use ([`IptablesBackend`] in
//! `backend.rs`, implementing [`crate::backend::Backend`]) and what it is made of.
//! Writing: `render/` (a plan spelled as the four `iptables-restore` files with Tera),
//! `sets.rs` (long lists as ipsets: their names and `ipset restore` files, read back
//! strictly), `set_record.rs` (the sets each instance loaded since boot), `instance.rs` (an instance's files: names, set, render, prove, read), `shape.rs`
//! (the shape every file must have), `trial.rs` (the kernel check in a throwaway
//! namespace), `raw.rs` (`[[raw]]` rule syntax), `options.rs` and `words.rs` (iptables'
//! getopt and the one quote-aware tokenizer). Reading: `dump.rs` and `rule.rs` (the
//! iptables-save parser and rule model), `live.rs` (the live rules against the
//! rendered ones), `forward.rs` (FORWARD's jump to DOCKER-USER), `walk/` (the packet
//! walk), `lockout.rs` (SSH sessions the proven rules would refuse), `docker.rs`
//! (published ports from Docker's DNAT rules).
//!
//! This file: which programs are run ([`Tools`], [`Variant`]) and reading what they
//! print (failing line, error summary, save text without timestamps), as plain
//! functions apart from the running.

pub mod backend;
pub mod docker;
pub mod dump;
pub mod forward;
pub mod instance;
pub mod live;
pub mod lockout;
pub mod options;
pub mod raw;
pub mod render;
pub mod rule;
pub mod set_record;
pub mod sets;
pub mod shape;
pub mod trial;
pub mod walk;
pub mod words;

use crate::family::Family;

pub use backend::IptablesBackend;

/// Which iptables implementation loads the rules.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Tools {
    /// Whatever `iptables-restore` is on this system (what the units use).
    #[default]
    System,
    /// `iptables-nft-restore`: the nf_tables backend.
    Nft,
    /// `iptables-legacy-restore`: the x_tables backend.
    Legacy,
}

impl Tools {
    /// The restore program for `family`.
    pub fn restore_program(self, family: Family) -> &'static str {
        match (self, family) {
            (Tools::System, Family::Ipv4) => "iptables-restore",
            (Tools::System, Family::Ipv6) => "ip6tables-restore",
            (Tools::Nft, Family::Ipv4) => "iptables-nft-restore",
            (Tools::Nft, Family::Ipv6) => "ip6tables-nft-restore",
            (Tools::Legacy, Family::Ipv4) => "iptables-legacy-restore",
            (Tools::Legacy, Family::Ipv6) => "ip6tables-legacy-restore",
        }
    }

    /// The save program for `family`.
    pub fn save_program(self, family: Family) -> &'static str {
        match (self, family) {
            (Tools::System, Family::Ipv4) => "iptables-save",
            (Tools::System, Family::Ipv6) => "ip6tables-save",
            (Tools::Nft, Family::Ipv4) => "iptables-nft-save",
            (Tools::Nft, Family::Ipv6) => "ip6tables-nft-save",
            (Tools::Legacy, Family::Ipv4) => "iptables-legacy-save",
            (Tools::Legacy, Family::Ipv6) => "ip6tables-legacy-save",
        }
    }
}

/// The two kernel interfaces iptables can drive, named as `iptables -V` names them (in
/// text and JSON alike).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub enum Variant {
    /// nf_tables (`iptables-nft`).
    #[serde(rename = "nf_tables")]
    Nft,
    /// x_tables (`iptables-legacy`).
    #[serde(rename = "legacy")]
    Legacy,
}

impl Variant {
    /// The one that is not this one.
    pub fn other(self) -> Variant {
        match self {
            Variant::Nft => Variant::Legacy,
            Variant::Legacy => Variant::Nft,
        }
    }

    /// The suffix of its programs: `iptables-nft`, `iptables-legacy`.
    pub fn tool_suffix(self) -> &'static str {
        match self {
            Variant::Nft => "nft",
            Variant::Legacy => "legacy",
        }
    }
}

impl std::fmt::Display for Variant {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Variant::Nft => "nf_tables",
            Variant::Legacy => "legacy",
        })
    }
}

/// The backend named by `iptables -V` (`iptables v1.8.9 (nf_tables)`); None for
/// versions that do not say (before 1.8, always legacy, but then we cannot be sure).
pub fn variant_from_version(version: &str) -> Option<Variant> {
    if version.contains("(nf_tables)") {
        Some(Variant::Nft)
    } else if version.contains("(legacy)") {
        Some(Variant::Legacy)
    } else {
        None
    }
}

/// The line of the input that `iptables-restore` blamed, if it said so. It reports
/// `Error occurred at line: N` for parse errors and `line N failed` for rejected rules.
pub fn failing_line(stderr: &str) -> Option<usize> {
    for line in stderr.lines() {
        if let Some(rest) = line.split("Error occurred at line:").nth(1) {
            return rest.trim().parse().ok();
        }
        // "line 7 failed" (legacy) or "line 21: RULE_APPEND failed (...)" (nf_tables).
        for (at, _) in line.match_indices("line ") {
            let rest = &line[at + 5..];
            let digits = rest.len() - rest.trim_start_matches(|c: char| c.is_ascii_digit()).len();
            let after = &rest[digits..];
            if digits > 0 && (after.starts_with(':') || after.starts_with(" failed")) {
                return rest[..digits].parse().ok();
            }
        }
    }
    None
}

/// The useful part of a restore error: without the "Error occurred at line" and
/// "Try `iptables-restore -h'" boilerplate, on one line.
pub fn error_summary(stderr: &str) -> String {
    stderr
        .lines()
        .map(str::trim)
        .filter(|l| {
            !l.is_empty() && !l.starts_with("Error occurred at line") && !l.starts_with("Try `")
        })
        .collect::<Vec<_>>()
        .join("; ")
}

/// `iptables-save` output without its comment lines, which carry a timestamp.
pub fn normalize_save(text: &str) -> String {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .map(|l| format!("{l}\n"))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn failing_line_reads_both_error_styles() {
        assert_eq!(
            failing_line(
                "iptables-restore v1.8.9 (nf_tables): unknown option \"--x\"\nError occurred at line: 12\nTry `iptables-restore -h'"
            ),
            Some(12)
        );
        assert_eq!(failing_line("iptables-restore: line 7 failed\n"), Some(7));
        assert_eq!(
            failing_line(
                "iptables-restore v1.8.9 (nf_tables):\nline 21: RULE_APPEND failed (Invalid argument): rule in chain INPUT\n"
            ),
            Some(21)
        );
        assert_eq!(failing_line("something else"), None);
    }

    #[test]
    fn normalize_drops_timestamps() {
        assert_eq!(
            normalize_save("# Generated by x on Mon\n*filter\nCOMMIT\n# Completed on Mon\n"),
            "*filter\nCOMMIT\n"
        );
    }

    #[test]
    fn backend_is_read_from_the_version() {
        assert_eq!(
            variant_from_version("iptables v1.8.9 (nf_tables)\n"),
            Some(Variant::Nft)
        );
        assert_eq!(
            variant_from_version("iptables v1.8.9 (legacy)\n"),
            Some(Variant::Legacy)
        );
        assert_eq!(variant_from_version("iptables v1.6.1\n"), None);
    }
}
