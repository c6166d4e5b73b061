//! Containment in tiers 1 (native), 2 (gVisor) and 3 (microVM): a
//! positive control, then attacks that must fail — each with the sandbox's
//! own report of why where it gives one. The same attacks run in every
//! tier. Needs root (cgroups), busybox-static, runsc, qemu-system-x86 and
//! the guest kernel (`scripts/setup` installs them).

use std::io::Read;
use std::net::TcpListener;
use std::process::{Command, Output};
use std::time::Duration;

fn sandbox_in(tier: &str, args: &[&str], command: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_symbi"))
        .args(["sandbox", "run", "--tier", tier])
        .args(args)
        .arg("--")
        .args(command)
        .output()
        .unwrap()
}

fn sh_in(tier: &str, script: &str) -> Output {
    sandbox_in(tier, &["--timeout", "20s"], &["sh", "-c", script])
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// The attacks every tier must contain.
macro_rules! containment {
    ($tier:ident, $n:literal) => {
        mod $tier {
            use super::*;
            const TIER: &str = $n;

            #[test]
            fn positive_control_runs_commands_in_a_minimal_unprivileged_root() {
                let o = sh_in(
                    TIER,
                    "echo hello; id -u; hostname; ls -1 /; echo scratch > /tmp/f && cat /tmp/f",
                );
                assert_eq!(o.status.code(), Some(0), "{}", text(&o.stderr));
                let out = text(&o.stdout);
                // gVisor adds a synthetic /sys; the microVM's root is its
                // initramfs.
                let listing = match TIER {
                    "1" => "bin\ndev\nlib\nlib64\nproc\ntmp\n",
                    "2" => "bin\ndev\nlib\nlib64\nproc\nsys\ntmp\n",
                    _ => "bin\ndev\netc\ninit\nproc\nroot\nsys\ntmp\n",
                };
                assert_eq!(
                    out,
                    format!("hello\n1\nsymbiont-sandbox\n{listing}scratch\n"),
                    "{}",
                    text(&o.stderr)
                );
                // The command's exit code comes through.
                assert_eq!(sh_in(TIER, "exit 7").status.code(), Some(7));
            }

            #[test]
            fn no_tcp_connection_to_the_hosts_loopback() {
                let listener = TcpListener::bind("127.0.0.1:0").unwrap();
                listener.set_nonblocking(true).unwrap();
                let port = listener.local_addr().unwrap().port();
                let o = sh_in(TIER, &format!("echo secret | nc -w 2 127.0.0.1 {port}"));
                assert_ne!(o.status.code(), Some(0));
                std::thread::sleep(Duration::from_millis(100));
                assert!(
                    listener.accept().is_err(),
                    "the host listener saw a connection from the sandbox"
                );
                // The positive control of the same tool: the listener does accept a
                // connection from the host.
                let mut c = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
                std::io::Write::write_all(&mut c, b"x").unwrap();
                std::thread::sleep(Duration::from_millis(50));
                let (mut s, _) = listener.accept().unwrap();
                let mut b = [0u8; 1];
                s.set_nonblocking(false).unwrap();
                s.read_exact(&mut b).unwrap();
            }

            #[test]
            fn host_files_are_out_of_reach() {
                let secret =
                    std::env::temp_dir().join(format!("symbi-host-secret-{}", std::process::id()));
                std::fs::write(&secret, "HOST-SECRET-7f3a").unwrap();
                for script in [
                    format!("cat {}", secret.display()),
                    "cat /etc/shadow".to_owned(),
                    "cat /proc/1/root/etc/shadow".to_owned(),
                    "ls /.old/etc /.old/root /.old/work".to_owned(),
                ] {
                    let o = sh_in(TIER, &script);
                    assert_ne!(o.status.code(), Some(0), "{script}");
                    assert!(!text(&o.stdout).contains("HOST-SECRET"), "{script}");
                    // A shadow line: `root:` and eight colons (tier 3's console also
                    // carries error messages such as `/.old/root: No such ...`).
                    assert!(
                        !text(&o.stdout)
                            .lines()
                            .any(|l| l.starts_with("root:") && l.matches(':').count() == 8),
                        "{script}"
                    );
                }
                let _ = std::fs::remove_file(&secret);
            }

            #[test]
            fn the_root_filesystem_is_read_only() {
                for script in [
                    "echo x > /bin/planted",
                    "rm /bin/busybox",
                    "mkdir /evil",
                    "echo x > /bin/busybox",
                ] {
                    let o = sh_in(TIER, script);
                    assert_ne!(o.status.code(), Some(0), "{script}");
                }
                // The host's busybox is untouched.
                let host =
                    std::fs::read("/bin/busybox").or_else(|_| std::fs::read("/usr/bin/busybox"));
                assert!(host.unwrap().len() > 100_000);
            }

            #[test]
            fn mount_and_module_loading_are_refused() {
                let o = sh_in(TIER, "mount -t tmpfs none /tmp");
                assert_ne!(o.status.code(), Some(0));
                let o = sh_in(TIER, "echo notamodule > /tmp/x.ko; insmod /tmp/x.ko");
                assert_ne!(o.status.code(), Some(0));
            }

            #[test]
            fn a_fork_bomb_is_stopped_by_the_pids_limit() {
                let o = sandbox_in(
                    TIER,
                    &["--pids", "32", "--timeout", "3s"],
                    &["sh", "-c", "f() { f | f & }; f; sleep 10"],
                );
                let err = text(&o.stderr);
                assert_ne!(o.status.code(), Some(0), "{err}");
                if TIER == "1" {
                    assert!(err.contains("process limit (32) refused"), "{err}");
                }
                // The host still forks.
                assert!(Command::new("true").status().unwrap().success());
            }
        }
    };
}

containment!(tier1, "1");
containment!(tier2, "2");
containment!(tier3, "3");

#[test]
fn a_system_call_outside_the_allowlist_is_killed_by_sigsys() {
    // busybox `unshare` calls unshare(2), which is not on the allowlist.
    let o = sandbox_in("1", &[], &["unshare", "-n", "true"]);
    assert_eq!(o.status.code(), Some(128 + 31), "{}", text(&o.stderr));
    assert!(text(&o.stderr).contains("SIGSYS"), "{}", text(&o.stderr));
}

#[test]
fn allocating_past_the_memory_limit_is_killed_and_reported() {
    let o = sandbox_in(
        "1",
        &["--memory-mib", "48", "--timeout", "20s"],
        &[
            "sh",
            "-c",
            "x=$(head -c 200000000 /dev/zero | tr '\\0' a); echo ${#x}",
        ],
    );
    let err = text(&o.stderr);
    assert_eq!(o.status.code(), Some(137), "{err}");
    assert!(err.contains("memory limit (48 MiB)"), "{err}");
}

#[test]
fn tier3_allocating_past_the_memory_limit_is_killed_and_reported() {
    let o = sandbox_in(
        "3",
        &["--memory-mib", "48", "--timeout", "60s"],
        &[
            "sh",
            "-c",
            "x=$(head -c 200000000 /dev/zero | tr '\\0' a); echo ${#x}",
        ],
    );
    let err = text(&o.stderr);
    assert_eq!(o.status.code(), Some(137), "{err}");
    assert!(err.contains("memory limit (48 MiB)"), "{err}");
}

#[test]
fn tier2_allocating_past_the_memory_limit_does_not_complete() {
    // The Debian runsc (2022) does not report an OOM kill as such: its
    // sandbox dies at the limit. The allocation must still not complete.
    let o = sandbox_in(
        "2",
        &["--memory-mib", "48", "--timeout", "20s"],
        &[
            "sh",
            "-c",
            "x=$(head -c 200000000 /dev/zero | tr '\\0' a); echo ${#x}",
        ],
    );
    assert_ne!(o.status.code(), Some(0));
    assert!(!text(&o.stdout).contains("200000000"));
}

#[test]
fn doctor_lists_every_tier() {
    let o = Command::new(env!("CARGO_BIN_EXE_symbi"))
        .args(["sandbox", "doctor", "--format", "json"])
        .output()
        .unwrap();
    let tiers: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(tiers.as_array().unwrap().len(), 3);
    assert_eq!(tiers[0]["available"], true, "{tiers}");
    assert_eq!(tiers[1]["available"], true, "{tiers}");
    assert_eq!(tiers[2]["available"], true, "{tiers}");
    // A tier the host cannot provide is refused, not downgraded: here, a
    // guest kernel that does not exist.
    let o = Command::new(env!("CARGO_BIN_EXE_symbi"))
        .args(["sandbox", "run", "--tier", "3", "--", "true"])
        .env("SYMBIONT_GUEST_KERNEL", "/nonexistent/vmlinuz")
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(1), "{}", text(&o.stderr));
}

