//! Test fakes for the flows: a service manager that records calls and answers as told,
//! a trial that accepts everything, a firewall with nothing to say, the iptables
//! backend built on those two ([`FAKE_BACKEND`]), the same backend with live rules
//! that hold the files on disk ([`InForceBackend`], for `status`), a host with eth0,
//! and a staged tree to run the flows in. The real thing is proven in
//! tests/systemd_boot.rs; these reach the failure paths a real systemd rarely takes.

use std::cell::RefCell;
use std::fs;
use std::io;
use std::net::IpAddr;
use std::path::{Path, PathBuf};

use crate::backend::{
    Backend, Conflict, FamilyRules, FamilyState, ForwardFinding, LiveRules, LiveState, Lockout,
    Proof, Rendered,
};
use crate::command::ToolError;
use crate::control::Target;
use crate::family::Family;
use crate::files::layout::Layout;
use crate::files::set::FileSet;
use crate::host::net::HostNet;
use crate::host::{HostProbe, OpenSessions, SshConnection};
use crate::iptables::live::LiveFirewall;
use crate::iptables::trial::{RulesetTrial, TrialError, TrialReport};
use crate::iptables::{IptablesBackend, Tools, Variant};
use crate::policy::types::InstanceName;
use crate::systemd::{
    ActiveState, JobKind, JobResult, LoadState, ServiceManager, SystemdError, UnitFileChange,
    UnitFileState, UnitStatus,
};

/// A host with eth0, no SSH session, and an empty network.
pub(crate) struct FakeHost;

impl HostProbe for FakeHost {
    fn default_route_interfaces(&self) -> io::Result<Vec<String>> {
        Ok(vec!["eth0".to_owned()])
    }
    fn interface_names(&self) -> io::Result<Vec<String>> {
        Ok(vec!["eth0".to_owned(), "lo".to_owned()])
    }
    fn sshd_ports(&self) -> Vec<u16> {
        vec![22]
    }
    fn ssh_connection(&self) -> Option<SshConnection> {
        None
    }
    fn ssh_sessions(&self) -> Vec<SshConnection> {
        Vec::new()
    }
    fn route_interface(&self, _address: IpAddr) -> Option<String> {
        None
    }
    fn network(&self) -> anyhow::Result<HostNet> {
        Ok(HostNet::default())
    }
}

/// A meeting of `parties` threads, for tests that things run at once: each arrives and
/// waits until all have, within a bound (so that work done one after the other fails
/// the test instead of hanging it).
pub(crate) struct Rendezvous {
    parties: usize,
    arrived: std::sync::Mutex<usize>,
    all_in: std::sync::Condvar,
}

impl Rendezvous {
    /// A meeting of `parties`.
    pub(crate) fn new(parties: usize) -> Rendezvous {
        Rendezvous {
            parties,
            arrived: std::sync::Mutex::new(0),
            all_in: std::sync::Condvar::new(),
        }
    }

    /// Arrives and waits for the others: whether all had arrived within the bound (once
    /// they all have, every later arrival returns at once).
    pub(crate) fn arrive(&self) -> bool {
        let Ok(mut arrived) = self.arrived.lock() else {
            return false;
        };
        *arrived += 1;
        self.all_in.notify_all();
        self.all_in
            .wait_timeout_while(arrived, std::time::Duration::from_secs(30), |n| {
                *n < self.parties
            })
            .is_ok_and(|(_, wait)| !wait.timed_out())
    }
}

/// A host for a test that says only what its reads answer: the default routes'
/// interfaces, the interface names, the SSH sessions and the network (by default those
/// of [`FakeHost`]); the rest is [`FakeHost`]'s.
pub(crate) struct ReadingHost<'a> {
    pub default_route_interfaces: Answer<'a, (), io::Result<Vec<String>>>,
    pub interface_names: Answer<'a, (), io::Result<Vec<String>>>,
    pub ssh_sessions: Answer<'a, (), Vec<SshConnection>>,
    pub network: Answer<'a, (), anyhow::Result<HostNet>>,
}

impl Default for ReadingHost<'_> {
    fn default() -> Self {
        ReadingHost {
            default_route_interfaces: Box::new(|()| FakeHost.default_route_interfaces()),
            interface_names: Box::new(|()| FakeHost.interface_names()),
            ssh_sessions: Box::new(|()| FakeHost.ssh_sessions()),
            network: Box::new(|()| FakeHost.network()),
        }
    }
}

