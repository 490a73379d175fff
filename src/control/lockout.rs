//! Whether rules about to be loaded would refuse new SSH connections from the people
//! connected over SSH now: the way admins lock themselves out of remote hosts.
//!
//! The answer comes from the rules as the kernel loaded them in the throwaway namespace
//! (the trial's dump), walked by the packet evaluator for a new connection from each
//! session's client to the port it is connected to. The sessions are the command's own
//! (`$SSH_CONNECTION`) and every established connection to a port sshd listens on, so
//! a session is found under `sudo` too.

use std::fmt;

use ipnet::IpNet;

use crate::family::Family;
use crate::host::net::{HostNet, Interface};
use crate::host::{HostProbe, SshConnection};
use crate::iptables::dump;
use crate::iptables::trial::TrialReport;
use crate::iptables::walk::{self, Ruleset, Verdict};
use crate::packet::{Packet, Transport};

/// What the kernel loaded of each family's rules in the throwaway namespace
/// (iptables-save text), as a trial reports it.
pub(crate) type LoadedRules = Vec<(Family, String)>;

/// What `reports` (a trial per family) say the kernel loaded of each family's rules.
pub(crate) fn loaded_rules(reports: Vec<(Family, TrialReport)>) -> LoadedRules {
    reports
        .into_iter()
        .map(|(family, report)| (family, report.loaded))
        .collect()
}

/// A session the new rules would shut out.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Lockout {
    /// The session.
    pub session: SshConnection,
    /// What a new connection like it would get.
    pub verdict: Verdict,
    /// The rule (or policy) that decides, as the evaluator names it.
    pub decided_by: Option<String>,
}

impl fmt::Display for Lockout {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let session = &self.session;
        write!(
            f,
            "the SSH session from {} to {} port {} could not reconnect: new connections like it would get {}",
            session.client, session.server, session.server_port, self.verdict
        )?;
        if let Some(rule) = &self.decided_by {
            write!(f, " (decided by {rule})")?;
        }
        Ok(())
    }
}

/// The sessions on `probe` that the rules in `loaded` (per family, iptables-save text of
/// the rules as the kernel loaded them) would refuse.
pub(crate) fn check(probe: &dyn HostProbe, loaded: &[(Family, String)]) -> Vec<Lockout> {
    let mut found = Vec::new();
    for session in probe.ssh_sessions() {
        let family = Family::of(&session.client);
        let Some((_, text)) = loaded.iter().find(|(f, _)| *f == family) else {
            continue;
        };
        let Ok(parsed) = dump::parse(text) else {
            continue;
        };
        let in_interface = probe
            .route_interface(session.client)
            .unwrap_or_else(|| "?".to_owned());
        if let Some(lockout) = walk(&Ruleset::new(&parsed), &session, &in_interface) {
            found.push(lockout);
        }
    }
    found
}

/// Walks a new connection like `session` through `ruleset`, arriving on `in_interface`;
/// Some when it would not be accepted.
fn walk(ruleset: &Ruleset, session: &SshConnection, in_interface: &str) -> Option<Lockout> {
    // The host as far as this question goes: the server address is its own.
    let host = HostNet {
        interfaces: vec![Interface {
            name: in_interface.to_owned(),
            addresses: vec![IpNet::from(session.server)],
        }],
        ..HostNet::default()
    };
    let walk = walk::walk(
        ruleset,
        &host,
        &Packet {
            source: session.client,
            destination: session.server,
            transport: Transport::Tcp,
            source_port: 40000,
            destination_port: session.server_port,
            in_interface: in_interface.to_owned(),
        },
    );
    (walk.verdict != Verdict::Accept).then(|| Lockout {
        session: session.clone(),
        verdict: walk.verdict,
        decided_by: walk.steps.last().map(ToString::to_string),
    })
}

/// The refusal message for `lockouts`, naming each session and port.
pub(crate) fn refusal(command: &str, lockouts: &[Lockout]) -> String {
    let list: Vec<String> = lockouts.iter().map(|l| format!("  - {l}")).collect();
    format!(
        "refusing to {command}: the new rules would lock out SSH; {}\n{}\n\
         (allow the port under [[host.services]], or pass --force if you have another way in)",
        crate::control::UNCHANGED,
        list.join("\n")
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    const RULES: &str = "*filter\n:INPUT DROP [0:0]\n:FORWARD ACCEPT [0:0]\n:OUTPUT ACCEPT [0:0]\n-A INPUT -i lo -j ACCEPT\n-A INPUT -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT\n-A INPUT -p tcp -m tcp --dport 2222 -j ACCEPT\n-A INPUT -p tcp -j REJECT --reject-with tcp-reset\nCOMMIT\n";

    fn session(port: u16) -> SshConnection {
        SshConnection {
            client: "192.0.2.9".parse().unwrap(),
            server: "192.0.2.1".parse().unwrap(),
            server_port: port,
        }
    }

    #[test]
    fn a_session_on_a_port_the_rules_refuse_is_locked_out() {
        let ruleset = Ruleset::new(&dump::parse(RULES).unwrap());
        assert_eq!(walk(&ruleset, &session(2222), "eth0"), None);
        let lockout = walk(&ruleset, &session(22), "eth0").expect("locked out");
        assert_eq!(
            lockout.verdict,
            Verdict::Reject {
                with: "tcp-reset".to_owned()
            }
        );
        let text = lockout.to_string();
        assert!(
            text.contains("from 192.0.2.9 to 192.0.2.1 port 22")
                && text.contains("--reject-with tcp-reset"),
            "{text}"
        );
    }
}
