//! The policy file (`/etc/iptables/<instance>.toml`): the admin's intent, not iptables
//! syntax. This module owns the [`Policy`] itself: reading it, parsing it strictly
//! (unknown keys are errors) into the sections of `schema`, running the cross-checks
//! of `checks` and the size bound of `size`, locating every error at its line,
//! column and field, and expanding list references. So everything after it (the plan,
//! the renderers) only ever sees a policy that is known to be consistent.
//!
//! `types/` holds the validated values every field is made of, `interfaces.rs` matches
//! the policy's interface names against a host, `error.rs` the located errors, and
//! `starter.rs` the policy `init` writes.

mod checks;
mod error;
mod interfaces;
pub mod lists;
pub mod reference;
mod schema;
mod size;
pub mod starter;
pub mod types;

use std::collections::{BTreeMap, HashSet};
use std::path::Path;

use serde::Deserialize;
use toml::Spanned;

use crate::family::Family;
use crate::files::source;

pub use error::{Location, PolicyError};
pub use interfaces::{MAX_REPORTED, NamedInterface};
pub use schema::{
    BackendKind, ContainerAccess, Defaults, DenyAction, Docker, DockerDefault, ExternalInterfaces,
    Host, Interfaces, LintSettings, Log, Outbound, OutboundPolicy, OutboundRule, Published,
    RawChain, RawEntry, Service,
};
use types::{AddressMatch, AddressRef, ListName, Network};

/// A whole policy, as read from one file.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Policy {
    /// Which interfaces face the outside world and which bridges are Docker's.
    #[serde(default)]
    pub interfaces: Interfaces,
    /// Settings shared by every chain.
    #[serde(default)]
    pub defaults: Defaults,
    /// Named address lists, usable in `from` and `to`.
    #[serde(default)]
    pub lists: BTreeMap<ListName, Spanned<lists::ListEntries>>,
    /// What reaches the host itself (INPUT).
    #[serde(default)]
    pub host: Host,
    /// What the host may send (OUTPUT).
    #[serde(default)]
    pub outbound: Outbound,
    /// Who may reach ports that Docker publishes (DOCKER-USER).
    #[serde(default)]
    pub docker: Docker,
    /// Rate-limited logging of what is denied.
    #[serde(default)]
    pub log: Log,
    /// Extra rule lines, for what the policy cannot express.
    #[serde(default)]
    pub raw: Vec<RawEntry>,
    /// Which lints not to report.
    #[serde(default)]
    pub lints: LintSettings,
    /// The file and text the policy was read from, to locate later errors.
    #[serde(skip)]
    source: Source,
    /// Each list's networks of each family (IPv4, IPv6), duplicates removed, found once
    /// when the policy is read: expanding a reference for one family then costs what it
    /// yields, however long the list's part of the other family is.
    #[serde(skip)]
    by_family: BTreeMap<ListName, [Vec<Network>; 2]>,
    /// Each list's `/0` of each family, if it has one (no set holds it), found with
    /// `by_family`: how many networks a list's set holds is then known at once.
    #[serde(skip)]
    with_default: BTreeMap<ListName, [Option<Network>; 2]>,
}

#[derive(Debug, Default)]
struct Source {
    path: std::path::PathBuf,
    text: String,
}

impl Policy {
    /// Reads and validates the policy at `path`.
    pub fn load(path: &Path) -> Result<Policy, PolicyError> {
        let bytes =
            source::read(path, source::POLICY_LIMIT).map_err(|source| PolicyError::Read {
                path: path.to_owned(),
                source,
            })?;
        Policy::parse(path, &bytes)
    }

    /// [`Policy::load`], with the text it was read from (read once: what a generation
    /// keeps is what was validated and rendered).
    pub fn load_with_text(path: &Path) -> Result<(Policy, String), PolicyError> {
        let bytes =
            source::read(path, source::POLICY_LIMIT).map_err(|source| PolicyError::Read {
                path: path.to_owned(),
                source,
            })?;
        let policy = Policy::parse(path, &bytes)?;
        // parse accepted it, so it is UTF-8.
        Ok((policy, String::from_utf8_lossy(&bytes).into_owned()))
    }

