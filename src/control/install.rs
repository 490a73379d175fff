//! `install`: the policy (the starter policy when there is none), render and prove,
//! conflicts with other firewall setups, SSH sessions the rules would lock out, then
//! the files, the units, enabling, starting the whole set, and the status check. A
//! step that fails after the first file was written puts back everything this run
//! changed (its [`Transaction`]). With a staged tree (`--root`) the units are enabled
//! by writing their links, and nothing is run.

use std::fs;
use std::path::{Path, PathBuf};

use anyhow::{Context as _, bail};

use crate::backend::Rendered;
use crate::control::apply::refuse_while_pending;
use crate::control::conflicts::{Conflict, ConflictFacts};
use crate::control::diff;
use crate::control::dry_run::DryRunReport;
use crate::control::lifecycle::{reassertion_step, start_rest_of_set};
use crate::control::outcome::{Event, Outcome, Verdict};
use crate::control::undo::Transaction;
use crate::control::{
    Proven, Systemd, Target, UNCHANGED, in_force, keep_generation_of, lock_config, refused,
    render_prove_and_read_host, run_job, warn_interface_problems,
};
use crate::files::layout::Layout;
use crate::files::source;
use crate::files::{self, Snapshot};
use crate::policy::Policy;
use crate::policy::starter::{self, StarterFacts};
use crate::systemd::units::{
    self, ADMIN_UNIT_DIR, InstanceUnits, PACKAGE_UNIT_DIRS, SHIPPED_UNITS,
};
use crate::systemd::{JobKind, ServiceManager};

/// Options of `install`.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct InstallOptions {
    /// Enable but do not start.
    pub no_start: bool,
    /// Go on despite conflicts that can be overridden, and despite SSH sessions the
    /// new rules would lock out.
    pub force: bool,
}

/// `install`: policy (starter if none), render and prove, conflicts, SSH sessions,
/// files, units, enable, start the whole set, and the status check.
pub(crate) fn install(
    target: &Target<'_>,
    systemd: Systemd<'_>,
    options: InstallOptions,
    outcome: &mut Outcome<'_>,
) -> anyhow::Result<Verdict> {
    let root = target.layout.root();
    let manager = systemd.manager();
    let config_dir = target.layout.config_dir();
    let mut created = CreatedDirs::create(&config_dir)?;
    let _lock = lock_config(target, outcome)?;
    refuse_while_pending(target, "install")?;

    let (policy, policy_text, starter_text) = policy_or_starter(target, outcome)?;
    let proven = prove_for_install(target, &policy, starter_text.is_some())?;
    outcome.push(Event::PolicyProven {
        path: target.policy_path.to_owned(),
    });
    warn_interface_problems(&proven.interfaces, outcome);

    let conflicts =
        ConflictFacts::gather(root, target.instance, manager.map(|m| (m, target.backend)))?
            .conflicts();
    refuse_on_conflicts(&conflicts, options.force, outcome)?;
    if manager.is_some() && !options.no_start {
        proven.refuse_lockouts("install", target, options.force, outcome)?;
    }
    created.keep();
    let Proven {
        rendered, proof, ..
    } = proven;

    // Everything checked: write. From here on a failure puts back what this run did.
    let mut undo = Transaction::new();
    let unit_dir = match write_files(target, starter_text, rendered, &mut undo, outcome) {
        Ok(unit_dir) => unit_dir,
        Err(error) => {
            undo.undo(manager, outcome);
            return Err(error);
        }
    };
    let units = InstanceUnits::new(target.instance);
    let Some(manager) = manager else {
        // No generation for a staged tree: rollback works on the live system, whose
        // first reload keeps one.
        stage_enable(target.layout, &unit_dir, &units, outcome)?;
        return Ok(Verdict::Done);
    };
    if let Err(error) = enable(manager, &units, &mut undo, outcome) {
        undo.undo(Some(manager), outcome);
        return Err(error);
    }
    if options.no_start {
        outcome.push(Event::EnabledNotStarted {
            unit: units.rules.clone(),
        });
        return Ok(Verdict::Done);
    }
    // A oneshot unit that is already active ignores start: reload it to load the new files.
    let kind = if manager.unit_status(&units.rules)?.is_active() {
        JobKind::Reload
    } else {
        JobKind::Start
    };
    let live_changed = diff::live_differs(target, &proof);
    undo.rules_job(&units.rules, kind);
    if let Err(error) = run_job(manager, kind, &units.rules) {
        outcome.push(Event::JobFailedUndoing {
            unit: units.rules.clone(),
            job: kind,
        });
        undo.undo(Some(manager), outcome);
        return Err(error);
    }
    outcome.push(Event::UnitActive {
        unit: units.rules.clone(),
        job: kind,
        live_changed,
    });
    // The text that was rendered, whatever the file says by now.
    keep_generation_of(target, "install", Ok(policy_text), outcome);
    start_rest_of_set(manager, &units, outcome);
    Ok(in_force(target, manager, outcome))
}

