//! The `[[raw]]` escape hatch's rule text, as the policy holds it: bounded here, and
//! checked by the backend the entry names (its syntax is the backend's, see
//! [`crate::iptables::raw`]) so that it stays one rule in a chain this tool owns.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// What every backend's rule text is held to here: its size. Whether the text is a
/// rule is the backend's to say, once the entry's `backend` is known (see the policy's
/// checks), because each backend has its own syntax.
fn check_raw_rule(text: &str) -> Result<(), String> {
    if text.is_empty() || text.len() > MAX_RAW_RULE {
        return Err(format!(
            "expected a rule of 1-{MAX_RAW_RULE} characters, found {} characters",
            text.len()
        ));
    }
    Ok(())
}

/// The longest raw rule, in bytes.
pub const MAX_RAW_RULE: usize = 1000;

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
