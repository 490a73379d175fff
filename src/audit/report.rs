//! The audit's report: every published port and what each external interface can
//! reach of it, with the summaries `status` prints and the text `audit` shows a person
//! (the JSON form is the report's own serialisation).

use std::net::IpAddr;

use serde::Serialize;

use crate::audit::{Exposure, PortPath, PublishedPort, Reach};

/// The whole audit: every published port of both families from every external
/// interface.
#[derive(Debug, Clone, Serialize)]
pub struct AuditReport {
    /// The policy compared with (None: reachability only).
    pub policy: Option<String>,
    /// The interfaces probed from.
    pub interfaces: Vec<String>,
    /// Every published port found, both families and both paths.
    pub ports: Vec<PublishedPort>,
    /// One entry per published port and interface.
    pub exposures: Vec<Exposure>,
}

impl AuditReport {
    /// Some port is reachable beyond the policy, or could not be decided.
    pub fn is_flagged(&self) -> bool {
        self.exposures.iter().any(Exposure::is_flagged)
    }

    /// The published ports by family and path, such as "IPv4 DNAT: 2, IPv6
    /// docker-proxy: 2".
    pub fn port_summary(&self) -> String {
        let mut counts: Vec<(String, usize)> = Vec::new();
        for port in &self.ports {
            let key = format!("{} {}", port.family, port.path);
            match counts.iter_mut().find(|(k, _)| *k == key) {
                Some((_, n)) => *n += 1,
                None => counts.push((key, 1)),
            }
        }
        counts
            .iter()
            .map(|(k, n)| format!("{k}: {n}"))
            .collect::<Vec<_>>()
            .join(", ")
    }

    /// One line per flagged exposure, for `status`.
    pub fn flagged_lines(&self) -> Vec<String> {
        self.exposures
            .iter()
            .filter(|e| e.is_flagged())
            .map(|e| {
                let port = &e.port;
                let target = format!(
                    "{} {}:{} (in on {})",
                    port.transport,
                    bracketed(e.dialed),
                    port.host_port,
                    e.interface
                );
                match &e.unknown {
                    Some(reason) => format!("cannot tell who reaches {target}: {reason}"),
                    None => {
                        let nets: Vec<String> =
                            e.not_allowed.iter().map(ToString::to_string).collect();
                        format!(
                            "{target} is reachable beyond the policy from {}",
                            nets.join(", ")
                        )
                    }
                }
            })
            .collect()
    }

    /// The report for a person.
    pub fn human(&self) -> String {
        let mut text = String::new();
        if self.ports.is_empty() {
            text.push_str(
                "no published ports (no DNAT rules from Docker, no docker-proxy listening)\n",
            );
        } else if self.exposures.is_empty() {
            text.push_str(&format!(
                "published ports ({}) not evaluated: no external interface with an address to evaluate them from\n",
                self.port_summary()
            ));
        }
        for exposure in &self.exposures {
            let port = &exposure.port;
            let container = match (port.container_address, port.container_port) {
                (Some(a), Some(p)) if a.is_ipv6() => format!("[{a}]:{p}"),
                (Some(a), Some(p)) => format!("{a}:{p}"),
                (Some(a), None) => a.to_string(),
                (None, _) => "?".to_owned(),
            };
            let dialed = bracketed(exposure.dialed);
            let verdict = if !exposure.not_allowed.is_empty() {
                "  NOT ALLOWED BY THE POLICY"
            } else if exposure.unknown.is_some() {
                "  UNDECIDED"
            } else if exposure.allowed.is_some() {
                "  ok"
            } else {
                ""
            };
            let via = match port.path {
                PortPath::Dnat => "",
                PortPath::DockerProxy => " via docker-proxy",
            };
            text.push_str(&format!(
                "{} {dialed}:{} -> {container}{via} (in on {}): {}{verdict}\n",
                port.transport,
                port.host_port,
                exposure.interface,
                describe(exposure.reach.as_ref()),
            ));
            if let Some(allowed) = &exposure.allowed {
                text.push_str(&format!("    policy allows: {}\n", describe(Some(allowed))));
            }
            if !exposure.not_allowed.is_empty() {
                let nets: Vec<String> = exposure
                    .not_allowed
                    .iter()
                    .map(ToString::to_string)
                    .collect();
                text.push_str(&format!(
                    "    reachable beyond the policy from: {}\n",
                    nets.join(", ")
                ));
            }
            if let Some(reason) = &exposure.unknown {
                text.push_str(&format!("    cannot tell: {reason}\n"));
            }
            for rule in &exposure.decided_by {
                text.push_str(&format!("    decided by {rule}\n"));
            }
        }
        if self.policy.is_none() {
            text.push_str("no policy to compare with: reachability only\n");
        }
        text
    }
}

/// An address as it is written before `:PORT`.
fn bracketed(address: IpAddr) -> String {
    if address.is_ipv6() {
        format!("[{address}]")
    } else {
        address.to_string()
    }
}

fn describe(reach: Option<&Reach>) -> String {
    match reach {
        None => "reachability unknown".to_owned(),
        Some(Reach::Anywhere) => "reachable from anywhere".to_owned(),
        Some(Reach::Nowhere) => "reachable from nowhere".to_owned(),
        Some(Reach::Only(nets)) => {
            let nets: Vec<String> = nets.iter().map(ToString::to_string).collect();
            format!("reachable only from {}", nets.join(", "))
        }
    }
}
