//! The seam between the flows and a firewall backend: what [`crate::control`] needs of
//! whatever spells, proves and loads the rules (iptables today, [`crate::iptables`];
//! nftables later), said in terms no backend owns. A flow holds a `&dyn` [`Backend`]
//! and never names a backend's own types, so a change that concerns one backend only
//! stays in that backend's folder.
//!
//! The write path: a policy is rendered into the instance's files in memory
//! ([`Rendered`]: names and texts, in the order they are written), proven by loading
//! them into a throwaway place ([`Proof`]: opaque to the flows, which hand it back to
//! the backend for the SSH lockout check and read only its per-part summary for
//! `check`), written as the instance's one [`FileSet`], and, on stop or uninstall, the
//! pass-through files loaded.
//!
//! The read path: the live rules against the files on disk ([`LiveState`], one
//! [`FamilyState`] per family, with what had to be [`Repair`]ed since boot), for
//! `status`; the live rules beside those a proof showed a policy would load
//! ([`OwnedRules`]), for `diff`; and the live rules of both families read once ([`LiveRules`]: the bridges
//! Docker forwards to, the exposure audit of the published ports); and what on the live
//! host would keep the backend's rules from being reached ([`Conflict`]s), for
//! `install`. `forward-jump` has Docker's forwarded traffic meet the rules first
//! ([`ForwardFinding`]).
//!
//! The audit's questions: one family's rules as [`crate::audit`] asks them
//! ([`FamilyRules`]: the walk of one packet, the source ranges its rules draw, the ports
//! Docker publishes through them), for `audit`, `explain` and `status`.

use std::fmt;
use std::net::IpAddr;

use serde::{Deserialize, Serialize};

use crate::audit::{self, AuditReport, PublishedPort};
use crate::family::Family;
use crate::files::layout::Layout;
use crate::files::set::FileSet;
use crate::host::net::HostNet;
use crate::host::{OpenSessions, SshConnection};
use crate::packet::{Packet, Walk};
use crate::policy::Policy;
use crate::policy::types::InstanceName;

/// What the flows need of a firewall backend. `Sync`: `status` reads the host from a
/// second thread while the files are proven.
pub trait Backend: Sync {
    /// Renders `policy` into the files of `instance`, in memory; nothing is written.
    /// The result depends on the policy and the templates only, not on the host.
    fn render(
        &self,
        layout: &Layout,
        instance: &InstanceName,
        policy: &Policy,
    ) -> anyhow::Result<Rendered>;

    /// Proves `rendered` (the files of `instance`, rendered from `policy`) by loading
    /// them where they cannot touch the live firewall. A refused line that came from a
    /// policy entry is blamed on that entry.
    fn prove(
        &self,
        instance: &InstanceName,
        policy: &Policy,
        rendered: &Rendered,
    ) -> anyhow::Result<Proof>;

    /// Proves the files of `instance` as they are on disk; errors name the file.
    fn prove_on_disk(&self, layout: &Layout, instance: &InstanceName) -> anyhow::Result<Proof>;

    /// The SSH `sessions` open on the host that the rules `proof` loaded would refuse
    /// new connections of.
    fn lockouts(&self, sessions: &OpenSessions, proof: &Proof) -> Vec<Lockout>;

    /// The output files of `instance` as one set, written and read back together.
    fn output_set(&self, layout: &Layout, instance: &InstanceName) -> FileSet;

    /// Loads the pass-through files of `instance` into the live firewall, as its unit
    /// does on stop. Errors name the file.
    fn load_pass_through(&self, layout: &Layout, instance: &InstanceName) -> anyhow::Result<()>;

    /// Makes traffic that Docker forwards meet the rules of `instance` before anything
    /// else in `family` (run by the units after every load), and records a repair for
    /// `status`.
    fn ensure_forward_first(
        &self,
        layout: &Layout,
        instance: &InstanceName,
        family: Family,
    ) -> anyhow::Result<ForwardFinding>;

