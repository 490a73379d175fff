//! Bounded fuzzing of everything that reads text the tool does not write itself: the
//! policy parser (`Policy::parse`) and the render path behind it, the iptables-save
//! parser (`dump::parse`, `split_words`), the shape check of rendered files
//! (`check_shape`, `tokenize`) and of what the kernel loaded (`check_loaded`), and the
//! evaluator and the audit on parsed dumps.
//!
//! Inputs are arbitrary bytes, token soups of each format, and mutations (insertions,
//! deletions, replacements, duplicated and swapped lines, truncations, hostile strings
//! spliced into values) of the project's own examples: the policies, the captured
//! iptables-save fixtures and the rendered files. Every outcome must be a value or a
//! located error, never a panic; a few cross-checks ride along (a dump prints back to
//! what it read, a file the shape check passes also passes the check of what the kernel
//! loaded).
//!
//! Every input runs under a watchdog ([`watchdog::guarded`]): one that runs past
//! [`watchdog::LIMIT`] aborts the test binary, saying which input and saving it to the
//! temp directory. That catches hangs. Super-linear blow-up is caught the same way,
//! without timing assertions: each parser is also fed its worst shapes at the largest
//! size the tool accepts (a policy of 4 MiB, a rendered file of 25,000 rules, a dump of
//! 4 MiB and 100,000 rules), where a quadratic reader runs for hours, not seconds.
//! `bench/parsers.rs` prints the growth itself (`cargo bench --bench parsers`).
//!
//! The run is reproducible: a fixed number of cases, a fixed seed, no file written
//! (failure persistence off). A longer run, with another seed:
//! `PROPTEST_CASES=20000 PROPTEST_RNG_SEED=7 cargo test --release --test fuzz`.
#![allow(clippy::expect_used, clippy::panic, clippy::unwrap_used)] // test support may fail loudly

mod common;

use std::net::IpAddr;
use std::path::Path;
use std::sync::OnceLock;

use iptables_ctl::audit;
use iptables_ctl::family::Family;
use iptables_ctl::files::source::POLICY_LIMIT;
use iptables_ctl::host::net::HostNet;
use iptables_ctl::iptables::dump::{self, Dump, Word};
use iptables_ctl::iptables::render::{self, RenderRequest, Templates};
use iptables_ctl::iptables::shape::{self, MAX_RULES};
use iptables_ctl::iptables::walk::{self, Packet, Ruleset, Transport};
use iptables_ctl::policy::types::InstanceName;
use iptables_ctl::policy::{Policy, PolicyError};
use proptest::prelude::*;
use proptest::sample::{Index, select};
use proptest::test_runner::RngSeed;

/// Cases per property when `PROPTEST_CASES` is not set: the properties take about ten
/// seconds of a debug build on two cores, the whole file under a minute.
const CASES: u32 = 600;

/// The seed when `PROPTEST_RNG_SEED` is not set.
const SEED: u64 = 0x1907_2026;

/// The run's configuration: fixed cases and seed unless the environment says otherwise,
/// nothing written to the tree, shrinking bounded.
fn config(cases: u32) -> ProptestConfig {
    let from_env = ProptestConfig::default();
    ProptestConfig {
        cases: if std::env::var_os("PROPTEST_CASES").is_some() {
            from_env.cases
        } else {
            cases
        },
        rng_seed: match from_env.rng_seed {
            RngSeed::Random => RngSeed::Fixed(SEED),
            fixed => fixed,
        },
        failure_persistence: None,
        max_shrink_time: 120_000,
        ..from_env
    }
}

/// Per-input time limit: anything still running after it aborts the test binary.
mod watchdog {
    use std::collections::BTreeMap;
    use std::io::Write as _;
    use std::sync::atomic::{AtomicU64, Ordering};
    use std::sync::{Arc, Mutex, OnceLock};
    use std::time::{Duration, Instant};

    /// How long one input may run. Generous: the largest inputs here (4 MiB) take a few
    /// seconds in a debug build, while a quadratic reader would take hours on them. It
    /// detects hangs and blow-ups; it measures nothing.
    pub const LIMIT: Duration = Duration::from_secs(20);

    struct Running {
        what: String,
        input: Arc<[u8]>,
        started: Instant,
    }

    static RUNNING: Mutex<BTreeMap<u64, Running>> = Mutex::new(BTreeMap::new());
    static NEXT: AtomicU64 = AtomicU64::new(0);
    static MONITOR: OnceLock<()> = OnceLock::new();

    struct Done(u64);

    impl Drop for Done {
        fn drop(&mut self) {
            running().remove(&self.0);
        }
    }

    fn running() -> std::sync::MutexGuard<'static, BTreeMap<u64, Running>> {
        // A panicking input (a test failure) must not poison the watchdog for the rest.
        RUNNING
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Runs `f` on this thread, watched: if it is still running after [`LIMIT`], the
    /// process aborts after printing `what` and saving `input`.
    pub fn guarded<T>(what: &str, input: &[u8], f: impl FnOnce() -> T) -> T {
        MONITOR.get_or_init(|| {
            std::thread::spawn(monitor);
        });
        let id = NEXT.fetch_add(1, Ordering::Relaxed);
        running().insert(
            id,
            Running {
                what: what.to_owned(),
                input: input.into(),
                started: Instant::now(),
            },
        );
        let _done = Done(id);
        f()
    }

    fn monitor() {
        loop {
            std::thread::sleep(Duration::from_millis(100));
            let overdue: Vec<(String, Arc<[u8]>, Duration)> = running()
                .values()
                .filter(|r| r.started.elapsed() > LIMIT)
                .map(|r| (r.what.clone(), r.input.clone(), r.started.elapsed()))
                .collect();
            if overdue.is_empty() {
                continue;
            }
            for (what, input, elapsed) in overdue {
                let saved = std::env::temp_dir().join(format!(
                    "iptables-ctl-fuzz-overdue-{}-{}.bin",
                    std::process::id(),
                    what.replace(|c: char| !c.is_ascii_alphanumeric(), "-")
                ));
                let saved = match std::fs::write(&saved, &input) {
                    Ok(()) => saved.display().to_string(),
                    Err(e) => format!("(not saved: {e})"),
                };
                let head = String::from_utf8_lossy(&input[..input.len().min(300)]).into_owned();
                // Straight to the process's stderr: the test harness's capture would
                // be lost with the abort.
                let _ = writeln!(
                    std::io::stderr(),
                    "watchdog: {what} still running after {elapsed:?} (limit {LIMIT:?}): a hang or a super-linear blow-up; input of {} bytes saved to {saved}, starting {head:?}",
                    input.len()
                );
            }
            std::process::abort();
        }
    }
}

use watchdog::guarded;

// ---------------------------------------------------------------------------------------
// Seeds: the project's own examples, fixtures and rendered files.
// ---------------------------------------------------------------------------------------

/// The example policies (tests/policies/*.toml and etc/iptables/base.toml), as bytes.
fn policies() -> &'static [Vec<u8>] {
    static POLICIES: OnceLock<Vec<Vec<u8>>> = OnceLock::new();
    POLICIES.get_or_init(|| {
        common::example_policies()
            .iter()
            .map(|p| std::fs::read(p).unwrap())
            .collect()
    })
}