/// `install --dry-run`: the checks install makes before it changes anything (a refusal
/// is the same error), then the steps it would take and what loading the rules would
/// change live. Nothing is written, enabled or started.
pub(crate) fn install_dry_run(
    target: &Target<'_>,
    manager: &dyn ServiceManager,
    options: InstallOptions,
) -> anyhow::Result<DryRunReport> {
    let mut report = DryRunReport::new("install", target.instance.as_str());
    let mut outcome = Outcome::new();
    refuse_while_pending(target, "install")?;
    let (policy, _, starter_text) = policy_or_starter(target, &mut outcome)?;
    let proven = prove_for_install(target, &policy, starter_text.is_some())?;
    warn_interface_problems(&proven.interfaces, &mut outcome);
    let root = target.layout.root();
    let conflicts =
        ConflictFacts::gather(root, target.instance, Some((manager, target.backend)))?.conflicts();
    refuse_on_conflicts(&conflicts, options.force, &mut outcome)?;
    if !options.no_start {
        proven.refuse_lockouts("install", target, options.force, &mut outcome)?;
    }
    report.warnings_of(&outcome);

    let diff = diff::diff_of(target, &proven.rendered, &proven.proof)?;
    for file in &diff.files {
        report.step(format!("write {file}"));
    }
    let (unit_dir, packaged) = unit_dir(root);
    if !packaged {
        for unit in SHIPPED_UNITS {
            let path = unit_dir.join(unit.file_name);
            if source::read_consulted(&path).as_deref() != Some(unit.text) {
                report.step(format!("write {}", path.display()));
            }
        }
    }
    let units = InstanceUnits::new(target.instance);
    for unit in units.all() {
        let Some(shipped) = units::shipped_unit(unit) else {
            continue;
        };
        if !units::wanted_by(shipped.text).is_empty()
            && !manager.unit_status(unit)?.unit_file_state.is_enabled()
        {
            report.step(format!("enable {unit}"));
        }
        for service in shipped.hooked_into {
            if units::wants_link(root, service, unit)
                .symlink_metadata()
                .is_err()
            {
                report.step(format!(
                    "hook {unit} into {service} (a link in {service}.wants)"
                ));
            }
        }
    }
    if options.no_start {
        return Ok(report);
    }
    let loads_new_rules = !diff.files.is_empty() || diff.families.iter().any(|f| f.changed);
    if !manager.unit_status(&units.rules)?.is_active() {
        report.step(format!(
            "start {} (the rules load) and {} (they are re-asserted after every Docker start)",
            units.rules, units.docker
        ));
    } else {
        if loads_new_rules {
            report.step(format!(
                "reload {}: the new rules load with no gap",
                units.rules
            ));
        }
        reassertion_step(manager, &units, &mut report)?;
    }
    report.with_diff(diff);
    Ok(report)
}

/// Renders and proves `policy` for install (reading the host meanwhile); a failure is
/// the refusal, which for the starter policy (`starter`) says how to write one by hand.
fn prove_for_install(
    target: &Target<'_>,
    policy: &Policy,
    starter: bool,
) -> anyhow::Result<Proven> {
    render_prove_and_read_host(target, policy).map_err(|error| {
        if starter {
            error.context(format!(
                "the starter policy for {path} cannot be used on this host, so nothing was written; \
                 write one with `iptables-ctl init --stdout > {path}`, edit it, then install",
                path = target.policy_path.display()
            ))
        } else {
            error.context(refused("install"))
        }
    })
}

