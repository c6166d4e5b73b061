//! Sandbox tiers for Symbiont stages.
//!
//! Built so far: **tier 3, microVM** ([`Tier::MicroVm`]: QEMU `microvm`
//! booting the Debian cloud kernel with a busybox initramfs),
//! **tier 2, gVisor** ([`Tier::Gvisor`]: `runsc` with a
//! generated OCI bundle, `--network=none`, read-only root, memory and pids
//! limits) and **tier 1, native** ([`run`] with [`Tier::Native`]): new
//! user, pid, network, mount, IPC and UTS namespaces; a read-only minimal
//! root (busybox) with a size-limited scratch `/tmp`; memory and pids
//! limits through cgroups (v1 or v2); rlimits; an unprivileged identity
//! with no capabilities; `no_new_privs`; a Landlock ruleset; and a seccomp
//! allowlist kept as a reviewed data file (`seccomp/tier1.json`) compiled
//! at build time. [`doctor`] says which tiers this host can provide and
//! why not. The worker protocol and the engine's use of tiers are not
//! built yet. A tier the host cannot provide fails, never downgrades.
//!
//! A binary that runs sandboxes must call [`init_main`] first thing in
//! `main` when its first argument is [`INIT_ARG`]: the sandbox's init is
//! that binary, re-executed.
//!
//! `unsafe` is denied here except for one `fork` in init, where the
//! process is known to be single-threaded (`SAFETY` comment there).
#![deny(unsafe_code)]

mod cgroup;
mod child;
mod gvisor;
mod landlock;
mod microvm;
mod native;
mod seccomp;

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

pub use native::init_main;

/// The first argument that makes a binary act as the sandbox's init.
pub const INIT_ARG: &str = "__symbiont-sandbox-init";

/// A sandbox tier.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Tier {
    /// 1: namespaces, seccomp, Landlock, cgroups.
    Native = 1,
    /// 2: gVisor (`runsc`).
    Gvisor = 2,
    /// 3: a microVM (QEMU, or Firecracker with KVM).
    MicroVm = 3,
}

impl Tier {
    /// The tier numbered `n`.
    pub fn from_number(n: u8) -> Option<Tier> {
        match n {
            1 => Some(Tier::Native),
            2 => Some(Tier::Gvisor),
            3 => Some(Tier::MicroVm),
            _ => None,
        }
    }
}

/// The limits of one sandbox.
#[derive(Clone, Debug)]
pub struct Limits {
    /// Memory, bytes (cgroup).
    pub memory_bytes: u64,
    /// Processes and threads (cgroup).
    pub pids: u64,
    /// The scratch `/tmp`, bytes (tmpfs size).
    pub scratch_bytes: u64,
    /// Wall time before everything in the sandbox is killed.
    pub timeout: Duration,
}

impl Default for Limits {
    fn default() -> Limits {
        Limits {
            memory_bytes: 256 << 20,
            pids: 64,
            scratch_bytes: 64 << 20,
            timeout: Duration::from_secs(60),
        }
    }
}

/// How the sandboxed command ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// It exited with this code (125: the sandbox could not be set up, as
    /// its message on stderr says).
    Exited(i32),
    /// A signal killed it (31, SIGSYS: a system call outside the seccomp
    /// allowlist).
    Signaled(i32),
    /// The memory limit killed it.
    MemoryLimit,
    /// It ran past the timeout and everything in the sandbox was killed.
    TimedOut,
}

/// What [`run`] saw.
#[derive(Clone, Debug)]
pub struct Report {
    /// How it ended.
    pub outcome: Outcome,
    /// Whether the pids limit refused a fork.
    pub pids_limited: bool,
    /// Wall time from the call to the end.
    pub elapsed: Duration,
}

/// Why a sandbox could not run.
#[derive(Debug, thiserror::Error)]
pub enum SandboxError {
    /// The host cannot provide the tier.
    #[error("tier {tier} is not available on this host: {missing}")]
    Unsupported {
        /// The tier.
        tier: u8,
        /// What is missing and how to get it.
        missing: String,
    },
    /// The sandbox root could not be prepared.
    #[error("preparing the sandbox root: {path}: {source}")]
    Root {
        /// The path.
        path: PathBuf,
        /// The error.
        source: std::io::Error,
    },
    /// A cgroup could not be made or written.
    #[error("cgroup {path}: {source}")]
    Cgroup {
        /// The path.
        path: PathBuf,
        /// The error.
        source: std::io::Error,
    },
    /// The init binary could not start.
    #[error("cannot start the sandbox init {path}: {source}")]
    Spawn {
        /// The binary.
        path: PathBuf,
        /// The error.
        source: std::io::Error,
    },
    /// A step of the parent's setup failed.
    #[error("sandbox setup, {what}: {errno}")]
    Setup {
        /// The step.
        what: &'static str,
        /// The error.
        errno: nix::Error,
    },
    /// Init did not behave.
    #[error("the sandbox init failed: {0}")]
    InitFailed(String),
}

pub(crate) fn unique() -> u64 {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    NEXT.fetch_add(1, Ordering::Relaxed)
}

/// Runs `command` (a busybox applet or a path inside the sandbox root) in
/// `tier`, with `init_exe` as the sandbox's init (see [`INIT_ARG`]).
pub fn run(
    tier: Tier,
    init_exe: &Path,
    command: &[String],
    limits: &Limits,
) -> Result<Report, SandboxError> {
    match tier {
        Tier::Native => native::run(init_exe, command, limits),
        Tier::Gvisor => gvisor::run(command, limits),
        Tier::MicroVm => microvm::run(command, limits),
    }
}

