//! The commands that put an instance in force and take it out: install, uninstall,
//! start, stop, restart, reload, and the two the units run (`forward-jump` after every
//! load, `umbrella` for `systemctl start|stop|reload iptables`). Each is a sequence
//! over the parts it needs (the file layout, the kernel check, systemd behind
//! [`ServiceManager`]) with three rules: everything that can be checked is checked
//! before anything changes (a refusal says the files and live rules were left as they
//! are); a step that fails after files were replaced puts them back; and a command
//! that changed the live rules ends with the `status` check, saying "in force" only
//! when it passes (exit code [`exit::NOT_IN_FORCE`] when it does not).
//!
//! "Started" means the whole set: the rules unit and the re-assertion after Docker
//! starts (`iptables-docker@`), which stops with it. "Stopped" means stopped until
//! started: a Docker restart does not bring the rules back.

pub mod conflicts;
pub mod lockout;
pub mod status;

use std::fs;
use std::path::{Path, PathBuf};

use anyhow::{Context as _, bail};

use crate::cli::exit;
use crate::cli::output::Output;
use crate::control::conflicts::{Conflict, ConflictFacts};
use crate::control::lockout::LoadedRules;
use crate::family::Family;
use crate::files::layout::Layout;
use crate::files::source;
use crate::files::{self, DirLock, Snapshot};
use crate::host::HostProbe;
use crate::iptables::forward::{self, Finding};
use crate::iptables::instance;
use crate::iptables::live::LiveFirewall;
use crate::iptables::render::RenderedFile;
use crate::iptables::trial::RulesetTrial;
use crate::policy::Policy;
use crate::policy::starter::{self, StarterFacts};
use crate::policy::types::InstanceName;
use crate::systemd::units::{
    self, ADMIN_UNIT_DIR, InstanceUnits, PACKAGE_UNIT_DIRS, SHIPPED_UNITS,
};
use crate::systemd::{ActiveState, JobKind, JobResult, ServiceManager, journal};

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
    /// Go on despite conflicts that can be overridden, and despite SSH sessions the
    /// new rules would lock out.
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

/// The context every refusal carries: nothing was touched.
fn refused(command: &str) -> String {
    format!("{command} refused; {UNCHANGED}")
}

/// What every refusal says.
pub(crate) const UNCHANGED: &str =
    "nothing was changed: the files and the live rules were left as they are";

/// Loads the policy, or builds the starter policy when there is none yet (returning
/// its text so it is written together with everything else).
fn policy_or_starter(
    target: &Target<'_>,
    out: &mut Output,
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
    );
    for line in starter::summary(&facts, &policy) {
        writeln!(out, "  {line}");
    }
    Ok((policy, Some(text)))
}

/// Renders and proves the instance's files; nothing is written. Returns the files and
/// what the kernel loaded of each family's rules.
fn render_and_prove(
    target: &Target<'_>,
    policy: &Policy,
) -> anyhow::Result<(Vec<RenderedFile>, LoadedRules)> {
    let rendered = instance::render_policy(target.layout, target.instance, policy)?;
    let reports = instance::prove(policy, &rendered, target.trial)
        .context("kernel check of the rendered files failed")?;
    Ok((rendered, lockout::loaded_rules(reports)))
}

/// What is wrong between the interface names of `policy` and this host: names that do
/// not exist, and Docker bridge patterns that match an interface facing the outside (a
/// staged tree knows no interfaces, so has none of these).
pub fn interface_problems(
    policy: &Policy,
    host: &dyn HostProbe,
) -> Vec<crate::policy::PolicyError> {
    let Ok(existing) = host.interface_names() else {
        return Vec::new();
    };
    if existing.is_empty() {
        return Vec::new();
    }
    let mut uplinks = host.default_route_interfaces().unwrap_or_default();
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
    let mut problems = policy.missing_interfaces(&existing);
    problems.extend(policy.bridges_matching_uplinks(&uplinks));
    problems
}

/// Warns about each of [`interface_problems`].
pub fn warn_interface_problems(policy: &Policy, host: &dyn HostProbe, out: &mut Output) {
    for problem in interface_problems(policy, host) {
        out.warn(problem);
    }
}

