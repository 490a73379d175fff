//! The iptables backend behind [`crate::backend::Backend`]: renders an instance's four
//! `iptables-restore` files and the ipsets its rules match ([`instance`],
//! [`crate::iptables::sets`]), proves them with a [`RulesetTrial`] (the throwaway
//! namespace, or a test's fake), reads the SSH lockouts off what the kernel
//! loaded ([`lockout`]), loads the pass-through files with the [`LiveFirewall`], and
//! compares the live rules with the files ([`live`]), with FORWARD's repairs
//! ([`forward`]); and a parsed [`Ruleset`] answers the audit's questions
//! ([`FamilyRules`]: the [`walk`], its source ranges, Docker's published ports from its
//! DNAT rules, [`docker`]).

use std::net::IpAddr;

use anyhow::Context as _;

use crate::audit::PublishedPort;
use crate::backend::{
    Backend, Conflict, FamilyRules, FamilySetsLoaded, ForwardFinding, LiveRules, LiveState,
    LoadedSets, Lockout, OwnedRules, PortRule, Proof, ProvenPart, Rendered, SetRemoval,
    VariantFindings,
};
use crate::family::Family;
use crate::files::layout::Layout;
use crate::files::set::FileSet;
use crate::host::OpenSessions;
use crate::host::net::{HostNet, SetMembers};
use crate::iptables::Tools;
use crate::iptables::instance::{self, OutputFiles};
use crate::iptables::live::{self, LiveFirewall};
use crate::iptables::render::{FileKind, RenderedFile};
use crate::iptables::set_record;
use crate::iptables::sets;
use crate::iptables::trial::{RulesetTrial, TrialReport};
use crate::iptables::walk::{self, Ruleset};
use crate::iptables::{docker, forward, lockout};
use crate::packet::{Packet, Walk};
use crate::policy::Policy;
use crate::policy::types::InstanceName;

/// iptables as the flows' backend: the programs of `tools`, the kernel check `trial`
/// and the live `firewall`.
#[derive(Clone, Copy)]
pub struct IptablesBackend<'a> {
    /// Which iptables programs the trial loads with (named in `check`'s lines).
    pub tools: Tools,
    /// The kernel check.
    pub trial: &'a dyn RulesetTrial,
    /// The live firewall.
    pub firewall: &'a dyn LiveFirewall,
}

/// The backend every command uses: the system's iptables programs, for the kernel check
/// in a throwaway namespace and on the live firewall.
pub const SYSTEM: IptablesBackend<'static> = IptablesBackend {
    tools: Tools::System,
    trial: &crate::iptables::trial::NetnsTrial {
        tools: Tools::System,
    },
    firewall: &live::SystemFirewall,
};

