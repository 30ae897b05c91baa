//! The embedded eBPF object's programs load on the running kernel as it is (with or without
//! `/sys/kernel/btf/vmlinux`, JIT on or off), and what the kernel made of each: the verifier's
//! processed-instruction count, the translated and JITed sizes (`bpf_prog_info`) and the time
//! `BPF_PROG_LOAD` took. `cargo xtask vm-test` runs this in every guest and tabulates the
//! `PROG` lines it prints (run it with `--nocapture` to see them).

use std::time::Instant;

use aya::{EbpfLoader, programs::SchedClassifier};
use smarter_cni::datapath::ebpf::EBPF_OBJECT as OBJECT;
use smarter_common::progs;

fn sysctl(name: &str) -> String {
    std::fs::read_to_string(format!("/proc/sys/{}", name.replace('.', "/")))
        .map_or_else(|_| "absent".into(), |s| s.trim().to_owned())
}

#[test]
fn every_program_loads_and_reports_its_verifier_and_jit_figures() {
    if !smarter_testbed::require_root("every_program_loads") {
        return;
    }
    assert!(!OBJECT.is_empty(), "built with AYA_BUILD_SKIP");
    let btf = std::path::Path::new("/sys/kernel/btf/vmlinux").exists();
    let jit = sysctl("net.core.bpf_jit_enable");
    let started = Instant::now();
    let mut ebpf = EbpfLoader::new()
        .load(OBJECT)
        .unwrap_or_else(|e| panic!("the object (maps, relocations) loads (btf={btf}): {e:?}"));
    let object_us = started.elapsed().as_micros();
    println!(
        "PROG object btf={} jit={jit} parse_and_maps_us={object_us}",
        if btf { "present" } else { "absent" }
    );
    for name in progs::ALL {
        let prog: &mut SchedClassifier = ebpf
            .program_mut(name)
            .unwrap_or_else(|| panic!("{name} in the object"))
            .try_into()
            .unwrap_or_else(|e| panic!("{name} is a classifier: {e}"));
        let t = Instant::now();
        prog.load()
            .unwrap_or_else(|e| panic!("{name} loads (btf={btf}, jit={jit}): {e:?}"));
        let load_us = t.elapsed().as_micros();
        let info = prog.info().unwrap_or_else(|e| panic!("{name} info: {e}"));
        let xlated = info.size_translated().unwrap_or(0);
        let verified = info.verified_instruction_count().unwrap_or(0);
        assert!(xlated > 0, "{name}: the kernel reports its translated size");
        assert!(
            verified > 0,
            "{name}: the kernel reports its verified count"
        );
        let jited = info.size_jitted();
        println!(
            "PROG {name} verified_insns={verified} xlated_insns={} jited_bytes={jited} load_us={load_us}",
            xlated / 8,
        );
        // jited 0 with the JIT on means the kernel fell back to the interpreter: the program
        // holds a construct this architecture's JIT refuses (arm32 on 6.1: bpf-to-bpf calls,
        // atomics, 64-bit division).
        if jit != "0" && jit != "absent" {
            assert!(
                jited > 0,
                "{name}: bpf_jit_enable={jit} but the kernel runs it interpreted"
            );
        }
    }
}