/// Refuses (unless `force`) when the rules in `loaded` would refuse new connections of
/// an SSH session open now.
fn refuse_lockouts(
    command: &str,
    target: &Target<'_>,
    loaded: &[(Family, String)],
    force: bool,
    out: &mut Output,
) -> anyhow::Result<()> {
    let lockouts = lockout::check(target.host, loaded);
    if lockouts.is_empty() {
        return Ok(());
    }
    if force {
        for lockout in &lockouts {
            out.warn(format!("(--force) {lockout}"));
        }
        return Ok(());
    }
    bail!(lockout::refusal(command, &lockouts))
}

/// Ends a command that changed the live rules: the `status` check, and its verdict. A
/// check that cannot run is reported, never turned into a failure of the change.
fn report_in_force(target: &Target<'_>, manager: &dyn ServiceManager, out: &mut Output) -> u8 {
    match status::status(target, manager) {
        Ok(report) if report.in_force => {
            writeln!(out, "{}", report.in_force_line());
            exit::SUCCESS
        }
        Ok(report) => {
            let mut text = "the rules are loaded but NOT IN FORCE:".to_owned();
            for problem in &report.problems {
                text.push_str(&format!("\n  - {problem}"));
            }
            out.warn(text);
            exit::NOT_IN_FORCE
        }
        Err(e) => {
            out.warn(format!(
                "the rules are loaded, but whether they are in force could not be checked: {e:#}"
            ));
            exit::NOT_IN_FORCE
        }
    }
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

/// `install`: policy (starter if none), render and prove, conflicts, SSH sessions,
/// files, units, enable, start the whole set, and the status check.
pub fn install(
    target: &Target<'_>,
    systemd: Systemd<'_>,
    options: InstallOptions,
    out: &mut Output,
) -> anyhow::Result<u8> {
    let root = target.layout.root();
    let manager = match systemd {
        Systemd::Live(manager) => Some(manager),
        Systemd::Staged => None,
    };
    let config_dir = target.layout.config_dir();
    let mut created = CreatedDirs::create(&config_dir)?;
    let _lock = DirLock::acquire(&config_dir)?;

    let (policy, starter_text) = policy_or_starter(target, out)?;
    let (rendered, loaded) = match (render_and_prove(target, &policy), &starter_text) {
        (Ok(done), _) => done,
        (Err(error), None) => return Err(error.context(refused("install"))),
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
    );
    warn_interface_problems(&policy, target.host, out);

    let conflicts =
        ConflictFacts::gather(root, target.instance, manager.map(|m| (m, target.firewall)))?
            .conflicts();
    refuse_on_conflicts(&conflicts, options.force, out)?;
    if manager.is_some() && !options.no_start {
        refuse_lockouts("install", target, &loaded, options.force, out)?;
    }
    created.keep();

    // Everything checked: write.
    let outputs = RenderedFile::outputs(rendered);
    let output_set = instance::output_set(target.layout, target.instance);
    let mut snapshot = Snapshot::take_set(&output_set)?;
    if let Some(text) = starter_text {
        let (dir, name) = files::dir_and_name(target.policy_path)?;
        files::create_dirs(dir)?;
        snapshot.extend(Snapshot::take(dir, [name.as_str()])?);
        files::write_files(dir, &[(name, text)])?;
        writeln!(out, "wrote {}", target.policy_path.display());
    }
    let (unit_dir, packaged) = unit_dir(root);
    let result = (|| -> anyhow::Result<()> {
        report_writes(&output_set.write(&outputs)?, out);
        if packaged {
            writeln!(
                out,
                "units are shipped by the package in {}",
                unit_dir.display()
            );
        } else {
            files::create_dirs(&unit_dir)?;
            // Only install writes our units here, and it holds the config directory's
            // lock: temporary files of a killed install are nobody's work in progress.
            files::remove_stale_temps(&unit_dir)?;
            snapshot.extend(Snapshot::take(
                &unit_dir,
                SHIPPED_UNITS.iter().map(|u| u.file_name),
            )?);
            let unit_files: Vec<(String, String)> = SHIPPED_UNITS
                .iter()
                .map(|u| (u.file_name.to_owned(), u.text.to_owned()))
                .collect();
            report_writes(&files::write_files(&unit_dir, &unit_files)?, out);
        }
        Ok(())
    })();
    if let Err(error) = result {
        restore(&snapshot, out);
        return Err(error);
    }

    let units = InstanceUnits::new(target.instance);
    let Some(manager) = manager else {
        stage_enable(target.layout, &unit_dir, &units, out)?;
        return Ok(exit::SUCCESS);
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
            writeln!(out, "{change}");
            if change.kind == "symlink" {
                undo.created_links.push(PathBuf::from(&change.path));
            }
        }
        // EnableUnitFiles only makes the links; without a reload a running systemd
        // does not know that docker.service now wants the re-assertion (systemctl
        // enable reloads for the same reason).
        manager.daemon_reload()?;
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
        );
        return Ok(exit::SUCCESS);
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
        );
        undo.run(out);
        if kind == JobKind::Reload {
            // The unit is still active, and a reload that failed part way may have
            // loaded the new IPv4 rules but not the IPv6 ones: load the previous files.
            reload_previous(manager, &units.rules, out);
        }
        return Err(error);
    }
    writeln!(out, "{} is active", units.rules);
    start_rest_of_set(manager, &units, out);
    Ok(report_in_force(target, manager, out))
}

