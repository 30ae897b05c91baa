//! Images for a runtime that reaches no registry: a root file system packed as a
//! `FROM scratch` OCI archive (one uncompressed layer), written directly, for
//! `ctr images import`.
//!
//! Two are built: the sandbox ("pause") image, a static C program that sleeps until
//! SIGTERM/SIGINT, and a busybox image (Debian's static busybox, `sh` linked to it, and a
//! web root with a CGI script that answers with the client's address).

use std::io;
use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use serde_json::json;
use sha2::Digest as _;

/// The sandbox image's name.
pub const PAUSE_IMAGE: &str = "localhost/smarter-pause:e2e";
/// The busybox image's name.
pub const BUSYBOX_IMAGE: &str = "localhost/smarter-busybox:e2e";
/// Debian's static busybox (package `busybox-static`).
pub const BUSYBOX: &str = "/bin/busybox";
/// What `GET /index.html` of the busybox image's web root answers.
pub const WEB_MARKER: &str = "smarter-cni e2e web root";

/// The pause program: sleeps until SIGTERM or SIGINT.
const PAUSE_C: &str = r"
#include <signal.h>
#include <unistd.h>
static void done(int sig) { (void)sig; _exit(0); }
int main(void) {
    signal(SIGTERM, done);
    signal(SIGINT, done);
    for (;;) pause();
}
";

/// A CGI script for busybox `httpd`: answers with the client's address.
const PEER_CGI: &str =
    "#!/bin/sh\nprintf 'Content-Type: text/plain\\r\\n\\r\\n%s\\n' \"$REMOTE_ADDR\"\n";

fn sha256(data: &[u8]) -> String {
    let d = sha2::Sha256::digest(data);
    d.iter().map(|b| format!("{b:02x}")).collect()
}

fn run(cmd: &mut Command) -> io::Result<()> {
    let out = cmd.stdin(Stdio::null()).output()?;
    if out.status.success() {
        Ok(())
    } else {
        Err(io::Error::other(format!(
            "{cmd:?}: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )))
    }
}

fn executable(path: &Path) -> io::Result<()> {
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o755))
}

/// The OCI platform name of this machine's architecture.
fn oci_arch() -> &'static str {
    match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        other => other,
    }
}

/// Packs `rootfs` as an OCI archive `dir/<file>` whose image is `name` with `entrypoint`.
///
/// # Errors
/// Any failure of `tar` or the file system.
pub fn oci_archive(
    dir: &Path,
    rootfs: &Path,
    name: &str,
    entrypoint: &[&str],
    file: &str,
) -> io::Result<PathBuf> {
    let layer_path = dir.join(format!("{file}.layer"));
    run(Command::new("tar")
        .args(["--owner=0", "--group=0", "--numeric-owner", "-cf"])
        .arg(&layer_path)
        .arg("-C")
        .arg(rootfs)
        .arg("."))?;
    let layer = std::fs::read(&layer_path)?;
    let layer_digest = format!("sha256:{}", sha256(&layer));
    let config = serde_json::to_vec(&json!({
        "architecture": oci_arch(),
        "os": "linux",
        "config": {"Entrypoint": entrypoint},
        "rootfs": {"type": "layers", "diff_ids": [layer_digest]},
    }))?;
    let manifest = serde_json::to_vec(&json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {
            "mediaType": "application/vnd.oci.image.config.v1+json",
            "digest": format!("sha256:{}", sha256(&config)),
            "size": config.len(),
        },
        "layers": [{
            "mediaType": "application/vnd.oci.image.layer.v1.tar",
            "digest": layer_digest,
            "size": layer.len(),
        }],
    }))?;
    let index = json!({
        "schemaVersion": 2,
        "manifests": [{
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "digest": format!("sha256:{}", sha256(&manifest)),
            "size": manifest.len(),
            "annotations": {
                "io.containerd.image.name": name,
                "org.opencontainers.image.ref.name": "e2e",
            },
        }],
    });
    let oci = dir.join(format!("{file}.oci"));
    let blobs = oci.join("blobs/sha256");
    std::fs::create_dir_all(&blobs)?;
    for blob in [&layer, &config, &manifest] {
        std::fs::write(blobs.join(sha256(blob)), blob)?;
    }
    std::fs::write(oci.join("oci-layout"), r#"{"imageLayoutVersion":"1.0.0"}"#)?;
    std::fs::write(oci.join("index.json"), index.to_string())?;
    let archive = dir.join(file);
    run(Command::new("tar")
        .arg("-cf")
        .arg(&archive)
        .arg("-C")
        .arg(&oci)
        .args(["oci-layout", "index.json", "blobs"]))?;
    Ok(archive)
}

/// Builds the pause image ([`PAUSE_IMAGE`]) at `dir/pause.tar` (needs `gcc` with a static libc).
///
/// # Errors
/// Any failure of `gcc`, `tar` or the file system.
pub fn pause_image(dir: &Path) -> io::Result<PathBuf> {
    let src = dir.join("pause.c");
    let rootfs = dir.join("pause-rootfs");
    std::fs::create_dir_all(&rootfs)?;
    std::fs::write(&src, PAUSE_C)?;
    run(Command::new("gcc")
        .args(["-static", "-O2", "-s", "-o"])
        .arg(rootfs.join("pause"))
        .arg(&src))?;
    executable(&rootfs.join("pause"))?;
    oci_archive(dir, &rootfs, PAUSE_IMAGE, &["/pause"], "pause.tar")
}

/// Builds the busybox image ([`BUSYBOX_IMAGE`]) at `dir/busybox.tar`: `/bin/busybox`, `/bin/sh`
/// linked to it, `/www/index.html` ([`WEB_MARKER`]) and `/www/cgi-bin/peer` (the client's
/// address), entrypoint `/bin/busybox`.
///
/// # Errors
/// Any failure of `tar` or the file system (a missing [`BUSYBOX`] included).
pub fn busybox_image(dir: &Path) -> io::Result<PathBuf> {
    let rootfs = dir.join("busybox-rootfs");
    std::fs::create_dir_all(rootfs.join("bin"))?;
    std::fs::create_dir_all(rootfs.join("www/cgi-bin"))?;
    std::fs::create_dir_all(rootfs.join("tmp"))?;
    std::fs::copy(BUSYBOX, rootfs.join("bin/busybox"))?;
    executable(&rootfs.join("bin/busybox"))?;
    std::os::unix::fs::symlink("busybox", rootfs.join("bin/sh"))?;
    std::fs::write(rootfs.join("www/index.html"), format!("{WEB_MARKER}\n"))?;
    std::fs::write(rootfs.join("www/cgi-bin/peer"), PEER_CGI)?;
    executable(&rootfs.join("www/cgi-bin/peer"))?;
    oci_archive(
        dir,
        &rootfs,
        BUSYBOX_IMAGE,
        &["/bin/busybox"],
        "busybox.tar",
    )
}
