//! `--dry-run` of `install`, `uninstall`, `start`, `stop` and `restart`: what the command
//! would do, found by the same checks it makes first (a command that would be refused
//! fails the same way), with nothing written, enabled, started or loaded. The steps
//! are computed beside each flow (`install.rs`, `lifecycle.rs`, `uninstall.rs`); this
//! file holds the report they fill. `reload --dry-run` and `apply --dry-run` are `diff`.

use serde::Serialize;

use crate::control::diff::DiffReport;
use crate::control::outcome::{Event, Outcome};

/// What a changing command would do, also its `--json` form.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct DryRunReport {
    /// The command.
    pub command: String,
    /// The instance.
    pub instance: String,
    /// Running the command would change the host (a file, a link, a unit's state, the
    /// live rules): what configuration management's check mode reports.
    pub changed: bool,
    /// What it would do, in order, one step each; nothing was done.
    pub steps: Vec<String>,
    /// What loading the rules would change in the live rules and files, for the
    /// commands that load them.
    pub diff: Option<DiffReport>,
    /// What the command would warn about.
    pub warnings: Vec<String>,
}

impl DryRunReport {
    /// An empty report for `command` on `instance`.
    pub fn new(command: &str, instance: &str) -> DryRunReport {
        DryRunReport {
            command: command.to_owned(),
            instance: instance.to_owned(),
            changed: false,
            steps: Vec::new(),
            diff: None,
            warnings: Vec::new(),
        }
    }

    /// Adds a step that changes the host.
    pub fn step(&mut self, step: impl Into<String>) {
        self.steps.push(step.into());
        self.changed = true;
    }

    /// Keeps the warnings the checks recorded in `outcome`.
    pub fn warnings_of(&mut self, outcome: &Outcome<'_>) {
        self.warnings
            .extend(Outcome::warning_lines(outcome.events()));
        // A starter policy is a step: the command would write it.
        for event in outcome.events() {
            if let Event::StarterPolicy { path, .. } = event {
                self.step(format!(
                    "write the starter policy to {} (SSH kept open; `iptables-ctl init --stdout` shows it)",
                    path.display()
                ));
            }
        }
    }

    /// Adds `diff`, with the live rules it would change.
    pub fn with_diff(&mut self, diff: DiffReport) {
        if diff.families.iter().any(|f| f.changed) {
            self.changed = true;
        }
        self.diff = Some(diff);
    }

    /// The report for a person.
    pub fn human(&self) -> String {
        let mut text = String::new();
        for warning in &self.warnings {
            text.push_str(&format!("warning: {warning}\n"));
        }
        if let Some(diff) = &self.diff {
            for family in diff.families.iter().filter(|f| f.changed) {
                text.push_str(&family.diff);
                if !family.forward_first {
                    text.push_str(&format!(
                        "{}: FORWARD's first rule is not its only jump to DOCKER-USER; loading puts the jump first, once\n",
                        family.family
                    ));
                }
            }
        }
        for step in &self.steps {
            text.push_str(&format!("would {step}\n"));
        }
        if self.changed {
            text.push_str(&format!(
                "dry run: `iptables-ctl {} {}` would change the host as above; nothing was changed\n",
                self.command, self.instance
            ));
        } else {
            text.push_str(&format!(
                "dry run: `iptables-ctl {} {}` would change nothing\n",
                self.command, self.instance
            ));
        }
        text
    }
}
