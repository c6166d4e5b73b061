//! Tier 3: a microVM. QEMU's `microvm` machine boots the Debian cloud
//! kernel (`scripts/guest-kernel` fetches it) with an initramfs holding the
//! static busybox and a small init; the command runs in the guest as uid 1
//! (`su`, under `no_new_privs`) with no capabilities, over a read-only root and a tmpfs `/tmp`, with no
//! network device at all. The guest's RAM is the memory limit (plus 64 MiB
//! for its kernel); the process limit is the guest's `RLIMIT_NPROC`.
//!
//! Acceleration: TCG (emulation) unless `SYMBIONT_QEMU_ACCEL=kvm`; this
//! machine's `/dev/kvm` is a paravirtual device on which guests do not
//! boot, so KVM is not probed by default. The command's stdout and stderr
//! share the guest's serial console.

use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Instant;

use crate::child::Watchdog;
use crate::native::find_busybox;
use crate::{Limits, Outcome, Report, SandboxError};

const EXIT_MARK: &str = "SYMBIONT-EXIT ";
const OOM_MARK: &str = "SYMBIONT-OOM";

/// The guest's init: mounts, reads the command from the kernel command
/// line, drops to uid 1 and runs it, reports its exit status, powers off.
const INIT: &str = r#"#!/bin/busybox sh
/bin/busybox mkdir -p /proc /sys /dev /tmp /bin
/bin/busybox mount -t proc proc /proc
/bin/busybox mount -t devtmpfs dev /dev 2>/dev/null
/bin/busybox --install -s /bin
arg() { sed -n "s/.*symbiont\.$1=\([^ ]*\).*/\1/p" /proc/cmdline; }
mount -t tmpfs -o "size=$(arg scratch),mode=1777,nosuid,nodev" tmpfs /tmp
cmd=$(arg cmd | base64 -d)
pids=$(arg pids)
hostname symbiont-sandbox
mount -o remount,ro /
setpriv --nnp su -s /bin/sh sandbox -c "ulimit -u $pids; ulimit -n 256; cd /; exec $cmd"
code=$?
dmesg | grep -q 'Killed process' && echo SYMBIONT-OOM
echo "SYMBIONT-EXIT $code"
poweroff -f
"#;

fn which(bin: &str) -> Option<PathBuf> {
    std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|p| p.join(bin))
            .find(|p| p.exists())
    })
}

/// QEMU, or what is missing.
pub(crate) fn find_qemu() -> Result<PathBuf, SandboxError> {
    which("qemu-system-x86_64").ok_or(SandboxError::Unsupported {
        tier: 3,
        missing: "qemu-system-x86_64 (install the Debian package qemu-system-x86)".into(),
    })
}

/// The guest kernel: `SYMBIONT_GUEST_KERNEL`, or where
/// `scripts/guest-kernel` puts it (`$XDG_CACHE_HOME/symbiont/guest/vmlinuz`,
/// `~/.cache/...`).
pub(crate) fn find_kernel() -> Result<PathBuf, SandboxError> {
    if let Some(k) = std::env::var_os("SYMBIONT_GUEST_KERNEL") {
        return Ok(PathBuf::from(k));
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

/// The acceleration QEMU is asked for.
pub(crate) fn accel() -> String {
    std::env::var("SYMBIONT_QEMU_ACCEL").unwrap_or_else(|_| "tcg".into())
}

/// The initramfs (busybox and the init above), built once per busybox into
/// the temporary directory by busybox's own `cpio`.
fn initramfs(busybox: &Path) -> Result<PathBuf, SandboxError> {
    let io = |p: &Path| {
        let p = p.to_owned();
        move |source| SandboxError::Root { path: p, source }
    };
    let len = std::fs::metadata(busybox).map_err(io(busybox))?.len();
    let image = std::env::temp_dir().join(format!("symbiont-guest-initramfs-v3-{len}.cpio"));
    if image.exists() {
        return Ok(image);
    }
    let dir = crate::native::RootDir::empty(&format!(
        "symbiont-guest-build-{}-{}",
        std::process::id(),
        crate::unique()
    ))?;
    use std::os::unix::fs::PermissionsExt;
    // The guest's `/`: everyone may enter it.
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755))
        .map_err(io(dir.path()))?;
    let bin = dir.path().join("bin");
    std::fs::create_dir_all(&bin).map_err(io(&bin))?;
    std::fs::copy(busybox, bin.join("busybox")).map_err(io(busybox))?;
    let etc = dir.path().join("etc");
    std::fs::create_dir_all(&etc).map_err(io(&etc))?;
    std::fs::write(
        etc.join("passwd"),
        "root:x:0:0::/:/bin/sh\nsandbox:x:1:1::/tmp:/bin/sh\n",
    )
    .map_err(io(&etc))?;
    std::fs::write(etc.join("group"), "root:x:0:\nsandbox:x:1:\n").map_err(io(&etc))?;
    let init = dir.path().join("init");
    std::fs::write(&init, INIT).map_err(io(&init))?;
    std::fs::set_permissions(&init, std::fs::Permissions::from_mode(0o755)).map_err(io(&init))?;
    let building = image.with_extension(format!("{}.tmp", std::process::id()));
    let out = std::fs::File::create(&building).map_err(io(&building))?;
    let mut cpio = Command::new(busybox)
        .args(["cpio", "-o", "-H", "newc"])
        .current_dir(dir.path())
        .stdin(Stdio::piped())
        .stdout(out)
        .stderr(Stdio::null())
        .spawn()
        .map_err(io(busybox))?;
    cpio.stdin
        .take()
        .expect("piped")
        .write_all(b".\nbin\nbin/busybox\netc\netc/passwd\netc/group\ninit\n")
        .map_err(io(busybox))?;
    let status = cpio.wait().map_err(io(busybox))?;
    if !status.success() {
        return Err(SandboxError::InitFailed("busybox cpio failed".into()));
    }
    std::fs::rename(&building, &image).map_err(io(&image))?;
    Ok(image)
}