impl HostProbe for ReadingHost<'_> {
    fn default_route_interfaces(&self) -> io::Result<Vec<String>> {
        (self.default_route_interfaces)(())
    }
    fn interface_names(&self) -> io::Result<Vec<String>> {
        (self.interface_names)(())
    }
    fn sshd_ports(&self) -> Vec<u16> {
        FakeHost.sshd_ports()
    }
    fn ssh_connection(&self) -> Option<SshConnection> {
        FakeHost.ssh_connection()
    }
    fn ssh_sessions(&self) -> Vec<SshConnection> {
        (self.ssh_sessions)(())
    }
    fn route_interface(&self, address: IpAddr) -> Option<String> {
        FakeHost.route_interface(address)
    }
    fn network(&self) -> anyhow::Result<HostNet> {
        (self.network)(())
    }
}

/// A trial that accepts everything and reports an empty ruleset.
pub(crate) struct AcceptingTrial;

/// The iptables backend on the accepting trial and the quiet firewall, with the
/// system's programs.
pub(crate) const FAKE_BACKEND: IptablesBackend<'static> = IptablesBackend {
    tools: Tools::System,
    trial: &AcceptingTrial,
    firewall: &QuietFirewall,
};

thread_local! {
    /// Makes [`InForceBackend`]'s live sets differ from the files (the rules still
    /// match), for the test that sets it, on its own thread.
    pub(crate) static LIVE_SET_DRIFTED: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

/// [`FAKE_BACKEND`], but the live rules of both families are the files on disk and
/// FORWARD jumps to them first, and no port is published: everything `status` asks of
/// the live firewall holds, so what it says comes from the files and the policy.
pub(crate) struct InForceBackend;

/// Live rules with no family: no Docker bridge, no published port.
struct NoLiveRules;

impl LiveRules for NoLiveRules {
    fn docker_bridges(&self) -> Vec<(Family, String)> {
        Vec::new()
    }
    fn families(&self) -> Vec<(Family, &dyn FamilyRules)> {
        Vec::new()
    }
}

impl Backend for InForceBackend {
    fn render(
        &self,
        layout: &Layout,
        instance: &InstanceName,
        policy: &crate::policy::Policy,
    ) -> anyhow::Result<Rendered> {
        FAKE_BACKEND.render(layout, instance, policy)
    }
    fn prove(
        &self,
        instance: &InstanceName,
        policy: &crate::policy::Policy,
        rendered: &Rendered,
    ) -> anyhow::Result<Proof> {
        FAKE_BACKEND.prove(instance, policy, rendered)
    }
    fn prove_on_disk(&self, layout: &Layout, instance: &InstanceName) -> anyhow::Result<Proof> {
        FAKE_BACKEND.prove_on_disk(layout, instance)
    }
    fn lockouts(&self, sessions: &OpenSessions, proof: &Proof) -> Vec<Lockout> {
        FAKE_BACKEND.lockouts(sessions, proof)
    }
    fn output_set(&self, layout: &Layout, instance: &InstanceName) -> FileSet {
        FAKE_BACKEND.output_set(layout, instance)
    }
    fn load_pass_through(&self, layout: &Layout, instance: &InstanceName) -> anyhow::Result<()> {
        FAKE_BACKEND.load_pass_through(layout, instance)
    }
    fn load_rules(&self, layout: &Layout, instance: &InstanceName) -> anyhow::Result<()> {
        FAKE_BACKEND.load_rules(layout, instance)
    }
    fn load_sets(
        &self,
        layout: &Layout,
        instance: &InstanceName,
    ) -> anyhow::Result<Vec<crate::backend::FamilySetsLoaded>> {
        FAKE_BACKEND.load_sets(layout, instance)
    }
    fn ensure_forward_first(
        &self,
        _layout: &Layout,
        _instance: &InstanceName,
        _family: Family,
    ) -> anyhow::Result<ForwardFinding> {
        Ok(ForwardFinding::InPlace)
    }
    fn sets_of(&self, layout: &Layout, instance: &InstanceName) -> anyhow::Result<Vec<String>> {
        FAKE_BACKEND.sets_of(layout, instance)
    }
    fn remove_sets(
        &self,
        layout: &Layout,
        instance: &InstanceName,
    ) -> anyhow::Result<Vec<crate::backend::SetRemoval>> {
        FAKE_BACKEND.remove_sets(layout, instance)
    }
    fn prune_sets(
        &self,
        layout: &Layout,
        instance: &InstanceName,
    ) -> anyhow::Result<Option<Vec<crate::backend::SetRemoval>>> {
        FAKE_BACKEND.prune_sets(layout, instance)
    }
    fn live_state(
        &self,
        _layout: &Layout,
        _instance: &InstanceName,
        _running: bool,
    ) -> anyhow::Result<LiveState> {
        let drifted = LIVE_SET_DRIFTED.get();
        let in_force = |family: Family| FamilyState {
            family: family.to_string(),
            in_force: !drifted,
            rules_match: true,
            missing: Vec::new(),
            unexpected: Vec::new(),
            reordered: false,
            docker_user_first: Some(true),
            forward_first: None,
            forward_repair: None,
            sets: if drifted {
                vec![crate::backend::SetContents {
                    name: "ictl.base.customers.v4".to_owned(),
                    expected: 100,
                    live: Some(99),
                    missing: 1,
                    unexpected: 0,
                }]
            } else {
                Vec::new()
            },
        };
        Ok(LiveState {
            variant: Some("nf_tables".to_owned()),
            families: Family::ALL.into_iter().map(in_force).collect(),
        })
    }
    fn live_conflicts(&self) -> Vec<Conflict> {
        Vec::new()
    }
    fn live_snapshot(&self) -> anyhow::Result<Vec<(String, String)>> {
        FAKE_BACKEND.live_snapshot()
    }
    fn owned_rules(&self, proof: &Proof) -> anyhow::Result<Vec<crate::backend::OwnedRules>> {
        FAKE_BACKEND.owned_rules(proof)
    }
    fn live_rules(&self) -> anyhow::Result<Box<dyn LiveRules>> {
        Ok(Box::new(NoLiveRules))
    }
    fn live_family(&self, family: Family) -> anyhow::Result<Box<dyn FamilyRules>> {
        FAKE_BACKEND.live_family(family)
    }
    fn port_rule(&self, rule: &str) -> Option<crate::backend::PortRule> {
        FAKE_BACKEND.port_rule(rule)
    }
    fn variant_findings(&self) -> Result<crate::backend::VariantFindings, String> {
        Ok(crate::backend::VariantFindings::default())
    }
}

/// A live firewall for a test that says only what its reads answer: `iptables -V`,
/// each family's save, the other variant's save and each set's save (by default those
/// of [`QuietFirewall`]); its writes do nothing.
pub(crate) struct ReadingFirewall<'a> {
    pub variant: Answer<'a, (), Option<Variant>>,
    pub save: Answer<'a, Family, Result<String, ToolError>>,
    pub save_other_variant: Answer<'a, Variant, Result<Option<String>, ToolError>>,
    pub save_set: SetAnswer<'a>,
}

