//! How `iptables` reads the options of a rule (its getopt_long), so that a rule an admin
//! writes is checked as iptables will read it. getopt accepts spellings that look like
//! something else: `--dport=99999` is `--dport 99999`, `--dpo` and `--destination-p`
//! are `--dport` and `--destination-port` (any unambiguous abbreviation), `-tnat` is
//! `-t nat`, `-AFORWARD` is `-A FORWARD`, and `-6` makes an IPv4 restore skip the rule.
//! [`plain_spelling`] refuses every such spelling with the reading iptables would make of
//! it, so the words that pass are the options themselves, and [`rule_option`] says
//! whether an option belongs in a rule at all or changes the command, the table or the
//! family.

/// Long options that are parts of a rule: iptables' own (`iptables.c`'s
/// `original_opts`) and those of the matches whose values the tool checks. With
/// [`NOT_IN_A_RULE_LONG`], what an abbreviation may stand for.
const RULE_LONG: [&str; 33] = [
    "source",
    "src",
    "destination",
    "dst",
    "protocol",
    "in-interface",
    "out-interface",
    "jump",
    "fragment",
    "match",
    // Ports (tcp, udp, multiport, conntrack, REDIRECT/MASQUERADE).
    "dport",
    "sport",
    "destination-port",
    "source-port",
    "dports",
    "sports",
    "destination-ports",
    "source-ports",
    "ports",
    "ctorigdstport",
    "ctorigsrcport",
    "ctrepldstport",
    "ctreplsrcport",
    "to-ports",
    // Other values the evaluator reads.
    "ctorigsrc",
    "ctorigdst",
    "ctstate",
    "state",
    "match-set",
    "src-range",
    "dst-range",
    "src-type",
    "dst-type",
];

/// Long options that are not part of a rule: commands, tables, jumps away, and the
/// global options (`--modprobe` runs a program, `--ipv6` drops the rule from an IPv4
/// load).
const NOT_IN_A_RULE_LONG: [&str; 27] = [
    "append",
    "delete",
    "insert",
    "replace",
    "check",
    "list",
    "list-rules",
    "flush",
    "zero",
    "new-chain",
    "delete-chain",
    "policy",
    "rename-chain",
    "table",
    "verbose",
    "wait",
    "wait-interval",
    "exact",
    "numeric",
    "version",
    "help",
    "line-numbers",
    "modprobe",
    "set-counters",
    "ipv4",
    "ipv6",
    "goto",
];

/// Short options that are parts of a rule (iptables has no others: extensions only
/// add long options).
const RULE_SHORT: [char; 8] = ['p', 's', 'd', 'i', 'o', 'j', 'm', 'f'];

/// Short options of iptables that take a value, required or optional (its getopt string
/// `-:A:C:D:R:I:L::S::M:F::Z::N:X::E:P:Vh::o:p:s:d:j:i:fbvw::W::nt:m:xc:g:46`), to say
/// how an attached spelling is read.
const SHORT_WITH_VALUE: [char; 27] = [
    'A', 'C', 'D', 'R', 'I', 'L', 'S', 'M', 'F', 'Z', 'N', 'X', 'E', 'P', 'h', 'o', 'p', 's', 'd',
    'j', 'i', 'w', 'W', 't', 'm', 'c', 'g',
];

