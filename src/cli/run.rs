//! What each command does: the dispatch of a parsed command line, and one small
//! function per command, each a sequence of library calls. The flows of
//! [`crate::control`] record what they do in an outcome; [`report`](super::report)
//! shows it (as it happens, or as one JSON document with `--json`) and gives the exit
//! code.

use std::path::Path;

use anyhow::bail;

use crate::audit;
use crate::backend::Backend;
use crate::cli::output::Output;
use crate::cli::report;
use crate::cli::{Cli, Command, UmbrellaAction, exit};
use crate::control::status;
use crate::control::{self, Event, Outcome, Verdict};
use crate::files::layout::Layout;
use crate::host::{HostProbe, LiveHost, StagedHost};
use crate::iptables::live::Snapshot;
use crate::iptables::trial::NetnsTrial;
use crate::iptables::{IptablesBackend, Tools};
use crate::lints::{self, Skips};
use crate::policy::types::InstanceName;
use crate::systemd::bus::SystemdBus;
use crate::systemd::{JobKind, ServiceManager};

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
            json,
        } => {
            let options = control::InitOptions {
                force: *force,
                stdout: *stdout,
            };
            let path = policy_path(instance);
            flow(out, *json, |outcome| {
                control::init(&layout, instance, &path, host, options, outcome)
            })
        }
        Command::Render {
            instance,
            stdout,
            no_kernel_check,
            iptables,
            json,
        } => {
            let path = policy_path(instance);
            let destination = if *stdout {
                control::Destination::Stdout
            } else {
                control::Destination::Files
            };
            with_tools((*iptables).into(), |backend| {
                let target = control::Target {
                    backend,
                    ..target(&layout, instance, &path, host)
                };
                flow(out, *json, |outcome| {
                    control::render(&target, destination, !*no_kernel_check, outcome)
                })
            })
        }
        Command::Check {
            instance,
            iptables,
            skip,
            json,
        } => {
            let path = policy_path(instance);
            let lint_host = if staged(&cli) {
                control::LintHost::Staged
            } else {
                control::LintHost::Live
            };
            let skips = Skips::new(skip.iter().copied());
            with_tools((*iptables).into(), |backend| {
                let target = control::Target {
                    backend,
                    ..target(&layout, instance, &path, host)
                };
                flow(out, *json, |outcome| {
                    control::check(&target, lint_host, &skips, outcome)
                })
            })
        }
        Command::Lints { json } => {
            let registry = lints::registry();
            report::print_report(
                *json,
                &report::Listing { lints: &registry },
                report::Changes::None,
                report::lints_text(&registry),
                out,
            )?;
            Ok(exit::SUCCESS)
        }
        Command::Install {
            instance,
            no_start,
            force,
            dry_run: dry,
            json,
        } => {
            let options = control::InstallOptions {
                no_start: *no_start,
                force: *force,
            };
            let path = policy_path(instance);
            let target = target(&layout, instance, &path, host);
            if *dry {
                dry_run(&cli, "install", *json, out, |manager| {
                    control::install_dry_run(&target, manager, options)
                })
            } else if staged(&cli) {
                flow(out, *json, |outcome| {
                    control::install(&target, control::Systemd::Staged, options, outcome)
                })
            } else {
                let manager = live_systemd(&cli, "install", "it changes system services")?;
                flow(out, *json, |outcome| {
                    control::install(&target, control::Systemd::Live(&manager), options, outcome)
                })
            }
        }
        Command::Uninstall {
            instance,
            dry_run: dry,
            json,
        } => {
            let path = policy_path(instance);
            let target = target(&layout, instance, &path, host);
            if *dry {
                dry_run(&cli, "uninstall", *json, out, |manager| {
                    control::uninstall_dry_run(&target, manager)
                })
            } else if staged(&cli) {
                flow(out, *json, |outcome| {
                    control::uninstall(&target, control::Systemd::Staged, outcome)
                })
            } else {
                let manager = live_systemd(&cli, "uninstall", "it changes system services")?;
                flow(out, *json, |outcome| {
                    control::uninstall(&target, control::Systemd::Live(&manager), outcome)
                })
            }
        }
        Command::Start {
            instance,
            force,
            dry_run,
            json,
        } => lifecycle(
            &cli,
            &target(&layout, instance, &policy_path(instance), host),
            JobKind::Start,
            Lifecycle {
                force: *force,
                dry_run: *dry_run,
                json: *json,
            },
            out,
        ),
        Command::Stop {
            instance,
            dry_run,
            json,
        } => lifecycle(
            &cli,
            &target(&layout, instance, &policy_path(instance), host),
            JobKind::Stop,
            Lifecycle {
                force: false,
                dry_run: *dry_run,
                json: *json,
            },
            out,
        ),
        Command::Restart {
            instance,
            force,
            dry_run,
            json,
        } => lifecycle(
            &cli,
            &target(&layout, instance, &policy_path(instance), host),
            JobKind::Restart,
            Lifecycle {
                force: *force,
                dry_run: *dry_run,
                json: *json,
            },
            out,
        ),
        Command::Reload {
            instance,
            dry_run: true,
            json,
            ..
        }
        | Command::Apply {
            instance,
            dry_run: true,
            json,
            ..
        } => {
            require_live(&cli, "--dry-run", "it reads the live firewall")?;
            let report =
                control::diff::diff(&target(&layout, instance, &policy_path(instance), host))?;
            print_dry_run(*json, &report, report.human(), out)
        }
        Command::Reload {
            instance,
            force,
            json,
            ..
        } => {
            let path = policy_path(instance);
            let target = target(&layout, instance, &path, host);
            systemd_flow(
                &cli,
                "reload",
                "it changes system services",
                &target,
                *json,
                out,
                |t, m, o| control::reload(t, m, *force, o),
            )
        }
        Command::Apply {
            instance,
            confirm_within,
            force,
            json,
            ..
        } => {
            let path = policy_path(instance);
            let target = target(&layout, instance, &path, host);
            systemd_flow(
                &cli,
                "apply",
                CHANGES_RULES,
                &target,
                *json,
                out,
                |t, m, o| control::apply::apply(t, m, *confirm_within, *force, o),
            )
        }
        Command::Confirm { instance, json } => {
            let path = policy_path(instance);
            let target = target(&layout, instance, &path, host);
            systemd_flow(
                &cli,
                "confirm",
                CHANGES_RULES,
                &target,
                *json,
                out,
                control::apply::confirm,
            )
        }
        Command::Rollback {
            instance,
            force,
            json,
        } => {
            let path = policy_path(instance);
            let target = target(&layout, instance, &path, host);
            systemd_flow(
                &cli,
                "rollback",
                CHANGES_RULES,
                &target,
                *json,
                out,
                |t, m, o| control::rollback::rollback(t, m, *force, o),
            )
        }
        Command::RollbackPending { instance } => {
            let path = policy_path(instance);
            let target = target(&layout, instance, &path, host);
            systemd_flow(
                &cli,
                "rollback-pending",
                CHANGES_RULES,
                &target,
                false,
                out,
                control::apply::rollback_pending,
            )
        }
        Command::Audit { instance, json } => {
            require_live(&cli, "audit", "it reads the live firewall")?;
            let net = host.network()?;
            let report = audit::audit_live(&SYSTEM_BACKEND, &net, host, &policy_path(instance))?;
            report::print_report(*json, &report, report::Changes::None, report.human(), out)?;
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
                audit::explain_live(&SYSTEM_BACKEND, &net, *from, to, in_interface.as_deref())?;
            report::print_report(*json, &walk, report::Changes::None, walk.human(), out)?;
            Ok(exit::SUCCESS)
        }
        Command::Diff { instance, json } => {
            // As diff(1): 0 the same, 1 different, 2 trouble; so trouble cannot be
            // read as "would change" by a script.
            let report = require_live(&cli, "diff", "it reads the live firewall").and_then(|()| {
                control::diff::diff(&target(&layout, instance, &policy_path(instance), host))
            });
            let printed = report.and_then(|report| {
                report::print_report(
                    *json,
                    &report,
                    report::Changes::Reported,
                    report.human(),
                    out,
                )?;
                Ok(report.changed)
            });
            match printed {
                Ok(true) => Ok(exit::DIFFERENT),
                Ok(false) => Ok(exit::SUCCESS),
                Err(error) => {
                    out.error(format!("{error:#}"));
                    Ok(exit::DIFF_TROUBLE)
                }
            }
        }
        Command::Status {
            instance,
            skip,
            json,
        } => {
            let manager = live_systemd(
                &cli,
                "status",
                "it reads the live firewall and asks systemd",
            )?;
            // Status only reads the live firewall: each read once.
            let snapshot = Snapshot::new(SYSTEM_BACKEND.firewall);
            let backend = IptablesBackend {
                firewall: &snapshot,
                ..SYSTEM_BACKEND
            };
            let report = status::status(
                &control::Target {
                    backend: &backend,
                    ..target(&layout, instance, &policy_path(instance), host)
                },
                &manager,
                &Skips::new(skip.iter().copied()),
            )?;
            report::print_report(*json, &report, report::Changes::None, report.human(), out)?;
            Ok(report::status_exit_code(&report))
        }
        Command::LoadSets { instance } => {
            require_live(&cli, "load-sets", "it changes the live firewall")?;
            flow(out, false, |outcome| {
                control::load_sets(&layout, instance, &SYSTEM_BACKEND, outcome)
            })
        }
        Command::ForwardJump { instance } => {
            require_live(&cli, "forward-jump", "it changes the live firewall")?;
            flow(out, false, |outcome| {
                control::forward_jump(&layout, instance, &SYSTEM_BACKEND, outcome)
            })
        }
        Command::PruneSets { instance } => {
            require_live(&cli, "prune-sets", "it changes the live firewall")?;
            flow(out, false, |outcome| {
                control::prune_sets(&layout, instance, &SYSTEM_BACKEND, outcome)
            })
        }
        Command::Manual { out: dir } => flow(out, false, |outcome| {
            for path in super::manual::write(dir)? {
                outcome.push(Event::FileWritten { path });
            }
            Ok(Verdict::Done)
        }),
        Command::Umbrella { action } => {
            let manager =
                live_systemd(&cli, "umbrella", "it asks systemd to start and stop units")?;
            let kind = match action {
                UmbrellaAction::Start => JobKind::Start,
                UmbrellaAction::Stop => JobKind::Stop,
                UmbrellaAction::Reload => JobKind::Reload,
            };
            flow(out, false, |outcome| {
                control::umbrella(&manager, kind, outcome)
            })
        }
    }
}

