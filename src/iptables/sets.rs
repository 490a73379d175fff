//! The ipsets an instance's rules match: a list longer than
//! [`crate::policy::lists::SET_THRESHOLD`] networks of a family is one `hash:net` set in
//! that family ([`crate::plan::PlannedSet`]). This module owns their kernel names, the
//! `ipset restore` file each family's sets are written to (`<i>.sets`, `<i>.sets6`), and
//! reading that file back, strictly: a file that is not exactly what [`render`] writes
//! is refused before anything loads it.
//!
//! A load never shows the rules a half-filled set: the file creates the set if it is
//! missing (`-exist`: a set of the same name, type and capacity is kept as it is, with
//! the rules that match it), fills a temporary set beside it from scratch, swaps the two
//! in one kernel operation and destroys the temporary one, which then holds the old
//! members. Loading the file again changes nothing.

use std::fmt::Write as _;

use crate::family::Family;
use crate::host::net::SetMembers;
use crate::plan::{FamilyPlan, PlannedSet};
use crate::policy::lists::MAX_LIST_ENTRIES;
use crate::policy::types::{InstanceName, ListName, Network};

/// Every set this tool makes has a name starting with this.
pub const PREFIX: &str = "ictl.";

/// The longest set name the kernel takes (`IPSET_MAXNAMELEN` less its NUL).
const MAX_NAME: usize = 31;

/// Marks the temporary set a load fills before the swap.
const TEMP_SUFFIX: char = '~';

/// Every set's capacity. The same for all, whatever the list's size, so that a load
/// with a longer list still finds its set compatible (`create -exist` compares it) and
/// the rules that match it never have to let go.
pub const MAXELEM: usize = 1 << 20;

const _: () = assert!(MAXELEM >= MAX_LIST_ENTRIES);

/// The kernel name of the set holding `list`'s networks of `family` for `instance`:
/// `ictl.INSTANCE.LIST.v4`, or, when that is too long for the kernel,
/// `ictl.HASH.v4` with a stable hash of instance and list. Instance and list names hold
/// no `.`, so no two of them share a name.
pub fn set_name(instance: &InstanceName, list: &ListName, family: Family) -> String {
    let suffix = match family {
        Family::Ipv4 => "v4",
        Family::Ipv6 => "v6",
    };
    let plain = format!("{PREFIX}{instance}.{list}.{suffix}");
    // Room for the temporary set's mark.
    if plain.len() < MAX_NAME {
        return plain;
    }
    format!(
        "{PREFIX}{:016x}.{suffix}",
        fnv1a(format!("{instance}.{list}").as_bytes())
    )
}

/// FNV-1a, 64 bits: stable across builds and platforms (std's hasher is not).
fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |hash, byte| {
        (hash ^ u64::from(*byte)).wrapping_mul(0x0100_0000_01b3)
    })
}

/// The temporary set a load of `name` fills before swapping it in.
pub fn temp_name(name: &str) -> String {
    format!("{name}{TEMP_SUFFIX}")
}

/// `name` is the temporary set a load of this tool fills (and destroys after the
/// swap).
pub fn is_temporary(name: &str) -> bool {
    name.starts_with(PREFIX) && name.ends_with(TEMP_SUFFIX)
}

/// `ipset`'s name for a family.
fn family_word(family: Family) -> &'static str {
    match family {
        Family::Ipv4 => "inet",
        Family::Ipv6 => "inet6",
    }
}

/// A hash size that holds `members` without the kernel growing the table while it
/// fills (each growth rehashes every member; a quarter of the members still grew it
/// once at 100,000 /32s); a power of two.
fn hash_size(members: usize) -> usize {
    (members / 2).next_power_of_two().clamp(64, MAXELEM)
}

/// The `ipset restore` text of `plan`'s sets (no header: the renderer adds it).
pub fn render(instance: &InstanceName, plan: &FamilyPlan) -> String {
    let mut text = String::new();
    for set in &plan.sets {
        render_set(&mut text, instance, plan.family, set);
    }
    text
}