/// The captured iptables-save fixtures (tests/fixtures/save/*.rules*, tests/fixtures/*.rules*).
fn dumps() -> &'static [String] {
    static DUMPS: OnceLock<Vec<String>> = OnceLock::new();
    DUMPS.get_or_init(|| {
        let mut paths: Vec<_> = ["tests/fixtures/save", "tests/fixtures"]
            .iter()
            .flat_map(|dir| std::fs::read_dir(dir).unwrap())
            .map(|e| e.unwrap().path())
            .filter(|p| {
                p.file_name()
                    .is_some_and(|n| n.to_string_lossy().contains(".rules"))
            })
            .collect();
        paths.sort();
        assert!(paths.len() >= 11, "{paths:?}");
        paths
            .iter()
            .map(|p| std::fs::read_to_string(p).unwrap())
            .collect()
    })
}

/// The built-in templates, loaded once.
fn templates() -> &'static Templates {
    static TEMPLATES: OnceLock<Templates> = OnceLock::new();
    TEMPLATES.get_or_init(|| {
        Templates::load(Path::new("/nonexistent-root/etc/iptables/templates")).unwrap()
    })
}

/// Every rendered file of every example policy (the golden files' content).
fn rendered() -> &'static [String] {
    static RENDERED: OnceLock<Vec<String>> = OnceLock::new();
    RENDERED.get_or_init(|| {
        common::example_policies()
            .iter()
            .flat_map(|p| common::render_policy(p))
            // The rules files: the sets files are read by their own strict reader.
            .filter(|f| f.kind != render::FileKind::Sets)
            .map(|f| f.text)
            .collect()
    })
}

/// What the kernel would list after loading a rendered file: its declarations (and
/// FORWARD, which a fresh namespace has), its rules as iptables-save prints them (words
/// quoted when they need it), no flushes, no comments.
fn as_loaded(rendered: &str) -> String {
    let mut out = String::from("*filter\n:FORWARD ACCEPT [0:0]\n");
    for line in rendered.lines().map(str::trim) {
        if line.starts_with(':') {
            out.push_str(line);
            out.push('\n');
        } else if line.starts_with("-A") {
            let words = dump::split_words(line).unwrap();
            let printed: Vec<String> = words
                .into_iter()
                .map(|w| {
                    let quoted = w.text.is_empty() || w.text.contains([' ', '"', '\\', '\'']);
                    Word {
                        text: w.text,
                        quoted,
                    }
                    .to_string()
                })
                .collect();
            out.push_str(&printed.join(" "));
            out.push('\n');
        }
    }
    out.push_str("COMMIT\n");
    out
}

/// Kernel listings of the rendered examples.
fn loaded() -> &'static [String] {
    static LOADED: OnceLock<Vec<String>> = OnceLock::new();
    LOADED.get_or_init(|| rendered().iter().map(|r| as_loaded(r)).collect())
}

// ---------------------------------------------------------------------------------------
// Checks run on every input.
// ---------------------------------------------------------------------------------------

const POLICY_PATH: &str = "/etc/iptables/fuzz.toml";

/// `Policy::parse` on `bytes`: Ok, or an error located inside the text whose report
/// starts with `path:line:col: `. A policy that parses is rendered.
fn check_policy(bytes: &[u8]) -> Result<(), TestCaseError> {
    let result = guarded("Policy::parse", bytes, || {
        Policy::parse(Path::new(POLICY_PATH), bytes)
    });
    let policy = match result {
        Ok(policy) => policy,
        Err(error) => return check_policy_error(bytes, &error),
    };
    guarded("render", bytes, || check_render(&policy))
}

/// A policy error is located: its report starts with `path:line:col: `, and the line
/// and column are inside the text (the line quoted is that line).
fn check_policy_error(bytes: &[u8], error: &PolicyError) -> Result<(), TestCaseError> {
    let Some(location) = error.location() else {
        return Err(TestCaseError::fail(format!(
            "parse gave an error without a location: {error:?}"
        )));
    };
    let report = error.to_string();
    let header = format!("{POLICY_PATH}:{}:{}: ", location.line, location.column);
    prop_assert!(
        report.starts_with(&header),
        "report {report:?} does not start with {header:?}"
    );
    prop_assert!(location.column >= 1 && location.width >= 1, "{location:?}");
    let text = match std::str::from_utf8(bytes) {
        Ok(text) => text,
        Err(e) => std::str::from_utf8(&bytes[..e.valid_up_to()]).unwrap(),
    };
    let lines: Vec<&str> = text.split('\n').collect();
    prop_assert!(
        location.line >= 1 && location.line <= lines.len(),
        "line {} of a text of {} lines",
        location.line,
        lines.len()
    );
    let raw = lines[location.line - 1];
    let line = raw.trim_end_matches('\r');
    prop_assert_eq!(&location.line_text, line);
    prop_assert!(
        location.column <= raw.chars().count() + 1,
        "column {} on a line of {} characters",
        location.column,
        raw.chars().count()
    );
    Ok(())
}

/// The render path on a policy that parsed: never a panic; when it renders, four files,
/// each of which passes the shape check.
fn check_render(policy: &Policy) -> Result<(), TestCaseError> {
    let _ = policy.named_interfaces();
    let _ = policy.missing_interfaces(&["lo".to_owned(), "eth0".to_owned()]);
    let _ = policy.bridges_matching_uplinks(&["eth0".to_owned(), "br-lan".to_owned()]);
    // An expansion names each network once, and naming every reference twice changes
    // nothing (for the first entries only: each expansion costs the size of its lists).
    let references = policy
        .host
        .services
        .iter()
        .filter_map(|s| s.from.as_ref())
        .chain(policy.outbound.allow.iter().filter_map(|r| r.to.as_ref()))
        .chain(
            policy
                .docker
                .published
                .iter()
                .filter_map(|p| p.from.as_ref()),
        )
        .take(20);
    for refs in references {
        let all = policy.expand(refs.get_ref());
        let distinct: std::collections::HashSet<_> = all.iter().collect();
        prop_assert_eq!(distinct.len(), all.len());
        let twice: Vec<_> = refs
            .get_ref()
            .iter()
            .chain(refs.get_ref())
            .cloned()
            .collect();
        prop_assert_eq!(policy.expand(&twice), all);
    }
    let instance: InstanceName = "base".parse().unwrap();
    let request = RenderRequest {
        instance: &instance,
        policy,
        policy_path: Path::new(POLICY_PATH),
    };
    if let Ok(files) = render::render(templates(), &request) {
        prop_assert_eq!(files.len(), 6);
        for file in &files {
            let shaped = if file.kind == render::FileKind::Sets {
                iptables_ctl::iptables::sets::parse(&file.text, file.family).is_ok()
            } else {
                shape::check_shape(&file.text).is_ok()
            };
            prop_assert!(
                shaped,
                "{} rendered but fails the shape check",
                file.file_name
            );
        }
    }
    Ok(())
}

/// `dump::parse` on `text`: an error names a line of the text; a dump prints back to
/// text that reads as the same dump. A parsed dump goes through the evaluator and the
/// audit.
fn check_dump(text: &str) -> Result<(), TestCaseError> {
    check_dump_with(text, true)
}

