//! `apply --confirm-within`, `confirm` and the rollback of an apply nobody confirmed: a
//! change to a remote host that undoes itself unless the admin proves, from a new
//! connection, that they can still get in.
//!
//! The revert lives in neither the admin's shell nor the applying process: `apply`
//! arms a transient timer owned by systemd (`iptables-rollback@INSTANCE.timer`, which
//! starts the shipped `iptables-rollback@.service`) *before* it loads the new rules, so
//! a dead SSH session, a hung-up terminal or a SIGKILLed `apply` still ends with the
//! previous rules back. Until confirmed, the new files live under /run
//! ([`Layout::pending`]) and /etc/iptables keeps the previous ones: a rollback loads
//! those again, and so does a reboot (which forgets /run). `confirm` disarms the timer,
//! makes the new files the instance's own and reloads the unit; a newer `apply`
//! supersedes a pending one (its timer is disarmed first).

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::{Context as _, bail};
use serde::{Deserialize, Serialize};

use crate::control::outcome::{Event, Outcome, Verdict};
use crate::control::{
    Target, in_force, keep_generation_of, lock_config, policy_text, refused,
    render_prove_and_read_host, run_job, warn_interface_problems,
};
use crate::family::Family;
use crate::files::generations::Generations;
use crate::files::layout::Layout;
use crate::files::{self, DirLock, source};
use crate::policy::Policy;
use crate::policy::types::InstanceName;
use crate::systemd::units::InstanceUnits;
use crate::systemd::{JobKind, JobResult, ServiceManager};

/// The shortest confirmation window `apply` accepts: enough to open a new connection.
pub const MIN_CONFIRM_WITHIN: Duration = Duration::from_secs(1);
/// The longest: a forgotten apply must not hold a host's previous rules hostage.
pub const MAX_CONFIRM_WITHIN: Duration = Duration::from_secs(24 * 60 * 60);

/// The record of an unconfirmed apply, `pending.json` in [`Layout::pending_dir`].
const RECORD: &str = "pending.json";
/// The policy as `apply` rendered it, beside the record: `confirm` keeps that one as
/// the generation, whatever the policy file says by then.
const APPLIED_POLICY: &str = "policy.toml";
/// A record is a few hundred bytes; anything larger is not one.
const RECORD_LIMIT: u64 = 64 * 1024;

/// An apply waiting for `confirm`, as recorded under /run.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct PendingApply {
    /// The instance.
    pub instance: String,
    /// The policy that was applied.
    pub policy: std::path::PathBuf,
    /// When the previous rules come back unless confirmed (seconds since the epoch).
    pub deadline_unix: u64,
    /// The timer that brings them back.
    pub timer: String,
}

impl PendingApply {
    /// The seconds left before the rollback (0 once due).
    pub fn seconds_left(&self) -> u64 {
        self.deadline_unix.saturating_sub(now_unix())
    }
}

fn now_unix() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// The pending apply of `instance`, if there is one.
pub(crate) fn pending(
    layout: &Layout,
    instance: &InstanceName,
) -> anyhow::Result<Option<PendingApply>> {
    let path = layout.pending_dir(instance).join(RECORD);
    let Some(bytes) = source::read_if_present(&path, RECORD_LIMIT)? else {
        return Ok(None);
    };
    let record = serde_json::from_slice(&bytes)
        .with_context(|| format!("{} is not a pending-apply record", path.display()))?;
    Ok(Some(record))
}

/// Forgets the pending apply of `instance`: its record and files.
fn forget(layout: &Layout, instance: &InstanceName) -> anyhow::Result<()> {
    let dir = layout.pending_dir(instance);
    match std::fs::remove_dir_all(&dir) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(e).with_context(|| format!("cannot remove {}", dir.display())),
    }
}

/// Disarms the rollback timer of `units` (a timer that already fired, or never was,
/// is not there to stop). Returns whether there was one.
fn disarm(manager: &dyn ServiceManager, units: &InstanceUnits) -> anyhow::Result<bool> {
    if manager.unit_status(&units.rollback_timer)?.is_not_found() {
        return Ok(false);
    }
    run_job(manager, JobKind::Stop, &units.rollback_timer)?;
    Ok(true)
}

