//! Tier 2: gVisor. The command runs under `runsc` (the Debian package;
//! platform `ptrace` here, `SYMBIONT_GVISOR_PLATFORM` to change it) in a
//! generated OCI bundle: the same read-only busybox root as tier 1,
//! `--network=none`, a tmpfs `/tmp`, uid 1 with no capabilities and
//! `noNewPrivileges`, and the memory and pids limits as OCI resources.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use crate::child::{Piped, StageClock, Watchdog};
use crate::native::{find_busybox, shared_root};
use crate::scratch::Private;
use crate::{Limits, Outcome, Report, SandboxError};

/// `runsc` on `PATH`, or what is missing.
pub(crate) fn find_runsc() -> Result<PathBuf, SandboxError> {
    crate::which("runsc").ok_or(SandboxError::Unsupported {
        tier: 2,
        missing: "runsc (install the Debian package runsc)".into(),
    })
}

/// The platform `runsc` uses.
pub(crate) fn platform() -> String {
    std::env::var("SYMBIONT_GVISOR_PLATFORM").unwrap_or_else(|_| "ptrace".into())
}

fn spec(
    root: &Path,
    busybox: &Path,
    command: &[String],
    limits: &Limits,
    name: &str,
) -> serde_json::Value {
    serde_json::json!({
        "ociVersion": "1.0.2",
        "process": {
            "terminal": false,
            "user": {"uid": 1, "gid": 1},
            "args": command,
            "env": ["PATH=/bin", "HOME=/tmp", "TMPDIR=/tmp"],
            "cwd": "/",
            "capabilities": {
                "bounding": [], "effective": [], "inheritable": [], "permitted": [], "ambient": []
            },
            "rlimits": [
                {"type": "RLIMIT_NOFILE", "hard": 256, "soft": 256},
                {"type": "RLIMIT_CORE", "hard": 0, "soft": 0}
            ],
            "noNewPrivileges": true
        },
        "root": {"path": root, "readonly": true},
        "hostname": "symbiont-sandbox",
        "mounts": [
            {"destination": "/proc", "type": "proc", "source": "proc"},
            {"destination": "/tmp", "type": "tmpfs", "source": "tmpfs",
             "options": ["nosuid", "nodev", "mode=1777", format!("size={}", limits.scratch_bytes)]},
            {"destination": "/bin/busybox", "type": "bind", "source": busybox,
             "options": ["rbind", "ro"]}
        ],
        "linux": {
            "namespaces": [
                {"type": "pid"}, {"type": "network"}, {"type": "ipc"},
                {"type": "uts"}, {"type": "mount"}
            ],
            "resources": {
                "memory": {"limit": limits.memory_bytes},
                "pids": {"limit": limits.pids}
            },
            "cgroupsPath": format!("/symbiont-{name}")
        }
    })
}