/// Refuses a word that getopt would read as something other than what it looks like:
/// `--opt=value`, an abbreviation of a known long option, or a short option with its
/// value or further options attached. The error says how iptables reads it.
pub fn plain_spelling(word: &str) -> Result<(), String> {
    if let Some(long) = word.strip_prefix("--") {
        if let Some((name, value)) = long.split_once('=') {
            return Err(format!(
                "iptables reads `{word}` as `--{name} {value}`: write the option and its value as two words"
            ));
        }
        let known = NOT_IN_A_RULE_LONG.iter().chain(&RULE_LONG).copied();
        if long.is_empty() || known.clone().any(|name| name == long) {
            return Ok(());
        }
        let meant: Vec<&str> = known.filter(|name| name.starts_with(long)).collect();
        return match meant.as_slice() {
            [] => Ok(()),
            [full] => Err(format!(
                "iptables reads `{word}` as `--{full}` (an abbreviation): write the option in full"
            )),
            several => Err(format!(
                "`{word}` abbreviates one of --{}: write the option in full",
                several.join(", --")
            )),
        };
    }
    let Some(short) = word.strip_prefix('-') else {
        return Ok(());
    };
    let mut letters = short.chars();
    let (Some(first), Some(_)) = (letters.next(), letters.next()) else {
        return Ok(());
    };
    let rest = &short[first.len_utf8()..];
    let reading = if SHORT_WITH_VALUE.contains(&first) {
        format!("-{first} {rest}")
    } else {
        short
            .chars()
            .map(|c| format!("-{c}"))
            .collect::<Vec<_>>()
            .join(" ")
    };
    Err(format!(
        "iptables reads `{word}` as `{reading}`: write each option and its value as separate words"
    ))
}

/// Refuses an option (in plain spelling) that is not part of a rule: a command, a table,
/// `-g`, or a global option.
pub fn rule_option(word: &str) -> Result<(), String> {
    let refused = if let Some(long) = word.strip_prefix("--") {
        NOT_IN_A_RULE_LONG.contains(&long)
    } else if let Some(short) = word.strip_prefix('-') {
        let mut letters = short.chars();
        match (letters.next(), letters.next()) {
            (Some(letter), None) => !RULE_SHORT.contains(&letter),
            _ => false,
        }
    } else {
        false
    };
    if refused {
        Err(format!(
            "{word} is not allowed in a raw rule: it changes the command, the table, the address family or iptables' own behaviour (the chain is chosen by the entry's `chain` field and the table is always filter)"
        ))
    } else {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spellings_that_getopt_reads_otherwise_are_refused_with_the_reading() {
        let cases = [
            ("--dport=99999", "--dport 99999"),
            ("--jump=DOCKER", "--jump DOCKER"),
            ("--modprobe=/x", "--modprobe /x"),
            ("--dpo", "--dport"),
            ("--destination-p", "--destination-port"),
            ("--ctorigdstp", "--ctorigdstport"),
            ("--tab", "--table"),
            ("--app", "--append"),
            ("-tnat", "-t nat"),
            ("-AFORWARD", "-A FORWARD"),
            ("-gDOCKER", "-g DOCKER"),
            ("-jDOCKER", "-j DOCKER"),
            ("-46", "-4 -6"),
        ];
        for (word, reading) in cases {
            let error = plain_spelling(word).expect_err(word);
            assert!(error.contains(reading), "{word}: {error}");
        }
        assert!(plain_spelling("--d").unwrap_err().contains("one of"));
        for plain in [
            "--dport",
            "--dports",
            "--source",
            "-p",
            "!",
            "tcp",
            "--hashlimit-upto",
            "--",
        ] {
            assert_eq!(plain_spelling(plain), Ok(()), "{plain}");
        }
    }

    #[test]
    fn commands_tables_and_global_options_are_not_rule_options() {
        for refused in [
            "-t",
            "--table",
            "-A",
            "--append",
            "-g",
            "--goto",
            "-M",
            "--modprobe",
            "-6",
            "-4",
            "--ipv6",
            "-w",
            "--wait",
            "-c",
            "--set-counters",
            "-v",
            "-n",
            "-x",
            "-P",
        ] {
            assert!(rule_option(refused).is_err(), "{refused}");
        }
        for allowed in [
            "-p", "-s", "-d", "-i", "-o", "-j", "-m", "-f", "--dport", "!", "ACCEPT",
        ] {
            assert_eq!(rule_option(allowed), Ok(()), "{allowed}");
        }
    }
}
