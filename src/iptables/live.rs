//! The firewall as the kernel holds it now, compared with what iptables-ctl rendered:
//! whether the owned chains (INPUT, OUTPUT, DOCKER-USER) hold exactly the rendered
//! rules, whether FORWARD still sends traffic to DOCKER-USER first (a family is in force
//! only when both hold), and which iptables backend is in use. The comparison
//! ([`compare`]) is a pure function of two `iptables-save` dumps; [`inspect`] gathers
//! them, [`inspect_stopped`] the same against the pass-through files. Whether Docker's
//! chains sit in the other variant is read by [`variant_facts`] and judged by
//! [`variant_conflict`]. A running instance is in force only when each set its rules
//! match also holds exactly the rendered members ([`SetContents`]).

use std::collections::HashSet;
use std::sync::Mutex;

use crate::backend::{
    Conflict, FamilyState, LiveState, OtherVariantRules, OwnedRules, PortRule, RulePlace,
    SetContents,
};
use crate::command::{self, ToolError};
use crate::family::Family;
use crate::files::layout::Layout;
use crate::iptables::dump::{self, Dump};
use crate::iptables::instance;
use crate::iptables::sets::{self, SetDefinition};
use crate::iptables::shape::OWNED_CHAINS;
use crate::iptables::trial::{RulesetTrial, TrialError};
use crate::iptables::walk::Ruleset;
use crate::iptables::{self, Tools, Variant};
use crate::packet::Transport;
use crate::policy::types::{InstanceName, Network};

/// Docker appends this to DOCKER-USER when it (re)creates the chain; it changes nothing
/// after our own final RETURN, so it is not drift.
const DOCKER_OWN_RETURN: &str = "-A DOCKER-USER -j RETURN";

/// Reading the live firewall: the one place that runs `iptables -V` and the save tools
/// on the host, so the flows that read it can be exercised without touching a kernel.
pub trait LiveFirewall: Sync {
    /// What `iptables` drives on this host, when it says.
    fn variant(&self) -> Option<Variant>;
    /// `iptables-save` (or `ip6tables-save`) of the system backend.
    fn save(&self, family: Family) -> Result<String, ToolError>;
    /// `iptables-save` of the backend `iptables` does not drive (it drives `system`, as
    /// [`LiveFirewall::variant`] said): `None` when the other's tools are not installed
    /// or its tables cannot exist here; an error when they are and fail.
    fn save_other_variant(&self, system: Variant) -> Result<Option<String>, ToolError>;
    /// Loads `text` with `iptables-restore -w -n` (or ip6tables-restore) of the system
    /// backend: the one change made outside systemd's units (FORWARD's jump).
    fn restore(&self, family: Family, text: &str) -> Result<(), ToolError>;
    /// Loads `text` with `ipset restore`.
    fn restore_sets(&self, text: &str) -> Result<(), ToolError>;
    /// `ipset save NAME`: `None` when there is no such set.
    fn save_set(&self, name: &str) -> Result<Option<String>, ToolError>;
    /// `ipset list -t NAME` (the header, no members): `None` when there is no such set.
    fn list_set(&self, name: &str) -> Result<Option<String>, ToolError>;
    /// `ipset destroy NAME` (the kernel refuses while a rule matches the set).
    fn destroy_set(&self, name: &str) -> Result<(), ToolError>;
}

/// The live firewall as one command that only reads sees it: `iptables -V`, each
/// family's save and the other variant's are each run once, the first time they are
/// asked (a second asker waits for the first's answer), and answered from memory after.
/// `status` reads the live IPv4 rules for its own chains, for the lints and for the
/// variant check: once, and all three judge the same rules. A write (which such a
/// command does not make) goes to the firewall, and everything remembered is forgotten.
/// The sets are read each time.
pub struct Snapshot<'a> {
    inner: &'a dyn LiveFirewall,
    variant: Mutex<Option<Option<Variant>>>,
    saves: [Mutex<Option<Result<String, ToolError>>>; 2],
    other_variant: Mutex<Option<(Variant, OtherSave)>>,
}

/// What the other variant's save answered.
type OtherSave = Result<Option<String>, ToolError>;