/// Runs a flow and shows its outcome: each event as it is recorded and the verdict at
/// the end, or (`json`) everything as one JSON document once the flow is over. A flow
/// that fails has what it recorded shown before its error (which `main` reports).
fn flow(
    out: &mut Output,
    json: bool,
    flow: impl FnOnce(&mut Outcome<'_>) -> anyhow::Result<Verdict>,
) -> anyhow::Result<u8> {
    if json {
        let mut outcome = Outcome::new();
        let result = flow(&mut outcome);
        // Saying what happened never turns into a failure of what happened.
        if let Err(e) = report::print_json(outcome.events(), &result, out) {
            out.warn(format!("{e:#}"));
        }
        return result.map(|verdict| report::exit_code(&verdict));
    }
    let result = {
        let mut show = |event: &Event| report::print_event(event, out);
        let mut outcome = Outcome::observed(&mut show);
        flow(&mut outcome)
    };
    let verdict = result?;
    report::print_verdict(&verdict, out);
    Ok(report::exit_code(&verdict))
}

/// Runs `f` with the iptables backend whose kernel check uses the programs of `tools`
/// (`--iptables`); everything else is the system's, the live firewall read once
/// ([`Snapshot`]: `render` and `check` only read it).
fn with_tools<T>(tools: Tools, f: impl FnOnce(&dyn Backend) -> T) -> T {
    let trial = NetnsTrial { tools };
    let snapshot = Snapshot::new(SYSTEM_BACKEND.firewall);
    f(&IptablesBackend {
        trial: &trial,
        tools,
        firewall: &snapshot,
    })
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
        backend: &SYSTEM_BACKEND,
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

/// The backend every command uses.
const SYSTEM_BACKEND: IptablesBackend<'static> = crate::iptables::backend::SYSTEM;

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

/// Why the commands that load rules through systemd need root.
const CHANGES_RULES: &str = "it changes the live firewall";

/// A flow run against the running systemd (refusing a staged tree, and a caller who is
/// not root, saying `why_root`): `run` on `target` with the system's manager.
fn systemd_flow(
    cli: &Cli,
    command: &str,
    why_root: &str,
    target: &control::Target<'_>,
    json: bool,
    out: &mut Output,
    run: impl FnOnce(
        &control::Target<'_>,
        &dyn ServiceManager,
        &mut Outcome<'_>,
    ) -> anyhow::Result<Verdict>,
) -> anyhow::Result<u8> {
    let manager = live_systemd(cli, command, why_root)?;
    flow(out, json, |outcome| run(target, &manager, outcome))
}

/// A `--dry-run` of a command that changes system services: its report (what it would
/// do) from `plan` against the running systemd, shown as text or JSON. Exit 0: it ran,
/// whatever it found (`changed` says whether the command would change the host).
fn dry_run(
    cli: &Cli,
    command: &str,
    json: bool,
    out: &mut Output,
    plan: impl FnOnce(&dyn ServiceManager) -> anyhow::Result<control::dry_run::DryRunReport>,
) -> anyhow::Result<u8> {
    if staged(cli) {
        bail!(
            "{command} --dry-run asks the running systemd and reads the live firewall, so it works on this host only, not on a tree staged with --root"
        );
    }
    let manager = live_systemd(
        cli,
        &format!("{command} --dry-run"),
        "it reads the live firewall and asks systemd",
    )?;
    let report = plan(&manager)?;
    print_dry_run(json, &report, report.human(), out)
}

/// Shows what a dry run found (its `changed` is its own); exit 0.
fn print_dry_run(
    json: bool,
    report: &impl serde::Serialize,
    human: String,
    out: &mut Output,
) -> anyhow::Result<u8> {
    report::print_report(json, report, report::Changes::Reported, human, out)?;
    Ok(exit::SUCCESS)
}

/// The flags `start`, `stop` and `restart` share.
struct Lifecycle {
    force: bool,
    dry_run: bool,
    json: bool,
}

fn lifecycle(
    cli: &Cli,
    target: &control::Target<'_>,
    kind: JobKind,
    flags: Lifecycle,
    out: &mut Output,
) -> anyhow::Result<u8> {
    if flags.dry_run {
        return dry_run(cli, &kind.to_string(), flags.json, out, |manager| {
            control::lifecycle_dry_run(target, manager, kind, flags.force)
        });
    }
    let manager = live_systemd(cli, &kind.to_string(), "it changes system services")?;
    flow(out, flags.json, |outcome| {
        control::lifecycle(target, &manager, kind, flags.force, outcome)
    })
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
