//! What the end-to-end tests share: a scratch tree for `symbi` (its state
//! and data directories — audit log, keystore, keys — its `TMPDIR` and the
//! test's outputs live under it, and go when it is dropped), and what the
//! tests read of a finished command.

// Each test crate uses a part of it.
#![allow(dead_code)]

use std::ffi::OsStr;
use std::path::PathBuf;
use std::process::{Command, Output};

/// A scratch tree: `tmp/`, `state/`, `data/` and `out/` under one fresh
/// directory.
pub(crate) struct Tree(pub(crate) PathBuf);

impl Tree {
    /// A fresh tree for test `name` of `suite` (its directory named after
    /// both and the process).
    pub(crate) fn new(suite: &str, name: &str) -> Tree {
        let dir = std::env::temp_dir().join(format!("symbi-{suite}-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        for sub in ["tmp", "state", "data", "out"] {
            std::fs::create_dir_all(dir.join(sub)).unwrap();
        }
        Tree(dir)
    }

    /// `rel` inside the tree.
    pub(crate) fn path(&self, rel: &str) -> PathBuf {
        self.0.join(rel)
    }

    /// `program`, run from the crate's root with this tree's state and
    /// data directories and `TMPDIR`.
    pub(crate) fn command(&self, program: impl AsRef<OsStr>) -> Command {
        let mut cmd = Command::new(program);
        cmd.current_dir(env!("CARGO_MANIFEST_DIR"))
            .env("TMPDIR", self.0.join("tmp"))
            .env("XDG_STATE_HOME", self.0.join("state"))
            .env("XDG_DATA_HOME", self.0.join("data"));
        cmd
    }

    /// `symbi ARGS`, run to the end.
    pub(crate) fn symbi(&self, args: &[&str]) -> Output {
        self.command(env!("CARGO_BIN_EXE_symbi"))
            .args(args)
            .output()
            .unwrap()
    }
}

impl Drop for Tree {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// The exit code (a signal is a failure of the test).
pub(crate) fn code(o: &Output) -> i32 {
    o.status.code().unwrap()
}

/// Bytes as text, lossily.
pub(crate) fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// The standard error, as text.
pub(crate) fn stderr(o: &Output) -> String {
    text(&o.stderr)
}

/// `examples/clinic_costs.symbi`'s source (`source`) with its policy
/// allowing `persist`, which it denies: for tests whose jobs write their
/// dataset out (persisting is an action the policies decide).
pub(crate) fn allow_persist(source: &str) -> String {
    let changed = source
        .replace(
            r#"allow: ["read", "analyze", "aggregate"];"#,
            r#"allow: ["read", "analyze", "aggregate", "persist"];"#,
        )
        .replace(
            r#"deny: ["export", "persist", "share"];"#,
            r#"deny: ["export", "share"];"#,
        );
    assert_ne!(changed, source, "clinic_costs' policy as expected");
    changed
}
