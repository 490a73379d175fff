//! What a flow did, as values: the ordered [`Event`]s it records as it goes (files
//! written, links made, units started, warnings) and the [`Verdict`] it ends with. Flows
//! only record; the command line turns an outcome into text or JSON
//! (its report module), and into an exit code.
//!
//! An [`Outcome`] may carry an observer that sees each event as it is recorded, so the
//! text of a long flow appears while it runs; and a flow that fails keeps what it
//! recorded until then, to be shown before the error.

use std::fmt;
use std::path::PathBuf;

use serde::Serialize;

use crate::control::init::NextStep;
use crate::family::Family;
use crate::systemd::{JobKind, UnitFileChange};

/// One thing a flow did or found, in the order it happened.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub(crate) enum Event {
    /// There was no policy: the starter policy is installed (written with the rest).
    StarterPolicy {
        /// Where it goes.
        path: PathBuf,
        /// What it allows, one line each.
        summary: Vec<String>,
    },
    /// The policy is valid and its rules load in a throwaway namespace.
    PolicyProven {
        /// The policy file.
        path: PathBuf,
    },
    /// A file was written (replaced or created).
    FileWritten {
        /// The file.
        path: PathBuf,
    },
    /// A file already had the content to write, and was left alone.
    FileUnchanged {
        /// The file.
        path: PathBuf,
    },
    /// A file was removed.
    FileRemoved {
        /// The file.
        path: PathBuf,
    },
    /// The units are a package's; none was written.
    UnitsPackaged {
        /// Where the package put them.
        dir: PathBuf,
    },
    /// An enable link was created.
    LinkCreated {
        /// The link.
        path: PathBuf,
        /// Where it points.
        target: PathBuf,
    },
    /// An enable link was removed.
    LinkRemoved {
        /// The link.
        path: PathBuf,
    },
    /// systemd reported another change to its unit files.
    UnitFileChanged {
        /// What systemd called the change.
        kind: String,
        /// The file.
        path: PathBuf,
        /// Where it points, if it is a link.
        destination: String,
    },
    /// The units are enabled in a staged tree, to start at its first boot.
    Staged {
        /// The tree.
        root: PathBuf,
    },
    /// `install --no-start`: enabled, not started.
    EnabledNotStarted {
        /// The rules unit.
        unit: String,
    },
    /// The rules unit did not do its job: what this run changed is being put back.
    JobFailedUndoing {
        /// The rules unit.
        unit: String,
        /// The job that failed.
        job: JobKind,
    },
    /// A reload failed: the previous files are put back and loaded again.
    ReloadFailedUndoing {
        /// The rules unit.
        unit: String,
    },
    /// After a failed reload, the previous files are loaded again.
    PreviousFilesLoaded {
        /// The rules unit.
        unit: String,
    },
    /// `install`: the rules unit is active (its rules are loaded).
    UnitActive {
        /// The rules unit.
        unit: String,
        /// How it got there: started, or (already active) reloaded.
        job: JobKind,
        /// The live rules were not the rendered ones before (drift a reload repaired).
        live_changed: bool,
    },
    /// `start`, `restart`: the rules unit is active after `job`.
    Started {
        /// The rules unit.
        unit: String,
        /// The job run (a restart of an active unit is a reload).
        job: JobKind,
        /// It was active already (then a start did nothing, and a restart reloaded
        /// the files on disk).
        was_active: bool,
    },
    /// `restart` of an active instance is a reload: no gap.
    RestartIsReload {
        /// The rules unit.
        unit: String,
    },
    /// The re-assertion after Docker is active.
    ReassertionActive {
        /// The re-assertion unit.
        unit: String,
        /// It was active before (starting it changed nothing).
        was_active: bool,
    },
    /// The re-assertion after Docker starts with Docker (not running now).
    ReassertionWaitsForDocker {
        /// The re-assertion unit.
        unit: String,
    },
    /// `reload`: the rules unit loaded the files on disk.
    Reloaded {
        /// The rules unit.
        unit: String,
        /// Whether the reload wrote new files (otherwise the same rules were loaded
        /// again).
        files_changed: bool,
        /// The live rules were not the rendered ones before (drift the reload repaired,
        /// or new files).
        live_changed: bool,
    },
    /// `stop`: the pass-through files are loaded; the unit stays enabled.
    Stopped {
        /// The rules unit.
        unit: String,
        /// The instance (to say how to start it again).
        instance: String,
        /// It was active before (stopping a stopped instance changes nothing).
        was_active: bool,
    },
    /// `uninstall`: the instance was stopped, its pass-through files are loaded.
    StoppedForUninstall {
        /// The rules unit.
        unit: String,
    },
    /// `uninstall` of a failed unit: its pass-through files were loaded directly.
    PassThroughLoaded,
    /// `uninstall`: nothing to do.
    NotInstalled {
        /// The rules unit.
        unit: String,
    },
    /// `uninstall`: the shared units stay, other instances use them.
    SharedUnitsKept {
        /// The instances that still use them.
        instances: Vec<String>,
    },
    /// `uninstall`: the policy and rendered files stay.
    FilesKept {
        /// Their directory.
        dir: PathBuf,
    },
    /// `uninstall`, `prune-sets`: one of the instance's ipsets was destroyed (no rule
    /// matched it any more).
    SetDestroyed {
        /// The set.
        name: String,
    },
    /// `load-sets`: a family's sets were loaded.
    SetsLoaded {
        /// The family.
        family: Family,
        /// How many sets.
        sets: usize,
        /// How many members in all.
        members: usize,
    },
    /// `forward-jump`: FORWARD had no jump to DOCKER-USER; one was added.
    ForwardJumpAdded {
        /// The family.
        family: Family,
    },
    /// `forward-jump`: the jump to DOCKER-USER was not first; it is now.
    ForwardJumpRepaired {
        /// The family.
        family: Family,
        /// FORWARD's first rule before.
        first_rule: String,
        /// How many jumps there were.
        jumps: usize,
    },
    /// `umbrella reload`: an instance that is not active is not reloaded.
    NotReloaded {
        /// The rules unit.
        unit: String,
    },
    /// `umbrella`: a job finished on one instance.
    JobDone {
        /// The rules unit.
        unit: String,
        /// The job.
        job: JobKind,
    },
    /// `init`: the starter policy was written.
    StarterWritten {
        /// Where.
        path: PathBuf,
        /// What it allows, one line each.
        summary: Vec<String>,
    },
    /// `init`: what to do next.
    Next {
        /// The instance.
        instance: String,
        /// The step.
        #[serde(flatten)]
        step: NextStep,
    },
    /// `check`: the policy is valid.
    PolicyValid {
        /// The policy file.
        path: PathBuf,
    },
    /// `check`: one family's files load into a throwaway namespace.
    FamilyProven {
        /// The rules file's name.
        rules: String,
        /// The pass-through file's name.
        empty: String,
        /// The program that loaded them.
        restore_program: String,
        /// How many rules the kernel loaded.
        rule_count: usize,
        /// The sets loaded before the rules, with how many members the kernel held in
        /// each.
        sets: Vec<(String, usize)>,
    },
    /// `render` of an installed instance wrote new files, which it does not load.
    RenderedNotLoaded {
        /// The instance.
        instance: String,
    },
    /// A document the command prints as it is (`--stdout`: rendered files, a starter
    /// policy).
    Document {
        /// Its text.
        text: String,
    },
    /// `rollback`: the previous generation's policy was written back and is loaded.
    RollingBack {
        /// The generation left.
        from: u64,
        /// The generation returned to.
        to: u64,
        /// The policy file written back.
        policy: PathBuf,
    },
    /// The rule set now in force was kept as a generation, for `rollback`.
    GenerationKept {
        /// Its number.
        number: u64,
    },
    /// A pending apply was superseded by a newer one (its rollback disarmed).
    ApplySuperseded {
        /// The instance.
        instance: String,
        /// Its deadline (seconds since the epoch).
        deadline_unix: u64,
    },
    /// The new rules are live, pending confirmation; the rollback timer was armed
    /// before they loaded. (Said once they are live: nothing is printed between the
    /// arming and the load, so no blocked output can hold the load up.)
    Applied {
        /// The instance.
        instance: String,
        /// The transient timer that brings the previous rules back.
        timer: String,
        /// The confirmation window.
        within_secs: u64,
        /// When the previous rules come back unless confirmed (seconds since the epoch).
        deadline_unix: u64,
    },
    /// A pending apply was confirmed: its files are the instance's own.
    Confirmed {
        /// The instance.
        instance: String,
    },
    /// The rollback ran with nothing pending (confirmed or superseded meanwhile).
    NothingPending {
        /// The instance.
        instance: String,
    },
    /// After a rollback, the policy file that still held the rolled-back policy holds
    /// the previous one again.
    PolicyRestored {
        /// The policy file.
        path: PathBuf,
        /// Where the rolled-back policy was kept.
        rejected: PathBuf,
        /// The generation whose policy was written back.
        generation: u64,
    },
    /// An unconfirmed apply was rolled back and forgotten.
    RolledBack {
        /// The instance.
        instance: String,
        /// The previous rules were loaded again (false: the instance was not active,
        /// so nothing was loaded).
        loaded: bool,
    },
    /// A lint found something (`iptables-ctl lints` lists them).
    Lint {
        /// What, why it matters and how to fix it.
        finding: crate::lints::Finding,
    },
    /// Something the admin should know; the flow went on.
    Warning {
        /// What.
        message: String,
    },
}

