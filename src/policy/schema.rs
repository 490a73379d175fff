//! The policy's sections as serde reads them: one struct or enum per table and entry of
//! the file (`[interfaces]`, `[defaults]`, `[host]`, `[outbound]`, `[docker]`, `[log]`,
//! `[[raw]]`), their defaults, and the few hand-written deserializers. Each field is a
//! validated type from [`super::types`]; the cross-checks that need the whole file are in
//! [`super::checks`].

use std::fmt;

use serde::Deserialize;
use serde::de::{self, Deserializer, SeqAccess, Visitor};
use toml::Spanned;

use super::types::{
    AddressRef, Comment, FamilyChoice, HostAddress, InterfaceName, LogPrefix, LogRate, Ports,
    Proto, RawRule,
};

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
    pub port: Spanned<Ports>,
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
    pub port: Spanned<Ports>,
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

/// `[lints]`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LintSettings {
    /// Warnings not to report, by name; an error cannot be skipped.
    #[serde(default)]
    pub skip: Vec<crate::lints::SkippableLint>,
}

/// One `[[raw]]` entry.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawEntry {
    /// The backend whose syntax the rule is written in; only that backend renders it.
    #[serde(default)]
    pub backend: BackendKind,
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

/// A firewall backend: what a `[[raw]]` rule's text is written for. Each backend is
/// handed only its own raw rules.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum BackendKind {
    /// iptables (`iptables-restore` files): the default, and so far the only backend.
    #[default]
    Iptables,
}

impl BackendKind {
    /// Every backend, as the policy spells it.
    const NAMES: [(&'static str, BackendKind); 1] = [("iptables", BackendKind::Iptables)];
}

impl<'de> Deserialize<'de> for BackendKind {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct BackendVisitor;
        impl Visitor<'_> for BackendVisitor {
            type Value = BackendKind;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("`iptables` (the only backend so far)")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<BackendKind, E> {
                BackendKind::NAMES
                    .iter()
                    .find(|(name, _)| *name == v)
                    .map(|(_, backend)| *backend)
                    .ok_or_else(|| {
                        E::custom(format!(
                            "expected `iptables` (the only backend so far), found {v:?}"
                        ))
                    })
            }
        }
        deserializer.deserialize_str(BackendVisitor)
    }
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
