//! The probe a walk follows and what the walk found: the first packet of a new
//! connection ([`Packet`]), its transport, and where a probe is sent as the command line
//! spells it ([`Endpoint`], `ADDR:PORT[/tcp|udp]`); the finished walk ([`Walk`]: the
//! [`Step`]s that decided, in order, and the [`Verdict`]) and its text for `explain`
//! ([`Walk::human`]). Backend-neutral: a backend's walker takes a packet and returns a
//! walk, and the host facts (docker-proxy listeners) and the audit speak of ports in
//! the same terms.

use std::fmt;
use std::net::IpAddr;

use serde::Serialize;

/// The transport protocol of a probe.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Transport {
    /// TCP (the first packet is a SYN).
    Tcp,
    /// UDP.
    Udp,
}

impl fmt::Display for Transport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Transport::Tcp => "tcp",
            Transport::Udp => "udp",
        })
    }
}

/// The first packet of a connection arriving at the host.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Packet {
    /// Source address.
    pub source: IpAddr,
    /// Destination address, as the client dialed it.
    pub destination: IpAddr,
    /// Protocol.
    pub transport: Transport,
    /// Source port.
    pub source_port: u16,
    /// Destination port, as the client dialed it.
    pub destination_port: u16,
    /// The interface it arrives on.
    pub in_interface: String,
}

/// Where a probe goes: `ADDR:PORT[/tcp|udp]`, with `[ADDR]` for IPv6.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Endpoint {
    /// The address.
    pub address: IpAddr,
    /// The port.
    pub port: u16,
    /// tcp unless `/udp` is given.
    pub transport: Transport,
}

impl std::str::FromStr for Endpoint {
    type Err = String;

    fn from_str(text: &str) -> Result<Endpoint, String> {
        let expected =
            || format!("expected ADDR:PORT[/tcp|udp] (IPv6 as [ADDR]:PORT), found {text:?}");
        let (rest, transport) = match text.rsplit_once('/') {
            Some((rest, "tcp")) => (rest, Transport::Tcp),
            Some((rest, "udp")) => (rest, Transport::Udp),
            Some(_) => return Err(expected()),
            None => (text, Transport::Tcp),
        };
        let (address, port) = match rest.strip_prefix('[') {
            Some(inner) => {
                let (address, port) = inner.split_once("]:").ok_or_else(expected)?;
                (address, port)
            }
            None => rest.rsplit_once(':').ok_or_else(expected)?,
        };
        let address: IpAddr = address.parse().map_err(|_| expected())?;
        if address.is_ipv6() && !rest.starts_with('[') {
            return Err(expected());
        }
        let port: u16 = port.parse().ok().filter(|p| *p > 0).ok_or_else(expected)?;
        Ok(Endpoint {
            address,
            port,
            transport,
        })
    }
}

/// What happens to the packet.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "verdict", rename_all = "lowercase")]
pub enum Verdict {
    /// Accepted: it reaches the host or the container.
    Accept,
    /// Dropped silently.
    Drop,
    /// Rejected (the client gets a reset or an ICMP error).
    Reject {
        /// `--reject-with`.
        with: String,
    },
    /// The model cannot tell.
    Unknown {
        /// Why.
        reason: String,
    },
}

impl fmt::Display for Verdict {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Verdict::Accept => f.write_str("ACCEPT"),
            Verdict::Drop => f.write_str("DROP"),
            Verdict::Reject { with } => write!(f, "REJECT ({with})"),
            Verdict::Unknown { reason } => write!(f, "UNKNOWN ({reason})"),
        }
    }
}

/// One recorded step of a walk.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Step {
    /// The table.
    pub table: String,
    /// The chain.
    pub chain: String,
    /// The rule's line in the dump (None for a chain policy or the routing decision).
    pub line: Option<usize>,
    /// The rule, policy or decision.
    pub what: String,
}

impl fmt::Display for Step {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.line {
            Some(line) => write!(
                f,
                "{} {} line {line}: {}",
                self.table, self.chain, self.what
            ),
            None => write!(f, "{} {}: {}", self.table, self.chain, self.what),
        }
    }
}

/// A finished walk.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Walk {
    /// The packet walked.
    pub packet: Packet,
    /// Where it was destined after nat: `local` or the outgoing interface.
    pub path: String,
    /// Destination after DNAT, if it was translated.
    pub translated_to: Option<(IpAddr, u16)>,
    /// Steps that matched, in order. A user chain entered again after it returned is
    /// not walked again: one step says so.
    pub steps: Vec<Step>,
    /// The outcome.
    pub verdict: Verdict,
    /// The work the walk did: how many rules it looked at (tested the conditions of),
    /// at most the walker's budget (iptables: `MAX_RULE_VISITS`). A chain entered again
    /// after it returned counts nothing beyond the rule that jumps to it. Not part of
    /// the report.
    #[serde(skip)]
    pub rule_visits: usize,
}

impl Walk {
    /// The walk for a person: each step, then the verdict.
    pub fn human(&self) -> String {
        let packet = &self.packet;
        let mut text = format!(
            "{} {} port {} -> {} port {}, in on {}\n",
            packet.transport,
            packet.source,
            packet.source_port,
            packet.destination,
            packet.destination_port,
            packet.in_interface
        );
        for step in &self.steps {
            text.push_str(&format!("  {step}\n"));
        }
        if let Some((address, port)) = self.translated_to {
            text.push_str(&format!("  translated to {address} port {port}\n"));
        }
        text.push_str(&format!(
            "  path: {}\n",
            if self.path == "local" {
                "to the host itself (INPUT)".to_owned()
            } else {
                format!("forwarded out of {} (FORWARD)", self.path)
            }
        ));
        text.push_str(&format!("verdict: {}\n", self.verdict));
        text
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoints_parse_with_clear_errors() {
        let web: Endpoint = "203.0.113.10:8080".parse().unwrap();
        assert_eq!((web.port, web.transport), (8080, Transport::Tcp));
        let dns: Endpoint = "[2001:db8::1]:53/udp".parse().unwrap();
        assert_eq!(
            (dns.address, dns.transport),
            ("2001:db8::1".parse().unwrap(), Transport::Udp)
        );
        for bad in [
            "203.0.113.10",
            "203.0.113.10:0",
            "2001:db8::1:80",
            "x:80",
            "1.2.3.4:80/sctp",
            "1.2.3.4:99999",
        ] {
            let error = bad.parse::<Endpoint>().unwrap_err();
            assert!(
                error.starts_with("expected ADDR:PORT[/tcp|udp]"),
                "{bad}: {error}"
            );
        }
    }
}