/// Writes the starter policy (if any), the rendered files and the units (unless a
/// package ships them), recording each in `undo`. Returns where the units are.
fn write_files(
    target: &Target<'_>,
    starter_text: Option<String>,
    rendered: Rendered,
    undo: &mut Transaction,
    outcome: &mut Outcome<'_>,
) -> anyhow::Result<PathBuf> {
    let outputs = rendered.into_outputs();
    let output_set = target.backend.output_set(target.layout, target.instance);
    undo.files_replaced(Snapshot::take_set(&output_set)?);
    if let Some(text) = starter_text {
        let (dir, name) = files::dir_and_name(target.policy_path)?;
        files::create_dirs(dir)?;
        undo.files_replaced(Snapshot::take(dir, [name.as_str()])?);
        files::write_files(dir, &[(name, text)])?;
        outcome.push(Event::FileWritten {
            path: target.policy_path.to_owned(),
        });
    }
    let (unit_dir, packaged) = unit_dir(target.layout.root());
    outcome.writes(&output_set.write(&outputs)?);
    if packaged {
        outcome.push(Event::UnitsPackaged {
            dir: unit_dir.clone(),
        });
    } else {
        files::create_dirs(&unit_dir)?;
        // Only install writes our units here, and it holds the config directory's
        // lock: temporary files of a killed install are nobody's work in progress.
        files::remove_stale_temps(&unit_dir)?;
        undo.files_replaced(Snapshot::take(
            &unit_dir,
            SHIPPED_UNITS.iter().map(|u| u.file_name),
        )?);
        let unit_files: Vec<(String, String)> = SHIPPED_UNITS
            .iter()
            .map(|u| (u.file_name.to_owned(), u.text.to_owned()))
            .collect();
        outcome.writes(&files::write_files(&unit_dir, &unit_files)?);
    }
    Ok(unit_dir)
}

/// With the files written: has systemd load the units and enables them, recording in
/// `undo` the links it created.
fn enable(
    manager: &dyn ServiceManager,
    units: &InstanceUnits,
    undo: &mut Transaction,
    outcome: &mut Outcome<'_>,
) -> anyhow::Result<()> {
    // A failure from here on undoes what this run did in systemd too: the links it
    // created go, and systemd reloads the unit files as they were put back.
    undo.unit_files_changed(&units.rules);
    manager.daemon_reload()?;
    // The units with an [Install] section are enabled; those hooked into another
    // service (the re-assertion after Docker) are linked into its wants.
    let with_install: Vec<&str> = units
        .all()
        .into_iter()
        .filter(|unit| {
            units::shipped_unit(unit).is_some_and(|s| !units::wanted_by(s.text).is_empty())
        })
        .collect();
    let mut changes = manager.enable(&with_install)?;
    for unit in units.all() {
        for service in units::shipped_unit(unit).map_or(&[][..], |s| s.hooked_into) {
            changes.extend(manager.add_wants(service, &[unit])?);
        }
    }
    for change in changes {
        outcome.push(Event::from(&change));
        if change.kind == "symlink" {
            undo.link_created(PathBuf::from(&change.path));
        }
    }
    // EnableUnitFiles only makes the links; without a reload a running systemd does
    // not know that docker.service now wants the re-assertion (systemctl enable
    // reloads for the same reason).
    manager.daemon_reload()?;
    Ok(())
}

/// Loads the policy, or builds the starter policy when there is none yet. Returns the
/// policy, the text it was read from (kept as the generation), and the starter
/// policy's text when it is one (written together with everything else).
fn policy_or_starter(
    target: &Target<'_>,
    outcome: &mut Outcome<'_>,
) -> anyhow::Result<(Policy, String, Option<String>)> {
    if target.policy_path.exists() {
        let (policy, text) = Policy::load_with_text(target.policy_path)?;
        return Ok((policy, text, None));
    }
    let facts = StarterFacts::gather(target.host);
    let (text, policy) = starter::starter_policy(&facts, target.policy_path)?;
    outcome.push(Event::StarterPolicy {
        path: target.policy_path.to_owned(),
        summary: starter::summary(&facts, &policy),
    });
    Ok((policy, text.clone(), Some(text)))
}

