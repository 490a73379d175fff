//! Shared helpers for the tests that need real kernel parts: network namespaces created
//! and removed by the test (never the root namespace), the real iptables tools, and
//! rendering the example policies.
#![allow(dead_code, clippy::expect_used, clippy::panic, clippy::unwrap_used)] // test support may fail loudly

use std::fs::File;

use std::net::{IpAddr, SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

pub mod docker;
pub mod nspawn;
pub mod topology;

/// The commands an admin runs (the rest are run by the units): each has a manual page.
pub const ADMIN_COMMANDS: [&str; 16] = [
    "init",
    "check",
    "diff",
    "apply",
    "confirm",
    "rollback",
    "render",
    "install",
    "uninstall",
    "start",
    "stop",
    "restart",
    "reload",
    "status",
    "audit",
    "explain",
];

use iptables_ctl::files::layout::Layout;
use iptables_ctl::iptables::instance::render_instance;
use iptables_ctl::iptables::render::RenderedFile;
use nix::sched::{CloneFlags, setns};
use socket2::{Domain, Socket, Type};

/// Whether the kernel tests can run. They need root; in CI (CI set) their absence is a
/// failure, elsewhere they are skipped with a loud message.
pub fn kernel_tests_enabled(test: &str) -> bool {
    tools_available(test, &[], true)
}

/// Every example policy: tests/policies/*.toml (sorted) and the shipped example.
pub fn example_policies() -> Vec<PathBuf> {
    let mut list: Vec<PathBuf> = std::fs::read_dir("tests/policies")
        .expect("tests/policies")
        .map(|e| e.expect("entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == "toml"))
        .collect();
    list.sort();
    list.push("etc/iptables/base.toml".into());
    list
}

/// Renders the policy at `path` with the built-in templates, as instance `base`.
pub fn render_policy(path: &Path) -> Vec<RenderedFile> {
    let instance = "base".parse().expect("instance name");
    let (_, files) = render_instance(&Layout::new("/nonexistent-root"), &instance, path)
        .unwrap_or_else(|e| panic!("{}: {e:#}", path.display()));
    files
}

/// The text of one rendered file by name.
pub fn file<'a>(files: &'a [RenderedFile], name: &str) -> &'a str {
    &files
        .iter()
        .find(|f| f.file_name == name)
        .unwrap_or_else(|| panic!("no {name}"))
        .text
}

static COUNTER: AtomicUsize = AtomicUsize::new(0);

/// A network namespace made for one test, removed when dropped.
pub struct Netns {
    pub name: String,
}

impl Netns {
    /// Creates a fresh namespace with a unique name.
    pub fn new() -> Netns {
        let name = format!(
            "ictl-{}-{}",
            std::process::id(),
            COUNTER.fetch_add(1, Ordering::SeqCst)
        );
        run_ok("ip", &["netns", "add", &name], b"");
        let ns = Netns { name };
        ns.ip(&["link", "set", "lo", "up"]);
        ns
    }

    /// `ip -n NAME args...`, which must succeed.
    pub fn ip(&self, args: &[&str]) {
        let mut full = vec!["-n", &self.name];
        full.extend_from_slice(args);
        run_ok("ip", &full, b"");
    }

    /// Runs `program args` inside the namespace with `stdin`; it must succeed.
    pub fn exec_ok(&self, program: &str, args: &[&str], stdin: &[u8]) -> String {
        let mut full = vec!["netns", "exec", &self.name, program];
        full.extend_from_slice(args);
        run_ok("ip", &full, stdin)
    }

    /// Sets a sysctl inside the namespace.
    pub fn sysctl(&self, key: &str, value: &str) {
        self.exec_ok("sysctl", &["-qw", &format!("{key}={value}")], b"");
    }

    /// Runs `f` on a thread that has entered this namespace; sockets it creates live there.
    pub fn enter<T: Send>(&self, f: impl FnOnce() -> T + Send) -> T {
        let path = format!("/run/netns/{}", self.name);
        std::thread::scope(|scope| {
            scope
                .spawn(move || {
                    let handle = File::open(&path).expect("open netns");
                    setns(&handle, CloneFlags::CLONE_NEWNET).expect("setns");
                    f()
                })
                .join()
                .expect("namespace thread")
        })
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = Command::new("ip")
            .args(["netns", "del", &self.name])
            .status();
    }
}

/// Runs a program that must succeed, with the library's own runner; returns stdout.
pub fn run_ok(program: &str, args: &[&str], stdin: &[u8]) -> String {
    iptables_ctl::command::run(program, args, stdin).unwrap_or_else(|e| panic!("{e:#}"))
}

/// `iptables-save` output without its timestamped comment lines.
pub fn without_comments(save: &str) -> String {
    iptables_ctl::iptables::normalize_save(save)
}

/// How a TCP connect ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// The handshake completed.
    Open,
    /// A reset (REJECT with tcp-reset, or nothing listening).
    Refused,
    /// No answer (DROP).
    Timeout,
}