impl<'a> Snapshot<'a> {
    /// Remembers what `inner` answers.
    pub fn new(inner: &'a dyn LiveFirewall) -> Snapshot<'a> {
        Snapshot {
            inner,
            variant: Mutex::new(None),
            saves: [Mutex::new(None), Mutex::new(None)],
            other_variant: Mutex::new(None),
        }
    }

    fn save_of(&self, family: Family) -> &Mutex<Option<Result<String, ToolError>>> {
        match family {
            Family::Ipv4 => &self.saves[0],
            Family::Ipv6 => &self.saves[1],
        }
    }

    /// Forgets every read, after a write.
    fn forget(&self) {
        *lock(&self.variant) = None;
        for save in &self.saves {
            *lock(save) = None;
        }
        *lock(&self.other_variant) = None;
    }
}

/// The answer `memory` holds, asked with `ask` the first time (the lock is held while
/// asking, so that a second asker waits and reads the same answer).
fn remembered<T: Clone>(memory: &Mutex<Option<T>>, ask: impl FnOnce() -> T) -> T {
    lock(memory).get_or_insert_with(ask).clone()
}

/// A lock whose holder failed is still a memory to read: a thread that panicked while
/// asking left nothing in it, and the next asker asks again.
fn lock<T>(memory: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    memory
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

impl LiveFirewall for Snapshot<'_> {
    fn variant(&self) -> Option<Variant> {
        remembered(&self.variant, || self.inner.variant())
    }
    fn save(&self, family: Family) -> Result<String, ToolError> {
        remembered(self.save_of(family), || self.inner.save(family))
    }
    fn save_other_variant(&self, system: Variant) -> Result<Option<String>, ToolError> {
        let mut memory = lock(&self.other_variant);
        match &*memory {
            Some((asked, answer)) if *asked == system => answer.clone(),
            _ => {
                let answer = self.inner.save_other_variant(system);
                *memory = Some((system, answer.clone()));
                answer
            }
        }
    }
    fn restore(&self, family: Family, text: &str) -> Result<(), ToolError> {
        let written = self.inner.restore(family, text);
        self.forget();
        written
    }
    fn restore_sets(&self, text: &str) -> Result<(), ToolError> {
        let written = self.inner.restore_sets(text);
        self.forget();
        written
    }
    fn save_set(&self, name: &str) -> Result<Option<String>, ToolError> {
        self.inner.save_set(name)
    }
    fn list_set(&self, name: &str) -> Result<Option<String>, ToolError> {
        self.inner.list_set(name)
    }
    fn destroy_set(&self, name: &str) -> Result<(), ToolError> {
        let written = self.inner.destroy_set(name);
        self.forget();
        written
    }
}

/// The host's own iptables tools.
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemFirewall;

impl LiveFirewall for SystemFirewall {
    fn variant(&self) -> Option<Variant> {
        command::run("iptables", &["-V"], b"")
            .ok()
            .and_then(|v| iptables::variant_from_version(&v))
    }

    fn save(&self, family: Family) -> Result<String, ToolError> {
        command::run(Tools::System.save_program(family), &[], b"")
    }

    fn save_other_variant(&self, system: Variant) -> Result<Option<String>, ToolError> {
        let program = format!("iptables-{}-save", system.other().tool_suffix());
        match command::run(&program, &[], b"") {
            Ok(text) => Ok(Some(text)),
            Err(ToolError::Spawn { source, .. })
                if source.kind() == std::io::ErrorKind::NotFound =>
            {
                Ok(None)
            }
            // Installed, but the kernel has no such tables (no module, no nf_tables):
            // that variant holds nothing.
            Err(ToolError::Failed { stderr, .. })
                if ["do you need to insmod", "Protocol not supported"]
                    .iter()
                    .any(|s| stderr.contains(s)) =>
            {
                Ok(None)
            }
            Err(e) => Err(e),
        }
    }

    fn restore(&self, family: Family, text: &str) -> Result<(), ToolError> {
        command::run(
            Tools::System.restore_program(family),
            &["-w", "-n"],
            text.as_bytes(),
        )
        .map(|_| ())
    }

    fn restore_sets(&self, text: &str) -> Result<(), ToolError> {
        command::run("ipset", &["restore"], text.as_bytes()).map(|_| ())
    }

    fn save_set(&self, name: &str) -> Result<Option<String>, ToolError> {
        ipset_of_set(&["save", name])
    }

    fn list_set(&self, name: &str) -> Result<Option<String>, ToolError> {
        ipset_of_set(&["list", "-t", name])
    }

