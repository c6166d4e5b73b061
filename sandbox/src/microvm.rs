//! Tier 3: a microVM. QEMU's `microvm` machine boots the Debian cloud
//! kernel (`scripts/guest-kernel` fetches it) with an initramfs holding the
//! static busybox and a small init; the command runs in the guest as uid 1
//! (`su`, under `no_new_privs`) with no capabilities, over a read-only root and a tmpfs `/tmp`, with no
//! network device at all. The guest's RAM is the memory limit (plus 64 MiB
//! for its kernel); the process limit is the guest's `RLIMIT_NPROC`.
//!
//! Acceleration, probed at run time: KVM when the CPU advertises hardware
//! virtualization and `/dev/kvm` opens, TCG (emulation) otherwise;
//! `SYMBIONT_QEMU_ACCEL` overrides. This machine's `/dev/kvm` is a
//! paravirtual device on which guests do not boot, and its CPU has no
//! `vmx` flag, so the probe picks TCG here. The command's stdout and stderr
//! share the guest's serial console.

use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Instant;

use crate::child::{StageClock, Watchdog};
use crate::kvm::kvm_usable;
use crate::native::find_busybox;
use crate::{Limits, Outcome, Report, SandboxError};

const EXIT_MARK: &str = "SYMBIONT-EXIT ";
const OOM_MARK: &str = "SYMBIONT-OOM";

/// The guest's init (`sandbox/guest/init`): mounts, reads the command
/// from the kernel command line, for a stage loads the virtio-serial
/// modules and opens the port, drops to uid 1 and runs the command,
/// reports its exit status, powers off.
const INIT: &str = include_str!("../guest/init");

/// QEMU, or what is missing.
pub(crate) fn find_qemu() -> Result<PathBuf, SandboxError> {
    crate::which("qemu-system-x86_64").ok_or(SandboxError::Unsupported {
        tier: 3,
        missing: "qemu-system-x86_64 (install the Debian package qemu-system-x86)".into(),
    })
}

/// The guest kernel: `SYMBIONT_GUEST_KERNEL`, or where
/// `scripts/guest-kernel` puts it (`$XDG_CACHE_HOME/symbiont/guest/vmlinuz`,
/// `~/.cache/...`).
pub(crate) fn find_kernel() -> Result<PathBuf, SandboxError> {
    if let Some(k) = std::env::var_os("SYMBIONT_GUEST_KERNEL") {
        let k = PathBuf::from(k);
        return match k.is_file() {
            true => Ok(k),
            false => Err(SandboxError::Unsupported {
                tier: 3,
                missing: format!(
                    "the guest kernel SYMBIONT_GUEST_KERNEL names, {}, is not a file",
                    k.display()
                ),
            }),
        };
    }
    let cache = std::env::var_os("XDG_CACHE_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache")));
    cache
        .map(|c| c.join("symbiont/guest/vmlinuz"))
        .filter(|k| k.exists())
        .ok_or(SandboxError::Unsupported {
            tier: 3,
            missing: "the guest kernel (run scripts/guest-kernel, or set SYMBIONT_GUEST_KERNEL)"
                .into(),
        })
}

/// The acceleration QEMU is asked for: `SYMBIONT_QEMU_ACCEL` if set, else
/// `kvm` when [`kvm_usable`], else `tcg`.
pub(crate) fn accel() -> String {
    match std::env::var("SYMBIONT_QEMU_ACCEL") {
        Ok(a) => a,
        Err(_) if kvm_usable().is_ok() => "kvm".into(),
        Err(_) => "tcg".into(),
    }
}

/// [`accel`] as `explain`, `_meta` and `doctor` name it.
pub(crate) fn accel_name() -> String {
    match accel().as_str() {
        "tcg" => "TCG emulation".into(),
        "kvm" => "KVM".into(),
        other => other.to_owned(),
    }
}

/// Why [`accel`] is what it is.
pub(crate) fn accel_reason() -> String {
    if std::env::var_os("SYMBIONT_QEMU_ACCEL").is_some() {
        return "set by SYMBIONT_QEMU_ACCEL".into();
    }
    match kvm_usable() {
        Ok(()) => "probed: hardware virtualization and /dev/kvm".into(),
        Err(why) => format!("probed: {why}; SYMBIONT_QEMU_ACCEL=kvm forces KVM"),
    }
}

