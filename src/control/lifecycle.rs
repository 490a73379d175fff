//! `start`, `stop`, `restart` of an installed instance, and the two steps on its set of
//! units that other flows share: stopping the set, and starting what follows the rules
//! (the re-assertion after Docker, the umbrella).

use anyhow::{Context as _, bail};

use crate::backend::{Proof, Rendered};
use crate::control::apply::refuse_while_pending;
use crate::control::diff::{self, DiffReport};
use crate::control::dry_run::DryRunReport;
use crate::control::outcome::{Event, Outcome, Verdict};
use crate::control::{
    Target, UNCHANGED, conflicts, files_in_force, in_force, job_failed, lock_config,
    refuse_lockouts, run_job, while_proving,
};
use crate::host::OpenSessions;
use crate::policy::types::InstanceName;
use crate::systemd::units::InstanceUnits;
use crate::systemd::{JobKind, JobResult, ServiceManager, UnitStatus};

/// `start`, `stop`, `restart`. Start and restart act on the whole set (rules and the
/// re-assertion after Docker), refuse rules that would lock out an SSH session open
/// now (unless `force`), and end with the status check. Restart first proves the files
/// on disk (files that would not load are refused while the old rules still stand),
/// then loads them with no gap: on an active instance it is a reload, never a stop and
/// a start, which would leave the host open if the start failed.
pub(crate) fn lifecycle(
    target: &Target<'_>,
    manager: &dyn ServiceManager,
    kind: JobKind,
    force: bool,
    outcome: &mut Outcome<'_>,
) -> anyhow::Result<Verdict> {
    let instance = target.instance;
    let units = InstanceUnits::new(instance);
    let status = installed_status(manager, &units, instance)?;
    match kind {
        JobKind::Stop => {
            stop_set(manager, &units)?;
            outcome.push(Event::Stopped {
                unit: units.rules.clone(),
                instance: instance.to_string(),
                was_active: status.is_active(),
            });
            // iptables.service says whether an instance runs: `systemctl start iptables`
            // must not find it active and do nothing.
            if conflicts::other_instances(target.layout.root(), instance).is_empty()
                && let Err(e) = run_job(manager, JobKind::Stop, &units.umbrella)
            {
                outcome.warn(format!("{e:#}"));
            }
            Ok(Verdict::Done)
        }
        JobKind::Start | JobKind::Restart | JobKind::Reload => {
            // The files proven are the files loaded: no render or reload may replace
            // the set in between.
            let _lock = lock_config(target, outcome)?;
            refuse_while_pending(target, &kind.to_string())?;
            let changes_rules = kind != JobKind::Start || !status.is_active();
            if changes_rules {
                prove_on_disk(target, kind, force, outcome)?;
            }
            // A restart of an active instance is a reload: a stop loads the
            // pass-through files, and a start that then failed would leave the host
            // open. Reloading loads the same files with no gap, and a reload that fails
            // leaves the rules that were in force.
            let job = match kind {
                JobKind::Restart if status.is_active() => {
                    outcome.push(Event::RestartIsReload {
                        unit: units.rules.clone(),
                    });
                    JobKind::Reload
                }
                JobKind::Restart => JobKind::Start,
                other => other,
            };
            run_job(manager, job, &units.rules)?;
            outcome.push(Event::Started {
                unit: units.rules.clone(),
                job,
                was_active: status.is_active(),
            });
            start_rest_of_set(manager, &units, outcome);
            Ok(in_force(target, manager, outcome))
        }
    }
}

/// `start`, `stop`, `restart` with `--dry-run`: the checks each makes first (the files
/// on disk proven, SSH sessions), then what it would do and what loading the files
/// would change live. Nothing is run.
pub(crate) fn lifecycle_dry_run(
    target: &Target<'_>,
    manager: &dyn ServiceManager,
    kind: JobKind,
    force: bool,
) -> anyhow::Result<DryRunReport> {
    let instance = target.instance;
    let mut report = DryRunReport::new(&kind.to_string(), instance.as_str());
    let units = InstanceUnits::new(instance);
    let status = installed_status(manager, &units, instance)?;
    if kind == JobKind::Stop {
        if status.is_active() {
            report.step(pass_through_step(&units));
        }
        return Ok(report);
    }
    refuse_while_pending(target, &kind.to_string())?;
    if kind == JobKind::Start && status.is_active() {
        reassertion_step(manager, &units, &mut report)?;
        return Ok(report);
    }
    let mut outcome = Outcome::new();
    let proof = prove_on_disk(target, kind, force, &mut outcome)?;
    report.warnings_of(&outcome);
    if status.is_active() {
        report.step(format!(
            "reload {}: the files on disk load again with no gap",
            units.rules
        ));
    } else {
        report.step(format!(
            "start {} (the rules load) and {} (they are re-asserted after every Docker start)",
            units.rules, units.docker
        ));
    }
    let mut diff = diff_of_disk(target, &proof)?;
    // The files on disk are what is loaded: there are none to write.
    diff.files.clear();
    report.with_diff(diff);
    Ok(report)
}

/// Proves the files on disk before `kind` loads them, and refuses (unless `force`) rules
/// that would lock out an SSH session open now.
fn prove_on_disk(
    target: &Target<'_>,
    kind: JobKind,
    force: bool,
    outcome: &mut Outcome<'_>,
) -> anyhow::Result<Proof> {
    let (sessions, proof) = while_proving(
        || OpenSessions::read(target.host),
        || target.backend.prove_on_disk(target.layout, target.instance),
    )?;
    let proof = proof.with_context(|| {
        format!("refusing to {kind}: the rules on disk would not load; {UNCHANGED}")
    })?;
    refuse_lockouts(&kind.to_string(), target, &proof, &sessions, force, outcome)?;
    Ok(proof)
}

