//! `status`: whether an instance's rules protect what its policy says, now. "In force"
//! is said only when every check that could fail passed:
//! - the units are active (and the re-assertion after Docker is, while Docker runs);
//! - the files on disk are what the policy renders today (no edit waits for a reload).
//!   Files a package upgrade left behind, stamped by another version, count when they
//!   differ only in that stamp: they hold the very rules this version would load
//!   (the report names the version; a reload stamps them anew). When they differ
//!   beyond it, the problem says that this version renders other rules, not that the
//!   policy changed;
//! - no lint of severity error fires ([`crate::lints`]: the owned chains hold exactly
//!   the rendered rules, FORWARD jumps to DOCKER-USER first in both families, every
//!   interface the policy names exists, Docker's bridges are covered, iptables is the
//!   variant Docker uses); the warnings are reported beside the verdict;
//! - the exposure audit finds no published port reachable beyond the policy.
//!
//! The flow gathers; [`StatusReport`] holds the outcome and its text (the command line
//! gives it its exit code).

use serde::Serialize;

use crate::audit::{self, AuditReport};
use crate::backend::{LiveState, Rendered};
use crate::control::apply::{self, PendingApply};
use crate::control::{HostReads, Target, while_proving};
use crate::files::generations::{Generation, Generations};
use crate::files::set::SetState;
use crate::files::stamp;
use crate::host::Remembered;
use crate::lints::{self, Facts, Finding, Lint, Severity, Skips};
use crate::policy::Policy;
use crate::systemd::units::InstanceUnits;
use crate::systemd::{ServiceManager, UnitFileState, UnitStatus};

/// The outcome of `status`, also its `--json` form.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct StatusReport {
    /// The instance.
    pub instance: String,
    /// The instance is installed (enabled, or not inactive).
    pub installed: bool,
    /// Active, and every check passed: the rules protect what the policy says.
    pub in_force: bool,
    /// Why it is not in force, one sentence each (empty when it is, or when the
    /// instance is not active: the unit's state says it all then).
    pub problems: Vec<String>,
    /// `iptables@INSTANCE.service`.
    pub unit: UnitStatus,
    /// `iptables-docker@INSTANCE.service`.
    pub docker_unit: UnitStatus,
    /// `docker.service`.
    pub docker: UnitStatus,
    /// The version of iptables-ctl that rendered the files on disk, from their first
    /// line (`None`: no file there carries the stamp, or they cannot be read).
    pub rendered_by: Option<String>,
    /// The files on disk against what this version renders of the policy today
    /// (active only, and only when the policy loads and renders).
    pub files_on_disk: Option<FilesOnDisk>,
    /// The live rules against the rendered files (active), or against the
    /// pass-through files (stopped).
    pub live: Option<LiveState>,
    /// Why the live state could not be read.
    pub live_error: Option<String>,
    /// An apply waiting for `confirm`: its rules are live, its files under /run, and
    /// the live rules are compared with those.
    pub pending: Option<PendingApply>,
    /// The newest generation (what install, reload, confirm or rollback last made the
    /// instance's own), and the one `rollback` returns to.
    pub generation: Option<Generation>,
    /// The generation before it.
    pub previous_generation: Option<Generation>,
    /// The exposure audit of the published ports (active only).
    pub exposure: Option<AuditReport>,
    /// What the lints found (active only): the errors are among `problems` too.
    pub lints: Vec<Finding>,
    /// The lints skipped (by `--skip` or the policy's `[lints] skip`).
    pub skipped_lints: Vec<Lint>,
}

/// The files on disk against what this version renders of the policy today.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub(crate) enum FilesOnDisk {
    /// Byte for byte what it renders.
    AsRendered,
    /// Rendered by another version, and the same once its stamp is set aside: the
    /// rules in force are those this version would load.
    StampOnly,
    /// Rendered by another version, into other rules than this version renders.
    RenderedDifferently,
    /// Not what this version renders, and not stamped by another one: the policy
    /// changed since it was applied (or the files were edited, or are missing).
    PolicyChanged,
}

