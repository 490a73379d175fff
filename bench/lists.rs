//! What a large address list costs, measured side by side on this machine in one run:
//! `cargo bench --bench lists` (as root: it makes network namespaces of its own and
//! never touches the root one). Under `cargo test` (no `--bench` argument) it runs once
//! with a 10-entry list, as a smoke test that it still works.
//!
//! For lists of 10, 1,000, 10,000 and 100,000 /32s allowed to one published port (the
//! client last in the list):
//! 1. apply latency: `iptables-ctl render` (render, kernel check, write) plus the
//!    tool's own load of its files (sets, then rules) into a fresh namespace, against
//!    the bare commands loading the same files (`ipset restore`, `iptables-restore`),
//!    the bare `iptables-restore` of the list as one rule per entry, one `iptables -A`
//!    per rule (measured up to 1,000 rules and extrapolated linearly: the real cost only
//!    grows faster), and a hand-written ipset form (`ipset restore` of the list and one
//!    rule);
//! 2. packet path: new TCP connections per second from a client namespace through
//!    Docker's DNAT and DOCKER-USER to a container, the list as hand-written rules, as
//!    a hand-made ipset, and as iptables-ctl renders and loads it (an ipset past 64);
//! 3. the audit's evaluator on the same rules, both forms;
//! 4. cold start: `check` and `render` of the shipped example against one bare restore
//!    into a fresh namespace, and against the floors under them: the check's own child
//!    processes run bare, and one restore loading the rules twice as the check does
//!    (two transactions, the first without the policies the second sets again: a check
//!    that proves a second load cannot take less), and loading them twice whole (two
//!    grace periods in a row, which the check no longer waits for); then `status` of the shipped
//!    example installed in a real systemd booted in systemd-nspawn, against one bare
//!    restore there.
//!
//! It prints the figures and their ratios; docs/performance.md keeps a run's results.
#![allow(clippy::expect_used, clippy::panic, clippy::unwrap_used)] // a benchmark may fail loudly

#[path = "../tests/common/mod.rs"]
mod common;

use std::io::Read as _;
use std::net::{IpAddr, SocketAddr, TcpListener, TcpStream};
use std::path::Path;
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use common::Netns;
use common::topology::{Topology, v4};
use iptables_ctl::audit;
use iptables_ctl::backend::Backend as _;
use iptables_ctl::family::Family;
use iptables_ctl::files::layout::Layout;
use iptables_ctl::iptables::backend::SYSTEM;
use iptables_ctl::iptables::dump;
use iptables_ctl::iptables::walk::Ruleset;
use iptables_ctl::policy::types::InstanceName;

/// The client whose connections are counted: last in every list.
const CLIENT: &str = "192.0.2.30";
/// How long each packet-path measurement runs.
const CONNECT_FOR: Duration = Duration::from_secs(1);

/// The `i`th member: every other address of 10.0.0.0/8, so that no two merge into one
/// range (a real list of customers is not contiguous).
fn member(i: usize) -> String {
    let i = i * 2;
    format!("10.{}.{}.{}", i >> 16 & 255, i >> 8 & 255, i & 255)
}

/// The list: `n - 1` members and the client last.
fn members(n: usize) -> Vec<String> {
    (0..n.saturating_sub(1))
        .map(member)
        .chain(std::iter::once(CLIENT.to_owned()))
        .collect()
}

/// DOCKER-USER allowing `list` to the published 8080 as one rule per entry.
fn linear_rules(list: &[String]) -> String {
    let mut text = String::from(
        "*filter\n:DOCKER-USER - [0:0]\n-A DOCKER-USER -m conntrack --ctstate RELATED,ESTABLISHED -j RETURN\n",
    );
    for address in list {
        text.push_str(&format!(
            "-A DOCKER-USER -s {address}/32 -p tcp -m conntrack --ctstate DNAT --ctorigdstport 8080 -j RETURN\n"
        ));
    }
    text.push_str("-A DOCKER-USER -m conntrack --ctstate DNAT -j REJECT\nCOMMIT\n");
    text
}