/// Quotes one argument for the guest's shell.
fn quote(arg: &str) -> String {
    format!("'{}'", arg.replace('\'', "'\\''"))
}

/// Runs `command` in a microVM.
pub(crate) fn run(command: &[String], limits: &Limits) -> Result<Report, SandboxError> {
    let started = Instant::now();
    let qemu = find_qemu()?;
    let kernel = find_kernel()?;
    let busybox = find_busybox()?;
    let initrd = initramfs(&busybox)?;
    let script: Vec<String> = command.iter().map(|a| quote(a)).collect();
    // `tsc_early_khz`: under TCG the guest cannot calibrate its TSC (no
    // PIT, HPET or PM timer on microvm) and, about one boot in three, hung
    // there; giving the rate skips the calibration (40 of 40 boots here).
    let append = format!(
        "console=ttyS0 loglevel=0 quiet panic=-1 reboot=t tsc_early_khz=2000000 symbiont.cmd={} symbiont.pids={} symbiont.scratch={}",
        {
            use base64::Engine;
            base64::engine::general_purpose::STANDARD.encode(script.join(" "))
        },
        limits.pids,
        limits.scratch_bytes
    );
    let memory_mib = (limits.memory_bytes >> 20) + 64;
    // QEMU's own messages go to a file: with a pipe there, this QEMU's
    // guest was seen to stall when this process's stderr was a pipe too.
    let scratch = crate::native::RootDir::empty(&format!(
        "symbiont-qemu-{}-{}",
        std::process::id(),
        crate::unique()
    ))?;
    let err_path = scratch.path().join("qemu.stderr");
    let err_file = std::fs::File::create(&err_path).map_err(|source| SandboxError::Root {
        path: err_path.clone(),
        source,
    })?;
    let mut child = Command::new(&qemu)
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
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(err_file)
        .spawn()
        .map_err(|source| SandboxError::Spawn {
            path: qemu.clone(),
            source,
        })?;
    let pid = nix::unistd::Pid::from_raw(child.id() as i32);
    let watchdog = Watchdog::start(
        limits.timeout.saturating_sub(started.elapsed()),
        move || {
            let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGKILL);
        },
    );
    let mut exit = None;
    let mut oom = false;
    let stdout = std::io::stdout();
    // The console is bytes, not necessarily UTF-8 (the guest's boot may
    // emit anything): read it to the end whatever it holds, or QEMU would
    // spin on a closed pipe.
    let mut console = BufReader::new(child.stdout.take().expect("piped"));
    let mut raw = Vec::new();
    loop {
        raw.clear();
        match console.read_until(b'\n', &mut raw) {
            Ok(0) | Err(_) => break,
            Ok(_) => {}
        }
        let text = String::from_utf8_lossy(&raw);
        let line = text.trim_end_matches(['\n', '\r']);
        if let Some(code) = line.strip_prefix(EXIT_MARK) {
            exit = code.trim().parse::<i32>().ok();
        } else if line == OOM_MARK {
            oom = true;
        } else if !line.starts_with('[') {
            // Kernel messages (`[    0.32] ...`) are the guest's, not the
            // command's.
            let _ = writeln!(stdout.lock(), "{line}");
        }
    }
    let status = child.wait();
    let qemu_err = std::fs::read_to_string(&err_path).unwrap_or_default();
    let timed_out = watchdog.disarm();
    let outcome = match exit {
        _ if timed_out => Outcome::TimedOut,
        Some(_) if oom => Outcome::MemoryLimit,
        Some(code) if code > 128 => Outcome::Signaled(code - 128),
        Some(code) => Outcome::Exited(code),
        None => {
            return Err(SandboxError::InitFailed(format!(
                "the microVM ended without reporting ({:?}){}",
                status.ok(),
                if qemu_err.is_empty() {
                    String::new()
                } else {
                    format!(": {}", qemu_err.trim())
                }
            )));
        }
    };
    Ok(Report {
        outcome,
        pids_limited: false,
        elapsed: started.elapsed(),
    })
}

#[cfg(test)]
mod tests {
    #[test]
    fn quoting() {
        assert_eq!(super::quote("it's"), "'it'\\''s'");
    }
}