    /// Parses and validates policy text; `path` is used in error messages.
    pub fn parse(path: &Path, bytes: &[u8]) -> Result<Policy, PolicyError> {
        let text = std::str::from_utf8(bytes).map_err(|e| {
            let valid = &bytes[..e.valid_up_to()];
            // The valid prefix is UTF-8 by definition; locate the first bad byte in it.
            let prefix = std::str::from_utf8(valid).unwrap_or_default();
            invalid(
                Location::from_span(path, prefix, prefix.len()..prefix.len()),
                None,
                format!(
                    "expected UTF-8 text, found the byte 0x{:02x}",
                    bytes.get(e.valid_up_to()).copied().unwrap_or_default()
                ),
            )
        })?;
        // An empty file (or one of comments only) would be a valid policy that closes
        // every service, SSH included: a truncated or not-yet-written file, not a choice.
        let has_content = text
            .lines()
            .map(str::trim)
            .any(|line| !line.is_empty() && !line.starts_with('#'));
        if !has_content {
            return Err(invalid(
                Location::from_span(path, text, 0..0),
                None,
                "expected a policy, found an empty file (it would close every service, SSH included); write at least `[interfaces]` and the `[[host.services]]` to keep open, or remove the file to get the starter policy".to_owned(),
            ));
        }
        let deserializer = toml::Deserializer::parse(text).map_err(|e| {
            let span = e.span().unwrap_or(0..0);
            invalid(
                Location::from_span(path, text, span),
                None,
                e.message().trim_end().to_owned(),
            )
        })?;
        let mut policy: Policy = serde_path_to_error::deserialize(deserializer).map_err(|e| {
            let segments = field_segments(e.path());
            let inner = e.into_inner();
            let reported = inner.span().unwrap_or(0..0);
            // toml blames a whole array for a bad element; find the element itself.
            let span = value_span(text, &segments)
                .filter(|s| reported.start <= s.start && s.end <= reported.end)
                .unwrap_or(reported);
            invalid(
                Location::from_span(path, text, span),
                Some(field_path(&segments)),
                inner.message().trim_end().to_owned(),
            )
        })?;
        // Lists given by a file are read now, beside the policy (bounded, each bad line
        // located in its file).
        let policy_dir = path.parent().unwrap_or_else(|| Path::new("."));
        for (name, entries) in &mut policy.lists {
            let entries = entries.get_mut();
            if let Some(file) = &entries.file {
                entries.networks =
                    lists::read_list_file(policy_dir, file, &format!("lists.{name}"))?;
            }
        }
        policy.by_family = policy
            .lists
            .iter()
            .map(|(name, entries)| {
                let mut families: [Vec<Network>; 2] = Default::default();
                for network in first_occurrences(&entries.get_ref().networks) {
                    families[family_slot(network.family())].push(network);
                }
                (name.clone(), families)
            })
            .collect();
        policy.with_default = policy
            .by_family
            .iter()
            .map(|(name, families)| {
                let default =
                    |slot: &Vec<Network>| slot.iter().find(|n| n.net().prefix_len() == 0).copied();
                (name.clone(), [default(&families[0]), default(&families[1])])
            })
            .collect();
        for (name, families) in &policy.by_family {
            for (family, networks) in Family::ALL.into_iter().zip(families) {
                if networks.len() > lists::MAX_LIST_ENTRIES {
                    let span = policy.lists.get(name).map_or(0..0, Spanned::span);
                    return Err(invalid(
                        Location::from_span(path, text, span),
                        Some(format!("lists.{name}")),
                        format!(
                            "expected at most {} {family} networks in a list (the capacity of the set it is loaded as), found {}",
                            lists::MAX_LIST_ENTRIES,
                            networks.len()
                        ),
                    ));
                }
            }
        }
        policy.validate().map_err(|(span, field, message)| {
            invalid(Location::from_span(path, text, span), Some(field), message)
        })?;
        size::check(&policy).map_err(|refusal| {
            let span = value_span(text, &refusal.segments).unwrap_or(0..0);
            invalid(
                Location::from_span(path, text, span),
                Some(refusal.field),
                refusal.message,
            )
        })?;
        policy.source = Source {
            path: path.to_owned(),
            text: text.to_owned(),
        };
        Ok(policy)
    }

