//! The flows: the commands that put an instance in force, take it out and say whether
//! it is, one file per flow. `init.rs` (the starter policy), `render.rs` (`render`,
//! `check`), `diff.rs` (what applying the policy would change live), `dry_run.rs`
//! (the report of `--dry-run`, whose steps each flow's file computes), `apply.rs`
//! (`apply --confirm-within`, `confirm`, and the rollback systemd runs when nobody
//! confirmed), `rollback.rs` (back to the previous generation), `install.rs`,
//! `uninstall.rs`, `lifecycle.rs` (`start`, `stop`, `restart`), `reload.rs`, `status.rs` (the in-force check) and `unit_hooks.rs` (what the units
//! run: `forward-jump` after every load, `umbrella` for `systemctl start|stop|reload
//! iptables`); beside them `outcome.rs` (the events and verdict a flow returns),
//! `undo.rs` (the one serializable undo record), `conflicts.rs` (other firewall setups)
//! and, for tests, `fakes.rs`.
//!
//! Each flow is a sequence over the parts it needs (the file layout, the firewall
//! backend behind [`Backend`], systemd behind [`ServiceManager`]) with three rules:
//! everything that can be checked is checked before anything changes (a refusal says
//! the files and live rules were left as they are); a step that fails after files were
//! replaced puts them back (the `undo::Transaction`); and a command that changed the
//! live rules ends with the `status` check, its `Verdict` "in force" only when it
//! passes. The flows render, prove and load through the backend and name none of its
//! types.
//!
//! Flows print nothing: they record `outcome::Event`s in an `Outcome` and return a
//! `Verdict`; the command line shows them. This module holds what every flow shares:
//! what it works on (`Target`, `Systemd`), running a job and explaining its
//! failure, the refusal wording, the proof and SSH checks before a change, and the
//! closing in-force check. A proof mostly waits for the kernel in namespaces of its
//! own, so what the flows read of the host beside it (interfaces, SSH sessions, live
//! rules) is read meanwhile, on a second thread (`while_proving`), and those reads,
//! child processes that mostly wait too, at once (`HostReads`, `at_once`).
//!
//! "Started" means the whole set: the rules unit and the re-assertion after Docker
//! starts (`iptables-docker@`), which stops with it. "Stopped" means stopped until
//! started: a Docker restart does not bring the rules back.

pub(crate) mod apply;
pub(crate) mod conflicts;
pub(crate) mod diff;
pub(crate) mod dry_run;
mod init;
mod install;
mod lifecycle;
pub(crate) mod outcome;
mod reload;
mod render;
pub(crate) mod rollback;
pub(crate) mod status;
pub(crate) mod undo;
mod uninstall;
mod unit_hooks;

#[cfg(test)]
pub(crate) mod fakes;

use anyhow::{Context as _, bail};

pub(crate) use init::{InitOptions, NextStep, init};
pub(crate) use install::{InstallOptions, install, install_dry_run};
pub(crate) use lifecycle::{lifecycle, lifecycle_dry_run};
pub(crate) use outcome::{Event, Outcome, Verdict};
pub(crate) use reload::reload;
pub(crate) use render::{Destination, LintHost, check, render};
pub(crate) use uninstall::{uninstall, uninstall_dry_run};
pub(crate) use unit_hooks::{forward_jump, load_sets, prune_sets, umbrella};

use crate::backend::{Backend, LiveRules, Lockout, Proof, Rendered, VariantFindings};
use crate::files::DirLock;
use crate::files::generations::Generations;
use crate::files::layout::Layout;
use crate::host::net::HostNet;
use crate::host::{HostProbe, OpenSessions, Remembered};
use crate::policy::Policy;
use crate::policy::types::InstanceName;
use crate::systemd::{JobKind, JobResult, ServiceManager, journal};

/// How many journal lines a failure report shows.
const JOURNAL_LINES: usize = 15;

/// What every command works on.
#[derive(Clone, Copy)]
pub(crate) struct Target<'a> {
    /// Where files live (`/` or a staged `--root`).
    pub layout: &'a Layout,
    /// The instance.
    pub instance: &'a InstanceName,
    /// Its policy file.
    pub policy_path: &'a std::path::Path,
    /// The host the policy is rendered for.
    pub host: &'a dyn HostProbe,
    /// The firewall backend: renders, proves and loads the files, reads the live rules.
    pub backend: &'a dyn Backend,
}

