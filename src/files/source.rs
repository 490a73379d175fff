//! Reading the files the rules come from (policies and admin templates) as a root tool
//! must: each is a regular file no larger than its limit, read once through one open
//! handle (a FIFO or a device is refused before it can block or grow without end), and
//! refused unless only root (or the user running the tool) can change it, the way
//! sshd's StrictModes judges a user's keys: the file and every directory above it must
//! be owned by root or by the caller, and writable by nobody else (a sticky directory
//! such as /tmp may be world-writable: only an entry's owner can replace it there).
//! A file that changes while it is read (an editor rewriting it in place) is read again,
//! so a torn copy is never used.

use std::fs;
use std::io::{self, Read as _};
use std::os::unix::fs::{MetadataExt as _, OpenOptionsExt as _};
use std::path::{Path, PathBuf};

use nix::fcntl::OFlag;
use nix::unistd::geteuid;

/// The most a policy file may hold.
pub const POLICY_LIMIT: u64 = 4 * 1024 * 1024;

/// The most an admin template may hold.
pub const TEMPLATE_LIMIT: u64 = 256 * 1024;

/// How often a file that keeps changing while it is read is tried.
const READ_ATTEMPTS: usize = 3;

/// Why a source file was not used.
#[derive(Debug, thiserror::Error)]
pub enum SourceError {
    /// The system refused to open or read it.
    #[error(transparent)]
    Io(#[from] io::Error),
    /// It is not a regular file.
    #[error("expected a regular file, found a {0}")]
    NotRegular(&'static str),
    /// It is larger than its limit.
    #[error("expected at most {limit} bytes, found {size} (the limit keeps every run bounded)")]
    TooLarge {
        /// Its size.
        size: u64,
        /// The limit.
        limit: u64,
    },
    /// Someone other than root (or the caller) could have written it.
    #[error(
        "{} is {why}: whoever can change it can change the firewall (expected owner root and no write access for group or others: `chown root:root` and `chmod go-w` it)",
        path.display()
    )]
    Untrusted {
        /// The file or directory at fault.
        path: PathBuf,
        /// What is wrong with it.
        why: String,
    },
    /// It kept changing while it was read.
    #[error(
        "it changed while it was read, {READ_ATTEMPTS} times; try again when it is no longer being written"
    )]
    Unstable,
}

/// Reads `path` (see the module docs); a missing file is an [`io::ErrorKind::NotFound`]
/// error.
pub fn read(path: &Path, limit: u64) -> Result<Vec<u8>, SourceError> {
    check_directories(path)?;
    for _ in 0..READ_ATTEMPTS {
        let (mut file, before) = open_regular(path, limit)?;
        check_trusted(path, &before, false)?;
        let mut bytes = Vec::new();
        (&mut file).take(limit + 1).read_to_end(&mut bytes)?;
        let after = file.metadata()?;
        let unchanged = bytes.len() as u64 == after.len()
            && (
                before.mtime(),
                before.mtime_nsec(),
                before.ctime(),
                before.ctime_nsec(),
            ) == (
                after.mtime(),
                after.mtime_nsec(),
                after.ctime(),
                after.ctime_nsec(),
            );
        if unchanged {
            return Ok(bytes);
        }
        if bytes.len() as u64 > limit {
            return Err(SourceError::TooLarge {
                size: bytes.len() as u64,
                limit,
            });
        }
    }
    Err(SourceError::Unstable)
}

/// Reads `path` like [`read`], or `None` when there is no such file.
pub fn read_if_present(path: &Path, limit: u64) -> Result<Option<Vec<u8>>, SourceError> {
    match read(path, limit) {
        Ok(bytes) => Ok(Some(bytes)),
        Err(SourceError::Io(e)) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(other) => Err(other),
    }
}

/// Opens `path` if it is a regular file of at most `limit` bytes, with its metadata.
/// A FIFO is refused without waiting for a writer (it is opened `O_NONBLOCK`), a device
/// before it is read.
fn open_regular(path: &Path, limit: u64) -> Result<(fs::File, fs::Metadata), SourceError> {
    let file = fs::OpenOptions::new()
        .read(true)
        .custom_flags(OFlag::O_NONBLOCK.bits())
        .open(path)?;
    let meta = file.metadata()?;
    check_regular(&meta, limit)?;
    Ok((file, meta))
}

/// Reads a file this tool wrote itself (a rendered rules file), following symlinks:
/// a regular file of at most `limit` bytes, with its metadata, or `None` when there is
/// none. Ownership is not judged: these files are outputs, not sources.
pub fn read_output(
    path: &Path,
    limit: u64,
) -> Result<Option<(Vec<u8>, fs::Metadata)>, SourceError> {
    let (mut file, meta) = match open_regular(path, limit) {
        Ok(opened) => opened,
        Err(SourceError::Io(e)) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(other) => return Err(other),
    };
    let mut bytes = Vec::new();
    (&mut file).take(limit + 1).read_to_end(&mut bytes)?;
    if bytes.len() as u64 > limit {
        return Err(SourceError::TooLarge {
            size: bytes.len() as u64,
            limit,
        });
    }
    Ok(Some((bytes, meta)))
}

/// The most a system file the tool consults may hold (a unit file, sshd_config, ufw's
/// switch, its own records under /run).
pub const CONSULTED_LIMIT: u64 = 1024 * 1024;

