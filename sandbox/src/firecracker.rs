//! Tier 3 under Firecracker, where a `firecracker` binary and a working
//! KVM exist (neither does on the machine this was built on, so the
//! backend has only run against a fake API socket, in the tests below).
//!
//! Firecracker is configured over its API socket, HTTP/1.1 on a UNIX
//! socket: `PUT /boot-source`, `/machine-config`, then `/actions`
//! `InstanceStart`. The VM is the one of spec §4.3.3 (one vCPU, no
//! network interface, memory the sandbox's limit), booting the same guest
//! kernel and initramfs as the QEMU backend, so the guest's init is the
//! same. The client is a few lines over `UnixStream`: four fixed requests
//! with JSON bodies, each answered `204 No Content` or an error, need no
//! HTTP library.

use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};

use crate::SandboxError;

/// The `firecracker` binary: `SYMBIONT_FIRECRACKER`, or on `PATH`.
pub(crate) fn find() -> Option<PathBuf> {
    if let Some(p) = std::env::var_os("SYMBIONT_FIRECRACKER") {
        return Some(PathBuf::from(p));
    }
    crate::which("firecracker")
}

/// Whether tier 3 uses Firecracker here, and why (not).
pub(crate) fn usable() -> Result<PathBuf, String> {
    let bin = find().ok_or("no firecracker binary (SYMBIONT_FIRECRACKER or PATH)")?;
    crate::kvm::kvm_usable()?;
    Ok(bin)
}

/// The line `doctor` prints.
pub(crate) fn describe() -> String {
    match usable() {
        Ok(bin) => format!(
            "Firecracker: {} with KVM (commands; stages still boot QEMU)",
            bin.display()
        ),
        Err(why) => format!("Firecracker backend: not used ({why}); QEMU runs tier 3"),
    }
}

