//! `diff` (and `reload --dry-run`, `apply --dry-run`): what applying the current policy
//! would change. The policy is rendered and proven in a throwaway namespace (so both
//! sides are in the kernel's own spelling), and the chains the backend owns are
//! compared with the live ones, per family, as a unified diff; the rendered files are
//! compared with the instance's files on disk (what the next boot loads). Nothing is
//! written or loaded. The report is also the `--json` form; `changed` is what
//! configuration management branches on.

use std::path::PathBuf;

use serde::Serialize;
use similar::TextDiff;

use crate::backend::{OwnedRules, Proof, Rendered};
use crate::control::{Target, render_and_prove};
use crate::family::Family;
use crate::policy::Policy;

/// Lines of context around each change, as diff(1) -u gives.
const CONTEXT_LINES: usize = 3;

/// The outcome of `diff`, also its `--json` form.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct DiffReport {
    /// The instance.
    pub instance: String,
    /// The policy compared.
    pub policy: PathBuf,
    /// Applying the policy would change the live rules of some family, or the
    /// instance's files on disk.
    pub changed: bool,
    /// Each family, in [`Family::ALL`]'s order.
    pub families: Vec<FamilyDiff>,
    /// The instance's files on disk that applying would write (their content differs
    /// from what the policy renders, or they are missing).
    pub files: Vec<String>,
}

/// One family's part of a [`DiffReport`].
#[derive(Debug, Clone, Serialize)]
pub(crate) struct FamilyDiff {
    /// The family.
    pub family: Family,
    /// The chains compared (those the backend owns).
    pub chains: Vec<String>,
    /// Applying would change this family's live rules.
    pub changed: bool,
    /// Docker's forwarded traffic meets the owned rules first now (applying puts that
    /// right when it does not).
    pub forward_first: bool,
    /// The owned chains, live now (`---`) against as applying would make them
    /// (`+++`), as a unified diff; empty when they are the same.
    pub diff: String,
}

/// `diff`: renders and proves the policy, then compares the owned chains it would
/// load with the live ones.
pub(crate) fn diff(target: &Target<'_>) -> anyhow::Result<DiffReport> {
    let policy = Policy::load(target.policy_path)?;
    let (rendered, proof) = render_and_prove(target, &policy)?;
    diff_of(target, &rendered, &proof)
}

/// What loading `rendered` (proven as `proof`) would change: the owned chains against
/// the live ones, and the instance's files on disk against `rendered`.
pub(crate) fn diff_of(
    target: &Target<'_>,
    rendered: &Rendered,
    proof: &Proof,
) -> anyhow::Result<DiffReport> {
    let families: Vec<FamilyDiff> = target
        .backend
        .owned_rules(proof)?
        .into_iter()
        .map(|rules| family_diff(rules, &target.policy_path.display().to_string()))
        .collect();
    let output_set = target.backend.output_set(target.layout, target.instance);
    let on_disk = output_set.read()?;
    let config_dir = target.layout.config_dir();
    let files: Vec<String> = rendered
        .files()
        .iter()
        .filter(|(name, text)| {
            on_disk.shown(name).map(|s| s.bytes.as_slice()) != Some(text.as_bytes())
        })
        .map(|(name, _)| config_dir.join(name).display().to_string())
        .collect();
    Ok(DiffReport {
        instance: target.instance.to_string(),
        policy: target.policy_path.to_owned(),
        changed: families.iter().any(|f| f.changed) || !files.is_empty(),
        families,
        files,
    })
}

/// Loading the rules `proof` proved would change the live ones (their owned chains
/// differ, or forwarded traffic does not meet them first). When the live rules cannot
/// be read, it is taken to: a change is never hidden.
pub(crate) fn live_differs(target: &Target<'_>, proof: &Proof) -> bool {
    target.backend.owned_rules(proof).map_or(true, |families| {
        families
            .iter()
            .any(|rules| rules.live != rules.planned || !rules.forward_first)
    })
}

fn family_diff(rules: OwnedRules, policy: &str) -> FamilyDiff {
    let live = lines_text(&rules.live);
    let planned = lines_text(&rules.planned);
    let diff = if live == planned {
        String::new()
    } else {
        TextDiff::from_lines(&live, &planned)
            .unified_diff()
            .context_radius(CONTEXT_LINES)
            .header(
                &format!("{} live ({})", rules.family, rules.chains.join(", ")),
                &format!("{} as {policy} renders it", rules.family),
            )
            .to_string()
    };
    FamilyDiff {
        family: rules.family,
        chains: rules.chains,
        changed: !diff.is_empty() || !rules.forward_first,
        forward_first: rules.forward_first,
        diff,
    }
}

