//! The shape of the `iptables-restore` files this tool writes, checked after rendering
//! and before anything is loaded or written. Whatever a template does (built-in or an
//! admin's copy), a file that passes here:
//! - touches only the filter table, in one `*filter` ... `COMMIT` block;
//! - declares and appends only to the chains the tool owns (INPUT, OUTPUT, DOCKER-USER),
//!   never FORWARD, nat or Docker's chains, so `iptables-restore -n` leaves Docker alone;
//! - flushes every built-in chain it fills before filling it, so loading it again gives
//!   the same ruleset instead of piling rules up;
//! - has balanced quotes and one verdict per rule, so no value can smuggle in a second
//!   rule or lose its target (an unterminated quote silently drops a rule's target).

use crate::iptables::{dump, words};

/// Chains this tool owns, and the policy each may be declared with.
pub const OWNED_CHAINS: [&str; 3] = ["INPUT", "OUTPUT", "DOCKER-USER"];

/// The most rules one rendered file may hold. Past this, loading and every later
/// check grow slow and large (100 ports x 10,000 networks is a million rules); such
/// allowlists belong in fewer, wider networks.
pub const MAX_RULES: usize = 25_000;

/// Targets a rule in an owned chain may use.
pub const ALLOWED_TARGETS: [&str; 6] = ["ACCEPT", "DROP", "REJECT", "RETURN", "LOG", "NFLOG"];

/// A line of a rendered file that breaks the rules above.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("line {line}: {message}\n  {text}")]
pub struct ShapeError {
    /// 1-based line in the rendered file.
    pub line: usize,
    /// The line.
    pub text: String,
    /// What is wrong and what was expected.
    pub message: String,
}

/// Splits a rule line into the arguments `iptables-restore` gives the kernel (one
/// reading for every check: [`words::split_plain`], the strict form of
/// [`dump::split_words`]), refusing what reads differently from how it looks: any
/// backslash (inside quotes `\\"` is an escaped quote that does not close it, so
/// `"a\\" " -j X ... "` hides a target), a quote that does not start its word and one
/// that does not end it. Nothing this tool renders contains these, so an admin's
/// template is held to the same plain spelling.
pub fn tokenize(line: &str) -> Result<Vec<String>, String> {
    Ok(words::split_plain(line)?
        .into_iter()
        .map(|word| word.text)
        .collect())
}