/// [`check_dump`], with the full audit or not (it walks every published port from
/// every piece of the source address space: its cost is ports x pieces x rules, a
/// product by design, so the largest dumps get the linear parts only).
fn check_dump_with(text: &str, full_audit: bool) -> Result<(), TestCaseError> {
    let parsed = guarded("dump::parse", text.as_bytes(), || dump::parse(text));
    let parsed = match parsed {
        Ok(parsed) => parsed,
        Err(error) => {
            let lines = text.lines().count().max(1);
            prop_assert!(
                error.line >= 1 && error.line <= lines,
                "error at line {} of {lines}: {error}",
                error.line
            );
            return Ok(());
        }
    };
    let printed = parsed.to_string();
    let again = guarded("dump::parse (printed)", printed.as_bytes(), || {
        dump::parse(&printed)
    });
    let again = match again {
        Ok(again) => again,
        Err(error) => {
            return Err(TestCaseError::fail(format!(
                "the printed dump does not parse: {error}\n{printed}"
            )));
        }
    };
    prop_assert_eq!(without_lines(&parsed), without_lines(&again));
    guarded("evaluate and audit", text.as_bytes(), || {
        evaluate_and_audit(&parsed, full_audit)
    });
    Ok(())
}

/// The dump with every rule's line number set to 0 (printing drops comment lines).
fn without_lines(dump: &Dump) -> Dump {
    let mut dump = dump.clone();
    for table in &mut dump.tables {
        for rule in &mut table.rules {
            rule.line = 0;
        }
    }
    dump
}

/// The host of the save fixtures (see `common::fixture_host`), made once.
fn host() -> &'static HostNet {
    static HOST: OnceLock<HostNet> = OnceLock::new();
    HOST.get_or_init(common::fixture_host)
}

/// The walk of a few packets through `dump`, and the exposure audit of both families
/// from eth0 (the dump stands for either family).
fn evaluate_and_audit(dump: &Dump, full_audit: bool) {
    let ruleset = Ruleset::new(dump);
    let packets: [(&str, &str, u16); 3] = [
        ("198.51.100.7", "203.0.113.10", 8080),
        ("10.0.0.1", "172.17.0.2", 80),
        ("2001:db8:1::7", "2001:db8::10", 22),
    ];
    for (source, destination, port) in packets {
        let source: IpAddr = source.parse().unwrap();
        let destination: IpAddr = destination.parse().unwrap();
        let _ = walk::walk(
            &ruleset,
            host(),
            &Packet {
                source,
                destination,
                transport: Transport::Tcp,
                source_port: 40000,
                destination_port: port,
                in_interface: "eth0".to_owned(),
            },
        );
    }
    let _ = audit::published_ports(&ruleset, Family::Ipv4);
    if !full_audit {
        return;
    }
    let rulesets = vec![
        (Family::Ipv4, ruleset.clone()),
        (Family::Ipv6, ruleset.clone()),
    ];
    let report = audit::audit(&rulesets, host(), &["eth0".to_owned()], None);
    let _ = report.human();
}

/// `check_shape` on `text`: an error names a line of the text (with that line's text);
/// a file that passes lists, once loaded, only what the check of what the kernel loaded
/// accepts. Every line goes through `tokenize`, which agrees with `split_words`.
fn check_rendered_text(text: &str) -> Result<(), TestCaseError> {
    let shape = guarded("check_shape", text.as_bytes(), || shape::check_shape(text));
    match shape {
        Ok(()) => {
            let loaded = as_loaded(text);
            let verdict = guarded("check_loaded", loaded.as_bytes(), || {
                shape::check_loaded(&loaded)
            });
            prop_assert!(
                verdict.is_ok(),
                "the shape check passed a file whose load the kernel check refuses: {:?}\n{text}",
                verdict
            );
        }
        Err(error) => {
            let lines: Vec<&str> = text.lines().collect();
            prop_assert!(
                error.line >= 1 && error.line <= lines.len().max(1),
                "error at line {} of {}: {error}",
                error.line,
                lines.len()
            );
            if let Some(line) = lines.get(error.line - 1)
                && !error.text.is_empty()
            {
                prop_assert_eq!(&error.text, line);
            }
        }
    }
    guarded(
        "tokenize",
        text.as_bytes(),
        || -> Result<(), TestCaseError> {
            for line in text.lines() {
                if let Ok(tokens) = shape::tokenize(line) {
                    let words = dump::split_words(line).map_err(TestCaseError::fail)?;
                    let words: Vec<String> = words.into_iter().map(|w| w.text).collect();
                    prop_assert_eq!(tokens, words);
                }
            }
            Ok(())
        },
    )?;
    // Any text as a kernel listing: a value or an error, never a panic.
    let _ = guarded("check_loaded", text.as_bytes(), || {
        shape::check_loaded(text)
    });
    Ok(())
}

/// `split_words` on one line: no panic, and words printed back split the same.
fn check_split(line: &str) -> Result<(), TestCaseError> {
    let words = guarded("split_words", line.as_bytes(), || dump::split_words(line));
    if let Ok(words) = words {
        let printed: Vec<String> = words.iter().map(ToString::to_string).collect();
        let printed = printed.join(" ");
        let again = dump::split_words(&printed).map_err(TestCaseError::fail)?;
        prop_assert_eq!(words, again, "printed as {:?}", printed);
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------
// Strategies.
// ---------------------------------------------------------------------------------------

/// Strings that have broken parsers, templates and terminals before.
const HOSTILE: &[&str] = &[
    "\"",
    "\\",
    "\\\"",
    "\\\\\"",
    "'",
    "'''",
    "\"\"\"",
    "\n",
    "\r\n",
    "\r",
    "\t",
    "\0",
    "\u{7}",
    "\u{8}",
    "\u{1b}[2J",
    "\u{1b}]0;owned\u{7}",
    "\u{7f}",
    "\u{85}",
    "\u{9b}31m",
    "\u{2028}",
    "\u{202e}",
    "\u{feff}",
    "\u{fffd}",
    "é",
    "日本語",
    "🦀",
    "\u{301}",
    "{{ x }}",
    "{{ policy }}",
    "{% for x in y %}",
    "{% endfor %}",
    "{% raw %}",
    "{# #}",
    "{{",
    "}}",
    "{%-",
    "-}}",
    "-A FORWARD -j ACCEPT",
    "\n-A INPUT -j ACCEPT\n",
    "\" -j ACCEPT \"",
    "-j DOCKER",
    "-t nat",
    "--dport=99999",
    "#",
    "[",
    "]]",
    "[[host.services]]",
    "=",
    ",",
    "{",
    "}",
    "$(reboot)",
    "`id`",
    "%s%n",
    " ",
    "",
    "+",
    "-",
    ".",
    "..",
    "/",
    "0",
    "-1",
    "65535",
    "65536",
    "4294967296",
    "99999999999999999999999",
    "1e400",
    "nan",
    "inf",
    "0x10",
    "1979-05-27T07:32:00Z",
    "0.0.0.0/0",
    "::/0",
    "192.0.2.7/24",
    "::ffff:1.2.3.4",
    "fe80::1%eth0",
    "auto",
];

/// A hostile payload: one of [`HOSTILE`], one repeated (up to long values), any string.
fn hostile() -> impl Strategy<Value = String> {
    prop_oneof![
        6 => select(HOSTILE).prop_map(str::to_owned),
        2 => (select(HOSTILE), 2usize..64).prop_map(|(s, n)| s.repeat(n)),
        1 => (select(&["a", "\\", "\"", "{{", "é", "\u{1b}", "[", "1,"][..]), 1000usize..70_000)
            .prop_map(|(s, n)| s.repeat(n)),
        3 => any::<String>(),
        2 => "[ -~]{0,40}",
    ]
}

/// The TOML basic-string escaping of `text`, so that it reaches the validators intact.
fn toml_escaped(text: &str) -> String {
    let mut out = String::new();
    for c in text.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if c.is_control() => out.push_str(&format!("\\u{:04X}", u32::from(c) & 0xFFFF)),
            c => out.push(c),
        }
    }
    out
}