/// Runs `command` under gVisor, with host files bound read-only inside
/// the root and, if `input` is given, the command's stdin fed from it and
/// its stdout returned.
pub(crate) fn run_with(
    command: &[String],
    limits: &Limits,
    binds: Vec<(PathBuf, PathBuf)>,
    stage_io: Option<crate::StageIo>,
) -> Result<(Report, Vec<u8>), SandboxError> {
    let started = Instant::now();
    let runsc = find_runsc()?;
    let busybox = find_busybox()?;
    let root = shared_root(&busybox)?;
    crate::native::mount_points(&root, &binds)?;
    let bundle = Private::new("oci-")?;
    let name = container_name(bundle.path());
    let state = bundle.path().join("state");
    let io = |p: PathBuf| move |source| SandboxError::Root { path: p, source };
    std::fs::create_dir(&state).map_err(io(state.clone()))?;
    let config = bundle.path().join("config.json");
    let mut spec = spec(&root, &busybox, command, limits, &name);
    for (host, inside) in &binds {
        spec["mounts"]
            .as_array_mut()
            .expect("mounts is a list")
            .push(serde_json::json!({
                "destination": inside, "type": "bind", "source": host, "options": ["rbind", "ro"]
            }));
    }
    crate::scratch::write_new(
        &config,
        &serde_json::to_vec_pretty(&spec).expect("serialisable"),
        0o600,
    )?;
    let runsc_cmd = |args: &[&str]| {
        let mut c = Command::new(&runsc);
        c.arg("--root")
            .arg(&state)
            .arg("--network=none")
            .arg(format!("--platform={}", platform()))
            .args(args);
        c
    };
    let id = format!("symbiont-{name}");
    let mut run = runsc_cmd(&["run", "--bundle"]);
    run.arg(bundle.path()).arg(&id);
    if stage_io.is_some() {
        run.stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped());
    }
    let mut child = run.spawn().map_err(|source| SandboxError::Spawn {
        path: runsc.clone(),
        source,
    })?;
    // A command writes back at most its memory limit (a stage builds its
    // answer in memory).
    let (input, live) = stage_io.map_or((None, None), |io| (Some(io.input), io.live));
    let clock = StageClock::start(started, limits.memory_bytes, live);
    let piped = Piped::start(&mut child, input, &clock);
    let overflowed = std::sync::Arc::clone(&clock);
    // At the timeout everything in the container is killed, and runsc with
    // it; meanwhile this thread waits for runsc.
    let mut kill_all = runsc_cmd(&["kill", "--all", &id, "KILL"]);
    let pid = nix::unistd::Pid::from_raw(child.id() as i32);
    let watchdog = Watchdog::start(limits.timeout, clock, move || {
        let _ = kill_all.status();
        let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGKILL);
    });
    let status = child.wait();
    let timed_out = watchdog.disarm();
    let outcome = match status {
        _ if overflowed.overflowed() => Outcome::OutputLimit,
        _ if timed_out => Outcome::TimedOut,
        Err(e) => return Err(SandboxError::InitFailed(format!("waiting for runsc: {e}"))),
        Ok(s) => match s.code() {
            Some(code) if code > 128 => Outcome::Signaled(code - 128),
            Some(code) => Outcome::Exited(code),
            None => {
                Outcome::Signaled(std::os::unix::process::ExitStatusExt::signal(&s).unwrap_or(0))
            }
        },
    };
    let _ = runsc_cmd(&["delete", "--force", &id]).status();
    // A runsc killed before it finished starting (a timeout of a few
    // milliseconds) leaves its cgroups behind, which `delete` cannot find:
    // remove them (rmdir removes only an empty group).
    remove_cgroups(&format!("symbiont-{name}"));
    let (output, first_output) = piped.finish();
    Ok((
        Report {
            outcome,
            pids_limited: false,
            elapsed: started.elapsed(),
            first_output,
        },
        output,
    ))
}

/// The container's (and its cgroups') name: this process, a counter, and
/// the random part of the run's private directory. runsc joins a cgroup
/// that already exists without setting its limits, and a cgroup left
/// behind by a sandbox the kernel killed keeps the limits it had: with a
/// name made of the process id and a counter alone, a later process that
/// got the same id ran its stage under a dead test's 8 MiB limit and was
/// killed (signal 9). The random part makes the name new every time.
fn container_name(private: &Path) -> String {
    let random = private
        .file_name()
        .and_then(|n| n.to_str())
        .and_then(|n| n.strip_prefix("oci-"))
        .unwrap_or("")
        .chars()
        .filter(char::is_ascii_alphanumeric)
        .collect::<String>();
    format!("{}-{}-{random}", std::process::id(), crate::unique())
}

/// Removes the cgroups named `cgroups` under every controller, waiting a
/// little (at most half a second) for the tasks of a killed sandbox to
/// leave them: `rmdir` removes only an empty group. A runsc killed before
/// it finished starting leaves them behind, which `delete` cannot find.
fn remove_cgroups(cgroups: &str) {
    let root = Path::new("/sys/fs/cgroup");
    let mut left: Vec<PathBuf> = std::iter::once(root.join(cgroups))
        .chain(
            std::fs::read_dir(root)
                .into_iter()
                .flatten()
                .flatten()
                .map(|c| c.path().join(cgroups)),
        )
        .filter(|p| p.exists())
        .collect();
    for _ in 0..20 {
        left.retain(|p| std::fs::remove_dir(p).is_err() && p.exists());
        if left.is_empty() {
            return;
        }
        std::thread::sleep(std::time::Duration::from_millis(25));
    }
}