/// The same with the list as the ipset `bench`.
fn set_rules() -> String {
    "*filter\n:DOCKER-USER - [0:0]\n-A DOCKER-USER -m conntrack --ctstate RELATED,ESTABLISHED -j RETURN\n-A DOCKER-USER -m set --match-set bench src -p tcp -m conntrack --ctstate DNAT --ctorigdstport 8080 -j RETURN\n-A DOCKER-USER -m conntrack --ctstate DNAT -j REJECT\nCOMMIT\n".to_owned()
}

/// `ipset restore` input creating `bench` with `list`.
fn set_restore(list: &[String]) -> String {
    let mut text = format!(
        "create bench hash:net family inet maxelem {}\n",
        list.len().next_power_of_two().max(65536)
    );
    for address in list {
        text.push_str(&format!("add bench {address}\n"));
    }
    text
}

fn timed<T>(f: impl FnOnce() -> T) -> (Duration, T) {
    let start = Instant::now();
    let out = f();
    (start.elapsed(), out)
}

fn ms(d: Duration) -> String {
    format!("{:.1} ms", d.as_secs_f64() * 1000.0)
}

/// Runs the release binary with `args`; returns how long it took and whether it
/// succeeded.
fn tool(args: &[&str]) -> (Duration, bool) {
    timed(|| {
        Command::new(env!("CARGO_BIN_EXE_iptables-ctl"))
            .args(args)
            .output()
            .expect("iptables-ctl")
            .status
            .success()
    })
}

/// The largest resident size of any child so far, in MiB (the tool's, when it is read
/// right after the tool ran at the largest size yet).
fn children_peak_mib() -> f64 {
    let usage = nix::sys::resource::getrusage(nix::sys::resource::UsageWho::RUSAGE_CHILDREN)
        .expect("getrusage");
    usage.max_rss() as f64 / 1024.0
}

/// A staged tree whose policy allows `list` (as a list file) to 8080.
fn staged_policy(list: &[String]) -> tempfile::TempDir {
    let root = tempfile::tempdir().expect("tempdir");
    let dir = root.path().join("etc/iptables");
    std::fs::create_dir_all(dir.join("lists")).expect("mkdir");
    std::fs::write(dir.join("lists/bench.txt"), list.join("\n")).expect("list");
    std::fs::write(
        dir.join("base.toml"),
        "[interfaces]\nexternal = \"eth0\"\n\n[lists]\nbench = { file = \"lists/bench.txt\" }\n\n[[host.services]]\nport = 22\n\n[[docker.published]]\nport = 8080\nfrom = [\"bench\"]\n",
    )
    .expect("policy");
    root
}

/// The bare commands that load an instance's files in `dir` (each family's sets with
/// `ipset restore` when it has any, then its rules), run from a thread inside `ns`.
fn bare_load(ns: &Netns, dir: &Path) {
    ns.enter(|| {
        for (sets, program, rules) in [
            ("base.sets", "iptables-restore", "base.rules"),
            ("base.sets6", "ip6tables-restore", "base.rules6"),
        ] {
            let sets = std::fs::read(dir.join(sets)).unwrap();
            if sets.windows(7).any(|w| w == b"create ") {
                iptables_ctl::command::run("ipset", &["restore"], &sets).expect("ipset restore");
            }
            let rules = std::fs::read(dir.join(rules)).unwrap();
            iptables_ctl::command::run(program, &["-w", "-n"], &rules).expect("restore");
        }
    });
}

/// How many times the apply and its bare load are repeated; the best run of each counts.
const APPLY_RUNS: usize = 3;