/// Refuses `command` while an apply of the instance waits for `confirm`: loading the
/// instance's files now would undo the apply behind the admin's back, or, once they
/// were rendered anew, keep it without the proof that `confirm` asks for.
pub(crate) fn refuse_while_pending(target: &Target<'_>, command: &str) -> anyhow::Result<()> {
    if let Some(record) = pending(target.layout, target.instance)? {
        bail!(
            "{command} refused: an apply of {instance} is pending for {} s more; `iptables-ctl confirm {instance}` (from a new connection) keeps it, `iptables-ctl apply {instance}` replaces it, and without either the previous rules come back then; {}",
            record.seconds_left(),
            crate::control::UNCHANGED,
            instance = target.instance,
        );
    }
    Ok(())
}

/// Forgets a pending apply of the instance and disarms its rollback (for `uninstall`,
/// which takes the instance and its units away). Returns whether there was one.
pub(crate) fn discard_pending(
    target: &Target<'_>,
    manager: &dyn ServiceManager,
) -> anyhow::Result<bool> {
    if pending(target.layout, target.instance)?.is_none() {
        return Ok(false);
    }
    disarm(manager, &InstanceUnits::new(target.instance))?;
    forget(target.layout, target.instance)?;
    Ok(true)
}

/// Stops and forgets a rollback timer of `units` that is still loaded with no apply
/// pending (one that fired and failed, say), so a new one of the same name can be armed.
fn clear_leftover_timer(manager: &dyn ServiceManager, units: &InstanceUnits) -> anyhow::Result<()> {
    if disarm(manager, units)? {
        manager.reset_failed(&units.rollback_timer)?;
    }
    Ok(())
}

/// `apply --confirm-within`: renders and proves the policy (a bad one changes nothing),
/// refuses rules that would lock out an SSH session it can see (unless `force`), puts
/// the new files under /run, arms systemd's rollback timer, and only then loads them.
pub(crate) fn apply(
    target: &Target<'_>,
    manager: &dyn ServiceManager,
    within: Duration,
    force: bool,
    outcome: &mut Outcome<'_>,
) -> anyhow::Result<Verdict> {
    let units = InstanceUnits::new(target.instance);
    let lock = lock_config(target, outcome)?;
    let (proven, policy_text) = (|| -> anyhow::Result<_> {
        if !(MIN_CONFIRM_WITHIN..=MAX_CONFIRM_WITHIN).contains(&within) {
            bail!(
                "--confirm-within {}s: expected between {}s and {}s",
                within.as_secs(),
                MIN_CONFIRM_WITHIN.as_secs(),
                MAX_CONFIRM_WITHIN.as_secs()
            );
        }
        // Read once: the text kept for confirm is the text rendered here.
        let (policy, text) = Policy::load_with_text(target.policy_path)?;
        let proven = render_prove_and_read_host(target, &policy)?;
        let status = manager.unit_status(&units.rules)?;
        if !status.is_active() {
            bail!(
                "{} is {}: apply changes the rules of an active instance (`iptables-ctl install {}` first)",
                units.rules,
                status.active_state,
                target.instance
            );
        }
        warn_interface_problems(&proven.interfaces, outcome);
        Ok((proven, text))
    })()
    .context(refused("apply"))?;
    proven.refuse_lockouts("apply", target, force, outcome)?;
    let rendered = proven.rendered;

    // A pending apply is superseded: its timer goes first (one timer name per
    // instance). From then until ours is armed, its rules are live with nothing to
    // bring the previous ones back, so every failure on the way loads those now.
    let superseded = pending(target.layout, target.instance)?;
    if superseded.is_some() {
        disarm(manager, &units)?;
    }
    let fail = |error: anyhow::Error| -> anyhow::Error {
        let _ = forget(target.layout, target.instance);
        if superseded.is_none() {
            return error.context(refused("apply"));
        }
        match load(target, target.layout) {
            Ok(()) => error.context(
                "apply failed; the pending apply it was to supersede was rolled back now: the previous rules are live",
            ),
            Err(e) => error.context(format!(
                "apply failed, and rolling back the pending apply it was to supersede failed too ({e:#}); `iptables-ctl reload {}` loads the previous rules",
                target.instance
            )),
        }
    };
    let record = PendingApply {
        instance: target.instance.to_string(),
        policy: target.policy_path.to_owned(),
        deadline_unix: now_unix() + within.as_secs(),
        timer: units.rollback_timer.clone(),
    };
    let staging = target.layout.pending(target.instance);
    if let Err(error) = stage(target, &staging, rendered, &record, &policy_text) {
        return Err(fail(error));
    }

    // A timer of that name left over (elapsed, failed) would refuse ours.
    if let Err(error) = clear_leftover_timer(manager, &units) {
        return Err(fail(error));
    }
    // Armed before anything loads: from here on, systemd brings the previous rules
    // back unless `confirm` comes first, whatever becomes of this process.
    match manager.arm_timer(&units.rollback_timer, within) {
        Ok(JobResult::Done) => {}
        Ok(result) => {
            return Err(fail(anyhow::anyhow!(
                "cannot arm the rollback timer {}: its start job ended: {result}",
                units.rollback_timer
            )));
        }
        Err(e) => {
            return Err(fail(anyhow::Error::new(e).context(format!(
                "cannot arm the rollback timer {}",
                units.rollback_timer
            ))));
        }
    }
    if let Err(error) = load(target, &staging) {
        // Half of it may be live: the previous rules go back now, not at the deadline.
        return Err(match load(target, target.layout) {
            Ok(()) => {
                let _ = disarm(manager, &units);
                let _ = forget(target.layout, target.instance);
                error.context("apply failed; the previous rules were loaded again")
            }
            // The timer stays armed: systemd tries again at the deadline.
            Err(e) => error.context(format!(
                "apply failed, and loading the previous rules again failed too ({e:#}); {} tries again at the deadline, and `iptables-ctl reload {}` loads them now",
                units.rollback_timer, target.instance
            )),
        });
    }
    // The status check while the lock still keeps other runs out (against the applied
    // files: status compares with those while the apply is pending).
    let verdict = in_force(target, manager, outcome);
    // Said only now, and with the lock given back: output that blocks (a stalled
    // terminal) must neither hold the load up nor keep the rollback from its lock.
    drop(lock);
    if let Some(previous) = superseded {
        outcome.push(Event::ApplySuperseded {
            instance: target.instance.to_string(),
            deadline_unix: previous.deadline_unix,
        });
    }
    outcome.push(Event::Applied {
        instance: target.instance.to_string(),
        timer: units.rollback_timer.clone(),
        within_secs: within.as_secs(),
        deadline_unix: record.deadline_unix,
    });
    Ok(verdict)
}