fn lines_text(lines: &[String]) -> String {
    lines.iter().map(|l| format!("{l}\n")).collect()
}

impl DiffReport {
    /// The report for a person: each family's diff, then one line saying whether
    /// applying would change anything.
    pub fn human(&self) -> String {
        let mut text = String::new();
        for family in &self.families {
            text.push_str(&family.diff);
            if !family.forward_first {
                text.push_str(&format!(
                    "{}: forwarded traffic does not meet these rules first and once (FORWARD's first rule is not its only jump to DOCKER-USER); applying puts the jump first, once\n",
                    family.family
                ));
            }
            if !family.changed {
                text.push_str(&format!(
                    "{}: no change ({})\n",
                    family.family,
                    family.chains.join(", ")
                ));
            }
        }
        for file in &self.files {
            text.push_str(&format!("would write {file}\n"));
        }
        let changed: Vec<String> = self
            .families
            .iter()
            .filter(|f| f.changed)
            .map(|f| f.family.to_string())
            .collect();
        if changed.is_empty() && !self.files.is_empty() {
            text.push_str(&format!(
                "the live rules are what {} renders, but the files on disk (what the next boot loads) are not: `iptables-ctl reload {}` writes them\n",
                self.policy.display(),
                self.instance
            ));
        } else if changed.is_empty() {
            text.push_str(&format!(
                "the live rules are what {} renders: applying it would change nothing\n",
                self.policy.display()
            ));
        } else {
            text.push_str(&format!(
                "applying {} would change the live rules ({}): `iptables-ctl reload {}` applies it\n",
                self.policy.display(),
                changed.join(", "),
                self.instance
            ));
        }
        text
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn owned(live: &[&str], planned: &[&str], forward_first: bool) -> OwnedRules {
        OwnedRules {
            family: Family::Ipv4,
            chains: vec!["INPUT".to_owned(), "OUTPUT".to_owned()],
            live: live.iter().map(|l| (*l).to_owned()).collect(),
            planned: planned.iter().map(|l| (*l).to_owned()).collect(),
            forward_first,
        }
    }

    #[test]
    fn the_same_rules_are_no_change() {
        let rules = [":INPUT DROP", "-A INPUT -i lo -j ACCEPT"];
        let diff = family_diff(owned(&rules, &rules, true), "/p.toml");
        assert!(!diff.changed);
        assert_eq!(diff.diff, "");
    }

    #[test]
    fn a_changed_rule_is_a_unified_diff_from_live_to_planned() {
        let diff = family_diff(
            owned(
                &[":INPUT DROP", "-A INPUT -p tcp --dport 22 -j ACCEPT"],
                &[":INPUT DROP", "-A INPUT -p tcp --dport 2222 -j ACCEPT"],
                true,
            ),
            "/p.toml",
        );
        assert!(diff.changed);
        assert_eq!(
            diff.diff,
            "--- IPv4 live (INPUT, OUTPUT)\n\
             +++ IPv4 as /p.toml renders it\n\
             @@ -1,2 +1,2 @@\n \
             :INPUT DROP\n\
             --A INPUT -p tcp --dport 22 -j ACCEPT\n\
             +-A INPUT -p tcp --dport 2222 -j ACCEPT\n"
        );
    }

    #[test]
    fn forward_not_meeting_the_rules_first_is_a_change_even_with_the_same_rules() {
        let rules = [":INPUT DROP"];
        let diff = family_diff(owned(&rules, &rules, false), "/p.toml");
        assert!(diff.changed);
        let report = DiffReport {
            instance: "base".to_owned(),
            policy: "/p.toml".into(),
            changed: true,
            families: vec![diff],
            files: Vec::new(),
        };
        let human = report.human();
        assert!(
            human.contains("applying puts the jump first, once"),
            "{human}"
        );
        assert!(
            human.ends_with(
                "applying /p.toml would change the live rules (IPv4): `iptables-ctl reload base` applies it\n"
            ),
            "{human}"
        );
    }
}