/// Checks a rendered file (see the module docs).
pub fn check_shape(text: &str) -> Result<(), ShapeError> {
    let mut state = Block::Before;
    let mut declared: Vec<&str> = Vec::new();
    let mut flushed: Vec<&str> = Vec::new();
    let mut rules = 0usize;
    for (index, raw_line) in text.lines().enumerate() {
        let fail = |message: String| ShapeError {
            line: index + 1,
            text: raw_line.to_owned(),
            message,
        };
        if let Some(bad) = raw_line.chars().find(|c| c.is_control()) {
            return Err(fail(format!("control character {bad:?} in the file")));
        }
        let line = raw_line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        match state {
            Block::Before if line == "*filter" => state = Block::Filter,
            Block::Before => {
                return Err(fail(
                    "expected `*filter` first: only the filter table may be touched".to_owned(),
                ));
            }
            Block::After => return Err(fail("expected nothing after COMMIT".to_owned())),
            Block::Filter if line == "COMMIT" => state = Block::After,
            Block::Filter => {
                if let Some(decl) = line.strip_prefix(':') {
                    let chain = check_declaration(decl).map_err(&fail)?;
                    // Each chain once: every rule looks its chain up in these lists,
                    // and a file may repeat a declaration or a flush any number of times.
                    if !declared.contains(&chain) {
                        declared.push(chain);
                    }
                } else {
                    let tokens = tokenize(line).map_err(&fail)?;
                    match tokens.first().map(String::as_str) {
                        Some("-F") => {
                            let chain = owned_chain(tokens.get(1)).map_err(&fail)?;
                            if tokens.len() != 2 {
                                return Err(fail("expected `-F CHAIN` alone".to_owned()));
                            }
                            if !flushed.contains(&chain) {
                                flushed.push(chain);
                            }
                        }
                        Some("-A") => {
                            rules += 1;
                            if rules > MAX_RULES {
                                return Err(fail(format!(
                                    "more than {MAX_RULES} rules in one file: the policy expands to too many (ports x addresses of each entry); use fewer, wider networks"
                                )));
                            }
                            let chain = owned_chain(tokens.get(1)).map_err(&fail)?;
                            let built_in = chain != "DOCKER-USER";
                            if built_in && !flushed.contains(&chain) {
                                return Err(fail(format!(
                                    "{chain} is filled before `-F {chain}`: rules would pile up on every load"
                                )));
                            }
                            if !built_in && !declared.contains(&chain) {
                                return Err(fail(format!(
                                    "{chain} is filled before `:{chain} - [0:0]` declares (and so flushes) it"
                                )));
                            }
                            check_rule_words(&tokens[2..]).map_err(&fail)?;
                        }
                        _ => {
                            return Err(fail(
                                "expected a comment, `:CHAIN POLICY [0:0]`, `-F CHAIN`, `-A CHAIN ...` or COMMIT"
                                    .to_owned(),
                            ));
                        }
                    }
                }
            }
        }
    }
    if state != Block::After {
        let lines = text.lines().count();
        return Err(ShapeError {
            line: lines.max(1),
            text: text.lines().last().unwrap_or_default().to_owned(),
            message: if state == Block::Before {
                "expected a `*filter` ... COMMIT block, found none".to_owned()
            } else {
                "expected COMMIT at the end of the filter block".to_owned()
            },
        });
    }
    for chain in OWNED_CHAINS {
        if chain != "DOCKER-USER" && declared.contains(&chain) && !flushed.contains(&chain) {
            return Err(ShapeError {
                line: 1,
                text: String::new(),
                message: format!("{chain} is declared but never flushed with `-F {chain}`"),
            });
        }
    }
    Ok(())
}

/// Checks what the kernel holds after loading a checked file (an `iptables-save -t
/// filter` dump of a namespace that held nothing before): rules only in the owned
/// chains, each with exactly one allowed target, and no chain beyond the built-in ones
/// and DOCKER-USER. The shape check reads lines as iptables-restore does; this checks
/// the kernel's own account of the result, so a reading the two disagree on still
/// cannot load a target or chain the shape check refuses.
pub fn check_loaded(saved: &str) -> Result<(), String> {
    let dump =
        dump::parse(saved).map_err(|e| format!("cannot read what the kernel loaded: {e}"))?;
    for table in &dump.tables {
        if table.name != "filter" {
            return Err(format!(
                "the kernel holds a {} table after the load",
                table.name
            ));
        }
        // FORWARD is built in: a fresh namespace lists it, empty.
        let known = |name: &str| name == "FORWARD" || OWNED_CHAINS.contains(&name);
        if let Some(extra) = table.chains.iter().find(|c| !known(&c.name)) {
            return Err(format!("the load created chain {:?}", extra.name));
        }
        for rule in &table.rules {
            let text = rule.text();
            if !OWNED_CHAINS.contains(&rule.chain.as_str()) {
                return Err(format!(
                    "the kernel loaded a rule into {}: {text}",
                    rule.chain
                ));
            }
            // The same rule-word check the rendered line passed, on the kernel's words.
            let words: Vec<String> = rule.words.iter().map(|w| w.text.clone()).collect();
            check_rule_words(&words).map_err(|why| format!("the kernel loaded {text}: {why}"))?;
        }
    }
    Ok(())
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Block {
    Before,
    Filter,
    After,
}

fn owned_chain(token: Option<&String>) -> Result<&'static str, String> {
    let name = token.map(String::as_str).unwrap_or("");
    OWNED_CHAINS
        .iter()
        .copied()
        .find(|c| *c == name)
        .ok_or_else(|| {
            format!(
                "expected one of the chains this tool owns ({}), found {name:?}",
                OWNED_CHAINS.join(", ")
            )
        })
}

