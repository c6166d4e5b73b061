//! Tier 1: a native sandbox from Linux namespaces, a read-only minimal
//! root, cgroup limits, rlimits, an unprivileged identity, Landlock and a
//! seccomp allowlist.
//!
//! The parent ([`run`]) gets the shared root directory ([`shared_root`])
//! and makes the cgroups, then starts the init process: the binary it is
//! given (`symbi-sandbox-init`, or `symbi` itself) with
//! [`INIT_ARG`](crate::INIT_ARG). Init ([`init_main`]) unshares the user,
//! mount, network, IPC, UTS and pid namespaces and stops itself; the
//! parent maps its user ids (sandbox uid 0 and 1 onto the host's unused
//! 65534 and 65533), puts it in the cgroups and lets it go on. Init forks
//! the sandbox's pid 1, which builds the root and confines itself in
//! [`confine_and_exec`], one step after another, then runs the command.

use std::ffi::CString;
use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use nix::mount::{MntFlags, MsFlags, mount, umount2};
use nix::sched::{CloneFlags, unshare};
use nix::sys::signal::{Signal, kill, raise};
use nix::sys::wait::{WaitPidFlag, WaitStatus, waitpid};
use nix::unistd::{ForkResult, Gid, Pid, Uid};
use serde::{Deserialize, Serialize};

use crate::cgroup::Cgroup;
use crate::child::{Piped, StageClock, Watchdog};
use crate::{Limits, Outcome, Report, SandboxError};

/// The environment variable carrying init's configuration.
const CONFIG_ENV: &str = "SYMBIONT_SANDBOX_INIT";
/// The sandbox's unprivileged user and group inside its namespace.
const SANDBOX_ID: u32 = 1;

/// What init needs to know.
#[derive(Debug, Serialize, Deserialize)]
struct InitConfig {
    root: PathBuf,
    busybox: PathBuf,
    command: Vec<String>,
    scratch_bytes: u64,
    /// Host files bound read-only at paths inside the root (a stage
    /// worker and the libraries it loads).
    #[serde(default)]
    binds: Vec<(PathBuf, PathBuf)>,
}

/// The sandbox root on the host: `bin/` (a placeholder that busybox is
/// bind-mounted over, and a symlink per applet), empty mount points for
/// `/proc`, `/tmp`, `/.old` and three devices. Nothing in it changes when a
/// sandbox runs (every mount is in the sandbox's own mount namespace), so
/// it is built once per busybox binary and shared: in the sandbox
/// directory ([`crate::scratch`]), named by busybox's path, size and time,
/// built under a unique name and renamed into place. One that is not ours
/// or that others may write is never used.
pub(crate) fn shared_root(busybox: &Path) -> Result<PathBuf, SandboxError> {
    use std::os::unix::fs::MetadataExt;
    let io = |p: &Path| {
        let p = p.to_owned();
        move |source| SandboxError::Root { path: p, source }
    };
    let meta = std::fs::metadata(busybox).map_err(io(busybox))?;
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in busybox
        .as_os_str()
        .as_encoded_bytes()
        .iter()
        .chain(&meta.len().to_le_bytes())
        .chain(&meta.mtime().to_le_bytes())
        .chain(&meta.ino().to_le_bytes())
    {
        h = (h ^ u64::from(*b)).wrapping_mul(0x0100_0000_01b3);
    }
    let base = crate::scratch::base()?;
    let dir = base.join(format!("root-v2-{h:016x}"));
    let me = nix::unistd::geteuid().as_raw();
    let trusted = |p: &Path| {
        std::fs::symlink_metadata(p)
            .is_ok_and(|m| m.is_dir() && m.uid() == me && m.mode() & 0o022 == 0)
            && p.join("bin/sh").is_symlink()
    };
    if trusted(&dir) {
        return Ok(dir);
    }
    let building = base.join(format!(
        "root-build-{}-{}",
        std::process::id(),
        crate::unique()
    ));
    std::fs::DirBuilder::new()
        .mode(0o700)
        .create(&building)
        .map_err(io(&building))?;
    for sub in [
        "bin",
        "proc",
        "tmp",
        "dev",
        ".old",
        "lib/x86_64-linux-gnu",
        "lib64",
    ] {
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o755)
            .create(building.join(sub))
            .map_err(io(&building.join(sub)))?;
    }
    std::fs::set_permissions(&building, std::fs::Permissions::from_mode(0o755))
        .map_err(io(&building))?;
    for dev in ["null", "zero", "urandom"] {
        crate::scratch::write_new(&building.join("dev").join(dev), b"", 0o644)?;
    }
    let bin = building.join("bin");
    crate::scratch::write_new(&bin.join("busybox"), b"", 0o755)?;
    let applets = Command::new(busybox)
        .arg("--list")
        .output()
        .map_err(io(busybox))?;
    for applet in String::from_utf8_lossy(&applets.stdout).lines() {
        if !applet.is_empty() && applet != "busybox" && !applet.contains('/') {
            std::os::unix::fs::symlink("busybox", bin.join(applet))
                .map_err(io(&bin.join(applet)))?;
        }
    }
    match std::fs::rename(&building, &dir) {
        Ok(()) => Ok(dir),
        // Another process built it first: use theirs if it is trusted.
        Err(_) if trusted(&dir) => {
            let _ = std::fs::remove_dir_all(&building);
            Ok(dir)
        }
        // Something untrusted holds the name: use ours where it is.
        Err(_) => Ok(building),
    }
}