fn io_err(p: &Path) -> impl FnOnce(std::io::Error) -> SandboxError + use<> {
    let p = p.to_owned();
    move |source| SandboxError::Root { path: p, source }
}

/// Lays out the guest's `/` in `dir`: busybox, `/etc/passwd` and `group`
/// with user `sandbox` (uid 1), and the init above. The paths written,
/// relative to `dir`.
fn guest_root(busybox: &Path, dir: &Path) -> Result<Vec<String>, SandboxError> {
    use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
    // The guest's `/`: everyone may enter it (but nobody on the host may
    // reach it: it is inside a private directory).
    let mkdir = |d: &Path| {
        std::fs::DirBuilder::new()
            .mode(0o755)
            .create(d)
            .map_err(io_err(d))
    };
    mkdir(dir)?;
    let bin = dir.join("bin");
    mkdir(&bin)?;
    std::fs::copy(busybox, bin.join("busybox")).map_err(io_err(busybox))?;
    let etc = dir.join("etc");
    mkdir(&etc)?;
    std::fs::write(
        etc.join("passwd"),
        "root:x:0:0::/:/bin/sh\nsandbox:x:1:1::/tmp:/bin/sh\n",
    )
    .map_err(io_err(&etc))?;
    std::fs::write(etc.join("group"), "root:x:0:\nsandbox:x:1:\n").map_err(io_err(&etc))?;
    let init = dir.join("init");
    std::fs::write(&init, INIT).map_err(io_err(&init))?;
    std::fs::set_permissions(&init, std::fs::Permissions::from_mode(0o755))
        .map_err(io_err(&init))?;
    let mut files: Vec<String> = [
        "bin",
        "bin/busybox",
        "etc",
        "etc/passwd",
        "etc/group",
        "init",
    ]
    .map(String::from)
    .to_vec();
    // A symlink per applet, made here rather than by the guest at boot
    // (where each costs emulated time).
    let list = Command::new(busybox)
        .arg("--list")
        .output()
        .map_err(io_err(busybox))?;
    for applet in String::from_utf8_lossy(&list.stdout).lines() {
        if applet.is_empty() || applet == "busybox" || applet.contains('/') {
            continue;
        }
        let link = bin.join(applet);
        std::os::unix::fs::symlink("busybox", &link).map_err(io_err(&link))?;
        files.push(format!("bin/{applet}"));
    }
    Ok(files)
}

/// Writes the newc archive of `files` (relative to `dir`, parents first)
/// to `out` with busybox's own `cpio`.
fn cpio(busybox: &Path, dir: &Path, files: &[String], out: &Path) -> Result<(), SandboxError> {
    let file = crate::scratch::create_new(out, 0o600)?;
    let mut cpio = Command::new(busybox)
        .args(["cpio", "-o", "-H", "newc"])
        .current_dir(dir)
        .stdin(Stdio::piped())
        .stdout(file)
        .stderr(Stdio::null())
        .spawn()
        .map_err(io_err(busybox))?;
    let mut list = String::from(".\n");
    for f in files {
        list.push_str(f);
        list.push('\n');
    }
    cpio.stdin
        .take()
        .expect("piped")
        .write_all(list.as_bytes())
        .map_err(io_err(busybox))?;
    let status = cpio.wait().map_err(io_err(busybox))?;
    if !status.success() {
        return Err(SandboxError::InitFailed("busybox cpio failed".into()));
    }
    Ok(())
}

/// The kernel modules a stage's guest loads for its virtio-serial port,
/// in load order (the Debian cloud kernel builds them as modules).
pub(crate) const MODULES: [&str; 4] = ["virtio_ring", "virtio", "virtio_mmio", "virtio_console"];

/// The directory holding [`MODULES`] for the guest kernel:
/// `SYMBIONT_GUEST_MODULES`, or `modules/` beside the kernel (where
/// `scripts/guest-kernel` puts them).
pub(crate) fn find_modules() -> Result<PathBuf, SandboxError> {
    let dir = match std::env::var_os("SYMBIONT_GUEST_MODULES") {
        Some(d) => PathBuf::from(d),
        None => find_kernel()?
            .parent()
            .map_or_else(|| PathBuf::from("modules"), |p| p.join("modules")),
    };
    match MODULES
        .iter()
        .find(|m| !dir.join(format!("{m}.ko")).is_file())
    {
        None => Ok(dir),
        Some(m) => Err(SandboxError::Unsupported {
            tier: 3,
            missing: format!(
                "the guest kernel's module {m}.ko in {} (run scripts/guest-kernel, or set \
                 SYMBIONT_GUEST_MODULES)",
                dir.display()
            ),
        }),
    }
}