/// Where systemd is: a live manager, or a staged tree (`--root`) with none.
pub(crate) enum Systemd<'a> {
    /// A running systemd.
    Live(&'a dyn ServiceManager),
    /// A staged tree: unit files and enable links are written, nothing is run.
    Staged,
}

impl<'a> Systemd<'a> {
    /// The running systemd, if there is one.
    fn manager(&self) -> Option<&'a dyn ServiceManager> {
        match self {
            Systemd::Live(manager) => Some(*manager),
            Systemd::Staged => None,
        }
    }
}

/// A job that did not end in `done`, with what systemd and the journal say.
#[derive(Debug, thiserror::Error)]
#[error("{unit}: {kind} {result} ({why})\n{details}", why = result.explanation())]
pub(crate) struct JobFailed {
    /// The unit.
    pub unit: String,
    /// What was asked.
    pub kind: JobKind,
    /// How it ended.
    pub result: JobResult,
    /// Unit state and journal lines, ready to print.
    pub details: String,
}

/// Runs a job and turns anything but `done` into [`JobFailed`] with the unit's state
/// and its last journal lines.
pub(crate) fn run_job(
    manager: &dyn ServiceManager,
    kind: JobKind,
    unit: &str,
) -> anyhow::Result<()> {
    match manager.run_job(kind, unit)? {
        JobResult::Done => Ok(()),
        result => Err(job_failed(manager, kind, unit, result).into()),
    }
}

/// The [`JobFailed`] for a job on `unit` that ended in `result`.
fn job_failed(
    manager: &dyn ServiceManager,
    kind: JobKind,
    unit: &str,
    result: JobResult,
) -> JobFailed {
    JobFailed {
        unit: unit.to_owned(),
        kind,
        result,
        details: failure_details(manager, unit),
    }
}

/// The unit's state and last journal lines, indented, for a failure report.
pub(crate) fn failure_details(manager: &dyn ServiceManager, unit: &str) -> String {
    let mut text = match manager.unit_status(unit) {
        Ok(status) => format!(
            "  state: {} ({}){}\n",
            status.active_state,
            status.sub_state,
            status
                .result
                .as_deref()
                .filter(|r| *r != "success")
                .map(|r| format!(", result: {r}"))
                .unwrap_or_default()
        ),
        Err(e) => format!("  state: unknown ({e})\n"),
    };
    text.push_str(&format!("  last journal lines of {unit}:\n"));
    for line in journal::unit_tail(unit, JOURNAL_LINES) {
        text.push_str(&format!("    {line}\n"));
    }
    text
}

/// The context every refusal carries: nothing was touched.
fn refused(command: &str) -> String {
    format!("{command} refused; {UNCHANGED}")
}

/// The policy file's text, bounded as the policy loader bounds it.
fn policy_text(path: &std::path::Path) -> anyhow::Result<String> {
    let bytes = crate::files::source::read(path, crate::files::source::POLICY_LIMIT)?;
    String::from_utf8(bytes).with_context(|| format!("{} is not text", path.display()))
}

/// The instance's files on disk as `(name, text)`, in the set's order.
fn files_in_force(target: &Target<'_>) -> anyhow::Result<Vec<(String, String)>> {
    Ok(target
        .backend
        .output_set(target.layout, target.instance)
        .read()?
        .files()
        .map(|(name, bytes)| (name.to_owned(), String::from_utf8_lossy(bytes).into_owned()))
        .collect())
}