/// Mount points for binds: placeholder files in the shared root (made once;
/// the same for every sandbox). The root is ours alone, its directories
/// 0755 whatever the umask, and a placeholder is created new, never
/// through a link.
pub(crate) fn mount_points(root: &Path, binds: &[(PathBuf, PathBuf)]) -> Result<(), SandboxError> {
    for (_, inside) in binds {
        let target = root.join(inside.strip_prefix("/").unwrap_or(inside));
        if std::fs::symlink_metadata(&target).is_err() {
            if let Some(dir) = target.parent() {
                std::fs::DirBuilder::new()
                    .recursive(true)
                    .mode(0o755)
                    .create(dir)
                    .map_err(|source| SandboxError::Root {
                        path: dir.to_owned(),
                        source,
                    })?;
            }
            match crate::scratch::write_new(&target, b"", 0o644) {
                // Another job made it meanwhile.
                Err(_) if std::fs::symlink_metadata(&target).is_ok_and(|m| m.is_file()) => {}
                other => other?,
            }
        }
    }
    Ok(())
}

/// The static busybox that makes the sandbox's userland.
pub(crate) fn find_busybox() -> Result<PathBuf, SandboxError> {
    ["/bin/busybox", "/usr/bin/busybox"]
        .iter()
        .map(PathBuf::from)
        .find(|p| p.exists())
        .ok_or(SandboxError::Unsupported {
            tier: 1,
            missing: "busybox (install the Debian package busybox-static)".into(),
        })
}