/// Writes the apply's files under /run (laid out as `staging`) and its record.
fn stage(
    target: &Target<'_>,
    staging: &Layout,
    rendered: crate::backend::Rendered,
    record: &PendingApply,
    policy: &str,
) -> anyhow::Result<()> {
    // A superseded apply's files go; the new set is written whole.
    forget(target.layout, target.instance)?;
    files::create_dirs(&staging.config_dir())?;
    target
        .backend
        .output_set(staging, target.instance)
        .write(&rendered.into_outputs())?;
    let text = serde_json::to_string_pretty(record).context("cannot encode the record")?;
    // The record last: a pending apply is one with a record.
    let dir = target.layout.pending_dir(target.instance);
    files::write_files(&dir, &[(APPLIED_POLICY.to_owned(), policy.to_owned())])?;
    files::write_files(&dir, &[(RECORD.to_owned(), text)])?;
    Ok(())
}

/// Loads the rules files of `layout` and has Docker's forwarded traffic meet them first.
fn load(target: &Target<'_>, layout: &Layout) -> anyhow::Result<()> {
    target.backend.load_rules(layout, target.instance)?;
    for family in Family::ALL {
        target
            .backend
            .ensure_forward_first(target.layout, target.instance, family)?;
    }
    Ok(())
}

/// `confirm`: disarms the rollback, makes the applied files the instance's own (in
/// /etc/iptables, so the next boot loads them) and reloads the unit from them. Ends with
/// the status check.
pub(crate) fn confirm(
    target: &Target<'_>,
    manager: &dyn ServiceManager,
    outcome: &mut Outcome<'_>,
) -> anyhow::Result<Verdict> {
    let units = InstanceUnits::new(target.instance);
    let _lock = lock_config(target, outcome)?;
    let Some(record) = pending(target.layout, target.instance)? else {
        bail!(
            "nothing to confirm: {} has no pending apply (it was confirmed, or its deadline passed and the previous rules came back)",
            target.instance
        );
    };
    if record.seconds_left() == 0 {
        bail!(
            "too late: the deadline of the apply passed, so the previous rules are coming back; apply again"
        );
    }
    // The new connection proves the rules that are live; they must be the applied
    // ones (a Docker restart or a reload meanwhile loads /etc/iptables again).
    let staging = target.layout.pending(target.instance);
    let live = target
        .backend
        .live_state(&staging, target.instance, true)
        .context("cannot tell whether the applied rules are still live; nothing was confirmed")?;
    if let Some(family) = live
        .families
        .iter()
        .find(|f| !(f.rules_match && f.sets_match()))
    {
        bail!(
            "nothing was confirmed: the {} rules (or the sets they match) live now are not the applied ones (something loaded others since apply: a Docker restart, a reload), so a new connection proved those, not the applied rules; the rollback stays armed; apply again",
            family.family
        );
    }
    // The files first: a timer that fires meanwhile (the deadline is near) loads
    // /etc/iptables, which then already holds what is being confirmed.
    let outputs = target
        .backend
        .output_set(&staging, target.instance)
        .read()?
        .files()
        .map(|(name, bytes)| {
            String::from_utf8(bytes.to_vec())
                .map(|text| (name.to_owned(), text))
                .with_context(|| format!("the applied file {name} is not text"))
        })
        .collect::<anyhow::Result<Vec<_>>>()
        .context("nothing was confirmed")?;
    let summary = target
        .backend
        .output_set(target.layout, target.instance)
        .write(&outputs)
        .context("nothing was confirmed; the rollback is still armed")?;
    outcome.writes(&summary);
    let applied_policy = policy_text(
        &target
            .layout
            .pending_dir(target.instance)
            .join(APPLIED_POLICY),
    );
    disarm(manager, &units).with_context(|| {
        format!(
            "the applied files are written, but the rollback could not be disarmed: at the deadline it loads them again, which changes nothing; `iptables-ctl confirm {}` again clears it",
            target.instance
        )
    })?;
    forget(target.layout, target.instance)?;
    run_job(manager, JobKind::Reload, &units.rules)?;
    outcome.push(Event::Confirmed {
        instance: target.instance.to_string(),
    });
    keep_generation_of(target, "confirm", applied_policy, outcome);
    Ok(in_force(target, manager, outcome))
}

