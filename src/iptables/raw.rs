//! The `[[raw]]` escape hatch in iptables syntax: a raw rule's text is iptables options
//! for one filter rule, checked word by word as iptables' own getopt will read it, so
//! that it stays one rule, with a verdict or logging target, in a chain this tool owns.
//! The policy holds the text ([`crate::policy::types::RawRule`]); what makes it valid
//! is this backend's to say.

use crate::iptables::options;

/// Targets a raw rule may jump to: those of any rule in an owned chain (verdicts and
/// logging, never another chain).
const RAW_TARGETS: [&str; 6] = crate::iptables::shape::ALLOWED_TARGETS;

/// Checks the text of a raw rule for the iptables backend: `Err` says what was
/// expected and what was found.
pub fn check_rule(text: &str) -> Result<(), String> {
    if text.is_empty() || text.len() > 1000 {
        return Err(format!(
            "expected a rule of 1-1000 characters, found {} characters",
            text.len()
        ));
    }
    if let Some(bad) = text
        .chars()
        .find(|c| !(c.is_ascii_graphic() || *c == ' ') || matches!(c, '"' | '\'' | '\\' | '`'))
    {
        return Err(format!(
            "expected printable ASCII without quotes or backslashes in a raw rule (use the entry's `comment` field for comments), found {bad:?}"
        ));
    }
    let tokens: Vec<&str> = text.split_whitespace().collect();
    if !tokens
        .first()
        .is_some_and(|t| t.starts_with('-') || *t == "!")
    {
        return Err(format!(
            "expected rule options such as \"-p udp --dport 51820 -j ACCEPT\" (without -A CHAIN), found {text:?}"
        ));
    }
    // Every word, values included: getopt takes a word as an option wherever it is not
    // the value of the option before it, and which options take values depends on the
    // modules iptables loads.
    for token in &tokens {
        options::plain_spelling(token)?;
        options::rule_option(token)?;
    }
    check_raw_ports(&tokens)?;
    let jumps: Vec<usize> = tokens
        .iter()
        .enumerate()
        .filter(|(_, t)| matches!(**t, "-j" | "--jump"))
        .map(|(i, _)| i)
        .collect();
    match jumps.as_slice() {
        [at] => {
            let target = tokens.get(at + 1).copied().unwrap_or("");
            if !RAW_TARGETS.contains(&target) {
                return Err(format!(
                    "expected -j with one of {}, found {target:?}",
                    RAW_TARGETS.join(", ")
                ));
            }
            Ok(())
        }
        [] => Err(format!(
            "expected exactly one -j TARGET (one of {}), found none",
            RAW_TARGETS.join(", ")
        )),
        _ => Err("expected exactly one -j TARGET, found several".to_owned()),
    }
}

/// Options whose value is a port, a `A:B` range or a comma list of them.
const PORT_OPTIONS: [&str; 14] = [
    "--dport",
    "--sport",
    "--destination-port",
    "--source-port",
    "--dports",
    "--sports",
    "--destination-ports",
    "--source-ports",
    "--ports",
    "--ctorigdstport",
    "--ctorigsrcport",
    "--ctrepldstport",
    "--ctreplsrcport",
    "--to-ports",
];

/// Numeric ports in raw rules must be plain decimal numbers that fit in 16 bits, because
/// iptables 1.8.9 reads the others differently from option to option, and the kernel
/// check cannot tell: udp's `--sport` and conntrack's `--ctorigdstport` wrap 99999 (and
/// `+99999`) to 34463, while tcp's `--dport` and multiport read `010` as octal 8,
/// `065535` as 27485 and `0x50` as hex 80. Service names (`ssh`) are left to iptables.
fn check_raw_ports(tokens: &[&str]) -> Result<(), String> {
    for pair in tokens.windows(2) {
        let [option, value] = pair else { continue };
        if !PORT_OPTIONS.contains(option) {
            continue;
        }
        for number in value.split([',', ':']) {
            // A service name starts with a letter; anything else is read as a number.
            if number.is_empty() || number.starts_with(|c: char| c.is_ascii_alphabetic()) {
                continue;
            }
            let plain = number.bytes().all(|b| b.is_ascii_digit())
                && (number == "0" || !number.starts_with('0'));
            if !plain || number.parse::<u16>().is_err() {
                return Err(format!(
                    "expected ports from 0 to 65535 in plain decimal after {option}, found {number} in {value:?} (iptables wraps ports above 65535 and reads a leading 0 as octal, 0x as hex, differently from option to option)"
                ));
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn raw_rules_stay_one_filter_rule() {
        assert!(check_rule("-p udp --dport 51820 -j ACCEPT").is_ok());
        assert!(check_rule("! -s 10.0.0.0/8 -j DROP").is_ok());
        assert!(check_rule("-p tcp --sport 0:1023 -j DROP").is_ok());
        assert!(check_rule("-p tcp --dport ssh:http -j ACCEPT").is_ok());
        assert!(check_rule("-p tcp --dport 0:65535 -j ACCEPT").is_ok());
        for bad in [
            "-p tcp -j ACCEPT\n-A FORWARD -j ACCEPT",
            "-A INPUT -j ACCEPT",
            "-t nat -j ACCEPT",
            "-p tcp -j DOCKER",
            "-p tcp",
            "-j ACCEPT -j DROP",
            "-m comment --comment \"x\" -j ACCEPT",
            "ACCEPT",
            "-p tcp -g ACCEPT",
            "-p udp --dport 99999 -j ACCEPT",
            "-p tcp -m multiport --dports 80,70000 -j ACCEPT",
            "-p tcp --sport 1:65536 -j ACCEPT",
            // Spellings iptables reads as other ports (octal, hex, wrapped).
            "-p udp --sport +99999 -j ACCEPT",
            "-p tcp -m conntrack --ctorigdstport +99999 -j ACCEPT",
            "-p tcp --dport 010 -j ACCEPT",
            "-p tcp --dport 065535 -j ACCEPT",
            "-p tcp -m multiport --dports 80,0x50 -j ACCEPT",
            "-p tcp --dport 0X50:90 -j ACCEPT",
            "-p tcp --dport +80 -j ACCEPT",
            "-p tcp --dport 1e3 -j ACCEPT",
            // The spellings that getopt reads as something else.
            "-p tcp --dport=99999 -j ACCEPT",
            "-p tcp --dpo 99999 -j ACCEPT",
            "-p tcp --destination-p 99999 -j ACCEPT",
            "-m conntrack --ctorigdstp 99999 -j ACCEPT",
            "-tnat -j ACCEPT",
            "--tab nat -j ACCEPT",
            "--app FORWARD -j ACCEPT",
            "-AFORWARD -j ACCEPT",
            "-p tcp -gDOCKER",
            "-p tcp --jump=DOCKER",
            "--modprobe=/x -j ACCEPT",
            "-M /x -j ACCEPT",
            "-6 -j ACCEPT",
        ] {
            assert!(check_rule(bad).is_err(), "{bad:?}");
        }
    }
}
