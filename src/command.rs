//! Running the external programs iptables-ctl relies on (iptables-restore and -save,
//! journalctl, ...): one place that starts them, feeds their input and turns a failure
//! into an error carrying the command line and what the program said.

use std::io::{self, Write};
use std::process::{Command, Output, Stdio};

/// A tool that ran and failed, with what it said.
#[derive(Debug, thiserror::Error)]
pub enum ToolError {
    /// The program could not be started.
    #[error("cannot run {program}{hint}", hint = if source.kind() == io::ErrorKind::NotFound { " (is it installed?)" } else { "" })]
    Spawn {
        /// The program.
        program: String,
        /// What the system said.
        source: io::Error,
    },
    /// The program exited unsuccessfully.
    #[error("{program} failed ({status}): {stderr}")]
    Failed {
        /// The command line.
        program: String,
        /// Exit status.
        status: String,
        /// Its standard error, trimmed.
        stderr: String,
    },
}

/// A copy of `error`, for a read answered again from memory: its kind and its text (an
/// [`io::Error`] is not `Clone`).
pub fn copy_io_error(error: &io::Error) -> io::Error {
    io::Error::new(error.kind(), error.to_string())
}

/// A copy, for a read answered again from memory: a spawn failure's system error keeps
/// its kind and its text ([`copy_io_error`]).
impl Clone for ToolError {
    fn clone(&self) -> ToolError {
        match self {
            ToolError::Spawn { program, source } => ToolError::Spawn {
                program: program.clone(),
                source: copy_io_error(source),
            },
            ToolError::Failed {
                program,
                status,
                stderr,
            } => ToolError::Failed {
                program: program.clone(),
                status: status.clone(),
                stderr: stderr.clone(),
            },
        }
    }
}

/// Runs `program args`, feeding `stdin`, and returns its standard output.
pub fn run(program: &str, args: &[&str], stdin: &[u8]) -> Result<String, ToolError> {
    let spawn_error = |source| ToolError::Spawn {
        program: program.to_owned(),
        source,
    };
    let mut child = Command::new(program)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(spawn_error)?;
    if let Some(mut pipe) = child.stdin.take() {
        // A tool that exits early closes the pipe; its exit status tells why.
        let _ = pipe.write_all(stdin);
    }
    let Output {
        status,
        stdout,
        stderr,
    } = child.wait_with_output().map_err(spawn_error)?;
    if !status.success() {
        return Err(ToolError::Failed {
            program: std::iter::once(program)
                .chain(args.iter().copied())
                .collect::<Vec<_>>()
                .join(" "),
            status: status.to_string(),
            stderr: String::from_utf8_lossy(&stderr).trim().to_owned(),
        });
    }
    Ok(String::from_utf8_lossy(&stdout).into_owned())
}
