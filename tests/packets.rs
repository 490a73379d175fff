//! Real packets through a Docker-like topology, for IPv4 and IPv6, with both iptables
//! backends:
//!
//! ```text
//!  client ns (3 addresses) --veth-- host ns: eth0 | docker0 bridge --veth-- container ns
//!                                   DNAT 8080->:80, 8443->:443, 9090->:9090, MASQUERADE
//! ```
//!
//! With Docker-style rules alone every published port is open to every client. With the
//! rendered policy loaded, real TCP connects must give exactly the expected
//! open/refused matrix; the container's own outbound connection still works; and a
//! variant of the same rules that matches the host port with plain `--dport` fails,
//! which proves that the conntrack original-destination match is what makes it work.
#![allow(clippy::expect_used, clippy::panic, clippy::unwrap_used)] // test support may fail loudly

mod common;

use std::path::Path;

use common::{Netns, Outcome, file, kernel_tests_enabled, listen, probe, render_policy};

struct Family {
    six: &'static str,
    vm: &'static str,
    clients: [&'static str; 3],
    host_ext: &'static str,
    client_prefix: u8,
    /// Docker-style rules for this family's tools.
    docker_rules: String,
}

fn v4() -> Family {
    Family {
        six: "",
        vm: "203.0.113.2",
        clients: ["192.0.2.10", "192.0.2.20", "192.0.2.30"],
        host_ext: "192.0.2.1",
        client_prefix: 24,
        docker_rules: docker_rules(
            "198.51.100.0/24",
            "198.51.100.2",
            "198.51.100.2/32",
            "127.0.0.0/8",
        ),
    }
}

fn v6() -> Family {
    Family {
        six: "6",
        vm: "2001:db8:3::2",
        clients: ["2001:db8:1::a", "2001:db8:1::14", "2001:db8:1::1e"],
        host_ext: "2001:db8:1::1",
        client_prefix: 64,
        docker_rules: docker_rules(
            "2001:db8:2::/64",
            "[2001:db8:2::2]",
            "2001:db8:2::2/128",
            "::1/128",
        ),
    }
}

/// What Docker 20.10 installs for a container publishing 8080->80, 8443->443, 9090->9090,
/// plus the FORWARD accepts another manager (libvirt) adds for its routed VM network.
fn docker_rules(subnet: &str, dnat_to: &str, container: &str, loopback: &str) -> String {
    let mut nat = format!(
        "*nat\n:PREROUTING ACCEPT [0:0]\n:INPUT ACCEPT [0:0]\n:OUTPUT ACCEPT [0:0]\n:POSTROUTING ACCEPT [0:0]\n:DOCKER - [0:0]\n\
-A PREROUTING -m addrtype --dst-type LOCAL -j DOCKER\n\
-A OUTPUT ! -d {loopback} -m addrtype --dst-type LOCAL -j DOCKER\n\
-A POSTROUTING -s {subnet} ! -o docker0 -j MASQUERADE\n\
-A DOCKER -i docker0 -j RETURN\n"
    );
    let mut filter = "*filter\n:INPUT ACCEPT [0:0]\n:FORWARD DROP [0:0]\n:OUTPUT ACCEPT [0:0]\n:DOCKER - [0:0]\n\
:DOCKER-ISOLATION-STAGE-1 - [0:0]\n:DOCKER-USER - [0:0]\n\
-A FORWARD -j DOCKER-USER\n-A FORWARD -j DOCKER-ISOLATION-STAGE-1\n\
-A FORWARD -o docker0 -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT\n-A FORWARD -o docker0 -j DOCKER\n\
-A FORWARD -i docker0 ! -o docker0 -j ACCEPT\n-A FORWARD -i docker0 -o docker0 -j ACCEPT\n\
-A DOCKER-ISOLATION-STAGE-1 -j RETURN\n-A DOCKER-USER -j RETURN\n\
-A FORWARD -o virbr0 -j ACCEPT\n-A FORWARD -i virbr0 -j ACCEPT\n"
        .to_owned();
    for (host_port, port) in PUBLISHED {
        nat.push_str(&format!(
            "-A DOCKER ! -i docker0 -p tcp -m tcp --dport {host_port} -j DNAT --to-destination {dnat_to}:{port}\n"
        ));
        filter.push_str(&format!(
            "-A DOCKER -d {container} ! -i docker0 -o docker0 -p tcp -m tcp --dport {port} -j ACCEPT\n"
        ));
    }
    format!("{nat}COMMIT\n{filter}COMMIT\n")
}

/// (host port, container port)
const PUBLISHED: [(u16, u16); 3] = [(8080, 80), (8443, 443), (9090, 9090)];
const HOST_OPEN: u16 = 2222;
const HOST_CLOSED: u16 = 2223;
const CLIENT_SERVICE: u16 = 7000;
const VM_SERVICE: u16 = 6000;

struct Topology {
    client: Netns,
    host: Netns,
    container: Netns,
    /// A VM on a routed libvirt-style network (virbr0): forwarded traffic that is not
    /// Docker's and must not be broken by the policy.
    vm: Netns,
}

impl Topology {
    fn build() -> Topology {
        let (client, host, container, vm) =
            (Netns::new(), Netns::new(), Netns::new(), Netns::new());
        veth(&host, "eth0", &client);
        host.ip(&["link", "add", "docker0", "type", "bridge"]);
        veth(&host, "veth-ctr", &container);
        host.ip(&["link", "set", "veth-ctr", "master", "docker0"]);
        veth(&host, "virbr0", &vm);
        for (ns, dev) in [
            (&host, "eth0"),
            (&host, "docker0"),
            (&host, "veth-ctr"),
            (&host, "virbr0"),
            (&client, "eth0"),
            (&container, "eth0"),
            (&vm, "eth0"),
        ] {
            ns.ip(&["link", "set", dev, "up"]);
        }
        host.sysctl("net.ipv4.ip_forward", "1");
        host.sysctl("net.ipv6.conf.all.forwarding", "1");
        let addr = |ns: &Netns, cidr: &str, dev: &str| {
            if cidr.contains(':') {
                ns.ip(&["-6", "addr", "add", cidr, "dev", dev, "nodad"]);
            } else {
                ns.ip(&["addr", "add", cidr, "dev", dev]);
            }
        };
        for f in [v4(), v6()] {
            for c in f.clients {
                addr(&client, &format!("{c}/{}", f.client_prefix), "eth0");
            }
            addr(
                &host,
                &format!("{}/{}", f.host_ext, f.client_prefix),
                "eth0",
            );
        }
        addr(&host, "198.51.100.1/24", "docker0");
        addr(&host, "2001:db8:2::1/64", "docker0");
        addr(&container, "198.51.100.2/24", "eth0");
        addr(&container, "2001:db8:2::2/64", "eth0");
        container.ip(&["route", "add", "default", "via", "198.51.100.1"]);
        container.ip(&["-6", "route", "add", "default", "via", "2001:db8:2::1"]);
        addr(&host, "203.0.113.1/24", "virbr0");
        addr(&host, "2001:db8:3::1/64", "virbr0");
        addr(&vm, "203.0.113.2/24", "eth0");
        addr(&vm, "2001:db8:3::2/64", "eth0");
        vm.ip(&["route", "add", "default", "via", "203.0.113.1"]);
        vm.ip(&["-6", "route", "add", "default", "via", "2001:db8:3::1"]);
        client.ip(&["route", "add", "203.0.113.0/24", "via", "192.0.2.1"]);
        client.ip(&[
            "-6",
            "route",
            "add",
            "2001:db8:3::/64",
            "via",
            "2001:db8:1::1",
        ]);
        Topology {
            client,
            host,
            container,
            vm,
        }
    }
}

/// A veth pair: `name` in `ns`, its peer `eth0` in `peer`.
fn veth(ns: &Netns, name: &str, peer: &Netns) {
    let args = [
        "link", "add", name, "type", "veth", "peer", "name", "eth0", "netns", &peer.name,
    ];
    ns.ip(&args);
}

/// Outcomes for (port, client index) from the client namespace.
fn matrix(t: &Topology, f: &Family, ports: &[u16]) -> Vec<(u16, usize, Outcome)> {
    let mut out = Vec::new();
    for port in ports {
        for (i, client) in f.clients.iter().enumerate() {
            out.push((*port, i, probe(&t.client, Some(client), f.host_ext, *port)));
        }
    }
    out
}

fn expected(rows: &[(u16, [Outcome; 3])]) -> Vec<(u16, usize, Outcome)> {
    rows.iter()
        .flat_map(|(port, o)| o.iter().enumerate().map(move |(i, o)| (*port, i, *o)))
        .collect()
}

#[test]
fn published_ports_follow_the_policy_with_real_packets() {
    if !kernel_tests_enabled("published_ports_follow_the_policy_with_real_packets") {
        return;
    }
    use Outcome::{Open, Refused};
    let rendered = render_policy(Path::new("tests/policies/packet-matrix.toml"));
    let ports = [8080, 8443, 9090, HOST_OPEN, HOST_CLOSED];
    let mut probes = 0;
    let backends = [
        ("nft", "iptables-nft-restore", "ip6tables-nft-restore"),
        (
            "legacy",
            "iptables-legacy-restore",
            "ip6tables-legacy-restore",
        ),
    ];
    for (backend, restore4, restore6) in backends {
        let t = Topology::build();
        let _container_servers = listen(&t.container, &[80, 443, 9090]);
        let _host_servers = listen(&t.host, &[HOST_OPEN, HOST_CLOSED]);
        let _client_servers = listen(&t.client, &[CLIENT_SERVICE]);
        let _vm_servers = listen(&t.vm, &[VM_SERVICE]);
        for f in [v4(), v6()] {
            let restore = if f.six.is_empty() { restore4 } else { restore6 };
            let what = format!("{backend} IPv{}", if f.six.is_empty() { 4 } else { 6 });
            t.host.exec_ok(restore, &["-w"], f.docker_rules.as_bytes());

            // Docker alone: every published port open to every client.
            let before = matrix(&t, &f, &ports);
            probes += before.len();
            let docker_only = expected(&[
                (8080, [Open; 3]),
                (8443, [Open; 3]),
                (9090, [Open; 3]),
                (HOST_OPEN, [Open; 3]),
                (HOST_CLOSED, [Open; 3]),
            ]);
            assert_eq!(before, docker_only, "{what}: topology without the policy");

            let rules = file(&rendered, &format!("base.rules{}", f.six));
            t.host.exec_ok(restore, &["-w", "-n"], rules.as_bytes());
            let with_policy = matrix(&t, &f, &ports);
            probes += with_policy.len();
            let wanted = expected(&[
                (8080, [Open, Refused, Refused]),
                (8443, [Open, Open, Open]),
                (9090, [Refused, Refused, Refused]),
                (HOST_OPEN, [Open, Open, Open]),
                (HOST_CLOSED, [Refused, Refused, Refused]),
            ]);
            assert_eq!(
                with_policy, wanted,
                "{what}: open/refused matrix with the policy"
            );

            // The container's own outbound connection and its replies still work.
            let egress = probe(&t.container, None, f.clients[2], CLIENT_SERVICE);
            probes += 1;
            assert_eq!(
                egress, Open,
                "{what}: container egress to the client network"
            );

            // Forwarded traffic that is not Docker's: a client reaching a routed VM.
            let to_vm = probe(&t.client, Some(f.clients[2]), f.vm, VM_SERVICE);
            probes += 1;
            assert_eq!(
                to_vm, Open,
                "{what}: routed traffic to a libvirt-style VM must pass"
            );

            // The same rules matching the host port with plain --dport: after DNAT the
            // packet carries the container's port, so the allowed client is refused.
            let naive = rules.replace(
                "-m conntrack --ctstate DNAT --ctorigdstport",
                "-m tcp --dport",
            );
            assert_ne!(naive, rules);
            t.host.exec_ok(restore, &["-w", "-n"], naive.as_bytes());
            let naive_outcome = probe(&t.client, Some(f.clients[0]), f.host_ext, 8080);
            probes += 1;
            assert_eq!(
                naive_outcome, Refused,
                "{what}: a --dport rule must not let the allowed client in"
            );
            t.host.exec_ok(restore, &["-w", "-n"], rules.as_bytes());
        }
    }
    println!("{probes} real TCP probes matched the expected matrix");
}
