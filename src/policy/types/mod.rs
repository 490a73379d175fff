//! Validated value types: every string or number that can reach a rendered rule passes
//! through one of these, so nothing from the policy file is ever pasted into a rule
//! unchecked (no quotes, spaces, newlines or option look-alikes where they don't belong).
//! This module owns the shared validating-string pattern and which families an entry
//! applies to; the values themselves live by kind: `names` (instances, interfaces,
//! comments, lists, log settings), `net` (networks, host addresses, references),
//! `ports` (protocols and port ranges) and `raw` (the `[[raw]]` escape hatch).

use serde::Deserialize;

use crate::family::Family;

/// Defines a string newtype whose only constructor is a validating `FromStr`.
macro_rules! validated_string {
    ($(#[$doc:meta])* $name:ident, $check:path) => {
        $(#[$doc])*
        #[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Deserialize, Serialize)]
        #[serde(try_from = "String", into = "String")]
        pub struct $name(String);

        impl $name {
            /// The validated text.
            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl FromStr for $name {
            type Err = String;
            fn from_str(text: &str) -> Result<Self, String> {
                $check(text)?;
                Ok($name(text.to_owned()))
            }
        }

        impl TryFrom<String> for $name {
            type Error = String;
            fn try_from(text: String) -> Result<Self, String> {
                $check(&text)?;
                Ok($name(text))
            }
        }

        impl From<$name> for String {
            fn from(value: $name) -> String {
                value.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }
    };
}

mod names;
mod net;
mod ports;
mod raw;

pub use names::{
    Comment, InstanceName, InterfaceName, ListName, LogPrefix, LogRate, interface_pattern_matches,
};
pub use net::{AddressMatch, AddressRef, HostAddress, Network};
pub use ports::{PortRange, Ports, Proto};
pub use raw::RawRule;

/// Which families a rule applies to, as written in the policy.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum FamilyChoice {
    /// Both IPv4 and IPv6 (the default).
    #[default]
    Both,
    /// IPv4 only.
    Ipv4,
    /// IPv6 only.
    Ipv6,
}

impl FamilyChoice {
    /// Whether rules of this choice go into `family`'s file.
    pub fn includes(self, family: Family) -> bool {
        match self {
            FamilyChoice::Both => true,
            FamilyChoice::Ipv4 => family == Family::Ipv4,
            FamilyChoice::Ipv6 => family == Family::Ipv6,
        }
    }
}