/// FNV-1a, folding `bytes` into `h`: names cached images.
fn fnv(h: u64, bytes: &[u8]) -> u64 {
    bytes
        .iter()
        .fold(h, |h, b| (h ^ u64::from(*b)).wrapping_mul(0x100_0000_01b3))
}

/// The initramfs: the guest root above and `binds` (a stage's worker and
/// the libraries it loads, or files bound with `--bind`) copied to their
/// paths inside, with the modules of a virtio-serial port under
/// `/lib/modules/` when there are binds. Built once per content into the
/// sandbox directory ([`crate::scratch`]), named by a hash of the init's text and of every
/// file's path, size and time (so a changed input is never served from an
/// old image); an image there that is not ours, or that others could
/// write, is never booted.
fn image(busybox: &Path, binds: &[(PathBuf, PathBuf)]) -> Result<PathBuf, SandboxError> {
    use std::os::unix::fs::{DirBuilderExt, MetadataExt};
    let modules = match binds.is_empty() {
        true => None,
        false => Some(find_modules()?),
    };
    let mut sources: Vec<(PathBuf, PathBuf)> = vec![(busybox.to_owned(), "/bin/busybox".into())];
    for m in modules
        .iter()
        .flat_map(|dir| MODULES.map(|m| dir.join(format!("{m}.ko"))))
    {
        let inside = Path::new("/lib/modules").join(m.file_name().unwrap_or_default());
        sources.push((m, inside));
    }
    sources.extend(binds.iter().cloned());
    let mut h = fnv(0xcbf2_9ce4_8422_2325, INIT.as_bytes());
    for (host, inside) in &sources {
        let m = std::fs::metadata(host).map_err(io_err(host))?;
        h = fnv(h, host.as_os_str().as_encoded_bytes());
        h = fnv(h, inside.as_os_str().as_encoded_bytes());
        h = fnv(h, &m.len().to_le_bytes());
        h = fnv(h, &m.mtime().to_le_bytes());
        h = fnv(h, &m.mtime_nsec().to_le_bytes());
    }
    let kind = if binds.is_empty() { "base" } else { "stage" };
    let image = crate::scratch::base()?.join(format!("guest-{kind}-{h:016x}.cpio"));
    let trusted = |p: &Path| {
        std::fs::symlink_metadata(p).is_ok_and(|m| {
            m.is_file() && m.uid() == nix::unistd::geteuid().as_raw() && m.mode() & 0o022 == 0
        })
    };
    if trusted(&image) {
        return Ok(image);
    }
    let image = match image.exists() {
        false => image,
        true => image.with_extension(format!("{}-{}.cpio", std::process::id(), crate::unique())),
    };
    let dir = crate::scratch::Private::new("guest-build-")?;
    let root = &dir.path().join("root");
    let mut files = guest_root(busybox, root)?;
    for (host, inside) in &sources[1..] {
        let rel = inside.strip_prefix("/").unwrap_or(inside);
        let mut parent = PathBuf::new();
        for part in rel.parent().into_iter().flat_map(Path::components) {
            parent.push(part);
            let name = parent.to_string_lossy().into_owned();
            if !files.contains(&name) {
                std::fs::DirBuilder::new()
                    .recursive(true)
                    .mode(0o755)
                    .create(root.join(&parent))
                    .map_err(io_err(&parent))?;
                files.push(name);
            }
        }
        let copied = root.join(rel);
        std::fs::copy(host, &copied).map_err(io_err(host))?;
        files.push(rel.to_string_lossy().into_owned());
        // The guest holds its root in RAM: without debug information a
        // build's worker is a sixth of its size (binutils' `strip`, where
        // installed; the copy stays as it is otherwise).
        if let Some(strip) = crate::which("strip").filter(|_| !inside.starts_with("/lib/modules")) {
            let _ = Command::new(strip)
                .arg("--strip-debug")
                .arg(&copied)
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status();
        }
    }
    let building = image.with_extension(format!("{}-{}.tmp", std::process::id(), crate::unique()));
    cpio(busybox, root, &files, &building)?;
    // Only its owner (who boots it) reads it (`cpio` made it 0600): it may
    // hold a `--bind` file.
    std::fs::rename(&building, &image).map_err(io_err(&image))?;
    Ok(image)
}

