//! The commands that put an instance in force and take it out: install, uninstall,
//! start, stop, restart, reload and status. Each is a sequence over the parts it needs
//! (the file layout, the kernel check, systemd behind [`ServiceManager`]) with one rule:
//! everything that can be checked is checked before anything changes, and a step that
//! fails after files were replaced puts them back.

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::{Context as _, bail};
use serde::Serialize;

use crate::conflicts::{Conflict, ConflictFacts};
use crate::files::{self, DirLock, Snapshot};
use crate::host::HostProbe;
use crate::instance::{self, Layout};
use crate::live::{self, LiveFirewall, LiveState};
use crate::policy::Policy;
use crate::policy::types::{Family, InstanceName};
use crate::render::RenderedFile;
use crate::starter::{self, StarterFacts};
use crate::systemd::{JobKind, JobResult, ServiceManager, UnitStatus, journal};
use crate::trial::RulesetTrial;
use crate::units::{self, ADMIN_UNIT_DIR, InstanceUnits, PACKAGE_UNIT_DIRS, SHIPPED_UNITS};

/// How many journal lines a failure report shows.
const JOURNAL_LINES: usize = 15;

/// What every command works on.
pub struct Target<'a> {
    /// Where files live (`/` or a staged `--root`).
    pub layout: &'a Layout,
    /// The instance.
    pub instance: &'a InstanceName,
    /// Its policy file.
    pub policy_path: &'a Path,
    /// The host the policy is rendered for.
    pub host: &'a dyn HostProbe,
    /// The kernel check.
    pub trial: &'a dyn RulesetTrial,
    /// The live firewall.
    pub firewall: &'a dyn LiveFirewall,
}

/// Options of `install`.
#[derive(Debug, Clone, Copy, Default)]
pub struct InstallOptions {
    /// Enable but do not start.
    pub no_start: bool,
    /// Go on despite conflicts.
    pub force: bool,
}

/// Where systemd is: a live manager, or a staged tree (`--root`) with none.
pub enum Systemd<'a> {
    /// A running systemd.
    Live(&'a dyn ServiceManager),
    /// A staged tree: unit files and enable links are written, nothing is run.
    Staged,
}