/// Keeps the rule set now in force as the instance's next generation (`policy`, the
/// text that was rendered, whatever the file says by now; its files and what the
/// kernel holds), for `rollback`, unless the newest one already has this policy and
/// these files. A generation that cannot be kept is said, not a failure: the change it
/// records is done.
fn keep_generation_of(
    target: &Target<'_>,
    command: &str,
    policy: anyhow::Result<String>,
    outcome: &mut Outcome<'_>,
) {
    let kept = (|| -> anyhow::Result<_> {
        let policy = policy?;
        let files = files_in_force(target)?;
        let live = target.backend.live_snapshot()?;
        Generations::of(target.layout, target.instance).record(
            command,
            target.policy_path,
            &policy,
            &files,
            &live,
        )
    })();
    match kept {
        Ok(Some(generation)) => outcome.push(Event::GenerationKept {
            number: generation.number,
        }),
        Ok(None) => {}
        Err(e) => outcome.warn(format!(
            "the rules are in place, but they could not be kept as a generation for `rollback`: {e:#}"
        )),
    }
}

/// How long a changing command waits for another run to finish with the rules.
const LOCK_WAIT: std::time::Duration = std::time::Duration::from_secs(120);

/// Locks the configuration directory for a command that changes the rules, waiting
/// (and saying so) while another run holds it.
fn lock_config(target: &Target<'_>, outcome: &mut Outcome<'_>) -> anyhow::Result<DirLock> {
    lock_dir(&target.layout.config_dir(), outcome)
}

/// Locks `dir` (the configuration directory, or another policy's), waiting and saying
/// so while another run holds it.
fn lock_dir(dir: &std::path::Path, outcome: &mut Outcome<'_>) -> anyhow::Result<DirLock> {
    Ok(DirLock::acquire_within(dir, LOCK_WAIT, &mut || {
        outcome.warn(format!(
            "waiting for the lock on {}: another iptables-ctl run is changing the rules",
            dir.display()
        ));
    })?)
}

/// What every refusal says.
pub(crate) const UNCHANGED: &str =
    "nothing was changed: the files and the live rules were left as they are";

/// Renders and proves the instance's files; nothing is written. Returns the files and
/// their proof.
fn render_and_prove(target: &Target<'_>, policy: &Policy) -> anyhow::Result<(Rendered, Proof)> {
    let rendered = target
        .backend
        .render(target.layout, target.instance, policy)?;
    let proof = target
        .backend
        .prove(target.instance, policy, &rendered)
        .context("kernel check of the rendered files failed")?;
    Ok((rendered, proof))
}

/// The instance's files rendered and proven (nothing written), with what the host says
/// beside them: what is wrong with the policy's interface names, and the SSH sessions
/// open now, for the lockout check.
pub(crate) struct Proven {
    /// The files.
    pub(crate) rendered: Rendered,
    /// Their proof.
    pub(crate) proof: Proof,
    /// [`interface_problems`] of the policy on this host.
    pub(crate) interfaces: Vec<InterfaceProblem>,
    /// The SSH sessions open now.
    pub(crate) sessions: OpenSessions,
}

impl Proven {
    /// [`refuse_lockouts`] of these files' rules and sessions.
    fn refuse_lockouts(
        &self,
        command: &str,
        target: &Target<'_>,
        force: bool,
        outcome: &mut Outcome<'_>,
    ) -> anyhow::Result<()> {
        refuse_lockouts(command, target, &self.proof, &self.sessions, force, outcome)
    }
}

/// [`render_and_prove`], reading the host's side of [`Proven`] while the files are
/// proven.
fn render_prove_and_read_host(target: &Target<'_>, policy: &Policy) -> anyhow::Result<Proven> {
    let rendered = target
        .backend
        .render(target.layout, target.instance, policy)?;
    let (host, proof) = while_proving(
        || interfaces_and_sessions(policy, target.host),
        || target.backend.prove(target.instance, policy, &rendered),
    )?;
    let proof = proof.context("kernel check of the rendered files failed")?;
    let (interfaces, sessions) = host?;
    Ok(Proven {
        rendered,
        proof,
        interfaces,
        sessions,
    })
}

/// Runs `read` (reads of the host) on a second thread while `prove` runs on this one,
/// and returns both answers: a proof mostly waits for the kernel in namespaces of its
/// own, so the host is read meanwhile. `prove` stays on this thread (a test's fakes may
/// answer per thread).
pub(crate) fn while_proving<R: Send, P>(
    read: impl FnOnce() -> R + Send,
    prove: impl FnOnce() -> P,
) -> anyhow::Result<(R, P)> {
    at_once(read, prove)
}

