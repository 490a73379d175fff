//! `iptables-save` / `ip6tables-save` dumps: parsed into tables, chain declarations and
//! rule lines (each a list of words, quote-aware), and printed back in the same
//! spelling. Words remember whether they were quoted, because iptables-save quotes only
//! the strings it saves as strings (comments, log prefixes): `--comment "a.b"` and
//! `-s 10.0.0.0/8` must both come back as they were. The words are read by the one
//! quote-aware reader, [`crate::iptables::words`].

use std::fmt;

pub use crate::iptables::words::{Word, split_words};

/// A chain declared in a table (`:NAME POLICY [packets:bytes]`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChainDecl {
    /// The chain's name.
    pub name: String,
    /// Its policy (`ACCEPT`, `DROP`), or None for a user chain (`-`).
    pub policy: Option<String>,
    /// The counters as written (`[0:0]`), if any.
    pub counters: Option<String>,
}

/// One `-A CHAIN ...` line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RuleLine {
    /// 1-based line number in the dump.
    pub line: usize,
    /// Leading `[packets:bytes]` (iptables-save -c), if any.
    pub counters: Option<String>,
    /// The chain it is appended to.
    pub chain: String,
    /// The words after `-A CHAIN`.
    pub words: Vec<Word>,
}

impl RuleLine {
    /// The rule as iptables-save prints it (`-A CHAIN ...`).
    pub fn text(&self) -> String {
        // A chain name that would not read back as one word (`""`, say) is quoted, so
        // `-A "" -d ...` is not printed as `-A  -d ...`, which reads as chain `-d`.
        let plain = !self.chain.is_empty()
            && !self
                .chain
                .contains(|c: char| c.is_whitespace() || c == '"' || c == '\\');
        let chain = Word {
            text: self.chain.clone(),
            quoted: !plain,
        };
        let mut text = format!("-A {chain}");
        for word in &self.words {
            text.push(' ');
            text.push_str(&word.to_string());
        }
        text
    }
}

/// One table of a dump.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Table {
    /// `filter`, `nat`, `raw`, `mangle`, `security`.
    pub name: String,
    /// Declared chains, in order.
    pub chains: Vec<ChainDecl>,
    /// Rules, in order.
    pub rules: Vec<RuleLine>,
}

impl Table {
    /// The declaration of `chain`.
    pub fn chain(&self, chain: &str) -> Option<&ChainDecl> {
        self.chains.iter().find(|c| c.name == chain)
    }

    /// The rules of `chain`, in order.
    pub fn rules_of<'a>(&'a self, chain: &'a str) -> impl Iterator<Item = &'a RuleLine> + 'a {
        self.rules.iter().filter(move |r| r.chain == chain)
    }

    /// What the table holds for `chains`, as lines: each declaration with its policy
    /// but without counters (`:INPUT DROP`), then each rule (`-A INPUT ...`), in dump
    /// order. Two tables with equal results hold the same rules in those chains.
    pub fn chain_lines(&self, chains: &[&str]) -> Vec<String> {
        let declarations = self
            .chains
            .iter()
            .filter(|c| chains.contains(&c.name.as_str()))
            .map(|c| format!(":{} {}", c.name, c.policy.as_deref().unwrap_or("-")));
        let rules = self
            .rules
            .iter()
            .filter(|r| chains.contains(&r.chain.as_str()))
            .map(RuleLine::text);
        declarations.chain(rules).collect()
    }
}

/// A whole dump.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Dump {
    /// Tables in the order they appear.
    pub tables: Vec<Table>,
}

impl Dump {
    /// The table called `name`.
    pub fn table(&self, name: &str) -> Option<&Table> {
        self.tables.iter().find(|t| t.name == name)
    }

    /// Some table declares a chain called `chain`.
    pub fn declares(&self, chain: &str) -> bool {
        self.tables.iter().any(|t| t.chain(chain).is_some())
    }
}

impl fmt::Display for Dump {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for table in &self.tables {
            writeln!(f, "*{}", table.name)?;
            for chain in &table.chains {
                write!(
                    f,
                    ":{} {}",
                    chain.name,
                    chain.policy.as_deref().unwrap_or("-")
                )?;
                if let Some(counters) = &chain.counters {
                    write!(f, " {counters}")?;
                }
                writeln!(f)?;
            }
            for rule in &table.rules {
                if let Some(counters) = &rule.counters {
                    write!(f, "{counters} ")?;
                }
                writeln!(f, "{}", rule.text())?;
            }
            writeln!(f, "COMMIT")?;
        }
        Ok(())
    }
}

/// Why a dump could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("line {line}: {message}")]
pub struct DumpError {
    /// 1-based line number.
    pub line: usize,
    /// What was wrong.
    pub message: String,
}