/// Where the shipped units are loaded from: a package's copy if it ships ours,
/// otherwise the admin directory (where install writes them).
fn unit_dir(root: &Path) -> (PathBuf, bool) {
    for dir in PACKAGE_UNIT_DIRS {
        let path = root.join(dir);
        if SHIPPED_UNITS.iter().all(|u| {
            source::read_consulted(&path.join(u.file_name)).is_some_and(|t| units::is_ours(&t))
        }) {
            return (path, true);
        }
    }
    (root.join(ADMIN_UNIT_DIR), false)
}

/// Directories created for a command, removed again (when still empty) unless the
/// command got far enough to keep them.
struct CreatedDirs {
    dirs: Vec<PathBuf>,
    keep: bool,
}

impl CreatedDirs {
    /// Creates `dir` and its missing parents, remembering which it created.
    fn create(dir: &Path) -> anyhow::Result<CreatedDirs> {
        let dirs = files::create_dirs(dir)?;
        Ok(CreatedDirs { dirs, keep: false })
    }

    fn keep(&mut self) {
        self.keep = true;
    }
}

impl Drop for CreatedDirs {
    fn drop(&mut self) {
        if !self.keep {
            // Deepest first; remove_dir leaves anything that is not empty.
            for dir in &self.dirs {
                let _ = fs::remove_dir(dir);
            }
        }
    }
}

/// Refuses on conflicts; `force` overrides those that can be overridden.
fn refuse_on_conflicts(
    conflicts: &[Conflict],
    force: bool,
    outcome: &mut Outcome<'_>,
) -> anyhow::Result<()> {
    let blocking: Vec<&Conflict> = conflicts
        .iter()
        .filter(|c| !force || !c.forceable)
        .collect();
    if blocking.is_empty() {
        for conflict in conflicts {
            outcome.warn(format!("(--force) {conflict}"));
        }
        return Ok(());
    }
    let list: Vec<String> = blocking.iter().map(|c| format!("  - {c}")).collect();
    let hint = if blocking.iter().all(|c| c.forceable) {
        "\n(--force installs anyway)"
    } else {
        ""
    };
    bail!(
        "refusing to install: another firewall setup would fight this one; {UNCHANGED}\n{}{hint}",
        list.join("\n")
    )
}