/// Stops an instance's set: the re-assertion after Docker, then the rules (the
/// pass-through files are loaded).
fn stop_set(manager: &dyn ServiceManager, units: &InstanceUnits) -> anyhow::Result<()> {
    run_job(manager, JobKind::Stop, &units.docker)?;
    run_job(manager, JobKind::Stop, &units.rules)
}

/// Once the rules are loaded: starts the re-assertion after Docker and the umbrella.
/// A failure here is a warning, and the status check that follows reports what it
/// leaves undone; the change itself is made.
fn start_rest_of_set(manager: &dyn ServiceManager, units: &InstanceUnits, out: &mut Output) {
    if let Err(e) = start_reassertion(manager, units, out) {
        out.warn(format!("{e:#}"));
    }
    if let Err(e) = run_job(manager, JobKind::Start, &units.umbrella) {
        out.warn(format!("{e:#}"));
    }
}

/// Starts the re-assertion after Docker starts (it skips itself while Docker is not
/// running, and is then started with Docker).
fn start_reassertion(
    manager: &dyn ServiceManager,
    units: &InstanceUnits,
    out: &mut Output,
) -> anyhow::Result<()> {
    match manager.run_job(JobKind::Start, &units.docker)? {
        // systemd before 248 ends a start that ExecCondition skipped with `skipped`.
        JobResult::Done => {}
        JobResult::Other(word) if word == "skipped" => {}
        result => {
            return Err(JobFailed {
                unit: units.docker.clone(),
                kind: JobKind::Start,
                result,
                details: failure_details(manager, &units.docker),
            }
            .into());
        }
    }
    let state = manager.unit_status(&units.docker)?;
    if state.is_active() {
        writeln!(
            out,
            "{} is active: the rules are re-asserted after every start of Docker",
            units.docker
        );
    } else {
        writeln!(
            out,
            "{} starts with Docker (Docker is not running now)",
            units.docker
        );
    }
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
    fn run(&self, out: &mut Output) {
        restore(&self.snapshot, out);
        for link in &self.created_links {
            match files::remove_link(link) {
                Ok(true) => writeln!(out, "removed {}", link.display()),
                Ok(false) => {}
                Err(e) => out.warn(format!("could not remove {}: {e}", link.display())),
            }
        }
        if let Err(e) = self.manager.daemon_reload() {
            out.warn(format!("systemd did not reload its unit files: {e}"));
            return;
        }
        // A first install whose start failed: the unit file is gone again, and a unit
        // that no longer exists should not linger in `systemctl --failed`. (The failure
        // was reported, journal lines included.)
        let gone_but_failed = self
            .manager
            .unit_status(self.rules_unit)
            .is_ok_and(|s| s.is_not_found() && s.active_state == ActiveState::Failed);
        if gone_but_failed && let Err(e) = self.manager.reset_failed(self.rules_unit) {
            out.warn(e);
        }
    }
}