/// One apply of the tool at `list`: `render` (render, kernel check, write) into a fresh
/// staged tree, then its load into a fresh namespace; and the bare commands loading the
/// same files into another. Returns (render, load, bare), or the render's time when it
/// refused the policy.
fn apply_once(list: &[String]) -> Result<(Duration, Duration, Duration), Duration> {
    let root = staged_policy(list);
    let root_arg = root.path().to_str().unwrap();
    let (render, ok) = tool(&["--root", root_arg, "render"]);
    if !ok {
        return Err(render);
    }
    let dir = root.path().join("etc/iptables");
    let ns = Netns::new();
    let layout = Layout::new(root.path());
    let instance = InstanceName::default();
    let (load, ()) = timed(|| {
        ns.enter(|| SYSTEM.load_rules(&layout, &instance))
            .expect("the tool's load")
    });
    let fresh = Netns::new();
    let (bare, ()) = timed(|| bare_load(&fresh, &dir));
    Ok((render, load, bare))
}

fn apply_latency(n: usize) {
    let list = members(n);
    let runs: Result<Vec<_>, Duration> = (0..APPLY_RUNS).map(|_| apply_once(&list)).collect();
    let (tool_line, tool_total) = match runs {
        Ok(runs) => {
            let best = |pick: fn(&(Duration, Duration, Duration)) -> Duration| {
                runs.iter().map(pick).min().unwrap()
            };
            let total = best(|(render, load, _)| *render + *load);
            let bare = best(|(_, _, bare)| *bare);
            let form = if n > iptables_ctl::policy::lists::SET_THRESHOLD {
                "the list as an ipset"
            } else {
                "the list as rules"
            };
            let line = format!(
                "iptables-ctl render + check + load {} ({form}; best of {APPLY_RUNS}: render {}, load {}; peak {:.0} MiB); bare load of the same files {}; ratio {:.2}x",
                ms(total),
                ms(best(|(render, _, _)| *render)),
                ms(best(|(_, load, _)| *load)),
                children_peak_mib(),
                ms(bare),
                total.as_secs_f64() / bare.as_secs_f64()
            );
            (line, total)
        }
        Err(render) => (
            format!("iptables-ctl refused the policy after {}", ms(render)),
            render,
        ),
    };
    let ns = Netns::new();
    let rules = linear_rules(&list);
    let (linear, _) = timed(|| ns.exec_ok("iptables-restore", &["-w", "-n"], rules.as_bytes()));
    let per_rule_sample = list.len().min(1_000);
    let appended = Netns::new();
    appended.exec_ok("iptables", &["-w", "-N", "DOCKER-USER"], b"");
    // Each append run straight from a thread inside the namespace: the program's own
    // cost, without `ip netns exec` in front of every one.
    let sample = appended.enter(|| {
        timed(|| {
            for address in &list[..per_rule_sample] {
                iptables_ctl::command::run(
                    "iptables",
                    &[
                        "-w",
                        "-A",
                        "DOCKER-USER",
                        "-s",
                        address,
                        "-p",
                        "tcp",
                        "-m",
                        "conntrack",
                        "--ctstate",
                        "DNAT",
                        "--ctorigdstport",
                        "8080",
                        "-j",
                        "RETURN",
                    ],
                    b"",
                )
                .expect("iptables -A");
            }
        })
        .0
    });
    let per_rule = sample.mul_f64(list.len() as f64 / per_rule_sample as f64);
    let set_ns = Netns::new();
    let restore = set_restore(&list);
    let (set, _) = timed(|| {
        set_ns.exec_ok("ipset", &["restore"], restore.as_bytes());
        set_ns.exec_ok("iptables-restore", &["-w", "-n"], set_rules().as_bytes())
    });
    println!("apply, {n} entries: {tool_line}");
    println!(
        "apply, {n} entries: bare restore of {n} rules {}; one `iptables -A` per rule {} ({}; {:.0}x the bare restore; {:.0}x iptables-ctl's apply); ipset restore + one rule {} ({:.2}x the rules' time)",
        ms(linear),
        ms(per_rule),
        if per_rule_sample < list.len() {
            format!("extrapolated from {per_rule_sample}")
        } else {
            "measured".to_owned()
        },
        per_rule.as_secs_f64() / linear.as_secs_f64(),
        per_rule.as_secs_f64() / tool_total.as_secs_f64(),
        ms(set),
        set.as_secs_f64() / linear.as_secs_f64()
    );
}

