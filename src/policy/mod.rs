//! The policy file (`/etc/iptables/<instance>.toml`): the admin's intent, not iptables
//! syntax. This module owns reading it, parsing it strictly (unknown keys are errors) and
//! the cross-checks that need the whole file (list references, family conflicts), so the
//! renderer only ever sees a policy that is known to be consistent.

mod error;
mod size;
pub mod starter;
pub mod types;

use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::fmt;
use std::path::Path;

use serde::Deserialize;
use serde::de::{self, Deserializer, SeqAccess, Visitor};
use toml::Spanned;

use crate::family::Family;
use crate::files::source;

pub use error::{Location, PolicyError};
use types::{
    AddressRef, Comment, FamilyChoice, HostAddress, InterfaceName, ListName, LogPrefix, LogRate,
    Network, Ports, Proto, RawRule,
};

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
    pub lists: BTreeMap<ListName, Spanned<Vec<Network>>>,
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
    /// The file and text the policy was read from, to locate later errors.
    #[serde(skip)]
    source: Source,
    /// Each list's networks of each family (IPv4, IPv6), duplicates removed, found once
    /// when the policy is read: expanding a reference for one family then costs what it
    /// yields, however long the list's part of the other family is.
    #[serde(skip)]
    by_family: BTreeMap<ListName, [Vec<Network>; 2]>,
}

#[derive(Debug, Default)]
struct Source {
    path: std::path::PathBuf,
    text: String,
}

/// `[interfaces]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Interfaces {
    /// Interfaces facing untrusted networks; `auto` (also when absent) takes those of
    /// the default routes when rendering.
    pub external: Option<Spanned<ExternalInterfaces>>,
    /// Interfaces that are Docker bridges (`docker0` and user networks `br-*`).
    #[serde(default = "default_bridges")]
    pub docker_bridges: Spanned<Vec<InterfaceName>>,
}

impl Default for Interfaces {
    fn default() -> Self {
        Interfaces {
            external: None,
            docker_bridges: default_bridges(),
        }
    }
}

fn default_bridges() -> Spanned<Vec<InterfaceName>> {
    let names = ["docker0", "br-+"]
        .iter()
        .filter_map(|name| name.parse().ok())
        .collect();
    Spanned::new(0..0, names)
}

/// `interfaces.external`: `"auto"`, one name, or a list of names.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum ExternalInterfaces {
    /// The interfaces of the default routes, looked up when rendering.
    #[default]
    Auto,
    /// These interfaces.
    Named(Vec<InterfaceName>),
}

impl<'de> Deserialize<'de> for ExternalInterfaces {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct ExternalVisitor;
        impl<'de> Visitor<'de> for ExternalVisitor {
            type Value = ExternalInterfaces;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("\"auto\", an interface name, or a list of interface names")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
                if v == "auto" {
                    return Ok(ExternalInterfaces::Auto);
                }
                let name = v.parse().map_err(E::custom)?;
                Ok(ExternalInterfaces::Named(vec![name]))
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
                let mut names = Vec::new();
                while let Some(name) = seq.next_element::<InterfaceName>()? {
                    names.push(name);
                }
                if names.is_empty() {
                    return Err(de::Error::custom(
                        "expected at least one interface name, or \"auto\", found an empty list",
                    ));
                }
                Ok(ExternalInterfaces::Named(names))
            }
        }
        deserializer.deserialize_any(ExternalVisitor)
    }
}

/// `[defaults]`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Defaults {
    /// What happens to denied packets.
    #[serde(default)]
    pub deny: DenyAction,
}

/// How denied packets are refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DenyAction {
    /// Answer with a TCP reset or ICMP port-unreachable: clients fail fast.
    #[default]
    Reject,
    /// Drop silently: clients time out.
    Drop,
}

/// `[host]`: the INPUT allowlist.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Host {
    /// Answer ICMP echo requests (ping).
    #[serde(default = "yes")]
    pub ping: bool,
    /// Whether containers may reach every host service or only the listed ones.
    #[serde(default)]
    pub containers: ContainerAccess,
    /// Services open on the host.
    #[serde(default)]
    pub services: Vec<Service>,
}

impl Default for Host {
    fn default() -> Self {
        Host {
            ping: true,
            containers: ContainerAccess::default(),
            services: Vec::new(),
        }
    }
}

fn yes() -> bool {
    true
}

/// `host.containers`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ContainerAccess {
    /// Containers reach only the services listed, like any other client.
    #[default]
    Listed,
    /// Containers reach every service on the host.
    All,
}

