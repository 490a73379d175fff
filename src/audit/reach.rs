//! The reachability judgement: who can reach a published port from an external
//! interface, and whether the policy allows them. The source address space is cut at
//! every boundary any rule, ipset or the policy draws; one address of each piece is
//! walked through the ruleset ([`FamilyRules::walk`], whatever backend answers), and
//! the pieces that get through are reported as the fewest networks that cover them.

use std::borrow::Cow;
use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use ipnet::{IpNet, Ipv4Subnets, Ipv6Subnets};
use serde::Serialize;

use crate::audit::PublishedPort;
use crate::backend::FamilyRules;
use crate::family::Family;
use crate::host::net::{HostNet, SetMembers};
use crate::packet::{Packet, Verdict};
use crate::policy::{DockerDefault, Policy};

/// Who can reach a published port.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "reach", content = "sources", rename_all = "lowercase")]
pub enum Reach {
    /// Every source address.
    Anywhere,
    /// Only these networks.
    Only(Vec<IpNet>),
    /// No source address.
    Nowhere,
}

/// One published port, seen from one external interface.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Exposure {
    /// The port.
    pub port: PublishedPort,
    /// The interface the probes came in on.
    pub interface: String,
    /// The address they were sent to.
    pub dialed: IpAddr,
    /// Who gets through (None when some source could not be decided).
    pub reach: Option<Reach>,
    /// Rules that decided, in the order first seen (the last step of each walk).
    pub decided_by: Vec<String>,
    /// Why some sources could not be decided.
    pub unknown: Option<String>,
    /// Sources the policy allows for this port (None: no policy to compare with).
    pub allowed: Option<Reach>,
    /// Sources that get through although the policy does not allow them.
    pub not_allowed: Vec<IpNet>,
}

impl Exposure {
    /// The port is reachable from sources the policy does not allow, or cannot be told.
    pub fn is_flagged(&self) -> bool {
        !self.not_allowed.is_empty() || self.unknown.is_some()
    }
}

/// One family's ruleset, with the source boundaries its rules and the host's ipsets
/// draw (the same for every port, so found once).
pub struct AuditedRuleset<'a, R: FamilyRules + ?Sized> {
    family: Family,
    ruleset: &'a R,
    /// Where the answer can change, sorted, each once.
    cuts: Vec<IpAddr>,
    /// The cuts the rules' own source matches draw (not the ipsets'), sorted.
    rule_cuts: Vec<IpAddr>,
}