/// `status`: unit states, the live rules against the rendered files, FORWARD, the
/// policy against the files, and the exposure of published ports.
pub(crate) fn status(
    target: &Target<'_>,
    manager: &dyn ServiceManager,
    skips: &Skips,
) -> anyhow::Result<StatusReport> {
    let units = InstanceUnits::new(target.instance);
    let unit = manager.unit_status(&units.rules)?;
    let mut report = StatusReport {
        instance: target.instance.to_string(),
        installed: unit.is_installed(),
        in_force: false,
        problems: Vec::new(),
        docker_unit: manager.unit_status(&units.docker)?,
        docker: manager.unit_status("docker.service")?,
        unit,
        rendered_by: None,
        files_on_disk: None,
        live: None,
        live_error: None,
        pending: None,
        generation: None,
        previous_generation: None,
        exposure: None,
        lints: Vec::new(),
        skipped_lints: Vec::new(),
    };
    if !report.installed {
        return Ok(report);
    }
    // Unreadable generations hide nothing about the rules in force: they are left out.
    if let Ok(mut kept) = Generations::of(target.layout, target.instance).list() {
        report.generation = kept.pop();
        report.previous_generation = kept.pop();
    }
    // While an apply waits for `confirm`, its files are the ones loaded.
    let mut problems = Vec::new();
    report.pending = apply::pending(target.layout, target.instance).unwrap_or_else(|e| {
        problems.push(format!("cannot read the pending apply: {e:#}"));
        None
    });
    let pending_layout = target.layout.pending(target.instance);
    let files_layout = if report.pending.is_some() {
        &pending_layout
    } else {
        target.layout
    };
    // A file that cannot be read is judged below as one that is not what the policy
    // renders (as before the stamp was read), and names no version.
    let on_disk = target
        .backend
        .output_set(files_layout, target.instance)
        .read()
        .ok();
    report.rendered_by = on_disk.as_ref().and_then(rendered_by).map(str::to_owned);
    if !report.unit.is_active() {
        match target
            .backend
            .live_state(files_layout, target.instance, false)
        {
            Ok(state) => report.live = Some(state),
            Err(e) => report.live_error = Some(format!("{e:#}")),
        }
        return Ok(report);
    }
    if let Some(pending) = &report.pending {
        problems.extend(pending_problems(pending, manager, &units)?);
    }

    // What the lints and the audit read of the host (the live rules, its addresses,
    // the other iptables variant, the interfaces the interface checks ask for) is read
    // while the files on disk are proven.
    let remembered = Remembered::new(target.host);
    let target = &Target {
        host: &remembered,
        ..*target
    };
    let (host, live) = while_proving(
        || HostReads::read(target.backend, &remembered),
        || {
            target
                .backend
                .live_state(files_layout, target.instance, true)
        },
    )?;
    match live {
        Ok(state) => report.live = Some(state),
        Err(e) => {
            let text = format!("{e:#}");
            problems.push(format!(
                "cannot tell whether the rules are in force: {text}"
            ));
            report.live_error = Some(text);
        }
    }
    let (policy, files_on_disk) = policy_problems(
        target,
        on_disk.as_ref(),
        report.rendered_by.as_deref(),
        &mut problems,
    );
    report.files_on_disk = files_on_disk;
    if report.docker.is_active() && !report.docker_unit.is_active() {
        problems.push(format!(
            "Docker is running but {} is {}: the rules would not be re-asserted after Docker's next start; `iptables-ctl start {}` starts it",
            units.docker, report.docker_unit.active_state, target.instance
        ));
    }
    // Both families' live rules, read once for the lints and the audit.
    let HostReads {
        rules,
        net,
        variants,
    } = host;
    let net = net?;
    let read = match &rules {
        Ok(rules) => Ok((rules.as_ref(), &net)),
        Err(e) => {
            problems.push(format!("cannot audit the published ports: {e:#}"));
            Err(format!("{e:#}"))
        }
    };
    let facts = Facts::gather(
        target,
        policy.as_ref(),
        read,
        variants,
        report.live.as_ref(),
    );
    // A lint that could not run is a check that did not pass.
    problems.extend(facts.variants_unread.clone());
    let skips = policy
        .as_ref()
        .map(Policy::lint_skips)
        .unwrap_or_default()
        .and(skips);
    report.lints = lints::judge(&facts, &skips);
    report.skipped_lints = skips.lints().to_vec();
    problems.extend(
        report
            .lints
            .iter()
            .filter(|f| f.severity == Severity::Error)
            .map(Finding::line),
    );
    if let Ok(rules) = &rules {
        let interfaces = audit::audit_interfaces(&net, target.host, policy.as_ref());
        let exposure = rules.audit(&net, &interfaces, policy.as_ref());
        if policy.is_some() {
            problems.extend(exposure.flagged_lines());
        }
        report.exposure = Some(exposure);
    }
    report.in_force = problems.is_empty() && report.live.is_some();
    report.problems = problems;
    Ok(report)
}