/// The text of a system file the tool only consults: `None` unless it is a regular
/// file of at most [`CONSULTED_LIMIT`] bytes of UTF-8 (a FIFO in its place cannot block
/// a run, a device cannot make it grow).
pub fn read_consulted(path: &Path) -> Option<String> {
    let (bytes, _) = read_output(path, CONSULTED_LIMIT).ok()??;
    String::from_utf8(bytes).ok()
}

fn check_regular(meta: &fs::Metadata, limit: u64) -> Result<(), SourceError> {
    let kind = meta.file_type();
    if !kind.is_file() {
        use std::os::unix::fs::FileTypeExt as _;
        return Err(SourceError::NotRegular(if kind.is_dir() {
            "directory"
        } else if kind.is_fifo() {
            "FIFO"
        } else if kind.is_char_device() || kind.is_block_device() {
            "device"
        } else if kind.is_socket() {
            "socket"
        } else {
            "special file"
        }));
    }
    if meta.len() > limit {
        return Err(SourceError::TooLarge {
            size: meta.len(),
            limit,
        });
    }
    Ok(())
}

/// Refuses `dir` when it, or a directory above it, could be changed by anyone but root
/// (or the caller): the directory the rules are written to is held to the same rule
/// as the files they come from.
pub fn check_directory(dir: &Path) -> Result<(), SourceError> {
    check_ancestors(dir, 0)
}

/// Every directory above `path`, as written and as resolved through symlinks.
fn check_directories(path: &Path) -> Result<(), SourceError> {
    check_ancestors(path, 1)
}

/// `path`'s ancestors but the first `skip`, as written and as resolved through symlinks.
fn check_ancestors(path: &Path, skip: usize) -> Result<(), SourceError> {
    let absolute = std::path::absolute(path)?;
    let resolved = fs::canonicalize(&absolute).unwrap_or_else(|_| absolute.clone());
    let walks = if resolved == absolute {
        vec![&absolute]
    } else {
        vec![&absolute, &resolved]
    };
    for start in walks {
        for dir in start.ancestors().skip(skip) {
            match fs::metadata(dir) {
                Ok(meta) => check_trusted(dir, &meta, true)?,
                // A directory that is not there holds no file: opening reports it.
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(e) => return Err(e.into()),
            }
        }
    }
    Ok(())
}

fn check_trusted(path: &Path, meta: &fs::Metadata, is_dir: bool) -> Result<(), SourceError> {
    let caller = geteuid().as_raw();
    let untrusted = |why: String| SourceError::Untrusted {
        path: path.to_owned(),
        why,
    };
    if meta.uid() != 0 && meta.uid() != caller {
        return Err(untrusted(format!(
            "owned by uid {}, neither root nor the user running iptables-ctl",
            meta.uid()
        )));
    }
    let mode = meta.mode();
    let sticky = is_dir && mode & 0o1000 != 0;
    if sticky {
        return Ok(());
    }
    if mode & 0o002 != 0 {
        return Err(untrusted(format!(
            "writable by anyone (mode {:04o})",
            mode & 0o7777
        )));
    }
    if mode & 0o020 != 0 && meta.gid() != 0 {
        return Err(untrusted(format!(
            "writable by group {} (mode {:04o})",
            meta.gid(),
            mode & 0o7777
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt as _;

    use super::*;

    #[test]
    fn refuses_what_others_could_have_written_or_what_is_not_a_bounded_regular_file() {
        let dir = tempfile::tempdir().expect("tempdir");
        let file = dir.path().join("base.toml");
        fs::write(&file, "x = 1\n").expect("write");
        assert_eq!(
            read(&file, 100).expect("a root-owned 0644 file"),
            b"x = 1\n"
        );

        fs::set_permissions(&file, fs::Permissions::from_mode(0o666)).expect("chmod");
        assert!(matches!(
            read(&file, 100),
            Err(SourceError::Untrusted { .. })
        ));
        fs::set_permissions(&file, fs::Permissions::from_mode(0o644)).expect("chmod");

        fs::set_permissions(dir.path(), fs::Permissions::from_mode(0o777)).expect("chmod");
        let error = read(&file, 100).expect_err("a world-writable directory");
        assert!(
            error.to_string().contains("writable by anyone (mode 0777)"),
            "{error}"
        );
        fs::set_permissions(dir.path(), fs::Permissions::from_mode(0o1777)).expect("chmod");
        assert!(
            read(&file, 100).is_ok(),
            "a sticky directory protects its entries"
        );
        fs::set_permissions(dir.path(), fs::Permissions::from_mode(0o700)).expect("chmod");

        assert!(matches!(
            read(&file, 3),
            Err(SourceError::TooLarge { size: 6, limit: 3 })
        ));
        assert!(matches!(
            read(Path::new("/dev/zero"), 100),
            Err(SourceError::NotRegular("device"))
        ));
        assert!(matches!(
            read(dir.path(), 100),
            Err(SourceError::NotRegular("directory"))
        ));
        let fifo = dir.path().join("fifo");
        nix::unistd::mkfifo(&fifo, nix::sys::stat::Mode::from_bits_truncate(0o600))
            .expect("mkfifo");
        assert!(matches!(
            read(&fifo, 100),
            Err(SourceError::NotRegular("FIFO"))
        ));
        assert!(
            read_if_present(&dir.path().join("none"), 100)
                .expect("absent")
                .is_none()
        );
    }
}
