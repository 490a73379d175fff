//! The states systemd reports for a unit, as enums: its load state (`loaded`,
//! `not-found`, ...), its active state (`active`, `failed`, ...) and its unit file
//! state (`enabled`, `alias`, ...). systemd may add words, so each keeps anything it
//! does not know as `Other(word)`. Each is shown, serialized and compared as the word
//! systemd sent, so `status --json` carries the same strings as before and
//! `state == "active"` still reads naturally.

use std::fmt;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// Declares a state enum: its known words, `Other(String)` for the rest, and the
/// conversions and comparisons every state has.
macro_rules! state_enum {
    (
        $(#[$meta:meta])*
        $name:ident { $($(#[$vmeta:meta])* $variant:ident => $word:literal,)* }
    ) => {
        $(#[$meta])*
        #[derive(Debug, Clone, PartialEq, Eq, Hash)]
        pub enum $name {
            $($(#[$vmeta])* $variant,)*
            /// A word this version does not know, as systemd sent it.
            Other(String),
        }

        impl $name {
            /// The state for the word systemd sent.
            pub fn from_word(word: &str) -> $name {
                match word {
                    $($word => $name::$variant,)*
                    other => $name::Other(other.to_owned()),
                }
            }

            /// The word systemd uses for this state.
            pub fn as_str(&self) -> &str {
                match self {
                    $($name::$variant => $word,)*
                    $name::Other(word) => word,
                }
            }
        }

        impl From<String> for $name {
            fn from(word: String) -> $name {
                $name::from_word(&word)
            }
        }

        impl From<&str> for $name {
            fn from(word: &str) -> $name {
                $name::from_word(word)
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.as_str())
            }
        }

        impl PartialEq<str> for $name {
            fn eq(&self, other: &str) -> bool {
                self.as_str() == other
            }
        }

        impl PartialEq<&str> for $name {
            fn eq(&self, other: &&str) -> bool {
                self.as_str() == *other
            }
        }

        impl PartialEq<String> for $name {
            fn eq(&self, other: &String) -> bool {
                self.as_str() == other.as_str()
            }
        }

        impl Serialize for $name {
            fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
                serializer.serialize_str(self.as_str())
            }
        }

        impl<'de> Deserialize<'de> for $name {
            fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<$name, D::Error> {
                Ok($name::from_word(&String::deserialize(deserializer)?))
            }
        }
    };
}

state_enum! {
    /// Whether systemd found and loaded the unit's configuration.
    LoadState {
        /// `loaded`.
        Loaded => "loaded",
        /// `not-found`: systemd knows no unit of this name.
        NotFound => "not-found",
        /// `bad-setting`.
        BadSetting => "bad-setting",
        /// `error`.
        Error => "error",
        /// `masked`.
        Masked => "masked",
        /// `merged`.
        Merged => "merged",
        /// `stub`.
        Stub => "stub",
    }
}

state_enum! {
    /// Whether the unit runs (for our oneshot units: whether its rules are loaded).
    ActiveState {
        /// `active`.
        Active => "active",
        /// `reloading`: active, and reloading.
        Reloading => "reloading",
        /// `inactive`.
        Inactive => "inactive",
        /// `failed`.
        Failed => "failed",
        /// `activating`.
        Activating => "activating",
        /// `deactivating`.
        Deactivating => "deactivating",
        /// `maintenance`.
        Maintenance => "maintenance",
        /// `refreshing`.
        Refreshing => "refreshing",
    }
}

state_enum! {
    /// How the unit file is enabled (`Absent`, the empty word, when there is none).
    UnitFileState {
        /// No unit file (systemd reports the empty string).
        Absent => "",
        /// `enabled`.
        Enabled => "enabled",
        /// `enabled-runtime`.
        EnabledRuntime => "enabled-runtime",
        /// `linked`.
        Linked => "linked",
        /// `linked-runtime`.
        LinkedRuntime => "linked-runtime",
        /// `alias`.
        Alias => "alias",
        /// `masked`.
        Masked => "masked",
        /// `masked-runtime`.
        MaskedRuntime => "masked-runtime",
        /// `static`.
        Static => "static",
        /// `disabled`.
        Disabled => "disabled",
        /// `indirect`.
        Indirect => "indirect",
        /// `generated`.
        Generated => "generated",
        /// `transient`.
        Transient => "transient",
        /// `bad`.
        Bad => "bad",
    }
}

impl ActiveState {
    /// Active, or reloading (a unit that is reloading is active, its rules loaded).
    pub fn is_active(&self) -> bool {
        matches!(self, ActiveState::Active | ActiveState::Reloading)
    }
}

impl UnitFileState {
    /// `enabled`, `enabled-runtime`, or a word systemd may add that starts with
    /// `enabled`.
    pub fn is_enabled(&self) -> bool {
        match self {
            UnitFileState::Enabled | UnitFileState::EnabledRuntime => true,
            UnitFileState::Other(word) => word.starts_with("enabled"),
            _ => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn states_read_serialize_and_compare_as_systemd_words() {
        for word in ["active", "reloading", "failed", "inactive", "something-new"] {
            let state = ActiveState::from_word(word);
            assert_eq!(state, word);
            assert_eq!(state.to_string(), word);
            assert_eq!(
                serde_json::to_string(&state).ok(),
                Some(format!("\"{word}\""))
            );
            let back: ActiveState = serde_json::from_str(&format!("\"{word}\"")).unwrap();
            assert_eq!(back, state);
        }
        assert_eq!(
            ActiveState::from_word("something-new"),
            ActiveState::Other("something-new".to_owned())
        );
        assert_eq!(UnitFileState::from_word(""), UnitFileState::Absent);
        assert!(UnitFileState::from_word("enabled-runtime").is_enabled());
        assert!(UnitFileState::from_word("enabled-later").is_enabled());
        assert!(!UnitFileState::from_word("disabled").is_enabled());
        assert_eq!(LoadState::from_word("not-found"), LoadState::NotFound);
    }
}
