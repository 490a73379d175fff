//! The command line: argument definitions (clap) and one small function per command,
//! each a sequence of library calls. Everything the commands say goes through one
//! [`Output`]; errors are reported by `main` with their context; exit codes come from
//! [`crate::cli::exit`].

pub mod exit;
pub mod output;

use std::path::{Path, PathBuf};

use anyhow::{Context as _, bail};
use clap::{Parser, Subcommand, ValueEnum};

use crate::audit;
use crate::cli::output::Output;
use crate::control;
use crate::control::lockout;
use crate::control::status;
use crate::family::Family;
use crate::files::layout::Layout;
use crate::files::{self, DirLock};
use crate::host::{HostProbe, LiveHost, StagedHost};
use crate::iptables::Tools;
use crate::iptables::instance;
use crate::iptables::live::SystemFirewall;
use crate::iptables::render::{RenderedFile, TemplateKind, output_file_name};
use crate::iptables::trial::NetnsTrial;
use crate::iptables::walk::Endpoint;
use crate::policy::starter::{self, StarterFacts};
use crate::policy::types::InstanceName;
use crate::systemd::JobKind;
use crate::systemd::bus::SystemdBus;

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
    },
    /// Stop the instance (its pass-through files are loaded), disable and remove the
    /// units. The policy and rendered files are kept.
    Uninstall {
        /// Instance name.
        #[arg(default_value = "base")]
        instance: InstanceName,
    },
    /// Start the instance: load its rules, and re-assert them after every Docker start.
    Start {
        /// Instance name.
        #[arg(default_value = "base")]
        instance: InstanceName,
        /// Start even when the rules would lock out an open SSH session.
        #[arg(long)]
        force: bool,
    },
    /// Stop the instance: load its pass-through (.empty) files; Docker starts do not
    /// load the rules until it is started again.
    Stop {
        /// Instance name.
        #[arg(default_value = "base")]
        instance: InstanceName,
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
        /// Print the report as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Run by the units after every load: make FORWARD jump to DOCKER-USER first in
    /// both families, recording each repair for `status`.
    #[command(hide = true)]
    ForwardJump {
        /// Instance name.
        instance: InstanceName,
    },
    /// Run by iptables.service: start, stop or reload every enabled instance and wait.
    #[command(hide = true)]
    Umbrella {
        /// What to do.
        #[arg(value_enum)]
        action: UmbrellaAction,
    },
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

/// Runs the parsed command line and returns the process exit code.
pub fn run(cli: Cli, out: &mut Output) -> anyhow::Result<u8> {
    let layout = Layout::new(&cli.root);
    let staged_host = StagedHost {
        root: cli.root.clone(),
    };
    let host: &dyn HostProbe = if staged(&cli) {
        &staged_host
    } else {
        &LiveHost
    };
    let policy_path = |instance: &InstanceName| {
        cli.config
            .clone()
            .unwrap_or_else(|| layout.policy_path(instance))
    };
    match &cli.command {
        Command::Init {
            instance,
            force,
            stdout,
        } => init(
            &layout,
            instance,
            &policy_path(instance),
            host,
            *force,
            *stdout,
            out,
        ),
        Command::Render {
            instance,
            stdout,
            no_kernel_check,
            iptables,
        } => render(
            &layout,
            instance,
            &policy_path(instance),
            host,
            *stdout,
            !*no_kernel_check,
            (*iptables).into(),
            out,
        ),
        Command::Check { instance, iptables } => check(
            &layout,
            instance,
            &policy_path(instance),
            host,
            (*iptables).into(),
            out,
        ),
        Command::Install {
            instance,
            no_start,
            force,
        } => {
            let options = control::InstallOptions {
                no_start: *no_start,
                force: *force,
            };
            let path = policy_path(instance);
            let target = target(&layout, instance, &path, host);
            if staged(&cli) {
                control::install(&target, control::Systemd::Staged, options, out)
            } else {
                let manager = live_systemd(&cli, "install", "it changes system services")?;
                control::install(&target, control::Systemd::Live(&manager), options, out)
            }
        }
        Command::Uninstall { instance } => {
            let path = policy_path(instance);
            let target = target(&layout, instance, &path, host);
            if staged(&cli) {
                control::uninstall(&target, control::Systemd::Staged, out)
            } else {
                let manager = live_systemd(&cli, "uninstall", "it changes system services")?;
                control::uninstall(&target, control::Systemd::Live(&manager), out)
            }
        }
        Command::Start { instance, force } => lifecycle(
            &cli,
            &target(&layout, instance, &policy_path(instance), host),
            JobKind::Start,
            *force,
            out,
        ),
        Command::Stop { instance } => lifecycle(
            &cli,
            &target(&layout, instance, &policy_path(instance), host),
            JobKind::Stop,
            false,
            out,
        ),
        Command::Restart { instance, force } => lifecycle(
            &cli,
            &target(&layout, instance, &policy_path(instance), host),
            JobKind::Restart,
            *force,
            out,
        ),
        Command::Reload { instance, force } => {
            let manager = live_systemd(&cli, "reload", "it changes system services")?;
            control::reload(
                &target(&layout, instance, &policy_path(instance), host),
                &manager,
                *force,
                out,
            )
        }
        Command::Audit { instance, json } => {
            require_live(&cli, "audit", "it reads the live firewall")?;
            let net = host.network()?;
            let report = audit::audit_live(&SystemFirewall, &net, host, &policy_path(instance))?;
            print_report(*json, &report, report.human(), out)?;
            Ok(if report.is_flagged() {
                exit::EXPOSED
            } else {
                exit::SUCCESS
            })
        }
        Command::Explain {
            from,
            to,
            in_interface,
            json,
        } => {
            require_live(&cli, "explain", "it reads the live firewall")?;
            let net = host.network()?;
            if let Some(name) = in_interface
                && !net.interface_names().contains(name)
            {
                bail!(
                    "--in {name}: no such interface on this host (interfaces here: {})",
                    net.interface_names().join(", ")
                );
            }
            let walk =
                audit::explain_live(&SystemFirewall, &net, *from, to, in_interface.as_deref())?;
            print_report(*json, &walk, walk.human(), out)?;
            Ok(exit::SUCCESS)
        }
        Command::Status { instance, json } => {
            let manager = live_systemd(
                &cli,
                "status",
                "it reads the live firewall and asks systemd",
            )?;
            let report = status::status(
                &target(&layout, instance, &policy_path(instance), host),
                &manager,
            )?;
            print_report(*json, &report, report.human(), out)?;
            Ok(report.exit_code())
        }
        Command::ForwardJump { instance } => {
            require_live(&cli, "forward-jump", "it changes the live firewall")?;
            control::forward_jump(&layout, instance, &SystemFirewall, out)
        }
        Command::Umbrella { action } => {
            let manager =
                live_systemd(&cli, "umbrella", "it asks systemd to start and stop units")?;
            let kind = match action {
                UmbrellaAction::Start => JobKind::Start,
                UmbrellaAction::Stop => JobKind::Stop,
                UmbrellaAction::Reload => JobKind::Reload,
            };
            control::umbrella(&manager, kind, out)
        }
    }
}

/// What a live command works on.
fn target<'a>(
    layout: &'a Layout,
    instance: &'a InstanceName,
    policy_path: &'a Path,
    host: &'a dyn HostProbe,
) -> control::Target<'a> {
    control::Target {
        layout,
        instance,
        policy_path,
        host,
        trial: &SYSTEM_TRIAL,
        firewall: &SystemFirewall,
    }
}