impl IptablesBackend<'_> {
    /// The proof of one family's trial of the files named `rules` and `empty`.
    fn part(
        &self,
        family: Family,
        rules: String,
        empty: String,
        report: &TrialReport,
    ) -> ProvenPart {
        ProvenPart {
            rules,
            empty,
            program: self.tools.restore_program(family).to_owned(),
            rule_count: report.rule_count,
            sets: report
                .sets
                .iter()
                .map(|set| (set.name.clone(), set.members.len()))
                .collect(),
        }
    }

    /// Loads `family`'s sets file of `instance` into the live kernel (each set filled
    /// aside and swapped in), after reading it back as strictly as the kernel check
    /// does; returns the sets it defines. A file without sets loads nothing and needs no
    /// ipset tool.
    fn load_family_sets(
        &self,
        layout: &Layout,
        instance: &InstanceName,
        family: Family,
    ) -> anyhow::Result<FamilySetsLoaded> {
        let outputs = OutputFiles::new(layout, instance);
        let load = || -> anyhow::Result<FamilySetsLoaded> {
            let (_, text, defined) = outputs.read_set_definitions(family)?;
            let mut loaded = FamilySetsLoaded {
                family,
                sets: defined.len(),
                members: defined.iter().map(|set| set.members.len()).sum(),
                not_recorded: None,
            };
            if defined.is_empty() {
                return Ok(loaded);
            }
            // Two loads of one instance's sets at once (a Docker start's re-assertion
            // during an apply) would fill the same temporary set together: one at a
            // time. Not the directory lock: `reload` holds that while the unit's load
            // runs.
            let _lock = sets_lock(layout, instance)?;
            self.firewall.restore_sets(&text)?;
            // The sets are in: a record that cannot be written must not fail the load
            // (an unrecorded set is only ever kept, never pruned).
            let names: Vec<String> = defined.into_iter().map(|set| set.name).collect();
            loaded.not_recorded = set_record::add(layout, instance, &names)
                .err()
                .map(|e| format!("{e:#}"));
            Ok(loaded)
        };
        load().with_context(|| {
            format!(
                "cannot load {}",
                outputs.path(family, FileKind::Sets).display()
            )
        })
    }

    /// The sets the files of `instance` define under `layout`, and under its pending
    /// apply when one is staged (an apply loads those sets before its rules, and may be
    /// between the two), both families, sorted.
    fn defined_sets(
        &self,
        layout: &Layout,
        instance: &InstanceName,
    ) -> anyhow::Result<Vec<String>> {
        let mut defined = Vec::new();
        for tree in [layout.clone(), layout.pending(instance)] {
            for family in Family::ALL {
                let (_, _, sets) =
                    OutputFiles::new(&tree, instance).read_set_definitions(family)?;
                defined.extend(sets.into_iter().map(|set| set.name));
            }
        }
        defined.sort();
        defined.dedup();
        Ok(defined)
    }

    /// Destroys each live set of `names` that nothing refers to, with the temporary set
    /// an interrupted load of it left (the caller holds the instance's sets lock, so no
    /// load is filling one). Says what became of each set found, each on its own (one
    /// that cannot be read or destroyed does not stop the others), and returns the
    /// names that may still be in the kernel (kept, or not destroyed).
    fn destroy_unreferenced(&self, mut names: Vec<String>) -> (Vec<SetRemoval>, Vec<String>) {
        names.sort();
        names.dedup();
        let mut removals = Vec::new();
        let mut kept = Vec::new();
        for name in names {
            for candidate in [sets::temp_name(&name), name.clone()] {
                match self.destroy_if_unreferenced(&candidate) {
                    Ok(None) => {}
                    Ok(Some(removal)) => {
                        if matches!(removal, SetRemoval::InUse { .. }) {
                            kept.push(name.clone());
                        }
                        removals.push(removal);
                    }
                    Err(e) => {
                        kept.push(name.clone());
                        removals.push(SetRemoval::Failed {
                            what: format!("the ipset {candidate}"),
                            reason: format!("{e:#}"),
                        });
                    }
                }
            }
        }
        kept.dedup();
        (removals, kept)
    }

    /// Destroys the live set `name` unless something refers to it; `None` when there is
    /// no such set.
    fn destroy_if_unreferenced(&self, name: &str) -> anyhow::Result<Option<SetRemoval>> {
        let Some(header) = self
            .firewall
            .list_set(name)
            .with_context(|| format!("cannot read the set {name}"))?
        else {
            return Ok(None);
        };
        let references = sets::references(&header).with_context(|| {
            format!("`ipset list -t {name}` did not say how many rules match the set")
        })?;
        if references > 0 {
            return Ok(Some(SetRemoval::InUse {
                name: name.to_owned(),
                references,
            }));
        }
        self.firewall
            .destroy_set(name)
            .with_context(|| format!("cannot destroy the set {name}"))?;
        Ok(Some(SetRemoval::Destroyed {
            name: name.to_owned(),
        }))
    }

    /// Writes `kept` as the record of `instance`'s sets, saying in `removals` when it
    /// cannot (the sets it names are then forgotten: only ever kept, never pruned).
    fn record_kept(
        layout: &Layout,
        instance: &InstanceName,
        kept: Vec<String>,
        removals: &mut Vec<SetRemoval>,
    ) {
        if let Err(e) = set_record::write(layout, instance, kept) {
            removals.push(SetRemoval::Failed {
                what: format!("the record of the sets {instance} loaded"),
                reason: format!("{e:#}"),
            });
        }
    }

    /// The lines of `diff` for the set `name` that a proof loaded with `planned`: on
    /// each side, what the set holds (as [`sets::summary`] says it) and, when the two
    /// differ, the member networks only that side holds, a bounded few.
    fn set_lines(
        &self,
        name: &str,
        planned: &SetMembers,
    ) -> anyhow::Result<(Vec<String>, Vec<String>)> {
        let saved = live::read_set(self.firewall, name)?;
        let live: SetMembers = saved
            .iter()
            .flat_map(|saved| saved.members.iter().map(|n| n.net()))
            .collect();
        let mut planned_lines = vec![sets::summary(name, planned)];
        let mut live_lines = vec![match &saved {
            None => format!("ipset {name}: none"),
            Some(saved) if saved.with_options > 0 => format!(
                "{} and {} entries with options",
                sets::summary(name, &live),
                saved.with_options
            ),
            Some(_) => sets::summary(name, &live),
        }];
        if planned_lines != live_lines {
            planned_lines.extend(sets::member_lines(name, &planned.without(&live)));
            live_lines.extend(sets::member_lines(name, &live.without(planned)));
        }
        Ok((planned_lines, live_lines))
    }
}

