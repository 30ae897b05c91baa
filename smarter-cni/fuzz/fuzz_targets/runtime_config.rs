//! Fuzz target: `smarter_cni::cni::fuzzing::runtime_config`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| smarter_cni::cni::fuzzing::runtime_config(data));
