//! The image of `deploy/Containerfile` runs the installer as the `DaemonSet`'s init container
//! does: built with buildah (`BINARIES=prebuilt`, the host's platform), run with podman
//! (`--network none`, read-only root, all capabilities dropped) against host-like temp
//! directories mounted as `/host/cni/bin`, `/host/cni/net.d` and `/var/lib/smarter-cni` and a
//! private bpffs without the pin root (a fresh node), with the ConfigMap of
//! `deploy/smarter-cni.yaml` as its environment (`BPFFS_DIR` pointing into that bpffs). Checks the image's `/bin`
//! and platform, the installed files and their modes, the pin root it creates (0700), that a
//! second run changes nothing, that
//! an invalid value is refused naming its key without touching the previous conflist, and
//! that `smarter-agent uninstall` removes what was installed.
//!
//! The binaries are this test run's own (`CARGO_BIN_EXE_*`, stripped copies), so the code under
//! test is the code in the image. They are debug builds linked against glibc: one extra layer
//! on top of the image adds the loader and libraries they need (`ldd`). The real image has no
//! such layer: its binaries are static (musl) release builds, which `cargo xtask image` builds
//! and checks; building those here would take about six minutes on two cores (LTO, one codegen
//! unit, the eBPF build) against seconds for this.
//!
//! Needs root, buildah and podman (with runc); skips with a message naming what is missing.
//! Everything lives in a private containers storage under a temp dir, removed on drop (also
//! on panic).

mod common;

use std::collections::BTreeMap;
use std::fs;
use std::os::unix::fs::MetadataExt as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::Instant;

use serde::Deserialize as _;
use serde_json::Value;
use smarter_cni::install::{DEFAULT_BINARIES, DEFAULT_CONFLIST_NAME, Manifest};
use smarter_testbed::{ScratchBpfFs, require_root};

const TEST: &str = "install_image";
/// The four binaries of the crate, as the Containerfile's `bin/<arch>/` holds them.
const IMAGE_BINARIES: [(&str, &str); 4] = [
    ("smarter-agent", env!("CARGO_BIN_EXE_smarter-agent")),
    ("smarter-cni", env!("CARGO_BIN_EXE_smarter-cni")),
    ("smarter-bpfctl", env!("CARGO_BIN_EXE_smarter-bpfctl")),
    ("smarter-dns", env!("CARGO_BIN_EXE_smarter-dns")),
];
/// The init container's command in `deploy/smarter-cni.yaml`.
const INSTALL: [&str; 8] = [
    "/bin/smarter-agent",
    "install",
    "--cni-bin-dir",
    "/host/cni/bin",
    "--cni-conf-dir",
    "/host/cni/net.d",
    "--conflist-name",
    DEFAULT_CONFLIST_NAME,
];

/// buildah and podman on a private storage (vfs) and run directory; removes every container
/// and image on drop, then the directory.
struct Containers {
    dir: tempfile::TempDir,
}

impl Containers {
    fn new() -> Self {
        Self {
            dir: tempfile::tempdir().expect("temp dir"),
        }
    }

    fn path(&self, sub: &str) -> PathBuf {
        self.dir.path().join(sub)
    }

    fn storage_flags(&self) -> Vec<String> {
        let mut flags = vec!["--root".into(), self.path("storage").display().to_string()];
        flags.extend(["--runroot".into(), self.path("run").display().to_string()]);
        flags.extend(["--storage-driver".into(), "vfs".into()]);
        flags
    }

    fn buildah(&self, args: &[&str]) -> Output {
        Command::new("buildah")
            .args(self.storage_flags())
            .args(args)
            .output()
            .expect("run buildah")
    }

    fn podman(&self, args: &[&str]) -> Output {
        Command::new("podman")
            .args(self.storage_flags())
            .arg("--tmpdir")
            .arg(self.path("libpod"))
            .args(["--runtime", "runc", "--cgroup-manager", "cgroupfs"])
            .args(["--events-backend", "file"])
            .args(args)
            .output()
            .expect("run podman")
    }
}

impl Drop for Containers {
    fn drop(&mut self) {
        let _ = self.podman(&["rm", "-af", "-t", "0"]);
        let _ = self.buildah(&["rm", "-a"]);
        let _ = self.buildah(&["rmi", "-af"]);
    }
}