/// After a failed reload and the previous files put back: loads them again, so the live
/// rules are the previous ones whatever the failed reload had loaded.
fn reload_previous(manager: &dyn ServiceManager, unit: &str, out: &mut Output) {
    match manager.run_job(JobKind::Reload, unit) {
        Ok(JobResult::Done) => writeln!(out, "{unit}: the previous files are loaded again"),
        Ok(other) => out.warn(format!(
            "reloading the previous files did not succeed either ({other})"
        )),
        Err(e) => out.warn(format!("reloading the previous files failed too: {e}")),
    }
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
    out: &mut Output,
) -> anyhow::Result<()> {
    let blocking: Vec<&Conflict> = conflicts
        .iter()
        .filter(|c| !force || !c.forceable)
        .collect();
    if blocking.is_empty() {
        for conflict in conflicts {
            out.warn(format!("(--force) {conflict}"));
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

fn report_writes(summary: &files::WriteSummary, out: &mut Output) {
    for line in summary.lines() {
        writeln!(out, "{line}");
    }
}

fn restore(snapshot: &Snapshot, out: &mut Output) {
    if let Err(e) = snapshot.restore() {
        out.warn(format!("could not put every file back: {e}"));
    }
}

/// Enables the units in a staged tree with the symlinks `systemctl --root enable` makes.
fn stage_enable(
    layout: &Layout,
    unit_dir: &Path,
    units: &InstanceUnits,
    out: &mut Output,
) -> anyhow::Result<()> {
    let root = layout.root();
    for unit in units.all() {
        let Some(shipped) = units::shipped_unit(unit) else {
            bail!("internal error: {unit} is not a shipped unit");
        };
        let booted_path = layout.as_booted(&unit_dir.join(shipped.file_name));
        for link in units::enable_links(root, unit, &booted_path, shipped.text) {
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
            writeln!(
                out,
                "created symlink {} -> {}",
                link.link.display(),
                link.target.display()
            );
        }
    }
    writeln!(
        out,
        "staged under {}: the units start at its first boot",
        root.display()
    );
    Ok(())
}

/// `uninstall`: stop (the pass-through files are loaded), disable, and remove the
/// units install wrote, unless another instance still uses them. Policy and rendered
/// files stay.
pub fn uninstall(
    target: &Target<'_>,
    systemd: Systemd<'_>,
    out: &mut Output,
) -> anyhow::Result<u8> {
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
                writeln!(out, "{} is not installed; nothing was changed", units.rules);
                return Ok(exit::SUCCESS);
            }
            if status.is_active() {
                stop_set(manager, &units)?;
                writeln!(
                    out,
                    "stopped {}: INPUT, OUTPUT and DOCKER-USER now pass traffic through",
                    units.rules
                );
            } else if status.active_state == ActiveState::Failed {
                // A failed unit is not stopped (ExecStop runs only for active units), and
                // whatever it loaded before failing would stay in the kernel.
                load_pass_through(target, out)?;
            }
            if !shared_in_use && manager.unit_status(&units.umbrella)?.is_active() {
                run_job(manager, JobKind::Stop, &units.umbrella)?;
            }
            for change in manager.disable(&own)? {
                writeln!(out, "{change}");
            }
            if !shared_in_use {
                remove_admin_units(root, out)?;
            }
            manager.daemon_reload()?;
        }
        Systemd::Staged => {
            for unit in &own {
                if let Some(shipped) = units::shipped_unit(unit) {
                    for link in units::enable_links(root, unit, Path::new("/"), shipped.text) {
                        let removed = files::remove_link(&link.link)
                            .with_context(|| format!("cannot remove {}", link.link.display()))?;
                        if removed {
                            writeln!(out, "removed {}", link.link.display());
                        }
                    }
                }
            }
            if !shared_in_use {
                remove_admin_units(root, out)?;
            }
        }
    }
    if shared_in_use {
        writeln!(
            out,
            "kept iptables.service and the unit templates: instance {} still uses them",
            others.join(", ")
        );
    }
    writeln!(
        out,
        "policy and rendered files under {} are kept",
        target.layout.config_dir().display()
    );
    Ok(exit::SUCCESS)
}