    fn destroy_set(&self, name: &str) -> Result<(), ToolError> {
        command::run("ipset", &["destroy", name], b"").map(|_| ())
    }
}

/// What `ipset ARGS` about one set printed: `None` when there is no such set.
fn ipset_of_set(args: &[&str]) -> Result<Option<String>, ToolError> {
    match command::run("ipset", args, b"") {
        Ok(text) => Ok(Some(text)),
        Err(ToolError::Failed { stderr, .. }) if stderr.contains("does not exist") => Ok(None),
        Err(e) => Err(e),
    }
}

/// What the live set `name` holds (`ipset save NAME`, read back): `None` when there is
/// no such set.
pub fn read_set(
    firewall: &dyn LiveFirewall,
    name: &str,
) -> anyhow::Result<Option<sets::SavedMembers>> {
    use anyhow::Context as _;
    let Some(saved) = firewall
        .save_set(name)
        .with_context(|| format!("cannot read the set {name}"))?
    else {
        return Ok(None);
    };
    Ok(Some(
        sets::saved_members(name, &saved).map_err(anyhow::Error::msg)?,
    ))
}

/// Parses what `family`'s save program printed.
fn parse_save(family: Family, save: &str) -> anyhow::Result<Dump> {
    use anyhow::Context as _;
    dump::parse(save).with_context(|| {
        format!(
            "cannot read {}'s output",
            Tools::System.save_program(family)
        )
    })
}

/// One family's live ruleset, parsed.
pub fn ruleset(firewall: &dyn LiveFirewall, family: Family) -> anyhow::Result<Ruleset> {
    Ok(Ruleset::new(&parse_save(family, &firewall.save(family)?)?))
}

/// The bridges Docker sends forwarded traffic to its `DOCKER` chain for (`-o BRIDGE -j
/// DOCKER` in FORWARD, or in DOCKER-BRIDGE since Docker 28): Docker's own list of its
/// networks' bridges, whatever they are named.
pub fn docker_bridges(ruleset: &Ruleset) -> Vec<String> {
    use crate::iptables::rule::{Match, Target};
    let mut bridges: Vec<String> = ["FORWARD", "DOCKER-BRIDGE"]
        .iter()
        .flat_map(|chain| ruleset.rules("filter", chain))
        .filter(|rule| matches!(&rule.target, Target::Jump(t) if t == "DOCKER"))
        .flat_map(|rule| {
            rule.matches.iter().filter_map(|m| match m {
                Match::OutInterface(n) if !n.negated => Some(n.value.clone()),
                _ => None,
            })
        })
        .collect();
    bridges.sort();
    bridges.dedup();
    bridges
}

/// What `line` (`-A CHAIN ...`, as iptables-save spells it) matches of destination
/// ports, when its chain is INPUT or DOCKER-USER and it matches on them (`--dport`,
/// `--dports`; a negated match says nothing about which ports it means).
pub fn port_rule(line: &str) -> Option<PortRule> {
    use crate::iptables::rule::{self, Match, Proto};
    let words = dump::split_words(line).ok()?;
    let [dash_a, chain, rest @ ..] = words.as_slice() else {
        return None;
    };
    let place = match (dash_a.text.as_str(), chain.text.as_str()) {
        ("-A", "INPUT") => RulePlace::Host,
        ("-A", "DOCKER-USER") => RulePlace::DockerUser,
        _ => return None,
    };
    let parsed = rule::parse(&dump::RuleLine {
        line: 0,
        counters: None,
        chain: chain.text.clone(),
        words: rest.to_vec(),
    });
    let mut transport = None;
    let mut ports = Vec::new();
    let mut aims_at_destination = false;
    for condition in &parsed.matches {
        match condition {
            Match::Destination(_) | Match::DestinationRange(_) | Match::OutInterface(_) => {
                aims_at_destination = true;
            }
            Match::Protocol(p) if !p.negated => {
                transport = match p.value {
                    Proto::Tcp => Some(Transport::Tcp),
                    Proto::Udp => Some(Transport::Udp),
                    _ => return None,
                };
            }
            Match::DestinationPort(p) if !p.negated => {
                ports.extend(p.value.iter().map(|span| (span.low, span.high)));
            }
            _ => {}
        }
    }
    (!ports.is_empty()).then_some(PortRule {
        place,
        transport,
        ports,
        aims_at_destination,
    })
}

/// Which variant `iptables` is on this host and where Docker's chains are.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VariantFacts {
    /// What `iptables` is on this host.
    pub system: Variant,
    /// The other variant holds a `DOCKER` chain.
    pub docker_in_other: bool,
    /// This variant holds one too (Docker talks to this one, and the other's chains
    /// are left from before a switch).
    pub docker_in_system: bool,
    /// The other variant's rules, and its built-in chains whose policy is not ACCEPT,
    /// as its save program spells them.
    pub other_rules: Vec<String>,
}

