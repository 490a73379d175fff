//! A real systemd booted in systemd-nspawn, reached over its own system bus.
//!
//! The root tree is the cached Debian 12 image built by `tests/nspawn/build-image`;
//! every boot gets a volatile overlay of it, so tests can boot the same image at once.
//! What must survive a reboot (/etc/systemd/system, /etc/iptables, /var/lib/docker,
//! /var/lib/iptables-ctl) is
//! bound from a per-test [`MachineState`] directory. The machine has a private network
//! namespace, attached under a test-owned name, with one veth to a client namespace:
//!
//! ```text
//!  client ns: veth 10.99.0.1/24 fd99::1/64 ---- machine: eth0 10.99.0.2/24 fd99::2/64
//!             (and 10.99.0.3, fd99::3)
//! ```
//!
//! The client's second addresses are a second client for "allowed source / other
//! source" probes; the IPv6 one is deprecated (preferred_lft 0), so a probe that does
//! not choose its source still comes from fd99::1.
//!
//! The iptables-ctl binary under test is bound read-only at /usr/local/sbin/iptables-ctl;
//! a machine booted for the packages ([`Setup::packages`]) has no iptables-ctl until
//! one is installed from the package directories bound read-only into it.
//! Everything is torn down on drop: nspawn gets SIGTERM (a clean poweroff), the
//! namespaces and the cgroups made for it are removed.
#![allow(dead_code)]

use std::fs;
use std::io::Read as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use iptables_ctl::systemd::bus::SystemdBus;
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

use super::{Netns, run_ok};

/// How long a boot may take before the test gives up (a boot takes well under 2 s).
const BOOT_DEADLINE: Duration = Duration::from_secs(60);

/// Address of the client end of the link, per family.
pub const CLIENT_V4: &str = "10.99.0.1";
/// Address of the machine's eth0.
pub const MACHINE_V4: &str = "10.99.0.2";
/// Client, IPv6.
pub const CLIENT_V6: &str = "fd99::1";
/// Machine, IPv6.
pub const MACHINE_V6: &str = "fd99::2";
/// The client's second IPv4 address (probes bind it explicitly).
pub const CLIENT2_V4: &str = "10.99.0.3";
/// The client's second IPv6 address (probes bind it explicitly).
pub const CLIENT2_V6: &str = "fd99::3";

static COUNTER: AtomicUsize = AtomicUsize::new(0);

/// Whether the systemd tests can run: root and the nspawn tools.
pub fn systemd_tests_enabled(test: &str) -> bool {
    super::tools_available(test, &["systemd-nspawn", "mmdebstrap", "nsenter"], true)
}

/// The cached image, built on first use.
pub fn image() -> PathBuf {
    let out = Command::new("tests/nspawn/build-image")
        .stderr(Stdio::inherit())
        .output()
        .expect("run tests/nspawn/build-image");
    assert!(out.status.success(), "building the test image failed");
    PathBuf::from(String::from_utf8_lossy(&out.stdout).trim())
}

/// What a machine keeps across reboots.
pub struct MachineState {
    dir: tempfile::TempDir,
    image: PathBuf,
}

impl MachineState {
    /// Fresh state: the image's own /etc/systemd/system, an empty /etc/iptables and
    /// /var/lib/docker.
    pub fn new(image: &Path) -> MachineState {
        let dir = tempfile::Builder::new()
            .prefix("ictl-machine-")
            .tempdir_in("/var/tmp")
            .expect("state dir");
        run_ok(
            "cp",
            &[
                "-a",
                &image.join("etc/systemd/system").to_string_lossy(),
                &dir.path().join("etc-systemd-system").to_string_lossy(),
            ],
            b"",
        );
        for sub in [
            "etc-iptables",
            "var-lib-docker",
            "var-lib-iptables-ctl",
            "dbus",
        ] {
            fs::create_dir(dir.path().join(sub)).expect("state subdir");
        }
        MachineState {
            dir,
            image: image.to_owned(),
        }
    }

    /// The state directory, seen from the host (`var-lib-iptables-ctl` is the machine's
    /// /var/lib/iptables-ctl).
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// The machine's /etc/iptables, seen from the host.
    pub fn etc_iptables(&self) -> PathBuf {
        self.dir.path().join("etc-iptables")
    }

    /// The machine's /etc/systemd/system, seen from the host.
    pub fn etc_systemd(&self) -> PathBuf {
        self.dir.path().join("etc-systemd-system")
    }

    fn bus_dir(&self) -> PathBuf {
        self.dir.path().join("dbus")
    }
}

/// What a machine is booted with besides its image and state.
#[derive(Debug, Clone)]
pub struct Setup {
    /// The binary under test at /usr/local/sbin/iptables-ctl.
    test_binary: bool,
    /// Host directories bound read-only at the given paths in the machine.
    read_only: Vec<(PathBuf, String)>,
}

impl Setup {
    /// The binary under test, as most tests run it.
    pub fn test_binary() -> Setup {
        Setup {
            test_binary: true,
            read_only: Vec::new(),
        }
    }