/// What a test's fake firewall answers for a set, by its name.
pub(crate) type SetAnswer<'a> = Box<dyn Fn(&str) -> Result<Option<String>, ToolError> + Sync + 'a>;

/// What a test's fake answers to a question asked with `A`.
pub(crate) type Answer<'a, A, T> = Box<dyn Fn(A) -> T + Sync + 'a>;

impl Default for ReadingFirewall<'_> {
    fn default() -> Self {
        ReadingFirewall {
            variant: Box::new(|()| QuietFirewall.variant()),
            save: Box::new(|family| QuietFirewall.save(family)),
            save_other_variant: Box::new(|system| QuietFirewall.save_other_variant(system)),
            save_set: Box::new(|name| QuietFirewall.save_set(name)),
        }
    }
}

impl LiveFirewall for ReadingFirewall<'_> {
    fn variant(&self) -> Option<Variant> {
        (self.variant)(())
    }
    fn save(&self, family: Family) -> Result<String, ToolError> {
        (self.save)(family)
    }
    fn save_other_variant(&self, system: Variant) -> Result<Option<String>, ToolError> {
        (self.save_other_variant)(system)
    }
    fn restore(&self, family: Family, text: &str) -> Result<(), ToolError> {
        QuietFirewall.restore(family, text)
    }
    fn restore_sets(&self, text: &str) -> Result<(), ToolError> {
        QuietFirewall.restore_sets(text)
    }
    fn save_set(&self, name: &str) -> Result<Option<String>, ToolError> {
        (self.save_set)(name)
    }
    fn list_set(&self, name: &str) -> Result<Option<String>, ToolError> {
        QuietFirewall.list_set(name)
    }
    fn destroy_set(&self, name: &str) -> Result<(), ToolError> {
        QuietFirewall.destroy_set(name)
    }
}

/// A firewall with nothing to say (no backend, no other backend).
pub(crate) struct QuietFirewall;