impl Event {
    /// Whether this step changed the host: a file, a link, a unit's state or the live
    /// rules (what `changed` in `--json` reports, for configuration management). A
    /// reload of unchanged files counts as no change; a step that failed and was put
    /// back counts as one, since the host went through it.
    pub fn changes_host(&self) -> bool {
        match self {
            Event::FileWritten { .. }
            | Event::FileRemoved { .. }
            | Event::LinkCreated { .. }
            | Event::LinkRemoved { .. }
            | Event::UnitFileChanged { .. }
            | Event::JobFailedUndoing { .. }
            | Event::ReloadFailedUndoing { .. }
            | Event::PreviousFilesLoaded { .. }
            | Event::StoppedForUninstall { .. }
            | Event::PassThroughLoaded
            | Event::SetsLoaded { .. }
            | Event::SetDestroyed { .. }
            | Event::ForwardJumpAdded { .. }
            | Event::ForwardJumpRepaired { .. }
            | Event::JobDone { .. }
            | Event::StarterWritten { .. }
            | Event::ApplySuperseded { .. }
            | Event::Applied { .. }
            | Event::Confirmed { .. }
            | Event::RolledBack { .. }
            | Event::PolicyRestored { .. } => true,
            Event::UnitActive {
                job, live_changed, ..
            } => *job != JobKind::Reload || *live_changed,
            // A restart reloads the files on disk, which render may have changed: it
            // counts; a start of an active instance does nothing.
            Event::Started {
                was_active, job, ..
            } => !was_active || *job == JobKind::Reload,
            Event::Stopped { was_active, .. } => *was_active,
            // Its start loads the rules again, while Docker runs.
            Event::ReassertionActive { was_active, .. } => !*was_active,
            Event::Reloaded {
                files_changed,
                live_changed,
                ..
            } => *files_changed || *live_changed,
            // What rollback changes is said by the file written and the reload.
            Event::StarterPolicy { .. }
            | Event::RollingBack { .. }
            | Event::GenerationKept { .. }
            | Event::PolicyProven { .. }
            | Event::FileUnchanged { .. }
            | Event::UnitsPackaged { .. }
            | Event::Staged { .. }
            | Event::EnabledNotStarted { .. }
            | Event::RestartIsReload { .. }
            | Event::ReassertionWaitsForDocker { .. }
            | Event::NotInstalled { .. }
            | Event::SharedUnitsKept { .. }
            | Event::FilesKept { .. }
            | Event::NotReloaded { .. }
            | Event::Next { .. }
            | Event::PolicyValid { .. }
            | Event::FamilyProven { .. }
            | Event::RenderedNotLoaded { .. }
            | Event::NothingPending { .. }
            | Event::Document { .. }
            | Event::Lint { .. }
            | Event::Warning { .. } => false,
        }
    }
}

