//! bpf-linker links this crate but cargo does not track it: rebuild when it changes.
//! Not finding it is no error here (host builds for `cargo clippy --workspace` do not link with
//! it); smarter-cni's build script checks the prerequisites of the real eBPF build.
//!
//! For the BPF build it also asks LLVM to expand every constant `memset` into stores. bpf-linker
//! passes `-bpf-expand-memcpy-in-order`, which (by design, for memcpy) sets the BPF target's
//! `MaxStoresPerMemset` to 0, so even a 3-byte zeroing of a padding field became a call to a
//! `memset` subprogram. Such bpf-to-bpf calls are not JITed by the arm32 JIT of Linux 6.1: every
//! program ran interpreted on armv7 gateways. `-max-store-memset=128` restores the BPF target's
//! usual budget (`getCommonMaxStoresPerMemFunc`) for memset alone; memcpy keeps its in-order
//! expansion. `smarter-ebpf-tests` asserts the object has no bpf-to-bpf call left.

/// The BPF target's own per-intrinsic store budget (LLVM's `getCommonMaxStoresPerMemFunc`).
const MAX_STORES_PER_MEMSET: u32 = 128;

fn main() {
    println!("cargo:rerun-if-env-changed=PATH");
    if let Ok(bpf_linker) = which::which("bpf-linker") {
        println!("cargo:rerun-if-changed={}", bpf_linker.display());
    }
    if std::env::var("CARGO_CFG_TARGET_ARCH").is_ok_and(|a| a == "bpf") {
        println!("cargo:rustc-link-arg-bins=--llvm-args=-max-store-memset={MAX_STORES_PER_MEMSET}");
    }
}
