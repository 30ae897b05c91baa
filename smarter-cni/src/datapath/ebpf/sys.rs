//! The bpf(2) commands aya 0.14 lacks, all through [`bpf`]: a side-effect-free permission
//! probe (`BPF_MAP_CREATE` of a map closed at once), and detaching a pinned link now
//! (`BPF_LINK_DETACH`, Linux 5.9), instead of waiting for the kernel to free it after unpinning
//! (which happens asynchronously, and never while another process holds the link).

use std::{
    ffi::CString,
    io,
    os::{
        fd::{AsRawFd as _, FromRawFd as _, OwnedFd},
        unix::ffi::OsStrExt as _,
    },
    path::Path,
};

use nix::libc;

/// `enum bpf_cmd` values (uapi, stable).
const BPF_MAP_CREATE: libc::c_int = 0;
const BPF_OBJ_GET: libc::c_int = 7;
/// `BPF_MAP_TYPE_ARRAY` (uapi, stable).
const BPF_MAP_TYPE_ARRAY: u32 = 2;

/// `union bpf_attr` for `BPF_MAP_CREATE` (the prefix every kernel since 3.19 knows).
#[repr(C)]
struct MapCreateAttr {
    map_type: u32,
    key_size: u32,
    value_size: u32,
    max_entries: u32,
    map_flags: u32,
}
const BPF_LINK_DETACH: libc::c_int = 34;

/// `union bpf_attr` for `BPF_OBJ_GET`; the kernel zero-extends a shorter attr.
#[repr(C)]
struct ObjGetAttr {
    pathname: u64,
    bpf_fd: u32,
    file_flags: u32,
}

/// `union bpf_attr` for `BPF_LINK_DETACH`.
#[repr(C)]
struct LinkDetachAttr {
    link_fd: u32,
}

/// The one place this module enters the kernel.
fn bpf<T>(cmd: libc::c_int, attr: &mut T) -> io::Result<libc::c_long> {
    let size = u32::try_from(size_of::<T>()).map_err(io::Error::other)?;
    // SAFETY: `attr` is a live, properly laid out `bpf_attr` prefix of `size` bytes; the kernel
    // copies it in (and for these commands writes nothing back).
    let ret = unsafe { libc::syscall(libc::SYS_bpf, cmd, std::ptr::from_mut(attr), size) };
    if ret < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(ret)
    }
}

/// Whether this process may use bpf(2): creates (and at once closes) a one-entry array map,
/// which leaves nothing behind. `EPERM` means no `CAP_BPF`/`CAP_SYS_ADMIN` (or a seccomp or
/// LSM refusal).
pub(in crate::datapath) fn probe_map_create() -> io::Result<()> {
    let mut attr = MapCreateAttr {
        map_type: BPF_MAP_TYPE_ARRAY,
        key_size: 4,
        value_size: 4,
        max_entries: 1,
        map_flags: 0,
    };
    let fd = libc::c_int::try_from(bpf(BPF_MAP_CREATE, &mut attr)?).map_err(io::Error::other)?;
    // SAFETY: BPF_MAP_CREATE returned a new file descriptor that nothing else owns.
    drop(unsafe { OwnedFd::from_raw_fd(fd) });
    Ok(())
}

/// Detaches the link pinned at `path` from its hook now (the pin itself stays).
pub(super) fn detach_pinned_link(path: &Path) -> io::Result<()> {
    let c_path = CString::new(path.as_os_str().as_bytes())?;
    let mut get = ObjGetAttr {
        pathname: c_path.as_ptr() as u64,
        bpf_fd: 0,
        file_flags: 0,
    };
    let fd = libc::c_int::try_from(bpf(BPF_OBJ_GET, &mut get)?).map_err(io::Error::other)?;
    // SAFETY: BPF_OBJ_GET returned a new file descriptor that nothing else owns.
    let link = unsafe { OwnedFd::from_raw_fd(fd) };
    let mut detach = LinkDetachAttr {
        link_fd: u32::try_from(link.as_raw_fd()).map_err(io::Error::other)?,
    };
    bpf(BPF_LINK_DETACH, &mut detach).map(drop)
}
