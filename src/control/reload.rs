//! `reload`: re-render and prove the policy (a bad one changes nothing), refuse rules
//! that would lock out an SSH session (unless forced), write the files that changed,
//! and reload the rules unit with no gap. If the reload fails, its [`Transaction`]
//! puts the previous files back and loads them again. Ends with the status check.

use anyhow::{Context as _, bail};

use crate::control::apply::refuse_while_pending;
use crate::control::diff;
use crate::control::outcome::{Event, Outcome, Verdict};
use crate::control::undo::Transaction;
use crate::control::{
    Proven, Target, in_force, keep_generation_of, lock_config, refused, render_prove_and_read_host,
    run_job, warn_interface_problems,
};
use crate::files::Snapshot;
use crate::policy::Policy;
use crate::systemd::units::InstanceUnits;
use crate::systemd::{JobKind, ServiceManager};

/// `reload`: re-render and prove the policy (a bad one changes nothing), refuse rules
/// that would lock out an SSH session (unless `force`), write the files that changed,
/// and reload the unit; if the reload fails, the previous files are put back and loaded
/// again. Ends with the status check.
pub(crate) fn reload(
    target: &Target<'_>,
    manager: &dyn ServiceManager,
    force: bool,
    outcome: &mut Outcome<'_>,
) -> anyhow::Result<Verdict> {
    let _lock = lock_config(target, outcome)?;
    refuse_while_pending(target, "reload")?;
    reload_locked(target, manager, force, "reload", outcome)
}

/// [`reload`] with the lock already held, for `command` (which names the generation
/// it keeps).
pub(crate) fn reload_locked(
    target: &Target<'_>,
    manager: &dyn ServiceManager,
    force: bool,
    command: &str,
    outcome: &mut Outcome<'_>,
) -> anyhow::Result<Verdict> {
    let units = InstanceUnits::new(target.instance);
    let (proven, policy_text) = (|| -> anyhow::Result<_> {
        // Read once: the generation keeps the text that was rendered.
        let (policy, text) = Policy::load_with_text(target.policy_path)?;
        let proven = render_prove_and_read_host(target, &policy)?;
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
        warn_interface_problems(&proven.interfaces, outcome);
        Ok((proven, text))
    })()
    .context(refused(command))?;
    proven.refuse_lockouts(command, target, force, outcome)?;
    let Proven {
        rendered, proof, ..
    } = proven;
    let live_changed = diff::live_differs(target, &proof);
    let outputs = rendered.into_outputs();
    let output_set = target.backend.output_set(target.layout, target.instance);
    let mut undo = Transaction::new();
    undo.files_replaced(Snapshot::take_set(&output_set)?);
    let summary = output_set.write(&outputs)?;
    outcome.writes(&summary);
    undo.rules_job(&units.rules, JobKind::Reload);
    if let Err(error) = run_job(manager, JobKind::Reload, &units.rules) {
        outcome.push(Event::ReloadFailedUndoing {
            unit: units.rules.clone(),
        });
        undo.undo(Some(manager), outcome);
        return Err(error);
    }
    outcome.push(Event::Reloaded {
        unit: units.rules.clone(),
        files_changed: !summary.written.is_empty(),
        live_changed,
    });
    keep_generation_of(target, command, Ok(policy_text), outcome);
    Ok(in_force(target, manager, outcome))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::control::fakes::{FakeManager, POLICY, staged};
    use crate::systemd::JobResult;

    #[test]
    fn reload_refuses_an_inactive_unit_and_changes_nothing() {
        let staged = staged(Some(POLICY));
        let before = staged.files();
        let manager = FakeManager::new("failed", JobResult::Done);
        let error = reload(&staged.target(), &manager, false, &mut Outcome::new()).unwrap_err();
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
        assert!(reload(&staged.target(), &manager, false, &mut Outcome::new()).is_err());
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
}
