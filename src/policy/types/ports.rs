//! Validated transport matches: the protocol and ports of a rule, one port or range or
//! a list of them.

use std::fmt;
use std::str::FromStr;

use serde::de::{self, Deserializer, SeqAccess, Visitor};
use serde::{Deserialize, Serialize};

/// Transport protocol of a port rule.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Proto {
    /// TCP (the default).
    #[default]
    Tcp,
    /// UDP.
    Udp,
}

impl Proto {
    /// The transport it matches.
    pub fn transport(self) -> crate::packet::Transport {
        match self {
            Proto::Tcp => crate::packet::Transport::Tcp,
            Proto::Udp => crate::packet::Transport::Udp,
        }
    }
}

impl fmt::Display for Proto {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Proto::Tcp => "tcp",
            Proto::Udp => "udp",
        })
    }
}

/// A port or an inclusive port range, 1-65535.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PortRange {
    first: u16,
    last: u16,
}

impl PortRange {
    /// Builds a range; `first` must be at least 1 and not above `last`.
    pub fn new(first: u16, last: u16) -> Result<PortRange, String> {
        if first == 0 {
            return Err("expected ports from 1 to 65535, found 0".to_owned());
        }
        if first > last {
            return Err(format!(
                "expected a range whose first port is not above its last, found {first}-{last}"
            ));
        }
        Ok(PortRange { first, last })
    }

    /// First port of the range.
    pub fn first(&self) -> u16 {
        self.first
    }

    /// Last port of the range (equal to `first` for a single port).
    pub fn last(&self) -> u16 {
        self.last
    }

    fn from_number(value: i64) -> Result<PortRange, String> {
        let port = u16::try_from(value)
            .ok()
            .filter(|p| *p >= 1)
            .ok_or_else(|| format!("expected a port from 1 to 65535, found {value}"))?;
        PortRange::new(port, port)
    }
}

impl fmt::Display for PortRange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.first == self.last {
            write!(f, "{}", self.first)
        } else {
            write!(f, "{}-{}", self.first, self.last)
        }
    }
}

impl FromStr for PortRange {
    type Err = String;
    fn from_str(text: &str) -> Result<Self, String> {
        let expected = || {
            format!("expected a port from 1 to 65535 or a range like \"8000-8100\", found {text:?}")
        };
        let parse_one = |t: &str| -> Result<u16, String> {
            if t.is_empty() || !t.bytes().all(|b| b.is_ascii_digit()) {
                return Err(expected());
            }
            let n: u32 = t.parse().map_err(|_| expected())?;
            u16::try_from(n)
                .ok()
                .filter(|p| *p >= 1)
                .ok_or_else(|| format!("expected ports from 1 to 65535, found {n}"))
        };
        match text.split_once('-') {
            Some((a, b)) => PortRange::new(parse_one(a)?, parse_one(b)?),
            None => {
                let port = parse_one(text)?;
                PortRange::new(port, port)
            }
        }
    }
}

/// One or more ports: `port = 22`, `port = "8000-8100"` or `port = [80, 443]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ports(Vec<PortRange>);

impl Ports {
    /// The ports, in the order written.
    pub fn ranges(&self) -> &[PortRange] {
        &self.0
    }

    /// `port` is one of them.
    pub fn contains(&self, port: u16) -> bool {
        self.0.iter().any(|r| (r.first..=r.last).contains(&port))
    }
}

impl<'de> Deserialize<'de> for Ports {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct PortsVisitor;
        const EXPECTED: &str =
            "a port from 1 to 65535, a range like \"8000-8100\", or a list of them";

        impl<'de> Visitor<'de> for PortsVisitor {
            type Value = Ports;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str(EXPECTED)
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<Ports, E> {
                PortRange::from_number(v)
                    .map(|p| Ports(vec![p]))
                    .map_err(E::custom)
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<Ports, E> {
                self.visit_i64(i64::try_from(v).unwrap_or(i64::MAX))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Ports, E> {
                v.parse().map(|p| Ports(vec![p])).map_err(E::custom)
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Ports, A::Error> {
                let mut ports = Vec::new();
                while let Some(one) = seq.next_element::<Ports>()? {
                    ports.extend(one.0);
                }
                if ports.is_empty() {
                    return Err(de::Error::custom(format!(
                        "expected {EXPECTED}, found an empty list"
                    )));
                }
                Ok(Ports(ports))
            }
        }
        deserializer.deserialize_any(PortsVisitor)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn port_ranges() {
        assert_eq!(
            "8000-8100"
                .parse::<PortRange>()
                .map(|p| (p.first(), p.last())),
            Ok((8000, 8100))
        );
        assert!("0".parse::<PortRange>().is_err());
        assert!("65536".parse::<PortRange>().is_err());
        assert!("9-1".parse::<PortRange>().is_err());
        assert!("1-".parse::<PortRange>().is_err());
        assert!("+5".parse::<PortRange>().is_err());
        assert!(PortRange::from_number(-1).is_err());
    }
}