/// Loads the instance's pass-through files, as its unit's ExecStop does.
fn load_pass_through(target: &Target<'_>, out: &mut Output) -> anyhow::Result<()> {
    for family in Family::ALL {
        let (path, text) = instance::read_output(
            target.layout,
            target.instance,
            family,
            crate::iptables::render::TemplateKind::Empty,
        )?;
        target
            .firewall
            .restore(family, &text)
            .with_context(|| format!("cannot load {}", path.display()))?;
    }
    writeln!(
        out,
        "the unit had failed: loaded its pass-through files, so INPUT, OUTPUT and DOCKER-USER pass traffic through"
    );
    Ok(())
}

/// Removes the unit files install wrote to the admin directory (only ours).
fn remove_admin_units(root: &Path, out: &mut Output) -> anyhow::Result<()> {
    let dir = root.join(ADMIN_UNIT_DIR);
    for unit in SHIPPED_UNITS {
        let path = dir.join(unit.file_name);
        let is_ours = path.symlink_metadata().is_ok_and(|m| m.is_file())
            && source::read_consulted(&path).is_some_and(|t| units::is_ours(&t));
        if is_ours {
            fs::remove_file(&path).with_context(|| format!("cannot remove {}", path.display()))?;
            writeln!(out, "removed {}", path.display());
        }
    }
    Ok(())
}

/// `start`, `stop`, `restart`. Start and restart act on the whole set (rules and the
/// re-assertion after Docker), refuse rules that would lock out an SSH session open
/// now (unless `force`), and end with the status check. Restart first proves the files
/// on disk (files that would not load are refused while the old rules still stand),
/// then loads them with no gap: on an active instance it is a reload, never a stop and
/// a start, which would leave the host open if the start failed.
pub fn lifecycle(
    target: &Target<'_>,
    manager: &dyn ServiceManager,
    kind: JobKind,
    force: bool,
    out: &mut Output,
) -> anyhow::Result<u8> {
    let instance = target.instance;
    let units = InstanceUnits::new(instance);
    let status = manager.unit_status(&units.rules)?;
    if !status.is_installed() {
        bail!(
            "{} is not installed (run `iptables-ctl install {instance}`); {UNCHANGED}",
            units.rules
        );
    }
    match kind {
        JobKind::Stop => {
            stop_set(manager, &units)?;
            writeln!(
                out,
                "{}: stopped: the pass-through (.empty) files are loaded; Docker starts do not load the rules until `iptables-ctl start {instance}` (the unit stays enabled: the next boot loads them)",
                units.rules
            );
            // iptables.service says whether an instance runs: `systemctl start iptables`
            // must not find it active and do nothing.
            if conflicts::other_instances(target.layout.root(), instance).is_empty()
                && let Err(e) = run_job(manager, JobKind::Stop, &units.umbrella)
            {
                out.warn(format!("{e:#}"));
            }
            Ok(exit::SUCCESS)
        }
        JobKind::Start | JobKind::Restart | JobKind::Reload => {
            // The files proven are the files loaded: no render or reload may replace
            // the set in between.
            let _lock = DirLock::acquire(&target.layout.config_dir())?;
            let changes_rules = kind != JobKind::Start || !status.is_active();
            if changes_rules {
                let loaded = prove_files_on_disk(target).with_context(|| {
                    format!("refusing to {kind}: the rules on disk would not load; {UNCHANGED}")
                })?;
                refuse_lockouts(&kind.to_string(), target, &loaded, force, out)?;
            }
            // A restart of an active instance is a reload: a stop loads the
            // pass-through files, and a start that then failed would leave the host
            // open. Reloading loads the same files with no gap, and a reload that fails
            // leaves the rules that were in force.
            let job = match kind {
                JobKind::Restart if status.is_active() => {
                    writeln!(
                        out,
                        "{}: restart loads the rules again with no gap (a reload): stopping first would open the host until the start succeeded",
                        units.rules
                    );
                    JobKind::Reload
                }
                JobKind::Restart => JobKind::Start,
                other => other,
            };
            run_job(manager, job, &units.rules)?;
            writeln!(out, "{}: active", units.rules);
            start_rest_of_set(manager, &units, out);
            Ok(report_in_force(target, manager, out))
        }
    }
}

/// Loads the instance's files as they are on disk into a throwaway namespace; returns
/// what the kernel loaded of each family's rules.
fn prove_files_on_disk(target: &Target<'_>) -> anyhow::Result<LoadedRules> {
    Family::ALL
        .into_iter()
        .map(|family| {
            instance::prove_on_disk(target.layout, target.instance, family, target.trial)
                .map(|report| (family, report.loaded))
        })
        .collect()
}

