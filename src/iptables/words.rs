//! The one quote-aware reader of iptables rule lines: a line split into [`Word`]s
//! exactly as iptables-restore splits it ([`split_words`], used to read dumps), and the
//! strict reading of the same ([`split_plain`], used by the shape check of rendered
//! files), which refuses spellings that read differently from how they look.

use std::fmt;

/// A word of a rule line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Word {
    /// The text, unquoted and unescaped.
    pub text: String,
    /// It was written in quotes.
    pub quoted: bool,
}

impl Word {
    /// An unquoted word.
    pub fn plain(text: &str) -> Word {
        Word {
            text: text.to_owned(),
            quoted: false,
        }
    }
}

impl fmt::Display for Word {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if !self.quoted {
            return f.write_str(&self.text);
        }
        // As xtables_save_string: double quotes, with ", ' and \ escaped.
        f.write_str("\"")?;
        for c in self.text.chars() {
            if matches!(c, '"' | '\'' | '\\') {
                f.write_str("\\")?;
            }
            write!(f, "{c}")?;
        }
        f.write_str("\"")
    }
}

/// Splits a rule line into words exactly as iptables-restore reads it (xshared.c's
/// `add_param_to_argv`), so that every check sees the arguments the kernel is given:
/// - outside quotes, a space ends a word and every other character (a backslash too)
///   is itself; a `"` opens a quote without ending the word (`a"b c"` is `ab c`);
/// - inside quotes, a backslash takes the next character as it is (`\"` is a quote that
///   does not close), and the closing `"` ends the word at once (`"ab"c` is `ab`, `c`;
///   `""` is an empty word);
/// - single quotes are ordinary characters.
///
/// iptables-restore silently keeps a quote still open at the end of the line (the rest
/// of the line becomes one word, and a rule can lose its target that way); here that is
/// an error.
pub fn split_words(line: &str) -> Result<Vec<Word>, String> {
    read(line, Reading::AsRestore)
}

/// [`split_words`] for a line that must read the same to a person as to
/// iptables-restore: refused first when it holds any backslash (inside quotes `\"` is
/// an escaped quote that does not close it, so `"a\" " -j X ... "` hides a target), then
/// at a quote that does not start its word or does not end it.
pub fn split_plain(line: &str) -> Result<Vec<Word>, String> {
    read(line, Reading::Plain)
}

/// How a line is read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Reading {
    /// As iptables-restore reads it.
    AsRestore,
    /// The same, refusing any spelling that reads differently from how it looks.
    Plain,
}

/// The one reader behind [`split_words`] and [`split_plain`].
fn read(line: &str, reading: Reading) -> Result<Vec<Word>, String> {
    let plain = reading == Reading::Plain;
    if plain && line.contains('\\') {
        return Err(
            "a backslash in a rule: iptables-restore reads \\\" inside quotes as a quote that does not close, so what the kernel loads would differ from what was checked"
                .to_owned(),
        );
    }
    let mut words = Vec::new();
    let mut text = String::new();
    let mut quoted = false;
    // The character before the one read (a space before the first).
    let mut previous = ' ';
    let mut chars = line.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '"' => {
                if plain && previous != ' ' {
                    return Err("a quote must start its word".to_owned());
                }
                quoted = true;
                loop {
                    match chars.next() {
                        Some('\\') => match chars.next() {
                            Some(escaped) => text.push(escaped),
                            None => return Err("a backslash ends the line".to_owned()),
                        },
                        Some('"') => break,
                        Some(other) => text.push(other),
                        None => return Err("unterminated double quote".to_owned()),
                    }
                }
                if plain && chars.peek().is_some_and(|next| *next != ' ') {
                    return Err("a closing quote must end its word".to_owned());
                }
                previous = '"';
                words.push(Word {
                    text: std::mem::take(&mut text),
                    quoted,
                });
                quoted = false;
                continue;
            }
            ' ' | '\t' | '\n' => {
                if !text.is_empty() {
                    words.push(Word {
                        text: std::mem::take(&mut text),
                        quoted,
                    });
                    quoted = false;
                }
            }
            other => text.push(other),
        }
        previous = c;
    }
    if !text.is_empty() {
        words.push(Word { text, quoted });
    }
    Ok(words)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_words_as_iptables_restore_reads_them() {
        // Each reading was observed with iptables-restore 1.8.9 in a network namespace.
        let cases: [(&str, &[&str]); 7] = [
            (
                "--comment \"a\\\" \" -j NFQUEUE --queue-num 7",
                &["--comment", "a\" ", "-j", "NFQUEUE", "--queue-num", "7"],
            ),
            (
                "--comment \"ab\"c -j ACCEPT",
                &["--comment", "ab", "c", "-j", "ACCEPT"],
            ),
            (
                "--comment a\"b c\" -j ACCEPT",
                &["--comment", "ab c", "-j", "ACCEPT"],
            ),
            (
                "--comment \"\" -j ACCEPT",
                &["--comment", "", "-j", "ACCEPT"],
            ),
            (
                "--comment \"a\\\\b\" -j ACCEPT",
                &["--comment", "a\\b", "-j", "ACCEPT"],
            ),
            ("--comment \"a\\b\"  x", &["--comment", "ab", "x"]),
            ("--comment 'x y' a\\b", &["--comment", "'x", "y'", "a\\b"]),
        ];
        for (line, expected) in cases {
            let words: Vec<String> = split_words(line)
                .unwrap()
                .into_iter()
                .map(|w| w.text)
                .collect();
            assert_eq!(words, expected, "{line}");
        }
        // A quote left open: iptables-restore makes the rest of the line one word (and so
        // drops the target that follows); here it is an error.
        assert!(split_words("--comment a\\\"b -j ACCEPT").is_err());
        assert!(split_words("--comment \"a\\\" \" -j NFQUEUE --comment \" -j ACCEPT").is_err());
    }
}
