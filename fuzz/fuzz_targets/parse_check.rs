//! Any bytes: parse, check, format; formatting must keep the meaning.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| symbiont_dsl::fuzz_parse_check(data));
