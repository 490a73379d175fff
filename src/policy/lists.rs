//! `[lists]`: named lists of networks, written in the policy (`office = ["192.0.2.0/24"]`)
//! or read from a file beside it (`customers = { file = "lists/customers.txt" }`: one
//! address or network per line, `#` starts a comment, blank lines are skipped). A list
//! file is read when the policy is, bounded, and a bad line is reported with the file,
//! its line and column, and the list's field; nothing is rendered from a policy whose
//! lists do not all read.
//!
//! A list longer than [`SET_THRESHOLD`] networks of a family is matched as one set in
//! that family (see [`super::Policy::expand_family_matches`]); no list may hold more
//! than [`MAX_LIST_ENTRIES`] of a family.

use std::fmt;
use std::path::{Component, Path, PathBuf};

use serde::Deserialize;
use serde::de::{self, Deserializer, MapAccess, SeqAccess, Visitor};

use super::error::{Location, PolicyError};
use super::types::Network;
use crate::files::source;

/// The largest list file read, in bytes (about 800,000 IPv4 networks).
pub const LIST_FILE_LIMIT: u64 = 16 * 1024 * 1024;

/// A list with more networks than this of one family is matched as one set in that
/// family's rules (an ipset for iptables): one rule instead of one per network, and a
/// hash lookup per packet instead of a walk down the list. Below it, plain rules cost
/// less than a set to load, need no ipset tool and read more plainly in `iptables -S`.
pub const SET_THRESHOLD: usize = 64;

/// The most networks of one family a list may hold (the capacity of the set it is
/// matched as).
pub const MAX_LIST_ENTRIES: usize = 500_000;

/// The longest list file path, in bytes.
const MAX_PATH: usize = 255;

/// One list of `[lists]`: its networks, and the file they were read from, if any.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListEntries {
    /// The networks, in the order written (duplicates kept; the policy drops them).
    pub networks: Vec<Network>,
    /// The file they were read from, relative to the policy's directory.
    pub file: Option<ListFile>,
}

/// A list file's path as the policy gives it: relative to the policy's directory, and
/// inside it (no `..`), so that a staged tree (`--root`) reads its own files.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListFile(PathBuf);

impl ListFile {
    /// The path, relative to the policy's directory.
    pub fn path(&self) -> &Path {
        &self.0
    }
}

impl TryFrom<String> for ListFile {
    type Error = String;

    fn try_from(text: String) -> Result<ListFile, String> {
        if text.is_empty() || text.len() > MAX_PATH {
            return Err(format!(
                "expected a file path of 1-{MAX_PATH} bytes, found {} bytes",
                text.len()
            ));
        }
        if let Some(bad) = text.chars().find(|c| c.is_control()) {
            return Err(format!(
                "expected a file path without control characters, found {bad:?}"
            ));
        }
        let path = PathBuf::from(&text);
        let inside = path
            .components()
            .all(|c| matches!(c, Component::Normal(_) | Component::CurDir));
        if !inside {
            return Err(format!(
                "expected a path relative to the policy's directory and inside it (such as \"lists/customers.txt\"), found {text:?}"
            ));
        }
        Ok(ListFile(path))
    }
}

impl<'de> Deserialize<'de> for ListEntries {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct ListVisitor;
        impl<'de> Visitor<'de> for ListVisitor {
            type Value = ListEntries;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str(
                    "a list of addresses and networks, or { file = \"PATH\" } naming a file of them",
                )
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<ListEntries, A::Error> {
                let mut networks = Vec::new();
                while let Some(network) = seq.next_element::<Network>()? {
                    networks.push(network);
                }
                Ok(ListEntries {
                    networks,
                    file: None,
                })
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<ListEntries, A::Error> {
                let mut file = None;
                while let Some(key) = map.next_key::<String>()? {
                    if key != "file" || file.is_some() {
                        return Err(de::Error::custom(format!(
                            "expected only `file = \"PATH\"` in a list given by a file, found `{key}`"
                        )));
                    }
                    let text: String = map.next_value()?;
                    file = Some(ListFile::try_from(text).map_err(de::Error::custom)?);
                }
                let file = file.ok_or_else(|| {
                    de::Error::custom("expected `file = \"PATH\"` in a list given by a file")
                })?;
                Ok(ListEntries {
                    networks: Vec::new(),
                    file: Some(file),
                })
            }
        }
        deserializer.deserialize_any(ListVisitor)
    }
}

