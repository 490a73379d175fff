//! `uninstall`: stop the instance (its pass-through files are loaded), destroy its
//! ipsets that no rule matches any more, disable it, and remove the unit files install
//! wrote, unless another instance still uses them. The
//! policy and the rendered files stay. With a staged tree (`--root`) the enable links
//! are removed instead, and nothing is run.

use std::fs;
use std::path::{Path, PathBuf};

use anyhow::Context as _;

use crate::control::apply::{self, discard_pending};
use crate::control::dry_run::DryRunReport;
use crate::control::lifecycle::{pass_through_step, stop_set};
use crate::control::outcome::{Event, Outcome, Verdict};
use crate::control::unit_hooks::push_set_removals;
use crate::control::{Systemd, Target, conflicts, lock_config, run_job};
use crate::files::{self, source};
use crate::systemd::units::{self, ADMIN_UNIT_DIR, InstanceUnits, SHIPPED_UNITS};
use crate::systemd::{ActiveState, JobKind, ServiceManager};

/// `uninstall`: stop (the pass-through files are loaded), destroy the instance's
/// ipsets, disable, and remove the units install wrote, unless another instance still
/// uses them. Policy and rendered files stay.
pub(crate) fn uninstall(
    target: &Target<'_>,
    systemd: Systemd<'_>,
    outcome: &mut Outcome<'_>,
) -> anyhow::Result<Verdict> {
    let root = target.layout.root();
    let units = InstanceUnits::new(target.instance);
    let others = conflicts::other_instances(root, target.instance);
    let shared_in_use = !others.is_empty();
    // The umbrella and the template files serve every instance.
    let own: Vec<&str> = if shared_in_use {
        vec![units.rules.as_str(), units.docker.as_str()]
    } else {
        units.all().to_vec()
    };
    match systemd {
        Systemd::Live(manager) => {
            let status = manager.unit_status(&units.rules)?;
            if !status.is_installed() && !conflicts::enabled_under(root, target.instance) {
                outcome.push(Event::NotInstalled {
                    unit: units.rules.clone(),
                });
                return Ok(Verdict::Done);
            }
            let _lock = lock_config(target, outcome)?;
            if status.is_active() {
                stop_set(manager, &units)?;
                outcome.push(Event::StoppedForUninstall {
                    unit: units.rules.clone(),
                });
            } else if status.active_state == ActiveState::Failed {
                // A failed unit is not stopped (ExecStop runs only for active units), and
                // whatever it loaded before failing would stay in the kernel.
                load_pass_through(target, outcome)?;
            }
            if !shared_in_use && manager.unit_status(&units.umbrella)?.is_active() {
                run_job(manager, JobKind::Stop, &units.umbrella)?;
            }
            // A pending apply goes with the instance (once its rules are no longer
            // loaded): its rollback would find no unit.
            if discard_pending(target, manager)? {
                outcome.warn(format!(
                    "the pending apply of {} was discarded with its rollback",
                    target.instance
                ));
            }
            remove_sets(target, outcome);
            for change in manager.disable(&own)? {
                outcome.push(Event::from(&change));
            }
            if !shared_in_use {
                remove_admin_units(root, outcome)?;
            }
            manager.daemon_reload()?;
        }
        Systemd::Staged => {
            // As `systemctl disable` does: every enable link of the units, in whichever
            // .wants/ it is (links an earlier install made elsewhere too).
            for unit in &own {
                for link in conflicts::wants_links(root, unit) {
                    let removed = files::remove_link(&link)
                        .with_context(|| format!("cannot remove {}", link.display()))?;
                    if removed {
                        outcome.push(Event::LinkRemoved { path: link });
                    }
                }
            }
            if !shared_in_use {
                remove_admin_units(root, outcome)?;
            }
        }
    }
    if shared_in_use {
        outcome.push(Event::SharedUnitsKept { instances: others });
    }
    outcome.push(Event::FilesKept {
        dir: target.layout.config_dir(),
    });
    Ok(Verdict::Done)
}