    /// The live rules against the files of `instance` on disk, each family in
    /// [`Family::ALL`]'s order: against the rules files when `running` (with the repairs
    /// made since boot), against the pass-through files when not.
    fn live_state(
        &self,
        layout: &Layout,
        instance: &InstanceName,
        running: bool,
    ) -> anyhow::Result<LiveState>;

    /// Loads the rules files (not the pass-through ones) of `instance` under `layout`,
    /// both families, as the units load them: the sets the rules match first, then the
    /// rules, replacing only what the files own.
    fn load_rules(&self, layout: &Layout, instance: &InstanceName) -> anyhow::Result<()>;

    /// Loads the sets files of `instance` under `layout` (run by the units before the
    /// rules): each set filled aside and swapped in whole. Says, per family, how many
    /// sets and members were loaded; a family without a sets file (rendered by an older
    /// version) has none.
    fn load_sets(
        &self,
        layout: &Layout,
        instance: &InstanceName,
    ) -> anyhow::Result<Vec<FamilySetsLoaded>>;

    /// The sets `uninstall` would destroy: those the files of `instance` define and
    /// those it loaded since boot.
    fn sets_of(&self, layout: &Layout, instance: &InstanceName) -> anyhow::Result<Vec<String>>;

    /// Destroys the live sets that the sets files of `instance` define, and those it
    /// loaded since boot, once its rules are no longer loaded (uninstall): a set some
    /// rule still matches is kept and said; one that does not exist is not mentioned.
    fn remove_sets(
        &self,
        layout: &Layout,
        instance: &InstanceName,
    ) -> anyhow::Result<Vec<SetRemoval>>;

    /// Destroys the sets `instance` loaded since boot that its files (and those of a
    /// pending apply) no longer define (a list removed, or no longer long), once no rule
    /// matches them (run by the units after every load); one that a rule still matches
    /// is kept and said. `None` when another load of the instance's sets was running:
    /// nothing was done, the next load prunes.
    fn prune_sets(
        &self,
        layout: &Layout,
        instance: &InstanceName,
    ) -> anyhow::Result<Option<Vec<SetRemoval>>>;

    /// What on the live host would keep this backend's rules from being reached, or
    /// fight them; nothing when it cannot tell.
    fn live_conflicts(&self) -> Vec<Conflict>;

    /// What the kernel holds now, per family, as files to keep beside a generation
    /// (`(file name, text)`), in the backend's own words; a family that cannot be read
    /// (no IPv6 on the host) is left out.
    fn live_snapshot(&self) -> anyhow::Result<Vec<(String, String)>>;

    /// Per family, in [`Family::ALL`]'s order: the chains this backend owns as they
    /// are live now, beside what loading the files `proof` proved would make them.
    fn owned_rules(&self, proof: &Proof) -> anyhow::Result<Vec<OwnedRules>>;

    /// Both families' live rules, read once.
    fn live_rules(&self) -> anyhow::Result<Box<dyn LiveRules>>;

    /// What `rule` (one rule as [`FamilyState`] lists them, in this backend's syntax)
    /// matches of destination ports, when it sits where published ports are decided
    /// (what reaches the host, or DOCKER-USER) and matches on them.
    fn port_rule(&self, rule: &str) -> Option<PortRule>;

    /// The other firewall variant (iptables: legacy beside nf_tables, or the reverse),
    /// read once: whether Docker's chains are only there (a mismatch), and the rules it
    /// holds otherwise; an error when either variant's rules could not be read.
    fn variant_findings(&self) -> Result<VariantFindings, String>;

    /// One family's live rules, read alone (`explain` asks of one family only).
    fn live_family(&self, family: Family) -> anyhow::Result<Box<dyn FamilyRules>>;
}

/// Both families' live rules as one backend read them, for the questions `status` and
/// `audit` ask of them.
pub trait LiveRules: Send {
    /// The bridges Docker's own rules send forwarded traffic to, `(family, bridge)`,
    /// each family in [`Family::ALL`]'s order, its bridges sorted.
    fn docker_bridges(&self) -> Vec<(Family, String)>;

