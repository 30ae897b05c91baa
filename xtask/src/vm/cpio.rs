//! An uncompressed `newc` cpio archive (the initramfs format the kernel unpacks), built from an
//! in-memory tree of guest paths. Uncompressed: under TCG, decompressing in the guest costs more
//! than reading the bigger file.

use std::{
    collections::BTreeMap,
    fs,
    io::{self, Write},
    path::{Path, PathBuf},
};

/// What a guest path holds.
pub enum Node {
    /// A directory (mode 0755).
    Dir,
    /// A regular file copied from the host, with its mode.
    Host(PathBuf, u32),
    /// A regular file with these bytes and mode.
    Bytes(Vec<u8>, u32),
    /// A symbolic link to this target.
    Symlink(String),
}

/// A guest file tree; parents are added automatically, and sorting puts them first.
#[derive(Default)]
pub struct Tree {
    nodes: BTreeMap<PathBuf, Node>,
}

impl Tree {
    /// Adds `node` at the absolute guest `path` (replacing what was there) and its parents.
    pub fn add(&mut self, path: impl AsRef<Path>, node: Node) {
        let path = path.as_ref();
        let rel = path.strip_prefix("/").unwrap_or(path).to_path_buf();
        for parent in rel.ancestors().skip(1) {
            if !parent.as_os_str().is_empty() {
                self.nodes.entry(parent.to_path_buf()).or_insert(Node::Dir);
            }
        }
        self.nodes.insert(rel, node);
    }

    /// Whether something is at the absolute guest `path`.
    pub fn contains(&self, path: impl AsRef<Path>) -> bool {
        let path = path.as_ref();
        self.nodes
            .contains_key(path.strip_prefix("/").unwrap_or(path))
    }

    /// Writes the archive to `out`; returns its size in bytes.
    ///
    /// # Errors
    /// When a host file cannot be read or `out` cannot be written.
    pub fn write(&self, out: &Path) -> io::Result<u64> {
        let mut w = io::BufWriter::new(fs::File::create(out)?);
        let mut written = 0u64;
        for (ino, (path, node)) in (1u32..).zip(&self.nodes) {
            let (mode, data) = match node {
                Node::Dir => (0o040_755, Vec::new()),
                Node::Host(src, mode) => (0o100_000 | mode, fs::read(src)?),
                Node::Bytes(b, mode) => (0o100_000 | mode, b.clone()),
                Node::Symlink(t) => (0o120_777, t.as_bytes().to_vec()),
            };
            written += entry(&mut w, ino, mode, &path.to_string_lossy(), &data)?;
        }
        written += entry(&mut w, 0, 0, "TRAILER!!!", &[])?;
        w.flush()?;
        Ok(written)
    }
}

/// One `newc` header, name and data, each padded to 4 bytes; returns the bytes written.
fn entry(w: &mut impl Write, ino: u32, mode: u32, name: &str, data: &[u8]) -> io::Result<u64> {
    let namesize = name.len() + 1;
    let filesize = u32::try_from(data.len()).map_err(io::Error::other)?;
    let nlink = if mode & 0o170_000 == 0o040_000 { 2 } else { 1 };
    let fields = [
        ino,
        mode,
        0,
        0,
        nlink,
        0,
        filesize,
        0,
        0,
        0,
        0,
        u32::try_from(namesize).map_err(io::Error::other)?,
        0,
    ];
    let mut header = String::from("070701");
    for f in fields {
        header.push_str(&format!("{f:08x}"));
    }
    w.write_all(header.as_bytes())?;
    w.write_all(name.as_bytes())?;
    w.write_all(&[0])?;
    let head = 110 + namesize;
    w.write_all(&[0; 3][..pad(head)])?;
    w.write_all(data)?;
    w.write_all(&[0; 3][..pad(data.len())])?;
    Ok((head + pad(head) + data.len() + pad(data.len())) as u64)
}

fn pad(n: usize) -> usize {
    (4 - n % 4) % 4
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn newc_entries_are_aligned_and_parents_come_first() {
        let mut t = Tree::default();
        t.add("/a/b/c", Node::Bytes(b"hello".to_vec(), 0o644));
        t.add("/a/link", Node::Symlink("b/c".into()));
        let out = std::env::temp_dir().join(format!("xtask-cpio-{}", std::process::id()));
        let size = t.write(&out).unwrap();
        let bytes = fs::read(&out).unwrap();
        fs::remove_file(&out).unwrap();
        assert_eq!(bytes.len() as u64, size);
        assert_eq!(size % 4, 0);
        let names: Vec<&str> = ["a\0", "a/b\0", "a/b/c\0", "a/link\0", "TRAILER!!!\0"]
            .into_iter()
            .collect();
        let mut at = 0;
        for n in names {
            let found = bytes[at..]
                .windows(n.len())
                .position(|w| w == n.as_bytes())
                .unwrap_or_else(|| panic!("{n:?} missing or out of order"));
            at += found + n.len();
        }
        assert!(bytes.starts_with(b"070701"));
    }
}