impl<'a, R: FamilyRules + ?Sized> AuditedRuleset<'a, R> {
    /// Prepares `ruleset` (of `family`) on `host` for exposure questions.
    pub fn new(family: Family, ruleset: &'a R, host: &HostNet) -> AuditedRuleset<'a, R> {
        let ipv6 = family == Family::Ipv6;
        AuditedRuleset {
            family,
            ruleset,
            cuts: boundaries(ruleset, host, ipv6),
            rule_cuts: rule_boundaries(ruleset, ipv6),
        }
    }

    /// Works out who can reach `port` coming in on `interface`, and compares it with
    /// `policy` when there is one.
    pub fn expose(
        &self,
        host: &HostNet,
        port: &PublishedPort,
        interface: &str,
        policy: Option<&Policy>,
    ) -> Option<Exposure> {
        let (ruleset, ipv6) = (self.ruleset, self.family == Family::Ipv6);
        let dialed = match port.host_address {
            Some(address) => address,
            None => host.address_of(interface, ipv6)?,
        };
        let allowed = policy.map(|p| allowed_sources(p, port, dialed, interface));
        let boundaries = match &allowed {
            Some(Reach::Only(nets)) => {
                let mut more = Vec::with_capacity(nets.len() * 2);
                for net in nets.iter().filter(|n| n.addr().is_ipv6() == ipv6) {
                    add_boundaries(&mut more, *net);
                }
                sorted_once(&mut more);
                Cow::Owned(merge_sorted(&self.cuts, &more))
            }
            _ => Cow::Borrowed(self.cuts.as_slice()),
        };
        let (zero, max) = address_space(ipv6);
        let mut open: Vec<(IpAddr, IpAddr)> = Vec::new();
        let mut decided_by: Vec<String> = Vec::new();
        let mut unknown = None;
        // A walk depends on the source only through the pieces the rules' own source
        // matches draw, the ipsets it is in and whether it is the host's own address:
        // pieces alike in those walk alike, so each such class is walked once (a
        // 100,000-entry set cuts 200,000 pieces but adds two classes per rule piece).
        let mut walked: HashMap<SourceClass, usize> = HashMap::new();
        let mut verdicts: Vec<Verdict> = Vec::new();
        let mut recent: Vec<(SourceClass, usize)> = Vec::with_capacity(RECENT);
        // The pieces come in ascending order: each set's membership and the rule piece
        // are read by moving forward, not searched for, so the walk up the address space
        // costs the sets' sizes once.
        let mut members: Vec<_> = host.sets.values().map(|m| m.ascending(ipv6)).collect();
        let mut rule_piece = 0;
        for (first, last) in pieces(&boundaries, ipv6) {
            let (first, last) = (&first, &last);
            while self
                .rule_cuts
                .get(rule_piece)
                .is_some_and(|cut| cut <= first)
            {
                rule_piece += 1;
            }
            let class = (
                rule_piece,
                InSets::of(members.iter_mut().map(|m| m.contains(*first))),
                host.is_local(*first),
            );
            // Neighbouring pieces are mostly of the classes just seen (in a set, out
            // of it): those are found without hashing.
            let slot = match recent.iter().find(|(seen, _)| *seen == class) {
                Some((_, slot)) => *slot,
                None => {
                    let slot = match walked.get(&class) {
                        Some(slot) => *slot,
                        None => {
                            // A class's first piece: walked once, for every piece of it.
                            let walk = ruleset.walk(
                                host,
                                &Packet {
                                    source: *first,
                                    destination: dialed,
                                    transport: port.transport,
                                    source_port: 40000,
                                    destination_port: port.host_port,
                                    in_interface: interface.to_owned(),
                                },
                            );
                            if let Some(step) = walk.steps.last().map(ToString::to_string)
                                && !decided_by.contains(&step)
                            {
                                decided_by.push(step);
                            }
                            verdicts.push(walk.verdict);
                            walked.insert(class.clone(), verdicts.len() - 1);
                            verdicts.len() - 1
                        }
                    };
                    if recent.len() == RECENT {
                        recent.remove(0);
                    }
                    recent.push((class, slot));
                    slot
                }
            };
            let verdict = &verdicts[slot];
            match verdict {
                Verdict::Accept => match open.last_mut() {
                    Some((_, end)) if next_address(*end) == Some(*first) => *end = *last,
                    _ => open.push((*first, *last)),
                },
                Verdict::Unknown { reason } => {
                    unknown.get_or_insert(reason.clone());
                }
                Verdict::Drop | Verdict::Reject { .. } => {}
            }
        }
        let open_nets: Vec<IpNet> = open.iter().flat_map(|(a, b)| networks(*a, *b)).collect();
        let not_allowed = match &allowed {
            None | Some(Reach::Anywhere) => Vec::new(),
            Some(Reach::Only(allowed)) => {
                // As merged ranges: one lookup per network, and a network the allowed
                // ones cover together is allowed.
                let allowed: SetMembers = allowed.iter().copied().collect();
                open_nets
                    .iter()
                    .filter(|net| !allowed.covers(net))
                    .copied()
                    .collect()
            }
            Some(Reach::Nowhere) => open_nets.clone(),
        };
        let reach = unknown.is_none().then(|| {
            if open.is_empty() {
                Reach::Nowhere
            } else if open == [(zero, max)] {
                Reach::Anywhere
            } else {
                Reach::Only(open_nets)
            }
        });
        Some(Exposure {
            port: port.clone(),
            interface: interface.to_owned(),
            dialed,
            reach,
            decided_by,
            unknown,
            allowed,
            not_allowed,
        })
    }
}

/// What the policy allows to reach `port` dialed at `dialed`, arriving on `interface`.
fn allowed_sources(
    policy: &Policy,
    port: &PublishedPort,
    dialed: IpAddr,
    interface: &str,
) -> Reach {
    if policy.docker.default == DockerDefault::Allow {
        return Reach::Anywhere;
    }
    let family = Family::of(&dialed);
    let mut nets = Vec::new();
    for entry in &policy.docker.published {
        let proto = entry.proto.transport();
        let covers_port = entry.port.get_ref().contains(port.host_port);
        let covers_address = entry
            .host_address
            .as_ref()
            .is_none_or(|a| a.get_ref().addr() == dialed);
        let covers_interface = entry.interfaces.is_empty()
            || entry
                .interfaces
                .iter()
                .any(|i| i.get_ref().matches(interface));
        if proto != port.transport
            || !covers_port
            || !covers_address
            || !covers_interface
            || !entry.family.includes(family)
        {
            continue;
        }
        match &entry.from {
            None => return Reach::Anywhere,
            Some(from) => nets.extend(
                policy
                    .expand(from.get_ref())
                    .iter()
                    .map(|n| n.net())
                    .filter(|n| n.addr().is_ipv6() == dialed.is_ipv6()),
            ),
        }
    }
    if nets.is_empty() {
        Reach::Nowhere
    } else {
        Reach::Only(nets)
    }
}

/// What a walk can tell of a source address: which piece of the rules' own source
/// matches it is in, which ipsets hold it, and whether it is the host's own.
type SourceClass = (usize, InSets, bool);

/// How many of the classes last walked are looked at before the map.
const RECENT: usize = 4;

/// Which of the host's ipsets hold an address: a bit for each of the first 64 sets,
/// the rest (rare) listed, so that a class costs no allocation.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct InSets {
    bits: u64,
    more: Vec<bool>,
}