/// What DOCKER-USER holds while connections are counted.
enum Filter<'a> {
    /// Hand-written rules, with `ipset restore` input loaded first if any.
    Rules(&'a str, Option<&'a str>),
    /// The policy iptables-ctl renders for the list (a set past 64 entries), loaded by
    /// the tool's own loader.
    Tool(&'a [String]),
}

/// New connections per second from the client to the published 8080 through `filter`.
fn connections_per_second(topology: &Topology, filter: Filter<'_>) -> f64 {
    // The best of a few counts: a one-second count varies by about 10% from run to run.
    (0..CONNECT_RUNS)
        .map(|_| count_connections(topology, &filter))
        .fold(0.0, f64::max)
}

/// How many times each packet-path figure is counted.
const CONNECT_RUNS: usize = 3;

/// One count of [`connections_per_second`].
fn count_connections(topology: &Topology, filter: &Filter<'_>) -> f64 {
    let host = &topology.host;
    host.exec_ok("iptables-restore", &["-w"], v4().docker_rules.as_bytes());
    // Kept until the count ends: the loaded files are read from it.
    let mut staged = None;
    match *filter {
        Filter::Rules(rules, ipset) => {
            if let Some(restore) = ipset {
                host.exec_ok("ipset", &["restore"], restore.as_bytes());
            }
            host.exec_ok("iptables-restore", &["-w", "-n"], rules.as_bytes());
        }
        Filter::Tool(list) => {
            let root = staged_policy(list);
            let (_, ok) = tool(&["--root", root.path().to_str().unwrap(), "render"]);
            assert!(ok, "render");
            let layout = Layout::new(root.path());
            host.enter(|| SYSTEM.load_rules(&layout, &InstanceName::default()))
                .expect("the tool's load");
            staged = Some(root);
        }
    }
    let stop = AtomicBool::new(false);
    let listener = topology
        .container
        .enter(|| TcpListener::bind(("0.0.0.0", 80)).expect("bind 80"));
    let count = std::thread::scope(|scope| {
        scope.spawn(|| {
            // Blocking: the server takes no CPU from the client while it waits.
            while !stop.load(Ordering::Acquire) {
                if let Ok((mut stream, _)) = listener.accept() {
                    let _ = stream.read(&mut [0; 1]);
                }
            }
        });
        let count = topology.client.enter(|| {
            let target = SocketAddr::new("192.0.2.1".parse().unwrap(), 8080);
            let source: IpAddr = CLIENT.parse().unwrap();
            let deadline = Instant::now() + CONNECT_FOR;
            let mut count = 0u64;
            while Instant::now() < deadline {
                if common::connect_once(source, target, Duration::from_secs(1)) {
                    count += 1;
                }
            }
            count
        });
        stop.store(true, Ordering::Release);
        // Wakes the server's last accept, from the container's own namespace.
        topology.container.enter(|| {
            let _ = TcpStream::connect(("127.0.0.1", 80));
        });
        count
    });
    // Nothing may match a set while it is destroyed.
    host.exec_ok("iptables", &["-w", "-F", "DOCKER-USER"], b"");
    host.exec_ok("iptables", &["-w", "-F", "INPUT"], b"");
    host.exec_ok("ipset", &["destroy"], b"");
    drop(staged);
    count as f64 / CONNECT_FOR.as_secs_f64()
}

/// A host's saved rules for the audit: Docker publishing 8080 to a container, and
/// `docker_user` (rule lines) in DOCKER-USER.
fn audit_text(docker_user: &str) -> String {
    format!(
        "*nat\n:PREROUTING ACCEPT [0:0]\n:DOCKER - [0:0]\n-A PREROUTING -m addrtype --dst-type LOCAL -j DOCKER\n-A DOCKER ! -i docker0 -p tcp -m tcp --dport 8080 -j DNAT --to-destination 172.17.0.2:80\nCOMMIT\n*filter\n:INPUT ACCEPT [0:0]\n:FORWARD DROP [0:0]\n:DOCKER - [0:0]\n:DOCKER-USER - [0:0]\n-A FORWARD -j DOCKER-USER\n-A FORWARD -o docker0 -j DOCKER\n-A DOCKER -d 172.17.0.2/32 ! -i docker0 -o docker0 -p tcp -m tcp --dport 80 -j ACCEPT\n{docker_user}COMMIT\n"
    )
}