    /// The lints this policy says not to report.
    pub fn lint_skips(&self) -> crate::lints::Skips {
        crate::lints::Skips::new(self.lints.skip.iter().copied())
    }

    /// The file the policy was read from.
    pub fn path(&self) -> &Path {
        &self.source.path
    }

    /// Where `span` is, as `FILE:LINE: FIELD`, for reports that point into the policy
    /// without being errors (the lints).
    pub fn place(&self, span: std::ops::Range<usize>, field: &str) -> String {
        let at = Location::from_span(&self.source.path, &self.source.text, span);
        format!("{}:{}: {field}", at.path.display(), at.line)
    }

    /// An error about the part of the policy at `span`, for checks made after loading
    /// (such as resolving `external = "auto"`).
    pub fn error_at(
        &self,
        span: std::ops::Range<usize>,
        field: &str,
        message: String,
    ) -> PolicyError {
        invalid(
            Location::from_span(&self.source.path, &self.source.text, span),
            Some(field.to_owned()),
            message,
        )
    }

    /// The `[[raw]]` entry of `backend` a rendered line came from, as an error pointing
    /// at its rule, for when the kernel refuses that line.
    pub fn raw_origin(
        &self,
        backend: BackendKind,
        rendered_line: &str,
        why: &str,
    ) -> Option<PolicyError> {
        let own = self
            .raw
            .iter()
            .enumerate()
            .filter(|(_, e)| e.backend == backend);
        own.into_iter().find_map(|(i, entry)| {
            let rule = entry.rule.get_ref().normalized();
            rendered_line.ends_with(&format!(" {rule}")).then(|| {
                self.error_at(
                    entry.rule.span(),
                    &format!("raw[{i}].rule"),
                    format!("the kernel's parser refused this rule: {why}"),
                )
            })
        })
    }

    /// The networks that a list of references stands for, lists expanded, in order,
    /// each network once. A list named twice is expanded once: the work is the size of
    /// the distinct lists, not of the references.
    pub fn expand(&self, refs: &[Spanned<AddressRef>]) -> Vec<Network> {
        let mut lists_seen = HashSet::new();
        let mut seen = HashSet::new();
        let mut out = Vec::new();
        for r in refs {
            let nets: &[Network] = match r.get_ref() {
                AddressRef::Net(net) => std::slice::from_ref(net),
                // Validation guarantees the list exists; a missing one would only shrink
                // the allowed set, never widen it.
                AddressRef::List(name) if lists_seen.insert(name) => self
                    .lists
                    .get(name)
                    .map(|l| l.get_ref().networks.as_slice())
                    .unwrap_or_default(),
                AddressRef::List(_) => &[],
            };
            out.extend(nets.iter().filter(|n| seen.insert(**n)));
        }
        out
    }

    /// [`Policy::expand`] for one family: the same networks in the same order, less
    /// those of the other family, at the cost of what it yields (a long list of the
    /// other family costs nothing).
    pub fn expand_family(&self, refs: &[Spanned<AddressRef>], family: Family) -> Vec<Network> {
        self.expand_refs(
            refs,
            family,
            |name, _| self.list_networks(name, family),
            |network| network,
        )
    }