/// One edit of a seed.
#[derive(Debug, Clone)]
enum Mutation {
    /// Insert bytes at a position.
    Insert(Index, Vec<u8>),
    /// Delete up to `len` bytes from a position.
    Delete(Index, usize),
    /// Replace up to `len` bytes from a position.
    Replace(Index, usize, Vec<u8>),
    /// Copy up to `len` bytes from one position to another.
    Copy(Index, usize, Index),
    /// Cut the text at a position.
    Truncate(Index),
    /// Duplicate a line.
    DuplicateLine(Index),
    /// Remove a line.
    DeleteLine(Index),
    /// Swap two lines.
    SwapLines(Index, Index),
    /// Insert a hostile string just after an opening quote, raw or escaped for TOML.
    IntoString(Index, String, bool),
    /// Replace the content of a quoted string, escaped for TOML.
    ReplaceString(Index, String),
}

fn payload() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        3 => hostile().prop_map(String::into_bytes),
        1 => prop::collection::vec(any::<u8>(), 1..16),
    ]
}

fn mutation() -> impl Strategy<Value = Mutation> {
    prop_oneof![
        3 => (any::<Index>(), payload()).prop_map(|(at, bytes)| Mutation::Insert(at, bytes)),
        2 => (any::<Index>(), 1usize..64).prop_map(|(at, len)| Mutation::Delete(at, len)),
        2 => (any::<Index>(), 1usize..8, payload())
            .prop_map(|(at, len, bytes)| Mutation::Replace(at, len, bytes)),
        1 => (any::<Index>(), 1usize..400, any::<Index>())
            .prop_map(|(from, len, to)| Mutation::Copy(from, len, to)),
        1 => any::<Index>().prop_map(Mutation::Truncate),
        2 => any::<Index>().prop_map(Mutation::DuplicateLine),
        2 => any::<Index>().prop_map(Mutation::DeleteLine),
        1 => (any::<Index>(), any::<Index>()).prop_map(|(a, b)| Mutation::SwapLines(a, b)),
        3 => (any::<Index>(), hostile(), any::<bool>())
            .prop_map(|(at, text, escape)| Mutation::IntoString(at, text, escape)),
        3 => (any::<Index>(), hostile()).prop_map(|(at, text)| Mutation::ReplaceString(at, text)),
    ]
}

/// Start offsets of lines (and the end).
fn line_bounds(text: &[u8]) -> Vec<usize> {
    let mut bounds = vec![0];
    bounds.extend(
        text.iter()
            .enumerate()
            .filter(|(_, b)| **b == b'\n')
            .map(|(i, _)| i + 1),
    );
    if bounds.last() != Some(&text.len()) {
        bounds.push(text.len());
    }
    bounds
}

/// The byte ranges inside double-quoted strings (one line each, escapes skipped).
fn string_contents(text: &[u8]) -> Vec<(usize, usize)> {
    let mut found = Vec::new();
    let mut open: Option<usize> = None;
    let mut i = 0;
    while i < text.len() {
        match (text[i], open) {
            (b'\\', Some(_)) => i += 1,
            (b'"', Some(start)) => {
                found.push((start, i));
                open = None;
            }
            (b'"', None) => open = Some(i + 1),
            (b'\n', Some(_)) => open = None,
            _ => {}
        }
        i += 1;
    }
    found
}

fn apply(seed: &[u8], mutations: &[Mutation]) -> Vec<u8> {
    let mut text = seed.to_vec();
    for mutation in mutations {
        let at = |index: &Index, text: &Vec<u8>| index.index(text.len() + 1);
        match mutation {
            Mutation::Insert(index, bytes) => {
                let at = at(index, &text);
                text.splice(at..at, bytes.iter().copied());
            }
            Mutation::Delete(index, len) => {
                let at = at(index, &text);
                let end = (at + len).min(text.len());
                text.drain(at..end);
            }
            Mutation::Replace(index, len, bytes) => {
                let at = at(index, &text);
                let end = (at + len).min(text.len());
                text.splice(at..end, bytes.iter().copied());
            }
            Mutation::Copy(from, len, to) => {
                let from = at(from, &text);
                let end = (from + len).min(text.len());
                let piece = text[from..end].to_vec();
                let to = at(to, &text);
                text.splice(to..to, piece);
            }
            Mutation::Truncate(index) => {
                let at = at(index, &text);
                text.truncate(at);
            }
            Mutation::DuplicateLine(index) | Mutation::DeleteLine(index) => {
                let bounds = line_bounds(&text);
                if bounds.len() < 2 {
                    continue;
                }
                let n = index.index(bounds.len() - 1);
                let (start, end) = (bounds[n], bounds[n + 1]);
                if matches!(mutation, Mutation::DeleteLine(_)) {
                    text.drain(start..end);
                } else {
                    let mut line = text[start..end].to_vec();
                    if !line.ends_with(b"\n") {
                        line.insert(0, b'\n');
                    }
                    text.splice(end..end, line);
                }
            }
            Mutation::SwapLines(a, b) => {
                let bounds = line_bounds(&text);
                if bounds.len() < 2 {
                    continue;
                }
                let mut lines: Vec<Vec<u8>> = bounds
                    .windows(2)
                    .map(|w| text[w[0]..w[1]].to_vec())
                    .collect();
                let (a, b) = (a.index(lines.len()), b.index(lines.len()));
                lines.swap(a, b);
                text = lines.concat();
            }
            Mutation::IntoString(index, payload, escape) => {
                let strings = string_contents(&text);
                if strings.is_empty() {
                    continue;
                }
                let (start, _) = strings[index.index(strings.len())];
                let payload = if *escape {
                    toml_escaped(payload)
                } else {
                    payload.clone()
                };
                text.splice(start..start, payload.into_bytes());
            }
            Mutation::ReplaceString(index, payload) => {
                let strings = string_contents(&text);
                if strings.is_empty() {
                    continue;
                }
                let (start, end) = strings[index.index(strings.len())];
                text.splice(start..end, toml_escaped(payload).into_bytes());
            }
        }
    }
    text
}