/// Quotes one argument for the guest's shell.
fn quote(arg: &str) -> String {
    format!("'{}'", arg.replace('\'', "'\\''"))
}

/// Runs `command` in a microVM.
pub(crate) fn run(
    command: &[String],
    limits: &Limits,
    binds: Vec<(PathBuf, PathBuf)>,
) -> Result<Report, SandboxError> {
    boot(command, limits, binds, None).map(|(r, _)| r)
}

/// Runs a stage's `command` in a microVM whose initramfs also holds
/// `binds`; its descriptors 0 and 1 are the guest's virtio-serial port,
/// which carries `input` in and the stage's answer out.
pub(crate) fn run_stage(
    command: &[String],
    limits: &Limits,
    binds: Vec<(PathBuf, PathBuf)>,
    io: crate::StageIo,
) -> Result<(Report, Vec<u8>), SandboxError> {
    boot(command, limits, binds, Some(io))
}

/// The host side of a stage's virtio-serial port: QEMU connects to a UNIX
/// socket in the job's scratch directory; one thread accepts, waits for
/// the guest's `R` (its end of the port is open), feeds the input as it
/// comes and
/// reads the answer to the end (QEMU's exit closes it).
struct Port {
    path: PathBuf,
    thread: std::thread::JoinHandle<(Vec<u8>, Option<std::time::Duration>)>,
}

impl Port {
    fn listen(
        path: PathBuf,
        input: crate::StageInput,
        clock: &std::sync::Arc<StageClock>,
    ) -> Result<Port, SandboxError> {
        let clock = std::sync::Arc::clone(clock);
        let listener = std::os::unix::net::UnixListener::bind(&path).map_err(io_err(&path))?;
        let thread = std::thread::spawn(move || {
            let Ok((stream, _)) = listener.accept() else {
                return (Vec::new(), None);
            };
            drop(listener);
            // The guest says when its end is open (see the init above).
            let mut ready = [0u8; 1];
            if std::io::Read::read_exact(&mut &stream, &mut ready).is_err() || ready != *b"R" {
                return (Vec::new(), None);
            }
            let feeding = std::sync::Arc::clone(&clock);
            let feeder = stream
                .try_clone()
                .map(|s| std::thread::spawn(move || crate::child::feed(input, s, &feeding)));
            let out = crate::child::read_all(&stream, &clock);
            if let Ok(f) = feeder {
                let _ = f.join();
            }
            out
        });
        Ok(Port { path, thread })
    }

    /// Once QEMU has ended: unblocks the accept if it never connected (a
    /// connection of our own, fed and closed), and returns the answer.
    fn finish(self) -> (Vec<u8>, Option<std::time::Duration>) {
        if !self.thread.is_finished() {
            let _ = std::os::unix::net::UnixStream::connect(&self.path);
        }
        self.thread.join().unwrap_or_default()
    }
}

/// The user QEMU drops to once the guest is loaded (`-runas`): a system
/// user of its own, so that a guest that escaped into QEMU holds neither
/// root nor the uid of any other sandbox.
pub(crate) const QEMU_USER: &str = "symbiont-vm";

/// `Some(QEMU_USER)` when this process is root (the user must exist:
/// `scripts/setup` makes it); `None` when it is not (QEMU then runs as
/// this process's unprivileged user already).
pub(crate) fn qemu_user() -> Result<Option<&'static str>, SandboxError> {
    if !nix::unistd::geteuid().is_root() {
        return Ok(None);
    }
    match nix::unistd::User::from_name(QEMU_USER) {
        Ok(Some(_)) => Ok(Some(QEMU_USER)),
        _ => Err(SandboxError::Unsupported {
            tier: 3,
            missing: format!(
                "the system user {QEMU_USER}, which QEMU drops root to (scripts/setup adds it: useradd --system {QEMU_USER})"
            ),
        }),
    }
}