/// What is wrong with a pending apply's safety net: the rollback that was promised
/// must be armed, and must have run once the deadline passed.
fn pending_problems(
    pending: &PendingApply,
    manager: &dyn ServiceManager,
    units: &InstanceUnits,
) -> anyhow::Result<Vec<String>> {
    let mut problems = Vec::new();
    if pending.seconds_left() == 0 {
        problems.push(format!(
            "the deadline of the pending apply passed but the previous rules did not come back: `journalctl -u iptables-rollback@{}.service` says why; `iptables-ctl reload {}` loads them",
            pending.instance, pending.instance
        ));
    } else if manager.unit_status(&units.rollback_timer)?.is_not_found() {
        problems.push(format!(
            "the pending apply has no rollback armed ({} is not loaded): `iptables-ctl confirm {}` keeps its rules, `iptables-ctl reload {}` loads the previous ones",
            units.rollback_timer, pending.instance, pending.instance
        ));
    }
    Ok(problems)
}

/// The version whose stamp the files `on_disk` carry: the first stamped file's, in the
/// set's order (the files of a set are written together, so they agree unless edited).
fn rendered_by(on_disk: &SetState) -> Option<&str> {
    on_disk
        .files()
        .find_map(|(_, bytes)| stamp::rendered_by(bytes))
}

/// Adds what is wrong between the policy file and the files in force (`on_disk`,
/// stamped by `rendered_by`); returns the policy when it loads, and how the files
/// stand against its rendering when it renders.
fn policy_problems(
    target: &Target<'_>,
    on_disk: Option<&SetState>,
    rendered_by: Option<&str>,
    problems: &mut Vec<String>,
) -> (Option<Policy>, Option<FilesOnDisk>) {
    let policy = match Policy::load(target.policy_path) {
        Ok(policy) => policy,
        Err(e) => {
            problems.push(format!(
                "the policy no longer loads, so the rules in force are those of an earlier one: {e}"
            ));
            return (None, None);
        }
    };
    let files_on_disk = match target
        .backend
        .render(target.layout, target.instance, &policy)
    {
        Ok(rendered) => {
            let files_on_disk = compare_files(&rendered, on_disk, rendered_by);
            match (files_on_disk, rendered_by) {
                (FilesOnDisk::AsRendered | FilesOnDisk::StampOnly, _) => {}
                (FilesOnDisk::RenderedDifferently, Some(version)) => problems.push(format!(
                    "the files in force were rendered by iptables-ctl {version}; this version ({}) renders the policy into different rules: `iptables-ctl reload` loads them",
                    stamp::VERSION
                )),
                (FilesOnDisk::RenderedDifferently | FilesOnDisk::PolicyChanged, _) => problems
                    .push(
                        "policy changed since it was applied: run `iptables-ctl reload`".to_owned(),
                    ),
            }
            Some(files_on_disk)
        }
        Err(e) => {
            problems.push(format!(
                "the policy no longer renders, so the rules in force are those of an earlier one: {e:#}"
            ));
            None
        }
    };
    (Some(policy), files_on_disk)
}

