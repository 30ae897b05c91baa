//! Fuzz target: `smarter_cni::dns::fuzzing::query` (raw DNS query bytes, UDP and TCP).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| smarter_cni::dns::fuzzing::query(data));
