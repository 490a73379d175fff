//! `status`: whether an instance's rules protect what its policy says, now. "In force"
//! is said only when every check that could fail passed:
//! - the units are active (and the re-assertion after Docker is, while Docker runs);
//! - both families' owned chains hold exactly the rendered rules, and FORWARD jumps to
//!   DOCKER-USER first;
//! - the files on disk are what the policy renders today (no edit waits for a reload);
//! - every interface the policy names exists;
//! - the exposure audit finds no published port reachable beyond the policy.
//!
//! The flow gathers; [`StatusReport`] holds the outcome and its text (the command line
//! gives it its exit code).

use serde::Serialize;

use crate::audit::{self, AuditReport};
use crate::backend::{FamilyState, LiveRules, LiveState};
use crate::control::Target;
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
    /// The live rules against the rendered files (active), or against the
    /// pass-through files (stopped).
    pub live: Option<LiveState>,
    /// Why the live state could not be read.
    pub live_error: Option<String>,
    /// The exposure audit of the published ports (active only).
    pub exposure: Option<AuditReport>,
}

/// `status`: unit states, the live rules against the rendered files, FORWARD, the
/// policy against the files, and the exposure of published ports.
pub(crate) fn status(
    target: &Target<'_>,
    manager: &dyn ServiceManager,
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
        live: None,
        live_error: None,
        exposure: None,
    };
    if !report.installed {
        return Ok(report);
    }
    if !report.unit.is_active() {
        match target
            .backend
            .live_state(target.layout, target.instance, false)
        {
            Ok(state) => report.live = Some(state),
            Err(e) => report.live_error = Some(format!("{e:#}")),
        }
        return Ok(report);
    }

    let mut problems = Vec::new();
    match target
        .backend
        .live_state(target.layout, target.instance, true)
    {
        Ok(state) => {
            for family_state in &state.families {
                problems.extend(family_problems(family_state));
            }
            report.live = Some(state);
        }
        Err(e) => {
            let text = format!("{e:#}");
            problems.push(format!(
                "cannot tell whether the rules are in force: {text}"
            ));
            report.live_error = Some(text);
        }
    }
    let policy = policy_problems(target, &mut problems);
    if report.docker.is_active() && !report.docker_unit.is_active() {
        problems.push(format!(
            "Docker is running but {} is {}: the rules would not be re-asserted after Docker's next start; `iptables-ctl start {}` starts it",
            units.docker, report.docker_unit.active_state, target.instance
        ));
    }
    // Both families' live rules, read once for the bridge check and the audit.
    match target.backend.live_rules() {
        Ok(rules) => {
            if let Some(policy) = &policy {
                problems.extend(uncovered_bridges(target, policy, rules.as_ref()));
            }
            let net = target.host.network()?;
            let interfaces = audit::audit_interfaces(&net, target.host, policy.as_ref());
            let exposure = rules.audit(&net, &interfaces, policy.as_ref());
            if policy.is_some() {
                problems.extend(exposure.flagged_lines());
            }
            report.exposure = Some(exposure);
        }
        Err(e) => problems.push(format!("cannot audit the published ports: {e:#}")),
    }
    report.in_force = problems.is_empty() && report.live.is_some();
    report.problems = problems;
    Ok(report)
}

/// The bridges Docker's live rules name that the policy's `docker_bridges` do not cover.
fn uncovered_bridges(target: &Target<'_>, policy: &Policy, rules: &dyn LiveRules) -> Vec<String> {
    rules
        .docker_bridges()
        .into_iter()
        .filter(|(_, bridge)| !policy.is_docker_bridge(bridge))
        .map(|(family, bridge)| {
                    format!(
                        "{family}: Docker's bridge {bridge} (from its FORWARD rules) is outside interfaces.docker_bridges in {}: its published ports are refused like any other, but new connections routed straight to its containers are not; add it to docker_bridges",
                        target.policy_path.display()
                    )
                })
        .collect()
}

/// Why one family's live rules do not protect what the files say.
fn family_problems(state: &FamilyState) -> Vec<String> {
    let mut problems = Vec::new();
    if !state.rules_match {
        problems.push(if state.reordered {
            format!(
                "{}: the rendered rules are live in another order: `iptables-ctl reload` loads them again",
                state.family
            )
        } else {
            format!(
                "{}: the live rules differ from the rendered ones ({} missing, {} unexpected): `iptables-ctl reload` loads them again",
                state.family,
                state.missing.len(),
                state.unexpected.len()
            )
        });
    }
    match (&state.docker_user_first, &state.forward_first) {
        (Some(true), _) => {}
        (Some(false), Some(first)) => problems.push(format!(
            "{}: FORWARD's first rule is `{first}`, not the jump to DOCKER-USER: what it decides never meets the policy; `iptables-ctl reload` puts the jump first",
            state.family
        )),
        _ => problems.push(format!(
            "{}: FORWARD does not jump to DOCKER-USER: forwarded traffic never meets the policy; `iptables-ctl reload` puts the jump first",
            state.family
        )),
    }
    problems
}

/// Adds what is wrong between the policy file and the files in force; returns the
/// policy when it loads.
fn policy_problems(target: &Target<'_>, problems: &mut Vec<String>) -> Option<Policy> {
    let policy = match Policy::load(target.policy_path) {
        Ok(policy) => policy,
        Err(e) => {
            problems.push(format!(
                "the policy no longer loads, so the rules in force are those of an earlier one: {e}"
            ));
            return None;
        }
    };
    match target
        .backend
        .render(target.layout, target.instance, &policy)
    {
        Ok(rendered) => {
            let on_disk = target
                .backend
                .output_set(target.layout, target.instance)
                .read();
            let stale = rendered.files().iter().any(|(name, text)| {
                on_disk
                    .as_ref()
                    .ok()
                    .and_then(|set| set.shown(name))
                    .map(|shown| shown.bytes.as_slice())
                    != Some(text.as_bytes())
            });
            if stale {
                problems.push(
                    "policy changed since it was applied: run `iptables-ctl reload`".to_owned(),
                );
            }
        }
        Err(e) => problems.push(format!(
            "the policy no longer renders, so the rules in force are those of an earlier one: {e:#}"
        )),
    }
    problems.extend(
        crate::control::interface_problems(&policy, target.host)
            .into_iter()
            .map(|e| e.to_string()),
    );
    Some(policy)
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