fn render_set(text: &mut String, instance: &InstanceName, family: Family, set: &PlannedSet) {
    let name = set_name(instance, &set.list, family);
    let temp = temp_name(&name);
    let header = format!(
        "hash:net family {} hashsize {} maxelem {MAXELEM} -exist",
        family_word(family),
        hash_size(set.networks.len())
    );
    // Writing to a String cannot fail.
    let _ = writeln!(
        text,
        "# list {}: {} {family} networks\ncreate {name} {header}\ncreate {temp} {header}\nflush {temp}",
        set.list,
        set.networks.len()
    );
    for network in &set.networks {
        let _ = writeln!(text, "add {temp} {network}");
    }
    let _ = writeln!(text, "swap {temp} {name}\ndestroy {temp}");
}

/// One set as a sets file defines it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SetDefinition {
    /// Its kernel name.
    pub name: String,
    /// The `create` line's arguments after the type (`family inet hashsize ...`).
    pub header: String,
    /// Its members, in the order added.
    pub members: Vec<Network>,
}

impl SetDefinition {
    /// The `ipset restore` line that makes the set, empty, when it does not exist.
    pub fn create_line(&self) -> String {
        format!("create {} hash:net {}\n", self.name, self.header)
    }
}

/// Reads a sets file of `family` back, refusing anything [`render`] does not write:
/// each set's lines in order (create, create the temporary set, flush it, add, swap,
/// destroy), names of this tool's sets only, members of the family, each once, at most
/// [`MAX_LIST_ENTRIES`]. Errors name the 1-based line.
pub fn parse(text: &str, family: Family) -> Result<Vec<SetDefinition>, String> {
    let mut sets: Vec<SetDefinition> = Vec::new();
    // Where the set being read is: its temporary set made, flushed, filled, swapped.
    let mut step = Step::Done;
    // The set being read and its temporary set, named once per set (not per line).
    let (mut current, mut temp) = (String::new(), String::new());
    let mut words: Vec<&str> = Vec::with_capacity(8);
    for (index, line) in text.lines().enumerate() {
        let fail = |message: String| format!("line {}: {message}: {line}", index + 1);
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        words.clear();
        words.extend(line.split(' '));
        step = match (step, words.as_slice()) {
            (Step::Done, ["create", name, "hash:net", header @ ..]) => {
                check_name(name).map_err(&fail)?;
                if sets.iter().any(|s| s.name == *name) {
                    return Err(fail(format!("the set {name} is defined twice")));
                }
                let header = check_header(header, family).map_err(&fail)?;
                current = (*name).to_owned();
                temp = temp_name(name);
                sets.push(SetDefinition {
                    name: current.clone(),
                    header,
                    members: Vec::new(),
                });
                Step::Created
            }
            (Step::Created, ["create", name, "hash:net", header @ ..]) if *name == temp => {
                let header = check_header(header, family).map_err(&fail)?;
                if sets.last().is_some_and(|s| s.header != header) {
                    return Err(fail(format!("expected {temp} to be made like {current}")));
                }
                Step::TempCreated
            }
            (Step::TempCreated, ["flush", name]) if *name == temp => Step::Filling,
            (Step::Filling, ["add", name, member]) if *name == temp => {
                let network: Network = member.parse().map_err(&fail)?;
                if network.family() != family || network.net().prefix_len() == 0 {
                    return Err(fail(format!(
                        "expected an {family} network other than /0, found {network}"
                    )));
                }
                if let Some(set) = sets.last_mut() {
                    if set.members.len() == MAX_LIST_ENTRIES {
                        return Err(fail(format!(
                            "expected at most {MAX_LIST_ENTRIES} members in a set"
                        )));
                    }
                    set.members.push(network);
                }
                Step::Filling
            }
            (Step::Filling, ["swap", from, to]) if *from == temp && *to == current => {
                // Each member once (sorted, not hashed: a set may hold 500,000).
                if let Some(set) = sets.last() {
                    let mut sorted = set.members.clone();
                    sorted.sort_unstable();
                    if let Some(twice) = sorted.windows(2).find(|w| w[0] == w[1]) {
                        return Err(fail(format!("{} is added twice", twice[0])));
                    }
                }
                Step::Swapped
            }
            (Step::Swapped, ["destroy", name]) if *name == temp => Step::Done,
            (step, _) => return Err(fail(format!("expected {}", step.expected(&current)))),
        };
    }
    if step != Step::Done {
        return Err(format!(
            "the file ends before the set {} is complete: expected {}",
            sets.last().map(|s| s.name.as_str()).unwrap_or_default(),
            step.expected(sets.last().map(|s| s.name.as_str()).unwrap_or_default())
        ));
    }
    Ok(sets)
}

