//! Other firewall managers and setups that would fight iptables-ctl, found before
//! anything is changed: firewalld, ufw, netfilter-persistent (and its `iptables.service`
//! alias), RHEL's iptables-services, a second iptables-ctl instance, and what the
//! firewall backend finds on the live host ([`Backend::live_conflicts`]; iptables: a
//! variant that differs from the one holding Docker's chains).
//!
//! Facts are gathered first ([`ConflictFacts::gather`]: files under the root, systemd
//! when live, the backend when live) and judged apart ([`ConflictFacts::conflicts`]),
//! so the judgement is tested on plain values.

use std::fs;
use std::path::{Path, PathBuf};

use crate::backend::Backend;
pub(crate) use crate::backend::Conflict;
use crate::files::source;
use crate::policy::types::InstanceName;
use crate::systemd::ServiceManager;
use crate::systemd::units::{self, ADMIN_UNIT_DIR, PACKAGE_UNIT_DIRS};

/// Unit names another firewall may own. We ship neither `ip6tables.service` nor any
/// alias, so every such file that is not ours belongs to someone else.
const CONTESTED_UNITS: [&str; 4] = [
    "iptables.service",
    "ip6tables.service",
    "iptables@.service",
    "iptables-docker@.service",
];

/// A unit file of a contested name that iptables-ctl did not write.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ForeignUnit {
    /// The file (under the root).
    pub path: PathBuf,
    /// Where it points, when it is a symlink (an alias such as netfilter-persistent's).
    pub link_target: Option<PathBuf>,
}

/// What was found on the host.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct ConflictFacts {
    /// firewalld is running (live) or enabled (staged tree).
    pub firewalld: bool,
    /// ufw is enabled (`ENABLED=yes` in /etc/ufw/ufw.conf).
    pub ufw: bool,
    /// netfilter-persistent is enabled.
    pub netfilter_persistent: bool,
    /// Unit files with our names that are not ours.
    pub foreign_units: Vec<ForeignUnit>,
    /// Other iptables-ctl instances that are enabled.
    pub other_instances: Vec<String>,
    /// What the firewall backend found on the live host (live only).
    pub backend: Vec<Conflict>,
}

impl ConflictFacts {
    /// Gathers the facts for installing `instance` under `root`. On a live host
    /// (`live`), systemd is asked for runtime state and the backend reads the live
    /// firewall; without it only files under `root` are read.
    pub fn gather(
        root: &Path,
        instance: &InstanceName,
        live: Option<(&dyn ServiceManager, &dyn Backend)>,
    ) -> anyhow::Result<ConflictFacts> {
        let enabled_here = |unit: &str| !wants_links(root, unit).is_empty();
        let mut facts = ConflictFacts {
            ufw: ufw_enabled(&root.join("etc/ufw/ufw.conf")),
            firewalld: enabled_here("firewalld.service"),
            netfilter_persistent: enabled_here("netfilter-persistent.service"),
            foreign_units: foreign_units(root),
            other_instances: other_instances(root, instance),
            backend: Vec::new(),
        };
        if let Some((manager, backend)) = live {
            facts.firewalld |= manager.unit_status("firewalld.service")?.is_active();
            facts.netfilter_persistent |= manager
                .unit_file_state("netfilter-persistent.service")?
                .is_some_and(|state| state.is_enabled());
            facts.backend = backend.live_conflicts();
        }
        Ok(facts)
    }

