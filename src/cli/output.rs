//! Where the commands say what they did (standard output) and what the admin should know
//! (warnings, on standard error), or a buffer in tests.
//!
//! Saying something never fails a command. By the time a flow reports "reloaded", the
//! rules are loaded; a closed pipe (`iptables-ctl reload | head -1`), a closed terminal
//! or a full disk must not turn that into a reported failure, nor panic as `println!`
//! does. So a write that fails closes that stream quietly and the command goes on; its
//! exit code still says how the command itself went.

use std::fmt;
use std::io::{self, Write};

/// One stream of output.
#[derive(Debug)]
enum Sink {
    Stdout,
    Stderr,
    Buffer(Vec<u8>),
    /// A write failed earlier: nothing more is written.
    Closed,
}

impl Sink {
    fn write(&mut self, bytes: &[u8]) {
        let result = match self {
            Sink::Stdout => {
                let mut out = io::stdout().lock();
                out.write_all(bytes).and_then(|()| out.flush())
            }
            Sink::Stderr => io::stderr().lock().write_all(bytes),
            Sink::Buffer(buffer) => {
                buffer.extend_from_slice(bytes);
                Ok(())
            }
            Sink::Closed => Ok(()),
        };
        if result.is_err() {
            *self = Sink::Closed;
        }
    }

    fn text(&self) -> String {
        match self {
            Sink::Buffer(buffer) => String::from_utf8_lossy(buffer).into_owned(),
            _ => String::new(),
        }
    }
}

/// The two streams a command writes to.
#[derive(Debug)]
pub struct Output {
    out: Sink,
    err: Sink,
}

impl Output {
    /// The process's standard output and standard error.
    pub fn stdio() -> Output {
        Output {
            out: Sink::Stdout,
            err: Sink::Stderr,
        }
    }

    /// Both streams kept in memory, for tests.
    pub fn capture() -> Output {
        Output {
            out: Sink::Buffer(Vec::new()),
            err: Sink::Buffer(Vec::new()),
        }
    }

    /// Writes to standard output; this is what `write!` and `writeln!` call, so they
    /// return nothing to check.
    pub fn write_fmt(&mut self, args: fmt::Arguments<'_>) {
        self.out.write(fmt::format(args).as_bytes());
    }

    /// Prints `text` as it is (a report, JSON) to standard output.
    pub fn print(&mut self, text: &str) {
        self.out.write(text.as_bytes());
    }

    /// A warning: `iptables-ctl: warning: TEXT` on standard error.
    pub fn warn(&mut self, text: impl fmt::Display) {
        let text = terminal_safe(&text.to_string());
        self.err
            .write(format!("iptables-ctl: warning: {text}\n").as_bytes());
    }

    /// An error report: `iptables-ctl: error: TEXT` on standard error.
    pub fn error(&mut self, text: impl fmt::Display) {
        let text = terminal_safe(&text.to_string());
        self.err
            .write(format!("iptables-ctl: error: {text}\n").as_bytes());
    }

    /// What was written to standard output (captured output only).
    pub fn stdout_text(&self) -> String {
        self.out.text()
    }

    /// What was written to standard error (captured output only).
    pub fn stderr_text(&self) -> String {
        self.err.text()
    }
}

/// `text` with every control character but newline and tab shown as U+FFFD: reports
/// quote what a policy, a template or the kernel said, and an escape sequence in a key
/// must not drive the admin's terminal.
pub fn terminal_safe(text: &str) -> String {
    text.chars()
        .map(|c| {
            if c.is_control() && c != '\n' && c != '\t' {
                '\u{fffd}'
            } else {
                c
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escape_sequences_in_reports_do_not_reach_the_terminal() {
        let mut out = Output::capture();
        out.error("unknown field `\u{1b}[2J\u{1b}]0;owned\u{7}`\n  line two\twith a tab");
        out.warn("\u{9b}31m");
        let text = out.stderr_text();
        assert!(!text.contains(['\u{1b}', '\u{7}', '\u{9b}']), "{text:?}");
        assert!(text.contains("\n  line two\twith a tab\n"), "{text:?}");
    }

    #[test]
    fn captured_streams_keep_lines_and_warnings_apart() {
        let mut out = Output::capture();
        let path = "/etc/iptables/base.rules";
        writeln!(out, "wrote {path}");
        out.warn("eth9 does not exist");
        assert_eq!(out.stdout_text(), "wrote /etc/iptables/base.rules\n");
        assert_eq!(
            out.stderr_text(),
            "iptables-ctl: warning: eth9 does not exist\n"
        );
    }

    #[test]
    fn a_failed_write_closes_the_stream_instead_of_failing() {
        let mut sink = Sink::Closed;
        sink.write(b"dropped");
        assert_eq!(sink.text(), "");
    }
}