/// Runs `command` in a tier-1 sandbox, with host files bound read-only
/// inside the root and, if `input` is given, the command's stdin fed from
/// it and its stdout returned. `init_exe` is a binary whose `main` calls
/// [`init_main`] when its first argument is [`INIT_ARG`](crate::INIT_ARG).
pub(crate) fn run_with(
    init_exe: &Path,
    command: &[String],
    limits: &Limits,
    binds: Vec<(PathBuf, PathBuf)>,
    io: Option<crate::StageIo>,
) -> Result<(Report, Vec<u8>), SandboxError> {
    let started = Instant::now();
    // The cgroup migration lock's grace period, overlapped with the setup
    // below and init's start (see `Cgroup::warm_up`).
    let warming = Cgroup::warm_up();
    let busybox = find_busybox()?;
    let root = shared_root(&busybox)?;
    mount_points(&root, &binds)?;
    let cgroup = Cgroup::create(
        &format!("{}-{}", std::process::id(), crate::unique()),
        limits.memory_bytes,
        limits.pids,
    )?;
    let config = InitConfig {
        root,
        busybox,
        command: command.to_vec(),
        scratch_bytes: limits.scratch_bytes,
        binds,
    };
    let piped = io.is_some();
    let mut init = Command::new(init_exe);
    init.arg(crate::INIT_ARG).env_clear().env(
        CONFIG_ENV,
        serde_json::to_string(&config).expect("serialisable"),
    );
    if piped {
        init.stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped());
    }
    let mut child = init.spawn().map_err(|source| SandboxError::Spawn {
        path: init_exe.to_owned(),
        source,
    })?;
    let pid = Pid::from_raw(child.id() as i32);
    let step = |what: &'static str| move |e: nix::Error| SandboxError::Setup { what, errno: e };

    // Init has unshared its namespaces and stopped itself.
    match waitpid(pid, Some(WaitPidFlag::WUNTRACED)).map_err(step("waiting for init"))? {
        WaitStatus::Stopped(_, Signal::SIGSTOP) => {}
        other => {
            return Err(SandboxError::InitFailed(format!(
                "init did not stop after unsharing: {other:?}"
            )));
        }
    }
    let maps = format!("0 65534 1\n{SANDBOX_ID} 65533 1\n");
    for file in ["uid_map", "gid_map"] {
        let path = PathBuf::from(format!("/proc/{pid}/{file}"));
        std::fs::write(&path, &maps).map_err(|source| SandboxError::Root { path, source })?;
    }
    let _ = warming.join();
    cgroup.add(pid.as_raw())?;
    kill(pid, Signal::SIGCONT).map_err(step("resuming init"))?;
    // A command writes back at most its memory limit (a stage builds its
    // answer in memory).
    let (input, live) = io.map_or((None, None), |io| (Some(io.input), io.live));
    let clock = StageClock::start(started, limits.memory_bytes, live);
    let piped = Piped::start(&mut child, input, &clock);
    let overflowed = std::sync::Arc::clone(&clock);

    // A watchdog kills everything in the sandbox (all of it is in the
    // cgroup) at the timeout; meanwhile this thread blocks in waitpid.
    let procs = cgroup.procs_file();
    let watchdog = Watchdog::start(limits.timeout, clock, move || {
        for p in crate::cgroup::read_procs(&procs) {
            let _ = kill(Pid::from_raw(p), Signal::SIGKILL);
        }
        let _ = kill(pid, Signal::SIGKILL);
    });
    let status = loop {
        match waitpid(pid, None) {
            Ok(WaitStatus::Continued(_) | WaitStatus::Stopped(..)) => {}
            Ok(status) => break Ok(status),
            Err(nix::Error::EINTR) => {}
            Err(e) => break Err(e),
        }
    };
    let timed_out = watchdog.disarm();
    let status = status.map_err(step("waiting for init"))?;
    let outcome = match status {
        _ if overflowed.overflowed() => Outcome::OutputLimit,
        _ if timed_out => Outcome::TimedOut,
        WaitStatus::Exited(_, code) if code >= 128 => {
            Outcome::Signaled(Signal::try_from(code - 128).map_or(code - 128, |s| s as i32))
        }
        WaitStatus::Exited(_, code) => Outcome::Exited(code),
        WaitStatus::Signaled(_, s, _) => Outcome::Signaled(s as i32),
        other => return Err(SandboxError::InitFailed(format!("{other:?}"))),
    };
    // Stragglers (a backgrounded fork bomb) go with the sandbox.
    for p in cgroup.procs() {
        let _ = kill(Pid::from_raw(p), Signal::SIGKILL);
    }
    let outcome = match outcome {
        Outcome::Signaled(9) if cgroup.oom_killed() => Outcome::MemoryLimit,
        o => o,
    };
    let (output, first_output) = piped.finish();
    Ok((
        Report {
            outcome,
            pids_limited: cgroup.pids_limited(),
            elapsed: started.elapsed(),
            first_output,
        },
        output,
    ))
}