/// Listening sockets (dual-stack) in `ns`; the kernel completes handshakes for them
/// without anyone calling accept, which is all a connect probe needs.
pub fn listen(ns: &Netns, ports: &[u16]) -> Vec<TcpListener> {
    ns.enter(|| {
        ports
            .iter()
            .map(|p| TcpListener::bind(("::", *p)).unwrap_or_else(|e| panic!("bind {p}: {e}")))
            .collect()
    })
}

/// A TCP connect from `source` to `dest:port` made inside `ns`.
pub fn probe(ns: &Netns, source: Option<&str>, dest: &str, port: u16) -> Outcome {
    probe_within(ns, source, dest, port, Duration::from_secs(3))
}

/// [`probe`] with its own limit for an unanswered connect (a DROP).
pub fn probe_within(
    ns: &Netns,
    source: Option<&str>,
    dest: &str,
    port: u16,
    limit: Duration,
) -> Outcome {
    let dest: IpAddr = dest.parse().expect("dest");
    let source: Option<IpAddr> = source.map(|s| s.parse().expect("source"));
    ns.enter(move || {
        let socket = Socket::new(
            Domain::for_address(SocketAddr::new(dest, port)),
            Type::STREAM,
            None,
        )
        .expect("socket");
        if let Some(source) = source {
            socket
                .bind(&SocketAddr::new(source, 0).into())
                .expect("bind source");
        }
        // Refusals here are TCP resets, which arrive at once; the timeout only bounds
        // the test if a rule silently drops instead.
        match socket.connect_timeout(&SocketAddr::new(dest, port).into(), limit) {
            Ok(()) => Outcome::Open,
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionRefused => Outcome::Refused,
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::TimedOut | std::io::ErrorKind::WouldBlock
                ) =>
            {
                Outcome::Timeout
            }
            Err(e) => panic!("probe to {dest}:{port} from {source:?}: {e}"),
        }
    })
}

/// One TCP connect from `source` to `target` made by the calling thread (already in
/// the client's namespace), closed with a reset so that no TIME_WAIT piles up in a
/// loop of them; whether the handshake completed within `limit`.
pub fn connect_once(source: IpAddr, target: SocketAddr, limit: Duration) -> bool {
    let socket = Socket::new(Domain::for_address(target), Type::STREAM, None).expect("socket");
    socket.set_reuse_address(true).expect("reuse");
    socket
        .bind(&SocketAddr::new(source, 0).into())
        .expect("bind client");
    socket.set_linger(Some(Duration::ZERO)).expect("linger");
    socket.connect_timeout(&target.into(), limit).is_ok()
}

/// Waits until `condition` holds, checking every 10 ms, and fails the test after
/// `limit`. For conditions another process brings about in its own time (a job systemd
/// queued for itself); never a stand-in for a result we could wait on directly.
pub fn wait_until(limit: Duration, what: &str, mut condition: impl FnMut() -> bool) {
    let deadline = std::time::Instant::now() + limit;
    while !condition() {
        assert!(
            std::time::Instant::now() < deadline,
            "timed out after {limit:?} waiting until {what}"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// Whether `tools` are all on PATH (and, with `needs_root`, we are root). Without them a
/// test cannot run: in CI (CI set) that is a failure, elsewhere it is skipped with a
/// loud message saying what to install.
pub fn tools_available(test: &str, tools: &[&str], needs_root: bool) -> bool {
    let root_ok = !needs_root || nix::unistd::geteuid().is_root();
    let missing: Vec<&str> = tools
        .iter()
        .copied()
        .filter(|tool| {
            !Command::new("sh")
                .args(["-c", &format!("command -v {tool}")])
                .stdout(std::process::Stdio::null())
                .status()
                .is_ok_and(|s| s.success())
        })
        .collect();
    if root_ok && missing.is_empty() {
        return true;
    }
    let mut needs = Vec::new();
    if !root_ok {
        needs.push("root".to_owned());
    }
    if !missing.is_empty() {
        needs.push(format!("{} on PATH", missing.join(", ")));
    }
    let why = needs.join(" and ");
    assert!(
        std::env::var_os("CI").is_none(),
        "{test} needs {why}, and CI must run it (bash .ci/run installs what it needs)"
    );
    eprintln!("SKIPPED {test}: needs {why} (bash .ci/run installs what it needs)");
    false
}

/// `iptables-ctl --root ROOT ARGS...`, without the admin's SSH session (which the
/// starter policy would record).
pub fn staged_command(root: &Path, args: &[&str]) -> assert_cmd::Command {
    let mut cmd = assert_cmd::Command::cargo_bin("iptables-ctl").expect("binary");
    cmd.arg("--root")
        .arg(root)
        .args(args)
        .env_remove("SSH_CONNECTION");
    cmd
}

/// A command's standard output, as text.
pub fn stdout(out: &std::process::Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// A command's standard error, as text.
pub fn stderr(out: &std::process::Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// Every entry below `dir` (relative path, and a symlink's target or a file's bytes),
/// sorted: two calls compare equal exactly when nothing below `dir` changed.
pub fn tree(dir: &Path) -> Vec<(String, Vec<u8>)> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_owned()];
    while let Some(current) = stack.pop() {
        for entry in std::fs::read_dir(&current).expect("read_dir") {
            let path = entry.expect("entry").path();
            let meta = path.symlink_metadata().expect("metadata");
            let content = if meta.file_type().is_symlink() {
                std::fs::read_link(&path)
                    .expect("link")
                    .to_string_lossy()
                    .into_owned()
                    .into_bytes()
            } else if meta.is_dir() {
                stack.push(path.clone());
                Vec::new()
            } else {
                std::fs::read(&path).expect("file")
            };
            out.push((
                path.strip_prefix(dir)
                    .expect("below dir")
                    .display()
                    .to_string(),
                content,
            ));
        }
    }
    out.sort();
    out
}

/// A small seeded generator (xorshift64*): the same seed gives the same sequence, so a
/// generated test is reproducible from its seed.
pub struct Dice(pub u64);

impl Dice {
    pub fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    pub fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
    pub fn chance(&mut self, percent: u64) -> bool {
        self.next() % 100 < percent
    }
    pub fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len())]
    }
    /// A duration drawn evenly from zero to `max`.
    pub fn up_to(&mut self, max: Duration) -> Duration {
        let micros = u64::try_from(max.as_micros()).unwrap_or(u64::MAX).max(1);
        Duration::from_micros(self.next() % micros)
    }
}