/// `reload`: re-render and prove the policy (a bad one changes nothing), refuse rules
/// that would lock out an SSH session (unless `force`), write the files that changed,
/// and reload the unit; if the reload fails, the previous files are put back and loaded
/// again. Ends with the status check.
pub fn reload(
    target: &Target<'_>,
    manager: &dyn ServiceManager,
    force: bool,
    out: &mut Output,
) -> anyhow::Result<u8> {
    let units = InstanceUnits::new(target.instance);
    let config_dir = target.layout.config_dir();
    let _lock = DirLock::acquire(&config_dir)?;
    let (rendered, loaded) = (|| -> anyhow::Result<_> {
        let policy = Policy::load(target.policy_path)?;
        let proven = render_and_prove(target, &policy)?;
        let status = manager.unit_status(&units.rules)?;
        if !status.is_installed() {
            bail!(
                "{} is not installed (run `iptables-ctl install {}`)",
                units.rules,
                target.instance
            );
        }
        if !status.is_active() {
            bail!(
                "{} is {}, so there is nothing to reload (`iptables-ctl start {}` loads the rules)",
                units.rules,
                status.active_state,
                target.instance
            );
        }
        warn_interface_problems(&policy, target.host, out);
        Ok(proven)
    })()
    .context(refused("reload"))?;
    refuse_lockouts("reload", target, &loaded, force, out)?;
    let outputs = RenderedFile::outputs(rendered);
    let output_set = instance::output_set(target.layout, target.instance);
    let snapshot = Snapshot::take_set(&output_set)?;
    let summary = output_set.write(&outputs)?;
    report_writes(&summary, out);
    if let Err(error) = run_job(manager, JobKind::Reload, &units.rules) {
        writeln!(
            out,
            "reload failed; putting the previous files back and loading them again"
        );
        restore(&snapshot, out);
        reload_previous(manager, &units.rules, out);
        return Err(error);
    }
    if summary.written.is_empty() {
        writeln!(
            out,
            "{}: reloaded; the files were unchanged, so the same rules were loaded again",
            units.rules
        );
    } else {
        writeln!(out, "{}: reloaded with the new files", units.rules);
    }
    Ok(report_in_force(target, manager, out))
}

/// `forward-jump` (run by the units after every load): makes FORWARD jump to
/// DOCKER-USER first in both families, and records each repair for `status`.
pub fn forward_jump(
    layout: &Layout,
    instance: &InstanceName,
    firewall: &dyn LiveFirewall,
    out: &mut Output,
) -> anyhow::Result<u8> {
    // Each family on its own: a failure in one must not leave the other unrepaired.
    let mut failures = Vec::new();
    for family in Family::ALL {
        match forward::ensure(firewall, family) {
            Ok(Finding::InPlace) => {}
            Ok(Finding::Added) => {
                writeln!(out, "{family}: FORWARD jumps to DOCKER-USER (added)");
            }
            Ok(Finding::Repaired { first_rule, jumps }) => {
                writeln!(
                    out,
                    "{family}: FORWARD did not jump to DOCKER-USER first (its first rule was `{first_rule}`; {jumps} jump(s)); it does now"
                );
                // The repair is done; the record only tells status about it.
                if let Err(e) = forward::record(layout, instance, family, &first_rule) {
                    out.warn(format!(
                        "the repair could not be recorded for status: {e:#}"
                    ));
                }
            }
            Err(e) => failures.push(format!("{e:#}")),
        }
    }
    if failures.is_empty() {
        Ok(exit::SUCCESS)
    } else {
        bail!(failures.join("\n"))
    }
}

