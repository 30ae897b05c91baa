//! The project's image, built from `deploy/Containerfile` as `cargo xtask image` builds it
//! (`BINARIES=prebuilt`, the host's platform, buildah with vfs storage) from this run's own
//! binaries (stripped copies), and podman to run its root file system — both on one
//! private storage, removed on drop (also on panic).
//!
//! These are debug builds linked against glibc: one layer on top of the image adds the loader
//! and the libraries they need (`ldd`). The released image has no such layer (static musl
//! release builds, which `cargo xtask image` builds and checks; see `install_image`).

use std::path::PathBuf;
use std::process::{Command, Output, Stdio};

use super::manifest::workspace;

const IMAGE: &str = "localhost/smarter-cni-e2e:test";
/// The four binaries of the image's `/bin`.
const IMAGE_BINARIES: [(&str, &str); 4] = [
    ("smarter-agent", env!("CARGO_BIN_EXE_smarter-agent")),
    ("smarter-cni", env!("CARGO_BIN_EXE_smarter-cni")),
    ("smarter-bpfctl", env!("CARGO_BIN_EXE_smarter-bpfctl")),
    ("smarter-dns", env!("CARGO_BIN_EXE_smarter-dns")),
];

/// buildah and podman on a private storage and run directory.
pub struct Podman {
    dir: tempfile::TempDir,
}

fn ok(what: &str, out: Output) -> String {
    assert!(
        out.status.success(),
        "{what}: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

impl Podman {
    pub fn new() -> Self {
        Self {
            dir: tempfile::tempdir().unwrap(),
        }
    }

    fn storage(&self, tool: &str) -> Command {
        let d = self.dir.path();
        let mut c = Command::new(tool);
        c.arg("--root")
            .arg(d.join("storage"))
            .arg("--runroot")
            .arg(d.join("run"))
            .args(["--storage-driver", "vfs"])
            .stdin(Stdio::null());
        c
    }

    fn buildah(&self, args: &[&str]) -> String {
        ok(
            &format!("buildah {args:?}"),
            self.storage("buildah").args(args).output().unwrap(),
        )
    }

    /// `podman <args>`.
    pub fn run(&self, args: &[String]) -> Output {
        self.storage("podman")
            .arg("--tmpdir")
            .arg(self.dir.path().join("libpod"))
            .args(["--runtime", "runc", "--cgroup-manager", "cgroupfs"])
            .args(["--events-backend", "file"])
            .args(args)
            .output()
            .expect("run podman")
    }

    /// `podman <args>`, which must succeed; its stdout.
    pub fn ok(&self, args: &[String]) -> String {
        ok(&format!("podman {args:?}"), self.run(args))
    }

    /// A container's log.
    pub fn logs(&self, name: &str) -> String {
        let out = self.run(&["logs".into(), name.into()]);
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    }

    /// Builds the image and returns its root file system (a mounted working container with
    /// the glibc layer added), for `podman run --rootfs`.
    pub fn image_rootfs(&self) -> PathBuf {
        let arch = match std::env::consts::ARCH {
            "x86_64" => "amd64",
            "aarch64" => "arm64",
            other => panic!("no image platform for {other}"),
        };
        let context = self.dir.path().join("context");
        let bin = context.join("bin").join(arch);
        std::fs::create_dir_all(&bin).unwrap();
        let libs = self.dir.path().join("glibc");
        for (name, src) in IMAGE_BINARIES {
            ok(
                "strip",
                Command::new("strip")
                    .arg("-o")
                    .arg(bin.join(name))
                    .arg(src)
                    .output()
                    .unwrap(),
            );
            let out = ok("ldd", Command::new("ldd").arg(src).output().unwrap());
            for lib in out.split_whitespace().filter(|w| w.starts_with('/')) {
                let dest = libs.join(lib.trim_start_matches('/'));
                std::fs::create_dir_all(dest.parent().unwrap()).unwrap();
                std::fs::copy(lib, &dest).unwrap_or_else(|e| panic!("copy {lib}: {e}"));
            }
        }
        let containerfile = workspace().join("deploy/Containerfile");
        self.buildah(&[
            "bud",
            "--isolation",
            "chroot",
            "--os",
            "linux",
            "--arch",
            arch,
            "--build-arg",
            "BINARIES=prebuilt",
            "-f",
            containerfile.to_str().unwrap(),
            "-t",
            IMAGE,
            context.to_str().unwrap(),
        ]);
        let ctr = self.buildah(&["from", "--pull=never", IMAGE]);
        let ctr = ctr.trim();
        self.buildah(&["copy", ctr, &format!("{}/", libs.display()), "/"]);
        let mnt = PathBuf::from(self.buildah(&["mount", ctr]).trim());
        for (name, _) in IMAGE_BINARIES {
            assert!(
                mnt.join("bin").join(name).exists(),
                "/bin/{name} in the image"
            );
        }
        mnt
    }
}

impl Drop for Podman {
    fn drop(&mut self) {
        let _ = self.run(&["rm".into(), "-af".into(), "-t".into(), "0".into()]);
        let _ = self.storage("buildah").args(["umount", "-a"]).output();
        let _ = self.storage("buildah").args(["rm", "-a"]).output();
        let _ = self.storage("buildah").args(["rmi", "-af"]).output();
    }
}

/// Whether `tool --version` runs (for the skip message).
pub fn have(tool: &str) -> bool {
    Command::new(tool)
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}
