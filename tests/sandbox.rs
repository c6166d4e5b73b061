//! Tier 1 containment: a positive control, then attacks that must fail —
//! each with the sandbox's own report of why where it gives one. Needs
//! root (cgroups) and busybox-static (`scripts/setup` installs it).

use std::io::Read;
use std::net::TcpListener;
use std::process::{Command, Output};
use std::time::Duration;

fn sandbox(args: &[&str], command: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_symbi"))
        .args(["sandbox", "run", "--tier", "1"])
        .args(args)
        .arg("--")
        .args(command)
        .output()
        .unwrap()
}

fn sh(script: &str) -> Output {
    sandbox(&["--timeout", "20s"], &["sh", "-c", script])
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

#[test]
fn positive_control_runs_commands_in_a_minimal_unprivileged_root() {
    let o = sh("echo hello; id -u; hostname; ls /; echo scratch > /tmp/f && cat /tmp/f");
    assert_eq!(o.status.code(), Some(0), "{}", text(&o.stderr));
    let out = text(&o.stdout);
    assert_eq!(
        out,
        "hello\n1\nsymbiont-sandbox\nbin\ndev\nproc\ntmp\nscratch\n",
        "{}",
        text(&o.stderr)
    );
    // The command's exit code comes through.
    assert_eq!(sh("exit 7").status.code(), Some(7));
}

#[test]
fn no_tcp_connection_to_the_hosts_loopback() {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    listener.set_nonblocking(true).unwrap();
    let port = listener.local_addr().unwrap().port();
    let o = sh(&format!("echo secret | nc -w 2 127.0.0.1 {port}"));
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
    let secret = std::env::temp_dir().join(format!("symbi-host-secret-{}", std::process::id()));
    std::fs::write(&secret, "HOST-SECRET-7f3a").unwrap();
    for script in [
        format!("cat {}", secret.display()),
        "cat /etc/shadow".to_owned(),
        "cat /proc/1/root/etc/shadow".to_owned(),
        "ls /.old".to_owned(),
    ] {
        let o = sh(&script);
        assert_ne!(o.status.code(), Some(0), "{script}");
        assert!(!text(&o.stdout).contains("HOST-SECRET"), "{script}");
        assert!(!text(&o.stdout).contains("root:"), "{script}");
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
        let o = sh(script);
        assert_ne!(o.status.code(), Some(0), "{script}");
    }
    // The host's busybox is untouched.
    let host = std::fs::read("/bin/busybox").or_else(|_| std::fs::read("/usr/bin/busybox"));
    assert!(host.unwrap().len() > 100_000);
}

#[test]
fn mount_and_module_loading_are_refused() {
    let o = sh("mount -t tmpfs none /tmp");
    assert_ne!(o.status.code(), Some(0));
    let o = sh("echo notamodule > /tmp/x.ko; insmod /tmp/x.ko");
    assert_ne!(o.status.code(), Some(0));
}

#[test]
fn a_system_call_outside_the_allowlist_is_killed_by_sigsys() {
    // busybox `unshare` calls unshare(2), which is not on the allowlist.
    let o = sandbox(&[], &["unshare", "-n", "true"]);
    assert_eq!(o.status.code(), Some(128 + 31), "{}", text(&o.stderr));
    assert!(text(&o.stderr).contains("SIGSYS"), "{}", text(&o.stderr));
}

#[test]
fn a_fork_bomb_is_stopped_by_the_pids_limit() {
    let o = sandbox(
        &["--pids", "32", "--timeout", "3s"],
        &["sh", "-c", "f() { f | f & }; f; sleep 10"],
    );
    let err = text(&o.stderr);
    assert_ne!(o.status.code(), Some(0), "{err}");
    assert!(err.contains("process limit (32) refused"), "{err}");
    // The host still forks.
    assert!(Command::new("true").status().unwrap().success());
}

#[test]
fn allocating_past_the_memory_limit_is_killed_and_reported() {
    let o = sandbox(
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
fn doctor_lists_every_tier() {
    let o = Command::new(env!("CARGO_BIN_EXE_symbi"))
        .args(["sandbox", "doctor", "--format", "json"])
        .output()
        .unwrap();
    let tiers: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(tiers.as_array().unwrap().len(), 3);
    assert_eq!(tiers[0]["available"], true, "{tiers}");
    // Tiers not built yet are refused, not downgraded.
    let o = Command::new(env!("CARGO_BIN_EXE_symbi"))
        .args(["sandbox", "run", "--tier", "2", "--", "true"])
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(1));
    assert!(text(&o.stderr).contains("tier 2 is not available"));
}