/// Where [`parse`] is in one set's lines.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Step {
    Done,
    Created,
    TempCreated,
    Filling,
    Swapped,
}

impl Step {
    fn expected(self, set: &str) -> String {
        let temp = temp_name(set);
        match self {
            Step::Done => format!("a comment or `create {PREFIX}NAME hash:net ...`"),
            Step::Created => format!("`create {temp} hash:net ...`"),
            Step::TempCreated => format!("`flush {temp}`"),
            Step::Filling => format!("`add {temp} NETWORK` or `swap {temp} {set}`"),
            Step::Swapped => format!("`destroy {temp}`"),
        }
    }
}

fn check_name(name: &str) -> Result<(), String> {
    let ok = name.starts_with(PREFIX)
        && name.len() < MAX_NAME
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'));
    if ok {
        Ok(())
    } else {
        Err(format!(
            "expected a set name of this tool ({PREFIX}..., at most {} characters from [A-Za-z0-9._-]), found {name:?}",
            MAX_NAME - 1
        ))
    }
}

/// The arguments of a `create` line after the type, as [`render`] writes them.
fn check_header(words: &[&str], family: Family) -> Result<String, String> {
    let maxelem = MAXELEM.to_string();
    let ok = match words {
        ["family", f, "hashsize", size, "maxelem", max, "-exist"] => {
            *f == family_word(family)
                && *max == maxelem
                && size
                    .parse::<usize>()
                    .is_ok_and(|n| n.is_power_of_two() && (64..=MAXELEM).contains(&n))
        }
        _ => false,
    };
    if ok {
        Ok(words.join(" "))
    } else {
        Err(format!(
            "expected `family {} hashsize N maxelem {MAXELEM} -exist`",
            family_word(family)
        ))
    }
}

/// One of [`halves`]: a sets file of its own, and for each of its lines the line of
/// the whole file it came from.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Half {
    /// The text.
    pub text: String,
    /// For each line of `text`, its 1-based line in the whole file.
    lines: Vec<usize>,
}

impl Half {
    /// A whole text as a half of itself (each line its own).
    pub fn whole(text: String) -> Half {
        let lines = (1..=text.lines().count()).collect();
        Half { text, lines }
    }

    /// The line of the whole file that line `n` (1-based) of this half came from.
    pub fn line_in_file(&self, n: usize) -> usize {
        self.lines.get(n.wrapping_sub(1)).copied().unwrap_or(n)
    }

    fn push(&mut self, line: &str, at: usize) {
        self.text.push_str(line);
        self.text.push('\n');
        self.lines.push(at);
    }
}

/// A sets file cut in two: every line but the `add`s in both halves, each set's `add`s
/// shared between them in turn (the first, third, ... member to the first half). Each
/// half is a sets file of its own, with the original's lines unchanged, so the kernel
/// check can load every line of a long list in two namespaces at once, one per core.
pub fn halves(text: &str) -> [Half; 2] {
    let mut halves = [Half::default(), Half::default()];
    let mut added = 0usize;
    for (index, line) in text.lines().enumerate() {
        let at = index + 1;
        if line.starts_with("add ") {
            halves[added % 2].push(line, at);
            added += 1;
            continue;
        }
        // A new set starts its members at the first half again.
        if line.starts_with("create ") && !line.split(' ').nth(1).is_some_and(is_temporary) {
            added = 0;
        }
        for half in &mut halves {
            half.push(line, at);
        }
    }
    halves
}