    /// The conflicts these facts amount to.
    pub fn conflicts(&self) -> Vec<Conflict> {
        let mut found = Vec::new();
        if self.firewalld {
            found.push(Conflict {
                found: "firewalld is running".to_owned(),
                advice: "it rewrites the firewall on its own; stop and disable it (systemctl disable --now firewalld) or manage Docker's exposure with firewalld zones instead".to_owned(),
                forceable: true,
            });
        }
        if self.ufw {
            found.push(Conflict {
                found: "ufw is enabled".to_owned(),
                advice: "ufw owns INPUT and reloads it on its own; run `ufw disable` first"
                    .to_owned(),
                forceable: true,
            });
        }
        if self.netfilter_persistent {
            found.push(Conflict {
                found: "netfilter-persistent is enabled".to_owned(),
                advice: "at boot it restores /etc/iptables/rules.v4 over the whole table, Docker's chains included; disable it (systemctl disable netfilter-persistent) or remove iptables-persistent".to_owned(),
                forceable: true,
            });
        }
        for unit in &self.foreign_units {
            let what = match &unit.link_target {
                Some(target) => format!(
                    "{} is an alias of {}",
                    unit.path.display(),
                    target.display()
                ),
                None => format!("{} belongs to another package", unit.path.display()),
            };
            found.push(Conflict {
                found: what,
                advice: "a unit of that name would load another firewall's rules in place of ours (netfilter-persistent and RHEL's iptables-services ship one); remove or disable that package".to_owned(),
                forceable: true,
            });
        }
        for other in &self.other_instances {
            found.push(Conflict {
                found: format!("instance {other} is enabled"),
                advice: format!(
                    "every instance owns INPUT, OUTPUT and DOCKER-USER, so two would overwrite each other (--force cannot change that); uninstall it first (iptables-ctl uninstall {other})"
                ),
                forceable: false,
            });
        }
        found.extend(self.backend.iter().cloned());
        found
    }
}

/// The symlinks in any `*.wants/` directory under the admin unit directory that enable
/// `unit`.
pub(crate) fn wants_links(root: &Path, unit: &str) -> Vec<PathBuf> {
    wants_dirs(root)
        .into_iter()
        .map(|dir| dir.join(unit))
        .filter(|link| link.symlink_metadata().is_ok())
        .collect()
}

/// The `*.wants/` directories under the admin unit directory, in name order.
fn wants_dirs(root: &Path) -> Vec<PathBuf> {
    let Ok(entries) = fs::read_dir(root.join(ADMIN_UNIT_DIR)) else {
        return Vec::new();
    };
    let mut dirs: Vec<PathBuf> = entries
        .filter_map(Result::ok)
        .map(|entry| entry.path())
        .filter(|dir| dir.extension().is_some_and(|e| e == "wants"))
        .collect();
    dirs.sort();
    dirs
}

/// ufw's own switch: `ENABLED=yes` in ufw.conf.
fn ufw_enabled(conf: &Path) -> bool {
    source::read_consulted(conf).is_some_and(|text| {
        text.lines()
            .map(|l| l.trim().replace(['"', '\''], ""))
            .any(|l| l.eq_ignore_ascii_case("ENABLED=yes"))
    })
}

fn foreign_units(root: &Path) -> Vec<ForeignUnit> {
    let mut found: Vec<ForeignUnit> = Vec::new();
    let mut seen = Vec::new();
    for dir in std::iter::once(ADMIN_UNIT_DIR).chain(PACKAGE_UNIT_DIRS) {
        for name in CONTESTED_UNITS {
            let path = root.join(dir).join(name);
            let Ok(meta) = path.symlink_metadata() else {
                continue;
            };
            // /lib and /usr/lib are one directory on merged-/usr systems.
            let identity = fs::canonicalize(&path).unwrap_or_else(|_| path.clone());
            if seen.contains(&identity) && !meta.file_type().is_symlink() {
                continue;
            }
            seen.push(identity);
            let link_target = fs::read_link(&path).ok();
            let ours = link_target.is_none()
                && source::read_consulted(&path).is_some_and(|text| units::is_ours(&text));
            if !ours {
                found.push(ForeignUnit { path, link_target });
            }
        }
    }
    found
}

/// Whether `instance` has an enable link under `root` (systemd not asked: works for a
/// staged tree and without root).
pub(crate) fn enabled_under(root: &Path, instance: &InstanceName) -> bool {
    !wants_links(root, &format!("iptables@{instance}.service")).is_empty()
}