/// Runs `first` on a thread of its own while `second` runs on this one, and returns
/// both answers: for work that mostly waits (on child processes, on the kernel).
pub(crate) fn at_once<A: Send, B>(
    first: impl FnOnce() -> A + Send,
    second: impl FnOnce() -> B,
) -> anyhow::Result<(A, B)> {
    std::thread::scope(|scope| {
        let running = scope.spawn(first);
        let second = second();
        let first = running
            .join()
            .map_err(|_| anyhow::anyhow!("a thread reading the host failed unexpectedly"))?;
        Ok((first, second))
    })
}

/// The interface problems of `policy` and the SSH sessions open now, read at once.
fn interfaces_and_sessions(
    policy: &Policy,
    host: &dyn HostProbe,
) -> anyhow::Result<(Vec<InterfaceProblem>, OpenSessions)> {
    at_once(
        || interface_problems(policy, host),
        || OpenSessions::read(host),
    )
}

/// What the lints and the audit read of the live host: both families' live rules, its
/// addresses and routes, and the other iptables variant.
pub(crate) struct HostReads {
    /// Both families' live rules.
    pub rules: anyhow::Result<Box<dyn LiveRules>>,
    /// The host's interfaces, addresses and routes.
    pub net: anyhow::Result<HostNet>,
    /// The other iptables variant.
    pub variants: Result<VariantFindings, String>,
}

impl HostReads {
    /// Reads the live host through `backend` and `host`, and has `host` remember its
    /// default routes' interfaces and interface names, which the interface checks ask
    /// later. Each read is a child process or a few that mostly wait (on the kernel, on
    /// each other's start), so each runs on a thread of its own, all at once.
    pub(crate) fn read(backend: &dyn Backend, host: &Remembered<'_>) -> HostReads {
        let failed = |what: &str| format!("the thread reading {what} failed unexpectedly");
        std::thread::scope(|scope| {
            let rules = scope.spawn(|| backend.live_rules());
            let variants = scope.spawn(|| backend.variant_findings());
            let uplinks = scope.spawn(|| host.default_route_interfaces().map(drop));
            let names = scope.spawn(|| host.interface_names().map(drop));
            let net = host.network();
            // What the two last read is kept in `host`, errors too: it answers from it.
            // A thread that panicked left nothing there, and the next asker asks again.
            let _ = (uplinks.join(), names.join());
            HostReads {
                rules: rules
                    .join()
                    .unwrap_or_else(|_| Err(anyhow::anyhow!(failed("the live rules")))),
                net,
                variants: variants
                    .join()
                    .unwrap_or_else(|_| Err(failed("the iptables variants"))),
            }
        })
    }
}

/// What is wrong between the interface names of `policy` and this host: names that do
/// not exist, Docker bridge patterns that match an interface facing the outside, or
/// that the host's names could not be read (a staged tree knows no interfaces, so has
/// none of these).
pub(crate) fn interface_problems(policy: &Policy, host: &dyn HostProbe) -> Vec<InterfaceProblem> {
    let existing = match host.interface_names() {
        Ok(existing) => existing,
        // Not checked is not "no problem": a misspelt name would go unnoticed, and the
        // Docker bridge patterns would not be checked against the uplinks.
        Err(e) => return vec![InterfaceProblem::Unreadable(e.to_string())],
    };
    if existing.is_empty() {
        return Vec::new();
    }
    let mut problems = Vec::new();
    let mut uplinks = host.default_route_interfaces().unwrap_or_else(|e| {
        problems.push(InterfaceProblem::RoutesUnreadable(e.to_string()));
        Vec::new()
    });
    uplinks.extend(
        policy
            .named_interfaces()
            .into_iter()
            .filter(|named| named.field == "interfaces.external")
            .flat_map(|named| {
                existing
                    .iter()
                    .filter(|e| named.matches(e))
                    .cloned()
                    .collect::<Vec<_>>()
            }),
    );
    uplinks.sort();
    uplinks.dedup();
    problems.extend(
        policy
            .missing_interfaces(&existing)
            .into_iter()
            .map(InterfaceProblem::Missing),
    );
    problems.extend(
        policy
            .bridges_matching_uplinks(&uplinks)
            .into_iter()
            .map(InterfaceProblem::BridgeIsUplink),
    );
    problems
}

