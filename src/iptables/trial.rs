//! Proving rendered files with the kernel's own parser: each file is loaded with the
//! real `iptables-restore -w -n` (the sets file with `ipset restore`, first) into a
//! network namespace created for the purpose and gone when the check ends.
//! `iptables-restore --test` is not enough (on nf_tables it misses unknown targets,
//! undeclared chains and protocol-less tcp-reset), so nothing short of a real load
//! counts. The live firewall is never touched.
//!
//! The namespace belongs to one thread: `unshare(CLONE_NEWNET)` moves only the calling
//! thread, and the programs it starts inherit that namespace.

use std::collections::HashSet;
use std::thread;

use nix::sched::{CloneFlags, unshare};

use crate::command::{self, ToolError};
use crate::family::Family;
use crate::iptables::sets::{self, SetDefinition};
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
    /// The sets loaded before the rules, with their members (the kernel held each one's
    /// count).
    pub sets: Vec<SetDefinition>,
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
    /// A rule matches a set named as this tool names an instance's sets, which the
    /// instance's sets file does not define.
    #[error(
        "{file} matches the ipset {set}, named as iptables-ctl names an instance's sets, but the instance's sets file does not define it (lost or edited?): render the instance again"
    )]
    UndefinedOwnSet {
        /// The file.
        file: String,
        /// The set.
        set: String,
    },
    /// The sets file is not one this tool writes.
    #[error("{file} is not a sets file as iptables-ctl writes them: {message}")]
    SetsFile {
        /// The file.
        file: String,
        /// What is wrong, with its line.
        message: String,
    },
    /// The ipsets the rules name could not be read (the reason is reported instead).
    #[error("the ipsets the rules name could not be read")]
    SetsUnread,
    /// Some other tool failure (missing program, save failing).
    #[error(transparent)]
    Tool(#[from] ToolError),
    /// The checking thread died.
    #[error("the kernel check thread failed unexpectedly")]
    Thread,
}