/// A job that did not end in `done`, with what systemd and the journal say.
#[derive(Debug, thiserror::Error)]
#[error("{unit}: {kind} {result} ({why})\n{details}", why = result.explanation())]
pub struct JobFailed {
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
pub fn run_job(manager: &dyn ServiceManager, kind: JobKind, unit: &str) -> anyhow::Result<()> {
    match manager.run_job(kind, unit)? {
        JobResult::Done => Ok(()),
        result => Err(JobFailed {
            unit: unit.to_owned(),
            kind,
            result,
            details: failure_details(manager, unit),
        }
        .into()),
    }
}

/// The unit's state and last journal lines, indented, for a failure report.
pub fn failure_details(manager: &dyn ServiceManager, unit: &str) -> String {
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

/// Loads the policy, or builds the starter policy when there is none yet (returning
/// its text so it is written together with everything else).
fn policy_or_starter(
    target: &Target<'_>,
    out: &mut dyn Write,
) -> anyhow::Result<(Policy, Option<String>)> {
    if target.policy_path.exists() {
        return Ok((Policy::load(target.policy_path)?, None));
    }
    let facts = StarterFacts::gather(target.host);
    let (text, policy) = starter::starter_policy(&facts, target.policy_path)?;
    writeln!(
        out,
        "no policy at {} yet: installing the starter policy",
        target.policy_path.display()
    )?;
    for line in starter::summary(&facts, &policy) {
        writeln!(out, "  {line}")?;
    }
    Ok((policy, Some(text)))
}

/// Renders and proves the instance's files; nothing is written.
fn render_and_prove(target: &Target<'_>, policy: &Policy) -> anyhow::Result<Vec<RenderedFile>> {
    let rendered = instance::render_policy(target.layout, target.instance, policy, target.host)?;
    instance::prove(policy, &rendered, target.trial)
        .context("kernel check of the rendered files failed; nothing was changed")?;
    Ok(rendered)
}

/// Where the shipped units are loaded from: a package's copy if it ships ours,
/// otherwise the admin directory (where install writes them).
fn unit_dir(root: &Path) -> (PathBuf, bool) {
    for dir in PACKAGE_UNIT_DIRS {
        let path = root.join(dir);
        if SHIPPED_UNITS
            .iter()
            .all(|u| fs::read_to_string(path.join(u.file_name)).is_ok_and(|t| units::is_ours(&t)))
        {
            return (path, true);
        }
    }
    (root.join(ADMIN_UNIT_DIR), false)
}

/// `install`: policy (starter if none), render and prove, conflicts, files, units,
/// enable, start.
pub fn install(
    target: &Target<'_>,
    systemd: Systemd<'_>,
    options: InstallOptions,
    out: &mut dyn Write,
) -> anyhow::Result<()> {
    let root = target.layout.root();
    let manager = match systemd {
        Systemd::Live(manager) => Some(manager),
        Systemd::Staged => None,
    };
    let config_dir = target.layout.config_dir();
    let mut created = CreatedDirs::create(&config_dir)?;
    let _lock = DirLock::acquire(&config_dir)?;

    let (policy, starter_text) = policy_or_starter(target, out)?;
    let rendered = match (render_and_prove(target, &policy), &starter_text) {
        (Ok(rendered), _) => rendered,
        (Err(error), None) => return Err(error),
        (Err(error), Some(_)) => {
            return Err(error.context(format!(
                "the starter policy for {path} cannot be used on this host, so nothing was written; \
                 write one with `iptables-ctl init --stdout > {path}`, edit it, then install",
                path = target.policy_path.display()
            )));
        }
    };
    writeln!(
        out,
        "policy {} is valid and its rules load in a throwaway namespace",
        target.policy_path.display()
    )?;

    let conflicts =
        ConflictFacts::gather(root, target.instance, manager.map(|m| (m, target.firewall)))?
            .conflicts();
    refuse_on_conflicts(&conflicts, options.force, out)?;
    created.keep();

    // Everything checked: write.
    let outputs = RenderedFile::outputs(rendered);
    let mut snapshot = Snapshot::take(&config_dir, outputs.iter().map(|(n, _)| n.as_str()))?;
    if let Some(text) = starter_text {
        let (dir, name) = files::dir_and_name(target.policy_path)?;
        fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
        snapshot.extend(Snapshot::take(dir, [name.as_str()])?);
        files::write_files(dir, &[(name, text)])?;
        writeln!(out, "wrote {}", target.policy_path.display())?;
    }
    let (unit_dir, packaged) = unit_dir(root);
    let result = (|| -> anyhow::Result<()> {
        report_writes(files::write_files(&config_dir, &outputs)?, out)?;
        if packaged {
            writeln!(
                out,
                "units are shipped by the package in {}",
                unit_dir.display()
            )?;
        } else {
            fs::create_dir_all(&unit_dir)
                .with_context(|| format!("cannot create {}", unit_dir.display()))?;
            snapshot.extend(Snapshot::take(
                &unit_dir,
                SHIPPED_UNITS.iter().map(|u| u.file_name),
            )?);
            let unit_files: Vec<(String, String)> = SHIPPED_UNITS
                .iter()
                .map(|u| (u.file_name.to_owned(), u.text.to_owned()))
                .collect();
            report_writes(files::write_files(&unit_dir, &unit_files)?, out)?;
        }
        Ok(())
    })();
    if let Err(error) = result {
        restore(&snapshot, out);
        return Err(error);
    }

    let units = InstanceUnits::new(target.instance);
    let Some(manager) = manager else {
        return stage_enable(target.layout, &unit_dir, &units, out);
    };
    // From here on a failure undoes what this run did in systemd too: the links it
    // created go, and systemd reloads the unit files as they were put back.
    let mut undo = LiveUndo {
        manager,
        rules_unit: &units.rules,
        snapshot,
        created_links: Vec::new(),
    };
    let result = (|| -> anyhow::Result<()> {
        manager.daemon_reload()?;
        for change in manager.enable(&units.all())? {
            writeln!(out, "{change}")?;
            if change.kind == "symlink" {
                undo.created_links.push(PathBuf::from(&change.path));
            }
        }
        Ok(())
    })();
    if let Err(error) = result {
        undo.run(out);
        return Err(error);
    }
    if options.no_start {
        writeln!(
            out,
            "{} is enabled; it loads the rules at the next boot (--no-start)",
            units.rules
        )?;
        return Ok(());
    }
    // A oneshot unit that is already active ignores start: reload it to load the new files.
    let kind = if manager.unit_status(&units.rules)?.is_active() {
        JobKind::Reload
    } else {
        JobKind::Start
    };
    if let Err(error) = run_job(manager, kind, &units.rules) {
        writeln!(
            out,
            "{} did not {kind}; putting the previous files and unit state back",
            units.rules
        )?;
        undo.run(out);
        if kind == JobKind::Reload {
            // The unit is still active, and a reload that failed part way may have
            // loaded the new IPv4 rules but not the IPv6 ones: load the previous files.
            reload_previous(manager, &units.rules, out);
        }
        return Err(error);
    }
    run_job(manager, JobKind::Start, &units.umbrella)?;
    writeln!(
        out,
        "{} is active: the rules of {} are in force",
        units.rules, target.instance
    )?;
    Ok(())
}

/// What a live install undoes when systemd refuses a step after files were written.
struct LiveUndo<'a> {
    manager: &'a dyn ServiceManager,
    /// The instance's rules unit, the one a failed job leaves failed.
    rules_unit: &'a str,
    snapshot: Snapshot,
    /// Enable links this run created (enable never replaces an existing link, so none
    /// of these was there before).
    created_links: Vec<PathBuf>,
}

impl LiveUndo<'_> {
    /// Puts the files back, removes the links this run created (and the `.wants`
    /// directories they leave empty), and has systemd load the unit files as they are
    /// again. Best effort: each step that fails is reported and the rest still run.
    fn run(&self, out: &mut dyn Write) {
        restore(&self.snapshot, out);
        for link in &self.created_links {
            match files::remove_link(link) {
                Ok(true) => {
                    let _ = writeln!(out, "removed {}", link.display());
                }
                Ok(false) => {}
                Err(e) => {
                    let _ = writeln!(out, "warning: could not remove {}: {e}", link.display());
                }
            }
        }
        if let Err(e) = self.manager.daemon_reload() {
            let _ = writeln!(out, "warning: systemd did not reload its unit files: {e}");
            return;
        }
        // A first install whose start failed: the unit file is gone again, and a unit
        // that no longer exists should not linger in `systemctl --failed`. (The failure
        // was reported, journal lines included.)
        let gone_but_failed = self
            .manager
            .unit_status(self.rules_unit)
            .is_ok_and(|s| s.is_not_found() && s.active_state == "failed");
        if gone_but_failed && let Err(e) = self.manager.reset_failed(self.rules_unit) {
            let _ = writeln!(out, "warning: {e}");
        }
    }
}

