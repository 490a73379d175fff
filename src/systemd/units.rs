//! The systemd units iptables-ctl ships, where they are installed, and enabling them in
//! a staged tree without systemd (`--root`), with the same symlinks `systemctl --root
//! enable` makes. The unit texts are the files in `units/`, compiled in, so the binary
//! always installs the units it was built and tested with.

use std::path::{Path, PathBuf};

use crate::policy::types::InstanceName;

/// A unit file shipped with iptables-ctl.
#[derive(Debug, Clone, Copy)]
pub struct ShippedUnit {
    /// File name, such as `iptables@.service`.
    pub file_name: &'static str,
    /// Its text.
    pub text: &'static str,
    /// The units `install` makes want it (`systemctl add-wants`), besides the
    /// `WantedBy=` of its `[Install]` section: hooks into another package's service,
    /// which are the admin's decision per instance rather than a default of the unit
    /// file (and which lintian flags as unusual install targets).
    pub hooked_into: &'static [&'static str],
}

/// Every unit file, in the order they are written.
pub const SHIPPED_UNITS: [ShippedUnit; 4] = [
    ShippedUnit {
        file_name: "iptables.service",
        text: include_str!("../../units/iptables.service"),
        hooked_into: &[],
    },
    ShippedUnit {
        file_name: "iptables@.service",
        text: include_str!("../../units/iptables@.service"),
        hooked_into: &[],
    },
    ShippedUnit {
        file_name: "iptables-docker@.service",
        text: include_str!("../../units/iptables-docker@.service"),
        hooked_into: &[DOCKER_SERVICE],
    },
    ShippedUnit {
        file_name: "iptables-rollback@.service",
        text: include_str!("../../units/iptables-rollback@.service"),
        hooked_into: &[],
    },
];

/// Docker's service, which the re-assertion unit is hooked into.
pub const DOCKER_SERVICE: &str = "docker.service";

/// Every shipped unit starts with this, which is how a unit file found on a host is
/// told apart from another firewall's unit of the same name.
pub const OWNERSHIP_MARK: &str = "# iptables-ctl:";

/// Where an admin-run install writes units (relative to the root).
pub const ADMIN_UNIT_DIR: &str = "etc/systemd/system";

/// Where packages ship units (relative to the root), most specific first. Debian 12
/// still uses /lib; merged-/usr systems see the same files under /usr/lib.
pub const PACKAGE_UNIT_DIRS: [&str; 2] = ["usr/lib/systemd/system", "lib/systemd/system"];

/// The umbrella unit: `systemctl start|stop|reload|restart iptables` acts on every
/// enabled instance through it.
pub const UMBRELLA: &str = "iptables.service";

/// The units whose wants name the enabled instances: the targets of the rules unit's
/// `[Install]` section, and the umbrella (where earlier installs linked them).
pub fn instance_holders() -> Vec<String> {
    let mut holders =
        shipped_unit("iptables@.service").map_or_else(Vec::new, |u| wanted_by(u.text));
    holders.push(UMBRELLA.to_owned());
    holders
}

/// The instance name of a rules unit (`iptables@base.service` gives `base`).
pub fn instance_of(unit: &str) -> Option<&str> {
    unit.strip_prefix("iptables@")?
        .strip_suffix(".service")
        .filter(|name| !name.is_empty())
}

/// The units one instance runs as.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InstanceUnits {
    /// `iptables.service`: the umbrella.
    pub umbrella: String,
    /// `iptables@INSTANCE.service`: loads the rules at boot, reloads, stops.
    pub rules: String,
    /// `iptables-docker@INSTANCE.service`: re-asserts the rules after Docker starts.
    pub docker: String,
    /// `iptables-rollback@INSTANCE.timer`: the transient timer of an unconfirmed apply,
    /// which starts `iptables-rollback@INSTANCE.service` (never enabled).
    pub rollback_timer: String,
}

impl InstanceUnits {
    /// The unit names for `instance`.
    pub fn new(instance: &InstanceName) -> InstanceUnits {
        InstanceUnits {
            umbrella: UMBRELLA.to_owned(),
            rules: format!("iptables@{instance}.service"),
            docker: format!("iptables-docker@{instance}.service"),
            rollback_timer: format!("iptables-rollback@{instance}.timer"),
        }
    }

