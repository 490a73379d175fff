//! The `[[raw]]` escape hatch's rule text, as the policy holds it: validated by the
//! backend the rule names (its syntax is the backend's, see [`crate::iptables::raw`]),
//! so that it stays one rule in a chain this tool owns.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// The rule's text must be valid for its backend; iptables is the only backend raw
/// rules may name so far (a second one makes this depend on the entry's `backend`).
fn check_raw_rule(text: &str) -> Result<(), String> {
    crate::iptables::raw::check_rule(text)
}

impl RawRule {
    /// The rule with its words separated by single spaces, as it is rendered.
    pub fn normalized(&self) -> String {
        self.0.split_whitespace().collect::<Vec<_>>().join(" ")
    }
}

validated_string!(
    /// Extra rule options for one chain (the escape hatch), checked to stay one filter rule.
    RawRule,
    check_raw_rule
);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn raw_rules_stay_one_filter_rule() {
        assert!("-p udp --dport 51820 -j ACCEPT".parse::<RawRule>().is_ok());
        assert!("! -s 10.0.0.0/8 -j DROP".parse::<RawRule>().is_ok());
        assert!("-p tcp --sport 0:1023 -j DROP".parse::<RawRule>().is_ok());
        assert!(
            "-p tcp --dport ssh:http -j ACCEPT"
                .parse::<RawRule>()
                .is_ok()
        );
        assert!(
            "-p tcp --dport 0:65535 -j ACCEPT"
                .parse::<RawRule>()
                .is_ok()
        );
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
            assert!(bad.parse::<RawRule>().is_err(), "{bad:?}");
        }
    }
}