    /// The exposure audit of the ports Docker publishes, seen from `interfaces` of
    /// `host`, against `policy` when there is one.
    fn audit(&self, host: &HostNet, interfaces: &[String], policy: Option<&Policy>) -> AuditReport {
        audit::audit(&self.families(), host, interfaces, policy)
    }

    /// Each family's rules as the audit asks them, in [`Family::ALL`]'s order.
    fn families(&self) -> Vec<(Family, &dyn FamilyRules)>;
}

/// What became of one of an instance's sets when [`Backend::remove_sets`] ran.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case", tag = "fate")]
pub enum SetRemoval {
    /// The set was destroyed: nothing matched it any more.
    Destroyed {
        /// The set.
        name: String,
    },
    /// The set is kept: rules the instance does not own still match it, and the kernel
    /// destroys no set a rule refers to.
    InUse {
        /// The set.
        name: String,
        /// How many references the kernel counts.
        references: usize,
    },
    /// One step went wrong (a set that could not be read or destroyed, sets files that
    /// could not be read, a record that could not be written); the others went on.
    Failed {
        /// What was left undone ("the ipset NAME", ...).
        what: String,
        /// Why.
        reason: String,
    },
}

/// One family's part of what [`Backend::load_sets`] loaded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FamilySetsLoaded {
    /// The family.
    pub family: Family,
    /// How many sets.
    pub sets: usize,
    /// How many members in all.
    pub members: usize,
    /// Why the sets could not be recorded as loaded since boot, if they could not (they
    /// are loaded; unrecorded, they are only ever kept, never destroyed by a later
    /// prune).
    pub not_recorded: Option<String>,
}

/// What [`Backend::ensure_forward_first`] found in one family.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ForwardFinding {
    /// Forwarded traffic already met the rules first.
    InPlace,
    /// Nothing sent forwarded traffic to the rules; now it goes there first.
    Added,
    /// Something else came first; the rules do now.
    Repaired {
        /// What came first, in the backend's words.
        first_rule: String,
        /// How many ways to the rules there were.
        jumps: usize,
        /// Why the repair could not be recorded for `status`, if it could not (the
        /// repair itself is made).
        not_recorded: Option<String>,
    },
}

/// Where a rule that matches destination ports sits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RulePlace {
    /// What reaches the host itself (iptables: INPUT).
    Host,
    /// What is forwarded to containers, after Docker's DNAT (iptables: DOCKER-USER).
    DockerUser,
}

/// A rule that matches destination ports, read by the backend.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PortRule {
    /// Where it sits.
    pub place: RulePlace,
    /// The transport it matches (None: any).
    pub transport: Option<crate::packet::Transport>,
    /// The destination ports it matches, as inclusive ranges.
    pub ports: Vec<(u16, u16)>,
    /// It also picks a destination address or outgoing interface (iptables: `-d`,
    /// `--dst-range`, `-o`): a container, say, whose own port it then means.
    pub aims_at_destination: bool,
}

impl PortRule {
    /// It matches `port` of `transport`.
    pub fn matches(&self, transport: crate::packet::Transport, port: u16) -> bool {
        self.transport.is_none_or(|t| t == transport)
            && self
                .ports
                .iter()
                .any(|(low, high)| (*low..=*high).contains(&port))
    }
}

/// What the other firewall variant holds.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct VariantFindings {
    /// Docker's chains are only in the other variant: rules loaded here are never
    /// reached by its FORWARD jump.
    pub mismatch: Option<Conflict>,
    /// Rules in the other variant, when it is not Docker's.
    pub other_rules: Option<OtherVariantRules>,
}

/// Rules in the firewall variant nobody uses here.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OtherVariantRules {
    /// The variant, in the backend's words (iptables: `legacy` or `nf_tables`).
    pub variant: String,
    /// The program that lists them.
    pub save_program: String,
    /// Its rules (and built-in chains whose policy is not ACCEPT), as it lists them.
    pub rules: Vec<String>,
}

/// One reason not to install.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Conflict {
    /// What was found.
    pub found: String,
    /// Why it matters and what to do.
    pub advice: String,
    /// `--force` may install anyway (false: nothing can make it work, such as a second
    /// instance that would overwrite the first one's chains).
    pub forceable: bool,
}

