//! Proving rendered files with the kernel's own parser: each file is loaded with the
//! real `iptables-restore -w -n` into a network namespace created for the purpose and
//! gone when the check ends. `iptables-restore --test` is not enough (on nf_tables it
//! misses unknown targets, undeclared chains and protocol-less tcp-reset), so nothing
//! short of a real load counts. The live firewall is never touched.
//!
//! The namespace belongs to one thread: `unshare(CLONE_NEWNET)` moves only the calling
//! thread, and the programs it starts inherit that namespace.

use std::thread;

use nix::sched::{CloneFlags, unshare};

use crate::command::{self, ToolError};
use crate::family::Family;
use crate::iptables::shape::{self, OWNED_CHAINS};
use crate::iptables::{self, Tools};

/// What a successful trial saw.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TrialReport {
    /// The ruleset the kernel held after loading the rules (iptables-save, no comments).
    pub loaded: String,
    /// The same after loading the pass-through file on top.
    pub loaded_empty: String,
    /// Number of rules in the owned chains after loading.
    pub rule_count: usize,
}

/// Why a trial failed.
#[derive(Debug, thiserror::Error)]
pub enum TrialError {
    /// No namespace could be made (usually: not root).
    #[error(
        "cannot create a throwaway network namespace for the kernel check: {0} (it needs root, CAP_SYS_ADMIN)"
    )]
    Namespace(nix::Error),
    /// The kernel or iptables refused the file.
    #[error("{file} was refused by {program}{}: {stderr}", line.as_ref().map(|(n, text)| format!(" at line {n}: {text}")).unwrap_or_default())]
    Refused {
        /// The file.
        file: String,
        /// The restore program.
        program: String,
        /// The line it blamed, with its text.
        line: Option<(usize, String)>,
        /// What it said (boilerplate removed).
        stderr: String,
    },
    /// Loading twice gave a different ruleset: the file would change the firewall on every reload.
    #[error("{file} is not idempotent: loading it a second time changed the ruleset")]
    NotIdempotent {
        /// The file.
        file: String,
    },
    /// The kernel holds something the shape check would have refused.
    #[error("{file}: what the kernel loaded differs from what was checked: {message}")]
    LoadedDiffers {
        /// The file.
        file: String,
        /// What was found.
        message: String,
    },
    /// A rule matches an ipset this host does not have: the rules would not load here.
    #[error(
        "{file} matches the ipset {set}, which this host does not have ({why}): create it (and have it made at boot, before the rules load) or remove the rule"
    )]
    MissingSet {
        /// The file.
        file: String,
        /// The set.
        set: String,
        /// What ipset said.
        why: String,
    },
    /// Some other tool failure (missing program, save failing).
    #[error(transparent)]
    Tool(#[from] ToolError),
    /// The checking thread died.
    #[error("the kernel check thread failed unexpectedly")]
    Thread,
}

/// A way to prove a pair of rendered files (rules and pass-through) of one family. Both
/// families are proven at once, from two threads.
pub trait RulesetTrial: Sync {
    /// Loads `rules` twice and then `empty`, and reports what the kernel held.
    fn trial(
        &self,
        family: Family,
        rules: (&str, &str),
        empty: (&str, &str),
    ) -> Result<TrialReport, TrialError>;
}

/// Trials in a fresh network namespace with the real tools of `tools`.
#[derive(Debug, Clone, Copy, Default)]
pub struct NetnsTrial {
    /// Which iptables implementation to load with.
    pub tools: Tools,
}

impl RulesetTrial for NetnsTrial {
    fn trial(
        &self,
        family: Family,
        rules: (&str, &str),
        empty: (&str, &str),
    ) -> Result<TrialReport, TrialError> {
        let tools = self.tools;
        // The ipsets the rules match on, made empty in each throwaway namespace as this
        // host has them (their type and family): the kernel needs them to load the rules.
        let sets = set_headers(rules)?;
        let in_namespace = |check: &(dyn Fn() -> Result<String, TrialError> + Sync)| {
            unshare(CloneFlags::CLONE_NEWNET).map_err(TrialError::Namespace)?;
            if !sets.is_empty() {
                command::run("ipset", &["restore"], sets.as_bytes())?;
            }
            check()
        };
        // Two namespaces at once: the rules loaded twice (what the kernel holds, and that
        // a second load changes nothing) in one, the rules and then the pass-through file
        // in the other. Each restore waits in the kernel after its commit; side by side,
        // a check costs four child processes in sequence instead of six.
        let twice = || rules_twice(tools, family, rules);
        let then_empty = || rules_then_empty(tools, family, rules, empty);
        let (loaded, loaded_empty) = thread::scope(|scope| {
            let twice = scope.spawn(|| in_namespace(&twice));
            let then_empty = scope.spawn(|| in_namespace(&then_empty));
            (
                twice.join().unwrap_or(Err(TrialError::Thread)),
                then_empty.join().unwrap_or(Err(TrialError::Thread)),
            )
        });
        let loaded = loaded?;
        let loaded_empty = loaded_empty?;
        let rule_count = loaded
            .lines()
            .filter(|l| {
                OWNED_CHAINS
                    .iter()
                    .any(|chain| l.starts_with(&format!("-A {chain} ")))
            })
            .count();
        Ok(TrialReport {
            loaded,
            loaded_empty,
            rule_count,
        })
    }
}

