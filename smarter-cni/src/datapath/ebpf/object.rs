//! The embedded eBPF object: loading it with every map pinned, the id of the pinned build
//! (recorded beside the loader lock, so an upgraded plugin knows to swap the programs), and
//! checking that a pinned program is ours.

use std::fs;
use std::path::{Path, PathBuf};

use aya::{EbpfLoader, maps::ProgramArray, programs::SchedClassifier};
use sha2::{Digest as _, Sha256};
use smarter_common::{maps, progs};

use super::attach::pin_error_to_io;
use super::error::EbpfError;
use super::{pins, pins::PinLayout};

/// The eBPF object of this build: the `smarter-ebpf` programs and maps as `build.rs` built them
/// for `bpfel-unknown-none`, embedded (8-byte aligned, as aya's loader wants). The datapath
/// loads and pins it; it is public so the `BPF_PROG_TEST_RUN` tests (`smarter-ebpf-tests`) run
/// these very programs without building them a second time.
///
/// Empty when the crate was built with `AYA_BUILD_SKIP=1`.
pub static EBPF_OBJECT: &[u8] =
    aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/smarter-ebpf"));

/// A short hash of the embedded eBPF object.
pub(super) fn object_id() -> String {
    let digest = Sha256::digest(EBPF_OBJECT);
    digest[..8].iter().map(|b| format!("{b:02x}")).collect()
}

/// Where the id of the pinned programs' object is recorded (bpffs holds no regular files).
pub(super) fn marker(lock_dir: &Path, network: &str) -> PathBuf {
    crate::state::StateDir::at(lock_dir).ebpf_object(network)
}

/// The recorded object id, `None` when unknown (a network pinned by an older release).
pub(super) fn recorded(lock_dir: &Path, network: &str) -> Option<String> {
    fs::read_to_string(marker(lock_dir, network))
        .ok()
        .map(|s| s.trim().to_string())
}

/// Records that the pinned programs come from this build's object (atomically).
pub(super) fn record(lock_dir: &Path, network: &str) -> Result<(), EbpfError> {
    let path = marker(lock_dir, network);
    let tmp = path.with_extension(format!("object.tmp.{}", std::process::id()));
    fs::write(&tmp, object_id())
        .and_then(|()| fs::rename(&tmp, &path))
        .map_err(|e| {
            let _ = fs::remove_file(&tmp);
            EbpfError::io("record the pinned object", &path, e)
        })
}

/// Loads the embedded object with every map pinned under `layout`, then loads and pins the pod
/// program. Maps already pinned (and checked by the caller) are reused by the loader.
pub(super) fn load_and_pin(layout: &PinLayout, ct_max_entries: u32) -> Result<(), EbpfError> {
    if EBPF_OBJECT.is_empty() {
        return Err(EbpfError::NoObject);
    }
    let mut loader = EbpfLoader::new();
    for spec in &maps::ALL {
        loader.map_pin_path(spec.name, layout.map(spec.name));
    }
    for name in pins::SIZED_BY_CONFIG {
        loader.map_max_entries(name, ct_max_entries);
    }
    let mut ebpf = loader.load(EBPF_OBJECT).map_err(|e| EbpfError::Load {
        dir: layout.dir().into(),
        source: Box::new(e),
    })?;
    for spec in &maps::ALL {
        if ebpf.map(spec.name).is_none() {
            return Err(EbpfError::MissingInObject {
                kind: "map",
                name: spec.name,
            });
        }
    }
    // The pod program is pinned last: its pin marks a complete load. The tail-called programs
    // go into the program array before it (a pinned array keeps its programs).
    let others = progs::ALL.into_iter().filter(|n| *n != progs::POD);
    for name in others {
        load_one(&mut ebpf, layout, name)?;
    }
    fill_tails(&mut ebpf)?;
    load_one(&mut ebpf, layout, progs::POD)
}

/// Loads program `name` of `ebpf` and pins it under `layout`.
fn load_one(ebpf: &mut aya::Ebpf, layout: &PinLayout, name: &'static str) -> Result<(), EbpfError> {
    let prog: &mut SchedClassifier = ebpf
        .program_mut(name)
        .ok_or(EbpfError::MissingInObject {
            kind: "program",
            name,
        })?
        .try_into()
        .map_err(|e| EbpfError::program(name, "load", e))?;
    prog.load()
        .map_err(|e| EbpfError::program(name, "load", e))?;
    // Pinned beside, then renamed over the old pin: openers see the old program or the
    // new one, never none (an upgrade replaces a live pin).
    let path = layout.prog(name);
    let next = layout.prog(&format!("{name}_next"));
    pins::remove_pin(&next)?;
    prog.pin(&next).map_err(|e| EbpfError::Pin {
        path: next.clone(),
        source: pin_error_to_io(e),
    })?;
    std::fs::rename(&next, &path).map_err(|e| EbpfError::io("swap program pin", &path, e))
}

/// Puts the loaded tail-called programs ([`progs::TAILS`]) into their slots of the program
/// array (replacing an older build's on upgrade: the array is pinned and reused).
///
/// # Errors
///
/// [`EbpfError::Program`] / [`EbpfError::Map`] when a program fd or the array update fails.
pub(super) fn fill_tails(ebpf: &mut aya::Ebpf) -> Result<(), EbpfError> {
    let mut fds = Vec::with_capacity(progs::TAILS.len());
    for (name, slot) in progs::TAILS {
        let prog: &SchedClassifier = ebpf
            .program(name)
            .ok_or(EbpfError::MissingInObject {
                kind: "program",
                name,
            })?
            .try_into()
            .map_err(|e| EbpfError::program(name, "tail slot", e))?;
        let fd = prog
            .fd()
            .map_err(|e| EbpfError::program(name, "tail slot", e))?
            .try_clone()
            .map_err(|e| EbpfError::io("dup program fd", name, e))?;
        fds.push((slot, fd));
    }
    let map = ebpf
        .map_mut(maps::TAILS)
        .ok_or(EbpfError::MissingInObject {
            kind: "map",
            name: maps::TAILS,
        })?;
    let mut tails =
        ProgramArray::try_from(map).map_err(|e| EbpfError::map(maps::TAILS, "open", e))?;
    for (slot, fd) in &fds {
        tails
            .set(*slot, fd, 0)
            .map_err(|e| EbpfError::map(maps::TAILS, format!("set slot {slot}"), e))?;
    }
    Ok(())
}

/// The kernel id of the program pinned at `path`, after checking it is ours.
pub(super) fn pinned_program_id(path: &Path) -> Result<u32, EbpfError> {
    let op = || format!("open pin {}", path.display());
    let prog =
        SchedClassifier::from_pin(path).map_err(|e| EbpfError::program(progs::POD, op(), e))?;
    let info = prog
        .info()
        .map_err(|e| EbpfError::program(progs::POD, op(), e))?;
    let name = info.name_as_str().unwrap_or_default();
    if name != progs::POD {
        return Err(EbpfError::WrongProgram {
            path: path.into(),
            expected: progs::POD,
            found: name.into(),
        });
    }
    Ok(info.id())
}
