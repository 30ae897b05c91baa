//! Fuzz target: `smarter_cni::cni::fuzzing::cni_args`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| smarter_cni::cni::fuzzing::cni_args(data));