/// Refuses a staged tree (`--root`) and a caller who is not root, saying why `command`
/// needs root (`why_root`).
fn require_live(cli: &Cli, command: &str, why_root: &str) -> anyhow::Result<()> {
    require_live_host(cli, command, "reads the live firewall", why_root)
}

/// [`require_live`], saying what `command` needs of the live host (`needs`).
fn require_live_host(cli: &Cli, command: &str, needs: &str, why_root: &str) -> anyhow::Result<()> {
    if staged(cli) {
        bail!(
            "`{command}` {needs}; --root only works with init, render, check, install and uninstall"
        );
    }
    if !nix::unistd::geteuid().is_root() {
        bail!("`iptables-ctl {command}` must run as root: {why_root}");
    }
    Ok(())
}

/// The host and kernel check every live command uses.
const SYSTEM_TRIAL: NetnsTrial = NetnsTrial {
    tools: Tools::System,
};

fn staged(cli: &Cli) -> bool {
    is_staged_root(&cli.root)
}

/// `root` is a staged tree rather than this system's `/`, judged by where it leads
/// (`/tmp/..` and `//` are `/`). A root that does not resolve is staged: whatever runs on
/// it then fails on the missing tree, never on the live system.
fn is_staged_root(root: &Path) -> bool {
    std::fs::canonicalize(root).map_or(true, |resolved| resolved != Path::new("/"))
}

/// Connects to the running systemd, after checking the caller may use it.
fn live_systemd(cli: &Cli, command: &str, why_root: &str) -> anyhow::Result<SystemdBus> {
    require_live_host(cli, command, "needs the running systemd", why_root)?;
    Ok(SystemdBus::system()?)
}

fn lifecycle(
    cli: &Cli,
    target: &control::Target<'_>,
    kind: JobKind,
    force: bool,
    out: &mut Output,
) -> anyhow::Result<u8> {
    let manager = live_systemd(cli, &kind.to_string(), "it changes system services")?;
    control::lifecycle(target, &manager, kind, force, out)
}