/// `uninstall --dry-run`: what uninstall would stop, discard, disable and remove.
/// Nothing is run.
pub(crate) fn uninstall_dry_run(
    target: &Target<'_>,
    manager: &dyn ServiceManager,
) -> anyhow::Result<DryRunReport> {
    let root = target.layout.root();
    let units = InstanceUnits::new(target.instance);
    let mut report = DryRunReport::new("uninstall", target.instance.as_str());
    let status = manager.unit_status(&units.rules)?;
    if !status.is_installed() && !conflicts::enabled_under(root, target.instance) {
        return Ok(report);
    }
    let shared_in_use = !conflicts::other_instances(root, target.instance).is_empty();
    if status.is_active() {
        report.step(pass_through_step(&units));
    } else if status.active_state == ActiveState::Failed {
        report.step(format!(
            "load the pass-through rules of {} (it failed, so it is not stopped)",
            target.instance
        ));
    }
    if apply::pending(target.layout, target.instance)?.is_some() {
        report.step(format!(
            "discard the pending apply of {} and its rollback",
            target.instance
        ));
    }
    match target.backend.sets_of(target.layout, target.instance) {
        Ok(sets) if sets.is_empty() => {}
        Ok(sets) => report.step(format!(
            "destroy the ipsets {} unless a rule still matches them",
            sets.join(", ")
        )),
        // As uninstall itself: said, and the rest goes on.
        Err(e) => report.step(format!(
            "leave the ipsets of {}, whose sets files cannot be read: {e:#}",
            target.instance
        )),
    }
    let own: Vec<&str> = if shared_in_use {
        vec![units.rules.as_str(), units.docker.as_str()]
    } else {
        units.all().to_vec()
    };
    for unit in own {
        let links = conflicts::wants_links(root, unit);
        if !links.is_empty() {
            report.step(format!(
                "disable {unit} (remove {})",
                links
                    .iter()
                    .map(|l| l.display().to_string())
                    .collect::<Vec<_>>()
                    .join(", ")
            ));
        }
    }
    if !shared_in_use {
        for path in admin_units(root) {
            report.step(format!("remove {}", path.display()));
        }
    }
    Ok(report)
}

/// Loads the instance's pass-through files, as its unit's ExecStop does.
fn load_pass_through(target: &Target<'_>, outcome: &mut Outcome<'_>) -> anyhow::Result<()> {
    target
        .backend
        .load_pass_through(target.layout, target.instance)?;
    outcome.push(Event::PassThroughLoaded);
    Ok(())
}

/// Destroys the instance's ipsets, now that its rules no longer match them. What goes
/// wrong is said and does not stop the uninstall: the rules are already out, and a set
/// left behind holds addresses, not a way in.
fn remove_sets(target: &Target<'_>, outcome: &mut Outcome<'_>) {
    let removals = match target.backend.remove_sets(target.layout, target.instance) {
        Ok(removals) => removals,
        Err(e) => {
            outcome.warn(format!(
                "the ipsets of {} were not removed: {e:#}",
                target.instance
            ));
            return;
        }
    };
    push_set_removals(target.instance, removals, outcome);
}

/// Removes the unit files install wrote to the admin directory (only ours).
fn remove_admin_units(root: &Path, outcome: &mut Outcome<'_>) -> anyhow::Result<()> {
    for path in admin_units(root) {
        fs::remove_file(&path).with_context(|| format!("cannot remove {}", path.display()))?;
        outcome.push(Event::FileRemoved { path });
    }
    Ok(())
}

/// The unit files install wrote to the admin directory (only ours).
fn admin_units(root: &Path) -> Vec<PathBuf> {
    let dir = root.join(ADMIN_UNIT_DIR);
    SHIPPED_UNITS
        .iter()
        .map(|unit| dir.join(unit.file_name))
        .filter(|path| {
            path.symlink_metadata().is_ok_and(|m| m.is_file())
                && source::read_consulted(path).is_some_and(|t| units::is_ours(&t))
        })
        .collect()
}