/// The instances other than `instance` that are enabled under `root`.
pub(crate) fn other_instances(root: &Path, instance: &InstanceName) -> Vec<String> {
    let ours = format!("iptables@{instance}.service");
    let mut others: Vec<String> = wants_dirs(root)
        .into_iter()
        .filter_map(|dir| fs::read_dir(dir).ok())
        .flatten()
        .filter_map(Result::ok)
        .filter_map(|e| e.file_name().into_string().ok())
        .filter(|name| name.starts_with("iptables@") && *name != ours)
        .filter_map(|name| {
            name.strip_prefix("iptables@")
                .and_then(|n| n.strip_suffix(".service"))
                .map(str::to_owned)
        })
        .collect();
    others.sort();
    others.dedup();
    others
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::iptables::Variant;
    use crate::iptables::live::{VariantFacts, variant_conflict};

    #[test]
    fn no_facts_no_conflicts() {
        assert!(ConflictFacts::default().conflicts().is_empty());
    }

    #[test]
    fn each_fact_is_one_conflict_naming_it() {
        let facts = ConflictFacts {
            firewalld: true,
            ufw: true,
            netfilter_persistent: true,
            foreign_units: vec![ForeignUnit {
                path: "/etc/systemd/system/iptables.service".into(),
                link_target: Some("/lib/systemd/system/netfilter-persistent.service".into()),
            }],
            other_instances: vec!["lab".to_owned()],
            backend: variant_conflict(&VariantFacts {
                system: Variant::Nft,
                docker_in_other: true,
                docker_in_system: false,
                other_rules: Vec::new(),
            })
            .into_iter()
            .collect(),
        };
        let text: Vec<String> = facts.conflicts().iter().map(ToString::to_string).collect();
        assert_eq!(text.len(), 6, "{text:#?}");
        assert!(text[0].starts_with("firewalld is running"));
        assert!(text[1].starts_with("ufw is enabled"));
        assert!(text[2].starts_with("netfilter-persistent is enabled"));
        assert!(text[3].contains("alias of /lib/systemd/system/netfilter-persistent.service"));
        assert!(text[4].contains("iptables-ctl uninstall lab"));
        assert!(text[5].contains("nf_tables but Docker's chains are in the legacy tables"));
        assert!(text[5].contains("iptables-legacy"));
    }

    #[test]
    fn staged_tree_facts() {
        let root = tempfile::tempdir().unwrap();
        let r = root.path();
        fs::create_dir_all(r.join("etc/ufw")).unwrap();
        fs::write(r.join("etc/ufw/ufw.conf"), "# c\nENABLED=yes\n").unwrap();
        let wants = r.join("etc/systemd/system/multi-user.target.wants");
        fs::create_dir_all(&wants).unwrap();
        std::os::unix::fs::symlink(
            "/lib/systemd/system/netfilter-persistent.service",
            wants.join("netfilter-persistent.service"),
        )
        .unwrap();
        std::os::unix::fs::symlink(
            "/etc/systemd/system/iptables@.service",
            wants.join("iptables@lab.service"),
        )
        .unwrap();
        std::os::unix::fs::symlink(
            "/etc/systemd/system/iptables@.service",
            wants.join("iptables@base.service"),
        )
        .unwrap();
        std::os::unix::fs::symlink(
            "/lib/systemd/system/netfilter-persistent.service",
            r.join("etc/systemd/system/iptables.service"),
        )
        .unwrap();
        fs::create_dir_all(r.join("usr/lib/systemd/system")).unwrap();
        fs::write(
            r.join("usr/lib/systemd/system/iptables@.service"),
            units::SHIPPED_UNITS[1].text,
        )
        .unwrap();
        let instance: InstanceName = "base".parse().unwrap();
        let facts = ConflictFacts::gather(r, &instance, None).unwrap();
        assert!(facts.ufw && facts.netfilter_persistent && !facts.firewalld);
        assert_eq!(facts.other_instances, ["lab"]);
        assert_eq!(
            facts.foreign_units,
            [ForeignUnit {
                path: r.join("etc/systemd/system/iptables.service"),
                link_target: Some("/lib/systemd/system/netfilter-persistent.service".into()),
            }],
            "our own packaged unit is not foreign"
        );
    }
}