/// Which variant `iptables` is, and whether Docker's chains sit in the other one.
/// `Ok(None)` when there is nothing to compare (iptables does not say which it is, or
/// only one variant is installed); an error when the other variant's rules could not be
/// read, which is never taken for "none there".
pub fn variant_facts(firewall: &dyn LiveFirewall) -> Result<Option<VariantFacts>, String> {
    let Some(system) = firewall.variant() else {
        return Ok(None);
    };
    let Some(text) = firewall
        .save_other_variant(system)
        .map_err(|e| e.to_string())?
    else {
        return Ok(None);
    };
    let other = dump::parse(&text).map_err(|e| {
        format!(
            "cannot read iptables-{}-save's output: {e}",
            system.other().tool_suffix()
        )
    })?;
    let docker_in_system = firewall
        .save(Family::Ipv4)
        .map_err(|e| e.to_string())
        .and_then(|text| {
            dump::parse(&text).map_err(|e| format!("cannot read iptables-save's output: {e}"))
        })?
        .declares("DOCKER");
    let other_rules = other
        .tables
        .iter()
        .flat_map(|table| {
            let policies = table
                .chains
                .iter()
                .filter(|c| c.policy.as_deref().is_some_and(|p| p != "ACCEPT"))
                .map(move |c| {
                    format!(
                        "-t {} -P {} {}",
                        table.name,
                        c.name,
                        c.policy.as_deref().unwrap_or_default()
                    )
                });
            let rules = table
                .rules
                .iter()
                .map(move |r| format!("-t {} {}", table.name, r.text()));
            policies.chain(rules)
        })
        .collect();
    Ok(Some(VariantFacts {
        system,
        docker_in_other: other.declares("DOCKER"),
        docker_in_system,
        other_rules,
    }))
}

/// The rules `facts` found in the other variant, unless only that one holds Docker's
/// chains (then the variants are mismatched: [`variant_conflict`] says so). Docker's
/// chains left there from before a switch are such rules.
pub fn other_variant_rules(facts: &VariantFacts) -> Option<OtherVariantRules> {
    if docker_only_in_other(facts) || facts.other_rules.is_empty() {
        return None;
    }
    let other = facts.system.other();
    Some(OtherVariantRules {
        variant: other.to_string(),
        save_program: format!("iptables-{}-save", other.tool_suffix()),
        rules: facts.other_rules.clone(),
    })
}

/// The conflict `facts` amount to: Docker's chains in the other variant, where rules
/// loaded with this one are never reached.
pub fn variant_conflict(facts: &VariantFacts) -> Option<Conflict> {
    if !docker_only_in_other(facts) {
        return None;
    }
    let other = facts.system.other();
    Some(Conflict {
        found: format!(
            "iptables here is {} but Docker's chains are in the {other} tables",
            facts.system
        ),
        advice: format!(
            "rules loaded with {} would never be reached by Docker's FORWARD jump; switch with `update-alternatives --set iptables /usr/sbin/iptables-{}` (and ip6tables) to match Docker, then restart Docker",
            facts.system,
            other.tool_suffix()
        ),
        forceable: true,
    })
}

/// Docker's chains are in the other variant and not in this one: Docker talks to the
/// other one. (In both: the other's are left from before a switch, and Docker, which
/// runs `iptables`, talks to this one.)
fn docker_only_in_other(facts: &VariantFacts) -> bool {
    facts.docker_in_other && !facts.docker_in_system
}

/// The filter table's lines for `chains` (none when there is no filter table).
fn filter_lines(dump: &Dump, chains: &[&str]) -> Vec<String> {
    dump.table("filter")
        .map(|t| t.chain_lines(chains))
        .unwrap_or_default()
}

/// Compares the owned chains of `live` with those of `expected` (both `iptables-save`
/// dumps of the same backend; `expected` is the rendered file as loaded into a
/// throwaway namespace, so both are in the kernel's own spelling).
pub fn compare(family: Family, expected: &Dump, live: &Dump) -> FamilyState {
    let want = filter_lines(expected, &OWNED_CHAINS);
    let have = live_owned_lines(&want, live);
    let missing: Vec<String> = want.iter().filter(|l| !have.contains(l)).cloned().collect();
    let unexpected: Vec<String> = have.iter().filter(|l| !want.contains(l)).cloned().collect();
    let rules_match = want == have;
    let first = forward_first_rule(live);
    let docker_user_first = first
        .as_ref()
        .map(|rule| rule == crate::iptables::forward::JUMP);
    FamilyState {
        family: family.to_string(),
        in_force: rules_match && docker_user_first == Some(true),
        rules_match,
        reordered: !rules_match && missing.is_empty() && unexpected.is_empty(),
        missing,
        unexpected,
        docker_user_first,
        forward_first: first.filter(|rule| rule != crate::iptables::forward::JUMP),
        forward_repair: None,
        sets: Vec::new(),
    }
}

