//! A real dockerd (Debian's docker.io 20.10) inside a booted [`Machine`], started by the
//! machine's own systemd, with containers built offline from busybox; and the probes that
//! check what a client outside sees of their published ports.
#![allow(dead_code)]

use std::time::Duration;

use super::nspawn::{
    CLIENT_V4, CLIENT_V6, CLIENT2_V4, CLIENT2_V6, MACHINE_V4, MACHINE_V6, Machine,
};
use super::{Outcome, probe, wait_until};

/// Docker 20.10 with IPv6 on the default bridge: published ports are DNATed in ip6tables
/// too, and this version creates no `FORWARD -j DOCKER-USER` there.
pub const IPV6_DAEMON_JSON: &str =
    r#"{"ipv6": true, "fixed-cidr-v6": "fd00:d0c::/64", "experimental": true, "ip6tables": true}"#;

/// Starts the machine's dockerd (with `daemon_json` as /etc/docker/daemon.json when
/// given) and imports `bb`, an image holding only busybox.
pub fn start_docker_with_busybox(machine: &Machine<'_>, daemon_json: Option<&str>) {
    if let Some(json) = daemon_json {
        machine.exec_ok(&[
            "sh",
            "-c",
            &format!("mkdir -p /etc/docker && printf '%s\\n' '{json}' > /etc/docker/daemon.json"),
        ]);
    }
    machine.exec_ok(&["systemctl", "enable", "--now", "docker.service"]);
    wait_for_reassertion(machine);
    machine.exec_ok(&[
        "sh",
        "-c",
        "mkdir -p /tmp/bb/bin && cp /bin/busybox /tmp/bb/bin/ && tar -C /tmp/bb -c . | docker import - bb",
    ]);
}

/// When the firewall is active: waits until the re-assertion after Docker's start has
/// run. `systemctl start docker` returns when Docker is up, and the re-assertion (ordered
/// after it) a moment later; probes in between would test Docker's own rules order.
pub fn wait_for_reassertion(machine: &Machine<'_>) {
    let active = |unit: &str| {
        machine
            .exec(&["systemctl", "is-active", "--quiet", unit])
            .status
            .success()
    };
    if active("iptables@base.service") {
        wait_until(
            Duration::from_secs(30),
            "iptables-docker@base.service ran after Docker started",
            || active("iptables-docker@base.service"),
        );
    }
}

/// Asserts that a container reaches another one of its network directly (bridged,
/// port to port), as Docker's inter-container traffic does.
pub fn assert_containers_reach_each_other(machine: &Machine<'_>, server: &str) {
    let address = machine.exec_ok(&[
        "docker",
        "inspect",
        "-f",
        "{{range .NetworkSettings.Networks}}{{.IPAddress}}{{end}}",
        server,
    ]);
    let address = address.trim();
    let exists = machine
        .exec(&["docker", "inspect", "client"])
        .status
        .success();
    if !exists {
        machine.exec_ok(&[
            "docker",
            "run",
            "-d",
            "--init",
            "--name",
            "client",
            "bb",
            "/bin/busybox",
            "sleep",
            "3600",
        ]);
    } else {
        machine.exec_ok(&["docker", "start", "client"]);
    }
    let out = machine.exec(&[
        "docker",
        "exec",
        "client",
        "/bin/busybox",
        "nc",
        "-w",
        "3",
        address,
        "80",
    ]);
    assert!(
        out.status.success(),
        "container client cannot reach {server} ({address}:80): {}\n{}",
        String::from_utf8_lossy(&out.stderr),
        diagnostics(machine)
    );
}

/// `systemctl restart docker`. docker.service allows three starts a minute; a test that
/// restarts it more often clears the counter first, as an admin would.
pub fn restart_docker(machine: &Machine<'_>) {
    machine.exec_ok(&[
        "systemctl",
        "reset-failed",
        "docker.service",
        "docker.socket",
    ]);
    machine.exec_ok(&["systemctl", "restart", "docker.service"]);
}

/// Runs busybox httpd on port 80 in a new container `name`, with the `docker run`
/// `options` (ports, network, restart policy), and waits until it serves.
pub fn run_httpd(machine: &Machine<'_>, name: &str, options: &[&str]) {
    let mut argv = vec!["docker", "run", "-d", "--init", "--name", name];
    argv.extend_from_slice(options);
    argv.extend_from_slice(&["bb", "/bin/busybox", "httpd", "-f", "-p", "80"]);
    machine.exec_ok(&argv);
    wait_until_serving(machine, name);
}

/// Starts the existing container `name` and waits until it serves.
pub fn start_httpd(machine: &Machine<'_>, name: &str) {
    machine.exec_ok(&["docker", "start", name]);
    wait_until_serving(machine, name);
}