/// The rules unit's status; an instance that is not installed is refused.
fn installed_status(
    manager: &dyn ServiceManager,
    units: &InstanceUnits,
    instance: &InstanceName,
) -> anyhow::Result<UnitStatus> {
    let status = manager.unit_status(&units.rules)?;
    if !status.is_installed() {
        bail!(
            "{} is not installed (run `iptables-ctl install {instance}`); {UNCHANGED}",
            units.rules
        );
    }
    Ok(status)
}

/// What loading the files on disk (proven as `proof`) would change in the live rules.
fn diff_of_disk(target: &Target<'_>, proof: &Proof) -> anyhow::Result<DiffReport> {
    diff::diff_of(target, &Rendered::new(files_in_force(target)?), proof)
}

/// The step of starting the re-assertion after Docker when the rules unit is active
/// and Docker runs but the re-assertion does not (its start loads the rules again).
pub(super) fn reassertion_step(
    manager: &dyn ServiceManager,
    units: &InstanceUnits,
    report: &mut DryRunReport,
) -> anyhow::Result<()> {
    if manager.unit_status("docker.service")?.is_active()
        && !manager.unit_status(&units.docker)?.is_active()
    {
        report.step(format!(
            "start {}: Docker runs, and its rules are re-asserted after every Docker start from then on",
            units.docker
        ));
    }
    Ok(())
}

/// The step of stopping an instance's set, as a dry run says it.
pub(super) fn pass_through_step(units: &InstanceUnits) -> String {
    format!(
        "stop {} and {}: the pass-through rules load (INPUT, OUTPUT and DOCKER-USER let everything through; Docker's own rules stay)",
        units.docker, units.rules
    )
}

/// Stops an instance's set: the re-assertion after Docker, then the rules (the
/// pass-through files are loaded).
pub(super) fn stop_set(manager: &dyn ServiceManager, units: &InstanceUnits) -> anyhow::Result<()> {
    run_job(manager, JobKind::Stop, &units.docker)?;
    run_job(manager, JobKind::Stop, &units.rules)
}

/// Once the rules are loaded: starts the re-assertion after Docker and the umbrella.
/// A failure here is a warning, and the status check that follows reports what it
/// leaves undone; the change itself is made.
pub(super) fn start_rest_of_set(
    manager: &dyn ServiceManager,
    units: &InstanceUnits,
    outcome: &mut Outcome<'_>,
) {
    if let Err(e) = start_reassertion(manager, units, outcome) {
        outcome.warn(format!("{e:#}"));
    }
    if let Err(e) = run_job(manager, JobKind::Start, &units.umbrella) {
        outcome.warn(format!("{e:#}"));
    }
}

/// Starts the re-assertion after Docker starts (it skips itself while Docker is not
/// running, and is then started with Docker).
fn start_reassertion(
    manager: &dyn ServiceManager,
    units: &InstanceUnits,
    outcome: &mut Outcome<'_>,
) -> anyhow::Result<()> {
    let was_active = manager.unit_status(&units.docker)?.is_active();
    match manager.run_job(JobKind::Start, &units.docker)? {
        // systemd before 248 ends a start that ExecCondition skipped with `skipped`.
        JobResult::Done => {}
        JobResult::Other(word) if word == "skipped" => {}
        result => return Err(job_failed(manager, JobKind::Start, &units.docker, result).into()),
    }
    let unit = units.docker.clone();
    if manager.unit_status(&units.docker)?.is_active() {
        outcome.push(Event::ReassertionActive { unit, was_active });
    } else {
        outcome.push(Event::ReassertionWaitsForDocker { unit });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::control::fakes::{FakeManager, POLICY, staged};

    #[test]
    fn restart_of_an_active_instance_never_takes_the_rules_down() {
        let staged = staged(Some(POLICY));
        staged.write_rules("in force");
        let manager = FakeManager::new("active", JobResult::Done);
        let mut outcome = Outcome::new();
        lifecycle(
            &staged.target(),
            &manager,
            JobKind::Restart,
            false,
            &mut outcome,
        )
        .unwrap();
        let calls = manager.calls();
        assert_eq!(
            calls.first().map(String::as_str),
            Some("reload iptables@base.service"),
            "a stop would load the pass-through files, and a start that then failed would leave the host open: {calls:?}"
        );
        assert!(
            !calls
                .iter()
                .any(|c| c == "stop iptables@base.service" || c == "restart iptables@base.service"),
            "{calls:?}"
        );
        // Shown as "... restart loads the rules again with no gap (a reload) ..." (see
        // cli::report's tests).
        let events = outcome.events();
        assert!(
            events.contains(&Event::RestartIsReload {
                unit: "iptables@base.service".to_owned()
            }),
            "{events:?}"
        );

        // An instance that is not active is started.
        let manager = FakeManager::new("failed", JobResult::Done);
        lifecycle(
            &staged.target(),
            &manager,
            JobKind::Restart,
            false,
            &mut outcome,
        )
        .unwrap();
        assert_eq!(
            manager.calls().first().map(String::as_str),
            Some("start iptables@base.service")
        );
    }
}
