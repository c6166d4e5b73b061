//! Any bytes as an encrypted dataset's `batches.bin`, its sealed batches
//! opened, and as a sealed batch's plaintext: never panics.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| symbiont_operators::fuzz_store_bytes(data));
