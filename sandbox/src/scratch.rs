//! Where sandboxes keep files on the host: the shared busybox root, guest
//! images, OCI bundles, runsc state and QEMU's scratch.
//!
//! They all live under one base directory that only this user may write:
//! `/var/cache/symbiont-sandbox` when running as root,
//! `$XDG_RUNTIME_DIR/symbiont-sandbox` (or `~/.cache/symbiont/sandbox`)
//! otherwise, `SYMBIONT_SANDBOX_DIR` to choose. The base is created mode
//! 0711 (others may pass through it, not list it) and used only while it is a real directory (its path has no symbolic link),
//! owned by us and writable by nobody else, under directories that nobody
//! but root or us may write (or sticky ones): no one else can move it
//! away or put another in its place. Inside it, cached files have
//! predictable names (nobody else can plant one), and per-run directories
//! are created exclusively under random names, mode 0700 ([`Private`]).
//! Files are written with [`create_new`]: never through a planted link or
//! over an existing file.
//!
//! Root's base is not under `$TMPDIR`: a world-writable one let other users
//! plant the names sandboxes took, and with a private one (mode 0700, as
//! `mktemp -d` makes it) every gVisor stage was reported to fail.

use std::fs::File;
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use crate::SandboxError;

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> SandboxError + '_ {
    move |source| SandboxError::Root {
        path: path.to_owned(),
        source,
    }
}

/// The base directory, created if missing; an error if it is not ours
/// alone.
pub(crate) fn base() -> Result<PathBuf, SandboxError> {
    let me = nix::unistd::geteuid();
    let home = |var: &str, sub: &str| std::env::var_os(var).map(|d| PathBuf::from(d).join(sub));
    let dir = match std::env::var_os("SYMBIONT_SANDBOX_DIR") {
        Some(d) => PathBuf::from(d),
        None if me.is_root() => PathBuf::from("/var/cache/symbiont-sandbox"),
        None => home("XDG_RUNTIME_DIR", "symbiont-sandbox")
            .or_else(|| home("HOME", ".cache/symbiont/sandbox"))
            .ok_or_else(|| {
                io(Path::new("$HOME"))(std::io::Error::other(
                    "neither XDG_RUNTIME_DIR nor HOME is set: set SYMBIONT_SANDBOX_DIR",
                ))
            })?,
    };
    if let Some(parent) = dir.parent() {
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o755)
            .create(parent)
            .map_err(io(parent))?;
    }
    match std::fs::DirBuilder::new().mode(0o711).create(&dir) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
        Err(e) => return Err(io(&dir)(e)),
    }
    check_ancestors(&dir, me.as_raw())?;
    let meta = std::fs::symlink_metadata(&dir).map_err(io(&dir))?;
    if !meta.is_dir() || meta.uid() != me.as_raw() || meta.mode() & 0o022 != 0 {
        return Err(io(&dir)(std::io::Error::other(format!(
            "the sandbox directory must be a directory owned by uid {me} that nobody else may write (it is {}, owner {}, mode {:o}); remove it or set SYMBIONT_SANDBOX_DIR",
            if meta.is_symlink() {
                "a symbolic link"
            } else if meta.is_dir() {
                "a directory"
            } else {
                "a file"
            },
            meta.uid(),
            meta.mode() & 0o7777
        ))));
    }
    // Made with a narrower mode (by hand, or under a umask of 077).
    if meta.mode() & 0o111 != 0o111 {
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o711)).map_err(io(&dir))?;
    }
    Ok(dir)
}

/// Refuses a base whose path goes through a symbolic link or a directory
/// that someone other than root or `me` may write (unless it is sticky and
/// the entry below it is ours or root's): whoever could would rename the
/// base away and put their own in its place.
fn check_ancestors(dir: &Path, me: u32) -> Result<(), SandboxError> {
    let canonical = std::fs::canonicalize(dir).map_err(io(dir))?;
    if canonical != dir {
        return Err(io(dir)(std::io::Error::other(format!(
            "the sandbox directory's path must have no symbolic link (it is {})",
            canonical.display()
        ))));
    }
    let owner_ok = |uid: u32| uid == 0 || uid == me;
    let mut below: Option<u32> = None;
    for ancestor in dir.ancestors() {
        let meta = std::fs::symlink_metadata(ancestor).map_err(io(ancestor))?;
        let writable = meta.mode() & 0o022 != 0;
        let sticky = meta.mode() & 0o1000 != 0;
        let open = writable && !(sticky && below.is_some_and(owner_ok));
        if !owner_ok(meta.uid()) || open {
            return Err(io(dir)(std::io::Error::other(format!(
                "the sandbox directory is under {}, which others may write (owner {}, mode {:o}): set SYMBIONT_SANDBOX_DIR elsewhere",
                ancestor.display(),
                meta.uid(),
                meta.mode() & 0o7777
            ))));
        }
        below = Some(meta.uid());
    }
    Ok(())
}

/// A directory of one run, created exclusively under a random name in the
/// base directory (mode 0700) and removed on drop.
#[derive(Debug)]
pub(crate) struct Private(tempfile::TempDir);

impl Private {
    /// A new one named `prefix` and random characters.
    pub(crate) fn new(prefix: &str) -> Result<Private, SandboxError> {
        let base = base()?;
        tempfile::Builder::new()
            .prefix(prefix)
            .rand_bytes(12)
            .permissions(std::fs::Permissions::from_mode(0o700))
            .tempdir_in(&base)
            .map(Private)
            .map_err(io(&base))
    }

    /// Its path.
    pub(crate) fn path(&self) -> &Path {
        self.0.path()
    }
}

/// Creates `path`, which must not exist (a link there is not followed),
/// for writing, with `mode`.
pub(crate) fn create_new(path: &Path, mode: u32) -> Result<File, SandboxError> {
    std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .custom_flags(nix::libc::O_NOFOLLOW)
        .mode(mode)
        .open(path)
        .map_err(io(path))
}

/// Writes `bytes` to a new file at `path` (see [`create_new`]).
pub(crate) fn write_new(path: &Path, bytes: &[u8], mode: u32) -> Result<(), SandboxError> {
    use std::io::Write;
    create_new(path, mode)?.write_all(bytes).map_err(io(path))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn private_directories_are_new_and_closed() {
        let a = Private::new("t-").unwrap();
        let b = Private::new("t-").unwrap();
        assert_ne!(a.path(), b.path());
        let meta = std::fs::metadata(a.path()).unwrap();
        assert_eq!(meta.mode() & 0o777, 0o700);
        let base = std::fs::metadata(base().unwrap()).unwrap();
        assert_eq!(base.mode() & 0o022, 0);
    }

    #[test]
    fn new_files_never_follow_a_link_nor_replace_a_file() {
        let dir = Private::new("t-").unwrap();
        let victim = dir.path().join("victim");
        std::fs::write(&victim, b"kept").unwrap();
        let link = dir.path().join("config.json");
        std::os::unix::fs::symlink(&victim, &link).unwrap();
        assert!(write_new(&link, b"spec", 0o600).is_err());
        assert!(write_new(&victim, b"spec", 0o600).is_err());
        assert_eq!(std::fs::read(&victim).unwrap(), b"kept");
        write_new(&dir.path().join("fresh"), b"spec", 0o600).unwrap();
    }
}
