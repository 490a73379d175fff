//! The lints: the mistakes admins actually make with Docker and a firewall, each with a
//! name, a severity, what it finds, why that matters and how to fix it. `check` runs the
//! ones a policy and the host can show before anything is loaded; `status` (and every
//! command that ends with its in-force check) runs them all.
//!
//! This file owns the registry ([`Lint`], listed by `iptables-ctl lints`), what a lint
//! reports ([`Finding`]) and which may be skipped ([`Skips`]): a warning may be skipped
//! by name (`--skip`, or `skip` under `[lints]` in the policy); an error may not, since
//! it says the rules do not protect what the policy says, and "in force" is never said
//! past a check that was not made. `facts.rs` gathers what the lints judge (the policy,
//! the host's interfaces, what Docker publishes, the live rules) and `judge.rs` judges
//! it, on plain values.

mod facts;
mod judge;

use std::fmt;
use std::str::FromStr;

use serde::Serialize;

pub(crate) use facts::Facts;
pub(crate) use judge::judge;

/// How much a finding matters.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    /// A likely mistake: something in the policy or on the host does not do what its
    /// author meant, but nothing is open that the policy refuses. `status` can still
    /// say "in force".
    Warning,
    /// The rules do not protect what the policy says: `status` is not in force.
    Error,
}

impl fmt::Display for Severity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Severity::Warning => "warning",
            Severity::Error => "error",
        })
    }
}

/// Where a lint runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Scope {
    /// `check` and `status`: the policy and the host show it before anything loads.
    CheckAndStatus,
    /// `status` only: it is about the rules in force.
    Status,
}

/// Every lint, in the order they are listed and reported.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Lint {
    /// A host service or INPUT rule on a port Docker publishes.
    PublishedPortInInput,
    /// A `--dport` on a published port in DOCKER-USER.
    DportInDockerUser,
    /// An interface the policy names that this host does not have.
    MissingInterface,
    /// A `docker_bridges` pattern that matches an interface facing the outside.
    BridgePatternMatchesUplink,
    /// IPv6 published ports with only IPv4 sources allowed.
    Ipv6PublishedWithoutIpv6Sources,
    /// The rules load into one iptables variant, Docker's chains are in the other.
    IptablesVariantMismatch,
    /// Rules left in the iptables variant nobody uses.
    RulesInOtherVariant,
    /// FORWARD does not send traffic to DOCKER-USER first.
    ForwardNotFirst,
    /// The owned chains hold other rules than the rendered ones.
    Drift,
    /// A Docker network whose bridge is outside `docker_bridges`.
    BridgeOutsideDockerBridges,
}

impl Lint {
    /// Every lint.
    pub const ALL: [Lint; 10] = [
        Lint::PublishedPortInInput,
        Lint::DportInDockerUser,
        Lint::MissingInterface,
        Lint::BridgePatternMatchesUplink,
        Lint::Ipv6PublishedWithoutIpv6Sources,
        Lint::IptablesVariantMismatch,
        Lint::RulesInOtherVariant,
        Lint::ForwardNotFirst,
        Lint::Drift,
        Lint::BridgeOutsideDockerBridges,
    ];