/// Words and punctuation of policies.
const TOML_TOKENS: &[&str] = &[
    "[interfaces]",
    "[defaults]",
    "[lists]",
    "[host]",
    "[[host.services]]",
    "[outbound]",
    "[[outbound.allow]]",
    "[docker]",
    "[[docker.published]]",
    "[log]",
    "[[raw]]",
    "[host.services]",
    "external",
    "docker_bridges",
    "deny",
    "ping",
    "containers",
    "services",
    "port",
    "proto",
    "from",
    "to",
    "interfaces",
    "family",
    "comment",
    "policy",
    "essentials",
    "allow",
    "default",
    "published",
    "host_address",
    "enabled",
    "prefix",
    "rate",
    "burst",
    "chain",
    "rule",
    "office",
    "\"office\"",
    "=",
    " = ",
    "[",
    "]",
    "{",
    "}",
    ",",
    ".",
    "\n",
    "\n",
    "\n",
    " ",
    "#",
    "\"",
    "'",
    "\"\"\"",
    "\\",
    "22",
    "0",
    "65536",
    "-1",
    "1.5",
    "true",
    "false",
    "\"auto\"",
    "\"eth0\"",
    "\"br-+\"",
    "\"tcp\"",
    "\"udp\"",
    "\"ipv4\"",
    "\"ipv6\"",
    "\"both\"",
    "\"8000-8100\"",
    "\"10.0.0.0/8\"",
    "\"192.0.2.7/24\"",
    "\"2001:db8::/32\"",
    "\"203.0.113.10\"",
    "\"reject\"",
    "\"drop\"",
    "\"all\"",
    "\"listed\"",
    "\"allowlist\"",
    "\"accept\"",
    "\"allow\"",
    "\"5/minute\"",
    "\"input\"",
    "\"docker-user\"",
    "\"-p udp --dport 51820 -j ACCEPT\"",
    "\"-j DOCKER\"",
    "\"{{ x }}\"",
    "\"ssh\"",
    "1979-05-27",
    "inf",
];

fn soup(tokens: &'static [&'static str], max: usize) -> impl Strategy<Value = String> {
    prop::collection::vec(
        prop_oneof![
            8 => select(tokens).prop_map(str::to_owned),
            1 => hostile(),
        ],
        0..max,
    )
    .prop_map(|parts| parts.concat())
}

/// Values some keys take.
const PORTS: &[&str] = &[
    "22",
    "443",
    "\"8000-8100\"",
    "[80, 443]",
    "[\"1-1024\", 8080]",
];
const SOURCES: &[&str] = &[
    "[\"office\"]",
    "[\"10.0.0.0/8\"]",
    "[\"2001:db8::/32\"]",
    "[\"office\", \"192.0.2.1\", \"2001:db8::/48\"]",
    "[\"ipv6only\"]",
];
const INTERFACES: &[&str] = &[
    "[\"eth0\"]",
    "[\"eth0\", \"wg+\"]",
    "[\"docker0\", \"br-+\"]",
];
const FAMILIES: &[&str] = &["\"ipv4\"", "\"ipv6\"", "\"both\""];
const COMMENTS: &[&str] = &["\"ssh\"", "\"web (prod)\"", "\"{{ x }}\""];
const PROTOS: &[&str] = &["\"tcp\"", "\"udp\""];

/// The sections of a policy, with the keys each takes and values for them.
type Section = (
    &'static str,
    &'static [(&'static str, &'static [&'static str])],
);
const SECTIONS: &[Section] = &[
    (
        "[interfaces]",
        &[
            (
                "external",
                &["\"auto\"", "\"eth0\"", "[\"eth0\", \"eth1\"]"],
            ),
            ("docker_bridges", INTERFACES),
        ],
    ),
    ("[defaults]", &[("deny", &["\"reject\"", "\"drop\""])]),
    (
        "[lists]",
        &[
            (
                "office",
                &[
                    "[\"192.0.2.0/24\", \"2001:db8:1::/48\"]",
                    "[\"10.0.0.0/8\"]",
                ],
            ),
            ("ipv6only", &["[\"2001:db8::/32\"]"]),
        ],
    ),
    (
        "[host]",
        &[
            ("ping", &["true", "false"]),
            ("containers", &["\"listed\"", "\"all\""]),
        ],
    ),
    (
        "[[host.services]]",
        &[
            ("port", PORTS),
            ("proto", PROTOS),
            ("from", SOURCES),
            ("interfaces", INTERFACES),
            ("family", FAMILIES),
            ("comment", COMMENTS),
        ],
    ),
    (
        "[outbound]",
        &[
            ("policy", &["\"accept\"", "\"allowlist\""]),
            ("essentials", &["true", "false"]),
        ],
    ),
    (
        "[[outbound.allow]]",
        &[
            ("port", PORTS),
            ("proto", PROTOS),
            ("to", SOURCES),
            ("family", FAMILIES),
            ("comment", COMMENTS),
        ],
    ),
    ("[docker]", &[("default", &["\"deny\"", "\"allow\""])]),
    (
        "[[docker.published]]",
        &[
            ("port", PORTS),
            ("proto", PROTOS),
            ("from", SOURCES),
            ("host_address", &["\"203.0.113.10\"", "\"2001:db8::10\""]),
            ("interfaces", INTERFACES),
            ("family", FAMILIES),
            ("comment", COMMENTS),
        ],
    ),
    (
        "[log]",
        &[
            ("enabled", &["true", "false"]),
            ("prefix", &["\"fw\"", "\"iptables-ctl\""]),
            ("rate", &["\"5/minute\"", "\"1/second\""]),
            ("burst", &["10", "10000"]),
        ],
    ),
    (
        "[[raw]]",
        &[
            ("chain", &["\"input\"", "\"output\"", "\"docker-user\""]),
            ("family", FAMILIES),
            (
                "rule",
                &[
                    "\"-p udp --dport 51820 -j ACCEPT\"",
                    "\"-m conntrack --ctstate NEW -p tcp --dport 22 -j LOG\"",
                    "\"! -s 10.0.0.0/8 -j DROP\"",
                ],
            ),
            ("comment", COMMENTS),
        ],
    ),
];

/// Values that are wrong for most keys.
const WRONG: &[&str] = &[
    "0",
    "65536",
    "-1",
    "\"\"",
    "[]",
    "{}",
    "\"192.0.2.7/24\"",
    "1.5",
    "\"-j DOCKER\"",
];

/// Documents shaped like a policy: sections with some of their keys (each written once)
/// and mostly fitting values, so that many get past the TOML syntax and the fields'
/// checks to the cross-checks and rendering.
fn policy_document() -> impl Strategy<Value = String> {
    let block = (
        select(SECTIONS),
        any::<Index>(),
        prop::collection::vec((any::<Index>(), any::<Index>(), 0u8..10, hostile()), 0..5),
    )
        .prop_map(|((header, keys), required_value, entries)| {
            let mut text = format!("{header}\n");
            let mut written = Vec::new();
            // The keys an entry cannot do without come first, mostly.
            let required: &[&str] = match header {
                "[[raw]]" => &["chain", "rule"],
                h if h.starts_with("[[") => &["port"],
                _ => &[],
            };
            let required = required.iter().filter_map(|name| {
                let at = keys.iter().position(|(key, _)| key == name)?;
                Some((at, required_value, 2, String::new()))
            });
            let entries = entries
                .into_iter()
                .map(|(key, value, luck, hostile)| (key.index(keys.len()), value, luck, hostile));
            for (key, value, luck, hostile) in required.chain(entries) {
                let (key, values) = &keys[key];
                if written.contains(key) {
                    continue;
                }
                written.push(*key);
                let value = match luck {
                    0 => format!("\"{}\"", toml_escaped(&hostile)),
                    1 => value.get(WRONG).to_string(),
                    _ => value.get(values).to_string(),
                };
                text.push_str(&format!("{key} = {value}\n"));
            }
            text
        });
    prop::collection::vec(block, 1..8).prop_map(|blocks| {
        // A table section written twice is an error; an array of tables is not.
        let mut seen = Vec::new();
        blocks
            .into_iter()
            .filter(|b| {
                let header = b.lines().next().unwrap_or_default().to_owned();
                header.starts_with("[[") || {
                    let new = !seen.contains(&header);
                    seen.push(header);
                    new
                }
            })
            .collect()
    })
}