/// `rollback-pending` (run by `iptables-rollback@.service` when the timer fires): with
/// an apply still pending, loads the instance's own files (the previous rules) again
/// and forgets the apply; without one (confirmed or superseded meanwhile), nothing.
pub(crate) fn rollback_pending(
    target: &Target<'_>,
    manager: &dyn ServiceManager,
    outcome: &mut Outcome<'_>,
) -> anyhow::Result<Verdict> {
    let units = InstanceUnits::new(target.instance);
    // Waits for an apply or confirm in progress: the rollback must not be lost to one.
    let _lock = DirLock::acquire_waiting(&target.layout.config_dir())?;
    // A record whose deadline is still ahead belongs to a newer apply that superseded
    // the one this firing was armed for (which was disarmed too late to stop it).
    match pending(target.layout, target.instance) {
        Ok(Some(record)) if record.seconds_left() == 0 => {}
        // A record that cannot be read is no reason to keep rules nobody confirmed.
        Err(e) => outcome.warn(format!("{e:#}; rolling back all the same")),
        Ok(_) => {
            outcome.push(Event::NothingPending {
                instance: target.instance.to_string(),
            });
            return Ok(Verdict::Done);
        }
    }
    // Stopped means stopped: a stopped instance gets no rules back.
    let active = manager.unit_status(&units.rules)?.is_active();
    if active {
        load(target, target.layout)?;
    }
    // The rules are back; a policy left as applied would be loaded, untried, by the
    // next reload, and status would call it a change waiting to be applied.
    if let Err(e) = restore_policy(target, outcome) {
        outcome.warn(format!(
            "the previous rules are back, but the policy file could not be put back: {e:#}"
        ));
    }
    forget(target.layout, target.instance)?;
    outcome.push(Event::RolledBack {
        instance: target.instance.to_string(),
        loaded: active,
    });
    Ok(Verdict::Done)
}