/// Reads the networks of `file` (relative to `policy_dir`) for list `field`. A line
/// that is not an address or network is an error naming the file, line and column.
pub fn read_list_file(
    policy_dir: &Path,
    file: &ListFile,
    field: &str,
) -> Result<Vec<Network>, PolicyError> {
    let path = policy_dir.join(file.path());
    let bytes = source::read(&path, LIST_FILE_LIMIT).map_err(|source| PolicyError::Read {
        path: path.clone(),
        source,
    })?;
    let text = std::str::from_utf8(&bytes).map_err(|e| {
        let prefix = std::str::from_utf8(&bytes[..e.valid_up_to()]).unwrap_or_default();
        invalid_line(
            &path,
            prefix,
            prefix.len()..prefix.len(),
            field,
            "expected UTF-8 text".to_owned(),
        )
    })?;
    parse_list(&path, text, field)
}

/// The networks of list file text `text` (read from `path`).
fn parse_list(path: &Path, text: &str, field: &str) -> Result<Vec<Network>, PolicyError> {
    let mut networks = Vec::new();
    let mut offset = 0;
    for line in text.split_inclusive('\n') {
        let content = line.split('#').next().unwrap_or_default();
        let word = content.trim();
        if !word.is_empty() {
            let start = offset + (content.len() - content.trim_start().len());
            let span = start..start + word.len();
            if word.contains(char::is_whitespace) {
                return Err(invalid_line(
                    path,
                    text,
                    span,
                    field,
                    format!("expected one address or network per line, found {word:?}"),
                ));
            }
            let network: Network = word
                .parse()
                .map_err(|message| invalid_line(path, text, span, field, message))?;
            networks.push(network);
        }
        offset += line.len();
    }
    Ok(networks)
}

fn invalid_line(
    path: &Path,
    text: &str,
    span: std::ops::Range<usize>,
    field: &str,
    message: String,
) -> PolicyError {
    PolicyError::Invalid {
        location: Box::new(Location::from_span(path, text, span)),
        field: Some(field.to_owned()),
        message,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn list_files_hold_one_network_per_line_with_comments() {
        let text = "# customers\n192.0.2.0/24\n\n  198.51.100.7   # the office\r\n2001:db8::/32\n";
        let networks = parse_list(Path::new("c.txt"), text, "lists.customers").unwrap();
        let shown: Vec<String> = networks.iter().map(|n| n.net().to_string()).collect();
        assert_eq!(shown, ["192.0.2.0/24", "198.51.100.7/32", "2001:db8::/32"]);
    }

    #[test]
    fn a_bad_line_is_reported_with_file_line_column_and_field() {
        for (text, at, says) in [
            (
                "192.0.2.0/24\n 192.0.2.300\n",
                "c.txt:2:2",
                "expected an IPv4 or IPv6",
            ),
            ("192.0.2.7/24\n", "c.txt:1:1", "host bits set"),
            (
                "192.0.2.1 192.0.2.2\n",
                "c.txt:1:1",
                "one address or network per line",
            ),
        ] {
            let err = parse_list(Path::new("c.txt"), text, "lists.customers")
                .unwrap_err()
                .to_string();
            assert!(
                err.contains(at) && err.contains("lists.customers") && err.contains(says),
                "{err}"
            );
        }
    }

    #[test]
    fn list_file_paths_stay_inside_the_policys_directory() {
        assert!(ListFile::try_from("lists/customers.txt".to_owned()).is_ok());
        for bad in ["/etc/passwd", "../secrets", "lists/../../x", "", "a\nb"] {
            assert!(ListFile::try_from(bad.to_owned()).is_err(), "{bad:?}");
        }
    }
}