impl InSets {
    fn of(held: impl Iterator<Item = bool>) -> InSets {
        let mut in_sets = InSets {
            bits: 0,
            more: Vec::new(),
        };
        for (i, held) in held.enumerate() {
            if i < 64 {
                in_sets.bits |= u64::from(held) << i;
            } else {
                in_sets.more.push(held);
            }
        }
        in_sets
    }
}

/// Every address of the family (`ipv6`) where a source match in any rule starts or
/// ends, sorted, each once.
fn rule_boundaries<R: FamilyRules + ?Sized>(ruleset: &R, ipv6: bool) -> Vec<IpAddr> {
    let mut cuts = Vec::new();
    for (first, last) in ruleset.source_ranges() {
        add_range(&mut cuts, first, last);
    }
    cuts.retain(|a| a.is_ipv6() == ipv6);
    sorted_once(&mut cuts);
    cuts
}

/// Every address where a source match in any rule (or a known ipset) starts or ends,
/// sorted, each once. A vector sorted once, not a tree: a 100,000-member set draws
/// 200,000 cuts, and the walk reads them in order.
fn boundaries<R: FamilyRules + ?Sized>(ruleset: &R, host: &HostNet, ipv6: bool) -> Vec<IpAddr> {
    let mut cuts = rule_boundaries(ruleset, ipv6);
    for members in host.sets.values() {
        // A set's ranges are sorted and apart (merged), so its cuts come sorted: merged
        // in, not sorted again (a sort would make the audit grow faster than the set).
        let mut set_cuts = Vec::new();
        for (first, last) in members.ranges().filter(|(a, _)| a.is_ipv6() == ipv6) {
            add_range(&mut set_cuts, first, last);
        }
        cuts = merge_sorted(&cuts, &set_cuts);
    }
    cuts
}