#[test]
fn clinic_costs_with_its_decrypting_stages_in_tiers_1_and_2() {
    let dir = std::env::temp_dir().join(format!("symbi-stage-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let symbi = |args: &[&str]| {
        Command::new(env!("CARGO_BIN_EXE_symbi"))
            .args(args)
            .current_dir(env!("CARGO_MANIFEST_DIR"))
            .env("XDG_STATE_HOME", dir.join("state"))
            .env("XDG_DATA_HOME", dir.join("data"))
            .output()
            .unwrap()
    };
    let store = dir.join("store");
    let o = symbi(&[
        "run",
        "examples/clinic_costs.symbi",
        "--input",
        "patients=examples/data/patients.csv",
        "--stage-tier",
        "auto",
        "--persist-encrypted",
        store.to_str().unwrap(),
    ]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o.stderr));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let expected: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(
            std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("examples/clinic_costs.expected.json"),
        )
        .unwrap(),
    )
    .unwrap();
    for (k, want) in expected.as_object().unwrap() {
        assert_eq!(&v[k], want, "{k}");
    }
    let meta = &v["_meta"];
    assert_eq!(meta["lanes"]["aes_gcm"], 1225);
    assert_eq!(meta["lanes"]["homomorphic"], 179);
    // The risk rule: confidential records are decrypted in tier 1,
    // restricted ones in tier 2; the public stages run in process.
    assert_eq!(meta["tiers"]["aggregate[aes_gcm]"], 1);
    assert_eq!(meta["tiers"]["aggregate[homomorphic]"], 2);
    assert_eq!(meta["tiers"]["aggregate[plaintext]"], "in process");
    // gVisor may refuse mlock; either way it is said.
    let lock = meta["memory_lock"].as_str().unwrap();
    assert!(
        lock == "mlock" || lock.starts_with("not locked: "),
        "{lock}"
    );

    // A tampered batch fails in the sandboxed stage too, naming the record.
    let file = store.join("batches.bin");
    let mut bytes = std::fs::read(&file).unwrap();
    // The middle of the first sealed frame (kind byte 1).
    let mut at = b"SYMBIONT-SEALED v1\n".len();
    loop {
        let len = u32::from_le_bytes(bytes[at..at + 4].try_into().unwrap()) as usize;
        if bytes[at + 4] == 1 {
            bytes[at + 4 + len / 2] ^= 1;
            break;
        }
        at += 4 + len;
    }
    std::fs::write(&file, &bytes).unwrap();
    let o = symbi(&[
        "run",
        "examples/clinic_costs.symbi",
        "--input",
        &format!("patients={}", store.display()),
        "--stage-tier",
        "1",
    ]);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o.stderr));
    assert!(
        text(&o.stderr).contains("failed authentication"),
        "{}",
        text(&o.stderr)
    );
    let _ = std::fs::remove_dir_all(&dir);
}