    /// Its name, as `--skip` and `[lints] skip` take it.
    pub fn name(self) -> &'static str {
        match self {
            Lint::PublishedPortInInput => "published-port-in-input",
            Lint::DportInDockerUser => "dport-in-docker-user",
            Lint::MissingInterface => "missing-interface",
            Lint::BridgePatternMatchesUplink => "bridge-pattern-matches-uplink",
            Lint::Ipv6PublishedWithoutIpv6Sources => "ipv6-published-without-ipv6-sources",
            Lint::IptablesVariantMismatch => "iptables-variant-mismatch",
            Lint::RulesInOtherVariant => "rules-in-other-variant",
            Lint::ForwardNotFirst => "forward-not-first",
            Lint::Drift => "drift",
            Lint::BridgeOutsideDockerBridges => "bridge-outside-docker-bridges",
        }
    }

    /// How much it matters.
    pub fn severity(self) -> Severity {
        match self {
            Lint::PublishedPortInInput
            | Lint::DportInDockerUser
            | Lint::Ipv6PublishedWithoutIpv6Sources
            | Lint::RulesInOtherVariant => Severity::Warning,
            Lint::MissingInterface
            | Lint::BridgePatternMatchesUplink
            | Lint::IptablesVariantMismatch
            | Lint::ForwardNotFirst
            | Lint::Drift
            | Lint::BridgeOutsideDockerBridges => Severity::Error,
        }
    }

    /// Where it runs.
    pub fn scope(self) -> Scope {
        match self {
            Lint::ForwardNotFirst | Lint::Drift => Scope::Status,
            _ => Scope::CheckAndStatus,
        }
    }

    /// What it finds, in one line.
    pub fn finds(self) -> &'static str {
        match self {
            Lint::PublishedPortInInput => {
                "a [[host.services]] entry, an input [[raw]] rule or a live INPUT rule on a port Docker publishes"
            }
            Lint::DportInDockerUser => {
                "a rule in DOCKER-USER matching --dport on a port Docker publishes to another container port"
            }
            Lint::MissingInterface => "an interface the policy names that this host does not have",
            Lint::BridgePatternMatchesUplink => {
                "a docker_bridges pattern that matches an interface facing the outside"
            }
            Lint::Ipv6PublishedWithoutIpv6Sources => {
                "a port Docker publishes on IPv6 whose [[docker.published]] entries allow only IPv4 sources"
            }
            Lint::IptablesVariantMismatch => {
                "the rules load into one iptables variant (nf_tables or legacy) while Docker's chains are in the other"
            }
            Lint::RulesInOtherVariant => {
                "rules left in the iptables variant neither iptables-ctl nor Docker uses"
            }
            Lint::ForwardNotFirst => "FORWARD does not send forwarded traffic to DOCKER-USER first",
            Lint::Drift => {
                "the chains iptables-ctl owns (INPUT, OUTPUT, DOCKER-USER) hold other rules than the rendered ones"
            }
            Lint::BridgeOutsideDockerBridges => {
                "a Docker network whose bridge is outside interfaces.docker_bridges"
            }
        }
    }

    /// Why it matters.
    pub fn why(self) -> &'static str {
        match self {
            Lint::PublishedPortInInput => {
                "Docker DNATs connections to a published port before INPUT is consulted, so they cross FORWARD and DOCKER-USER instead: the INPUT rule decides nothing for them (and where docker-proxy serves the port, it widens who may reach it beyond [[docker.published]])"
            }
            Lint::DportInDockerUser => {
                "DOCKER-USER sees packets after Docker's DNAT, so --dport matches the container's port, not the one the client dialed: the rule never sees the connections meant for it"
            }
            Lint::MissingInterface => {
                "a rule limited to an interface that does not exist matches nothing: it does not do what its author wrote"
            }
            Lint::BridgePatternMatchesUplink => {
                "interfaces matching docker_bridges are treated as container networks: new connections routed out of them are refused, so an uplink matching the pattern loses routed traffic and the policy's meaning"
            }
            Lint::Ipv6PublishedWithoutIpv6Sources => {
                "the clients allowed are all IPv4, so every IPv6 client of the port is refused: usually IPv6 was forgotten, not meant"
            }
            Lint::IptablesVariantMismatch => {
                "Docker's FORWARD jump to DOCKER-USER is in the variant Docker uses; rules loaded into the other one are never reached by forwarded traffic, so published ports are not filtered"
            }
            Lint::RulesInOtherVariant => {
                "the kernel runs both variants' rules: a DROP or REJECT left there refuses what the policy allows, and nobody sees it in iptables -L"
            }
            Lint::ForwardNotFirst => {
                "whatever FORWARD decides before the jump to DOCKER-USER never meets the policy: an ACCEPT there opens published ports to everyone"
            }
            Lint::Drift => {
                "rules another tool or a person added to the owned chains decide before or beside the policy's, and are lost at the next reload: the host is not protected as the policy says"
            }
            Lint::BridgeOutsideDockerBridges => {
                "new connections routed straight to the containers of that network (without DNAT) are refused only on the bridges docker_bridges names"
            }
        }
    }

    /// How to fix it, in general (each finding says it for its case).
    pub fn fix(self) -> &'static str {
        match self {
            Lint::PublishedPortInInput => {
                "list the port under [[docker.published]] with the sources it allows, and remove it from INPUT"
            }
            Lint::DportInDockerUser => {
                "match the port the client dialed: list it under [[docker.published]], or in a raw rule use -m conntrack --ctorigdstport PORT"
            }
            Lint::MissingInterface => "correct the name, or remove it from the policy",
            Lint::BridgePatternMatchesUplink => {
                "narrow interfaces.docker_bridges so that it names only Docker's bridges"
            }
            Lint::Ipv6PublishedWithoutIpv6Sources => {
                "add the IPv6 addresses of those clients to `from` (or to a list it names), or write `family = \"ipv4\"` in the entry to make IPv4-only deliberate"
            }
            Lint::IptablesVariantMismatch => {
                "switch iptables to Docker's variant (update-alternatives --set iptables ..., and ip6tables), restart Docker, then `iptables-ctl reload`"
            }
            Lint::RulesInOtherVariant => {
                "flush the other variant's tables (iptables-legacy -F, or iptables-nft -F) once nothing uses them, or disable what loads them"
            }
            Lint::ForwardNotFirst => "`iptables-ctl reload` puts the jump first",
            Lint::Drift => {
                "express what the extra rules (or set members) do in the policy ([[host.services]], [[docker.published]], [[raw]], or the list's file), then `iptables-ctl reload` loads the rendered rules and sets again"
            }
            Lint::BridgeOutsideDockerBridges => {
                "add the bridge (or a pattern for it) to docker_bridges"
            }
        }
    }
}

impl fmt::Display for Lint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl Serialize for Lint {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.name())
    }
}

impl FromStr for Lint {
    type Err = String;

