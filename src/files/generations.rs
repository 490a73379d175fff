//! The generations of an instance: each rule set that became the instance's own
//! (install, reload, confirm, rollback) kept under `/var/lib/iptables-ctl/generations/
//! INSTANCE/N/`, the last [`KEPT`] of them: the policy as it was, the rendered files and
//! what the kernel held after the load (`live-ipv4.save`, `live-ipv6.save`, when there
//! is a live kernel), and `generation.json` (when, by which command and version),
//! written last so that a generation without it is one a killed run left half-written
//! and is not one. `rollback` returns to the one before the newest.

use std::fs;
use std::os::unix::fs::PermissionsExt as _;
use std::path::PathBuf;
use std::time::{SystemTime, UNIX_EPOCH};

use anyhow::Context as _;
use serde::{Deserialize, Serialize};

use crate::files::layout::Layout;
use crate::files::{self, source};
use crate::policy::types::InstanceName;

/// How many generations are kept per instance.
pub const KEPT: usize = 10;

/// The record that completes a generation.
const RECORD: &str = "generation.json";
/// The policy as it was.
pub const POLICY: &str = "policy.toml";
/// A record is a few hundred bytes; a policy is bounded as the policy loader bounds it.
const RECORD_LIMIT: u64 = 64 * 1024;

/// One kept generation, as `status` and `rollback` see it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Generation {
    /// Its number, counting up from 1 per instance.
    pub number: u64,
    /// When it became the instance's own (seconds since the epoch).
    pub unix_time: u64,
    /// The command that made it (`install`, `reload`, `confirm`, `rollback`).
    pub command: String,
    /// The version of iptables-ctl that rendered it.
    pub version: String,
    /// The policy file it was loaded from (`rollback` writes it back there only).
    pub policy_path: PathBuf,
}

/// The generations of one instance.
#[derive(Debug, Clone)]
pub struct Generations {
    dir: PathBuf,
}

impl Generations {
    /// The generations of `instance` under `layout`.
    pub fn of(layout: &Layout, instance: &InstanceName) -> Generations {
        Generations {
            dir: layout
                .state_dir()
                .join("generations")
                .join(instance.as_str()),
        }
    }

    /// The complete generations, oldest first.
    pub fn list(&self) -> anyhow::Result<Vec<Generation>> {
        let entries = match fs::read_dir(&self.dir) {
            Ok(entries) => entries,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(e).with_context(|| format!("cannot read {}", self.dir.display())),
        };
        let mut found = Vec::new();
        for entry in entries {
            let entry = entry.with_context(|| format!("cannot read {}", self.dir.display()))?;
            let Some(number) = entry
                .file_name()
                .to_str()
                .and_then(|n| n.parse::<u64>().ok())
            else {
                continue;
            };
            // No record, or one that does not read: not a generation (a killed run left
            // it half-written, or it is not the tool's); the others still count.
            let record = source::read_if_present(&entry.path().join(RECORD), RECORD_LIMIT)
                .ok()
                .flatten()
                .and_then(|bytes| serde_json::from_slice::<Generation>(&bytes).ok());
            if let Some(generation) = record.filter(|g| g.number == number) {
                found.push(generation);
            }
        }
        found.sort_by_key(|g| g.number);
        Ok(found)
    }

    /// Keeps `policy`, the rendered `files` and the `live` snapshots (each `(name,
    /// text)`) as the next generation, made by `command`, and drops the oldest beyond
    /// [`KEPT`]; returns it. When the newest generation already holds this policy and
    /// these files, nothing is kept (a run that changed nothing adds no generation) and
    /// None is returned.
    pub fn record(
        &self,
        command: &str,
        policy_path: &std::path::Path,
        policy: &str,
        files: &[(String, String)],
        live: &[(String, String)],
    ) -> anyhow::Result<Option<Generation>> {
        let newest = self.list()?.pop();
        if let Some(newest) = &newest
            && newest.policy_path == policy_path
            && self.holds(newest, policy, files)
        {
            return Ok(None);
        }
        let number = match newest {
            Some(g) => g
                .number
                .checked_add(1)
                .context("no generation number is left")?,
            None => 1,
        };
        let dir = self.dir.join(number.to_string());
        // Whatever a killed run left under this number is not a generation.
        if dir.exists() {
            fs::remove_dir_all(&dir).with_context(|| format!("cannot remove {}", dir.display()))?;
        }
        files::create_dirs(&dir)?;
        // Copies of the policy and of iptables-save: for root only, as the originals.
        fs::set_permissions(&self.dir, fs::Permissions::from_mode(0o700))
            .with_context(|| format!("cannot restrict {}", self.dir.display()))?;
        let mut all = vec![(POLICY.to_owned(), policy.to_owned())];
        all.extend(files.iter().cloned());
        all.extend(live.iter().cloned());
        files::write_files(&dir, &all)?;
        let generation = Generation {
            number,
            unix_time: SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map_or(0, |d| d.as_secs()),
            command: command.to_owned(),
            version: crate::files::stamp::VERSION.to_owned(),
            policy_path: policy_path.to_owned(),
        };
        let text =
            serde_json::to_string_pretty(&generation).context("cannot encode the generation")?;
        files::write_files(&dir, &[(RECORD.to_owned(), text)])?;
        self.prune()?;
        Ok(Some(generation))
    }

