//! `render` and `check`: the policy rendered and proven without loading anything live.
//! `check` loads every file twice into a throwaway namespace and says so per family;
//! `render` does the same check (unless told not to), then writes the files as one set,
//! or hands them back for `--stdout`. Both warn about interface names the host does not
//! have and SSH sessions the rules would lock out, which reload, install and start
//! refuse.

use anyhow::Context as _;

use crate::backend::{Proof, Rendered};
use crate::control::outcome::{Event, Outcome, Verdict};
use crate::control::{
    HostReads, Target, at_once, conflicts, interface_problems, interfaces_and_sessions, lock_dir,
    while_proving,
};
use crate::host::{OpenSessions, Remembered};
use crate::lints::{self, Facts, Skips};
use crate::policy::Policy;

/// Where `render` puts the files.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Destination {
    /// The instance's files, written as one set.
    Files,
    /// Recorded as one document, to print.
    Stdout,
}

/// `render`: renders and (with `kernel_check`) proves the policy, then writes the
/// instance's files as one set, or records them as a document.
pub(crate) fn render(
    target: &Target<'_>,
    destination: Destination,
    kernel_check: bool,
    outcome: &mut Outcome<'_>,
) -> anyhow::Result<Verdict> {
    let dir = target.layout.config_dir();
    let _lock = match destination {
        Destination::Stdout => None,
        Destination::Files => Some(lock_dir(&dir, outcome).with_context(|| {
            format!(
                "cannot use {} (run `iptables-ctl init` to create a policy there)",
                dir.display()
            )
        })?),
    };
    let (policy, rendered) = render_policy(target)?;
    // The host's interfaces and SSH sessions are read while the files are proven.
    let (host, proof) = while_proving(
        || {
            if kernel_check {
                interfaces_and_sessions(&policy, target.host)
                    .map(|(interfaces, sessions)| (interfaces, Some(sessions)))
            } else {
                Ok((interface_problems(&policy, target.host), None))
            }
        },
        || kernel_check.then(|| target.backend.prove(target.instance, &policy, &rendered)),
    )?;
    let (interfaces, sessions) = host?;
    for problem in interfaces {
        outcome.warn(problem);
    }
    if let (Some(proof), Some(sessions)) = (proof, sessions) {
        let proof = proof.context("kernel check of the rendered files failed; nothing was written (--no-kernel-check skips the check)")?;
        warn_lockouts(target, &sessions, &proof, outcome);
    }
    if destination == Destination::Stdout {
        let text = rendered
            .files()
            .iter()
            .map(|(_, text)| text.as_str())
            .collect::<Vec<_>>()
            .join("\n");
        outcome.push(Event::Document { text });
        return Ok(Verdict::Done);
    }
    let summary = target
        .backend
        .output_set(target.layout, target.instance)
        .write(&rendered.into_outputs())?;
    outcome.writes(&summary);
    let installed = conflicts::enabled_under(target.layout.root(), target.instance);
    if installed && !summary.written.is_empty() {
        outcome.push(Event::RenderedNotLoaded {
            instance: target.instance.to_string(),
        });
    }
    Ok(Verdict::Done)
}

/// Where `check` runs its lints.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum LintHost {
    /// On this host: the live rules say what Docker publishes, and which variant
    /// holds what.
    Live,
    /// For a staged tree: only the policy and the tree are looked at.
    Staged,
}