/// The owned chains' lines of `live`, without the RETURNs Docker appends to
/// DOCKER-USER: those at the end of the chain beyond the ones `want` ends with (after
/// the rendered rules they change nothing). A RETURN anywhere else is drift.
fn live_owned_lines(want: &[String], live: &Dump) -> Vec<String> {
    let mut have = filter_lines(live, &OWNED_CHAINS);
    let ours = trailing_returns(want).len();
    let appended = trailing_returns(&have);
    if appended.len() > ours {
        let surplus = &appended[ours..];
        let mut at = 0;
        have.retain(|_| {
            at += 1;
            !surplus.contains(&(at - 1))
        });
    }
    have
}

/// The indices of the RETURNs that end DOCKER-USER in `lines` (one chain's rules are
/// contiguous in a dump), in order.
fn trailing_returns(lines: &[String]) -> Vec<usize> {
    let mut run: Vec<usize> = lines
        .iter()
        .enumerate()
        .filter(|(_, l)| l.starts_with("-A DOCKER-USER "))
        .map(|(at, _)| at)
        .rev()
        .take_while(|at| lines[*at] == DOCKER_OWN_RETURN)
        .collect();
    run.reverse();
    run
}

/// FORWARD's first rule in `live`, as iptables-save spells it.
fn forward_first_rule(live: &Dump) -> Option<String> {
    live.table("filter")
        .and_then(|t| t.rules_of("FORWARD").next())
        .map(|rule| rule.text())
}

/// The owned chains of `family` live now, beside those of `expected` (what a
/// throwaway namespace held after loading the rendered rules, so both are in the
/// kernel's own spelling).
pub fn owned_rules(
    family: Family,
    expected: &str,
    firewall: &dyn LiveFirewall,
) -> anyhow::Result<OwnedRules> {
    let live = parse_save(family, &firewall.save(family)?)?;
    let planned = filter_lines(&parse_save(family, expected)?, &OWNED_CHAINS);
    Ok(OwnedRules {
        family,
        chains: OWNED_CHAINS.iter().map(|c| (*c).to_owned()).collect(),
        live: live_owned_lines(&planned, &live),
        planned,
        // What forward-jump would do after the load: nothing only when the jump is
        // FORWARD's first rule and its only one.
        forward_first: {
            let forward: Vec<String> = live
                .table("filter")
                .map(|t| t.rules_of("FORWARD").map(|r| r.text()).collect())
                .unwrap_or_default();
            crate::iptables::forward::plan(&forward).1.is_none()
        },
    })
}

/// Reads the live rules and compares them with the rendered files of `instance` on
/// disk, each loaded first into a throwaway namespace by `trial` to get the kernel's
/// spelling of it.
pub fn inspect(
    layout: &Layout,
    instance: &InstanceName,
    trial: &dyn RulesetTrial,
    firewall: &dyn LiveFirewall,
) -> anyhow::Result<LiveState> {
    inspect_against(layout, instance, trial, firewall, true, |report| {
        &report.loaded
    })
}

/// [`inspect`] against the pass-through (`.empty`) files, for a stopped instance.
pub fn inspect_stopped(
    layout: &Layout,
    instance: &InstanceName,
    trial: &dyn RulesetTrial,
    firewall: &dyn LiveFirewall,
) -> anyhow::Result<LiveState> {
    inspect_against(layout, instance, trial, firewall, false, |report| {
        &report.loaded_empty
    })
}

fn inspect_against(
    layout: &Layout,
    instance: &InstanceName,
    trial: &dyn RulesetTrial,
    firewall: &dyn LiveFirewall,
    check_sets: bool,
    expected_of: impl Fn(&crate::iptables::trial::TrialReport) -> &String,
) -> anyhow::Result<LiveState> {
    // The live rules are read while the files are proven: the proofs mostly wait for
    // the kernel in namespaces of their own.
    let (reports, variant, saved) = std::thread::scope(|scope| {
        let proving = scope.spawn(|| instance::prove_all_on_disk(layout, instance, trial));
        let variant = firewall.variant().map(|v| v.to_string());
        let saved: Vec<_> = Family::ALL.map(|family| firewall.save(family)).into();
        let reports = proving
            .join()
            .unwrap_or_else(|_| Err(TrialError::Thread.into()));
        (reports, variant, saved)
    });
    let mut families = Vec::new();
    for ((family, report), saved) in reports?.into_iter().zip(saved) {
        let live = parse_save(family, &saved?)?;
        let expected = parse_save(family, expected_of(&report))?;
        let mut state = compare(family, &expected, &live);
        // Stopped, the pass-through rules match no set: what the sets hold is moot.
        if check_sets {
            state.sets = report
                .sets
                .iter()
                .map(|set| set_contents(firewall, set))
                .collect::<anyhow::Result<_>>()?;
            state.in_force &= state.sets_match();
        }
        families.push(state);
    }
    Ok(LiveState { variant, families })
}

