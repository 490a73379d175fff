//! Whether rules about to be loaded would refuse new SSH connections from the people
//! connected over SSH now: the way admins lock themselves out of remote hosts.
//!
//! The answer comes from the rules as the kernel loaded them in the throwaway namespace
//! (the trial's iptables-save text, carried by the [`Proof`]), walked by the packet
//! evaluator ([`crate::iptables::walk`]) for a new connection from each session's
//! client to the port it is connected to, with the members of the sets the proof loaded
//! (a long list of allowed clients is one). The sessions are the command's own
//! (`$SSH_CONNECTION`) and every established connection to a port sshd listens on, so
//! a session is found under `sudo` too.

use ipnet::IpNet;

use crate::backend::{LoadedSets, Lockout, Proof};
use crate::family::Family;
use crate::host::net::{HostNet, Interface};
use crate::host::{OpenSessions, SshConnection};
use crate::iptables::dump;
use crate::iptables::walk::{self, Ruleset, Verdict};
use crate::packet::{Packet, Transport};

/// The `sessions` that the rules `proof` loaded (per family, iptables-save text of the
/// rules as the kernel loaded them) would refuse.
pub fn check(sessions: &OpenSessions, proof: &Proof) -> Vec<Lockout> {
    let mut found = Vec::new();
    for (session, in_interface) in &sessions.0 {
        let family = Family::of(&session.client);
        let Some(text) = proof.loaded(family) else {
            continue;
        };
        let Ok(parsed) = dump::parse(text) else {
            continue;
        };
        let sets = proof.sets(family).cloned().unwrap_or_default();
        if let Some(refusal) = walk(&Ruleset::new(&parsed), session, in_interface, sets) {
            found.push(refusal.lockout(session));
        }
    }
    found
}

/// How the rules answer a new connection like a session's, when they do not accept it.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Refusal {
    /// What it would get.
    verdict: Verdict,
    /// The rule (or policy) that decides, as the evaluator names it.
    decided_by: Option<String>,
}

impl Refusal {
    /// The backend-neutral [`Lockout`] of `session`.
    fn lockout(self, session: &SshConnection) -> Lockout {
        Lockout {
            session: session.clone(),
            verdict: self.verdict.to_string(),
            decided_by: self.decided_by,
        }
    }
}

/// Walks a new connection like `session` through `ruleset`, arriving on `in_interface`,
/// with `sets` (the sets loaded before the rules); Some when it would not be accepted.
fn walk(
    ruleset: &Ruleset,
    session: &SshConnection,
    in_interface: &str,
    sets: LoadedSets,
) -> Option<Refusal> {
    // The host as far as this question goes: the server address is its own, and the
    // sets are the ones the rules were proven with.
    let host = HostNet {
        interfaces: vec![Interface {
            name: in_interface.to_owned(),
            addresses: vec![IpNet::from(session.server)],
        }],
        sets,
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
    (walk.verdict != Verdict::Accept).then(|| Refusal {
        verdict: walk.verdict,
        decided_by: walk.steps.last().map(ToString::to_string),
    })
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
        let none = LoadedSets::new;
        assert_eq!(walk(&ruleset, &session(2222), "eth0", none()), None);
        let refusal = walk(&ruleset, &session(22), "eth0", none()).expect("locked out");
        assert_eq!(
            refusal.verdict,
            Verdict::Reject {
                with: "tcp-reset".to_owned()
            }
        );
        let text = refusal.lockout(&session(22)).to_string();
        assert!(
            text.contains("from 192.0.2.9 to 192.0.2.1 port 22")
                && text.contains("--reject-with tcp-reset"),
            "{text}"
        );
    }
}