/// Words of iptables-save dumps and rendered files.
const RULE_TOKENS: &[&str] = &[
    "-A",
    "-F",
    "-I",
    "-N",
    "-X",
    "-P",
    "-t",
    "INPUT",
    "OUTPUT",
    "FORWARD",
    "DOCKER-USER",
    "DOCKER",
    "PREROUTING",
    "POSTROUTING",
    "-j",
    "-g",
    "--jump",
    "ACCEPT",
    "DROP",
    "REJECT",
    "RETURN",
    "LOG",
    "NFLOG",
    "DNAT",
    "MASQUERADE",
    "NFQUEUE",
    "--to-destination",
    "172.17.0.2:80",
    "[fd00::2]:80",
    "-p",
    "tcp",
    "udp",
    "ipv6-icmp",
    "--dport",
    "--sport",
    "8080",
    "8000:8100",
    "-m",
    "conntrack",
    "--ctstate",
    "--ctorigdstport",
    "--ctorigdst",
    "RELATED,ESTABLISHED",
    "-s",
    "-d",
    "10.0.0.0/8",
    "203.0.113.10/32",
    "::/0",
    "!",
    "-i",
    "-o",
    "eth0",
    "docker0",
    "br-+",
    "lo",
    "comment",
    "--comment",
    "\"a b\"",
    "\"\"",
    "\"",
    "\\",
    "\\\"",
    "'",
    "addrtype",
    "--dst-type",
    "LOCAL",
    "set",
    "--match-set",
    "docker-ext",
    "src",
    "multiport",
    "--dports",
    "80,443",
    "--reject-with",
    "tcp-reset",
    "limit",
    "--limit",
    "5/minute",
    "--log-prefix",
    "[0:0]",
    "[5:300]",
    "[",
    "]",
    ":",
    "-",
    "#",
    "  ",
    "\t",
];

/// Whole lines of dumps and rendered files.
const LINES: &[&str] = &[
    "*filter",
    "*nat",
    "*raw",
    "*mangle",
    "*",
    "COMMIT",
    ":INPUT DROP [0:0]",
    ":INPUT ACCEPT [0:0]",
    ":OUTPUT ACCEPT [0:0]",
    ":FORWARD DROP [0:0]",
    ":DOCKER-USER - [0:0]",
    ":DOCKER - [0:0]",
    ":PREROUTING ACCEPT [0:0]",
    ":",
    "-F INPUT",
    "-F OUTPUT",
    "-A INPUT -j ACCEPT",
    "-A DOCKER-USER -j RETURN",
    "-A PREROUTING -m addrtype --dst-type LOCAL -j DOCKER",
    "-A DOCKER ! -i docker0 -p tcp -m tcp --dport 8080 -j DNAT --to-destination 172.17.0.2:80",
    "-A FORWARD -j DOCKER-USER",
    "# a comment",
    "",
];

/// Text of lines: whole known lines, and lines of rule words.
fn rule_text() -> impl Strategy<Value = String> {
    let words = || {
        prop::collection::vec(
            prop_oneof![
                10 => select(RULE_TOKENS).prop_map(str::to_owned),
                1 => hostile(),
            ],
            0..10,
        )
        .prop_map(|words| words.join(" "))
    };
    let line = prop_oneof![
        3 => select(LINES).prop_map(str::to_owned),
        4 => (select(&["INPUT", "OUTPUT", "DOCKER-USER", "FORWARD", "DOCKER"][..]), words(), select(&["ACCEPT", "DROP", "RETURN", "DOCKER", ""][..]))
            .prop_map(|(chain, words, target)| format!("-A {chain} {words} -j {target}")),
        4 => prop::collection::vec(
            prop_oneof![
                10 => select(RULE_TOKENS).prop_map(str::to_owned),
                1 => hostile(),
            ],
            0..14,
        )
        .prop_map(|words| words.join(" ")),
    ];
    // Half of them in a filter block, so more lines are read as rules.
    (prop::collection::vec(line, 0..40), any::<bool>()).prop_map(|(lines, block)| {
        let lines = lines.join("\n");
        if block {
            format!("*filter\n{lines}\nCOMMIT\n")
        } else {
            lines
        }
    })
}

/// A seed (by index) and the edits to make to it.
fn edits() -> impl Strategy<Value = (Index, Vec<Mutation>)> {
    (any::<Index>(), prop::collection::vec(mutation(), 1..5))
}

// ---------------------------------------------------------------------------------------
// Properties.
// ---------------------------------------------------------------------------------------

proptest! {
    #![proptest_config(config(CASES))]

    #[test]
    fn policy_parse_takes_any_bytes(bytes in prop::collection::vec(any::<u8>(), 0..512)) {
        check_policy(&bytes)?;
    }

    #[test]
    fn policy_parse_takes_any_token_soup(text in soup(TOML_TOKENS, 80)) {
        check_policy(text.as_bytes())?;
    }

    #[test]
    fn policy_parse_and_render_take_policy_shaped_documents(text in policy_document()) {
        check_policy(text.as_bytes())?;
    }

    #[test]
    fn policy_parse_and_render_take_mutated_examples((seed, mutations) in edits()) {
        let seed = seed.get(policies());
        check_policy(&apply(seed, &mutations))?;
    }

    #[test]
    fn dump_parse_takes_any_text(text in prop_oneof![
        rule_text(),
        any::<String>(),
        prop::collection::vec(any::<u8>(), 0..512)
            .prop_map(|b| String::from_utf8_lossy(&b).into_owned()),
    ]) {
        check_dump(&text)?;
    }

    #[test]
    fn dump_parse_takes_mutated_fixtures((seed, mutations) in edits()) {
        let seed = seed.get(dumps());
        let text = apply(seed.as_bytes(), &mutations);
        check_dump(&String::from_utf8_lossy(&text))?;
    }

    #[test]
    fn split_words_takes_any_line(line in prop_oneof![
        any::<String>(),
        prop::collection::vec(
            prop_oneof![
                select(RULE_TOKENS).prop_map(str::to_owned),
                select(HOSTILE).prop_map(str::to_owned),
            ],
            0..20,
        )
        .prop_map(|w| w.concat()),
        prop::collection::vec(select(&["\"", "\\", " ", "a", "'", "\t"][..]), 0..40)
            .prop_map(|w| w.concat()),
    ]) {
        check_split(&line)?;
    }

    #[test]
    fn shape_checks_take_any_text(text in prop_oneof![
        rule_text(),
        any::<String>(),
    ]) {
        check_rendered_text(&text)?;
    }

    #[test]
    fn shape_checks_take_mutated_rendered_files((seed, mutations) in edits()) {
        let seed = seed.get(rendered());
        let text = apply(seed.as_bytes(), &mutations);
        check_rendered_text(&String::from_utf8_lossy(&text))?;
    }

    #[test]
    fn check_loaded_takes_mutated_kernel_listings((seed, mutations) in edits()) {
        let seed = seed.get(loaded());
        let text = String::from_utf8_lossy(&apply(seed.as_bytes(), &mutations)).into_owned();
        let _ = guarded("check_loaded", text.as_bytes(), || shape::check_loaded(&text));
        check_dump(&text)?;
    }
}

// ---------------------------------------------------------------------------------------
// Systematic edits of the examples.
// ---------------------------------------------------------------------------------------

