//! FORWARD's jump to DOCKER-USER: the one rule outside the chains iptables-ctl owns that
//! its protection depends on. Docker puts `-A FORWARD -j DOCKER-USER` first, except
//! where it does not (Docker 20.10 creates no such jump in ip6tables), and anything
//! inserted before it by hand or by another tool is decided before the policy is.
//!
//! The units run `iptables-ctl forward-jump INSTANCE` after loading the rules, at boot,
//! on reload and after every Docker start: it makes the jump FORWARD's first rule and
//! its only copy, in one `iptables-restore -n` transaction per family (so there is no
//! moment without it), and records what it had to repair under `/run` for `status`.
//! What to change is worked out by [`plan`], a pure function of FORWARD's rules.

use std::path::PathBuf;

use anyhow::{Context as _, bail};
use serde::{Deserialize, Serialize};

use crate::backend::Repair;
use crate::family::Family;
use crate::files;
use crate::files::layout::Layout;
use crate::iptables::dump;
use crate::iptables::live::LiveFirewall;
use crate::policy::types::InstanceName;

/// The rule, as iptables-save prints it.
pub const JUMP: &str = "-A FORWARD -j DOCKER-USER";

/// How often a transaction is tried again when FORWARD changed between reading it and
/// loading the change (Docker inserting its own rules at the same moment).
const ATTEMPTS: u32 = 5;

/// The pause before the first retry; each further retry waits one more of these.
const RETRY_PAUSE: std::time::Duration = std::time::Duration::from_millis(20);

/// What FORWARD looked like before.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "found", rename_all = "snake_case")]
pub enum Finding {
    /// The jump was the first rule and the only one.
    InPlace,
    /// FORWARD was empty (Docker has not started): the jump was added.
    Added,
    /// FORWARD had other rules first, no jump, or more than one: now the jump is first.
    Repaired {
        /// FORWARD's first rule before the repair.
        first_rule: String,
        /// How many jumps there were.
        jumps: usize,
    },
}

/// What to do to FORWARD, whose rules (iptables-save lines, in order) are `forward`:
/// the finding, and the restore input that puts exactly one jump first (None when there
/// is nothing to do).
pub fn plan(forward: &[String]) -> (Finding, Option<String>) {
    let jumps = forward.iter().filter(|rule| *rule == JUMP).count();
    let finding = match forward.first() {
        None => Finding::Added,
        Some(first) if first == JUMP && jumps == 1 => return (Finding::InPlace, None),
        Some(first) => Finding::Repaired {
            first_rule: first.clone(),
            jumps,
        },
    };
    let mut script = String::from("*filter\n");
    for _ in 0..jumps {
        script.push_str("-D FORWARD -j DOCKER-USER\n");
    }
    script.push_str("-I FORWARD 1 -j DOCKER-USER\nCOMMIT\n");
    (finding, Some(script))
}

/// Makes the jump FORWARD's first and only one in `family`'s live filter table.
pub fn ensure(firewall: &dyn LiveFirewall, family: Family) -> anyhow::Result<Finding> {
    let mut last_error = None;
    for attempt in 0..ATTEMPTS {
        let save = firewall.save(family)?;
        let parsed = dump::parse(&save).context("cannot read the live filter table")?;
        let Some(filter) = parsed.table("filter") else {
            bail!("{family} has no filter table: load the rules first");
        };
        if filter.chain("DOCKER-USER").is_none() {
            bail!("{family} has no DOCKER-USER chain: load the rules first");
        }
        let forward: Vec<String> = filter.rules_of("FORWARD").map(|r| r.text()).collect();
        let (finding, script) = plan(&forward);
        let Some(script) = script else {
            return Ok(finding);
        };
        match firewall.restore(family, &script) {
            Ok(()) => return Ok(finding),
            // FORWARD changed since it was read (another program, usually Docker, was
            // changing it at the same moment, and the deletes no longer match): the
            // transaction changed nothing. Read it again after letting that program
            // finish.
            Err(error) => last_error = Some(error),
        }
        std::thread::sleep(RETRY_PAUSE * (attempt + 1));
    }
    let error = last_error.map_or_else(
        || anyhow::anyhow!("no attempt was made"),
        anyhow::Error::new,
    );
    Err(error.context(format!(
        "cannot make {family} FORWARD jump to DOCKER-USER first ({ATTEMPTS} attempts)"
    )))
}

/// What `forward-jump` repaired for an instance since boot.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Repairs {
    /// IPv4.
    pub ipv4: Option<Repair>,
    /// IPv6.
    pub ipv6: Option<Repair>,
}

