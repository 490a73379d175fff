//! The command line: argument definitions (clap) and one small function per command,
//! each a sequence of library calls. Errors are reported by `main` with their context.

use std::io::Write as _;
use std::path::{Path, PathBuf};

use anyhow::{Context as _, bail};
use clap::{Parser, Subcommand, ValueEnum};

use crate::audit;
use crate::control;
use crate::evaluate::Endpoint;
use crate::files::{self, DirLock};
use crate::host::LiveHost;
use crate::hostnet::HostNet;
use crate::instance::{self, Layout};
use crate::iptables::Backend;
use crate::live::SystemFirewall;
use crate::policy::types::InstanceName;
use crate::render::{RenderedFile, TemplateKind, output_file_name};
use crate::starter::{self, StarterFacts};
use crate::systemd::JobKind;
use crate::systemd::bus::SystemdBus;
use crate::trial::NetnsTrial;

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
        /// iptables implementation used for the kernel check.
        #[arg(long, value_enum, default_value_t)]
        backend: BackendArg,
    },
    /// Validate the policy, then load the rendered files into a throwaway network
    /// namespace with the kernel's own parser. Writes nothing.
    Check {
        /// Instance name.
        #[arg(default_value = "base")]
        instance: InstanceName,
        /// iptables implementation to check with.
        #[arg(long, value_enum, default_value_t)]
        backend: BackendArg,
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
    /// Start the instance's unit: load its rules.
    Start {
        /// Instance name.
        #[arg(default_value = "base")]
        instance: InstanceName,
    },
    /// Stop the instance's unit: load its pass-through (.empty) files.
    Stop {
        /// Instance name.
        #[arg(default_value = "base")]
        instance: InstanceName,
    },
    /// Restart the instance's unit (stop, then start: briefly pass-through; prefer reload).
    Restart {
        /// Instance name.
        #[arg(default_value = "base")]
        instance: InstanceName,
    },
    /// Re-render and check the policy, write what changed, and reload the unit with no
    /// gap. A bad policy is refused and the live rules stay as they were.
    Reload {
        /// Instance name.
        #[arg(default_value = "base")]
        instance: InstanceName,
    },
    /// Every port Docker publishes, who can reach it from the external interfaces and
    /// which rule decides, compared with the policy. Exit code 1 when a port is reachable
    /// from sources the policy does not allow, or cannot be decided.
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
    /// Show the units' state and whether the live rules are the rendered ones.
    /// Exit code: 0 active and in force, 1 drift, 3 inactive, 4 not installed.
    Status {
        /// Instance name.
        #[arg(default_value = "base")]
        instance: InstanceName,
        /// Print the report as JSON.
        #[arg(long)]
        json: bool,
    },
}

/// `--backend`.
#[derive(Debug, Clone, Copy, Default, ValueEnum)]
pub enum BackendArg {
    /// iptables-restore as installed (what the units run).
    #[default]
    System,
    /// iptables-nft-restore.
    Nft,
    /// iptables-legacy-restore.
    Legacy,
}

impl From<BackendArg> for Backend {
    fn from(arg: BackendArg) -> Backend {
        match arg {
            BackendArg::System => Backend::System,
            BackendArg::Nft => Backend::Nft,
            BackendArg::Legacy => Backend::Legacy,
        }
    }
}