impl LiveFirewall for QuietFirewall {
    fn variant(&self) -> Option<crate::iptables::Variant> {
        None
    }
    fn save(&self, _family: Family) -> Result<String, crate::command::ToolError> {
        Ok(String::new())
    }
    fn save_other_variant(
        &self,
        _system: Variant,
    ) -> Result<Option<String>, crate::command::ToolError> {
        Ok(None)
    }
    fn restore(&self, _family: Family, _text: &str) -> Result<(), crate::command::ToolError> {
        Ok(())
    }
    fn restore_sets(&self, _text: &str) -> Result<(), crate::command::ToolError> {
        Ok(())
    }
    fn save_set(&self, _name: &str) -> Result<Option<String>, crate::command::ToolError> {
        Ok(None)
    }
    fn list_set(&self, _name: &str) -> Result<Option<String>, crate::command::ToolError> {
        Ok(None)
    }
    fn destroy_set(&self, _name: &str) -> Result<(), crate::command::ToolError> {
        Ok(())
    }
}

impl RulesetTrial for AcceptingTrial {
    fn trial(
        &self,
        _family: Family,
        _sets: (&str, &str),
        _rules: (&str, &str),
        _empty: (&str, &str),
    ) -> Result<TrialReport, TrialError> {
        Ok(TrialReport {
            loaded: String::new(),
            loaded_empty: String::new(),
            rule_count: 0,
            sets: Vec::new(),
        })
    }
}

/// Records every call; jobs end with `job_result`; the rules unit is `active_state`.
/// With `links_in`, enable creates one link per unit there, as systemd would. Timers
/// exist while armed (transient), and are not found otherwise.
pub(crate) struct FakeManager {
    calls: RefCell<Vec<String>>,
    armed: RefCell<Vec<String>>,
    job_result: JobResult,
    active_state: &'static str,
    links_in: Option<PathBuf>,
    on_job: Option<Box<dyn Fn()>>,
}

impl FakeManager {
    pub(crate) fn new(active_state: &'static str, job_result: JobResult) -> FakeManager {
        FakeManager {
            calls: RefCell::new(Vec::new()),
            armed: RefCell::new(Vec::new()),
            job_result,
            active_state,
            links_in: None,
            on_job: None,
        }
    }

    /// Runs `hook` at every job, as something else on the host would meanwhile.
    pub(crate) fn on_job(mut self, hook: impl Fn() + 'static) -> FakeManager {
        self.on_job = Some(Box::new(hook));
        self
    }

    pub(crate) fn linking_in(mut self, dir: PathBuf) -> FakeManager {
        self.links_in = Some(dir);
        self
    }

    pub(crate) fn calls(&self) -> Vec<String> {
        self.calls.borrow().clone()
    }
}

/// One link per unit in `dir`, as systemd's enable would make.
fn link(dir: &Path, units: &[&str]) -> Vec<UnitFileChange> {
    fs::create_dir_all(dir).unwrap();
    units
        .iter()
        .map(|unit| {
            let link = dir.join(unit);
            std::os::unix::fs::symlink(format!("/etc/systemd/system/{unit}"), &link).unwrap();
            UnitFileChange {
                kind: "symlink".to_owned(),
                path: link.display().to_string(),
                destination: format!("/etc/systemd/system/{unit}"),
            }
        })
        .collect()
}