impl Backend for IptablesBackend<'_> {
    fn render(
        &self,
        layout: &Layout,
        instance: &InstanceName,
        policy: &Policy,
    ) -> anyhow::Result<Rendered> {
        let files = instance::render_policy(layout, instance, policy)?;
        Ok(Rendered::new(RenderedFile::outputs(files)))
    }

    fn prove(
        &self,
        instance: &InstanceName,
        policy: &Policy,
        rendered: &Rendered,
    ) -> anyhow::Result<Proof> {
        // The files as the renderer made them, each with its family and kind again.
        let mut files = Vec::new();
        for family in Family::ALL {
            for kind in [FileKind::Rules, FileKind::Empty, FileKind::Sets] {
                let file_name = OutputFiles::name(instance, family, kind);
                if let Some(text) = rendered.text(&file_name) {
                    files.push(RenderedFile {
                        family,
                        kind,
                        text: text.to_owned(),
                        file_name,
                    });
                }
            }
        }
        let reports = instance::prove(policy, &files, self.trial)?;
        let parts = reports
            .iter()
            .map(|(family, report)| {
                let name = |kind| OutputFiles::name(instance, *family, kind);
                self.part(
                    *family,
                    name(FileKind::Rules),
                    name(FileKind::Empty),
                    report,
                )
            })
            .collect();
        Ok(Proof::new(parts, loaded(reports)))
    }

    fn prove_on_disk(&self, layout: &Layout, instance: &InstanceName) -> anyhow::Result<Proof> {
        let outputs = OutputFiles::new(layout, instance);
        let reports = instance::prove_all_on_disk(layout, instance, self.trial)?;
        let parts = reports
            .iter()
            .map(|(family, report)| {
                let path = |kind| outputs.path(*family, kind).display().to_string();
                self.part(
                    *family,
                    path(FileKind::Rules),
                    path(FileKind::Empty),
                    report,
                )
            })
            .collect();
        Ok(Proof::new(parts, loaded(reports)))
    }

    fn lockouts(&self, sessions: &OpenSessions, proof: &Proof) -> Vec<Lockout> {
        lockout::check(sessions, proof)
    }

    fn output_set(&self, layout: &Layout, instance: &InstanceName) -> FileSet {
        OutputFiles::new(layout, instance).set()
    }

    fn load_pass_through(&self, layout: &Layout, instance: &InstanceName) -> anyhow::Result<()> {
        for family in Family::ALL {
            let (path, text) = OutputFiles::new(layout, instance).read(family, FileKind::Empty)?;
            self.firewall
                .restore(family, &text)
                .with_context(|| format!("cannot load {}", path.display()))?;
        }
        Ok(())
    }

    fn load_sets(
        &self,
        layout: &Layout,
        instance: &InstanceName,
    ) -> anyhow::Result<Vec<FamilySetsLoaded>> {
        Family::ALL
            .into_iter()
            .map(|family| self.load_family_sets(layout, instance, family))
            .collect()
    }

    fn sets_of(&self, layout: &Layout, instance: &InstanceName) -> anyhow::Result<Vec<String>> {
        let mut names = self.defined_sets(layout, instance)?;
        names.extend(set_record::recorded(layout, instance));
        names.sort();
        names.dedup();
        Ok(names)
    }

    fn remove_sets(
        &self,
        layout: &Layout,
        instance: &InstanceName,
    ) -> anyhow::Result<Vec<SetRemoval>> {
        let mut removals = Vec::new();
        // Files that cannot be read are said; the sets loaded since boot are still
        // destroyed. (Uninstall holds the configuration lock: the files stay as read.)
        let mut names = self.defined_sets(layout, instance).unwrap_or_else(|e| {
            removals.push(SetRemoval::Failed {
                what: format!("the sets the files of {instance} define"),
                reason: format!("{e:#}"),
            });
            Vec::new()
        });
        // Nothing to run (nor to lock) on a host where the instance has no sets.
        if names.is_empty() && set_record::recorded(layout, instance).is_empty() {
            return Ok(removals);
        }
        let _lock = sets_lock(layout, instance)?;
        // The record under the lock: a load may have added to it meanwhile.
        names.extend(set_record::recorded(layout, instance));
        let (done, kept) = self.destroy_unreferenced(names);
        removals.extend(done);
        Self::record_kept(layout, instance, kept, &mut removals);
        Ok(removals)
    }

    fn prune_sets(
        &self,
        layout: &Layout,
        instance: &InstanceName,
    ) -> anyhow::Result<Option<Vec<SetRemoval>>> {
        // Nothing to run (nor to lock) when the instance never loaded a set.
        if set_record::recorded(layout, instance).is_empty() {
            return Ok(Some(Vec::new()));
        }
        // A load of the instance's sets running now may be one whose rules come next:
        // never wait for it (the unit would wait with it), and never prune beside it.
        let Some(_lock) = try_sets_lock(layout, instance)? else {
            return Ok(None);
        };
        // Read under the lock: a load that finished before it was taken has its sets in
        // the files read here.
        let defined = self.defined_sets(layout, instance)?;
        let (still_defined, undefined): (Vec<String>, Vec<String>) =
            set_record::recorded(layout, instance)
                .into_iter()
                .partition(|name| defined.contains(name));
        if undefined.is_empty() {
            return Ok(Some(Vec::new()));
        }
        let (mut removals, kept) = self.destroy_unreferenced(undefined);
        Self::record_kept(
            layout,
            instance,
            [still_defined, kept].concat(),
            &mut removals,
        );
        Ok(Some(removals))
    }

    fn load_rules(&self, layout: &Layout, instance: &InstanceName) -> anyhow::Result<()> {
        let outputs = OutputFiles::new(layout, instance);
        for family in Family::ALL {
            // The sets first: the rules match them.
            self.load_family_sets(layout, instance, family)?;
            let (path, text) = outputs.read(family, FileKind::Rules)?;
            self.firewall
                .restore(family, &text)
                .with_context(|| format!("cannot load {}", path.display()))?;
        }
        Ok(())
    }

    fn ensure_forward_first(
        &self,
        layout: &Layout,
        instance: &InstanceName,
        family: Family,
    ) -> anyhow::Result<ForwardFinding> {
        Ok(match forward::ensure(self.firewall, family)? {
            forward::Finding::InPlace => ForwardFinding::InPlace,
            forward::Finding::Added => ForwardFinding::Added,
            forward::Finding::Repaired { first_rule, jumps } => {
                let not_recorded = forward::record(layout, instance, family, &first_rule)
                    .err()
                    .map(|e| format!("{e:#}"));
                ForwardFinding::Repaired {
                    first_rule,
                    jumps,
                    not_recorded,
                }
            }
        })
    }

    fn live_state(
        &self,
        layout: &Layout,
        instance: &InstanceName,
        running: bool,
    ) -> anyhow::Result<LiveState> {
        if !running {
            return live::inspect_stopped(layout, instance, self.trial, self.firewall);
        }
        let mut state = live::inspect(layout, instance, self.trial, self.firewall)?;
        let repairs = forward::repairs(layout, instance);
        // inspect reports the families in Family::ALL's order.
        for (family, family_state) in Family::ALL.into_iter().zip(&mut state.families) {
            family_state.forward_repair = repairs.of(family).cloned();
        }
        Ok(state)
    }

    fn live_conflicts(&self) -> Vec<Conflict> {
        // What cannot be read is said by the lints (status, check); install goes on.
        live::variant_facts(self.firewall)
            .ok()
            .flatten()
            .and_then(|facts| live::variant_conflict(&facts))
            .into_iter()
            .collect()
    }

    fn live_snapshot(&self) -> anyhow::Result<Vec<(String, String)>> {
        Ok(Family::ALL
            .into_iter()
            .filter_map(|family| {
                let text = self.firewall.save(family).ok()?;
                Some((
                    format!("live-{}.save", family.to_string().to_lowercase()),
                    text,
                ))
            })
            .collect())
    }

    fn owned_rules(&self, proof: &Proof) -> anyhow::Result<Vec<OwnedRules>> {
        Family::ALL
            .into_iter()
            .map(|family| {
                let expected = proof.loaded(family).with_context(|| {
                    format!("internal error: the proof holds no {family} rules")
                })?;
                let mut owned = live::owned_rules(family, expected, self.firewall)?;
                // The sets the rules match belong to what loading changes: a line per
                // set, the same on both sides when the live set holds what was proven,
                // and otherwise the member networks only one side holds.
                for (name, planned) in proof.sets(family).into_iter().flatten() {
                    let (planned_lines, live_lines) = self.set_lines(name, planned)?;
                    owned.planned.extend(planned_lines);
                    owned.live.extend(live_lines);
                }
                Ok(owned)
            })
            .collect()
    }

    fn live_rules(&self) -> anyhow::Result<Box<dyn LiveRules>> {
        // Each family's save is a child process that mostly waits: both at once.
        let rulesets = std::thread::scope(|scope| {
            let reading = Family::ALL.map(|family| {
                (
                    family,
                    scope.spawn(move || live::ruleset(self.firewall, family)),
                )
            });
            reading
                .into_iter()
                .map(|(family, read)| {
                    let ruleset = read.join().map_err(|_| {
                        anyhow::anyhow!("the thread reading the live {family} rules failed")
                    })??;
                    Ok((family, ruleset))
                })
                .collect::<anyhow::Result<Vec<_>>>()
        })?;
        Ok(Box::new(LiveRulesets(rulesets)))
    }

    fn live_family(&self, family: Family) -> anyhow::Result<Box<dyn FamilyRules>> {
        Ok(Box::new(live::ruleset(self.firewall, family)?))
    }

    fn port_rule(&self, rule: &str) -> Option<PortRule> {
        live::port_rule(rule)
    }

    fn variant_findings(&self) -> Result<VariantFindings, String> {
        Ok(live::variant_facts(self.firewall)?
            .map(|facts| VariantFindings {
                mismatch: live::variant_conflict(&facts),
                other_rules: live::other_variant_rules(&facts),
            })
            .unwrap_or_default())
    }
}