/// One `[[host.services]]` entry.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Service {
    /// Port(s) on the host.
    pub port: Ports,
    /// Protocol.
    #[serde(default)]
    pub proto: Proto,
    /// Allowed sources; anywhere when absent.
    pub from: Option<Spanned<Vec<Spanned<AddressRef>>>>,
    /// Only on these interfaces; any when empty.
    #[serde(default)]
    pub interfaces: Vec<Spanned<InterfaceName>>,
    /// Limit to one family.
    #[serde(default)]
    pub family: FamilyChoice,
    /// Shown in the rule and in `iptables -L`.
    pub comment: Option<Comment>,
}

/// `[outbound]`: the OUTPUT chain.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Outbound {
    /// Accept everything (default) or only what is listed.
    #[serde(default)]
    pub policy: OutboundPolicy,
    /// With an allowlist: still allow DNS, NTP, HTTP(S), DHCP and ICMP.
    #[serde(default = "yes")]
    pub essentials: bool,
    /// Allowed destinations.
    #[serde(default)]
    pub allow: Vec<OutboundRule>,
}

impl Default for Outbound {
    fn default() -> Self {
        Outbound {
            policy: OutboundPolicy::default(),
            essentials: true,
            allow: Vec::new(),
        }
    }
}

/// `outbound.policy`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum OutboundPolicy {
    /// The host may connect anywhere.
    #[default]
    Accept,
    /// The host may connect only where listed (plus essentials).
    Allowlist,
}

/// One `[[outbound.allow]]` entry.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OutboundRule {
    /// Destination port(s).
    pub port: Ports,
    /// Protocol.
    #[serde(default)]
    pub proto: Proto,
    /// Allowed destinations; anywhere when absent.
    pub to: Option<Spanned<Vec<Spanned<AddressRef>>>>,
    /// Limit to one family.
    #[serde(default)]
    pub family: FamilyChoice,
    /// Shown in the rule.
    pub comment: Option<Comment>,
}

/// `[docker]`: the DOCKER-USER chain.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Docker {
    /// Whether new connections from external interfaces to containers are denied
    /// unless listed under `published`.
    #[serde(default)]
    pub default: DockerDefault,
    /// Published ports that may be reached.
    #[serde(default)]
    pub published: Vec<Published>,
}

/// `docker.default`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DockerDefault {
    /// Deny what is not listed (recommended).
    #[default]
    Deny,
    /// Leave Docker's own decision in place (publishing means open to all).
    Allow,
}

/// One `[[docker.published]]` entry.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Published {
    /// The host port the client dialed (matched with `--ctorigdstport`).
    pub port: Ports,
    /// Protocol.
    #[serde(default)]
    pub proto: Proto,
    /// Allowed sources; anywhere when absent.
    pub from: Option<Spanned<Vec<Spanned<AddressRef>>>>,
    /// Only connections dialed to this host address (`--ctorigdst`).
    pub host_address: Option<Spanned<HostAddress>>,
    /// Only connections that arrive on these interfaces; any when empty. Names only
    /// ever narrow what an entry allows: a misspelt one allows nothing.
    #[serde(default)]
    pub interfaces: Vec<Spanned<InterfaceName>>,
    /// Limit to one family.
    #[serde(default)]
    pub family: FamilyChoice,
    /// Shown in the rule.
    pub comment: Option<Comment>,
}

/// `[log]`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Log {
    /// Log denied packets (rate-limited).
    #[serde(default)]
    pub enabled: bool,
    /// Start of the log prefix.
    #[serde(default)]
    pub prefix: LogPrefix,
    /// Average rate of log lines.
    #[serde(default)]
    pub rate: LogRate,
    /// Burst of log lines allowed before the rate applies (1-10000).
    pub burst: Option<Spanned<u32>>,
}

impl Log {
    /// The burst, defaulted.
    pub fn burst(&self) -> u32 {
        self.burst.as_ref().map_or(10, |b| *b.get_ref())
    }
}

/// One `[[raw]]` entry.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawEntry {
    /// Chain the rule is appended to, before that chain's final deny.
    pub chain: RawChain,
    /// Which families get the rule.
    #[serde(default)]
    pub family: FamilyChoice,
    /// The rule options, such as `-p udp --dport 51820 -j ACCEPT`.
    pub rule: Spanned<RawRule>,
    /// Shown in the rule.
    pub comment: Option<Comment>,
}