/// `check`: validates the policy, runs the lints that need no rules in force (less
/// `skips`), and loads every file twice into a throwaway namespace (the target's
/// backend); writes nothing.
pub(crate) fn check(
    target: &Target<'_>,
    host: LintHost,
    skips: &Skips,
    outcome: &mut Outcome<'_>,
) -> anyhow::Result<Verdict> {
    let (policy, rendered) = render_policy(target)?;
    outcome.push(Event::PolicyValid {
        path: target.policy_path.to_owned(),
    });
    // The lints and the lockout check read the host while the files are proven: the
    // SSH sessions beside the rest, each read at once.
    let remembered = Remembered::new(target.host);
    let target = &Target {
        host: &remembered,
        ..*target
    };
    let gather = || match host {
        LintHost::Staged => Facts::of_policy(target, &policy),
        LintHost::Live => {
            let HostReads {
                rules,
                net,
                variants,
            } = HostReads::read(target.backend, &remembered);
            let read = match (&rules, &net) {
                (Ok(rules), Ok(net)) => Ok((rules.as_ref(), net)),
                (Err(e), _) | (_, Err(e)) => Err(format!("{e:#}")),
            };
            Facts::gather(target, Some(&policy), read, variants, None)
        }
    };
    let (host, proof) = while_proving(
        || at_once(gather, || OpenSessions::read(target.host)),
        || target.backend.prove(target.instance, &policy, &rendered),
    )?;
    let (facts, sessions) = host?;
    for unread in facts.unread.iter().chain(&facts.variants_unread) {
        outcome.warn(unread);
    }
    outcome.lints(lints::judge(&facts, &policy.lint_skips().and(skips)));
    let proof = proof?;
    for part in proof.parts() {
        outcome.push(Event::FamilyProven {
            rules: part.rules.clone(),
            empty: part.empty.clone(),
            restore_program: part.program.clone(),
            rule_count: part.rule_count,
            sets: part.sets.clone(),
        });
    }
    warn_lockouts(target, &sessions, &proof, outcome);
    Ok(Verdict::Done)
}

/// Loads the target's policy and renders it in memory.
fn render_policy(target: &Target<'_>) -> anyhow::Result<(Policy, Rendered)> {
    let policy = Policy::load(target.policy_path)?;
    let rendered = target
        .backend
        .render(target.layout, target.instance, &policy)?;
    Ok((policy, rendered))
}

/// Warns about the SSH `sessions` that the rules `proof` loaded would lock out.
fn warn_lockouts(
    target: &Target<'_>,
    sessions: &OpenSessions,
    proof: &Proof,
    outcome: &mut Outcome<'_>,
) {
    for lockout in target.backend.lockouts(sessions, proof) {
        outcome.warn(format!(
            "{lockout}; reload, install and start refuse these rules without --force"
        ));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::control::fakes::{AcceptingTrial, POLICY, QuietFirewall, staged};
    use crate::iptables::{IptablesBackend, Tools};

    fn kinds(outcome: &Outcome<'_>) -> Vec<&'static str> {
        outcome
            .events()
            .iter()
            .map(|e| match e {
                Event::FileWritten { .. } => "written",
                Event::FileUnchanged { .. } => "unchanged",
                Event::Document { .. } => "document",
                Event::PolicyValid { .. } => "valid",
                Event::FamilyProven { .. } => "proven",
                _ => "other",
            })
            .collect()
    }

    /// The flows record what they did and print nothing: a first render writes the
    /// six files, a second finds them unchanged, `--stdout` writes nothing.
    #[test]
    fn render_records_what_it_wrote_and_stdout_writes_nothing() {
        let staged = staged(Some(POLICY));
        let mut first = Outcome::new();
        render(&staged.target(), Destination::Files, true, &mut first).unwrap();
        assert_eq!(kinds(&first), ["written"; 6]);
        let written = staged.files();

        let mut again = Outcome::new();
        render(&staged.target(), Destination::Files, true, &mut again).unwrap();
        assert_eq!(kinds(&again), ["unchanged"; 6]);

        let mut stdout = Outcome::new();
        render(&staged.target(), Destination::Stdout, false, &mut stdout).unwrap();
        assert_eq!(kinds(&stdout), ["document"]);
        let Event::Document { text } = &stdout.events()[0] else {
            unreachable!()
        };
        assert!(text.contains("*filter"), "{text}");
        assert_eq!(staged.files(), written);
    }

    #[test]
    fn check_says_the_policy_is_valid_then_each_family_loads() {
        let staged = staged(Some(POLICY));
        let mut outcome = Outcome::new();
        let legacy = IptablesBackend {
            tools: Tools::Legacy,
            trial: &AcceptingTrial,
            firewall: &QuietFirewall,
        };
        check(
            &staged.target_with(&legacy),
            LintHost::Staged,
            &Skips::default(),
            &mut outcome,
        )
        .unwrap();
        assert_eq!(kinds(&outcome), ["valid", "proven", "proven"]);
        assert_eq!(
            outcome.events()[2],
            Event::FamilyProven {
                rules: "base.rules6".to_owned(),
                empty: "base.rules6.empty".to_owned(),
                restore_program: "ip6tables-legacy-restore".to_owned(),
                rule_count: 0,
                sets: Vec::new(),
            }
        );
        // Nothing was written.
        assert!(staged.files().iter().all(|(p, _)| p.ends_with("base.toml")));
    }
}