/// How the files `on_disk` (stamped by `rendered_by`) stand against `rendered`. Only a
/// stamp of another version is set aside: the rest of every file must match byte for
/// byte, and a missing file never does.
fn compare_files(
    rendered: &Rendered,
    on_disk: Option<&SetState>,
    rendered_by: Option<&str>,
) -> FilesOnDisk {
    let shown = |name: &str| {
        on_disk
            .and_then(|set| set.shown(name))
            .map(|shown| shown.bytes.as_slice())
    };
    // A file this version renders with nothing to load (comments only, such as the
    // sets file of a policy without long lists) is no different from none: files an
    // older version rendered without it load the same.
    let absent_alike = |name: &str, text: &str| {
        shown(name).is_none()
            && text
                .lines()
                .all(|line| line.trim().is_empty() || line.trim_start().starts_with('#'))
    };
    let files = rendered.files();
    if files
        .iter()
        .all(|(name, text)| shown(name) == Some(text.as_bytes()) || absent_alike(name, text))
    {
        return FilesOnDisk::AsRendered;
    }
    match rendered_by {
        Some(version) if version != stamp::VERSION => {
            let same_rules = files.iter().all(|(name, text)| {
                absent_alike(name, text)
                    || shown(name).is_some_and(|bytes| {
                        bytes == text.as_bytes()
                            || stamp::same_apart_from_stamp(bytes, text.as_bytes())
                    })
            });
            if same_rules {
                FilesOnDisk::StampOnly
            } else {
                FilesOnDisk::RenderedDifferently
            }
        }
        _ => FilesOnDisk::PolicyChanged,
    }
}

impl StatusReport {
    /// One line saying what holds, for the commands that end with this check.
    pub fn in_force_line(&self) -> String {
        let families: Vec<&str> = self
            .live
            .iter()
            .flat_map(|l| l.families.iter().map(|f| f.family.as_str()))
            .collect();
        let ports = self
            .exposure
            .as_ref()
            .map(|e| {
                if e.ports.is_empty() {
                    "no published ports".to_owned()
                } else {
                    format!("published ports within the policy ({})", e.port_summary())
                }
            })
            .unwrap_or_default();
        format!(
            "in force: the live rules are the rendered ones and FORWARD jumps to DOCKER-USER first ({}); {ports}",
            families.join(", ")
        )
    }

    /// What the report says of files stamped by another version, when they are.
    fn files_line(&self) -> Option<String> {
        let version = self.rendered_by.as_deref()?;
        if version == stamp::VERSION {
            return None;
        }
        let what_follows = match self.files_on_disk {
            Some(FilesOnDisk::StampOnly) => {
                "; the rules are the same as this version renders (nothing waits to be loaded): `iptables-ctl reload` stamps them anew"
            }
            Some(FilesOnDisk::RenderedDifferently) => {
                "; this version renders other rules, which are not loaded"
            }
            _ => "",
        };
        Some(format!(
            "files: rendered by iptables-ctl {version} (this is {}){what_follows}\n",
            stamp::VERSION
        ))
    }

