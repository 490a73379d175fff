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

use common::topology::{
    CLIENT_SERVICE, Family, HOST_CLOSED, HOST_OPEN, Topology, VM_SERVICE, v4, v6,
};
use common::{Outcome, file, kernel_tests_enabled, listen, probe, render_policy};

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
