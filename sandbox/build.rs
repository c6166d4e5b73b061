//! Compiles the tier-1 seccomp allowlist (`seccomp/tier1.json`, one entry
//! per system call with a comment on who needs it) into a BPF program at
//! build time, as firecracker does: the binary carries the compiled filter,
//! and a filter that does not compile fails the build.

use std::io::Write;

fn main() {
    let source = "seccomp/tier1.json";
    println!("cargo:rerun-if-changed={source}");
    let arch = match std::env::var("CARGO_CFG_TARGET_ARCH").as_deref() {
        Ok("x86_64") => seccompiler::TargetArch::x86_64,
        Ok("aarch64") => seccompiler::TargetArch::aarch64,
        Ok(other) => panic!("no seccomp filter for architecture {other}"),
        Err(e) => panic!("CARGO_CFG_TARGET_ARCH: {e}"),
    };
    let json = std::fs::File::open(source).expect("the allowlist exists");
    let filters = seccompiler::compile_from_json(json, arch).expect("the allowlist compiles");
    // The allowlist, and the filter stacked on it that answers clone3 with
    // ENOSYS (the kernel applies the strictest answer of the two).
    for name in ["tier1", "tier1_clone3"] {
        let program = &filters[name];
        // Each instruction as 8 bytes: code (u16 LE), jt, jf, k (u32 LE).
        let mut out = Vec::with_capacity(program.len() * 8);
        for insn in program {
            out.extend_from_slice(&insn.code.to_le_bytes());
            out.push(insn.jt);
            out.push(insn.jf);
            out.extend_from_slice(&insn.k.to_le_bytes());
        }
        let path =
            std::path::Path::new(&std::env::var("OUT_DIR").unwrap()).join(format!("{name}.bpf"));
        std::fs::File::create(path)
            .and_then(|mut f| f.write_all(&out))
            .expect("OUT_DIR is writable");
    }
}