/// A way to prove the rendered files of one family (its sets, rules and pass-through
/// rules), each given as `(name, text)`. Both families are proven at once, from two
/// threads.
pub trait RulesetTrial: Sync {
    /// Loads `sets`, then `rules` once, twice, and followed by `empty`, and reports
    /// what the kernel held.
    fn trial(
        &self,
        family: Family,
        sets: (&str, &str),
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
        (sets_name, sets_text): (&str, &str),
        rules: (&str, &str),
        empty: (&str, &str),
    ) -> Result<TrialReport, TrialError> {
        let tools = self.tools;
        // The instance's own sets, read as strictly as the units' loader reads them.
        let own = sets::parse(sets_text, family).map_err(|message| TrialError::SetsFile {
            file: sets_name.to_owned(),
            message,
        })?;
        // The other ipsets the rules match on, made empty in each throwaway namespace as
        // this host has them (their type and family): the kernel needs them to load the
        // rules. A caller who may not make a namespace hears that first, not what ipset
        // said.
        let host_sets = set_headers(rules, &own);
        let in_namespace = |check: &(dyn Fn() -> Result<String, TrialError> + Sync)| {
            unshare(CloneFlags::CLONE_NEWNET).map_err(TrialError::Namespace)?;
            match &host_sets {
                Ok(headers) if !headers.is_empty() => {
                    command::run("ipset", &["restore"], headers.as_bytes())?;
                }
                Ok(_) => {}
                Err(_) => return Err(TrialError::SetsUnread),
            }
            check()
        };
        // Three namespaces at once: the sets and rules loaded once (what the kernel
        // holds), the rules loaded twice (which must hold the same: a second load
        // changes nothing), and the rules then the pass-through file. Each restore
        // waits in the kernel after its commit; side by side, a check costs two child
        // processes in sequence instead of six. The first of two loads leaves out the
        // policies the second sets again (see `without_policies_set_again`), so that
        // the pair waits in the kernel once, as a single load does. Every line of the
        // sets file is loaded once: its members in two halves, one in the first
        // namespace and one in a fourth, at once (half a load on each core, not a whole
        // one on one); the other two make the sets empty (the rules need them to exist,
        // not their members).
        let [first_half, second_half] = sets::halves(sets_text);
        let once = || {
            load_sets(sets_name, &first_half, &own, 0)?;
            rules_loaded(tools, family, &[rules])
        };
        let other_half = || {
            load_sets(sets_name, &second_half, &own, 1)?;
            Ok(String::new())
        };
        let empty_sets = sets::Half::whole(sets::create_lines(&own));
        let before_again = without_policies_set_again(rules.1, rules.1);
        let twice = || {
            load_sets(sets_name, &empty_sets, &[], 0)?;
            rules_loaded(tools, family, &[(rules.0, &before_again), rules])
        };
        let before_empty = without_policies_set_again(rules.1, empty.1);
        let then_empty = || {
            load_sets(sets_name, &empty_sets, &[], 0)?;
            rules_then_empty(tools, family, (rules.0, &before_empty), empty)
        };
        let (loaded, loaded_twice, loaded_empty, other_half) = thread::scope(|scope| {
            let once = scope.spawn(|| in_namespace(&once));
            let twice = scope.spawn(|| in_namespace(&twice));
            let then_empty = scope.spawn(|| in_namespace(&then_empty));
            let other = (!own.is_empty()).then(|| scope.spawn(|| in_namespace(&other_half)));
            (
                once.join().unwrap_or(Err(TrialError::Thread)),
                twice.join().unwrap_or(Err(TrialError::Thread)),
                then_empty.join().unwrap_or(Err(TrialError::Thread)),
                other.map(|h| h.join().unwrap_or(Err(TrialError::Thread))),
            )
        });
        let loaded = match loaded {
            Err(TrialError::SetsUnread) => {
                return Err(host_sets.err().unwrap_or(TrialError::Thread));
            }
            other => other?,
        };
        other_half.transpose()?;
        checked(rules.0, &loaded)?;
        if loaded_twice? != loaded {
            return Err(TrialError::NotIdempotent {
                file: rules.0.to_owned(),
            });
        }
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
            sets: own,
        })
    }
}

/// Loads the sets file `text` (half `half` of the file read as `own`, see
/// [`sets::halves`]) into this namespace with `ipset restore`, and checks that the
/// kernel holds each set with that half's members and no temporary set is left.
/// Nothing to do (and no ipset tool needed) without sets.
fn load_sets(
    file: &str,
    half_text: &sets::Half,
    own: &[SetDefinition],
    half: usize,
) -> Result<(), TrialError> {
    let text = &half_text.text;
    if !text.lines().any(|l| l.starts_with("create ")) {
        return Ok(());
    }
    command::run("ipset", &["restore"], text.as_bytes()).map_err(|e| match e {
        ToolError::Failed { stderr, .. } => {
            // Blamed on the line of the sets file, not of the half loaded.
            let line = ipset_failing_line(&stderr).and_then(|n| {
                let text = text.lines().nth(n.saturating_sub(1))?;
                Some((half_text.line_in_file(n), text.to_owned()))
            });
            TrialError::Refused {
                file: file.to_owned(),
                program: "ipset restore".to_owned(),
                line,
                stderr: stderr.trim().to_owned(),
            }
        }
        other => other.into(),
    })?;
    let differs = |message: String| TrialError::LoadedDiffers {
        file: file.to_owned(),
        message,
    };
    for set in own {
        let listed = command::run("ipset", &["list", "-t", &set.name], b"")?;
        let held = sets::entries(&listed);
        let expected = sets::half_counts(set.members.len())[half];
        if held != Some(expected) {
            return Err(differs(format!(
                "the set {} holds {} members, expected {expected}",
                set.name,
                held.map_or("an unknown number of".to_owned(), |n| n.to_string()),
            )));
        }
    }
    let names = command::run("ipset", &["list", "-n"], b"")?;
    if let Some(temp) = names.lines().find(|n| sets::is_temporary(n)) {
        return Err(differs(format!("the temporary set {temp} was left behind")));
    }
    Ok(())
}

