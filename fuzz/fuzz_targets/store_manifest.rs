//! Any bytes as an encrypted store's `manifest.json`: parsed, its seal
//! decoded and opened, its TFHE copy looked for: never panics.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| symbiont_operators::fuzz_manifest_bytes(data));