/// `umbrella` (the `ExecStart`/`ExecReload`/`ExecStop` of `iptables.service`): the job
/// `kind` on every instance the umbrella wants (one `.wants/` link per enabled
/// instance), with its re-assertion after Docker, waiting for each. A reload skips an
/// instance that is not active (there is nothing to reload).
pub fn umbrella(
    manager: &dyn ServiceManager,
    kind: JobKind,
    out: &mut Output,
) -> anyhow::Result<u8> {
    let umbrella = manager.unit_status(units::UMBRELLA)?;
    let instances: Vec<InstanceName> = umbrella
        .wants
        .iter()
        .filter_map(|unit| units::instance_of(unit)?.parse().ok())
        .collect();
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
                    writeln!(out, "{} is not active: not reloaded", units.rules);
                    Ok(())
                }
                Err(e) => Err(e.into()),
            },
        };
        match result {
            Ok(()) => writeln!(out, "{}: {kind} done", units.rules),
            Err(e) => failures.push(format!("{e:#}")),
        }
    }
    if failures.is_empty() {
        Ok(exit::SUCCESS)
    } else {
        bail!("{kind} failed for some instances:\n{}", failures.join("\n"))
    }
}

#[cfg(test)]
mod tests {
    //! The flows against fakes: a service manager that records calls and answers as
    //! told, a trial that accepts everything, a host with eth0. The real thing is
    //! proven in tests/systemd_boot.rs; these reach the failure paths a real systemd
    //! rarely takes.

    use std::cell::RefCell;
    use std::io;
    use std::net::IpAddr;

    use super::*;
    use crate::control::status::StatusReport;
    use crate::host::SshConnection;
    use crate::host::net::HostNet;
    use crate::iptables::live::LiveState;
    use crate::iptables::trial::{TrialError, TrialReport};
    use crate::systemd::{LoadState, SystemdError, UnitFileChange, UnitFileState, UnitStatus};

    /// A host with eth0, no SSH session, and an empty network.
    struct FakeHost;

    impl HostProbe for FakeHost {
        fn default_route_interfaces(&self) -> io::Result<Vec<String>> {
            Ok(vec!["eth0".to_owned()])
        }
        fn interface_names(&self) -> io::Result<Vec<String>> {
            Ok(vec!["eth0".to_owned(), "lo".to_owned()])
        }
        fn sshd_ports(&self) -> Vec<u16> {
            vec![22]
        }
        fn ssh_connection(&self) -> Option<SshConnection> {
            None
        }
        fn ssh_sessions(&self) -> Vec<SshConnection> {
            Vec::new()
        }
        fn route_interface(&self, _address: IpAddr) -> Option<String> {
            None
        }
        fn network(&self) -> anyhow::Result<HostNet> {
            Ok(HostNet::default())
        }
    }

    struct AcceptingTrial;

    /// A firewall with nothing to say (no backend, no other backend).
    struct QuietFirewall;