    /// The report for a person.
    pub fn human(&self) -> String {
        let mut text = String::new();
        if !self.installed {
            text.push_str(&format!("{}: not installed\n", self.unit.name));
            return text;
        }
        for unit in [&self.unit, &self.docker_unit, &self.docker] {
            text.push_str(&unit_line(unit));
        }
        if let Some(line) = self.files_line() {
            text.push_str(&line);
        }
        if let Some(current) = &self.generation {
            text.push_str(&format!(
                "generation {} ({}, by iptables-ctl {}){}\n",
                current.number,
                current.command,
                current.version,
                // While an apply is pending, rollback refuses: no hint to it then.
                self.previous_generation
                    .as_ref()
                    .filter(|_| self.pending.is_none())
                    .map_or_else(String::new, |previous| format!(
                        "; `iptables-ctl rollback {}` returns to generation {} ({})",
                        self.instance, previous.number, previous.command
                    ))
            ));
        }
        if let Some(pending) = &self.pending {
            text.push_str(&format!(
                "pending apply of {}: its rules are live for {} s more; `iptables-ctl confirm {}` (from a new connection) keeps them, otherwise {} brings the previous rules back
",
                pending.policy.display(),
                pending.seconds_left(),
                self.instance,
                pending.timer
            ));
        }
        if let Some(error) = &self.live_error {
            text.push_str(&format!("live rules: cannot tell ({error})\n"));
        }
        let Some(live) = &self.live else {
            return text;
        };
        text.push_str(&format!(
            "backend: {}\n",
            live.variant.as_deref().unwrap_or("unknown")
        ));
        if !self.unit.is_active() {
            if live.families.iter().all(|f| f.rules_match) {
                text.push_str(
                    "stopped: pass-through rules loaded (INPUT, OUTPUT and DOCKER-USER let everything through)\n",
                );
            } else {
                for family in live.families.iter().filter(|f| !f.rules_match) {
                    text.push_str(&format!(
                        "stopped, but {}'s owned chains are not the pass-through rules ({} lines differ)\n",
                        family.family,
                        family.missing.len() + family.unexpected.len()
                    ));
                }
            }
            return text;
        }
        for family in &live.families {
            let verdict = if family.rules_match {
                "the rendered rules are live".to_owned()
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
            for set in &family.sets {
                let mark = if set.matches() { "" } else { "DRIFT: " };
                text.push_str(&format!("  set: {mark}{set}\n"));
            }
            let forward = match (&family.docker_user_first, &family.forward_first) {
                (Some(true), _) => "jumps to DOCKER-USER first".to_owned(),
                (Some(false), Some(first)) => {
                    format!("NOT FIRST: its first rule is `{first}`")
                }
                _ => "NO JUMP to DOCKER-USER".to_owned(),
            };
            let repaired = family
                .forward_repair
                .as_ref()
                .map(|r| {
                    format!(
                        " (repaired by iptables-ctl {} time(s) since boot; before the last repair its first rule was `{}`)",
                        r.count, r.last_first_rule
                    )
                })
                .unwrap_or_default();
            text.push_str(&format!("  FORWARD: {forward}{repaired}\n"));
        }
        if let Some(exposure) = &self.exposure {
            if exposure.ports.is_empty() {
                text.push_str("published ports: none\n");
            } else {
                text.push_str(&format!(
                    "published ports: {} (DNAT: through DOCKER-USER; docker-proxy: through INPUT)\n",
                    exposure.port_summary()
                ));
            }
        }
        for finding in self
            .lints
            .iter()
            .filter(|f| f.severity == Severity::Warning)
        {
            text.push_str(&format!("{finding}\n"));
        }
        if !self.skipped_lints.is_empty() {
            let names: Vec<&str> = self.skipped_lints.iter().map(|l| l.name()).collect();
            text.push_str(&format!("lints skipped: {}\n", names.join(", ")));
        }
        if self.in_force {
            text.push_str(&format!("{}\n", self.in_force_line()));
        } else {
            text.push_str("NOT IN FORCE:\n");
            for problem in &self.problems {
                let mut lines = problem.lines();
                if let Some(first) = lines.next() {
                    text.push_str(&format!("  - {first}\n"));
                }
                for line in lines {
                    text.push_str(&format!("    {line}\n"));
                }
            }
        }
        text
    }
}

fn unit_line(u: &UnitStatus) -> String {
    if u.is_not_found() {
        return format!("{}: not installed\n", u.name);
    }
    format!(
        "{}: {} ({}), {}{}\n",
        u.name,
        u.active_state,
        u.sub_state,
        if u.unit_file_state == UnitFileState::Absent {
            "no unit file"
        } else {
            u.unit_file_state.as_str()
        },
        u.result
            .as_deref()
            .filter(|r| *r != "success")
            .map(|r| format!(", last result: {r}"))
            .unwrap_or_default()
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backend::Backend as _;
    use crate::control::fakes::{FakeManager, InForceBackend, POLICY, Staged, staged};
    use crate::files::stamp::VERSION;
    use crate::systemd::JobResult;

    /// An older version than this one, as a package upgrade leaves its files behind.
    const OLDER: &str = "0.0.1-older";

    /// Writes today's rendering of the staged policy as the files in force, each file
    /// passed through `edit` first.
    fn write_rendering(staged: &Staged, edit: impl Fn(&str) -> String) {
        let backend = InForceBackend;
        let policy = Policy::load(&staged.policy_path).unwrap();
        let files: Vec<(String, String)> = backend
            .render(&staged.layout, &staged.instance, &policy)
            .unwrap()
            .into_outputs()
            .into_iter()
            .map(|(name, text)| (name, edit(&text)))
            .collect();
        backend
            .output_set(&staged.layout, &staged.instance)
            .write(&files)
            .unwrap();
    }

    /// `text` as `version` would have stamped it.
    fn stamped_by(version: &str, text: &str) -> String {
        let ours = format!("# Generated by iptables-ctl {VERSION}: ");
        assert!(text.starts_with(&ours), "{text}");
        text.replacen(
            &ours,
            &format!("# Generated by iptables-ctl {version}: "),
            1,
        )
    }

    fn status_of(staged: &Staged) -> StatusReport {
        let manager = FakeManager::new("active", JobResult::Done);
        status(
            &staged.target_with(&InForceBackend),
            &manager,
            &Skips::default(),
        )
        .unwrap()
    }

    /// After a package upgrade the files in force still carry the older version's
    /// stamp. When the rules are the same, nothing waits to be loaded: the policy did
    /// not change, and the instance is in force. The report names the version.
    #[test]
    fn the_same_rules_stamped_by_an_older_version_are_in_force() {
        let staged = staged(Some(POLICY));
        write_rendering(&staged, |text| stamped_by(OLDER, text));
        let report = status_of(&staged);
        let human = report.human();
        assert!(
            report.in_force && report.problems.is_empty(),
            "{:?}\n{human}",
            report.problems
        );
        assert_eq!(report.rendered_by.as_deref(), Some(OLDER));
        assert_eq!(report.files_on_disk, Some(FilesOnDisk::StampOnly));
        assert!(
            human.contains(&format!(
                "files: rendered by iptables-ctl {OLDER} (this is {VERSION}); the rules are the same as this version renders (nothing waits to be loaded): `iptables-ctl reload` stamps them anew\n"
            )),
            "{human}"
        );
        let json = serde_json::to_value(&report).unwrap();
        assert_eq!(json["rendered_by"], OLDER, "{json:#}");
        assert_eq!(json["files_on_disk"], "stamp_only", "{json:#}");
        assert_eq!(json["in_force"], true, "{json:#}");
    }

    /// Files rendered before sets existed have no sets files. Without a long list this
    /// version's sets files load nothing, so the rules in force are the ones it renders:
    /// an upgrade must not make status say otherwise.
    #[test]
    fn files_from_before_sets_existed_are_in_force_when_no_list_is_long() {
        for (version, expected) in [
            (VERSION, FilesOnDisk::AsRendered),
            (OLDER, FilesOnDisk::StampOnly),
        ] {
            let staged = staged(Some(POLICY));
            let policy = Policy::load(&staged.policy_path).unwrap();
            let four: Vec<(String, String)> = InForceBackend
                .render(&staged.layout, &staged.instance, &policy)
                .unwrap()
                .into_outputs()
                .into_iter()
                .filter(|(name, _)| !name.contains(".sets"))
                .map(|(name, text)| (name, stamped_by(version, &text)))
                .collect();
            assert_eq!(four.len(), 4);
            let names = four.iter().map(|(name, _)| name.clone()).collect();
            crate::files::set::FileSet::new(&staged.layout.config_dir(), "base", names)
                .write(&four)
                .unwrap();
            let report = status_of(&staged);
            assert!(report.in_force, "{version}: {:?}", report.problems);
            assert_eq!(report.files_on_disk, Some(expected), "{version}");
        }
    }

    #[test]
    fn the_files_as_rendered_today_are_in_force_and_say_nothing_of_versions() {
        let staged = staged(Some(POLICY));
        write_rendering(&staged, str::to_owned);
        let report = status_of(&staged);
        assert!(report.in_force, "{:?}", report.problems);
        assert_eq!(report.rendered_by.as_deref(), Some(VERSION));
        assert_eq!(report.files_on_disk, Some(FilesOnDisk::AsRendered));
        assert!(!report.human().contains("files:"), "{}", report.human());
    }

    /// Another version's files whose rules differ beyond the stamp are not in force,
    /// and the reason is the version, not a policy edit the admin never made.
    #[test]
    fn other_rules_rendered_by_an_older_version_are_not_in_force_and_say_why() {
        let staged = staged(Some(POLICY));
        write_rendering(&staged, |text| {
            stamped_by(OLDER, text).replacen("COMMIT", "-A INPUT -j ACCEPT\nCOMMIT", 1)
        });
        let report = status_of(&staged);
        assert!(!report.in_force);
        assert_eq!(
            report.problems,
            [format!(
                "the files in force were rendered by iptables-ctl {OLDER}; this version ({VERSION}) renders the policy into different rules: `iptables-ctl reload` loads them"
            )]
        );
        assert_eq!(report.files_on_disk, Some(FilesOnDisk::RenderedDifferently));
        let human = report.human();
        assert!(
            human.contains(&format!(
                "files: rendered by iptables-ctl {OLDER} (this is {VERSION}); this version renders other rules, which are not loaded\n"
            )),
            "{human}"
        );
        assert!(!human.contains("policy changed"), "{human}");
    }

    /// An edit that only sets the version apart is still an edit when the files were
    /// rendered by this version: the policy changed.
    #[test]
    fn other_rules_rendered_by_this_version_are_a_policy_change() {
        let staged = staged(Some(POLICY));
        write_rendering(&staged, |text| {
            text.replacen("COMMIT", "-A INPUT -j ACCEPT\nCOMMIT", 1)
        });
        let report = status_of(&staged);
        assert!(!report.in_force);
        assert_eq!(
            report.problems,
            ["policy changed since it was applied: run `iptables-ctl reload`"]
        );
        assert_eq!(report.rendered_by.as_deref(), Some(VERSION));
        assert_eq!(report.files_on_disk, Some(FilesOnDisk::PolicyChanged));
        assert!(!report.human().contains("files:"), "{}", report.human());
    }

    /// Files without a stamp (written by hand) name no version and are what they were
    /// before the stamp was read: not what the policy renders.
    #[test]
    fn files_written_by_hand_name_no_version_and_are_a_policy_change() {
        let staged = staged(Some(POLICY));
        staged.write_rules("by hand");
        let report = status_of(&staged);
        assert!(!report.in_force);
        assert_eq!(report.rendered_by, None);
        assert_eq!(report.files_on_disk, Some(FilesOnDisk::PolicyChanged));
        assert_eq!(
            report.problems,
            ["policy changed since it was applied: run `iptables-ctl reload`"]
        );
        let json = serde_json::to_value(&report).unwrap();
        assert!(json["rendered_by"].is_null(), "{json:#}");
    }

    /// A stopped instance's files are what a start loads: the report names their
    /// version too, though it does not judge them against the policy.
    #[test]
    fn a_stopped_instance_names_the_version_of_its_files() {
        let staged = staged(Some(POLICY));
        write_rendering(&staged, |text| stamped_by(OLDER, text));
        let manager = FakeManager::new("inactive", JobResult::Done);
        let report = status(
            &staged.target_with(&InForceBackend),
            &manager,
            &Skips::default(),
        )
        .unwrap();
        assert_eq!(report.rendered_by.as_deref(), Some(OLDER));
        assert_eq!(report.files_on_disk, None);
        assert!(
            report.human().contains(&format!(
                "files: rendered by iptables-ctl {OLDER} (this is {VERSION})\n"
            )),
            "{}",
            report.human()
        );
    }

    /// A missing file never matches, whoever stamped the others, unless what it would
    /// hold loads nothing (comments only).
    #[test]
    fn missing_files_are_never_the_same_rules() {
        let rendered = Rendered::new(vec![(
            "base.rules".to_owned(),
            format!("# Generated by iptables-ctl {VERSION}: x\n*filter\nCOMMIT\n"),
        )]);
        assert_eq!(
            compare_files(&rendered, None, Some(OLDER)),
            FilesOnDisk::RenderedDifferently
        );
        assert_eq!(
            compare_files(&rendered, None, None),
            FilesOnDisk::PolicyChanged
        );
        let inert = Rendered::new(vec![(
            "base.sets".to_owned(),
            format!("# Generated by iptables-ctl {VERSION}: x\n# no sets\n"),
        )]);
        assert_eq!(compare_files(&inert, None, None), FilesOnDisk::AsRendered);
    }
}
