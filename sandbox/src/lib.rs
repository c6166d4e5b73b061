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
mod firecracker;
mod gvisor;
mod kvm;
mod landlock;
mod microvm;
mod native;
mod scratch;
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
    /// Wall time before everything in the sandbox is killed, on a clock
    /// that stops while a stage waits for the next bytes of its input from
    /// the job: a stage fed as the job's dataflow runs is timed for its
    /// own work and for holding up its input, not for the job's.
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
    /// It wrote back more than its memory limit, and everything in the
    /// sandbox was killed (what it wrote is dropped).
    OutputLimit,
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
    /// Wall time from the call to the first byte the command wrote back
    /// (a stage's answer), when it was given input.
    pub first_output: Option<Duration>,
}

impl Report {
    /// The exit status `symbi sandbox run` gives for this report, as a
    /// shell would (`128 + signal`, 137 at the memory limit, 124 past the
    /// timeout), and what to say about it.
    pub fn exit_status(&self, limits: &Limits) -> (i32, Vec<String>) {
        let mut said = Vec::new();
        let code = match self.outcome {
            Outcome::Exited(c) => c,
            Outcome::Signaled(s) => {
                let sys = if s == 31 {
                    " (SIGSYS: a system call outside the seccomp allowlist)"
                } else {
                    ""
                };
                said.push(format!("the command was killed by signal {s}{sys}"));
                128 + s
            }
            Outcome::MemoryLimit | Outcome::OutputLimit => {
                said.push(format!(
                    "the command was killed at its memory limit ({} MiB)",
                    limits.memory_bytes >> 20
                ));
                137
            }
            Outcome::TimedOut => {
                said.push(format!(
                    "the command ran past {:?} and was killed",
                    limits.timeout
                ));
                124
            }
        };
        if self.pids_limited {
            said.push(format!(
                "the process limit ({}) refused at least one fork",
                limits.pids
            ));
        }
        (code, said)
    }
}

impl std::fmt::Display for TierStatus {
    /// `symbi sandbox doctor`'s lines for the tier.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let state = if self.available {
            "available"
        } else {
            "NOT available"
        };
        writeln!(f, "tier {} ({}): {state}", self.tier, self.mechanism)?;
        self.detail.iter().try_for_each(|d| writeln!(f, "  {d}"))
    }
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

/// The first `bin` on `PATH`.
pub(crate) fn which(bin: &str) -> Option<PathBuf> {
    std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|p| p.join(bin))
            .find(|p| p.exists())
    })
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
    run_binding(tier, init_exe, command, limits, Vec::new())
}

/// [`run`], with host files (`(host, inside)`) bound read-only into the
/// sandbox root (copied into the microVM's initramfs in tier 3): a probe
/// program for a containment test, a tool for an operator.
pub fn run_binding(
    tier: Tier,
    init_exe: &Path,
    command: &[String],
    limits: &Limits,
    binds: Vec<(PathBuf, PathBuf)>,
) -> Result<Report, SandboxError> {
    match tier {
        Tier::Native => native::run_with(init_exe, command, limits, binds, None).map(|(r, _)| r),
        Tier::Gvisor => gvisor::run_with(command, limits, binds, None).map(|(r, _)| r),
        Tier::MicroVm => microvm::run(command, limits, binds),
    }
}