#[test]
fn every_prefix_of_every_example_policy_parses_or_is_located() {
    for policy in policies() {
        for end in 0..=policy.len() {
            check_policy(&policy[..end]).unwrap();
        }
    }
}

#[test]
fn every_section_of_every_example_policy_duplicated_parses_or_is_located() {
    for policy in policies() {
        let text = std::str::from_utf8(policy).unwrap();
        let starts: Vec<usize> = text
            .match_indices('\n')
            .map(|(i, _)| i + 1)
            .filter(|i| text[*i..].starts_with('['))
            .chain(text.starts_with('[').then_some(0))
            .collect();
        for start in starts {
            let end = text[start + 1..]
                .find("\n[")
                .map_or(text.len(), |i| start + 2 + i);
            let section = &text[start..end];
            let section = if section.ends_with('\n') {
                section.to_owned()
            } else {
                format!("{section}\n")
            };
            for at in [start, end, text.len()] {
                let mut doubled = text.to_owned();
                if at == text.len() && !doubled.ends_with('\n') {
                    doubled.push('\n');
                }
                let at = at.min(doubled.len());
                doubled.insert_str(at, &section);
                check_policy(doubled.as_bytes()).unwrap();
            }
        }
    }
}

#[test]
fn every_rendered_line_removed_or_doubled_is_checked_without_panic() {
    for file in rendered() {
        let lines: Vec<&str> = file.lines().collect();
        for i in 0..lines.len() {
            let mut removed = lines.clone();
            removed.remove(i);
            check_rendered_text(&removed.join("\n")).unwrap();
            let mut doubled = lines.clone();
            doubled.insert(i, lines[i]);
            check_rendered_text(&doubled.join("\n")).unwrap();
        }
    }
}

// ---------------------------------------------------------------------------------------
// Worst shapes at the largest size each reader accepts. `Policy::load` refuses a policy
// over source::POLICY_LIMIT (4 MiB) before parsing, so the policies here are just under
// it; nothing bounds a rendered file or a dump by size, so those are as large as the
// limits that do exist allow (MAX_RULES rules) or as the brief's 4 MiB / 100,000 rules.
// ---------------------------------------------------------------------------------------

/// The largest policy `Policy::load` reads.
const POLICY_MAX: usize = POLICY_LIMIT as usize;

/// `head`, then `unit` repeated to fill the policy limit, then `tail`.
fn fill(head: &str, unit: &str, tail: &str) -> String {
    let room = POLICY_MAX - head.len() - tail.len();
    let mut text = String::with_capacity(POLICY_MAX);
    text.push_str(head);
    text.push_str(&unit.repeat(room / unit.len()));
    text.push_str(tail);
    text
}

/// `head`, then the array elements `unit` (comma separated) up to the limit, then `tail`.
fn array_of(head: &str, unit: &str, tail: &str) -> String {
    fill(head, &format!("{unit},"), &format!("{unit}{tail}"))
}

/// `count` distinct IPv4 addresses, as TOML strings.
fn addresses(count: usize) -> String {
    (0..count)
        .map(|i| format!("\"10.{}.{}.{}\"", i >> 16 & 255, i >> 8 & 255, i & 255))
        .collect::<Vec<_>>()
        .join(",")
}

/// A service entry's head, for the values that follow it.
const SERVICE: &str = "[[host.services]]\nport = 22\n";

/// Policies whose TOML is the worst case: long strings, keys and lines, deep nesting.
fn worst_policy_syntax() -> Vec<(&'static str, String)> {
    let comment = |open: &str| format!("{SERVICE}comment = {open}");
    vec![
        ("comment lines only", fill("", "# a comment\n", "")),
        (
            "invalid UTF-8 at the end",
            fill("", "# a comment\n", "\u{80}"),
        ),
        (
            "a long string of escaped quotes",
            fill(&comment("\""), "\\\"", "\"\n"),
        ),
        (
            "a multi-line string of quote pairs",
            fill(&comment("\"\"\""), "\"\"a", "\"\"\"\n"),
        ),
        (
            "an unterminated multi-line string",
            fill("x = \"\"\"", "\"\"\n", ""),
        ),
        ("a long quoted key", fill("[host]\n\"", "\\\"", "\" = 1\n")),
        ("a long table header", fill("[", "a.", "a]\n")),
        ("nested arrays", fill("[[host.services]]\nport = ", "[", "")),
        ("nested inline tables", fill("x = ", "{a=", "")),
        ("many duplicate keys", fill("[host]\n", "ping = true\n", "")),
    ]
}

/// Policies that are valid TOML at the limit and stress validation and rendering: long
/// arrays and many entries (a million interface names made a million located warnings,
/// each copying their line of 4 MiB).
fn worst_policy_entries() -> Vec<(&'static str, String)> {
    vec![
        (
            "a long array of interfaces",
            array_of(&format!("{SERVICE}interfaces = ["), "\"e\"", "]\n"),
        ),
        (
            "services at the rule limit",
            SERVICE.repeat(MAX_RULES - 100),
        ),
        ("many services", fill("", SERVICE, "")),
        (
            "many published ports",
            fill(
                "",
                "[[docker.published]]\nport = 80\nfrom = [\"10.0.0.0/8\"]\n",
                "",
            ),
        ),
        (
            "many raw rules",
            fill(
                "",
                "[[raw]]\nchain = \"input\"\nrule = \"-p udp --dport 51820 -j ACCEPT\"\n",
                "",
            ),
        ),
    ]
}

/// Policies at the limit whose lists are named many times: each reference expanding the
/// whole list was quadratic, and ports x addresses made billions of rules in memory.
fn worst_policy_lists() -> Vec<(&'static str, String)> {
    let list = format!("[lists]\nbig = [{}]\n", addresses(120_000));
    let ipv6_list = format!(
        "[lists]\nbig = [{}]\n",
        (0..60_000)
            .map(|i| format!("\"2001:db8::{i:x}\""))
            .collect::<Vec<_>>()
            .join(",")
    );
    let third = POLICY_MAX / 3;
    vec![
        (
            "many references to one big list",
            array_of(&format!("{list}{SERVICE}from = ["), "\"big\"", "]\n"),
        ),
        (
            "many entries using one big list",
            fill(&list, &format!("{SERVICE}from = [\"big\"]\n"), ""),
        ),
        (
            "many IPv4 entries using one big IPv6 list",
            fill(
                &ipv6_list,
                &format!("{SERVICE}family = \"ipv4\"\nfrom = [\"big\", \"10.0.0.0/8\"]\n"),
                "",
            ),
        ),
        (
            "many ports times a big list",
            array_of(
                &format!("{list}[[docker.published]]\nfrom = [\"big\"]\nport = ["),
                "1",
                "]\n",
            ),
        ),
        (
            "ports times interfaces times addresses",
            format!(
                "[lists]\nbig = [{}]\n[[docker.published]]\nport = [{}2]\ninterfaces = [{}\"f\"]\nfrom = [\"big\"]\n",
                addresses(third / 13),
                "1,".repeat(third / 4),
                "\"e\",".repeat(third / 8),
            ),
        ),
    ]
}

