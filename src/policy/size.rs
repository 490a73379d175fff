//! How many rules a policy puts in each family's file, known before any list is expanded
//! into rules. An entry renders one rule per port range, interface and source (a list
//! counts once per entry, however often the entry names it), and a published entry
//! twice (DOCKER-USER, and INPUT for docker-proxy's clients), and a `[[raw]]` entry
//! once. A list matched as a set counts as one source. A policy that would put more than [`POLICY_RULES`] rules in a file is refused
//! here, at the entry that contributes most, instead of after rendering millions of
//! rules.
//!
//! Counting exactly means expanding each entry's lists; that work is bounded too: the
//! sum of every entry's list sizes (an upper bound of its rules) decides first, and only
//! a policy whose bound lies between [`POLICY_RULES`] and [`MAX_EXPANSION`] is counted
//! exactly.

use std::collections::HashSet;

use toml::Spanned;

use super::types::{AddressRef, FamilyChoice};
use super::{Policy, Segment};
use crate::family::Family;
use crate::iptables::shape::MAX_RULES;

/// The most list entries the exact count expands (each list counted once per entry
/// that uses it); a policy whose upper bound is beyond it is refused on that bound. An
/// exact count could only fit [`MAX_RULES`] if the lists overlapped 40 times over.
pub const MAX_EXPANSION: usize = 40 * MAX_RULES;

/// A refusal: where (the path to the value to point at), the field, and why.
pub(super) struct Refusal {
    pub segments: Vec<Segment>,
    pub field: String,
    pub message: String,
}

/// One entry that renders rules, with what multiplies them.
struct Entry<'a> {
    /// `host.services[3]`, as segments and as text.
    path: Vec<Segment>,
    field: String,
    /// `from` or `to`.
    key: &'static str,
    family: FamilyChoice,
    /// A published entry's `host_address` confines it to that family.
    only_family: Option<Family>,
    ports: usize,
    interfaces: usize,
    refs: Option<&'a [Spanned<AddressRef>]>,
    /// 2 for a published entry (DOCKER-USER and INPUT), 1 otherwise.
    copies: usize,
}

impl Entry<'_> {
    /// The entry's rules in `family`'s file, given how many of its sources are of
    /// that family.
    fn rules(
        &self,
        family: Family,
        sources: impl FnOnce(&[Spanned<AddressRef>]) -> usize,
    ) -> usize {
        if !self.family.includes(family) || self.only_family.is_some_and(|f| f != family) {
            return 0;
        }
        let sources = self.refs.map_or(1, sources);
        self.ports
            .saturating_mul(self.interfaces.max(1))
            .saturating_mul(sources)
            .saturating_mul(self.copies)
    }

    fn factors(&self, family: Family, sources: usize) -> String {
        let mut text = format!(
            "{} port range(s) x {} interface(s) x {} {family} address(es)",
            self.ports,
            self.interfaces.max(1),
            if self.refs.is_some() {
                sources.to_string()
            } else {
                "any".to_owned()
            }
        );
        if self.copies == 2 {
            text.push_str(" x 2 chains (DOCKER-USER and INPUT)");
        }
        text
    }
}

/// The references of a `from` or `to`, if there is one.
fn refs(r: &Option<Spanned<Vec<Spanned<AddressRef>>>>) -> Option<&[Spanned<AddressRef>]> {
    r.as_ref().map(|r| r.get_ref().as_slice())
}

fn entries(policy: &Policy) -> Vec<Entry<'_>> {
    let path = |section: &str, list: &str, i: usize| {
        (
            vec![
                Segment::Key(section.to_owned()),
                Segment::Key(list.to_owned()),
                Segment::Index(i),
            ],
            format!("{section}.{list}[{i}]"),
        )
    };
    let mut all = Vec::new();
    for (i, s) in policy.host.services.iter().enumerate() {
        let (path, field) = path("host", "services", i);
        all.push(Entry {
            path,
            field,
            key: "from",
            family: s.family,
            only_family: None,
            ports: s.port.get_ref().ranges().len(),
            interfaces: s.interfaces.len(),
            refs: refs(&s.from),
            copies: 1,
        });
    }
    for (i, r) in policy.outbound.allow.iter().enumerate() {
        let (path, field) = path("outbound", "allow", i);
        all.push(Entry {
            path,
            field,
            key: "to",
            family: r.family,
            only_family: None,
            ports: r.port.ranges().len(),
            interfaces: 0,
            refs: refs(&r.to),
            copies: 1,
        });
    }
    for (i, p) in policy.docker.published.iter().enumerate() {
        let (path, field) = path("docker", "published", i);
        all.push(Entry {
            path,
            field,
            key: "from",
            family: p.family,
            only_family: p
                .host_address
                .as_ref()
                .map(|a| Family::of(&a.get_ref().addr())),
            ports: p.port.get_ref().ranges().len(),
            interfaces: p.interfaces.len(),
            refs: refs(&p.from),
            copies: 2,
        });
    }
    all
}