    impl LiveFirewall for QuietFirewall {
        fn variant(&self) -> Option<crate::iptables::Variant> {
            None
        }
        fn save(&self, _family: Family) -> Result<String, crate::command::ToolError> {
            Ok(String::new())
        }
        fn save_other_variant(&self) -> Option<String> {
            None
        }
        fn restore(&self, _family: Family, _text: &str) -> Result<(), crate::command::ToolError> {
            Ok(())
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
                loaded_empty: String::new(),
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
                load_state: LoadState::Loaded,
                active_state: if unit.starts_with("iptables@") {
                    ActiveState::from_word(self.active_state)
                } else {
                    ActiveState::Inactive
                },
                sub_state: "dead".to_owned(),
                unit_file_state: UnitFileState::Enabled,
                fragment_path: String::new(),
                result: Some("exit-code".to_owned()),
                active_enter_monotonic_us: 0,
                inactive_exit_monotonic_us: 0,
                wants: Vec::new(),
            })
        }
        fn unit_file_state(&self, _unit: &str) -> Result<Option<UnitFileState>, SystemdError> {
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

        /// Writes the instance's four files as the tool does, each `TAG NAME`.
        fn write_rules(&self, tag: &str) {
            let files: Vec<(String, String)> = [
                "base.rules",
                "base.rules.empty",
                "base.rules6",
                "base.rules6.empty",
            ]
            .map(|name| (name.to_owned(), format!("{tag} {name}\n")))
            .to_vec();
            instance::output_set(&self.layout, &self.instance)
                .write(&files)
                .unwrap();
        }

        /// Every file and link under the root with what it shows a reader (a link:
        /// its target's bytes). The versions inside a file set's store are left out:
        /// a set put back shows its old bytes from a new version (the fileset tests
        /// prove that an absent set put back leaves no store).
        fn files(&self) -> Vec<(PathBuf, Vec<u8>)> {
            let mut all = Vec::new();
            let mut stack = vec![self.root.path().to_owned()];
            while let Some(dir) = stack.pop() {
                for entry in fs::read_dir(dir).unwrap() {
                    let path = entry.unwrap().path();
                    let is_store = path
                        .file_name()
                        .is_some_and(|n| n.to_string_lossy().ends_with(".set"));
                    if path.symlink_metadata().unwrap().is_dir() {
                        if !is_store {
                            stack.push(path);
                        }
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
            let mut out = Output::capture();
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
            let mut out = Output::capture();
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
            let text = out.stdout_text();
            assert!(
                text.contains("putting the previous files and unit state back"),
                "{text}"
            );
            let mut expected = vec![
                "daemon-reload".to_owned(),
                "enable iptables.service iptables@base.service iptables-docker@base.service"
                    .to_owned(),
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

    #[test]
    fn reload_refuses_an_inactive_unit_and_changes_nothing() {
        let staged = staged(Some(POLICY));
        let before = staged.files();
        let manager = FakeManager::new("failed", JobResult::Done);
        let error = reload(&staged.target(), &manager, false, &mut Output::capture()).unwrap_err();
        let text = format!("{error:#}");
        assert!(
            text.contains("is failed, so there is nothing to reload"),
            "{text}"
        );
        assert!(
            text.contains("the files and the live rules were left as they are"),
            "{text}"
        );
        assert_eq!(staged.files(), before);
        assert!(manager.calls().is_empty(), "{:?}", manager.calls());
    }

    #[test]
    fn a_failed_reload_restores_and_reloads_the_previous_files() {
        let staged = staged(Some(POLICY));
        staged.write_rules("previous");
        let before = staged.files();
        let manager = FakeManager::new("active", JobResult::Other("failed".to_owned()));
        assert!(reload(&staged.target(), &manager, false, &mut Output::capture()).is_err());
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
    fn restart_of_an_active_instance_never_takes_the_rules_down() {
        let staged = staged(Some(POLICY));
        staged.write_rules("in force");
        let manager = FakeManager::new("active", JobResult::Done);
        let mut out = Output::capture();
        lifecycle(
            &staged.target(),
            &manager,
            JobKind::Restart,
            false,
            &mut out,
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
        let text = out.stdout_text();
        assert!(text.contains("with no gap"), "{text}");

        // An instance that is not active is started.
        let manager = FakeManager::new("failed", JobResult::Done);
        lifecycle(
            &staged.target(),
            &manager,
            JobKind::Restart,
            false,
            &mut out,
        )
        .unwrap();
        assert_eq!(
            manager.calls().first().map(String::as_str),
            Some("start iptables@base.service")
        );
    }

    #[test]
    fn status_exit_codes_follow_systemctl() {
        let unit = |active: &str| {
            let mut status = FakeManager::new("active", JobResult::Done)
                .unit_status("iptables@base.service")
                .unwrap();
            status.active_state = ActiveState::from_word(active);
            status
        };
        let mut report = StatusReport {
            instance: "base".to_owned(),
            installed: true,
            in_force: true,
            problems: Vec::new(),
            unit: unit("active"),
            docker_unit: unit("inactive"),
            docker: unit("inactive"),
            live: Some(LiveState {
                variant: None,
                families: Vec::new(),
            }),
            live_error: None,
            exposure: None,
        };
        assert_eq!(report.exit_code(), exit::SUCCESS);
        report.in_force = false;
        assert_eq!(
            report.exit_code(),
            exit::NOT_IN_FORCE,
            "active but not in force is its own code"
        );
        report.unit.active_state = ActiveState::Failed;
        assert_eq!(report.exit_code(), exit::NOT_RUNNING);
        report.installed = false;
        assert_eq!(report.exit_code(), exit::NOT_INSTALLED);
        let codes = [
            exit::SUCCESS,
            exit::FAILURE,
            exit::USAGE,
            exit::NOT_RUNNING,
            exit::NOT_INSTALLED,
            exit::NOT_IN_FORCE,
            exit::EXPOSED,
        ];
        let distinct: std::collections::BTreeSet<u8> = codes.into_iter().collect();
        assert_eq!(
            distinct.len(),
            codes.len(),
            "every outcome has its own code"
        );
    }
}
