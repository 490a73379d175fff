//! The iptables command-line tools: which programs a backend uses, running them with
//! input on stdin, and reading what they print. Parsing of their output is kept in plain
//! functions apart from the running.

use std::io::{self, Write};
use std::process::{Command, Output, Stdio};

use crate::policy::types::Family;

/// Which iptables implementation loads the rules.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Backend {
    /// Whatever `iptables-restore` is on this system (what the units use).
    #[default]
    System,
    /// `iptables-nft-restore`: the nf_tables backend.
    Nft,
    /// `iptables-legacy-restore`: the x_tables backend.
    Legacy,
}

impl Backend {
    /// The restore program for `family`.
    pub fn restore_program(self, family: Family) -> &'static str {
        match (self, family) {
            (Backend::System, Family::Ipv4) => "iptables-restore",
            (Backend::System, Family::Ipv6) => "ip6tables-restore",
            (Backend::Nft, Family::Ipv4) => "iptables-nft-restore",
            (Backend::Nft, Family::Ipv6) => "ip6tables-nft-restore",
            (Backend::Legacy, Family::Ipv4) => "iptables-legacy-restore",
            (Backend::Legacy, Family::Ipv6) => "ip6tables-legacy-restore",
        }
    }

    /// The save program for `family`.
    pub fn save_program(self, family: Family) -> &'static str {
        match (self, family) {
            (Backend::System, Family::Ipv4) => "iptables-save",
            (Backend::System, Family::Ipv6) => "ip6tables-save",
            (Backend::Nft, Family::Ipv4) => "iptables-nft-save",
            (Backend::Nft, Family::Ipv6) => "ip6tables-nft-save",
            (Backend::Legacy, Family::Ipv4) => "iptables-legacy-save",
            (Backend::Legacy, Family::Ipv6) => "ip6tables-legacy-save",
        }
    }
}

/// A tool that ran and failed, with what it said.
#[derive(Debug, thiserror::Error)]
pub enum ToolError {
    /// The program could not be started.
    #[error("cannot run {program}{hint}", hint = if source.kind() == io::ErrorKind::NotFound { " (install the iptables package)" } else { "" })]
    Spawn {
        /// The program.
        program: String,
        /// What the system said.
        source: io::Error,
    },
    /// The program exited unsuccessfully.
    #[error("{program} failed ({status}): {stderr}")]
    Failed {
        /// The command line.
        program: String,
        /// Exit status.
        status: String,
        /// Its standard error, trimmed.
        stderr: String,
    },
}

/// Runs `program args`, feeding `stdin`, and returns its standard output.
pub fn run(program: &str, args: &[&str], stdin: &[u8]) -> Result<String, ToolError> {
    let spawn_error = |source| ToolError::Spawn {
        program: program.to_owned(),
        source,
    };
    let mut child = Command::new(program)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(spawn_error)?;
    if let Some(mut pipe) = child.stdin.take() {
        // A tool that exits early closes the pipe; its exit status tells why.
        let _ = pipe.write_all(stdin);
    }
    let Output {
        status,
        stdout,
        stderr,
    } = child.wait_with_output().map_err(spawn_error)?;
    if !status.success() {
        return Err(ToolError::Failed {
            program: std::iter::once(program)
                .chain(args.iter().copied())
                .collect::<Vec<_>>()
                .join(" "),
            status: status.to_string(),
            stderr: String::from_utf8_lossy(&stderr).trim().to_owned(),
        });
    }
    Ok(String::from_utf8_lossy(&stdout).into_owned())
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
}
