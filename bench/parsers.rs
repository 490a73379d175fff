//! How the readers of untrusted text grow with their input: the policy parser and the
//! render path, the shape check of rendered files, the reader of sets files, the iptables-save parser, the check
//! of what the kernel loaded, and the evaluator and audit on parsed dumps. For each
//! input shape it prints the time at 1x, 10x and 100x a base size and the ratios to 1x:
//! linear growth shows as ratios near 10 and 100, quadratic as 100 and 10,000. Every
//! reader is linear except the full audit, a product by design: it walks every
//! published port from every piece of the source address space that the rules cut, so
//! its shape grows both at once.
//!
//! `cargo bench --bench parsers` measures (release build). Under `cargo test` (which
//! passes no `--bench` argument) each shape runs only at its base size, as a smoke test
//! that the program still works. Timings belong here, never in tests: `tests/fuzz.rs`
//! only has a watchdog against hangs.
#![allow(clippy::expect_used, clippy::panic, clippy::unwrap_used)] // a benchmark may fail loudly

use std::hint::black_box;
use std::path::Path;
use std::time::{Duration, Instant};

use iptables_ctl::audit;
use iptables_ctl::family::Family;
use iptables_ctl::host::net::{HostNet, Interface, Route};
use iptables_ctl::iptables::dump;
use iptables_ctl::iptables::render::{self, RenderRequest, Templates};
use iptables_ctl::iptables::walk::{self, Packet, Ruleset, Transport};
use iptables_ctl::iptables::{sets, shape};
use iptables_ctl::plan::FamilyPlan;
use iptables_ctl::policy::types::InstanceName;
use iptables_ctl::policy::{BackendKind, Policy};

/// One input shape of one reader: makes the input for a size and reads it.
struct Shape {
    name: &'static str,
    /// The base size (in the shape's own units: rules, entries, characters).
    base: usize,
    run: fn(usize) -> Duration,
}

/// The best of five runs of `f` on `input` (built before the timing starts), after one
/// run that is not counted: the same count at every size, so that no size gets more
/// chances at a lucky run than another, and none pays alone for the first run's page
/// faults as the heap grows.
fn time<T, R>(input: T, f: impl Fn(&T) -> R) -> Duration {
    black_box(f(&input));
    (0..5)
        .map(|_| {
            let start = Instant::now();
            black_box(f(&input));
            start.elapsed()
        })
        .min()
        .unwrap_or_default()
}

fn parse_policy(text: &String) -> bool {
    Policy::parse(Path::new("bench.toml"), text.as_bytes()).is_ok()
}

fn templates() -> Templates {
    Templates::load(Path::new("/nonexistent-root/etc/iptables/templates")).unwrap()
}

fn render_policy(text: &String) -> bool {
    let policy = Policy::parse(Path::new("bench.toml"), text.as_bytes()).unwrap();
    let instance: InstanceName = "base".parse().unwrap();
    render::render(
        &templates(),
        &RenderRequest {
            instance: &instance,
            policy: &policy,
            policy_path: Path::new("bench.toml"),
        },
    )
    .is_ok()
}

fn address(i: usize) -> String {
    format!("10.{}.{}.{}", i >> 16 & 255, i >> 8 & 255, i & 255)
}

fn services(n: usize) -> String {
    (0..n)
        .map(|i| {
            format!(
                "[[host.services]]\nport = {}\nfrom = [\"{}\"]\ncomment = \"service {i}\"\n",
                i % 65535 + 1,
                address(i)
            )
        })
        .collect()
}

fn list_references(n: usize) -> String {
    let list: Vec<String> = (0..n).map(|i| format!("\"{}\"", address(i))).collect();
    format!(
        "[lists]\nbig = [{}]\n[[host.services]]\nport = 22\nfrom = [{}]\n",
        list.join(","),
        vec!["\"big\""; n].join(",")
    )
}

fn rendered(n: usize) -> String {
    let mut text = String::from(
        "*filter\n:INPUT DROP [0:0]\n:OUTPUT ACCEPT [0:0]\n:DOCKER-USER - [0:0]\n-F INPUT\n-F OUTPUT\n",
    );
    for i in 0..n {
        text.push_str(&format!(
            "-A INPUT -s {}/32 -p tcp -m tcp --dport 22 -m comment --comment \"ssh {i}\" -j ACCEPT\n",
            address(i)
        ));
    }
    text.push_str("COMMIT\n");
    text
}