/// What the live set named by `set` holds against its rendered members.
fn set_contents(firewall: &dyn LiveFirewall, set: &SetDefinition) -> anyhow::Result<SetContents> {
    let Some(saved) = read_set(firewall, &set.name)? else {
        return Ok(SetContents {
            name: set.name.clone(),
            expected: set.members.len(),
            live: None,
            missing: set.members.len(),
            unexpected: 0,
        });
    };
    let live: HashSet<Network> = saved.members.into_iter().collect();
    let rendered: HashSet<&Network> = set.members.iter().collect();
    Ok(SetContents {
        name: set.name.clone(),
        expected: set.members.len(),
        live: Some(live.len() + saved.with_options),
        missing: set.members.iter().filter(|n| !live.contains(n)).count(),
        // An entry with options (`nomatch`, say) is not one rendered, whatever its
        // network.
        unexpected: live.iter().filter(|n| !rendered.contains(n)).count() + saved.with_options,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::control::fakes::ReadingFirewall;

    /// A firewall that counts its reads: the IPv6 save fails.
    #[derive(Default)]
    struct Counts {
        versions: std::sync::atomic::AtomicUsize,
        saves: std::sync::atomic::AtomicUsize,
        others: std::sync::atomic::AtomicUsize,
        sets: std::sync::atomic::AtomicUsize,
    }

    fn count(n: &std::sync::atomic::AtomicUsize) -> usize {
        n.fetch_add(1, std::sync::atomic::Ordering::SeqCst) + 1
    }

    fn counting(counts: &Counts) -> ReadingFirewall<'_> {
        ReadingFirewall {
            variant: Box::new(|()| {
                count(&counts.versions);
                Some(Variant::Nft)
            }),
            save: Box::new(|family| {
                let n = count(&counts.saves);
                match family {
                    Family::Ipv4 => Ok(format!("save {n}")),
                    Family::Ipv6 => Err(ToolError::Spawn {
                        program: "ip6tables-save".to_owned(),
                        source: std::io::Error::new(std::io::ErrorKind::NotFound, "gone"),
                    }),
                }
            }),
            save_other_variant: Box::new(|_| {
                count(&counts.others);
                Ok(None)
            }),
            save_set: Box::new(|_| {
                count(&counts.sets);
                Ok(None)
            }),
        }
    }

    /// A snapshot runs each read once, however many threads ask, and answers a failed
    /// one with the same failure; the sets are read each time; after a write, the
    /// firewall is read again.
    #[test]
    fn a_snapshot_reads_each_once_until_a_write() {
        let counting = Counts::default();
        let firewall = self::counting(&counting);
        let snapshot = Snapshot::new(&firewall);
        std::thread::scope(|scope| {
            for _ in 0..4 {
                scope.spawn(|| {
                    assert_eq!(snapshot.save(Family::Ipv4).unwrap(), "save 1");
                    let failed = snapshot.save(Family::Ipv6).unwrap_err();
                    assert!(
                        matches!(&failed, ToolError::Spawn { program, source }
                            if program == "ip6tables-save"
                                && source.kind() == std::io::ErrorKind::NotFound
                                && source.to_string() == "gone"),
                        "{failed:?}"
                    );
                    assert_eq!(snapshot.variant(), Some(Variant::Nft));
                    assert_eq!(snapshot.save_other_variant(Variant::Nft).unwrap(), None);
                    assert_eq!(snapshot.save_set("office").unwrap(), None);
                });
            }
        });
        let counted =
            |n: &std::sync::atomic::AtomicUsize| n.load(std::sync::atomic::Ordering::SeqCst);
        assert_eq!(
            (
                counted(&counting.versions),
                counted(&counting.saves),
                counted(&counting.others),
                counted(&counting.sets)
            ),
            (1, 2, 1, 4)
        );
        snapshot.restore(Family::Ipv4, "").unwrap();
        assert_eq!(snapshot.save(Family::Ipv4).unwrap(), "save 3");
        assert_eq!(counted(&counting.versions), 1);
        assert_eq!(snapshot.variant(), Some(Variant::Nft));
        assert_eq!(counted(&counting.versions), 2);
    }

    /// [`compare`] on two dumps given as text.
    fn compare_texts(expected: &str, live: &str) -> FamilyState {
        let parse = |text| dump::parse(text).unwrap();
        compare(Family::Ipv4, &parse(expected), &parse(live))
    }

    /// Docker's chains only in the other variant: the variants are mismatched. In both,
    /// the other's are left from before a switch: rules in the other variant, no
    /// mismatch (Docker runs `iptables`, which is this variant).
    #[test]
    fn a_mismatch_is_docker_only_in_the_other_variant() {
        let facts = |docker_in_system| VariantFacts {
            system: Variant::Nft,
            docker_in_other: true,
            docker_in_system,
            other_rules: vec!["-t nat -A DOCKER -i docker0 -j RETURN".to_owned()],
        };
        assert!(variant_conflict(&facts(false)).is_some());
        assert_eq!(other_variant_rules(&facts(false)), None);
        assert_eq!(variant_conflict(&facts(true)), None);
        let left = other_variant_rules(&facts(true)).expect("rules left in legacy");
        assert_eq!(
            (
                left.variant.as_str(),
                left.save_program.as_str(),
                left.rules.len()
            ),
            ("legacy", "iptables-legacy-save", 1)
        );
    }

    /// A firewall whose other variant's save program fails (`Err`), is not installed
    /// (`Ok(None)`) or prints `Ok(Some(text))`.
    fn other_variant(other: Result<Option<&str>, ()>) -> ReadingFirewall<'_> {
        ReadingFirewall {
            variant: Box::new(|()| Some(Variant::Nft)),
            save_other_variant: Box::new(move |_| {
                other
                    .map(|text| text.map(str::to_owned))
                    .map_err(|()| ToolError::Failed {
                        program: "iptables-legacy-save".to_owned(),
                        status: "exit status: 1".to_owned(),
                        stderr: "can't initialize iptables table `filter'".to_owned(),
                    })
            }),
            ..ReadingFirewall::default()
        }
    }

    /// Rules of the other variant that cannot be read are never taken for none there;
    /// a variant that is not installed has nothing to compare.
    #[test]
    fn an_unreadable_other_variant_is_an_error_and_a_missing_one_is_none() {
        let err = variant_facts(&other_variant(Err(()))).unwrap_err();
        assert!(err.contains("iptables-legacy-save failed"), "{err}");
        assert_eq!(variant_facts(&other_variant(Ok(None))), Ok(None));
        let facts = variant_facts(&other_variant(Ok(Some(
            "*filter\n:INPUT DROP [0:0]\nCOMMIT\n",
        ))))
        .unwrap()
        .unwrap();
        assert_eq!(facts.other_rules, ["-t filter -P INPUT DROP"]);
    }

    #[test]
    fn port_rules_are_read_where_published_ports_are_decided() {
        let rule =
            port_rule("-A INPUT -p tcp -m multiport --dports 80,8000:8080 -j ACCEPT").unwrap();
        assert_eq!(
            (rule.place, rule.transport, rule.ports),
            (
                RulePlace::Host,
                Some(Transport::Tcp),
                vec![(80, 80), (8000, 8080)]
            )
        );
        let rule = port_rule("-A DOCKER-USER -p udp -m udp --dport 53 -j DROP").unwrap();
        assert_eq!(
            (rule.place, rule.transport),
            (RulePlace::DockerUser, Some(Transport::Udp))
        );
        for ignored in [
            "-A OUTPUT -p tcp -m tcp --dport 80 -j ACCEPT",
            "-A INPUT -p tcp -m tcp ! --dport 22 -j DROP",
            "-A INPUT -i lo -j ACCEPT",
            "-A INPUT -p icmp -j ACCEPT",
            ":INPUT DROP",
        ] {
            assert_eq!(port_rule(ignored), None, "{ignored}");
        }
    }

    const EXPECTED: &str = "*filter\n:INPUT DROP [0:0]\n:FORWARD ACCEPT [0:0]\n:OUTPUT ACCEPT [0:0]\n:DOCKER-USER - [0:0]\n-A INPUT -i lo -j ACCEPT\n-A INPUT -p tcp -m tcp --dport 22 -j ACCEPT\n-A DOCKER-USER -j RETURN\nCOMMIT\n";

    #[test]
    fn identical_owned_chains_are_in_force_whatever_else_differs() {
        let live = EXPECTED.replace(
            ":DOCKER-USER - [0:0]\n",
            ":DOCKER-USER - [0:0]\n:DOCKER - [0:0]\n-A FORWARD -j DOCKER-USER\n-A FORWARD -o docker0 -j DOCKER\n",
        )
        // Docker appended its own RETURN after ours.
        .replace("COMMIT\n", "-A DOCKER-USER -j RETURN\nCOMMIT\n");
        let state = compare_texts(EXPECTED, &live);
        assert!(state.in_force && state.rules_match, "{state:?}");
        assert_eq!(state.docker_user_first, Some(true));
    }

    /// Only RETURNs after the rendered rules are Docker's; one put before them skips
    /// them all, so it is drift even when the rendering (a custom template) has no
    /// RETURN of its own.
    #[test]
    fn a_return_ahead_of_the_rules_is_drift_whatever_the_rendering_ends_with() {
        let without_return =
            EXPECTED.replace("-A DOCKER-USER -j RETURN\n", "-A DOCKER-USER -j DROP\n");
        for expected in [EXPECTED, without_return.as_str()] {
            let live = expected.replace(
                ":DOCKER-USER - [0:0]\n",
                ":DOCKER-USER - [0:0]\n-A DOCKER-USER -j RETURN\n",
            );
            let state = compare_texts(expected, &live);
            assert!(!state.rules_match, "{expected}\n{state:?}");
            // Docker's own RETURN appended after the rules is still not drift.
            let appended = expected.replace("COMMIT\n", "-A DOCKER-USER -j RETURN\nCOMMIT\n");
            assert!(compare_texts(expected, &appended).rules_match, "{expected}");
        }
    }

    #[test]
    fn docker_names_its_bridges_in_its_forward_rules() {
        let text = "*filter\n:FORWARD DROP [0:0]\n:DOCKER - [0:0]\n:DOCKER-BRIDGE - [0:0]\n-A FORWARD -o docker0 -j DOCKER\n-A FORWARD -o docker0 -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT\n-A DOCKER-BRIDGE -o legacy0 -j DOCKER\n-A FORWARD ! -o x0 -j DOCKER\nCOMMIT\n";
        let ruleset = Ruleset::new(&dump::parse(text).unwrap());
        assert_eq!(docker_bridges(&ruleset), ["docker0", "legacy0"]);
    }

    #[test]
    fn drift_names_missing_and_unexpected_lines() {
        let live = EXPECTED
            .replace(
                "-A INPUT -p tcp -m tcp --dport 22 -j ACCEPT\n",
                "-A INPUT -p tcp -m tcp --dport 23 -j ACCEPT\n",
            )
            .replace(":INPUT DROP", ":INPUT ACCEPT");
        let state = compare_texts(EXPECTED, &live);
        assert!(!state.in_force);
        assert_eq!(
            state.missing,
            [":INPUT DROP", "-A INPUT -p tcp -m tcp --dport 22 -j ACCEPT"]
        );
        assert_eq!(
            state.unexpected,
            [
                ":INPUT ACCEPT",
                "-A INPUT -p tcp -m tcp --dport 23 -j ACCEPT"
            ]
        );
        assert_eq!(state.docker_user_first, None);
    }

    #[test]
    fn reordering_is_drift() {
        let live = EXPECTED.replace(
            "-A INPUT -i lo -j ACCEPT\n-A INPUT -p tcp -m tcp --dport 22 -j ACCEPT\n",
            "-A INPUT -p tcp -m tcp --dport 22 -j ACCEPT\n-A INPUT -i lo -j ACCEPT\n",
        );
        let state = compare_texts(EXPECTED, &live);
        assert!(!state.in_force && state.reordered);
    }

    #[test]
    fn forward_jumping_elsewhere_first_is_not_in_force() {
        let live = EXPECTED.replace(
            ":DOCKER-USER - [0:0]\n",
            ":DOCKER-USER - [0:0]\n-A FORWARD -j ACCEPT\n-A FORWARD -j DOCKER-USER\n",
        );
        let state = compare_texts(EXPECTED, &live);
        assert_eq!(state.docker_user_first, Some(false));
        assert_eq!(state.forward_first.as_deref(), Some("-A FORWARD -j ACCEPT"));
        assert!(state.rules_match && !state.in_force, "{state:?}");
        // No jump at all is not in force either.
        assert!(!compare_texts(EXPECTED, EXPECTED).in_force);
    }
}