/// Something wrong between the interface names of a policy and this host.
#[derive(Debug, thiserror::Error)]
pub(crate) enum InterfaceProblem {
    /// A name or pattern of the policy that this host has no interface for, located in
    /// the policy.
    #[error(transparent)]
    Missing(crate::policy::PolicyError),
    /// A Docker bridge pattern of the policy that matches an interface facing the
    /// outside, located in the policy.
    #[error(transparent)]
    BridgeIsUplink(crate::policy::PolicyError),
    /// The host's interface names could not be read, so the policy's were not checked.
    #[error(
        "the host's interface names could not be read ({0}), so the names the policy gives were not checked"
    )]
    Unreadable(String),
    /// The host's default routes could not be read, so the Docker bridge patterns were
    /// not checked against the interfaces facing the outside.
    #[error(
        "the host's default routes could not be read ({0}), so the Docker bridge patterns were not checked against the interfaces facing the outside"
    )]
    RoutesUnreadable(String),
}

/// Warns about each of the interface `problems`.
fn warn_interface_problems(problems: &[InterfaceProblem], outcome: &mut Outcome<'_>) {
    for problem in problems {
        outcome.warn(problem);
    }
}

/// Refuses (unless `force`) when the rules `proof` loaded would refuse new connections
/// of one of the SSH `sessions` open now.
fn refuse_lockouts(
    command: &str,
    target: &Target<'_>,
    proof: &Proof,
    sessions: &OpenSessions,
    force: bool,
    outcome: &mut Outcome<'_>,
) -> anyhow::Result<()> {
    let lockouts = target.backend.lockouts(sessions, proof);
    if lockouts.is_empty() {
        return Ok(());
    }
    if force {
        for lockout in &lockouts {
            outcome.warn(format!("(--force) {lockout}"));
        }
        return Ok(());
    }
    bail!(lockout_refusal(command, &lockouts))
}

/// The refusal message for `lockouts`, naming each session and port.
fn lockout_refusal(command: &str, lockouts: &[Lockout]) -> String {
    let list: Vec<String> = lockouts.iter().map(|l| format!("  - {l}")).collect();
    format!(
        "refusing to {command}: the new rules would lock out SSH; {UNCHANGED}\n{}\n\
         (allow the port under [[host.services]], or pass --force if you have another way in)",
        list.join("\n")
    )
}

/// Ends a command that changed the live rules: the `status` check, and its verdict; the
/// lints' warnings are recorded as warnings. A check that cannot run is reported, never
/// turned into a failure of the change.
fn in_force(
    target: &Target<'_>,
    manager: &dyn ServiceManager,
    outcome: &mut Outcome<'_>,
) -> Verdict {
    let report = status::status(target, manager, &crate::lints::Skips::default());
    if let Ok(report) = &report {
        // The errors are the verdict's problems.
        outcome.lints(
            report
                .lints
                .iter()
                .filter(|f| f.severity == crate::lints::Severity::Warning)
                .cloned(),
        );
    }
    match report {
        Ok(report) if report.in_force => Verdict::InForce {
            summary: report.in_force_line(),
        },
        Ok(report) => Verdict::NotInForce {
            problems: report.problems,
        },
        Err(e) => Verdict::CheckFailed {
            error: format!("{e:#}"),
        },
    }
}

#[cfg(test)]
mod tests {
    use std::io;
    use std::path::Path;

    use super::*;
    use crate::command::ToolError;
    use crate::control::fakes::{
        AcceptingTrial, FakeHost, POLICY, ReadingFirewall, ReadingHost, Rendezvous,
    };
    use crate::host::net::HostNet;
    use crate::iptables::{IptablesBackend, Tools, Variant};

    /// The host is read while the proof runs, not before nor after it: each side hears
    /// from the other before it returns (within a bound, so that one after the other
    /// fails the test instead of hanging it).
    #[test]
    fn the_host_is_read_while_the_files_are_proven() {
        use std::sync::mpsc::channel;
        use std::time::Duration;
        let bound = Duration::from_secs(30);
        let (to_reader, reader_hears) = channel();
        let (to_prover, prover_hears) = channel();
        let (read, proved) = while_proving(
            move || {
                to_prover.send(()).expect("send");
                reader_hears.recv_timeout(bound).is_ok()
            },
            move || {
                to_reader.send(()).expect("send");
                prover_hears.recv_timeout(bound).is_ok()
            },
        )
        .expect("no thread died");
        assert_eq!((read, proved), (true, true));
    }