fn run_worst_policies(cases: Vec<(&'static str, String)>) {
    for (name, text) in cases {
        assert!(text.len() <= POLICY_MAX, "{name}: {} bytes", text.len());
        let start = std::time::Instant::now();
        check_policy(text.as_bytes()).unwrap_or_else(|e| panic!("{name}: {e}"));
        eprintln!(
            "policy: {name} ({} bytes): {:?}",
            text.len(),
            start.elapsed()
        );
    }
}

#[test]
fn biggest_policies_of_hostile_syntax_finish() {
    run_worst_policies(worst_policy_syntax());
}

#[test]
fn biggest_policies_of_valid_entries_finish() {
    run_worst_policies(worst_policy_entries());
}

#[test]
fn biggest_policies_of_shared_lists_finish() {
    run_worst_policies(worst_policy_lists());
}

fn worst_rendered() -> Vec<(&'static str, String)> {
    let head = "*filter\n:INPUT DROP [0:0]\n:OUTPUT ACCEPT [0:0]\n:DOCKER-USER - [0:0]\n-F INPUT\n-F OUTPUT\n";
    let many = |line: &str, count: usize| format!("{line}\n").repeat(count);
    let rules = |line: &str, count: usize| format!("{head}{}COMMIT\n", many(line, count));
    let long_rule = format!(
        "-A INPUT -p tcp -m tcp --dport 22 -m comment --comment \"{}\" -j ACCEPT",
        "a b ".repeat(30)
    );
    vec![
        ("rules at the limit", rules(&long_rule, MAX_RULES)),
        (
            "rules over the limit",
            rules("-A INPUT -j ACCEPT", MAX_RULES * 4),
        ),
        // The chain the rules go to flushed or declared after many others: a rule's
        // look-up walked them all (found here, fixed in shape::check_shape).
        (
            "many flushes, then rules",
            format!(
                "*filter\n{}-F INPUT\n{}COMMIT\n",
                many("-F OUTPUT", 400_000),
                many("-A INPUT -j ACCEPT", MAX_RULES)
            ),
        ),
        (
            "many declarations, then rules",
            format!(
                "*filter\n{}:DOCKER-USER - [0:0]\n{}COMMIT\n",
                many(":OUTPUT ACCEPT [0:0]", 200_000),
                many("-A DOCKER-USER -j RETURN", MAX_RULES)
            ),
        ),
        (
            "many comment lines",
            format!(
                "{}{}",
                many("# comment", 400_000),
                rules("-A INPUT -j ACCEPT", 1)
            ),
        ),
        (
            "one long line of quoted words",
            format!(
                "*filter\n-A INPUT {} -j ACCEPT\nCOMMIT\n",
                "\"a\" ".repeat(1_000_000)
            ),
        ),
        (
            "one long line of quotes",
            format!("*filter\n-A INPUT {}\nCOMMIT\n", "\"".repeat(4_000_000)),
        ),
        (
            "one long line of backslashes",
            format!("*filter\n-A INPUT {}\nCOMMIT\n", "\\".repeat(4_000_000)),
        ),
        (
            "one long line of targets",
            format!(
                "*filter\n-F INPUT\n-A INPUT {}\nCOMMIT\n",
                "-j ACCEPT ".repeat(400_000)
            ),
        ),
    ]
}

#[test]
fn biggest_rendered_files_finish() {
    for (name, text) in worst_rendered() {
        let start = std::time::Instant::now();
        check_rendered_text(&text).unwrap_or_else(|e| panic!("{name}: {e}"));
        eprintln!(
            "rendered: {name} ({} bytes): {:?}",
            text.len(),
            start.elapsed()
        );
    }
}

/// Dumps of about 4 MiB and 100,000 rules, and other worst shapes of that size.
fn worst_dumps() -> Vec<(&'static str, String)> {
    let n = 100_000;
    let address = |i: usize| format!("172.{}.{}.{}", 16 + (i >> 16 & 15), i >> 8 & 255, i & 255);
    let filter: String = (0..n)
        .map(|i| {
            format!(
                "-A DOCKER -d {}/32 -p tcp --dport 80 -j ACCEPT\n",
                address(i)
            )
        })
        .collect();
    let nat: String = (0..n)
        .map(|i| {
            format!(
                "-A DOCKER -p tcp --dport {} -j DNAT --to-destination {}\n",
                i % 65535 + 1,
                address(i)
            )
        })
        .collect();
    let chains: String = (0..n / 2).map(|i| format!(":C{i} - [0:0]\n")).collect();
    let jumps: String = (0..n / 2)
        .map(|i| format!("-A C{i} -j C{}\n", i + 1))
        .collect();
    vec![
        (
            "100k filter rules",
            format!(
                "*filter\n:INPUT ACCEPT [0:0]\n:FORWARD DROP [0:0]\n:DOCKER - [0:0]\n-A FORWARD -o docker0 -j DOCKER\n{filter}COMMIT\n"
            ),
        ),
        (
            "100k DNAT rules",
            format!(
                "*nat\n:PREROUTING ACCEPT [0:0]\n:DOCKER - [0:0]\n-A PREROUTING -j DOCKER\n{nat}COMMIT\n"
            ),
        ),
        (
            "50k chains in a line of jumps",
            format!(
                "*filter\n:INPUT ACCEPT [0:0]\n:FORWARD ACCEPT [0:0]\n{chains}-A INPUT -j C0\n-A FORWARD -j C0\n{jumps}COMMIT\n*nat\n:PREROUTING ACCEPT [0:0]\n{chains}-A PREROUTING -j C0\n{jumps}COMMIT\n"
            ),
        ),
        ("many tables", "*filter\nCOMMIT\n".repeat(300_000)),
        (
            "many comment lines",
            format!("{}*filter\nCOMMIT\n", "# comment\n".repeat(400_000)),
        ),
        (
            "one long quoted comment",
            format!(
                "*filter\n-A INPUT -m comment --comment \"{}\" -j ACCEPT\nCOMMIT\n",
                "\\\"".repeat(2_000_000)
            ),
        ),
        (
            "one long line of words",
            format!(
                "*filter\n-A INPUT {}-j ACCEPT\nCOMMIT\n",
                "-m tcp ".repeat(600_000)
            ),
        ),
        (
            "one long unterminated quote",
            format!("*filter\n-A INPUT \"{}\nCOMMIT\n", "a".repeat(4_000_000)),
        ),
    ]
}

#[test]
fn biggest_dumps_finish() {
    for (name, text) in worst_dumps() {
        let start = std::time::Instant::now();
        check_dump_with(&text, false).unwrap_or_else(|e| panic!("{name}: {e}"));
        let _ = guarded(name, text.as_bytes(), || shape::check_loaded(&text));
        eprintln!("dump: {name} ({} bytes): {:?}", text.len(), start.elapsed());
    }
}

#[test]
fn biggest_lines_split_finish() {
    for line in [
        "\"a\" ".repeat(1_000_000),
        "\"\\\"".repeat(1_000_000) + "\"",
        "a\"b c\"".repeat(500_000),
        " ".repeat(4_000_000),
        "\\".repeat(4_000_000),
    ] {
        check_split(&line).unwrap();
    }
}

/// The seeds are what they claim to be: valid policies, dumps, rendered files and
/// kernel listings.
#[test]
fn seeds_are_valid() {
    for policy in policies() {
        Policy::parse(Path::new(POLICY_PATH), policy).unwrap();
    }
    for text in dumps() {
        dump::parse(text).unwrap();
    }
    for (text, loaded) in rendered().iter().zip(loaded()) {
        shape::check_shape(text).unwrap();
        shape::check_loaded(loaded).unwrap_or_else(|e| panic!("{e}\n{loaded}"));
    }
}
