//! bpf-linker links this crate but cargo does not track it: rebuild when it changes.
//! Not finding it is no error here (host builds for `cargo clippy --workspace` do not link with
//! it); smarter-cni's build script checks the prerequisites of the real eBPF build.

fn main() {
    println!("cargo:rerun-if-env-changed=PATH");
    if let Ok(bpf_linker) = which::which("bpf-linker") {
        println!("cargo:rerun-if-changed={}", bpf_linker.display());
    }
}