    /// A host and a firewall whose every read waits at one meeting until all the reads
    /// [`HostReads::read`] makes are inside at once: the host's network, default routes
    /// and interface names, both families' live rules, and the other variant's.
    struct Meeting(Rendezvous);

    impl Meeting {
        fn arrive(&self) -> io::Result<()> {
            if self.0.arrive() {
                Ok(())
            } else {
                Err(io::Error::other("read alone"))
            }
        }

        /// Arrives as `program` would be run.
        fn run(&self, program: &str) -> Result<(), ToolError> {
            self.arrive().map_err(|source| ToolError::Spawn {
                program: program.to_owned(),
                source,
            })
        }
    }

    /// The lints' and the audit's reads of the live host are made at once, each on a
    /// thread of its own, and the host remembers its interfaces for the interface
    /// checks: six reads meet (the network, the default routes, the interface names,
    /// each family's live rules, the other variant's), which one after the other could
    /// not.
    #[test]
    fn the_live_host_is_read_at_once() {
        let meeting = Meeting(Rendezvous::new(6));
        let firewall = ReadingFirewall {
            variant: Box::new(|()| Some(Variant::Nft)),
            save: Box::new(|family| {
                meeting
                    .run(&format!("{family} save"))
                    .map(|()| String::new())
            }),
            save_other_variant: Box::new(|_| {
                meeting
                    .run("the other variant's save")
                    .map(|()| Some(String::new()))
            }),
            ..ReadingFirewall::default()
        };
        let backend = IptablesBackend {
            tools: Tools::System,
            trial: &AcceptingTrial,
            firewall: &firewall,
        };
        let asked = std::sync::atomic::AtomicUsize::new(0);
        let ask = || asked.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        let host = ReadingHost {
            default_route_interfaces: Box::new(|()| {
                ask();
                meeting.arrive().map(|()| vec!["eth0".to_owned()])
            }),
            interface_names: Box::new(|()| {
                ask();
                meeting
                    .arrive()
                    .map(|()| vec!["eth0".to_owned(), "lo".to_owned()])
            }),
            network: Box::new(|()| Ok(meeting.arrive().map(|()| HostNet::default())?)),
            ..ReadingHost::default()
        };
        let remembered = Remembered::new(&host);
        let read = HostReads::read(&backend, &remembered);
        assert!(read.rules.is_ok(), "{:?}", read.rules.err());
        assert!(read.net.is_ok(), "{:?}", read.net.err());
        assert!(read.variants.is_ok(), "{:?}", read.variants.err());
        // The interface checks after it are answered from what was read.
        assert_eq!(remembered.interface_names().unwrap(), ["eth0", "lo"]);
        assert_eq!(remembered.default_route_interfaces().unwrap(), ["eth0"]);
        assert_eq!(asked.load(std::sync::atomic::Ordering::SeqCst), 2);
    }

    /// A policy naming interfaces on a host whose interfaces cannot be listed is a
    /// problem, not "no problem": the names may be misspelt, and status must not say
    /// "in force" on a check that did not run.
    #[test]
    fn interface_names_that_cannot_be_read_are_a_problem() {
        let policy = Policy::parse(Path::new("base.toml"), POLICY.as_bytes()).unwrap();
        // A live host whose interface names cannot be read (`ip` missing or failing).
        let unreadable = ReadingHost {
            interface_names: Box::new(|()| Err(io::Error::other("ip: command not found"))),
            ..ReadingHost::default()
        };
        let problems = interface_problems(&policy, &unreadable);
        assert_eq!(problems.len(), 1, "{problems:?}");
        let text = problems[0].to_string();
        assert!(
            text.contains("interface names could not be read")
                && text.contains("ip: command not found"),
            "{text}"
        );
        assert!(interface_problems(&policy, &FakeHost).is_empty());
    }
}