    /// Whether `generation` holds exactly `policy` and `files`.
    pub fn holds(&self, generation: &Generation, policy: &str, files: &[(String, String)]) -> bool {
        let dir = self.path(generation);
        let same = |name: &str, text: &str| {
            source::read_if_present(&dir.join(name), crate::files::set::OUTPUT_LIMIT)
                .ok()
                .flatten()
                .is_some_and(|bytes| bytes == text.as_bytes())
        };
        same(POLICY, policy) && files.iter().all(|(name, text)| same(name, text))
    }

    /// The policy text of `generation`.
    pub fn policy(&self, generation: &Generation) -> anyhow::Result<String> {
        let path = self.path(generation).join(POLICY);
        let bytes = source::read(&path, source::POLICY_LIMIT)?;
        String::from_utf8(bytes).with_context(|| format!("{} is not text", path.display()))
    }

    /// Where `generation` is kept.
    pub fn path(&self, generation: &Generation) -> PathBuf {
        self.dir.join(generation.number.to_string())
    }

    /// Drops the oldest complete generations beyond [`KEPT`].
    fn prune(&self) -> anyhow::Result<()> {
        let all = self.list()?;
        for old in all.iter().take(all.len().saturating_sub(KEPT)) {
            let path = self.path(old);
            fs::remove_dir_all(&path)
                .with_context(|| format!("cannot remove {}", path.display()))?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;

    fn store() -> (tempfile::TempDir, Generations) {
        let root = tempfile::tempdir().unwrap();
        let instance: InstanceName = "base".parse().unwrap();
        let generations = Generations::of(&Layout::new(root.path()), &instance);
        (root, generations)
    }

    #[test]
    fn generations_count_up_keep_their_policy_and_files_and_the_last_ten() {
        let (_root, generations) = store();
        for n in 1..=12u64 {
            let files = [("base.rules".to_owned(), format!("rules {n}\n"))];
            let kept = generations
                .record(
                    "reload",
                    Path::new("/p.toml"),
                    &format!("# policy {n}\n"),
                    &files,
                    &[],
                )
                .unwrap()
                .unwrap();
            assert_eq!(kept.number, n);
            // The same again is no new generation.
            let again = generations.record(
                "reload",
                Path::new("/p.toml"),
                &format!("# policy {n}\n"),
                &files,
                &[],
            );
            assert_eq!(again.unwrap(), None);
        }
        let all = generations.list().unwrap();
        let numbers: Vec<u64> = all.iter().map(|g| g.number).collect();
        assert_eq!(numbers, (3..=12).collect::<Vec<u64>>(), "the last {KEPT}");
        let newest = all.last().unwrap();
        assert_eq!(generations.policy(newest).unwrap(), "# policy 12\n");
        assert_eq!(
            fs::read_to_string(generations.path(newest).join("base.rules")).unwrap(),
            "rules 12\n"
        );
        assert_eq!(newest.command, "reload");
    }

    #[test]
    fn a_generation_a_killed_run_left_without_its_record_is_none_and_is_replaced() {
        let (_root, generations) = store();
        generations
            .record("install", Path::new("/p.toml"), "# one\n", &[], &[])
            .unwrap();
        // Killed after the files, before the record.
        let half = generations.dir.join("2");
        fs::create_dir_all(&half).unwrap();
        fs::write(half.join(POLICY), "# half\n").unwrap();
        assert_eq!(generations.list().unwrap().len(), 1);
        let next = generations
            .record("reload", Path::new("/p.toml"), "# two\n", &[], &[])
            .unwrap()
            .unwrap();
        assert_eq!(next.number, 2);
        assert_eq!(generations.policy(&next).unwrap(), "# two\n");
    }
}
