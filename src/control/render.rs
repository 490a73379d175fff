//! `render` and `check`: the policy rendered and proven without loading anything live.
//! `check` loads every file twice into a throwaway namespace and says so per family;
//! `render` does the same check (unless told not to), then writes the files as one set,
//! or hands them back for `--stdout`. Both warn about interface names the host does not
//! have and SSH sessions the rules would lock out, which reload, install and start
//! refuse.

use anyhow::Context as _;

use crate::control::outcome::{Event, Outcome, Verdict};
use crate::control::{Target, conflicts, lockout, warn_interface_problems};
use crate::family::Family;
use crate::files::DirLock;
use crate::iptables::Tools;
use crate::iptables::instance;
use crate::iptables::render::{RenderedFile, TemplateKind, output_file_name};
use crate::iptables::trial::TrialReport;

/// Where `render` puts the files.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Destination {
    /// The instance's files, written as one set.
    Files,
    /// Recorded as one document, to print.
    Stdout,
}

/// `render`: renders and (with `kernel_check`) proves the policy, then writes the four
/// files as one set, or records them as a document.
pub(crate) fn render(
    target: &Target<'_>,
    destination: Destination,
    kernel_check: bool,
    outcome: &mut Outcome<'_>,
) -> anyhow::Result<Verdict> {
    let dir = target.layout.config_dir();
    let _lock = match destination {
        Destination::Stdout => None,
        Destination::Files => Some(DirLock::acquire(&dir).with_context(|| {
            format!(
                "cannot use {} (run `iptables-ctl init` to create a policy there)",
                dir.display()
            )
        })?),
    };
    let (policy, rendered) =
        instance::render_instance(target.layout, target.instance, target.policy_path)?;
    warn_interface_problems(&policy, target.host, outcome);
    if kernel_check {
        let reports = instance::prove(&policy, &rendered, target.trial)
            .context("kernel check of the rendered files failed; nothing was written (--no-kernel-check skips the check)")?;
        warn_lockouts(target, reports, outcome);
    }
    if destination == Destination::Stdout {
        let text = rendered
            .iter()
            .map(|f| f.text.as_str())
            .collect::<Vec<_>>()
            .join("\n");
        outcome.push(Event::Document { text });
        return Ok(Verdict::Done);
    }
    let summary = instance::output_set(target.layout, target.instance)
        .write(&RenderedFile::outputs(rendered))?;
    outcome.writes(&summary);
    let installed = conflicts::enabled_under(target.layout.root(), target.instance);
    if installed && !summary.written.is_empty() {
        outcome.push(Event::RenderedNotLoaded {
            instance: target.instance.to_string(),
        });
    }
    Ok(Verdict::Done)
}

/// `check`: validates the policy and loads every file twice into a throwaway
/// namespace with the programs of `tools` (the target's trial); writes nothing.
pub(crate) fn check(
    target: &Target<'_>,
    tools: Tools,
    outcome: &mut Outcome<'_>,
) -> anyhow::Result<Verdict> {
    let (policy, rendered) =
        instance::render_instance(target.layout, target.instance, target.policy_path)?;
    outcome.push(Event::PolicyValid {
        path: target.policy_path.to_owned(),
    });
    warn_interface_problems(&policy, target.host, outcome);
    let reports = instance::prove(&policy, &rendered, target.trial)?;
    for (family, report) in &reports {
        outcome.push(Event::FamilyProven {
            rules: output_file_name(target.instance, *family, TemplateKind::Rules),
            empty: output_file_name(target.instance, *family, TemplateKind::Empty),
            restore_program: tools.restore_program(*family).to_owned(),
            rule_count: report.rule_count,
        });
    }
    warn_lockouts(target, reports, outcome);
    Ok(Verdict::Done)
}

/// Warns about SSH sessions that the rules as loaded in `reports` would lock out.
fn warn_lockouts(
    target: &Target<'_>,
    reports: Vec<(Family, TrialReport)>,
    outcome: &mut Outcome<'_>,
) {
    let loaded = lockout::loaded_rules(reports);
    for lockout in lockout::check(target.host, &loaded) {
        outcome.warn(format!(
            "{lockout}; reload, install and start refuse these rules without --force"
        ));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::control::fakes::{POLICY, staged};

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
    /// four files, a second finds them unchanged, `--stdout` writes nothing.
    #[test]
    fn render_records_what_it_wrote_and_stdout_writes_nothing() {
        let staged = staged(Some(POLICY));
        let mut first = Outcome::new();
        render(&staged.target(), Destination::Files, true, &mut first).unwrap();
        assert_eq!(kinds(&first), ["written"; 4]);
        let written = staged.files();

        let mut again = Outcome::new();
        render(&staged.target(), Destination::Files, true, &mut again).unwrap();
        assert_eq!(kinds(&again), ["unchanged"; 4]);

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
        check(&staged.target(), Tools::Legacy, &mut outcome).unwrap();
        assert_eq!(kinds(&outcome), ["valid", "proven", "proven"]);
        assert_eq!(
            outcome.events()[2],
            Event::FamilyProven {
                rules: "base.rules6".to_owned(),
                empty: "base.rules6.empty".to_owned(),
                restore_program: "ip6tables-legacy-restore".to_owned(),
                rule_count: 0,
            }
        );
        // Nothing was written.
        assert!(staged.files().iter().all(|(p, _)| p.ends_with("base.toml")));
    }
}