fn audit_time(n: usize) {
    let list = members(n);
    let linear: String = list
        .iter()
        .map(|a| format!("-A DOCKER-USER -s {a}/32 -p tcp -m conntrack --ctstate DNAT --ctorigdstport 8080 -j RETURN\n"))
        .chain(std::iter::once("-A DOCKER-USER -m conntrack --ctstate DNAT -j REJECT\n".to_owned()))
        .collect();
    let set = "-A DOCKER-USER -m set --match-set bench src -p tcp -m conntrack --ctstate DNAT --ctorigdstport 8080 -j RETURN\n-A DOCKER-USER -m conntrack --ctstate DNAT -j REJECT\n";
    let time = |docker_user: &str, host: &iptables_ctl::host::net::HostNet| {
        let ruleset = Ruleset::new(&dump::parse(&audit_text(docker_user)).unwrap());
        let (took, report) =
            timed(|| audit::audit(&[(Family::Ipv4, ruleset)], host, &["eth0".to_owned()], None));
        // The list's members get through, nobody else: the audit did walk.
        let [exposure] = report.exposures.as_slice() else {
            panic!("one exposure expected: {report:#?}");
        };
        match &exposure.reach {
            Some(audit::Reach::Only(nets)) => {
                let addresses: u64 = nets.iter().map(|net| 1u64 << (32 - net.prefix_len())).sum();
                assert_eq!(addresses, n as u64, "{exposure:#?}");
            }
            other => panic!("{other:?}"),
        }
        took
    };
    let with_set = {
        let mut host = common::fixture_host();
        host.sets.insert(
            "bench".to_owned(),
            list.iter()
                .map(|a| ipnet::IpNet::from(a.parse::<IpAddr>().unwrap()))
                .collect(),
        );
        host
    };
    // The best of three: one run of a few milliseconds varies with the machine.
    let set_time = (0..3).map(|_| time(set, &with_set)).min().unwrap();
    // The linear form walks every rule for every piece: quadratic, so only up to 10,000.
    let linear_time = (n <= 10_000).then(|| time(&linear, &common::fixture_host()));
    println!(
        "audit, {n} entries: as an ipset {}; as rules {}",
        ms(set_time),
        linear_time.map_or_else(|| "not run (quadratic)".to_owned(), ms)
    );
}

/// How many rounds the cold-start part runs when measuring. Each round runs every
/// contender once, one after the other, so that all meet the same conditions; the
/// spread between runs (a kernel grace period ends on a 4 ms tick here) is why it
/// prints the best and the median.
const COLD_ROUNDS: usize = 20;

/// `command` started with `input` written to its standard input (then closed).
fn spawn_fed(command: &mut Command, input: &[u8]) -> std::process::Child {
    use std::io::Write as _;
    let mut child = command
        .stdin(std::process::Stdio::piped())
        .spawn()
        .expect("spawn");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(input)
        .expect("write");
    child
}

/// `program -w -n` fed `input` in a fresh namespace made by `unshare -n`: one bare
/// restore, as a user would run it.
fn bare_restore(program: &str, input: &[u8]) -> Duration {
    let (took, ok) = timed(|| {
        spawn_fed(
            Command::new("unshare").args(["-n", program, "-w", "-n"]),
            input,
        )
        .wait()
        .expect("wait")
        .success()
    });
    assert!(ok, "bare {program}");
    took
}