impl From<&UnitFileChange> for Event {
    fn from(change: &UnitFileChange) -> Event {
        match change.kind.as_str() {
            "symlink" => Event::LinkCreated {
                path: PathBuf::from(&change.path),
                target: PathBuf::from(&change.destination),
            },
            "unlink" => Event::LinkRemoved {
                path: PathBuf::from(&change.path),
            },
            other => Event::UnitFileChanged {
                kind: other.to_owned(),
                path: PathBuf::from(&change.path),
                destination: change.destination.clone(),
            },
        }
    }
}

/// How a flow ended, when it did not fail.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "verdict", rename_all = "snake_case")]
pub(crate) enum Verdict {
    /// Done; the flow did not change the live rules (or says nothing more of them).
    Done,
    /// The live rules were changed and the closing check says they are in force.
    InForce {
        /// What holds, in one line.
        summary: String,
    },
    /// The live rules were changed, but they do not protect what the policy says.
    NotInForce {
        /// Why, one sentence each.
        problems: Vec<String>,
    },
    /// The live rules were changed, but the closing check could not run.
    CheckFailed {
        /// Why.
        error: String,
    },
}

/// What a flow records as it goes: its events, in order.
#[derive(Default)]
pub(crate) struct Outcome<'a> {
    events: Vec<Event>,
    observer: Option<&'a mut dyn FnMut(&Event)>,
}