impl Repairs {
    /// The record of `family`.
    pub fn of(&self, family: Family) -> Option<&Repair> {
        match family {
            Family::Ipv4 => self.ipv4.as_ref(),
            Family::Ipv6 => self.ipv6.as_ref(),
        }
    }

    fn of_mut(&mut self, family: Family) -> &mut Option<Repair> {
        match family {
            Family::Ipv4 => &mut self.ipv4,
            Family::Ipv6 => &mut self.ipv6,
        }
    }
}

fn record_path(layout: &Layout, instance: &InstanceName) -> PathBuf {
    layout.run_dir().join(format!("{instance}.forward.json"))
}

/// The repairs recorded for `instance` (none when nothing was ever repaired since boot).
pub fn repairs(layout: &Layout, instance: &InstanceName) -> Repairs {
    crate::files::source::read_consulted(&record_path(layout, instance))
        .and_then(|text| serde_json::from_str(&text).ok())
        .unwrap_or_default()
}

/// Adds a repair of `family` to `instance`'s record.
pub fn record(
    layout: &Layout,
    instance: &InstanceName,
    family: Family,
    first_rule: &str,
) -> anyhow::Result<()> {
    let mut all = repairs(layout, instance);
    let entry = all.of_mut(family).get_or_insert_with(Repair::default);
    entry.count = entry.count.saturating_add(1);
    entry.last_first_rule = first_rule.to_owned();
    let dir = layout.run_dir();
    files::create_dirs(&dir)?;
    let text = serde_json::to_string_pretty(&all).context("cannot encode the record")?;
    files::write_files(
        &dir,
        &[(format!("{instance}.forward.json"), format!("{text}\n"))],
    )?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rules(lines: &[&str]) -> Vec<String> {
        lines.iter().map(|l| (*l).to_owned()).collect()
    }

    #[test]
    fn a_first_and_only_jump_is_left_alone() {
        let (finding, script) = plan(&rules(&[JUMP, "-A FORWARD -o docker0 -j DOCKER"]));
        assert_eq!((finding, script), (Finding::InPlace, None));
    }

    #[test]
    fn an_empty_forward_gets_the_jump() {
        let (finding, script) = plan(&[]);
        assert_eq!(finding, Finding::Added);
        assert_eq!(
            script.as_deref(),
            Some("*filter\n-I FORWARD 1 -j DOCKER-USER\nCOMMIT\n")
        );
    }

    #[test]
    fn a_missing_late_or_doubled_jump_ends_up_first_and_alone() {
        // Docker 20.10's ip6tables: no jump at all.
        let (finding, script) = plan(&rules(&["-A FORWARD -j DOCKER-ISOLATION-STAGE-1"]));
        assert_eq!(
            finding,
            Finding::Repaired {
                first_rule: "-A FORWARD -j DOCKER-ISOLATION-STAGE-1".to_owned(),
                jumps: 0
            }
        );
        assert_eq!(
            script.as_deref(),
            Some("*filter\n-I FORWARD 1 -j DOCKER-USER\nCOMMIT\n")
        );
        // A hand-inserted ACCEPT before it, and a second copy further down.
        let hand = "-A FORWARD -i eth0 -o docker0 -j ACCEPT";
        let (finding, script) = plan(&rules(&[hand, JUMP, JUMP]));
        assert_eq!(
            finding,
            Finding::Repaired {
                first_rule: hand.to_owned(),
                jumps: 2
            }
        );
        assert_eq!(
            script.as_deref(),
            Some(
                "*filter\n-D FORWARD -j DOCKER-USER\n-D FORWARD -j DOCKER-USER\n-I FORWARD 1 -j DOCKER-USER\nCOMMIT\n"
            )
        );
        // First, but twice.
        let (finding, _) = plan(&rules(&[JUMP, JUMP]));
        assert!(matches!(finding, Finding::Repaired { jumps: 2, .. }));
    }

    #[test]
    fn repairs_are_recorded_per_family() {
        let root = tempfile::tempdir().unwrap();
        let layout = Layout::new(root.path());
        let instance: InstanceName = "base".parse().unwrap();
        assert_eq!(repairs(&layout, &instance), Repairs::default());
        record(&layout, &instance, Family::Ipv6, "-A FORWARD -j X").unwrap();
        record(&layout, &instance, Family::Ipv6, "-A FORWARD -j Y").unwrap();
        let all = repairs(&layout, &instance);
        assert_eq!(all.ipv4, None);
        assert_eq!(
            all.ipv6,
            Some(Repair {
                count: 2,
                last_first_rule: "-A FORWARD -j Y".to_owned()
            })
        );
    }
}