/// The ipsets `rules` match on (`--match-set NAME`), each once, in order.
fn sets_named(rules: &str) -> Vec<&str> {
    let mut names: Vec<&str> = Vec::new();
    for line in rules.lines() {
        let mut words = line.split_whitespace();
        while let Some(word) = words.next() {
            if word == "--match-set"
                && let Some(name) = words.next()
                && !names.contains(&name)
            {
                names.push(name);
            }
        }
    }
    names
}

/// `ipset restore` input that creates, empty, each set `(file, rules)` matches on, as
/// this host's namespace has it (the `create` line of `ipset save NAME`).
fn set_headers((file, rules): (&str, &str)) -> Result<String, TrialError> {
    let mut headers = String::new();
    for name in sets_named(rules) {
        let saved = command::run("ipset", &["save", name], b"").map_err(|e| match e {
            ToolError::Failed { stderr, .. } => TrialError::MissingSet {
                file: file.to_owned(),
                set: name.to_owned(),
                why: stderr,
            },
            other => TrialError::Tool(other),
        })?;
        for create in saved.lines().filter(|l| l.starts_with("create ")) {
            headers.push_str(create);
            headers.push('\n');
        }
    }
    Ok(headers)
}

/// The filter table as `family`'s save program prints it here, normalized.
fn save(tools: Tools, family: Family) -> Result<String, TrialError> {
    Ok(iptables::normalize_save(&command::run(
        tools.save_program(family),
        &["-t", "filter"],
        b"",
    )?))
}

/// Whether what the kernel holds of `file` (`saved`) keeps the shape that was checked.
fn checked(file: &str, saved: &str) -> Result<(), TrialError> {
    shape::check_loaded(saved).map_err(|message| TrialError::LoadedDiffers {
        file: file.to_owned(),
        message,
    })
}

/// Loads `rules` in this namespace, then again: returns what the kernel held after the
/// first load, which the second must not change.
fn rules_twice(
    tools: Tools,
    family: Family,
    (rules_name, rules): (&str, &str),
) -> Result<String, TrialError> {
    load(tools, family, rules_name, rules)?;
    let first = save(tools, family)?;
    checked(rules_name, &first)?;
    load(tools, family, rules_name, rules)?;
    if save(tools, family)? != first {
        return Err(TrialError::NotIdempotent {
            file: rules_name.to_owned(),
        });
    }
    Ok(first)
}

/// Loads `rules` and then the pass-through file `empty` in this namespace: returns what
/// the kernel holds then.
fn rules_then_empty(
    tools: Tools,
    family: Family,
    (rules_name, rules): (&str, &str),
    (empty_name, empty): (&str, &str),
) -> Result<String, TrialError> {
    load(tools, family, rules_name, rules)?;
    load(tools, family, empty_name, empty)?;
    let loaded_empty = save(tools, family)?;
    checked(empty_name, &loaded_empty)?;
    Ok(loaded_empty)
}

fn load(tools: Tools, family: Family, name: &str, text: &str) -> Result<(), TrialError> {
    let program = tools.restore_program(family);
    match command::run(program, &["-w", "-n"], text.as_bytes()) {
        Ok(_) => Ok(()),
        Err(ToolError::Failed { stderr, .. }) => {
            let line = iptables::failing_line(&stderr).and_then(|n| {
                text.lines()
                    .nth(n.saturating_sub(1))
                    .map(|t| (n, t.to_owned()))
            });
            Err(TrialError::Refused {
                file: name.to_owned(),
                program: program.to_owned(),
                line,
                stderr: iptables::error_summary(&stderr),
            })
        }
        Err(other) => Err(other.into()),
    }
}