    /// [`Policy::expand_family`] as the rules match it: a list with more than
    /// [`lists::SET_THRESHOLD`] networks of `family` stands as one [`AddressMatch::List`]
    /// (its `/0`, which no set holds, as a network beside it), any other network as
    /// itself, each once, in order.
    pub fn expand_family_matches(
        &self,
        refs: &[Spanned<AddressRef>],
        family: Family,
    ) -> Vec<AddressMatch> {
        self.expand_refs(
            refs,
            family,
            |name, out| {
                if !self.matched_as_set(name, family) {
                    return self.list_networks(name, family);
                }
                out.push(AddressMatch::List(name.clone()));
                self.list_default(name, family)
                    .map_or(&[], std::slice::from_ref)
            },
            AddressMatch::Network,
        )
    }

    /// The networks of `family` that `refs` name, each once, in order, as `network`
    /// makes them, and each list named once: its networks are what `list` returns (which
    /// may first put what stands for the list in the output itself).
    fn expand_refs<'s, T>(
        &'s self,
        refs: &[Spanned<AddressRef>],
        family: Family,
        mut list: impl FnMut(&ListName, &mut Vec<T>) -> &'s [Network],
        network: impl Fn(Network) -> T,
    ) -> Vec<T> {
        let mut lists_seen = HashSet::new();
        let mut seen = HashSet::new();
        let mut out = Vec::new();
        for r in refs {
            let nets: &[Network] = match r.get_ref() {
                AddressRef::Net(net) if net.family() == family => std::slice::from_ref(net),
                AddressRef::Net(_) => &[],
                AddressRef::List(name) if lists_seen.insert(name) => list(name, &mut out),
                AddressRef::List(_) => &[],
            };
            out.extend(
                nets.iter()
                    .filter(|n| seen.insert(**n))
                    .map(|n| network(*n)),
            );
        }
        out
    }

    /// Whether the rules of `family` match the list `name` as one set: it holds more
    /// than [`lists::SET_THRESHOLD`] networks of the family a set can hold (all but `/0`).
    pub fn matched_as_set(&self, name: &ListName, family: Family) -> bool {
        let with_default = self.list_default(name, family).is_some();
        self.list_networks(name, family).len() - usize::from(with_default) > lists::SET_THRESHOLD
    }

    /// The `/0` of `family` in the list `name`, if it holds one.
    fn list_default(&self, name: &ListName, family: Family) -> Option<&Network> {
        self.with_default
            .get(name)
            .and_then(|slots| slots[family_slot(family)].as_ref())
    }

    /// The networks of `family` in the list `name` that its set holds: all but `/0`.
    pub fn set_members(&self, name: &ListName, family: Family) -> impl Iterator<Item = &Network> {
        self.list_networks(name, family)
            .iter()
            .filter(|n| n.net().prefix_len() != 0)
    }

    /// The networks of `family` in the list `name`, each once (none if there is no such
    /// list).
    pub(crate) fn list_networks(&self, name: &ListName, family: Family) -> &[Network] {
        self.by_family
            .get(name)
            .map_or(&[], |families| families[family_slot(family)].as_slice())
    }
}

/// `networks` without repeats, each where it first occurs. Sorted rather than hashed:
/// a list file of 100,000 networks is read on every command, and a sort of their
/// positions costs less than hashing each one.
fn first_occurrences(networks: &[Network]) -> impl Iterator<Item = Network> + '_ {
    let mut order: Vec<usize> = (0..networks.len()).collect();
    // Stable: among equal networks the first position comes first.
    order.sort_by_key(|&i| networks[i]);
    let mut keep = vec![false; networks.len()];
    for (n, &i) in order.iter().enumerate() {
        keep[i] = n == 0 || networks[order[n - 1]] != networks[i];
    }
    networks
        .iter()
        .zip(keep)
        .filter_map(|(network, keep)| keep.then_some(*network))
}

/// Where a family's networks are kept in [`Policy`]'s per-family lists.
fn family_slot(family: Family) -> usize {
    match family {
        Family::Ipv4 => 0,
        Family::Ipv6 => 1,
    }
}

