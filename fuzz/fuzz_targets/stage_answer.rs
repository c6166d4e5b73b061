//! Any bytes as a compute stage's answer, as the job reads it: the
//! additive path's reduced columns (decoded within their length, checked
//! against what was sent) and the programmable path's aggregates: never
//! panics.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| symbiont_operators::fuzz_stage_answer(data));