/// Runs the parsed command line and returns the process exit code.
pub fn run(cli: Cli) -> anyhow::Result<u8> {
    let layout = Layout::new(&cli.root);
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
        } => init(&policy_path(instance), *force, *stdout).map(|()| 0),
        Command::Render {
            instance,
            stdout,
            no_kernel_check,
            backend,
        } => render(
            &layout,
            instance,
            &policy_path(instance),
            *stdout,
            !*no_kernel_check,
            (*backend).into(),
        )
        .map(|()| 0),
        Command::Check { instance, backend } => {
            check(&layout, instance, &policy_path(instance), (*backend).into()).map(|()| 0)
        }
        Command::Install {
            instance,
            no_start,
            force,
        } => {
            let options = control::InstallOptions {
                no_start: *no_start,
                force: *force,
            };
            with_systemd(&cli, "install", |systemd| {
                control::install(
                    &target(&layout, instance, &policy_path(instance)),
                    systemd,
                    options,
                    &mut std::io::stdout(),
                )
            })
        }
        Command::Uninstall { instance } => with_systemd(&cli, "uninstall", |systemd| {
            control::uninstall(
                &target(&layout, instance, &policy_path(instance)),
                systemd,
                &mut std::io::stdout(),
            )
        }),
        Command::Start { instance } => job(&cli, &layout, instance, JobKind::Start),
        Command::Stop { instance } => job(&cli, &layout, instance, JobKind::Stop),
        Command::Restart { instance } => job(&cli, &layout, instance, JobKind::Restart),
        Command::Reload { instance } => {
            let manager = live_systemd(&cli, "reload")?;
            control::reload(
                &target(&layout, instance, &policy_path(instance)),
                &manager,
                &mut std::io::stdout(),
            )?;
            Ok(0)
        }
        Command::Audit { instance, json } => {
            require_live(&cli, "audit")?;
            let host = HostNet::read()?;
            let report =
                audit::audit_live(&SystemFirewall, &host, &LiveHost, &policy_path(instance))?;
            print_report(*json, &report, report.human())?;
            Ok(u8::from(report.is_flagged()))
        }
        Command::Explain {
            from,
            to,
            in_interface,
            json,
        } => {
            require_live(&cli, "explain")?;
            let host = HostNet::read()?;
            let walk =
                audit::explain_live(&SystemFirewall, &host, *from, to, in_interface.as_deref())?;
            print_report(*json, &walk, walk.human())?;
            Ok(0)
        }
        Command::Status { instance, json } => {
            let manager = live_systemd(&cli, "status")?;
            let report =
                control::status(&target(&layout, instance, &policy_path(instance)), &manager)?;
            print_report(*json, &report, report.human())?;
            Ok(report.exit_code())
        }
    }
}

/// Commands that read the live firewall: root, and not a staged tree.
fn require_live(cli: &Cli, command: &str) -> anyhow::Result<()> {
    require_live_host(
        cli,
        command,
        "reads the live firewall",
        "it reads the live firewall",
    )
}

/// Refuses a staged tree (`--root`) and a caller who is not root, saying why `command`
/// needs the live host (`needs`) and root (`why_root`).
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
    backend: Backend::System,
};

fn target<'a>(
    layout: &'a Layout,
    instance: &'a InstanceName,
    policy_path: &'a Path,
) -> control::Target<'a> {
    control::Target {
        layout,
        instance,
        policy_path,
        host: &LiveHost,
        trial: &SYSTEM_TRIAL,
        firewall: &SystemFirewall,
    }
}

fn staged(cli: &Cli) -> bool {
    cli.root != Path::new("/")
}

/// Connects to the running systemd, after checking the caller may change it.
fn live_systemd(cli: &Cli, command: &str) -> anyhow::Result<SystemdBus> {
    require_live_host(
        cli,
        command,
        "needs the running systemd",
        "it changes system services and reads the live firewall",
    )?;
    Ok(SystemdBus::system()?)
}