fn check_declaration(decl: &str) -> Result<&'static str, String> {
    let parts: Vec<&str> = decl.split(' ').collect();
    let [name, policy, counters] = parts.as_slice() else {
        return Err("expected `:CHAIN POLICY [0:0]`".to_owned());
    };
    let chain = owned_chain(Some(&(*name).to_owned()))?;
    let policy_ok = if chain == "DOCKER-USER" {
        *policy == "-"
    } else {
        matches!(*policy, "ACCEPT" | "DROP")
    };
    if !policy_ok {
        return Err(format!("unexpected policy {policy:?} for {chain}"));
    }
    if *counters != "[0:0]" {
        return Err(format!("expected counters [0:0], found {counters:?}"));
    }
    Ok(chain)
}

fn check_rule_words(words: &[String]) -> Result<(), String> {
    let mut targets = Vec::new();
    for (i, word) in words.iter().enumerate() {
        match word.as_str() {
            "-j" | "--jump" => targets.push(words.get(i + 1).map(String::as_str).unwrap_or("")),
            "-g" | "--goto" | "-t" | "--table" | "-A" | "--append" | "-I" | "--insert" | "-D"
            | "--delete" | "-R" | "--replace" | "-F" | "--flush" | "-N" | "--new-chain" | "-X"
            | "--delete-chain" | "-P" | "--policy" | "-E" | "--rename-chain" | "-Z" | "--zero" => {
                return Err(format!("{word} is not allowed inside a rule"));
            }
            _ => {}
        }
    }
    match targets.as_slice() {
        [target] if ALLOWED_TARGETS.contains(target) => Ok(()),
        [target] => Err(format!(
            "expected a target among {}, found {target:?}",
            ALLOWED_TARGETS.join(", ")
        )),
        [] => Err("expected a -j TARGET in every rule, found none".to_owned()),
        _ => Err("expected one -j TARGET per rule, found several".to_owned()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = "# header\n*filter\n:INPUT DROP [0:0]\n:DOCKER-USER - [0:0]\n-F INPUT\n\
-A INPUT -m comment --comment \"a b\" -j ACCEPT\n-A DOCKER-USER -j RETURN\nCOMMIT\n";

    #[test]
    fn accepts_the_owned_shape() {
        assert_eq!(check_shape(GOOD), Ok(()));
    }

    #[test]
    fn tokenizer_groups_quotes_and_refuses_broken_ones() {
        assert_eq!(
            tokenize("-m comment --comment \"a b\" -j ACCEPT"),
            Ok(vec!["-m", "comment", "--comment", "a b", "-j", "ACCEPT"]
                .into_iter()
                .map(String::from)
                .collect())
        );
        assert!(tokenize("--comment \"open -j ACCEPT").is_err());
        assert!(tokenize("--comment a\"b\"").is_err());
        assert!(tokenize("--comment \"a\"b").is_err());
    }

    #[test]
    fn an_escaped_quote_cannot_hide_a_target_from_the_check() {
        // The issue's exact line and its twins: iptables-restore reads `\"` inside quotes
        // as a quote that does not close, so these load with the hidden target.
        for hidden in [
            "-j NFQUEUE --queue-num 7",
            "-j MARK --set-mark 1",
            "-j DOCKER-USER",
            "-j DOCKER",
        ] {
            let line = format!(
                "-A INPUT -m comment --comment \"a\\\" \" {hidden} -m comment --comment \" -j ACCEPT"
            );
            let bad = GOOD.replacen("-A INPUT -m comment --comment \"a b\" -j ACCEPT", &line, 1);
            let error = check_shape(&bad).expect_err(&line);
            assert_eq!(error.line, 6, "{error}");
            assert!(error.message.contains("backslash"), "{error}");
        }
    }

    #[test]
    fn a_file_with_too_many_rules_is_refused_where_the_limit_is_passed() {
        // GOOD holds two rules; fill it up to the limit, then one past it.
        let rules = "-A INPUT -j ACCEPT\n".repeat(MAX_RULES - 2);
        let at_limit = GOOD.replacen("COMMIT", &format!("{rules}COMMIT"), 1);
        assert_eq!(check_shape(&at_limit), Ok(()));
        let over = GOOD.replacen("COMMIT", &format!("{rules}-A INPUT -j DROP\nCOMMIT"), 1);
        let error = check_shape(&over).expect_err("one rule over the limit");
        assert!(error.message.contains("more than 25000 rules"), "{error}");
        assert_eq!(error.text, "-A INPUT -j DROP");
    }

    #[test]
    fn repeated_declarations_and_flushes_count_once() {
        // Each is kept once, so a rule's look-up of its chain does not walk the repeats
        // (400,000 `-F OUTPUT` lines before `-F INPUT` made every INPUT rule walk them).
        let repeats = format!(
            "*filter\n{}-F INPUT\n{}:DOCKER-USER - [0:0]\n-A INPUT -j ACCEPT\n-A DOCKER-USER -j RETURN\nCOMMIT\n",
            "-F OUTPUT\n".repeat(3),
            ":OUTPUT ACCEPT [0:0]\n".repeat(3)
        );
        assert_eq!(check_shape(&repeats), Ok(()));
        let unflushed = repeats.replace("-F INPUT\n", "");
        assert!(check_shape(&unflushed).is_err());
    }

    #[test]
    fn what_the_kernel_loaded_is_checked_again() {
        let loaded = "*filter\n:INPUT DROP [0:0]\n:FORWARD ACCEPT [0:0]\n:OUTPUT ACCEPT [0:0]\n:DOCKER-USER - [0:0]\n-A INPUT -m comment --comment \"a b\" -j ACCEPT\n-A DOCKER-USER -j RETURN\nCOMMIT\n";
        assert_eq!(check_loaded(loaded), Ok(()));
        for (from, to) in [
            ("-j ACCEPT", "-j NFQUEUE --queue-num 7"),
            ("-j ACCEPT", "-j MARK --set-xmark 0x1/0xffffffff"),
            ("-j ACCEPT", "-g DOCKER-USER"),
            ("-j ACCEPT", "-j DOCKER-USER"),
            ("-j ACCEPT", ""),
            ("-A DOCKER-USER -j RETURN", "-A FORWARD -j ACCEPT"),
            (":DOCKER-USER - [0:0]", ":DOCKER - [0:0]"),
            ("*filter", "*nat"),
        ] {
            let bad = loaded.replacen(from, to, 1);
            assert!(check_loaded(&bad).is_err(), "accepted {to:?}:\n{bad}");
        }
    }

    #[test]
    fn refuses_what_would_hurt_docker_or_pile_up() {
        let cases = [
            ("-A DOCKER-USER -j RETURN", "-A FORWARD -j ACCEPT"),
            (":DOCKER-USER - [0:0]", ":DOCKER - [0:0]"),
            ("*filter", "*nat"),
            ("-F INPUT", "-X DOCKER-USER"),
            ("-A DOCKER-USER -j RETURN", "-A DOCKER-USER -j DOCKER"),
            (
                "-A DOCKER-USER -j RETURN",
                "-A DOCKER-USER -m comment --comment \"x -j ACCEPT",
            ),
            (
                "-A DOCKER-USER -j RETURN",
                "-A DOCKER-USER -j RETURN -j ACCEPT",
            ),
            (
                "-A DOCKER-USER -j RETURN",
                "-A DOCKER-USER -s 10.0.0.0/8 -A INPUT -j ACCEPT",
            ),
            ("-F INPUT\n", ""),
            ("COMMIT\n", ""),
            (":INPUT DROP [0:0]", ":INPUT DROP [5:10]"),
        ];
        for (from, to) in cases {
            let bad = GOOD.replacen(from, to, 1);
            assert!(
                check_shape(&bad).is_err(),
                "accepted {from:?} -> {to:?}:\n{bad}"
            );
        }
        assert!(check_shape(&format!("{GOOD}*filter\nCOMMIT\n")).is_err());
        assert!(check_shape(&GOOD.replace("# header", "# a\rb")).is_err());
    }
}