fn loaded(n: usize) -> String {
    rendered(n).replace("-F INPUT\n-F OUTPUT\n", ":FORWARD ACCEPT [0:0]\n")
}

/// A nat table publishing `n` ports and a filter table accepting them.
fn docker_dump(n: usize) -> String {
    let mut text = String::from(
        "*nat\n:PREROUTING ACCEPT [0:0]\n:DOCKER - [0:0]\n-A PREROUTING -m addrtype --dst-type LOCAL -j DOCKER\n",
    );
    for i in 0..n {
        text.push_str(&format!(
            "-A DOCKER ! -i docker0 -p tcp -m tcp --dport {} -j DNAT --to-destination 172.17.0.2:80\n",
            i % 65535 + 1
        ));
    }
    text.push_str("COMMIT\n*filter\n:INPUT ACCEPT [0:0]\n:FORWARD DROP [0:0]\n:DOCKER - [0:0]\n:DOCKER-USER - [0:0]\n-A FORWARD -j DOCKER-USER\n-A FORWARD -o docker0 -j DOCKER\n");
    for i in 0..n {
        text.push_str(&format!(
            "-A DOCKER-USER -s {}/32 -p tcp -m conntrack --ctstate DNAT --ctorigdstport 1 -j RETURN\n",
            address(i)
        ));
    }
    text.push_str("-A DOCKER -d 172.17.0.2/32 ! -i docker0 -o docker0 -p tcp -m tcp --dport 80 -j ACCEPT\nCOMMIT\n");
    text
}

/// One published port whose DOCKER-USER allowlist is the ipset `customers`.
fn set_dump() -> String {
    "*nat\n:PREROUTING ACCEPT [0:0]\n:DOCKER - [0:0]\n-A PREROUTING -m addrtype --dst-type LOCAL -j DOCKER\n-A DOCKER ! -i docker0 -p tcp -m tcp --dport 8080 -j DNAT --to-destination 172.17.0.2:80\nCOMMIT\n*filter\n:INPUT ACCEPT [0:0]\n:FORWARD DROP [0:0]\n:DOCKER - [0:0]\n:DOCKER-USER - [0:0]\n-A FORWARD -j DOCKER-USER\n-A FORWARD -o docker0 -j DOCKER\n-A DOCKER-USER -m set --match-set customers src -m conntrack --ctstate DNAT --ctorigdstport 8080 -j RETURN\n-A DOCKER-USER -m conntrack --ctstate DNAT -j DROP\n-A DOCKER -d 172.17.0.2/32 ! -i docker0 -o docker0 -p tcp -m tcp --dport 80 -j ACCEPT\nCOMMIT\n".to_owned()
}

/// The host of [`host`] with the ipset `customers` holding `n` /32s, spaced apart (so
/// that none merge into a range).
fn host_with_set(n: usize) -> HostNet {
    let mut host = host();
    let members = (0..n).map(|i| {
        address(i * 2)
            .parse::<std::net::IpAddr>()
            .map(ipnet::IpNet::from)
            .unwrap()
    });
    host.sets.insert("customers".to_owned(), members.collect());
    host
}

fn host() -> HostNet {
    HostNet {
        interfaces: vec![
            Interface {
                name: "eth0".to_owned(),
                addresses: vec!["203.0.113.10/24".parse().unwrap()],
            },
            Interface {
                name: "docker0".to_owned(),
                addresses: vec!["172.17.0.1/16".parse().unwrap()],
            },
        ],
        routes: vec![
            Route {
                destination: "0.0.0.0/0".parse().unwrap(),
                interface: "eth0".to_owned(),
            },
            Route {
                destination: "172.17.0.0/16".parse().unwrap(),
                interface: "docker0".to_owned(),
            },
        ],
        forwards_v4: true,
        forwards_v6: true,
        ..HostNet::default()
    }
}

fn walk(ruleset: &Ruleset) -> walk::Walk {
    walk::walk(
        ruleset,
        &host(),
        &Packet {
            source: "198.51.100.7".parse().unwrap(),
            destination: "203.0.113.10".parse().unwrap(),
            transport: Transport::Tcp,
            source_port: 40000,
            destination_port: 1,
            in_interface: "eth0".to_owned(),
        },
    )
}

