//! The cross-checks that need the whole policy, run once when it is read: `[[raw]]`
//! rules in their backend's syntax, lists are not empty, every list reference exists, every rule can match in at least one family, and
//! the few numeric bounds serde cannot express. Each returns the span, field and message
//! of the first problem, which [`super::Policy::parse`] turns into a located error.

use std::collections::BTreeSet;

use toml::Spanned;

use super::types::{AddressRef, FamilyChoice, HostAddress, ListName};
use super::{BackendKind, Policy};
use crate::family::Family;

/// A problem found by a check: where it is, the field, and what was expected.
pub(super) type Problem = (std::ops::Range<usize>, String, String);

impl Policy {
    /// Cross-checks that need the whole file. Returns the span, field and message of the
    /// first problem.
    pub(super) fn validate(&self) -> Result<(), Problem> {
        // First, as when the rule text was checked while it was read.
        self.check_raw_rules()?;
        for (name, entries) in &self.lists {
            if entries.get_ref().networks.is_empty() {
                let found = match &entries.get_ref().file {
                    Some(file) => format!("found none in {}", file.path().display()),
                    None => "found none".to_owned(),
                };
                return Err((
                    entries.span(),
                    format!("lists.{name}"),
                    format!("expected at least one address in the list, {found}"),
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

    /// Checks each `[[raw]]` rule in the syntax of the backend it names: only that
    /// backend knows what is one rule in a chain this tool owns.
    fn check_raw_rules(&self) -> Result<(), Problem> {
        for (i, entry) in self.raw.iter().enumerate() {
            let text = entry.rule.get_ref().as_str();
            let checked = match entry.backend {
                BackendKind::Iptables => crate::iptables::raw::check_rule(text),
            };
            checked.map_err(|message| (entry.rule.span(), format!("raw[{i}].rule"), message))?;
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
    ) -> Result<(), Problem> {
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
}

fn family_choice_name(choice: FamilyChoice) -> &'static str {
    match choice {
        FamilyChoice::Both => "both",
        FamilyChoice::Ipv4 => "ipv4",
        FamilyChoice::Ipv6 => "ipv6",
    }
}