/// Chains a raw rule may go to: only the ones this tool owns.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum RawChain {
    /// INPUT.
    Input,
    /// OUTPUT.
    Output,
    /// DOCKER-USER.
    DockerUser,
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
        policy.by_family = policy
            .lists
            .iter()
            .map(|(name, networks)| {
                let mut seen = HashSet::new();
                let mut families: [Vec<Network>; 2] = Default::default();
                for network in networks.get_ref().iter().filter(|n| seen.insert(**n)) {
                    families[family_slot(network.family())].push(*network);
                }
                (name.clone(), families)
            })
            .collect();
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

    /// The file the policy was read from.
    pub fn path(&self) -> &Path {
        &self.source.path
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

    /// Cross-checks that need the whole file. Returns the span, field and message of the
    /// first problem.
    fn validate(&self) -> Result<(), (std::ops::Range<usize>, String, String)> {
        for (name, entries) in &self.lists {
            if entries.get_ref().is_empty() {
                return Err((
                    entries.span(),
                    format!("lists.{name}"),
                    "expected at least one address in the list, found none".to_owned(),
                ));
            }
        }
        if self.interfaces.docker_bridges.get_ref().is_empty() {
            return Err((
                self.interfaces.docker_bridges.span(),
                "interfaces.docker_bridges".to_owned(),
                "expected at least one bridge interface (the default is [\"docker0\", \"br-+\"])"
                    .to_owned(),
            ));
        }
        for (i, s) in self.host.services.iter().enumerate() {
            let field = format!("host.services[{i}]");
            self.check_rule_families(&field, "from", s.family, s.from.as_ref(), None)?;
        }
        for (i, r) in self.outbound.allow.iter().enumerate() {
            let field = format!("outbound.allow[{i}]");
            self.check_rule_families(&field, "to", r.family, r.to.as_ref(), None)?;
        }
        for (i, p) in self.docker.published.iter().enumerate() {
            let field = format!("docker.published[{i}]");
            self.check_rule_families(
                &field,
                "from",
                p.family,
                p.from.as_ref(),
                p.host_address.as_ref(),
            )?;
        }
        if let Some(burst) = &self.log.burst
            && !(1..=10000).contains(burst.get_ref())
        {
            return Err((
                burst.span(),
                "log.burst".to_owned(),
                format!(
                    "expected a burst from 1 to 10000, found {}",
                    burst.get_ref()
                ),
            ));
        }
        Ok(())
    }

    /// Checks that every list reference exists and that the rule can match in at least
    /// one family (a rule that silently vanishes from both files would surprise).
    fn check_rule_families(
        &self,
        field: &str,
        key: &str,
        choice: FamilyChoice,
        refs: Option<&Spanned<Vec<Spanned<AddressRef>>>>,
        host_address: Option<&Spanned<HostAddress>>,
    ) -> Result<(), (std::ops::Range<usize>, String, String)> {
        let mut families: BTreeSet<Family> = Family::ALL
            .into_iter()
            .filter(|f| choice.includes(*f))
            .collect();
        if let Some(refs) = refs {
            if refs.get_ref().is_empty() {
                return Err((
                    refs.span(),
                    format!("{field}.{key}"),
                    format!(
                        "expected at least one address or list; leave `{key}` out to mean anywhere"
                    ),
                ));
            }
            let mut source_families = BTreeSet::new();
            for (j, r) in refs.get_ref().iter().enumerate() {
                if let AddressRef::List(name) = r.get_ref()
                    && !self.lists.contains_key(name)
                {
                    let known: Vec<&str> = self.lists.keys().map(ListName::as_str).collect();
                    return Err((
                        r.span(),
                        format!("{field}.{key}[{j}]"),
                        format!(
                            "expected an address or a list under [lists], found unknown list \"{name}\" (known lists: {})",
                            if known.is_empty() {
                                "none".to_owned()
                            } else {
                                known.join(", ")
                            }
                        ),
                    ));
                }
                match r.get_ref() {
                    AddressRef::Net(net) => {
                        source_families.insert(net.family());
                    }
                    AddressRef::List(name) => source_families.extend(
                        Family::ALL
                            .into_iter()
                            .filter(|f| !self.list_networks(name, *f).is_empty()),
                    ),
                }
            }
            families = families.intersection(&source_families).copied().collect();
            if families.is_empty() {
                return Err((
                    refs.span(),
                    format!("{field}.{key}"),
                    format!(
                        "this rule can never match: its `{key}` addresses are all of a family that `family = \"{}\"` excludes",
                        family_choice_name(choice)
                    ),
                ));
            }
        }
        if let Some(addr) = host_address {
            let family = Family::of(&addr.get_ref().addr());
            if !families.contains(&family) {
                return Err((
                    addr.span(),
                    format!("{field}.host_address"),
                    format!(
                        "this rule can never match: host_address is {family} but the rule's sources or family allow only the other family"
                    ),
                ));
            }
        }
        Ok(())
    }

    /// The `[[raw]]` entry a rendered line came from, as an error pointing at its rule,
    /// for when the kernel refuses that line.
    pub fn raw_origin(&self, rendered_line: &str, why: &str) -> Option<PolicyError> {
        self.raw.iter().enumerate().find_map(|(i, entry)| {
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
                    .map(|l| l.get_ref().as_slice())
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
        let mut lists_seen = HashSet::new();
        let mut seen = HashSet::new();
        let mut out = Vec::new();
        for r in refs {
            let nets: &[Network] = match r.get_ref() {
                AddressRef::Net(net) if net.family() == family => std::slice::from_ref(net),
                AddressRef::Net(_) => &[],
                AddressRef::List(name) if lists_seen.insert(name) => {
                    self.list_networks(name, family)
                }
                AddressRef::List(_) => &[],
            };
            out.extend(nets.iter().filter(|n| seen.insert(**n)));
        }
        out
    }

    /// The networks of `family` in the list `name`, each once (none if there is no such
    /// list).
    pub(crate) fn list_networks(&self, name: &ListName, family: Family) -> &[Network] {
        self.by_family
            .get(name)
            .map_or(&[], |families| families[family_slot(family)].as_slice())
    }
}

/// Where a family's networks are kept in [`Policy`]'s per-family lists.
fn family_slot(family: Family) -> usize {
    match family {
        Family::Ipv4 => 0,
        Family::Ipv6 => 1,
    }
}

/// An interface name written in the policy, with where it was written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NamedInterface {
    /// The name (a trailing `+` matches a prefix).
    pub name: InterfaceName,
    /// The field it is in, such as `host.services[1].interfaces`.
    pub field: String,
    /// Its place in the file.
    pub span: std::ops::Range<usize>,
}

impl NamedInterface {
    /// Whether `interface` is one this name stands for.
    pub fn matches(&self, interface: &str) -> bool {
        self.name.matches(interface)
    }
}

impl Policy {
    /// Every interface the policy names outside `docker_bridges` (Docker creates those
    /// when it starts, so their absence says nothing): the external interfaces and the
    /// interfaces service and published-port entries are limited to.
    pub fn named_interfaces(&self) -> Vec<NamedInterface> {
        let mut named = Vec::new();
        if let Some(external) = &self.interfaces.external
            && let ExternalInterfaces::Named(names) = external.get_ref()
        {
            named.extend(names.iter().map(|name| NamedInterface {
                name: name.clone(),
                field: "interfaces.external".to_owned(),
                span: external.span(),
            }));
        }
        let mut add = |entries: Vec<(String, &Vec<Spanned<InterfaceName>>)>| {
            for (field, interfaces) in entries {
                named.extend(interfaces.iter().map(|name| NamedInterface {
                    name: name.get_ref().clone(),
                    field: field.clone(),
                    span: name.span(),
                }));
            }
        };
        add(self
            .host
            .services
            .iter()
            .enumerate()
            .map(|(i, s)| (format!("host.services[{i}].interfaces"), &s.interfaces))
            .collect());
        add(self
            .docker
            .published
            .iter()
            .enumerate()
            .map(|(i, p)| (format!("docker.published[{i}].interfaces"), &p.interfaces))
            .collect());
        named
    }

    /// The interfaces the policy names that match none of `existing` (the host's
    /// interfaces), each as a located message saying which interfaces do exist. A name
    /// can only narrow where a rule applies, so a missing one never opens anything; it
    /// means a rule does not do what the admin wrote.
    pub fn missing_interfaces(&self, existing: &[String]) -> Vec<PolicyError> {
        let mut known: Vec<&str> = existing.iter().map(String::as_str).collect();
        known.sort_unstable();
        let missing: Vec<NamedInterface> = self
            .named_interfaces()
            .into_iter()
            .filter(|named| !existing.iter().any(|e| named.matches(e)))
            .collect();
        self.reported(&missing, |named| {
            let message = if named.name.as_str().ends_with('+') {
                format!(
                    "no interface on this host matches {} (interfaces here: {})",
                    named.name,
                    known.join(", ")
                )
            } else {
                format!(
                    "{} does not exist on this host (interfaces here: {})",
                    named.name,
                    known.join(", ")
                )
            };
            (named.span.clone(), named.field.clone(), message)
        })
    }

    /// `problems` as located errors: the first [`MAX_REPORTED`] one by one, then one
    /// more at the next saying how many were left out. Each error quotes its line of the
    /// policy, so a file naming a million missing interfaces (on one line of 4 MiB)
    /// would otherwise cost a million copies of that line.
    fn reported<T>(
        &self,
        problems: &[T],
        describe: impl Fn(&T) -> (std::ops::Range<usize>, String, String),
    ) -> Vec<PolicyError> {
        let mut errors: Vec<PolicyError> = problems
            .iter()
            .take(MAX_REPORTED)
            .map(|problem| {
                let (span, field, message) = describe(problem);
                self.error_at(span, &field, message)
            })
            .collect();
        if let Some(next) = problems.get(MAX_REPORTED) {
            let (span, field, _) = describe(next);
            errors.push(self.error_at(
                span,
                &field,
                format!(
                    "and {} more like the above, not listed one by one",
                    problems.len() - MAX_REPORTED
                ),
            ));
        }
        errors
    }
}

/// The most problems of one kind that [`Policy::missing_interfaces`] and
/// [`Policy::bridges_matching_uplinks`] list one by one.
pub const MAX_REPORTED: usize = 20;

impl Policy {
    /// Whether `interface` is one of the policy's Docker bridges.
    pub fn is_docker_bridge(&self, interface: &str) -> bool {
        self.interfaces
            .docker_bridges
            .get_ref()
            .iter()
            .any(|bridge| bridge.matches(interface))
    }

    /// The `docker_bridges` patterns that match one of `uplinks` (interfaces that face
    /// the outside: external or carrying a default route), each as a located message.
    /// Such an interface would be treated as a container network (`-o` denies,
    /// `host.containers = "all"`), which it is not.
    pub fn bridges_matching_uplinks(&self, uplinks: &[String]) -> Vec<PolicyError> {
        let mut found = Vec::new();
        for (i, bridge) in self.interfaces.docker_bridges.get_ref().iter().enumerate() {
            found.extend(
                uplinks
                    .iter()
                    .filter(|u| bridge.matches(u))
                    .map(|uplink| (i, bridge, uplink)),
            );
        }
        self.reported(&found, |(i, bridge, uplink)| {
            (
                self.interfaces.docker_bridges.span(),
                format!("interfaces.docker_bridges[{i}]"),
                format!(
                    "{bridge} matches {uplink}, which faces the outside (external or default route), not a Docker network: name Docker's bridges more narrowly (Docker names its networks' bridges br- and 12 hex digits)"
                ),
            )
        })
    }
}

fn family_choice_name(choice: FamilyChoice) -> &'static str {
    match choice {
        FamilyChoice::Both => "both",
        FamilyChoice::Ipv4 => "ipv4",
        FamilyChoice::Ipv6 => "ipv6",
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
        let nets: Vec<String> = (0..3000)
            .map(|i| format!("\"10.0.{}.{}/32\"", i / 256, i % 256))
            .collect();
        let refs = vec!["\"big\""; 4000].join(", ");
        let text = format!(
            "[lists]\nbig = [{}, \"10.0.0.0/32\"]\n[[host.services]]\nport = 22\nfrom = [{refs}, \"192.0.2.1\", \"10.0.0.5/32\"]\n",
            nets.join(", ")
        );
        let policy = parse(&text).expect("3,001 rules fit in a file");
        let from = policy.host.services[0].from.as_ref().expect("from");
        let expanded = policy.expand(from.get_ref());
        assert_eq!(expanded.len(), 3001, "each network once, in order");
        assert_eq!(expanded[0].to_string(), "10.0.0.0/32");
        assert_eq!(expanded[3000].to_string(), "192.0.2.1/32");
        // Named 4,000 times, the list counts once: eight such entries fit.
        let ten = format!(
            "{text}{}",
            format!("[[host.services]]\nport = 80\nfrom = [{refs}]\n").repeat(7)
        );
        assert!(parse(&ten).is_ok());
        // One more entry does not: refused at the `from` of the (first) entry with the
        // most rules, with the exact count.
        let more = format!("{ten}[[host.services]]\nport = 443\nfrom = [\"big\"]\n");
        let (line, column, field, message) = error_of(&more);
        assert_eq!(field.as_deref(), Some("host.services[0]"));
        assert_eq!((line, column), (5, 8));
        assert!(
            message.contains("expected at most 24900 rules from the policy in the IPv4 file (a file holds 25000, 100 of them the template's own), found a policy that renders 27001 (this entry 3001: 1 port range(s) x 1 interface(s) x 3001 IPv4 address(es))"),
            "{message}"
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
