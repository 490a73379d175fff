//! The interface names a policy writes, and how they meet the host's: which names the
//! policy uses outside `docker_bridges`, which of them the host lacks, whether an
//! interface is one of the policy's Docker bridges, and which bridge patterns match an
//! uplink. Problems are reported as located errors, the first [`MAX_REPORTED`] of a kind
//! one by one.

use toml::Spanned;

use super::schema::ExternalInterfaces;
use super::types::InterfaceName;
use super::{Policy, PolicyError};

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