/// The host of the fixtures: eth0 203.0.113.10 / 2001:db8::10, docker0, the user bridge
/// and the internal bridge, forwarding on.
pub fn fixture_host() -> iptables_ctl::host::net::HostNet {
    let iface = |name: &str, addresses: &[&str]| iptables_ctl::host::net::Interface {
        name: name.to_owned(),
        addresses: addresses.iter().map(|a| a.parse().unwrap()).collect(),
    };
    let route = |destination: &str, interface: &str| iptables_ctl::host::net::Route {
        destination: destination.parse().unwrap(),
        interface: interface.to_owned(),
    };
    iptables_ctl::host::net::HostNet {
        interfaces: vec![
            iface("lo", &["127.0.0.1/8", "::1/128"]),
            iface("eth0", &["203.0.113.10/24", "2001:db8::10/64"]),
            iface("docker0", &["172.17.0.1/16", "fd00:d0c::1/64"]),
            iface("br-0123456789ab", &["172.18.0.1/16", "fd00:d0c:1::1/64"]),
            iface("br-internal0000", &["172.19.0.1/16", "fd00:d0c:2::1/64"]),
        ],
        routes: vec![
            route("0.0.0.0/0", "eth0"),
            route("::/0", "eth0"),
            route("203.0.113.0/24", "eth0"),
            route("172.17.0.0/16", "docker0"),
            route("fd00:d0c::/64", "docker0"),
            route("172.18.0.0/16", "br-0123456789ab"),
            route("fd00:d0c:1::/64", "br-0123456789ab"),
            route("172.19.0.0/16", "br-internal0000"),
            route("fd00:d0c:2::/64", "br-internal0000"),
        ],
        forwards_v4: true,
        forwards_v6: true,
        sets: Default::default(),
        proxies: Vec::new(),
    }
}

/// The one package with extension `ext` (deb, rpm) that `bash packaging/build` left in
/// `dir` (relative to the checkout), if it is there. Missing in CI is a failure;
/// elsewhere the test is skipped with a message.
pub fn built_package(test: &str, dir: &str, ext: &str) -> Option<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join(dir);
    let found: Vec<PathBuf> = std::fs::read_dir(&dir)
        .map(|entries| {
            entries
                .map(|e| e.expect("entry").path())
                .filter(|p| p.extension().is_some_and(|e| e == ext))
                .collect()
        })
        .unwrap_or_default();
    match found.as_slice() {
        [one] => Some(one.clone()),
        [] => {
            let why = format!(
                "{test} needs the .{ext} package in {}: run `bash packaging/build` first (.ci/run does)",
                dir.display()
            );
            assert!(std::env::var_os("CI").is_none(), "{why}");
            eprintln!("SKIPPED {why}");
            None
        }
        many => panic!(
            "{test}: more than one .{ext} in {}: {many:?}",
            dir.display()
        ),
    }
}
