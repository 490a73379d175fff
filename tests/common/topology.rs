//! The namespace topology of the real-packet tests: a client with three addresses per
//! family, a Docker-like host (external eth0, docker0 bridge, DNAT of published ports,
//! a libvirt-style routed virbr0), a container and a VM.
//!
//! ```text
//!  client ns (3 addresses) --veth-- host ns: eth0 | docker0 bridge --veth-- container ns
//!                                   DNAT 8080->:80, 8443->:443, 9090->:9090, MASQUERADE
//!                                   virbr0 --veth-- vm ns
//! ```

use super::Netns;

pub struct Family {
    pub six: &'static str,
    pub vm: &'static str,
    pub clients: [&'static str; 3],
    pub host_ext: &'static str,
    pub client_prefix: u8,
    /// Docker-style rules for this family's tools (Docker 20.10's layout).
    pub docker_rules: String,
    /// The same containers in Docker 28.2+'s layout (DOCKER-FORWARD, DOCKER-CT,
    /// DOCKER-BRIDGE, raw drops of direct access).
    pub docker28_rules: String,
    /// The container's address.
    pub container: &'static str,
}

pub fn v4() -> Family {
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
        docker28_rules: docker28_rules("198.51.100.0/24", "198.51.100.2", "198.51.100.2/32", ""),
        container: "198.51.100.2",
    }
}

pub fn v6() -> Family {
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
        docker28_rules: docker28_rules(
            "2001:db8:2::/64",
            "[2001:db8:2::2]",
            "2001:db8:2::2/128",
            "! -s fe80::/10 ",
        ),
        container: "2001:db8:2::2",
    }
}

/// What Docker 20.10 installs for a container publishing 8080->80, 8443->443, 9090->9090,
/// plus the FORWARD accepts another manager (libvirt) adds for its routed VM network.
pub fn docker_rules(subnet: &str, dnat_to: &str, container: &str, loopback: &str) -> String {
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

/// The same container in Docker 28.2+'s layout (as tests/fixtures/save/docker-28.rules):
/// FORWARD jumps to DOCKER-USER and DOCKER-FORWARD only, and the raw table drops packets
/// routed straight to the container from other interfaces. `dnat_source` is the IPv6
/// DNAT's `! -s fe80::/10 ` (empty for IPv4). The libvirt accepts follow, as before.
pub fn docker28_rules(subnet: &str, dnat_to: &str, container: &str, dnat_source: &str) -> String {
    let raw = format!(
        "*raw\n:PREROUTING ACCEPT [0:0]\n:OUTPUT ACCEPT [0:0]\n-A PREROUTING -d {container} ! -i docker0 -j DROP\nCOMMIT\n"
    );
    let mut nat = format!(
        "*nat\n:PREROUTING ACCEPT [0:0]\n:INPUT ACCEPT [0:0]\n:OUTPUT ACCEPT [0:0]\n:POSTROUTING ACCEPT [0:0]\n:DOCKER - [0:0]\n\
-A PREROUTING -m addrtype --dst-type LOCAL -j DOCKER\n\
-A POSTROUTING -s {subnet} ! -o docker0 -j MASQUERADE\n\
-A DOCKER -i docker0 -j RETURN\n"
    );
    let mut filter = "*filter\n:INPUT ACCEPT [0:0]\n:FORWARD DROP [0:0]\n:OUTPUT ACCEPT [0:0]\n:DOCKER - [0:0]\n\
:DOCKER-BRIDGE - [0:0]\n:DOCKER-CT - [0:0]\n:DOCKER-FORWARD - [0:0]\n:DOCKER-ISOLATION-STAGE-1 - [0:0]\n\
:DOCKER-ISOLATION-STAGE-2 - [0:0]\n:DOCKER-USER - [0:0]\n\
-A FORWARD -j DOCKER-USER\n-A FORWARD -j DOCKER-FORWARD\n\
-A FORWARD -o virbr0 -j ACCEPT\n-A FORWARD -i virbr0 -j ACCEPT\n\
-A DOCKER-BRIDGE -o docker0 -j DOCKER\n\
-A DOCKER-CT -o docker0 -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT\n\
-A DOCKER-FORWARD -j DOCKER-CT\n-A DOCKER-FORWARD -j DOCKER-ISOLATION-STAGE-1\n\
-A DOCKER-FORWARD -j DOCKER-BRIDGE\n-A DOCKER-FORWARD -i docker0 -j ACCEPT\n\
-A DOCKER-ISOLATION-STAGE-1 -i docker0 ! -o docker0 -j DOCKER-ISOLATION-STAGE-2\n\
-A DOCKER-ISOLATION-STAGE-2 -o docker0 -j DROP\n"
        .to_owned();
    for (host_port, port) in PUBLISHED {
        nat.push_str(&format!(
            "-A DOCKER {dnat_source}! -i docker0 -p tcp -m tcp --dport {host_port} -j DNAT --to-destination {dnat_to}:{port}\n"
        ));
        filter.push_str(&format!(
            "-A DOCKER -d {container} ! -i docker0 -o docker0 -p tcp -m tcp --dport {port} -j ACCEPT\n"
        ));
    }
    filter.push_str("-A DOCKER ! -i docker0 -o docker0 -j DROP\n");
    format!("{raw}{nat}COMMIT\n{filter}COMMIT\n")
}

/// (host port, container port)
pub const PUBLISHED: [(u16, u16); 3] = [(8080, 80), (8443, 443), (9090, 9090)];
pub const HOST_OPEN: u16 = 2222;
pub const HOST_CLOSED: u16 = 2223;
pub const CLIENT_SERVICE: u16 = 7000;
pub const VM_SERVICE: u16 = 6000;

pub struct Topology {
    pub client: Netns,
    pub host: Netns,
    pub container: Netns,
    /// A VM on a routed libvirt-style network (virbr0): forwarded traffic that is not
    /// Docker's and must not be broken by the policy.
    pub vm: Netns,
}

impl Topology {
    pub fn build() -> Topology {
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
        // Routes straight to the containers' network, for probes that skip the DNAT.
        client.ip(&["route", "add", "198.51.100.0/24", "via", "192.0.2.1"]);
        client.ip(&[
            "-6",
            "route",
            "add",
            "2001:db8:2::/64",
            "via",
            "2001:db8:1::1",
        ]);
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
pub fn veth(ns: &Netns, name: &str, peer: &Netns) {
    let args = [
        "link", "add", name, "type", "veth", "peer", "name", "eth0", "netns", &peer.name,
    ];
    ns.ip(&args);
}
