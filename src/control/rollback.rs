//! `rollback`: back to the generation before the newest. Its policy is written back
//! over the instance's policy file and loaded as `reload` loads one (rendered by this
//! version, proven, the SSH lockout check, the unit reloaded with no gap), and becomes
//! the newest generation itself, so a second `rollback` returns to where the first
//! started. A reload that fails puts the policy file back as it was.

use anyhow::{Context as _, bail};

use crate::control::apply::refuse_while_pending;
use crate::control::outcome::{Event, Outcome, Verdict};
use crate::control::reload::reload_locked;
use crate::control::{Target, UNCHANGED, files_in_force, lock_config, policy_text};
use crate::files::generations::Generations;
use crate::files::{self, Snapshot};
use crate::systemd::ServiceManager;

/// `rollback`: the previous generation's policy, written back and reloaded. It refuses
/// (unless `force`) when what is in place is not the newest generation (the policy file
/// edited since its last load, or files written without keeping one), so that nothing
/// the admin has not loaded is overwritten; and it returns to the newest older
/// generation whose policy differs (one rendered anew by an upgrade holds the same).
pub(crate) fn rollback(
    target: &Target<'_>,
    manager: &dyn ServiceManager,
    force: bool,
    outcome: &mut Outcome<'_>,
) -> anyhow::Result<Verdict> {
    let _lock = lock_config(target, outcome)?;
    refuse_while_pending(target, "rollback")?;
    let generations = Generations::of(target.layout, target.instance);
    let kept = generations.list()?;
    let Some(current) = kept.last() else {
        bail!(
            "rollback refused: {} has no generation kept (one is kept at each install, reload, confirm and rollback); {UNCHANGED}",
            target.instance
        );
    };
    let policy_now =
        policy_text(target.policy_path).context(format!("rollback refused; {UNCHANGED}"))?;
    let files_now = files_in_force(target)?;
    if !force
        && (current.policy_path != target.policy_path
            || !generations.holds(current, &policy_now, &files_now))
    {
        bail!(
            "rollback refused: {} or the files in force are not generation {} (edited since the last load, or written without keeping a generation); rolling back would overwrite what was never loaded. `iptables-ctl reload {}` loads what is there, or `rollback --force` overwrites {}; {UNCHANGED}",
            target.policy_path.display(),
            current.number,
            target.instance,
            target.policy_path.display()
        );
    }
    let mut earlier = Vec::new();
    for generation in kept.iter().rev().skip(1) {
        if generation.policy_path != target.policy_path {
            continue;
        }
        let policy = generations
            .policy(generation)
            .context(format!("rollback refused; {UNCHANGED}"))?;
        if policy != policy_now {
            earlier.push((generation, policy));
            break;
        }
    }
    let Some((previous, policy)) = earlier.pop() else {
        bail!(
            "rollback refused: no earlier generation of {} holds another policy than {}; {UNCHANGED}",
            target.instance,
            target.policy_path.display()
        );
    };
    let (dir, name) = files::dir_and_name(target.policy_path)?;
    let before = Snapshot::take(dir, [name.as_str()])?;
    outcome.writes(&files::write_files(dir, &[(name, policy)])?);
    outcome.push(Event::RollingBack {
        from: current.number,
        to: previous.number,
        policy: target.policy_path.to_owned(),
    });
    match reload_locked(target, manager, force, "rollback", outcome) {
        Ok(verdict) => Ok(verdict),
        Err(error) => Err(match before.restore() {
            Ok(()) => error.context(format!(
                "rollback failed; {} was put back as it was",
                target.policy_path.display()
            )),
            Err(e) => error.context(format!(
                "rollback failed, and putting {} back failed too ({e}): it holds generation {}'s policy",
                target.policy_path.display(),
                previous.number
            )),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::control::fakes::{FakeManager, InForceBackend, POLICY, staged};
    use crate::systemd::JobResult;

    /// Loads the target's policy (POLICY), then an edit of it (returned): generations 1
    /// and 2.
    fn two_generations(target: &Target<'_>, manager: &FakeManager) -> String {
        crate::control::reload(target, manager, false, &mut Outcome::new()).unwrap();
        let edited = format!("{POLICY}\n[[host.services]]\nport = 2222\n");
        std::fs::write(target.policy_path, &edited).unwrap();
        crate::control::reload(target, manager, false, &mut Outcome::new()).unwrap();
        edited
    }

    #[test]
    fn rollback_writes_back_the_previous_policy_loads_it_and_keeps_it_as_the_newest() {
        let staged = staged(Some(POLICY));
        let manager = FakeManager::new("active", JobResult::Done);
        let target = staged.target_with(&InForceBackend);
        let edited = two_generations(&target, &manager);

        let mut outcome = Outcome::new();
        rollback(&target, &manager, false, &mut outcome).unwrap();
        assert_eq!(
            std::fs::read_to_string(&staged.policy_path).unwrap(),
            POLICY
        );
        assert!(
            outcome
                .events()
                .iter()
                .any(|e| matches!(e, Event::RollingBack { from: 2, to: 1, .. })),
            "{:?}",
            outcome.events()
        );
        let kept = Generations::of(&staged.layout, &staged.instance)
            .list()
            .unwrap();
        assert_eq!(kept.len(), 3);
        assert_eq!(kept[2].command, "rollback");
        // A second rollback returns to where the first started.
        rollback(&target, &manager, false, &mut Outcome::new()).unwrap();
        assert_eq!(
            std::fs::read_to_string(&staged.policy_path).unwrap(),
            edited
        );
    }

    #[test]
    fn rollback_without_a_previous_generation_changes_nothing() {
        let staged = staged(Some(POLICY));
        let manager = FakeManager::new("active", JobResult::Done);
        let target = staged.target_with(&InForceBackend);
        crate::control::reload(&target, &manager, false, &mut Outcome::new()).unwrap();
        let before = staged.files();
        let calls = manager.calls().len();
        let error = rollback(&target, &manager, false, &mut Outcome::new()).unwrap_err();
        assert!(
            format!("{error:#}").contains("no earlier generation of base holds another policy"),
            "{error:#}"
        );
        assert_eq!(staged.files(), before);
        assert_eq!(manager.calls().len(), calls);
    }

    #[test]
    fn a_failed_reload_puts_the_policy_back() {
        let staged = staged(Some(POLICY));
        let manager = FakeManager::new("active", JobResult::Done);
        let target = staged.target_with(&InForceBackend);
        let edited = two_generations(&target, &manager);
        let failing = FakeManager::new("active", JobResult::Other("failed".to_owned()));
        assert!(rollback(&target, &failing, false, &mut Outcome::new()).is_err());
        assert_eq!(
            std::fs::read_to_string(&staged.policy_path).unwrap(),
            edited
        );
    }

    /// An edit of the policy file that was never loaded is not overwritten by a
    /// rollback unless the admin says so.
    #[test]
    fn rollback_refuses_to_overwrite_an_edit_that_was_never_loaded() {
        let staged = staged(Some(POLICY));
        let manager = FakeManager::new("active", JobResult::Done);
        let target = staged.target_with(&InForceBackend);
        let edited = two_generations(&target, &manager);
        let unloaded = format!("{edited}\n[[host.services]]\nport = 2223\n");
        std::fs::write(&staged.policy_path, &unloaded).unwrap();
        let before = staged.files();
        let error = rollback(&target, &manager, false, &mut Outcome::new()).unwrap_err();
        assert!(
            format!("{error:#}").contains("are not generation 2"),
            "{error:#}"
        );
        assert_eq!(staged.files(), before);
        rollback(&target, &manager, true, &mut Outcome::new()).unwrap();
        assert_eq!(
            std::fs::read_to_string(&staged.policy_path).unwrap(),
            POLICY
        );
    }
}