/// The init process: unshares, waits for the parent to map its ids, forks
/// the sandbox's pid 1, and exits with its status (128 + signal if it was
/// killed). Never returns.
pub fn init_main() -> ! {
    let config: InitConfig = match std::env::var(CONFIG_ENV)
        .ok()
        .and_then(|c| serde_json::from_str(&c).ok())
    {
        Some(c) => c,
        None => die("no sandbox configuration"),
    };
    let namespaces = CloneFlags::CLONE_NEWUSER
        | CloneFlags::CLONE_NEWNS
        | CloneFlags::CLONE_NEWNET
        | CloneFlags::CLONE_NEWIPC
        | CloneFlags::CLONE_NEWUTS
        | CloneFlags::CLONE_NEWPID;
    if let Err(e) = unshare(namespaces) {
        die(&format!("unshare: {e}"));
    }
    // The parent writes our uid and gid maps and continues us.
    if let Err(e) = raise(Signal::SIGSTOP) {
        die(&format!("stopping for the id maps: {e}"));
    }
    // SAFETY: init is single-threaded (it is a fresh process that has not
    // started any thread), so the child may run arbitrary code after fork.
    #[allow(unsafe_code)]
    let fork = unsafe { nix::unistd::fork() };
    match fork {
        Ok(ForkResult::Child) => {
            let e = confine_and_exec(&config);
            die(&e);
        }
        Ok(ForkResult::Parent { child }) => loop {
            match waitpid(child, None) {
                Ok(WaitStatus::Exited(_, code)) => std::process::exit(code),
                Ok(WaitStatus::Signaled(_, s, _)) => std::process::exit(128 + s as i32),
                Ok(_) => {}
                Err(e) => die(&format!("waiting for the sandbox: {e}")),
            }
        },
        Err(e) => die(&format!("fork: {e}")),
    }
}

fn die(message: &str) -> ! {
    eprintln!("symbi sandbox: {message}");
    std::process::exit(125);
}

