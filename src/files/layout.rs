//! Where an instance's files live, relative to a root directory: `/` on a live system,
//! or a staged tree (`--root`) that boots later. Every path the tool reads or writes
//! is derived here, so a staged run never touches the host it runs on.

use std::path::{Path, PathBuf};

use crate::policy::types::InstanceName;

/// Where things live, relative to a root directory (`/` on a live system).
#[derive(Debug, Clone)]
pub struct Layout {
    root: PathBuf,
    /// Where the run state lives when not under `root`: the files of a pending apply
    /// are laid out under a root of their own, but they are loaded into the same
    /// kernel as the instance's, so what guards the kernel (`run_dir`) is the
    /// instance's.
    run_root: Option<PathBuf>,
}

impl Layout {
    /// A layout under `root`.
    pub fn new(root: impl Into<PathBuf>) -> Layout {
        Layout {
            root: root.into(),
            run_root: None,
        }
    }

    /// The root directory.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// `path` as the booted system sees it: without the root prefix when it lies under
    /// the root, unchanged otherwise.
    pub fn as_booted(&self, path: &Path) -> PathBuf {
        match path.strip_prefix(&self.root) {
            Ok(inner) => Path::new("/").join(inner),
            Err(_) => path.to_owned(),
        }
    }

    /// `/etc/iptables`: policies and rendered files.
    pub fn config_dir(&self) -> PathBuf {
        self.root.join("etc/iptables")
    }

    /// `/etc/iptables/<instance>.toml`.
    pub fn policy_path(&self, instance: &InstanceName) -> PathBuf {
        self.config_dir().join(format!("{instance}.toml"))
    }

    /// `/var/lib/iptables-ctl`: what is kept across boots (the generations).
    pub fn state_dir(&self) -> PathBuf {
        self.root.join("var/lib/iptables-ctl")
    }

    /// `/run/iptables-ctl`: what the units record for `status` until the next boot.
    pub fn run_dir(&self) -> PathBuf {
        self.run_root
            .as_ref()
            .unwrap_or(&self.root)
            .join("run/iptables-ctl")
    }

    /// `/run/iptables-ctl/apply/<instance>`: an unconfirmed apply of `instance` (its
    /// record, and its files laid out as under a root, see [`Layout::pending`]). Under
    /// /run, so that a reboot before confirmation forgets it and loads the files of
    /// /etc/iptables, the previous ones.
    pub fn pending_dir(&self, instance: &InstanceName) -> PathBuf {
        self.run_dir().join("apply").join(instance.as_str())
    }

    /// The files of an unconfirmed apply of `instance`, laid out as under a root (their
    /// config directory is `pending_dir/etc/iptables`), so the same file-set code writes,
    /// reads and proves them.
    pub fn pending(&self, instance: &InstanceName) -> Layout {
        Layout {
            root: self.pending_dir(instance),
            run_root: Some(self.run_root.clone().unwrap_or_else(|| self.root.clone())),
        }
    }

    /// `/etc/iptables/templates`: an admin's template overrides.
    pub fn templates_dir(&self) -> PathBuf {
        self.config_dir().join("templates")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A pending apply's files lie under a root of their own, but they are loaded into
    /// the instance's kernel: what guards that kernel (the run directory) is the
    /// instance's.
    #[test]
    fn a_pending_apply_has_its_own_files_and_the_instances_run_directory() {
        let layout = Layout::new("/srv/root");
        let instance: InstanceName = "base".parse().expect("name");
        let pending = layout.pending(&instance);
        assert_eq!(
            pending.config_dir(),
            PathBuf::from("/srv/root/run/iptables-ctl/apply/base/etc/iptables")
        );
        assert_eq!(pending.run_dir(), layout.run_dir());
        assert_eq!(
            layout.run_dir(),
            PathBuf::from("/srv/root/run/iptables-ctl")
        );
    }
}