fn with_systemd(
    cli: &Cli,
    command: &str,
    action: impl FnOnce(control::Systemd<'_>) -> anyhow::Result<()>,
) -> anyhow::Result<u8> {
    if staged(cli) {
        action(control::Systemd::Staged)?;
    } else {
        let manager = live_systemd(cli, command)?;
        action(control::Systemd::Live(&manager))?;
    }
    Ok(0)
}

fn job(cli: &Cli, layout: &Layout, instance: &InstanceName, kind: JobKind) -> anyhow::Result<u8> {
    let manager = live_systemd(cli, &kind.to_string())?;
    let policy_path = layout.policy_path(instance);
    control::lifecycle(
        &target(layout, instance, &policy_path),
        &manager,
        kind,
        &mut std::io::stdout(),
    )?;
    Ok(0)
}

fn init(path: &Path, force: bool, stdout: bool) -> anyhow::Result<()> {
    let facts = StarterFacts::gather(&LiveHost);
    let (text, policy) = starter::starter_policy(&facts, path)?;
    if stdout {
        print_stdout(&text)?;
        return Ok(());
    }
    let (dir, name) = files::dir_and_name(path)?;
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let _lock = DirLock::acquire(dir)?;
    if path.exists() && !force {
        bail!(
            "{} already exists; edit it, or pass --force to replace it with a starter policy",
            path.display()
        );
    }
    files::write_files(dir, &[(name, text)])?;
    println!("wrote {}", path.display());
    for line in starter::summary(&facts, &policy) {
        println!("  {line}");
    }
    println!("next: review it, then `iptables-ctl check` and `iptables-ctl render`");
    Ok(())
}

fn render(
    layout: &Layout,
    instance: &InstanceName,
    policy_path: &Path,
    stdout: bool,
    kernel_check: bool,
    backend: Backend,
) -> anyhow::Result<()> {
    let dir = layout.config_dir();
    let _lock = if stdout {
        None
    } else {
        Some(DirLock::acquire(&dir).with_context(|| no_config_dir_hint(&dir))?)
    };
    let (policy, rendered) = instance::render_instance(layout, instance, policy_path, &LiveHost)?;
    if kernel_check {
        instance::prove(&policy, &rendered, &NetnsTrial { backend })
            .context("kernel check of the rendered files failed; nothing was written (--no-kernel-check skips the check)")?;
    }
    if stdout {
        let all: String = rendered
            .iter()
            .map(|f| f.text.as_str())
            .collect::<Vec<_>>()
            .join("\n");
        print_stdout(&all)?;
        return Ok(());
    }
    let summary = files::write_files(&dir, &RenderedFile::outputs(rendered))?;
    for line in summary.lines() {
        println!("{line}");
    }
    Ok(())
}

fn check(
    layout: &Layout,
    instance: &InstanceName,
    policy_path: &Path,
    backend: Backend,
) -> anyhow::Result<()> {
    let (policy, rendered) = instance::render_instance(layout, instance, policy_path, &LiveHost)?;
    println!("policy {} is valid", policy_path.display());
    let reports = instance::prove(&policy, &rendered, &NetnsTrial { backend })?;
    for (family, report) in reports {
        let restore = backend.restore_program(family);
        let rules = output_file_name(instance, family, TemplateKind::Rules);
        let empty = output_file_name(instance, family, TemplateKind::Empty);
        println!(
            "{rules}: {} rules loaded by {restore} in a throwaway network namespace; a second load changed nothing; {empty} loads too",
            report.rule_count
        );
    }
    Ok(())
}

fn no_config_dir_hint(dir: &Path) -> String {
    format!(
        "cannot use {} (run `iptables-ctl init` to create a policy there)",
        dir.display()
    )
}

/// Prints a report as pretty JSON or as its text for a person.
fn print_report(json: bool, report: &impl serde::Serialize, human: String) -> anyhow::Result<()> {
    if json {
        let text = serde_json::to_string_pretty(report).context("cannot encode the report")?;
        print_stdout(&format!("{text}\n"))
    } else {
        print_stdout(&human)
    }
}

/// Prints to stdout; a closed pipe (`| head`) is not an error worth a panic.
fn print_stdout(text: &str) -> anyhow::Result<()> {
    let mut out = std::io::stdout().lock();
    match out.write_all(text.as_bytes()).and_then(|()| out.flush()) {
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(()),
        other => other.context("cannot write to standard output"),
    }
}
