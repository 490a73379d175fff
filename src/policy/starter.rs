//! The starter policy written by `iptables-ctl init`: the host's SSH port filled in from
//! what the host says, so that enabling the firewall right away cannot lock the admin
//! out. It always says `external = "auto"`: a name copied from the host that wrote the
//! file would be wrong on a host booted from a staged tree or after a rename (the
//! interfaces found now are shown in a comment). The text is commented for a
//! first-time reader and is parsed back before it is used, so it is always a valid
//! policy.

use std::collections::BTreeSet;
use std::path::Path;

use crate::host::HostProbe;
use crate::policy::types::InterfaceName;
use crate::policy::{Policy, PolicyError};

/// What the starter policy is built from, as found on the host.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StarterFacts {
    /// Interfaces of the default routes now (for the comment and the summary; empty
    /// when none is known, as in a staged tree).
    pub external: Vec<InterfaceName>,
    /// SSH ports to keep open.
    pub ssh_ports: Vec<u16>,
    /// The admin's address, when run over SSH.
    pub ssh_client: Option<String>,
}

impl StarterFacts {
    /// Asks the host.
    pub fn gather(probe: &dyn HostProbe) -> StarterFacts {
        let external = probe
            .default_route_interfaces()
            .unwrap_or_default()
            .iter()
            .filter_map(|n| n.parse().ok())
            .collect();
        let connection = probe.ssh_connection();
        let mut ports: BTreeSet<u16> = probe.sshd_ports().into_iter().collect();
        ports.extend(connection.as_ref().map(|c| c.server_port));
        StarterFacts {
            external,
            ssh_ports: ports.into_iter().collect(),
            ssh_client: connection.map(|c| c.client.to_string()),
        }
    }
}

/// What the starter policy enforces, one line each, for the admin to read.
pub fn summary(facts: &StarterFacts, policy: &Policy) -> Vec<String> {
    let external: Vec<String> = facts.external.iter().map(ToString::to_string).collect();
    let ssh: Vec<String> = policy
        .host
        .services
        .iter()
        .flat_map(|s| s.port.get_ref().ranges().iter().map(ToString::to_string))
        .collect();
    let mut lines = vec![
        format!(
            "external interfaces: {}",
            if external.is_empty() {
                "auto (those of the default routes wherever it runs; none known here)".to_owned()
            } else {
                format!(
                    "{} (auto: those of the default routes wherever it runs)",
                    external.join(", ")
                )
            }
        ),
        format!(
            "open on the host: ssh (tcp {}) from anywhere, ping",
            ssh.join(", ")
        ),
        "published container ports: none reachable from outside until listed".to_owned(),
    ];
    if let Some(client) = &facts.ssh_client {
        lines.push(format!(
            "your SSH client {client} is recorded in the list `admin`"
        ));
    }
    lines
}

/// The starter policy text, and the policy it parses to (checked at `path`).
pub fn starter_policy(facts: &StarterFacts, path: &Path) -> Result<(String, Policy), PolicyError> {
    let now = if facts.external.is_empty() {
        "none known where this file was written".to_owned()
    } else {
        let names: Vec<String> = facts.external.iter().map(ToString::to_string).collect();
        format!("{} where this file was written", names.join(", "))
    };
    let external = format!(
        "# The interfaces facing untrusted networks, as the audit sees them. \"auto\" takes\n\
         # those of the default routes wherever it runs ({now}). Published ports are\n\
         # protected on every interface whatever this says.\n\
         external = \"auto\""
    );
    let ports: Vec<String> = facts.ssh_ports.iter().map(u16::to_string).collect();
    let admin = match &facts.ssh_client {
        Some(client) => format!(
            "# Your SSH client when this file was written. To restrict SSH to it, add\n\
             # `from = [\"admin\"]` to the ssh service below (keep another way in first).\n\
             admin = [\"{client}\"]\n"
        ),
        None => "# admin = [\"192.0.2.10\", \"2001:db8::10\"]\n".to_owned(),
    };
    let text = format!(
        r#"# iptables-ctl policy. Edit, then run `iptables-ctl check` and `iptables-ctl reload`
# (the first time, `iptables-ctl install` puts it in force).
# Everything not allowed here is refused: on the host (INPUT) and for ports that Docker
# publishes (DOCKER-USER), for IPv4 and IPv6 alike.

[interfaces]
{external}
# Docker's bridges (default network and user-defined networks).
docker_bridges = ["docker0", "br-+"]

[defaults]
# "reject" answers refused connections at once; "drop" lets them time out.
deny = "reject"

[lists]
{admin}
[host]
ping = true
# "listed": containers reach only the services below; "all": every host service.
containers = "listed"

# SSH stays open so enabling the firewall cannot lock you out.
[[host.services]]
port = [{ports}]
proto = "tcp"
comment = "ssh"

# [[host.services]]
# port = [80, 443]
# comment = "web server on the host"

[outbound]
# "accept" lets the host connect anywhere; "allowlist" only to essentials (DNS, NTP,
# HTTP(S), DHCP, ICMP) and [[outbound.allow]] entries.
policy = "accept"

[docker]
# "deny": only the published ports listed below can be reached from outside.
default = "deny"

# A published port is matched by the host port the client dialed (`-p 8080:80` -> 8080).
# [[docker.published]]
# port = 8080
# from = ["admin"]
# comment = "web app"

[log]
enabled = false
prefix = "iptables-ctl"
rate = "5/minute"
"#,
        ports = ports.join(", "),
    );
    let policy = Policy::parse(path, text.as_bytes())?;
    Ok((text, policy))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn starter_policy_parses_and_keeps_ssh_open() {
        let facts = StarterFacts {
            external: vec!["ens3".parse().expect("iface")],
            ssh_ports: vec![22, 2222],
            ssh_client: Some("2001:db8::9".to_owned()),
        };
        let (text, policy) = starter_policy(&facts, Path::new("base.toml")).expect("valid");
        assert!(text.contains("external = \"auto\""), "{text}");
        assert!(
            text.contains("(ens3 where this file was written)"),
            "{text}"
        );
        let ssh = &policy.host.services[0];
        let ports: Vec<u16> = ssh
            .port
            .get_ref()
            .ranges()
            .iter()
            .map(|r| r.first())
            .collect();
        assert_eq!(ports, [22, 2222]);
        assert!(ssh.from.is_none(), "ssh must be open from anywhere");
        assert!(policy.lists.contains_key(&"admin".parse().expect("name")));
    }

    #[test]
    fn starter_policy_without_route_or_ssh_session() {
        let facts = StarterFacts {
            external: vec![],
            ssh_ports: vec![22],
            ssh_client: None,
        };
        let (text, policy) = starter_policy(&facts, Path::new("base.toml")).expect("valid");
        assert!(text.contains("external = \"auto\""));
        assert!(policy.lists.is_empty());
    }
}
