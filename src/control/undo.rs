//! The undo record: what a flow changed, in order, so that a step that fails later
//! puts it all back with one call. `install` and `reload` build one as they go and
//! call [`Transaction::undo`] when a step fails. It serializes (serde), so a later
//! process (a rollback that outlives the command) can carry out the same undo.
//!
//! Undo runs in phases, whatever order the changes were recorded in: the files go back
//! first (what systemd reloads must be the old files), then the links this run
//! created, then systemd reloads its unit files (and forgets a rules unit that is
//! gone again but failed), and last a rules unit that was reloaded loads the previous
//! files again. Every step is best effort: one that fails is a warning and the rest
//! still run.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use crate::control::outcome::{Event, Outcome};
use crate::files::{self, Snapshot};
use crate::systemd::{ActiveState, JobKind, JobResult, ServiceManager};

/// One change a flow made, with what undoing it takes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "change", rename_all = "snake_case")]
pub(crate) enum Change {
    /// Files and file sets were replaced: put back what they were.
    FilesReplaced {
        /// What they were.
        snapshot: Snapshot,
    },
    /// An enable link was created (enable never replaces an existing link, so it was
    /// not there before): remove it, and the `.wants` directory it leaves empty.
    LinkCreated {
        /// The link.
        path: PathBuf,
    },
    /// Unit files or enable links changed under a running systemd: have it reload
    /// them once they are back, and forget that `rules_unit` failed if it is gone
    /// again (a unit that no longer exists should not linger in `systemctl --failed`).
    UnitFilesChanged {
        /// The instance's rules unit.
        rules_unit: String,
    },
    /// The rules unit was asked to load the new files. After a reload (the unit
    /// stays active, and a reload that failed part way may have loaded the new IPv4
    /// rules but not the IPv6 ones) the previous files are loaded again.
    RulesJob {
        /// The rules unit.
        unit: String,
        /// The job.
        job: JobKind,
    },
}

/// What a flow changed, in order.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Transaction {
    changes: Vec<Change>,
}

impl Transaction {
    /// An empty record.
    pub fn new() -> Transaction {
        Transaction::default()
    }

    /// Records files replaced (taken before they were). Consecutive snapshots become
    /// one, put back as one.
    pub fn files_replaced(&mut self, snapshot: Snapshot) {
        if let Some(Change::FilesReplaced { snapshot: last }) = self.changes.last_mut() {
            last.extend(snapshot);
        } else {
            self.changes.push(Change::FilesReplaced { snapshot });
        }
    }

    /// Records an enable link created.
    pub fn link_created(&mut self, path: PathBuf) {
        self.changes.push(Change::LinkCreated { path });
    }

    /// Records that systemd's unit files changed.
    pub fn unit_files_changed(&mut self, rules_unit: &str) {
        self.changes.push(Change::UnitFilesChanged {
            rules_unit: rules_unit.to_owned(),
        });
    }

    /// Records a job asked of the rules unit.
    pub fn rules_job(&mut self, unit: &str, job: JobKind) {
        self.changes.push(Change::RulesJob {
            unit: unit.to_owned(),
            job,
        });
    }

    /// Puts back everything recorded (see the module's description for the order).
    /// `manager` is the running systemd (`None` in a staged tree, which records no
    /// systemd change). What it does and what fails is recorded in `outcome`.
    pub fn undo(&self, manager: Option<&dyn ServiceManager>, outcome: &mut Outcome<'_>) {
        for change in self.changes.iter().rev() {
            if let Change::FilesReplaced { snapshot } = change
                && let Err(e) = snapshot.restore()
            {
                outcome.warn(format!("could not put every file back: {e}"));
            }
        }
        for change in &self.changes {
            if let Change::LinkCreated { path } = change {
                match files::remove_link(path) {
                    Ok(true) => outcome.push(Event::LinkRemoved { path: path.clone() }),
                    Ok(false) => {}
                    Err(e) => outcome.warn(format!("could not remove {}: {e}", path.display())),
                }
            }
        }
        let systemd_changes = self
            .changes
            .iter()
            .filter(|c| matches!(c, Change::UnitFilesChanged { .. } | Change::RulesJob { .. }));
        if systemd_changes.clone().next().is_none() {
            return;
        }
        let Some(manager) = manager else {
            outcome.warn("systemd is not running here: the unit state was not put back");
            return;
        };
        let rules_units: Vec<&str> = self
            .changes
            .iter()
            .filter_map(|c| match c {
                Change::UnitFilesChanged { rules_unit } => Some(rules_unit.as_str()),
                _ => None,
            })
            .collect();
        if !rules_units.is_empty() {
            reload_unit_files(manager, &rules_units, outcome);
        }
        for change in systemd_changes {
            if let Change::RulesJob {
                unit,
                job: JobKind::Reload,
            } = change
            {
                reload_previous(manager, unit, outcome);
            }
        }
    }
}