fn init(
    layout: &Layout,
    instance: &InstanceName,
    path: &Path,
    host: &dyn HostProbe,
    force: bool,
    stdout: bool,
    out: &mut Output,
) -> anyhow::Result<u8> {
    let facts = StarterFacts::gather(host);
    let (text, policy) = starter::starter_policy(&facts, path)?;
    if stdout {
        out.print(&text);
        return Ok(exit::SUCCESS);
    }
    let (dir, name) = files::dir_and_name(path)?;
    files::create_dirs(dir)?;
    let _lock = DirLock::acquire(dir)?;
    if path.exists() && !force {
        bail!(
            "{} already exists; edit it, or pass --force to replace it with a starter policy",
            path.display()
        );
    }
    files::write_files(dir, &[(name, text)])?;
    writeln!(out, "wrote {}", path.display());
    for line in starter::summary(&facts, &policy) {
        writeln!(out, "  {line}");
    }
    let others = crate::control::conflicts::other_instances(layout.root(), instance);
    if crate::control::conflicts::enabled_under(layout.root(), instance) {
        writeln!(
            out,
            "next: review it, then `iptables-ctl check {instance}` and `iptables-ctl reload {instance}`"
        );
    } else if let Some(other) = others.first() {
        // One instance at a time: this one cannot be installed next to it.
        writeln!(
            out,
            "note: instance {other} is installed, and only one instance can be; edit its policy and `iptables-ctl reload {other}`, or `iptables-ctl uninstall {other}` first"
        );
    } else {
        writeln!(
            out,
            "next: review it, then `iptables-ctl check {instance}` and `iptables-ctl install {instance}`"
        );
    }
    Ok(exit::SUCCESS)
}

#[allow(clippy::too_many_arguments)] // one per command-line option
fn render(
    layout: &Layout,
    instance: &InstanceName,
    policy_path: &Path,
    host: &dyn HostProbe,
    stdout: bool,
    kernel_check: bool,
    tools: Tools,
    out: &mut Output,
) -> anyhow::Result<u8> {
    let dir = layout.config_dir();
    let _lock = if stdout {
        None
    } else {
        Some(DirLock::acquire(&dir).with_context(|| no_config_dir_hint(&dir))?)
    };
    let (policy, rendered) = instance::render_instance(layout, instance, policy_path)?;
    control::warn_interface_problems(&policy, host, out);
    if kernel_check {
        let reports = instance::prove(&policy, &rendered, &NetnsTrial { tools })
            .context("kernel check of the rendered files failed; nothing was written (--no-kernel-check skips the check)")?;
        warn_lockouts(host, reports, out);
    }
    if stdout {
        let all: String = rendered
            .iter()
            .map(|f| f.text.as_str())
            .collect::<Vec<_>>()
            .join("\n");
        out.print(&all);
        return Ok(exit::SUCCESS);
    }
    let summary = instance::output_set(layout, instance).write(&RenderedFile::outputs(rendered))?;
    for line in summary.lines() {
        writeln!(out, "{line}");
    }
    if crate::control::conflicts::enabled_under(layout.root(), instance)
        && !summary.written.is_empty()
    {
        writeln!(
            out,
            "iptables@{instance}.service is installed: these files are loaded at the next boot or Docker start; `iptables-ctl reload {instance}` loads them now (render does not)"
        );
    }
    Ok(exit::SUCCESS)
}

/// Warns about SSH sessions that rules as loaded in `reports` would lock out.
fn warn_lockouts(
    host: &dyn HostProbe,
    reports: Vec<(Family, crate::iptables::trial::TrialReport)>,
    out: &mut Output,
) {
    let loaded = lockout::loaded_rules(reports);
    for lockout in lockout::check(host, &loaded) {
        out.warn(format!(
            "{lockout}; reload, install and start refuse these rules without --force"
        ));
    }
}

fn check(
    layout: &Layout,
    instance: &InstanceName,
    policy_path: &Path,
    host: &dyn HostProbe,
    tools: Tools,
    out: &mut Output,
) -> anyhow::Result<u8> {
    let (policy, rendered) = instance::render_instance(layout, instance, policy_path)?;
    writeln!(out, "policy {} is valid", policy_path.display());
    control::warn_interface_problems(&policy, host, out);
    let reports = instance::prove(&policy, &rendered, &NetnsTrial { tools })?;
    for (family, report) in &reports {
        let restore = tools.restore_program(*family);
        let rules = output_file_name(instance, *family, TemplateKind::Rules);
        let empty = output_file_name(instance, *family, TemplateKind::Empty);
        writeln!(
            out,
            "{rules}: {} rules loaded by {restore} in a throwaway network namespace; a second load changed nothing; {empty} loads too",
            report.rule_count
        );
    }
    warn_lockouts(host, reports, out);
    Ok(exit::SUCCESS)
}

fn no_config_dir_hint(dir: &Path) -> String {
    format!(
        "cannot use {} (run `iptables-ctl init` to create a policy there)",
        dir.display()
    )
}

/// Prints a report as pretty JSON or as its text for a person.
fn print_report(
    json: bool,
    report: &impl serde::Serialize,
    human: String,
    out: &mut Output,
) -> anyhow::Result<()> {
    if json {
        let text = serde_json::to_string_pretty(report).context("cannot encode the report")?;
        out.print(&format!("{text}\n"));
    } else {
        out.print(&human);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_root_that_leads_to_slash_is_not_staged() {
        for live in ["/", "/tmp/..", "//", "/etc/../"] {
            assert!(!is_staged_root(Path::new(live)), "{live}");
        }
        let dir = tempfile::tempdir().expect("tempdir");
        assert!(is_staged_root(dir.path()));
        assert!(is_staged_root(&dir.path().join("missing")));
    }
}
