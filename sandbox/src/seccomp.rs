//! The tier-1 seccomp filter: `seccomp/tier1.json`, compiled by `build.rs`
//! with firecracker's `seccompiler` into classic BPF. A system call not on
//! the allowlist, or on it with arguments its rule does not allow (`clone`
//! with a namespace flag, `socket` other than AF_UNIX, an `ioctl` request
//! off its list), kills the process (SIGSYS). A second filter, stacked on
//! it, answers `clone3` with ENOSYS: its flags are behind a pointer no
//! filter can read, and libc then falls back to `clone`.

use seccompiler::sock_filter;

/// The compiled filters, 8 bytes per instruction.
const PROGRAM: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/tier1.bpf"));
const CLONE3: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/tier1_clone3.bpf"));

/// The allowlist as `seccompiler` takes it.
fn program() -> Vec<sock_filter> {
    decode(PROGRAM)
}

fn decode(bytes: &[u8]) -> Vec<sock_filter> {
    bytes
        .chunks_exact(8)
        .map(|c| sock_filter {
            code: u16::from_le_bytes([c[0], c[1]]),
            jt: c[2],
            jf: c[3],
            k: u32::from_le_bytes([c[4], c[5], c[6], c[7]]),
        })
        .collect()
}

/// System calls on the allowlist (some with several rules).
pub(crate) fn allowlist_len() -> usize {
    // The JSON is the source of truth; count its distinct system calls.
    let json: serde_json::Value = serde_json::from_str(include_str!("../seccomp/tier1.json"))
        .expect("the allowlist is JSON (build.rs compiled it)");
    let mut names: Vec<&str> = json["tier1"]["filter"]
        .as_array()
        .map(|f| f.iter().filter_map(|r| r["syscall"].as_str()).collect())
        .unwrap_or_default();
    names.sort_unstable();
    names.dedup();
    names.len()
}

/// Installs both filters on the calling thread (needs no_new_privs).
pub(crate) fn apply() -> Result<(), seccompiler::Error> {
    seccompiler::apply_filter(&decode(CLONE3))?;
    seccompiler::apply_filter(&program())
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_filter_compiled_and_lists_every_syscall_with_a_comment() {
        assert!(super::program().len() > super::allowlist_len());
        let json: serde_json::Value =
            serde_json::from_str(include_str!("../seccomp/tier1.json")).unwrap();
        for rule in json["tier1"]["filter"].as_array().unwrap() {
            let comment = rule["comment"].as_str().unwrap_or("");
            assert!(comment.len() > 5, "{rule}: every syscall says who needs it");
        }
        let names: Vec<&str> = json["tier1"]["filter"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| r["syscall"].as_str().unwrap())
            .collect();
        for forbidden in [
            "mount",
            "ptrace",
            "init_module",
            "finit_module",
            "unshare",
            "setns",
            "bpf",
            "kexec_load",
            "pivot_root",
            "chroot",
            "reboot",
            "keyctl",
            "perf_event_open",
        ] {
            assert!(
                !names.contains(&forbidden),
                "{forbidden} must not be allowed"
            );
        }
    }
}