/// Has systemd load the unit files as they are again, then forgets each of
/// `rules_units` that is gone but failed (a first install whose start failed: the
/// failure was reported, journal lines included).
fn reload_unit_files(
    manager: &dyn ServiceManager,
    rules_units: &[&str],
    outcome: &mut Outcome<'_>,
) {
    if let Err(e) = manager.daemon_reload() {
        outcome.warn(format!("systemd did not reload its unit files: {e}"));
        return;
    }
    for unit in rules_units {
        let gone_but_failed = manager
            .unit_status(unit)
            .is_ok_and(|s| s.is_not_found() && s.active_state == ActiveState::Failed);
        if gone_but_failed && let Err(e) = manager.reset_failed(unit) {
            outcome.warn(e);
        }
    }
}

/// After a failed reload and the previous files put back: loads them again, so the live
/// rules are the previous ones whatever the failed reload had loaded.
fn reload_previous(manager: &dyn ServiceManager, unit: &str, outcome: &mut Outcome<'_>) {
    match manager.run_job(JobKind::Reload, unit) {
        Ok(JobResult::Done) => outcome.push(Event::PreviousFilesLoaded {
            unit: unit.to_owned(),
        }),
        Ok(other) => outcome.warn(format!(
            "reloading the previous files did not succeed either ({other})"
        )),
        Err(e) => outcome.warn(format!("reloading the previous files failed too: {e}")),
    }
}

#[cfg(test)]
mod tests {
    use std::fs;

    use super::*;
    use crate::backend::Backend as _;
    use crate::control::fakes::FAKE_BACKEND;
    use crate::control::fakes::{FakeManager, POLICY, staged};
    use crate::files::write_files;

    /// A transaction recorded over a staged tree and the fake manager, written down
    /// as JSON and read back, undoes from the copy: the files are back byte for byte
    /// and systemd is asked what the record says.
    #[test]
    fn a_transaction_read_back_from_json_undoes_everything() {
        let staged = staged(Some(POLICY));
        staged.write_rules("previous");
        let unit_dir = staged.root.path().join("etc/systemd/system");
        fs::create_dir_all(&unit_dir).unwrap();
        fs::write(unit_dir.join("iptables.service"), "previous unit\n").unwrap();
        let before = staged.files();
        let wants = unit_dir.join("multi-user.target.wants");
        let manager = FakeManager::new("active", JobResult::Done).linking_in(wants.clone());

        let mut record = Transaction::new();
        let output_set = FAKE_BACKEND.output_set(&staged.layout, &staged.instance);
        record.files_replaced(Snapshot::take_set(&output_set).unwrap());
        record.files_replaced(
            Snapshot::take(&unit_dir, ["iptables.service", "new.service"]).unwrap(),
        );
        staged.write_rules("new");
        write_files(
            &unit_dir,
            &[
                ("iptables.service".to_owned(), "new unit\n".to_owned()),
                ("new.service".to_owned(), "new unit\n".to_owned()),
            ],
        )
        .unwrap();
        record.unit_files_changed("iptables@base.service");
        for change in manager.enable(&["iptables@base.service"]).unwrap() {
            record.link_created(PathBuf::from(change.path));
        }
        record.rules_job("iptables@base.service", JobKind::Reload);
        assert_ne!(staged.files(), before);

        let json = serde_json::to_string_pretty(&record).unwrap();
        let copy: Transaction = serde_json::from_str(&json).unwrap();
        assert_eq!(copy, record);
        let mut outcome = Outcome::new();
        copy.undo(Some(&manager), &mut outcome);

        assert_eq!(staged.files(), before, "every file is back, byte for byte");
        assert!(!wants.exists(), "the link and its directory are gone");
        assert_eq!(
            manager.calls(),
            [
                "enable iptables@base.service",
                "daemon-reload",
                "reload iptables@base.service",
            ]
        );
        assert_eq!(
            outcome.events(),
            [
                Event::LinkRemoved {
                    path: wants.join("iptables@base.service")
                },
                Event::PreviousFilesLoaded {
                    unit: "iptables@base.service".to_owned()
                },
            ]
        );
    }
}