impl fmt::Debug for Outcome<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Outcome")
            .field("events", &self.events)
            .finish_non_exhaustive()
    }
}

impl<'a> Outcome<'a> {
    /// An empty outcome.
    pub fn new() -> Outcome<'a> {
        Outcome::default()
    }

    /// An empty outcome whose events `observer` sees as they are recorded.
    pub fn observed(observer: &'a mut dyn FnMut(&Event)) -> Outcome<'a> {
        Outcome {
            events: Vec::new(),
            observer: Some(observer),
        }
    }

    /// Records `event`.
    pub fn push(&mut self, event: Event) {
        if let Some(observer) = self.observer.as_mut() {
            observer(&event);
        }
        self.events.push(event);
    }

    /// Records a warning.
    pub fn warn(&mut self, message: impl fmt::Display) {
        self.push(Event::Warning {
            message: message.to_string(),
        });
    }

    /// Records what the lints found.
    pub fn lints(&mut self, findings: impl IntoIterator<Item = crate::lints::Finding>) {
        for finding in findings {
            self.push(Event::Lint { finding });
        }
    }

    /// The warnings recorded: each warning, and each lint's finding (an error says so
    /// first: `check` reports them without loading anything), as one line.
    pub fn warning_lines(events: &[Event]) -> Vec<String> {
        events
            .iter()
            .filter_map(|event| match event {
                Event::Warning { message } => Some(message.clone()),
                Event::Lint { finding } => Some(match finding.severity {
                    crate::lints::Severity::Warning => finding.line(),
                    crate::lints::Severity::Error => format!("error: {}", finding.line()),
                }),
                _ => None,
            })
            .collect()
    }

    /// Records what a write did: every file written, then every file left unchanged.
    pub fn writes(&mut self, summary: &crate::files::WriteSummary) {
        for path in &summary.written {
            self.push(Event::FileWritten { path: path.clone() });
        }
        for path in &summary.unchanged {
            self.push(Event::FileUnchanged { path: path.clone() });
        }
    }

    /// Everything recorded so far.
    pub fn events(&self) -> &[Event] {
        &self.events
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What configuration management reports as `changed` for the lifecycle steps:
    /// starting what runs, or stopping what is stopped, changes nothing.
    #[test]
    fn lifecycle_steps_change_the_host_only_when_they_change_its_state() {
        let unit = || "iptables@base.service".to_owned();
        let started = |job, was_active| Event::Started {
            unit: unit(),
            job,
            was_active,
        };
        assert!(started(JobKind::Start, false).changes_host());
        assert!(!started(JobKind::Start, true).changes_host());
        assert!(
            started(JobKind::Reload, true).changes_host(),
            "restart reloads the files"
        );
        let stopped = |was_active| Event::Stopped {
            unit: unit(),
            instance: "base".to_owned(),
            was_active,
        };
        assert!(stopped(true).changes_host());
        assert!(!stopped(false).changes_host());
        let reloaded = |files_changed, live_changed| Event::Reloaded {
            unit: unit(),
            files_changed,
            live_changed,
        };
        assert!(!reloaded(false, false).changes_host());
        assert!(reloaded(true, true).changes_host());
        assert!(
            reloaded(false, true).changes_host(),
            "the same files loaded over drifted rules change them"
        );
        assert!(
            !Event::UnitActive {
                unit: unit(),
                job: JobKind::Reload,
                live_changed: false
            }
            .changes_host()
        );
    }
}
