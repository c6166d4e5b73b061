//! Any bytes as an audit log file: reading and verifying never panics.
#![no_main]

use std::sync::LazyLock;

static KEY: LazyLock<symbiont_crypto::AuditVerifyingKey> = LazyLock::new(|| {
    symbiont_crypto::AuditSigningKey::generate("fuzz")
        .unwrap()
        .verifying_key()
});

libfuzzer_sys::fuzz_target!(|data: &[u8]| symbiont_crypto::fuzz_audit_bytes(data, &KEY));