const SHAPES: &[Shape] = &[
    Shape {
        name: "Policy::parse, services",
        base: 100,
        run: |n| time(services(n), parse_policy),
    },
    Shape {
        name: "Policy::parse, one long comment (chars)",
        base: 20_000,
        run: |n| {
            time(
                format!(
                    "[[host.services]]\nport = 22\ncomment = \"{}\"\n",
                    "a".repeat(n)
                ),
                parse_policy,
            )
        },
    },
    Shape {
        name: "Policy::parse, references to one list",
        base: 100,
        run: |n| time(list_references(n), parse_policy),
    },
    Shape {
        name: "render, services",
        base: 100,
        run: |n| time(services(n), render_policy),
    },
    Shape {
        name: "check_shape, rules",
        base: 200,
        run: |n| time(rendered(n), |t| shape::check_shape(t).is_ok()),
    },
    Shape {
        name: "check_loaded, rules",
        base: 1_000,
        run: |n| time(loaded(n), |t| shape::check_loaded(t).is_ok()),
    },
    Shape {
        name: "split_words, a line of quoted words (chars)",
        base: 40_000,
        run: |n| {
            time("\"a b\" ".repeat(n / 6), |l| {
                dump::split_words(l).map(|w| w.len())
            })
        },
    },
    Shape {
        name: "dump::parse, rules",
        base: 1_000,
        run: |n| time(docker_dump(n / 2), |t| dump::parse(t).is_ok()),
    },
    Shape {
        name: "Ruleset::new, rules",
        base: 1_000,
        run: |n| {
            time(dump::parse(&docker_dump(n / 2)).unwrap(), |d| {
                Ruleset::new(d)
            })
        },
    },
    Shape {
        name: "walk::walk, rules",
        base: 1_000,
        run: |n| {
            time(
                Ruleset::new(&dump::parse(&docker_dump(n / 2)).unwrap()),
                walk,
            )
        },
    },
    Shape {
        name: "audit::published_ports, rules",
        base: 1_000,
        run: |n| {
            time(
                Ruleset::new(&dump::parse(&docker_dump(n / 2)).unwrap()),
                |r| audit::published_ports(r, Family::Ipv4),
            )
        },
    },
    Shape {
        name: "audit::audit, ipset members",
        base: 1_000,
        run: |n| {
            let ruleset = Ruleset::new(&dump::parse(&set_dump()).unwrap());
            time((ruleset, host_with_set(n)), |(r, host)| {
                audit::audit(
                    &[(Family::Ipv4, r.clone())],
                    host,
                    &["eth0".to_owned()],
                    None,
                )
            })
        },
    },
    Shape {
        name: "sets::parse, members",
        base: 1_000,
        run: |n| {
            let list: Vec<String> = (0..n)
                .map(|i| format!("10.{}.{}.{}", i >> 16 & 255, i >> 8 & 255, i & 255))
                .collect();
            let text = format!(
                "[lists]\nbig = [\"{}\"]\n[[host.services]]\nport = 22\nfrom = [\"big\"]\n",
                list.join("\", \"")
            );
            let policy = Policy::parse(Path::new("bench.toml"), text.as_bytes()).unwrap();
            let instance = InstanceName::default();
            let plan = FamilyPlan::build(&policy, BackendKind::Iptables, Family::Ipv4);
            time(sets::render(&instance, &plan), |text| {
                sets::parse(text, Family::Ipv4).unwrap()
            })
        },
    },
    Shape {
        name: "audit::audit, published ports x source rules",
        base: 4,
        run: |n| {
            time(Ruleset::new(&dump::parse(&docker_dump(n)).unwrap()), |r| {
                audit::audit(
                    &[(Family::Ipv4, r.clone())],
                    &host(),
                    &["eth0".to_owned()],
                    None,
                )
            })
        },
    },
];

fn main() {
    let measure = std::env::args().any(|a| a == "--bench");
    let filter: Option<String> = std::env::args().skip(1).find(|a| !a.starts_with('-'));
    for shape in SHAPES {
        if filter
            .as_ref()
            .is_some_and(|f| !shape.name.contains(f.as_str()))
        {
            continue;
        }
        if !measure {
            (shape.run)(shape.base);
            println!(
                "{}: ran at {} (measure with --bench)",
                shape.name, shape.base
            );
            continue;
        }
        let times: Vec<Duration> = [1, 10, 100]
            .iter()
            .map(|factor| (shape.run)(shape.base * factor))
            .collect();
        let ratio = |t: Duration| t.as_secs_f64() / times[0].as_secs_f64().max(1e-9);
        println!(
            "{:<50} 1x {:>10.3?}  10x {:>10.3?} ({:>7.1})  100x {:>10.3?} ({:>9.1})",
            shape.name,
            times[0],
            times[1],
            ratio(times[1]),
            times[2],
            ratio(times[2])
        );
    }
}
