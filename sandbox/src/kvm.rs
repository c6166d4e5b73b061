//! The run-time probe for KVM, which QEMU's microVM (tier 3) and
//! Firecracker both ask.

/// Whether the CPU advertises hardware virtualization (`vmx`, `svm`) and
/// `/dev/kvm` can be opened: the run-time probe for KVM. (A paravirtual
/// `/dev/kvm` on a CPU without those flags, as on the machine this was
/// built on, is one guests do not boot on.)
pub(crate) fn kvm_usable() -> Result<(), String> {
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let flags = cpuinfo
        .lines()
        .find(|l| l.starts_with("flags"))
        .unwrap_or_default();
    if !flags.split_whitespace().any(|f| f == "vmx" || f == "svm") {
        return Err("the CPU advertises no hardware virtualization (no vmx or svm flag)".into());
    }
    std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/kvm")
        .map(drop)
        .map_err(|e| format!("/dev/kvm: {e}"))
}