/// Parses a dump. Comment lines (`#`) and blank lines are skipped.
pub fn parse(text: &str) -> Result<Dump, DumpError> {
    let mut dump = Dump::default();
    let mut current: Option<Table> = None;
    for (index, raw) in text.lines().enumerate() {
        let line = index + 1;
        let error = |message: String| DumpError { line, message };
        let trimmed = raw.trim();
        if trimmed.is_empty() || trimmed.starts_with('#') {
            continue;
        }
        if let Some(name) = trimmed.strip_prefix('*') {
            if let Some(open) = &current {
                return Err(error(format!(
                    "table {name} starts before table {} was committed",
                    open.name
                )));
            }
            current = Some(Table {
                name: name.to_owned(),
                chains: Vec::new(),
                rules: Vec::new(),
            });
            continue;
        }
        let Some(table) = current.as_mut() else {
            return Err(error(format!(
                "`{trimmed}` is outside any table (expected `*filter` or another table first)"
            )));
        };
        if trimmed == "COMMIT" {
            if let Some(done) = current.take() {
                dump.tables.push(done);
            }
            continue;
        }
        if let Some(decl) = trimmed.strip_prefix(':') {
            let mut parts = decl.split_whitespace();
            let (Some(name), Some(policy)) = (parts.next(), parts.next()) else {
                return Err(error(format!(
                    "chain declaration `{trimmed}` needs a name and a policy"
                )));
            };
            table.chains.push(ChainDecl {
                name: name.to_owned(),
                policy: (policy != "-").then(|| policy.to_owned()),
                counters: parts.next().map(str::to_owned),
            });
            continue;
        }
        let (counters, rest) = match trimmed.strip_prefix('[') {
            Some(after) => match after.split_once(']') {
                Some((inner, rest)) => (Some(format!("[{inner}]")), rest.trim_start()),
                None => return Err(error("unterminated counters".to_owned())),
            },
            None => (None, trimmed),
        };
        let mut words = split_words(rest).map_err(error)?;
        if words.len() < 2 || words[0].text != "-A" || words[0].quoted {
            return Err(error(format!("expected `-A CHAIN ...`, found `{trimmed}`")));
        }
        let chain = words[1].text.clone();
        words.drain(..2);
        table.rules.push(RuleLine {
            line,
            counters,
            chain,
            words,
        });
    }
    if let Some(open) = current {
        return Err(DumpError {
            line: text.lines().count(),
            message: format!("table {} has no COMMIT", open.name),
        });
    }
    Ok(dump)
}

#[cfg(test)]
mod tests {
    use super::*;

    const SAMPLE: &str = r#"# Generated by iptables-save
*nat
:PREROUTING ACCEPT [1:60]
:DOCKER - [0:0]
-A PREROUTING -m addrtype --dst-type LOCAL -j DOCKER
COMMIT
*filter
:INPUT DROP [0:0]
[5:300] -A INPUT -m comment --comment "say \"hi\" it\'s" -j ACCEPT
-A INPUT -m comment --comment loopback -i lo -j ACCEPT
COMMIT
"#;

    #[test]
    fn parses_tables_chains_rules_and_quotes() {
        let dump = parse(SAMPLE).unwrap();
        assert_eq!(dump.tables.len(), 2);
        let nat = dump.table("nat").unwrap();
        assert_eq!(nat.chain("DOCKER").unwrap().policy, None);
        assert_eq!(
            nat.chain("PREROUTING").unwrap().policy.as_deref(),
            Some("ACCEPT")
        );
        let filter = dump.table("filter").unwrap();
        let first = &filter.rules[0];
        assert_eq!(first.counters.as_deref(), Some("[5:300]"));
        assert_eq!(
            first.words[3],
            Word {
                text: "say \"hi\" it's".to_owned(),
                quoted: true
            }
        );
        assert_eq!(first.line, 9);
    }

    #[test]
    fn prints_back_what_it_read() {
        let text: String = SAMPLE
            .lines()
            .filter(|l| !l.starts_with('#'))
            .map(|l| format!("{l}\n"))
            .collect();
        assert_eq!(parse(SAMPLE).unwrap().to_string(), text);
    }

    #[test]
    fn chain_lines_keep_policies_and_rules_of_the_named_chains() {
        let dump = parse("*nat\n:DOCKER - [0:0]\n-A DOCKER -j RETURN\nCOMMIT\n*filter\n:INPUT DROP [3:120]\n:FORWARD DROP [0:0]\n:DOCKER-USER - [0:0]\n-A INPUT -i lo -j ACCEPT\n-A FORWARD -j DOCKER-USER\n-A DOCKER-USER -j RETURN\nCOMMIT\n").unwrap();
        let filter = dump.table("filter").unwrap();
        assert_eq!(
            filter.chain_lines(&["INPUT", "DOCKER-USER"]),
            [
                ":INPUT DROP",
                ":DOCKER-USER -",
                "-A INPUT -i lo -j ACCEPT",
                "-A DOCKER-USER -j RETURN"
            ]
        );
        assert!(dump.declares("DOCKER") && dump.declares("FORWARD") && !dump.declares("NOPE"));
        assert_eq!(
            filter
                .rules_of("FORWARD")
                .next()
                .map(RuleLine::text)
                .as_deref(),
            Some("-A FORWARD -j DOCKER-USER")
        );
    }

    #[test]
    fn a_chain_name_that_is_not_one_plain_word_prints_back_quoted() {
        let dump = parse("*filter\n-A \"\" -d 10.0.0.1/32 -j DROP\nCOMMIT\n").unwrap();
        let rule = &dump.table("filter").unwrap().rules[0];
        assert_eq!(rule.chain, "");
        assert_eq!(rule.text(), "-A \"\" -d 10.0.0.1/32 -j DROP");
        let again = parse(&dump.to_string()).unwrap();
        assert_eq!(again.table("filter").unwrap().rules[0].chain, "");
    }

    #[test]
    fn broken_dumps_name_the_line() {
        assert_eq!(
            parse("*filter\n-A INPUT -j ACCEPT\n").unwrap_err().message,
            "table filter has no COMMIT"
        );
        assert_eq!(parse("-A INPUT -j ACCEPT\n").unwrap_err().line, 1);
        assert_eq!(
            parse("*filter\n-A INPUT -m comment --comment \"x\n")
                .unwrap_err()
                .line,
            2
        );
        assert_eq!(
            parse("*filter\n-I INPUT -j ACCEPT\nCOMMIT\n")
                .unwrap_err()
                .line,
            2
        );
    }
}