/// At least as many sources of `family` as `refs` expands to: each list's size, once
/// per list, plus each network.
fn upper_bound(policy: &Policy, refs: &[Spanned<AddressRef>], family: Family) -> usize {
    let mut seen = HashSet::new();
    let mut total = 0usize;
    for r in refs {
        let count = match r.get_ref() {
            AddressRef::Net(net) => usize::from(net.family() == family),
            AddressRef::List(name) if seen.insert(name) => {
                if policy.matched_as_set(name, family) {
                    // One rule for the set, and one for a `/0` (which no set holds).
                    2
                } else {
                    policy.list_networks(name, family).len()
                }
            }
            AddressRef::List(_) => 0,
        };
        total = total.saturating_add(count);
    }
    total
}

/// Room left in every file for the template's own rules (loopback, replies, the final
/// denies: about 40 in the built-in template), so that a policy that passes the count
/// also passes the rendered file's cap.
pub const TEMPLATE_ALLOWANCE: usize = 100;

/// The most rules a policy's entries may put in one file.
pub const POLICY_RULES: usize = MAX_RULES - TEMPLATE_ALLOWANCE;

/// Refuses a policy whose entries would put more than [`POLICY_RULES`] rules in a file.
pub(super) fn check(policy: &Policy) -> Result<(), Refusal> {
    let entries = entries(policy);
    for family in Family::ALL {
        let raw: Vec<usize> = policy
            .raw
            .iter()
            .enumerate()
            .filter(|(_, r)| r.family.includes(family))
            .map(|(i, _)| i)
            .collect();
        let total = |counts: &[usize]| {
            counts
                .iter()
                .fold(raw.len(), |sum, n| sum.saturating_add(*n))
        };
        let bounds: Vec<usize> = entries
            .iter()
            .map(|e| e.rules(family, |refs| upper_bound(policy, refs, family)))
            .collect();
        let bound = total(&bounds);
        if bound <= POLICY_RULES {
            continue;
        }
        let exact = bound <= MAX_EXPANSION;
        let sources_of = |refs: &[Spanned<AddressRef>]| {
            if exact {
                policy.expand_family_matches(refs, family).len()
            } else {
                upper_bound(policy, refs, family)
            }
        };
        let counts: Vec<usize> = entries
            .iter()
            .map(|e| e.rules(family, sources_of))
            .collect();
        let sum = total(&counts);
        if sum <= POLICY_RULES {
            continue;
        }
        let (up_to, count) = if exact {
            ("", "")
        } else {
            ("up to ", "counting each list once per entry, ")
        };
        let expected = format!(
            "expected at most {POLICY_RULES} rules from the policy in the {family} file (a file holds {MAX_RULES}, {TEMPLATE_ALLOWANCE} of them the template's own), found a policy that renders {up_to}{sum}"
        );
        // The first entry with the most rules, unless the raw rules are more: then the
        // first raw rule past the limit.
        let largest = counts
            .iter()
            .copied()
            .enumerate()
            .reduce(|best, next| if next.1 > best.1 { next } else { best });
        let entry = largest
            .filter(|(_, rules)| *rules >= raw.len())
            .and_then(|(i, rules)| Some((entries.get(i)?, rules)));
        let Some((entry, rules)) = entry else {
            let others = sum.saturating_sub(raw.len());
            let past = POLICY_RULES
                .saturating_sub(others)
                .min(raw.len().saturating_sub(1));
            let index = raw.get(past).copied().unwrap_or_default();
            return Err(Refusal {
                segments: vec![
                    Segment::Key("raw".to_owned()),
                    Segment::Index(index),
                    Segment::Key("rule".to_owned()),
                ],
                field: format!("raw[{index}].rule"),
                message: format!(
                    "{expected} ({} raw rules, the first past the limit here); use fewer rules",
                    raw.len()
                ),
            });
        };
        let sources = entry.refs.map_or(0, sources_of);
        let mut segments = entry.path.clone();
        segments.push(Segment::Key(
            if entry.refs.is_some() {
                entry.key
            } else {
                "port"
            }
            .to_owned(),
        ));
        return Err(Refusal {
            segments,
            field: entry.field.clone(),
            message: format!(
                "{expected} ({count}this entry {up_to}{rules}: {}); use fewer, wider networks or port ranges",
                entry.factors(family, sources)
            ),
        });
    }
    Ok(())
}