/// The kernel check's own children, run bare with no iptables-ctl around them: for each
/// family, the rules loaded once, twice, and followed by the pass-through file (the
/// first load of the last two without the policies the next load sets again), each
/// load in a fresh namespace and followed by a save, all six at once (as
/// `iptables_ctl::iptables::trial` runs them).
fn check_children(files: &[(Family, String, String)]) -> Duration {
    use iptables_ctl::iptables::trial::without_policies_set_again;
    use std::process::Stdio;
    let run = |program: &str, args: &[&str], input: &[u8]| {
        let child = spawn_fed(
            Command::new(program).args(args).stdout(Stdio::piped()),
            input,
        );
        assert!(
            child.wait_with_output().expect("wait").status.success(),
            "{program}"
        );
    };
    let inputs: Vec<(Family, String)> = files
        .iter()
        .flat_map(|(family, rules, empty)| {
            [
                rules.clone(),
                without_policies_set_again(rules, rules) + rules,
                without_policies_set_again(rules, empty) + empty,
            ]
            .map(|input| (*family, input))
        })
        .collect();
    timed(|| {
        std::thread::scope(|scope| {
            for (family, input) in &inputs {
                let tools = iptables_ctl::iptables::Tools::System;
                let (restore, save) = (tools.restore_program(*family), tools.save_program(*family));
                scope.spawn(move || {
                    nix::sched::unshare(nix::sched::CloneFlags::CLONE_NEWNET).expect("unshare");
                    run(restore, &["-w", "-n"], input.as_bytes());
                    run(save, &["-t", "filter"], b"");
                });
            }
        });
    })
    .0
}

/// Best and median of `times`, in ms.
fn best_and_median(times: &mut [Duration]) -> (f64, f64) {
    times.sort();
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    (ms(times[0]), ms(times[times.len() / 2]))
}

fn cold_start(rounds: usize) {
    let root = tempfile::tempdir().expect("tempdir");
    let dir = root.path().join("etc/iptables");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::copy(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("etc/iptables/base.toml"),
        dir.join("base.toml"),
    )
    .unwrap();
    let root_arg = root.path().to_str().unwrap();
    let (_, ok) = tool(&["--root", root_arg, "render"]);
    assert!(ok, "render");
    let read = |name: &str| std::fs::read_to_string(dir.join(name)).expect(name);
    let rules = read("base.rules");
    let files = [
        (Family::Ipv4, rules.clone(), read("base.rules.empty")),
        (Family::Ipv6, read("base.rules6"), read("base.rules6.empty")),
    ];
    let twice = iptables_ctl::iptables::trial::without_policies_set_again(&rules, &rules) + &rules;
    let twice_whole = rules.repeat(2);
    let tool_run = |command: &'static str| {
        move || {
            let (took, ok) = tool(&["--root", root_arg, command]);
            assert!(ok, "{command}");
            took
        }
    };
    let (check, render) = (tool_run("check"), tool_run("render"));
    let children = || check_children(&files);
    let double = || bare_restore("iptables-restore", twice.as_bytes());
    let double_whole = || bare_restore("iptables-restore", twice_whole.as_bytes());
    let bare = || bare_restore("iptables-restore", rules.as_bytes());
    interleaved(
        "cold start (shipped example",
        rounds,
        &[
            ("check", &check),
            ("render", &render),
            ("the check's 12 children, bare", &children),
            (
                "one restore loading the rules twice as the check does, bare",
                &double,
            ),
            (
                "one restore loading the rules twice whole, bare",
                &double_whole,
            ),
            ("one bare restore", &bare),
        ],
    );
}

/// Runs every contender `rounds` times, interleaved (each round runs each once, one
/// after the other, so that all meet the same conditions), then prints each one's best
/// and median, and both against those of the last contender, one bare restore.
fn interleaved(title: &str, rounds: usize, contenders: &[(&str, &dyn Fn() -> Duration)]) {
    let mut times: Vec<Vec<Duration>> = vec![Vec::new(); contenders.len()];
    for _ in 0..rounds {
        for ((_, run), times) in contenders.iter().zip(&mut times) {
            times.push(run());
        }
    }
    let figures: Vec<(f64, f64)> = times.iter_mut().map(|t| best_and_median(t)).collect();
    let (bare_best, bare_median) = figures[contenders.len() - 1];
    println!(
        "{title}, {rounds} rounds, best / median, and against one bare restore into a fresh namespace):"
    );
    for ((name, _), (best, median)) in contenders.iter().zip(&figures) {
        println!(
            "  {name}: {best:.1} / {median:.1} ms ({:.2}x / {:.2}x)",
            best / bare_best,
            median / bare_median
        );
    }
}