/// A bind for [`run_binding`] written `HOST:INSIDE`: an existing host
/// file, and an absolute path inside the root with no `..`; `None` if it
/// is not one.
pub fn parse_bind(spec: &str) -> Option<(PathBuf, PathBuf)> {
    let (host, inside) = spec.split_once(':')?;
    let safe = inside.starts_with('/') && !inside.split('/').any(|p| p == "..");
    (safe && Path::new(host).is_file()).then(|| (PathBuf::from(host), PathBuf::from(inside)))
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

/// What a stage reads: a stream, read while the stage runs, so that a job
/// can hand it batches as it makes them (with backpressure: the job waits
/// while the stage is behind). The stage's stdin ends when `read` returns
/// 0 or an error.
pub type StageInput = Box<dyn std::io::Read + Send>;

/// Where a long-lived stage's output goes as the stage writes it
/// ([`run_live_stage`]): each read of its stdout, in order. Returning
/// `false` refuses the output (too long, malformed), which ends the
/// sandbox as an output over its limit does.
pub type OutputTap = Box<dyn FnMut(&[u8]) -> bool + Send>;

/// When a live stage's answer was asked for and not given yet: the job
/// sets it when it ends an epoch's input, its tap clears it when the
/// answer comes. While it is set the stage's timeout runs, even while the
/// stage's feeder waits for the job (a stage that never answers is
/// killed at its timeout, and the job learns it).
#[derive(Debug, Default)]
pub struct AnswerDue(std::sync::Mutex<Option<std::time::Instant>>);

impl AnswerDue {
    /// An answer is due from now (unless one already was).
    pub fn set(&self) {
        self.0
            .lock()
            .expect("no panic holding it")
            .get_or_insert_with(std::time::Instant::now);
    }

    /// The answers due have come.
    pub fn clear(&self) {
        *self.0.lock().expect("no panic holding it") = None;
    }

    /// How long the due answer has left of `timeout` (`None`: none due).
    fn left(&self, timeout: std::time::Duration) -> Option<std::time::Duration> {
        let since = (*self.0.lock().expect("no panic holding it"))?;
        Some(timeout.saturating_sub(since.elapsed()))
    }
}

/// A live stage's output tap and its answer clock.
pub(crate) struct LiveIo {
    pub(crate) tap: OutputTap,
    pub(crate) due: std::sync::Arc<AnswerDue>,
}

/// A stage's input, and where its output goes as it comes (`None`: kept,
/// and returned once the stage ends).
pub(crate) struct StageIo {
    pub(crate) input: StageInput,
    pub(crate) live: Option<LiveIo>,
}

/// Runs `worker` (a binary of this build, e.g. `symbi` itself) with `args`
/// in a sandbox of `tier`, feeding it `input` on stdin as `input` yields it
/// and returning what it wrote on stdout: how a stage of a job runs in its
/// tier. The worker
/// and the libraries it loads are bound read-only into the root. Tiers 1
/// and 2 over the worker's stdin and stdout; tier 3 over a virtio-serial
/// port (the worker's descriptors 0 and 1 in the guest).
pub fn run_stage(
    tier: Tier,
    init_exe: &Path,
    worker: &Path,
    args: &[String],
    limits: &Limits,
    input: impl std::io::Read + Send + 'static,
) -> Result<(Report, Vec<u8>), SandboxError> {
    let io = StageIo {
        input: Box::new(input),
        live: None,
    };
    run_stage_io(tier, init_exe, worker, args, limits, io)
}

/// [`run_stage`] for a stage that answers more than once while it runs
/// (a stream's stage, which answers at each epoch's end): its output goes
/// to `tap` as it comes, and is not kept (the report's output is empty).
/// The tap bounds it: the sandbox's output limit does not apply. The
/// tap is dropped once the output ends. While `due` is set, the stage's
/// timeout runs (see [`AnswerDue`]).
#[allow(clippy::too_many_arguments)]
pub fn run_live_stage(
    tier: Tier,
    init_exe: &Path,
    worker: &Path,
    args: &[String],
    limits: &Limits,
    input: impl std::io::Read + Send + 'static,
    tap: OutputTap,
    due: std::sync::Arc<AnswerDue>,
) -> Result<Report, SandboxError> {
    let io = StageIo {
        input: Box::new(input),
        live: Some(LiveIo { tap, due }),
    };
    run_stage_io(tier, init_exe, worker, args, limits, io).map(|(report, _)| report)
}

fn run_stage_io(
    tier: Tier,
    init_exe: &Path,
    worker: &Path,
    args: &[String],
    limits: &Limits,
    io: StageIo,
) -> Result<(Report, Vec<u8>), SandboxError> {
    let mut binds = loaded_libraries();
    binds.push((worker.to_owned(), PathBuf::from("/bin/symbi-worker")));
    let mut command = vec!["/bin/symbi-worker".to_owned()];
    command.extend(args.iter().cloned());
    match tier {
        Tier::Native => native::run_with(init_exe, &command, limits, binds, Some(io)),
        Tier::Gvisor => gvisor::run_with(&command, limits, binds, Some(io)),
        Tier::MicroVm => microvm::run_stage(&command, limits, binds, io),
    }
}

/// What provides `tier` on this host, for `explain` and `_meta`: `in
/// process` (0), the native sandbox, gVisor with its platform, or the
/// microVM with its acceleration.
pub fn tier_backend(tier: u8) -> String {
    match tier {
        0 => "in process".into(),
        1 => "native sandbox (namespaces, seccomp, Landlock, cgroups)".into(),
        2 => format!("gVisor (runsc, platform {})", gvisor::platform()),
        _ => format!("microVM (QEMU microvm, {})", microvm::accel_name()),
    }
}

/// Whether this host can run a stage in `tier` now: `Ok`, or what is
/// missing and how to install it. Tier 0 (in process) always can.
pub fn check_available(tier: u8) -> Result<(), SandboxError> {
    match doctor().into_iter().find(|t| t.tier == tier) {
        None => Ok(()),
        Some(t) if t.available => Ok(()),
        Some(t) => Err(SandboxError::Unsupported {
            tier,
            missing: t.missing.join("; "),
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
    /// What is missing, and how to get it (empty when available).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub missing: Vec<String>,
}

/// What this host can provide, tier by tier.
pub fn doctor() -> Vec<TierStatus> {
    // Each check adds what it found to `detail`, or what is missing to
    // `missing` (and to `detail`).
    fn check(
        detail: &mut Vec<String>,
        missing: &mut Vec<String>,
        found: Result<String, SandboxError>,
    ) {
        match found {
            Ok(f) => detail.push(f),
            Err(e) => {
                let why = match e {
                    SandboxError::Unsupported { missing, .. } => missing,
                    other => other.to_string(),
                };
                detail.push(format!("missing: {why}"));
                missing.push(why);
            }
        }
    }
    let busybox = || native::find_busybox().map(|p| format!("busybox: {}", p.display()));
    let (mut native, mut native_missing) = (Vec::new(), Vec::new());
    check(&mut native, &mut native_missing, busybox());
    check(
        &mut native,
        &mut native_missing,
        cgroup::describe()
            .map(String::from)
            .map_err(|m| SandboxError::Unsupported {
                tier: 1,
                missing: m,
            }),
    );
    let userns = std::fs::read_to_string("/proc/sys/user/max_user_namespaces")
        .ok()
        .and_then(|s| s.trim().parse::<u64>().ok())
        .unwrap_or(0);
    check(
        &mut native,
        &mut native_missing,
        if userns == 0 {
            Err(SandboxError::Unsupported {
                tier: 1,
                missing: "user namespaces are disabled (sysctl user.max_user_namespaces)".into(),
            })
        } else {
            Ok(format!("user namespaces: up to {userns}"))
        },
    );
    match landlock::kernel_abi() {
        0 => native.push("Landlock: not enabled in this kernel (the rest still applies)".into()),
        n => native.push(format!("Landlock: ABI {n}")),
    }
    native.push(format!(
        "seccomp: allowlist of {} system calls, compiled in, arguments filtered: clone without namespace flags, socket AF_UNIX only, ioctl by request allowlist; clone3 answers ENOSYS",
        seccomp::allowlist_len()
    ));
    let (mut gvisor, mut gvisor_missing) = (Vec::new(), Vec::new());
    check(&mut gvisor, &mut gvisor_missing, busybox());
    check(
        &mut gvisor,
        &mut gvisor_missing,
        gvisor::find_runsc().map(|p| {
            format!(
                "runsc: {} (platform {}; SYMBIONT_GVISOR_PLATFORM to change)",
                p.display(),
                gvisor::platform()
            )
        }),
    );
    let (mut microvm, mut microvm_missing) = (Vec::new(), Vec::new());
    check(&mut microvm, &mut microvm_missing, busybox());
    check(
        &mut microvm,
        &mut microvm_missing,
        microvm::find_qemu().map(|p| format!("qemu: {}", p.display())),
    );
    check(
        &mut microvm,
        &mut microvm_missing,
        microvm::find_kernel().map(|p| format!("guest kernel: {}", p.display())),
    );
    check(
        &mut microvm,
        &mut microvm_missing,
        microvm::find_modules().map(|p| {
            format!(
                "guest modules for a stage's virtio-serial port: {}",
                p.display()
            )
        }),
    );
    check(
        &mut microvm,
        &mut microvm_missing,
        microvm::qemu_user().map(|user| match user {
            Some(u) => {
                format!("QEMU: -sandbox on (its seccomp filter), root dropped to {u} with -runas")
            }
            None => "QEMU: -sandbox on (its seccomp filter); runs as this unprivileged user".into(),
        }),
    );
    microvm.push(format!(
        "acceleration: {} ({})",
        microvm::accel_name(),
        microvm::accel_reason()
    ));
    microvm.push(firecracker::describe());
    let status = |tier, mechanism, detail, missing: Vec<String>| TierStatus {
        tier,
        mechanism,
        available: missing.is_empty(),
        detail,
        missing,
    };
    vec![
        status(
            1,
            "native: namespaces, seccomp, Landlock, cgroups",
            native,
            native_missing,
        ),
        status(2, "gVisor (runsc)", gvisor, gvisor_missing),
        status(
            3,
            "microVM (QEMU microvm; Firecracker where it and KVM exist)",
            microvm,
            microvm_missing,
        ),
    ]
}