/// The union of two sorted lists without repeats, sorted, each once.
fn merge_sorted(a: &[IpAddr], b: &[IpAddr]) -> Vec<IpAddr> {
    let mut out = Vec::with_capacity(a.len() + b.len());
    let (mut i, mut j) = (0, 0);
    while i < a.len() || j < b.len() {
        let next = match (a.get(i), b.get(j)) {
            (Some(x), Some(y)) if x <= y => {
                i += 1;
                if x == y {
                    j += 1;
                }
                *x
            }
            (_, Some(y)) => {
                j += 1;
                *y
            }
            (Some(x), None) => {
                i += 1;
                *x
            }
            (None, None) => break,
        };
        if out.last() != Some(&next) {
            out.push(next);
        }
    }
    out
}

/// Adds where `net` starts and where it ends (the address after it); the caller sorts.
fn add_boundaries(cuts: &mut Vec<IpAddr>, net: IpNet) {
    add_range(cuts, net.network(), net.broadcast());
}

/// Adds where the range `first`..=`last` starts and the address after it, if any.
fn add_range(cuts: &mut Vec<IpAddr>, first: IpAddr, last: IpAddr) {
    cuts.push(first);
    cuts.extend(next_address(last));
}

fn sorted_once(cuts: &mut Vec<IpAddr>) {
    cuts.sort_unstable();
    cuts.dedup();
}

/// The address space of one family cut at `cuts`, as (first, last) pieces.
fn pieces(cuts: &[IpAddr], ipv6: bool) -> impl Iterator<Item = (IpAddr, IpAddr)> + '_ {
    let (zero, max) = address_space(ipv6);
    // Read in place (a 100,000-member set draws 200,000 cuts): each piece runs from
    // its start to the address before the next start.
    let cuts = cuts.strip_prefix(&[zero]).unwrap_or(cuts);
    let starts = std::iter::once(zero).chain(cuts.iter().copied());
    let ends = cuts
        .iter()
        .map(move |next| previous_address(*next).unwrap_or(max))
        .chain(std::iter::once(max));
    starts.zip(ends)
}

/// The first and last address of a family.
fn address_space(ipv6: bool) -> (IpAddr, IpAddr) {
    if ipv6 {
        (
            Ipv6Addr::UNSPECIFIED.into(),
            Ipv6Addr::from(u128::MAX).into(),
        )
    } else {
        (Ipv4Addr::UNSPECIFIED.into(), Ipv4Addr::BROADCAST.into())
    }
}

fn next_address(address: IpAddr) -> Option<IpAddr> {
    match address {
        IpAddr::V4(a) => u32::from(a)
            .checked_add(1)
            .map(|n| Ipv4Addr::from(n).into()),
        IpAddr::V6(a) => u128::from(a)
            .checked_add(1)
            .map(|n| Ipv6Addr::from(n).into()),
    }
}

fn previous_address(address: IpAddr) -> Option<IpAddr> {
    match address {
        IpAddr::V4(a) => u32::from(a)
            .checked_sub(1)
            .map(|n| Ipv4Addr::from(n).into()),
        IpAddr::V6(a) => u128::from(a)
            .checked_sub(1)
            .map(|n| Ipv6Addr::from(n).into()),
    }
}

/// The fewest networks that cover exactly `first..=last`.
fn networks(first: IpAddr, last: IpAddr) -> Vec<IpNet> {
    match (first, last) {
        (IpAddr::V4(a), IpAddr::V4(b)) => Ipv4Subnets::new(a, b, 0).map(IpNet::V4).collect(),
        (IpAddr::V6(a), IpAddr::V6(b)) => Ipv6Subnets::new(a, b, 0).map(IpNet::V6).collect(),
        _ => Vec::new(),
    }
}