/// The shared libraries this process has loaded (from `/proc/self/maps`),
/// and where a copy of this binary run inside a sandbox looks for them.
fn loaded_libraries() -> Vec<(PathBuf, PathBuf)> {
    let maps = std::fs::read_to_string("/proc/self/maps").unwrap_or_default();
    let mut libs: Vec<(PathBuf, PathBuf)> = maps
        .lines()
        .filter_map(|l| l.split_whitespace().nth(5))
        .filter(|p| p.starts_with('/') && p.contains(".so"))
        .map(PathBuf::from)
        .filter_map(|host| {
            let name = host.file_name()?.to_str()?.to_owned();
            let inside = if name.starts_with("ld-linux") {
                PathBuf::from("/lib64").join(&name)
            } else {
                PathBuf::from("/lib/x86_64-linux-gnu").join(&name)
            };
            Some((host, inside))
        })
        .collect();
    libs.sort();
    libs.dedup();
    libs
}

/// Runs `worker` (a binary of this build, e.g. `symbi` itself) with `args`
/// in a sandbox of `tier`, feeding it `input` on stdin and returning what
/// it wrote on stdout: how a stage of a job runs in its tier. The worker
/// and the libraries it loads are bound read-only into the root. Tiers 1
/// and 2 in this build.
pub fn run_stage(
    tier: Tier,
    init_exe: &Path,
    worker: &Path,
    args: &[String],
    limits: &Limits,
    input: Vec<u8>,
) -> Result<(Report, Vec<u8>), SandboxError> {
    let mut binds = loaded_libraries();
    binds.push((worker.to_owned(), PathBuf::from("/bin/symbi-worker")));
    let mut command = vec!["/bin/symbi-worker".to_owned()];
    command.extend(args.iter().cloned());
    match tier {
        Tier::Native => native::run_with(init_exe, &command, limits, binds, Some(input)),
        Tier::Gvisor => gvisor::run_with(&command, limits, binds, Some(input)),
        Tier::MicroVm => Err(SandboxError::Unsupported {
            tier: 3,
            missing: "stages run in tiers 1 and 2 only in this build".into(),
        }),
    }
}

/// One tier as [`doctor`] sees it.
#[derive(Clone, Debug, serde::Serialize)]
pub struct TierStatus {
    /// 1, 2 or 3.
    pub tier: u8,
    /// What it is.
    pub mechanism: &'static str,
    /// Whether this build and host can run it.
    pub available: bool,
    /// What was found, or what is missing and how to get it.
    pub detail: Vec<String>,
}

/// What this host can provide, tier by tier.
pub fn doctor() -> Vec<TierStatus> {
    let mut native = Vec::new();
    let mut ok = true;
    match native::find_busybox() {
        Ok(p) => native.push(format!("busybox: {}", p.display())),
        Err(e) => {
            ok = false;
            native.push(e.to_string());
        }
    }
    match cgroup::describe() {
        Ok(d) => native.push(d.into()),
        Err(e) => {
            ok = false;
            native.push(e);
        }
    }
    let userns = std::fs::read_to_string("/proc/sys/user/max_user_namespaces")
        .ok()
        .and_then(|s| s.trim().parse::<u64>().ok())
        .unwrap_or(0);
    if userns == 0 {
        ok = false;
        native.push("user namespaces are disabled (sysctl user.max_user_namespaces)".into());
    } else {
        native.push(format!("user namespaces: up to {userns}"));
    }
    match landlock::kernel_abi() {
        0 => native.push("Landlock: not enabled in this kernel (the rest still applies)".into()),
        n => native.push(format!("Landlock: ABI {n}")),
    }
    native.push(format!(
        "seccomp: allowlist of {} system calls, compiled in",
        seccomp::allowlist_len()
    ));
    let mut gvisor = Vec::new();
    let mut gvisor_ok = native::find_busybox().is_ok();
    match gvisor::find_runsc() {
        Ok(p) => gvisor.push(format!(
            "runsc: {} (platform {}; SYMBIONT_GVISOR_PLATFORM to change)",
            p.display(),
            gvisor::platform()
        )),
        Err(e) => {
            gvisor_ok = false;
            gvisor.push(e.to_string());
        }
    }
    let mut microvm = Vec::new();
    let mut microvm_ok = native::find_busybox().is_ok();
    for found in [
        microvm::find_qemu().map(|p| format!("qemu: {}", p.display())),
        microvm::find_kernel().map(|p| format!("guest kernel: {}", p.display())),
    ] {
        match found {
            Ok(f) => microvm.push(f),
            Err(e) => {
                microvm_ok = false;
                microvm.push(e.to_string());
            }
        }
    }
    microvm.push(format!(
        "acceleration: {} (SYMBIONT_QEMU_ACCEL=kvm where hardware virtualization works; this \
         host's /dev/kvm is a paravirtual device guests do not boot on, so it is not probed)",
        microvm::accel()
    ));
    microvm
        .push("Firecracker backend: not built (no firecracker binary or working KVM here)".into());
    vec![
        TierStatus {
            tier: 1,
            mechanism: "native: namespaces, seccomp, Landlock, cgroups",
            available: ok,
            detail: native,
        },
        TierStatus {
            tier: 2,
            mechanism: "gVisor (runsc)",
            available: gvisor_ok,
            detail: gvisor,
        },
        TierStatus {
            tier: 3,
            mechanism: "microVM (QEMU microvm / Firecracker)",
            available: microvm_ok,
            detail: microvm,
        },
    ]
}
