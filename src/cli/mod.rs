//! The command line: its argument definitions (clap). What each command does is in
//! [`run`] (dispatch, one small function per command); what the flows report is shown
//! by `report` (text or JSON); everything goes through one [`Output`]; errors are
//! reported by `main` with their context; exit codes come from [`exit`].

pub mod exit;
mod manual;
pub mod output;
mod report;
mod run;

use std::path::PathBuf;

use clap::{Parser, Subcommand, ValueEnum};

#[cfg(doc)]
use crate::cli::output::Output;
use crate::iptables::Tools;
use crate::lints::SkippableLint;
use crate::packet::Endpoint;
use crate::policy::types::InstanceName;

pub use run::run;

/// Keeps a Docker host behind an iptables firewall that Docker cannot bypass or clobber.
#[derive(Debug, Parser)]
#[command(name = "iptables-ctl", version, about, long_about = None)]
pub struct Cli {
    /// Work on a staged tree under DIR instead of / (policies, templates and outputs
    /// are read and written below it).
    #[arg(long, global = true, value_name = "DIR", default_value = "/")]
    pub root: PathBuf,
    /// Read the policy from FILE instead of /etc/iptables/INSTANCE.toml.
    #[arg(long, global = true, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// The commands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Write a commented starter policy that keeps SSH open.
    Init {
        /// Instance name.
        #[arg(default_value = "base")]
        instance: InstanceName,
        /// Replace an existing policy.
        #[arg(long)]
        force: bool,
        /// Print the policy instead of writing it.
        #[arg(long)]
        stdout: bool,
        /// Print the outcome (what was done, and the verdict) as one JSON document.
        #[arg(long)]
        json: bool,
    },
    /// Render the policy into /etc/iptables/INSTANCE.rules{,6}{,.empty}.
    Render {
        /// Instance name.
        #[arg(default_value = "base")]
        instance: InstanceName,
        /// Print the rendered files instead of writing them.
        #[arg(long)]
        stdout: bool,
        /// Skip loading the files into a throwaway network namespace first (needed
        /// when not root; the files are then only checked for shape).
        #[arg(long)]
        no_kernel_check: bool,
        /// iptables implementation used for the kernel check (`--backend` is an older
        /// spelling, kept for scripts).
        #[arg(long, visible_alias = "backend", value_enum, default_value_t)]
        iptables: ToolsArg,
        /// Print the outcome (what was done, and the verdict) as one JSON document.
        #[arg(long)]
        json: bool,
    },
    /// Validate the policy, then load the rendered files into a throwaway network
    /// namespace with the kernel's own parser. Writes nothing.
    Check {
        /// Instance name.
        #[arg(default_value = "base")]
        instance: InstanceName,
        /// iptables implementation to check with (`--backend` is an older spelling,
        /// kept for scripts).
        #[arg(long, visible_alias = "backend", value_enum, default_value_t)]
        iptables: ToolsArg,
        /// Do not report this lint (a warning; `iptables-ctl lints` lists them).
        /// Repeatable.
        #[arg(long, value_name = "LINT")]
        skip: Vec<SkippableLint>,
        /// Print the outcome (what was done, and the verdict) as one JSON document.
        #[arg(long)]
        json: bool,
    },
    /// List the lints `check` and `status` run: name, severity, what each finds, why it
    /// matters and how to fix it.
    Lints {
        /// Print the list as JSON.
        #[arg(long)]
        json: bool,
    },
    /// What applying the policy would change in the live rules: the chains iptables-ctl
    /// owns, both families, as a unified diff (live against rendered). Changes nothing.
    /// Exit code: 0 nothing would change, 1 something would, 2 trouble (as diff(1)).
    Diff {
        /// Instance name.
        #[arg(default_value = "base")]
        instance: InstanceName,
        /// Print the report as JSON (`changed`, and each family's diff).
        #[arg(long)]
        json: bool,
    },
    /// Render and check the policy (writing the starter policy first if there is none),
    /// install the systemd units, enable them and start the instance. Refuses when
    /// another firewall manager would fight it. With --root, stages a tree offline.
    Install {
        /// Instance name.
        #[arg(default_value = "base")]
        instance: InstanceName,
        /// Enable the units but do not start them.
        #[arg(long)]
        no_start: bool,
        /// Install despite conflicting firewall managers or backends.
        #[arg(long)]
        force: bool,
        /// Say what would change (the same checks first), and change nothing.
        #[arg(long)]
        dry_run: bool,
        /// Print the outcome (what was done, and the verdict) as one JSON document.
        #[arg(long)]
        json: bool,
    },
    /// Stop the instance (its pass-through files are loaded), destroy its ipsets that no
    /// rule matches any more, disable and remove the units. The policy and rendered files
    /// are kept.
    Uninstall {
        /// Instance name.
        #[arg(default_value = "base")]
        instance: InstanceName,
        /// Say what would change (the same checks first), and change nothing.
        #[arg(long)]
        dry_run: bool,
        /// Print the outcome (what was done, and the verdict) as one JSON document.
        #[arg(long)]
        json: bool,
    },
    /// Start the instance: load its rules, and re-assert them after every Docker start.
    Start {
        /// Instance name.
        #[arg(default_value = "base")]
        instance: InstanceName,
        /// Start even when the rules would lock out an open SSH session.
        #[arg(long)]
        force: bool,
        /// Say what would change (the same checks first), and change nothing.
        #[arg(long)]
        dry_run: bool,
        /// Print the outcome (what was done, and the verdict) as one JSON document.
        #[arg(long)]
        json: bool,
    },
    /// Stop the instance: load its pass-through (.empty) files; Docker starts do not
    /// load the rules until it is started again.
    Stop {
        /// Instance name.
        #[arg(default_value = "base")]
        instance: InstanceName,
        /// Say what would change (the same checks first), and change nothing.
        #[arg(long)]
        dry_run: bool,
        /// Print the outcome (what was done, and the verdict) as one JSON document.
        #[arg(long)]
        json: bool,
    },
    /// Load the files on disk again, with no gap: an active instance is reloaded (a stop
    /// and a start would leave the host open if the start failed), another is started.
    Restart {
        /// Instance name.
        #[arg(default_value = "base")]
        instance: InstanceName,
        /// Restart even when the rules would lock out an open SSH session.
        #[arg(long)]
        force: bool,
        /// Say what would change (the same checks first), and change nothing.
        #[arg(long)]
        dry_run: bool,
        /// Print the outcome (what was done, and the verdict) as one JSON document.
        #[arg(long)]
        json: bool,
    },
    /// Re-render and check the policy, write what changed, and reload the unit with no
    /// gap. A bad policy, or rules that would lock out an open SSH session, are refused
    /// and the live rules stay as they were.
    Reload {
        /// Instance name.
        #[arg(default_value = "base")]
        instance: InstanceName,
        /// Reload even when the rules would lock out an open SSH session.
        #[arg(long)]
        force: bool,
        /// Change nothing: say what the reload would change (as `diff` does; exit 0).
        #[arg(long)]
        dry_run: bool,
        /// Print the outcome (what was done, and the verdict) as one JSON document.
        #[arg(long)]
        json: bool,
    },
    /// Apply the policy on trial: render and check it, arm a rollback timer in systemd,
    /// then load the new rules. Unless `iptables-ctl confirm` runs within DURATION, the
    /// previous rules come back, even if this session or process dies or the host
    /// reboots. Run `confirm` from a NEW connection: that proves you can still get in.
    Apply {
        /// Instance name.
        #[arg(default_value = "base")]
        instance: InstanceName,
        /// How long the new rules stay without `confirm`: seconds, or with a unit
        /// (90s, 5m, 1h); from 1s to 24h.
        #[arg(long, value_name = "DURATION", value_parser = parse_duration)]
        confirm_within: std::time::Duration,
        /// Apply even when the rules would lock out an open SSH session.
        #[arg(long)]
        force: bool,
        /// Change nothing: say what the apply would change (as `diff` does; exit 0).
        #[arg(long)]
        dry_run: bool,
        /// Print the outcome (what was done, and the verdict) as one JSON document.
        #[arg(long)]
        json: bool,
    },
    /// Keep the rules of a pending apply: disarm its rollback, make its files the
    /// instance's own (loaded at every boot) and reload the unit from them.
    Confirm {
        /// Instance name.
        #[arg(default_value = "base")]
        instance: InstanceName,
        /// Print the outcome (what was done, and the verdict) as one JSON document.
        #[arg(long)]
        json: bool,
    },
    /// Return to the generation before the current one: its policy is written back and
    /// loaded as `reload` loads one. A generation is kept at every install, reload,
    /// confirm and rollback (the last 10, under /var/lib/iptables-ctl).
    Rollback {
        /// Instance name.
        #[arg(default_value = "base")]
        instance: InstanceName,
        /// Roll back even when the policy file was edited since its last load (the edit
        /// is overwritten), or the rules would lock out an open SSH session.
        #[arg(long)]
        force: bool,
        /// Print the outcome (what was done, and the verdict) as one JSON document.
        #[arg(long)]
        json: bool,
    },
    /// Run by iptables-rollback@.service when an apply was not confirmed in time: load
    /// the instance's own files (the previous rules) again.
    #[command(hide = true)]
    RollbackPending {
        /// Instance name.
        instance: InstanceName,
    },
    /// Every port Docker publishes (DNAT and docker-proxy), who can reach it from the
    /// external interfaces and which rule decides, compared with the policy. Exit code 6
    /// when a port is reachable from sources the policy does not allow, or cannot be
    /// decided.
    Audit {
        /// Instance whose policy to compare with (reachability only without one).
        #[arg(default_value = "base")]
        instance: InstanceName,
        /// Print the report as JSON.
        #[arg(long)]
        json: bool,
    },
    /// The path of one packet through the live rules, rule by rule, and its verdict.
    Explain {
        /// Source address of the packet.
        #[arg(long, value_name = "ADDR")]
        from: std::net::IpAddr,
        /// Where it goes: ADDR:PORT[/tcp|udp], IPv6 as [ADDR]:PORT.
        #[arg(long, value_name = "ADDR:PORT")]
        // The help text above is clap's, not a rustdoc link.
        #[allow(rustdoc::broken_intra_doc_links)]
        to: Endpoint,
        /// The interface it arrives on (default: the one the host routes FROM through).
        #[arg(long = "in", value_name = "IFACE")]
        in_interface: Option<String>,
        /// Print the walk as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Show the units' state and whether the rules protect what the policy says.
    /// Exit code: 0 in force, 3 not running, 4 not installed, 5 active but not in force.
    Status {
        /// Instance name.
        #[arg(default_value = "base")]
        instance: InstanceName,
        /// Do not report this lint (a warning; `iptables-ctl lints` lists them).
        /// Repeatable.
        #[arg(long, value_name = "LINT")]
        skip: Vec<SkippableLint>,
        /// Print the report as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Run by the units before every load of the rules: load the instance's sets
    /// (`/etc/iptables/INSTANCE.sets` and `.sets6`), each filled aside and swapped in.
    #[command(hide = true)]
    LoadSets {
        /// Instance name.
        instance: InstanceName,
    },
    /// Run by the units after every load: make FORWARD jump to DOCKER-USER first in
    /// both families, recording each repair for `status`.
    #[command(hide = true)]
    ForwardJump {
        /// Instance name.
        instance: InstanceName,
    },
    /// Run by the units last in every load: destroy the sets the instance loaded since
    /// boot that its files no longer define, once no rule matches them.
    #[command(hide = true)]
    PruneSets {
        /// Instance name.
        instance: InstanceName,
    },
    /// For packaging: write the manual pages (`man8/`, `man5/`) and the shell
    /// completions (`completions/`) under a directory.
    #[command(hide = true)]
    Manual {
        /// Where to write them.
        #[arg(long, value_name = "DIR")]
        out: std::path::PathBuf,
    },
    /// Run by iptables.service: start, stop or reload every enabled instance and wait.
    #[command(hide = true)]
    Umbrella {
        /// What to do.
        #[arg(value_enum)]
        action: UmbrellaAction,
    },
}

/// `--confirm-within`: whole seconds, or a number with `s`, `m` or `h`, within the
/// bounds `apply` accepts.
fn parse_duration(text: &str) -> Result<std::time::Duration, String> {
    use crate::control::apply::{MAX_CONFIRM_WITHIN, MIN_CONFIRM_WITHIN};
    let expected = || {
        format!(
            "`{text}`: expected seconds, or a number with s, m or h (90s, 5m, 1h), from {}s to {}h",
            MIN_CONFIRM_WITHIN.as_secs(),
            MAX_CONFIRM_WITHIN.as_secs() / 3600
        )
    };
    let (digits, unit) = match text.char_indices().find(|(_, c)| !c.is_ascii_digit()) {
        Some((at, _)) => text.split_at(at),
        None => (text, "s"),
    };
    let seconds_per = match unit {
        "s" => 1,
        "m" => 60,
        "h" => 3600,
        _ => return Err(expected()),
    };
    digits
        .parse::<u64>()
        .ok()
        .and_then(|n| n.checked_mul(seconds_per))
        .map(std::time::Duration::from_secs)
        .filter(|d| (MIN_CONFIRM_WITHIN..=MAX_CONFIRM_WITHIN).contains(d))
        .ok_or_else(expected)
}

/// What `iptables.service` asks of every enabled instance.
#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum UmbrellaAction {
    /// Start the rules and their re-assertion after Docker.
    Start,
    /// Stop both.
    Stop,
    /// Reload the active instances' rules.
    Reload,
}

/// `--iptables`: which iptables programs the kernel check runs.
#[derive(Debug, Clone, Copy, Default, ValueEnum)]
pub enum ToolsArg {
    /// iptables-restore as installed (what the units run).
    #[default]
    System,
    /// iptables-nft-restore.
    Nft,
    /// iptables-legacy-restore.
    Legacy,
}

impl From<ToolsArg> for Tools {
    fn from(arg: ToolsArg) -> Tools {
        match arg {
            ToolsArg::System => Tools::System,
            ToolsArg::Nft => Tools::Nft,
            ToolsArg::Legacy => Tools::Legacy,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn confirm_within_takes_seconds_minutes_and_hours_within_bounds() {
        for (text, seconds) in [
            ("90", 90),
            ("90s", 90),
            ("5m", 300),
            ("1h", 3600),
            ("24h", 86_400),
        ] {
            assert_eq!(
                parse_duration(text),
                Ok(std::time::Duration::from_secs(seconds)),
                "{text}"
            );
        }
        for text in [
            "",
            "0",
            "0s",
            "86401",
            "25h",
            "1.5m",
            "5 m",
            "-5",
            "5d",
            "m",
            "99999999999999999999",
            "18446744073709551615h",
        ] {
            let error = parse_duration(text).unwrap_err();
            assert!(error.contains("from 1s to 24h"), "{text}: {error}");
        }
    }
}