/// How many of `members` [`halves`] puts in each half.
pub fn half_counts(members: usize) -> [usize; 2] {
    [members.div_ceil(2), members / 2]
}

/// The lines of a sets file that make each set, empty (the sets the rules need to load,
/// without their members).
pub fn create_lines(sets: &[SetDefinition]) -> String {
    sets.iter().map(SetDefinition::create_line).collect()
}

/// What `ipset save NAME` printed of set `name`: its plain members, and how many lines
/// said more than a member (a `nomatch`, a `timeout`, a comment: an entry this tool
/// never writes, which may change what the member means).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SavedMembers {
    /// The members added as plain networks.
    pub members: Vec<Network>,
    /// Entries with options.
    pub with_options: usize,
}

/// Reads set `name`'s members out of `ipset save NAME`'s output (`add NAME MEMBER`
/// lines); a member that is not a network is an error.
pub fn saved_members(name: &str, saved: &str) -> Result<SavedMembers, String> {
    let mut out = SavedMembers::default();
    for member in saved
        .lines()
        .filter_map(|line| line.strip_prefix("add "))
        .filter_map(|rest| rest.strip_prefix(name)?.strip_prefix(' '))
    {
        let mut words = member.split(' ');
        let network = words
            .next()
            .unwrap_or_default()
            .parse::<Network>()
            .map_err(|e| format!("cannot read the member {member:?} of {name}: {e}"))?;
        if words.next().is_some() {
            out.with_options += 1;
        } else {
            out.members.push(network);
        }
    }
    Ok(out)
}

/// The value of `key` (such as `Type:`) in a set's `ipset list -t` header, trimmed.
pub fn header_field<'a>(header: &'a str, key: &str) -> Option<&'a str> {
    header
        .lines()
        .find_map(|l| l.strip_prefix(key))
        .map(str::trim)
}

/// How many references the kernel counts for a set, from its `ipset list -t` header
/// (`References: N`): the rules matching it, or a list:set holding it.
pub fn references(header: &str) -> Option<usize> {
    header_field(header, "References:").and_then(|n| n.parse().ok())
}

/// How many members a set holds, from its `ipset list -t` header (`Number of entries:
/// N`).
pub fn entries(header: &str) -> Option<usize> {
    header_field(header, "Number of entries:").and_then(|n| n.parse().ok())
}

/// One line that says what set `name` holds, for `diff`: how many ranges its members
/// merge into, how many addresses they cover, and a digest of the ranges, so that two
/// sets that let the same addresses in read the same and any other two differ.
pub fn summary(name: &str, members: &SetMembers) -> String {
    let mut bytes = Vec::new();
    let mut addresses: u128 = 0;
    let mut ranges = 0usize;
    for (a, b) in members.value_ranges() {
        ranges += 1;
        addresses = addresses.saturating_add(b.saturating_sub(a).saturating_add(1));
        bytes.extend_from_slice(&a.to_be_bytes());
        bytes.extend_from_slice(&b.to_be_bytes());
    }
    format!(
        "ipset {name}: {ranges} range(s), {addresses} address(es), digest {:016x}",
        fnv1a(&bytes)
    )
}

/// How many networks [`member_lines`] lists before it says how many more there are.
pub const LISTED_MEMBERS: usize = 20;