fn ok(what: &str, out: Output) -> String {
    assert!(
        out.status.success(),
        "{what} failed ({}):\n{}{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// `None` (with a SKIP line) unless root with buildah and podman on the host's platform.
fn prerequisites() -> Option<(&'static str, Option<&'static str>)> {
    if !require_root(TEST) {
        return None;
    }
    let missing: Vec<&str> = ["buildah", "podman", "runc"]
        .into_iter()
        .filter(|tool| {
            !Command::new("sh")
                .args(["-c", &format!("command -v {tool}")])
                .output()
                .is_ok_and(|o| o.status.success())
        })
        .collect();
    if !missing.is_empty() {
        smarter_testbed::skipped(&format!(
            "SKIP {TEST}: {} not installed (`cargo xtask setup` installs \
             them)",
            missing.join(", ")
        ));
        return None;
    }
    match std::env::consts::ARCH {
        "x86_64" => Some(("amd64", None)),
        "aarch64" => Some(("arm64", None)),
        "arm" => Some(("arm", Some("v7"))),
        other => {
            smarter_testbed::skipped(&format!(
                "SKIP {TEST}: the image has no platform for {other}"
            ));
            None
        }
    }
}

fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("workspace root")
        .to_path_buf()
}

/// The build context: `bin/<arch><variant>/` with stripped copies of this run's binaries.
fn stage_context(c: &Containers, dir_name: &str) -> PathBuf {
    let context = c.path("context");
    let bin = context.join("bin").join(dir_name);
    fs::create_dir_all(&bin).unwrap();
    for (name, src) in IMAGE_BINARIES {
        let dest = bin.join(name);
        let stripped = Command::new("strip")
            .arg("-o")
            .arg(&dest)
            .arg(src)
            .status()
            .is_ok_and(|s| s.success());
        if !stripped {
            fs::copy(src, &dest).unwrap();
        }
    }
    context
}

/// A root file system holding the glibc loader and libraries the staged binaries need.
fn runtime_libraries(c: &Containers, bin: &Path) -> PathBuf {
    let rootfs = c.path("glibc");
    for e in fs::read_dir(bin).unwrap().flatten() {
        let out = ok("ldd", Command::new("ldd").arg(e.path()).output().unwrap());
        for word in out.split_whitespace().filter(|w| w.starts_with('/')) {
            let dest = rootfs.join(word.trim_start_matches('/'));
            fs::create_dir_all(dest.parent().unwrap()).unwrap();
            fs::copy(word, &dest).unwrap_or_else(|e| panic!("copy {word}: {e}"));
        }
    }
    rootfs
}

/// The ConfigMap of `deploy/smarter-cni.yaml`, with these overrides.
fn configmap(overrides: &[(&str, &str)]) -> BTreeMap<String, String> {
    let text = fs::read_to_string(workspace().join("deploy/smarter-cni.yaml")).unwrap();
    let mut env = serde_yaml::Deserializer::from_str(&text)
        .map(|doc| serde_yaml::Value::deserialize(doc).unwrap())
        .find(|doc| doc["kind"] == "ConfigMap")
        .and_then(|doc| {
            serde_yaml::from_value::<BTreeMap<String, String>>(doc["data"].clone()).ok()
        })
        .expect("a ConfigMap with string data in deploy/smarter-cni.yaml");
    for (k, v) in overrides {
        env.insert((*k).into(), (*v).into());
    }
    env
}

/// The host side of the init container's volumes.
struct Host {
    root: PathBuf,
    /// A private bpffs (plays the node's `/sys/fs/bpf`), mounted into the container as
    /// [`BPFFS_IN_IMAGE`].
    bpffs: ScratchBpfFs,
}

/// Where the container sees the host's bpffs. Not `/sys/fs/bpf`: nothing is ever mounted at a
/// path of that name here, not even inside a container's own mount namespace.
const BPFFS_IN_IMAGE: &str = "/host/bpffs";

impl Host {
    fn bin_dir(&self) -> PathBuf {
        self.root.join("opt/cni/bin")
    }
    fn conf_dir(&self) -> PathBuf {
        self.root.join("etc/cni/net.d")
    }
    fn state_dir(&self) -> PathBuf {
        self.root.join("var/lib/smarter-cni")
    }
    fn conflist(&self) -> PathBuf {
        self.conf_dir().join(DEFAULT_CONFLIST_NAME)
    }
    /// Every file with its mode, inode and mtime.
    fn snapshot(&self) -> Vec<(PathBuf, u32, u64, i64, i64)> {
        common::tree_snapshot(&self.root)
    }
}

/// `podman run` of the image as the init container (volumes, security context, env).
fn run_in_image(
    c: &Containers,
    image: &str,
    host: &Host,
    env: &BTreeMap<String, String>,
    cmd: &[&str],
) -> Output {
    let volume = |from: PathBuf, to: &str| format!("{}:{to}", from.display());
    let mut args: Vec<String> = ["run", "--rm", "--network", "none", "--read-only"]
        .map(String::from)
        .to_vec();
    args.extend(
        [
            "--cap-drop",
            "ALL",
            "--security-opt",
            "no-new-privileges",
            "--user",
            "0",
            "--ulimit",
            "nofile=1024:1024",
            "--ulimit",
            "nproc=1024:1024",
        ]
        .map(String::from),
    );
    for (from, to) in [
        (host.bin_dir(), "/host/cni/bin"),
        (host.conf_dir(), "/host/cni/net.d"),
        (host.state_dir(), "/var/lib/smarter-cni"),
        (host.bpffs.path().to_path_buf(), BPFFS_IN_IMAGE),
    ] {
        args.extend(["-v".into(), volume(from, to)]);
    }
    for (k, v) in env {
        args.extend(["--env".into(), format!("{k}={v}")]);
    }
    args.push(image.into());
    args.extend(cmd.iter().map(|s| (*s).to_owned()));
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    c.podman(&args)
}

fn mode(p: &Path) -> u32 {
    fs::metadata(p).unwrap().mode() & 0o7777
}

#[test]
fn image_installs_and_uninstalls_like_the_init_container() {
    let Some((arch, variant)) = prerequisites() else {
        return;
    };
    let started = Instant::now();
    let c = Containers::new();
    let dir_name = format!("{arch}{}", variant.unwrap_or(""));
    let context = stage_context(&c, &dir_name);
    let staged = context.join("bin").join(&dir_name);

    // The image, exactly as `cargo xtask image` builds it.
    let image = format!("localhost/smarter-cni-test:{}", std::process::id());
    let containerfile = workspace().join("deploy/Containerfile");
    let mut bud = vec!["bud", "--isolation", "chroot", "--os", "linux"];
    bud.extend(["--arch", arch]);
    if let Some(v) = variant {
        bud.extend(["--variant", v]);
    }
    bud.extend(["--build-arg", "BINARIES=prebuilt", "-f"]);
    let containerfile = containerfile.to_str().unwrap();
    let context_arg = context.to_str().unwrap();
    bud.extend([containerfile, "-t", &image, context_arg]);
    ok("buildah bud", c.buildah(&bud));
    let config = ok(
        "buildah inspect",
        c.buildah(&[
            "inspect",
            "--type",
            "image",
            "--format",
            "{{.OCIv1.OS}}/{{.OCIv1.Architecture}}/{{.OCIv1.Variant}} {{.OCIv1.Config.Cmd}}",
            &image,
        ]),
    );
    assert_eq!(
        config.trim(),
        format!(
            "linux/{arch}/{} [/bin/smarter-agent --help]",
            variant.unwrap_or("")
        )
    );
    // Its file system: the four binaries in /bin and nothing else.
    let ctr = ok("buildah from", c.buildah(&["from", "--pull=never", &image]));
    let ctr = ctr.trim();
    let mnt = ok("buildah mount", c.buildah(&["mount", ctr]));
    let mnt = PathBuf::from(mnt.trim());
    let mut names: Vec<String> = fs::read_dir(&mnt)
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    assert_eq!(names, ["bin"], "only /bin in the image");
    for (name, _) in IMAGE_BINARIES {
        let p = mnt.join("bin").join(name);
        assert_eq!(mode(&p), 0o755, "{}", p.display());
        assert_eq!(fs::read(&p).unwrap(), fs::read(staged.join(name)).unwrap());
    }
    assert_eq!(fs::read_dir(mnt.join("bin")).unwrap().count(), 4);
    ok("buildah umount", c.buildah(&["umount", ctr]));

    // + the glibc runtime of these debug binaries (test only; see the module docs).
    let libs = runtime_libraries(&c, &staged);
    ok(
        "buildah copy",
        c.buildah(&["copy", ctr, &format!("{}/", libs.display()), "/"]),
    );
    let runnable = format!("{image}-glibc");
    ok(
        "buildah commit",
        c.buildah(&["commit", "--rm", ctr, &runnable]),
    );

    // The host: someone else's plugin and network config are there already.
    let host = Host {
        root: c.path("host"),
        bpffs: ScratchBpfFs::new(TEST).expect("bpffs"),
    };
    // A fresh node: bpffs mounted, the pin root not there yet.
    let pin_root = host.bpffs.path().join("smarter-cni");
    let pin_root_in_image = format!("{BPFFS_IN_IMAGE}/smarter-cni");
    for d in [host.bin_dir(), host.conf_dir(), host.state_dir()] {
        fs::create_dir_all(d).unwrap();
    }
    fs::write(host.bin_dir().join("bridge"), b"reference plugin").unwrap();
    fs::write(host.conf_dir().join("10-flannel.conflist"), b"{}").unwrap();
    let foreign = host.snapshot();
    let env = configmap(&[
        ("CIDR", "10.77.0.0/16"),
        ("GW", "10.77.0.1"),
        ("BPFFS_DIR", &pin_root_in_image),
    ]);

    // Install.
    let out = ok(
        "install",
        run_in_image(&c, &runnable, &host, &env, &INSTALL),
    );
    for b in DEFAULT_BINARIES {
        assert!(
            out.contains(&format!("installed /host/cni/bin/{b}")),
            "{out}"
        );
        let p = host.bin_dir().join(b);
        assert_eq!(mode(&p), 0o755, "{}", p.display());
        assert_eq!(
            fs::read(&p).unwrap(),
            fs::read(staged.join(b)).unwrap(),
            "{b} is the image's"
        );
    }
    assert_eq!(mode(&host.conflist()), 0o644);
    // The pin root, created on the bpffs by the init container (capabilities dropped).
    assert!(
        out.contains(&format!("created pin root {pin_root_in_image} (mode 0700)")),
        "{out}"
    );
    let meta = fs::metadata(&pin_root).expect("pin root created");
    assert_eq!((meta.mode() & 0o7777, meta.uid()), (0o700, 0));
    let bytes = fs::read(host.conflist()).unwrap();
    let doc: Value = serde_json::from_slice(&bytes).unwrap();
    assert_eq!(doc["name"], "smartnet");
    assert_eq!(doc["cniVersion"], "1.0.0", "the ConfigMap's CNI_VERSION");
    assert_eq!(doc["plugins"][0]["type"], "smarter-cni");
    assert_eq!(doc["plugins"][0]["subnet"], "10.77.0.0/16");
    assert_eq!(doc["plugins"][0]["gateway"], "10.77.0.1");
    smarter_cni::agent::parse_network_config(&bytes).unwrap();
    let manifest = Manifest::load(&host.state_dir())
        .unwrap()
        .expect("manifest");
    assert_eq!(manifest.files.len(), 3, "{manifest:?}");

    // A second run changes nothing, not even an mtime.
    let before = host.snapshot();
    let out = ok(
        "second install",
        run_in_image(&c, &runnable, &host, &env, &INSTALL),
    );
    assert_eq!(out.matches("unchanged ").count(), 3, "{out}");
    assert!(!out.contains("created pin root"), "{out}");
    assert_eq!(
        host.snapshot(),
        before,
        "inodes, modes and mtimes unchanged"
    );

    // An invalid value: refused, naming the key; the previous conflist stays.
    let bad = configmap(&[("CIDR", "10.0.0.0/33"), ("GW", "10.77.0.1")]);
    let out = run_in_image(&c, &runnable, &host, &bad, &INSTALL);
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(!out.status.success(), "CIDR=10.0.0.0/33 accepted: {said}");
    assert!(
        said.contains("ConfigMap key CIDR"),
        "the message names the key: {said}"
    );
    assert_eq!(host.snapshot(), before, "nothing changed");
    assert_eq!(fs::read(host.conflist()).unwrap(), bytes);

    // Uninstall (as the uninstall DaemonSet runs it, minus --wait): only our files go.
    let out = ok(
        "uninstall",
        run_in_image(
            &c,
            &runnable,
            &host,
            &env,
            &[
                "/bin/smarter-agent",
                "uninstall",
                "--state-dir",
                "/var/lib/smarter-cni",
            ],
        ),
    );
    assert!(
        out.contains(&format!("removed /host/cni/net.d/{DEFAULT_CONFLIST_NAME}")),
        "{out}"
    );
    let paths = |s: Vec<(PathBuf, u32, u64, i64, i64)>| -> Vec<PathBuf> {
        s.into_iter().map(|f| f.0).collect()
    };
    assert_eq!(paths(host.snapshot()), paths(foreign), "{out}");
    assert!(
        out.contains(&format!("removed empty pin root {pin_root_in_image}")),
        "{out}"
    );
    assert!(!pin_root.exists(), "the empty pin root goes with the rest");
    eprintln!("{TEST}: done in {:.1?}", started.elapsed());
}