/// Waits until the container `name`'s httpd accepts connections on its own address.
/// `docker run -d` and `docker start` return once the process is started, not once it
/// listens; a probe through the firewall before then would be refused by the
/// container, not by the rules. The wait connects from the machine itself (OUTPUT to
/// the bridge), a path the FORWARD and DOCKER-USER rules under test never see.
pub fn wait_until_serving(machine: &Machine<'_>, name: &str) {
    let address = machine.exec_ok(&[
        "docker",
        "inspect",
        "-f",
        "{{range .NetworkSettings.Networks}}{{.IPAddress}}{{end}}",
        name,
    ]);
    let address = address.trim().to_owned();
    wait_until(
        Duration::from_secs(30),
        &format!("container {name} serves on {address}:80"),
        || probe(&machine.netns, None, &address, 80) == Outcome::Open,
    );
}

/// What a failure report needs to tell the firewall's fault from the container's: the
/// live rules of both families, the containers and the journal of our units and Docker.
pub fn diagnostics(machine: &Machine<'_>) -> String {
    let text = |argv: &[&str]| {
        let out = machine.exec(argv);
        format!(
            "$ {}\n{}{}",
            argv.join(" "),
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    };
    [
        text(&["iptables-save"]),
        text(&["ip6tables-save"]),
        text(&["docker", "ps", "-a"]),
        format!(
            "$ journalctl (our units and docker.service)\n{}",
            journal(machine)
        ),
    ]
    .join("\n")
}

/// The journal of our units and docker.service, with monotonic timestamps.
pub fn journal(machine: &Machine<'_>) -> String {
    machine.exec_ok(&[
        "journalctl",
        "-o",
        "short-monotonic",
        "-u",
        "iptables@*",
        "-u",
        "iptables-docker@*",
        "-u",
        "iptables.service",
        "-u",
        "docker.service",
    ])
}

/// A client address of the test link.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Client {
    /// Its address.
    pub address: &'static str,
    /// The machine's address of the same family.
    pub machine: &'static str,
}

/// The first client address, IPv4.
pub const FIRST_V4: Client = Client {
    address: CLIENT_V4,
    machine: MACHINE_V4,
};
/// The first client address, IPv6.
pub const FIRST_V6: Client = Client {
    address: CLIENT_V6,
    machine: MACHINE_V6,
};
/// The second client address, IPv4.
pub const SECOND_V4: Client = Client {
    address: CLIENT2_V4,
    machine: MACHINE_V4,
};
/// The second client address, IPv6.
pub const SECOND_V6: Client = Client {
    address: CLIENT2_V6,
    machine: MACHINE_V6,
};

/// One expected probe: from `client` to the machine's `port`.
pub type Expected = (Client, u16, Outcome);

/// Probes every `(client, port)` of `expected` and returns what differs, as
/// `(client address, port, expected, seen)`.
pub fn mismatches(
    machine: &Machine<'_>,
    expected: &[Expected],
) -> Vec<(String, u16, Outcome, Outcome)> {
    expected
        .iter()
        .filter_map(|(client, port, want)| {
            let seen = probe(&machine.client, Some(client.address), client.machine, *port);
            (seen != *want).then(|| (client.address.to_owned(), *port, *want, seen))
        })
        .collect()
}

/// Asserts that every probe of `expected` sees what it expects; on a mismatch the
/// message carries the [`diagnostics`].
pub fn assert_probes(machine: &Machine<'_>, what: &str, expected: &[Expected]) {
    let wrong = mismatches(machine, expected);
    assert!(
        wrong.is_empty(),
        "{what}: probes that differ (client, port, expected, seen): {wrong:?}\n{}",
        diagnostics(machine)
    );
}

/// SSH and a host service open; the published 8080 only for the second client
/// addresses; every other published port refused.
pub const POLICY: &str = r#"
[interfaces]
external = "eth0"

[[host.services]]
port = 22
comment = "ssh"

[[host.services]]
port = 2222
comment = "host service"

[[docker.published]]
port = 8080
from = ["10.99.0.3", "fd99::3"]
comment = "web, for the second client"
"#;

/// What the clients must see of a container publishing 8080 and 9090 under [`POLICY`].
pub const PUBLISHED: [Expected; 8] = [
    (SECOND_V4, 8080, Outcome::Open),
    (FIRST_V4, 8080, Outcome::Refused),
    (SECOND_V4, 9090, Outcome::Refused),
    (FIRST_V4, 9090, Outcome::Refused),
    (SECOND_V6, 8080, Outcome::Open),
    (FIRST_V6, 8080, Outcome::Refused),
    (SECOND_V6, 9090, Outcome::Refused),
    (FIRST_V6, 9090, Outcome::Refused),
];