/// One step of the path to a field: a key or an array index.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Segment {
    Key(String),
    Index(usize),
}

/// The path serde_path_to_error recorded, without the private steps of `toml::Spanned`.
fn field_segments(path: &serde_path_to_error::Path) -> Vec<Segment> {
    path.iter()
        .filter_map(|segment| match segment {
            serde_path_to_error::Segment::Map { key } if key.starts_with("$__serde_spanned") => {
                None
            }
            serde_path_to_error::Segment::Map { key } => Some(Segment::Key(key.clone())),
            serde_path_to_error::Segment::Seq { index } => Some(Segment::Index(*index)),
            _ => None,
        })
        .collect()
}

/// The dotted form an admin reads in the file, such as `docker.published[1].port`. Keys
/// that are not plain words are quoted, so no key can break the error line.
fn field_path(segments: &[Segment]) -> String {
    let mut out = String::new();
    for segment in segments {
        match segment {
            Segment::Index(i) => out.push_str(&format!("[{i}]")),
            Segment::Key(key) => {
                if !out.is_empty() {
                    out.push('.');
                }
                let plain = !key.is_empty()
                    && key
                        .bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
                if plain {
                    out.push_str(key);
                } else {
                    out.push_str(&format!("{key:?}"));
                }
            }
        }
    }
    if out.is_empty() {
        "(top level)".to_owned()
    } else {
        out
    }
}

/// The span of the value at `segments` in the document, if it exists.
fn value_span(text: &str, segments: &[Segment]) -> Option<std::ops::Range<usize>> {
    use toml::de::{DeTable, DeValue};
    let root = DeTable::parse(text).ok()?;
    let mut span = root.span();
    let mut table: Option<&DeTable> = Some(root.get_ref());
    let mut array: Option<&[toml::Spanned<DeValue>]> = None;
    for segment in segments {
        let value = match segment {
            Segment::Key(key) => table?
                .iter()
                .find(|(k, _)| k.get_ref().as_ref() == key.as_str())
                .map(|(_, v)| v)?,
            Segment::Index(i) => array?.get(*i)?,
        };
        span = value.span();
        (table, array) = match value.get_ref() {
            DeValue::Table(t) => (Some(t), None),
            DeValue::Array(a) => (None, Some(&a[..])),
            _ => (None, None),
        };
    }
    Some(span)
}

