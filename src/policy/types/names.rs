//! Validated names and short texts: instance names, interface names and how iptables
//! matches them, comments, list names, and the log prefix and rate.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

fn check_instance(text: &str) -> Result<(), String> {
    let ok = !text.is_empty()
        && text.len() <= 64
        && !text.starts_with('-')
        && text
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
    if ok {
        Ok(())
    } else {
        Err(format!(
            "expected an instance name of 1-64 characters from [A-Za-z0-9_-], not starting with '-', found {text:?}"
        ))
    }
}

validated_string!(
    /// Name of a firewall instance (`base` in `iptables@base.service`); also a file name stem.
    InstanceName,
    check_instance
);

impl Default for InstanceName {
    fn default() -> Self {
        InstanceName("base".to_owned())
    }
}

fn check_interface(text: &str) -> Result<(), String> {
    let body = text.strip_suffix('+').unwrap_or(text);
    let ok = !body.is_empty()
        && text.len() <= 15
        && body != "."
        && body != ".."
        && !body.starts_with('-')
        && body
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-'));
    if ok {
        Ok(())
    } else {
        Err(format!(
            "expected an interface name of at most 15 characters from [A-Za-z0-9_.-] (a trailing '+' matches a prefix), found {text:?}"
        ))
    }
}

validated_string!(
    /// A network interface name as iptables takes it (`eth0`, or `br-+` for a prefix).
    InterfaceName,
    check_interface
);

impl InterfaceName {
    /// Whether `interface` is one this name stands for.
    pub fn matches(&self, interface: &str) -> bool {
        interface_pattern_matches(&self.0, interface)
    }
}

/// Whether an interface pattern as iptables reads `-i`/`-o` (a trailing `+` matches a
/// prefix) matches `interface`.
pub fn interface_pattern_matches(pattern: &str, interface: &str) -> bool {
    match pattern.strip_suffix('+') {
        Some(prefix) => interface.starts_with(prefix),
        None => interface == pattern,
    }
}

fn check_comment(text: &str) -> Result<(), String> {
    if text.is_empty() || text.len() > 200 {
        return Err(format!(
            "expected a comment of 1-200 characters, found {} characters",
            text.len()
        ));
    }
    if let Some(bad) = text
        .chars()
        .find(|c| !(c.is_ascii_graphic() || *c == ' ') || matches!(c, '"' | '\'' | '\\' | '`'))
    {
        return Err(format!(
            "expected printable ASCII without quotes, backslashes or control characters in a comment, found {bad:?} in {text:?}"
        ));
    }
    // iptables-save prints a one-word comment without quotes, where `-j` or `-g` reads as
    // an option of the rule (the shape check refuses such a line, blaming the rendered
    // file instead of the policy).
    if text.starts_with('-') {
        return Err(format!(
            "expected a comment that does not start with '-' (a one-word comment such as \"-j\" reads as an option of the rule), found {text:?}"
        ));
    }
    Ok(())
}

validated_string!(
    /// Text for `-m comment --comment "..."`: printable ASCII, no quotes or backslashes.
    Comment,
    check_comment
);

impl Comment {
    /// Builds a comment from text the program composed itself from validated parts.
    pub(crate) fn generated(text: String) -> Comment {
        debug_assert!(check_comment(&text).is_ok(), "generated comment {text:?}");
        Comment(text)
    }
}

fn check_list_name(text: &str) -> Result<(), String> {
    let mut bytes = text.bytes();
    let ok = text.len() <= 32
        && bytes.next().is_some_and(|b| b.is_ascii_alphabetic())
        && bytes.all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
    if ok {
        Ok(())
    } else {
        Err(format!(
            "expected a list name of 1-32 characters from [A-Za-z0-9_-] starting with a letter, found {text:?}"
        ))
    }
}

validated_string!(
    /// Name of an address list declared under `[lists]`.
    ListName,
    check_list_name
);

fn check_log_prefix(text: &str) -> Result<(), String> {
    let ok = !text.is_empty()
        && text.len() <= 20
        && text
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-' | b':'));
    if ok {
        Ok(())
    } else {
        Err(format!(
            "expected a log prefix of 1-20 characters from [A-Za-z0-9_.:-], found {text:?}"
        ))
    }
}

validated_string!(
    /// Start of the kernel log prefix; the chain tag is appended (kernel limit: 29 bytes).
    LogPrefix,
    check_log_prefix
);

impl Default for LogPrefix {
    fn default() -> Self {
        LogPrefix("iptables-ctl".to_owned())
    }
}

fn check_log_rate(text: &str) -> Result<(), String> {
    let expected = || {
        format!(
            "expected a rate like \"5/minute\" (1-10000 per second, minute, hour or day), found {text:?}"
        )
    };
    let (count, unit) = text.split_once('/').ok_or_else(expected)?;
    let count: u32 = count.parse().map_err(|_| expected())?;
    if !(1..=10000).contains(&count) || !matches!(unit, "second" | "minute" | "hour" | "day") {
        return Err(expected());
    }
    Ok(())
}

validated_string!(
    /// A `-m limit --limit` rate such as `5/minute`.
    LogRate,
    check_log_rate
);

impl Default for LogRate {
    fn default() -> Self {
        LogRate("5/minute".to_owned())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn interface_names() {
        for ok in ["eth0", "br-+", "docker0", "wg0.5", "a", "abcdefghijklmno"] {
            assert!(ok.parse::<InterfaceName>().is_ok(), "{ok}");
        }
        for bad in [
            "",
            "+",
            "abcdefghijklmnop",
            "eth 0",
            "eth\"0",
            "eth0\n",
            "-j",
            "..",
            "e/1",
            "é",
        ] {
            assert!(bad.parse::<InterfaceName>().is_err(), "{bad:?}");
        }
    }

    #[test]
    fn comments_refuse_quotes_and_control_characters() {
        assert!("web server (prod)".parse::<Comment>().is_ok());
        for bad in [
            "", "a\"b", "a'b", "a\\b", "a\nb", "a\tb", "x\u{7f}", "-j", "-g", "--jump", "-A", "- x",
        ] {
            assert!(bad.parse::<Comment>().is_err(), "{bad:?}");
        }
    }

    #[test]
    fn log_rates() {
        assert!("5/minute".parse::<LogRate>().is_ok());
        for bad in ["0/minute", "5/fortnight", "5", "x/second", "10001/day"] {
            assert!(bad.parse::<LogRate>().is_err(), "{bad}");
        }
    }
}