/// After a failed reload and the previous files put back: loads them again, so the live
/// rules are the previous ones whatever the failed reload had loaded.
fn reload_previous(manager: &dyn ServiceManager, unit: &str, out: &mut dyn Write) {
    match manager.run_job(JobKind::Reload, unit) {
        Ok(JobResult::Done) => {
            let _ = writeln!(out, "{unit}: the previous files are loaded again");
        }
        Ok(other) => {
            let _ = writeln!(
                out,
                "warning: reloading the previous files did not succeed either ({other})"
            );
        }
        Err(e) => {
            let _ = writeln!(out, "warning: reloading the previous files failed too: {e}");
        }
    }
}

/// Directories created for a command, removed again (when still empty) unless the
/// command got far enough to keep them.
struct CreatedDirs {
    dirs: Vec<PathBuf>,
    keep: bool,
}

impl CreatedDirs {
    /// Creates `dir` and its missing parents, remembering which were missing.
    fn create(dir: &Path) -> anyhow::Result<CreatedDirs> {
        let dirs: Vec<PathBuf> = dir
            .ancestors()
            .take_while(|d| !d.as_os_str().is_empty() && !d.exists())
            .map(Path::to_owned)
            .collect();
        fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
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

fn refuse_on_conflicts(
    conflicts: &[Conflict],
    force: bool,
    out: &mut dyn Write,
) -> anyhow::Result<()> {
    if conflicts.is_empty() {
        return Ok(());
    }
    if force {
        for conflict in conflicts {
            writeln!(out, "warning (--force): {conflict}")?;
        }
        return Ok(());
    }
    let list: Vec<String> = conflicts.iter().map(|c| format!("  - {c}")).collect();
    bail!(
        "refusing to install: another firewall setup would fight this one; nothing was changed\n{}\n(--force installs anyway)",
        list.join("\n")
    )
}

fn report_writes(summary: files::WriteSummary, out: &mut dyn Write) -> anyhow::Result<()> {
    for line in summary.lines() {
        writeln!(out, "{line}")?;
    }
    Ok(())
}

fn restore(snapshot: &Snapshot, out: &mut dyn Write) {
    if let Err(e) = snapshot.restore() {
        let _ = writeln!(out, "warning: could not put every file back: {e}");
    }
}

/// Enables the units in a staged tree with the symlinks `systemctl --root enable` makes.
fn stage_enable(
    layout: &Layout,
    unit_dir: &Path,
    units: &InstanceUnits,
    out: &mut dyn Write,
) -> anyhow::Result<()> {
    let root = layout.root();
    for unit in units.all() {
        let Some(shipped) = units::shipped_unit(unit) else {
            bail!("internal error: {unit} is not a shipped unit");
        };
        let booted_path = layout.as_booted(&unit_dir.join(shipped.file_name));
        for link in units::enable_links(root, unit, &booted_path, shipped.text) {
            if let Some(dir) = link.link.parent() {
                fs::create_dir_all(dir)
                    .with_context(|| format!("cannot create {}", dir.display()))?;
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
            writeln!(
                out,
                "created symlink {} -> {}",
                link.link.display(),
                link.target.display()
            )?;
        }
    }
    writeln!(
        out,
        "staged under {}: the units start at its first boot",
        root.display()
    )?;
    Ok(())
}

/// `uninstall`: stop (the pass-through files are loaded), disable, remove the units
/// install wrote. Policy and rendered files stay.
pub fn uninstall(
    target: &Target<'_>,
    systemd: Systemd<'_>,
    out: &mut dyn Write,
) -> anyhow::Result<()> {
    let root = target.layout.root();
    let units = InstanceUnits::new(target.instance);
    match systemd {
        Systemd::Live(manager) => {
            let status = manager.unit_status(&units.rules)?;
            if status.is_active() {
                run_job(manager, JobKind::Stop, &units.rules)?;
                writeln!(
                    out,
                    "stopped {}: INPUT, OUTPUT and DOCKER-USER now pass traffic through",
                    units.rules
                )?;
            }
            for change in manager.disable(&units.all())? {
                writeln!(out, "{change}")?;
            }
            remove_admin_units(root, out)?;
            manager.daemon_reload()?;
        }
        Systemd::Staged => {
            for unit in units.all() {
                if let Some(shipped) = units::shipped_unit(unit) {
                    for link in units::enable_links(root, unit, Path::new("/"), shipped.text) {
                        let removed = files::remove_link(&link.link)
                            .with_context(|| format!("cannot remove {}", link.link.display()))?;
                        if removed {
                            writeln!(out, "removed {}", link.link.display())?;
                        }
                    }
                }
            }
            remove_admin_units(root, out)?;
        }
    }
    writeln!(
        out,
        "policy and rendered files under {} are kept",
        target.layout.config_dir().display()
    )?;
    Ok(())
}

/// Removes the unit files install wrote to the admin directory (only ours).
fn remove_admin_units(root: &Path, out: &mut dyn Write) -> anyhow::Result<()> {
    let dir = root.join(ADMIN_UNIT_DIR);
    for unit in SHIPPED_UNITS {
        let path = dir.join(unit.file_name);
        let is_ours = path.symlink_metadata().is_ok_and(|m| m.is_file())
            && fs::read_to_string(&path).is_ok_and(|t| units::is_ours(&t));
        if is_ours {
            fs::remove_file(&path).with_context(|| format!("cannot remove {}", path.display()))?;
            writeln!(out, "removed {}", path.display())?;
        }
    }
    Ok(())
}

/// `start`, `stop`, `restart`: one job on the instance's rules unit. Restart first
/// proves the files on disk, because it takes the working rules down before loading
/// them again: files that would not load are refused while the old rules still stand.
/// Start does not: when the unit is not active there is nothing to protect, and a
/// failure is reported with the journal.
pub fn lifecycle(
    target: &Target<'_>,
    manager: &dyn ServiceManager,
    kind: JobKind,
    out: &mut dyn Write,
) -> anyhow::Result<()> {
    let instance = target.instance;
    let units = InstanceUnits::new(instance);
    let status = manager.unit_status(&units.rules)?;
    if status.is_not_found() {
        bail!(
            "{} is not installed (run `iptables-ctl install {instance}`)",
            units.rules
        );
    }
    if kind == JobKind::Restart {
        prove_files_on_disk(target).context("refusing to restart: the rules on disk would not load; the live rules were left as they are")?;
    }
    run_job(manager, kind, &units.rules)?;
    let done = match kind {
        JobKind::Stop => "stopped: the pass-through (.empty) files are loaded",
        _ => "active: the rules are in force",
    };
    writeln!(out, "{}: {done}", units.rules)?;
    Ok(())
}

/// Loads the instance's files as they are on disk into a throwaway namespace.
fn prove_files_on_disk(target: &Target<'_>) -> anyhow::Result<()> {
    for family in Family::ALL {
        instance::prove_on_disk(target.layout, target.instance, family, target.trial)?;
    }
    Ok(())
}

/// `reload`: re-render and prove the policy (a bad one changes nothing), write the
/// files that changed, and reload the unit; if the reload fails, the previous files
/// are put back and loaded again.
pub fn reload(
    target: &Target<'_>,
    manager: &dyn ServiceManager,
    out: &mut dyn Write,
) -> anyhow::Result<()> {
    let units = InstanceUnits::new(target.instance);
    let config_dir = target.layout.config_dir();
    let _lock = DirLock::acquire(&config_dir)?;
    let policy = Policy::load(target.policy_path)?;
    let rendered = render_and_prove(target, &policy)?;
    let status = manager.unit_status(&units.rules)?;
    if status.is_not_found() {
        bail!(
            "{} is not installed (run `iptables-ctl install {}`); nothing was changed",
            units.rules,
            target.instance
        );
    }
    if !status.is_active() {
        bail!(
            "{} is {}, so there is nothing to reload; nothing was changed (`iptables-ctl start {}` loads the rules)",
            units.rules,
            status.active_state,
            target.instance
        );
    }
    let outputs = RenderedFile::outputs(rendered);
    let snapshot = Snapshot::take(&config_dir, outputs.iter().map(|(n, _)| n.as_str()))?;
    report_writes(files::write_files(&config_dir, &outputs)?, out)?;
    if let Err(error) = run_job(manager, JobKind::Reload, &units.rules) {
        writeln!(
            out,
            "reload failed; putting the previous files back and loading them again"
        )?;
        restore(&snapshot, out);
        reload_previous(manager, &units.rules, out);
        return Err(error);
    }
    writeln!(out, "{}: reloaded; the new rules are in force", units.rules)?;
    Ok(())
}

/// The outcome of `status`, also its `--json` form.
#[derive(Debug, Clone, Serialize)]
pub struct StatusReport {
    /// The instance.
    pub instance: String,
    /// `iptables@INSTANCE.service`.
    pub unit: UnitStatus,
    /// `iptables-docker@INSTANCE.service`.
    pub docker_unit: UnitStatus,
    /// The live rules against the rendered files (None when the unit is not installed
    /// or the files are missing; see `live_error`).
    pub live: Option<LiveState>,
    /// Why the live state could not be read.
    pub live_error: Option<String>,
}

/// Exit codes of `status`, as systemctl's.
pub mod exit {
    /// Active, and the live rules are the rendered ones.
    pub const ACTIVE: u8 = 0;
    /// Active, but the live rules differ from the rendered ones (or cannot be read).
    pub const DRIFT: u8 = 1;
    /// Not active.
    pub const INACTIVE: u8 = 3;
    /// No such unit.
    pub const NOT_FOUND: u8 = 4;
}

impl StatusReport {
    /// The exit code this report deserves.
    pub fn exit_code(&self) -> u8 {
        if self.unit.is_not_found() {
            exit::NOT_FOUND
        } else if !self.unit.is_active() {
            exit::INACTIVE
        } else if self.live.as_ref().is_some_and(LiveState::in_force) {
            exit::ACTIVE
        } else {
            exit::DRIFT
        }
    }

    /// The report for a person.
    pub fn human(&self) -> String {
        let mut text = String::new();
        let unit_line = |u: &UnitStatus| {
            if u.is_not_found() {
                format!("{}: not installed\n", u.name)
            } else {
                format!(
                    "{}: {} ({}), {}{}\n",
                    u.name,
                    u.active_state,
                    u.sub_state,
                    if u.unit_file_state.is_empty() {
                        "no unit file"
                    } else {
                        &u.unit_file_state
                    },
                    u.result
                        .as_deref()
                        .filter(|r| *r != "success")
                        .map(|r| format!(", last result: {r}"))
                        .unwrap_or_default()
                )
            }
        };
        text.push_str(&unit_line(&self.unit));
        text.push_str(&unit_line(&self.docker_unit));
        if let Some(error) = &self.live_error {
            text.push_str(&format!("live rules: cannot tell ({error})\n"));
        }
        if let Some(live) = &self.live {
            text.push_str(&format!(
                "backend: {}\n",
                live.backend.map_or("unknown".to_owned(), |b| b.to_string())
            ));
            for family in &live.families {
                let verdict = if family.in_force {
                    "the rendered rules are in force".to_owned()
                } else if family.reordered {
                    "DRIFT: the rendered rules are live in another order".to_owned()
                } else {
                    format!(
                        "DRIFT: {} rendered line(s) missing, {} unexpected",
                        family.missing.len(),
                        family.unexpected.len()
                    )
                };
                text.push_str(&format!("{}: {verdict}\n", family.family));
                for line in &family.missing {
                    text.push_str(&format!("  missing:    {line}\n"));
                }
                for line in &family.unexpected {
                    text.push_str(&format!("  unexpected: {line}\n"));
                }
                text.push_str(&format!(
                    "  FORWARD: {}\n",
                    match family.docker_user_first {
                        Some(true) => "jumps to DOCKER-USER first",
                        Some(false) => "WARNING: its first rule is not the jump to DOCKER-USER",
                        None => "empty (Docker is not running)",
                    }
                ));
            }
        }
        text
    }
}

/// `status`: unit states and the live rules against the rendered files.
pub fn status(target: &Target<'_>, manager: &dyn ServiceManager) -> anyhow::Result<StatusReport> {
    let units = InstanceUnits::new(target.instance);
    let unit = manager.unit_status(&units.rules)?;
    let docker_unit = manager.unit_status(&units.docker)?;
    let (live, live_error) = if unit.is_not_found() {
        (None, None)
    } else {
        match live::inspect(
            target.layout,
            target.instance,
            target.trial,
            target.firewall,
        ) {
            Ok(state) => (Some(state), None),
            Err(e) => (None, Some(format!("{e:#}"))),
        }
    };
    Ok(StatusReport {
        instance: target.instance.to_string(),
        unit,
        docker_unit,
        live,
        live_error,
    })
}

#[cfg(test)]
mod tests {
    //! The flows against fakes: a service manager that records calls and answers as
    //! told, a trial that accepts everything, a host with eth0. The real thing is
    //! proven in tests/systemd_boot.rs; these reach the failure paths a real systemd
    //! rarely takes.

    use std::cell::RefCell;
    use std::io;

    use super::*;
    use crate::host::SshConnection;
    use crate::systemd::{SystemdError, UnitFileChange};
    use crate::trial::{TrialError, TrialReport};

    struct FakeHost;

    impl HostProbe for FakeHost {
        fn default_route_interfaces(&self) -> io::Result<Vec<String>> {
            Ok(vec!["eth0".to_owned()])
        }
        fn sshd_ports(&self) -> Vec<u16> {
            vec![22]
        }
        fn ssh_connection(&self) -> Option<SshConnection> {
            None
        }
    }

    struct AcceptingTrial;

    /// A firewall with nothing to say (no backend, no other backend).
    struct QuietFirewall;

    impl LiveFirewall for QuietFirewall {
        fn backend(&self) -> Option<crate::iptables::BackendKind> {
            None
        }
        fn save(&self, _family: Family) -> Result<String, crate::command::ToolError> {
            Ok(String::new())
        }
        fn save_other_backend(&self) -> Option<String> {
            None
        }
    }

    impl RulesetTrial for AcceptingTrial {
        fn trial(
            &self,
            _family: Family,
            _rules: (&str, &str),
            _empty: (&str, &str),
        ) -> Result<TrialReport, TrialError> {
            Ok(TrialReport {
                loaded: String::new(),
                rule_count: 0,
            })
        }
    }

    /// Records every call; jobs end with `job_result`; the rules unit is `active_state`.
    /// With `links_in`, enable creates one link per unit there, as systemd would.
    struct FakeManager {
        calls: RefCell<Vec<String>>,
        job_result: JobResult,
        active_state: &'static str,
        links_in: Option<PathBuf>,
    }

    impl FakeManager {
        fn new(active_state: &'static str, job_result: JobResult) -> FakeManager {
            FakeManager {
                calls: RefCell::new(Vec::new()),
                job_result,
                active_state,
                links_in: None,
            }
        }

        fn linking_in(mut self, dir: PathBuf) -> FakeManager {
            self.links_in = Some(dir);
            self
        }

        fn calls(&self) -> Vec<String> {
            self.calls.borrow().clone()
        }
    }

    impl ServiceManager for FakeManager {
        fn daemon_reload(&self) -> Result<(), SystemdError> {
            self.calls.borrow_mut().push("daemon-reload".to_owned());
            Ok(())
        }
        fn enable(&self, units: &[&str]) -> Result<Vec<UnitFileChange>, SystemdError> {
            self.calls
                .borrow_mut()
                .push(format!("enable {}", units.join(" ")));
            let Some(dir) = &self.links_in else {
                return Ok(Vec::new());
            };
            fs::create_dir_all(dir).unwrap();
            Ok(units
                .iter()
                .map(|unit| {
                    let link = dir.join(unit);
                    std::os::unix::fs::symlink(format!("/etc/systemd/system/{unit}"), &link)
                        .unwrap();
                    UnitFileChange {
                        kind: "symlink".to_owned(),
                        path: link.display().to_string(),
                        destination: format!("/etc/systemd/system/{unit}"),
                    }
                })
                .collect())
        }
        fn disable(&self, units: &[&str]) -> Result<Vec<UnitFileChange>, SystemdError> {
            self.calls
                .borrow_mut()
                .push(format!("disable {}", units.join(" ")));
            Ok(Vec::new())
        }
        fn run_job(&self, kind: JobKind, unit: &str) -> Result<JobResult, SystemdError> {
            self.calls.borrow_mut().push(format!("{kind} {unit}"));
            Ok(self.job_result.clone())
        }
        fn unit_status(&self, unit: &str) -> Result<UnitStatus, SystemdError> {
            Ok(UnitStatus {
                name: unit.to_owned(),
                load_state: "loaded".to_owned(),
                active_state: if unit.starts_with("iptables@") {
                    self.active_state.to_owned()
                } else {
                    "inactive".to_owned()
                },
                sub_state: "dead".to_owned(),
                unit_file_state: "enabled".to_owned(),
                fragment_path: String::new(),
                result: Some("exit-code".to_owned()),
                active_enter_monotonic_us: 0,
                inactive_exit_monotonic_us: 0,
            })
        }
        fn unit_file_state(&self, _unit: &str) -> Result<Option<String>, SystemdError> {
            Ok(None)
        }
        fn reset_failed(&self, unit: &str) -> Result<(), SystemdError> {
            self.calls.borrow_mut().push(format!("reset-failed {unit}"));
            Ok(())
        }
    }

    const POLICY: &str = "[interfaces]\nexternal = [\"eth0\"]\n";

    struct Staged {
        root: tempfile::TempDir,
        layout: Layout,
        instance: InstanceName,
        policy_path: PathBuf,
    }

    fn staged(policy: Option<&str>) -> Staged {
        let root = tempfile::tempdir().unwrap();
        let layout = Layout::new(root.path());
        let instance: InstanceName = "base".parse().unwrap();
        let policy_path = layout.policy_path(&instance);
        if let Some(text) = policy {
            fs::create_dir_all(layout.config_dir()).unwrap();
            fs::write(&policy_path, text).unwrap();
        }
        Staged {
            root,
            layout,
            instance,
            policy_path,
        }
    }

    impl Staged {
        fn target(&self) -> Target<'_> {
            Target {
                layout: &self.layout,
                instance: &self.instance,
                policy_path: &self.policy_path,
                host: &FakeHost,
                trial: &AcceptingTrial,
                firewall: &QuietFirewall,
            }
        }

        fn files(&self) -> Vec<(PathBuf, Vec<u8>)> {
            let mut all = Vec::new();
            let mut stack = vec![self.root.path().to_owned()];
            while let Some(dir) = stack.pop() {
                for entry in fs::read_dir(dir).unwrap() {
                    let path = entry.unwrap().path();
                    if path.is_dir() {
                        stack.push(path);
                    } else {
                        all.push((path.clone(), fs::read(&path).unwrap_or_default()));
                    }
                }
            }
            all.sort();
            all
        }
    }

    #[test]
    fn install_starts_an_inactive_unit_and_reloads_an_active_one() {
        for (state, job) in [("inactive", "start"), ("active", "reload")] {
            let staged = staged(Some(POLICY));
            let manager = FakeManager::new(state, JobResult::Done);
            let mut out = Vec::new();
            install(
                &staged.target(),
                Systemd::Live(&manager),
                InstallOptions::default(),
                &mut out,
            )
            .unwrap();
            assert_eq!(
                manager.calls(),
                [
                    "daemon-reload".to_owned(),
                    "enable iptables.service iptables@base.service iptables-docker@base.service"
                        .to_owned(),
                    format!("{job} iptables@base.service"),
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
            let mut out = Vec::new();
            let error = install(
                &staged.target(),
                Systemd::Live(&manager),
                InstallOptions::default(),
                &mut out,
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
            let text = String::from_utf8_lossy(&out);
            assert!(
                text.contains("putting the previous files and unit state back"),
                "{text}"
            );
            let mut expected = vec![
                "daemon-reload".to_owned(),
                "enable iptables.service iptables@base.service iptables-docker@base.service"
                    .to_owned(),
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

    #[test]
    fn reload_refuses_an_inactive_unit_and_changes_nothing() {
        let staged = staged(Some(POLICY));
        let before = staged.files();
        let manager = FakeManager::new("failed", JobResult::Done);
        let error = reload(&staged.target(), &manager, &mut Vec::new()).unwrap_err();
        assert!(format!("{error:#}").contains("is failed, so there is nothing to reload"));
        assert_eq!(staged.files(), before);
        assert!(manager.calls().is_empty(), "{:?}", manager.calls());
    }

    #[test]
    fn a_failed_reload_restores_and_reloads_the_previous_files() {
        let staged = staged(Some(POLICY));
        let config = staged.layout.config_dir();
        for name in [
            "base.rules",
            "base.rules.empty",
            "base.rules6",
            "base.rules6.empty",
        ] {
            fs::write(config.join(name), format!("previous {name}\n")).unwrap();
        }
        let before = staged.files();
        let manager = FakeManager::new("active", JobResult::Other("failed".to_owned()));
        assert!(reload(&staged.target(), &manager, &mut Vec::new()).is_err());
        assert_eq!(staged.files(), before);
        assert_eq!(
            manager.calls(),
            [
                "reload iptables@base.service",
                "reload iptables@base.service"
            ],
            "the new files, then the previous ones again"
        );
    }

    #[test]
    fn status_exit_codes_follow_systemctl() {
        let mut report = StatusReport {
            instance: "base".to_owned(),
            unit: FakeManager::new("active", JobResult::Done)
                .unit_status("iptables@base.service")
                .unwrap(),
            docker_unit: FakeManager::new("inactive", JobResult::Done)
                .unit_status("iptables-docker@base.service")
                .unwrap(),
            live: Some(LiveState {
                backend: None,
                families: Vec::new(),
            }),
            live_error: None,
        };
        assert_eq!(report.exit_code(), exit::ACTIVE);
        report.live = None;
        assert_eq!(
            report.exit_code(),
            exit::DRIFT,
            "unknown live state is not in force"
        );
        report.unit.active_state = "failed".to_owned();
        assert_eq!(report.exit_code(), exit::INACTIVE);
        report.unit.load_state = "not-found".to_owned();
        assert_eq!(report.exit_code(), exit::NOT_FOUND);
    }
}