impl fmt::Display for Conflict {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.found, self.advice)
    }
}

/// An instance's files rendered in memory: `(file name, content)` in the order they are
/// written (and shown by `render --stdout`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rendered {
    files: Vec<(String, String)>,
}

impl Rendered {
    /// The files, `(file name, content)`, in order.
    pub fn new(files: Vec<(String, String)>) -> Rendered {
        Rendered { files }
    }

    /// The files, `(file name, content)`, in order.
    pub fn files(&self) -> &[(String, String)] {
        &self.files
    }

    /// The content of the file named `name`.
    pub fn text(&self, name: &str) -> Option<&str> {
        self.files
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, text)| text.as_str())
    }

    /// The files as `(file name, content)` pairs, ready for [`FileSet::write`].
    pub fn into_outputs(self) -> Vec<(String, String)> {
        self.files
    }
}

/// One part of a proof as `check` shows it: a rules file and its pass-through file,
/// the program that loaded them, and how many rules it loaded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProvenPart {
    /// The rules file's name.
    pub rules: String,
    /// The pass-through file's name.
    pub empty: String,
    /// The program that loaded them.
    pub program: String,
    /// How many rules were loaded.
    pub rule_count: usize,
    /// The sets loaded before the rules (long lists), with how many members each holds.
    pub sets: Vec<(String, usize)>,
}

/// The sets a family's rules match, as a proof loaded them: each one's name (in the
/// backend's words) and members.
pub type LoadedSets = std::collections::BTreeMap<String, crate::host::net::SetMembers>;

/// What a backend proved. The flows read its summary ([`Proof::parts`]) and hand it
/// back to the backend that made it ([`Backend::lockouts`]); what was loaded is in the
/// backend's own words, per family.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Proof {
    parts: Vec<ProvenPart>,
    loaded: Vec<(Family, String, LoadedSets)>,
}

impl Proof {
    /// A proof of `parts`, with what the kernel held after loading each family's
    /// rules, as the backend reads it back, and the sets it loaded first.
    pub fn new(parts: Vec<ProvenPart>, loaded: Vec<(Family, String, LoadedSets)>) -> Proof {
        Proof { parts, loaded }
    }

    /// What was proven, part by part, in the order proven.
    pub fn parts(&self) -> &[ProvenPart] {
        &self.parts
    }

    /// What the kernel held after loading `family`'s rules, in the backend's words.
    pub fn loaded(&self, family: Family) -> Option<&str> {
        self.loaded
            .iter()
            .find(|(f, _, _)| *f == family)
            .map(|(_, text, _)| text.as_str())
    }

    /// The sets loaded before `family`'s rules, with their members.
    pub fn sets(&self, family: Family) -> Option<&LoadedSets> {
        self.loaded
            .iter()
            .find(|(f, _, _)| *f == family)
            .map(|(_, _, sets)| sets)
    }
}

/// One family's owned chains, live and as a proven rendering would make them: each
/// chain's declaration with its policy, then its rules, in the backend's own spelling,
/// so that equal lists mean that loading the files changes nothing.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct OwnedRules {
    /// The family.
    pub family: Family,
    /// The chains the backend owns, named as it names them.
    pub chains: Vec<String>,
    /// As they are live now.
    pub live: Vec<String>,
    /// As loading the proven files would make them.
    pub planned: Vec<String>,
    /// Docker's forwarded traffic already meets the owned rules first and once (for
    /// iptables, FORWARD's first rule is the only jump to DOCKER-USER); loading puts
    /// that right when not.
    pub forward_first: bool,
}

/// A session that rules about to be loaded would shut out.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Lockout {
    /// The session.
    pub session: SshConnection,
    /// What a new connection like it would get, as the backend names it.
    pub verdict: String,
    /// The rule (or policy) that decides, as the backend names it.
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