fn invalid(location: Location, field: Option<String>, message: String) -> PolicyError {
    PolicyError::Invalid {
        location: Box::new(location),
        field,
        message,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<Policy, PolicyError> {
        Policy::parse(Path::new("test.toml"), text.as_bytes())
    }

    fn error_of(text: &str) -> (usize, usize, Option<String>, String) {
        match parse(text) {
            Err(PolicyError::Invalid {
                location,
                field,
                message,
            }) => (location.line, location.column, field, message),
            other => panic!("expected an invalid-policy error, got {other:?}"),
        }
    }

    #[test]
    fn a_list_named_many_times_is_expanded_once_and_its_rules_counted_once() {
        // 50 networks: under the set threshold, so plain rules, one per network.
        let nets: Vec<String> = (0..50).map(|i| format!("\"10.0.0.{i}/32\"")).collect();
        let refs = vec!["\"big\""; 4000].join(", ");
        // 60 ports that do not merge into ranges.
        let ports: Vec<String> = (1..=60).map(|p| (p * 2).to_string()).collect();
        let ports = ports.join(", ");
        let text = format!(
            "[lists]\nbig = [{}, \"10.0.0.0/32\"]\n[[host.services]]\nport = [{ports}]\nfrom = [{refs}, \"192.0.2.1\", \"10.0.0.5/32\"]\n",
            nets.join(", ")
        );
        let policy = parse(&text).expect("3,060 rules fit in a file");
        let from = policy.host.services[0].from.as_ref().expect("from");
        let expanded = policy.expand(from.get_ref());
        assert_eq!(expanded.len(), 51, "each network once, in order");
        assert_eq!(expanded[0].to_string(), "10.0.0.0/32");
        assert_eq!(expanded[50].to_string(), "192.0.2.1/32");
        // Named 4,000 times, the list counts once: eight such entries fit.
        let eight = format!(
            "{text}{}",
            format!("[[host.services]]\nport = [{ports}]\nfrom = [{refs}]\n").repeat(7)
        );
        assert!(parse(&eight).is_ok());
        // One more entry does not: refused at the `from` of the (first) entry with the
        // most rules, with the exact count.
        let more = format!("{eight}[[host.services]]\nport = [{ports}]\nfrom = [\"big\"]\n");
        let (line, column, field, message) = error_of(&more);
        assert_eq!(field.as_deref(), Some("host.services[0]"));
        assert_eq!((line, column), (5, 8));
        assert!(
            message.contains("expected at most 24900 rules from the policy in the IPv4 file (a file holds 25000, 100 of them the template's own), found a policy that renders 27060 (this entry 3060: 60 port range(s) x 1 interface(s) x 51 IPv4 address(es))"),
            "{message}"
        );
    }

    #[test]
    fn repeats_are_dropped_where_they_repeat_and_the_order_kept() {
        let nets: Vec<Network> = ["192.0.2.9", "10.0.0.0/8", "192.0.2.9", "::1", "10.0.0.0/8"]
            .iter()
            .map(|t| t.parse().expect("network"))
            .collect();
        let kept: Vec<String> = first_occurrences(&nets).map(|n| n.to_string()).collect();
        assert_eq!(kept, ["192.0.2.9/32", "10.0.0.0/8", "::1/128"]);
        assert_eq!(first_occurrences(&[]).count(), 0);
    }

    #[test]
    fn a_list_past_the_set_threshold_is_one_source_however_long() {
        let nets: Vec<String> = (0..30_000)
            .map(|i| format!("\"10.{}.{}.0/24\"", i / 256, i % 256))
            .collect();
        let ports: Vec<String> = (1..=100).map(|p| (p * 2).to_string()).collect();
        let text = format!(
            "[lists]\nbig = [{}, \"0.0.0.0/0\"]\n[[host.services]]\nport = [{}]\nfrom = [\"big\", \"192.0.2.1\"]\n",
            nets.join(", "),
            ports.join(", ")
        );
        // 100 ports x (the set, its /0, 192.0.2.1): 300 rules, not 3 million.
        let policy = parse(&text).expect("a set counts once");
        let from = policy.host.services[0].from.as_ref().expect("from");
        let name: ListName = "big".parse().expect("name");
        assert_eq!(
            policy.expand_family_matches(from.get_ref(), Family::Ipv4),
            [
                AddressMatch::List(name.clone()),
                AddressMatch::Network("0.0.0.0/0".parse().expect("net")),
                AddressMatch::Network("192.0.2.1".parse().expect("net")),
            ]
        );
        assert!(policy.matched_as_set(&name, Family::Ipv4));
        assert_eq!(policy.set_members(&name, Family::Ipv4).count(), 30_000);
        // No IPv6 networks: no IPv6 set, and no IPv6 rules for the entry's list.
        assert!(!policy.matched_as_set(&name, Family::Ipv6));
        assert!(
            policy
                .expand_family_matches(from.get_ref(), Family::Ipv6)
                .is_empty()
        );
        // Exactly the threshold stays plain rules.
        let at = format!(
            "[lists]\nsmall = [{}]\n[[host.services]]\nport = 22\nfrom = [\"small\"]\n",
            nets[..lists::SET_THRESHOLD].join(", ")
        );
        let small: ListName = "small".parse().expect("name");
        assert!(
            !parse(&at)
                .expect("valid")
                .matched_as_set(&small, Family::Ipv4)
        );
    }

    #[test]
    fn a_list_longer_than_a_set_holds_is_refused_at_the_list() {
        let dir = tempfile::tempdir().expect("dir");
        let members: String = (0..=lists::MAX_LIST_ENTRIES)
            .map(|i| format!("10.{}.{}.{}\n", i >> 16 & 255, i >> 8 & 255, i & 255))
            .collect();
        std::fs::write(dir.path().join("huge.txt"), members).expect("list");
        let path = dir.path().join("base.toml");
        std::fs::write(
            &path,
            "[lists]\nhuge = { file = \"huge.txt\" }\n[[host.services]]\nport = 22\nfrom = [\"huge\"]\n",
        )
        .expect("policy");
        let err = Policy::load(&path).expect_err("too long").to_string();
        assert!(
            err.contains("base.toml:2")
                && err.contains("lists.huge")
                && err.contains("at most 500000 IPv4 networks"),
            "{err}"
        );
    }

    #[test]
    fn raw_rules_past_the_limit_are_refused_at_the_first_one_past_it() {
        let raw = "[[raw]]\nchain = \"input\"\nrule = \"-p tcp --dport 1 -j ACCEPT\"\n";
        let text = format!("[[host.services]]\nport = 22\n{}", raw.repeat(24_900));
        let (line, _, field, message) = error_of(&text);
        // 1 service rule and 24,899 raw rules fit; raw[24899] is the first past.
        assert_eq!(field.as_deref(), Some("raw[24899].rule"), "{message}");
        assert_eq!(line, 2 + 24_899 * 3 + 3);
        assert!(
            message.contains("renders 24901 (24900 raw rules"),
            "{message}"
        );
    }

    #[test]
    fn an_empty_policy_is_refused_and_a_minimal_one_gets_the_defaults() {
        for empty in ["", "\n\n", "# only a comment\n  \n"] {
            let (line, _, field, message) = error_of(empty);
            assert_eq!((line, field), (1, None), "{empty:?}");
            assert!(message.contains("empty file"), "{message}");
        }
        let policy = parse("[host]\n").expect("a minimal policy");
        assert!(policy.interfaces.external.is_none());
        assert!(policy.host.ping);
        assert_eq!(policy.docker.default, DockerDefault::Deny);
    }

    #[test]
    fn a_raw_rule_names_its_backend_iptables_by_default_and_no_other() {
        let rule = "[[raw]]\nchain = \"input\"\nrule = \"-p udp --dport 51820 -j ACCEPT\"\n";
        let policy = parse(rule).expect("valid");
        assert_eq!(policy.raw[0].backend, BackendKind::Iptables);
        let named = parse(&format!("{rule}backend = \"iptables\"\n")).expect("valid");
        assert_eq!(named.raw[0].backend, BackendKind::Iptables);
        for other in ["\"nftables\"", "\"IPTABLES\"", "\"\"", "1"] {
            let (line, column, field, message) = error_of(&format!(
                "[[host.services]]\nport = 22\n{rule}backend = {other}\n"
            ));
            assert_eq!((line, column), (6, 11), "{other}: {message}");
            assert_eq!(field.as_deref(), Some("raw[0].backend"), "{other}");
            assert!(
                message.contains("expected `iptables`"),
                "{other}: {message}"
            );
        }
    }

    #[test]
    fn errors_name_line_column_and_field() {
        let (line, column, field, message) = error_of(
            "[docker]\n[[docker.published]]\nport = 8080\n[[docker.published]]\nport = 65536\n",
        );
        assert_eq!((line, column), (5, 8));
        assert_eq!(field.as_deref(), Some("docker.published[1].port"));
        assert!(message.contains("65536"), "{message}");
    }

    #[test]
    fn unknown_list_is_reported_where_it_is_used() {
        let (line, _, field, message) =
            error_of("[[host.services]]\nport = 22\nfrom = [\"10.0.0.0/8\", \"ofice\"]\n");
        assert_eq!(line, 3);
        assert_eq!(field.as_deref(), Some("host.services[0].from[1]"));
        assert!(message.contains("ofice"), "{message}");
    }

    #[test]
    fn rule_that_can_never_match_is_refused() {
        let (_, _, field, _) = error_of(
            "[[docker.published]]\nport = 80\nfrom = [\"2001:db8::/32\"]\nhost_address = \"192.0.2.1\"\n",
        );
        assert_eq!(field.as_deref(), Some("docker.published[0].host_address"));
        let (_, _, field, _) = error_of(
            "[[host.services]]\nport = 22\nfamily = \"ipv4\"\nfrom = [\"2001:db8::/32\"]\n",
        );
        assert_eq!(field.as_deref(), Some("host.services[0].from"));
    }

    #[test]
    fn interfaces_the_host_lacks_and_bridges_that_match_uplinks_are_located() {
        let policy = parse(
            "[interfaces]\nexternal = [\"eth9\", \"wg+\"]\ndocker_bridges = [\"docker0\", \"br-+\"]\n[[host.services]]\nport = 22\ninterfaces = [\"eth0\"]\n",
        )
        .expect("valid");
        let host = ["lo".to_owned(), "eth0".to_owned(), "br-lan".to_owned()];
        let missing: Vec<String> = policy
            .missing_interfaces(&host)
            .iter()
            .map(ToString::to_string)
            .collect();
        assert_eq!(missing.len(), 2, "{missing:?}");
        assert!(
            missing[0].starts_with("test.toml:2:12: interfaces.external: eth9 does not exist on this host (interfaces here: br-lan, eth0, lo)"),
            "{}",
            missing[0]
        );
        assert!(
            missing[1].contains("no interface on this host matches wg+"),
            "{}",
            missing[1]
        );
        let matching: Vec<String> = policy
            .bridges_matching_uplinks(&["br-lan".to_owned()])
            .iter()
            .map(ToString::to_string)
            .collect();
        assert_eq!(matching.len(), 1);
        assert!(
            matching[0].contains("interfaces.docker_bridges[1]: br-+ matches br-lan"),
            "{}",
            matching[0]
        );
        assert!(policy.is_docker_bridge("br-0123456789ab") && !policy.is_docker_bridge("eth0"));
    }

    #[test]
    fn missing_interfaces_past_the_first_twenty_are_counted_not_listed() {
        let names: Vec<String> = (0..25).map(|i| format!("\"eth{i}\"")).collect();
        let policy = parse(&format!(
            "[[host.services]]\nport = 22\ninterfaces = [{}]\n",
            names.join(", ")
        ))
        .expect("valid");
        let missing: Vec<String> = policy
            .missing_interfaces(&["lo".to_owned()])
            .iter()
            .map(ToString::to_string)
            .collect();
        assert_eq!(missing.len(), MAX_REPORTED + 1, "{missing:?}");
        assert!(
            missing[19].contains("eth19 does not exist"),
            "{}",
            missing[19]
        );
        assert!(
            missing[20].starts_with("test.toml:3:")
                && missing[20].contains("host.services[0].interfaces: and 5 more like the above"),
            "{}",
            missing[20]
        );
    }

    #[test]
    fn expand_merges_lists_and_literals_without_duplicates() {
        let policy = parse(
            "[lists]\na = [\"192.0.2.0/24\", \"2001:db8::/32\"]\n[[host.services]]\nport = 22\nfrom = [\"a\", \"192.0.2.0/24\", \"198.51.100.1\"]\n",
        )
        .expect("valid");
        let from = policy.host.services[0].from.as_ref().expect("from");
        let nets: Vec<String> = policy
            .expand(from.get_ref())
            .iter()
            .map(|n| n.to_string())
            .collect();
        assert_eq!(nets, ["192.0.2.0/24", "2001:db8::/32", "198.51.100.1/32"]);
    }
}