/// Enables the units in a staged tree with the symlinks `systemctl --root enable` makes.
fn stage_enable(
    layout: &Layout,
    unit_dir: &Path,
    units: &InstanceUnits,
    outcome: &mut Outcome<'_>,
) -> anyhow::Result<()> {
    let root = layout.root();
    for unit in units.all() {
        let Some(shipped) = units::shipped_unit(unit) else {
            bail!("internal error: {unit} is not a shipped unit");
        };
        let booted_path = layout.as_booted(&unit_dir.join(shipped.file_name));
        for link in units::enable_links(root, unit, &booted_path, shipped) {
            if let Some(dir) = link.link.parent() {
                files::create_dirs(dir)?;
            }
            if fs::read_link(&link.link).is_ok_and(|t| t == link.target) {
                continue;
            }
            if link.link.symlink_metadata().is_ok() {
                fs::remove_file(&link.link)
                    .with_context(|| format!("cannot replace {}", link.link.display()))?;
            }
            std::os::unix::fs::symlink(&link.target, &link.link)
                .with_context(|| format!("cannot create {}", link.link.display()))?;
            outcome.push(Event::LinkCreated {
                path: link.link.clone(),
                target: link.target.clone(),
            });
        }
    }
    outcome.push(Event::Staged {
        root: root.to_owned(),
    });
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::fs;

    use super::*;
    use crate::control::JobFailed;
    use crate::control::fakes::{FakeManager, POLICY, staged};
    use crate::files::generations::Generations;
    use crate::systemd::JobResult;

    /// The generation install keeps holds the policy it rendered and loaded, not what
    /// the file says once the unit has started (an editor or a second admin may have
    /// saved it meanwhile): `rollback` must come back to the rules that were live.
    #[test]
    fn install_keeps_the_policy_it_loaded_even_if_the_file_changes_meanwhile() {
        let staged = staged(Some(POLICY));
        let path = staged.layout.config_dir().join("base.toml");
        let edited = format!("{POLICY}\n[[host.services]]\nport = 8443\n");
        let manager = FakeManager::new("inactive", JobResult::Done)
            .on_job(move || fs::write(&path, &edited).unwrap());
        install(
            &staged.target(),
            Systemd::Live(&manager),
            InstallOptions::default(),
            &mut Outcome::new(),
        )
        .unwrap();
        let generations = Generations::of(&staged.layout, &"base".parse().unwrap());
        let kept = generations.list().unwrap().pop().expect("a generation");
        assert_eq!(generations.policy(&kept).unwrap(), POLICY);
    }

    #[test]
    fn install_starts_an_inactive_unit_and_reloads_an_active_one() {
        for (state, job) in [("inactive", "start"), ("active", "reload")] {
            let staged = staged(Some(POLICY));
            let manager = FakeManager::new(state, JobResult::Done);
            let mut outcome = Outcome::new();
            install(
                &staged.target(),
                Systemd::Live(&manager),
                InstallOptions::default(),
                &mut outcome,
            )
            .unwrap();
            assert_eq!(
                manager.calls(),
                [
                    "daemon-reload".to_owned(),
                    "enable iptables.service iptables@base.service".to_owned(),
                    "add-wants docker.service iptables-docker@base.service".to_owned(),
                    "daemon-reload".to_owned(),
                    format!("{job} iptables@base.service"),
                    "start iptables-docker@base.service".to_owned(),
                    "start iptables.service".to_owned(),
                ]
            );
        }
    }

    #[test]
    fn a_failed_install_puts_back_files_links_and_unit_state() {
        for (state, job) in [("inactive", "start"), ("active", "reload")] {
            let staged = staged(Some(POLICY));
            let config = staged.layout.config_dir();
            fs::write(config.join("base.rules"), "previous rules\n").unwrap();
            let before = staged.files();
            let wants = staged
                .root
                .path()
                .join("etc/systemd/system/multi-user.target.wants");
            let manager = FakeManager::new(state, JobResult::Other("failed".to_owned()))
                .linking_in(wants.clone());
            let mut outcome = Outcome::new();
            let error = install(
                &staged.target(),
                Systemd::Live(&manager),
                InstallOptions::default(),
                &mut outcome,
            )
            .unwrap_err();
            let failed = error.downcast_ref::<JobFailed>().expect("a JobFailed");
            assert_eq!(failed.unit, "iptables@base.service");
            assert!(
                failed.details.contains("result: exit-code"),
                "{}",
                failed.details
            );
            assert_eq!(staged.files(), before, "{state}: every file is as it was");
            assert!(
                !wants.exists(),
                "{state}: the links and their directory are gone"
            );
            // Shown as "... putting the previous files and unit state back" (see
            // cli::report's tests).
            let events = outcome.events();
            assert!(
                events.iter().any(|e| matches!(
                    e,
                    Event::JobFailedUndoing { unit, .. } if unit == "iptables@base.service"
                )),
                "{events:?}"
            );
            let mut expected = vec![
                "daemon-reload".to_owned(),
                "enable iptables.service iptables@base.service".to_owned(),
                "add-wants docker.service iptables-docker@base.service".to_owned(),
                "daemon-reload".to_owned(),
                format!("{job} iptables@base.service"),
                "daemon-reload".to_owned(),
            ];
            if state == "active" {
                // The unit stays active: the previous files are loaded again.
                expected.push("reload iptables@base.service".to_owned());
            }
            assert_eq!(manager.calls(), expected, "{state}");
        }
    }
}