/// The VM of spec §4.3.3 booting `kernel` with `initrd` and `boot_args`:
/// the bodies of `PUT /boot-source` and `PUT /machine-config`.
pub(crate) fn vm_config(
    kernel: &Path,
    initrd: &Path,
    boot_args: &str,
    mem_size_mib: u64,
) -> [(&'static str, serde_json::Value); 2] {
    [
        (
            "/boot-source",
            serde_json::json!({
                "kernel_image_path": kernel,
                "initrd_path": initrd,
                "boot_args": boot_args,
            }),
        ),
        (
            "/machine-config",
            serde_json::json!({
                "vcpu_count": 1,
                "mem_size_mib": mem_size_mib,
                "smt": false,
            }),
        ),
    ]
}

/// Sends one `PUT path` with `body` to the API socket and checks that it
/// was accepted (2xx); Firecracker's `fault_message` otherwise.
pub(crate) fn put(socket: &Path, path: &str, body: &serde_json::Value) -> Result<(), String> {
    let mut stream =
        UnixStream::connect(socket).map_err(|e| format!("{}: {e}", socket.display()))?;
    let body = body.to_string();
    let request = format!(
        "PUT {path} HTTP/1.1\r\nHost: localhost\r\nAccept: application/json\r\n\
         Content-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    stream
        .write_all(request.as_bytes())
        .map_err(|e| format!("PUT {path}: {e}"))?;
    let mut reader = BufReader::new(stream);
    let mut status = String::new();
    reader
        .read_line(&mut status)
        .map_err(|e| format!("PUT {path}: {e}"))?;
    let code: u16 = status
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .ok_or_else(|| format!("PUT {path}: not an HTTP answer: {}", status.trim()))?;
    if (200..300).contains(&code) {
        return Ok(());
    }
    let mut rest = String::new();
    let _ = reader.read_to_string(&mut rest);
    let fault = rest
        .split_once("\r\n\r\n")
        .and_then(|(_, b)| serde_json::from_str::<serde_json::Value>(b).ok())
        .and_then(|v| v["fault_message"].as_str().map(String::from))
        .unwrap_or_default();
    Err(format!("PUT {path}: HTTP {code} {fault}"))
}

/// Configures and starts the VM behind `socket`.
pub(crate) fn configure_and_start(
    socket: &Path,
    kernel: &Path,
    initrd: &Path,
    boot_args: &str,
    mem_size_mib: u64,
) -> Result<(), SandboxError> {
    let fail = |why: String| SandboxError::InitFailed(format!("firecracker: {why}"));
    for (path, body) in vm_config(kernel, initrd, boot_args, mem_size_mib) {
        put(socket, path, &body).map_err(fail)?;
    }
    put(
        socket,
        "/actions",
        &serde_json::json!({"action_type": "InstanceStart"}),
    )
    .map_err(fail)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::net::UnixListener;

    /// A fake Firecracker API: answers each request with `status`, and
    /// returns the requests it saw (request line and body).
    fn fake_api(
        socket: PathBuf,
        answers: Vec<&'static str>,
    ) -> std::thread::JoinHandle<Vec<(String, serde_json::Value)>> {
        let listener = UnixListener::bind(&socket).unwrap();
        std::thread::spawn(move || {
            let mut seen = Vec::new();
            for answer in answers {
                let (stream, _) = listener.accept().unwrap();
                let mut reader = BufReader::new(stream.try_clone().unwrap());
                let mut line = String::new();
                reader.read_line(&mut line).unwrap();
                let mut len = 0;
                loop {
                    let mut h = String::new();
                    reader.read_line(&mut h).unwrap();
                    if h == "\r\n" {
                        break;
                    }
                    if let Some(v) = h.to_ascii_lowercase().strip_prefix("content-length:") {
                        len = v.trim().parse().unwrap();
                    }
                }
                let mut body = vec![0; len];
                reader.read_exact(&mut body).unwrap();
                seen.push((
                    line.trim().to_owned(),
                    serde_json::from_slice(&body).unwrap(),
                ));
                (&stream).write_all(answer.as_bytes()).unwrap();
            }
            seen
        })
    }

    fn scratch() -> PathBuf {
        let d = std::env::temp_dir().join(format!(
            "symbiont-fc-test-{}-{}",
            std::process::id(),
            crate::unique()
        ));
        std::fs::create_dir_all(&d).unwrap();
        d
    }

    #[test]
    fn configures_the_vm_of_the_spec_and_starts_it() {
        let dir = scratch();
        let socket = dir.join("api.sock");
        let ok = "HTTP/1.1 204 No Content\r\nContent-Length: 0\r\n\r\n";
        let api = fake_api(socket.clone(), vec![ok, ok, ok]);
        configure_and_start(
            &socket,
            Path::new("/k/vmlinuz"),
            Path::new("/k/initrd"),
            "console=ttyS0",
            320,
        )
        .unwrap();
        let seen = api.join().unwrap();
        let lines: Vec<&str> = seen.iter().map(|(l, _)| l.as_str()).collect();
        assert_eq!(
            lines,
            [
                "PUT /boot-source HTTP/1.1",
                "PUT /machine-config HTTP/1.1",
                "PUT /actions HTTP/1.1"
            ]
        );
        assert_eq!(seen[0].1["kernel_image_path"], "/k/vmlinuz");
        assert_eq!(seen[0].1["initrd_path"], "/k/initrd");
        assert_eq!(seen[1].1["vcpu_count"], 1);
        assert_eq!(seen[1].1["mem_size_mib"], 320);
        assert_eq!(seen[2].1["action_type"], "InstanceStart");
        // No network interface is ever configured.
        assert!(!lines.iter().any(|l| l.contains("network-interfaces")));
        let _ = std::fs::remove_dir_all(dir);
    }

    #[test]
    fn a_refusal_names_the_request_and_firecrackers_reason() {
        let dir = scratch();
        let socket = dir.join("api.sock");
        let bad = "HTTP/1.1 400 Bad Request\r\nContent-Type: application/json\r\n\r\n\
                   {\"fault_message\":\"Invalid kernel path\"}";
        let api = fake_api(socket.clone(), vec![bad]);
        let e = configure_and_start(
            &socket,
            Path::new("/nope"),
            Path::new("/nope"),
            "console=ttyS0",
            128,
        )
        .unwrap_err()
        .to_string();
        assert!(
            e.contains("PUT /boot-source: HTTP 400 Invalid kernel path"),
            "{e}"
        );
        api.join().unwrap();
        let _ = std::fs::remove_dir_all(dir);
    }
}
