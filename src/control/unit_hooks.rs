//! What the units run: `load-sets` (before every load of the rules: the sets they
//! match), `forward-jump` (after every load: Docker's forwarded traffic meets the rules
//! first; for iptables, FORWARD jumps to DOCKER-USER first), `prune-sets` (last: the
//! sets the files no longer define go) and `umbrella` (the commands of
//! `iptables.service`, which start, stop or reload every enabled instance).

use anyhow::bail;

use crate::backend::{Backend, ForwardFinding, SetRemoval};
use crate::control::lifecycle::stop_set;
use crate::control::outcome::{Event, Outcome, Verdict};
use crate::control::run_job;
use crate::family::Family;
use crate::files::layout::Layout;
use crate::policy::types::InstanceName;
use crate::systemd::units::{self, InstanceUnits};
use crate::systemd::{JobKind, ServiceManager};

/// `load-sets` (run by the units before they load the rules): loads the sets the
/// instance's rules match, each filled aside and swapped in whole, so that the rules
/// load against complete sets.
pub(crate) fn load_sets(
    layout: &Layout,
    instance: &InstanceName,
    backend: &dyn Backend,
    outcome: &mut Outcome<'_>,
) -> anyhow::Result<Verdict> {
    for loaded in backend.load_sets(layout, instance)? {
        if loaded.sets > 0 {
            outcome.push(Event::SetsLoaded {
                family: loaded.family,
                sets: loaded.sets,
                members: loaded.members,
            });
        }
        if let Some(why) = loaded.not_recorded {
            outcome.warn(format!(
                "{}: the sets are loaded, but not recorded as loaded since boot: a later load will not destroy them if the files stop defining them ({why})",
                loaded.family
            ));
        }
    }
    Ok(Verdict::Done)
}

/// `forward-jump` (run by the units after every load): makes Docker's forwarded
/// traffic meet the instance's rules first in both families (for iptables: FORWARD
/// jumps to DOCKER-USER first), and has each repair recorded for `status`.
pub(crate) fn forward_jump(
    layout: &Layout,
    instance: &InstanceName,
    backend: &dyn Backend,
    outcome: &mut Outcome<'_>,
) -> anyhow::Result<Verdict> {
    // Each family on its own: a failure in one must not leave the other unrepaired.
    let mut failures = Vec::new();
    for family in Family::ALL {
        match backend.ensure_forward_first(layout, instance, family) {
            Ok(ForwardFinding::InPlace) => {}
            Ok(ForwardFinding::Added) => outcome.push(Event::ForwardJumpAdded { family }),
            Ok(ForwardFinding::Repaired {
                first_rule,
                jumps,
                not_recorded,
            }) => {
                outcome.push(Event::ForwardJumpRepaired {
                    family,
                    first_rule,
                    jumps,
                });
                // The repair is done; the record only tells status about it.
                if let Some(e) = not_recorded {
                    outcome.warn(format!("the repair could not be recorded for status: {e}"));
                }
            }
            Err(e) => failures.push(format!("{e:#}")),
        }
    }
    if failures.is_empty() {
        Ok(Verdict::Done)
    } else {
        bail!(failures.join("\n"))
    }
}

/// `prune-sets` (run by the units last in every load): destroys the sets the instance
/// loaded since boot that its files no longer define (a list removed, or no longer
/// long), now that the rules just loaded no longer match them. It never fails the
/// load: the rules are in force, and what goes wrong is said.
pub(crate) fn prune_sets(
    layout: &Layout,
    instance: &InstanceName,
    backend: &dyn Backend,
    outcome: &mut Outcome<'_>,
) -> anyhow::Result<Verdict> {
    match backend.prune_sets(layout, instance) {
        Ok(Some(removals)) => push_set_removals(instance, removals, outcome),
        Ok(None) => outcome.warn(format!(
            "another load of the ipsets of {instance} was running: the sets it no longer uses are destroyed by a later load"
        )),
        Err(e) => outcome.warn(format!(
            "the ipsets {instance} no longer uses were not removed: {e:#}"
        )),
    }
    Ok(Verdict::Done)
}

/// Records what became of the sets of `instance` that were to be destroyed: each one
/// destroyed, and a warning for each kept because a rule still matches it.
pub(crate) fn push_set_removals(
    instance: &InstanceName,
    removals: Vec<SetRemoval>,
    outcome: &mut Outcome<'_>,
) {
    for removal in removals {
        match removal {
            SetRemoval::Destroyed { name } => outcome.push(Event::SetDestroyed { name }),
            SetRemoval::InUse { name, references } => outcome.warn(format!(
                "kept the ipset {name}: {references} rule(s) that {instance} did not load still match it; remove them, then `ipset destroy {name}`"
            )),
            SetRemoval::Failed { what, reason } => {
                outcome.warn(format!("{what} was left as it was: {reason}"));
            }
        }
    }
}

/// `umbrella` (the `ExecStart`/`ExecReload`/`ExecStop` of `iptables.service`): the job
/// `kind` on every enabled instance (wanted by its install target, however it was
/// enabled), with its re-assertion after Docker, waiting for each. A reload skips an
/// instance that is not active (there is nothing to reload).
pub(crate) fn umbrella(
    manager: &dyn ServiceManager,
    kind: JobKind,
    outcome: &mut Outcome<'_>,
) -> anyhow::Result<Verdict> {
    let mut instances: Vec<InstanceName> = Vec::new();
    for holder in units::instance_holders() {
        for unit in manager.unit_status(&holder)?.wants {
            if let Some(instance) = units::instance_of(&unit).and_then(|i| i.parse().ok())
                && !instances.contains(&instance)
            {
                instances.push(instance);
            }
        }
    }
    let mut failures = Vec::new();
    for instance in instances {
        let units = InstanceUnits::new(&instance);
        let result = match kind {
            JobKind::Start => run_job(manager, JobKind::Start, &units.rules)
                .and_then(|()| run_job(manager, JobKind::Start, &units.docker)),
            JobKind::Stop => stop_set(manager, &units),
            JobKind::Reload | JobKind::Restart => match manager.unit_status(&units.rules) {
                Ok(status) if status.is_active() => run_job(manager, kind, &units.rules),
                Ok(_) => {
                    outcome.push(Event::NotReloaded {
                        unit: units.rules.clone(),
                    });
                    Ok(())
                }
                Err(e) => Err(e.into()),
            },
        };
        match result {
            Ok(()) => outcome.push(Event::JobDone {
                unit: units.rules.clone(),
                job: kind,
            }),
            Err(e) => failures.push(format!("{e:#}")),
        }
    }
    if failures.is_empty() {
        Ok(Verdict::Done)
    } else {
        bail!("{kind} failed for some instances:\n{}", failures.join("\n"))
    }
}