    /// The three units that are enabled, in that order.
    pub fn all(&self) -> [&str; 3] {
        [&self.umbrella, &self.rules, &self.docker]
    }
}

/// True when a unit file's text is one of ours.
pub fn is_ours(text: &str) -> bool {
    text.starts_with(OWNERSHIP_MARK)
}

/// The template file a unit name is loaded from: `iptables@base.service` comes from
/// `iptables@.service`.
pub fn template_file_name(unit: &str) -> String {
    match (unit.split_once('@'), unit.rsplit_once('.')) {
        (Some((prefix, _)), Some((_, suffix))) => format!("{prefix}@.{suffix}"),
        _ => unit.to_owned(),
    }
}

/// The shipped unit file `unit` is loaded from (its template for an instance).
pub fn shipped_unit(unit: &str) -> Option<&'static ShippedUnit> {
    let file = template_file_name(unit);
    SHIPPED_UNITS.iter().find(|u| u.file_name == file)
}

/// The targets whose `.wants/` directory enabling a unit links it into: the
/// `WantedBy=` values of its `[Install]` section.
pub fn wanted_by(unit_text: &str) -> Vec<String> {
    let mut in_install = false;
    let mut targets = Vec::new();
    for line in unit_text.lines().map(str::trim) {
        if line.starts_with('[') {
            in_install = line == "[Install]";
        } else if in_install && let Some(value) = line.strip_prefix("WantedBy=") {
            targets.extend(value.split_whitespace().map(str::to_owned));
        }
    }
    targets
}

/// One enablement symlink: `link` (under the root) pointing at `target` (an absolute
/// path as seen on the booted system).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EnableLink {
    /// The symlink, under the root.
    pub link: PathBuf,
    /// Where it points, as the booted system sees it.
    pub target: PathBuf,
}

/// The symlinks that enable `unit` (an instance name for templates) whose shipped
/// file is `unit_path` (absolute, as the booted system sees it): those of its
/// `[Install]` section's `WantedBy=` and of the services it is hooked into.
pub fn enable_links(
    root: &Path,
    unit: &str,
    unit_path: &Path,
    shipped: &ShippedUnit,
) -> Vec<EnableLink> {
    wanted_by(shipped.text)
        .into_iter()
        .chain(shipped.hooked_into.iter().map(|&s| s.to_owned()))
        .map(|target| EnableLink {
            link: wants_link(root, &target, unit),
            target: unit_path.to_owned(),
        })
        .collect()
}

/// The symlink (under `root`) by which `target` wants `unit`.
pub fn wants_link(root: &Path, target: &str, unit: &str) -> PathBuf {
    root.join(ADMIN_UNIT_DIR)
        .join(format!("{target}.wants"))
        .join(unit)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_shipped_unit_carries_the_mark() {
        for unit in SHIPPED_UNITS {
            assert!(is_ours(unit.text), "{}", unit.file_name);
        }
    }

    #[test]
    fn install_targets_are_read_from_the_install_section_only() {
        let text = "[Unit]\nWantedBy=nope.target\n[Install]\nWantedBy=multi-user.target docker.service\nWantedBy=x.target\n";
        assert_eq!(
            wanted_by(text),
            ["multi-user.target", "docker.service", "x.target"]
        );
    }

    #[test]
    fn rules_units_name_their_instance() {
        assert_eq!(instance_of("iptables@base.service"), Some("base"));
        assert_eq!(instance_of("iptables-docker@base.service"), None);
        assert_eq!(instance_of("iptables@.service"), None);
        assert_eq!(instance_of("iptables.service"), None);
    }

    #[test]
    fn instances_map_to_their_template() {
        assert_eq!(
            template_file_name("iptables@base.service"),
            "iptables@.service"
        );
        assert_eq!(template_file_name("iptables.service"), "iptables.service");
    }

    #[test]
    fn enable_links_follow_systemctl_enable_and_add_wants() {
        let links = enable_links(
            Path::new("/stage"),
            "iptables-docker@base.service",
            Path::new("/etc/systemd/system/iptables-docker@.service"),
            &SHIPPED_UNITS[2],
        );
        assert_eq!(
            links,
            [EnableLink {
                link: "/stage/etc/systemd/system/docker.service.wants/iptables-docker@base.service"
                    .into(),
                target: "/etc/systemd/system/iptables-docker@.service".into(),
            }]
        );
    }
}