/// Lines for `diff` naming `members` of the set `name` (those that only one side
/// holds, on that side: a unified diff shows them as added or removed), the first
/// [`LISTED_MEMBERS`] networks one per line, then how many more.
pub fn member_lines(name: &str, members: &SetMembers) -> Vec<String> {
    let mut networks = members.networks();
    let mut lines: Vec<String> = networks
        .by_ref()
        .take(LISTED_MEMBERS)
        .map(|net| format!("ipset {name} member {net}"))
        .collect();
    let more = networks.count();
    if more > 0 {
        lines.push(format!("ipset {name}: {more} more member network(s)"));
    }
    lines
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;
    use crate::policy::{BackendKind, Policy};

    fn plan(text: &str, family: Family) -> FamilyPlan {
        let policy = Policy::parse(Path::new("test.toml"), text.as_bytes()).expect("valid");
        FamilyPlan::build(&policy, BackendKind::Iptables, family)
    }

    fn long_list(n: usize) -> String {
        let members: Vec<String> = (0..n)
            .map(|i| format!("\"10.0.{}.{}\"", i / 256, i % 256))
            .collect();
        format!(
            "[lists]\ncustomers = [{}, \"2001:db8::/32\"]\n[[docker.published]]\nport = 8080\nfrom = [\"customers\"]\n",
            members.join(", ")
        )
    }

    #[test]
    fn names_fit_the_kernel_and_never_collide() {
        let name = |instance: &str, list: &str, family| {
            set_name(
                &instance.parse().expect("instance"),
                &list.parse().expect("list"),
                family,
            )
        };
        assert_eq!(
            name("base", "customers", Family::Ipv4),
            "ictl.base.customers.v4"
        );
        assert_eq!(
            name("base", "customers", Family::Ipv6),
            "ictl.base.customers.v6"
        );
        let long = name("edge-west", "cloud-ranges-eu-central", Family::Ipv4);
        assert!(long.len() < MAX_NAME && long.starts_with(PREFIX), "{long}");
        assert_ne!(
            long,
            name("edge-west", "cloud-ranges-eu-centra1", Family::Ipv4)
        );
        // `-` may be in either name: the `.` keeps base/a-b apart from base-a/b.
        assert_ne!(
            name("base", "a-b", Family::Ipv4),
            name("base-a", "b", Family::Ipv4)
        );
    }

    #[test]
    fn a_long_list_is_one_set_filled_aside_and_swapped_in() {
        let instance: InstanceName = "base".parse().expect("name");
        let v4 = plan(&long_list(100), Family::Ipv4);
        let text = render(&instance, &v4);
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(
            lines[..4],
            [
                "# list customers: 100 IPv4 networks",
                "create ictl.base.customers.v4 hash:net family inet hashsize 64 maxelem 1048576 -exist",
                "create ictl.base.customers.v4~ hash:net family inet hashsize 64 maxelem 1048576 -exist",
                "flush ictl.base.customers.v4~",
            ]
        );
        assert_eq!(lines[4], "add ictl.base.customers.v4~ 10.0.0.0/32");
        assert_eq!(
            lines[lines.len() - 2..],
            [
                "swap ictl.base.customers.v4~ ictl.base.customers.v4",
                "destroy ictl.base.customers.v4~"
            ]
        );
        let sets = parse(&text, Family::Ipv4).expect("reads back");
        assert_eq!(sets.len(), 1);
        assert_eq!(sets[0].members, v4.sets[0].networks);
        // The list's one IPv6 network stays a plain rule: no IPv6 set.
        assert!(render(&instance, &plan(&long_list(100), Family::Ipv6)).is_empty());
        // Short lists are plain rules in both families.
        assert!(render(&instance, &plan(&long_list(10), Family::Ipv4)).is_empty());
    }

    #[test]
    fn anything_but_what_render_writes_is_refused_with_its_line() {
        let instance: InstanceName = "base".parse().expect("name");
        let text = render(&instance, &plan(&long_list(70), Family::Ipv4));
        for (from, to, says) in [
            (
                "flush ictl.base.customers.v4~\n",
                "flush ictl.base.customers.v4\n",
                "line 4",
            ),
            (
                "add ictl.base.customers.v4~ 10.0.0.1/32\n",
                "add ictl.base.customers.v4~ 2001:db8::/64\n",
                "expected an IPv4 network",
            ),
            (
                "add ictl.base.customers.v4~ 10.0.0.1/32\n",
                "add ictl.base.customers.v4~ 10.0.0.0/32\n",
                "added twice",
            ),
            ("destroy ictl.base.customers.v4~\n", "", "ends before"),
            ("-exist\n", "-exist\ndestroy sshd-allow\n", "line 3"),
            ("maxelem 1048576", "maxelem 7", "expected `family inet"),
        ] {
            let bad = text.replacen(from, to, 1);
            assert_ne!(bad, text, "{from}");
            let err = parse(&bad, Family::Ipv4).expect_err(says);
            assert!(err.contains(says), "{says}: {err}");
        }
        let foreign = "create office hash:net family inet hashsize 64 maxelem 1048576 -exist\n";
        assert!(
            parse(foreign, Family::Ipv4)
                .expect_err("foreign")
                .contains("a set name of this tool")
        );
        assert_eq!(parse("# no sets\n", Family::Ipv4), Ok(Vec::new()));
    }

    #[test]
    fn halves_share_the_members_and_keep_every_other_line() {
        let instance: InstanceName = "base".parse().expect("name");
        let text = render(&instance, &plan(&long_list(101), Family::Ipv4));
        let whole = parse(&text, Family::Ipv4).expect("whole");
        let [first_half, second_half] = halves(&text);
        // Each half's lines are found in the whole file at the lines it says.
        for half in [&first_half, &second_half] {
            for (n, line) in half.text.lines().enumerate() {
                assert_eq!(text.lines().nth(half.line_in_file(n + 1) - 1), Some(line));
            }
        }
        let first = parse(&first_half.text, Family::Ipv4).expect("a sets file");
        let second = parse(&second_half.text, Family::Ipv4).expect("a sets file");
        assert_eq!(
            [first[0].members.len(), second[0].members.len()],
            half_counts(101)
        );
        let mut together: Vec<Network> = first[0].members.clone();
        together.extend(&second[0].members);
        together.sort_by_key(|n| n.to_string());
        let mut all = whole[0].members.clone();
        all.sort_by_key(|n| n.to_string());
        assert_eq!(together, all);
        assert_eq!(first[0].header, whole[0].header);
    }

    #[test]
    fn summaries_are_equal_exactly_when_the_same_addresses_are_in() {
        let set = |nets: &[&str]| -> SetMembers {
            nets.iter()
                .map(|n| n.parse::<ipnet::IpNet>().expect("net"))
                .collect()
        };
        let a = summary("s", &set(&["10.0.0.0/25", "10.0.0.128/25"]));
        assert_eq!(a, summary("s", &set(&["10.0.0.0/24"])));
        assert_eq!(
            a,
            "ipset s: 1 range(s), 256 address(es), digest ".to_owned() + &a[a.len() - 16..]
        );
        assert_ne!(a, summary("s", &set(&["10.0.1.0/24"])));
        assert_ne!(a, summary("s", &set(&["10.0.0.0/24", "192.0.2.1/32"])));
    }

    #[test]
    fn saved_members_are_read_as_networks() {
        let saved = "create ictl.base.c.v4 hash:net family inet hashsize 64 maxelem 1048576\nadd ictl.base.c.v4 10.0.0.2\nadd ictl.base.c.v4 192.0.2.0/24\n";
        let saved = format!("{saved}add ictl.base.c.v4 198.51.100.0/24 nomatch\n");
        let read = saved_members("ictl.base.c.v4", &saved).expect("reads");
        let shown: Vec<String> = read.members.iter().map(ToString::to_string).collect();
        assert_eq!(shown, ["10.0.0.2/32", "192.0.2.0/24"]);
        assert_eq!(read.with_options, 1);
        assert!(saved_members("ictl.base.c.v4", "add ictl.base.c.v4 bogus\n").is_err());
    }

    /// The kernel's count of what refers to a set is read from its header, and a
    /// header without one says nothing.
    #[test]
    fn a_sets_references_are_read_from_its_header() {
        let header = "Name: ictl.base.office.v4\nType: hash:net\nRevision: 7\nHeader: family inet hashsize 1024 maxelem 65536\nSize in memory: 456\nReferences: 2\nNumber of entries: 0\n";
        assert_eq!(references(header), Some(2));
        assert_eq!(entries(header), Some(0));
        assert_eq!(header_field(header, "Type:"), Some("hash:net"));
        assert_eq!(references("Name: x\nType: hash:net\n"), None);
    }
}