    /// No iptables-ctl: `dirs` (host directory, path in the machine) hold the packages
    /// to install.
    pub fn packages(dirs: &[(&Path, &str)]) -> Setup {
        Setup {
            test_binary: false,
            read_only: dirs
                .iter()
                .map(|(host, machine)| ((*host).to_owned(), (*machine).to_owned()))
                .collect(),
        }
    }
}

/// A booted machine.
pub struct Machine<'a> {
    /// Its name (also of its network namespace and cgroups).
    pub name: String,
    /// Its network namespace, attached from the host.
    pub netns: Netns,
    /// The client namespace on the other end of its eth0.
    pub client: Netns,
    state: &'a MachineState,
    nspawn: Child,
    leader: i32,
    host_link: String,
}

impl<'a> Machine<'a> {
    /// Boots `state`'s image with the binary under test and waits until systemd has
    /// finished booting.
    pub fn boot(state: &'a MachineState) -> Machine<'a> {
        Machine::boot_with(state, &Setup::test_binary())
    }

    /// Boots `state`'s image with `setup` and waits until systemd has finished booting.
    pub fn boot_with(state: &'a MachineState, setup: &Setup) -> Machine<'a> {
        let name = format!(
            "ictl-{}-m{}",
            std::process::id(),
            COUNTER.fetch_add(1, Ordering::SeqCst)
        );
        let bus_dir = state.bus_dir();
        let _ = fs::remove_file(bus_dir.join("system_bus_socket"));
        let binary = env!("CARGO_BIN_EXE_iptables-ctl");
        let mut binds = vec![
            format!("--bind={}:/run/dbus", bus_dir.display()),
            format!(
                "--bind={}:/etc/systemd/system",
                state.etc_systemd().display()
            ),
            format!("--bind={}:/etc/iptables", state.etc_iptables().display()),
            format!(
                "--bind={}:/var/lib/docker",
                state.dir.path().join("var-lib-docker").display()
            ),
            format!(
                "--bind={}:/var/lib/iptables-ctl",
                state.dir.path().join("var-lib-iptables-ctl").display()
            ),
        ];
        if setup.test_binary {
            binds.push(format!("--bind-ro={binary}:/usr/local/sbin/iptables-ctl"));
        }
        for (host, inside) in &setup.read_only {
            binds.push(format!("--bind-ro={}:{inside}", host.display()));
        }
        // The shell puts itself into cgroups of our own before becoming nspawn, so the
        // container's cgroups are ours to remove.
        let script = format!(
            "for h in systemd unified; do mkdir -p /sys/fs/cgroup/$h/{name} && echo $$ > /sys/fs/cgroup/$h/{name}/cgroup.procs || exit 1; done; exec systemd-nspawn \"$@\""
        );
        let mut args: Vec<String> = vec![
            "-c".into(),
            script,
            "sh".into(),
            "--quiet".into(),
            "--boot".into(),
            format!("--directory={}", state.image.display()),
            "--register=no".into(),
            "--keep-unit".into(),
            "--volatile=overlay".into(),
            "--console=pipe".into(),
            format!("--machine={name}"),
            "--private-network".into(),
            "--capability=CAP_NET_ADMIN,CAP_NET_RAW".into(),
            "--system-call-filter=@keyring bpf".into(),
        ];
        args.extend(binds);
        let nspawn = Command::new("sh")
            .args(&args)
            .env("SYSTEMD_NSPAWN_UNIFIED_HIERARCHY", "1")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start systemd-nspawn");
        let nspawn_pid = nspawn.id();
        let mut machine = Machine {
            netns: Netns { name: name.clone() },
            client: Netns::new(),
            name,
            state,
            nspawn,
            leader: 0,
            host_link: String::new(),
        };
        machine.leader = machine.wait_for_leader(nspawn_pid);
        run_ok(
            "ip",
            &[
                "netns",
                "attach",
                &machine.name,
                &machine.leader.to_string(),
            ],
            b"",
        );
        machine.exec_ok(&["systemctl", "is-system-running", "--wait"]);
        machine.wire_network();
        machine
    }

    /// Waits for systemd (PID 1 of the container) to appear as nspawn's child.
    fn wait_for_leader(&mut self, nspawn_pid: u32) -> i32 {
        let deadline = Instant::now() + BOOT_DEADLINE;
        let children = format!("/proc/{nspawn_pid}/task/{nspawn_pid}/children");
        loop {
            if let Some(pid) = fs::read_to_string(&children).ok().and_then(|t| {
                t.split_whitespace()
                    .next()
                    .and_then(|p| p.parse::<i32>().ok())
            }) && fs::read_to_string(format!("/proc/{pid}/comm"))
                .is_ok_and(|c| c.trim() == "systemd")
                && self.bus_socket().exists()
            {
                return pid;
            }
            if let Ok(Some(status)) = self.nspawn.try_wait() {
                let mut err = String::new();
                if let Some(mut e) = self.nspawn.stderr.take() {
                    let _ = e.read_to_string(&mut err);
                }
                panic!("systemd-nspawn exited during boot ({status}): {err}");
            }
            assert!(
                Instant::now() < deadline,
                "the machine did not boot within {BOOT_DEADLINE:?}"
            );
            std::thread::sleep(Duration::from_millis(10)); // polling for a condition, with a deadline
        }
    }

    fn wire_network(&mut self) {
        self.host_link = format!("v{}", &self.name[self.name.len().saturating_sub(12)..]);
        run_ok(
            "ip",
            &[
                "link",
                "add",
                &self.host_link,
                "netns",
                &self.client.name,
                "type",
                "veth",
                "peer",
                "name",
                "eth0",
                "netns",
                &self.name,
            ],
            b"",
        );
        for (ns, link, v4, v6) in [
            (&self.client, self.host_link.as_str(), CLIENT_V4, CLIENT_V6),
            (&self.netns, "eth0", MACHINE_V4, MACHINE_V6),
        ] {
            ns.sysctl(&format!("net.ipv6.conf.{link}.accept_dad"), "0");
            ns.ip(&["link", "set", link, "up"]);
            ns.ip(&["addr", "add", &format!("{v4}/24"), "dev", link]);
            ns.ip(&["addr", "add", &format!("{v6}/64"), "dev", link, "nodad"]);
        }
        let client = &self.client;
        client.ip(&[
            "addr",
            "add",
            &format!("{CLIENT2_V4}/24"),
            "dev",
            &self.host_link,
        ]);
        client.ip(&[
            "addr",
            "add",
            &format!("{CLIENT2_V6}/64"),
            "dev",
            &self.host_link,
            "nodad",
            "preferred_lft",
            "0",
        ]);
        self.netns
            .ip(&["route", "add", "default", "via", CLIENT_V4]);
        self.netns
            .ip(&["-6", "route", "add", "default", "via", CLIENT_V6]);
    }

    /// The host PID of the machine's systemd (PID 1 inside), for `nsenter -t`.
    pub fn leader(&self) -> i32 {
        self.leader
    }

    /// The host path of the machine's system bus socket.
    pub fn bus_socket(&self) -> PathBuf {
        self.state.bus_dir().join("system_bus_socket")
    }

    /// A D-Bus connection to the machine's systemd.
    pub fn bus(&self) -> SystemdBus {
        SystemdBus::at_address(&format!("unix:path={}", self.bus_socket().display()))
            .expect("connect to the machine's bus")
    }

    /// Runs a command inside the machine (all its namespaces).
    pub fn exec(&self, argv: &[&str]) -> Output {
        Command::new("nsenter")
            .args(["-t", &self.leader.to_string(), "-a", "--"])
            .args(argv)
            .stdin(Stdio::null())
            .output()
            .expect("nsenter")
    }

    /// Runs a command inside the machine with its standard output going to `stdout`.
    pub fn exec_with_stdout(&self, argv: &[&str], stdout: Stdio) -> Output {
        Command::new("nsenter")
            .args(["-t", &self.leader.to_string(), "-a", "--"])
            .args(argv)
            .stdin(Stdio::null())
            .stdout(stdout)
            .stderr(Stdio::piped())
            .output()
            .expect("nsenter")
    }

    /// Runs a command inside the machine; it must succeed. Returns stdout.
    pub fn exec_ok(&self, argv: &[&str]) -> String {
        let out = self.exec(argv);
        assert!(
            out.status.success(),
            "{argv:?} in the machine failed ({}):\n{}{}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// `iptables-save` (or ip6tables-save) of the machine's live filter table, without
    /// timestamps and packet counters (which change with every probe).
    pub fn save(&self, program: &str) -> String {
        super::without_comments(&self.netns.exec_ok(program, &["-t", "filter"], b""))
            .lines()
            .map(|l| match (l.starts_with(':'), l.rfind(" [")) {
                (true, Some(at)) => format!("{}\n", &l[..at]),
                _ => format!("{l}\n"),
            })
            .collect()
    }

    /// Powers the machine off cleanly and waits for nspawn to exit.
    pub fn poweroff(mut self) {
        self.shutdown();
    }

    fn shutdown(&mut self) {
        let pid = Pid::from_raw(self.nspawn.id() as i32);
        if let Ok(None) = self.nspawn.try_wait() {
            let _ = kill(pid, Signal::SIGTERM);
            let deadline = Instant::now() + Duration::from_secs(20);
            while matches!(self.nspawn.try_wait(), Ok(None)) && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(10)); // waiting for exit, with a deadline
            }
            if matches!(self.nspawn.try_wait(), Ok(None)) {
                let _ = self.nspawn.kill();
                let _ = self.nspawn.wait();
            }
        }
        for hierarchy in ["systemd", "unified"] {
            let _ = Command::new("find")
                .args([
                    &format!("/sys/fs/cgroup/{hierarchy}/{}", self.name),
                    "-depth",
                    "-type",
                    "d",
                    "-exec",
                    "rmdir",
                    "{}",
                    ";",
                ])
                .stderr(Stdio::null())
                .status();
        }
    }
}

impl Drop for Machine<'_> {
    fn drop(&mut self) {
        self.shutdown();
    }
}