/// After a rollback: when the policy file still holds the policy that was applied,
/// writes back the one of the newest generation (what the instance's own files were
/// rendered from), keeping the rejected one beside it as `NAME.rejected`. A file edited
/// since the apply is the admin's newer work, and stays.
fn restore_policy(target: &Target<'_>, outcome: &mut Outcome<'_>) -> anyhow::Result<()> {
    let applied = policy_text(
        &target
            .layout
            .pending_dir(target.instance)
            .join(APPLIED_POLICY),
    )?;
    let current = policy_text(target.policy_path)?;
    if current != applied {
        outcome.warn(format!(
            "{} changed since it was applied, so it stays as it is: `iptables-ctl diff {}` shows what a reload would load",
            target.policy_path.display(),
            target.instance
        ));
        return Ok(());
    }
    let generations = Generations::of(target.layout, target.instance);
    let Some(newest) = generations.list()?.pop() else {
        outcome.warn(format!(
            "no generation is kept, so {} still holds the policy that was rolled back",
            target.policy_path.display()
        ));
        return Ok(());
    };
    let previous = generations.policy(&newest)?;
    if previous == applied {
        return Ok(());
    }
    let (dir, name) = files::dir_and_name(target.policy_path)?;
    let rejected = format!("{name}.rejected");
    files::write_files(dir, &[(rejected.clone(), applied)])?;
    files::write_files(dir, &[(name, previous)])?;
    outcome.push(Event::PolicyRestored {
        path: target.policy_path.to_owned(),
        rejected: dir.join(rejected),
        generation: newest.number,
    });
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::control::fakes::{FakeManager, InForceBackend, POLICY, staged};

    const WITHIN: Duration = Duration::from_secs(30);

    #[test]
    fn apply_stages_under_run_arms_the_timer_and_leaves_etc_alone() {
        let staged = staged(Some(POLICY));
        staged.write_rules("previous");
        let etc = staged.layout.config_dir();
        let before = std::fs::read(etc.join("base.rules")).unwrap();
        let manager = FakeManager::new("active", JobResult::Done);
        let target = staged.target_with(&InForceBackend);
        apply(&target, &manager, WITHIN, false, &mut Outcome::new()).unwrap();
        assert_eq!(manager.calls(), ["arm iptables-rollback@base.timer 30s"]);
        assert_eq!(std::fs::read(etc.join("base.rules")).unwrap(), before);
        let record = pending(&staged.layout, &staged.instance).unwrap().unwrap();
        assert!((29..=30).contains(&record.seconds_left()), "{record:?}");
        let applied = staged.layout.pending(&staged.instance).config_dir();
        assert!(
            std::fs::read_to_string(applied.join("base.rules"))
                .unwrap()
                .starts_with("# Generated by iptables-ctl"),
            "the new files wait under /run"
        );
    }

    #[test]
    fn a_newer_apply_disarms_the_pending_one_first() {
        let staged = staged(Some(POLICY));
        staged.write_rules("previous");
        let manager = FakeManager::new("active", JobResult::Done);
        let target = staged.target_with(&InForceBackend);
        apply(&target, &manager, WITHIN, false, &mut Outcome::new()).unwrap();
        let mut outcome = Outcome::new();
        apply(&target, &manager, WITHIN, false, &mut outcome).unwrap();
        assert_eq!(
            manager.calls(),
            [
                "arm iptables-rollback@base.timer 30s",
                "stop iptables-rollback@base.timer",
                "arm iptables-rollback@base.timer 30s",
            ]
        );
        assert!(
            outcome
                .events()
                .iter()
                .any(|e| matches!(e, Event::ApplySuperseded { .. })),
            "{:?}",
            outcome.events()
        );
    }

    /// The new connection proves the sets live now too: when they are not the applied
    /// ones (a reload loaded others meanwhile), nothing is confirmed.
    #[test]
    fn confirm_refuses_when_the_live_sets_are_not_the_applied_ones() {
        let staged = staged(Some(POLICY));
        staged.write_rules("previous");
        let manager = FakeManager::new("active", JobResult::Done);
        let target = staged.target_with(&InForceBackend);
        apply(&target, &manager, WITHIN, false, &mut Outcome::new()).unwrap();
        crate::control::fakes::LIVE_SET_DRIFTED.set(true);
        let error = confirm(&target, &manager, &mut Outcome::new()).unwrap_err();
        crate::control::fakes::LIVE_SET_DRIFTED.set(false);
        assert!(
            format!("{error}").contains("nothing was confirmed"),
            "{error}"
        );
        assert!(pending(&staged.layout, &staged.instance).unwrap().is_some());
    }

    #[test]
    fn confirm_writes_the_applied_files_before_it_disarms_then_reloads() {
        let staged = staged(Some(POLICY));
        staged.write_rules("previous");
        let manager = FakeManager::new("active", JobResult::Done);
        let target = staged.target_with(&InForceBackend);
        apply(&target, &manager, WITHIN, false, &mut Outcome::new()).unwrap();
        let applied = std::fs::read(
            staged
                .layout
                .pending(&staged.instance)
                .config_dir()
                .join("base.rules"),
        )
        .unwrap();
        confirm(&target, &manager, &mut Outcome::new()).unwrap();
        assert_eq!(
            std::fs::read(staged.layout.config_dir().join("base.rules")).unwrap(),
            applied
        );
        assert_eq!(pending(&staged.layout, &staged.instance).unwrap(), None);
        assert_eq!(
            manager.calls()[1..3],
            [
                "stop iptables-rollback@base.timer".to_owned(),
                "reload iptables@base.service".to_owned()
            ]
        );
        let error = confirm(&target, &manager, &mut Outcome::new()).unwrap_err();
        assert!(format!("{error}").contains("nothing to confirm"), "{error}");
    }

    /// A firing of the superseded apply's timer that was already under way when it was
    /// disarmed runs after the newer apply: the newer one's deadline is still ahead,
    /// so it is left alone.
    #[test]
    fn a_late_firing_leaves_a_newer_apply_alone() {
        let staged = staged(Some(POLICY));
        staged.write_rules("previous");
        let manager = FakeManager::new("active", JobResult::Done);
        let target = staged.target_with(&InForceBackend);
        apply(&target, &manager, WITHIN, false, &mut Outcome::new()).unwrap();
        let mut outcome = Outcome::new();
        rollback_pending(&target, &manager, &mut outcome).unwrap();
        assert!(
            matches!(outcome.events(), [Event::NothingPending { .. }]),
            "{:?}",
            outcome.events()
        );
        assert!(pending(&staged.layout, &staged.instance).unwrap().is_some());
    }

    /// A due apply is rolled back: the previous rules load, the apply is forgotten, and
    /// the policy file, which still holds the applied policy, holds the newest
    /// generation's again (the rolled-back one kept beside it), so that no later reload
    /// loads the rolled-back policy untried.
    #[test]
    fn a_due_apply_is_rolled_back_and_forgotten() {
        let staged = staged(Some(POLICY));
        staged.write_rules("previous");
        Generations::of(&staged.layout, &staged.instance)
            .record("install", &staged.policy_path, POLICY, &[], &[])
            .unwrap();
        let edited = format!("{POLICY}\n[[host.services]]\nport = 8443\n");
        std::fs::write(&staged.policy_path, &edited).unwrap();
        let manager = FakeManager::new("active", JobResult::Done);
        let target = staged.target_with(&InForceBackend);
        apply(&target, &manager, WITHIN, false, &mut Outcome::new()).unwrap();
        // Due: the record's deadline is now.
        let dir = staged.layout.pending_dir(&staged.instance);
        let mut record = pending(&staged.layout, &staged.instance).unwrap().unwrap();
        record.deadline_unix = now_unix();
        std::fs::write(dir.join(RECORD), serde_json::to_string(&record).unwrap()).unwrap();
        let mut outcome = Outcome::new();
        rollback_pending(&target, &manager, &mut outcome).unwrap();
        assert!(
            matches!(
                outcome.events(),
                [
                    Event::PolicyRestored { generation: 1, .. },
                    Event::RolledBack { .. }
                ]
            ),
            "{:?}",
            outcome.events()
        );
        assert!(!dir.exists(), "the apply is forgotten");
        assert_eq!(
            std::fs::read_to_string(&staged.policy_path).unwrap(),
            POLICY
        );
        let rejected = staged.policy_path.with_file_name("base.toml.rejected");
        assert_eq!(std::fs::read_to_string(rejected).unwrap(), edited);
    }

    #[test]
    fn apply_refuses_a_window_out_of_bounds_and_changes_nothing() {
        let staged = staged(Some(POLICY));
        let before = staged.files();
        let manager = FakeManager::new("active", JobResult::Done);
        let target = staged.target_with(&InForceBackend);
        for within in [Duration::ZERO, MAX_CONFIRM_WITHIN + Duration::from_secs(1)] {
            let error = apply(&target, &manager, within, false, &mut Outcome::new()).unwrap_err();
            assert!(
                format!("{error:#}").contains("--confirm-within"),
                "{error:#}"
            );
        }
        assert_eq!(staged.files(), before);
        assert!(manager.calls().is_empty());
    }

    #[test]
    fn status_says_when_a_pending_apply_lost_its_rollback() {
        let staged = staged(Some(POLICY));
        staged.write_rules("previous");
        let manager = FakeManager::new("active", JobResult::Done);
        let target = staged.target_with(&InForceBackend);
        apply(&target, &manager, WITHIN, false, &mut Outcome::new()).unwrap();
        let armed =
            crate::control::status::status(&target, &manager, &crate::lints::Skips::default())
                .unwrap();
        assert!(armed.pending.is_some());
        assert!(
            !armed.problems.iter().any(|p| p.contains("rollback")),
            "{:?}",
            armed.problems
        );
        // The timer gone (stopped by hand), the record still there.
        manager
            .run_job(JobKind::Stop, "iptables-rollback@base.timer")
            .unwrap();
        let report =
            crate::control::status::status(&target, &manager, &crate::lints::Skips::default())
                .unwrap();
        assert!(!report.in_force);
        assert!(
            report
                .problems
                .iter()
                .any(|p| p.contains("has no rollback armed")),
            "{:?}",
            report.problems
        );
    }

    #[test]
    fn reload_and_install_refuse_while_an_apply_is_pending() {
        let staged = staged(Some(POLICY));
        staged.write_rules("previous");
        let manager = FakeManager::new("active", JobResult::Done);
        let target = staged.target_with(&InForceBackend);
        apply(&target, &manager, WITHIN, false, &mut Outcome::new()).unwrap();
        let before = staged.files();
        let calls = manager.calls().len();
        let error =
            crate::control::reload(&target, &manager, false, &mut Outcome::new()).unwrap_err();
        assert!(
            format!("{error:#}").contains("reload refused: an apply of base is pending"),
            "{error:#}"
        );
        let error = crate::control::install(
            &target,
            crate::control::Systemd::Live(&manager),
            crate::control::InstallOptions::default(),
            &mut Outcome::new(),
        )
        .unwrap_err();
        assert!(
            format!("{error:#}").contains("install refused"),
            "{error:#}"
        );
        assert_eq!(staged.files(), before, "nothing changed");
        assert_eq!(manager.calls().len(), calls, "{:?}", manager.calls());
    }

    /// The generation confirm keeps holds the policy apply rendered, even when the file
    /// was edited in between.
    #[test]
    fn confirm_keeps_the_policy_that_was_applied() {
        let staged = staged(Some(POLICY));
        staged.write_rules("previous");
        let manager = FakeManager::new("active", JobResult::Done);
        let target = staged.target_with(&InForceBackend);
        apply(&target, &manager, WITHIN, false, &mut Outcome::new()).unwrap();
        std::fs::write(
            &staged.policy_path,
            format!("{POLICY}# edited after apply\n"),
        )
        .unwrap();
        confirm(&target, &manager, &mut Outcome::new()).unwrap();
        let generations =
            crate::files::generations::Generations::of(&staged.layout, &staged.instance);
        let kept = generations.list().unwrap();
        assert_eq!(kept.last().map(|g| g.command.as_str()), Some("confirm"));
        assert_eq!(generations.policy(kept.last().unwrap()).unwrap(), POLICY);
    }
}