/// The line `ipset restore` blamed (`Error in line N: ...`), if it said.
fn ipset_failing_line(stderr: &str) -> Option<usize> {
    let rest = &stderr[stderr.find("Error in line ")? + "Error in line ".len()..];
    rest.split(':').next()?.trim().parse().ok()
}

/// Options of the set match and target that name an ipset.
const SET_OPTIONS: [&str; 4] = ["--match-set", "--add-set", "--del-set", "--map-set"];

/// The ipsets the rule lines (`-A ...`) of `rules` name, each once, in order: read with
/// the quote-aware reader, so comments and log prefixes that merely mention an option
/// name no set.
fn sets_named(rules: &str) -> Vec<String> {
    let mut names: Vec<String> = Vec::new();
    for line in rules.lines().filter(|l| l.starts_with("-A ")) {
        let Ok(words) = crate::iptables::words::split_words(line) else {
            continue;
        };
        let mut words = words.iter();
        while let Some(word) = words.next() {
            if !word.quoted
                && SET_OPTIONS.contains(&word.text.as_str())
                && let Some(name) = words.next()
                && !names.contains(&name.text)
            {
                names.push(name.text.clone());
            }
        }
    }
    names
}

/// `ipset restore` input that creates, empty, each set `(file, rules)` names that is
/// not one of the instance's `own`, as this host's namespace has it: its type and
/// header from `ipset list -t NAME` (the header alone, however many members the set
/// holds).
fn set_headers((file, rules): (&str, &str), own: &[SetDefinition]) -> Result<String, TrialError> {
    let mut headers = String::new();
    for name in sets_named(rules)
        .into_iter()
        .filter(|name| !own.iter().any(|set| &set.name == name))
    {
        // A set of this tool's naming is the instance's own: its members come from the
        // sets file, never from whatever the host holds under that name (a sets file
        // lost or edited would otherwise pass against stale members).
        if name.starts_with(sets::PREFIX) {
            return Err(TrialError::UndefinedOwnSet {
                file: file.to_owned(),
                set: name,
            });
        }
        let listed = command::run("ipset", &["list", "-t", &name], b"").map_err(|e| match e {
            ToolError::Failed { stderr, .. } if stderr.contains("does not exist") => {
                TrialError::MissingSet {
                    file: file.to_owned(),
                    set: name.clone(),
                    why: stderr,
                }
            }
            other => TrialError::Tool(other),
        })?;
        let field = |key: &str| sets::header_field(&listed, key).unwrap_or_default();
        headers.push_str(&format!(
            "create {name} {} {}\n",
            field("Type:"),
            field("Header:")
        ));
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

/// Loads the files `(name, text)` in this (fresh) namespace, a transaction each, with
/// one restore process: returns what the kernel holds then.
fn rules_loaded(
    tools: Tools,
    family: Family,
    files: &[(&str, &str)],
) -> Result<String, TrialError> {
    load(tools, family, files)?;
    save(tools, family)
}

/// `first` without the policies that `then` sets again: each policy line (`:INPUT
/// DROP [0:0]`, a built-in chain's) for a chain of the same table that `then` gives a
/// policy too becomes a flush of that chain (`-F INPUT`), which makes the chain at the
/// same place, if the program makes chains as they are named, and flushes nothing in a
/// fresh namespace. Every line keeps its number, for errors.
///
/// Loaded into a fresh namespace before `then`, it leaves the kernel holding what
/// `first` and then `then` would: `then` sets each of those policies again, whatever
/// they were, and a policy is all the lines left out do. It waits in the kernel less.
/// Setting a policy updates a chain, and the kernel frees an update's old state only
/// after an RCU grace period, on a work item; the xtables matches and targets of the
/// next transaction in that namespace wait for that work before they load. So `first`
/// as it is, then `then`, waits for two grace periods one after the other, where a
/// single load waits for one: without its policies, `first` queues no such work, and
/// the pair waits once.
pub fn without_policies_set_again(first: &str, then: &str) -> String {
    let set_again: HashSet<(&str, &str)> = lines_in_tables(then)
        .filter_map(|(table, line)| Some((table, policy_line(line)?)))
        .collect();
    let mut kept = String::with_capacity(first.len());
    for (table, line) in lines_in_tables(first) {
        match policy_line(line) {
            Some(chain) if set_again.contains(&(table, chain)) => {
                kept.push_str("-F ");
                kept.push_str(chain);
            }
            _ => kept.push_str(line),
        }
        kept.push('\n');
    }
    kept
}

/// Each line of the restore file `text`, with the table it is in (`*filter` begins
/// `filter`; empty before the first).
fn lines_in_tables(text: &str) -> impl Iterator<Item = (&str, &str)> {
    let mut table = "";
    text.lines().map(move |line| {
        if let Some(name) = line.strip_prefix('*') {
            table = name.trim();
        }
        (table, line)
    })
}

/// Chains a policy is set on: the built-in ones (iptables takes the policy word of
/// another chain's declaration for nothing, and declares and flushes the chain).
const BUILT_IN_CHAINS: [&str; 5] = ["INPUT", "FORWARD", "OUTPUT", "PREROUTING", "POSTROUTING"];

/// The chain whose policy `line` sets, if it is a policy line: a built-in chain's
/// declaration with the policy ACCEPT or DROP (`:INPUT DROP [0:0]`).
fn policy_line(line: &str) -> Option<&str> {
    let mut words = line.strip_prefix(':')?.split_whitespace();
    let chain = words.next()?;
    let policy = words.next()?;
    (BUILT_IN_CHAINS.contains(&chain) && matches!(policy, "ACCEPT" | "DROP")).then_some(chain)
}

/// Loads `rules` and then the pass-through file `empty` in this namespace (one restore
/// process, a transaction each): returns what the kernel holds then.
fn rules_then_empty(
    tools: Tools,
    family: Family,
    rules: (&str, &str),
    empty: (&str, &str),
) -> Result<String, TrialError> {
    load(tools, family, &[rules, empty])?;
    let loaded_empty = save(tools, family)?;
    checked(empty.0, &loaded_empty)?;
    Ok(loaded_empty)
}

/// Loads the files `(name, text)` one after the other with one restore process (each
/// file's COMMIT its own transaction). A refused line is blamed on its own file, at its
/// line there.
fn load(tools: Tools, family: Family, files: &[(&str, &str)]) -> Result<(), TrialError> {
    let program = tools.restore_program(family);
    let mut input = String::new();
    for (_, text) in files {
        input.push_str(text);
        // A file edited by hand may lack its last newline: the next must start a line.
        if !text.is_empty() && !text.ends_with('\n') {
            input.push('\n');
        }
    }
    match command::run(program, &["-w", "-n"], input.as_bytes()) {
        Ok(_) => Ok(()),
        Err(ToolError::Failed { stderr, .. }) => {
            let (name, line) = match iptables::failing_line(&stderr) {
                Some(n) => {
                    let (name, text, n) = file_of_line(files, n);
                    let line = text
                        .lines()
                        .nth(n.saturating_sub(1))
                        .map(|t| (n, t.to_owned()));
                    (name, line)
                }
                None => (files.first().map_or("", |(name, _)| *name), None),
            };
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

/// The file of `files` (concatenated) that holds line `n` of the whole, with the line's
/// number in that file.
fn file_of_line<'a>(files: &[(&'a str, &'a str)], n: usize) -> (&'a str, &'a str, usize) {
    let mut before = 0;
    for (name, text) in files {
        let lines = text.lines().count();
        if n <= before + lines {
            return (name, text, n - before);
        }
        before += lines;
    }
    let (name, text) = files.last().copied().unwrap_or(("", ""));
    (name, text, n.saturating_sub(before))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Only the set options of rule lines name sets: comments and log prefixes that
    /// mention them do not, and each set is named once.
    /// A line refused in a restore of several files is blamed on its own file.
    #[test]
    fn a_line_of_concatenated_files_is_found_in_its_own_file() {
        let files = [("a.rules", "1\n2\n3\n"), ("b.rules", "x\ny\n")];
        assert_eq!(file_of_line(&files, 2), ("a.rules", "1\n2\n3\n", 2));
        assert_eq!(file_of_line(&files, 4), ("b.rules", "x\ny\n", 1));
        assert_eq!(file_of_line(&files, 5), ("b.rules", "x\ny\n", 2));
    }

    /// The first of two loads leaves out exactly the policies the second sets again,
    /// table by table, each a flush of its chain in its place: user chains'
    /// declarations (whatever their policy word), rules, the policies the second leaves
    /// alone and every line number stay.
    #[test]
    fn a_first_load_leaves_out_only_the_policies_the_second_sets_again() {
        let rules = "# header\n*filter\n:INPUT DROP [0:0]\n:OUTPUT DROP [0:0]\n\
            :DOCKER-USER - [0:0]\n-F INPUT\n-A INPUT -j ACCEPT\nCOMMIT\n";
        assert_eq!(
            without_policies_set_again(rules, rules),
            "# header\n*filter\n-F INPUT\n-F OUTPUT\n:DOCKER-USER - [0:0]\n-F INPUT\n-A INPUT -j ACCEPT\nCOMMIT\n"
        );
        // A pass-through file that sets INPUT's policy but not OUTPUT's: OUTPUT's stays,
        // or the load would not leave what the rules then that file leave.
        let empty = "*filter\n:INPUT ACCEPT [0:0]\n:DOCKER-USER - [0:0]\nCOMMIT\n";
        assert_eq!(
            without_policies_set_again(rules, empty),
            "# header\n*filter\n-F INPUT\n:OUTPUT DROP [0:0]\n:DOCKER-USER - [0:0]\n-F INPUT\n-A INPUT -j ACCEPT\nCOMMIT\n"
        );
        // The same chain's policy in another table is another policy.
        let mangle = "*mangle\n:INPUT ACCEPT [0:0]\nCOMMIT\n";
        assert_eq!(without_policies_set_again(rules, mangle), rules);
        // A user chain's declaration declares (and flushes) it, whatever its second word.
        let user = "*filter\n:DOCKER-USER ACCEPT [0:0]\n-A DOCKER-USER -j RETURN\nCOMMIT\n";
        assert_eq!(without_policies_set_again(user, user), user);
        // A last line without its newline gets one; the count of lines is the same.
        let unterminated = "*filter\n:INPUT DROP [0:0]\nCOMMIT";
        let first = without_policies_set_again(unterminated, unterminated);
        assert_eq!(first, "*filter\n-F INPUT\nCOMMIT\n");
        assert_eq!(first.lines().count(), unterminated.lines().count());
    }

    #[test]
    fn the_sets_a_ruleset_names_come_from_its_set_options() {
        let rules = "# -A INPUT -m set --match-set fake src\n\
            -A INPUT -m set --match-set office src -j ACCEPT\n\
            -A INPUT -m comment --comment \"see --match-set other\" -j ACCEPT\n\
            -A DOCKER-USER -j SET --add-set seen src\n\
            -A INPUT -m set ! --match-set office src -m recent --set -j DROP\n";
        assert_eq!(sets_named(rules), ["office", "seen"]);
    }
}