/// One family's live state against its rendered file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct FamilyState {
    /// `IPv4` or `IPv6`.
    pub family: String,
    /// The rules protect what the files say: the owned chains hold exactly the
    /// rendered rules and FORWARD jumps to DOCKER-USER first.
    pub in_force: bool,
    /// The owned chains hold exactly the rendered rules, in order.
    pub rules_match: bool,
    /// Rendered lines the kernel does not hold.
    pub missing: Vec<String>,
    /// Lines the kernel holds in the owned chains that were not rendered.
    pub unexpected: Vec<String>,
    /// Same lines, different order.
    pub reordered: bool,
    /// FORWARD's first rule is the jump to DOCKER-USER (None when FORWARD is empty).
    pub docker_user_first: Option<bool>,
    /// FORWARD's first rule, when it is not the jump.
    pub forward_first: Option<String>,
    /// What iptables-ctl had to repair in FORWARD since boot (filled in by `status`).
    pub forward_repair: Option<Repair>,
    /// The sets the rendered rules match, live against their rendered members.
    pub sets: Vec<SetContents>,
}

impl FamilyState {
    /// Every set the rules match holds exactly its rendered members.
    pub fn sets_match(&self) -> bool {
        self.sets.iter().all(SetContents::matches)
    }
}

/// One set the rendered rules match, live against the members rendered for it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SetContents {
    /// The set, as the backend names it.
    pub name: String,
    /// How many members were rendered.
    pub expected: usize,
    /// How many it holds live; `None` when there is no such set.
    pub live: Option<usize>,
    /// Rendered members it does not hold.
    pub missing: usize,
    /// Members it holds that were not rendered.
    pub unexpected: usize,
}

impl SetContents {
    /// The set holds exactly the rendered members.
    pub fn matches(&self) -> bool {
        self.live.is_some() && self.missing == 0 && self.unexpected == 0
    }
}

impl fmt::Display for SetContents {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.live {
            None => write!(
                f,
                "the set {} is missing ({} members rendered)",
                self.name, self.expected
            ),
            Some(_) if self.matches() => {
                write!(
                    f,
                    "the set {} holds its {} rendered members",
                    self.name, self.expected
                )
            }
            Some(live) => write!(
                f,
                "the set {} holds {live} members, {} of the {} rendered missing and {} unexpected",
                self.name, self.missing, self.expected, self.unexpected
            ),
        }
    }
}

/// The live firewall.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct LiveState {
    /// Which kernel interface the backend drives on this host, in its own words
    /// (iptables: `nf_tables` or `legacy`), when it says.
    #[serde(rename = "backend")]
    pub variant: Option<String>,
    /// Per family.
    pub families: Vec<FamilyState>,
}

impl LiveState {
    /// Every family holds its rendered rules.
    pub fn in_force(&self) -> bool {
        self.families.iter().all(|f| f.in_force)
    }
}

/// What had to be repaired of one family's hook into Docker's forwarding since boot
/// (iptables: FORWARD's jump to DOCKER-USER).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Repair {
    /// How many times the jump had to be put back first.
    pub count: u32,
    /// FORWARD's first rule the last time.
    pub last_first_rule: String,
}

/// One family's rules as the exposure audit and `explain` ask them, in terms no backend
/// owns: the audit cuts the source address space where [`FamilyRules::source_ranges`]
/// says the answer can change, and walks one packet of each piece.
pub trait FamilyRules {
    /// Walks `packet` through the rules on `host`, recording what decides.
    fn walk(&self, host: &HostNet, packet: &Packet) -> Walk;

    /// Every source address range any rule matches on, as (first, last): where the
    /// answer to "who gets through" can change.
    fn source_ranges(&self) -> Vec<(IpAddr, IpAddr)>;

    /// The ports Docker publishes through these rules (its DNAT rules), of `family`.
    fn published_ports(&self, family: Family) -> Vec<PublishedPort>;
}

impl<T: FamilyRules + ?Sized> FamilyRules for &T {
    fn walk(&self, host: &HostNet, packet: &Packet) -> Walk {
        (**self).walk(host, packet)
    }

    fn source_ranges(&self) -> Vec<(IpAddr, IpAddr)> {
        (**self).source_ranges()
    }

    fn published_ports(&self, family: Family) -> Vec<PublishedPort> {
        (**self).published_ports(family)
    }
}