/// Boots the guest for `command`, with `binds` copied into its initramfs
/// and, for a stage, `input` fed over the virtio-serial port.
fn boot(
    command: &[String],
    limits: &Limits,
    binds: Vec<(PathBuf, PathBuf)>,
    io: Option<crate::StageIo>,
) -> Result<(Report, Vec<u8>), SandboxError> {
    let started = Instant::now();
    let qemu = find_qemu()?;
    let kernel = find_kernel()?;
    let busybox = find_busybox()?;
    // QEMU's messages, a stage's initramfs and its port's socket.
    let scratch = crate::scratch::Private::new("qemu-")?;
    let initrd = image(&busybox, &binds)?;
    // The unpacked root lives in the guest's RAM, beside the image.
    let extra_mib = match binds.is_empty() {
        true => 0,
        false => 2 * (std::fs::metadata(&initrd).map_err(io_err(&initrd))?.len() >> 20) + 1,
    };
    let script: Vec<String> = command.iter().map(|a| quote(a)).collect();
    // `tsc_early_khz`: under TCG the guest cannot calibrate its TSC (no
    // PIT, HPET or PM timer on microvm) and, about one boot in three, hung
    // there; giving the rate skips the calibration (40 of 40 boots here).
    // `cryptomgr.notests`: the kernel's self-tests of its own crypto
    // algorithms took 0.4 s of emulated boot (`initcall_debug`), and
    // nothing in the guest uses kernel crypto (the worker's AES is its
    // own); boot median 2.79 -> 2.22 s.
    let append = format!(
        "console=ttyS0 loglevel=1 quiet panic=-1 reboot=t tsc_early_khz=2000000 cryptomgr.notests symbiont.cmd={} symbiont.pids={} symbiont.scratch={} symbiont.port={}",
        {
            use base64::Engine;
            base64::engine::general_purpose::STANDARD.encode(script.join(" "))
        },
        limits.pids,
        limits.scratch_bytes,
        u8::from(io.is_some()),
    );
    let memory_mib = (limits.memory_bytes >> 20) + 64 + extra_mib;
    // QEMU's own messages go to a file: with a pipe there, this QEMU's
    // guest was seen to stall when this process's stderr was a pipe too.
    let err_path = scratch.path().join("qemu.stderr");
    let err_file = crate::scratch::create_new(&err_path, 0o600)?;
    let mut qemu_cmd = Command::new(&qemu);
    qemu_cmd
        .args([
            "-M",
            "microvm",
            "-accel",
            &accel(),
            "-m",
            &memory_mib.to_string(),
        ])
        .args(["-nodefaults", "-no-user-config", "-nographic", "-no-reboot"])
        .args(["-serial", "stdio", "-kernel"])
        .arg(&kernel)
        .arg("-initrd")
        .arg(&initrd)
        .args(["-append", &append])
        // QEMU's own seccomp filter: no obsolete calls, no spawning, no
        // scheduler or resource changes. Set*uid stays allowed because
        // `-runas` drops root after the filter is in place.
        .args([
            "-sandbox",
            "on,obsolete=deny,elevateprivileges=allow,spawn=deny,resourcecontrol=deny",
        ]);
    if let Some(user) = qemu_user()? {
        qemu_cmd.args(["-runas", user]);
    }
    // A command writes back at most its memory limit (a stage builds its
    // answer in memory).
    let (input, live) = io.map_or((None, None), |io| (Some(io.input), io.live));
    let clock = StageClock::start(started, limits.memory_bytes, live);
    let overflowed = std::sync::Arc::clone(&clock);
    let port = match input {
        None => None,
        Some(input) => {
            let path = scratch.path().join("stage.sock");
            qemu_cmd
                .args(["-device", "virtio-serial-device", "-chardev"])
                .arg(format!("socket,id=stage,path={}", path.display()))
                .args([
                    "-device",
                    "virtserialport,chardev=stage,name=symbiont.stage",
                ]);
            Some(Port::listen(path, input, &clock)?)
        }
    };
    // Firecracker, where it and KVM exist, runs commands (a stage's port
    // is virtio-serial, which Firecracker does not have).
    let firecracker = match port {
        None => crate::firecracker::usable().ok(),
        Some(_) => None,
    };
    let (mut vmm, vmm_path, api) = match &firecracker {
        None => (qemu_cmd, qemu.clone(), None),
        Some(bin) => {
            let api = scratch.path().join("firecracker.sock");
            let mut c = Command::new(bin);
            c.arg("--api-sock").arg(&api);
            (c, bin.clone(), Some(api))
        }
    };
    let mut child = match vmm
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(err_file)
        .spawn()
    {
        Ok(child) => child,
        Err(source) => {
            // The port's thread waits for a connection that will not come.
            let _ = port.map(Port::finish);
            return Err(SandboxError::Spawn {
                path: vmm_path,
                source,
            });
        }
    };
    if let Some(api) = api {
        // Firecracker's API socket appears once it is up.
        let waiting = Instant::now();
        while !api.exists() && waiting.elapsed() < std::time::Duration::from_secs(5) {
            std::thread::sleep(std::time::Duration::from_millis(2));
        }
        let boot_args = append.replace("reboot=t", "reboot=k pci=off");
        if let Err(e) =
            crate::firecracker::configure_and_start(&api, &kernel, &initrd, &boot_args, memory_mib)
        {
            let _ = child.kill();
            let _ = child.wait();
            return Err(e);
        }
    }
    let pid = nix::unistd::Pid::from_raw(child.id() as i32);
    let watchdog = Watchdog::start(limits.timeout, clock, move || {
        let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGKILL);
    });
    let mut exit = None;
    let mut oom = false;
    // A stage's console is its worker's stderr (diagnostics); a command's
    // is its stdout and stderr.
    let staged = port.is_some();
    let forward = |line: &str| {
        if staged {
            let _ = writeln!(std::io::stderr().lock(), "{line}");
        } else {
            let _ = writeln!(std::io::stdout().lock(), "{line}");
        }
    };
    // The console is bytes, not necessarily UTF-8 (the guest's boot may
    // emit anything): read it to the end whatever it holds, or QEMU would
    // spin on a closed pipe.
    let mut console = BufReader::new(child.stdout.take().expect("piped"));
    let mut raw = Vec::new();
    let mut kernel_said: Vec<String> = Vec::new();
    loop {
        raw.clear();
        // A line is at most 64 KiB (a longer one comes in pieces): a guest
        // that writes without a newline holds no more of the host's memory.
        match std::io::Read::take(&mut console, 64 << 10).read_until(b'\n', &mut raw) {
            Ok(0) | Err(_) => break,
            Ok(_) => {}
        }
        let text = String::from_utf8_lossy(&raw);
        let line = text.trim_end_matches(['\n', '\r']);
        if let Some(code) = line.strip_prefix(EXIT_MARK) {
            exit = code.trim().parse::<i32>().ok();
        } else if line == OOM_MARK {
            oom = true;
        } else if line.starts_with('[') {
            // Kernel messages (`[    0.32] ...`, emergencies only) are the
            // guest's, not the command's: kept for the error below.
            if kernel_said.len() == 8 {
                kernel_said.remove(0);
            }
            kernel_said.push(line.to_owned());
        } else {
            forward(line);
        }
    }
    let status = child.wait();
    // Disarmed before anything else: QEMU is reaped, its pid is no longer
    // its own to kill.
    let timed_out = watchdog.disarm();
    let (output, first_output) = port.map(Port::finish).unwrap_or_default();
    let qemu_err = std::fs::read_to_string(&err_path).unwrap_or_default();
    let outcome = match exit {
        _ if overflowed.overflowed() => Outcome::OutputLimit,
        _ if timed_out => Outcome::TimedOut,
        Some(_) if oom => Outcome::MemoryLimit,
        Some(code) if code > 128 => Outcome::Signaled(code - 128),
        Some(code) => Outcome::Exited(code),
        None => {
            return Err(SandboxError::InitFailed(format!(
                "the microVM ended without reporting ({:?}){}{}",
                status.ok(),
                if qemu_err.is_empty() {
                    String::new()
                } else {
                    format!(": {}", qemu_err.trim())
                },
                if kernel_said.is_empty() {
                    String::new()
                } else {
                    format!("; the guest kernel said: {}", kernel_said.join(" / "))
                }
            )));
        }
    };
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

#[cfg(test)]
mod tests {
    #[test]
    fn quoting() {
        assert_eq!(super::quote("it's"), "'it'\\''s'");
    }
}