/// Cold start of `status` on the shipped example. `status` asks systemd, so it runs in
/// a real systemd booted in systemd-nspawn (tests/common/nspawn.rs) with the instance
/// installed and in force; `check` and `render` run there too, reading that host (for
/// the lints, for its interfaces), and the bare restore they are held against as well:
/// all enter it through `nsenter`, round after round.
fn status_cold_start(rounds: usize) {
    use common::nspawn::{Machine, MachineState, image};
    let state = MachineState::new(&image());
    std::fs::copy(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("etc/iptables/base.toml"),
        state.etc_iptables().join("base.toml"),
    )
    .unwrap();
    let machine = Machine::boot(&state);
    machine.exec_ok(&["iptables-ctl", "install"]);
    let in_machine = |argv: &'static [&'static str]| {
        let machine = &machine;
        move || {
            let (took, out) = timed(|| machine.exec(argv));
            // 0: the units are active and the rules in force.
            assert!(
                out.status.success(),
                "{argv:?}: {}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
            took
        }
    };
    let status = in_machine(&["iptables-ctl", "status"]);
    // On a live host `check` also reads it for its lints, and `render` its interfaces
    // (with a staged tree, as above, neither does).
    let check = in_machine(&["iptables-ctl", "check"]);
    let render = in_machine(&["iptables-ctl", "render"]);
    let bare = in_machine(&[
        "unshare",
        "-n",
        "iptables-restore",
        "-w",
        "-n",
        "/etc/iptables/base.rules",
    ]);
    interleaved(
        "cold start of status, check and render (shipped example, installed in a booted systemd-nspawn machine",
        rounds,
        &[
            ("status", &status),
            ("check", &check),
            ("render", &render),
            ("one bare restore", &bare),
        ],
    );
    machine.poweroff();
}

fn main() {
    if !common::kernel_tests_enabled("bench lists") {
        return;
    }
    let measure = std::env::args().any(|a| a == "--bench");
    // `cargo bench --bench lists -- audit` runs that part only (apply, packets, audit,
    // cold).
    let only: Option<String> = std::env::args().skip(1).find(|a| !a.starts_with('-'));
    let runs = |part: &str| only.as_deref().is_none_or(|o| o == part);
    let sizes: &[usize] = if measure {
        &[10, 1_000, 10_000, 100_000]
    } else {
        &[10]
    };
    if runs("apply") {
        for &n in sizes {
            apply_latency(n);
        }
    }
    if runs("packets") {
        let topology = Topology::build();
        topology.client.sysctl("net.ipv4.tcp_tw_reuse", "1");
        let mut baseline = None;
        for &n in sizes {
            let list = members(n);
            let linear =
                connections_per_second(&topology, Filter::Rules(&linear_rules(&list), None));
            let set_restore = set_restore(&list);
            let set =
                connections_per_second(&topology, Filter::Rules(&set_rules(), Some(&set_restore)));
            let rendered = connections_per_second(&topology, Filter::Tool(&list));
            let (base, base_rendered) = *baseline.get_or_insert((set, rendered));
            println!(
                "packet path, {n} entries: {linear:.0} connections/s as rules, {set:.0} as a hand-made ipset ({:.0}% of 10 entries), {rendered:.0} with iptables-ctl's rendered policy ({:.0}% of 10 entries; the list {})",
                100.0 * set / base,
                100.0 * rendered / base_rendered,
                if n > iptables_ctl::policy::lists::SET_THRESHOLD {
                    "as an ipset"
                } else {
                    "as rules"
                }
            );
        }
    }
    if runs("audit") {
        for &n in sizes {
            audit_time(n);
        }
    }
    if runs("cold") {
        cold_start(if measure { COLD_ROUNDS } else { 2 });
        if common::nspawn::systemd_tests_enabled("bench lists: status") {
            status_cold_start(if measure { COLD_ROUNDS } else { 2 });
        }
    }
}
