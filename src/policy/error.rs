//! Errors about a policy file, each pointing at a file, line, column and field.

use std::ops::Range;
use std::path::{Path, PathBuf};

/// Where in a policy file something is wrong, with the line quoted for the admin.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Location {
    /// The policy file.
    pub path: PathBuf,
    /// 1-based line.
    pub line: usize,
    /// 1-based column, in characters.
    pub column: usize,
    /// The text of that line, for the report.
    pub line_text: String,
    /// How many characters of the line to underline (at least 1).
    pub width: usize,
}

impl Location {
    /// The location of byte range `span` in `text` (read from `path`).
    pub fn from_span(path: &Path, text: &str, span: Range<usize>) -> Location {
        let start = floor_char_boundary(text, span.start.min(text.len()));
        let line_start = text[..start].rfind('\n').map_or(0, |i| i + 1);
        let line_end = text[start..].find('\n').map_or(text.len(), |i| start + i);
        let line_text = text[line_start..line_end].trim_end_matches('\r').to_owned();
        let end = floor_char_boundary(text, span.end.clamp(start, line_end));
        Location {
            path: path.to_owned(),
            line: text[..start].matches('\n').count() + 1,
            column: text[line_start..start].chars().count() + 1,
            width: text[start..end].chars().count().max(1),
            line_text,
        }
    }
}

fn floor_char_boundary(text: &str, mut at: usize) -> usize {
    while !text.is_char_boundary(at) {
        at -= 1;
    }
    at
}

/// Why a policy could not be used. Nothing is written when any of these occurs.
#[derive(Debug, thiserror::Error)]
pub enum PolicyError {
    /// The file could not be read at all.
    #[error("cannot read policy {}", path.display())]
    Read {
        /// The policy file.
        path: PathBuf,
        /// Why not.
        source: crate::files::source::SourceError,
    },
    /// The file was read but is not a valid policy.
    #[error("{}", render_invalid(location, field.as_deref(), message))]
    Invalid {
        /// Where.
        location: Box<Location>,
        /// Dotted path of the field, such as `docker.published[1].port`; `None` for
        /// syntax errors that are not inside a known field.
        field: Option<String>,
        /// What was expected and what was found.
        message: String,
    },
}

impl PolicyError {
    /// The location, when the error has one.
    pub fn location(&self) -> Option<&Location> {
        match self {
            PolicyError::Read { .. } => None,
            PolicyError::Invalid { location, .. } => Some(location),
        }
    }
}

fn render_invalid(location: &Location, field: Option<&str>, message: &str) -> String {
    let what = printable(field.unwrap_or("syntax"));
    // The message may quote the value itself (serde's "unknown variant `...`" and
    // "unknown field `...`" do, unescaped), so it is held to the same rule.
    let message = printable(message);
    format!(
        "{}:{}:{}: {what}: {message}\n{:>5} | {}\n      | {}{}",
        location.path.display(),
        location.line,
        location.column,
        location.line,
        printable(&location.line_text),
        " ".repeat(location.column.saturating_sub(1)),
        "^".repeat(location.width),
    )
}

/// The line as it can be shown on a terminal, on one line: control characters
/// (newlines too) made visible.
fn printable(line: &str) -> String {
    crate::cli::output::terminal_safe(line).replace('\n', "\u{fffd}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn location_counts_lines_and_characters() {
        let text = "a = 1\nport = 65536\n";
        let loc = Location::from_span(Path::new("p.toml"), text, 13..18);
        assert_eq!((loc.line, loc.column, loc.width), (2, 8, 5));
        assert_eq!(loc.line_text, "port = 65536");
    }

    #[test]
    fn a_quoted_value_cannot_add_lines_or_escape_sequences_to_the_report() {
        let text = "deny = \"\\u001b[2J\\nok\"\n";
        let error = PolicyError::Invalid {
            location: Box::new(Location::from_span(Path::new("p.toml"), text, 7..20)),
            field: Some("defaults.deny".to_owned()),
            message: "unknown variant `\u{1b}[2J\nok\r\u{9b}`, expected `reject` or `drop`"
                .to_owned(),
        };
        let report = error.to_string();
        assert_eq!(report.lines().count(), 3, "{report}");
        assert!(!report.contains(['\u{1b}', '\r', '\u{9b}']), "{report:?}");
        assert!(
            report.starts_with("p.toml:1:8: defaults.deny: unknown variant `\u{fffd}[2J\u{fffd}ok"),
            "{report}"
        );
    }

    #[test]
    fn location_survives_spans_inside_multibyte_text() {
        let text = "c = \"é\"\n";
        let loc = Location::from_span(Path::new("p.toml"), text, 6..7);
        assert_eq!(loc.line, 1);
        let loc = Location::from_span(Path::new("p.toml"), text, 100..200);
        assert_eq!(loc.line, 2);
    }
}