    fn from_str(text: &str) -> Result<Lint, String> {
        Lint::ALL
            .into_iter()
            .find(|lint| lint.name() == text)
            .ok_or_else(|| {
                let names: Vec<&str> = Lint::ALL.iter().map(|l| l.name()).collect();
                format!(
                    "expected the name of a lint ({}), found {text:?}",
                    names.join(", ")
                )
            })
    }
}

/// A lint that may be skipped: a warning. Parsed from its name (`--skip`, and the
/// policy's `[lints] skip`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SkippableLint(pub Lint);

impl FromStr for SkippableLint {
    type Err = String;

    fn from_str(text: &str) -> Result<SkippableLint, String> {
        let lint: Lint = text.parse()?;
        match lint.severity() {
            Severity::Warning => Ok(SkippableLint(lint)),
            Severity::Error => Err(format!(
                "lint {lint} cannot be skipped: it is an error (the rules do not protect what the policy says when it fires), and \"in force\" is never said past a check that was not made; fix the cause instead: {}",
                lint.fix()
            )),
        }
    }
}

impl<'de> serde::Deserialize<'de> for SkippableLint {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

/// What one lint found, once.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Finding {
    /// The lint.
    pub lint: Lint,
    /// Its severity.
    pub severity: Severity,
    /// What is wrong, naming the file and field, rule or interface.
    pub message: String,
    /// Why it matters.
    pub why: &'static str,
    /// How to fix this case.
    pub fix: String,
}

impl Finding {
    /// A finding of `lint` with `message`, fixed as the lint says in general.
    pub fn new(lint: Lint, message: impl Into<String>) -> Finding {
        Finding::with_fix(lint, message, lint.fix())
    }

    /// A finding of `lint` with `message` and a fix of its own.
    pub fn with_fix(lint: Lint, message: impl Into<String>, fix: impl Into<String>) -> Finding {
        Finding {
            lint,
            severity: lint.severity(),
            message: message.into(),
            why: lint.why(),
            fix: fix.into(),
        }
    }

    /// One line: the message and the fix, for a list of problems.
    pub fn line(&self) -> String {
        format!("{}: {} [{}]", self.message, self.fix, self.lint)
    }
}

impl fmt::Display for Finding {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}[{}]: {}\n  why: {}\n  fix: {}",
            self.severity, self.lint, self.message, self.why, self.fix
        )
    }
}

/// The lints not to run (only warnings can be here).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Skips(Vec<Lint>);

impl Skips {
    /// Skips `lints`.
    pub fn new(lints: impl IntoIterator<Item = SkippableLint>) -> Skips {
        let mut lints: Vec<Lint> = lints.into_iter().map(|s| s.0).collect();
        lints.sort();
        lints.dedup();
        Skips(lints)
    }

    /// These skips and `more`.
    pub fn and(&self, more: &Skips) -> Skips {
        Skips::new(self.0.iter().chain(&more.0).map(|l| SkippableLint(*l)))
    }

    /// `lint` is skipped.
    pub fn skips(&self, lint: Lint) -> bool {
        self.0.contains(&lint)
    }

    /// The lints skipped.
    pub fn lints(&self) -> &[Lint] {
        &self.0
    }
}

/// One entry of `iptables-ctl lints`, also its `--json` form.
#[derive(Debug, Clone, Serialize)]
pub struct LintInfo {
    /// The name.
    pub name: &'static str,
    /// Its severity.
    pub severity: Severity,
    /// Where it runs.
    pub scope: Scope,
    /// Whether `--skip` and `[lints] skip` take it.
    pub skippable: bool,
    /// What it finds.
    pub finds: &'static str,
    /// Why it matters.
    pub why: &'static str,
    /// How to fix it.
    pub fix: &'static str,
}

/// The registry, as `iptables-ctl lints` lists it.
pub fn registry() -> Vec<LintInfo> {
    Lint::ALL
        .into_iter()
        .map(|lint| LintInfo {
            name: lint.name(),
            severity: lint.severity(),
            scope: lint.scope(),
            skippable: lint.severity() == Severity::Warning,
            finds: lint.finds(),
            why: lint.why(),
            fix: lint.fix(),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_lint_is_named_once_and_reads_back_from_its_name() {
        let mut names: Vec<&str> = Lint::ALL.iter().map(|l| l.name()).collect();
        for lint in Lint::ALL {
            assert_eq!(lint.name().parse::<Lint>(), Ok(lint));
        }
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), Lint::ALL.len());
        let err = "drfit".parse::<Lint>().unwrap_err();
        assert!(
            err.contains("expected the name of a lint") && err.contains("\"drfit\""),
            "{err}"
        );
    }

    /// A warning may be skipped; an error never: "in force" is not said past a check
    /// that was not made.
    #[test]
    fn only_warnings_can_be_skipped() {
        assert!("rules-in-other-variant".parse::<SkippableLint>().is_ok());
        let err = "drift".parse::<SkippableLint>().unwrap_err();
        assert!(err.contains("lint drift cannot be skipped"), "{err}");
        for info in registry() {
            assert_eq!(
                info.name.parse::<SkippableLint>().is_ok(),
                info.skippable,
                "{}",
                info.name
            );
        }
    }
}
