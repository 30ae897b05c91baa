//! The embedded object holds no instruction the arm32 JIT of Linux 6.1 refuses (no root, no
//! kernel: the ELF is read as built). One such instruction anywhere in a program keeps the
//! kernel from JIT-compiling it on armv7 gateways: a bpf-to-bpf call sends the whole program to
//! the interpreter, a 64-bit modulo made its load fail with -524 (`bpf_jit_enable=1`, 6.1).
//! `cargo xtask vm-test --arch armhf` checks the same thing in the real kernel (`jited_bytes >
//! 0` with `bpf_jit_enable=1`); this test names the instruction at build time on any machine.

use object::{Object, ObjectSection, SectionKind};
use smarter_cni::datapath::ebpf::EBPF_OBJECT;
use smarter_common::progs;

/// `BPF_JMP | BPF_CALL`.
const CALL: u8 = 0x85;
/// `src_reg` of a call to another BPF function (bpf-to-bpf), not to a helper.
const PSEUDO_CALL: u8 = 1;
/// `BPF_LD | BPF_IMM | BPF_DW`: the one 16-byte instruction.
const LD_IMM64: u8 = 0x18;

/// What the arm32 JIT of 6.1 has no code for, by opcode.
fn refused(opcode: u8, src_reg: u8) -> Option<&'static str> {
    match opcode {
        CALL if src_reg == PSEUDO_CALL => Some("bpf-to-bpf call"),
        0xc3 | 0xdb => Some("atomic (BPF_STX | BPF_ATOMIC)"),
        0x37 | 0x3f | 0x97 | 0x9f => Some("64-bit division or modulo (BPF_ALU64 | BPF_DIV/MOD)"),
        _ => None,
    }
}

#[test]
fn programs_hold_nothing_the_arm32_jit_refuses() {
    assert!(!EBPF_OBJECT.is_empty(), "built with AYA_BUILD_SKIP");
    let file = object::File::parse(EBPF_OBJECT).expect("the embedded object is an ELF file");
    let mut found = Vec::new();
    let mut programs = 0;
    for section in file.sections() {
        if section.kind() != SectionKind::Text {
            continue;
        }
        let name = section.name().unwrap_or("?").to_owned();
        if name == "classifier" || name.starts_with("classifier/") {
            programs += 1;
        }
        let code = section.data().expect("section data");
        let mut at = 0;
        while at + 8 <= code.len() {
            let (opcode, src_reg) = (code[at], code[at + 1] >> 4);
            if let Some(what) = refused(opcode, src_reg) {
                found.push(format!("{name}+{}: {what}", at / 8));
            }
            at += if opcode == LD_IMM64 { 16 } else { 8 };
        }
    }
    assert!(
        programs > 0,
        "no classifier section in the object (expected {:?})",
        progs::ALL
    );
    assert!(
        found.is_empty(),
        "instructions the arm32 JIT refuses:\n{}",
        found.join("\n")
    );
}

#[test]
fn the_scanner_finds_each_refused_construct() {
    assert_eq!(refused(CALL, PSEUDO_CALL), Some("bpf-to-bpf call"));
    assert_eq!(refused(CALL, 0), None, "a helper call is JITed");
    assert!(refused(0xdb, 0).is_some());
    assert!(refused(0x3f, 0).is_some());
    assert_eq!(refused(0x3c, 0), None, "32-bit division is JITed");
}
