//! The journal, read with `journalctl`: the last lines a unit logged, shown when one of
//! its jobs fails so that the admin sees iptables-restore's own complaint.

use crate::command;

/// The last `lines` lines `unit` logged in this boot, oldest first. When the journal
/// cannot be read, the one line says why instead: a failure report should never fail
/// for want of its log.
pub fn unit_tail(unit: &str, lines: usize) -> Vec<String> {
    let count = lines.to_string();
    let args = [
        "--unit",
        unit,
        "--boot",
        "--lines",
        count.as_str(),
        "--no-pager",
        "--quiet",
        "--output",
        "short-precise",
    ];
    match command::run("journalctl", &args, b"") {
        Ok(text) => text.lines().map(str::to_owned).collect(),
        Err(e) => vec![format!("(journal not available: {e})")],
    }
}
