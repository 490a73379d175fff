//! The ruleset model the walk reads: one family's tables, each with its chains' rules
//! (parsed by [`crate::iptables::rule`]) and the policies of its built-in chains, built
//! once from an `iptables-save` dump.

use std::collections::HashMap;
use std::net::IpAddr;

use crate::iptables::dump::Dump;
use crate::iptables::rule::{self, Match, Rule};

/// A parsed ruleset of one family: every table's chains, rules and policies.
#[derive(Debug, Clone, Default)]
pub struct Ruleset {
    tables: HashMap<String, ParsedTable>,
}

#[derive(Debug, Clone, Default)]
struct ParsedTable {
    policies: HashMap<String, Option<String>>,
    chains: HashMap<String, Vec<Rule>>,
}

impl Ruleset {
    /// Parses every rule of a dump.
    pub fn new(dump: &Dump) -> Ruleset {
        let mut tables = HashMap::new();
        for table in &dump.tables {
            let mut parsed = ParsedTable::default();
            for chain in &table.chains {
                parsed
                    .policies
                    .insert(chain.name.clone(), chain.policy.clone());
                parsed.chains.entry(chain.name.clone()).or_default();
            }
            for line in &table.rules {
                parsed
                    .chains
                    .entry(line.chain.clone())
                    .or_default()
                    .push(rule::parse(line));
            }
            tables.insert(table.name.clone(), parsed);
        }
        Ruleset { tables }
    }

    /// The rules of `table`'s `chain`, in order (empty when absent).
    pub fn rules(&self, table: &str, chain: &str) -> &[Rule] {
        self.tables
            .get(table)
            .and_then(|t| t.chains.get(chain))
            .map_or(&[], Vec::as_slice)
    }

    /// Every source address range any rule of any table matches on (`-s`,
    /// `--ctorigsrc`, `--src-range`), as (first, last): where the answer to "who gets
    /// through" can change, for an audit that cuts the address space there.
    pub fn source_ranges(&self) -> Vec<(IpAddr, IpAddr)> {
        let mut ranges = Vec::new();
        for table in self.tables.values() {
            for rules in table.chains.values() {
                for condition in rules.iter().flat_map(|r| &r.matches) {
                    match condition {
                        Match::Source(n) | Match::CtOrigSource(n) => {
                            ranges.push((n.value.network(), n.value.broadcast()));
                        }
                        Match::SourceRange(n) => ranges.push(n.value),
                        _ => {}
                    }
                }
            }
        }
        ranges
    }

    /// Names of the chains of `table`.
    pub fn chains(&self, table: &str) -> Vec<&str> {
        let mut names: Vec<&str> = self
            .tables
            .get(table)
            .map(|t| t.chains.keys().map(String::as_str).collect())
            .unwrap_or_default();
        names.sort_unstable();
        names
    }

    /// `table` is in the ruleset.
    pub(super) fn has_table(&self, table: &str) -> bool {
        self.tables.contains_key(table)
    }

    /// `table` has a chain called `chain` (declared or appended to).
    pub(super) fn has_chain(&self, table: &str, chain: &str) -> bool {
        self.tables
            .get(table)
            .is_some_and(|t| t.chains.contains_key(chain))
    }

    /// The policy of `table`'s `chain` (None for a user chain or one not declared).
    pub(super) fn policy(&self, table: &str, chain: &str) -> Option<&str> {
        self.tables
            .get(table)
            .and_then(|t| t.policies.get(chain))
            .and_then(Option::as_deref)
    }
}