/// In the sandbox's pid 1: builds the root, confines itself, one step after
/// another, and runs the command. Returns only on failure, saying which
/// step failed.
fn confine_and_exec(c: &InitConfig) -> String {
    let root = &c.root;
    let at = |p: &str| root.join(p);
    let fail = |step: &str, e: &dyn std::fmt::Display| format!("{step}: {e}");
    let none: Option<&str> = None;

    // 1. Our mounts stay ours.
    if let Err(e) = mount(none, "/", none, MsFlags::MS_REC | MsFlags::MS_PRIVATE, none) {
        return fail("making mounts private", &e);
    }
    // 2. The root: a bind mount of the prepared directory, with busybox,
    //    a fresh /proc for our pid namespace, a size-limited scratch /tmp
    //    and three devices.
    if let Err(e) = mount(
        Some(root),
        root,
        none,
        MsFlags::MS_BIND | MsFlags::MS_REC,
        none,
    ) {
        return fail("binding the root", &e);
    }
    if let Err(e) = mount(
        Some(&c.busybox),
        &at("bin/busybox"),
        none,
        MsFlags::MS_BIND,
        none,
    ) {
        return fail("binding busybox", &e);
    }
    let restricted = MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC;
    if let Err(e) = mount(Some("proc"), &at("proc"), Some("proc"), restricted, none) {
        return fail("mounting /proc", &e);
    }
    let size = format!("size={},mode=1777", c.scratch_bytes);
    if let Err(e) = mount(
        Some("tmpfs"),
        &at("tmp"),
        Some("tmpfs"),
        MsFlags::MS_NOSUID | MsFlags::MS_NODEV,
        Some(size.as_str()),
    ) {
        return fail("mounting the scratch /tmp", &e);
    }
    for dev in ["null", "zero", "urandom"] {
        let host = format!("/dev/{dev}");
        if let Err(e) = mount(
            Some(host.as_str()),
            &at(&format!("dev/{dev}")),
            none,
            MsFlags::MS_BIND,
            none,
        ) {
            return fail("binding a device", &e);
        }
    }
    for (host, inside) in &c.binds {
        let target = root.join(inside.strip_prefix("/").unwrap_or(inside));
        if let Err(e) = mount(Some(host), &target, none, MsFlags::MS_BIND, none) {
            return fail(&format!("binding {}", inside.display()), &e);
        }
    }
    // 3. Switch to it; the host's tree is detached (`/.old` stays, empty).
    if let Err(e) = nix::unistd::chdir(root) {
        return fail("entering the root", &e);
    }
    if let Err(e) = nix::unistd::pivot_root(".", ".old") {
        return fail("pivot_root", &e);
    }
    if let Err(e) = nix::unistd::chdir("/") {
        return fail("entering /", &e);
    }
    if let Err(e) = umount2("/.old", MntFlags::MNT_DETACH) {
        return fail("detaching the host's tree", &e);
    }
    // 4. Read-only: the root and busybox.
    let ro = MsFlags::MS_REMOUNT
        | MsFlags::MS_BIND
        | MsFlags::MS_RDONLY
        | MsFlags::MS_NOSUID
        | MsFlags::MS_NODEV;
    let binds = c.binds.iter().map(|(_, inside)| inside.as_path());
    for path in [Path::new("/"), Path::new("/bin/busybox")]
        .into_iter()
        .chain(binds)
    {
        if let Err(e) = mount(none, path, none, ro, none) {
            return fail("remounting read-only", &e);
        }
    }
    let _ = nix::unistd::sethostname("symbiont-sandbox");
    // 5. Limits the cgroup does not cover.
    use nix::sys::resource::{Resource, setrlimit};
    for (resource, limit) in [(Resource::RLIMIT_NOFILE, 256), (Resource::RLIMIT_CORE, 0)] {
        if let Err(e) = setrlimit(resource, limit, limit) {
            return fail("setting rlimits", &e);
        }
    }
    // 6. An unprivileged identity: every capability is gone.
    if let Err(e) = nix::unistd::setgroups(&[]) {
        return fail("dropping supplementary groups", &e);
    }
    let gid = Gid::from_raw(SANDBOX_ID);
    let uid = Uid::from_raw(SANDBOX_ID);
    if let Err(e) = nix::unistd::setresgid(gid, gid, gid) {
        return fail("setresgid", &e);
    }
    if let Err(e) = nix::unistd::setresuid(uid, uid, uid) {
        return fail("setresuid", &e);
    }
    // 6b. A session of its own: no controlling terminal to push input
    //     into (seccomp also refuses TIOCSTI).
    if let Err(e) = nix::unistd::setsid() {
        return fail("setsid", &e);
    }
    // 7. No new privileges, ever (also required by seccomp and Landlock).
    if let Err(e) = nix::sys::prctl::set_no_new_privs() {
        return fail("no_new_privs", &e);
    }
    // 8. Landlock: read and execute everywhere in the root, write only in
    //    /tmp and the devices, no TCP, no signals or abstract sockets out.
    match crate::landlock::restrict() {
        Err(e) => return fail("Landlock", &e),
        Ok(status) => {
            if let Err(why) = crate::landlock::required(status, crate::landlock::kernel_abi()) {
                return fail("Landlock", &why);
            }
        }
    }
    // 9. Seccomp: the allowlist; anything else kills the process.
    if let Err(e) = crate::seccomp::apply() {
        return fail("seccomp", &e);
    }
    // 10. The command, with a clean environment.
    let args: Vec<CString> = match c.command.iter().map(|a| CString::new(a.as_str())).collect() {
        Ok(a) => a,
        Err(e) => return fail("the command", &e),
    };
    let env = [
        CString::new("PATH=/bin").expect("no NUL"),
        CString::new("HOME=/tmp").expect("no NUL"),
        CString::new("TMPDIR=/tmp").expect("no NUL"),
    ];
    let Some(program) = args.first() else {
        return "no command".into();
    };
    match nix::unistd::execvpe(program, &args, &env) {
        Ok(never) => match never {},
        Err(e) => fail(&format!("running {}", c.command[0]), &e),
    }
}