impl ServiceManager for FakeManager {
    fn daemon_reload(&self) -> Result<(), SystemdError> {
        self.calls.borrow_mut().push("daemon-reload".to_owned());
        Ok(())
    }
    fn enable(&self, units: &[&str]) -> Result<Vec<UnitFileChange>, SystemdError> {
        self.calls
            .borrow_mut()
            .push(format!("enable {}", units.join(" ")));
        Ok(self
            .links_in
            .as_deref()
            .map_or_else(Vec::new, |dir| link(dir, units)))
    }
    fn add_wants(&self, target: &str, units: &[&str]) -> Result<Vec<UnitFileChange>, SystemdError> {
        self.calls
            .borrow_mut()
            .push(format!("add-wants {target} {}", units.join(" ")));
        // Beside the enable links' directory, as systemd keeps every .wants/ in one.
        let dir = self
            .links_in
            .as_deref()
            .map(|d| d.with_file_name(format!("{target}.wants")));
        Ok(dir.map_or_else(Vec::new, |dir| link(&dir, units)))
    }
    fn disable(&self, units: &[&str]) -> Result<Vec<UnitFileChange>, SystemdError> {
        self.calls
            .borrow_mut()
            .push(format!("disable {}", units.join(" ")));
        Ok(Vec::new())
    }
    fn run_job(&self, kind: JobKind, unit: &str) -> Result<JobResult, SystemdError> {
        self.calls.borrow_mut().push(format!("{kind} {unit}"));
        if let Some(hook) = &self.on_job {
            hook();
        }
        if kind == JobKind::Stop {
            self.armed.borrow_mut().retain(|t| t != unit);
        }
        Ok(self.job_result.clone())
    }
    fn unit_status(&self, unit: &str) -> Result<UnitStatus, SystemdError> {
        let transient_gone =
            unit.ends_with(".timer") && !self.armed.borrow().iter().any(|t| t == unit);
        Ok(UnitStatus {
            name: unit.to_owned(),
            load_state: if transient_gone {
                LoadState::NotFound
            } else {
                LoadState::Loaded
            },
            active_state: if unit.starts_with("iptables@") {
                ActiveState::from_word(self.active_state)
            } else {
                ActiveState::Inactive
            },
            sub_state: "dead".to_owned(),
            unit_file_state: UnitFileState::Enabled,
            fragment_path: String::new(),
            result: Some("exit-code".to_owned()),
            active_enter_monotonic_us: 0,
            inactive_exit_monotonic_us: 0,
            wants: Vec::new(),
        })
    }
    fn unit_file_state(&self, _unit: &str) -> Result<Option<UnitFileState>, SystemdError> {
        Ok(None)
    }
    fn arm_timer(
        &self,
        timer: &str,
        after: std::time::Duration,
    ) -> Result<JobResult, SystemdError> {
        self.calls
            .borrow_mut()
            .push(format!("arm {timer} {}s", after.as_secs()));
        self.armed.borrow_mut().push(timer.to_owned());
        Ok(JobResult::Done)
    }
    fn reset_failed(&self, unit: &str) -> Result<(), SystemdError> {
        self.calls.borrow_mut().push(format!("reset-failed {unit}"));
        Ok(())
    }
}

pub(crate) const POLICY: &str = "[interfaces]\nexternal = [\"eth0\"]\n";

pub(crate) struct Staged {
    pub(crate) root: tempfile::TempDir,
    pub(crate) layout: Layout,
    pub(crate) instance: InstanceName,
    pub(crate) policy_path: PathBuf,
}

pub(crate) fn staged(policy: Option<&str>) -> Staged {
    let root = tempfile::tempdir().unwrap();
    let layout = Layout::new(root.path());
    let instance: InstanceName = "base".parse().unwrap();
    let policy_path = layout.policy_path(&instance);
    if let Some(text) = policy {
        fs::create_dir_all(layout.config_dir()).unwrap();
        fs::write(&policy_path, text).unwrap();
    }
    Staged {
        root,
        layout,
        instance,
        policy_path,
    }
}

impl Staged {
    pub(crate) fn target(&self) -> Target<'_> {
        self.target_with(&FAKE_BACKEND)
    }

    /// [`Staged::target`] with another backend.
    pub(crate) fn target_with<'a>(&'a self, backend: &'a dyn Backend) -> Target<'a> {
        Target {
            layout: &self.layout,
            instance: &self.instance,
            policy_path: &self.policy_path,
            host: &FakeHost,
            backend,
        }
    }

    /// Writes the instance's six files as the tool does, each `TAG NAME` (a comment in
    /// the sets files, which are read strictly before they load).
    pub(crate) fn write_rules(&self, tag: &str) {
        let files: Vec<(String, String)> = [
            "base.rules",
            "base.rules.empty",
            "base.sets",
            "base.rules6",
            "base.rules6.empty",
            "base.sets6",
        ]
        .map(|name| {
            let text = if name.contains(".sets") {
                format!("# {tag} {name}\n")
            } else {
                format!("{tag} {name}\n")
            };
            (name.to_owned(), text)
        })
        .to_vec();
        FAKE_BACKEND
            .output_set(&self.layout, &self.instance)
            .write(&files)
            .unwrap();
    }

    /// Every file and link under the root with what it shows a reader (a link:
    /// its target's bytes). The versions inside a file set's store are left out:
    /// a set put back shows its old bytes from a new version (the fileset tests
    /// prove that an absent set put back leaves no store).
    pub(crate) fn files(&self) -> Vec<(PathBuf, Vec<u8>)> {
        let mut all = Vec::new();
        let mut stack = vec![self.root.path().to_owned()];
        while let Some(dir) = stack.pop() {
            for entry in fs::read_dir(dir).unwrap() {
                let path = entry.unwrap().path();
                let is_store = path
                    .file_name()
                    .is_some_and(|n| n.to_string_lossy().ends_with(".set"));
                if path.symlink_metadata().unwrap().is_dir() {
                    if !is_store {
                        stack.push(path);
                    }
                } else {
                    all.push((path.clone(), fs::read(&path).unwrap_or_default()));
                }
            }
        }
        all.sort();
        all
    }
}