/// Waits for the lock that keeps loads of `instance`'s sets one at a time
/// (`/run/iptables-ctl/INSTANCE.sets.lock`); held until the file is dropped.
fn sets_lock(layout: &Layout, instance: &InstanceName) -> anyhow::Result<std::fs::File> {
    let (path, file) = sets_lock_file(layout, instance)?;
    file.lock()
        .with_context(|| format!("cannot lock {}", path.display()))?;
    Ok(file)
}

/// [`sets_lock`] without waiting: `None` when another load holds it.
fn try_sets_lock(
    layout: &Layout,
    instance: &InstanceName,
) -> anyhow::Result<Option<std::fs::File>> {
    let (path, file) = sets_lock_file(layout, instance)?;
    match file.try_lock() {
        Ok(()) => Ok(Some(file)),
        Err(std::fs::TryLockError::WouldBlock) => Ok(None),
        Err(std::fs::TryLockError::Error(e)) => {
            Err(e).with_context(|| format!("cannot lock {}", path.display()))
        }
    }
}

/// The file whose lock is the instance's sets lock, opened (made if need be).
fn sets_lock_file(
    layout: &Layout,
    instance: &InstanceName,
) -> anyhow::Result<(std::path::PathBuf, std::fs::File)> {
    let dir = layout.run_dir();
    std::fs::create_dir_all(&dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let path = dir.join(format!("{instance}.sets.lock"));
    let file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .with_context(|| format!("cannot open {}", path.display()))?;
    Ok((path, file))
}

/// Both families' live rulesets, parsed.
struct LiveRulesets(Vec<(Family, Ruleset)>);

impl LiveRules for LiveRulesets {
    fn docker_bridges(&self) -> Vec<(Family, String)> {
        self.0
            .iter()
            .flat_map(|(family, ruleset)| {
                live::docker_bridges(ruleset)
                    .into_iter()
                    .map(|bridge| (*family, bridge))
            })
            .collect()
    }

    fn families(&self) -> Vec<(Family, &dyn FamilyRules)> {
        self.0
            .iter()
            .map(|(family, ruleset)| (*family, ruleset as &dyn FamilyRules))
            .collect()
    }
}

/// What the kernel loaded of each family's rules, as each trial read it back, and the
/// members of the sets it loaded first.
fn loaded(reports: Vec<(Family, TrialReport)>) -> Vec<(Family, String, LoadedSets)> {
    reports
        .into_iter()
        .map(|(family, report)| {
            let sets = report
                .sets
                .into_iter()
                .map(|set| (set.name, set.members.iter().map(|n| n.net()).collect()))
                .collect();
            (family, report.loaded, sets)
        })
        .collect()
}

/// A family's parsed rules, as the audit asks them.
impl FamilyRules for Ruleset {
    fn walk(&self, host: &HostNet, packet: &Packet) -> Walk {
        walk::walk(self, host, packet)
    }

    fn source_ranges(&self) -> Vec<(IpAddr, IpAddr)> {
        Ruleset::source_ranges(self)
    }

    fn published_ports(&self, family: Family) -> Vec<PublishedPort> {
        docker::published_ports(self, family)
    }
}
