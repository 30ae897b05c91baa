//! `cargo xtask image`: the container image of `deploy/Containerfile` for linux/amd64,
//! linux/arm64 and linux/arm/v7, built offline.
//!
//! 1. Installs what is missing: the Rust targets (rustup), the cross linkers, buildah and
//!    qemu-user-static (Debian packages, as root) and the eBPF toolchain (see [`setup`]).
//! 2. Cross-compiles the four binaries of `smarter-cni` in release mode (stripped by the
//!    release profile's `strip = true`), statically linked, into `target/cross/<triple>/`
//!    (its own target directory: the shared `target/` keeps its build lock). The eBPF object
//!    is architecture independent (`bpfel`): the build script runs on the host and builds it
//!    the same way for every target.
//! 3. Checks each binary: an ELF of the right machine without an interpreter (static), and
//!    `smarter-cni` answering `VERSION` and `smarter-agent install --help` succeeding (natively
//!    or under qemu-user-static).
//! 4. Stages `target/image/context/bin/<arch>/` and builds one `FROM scratch` image per
//!    platform with buildah (`BINARIES=prebuilt`, no base image), tagged
//!    `localhost/smarter-cni:<version>-<arch>`, then the manifest list
//!    `localhost/smarter-cni:<version>`; runs the host platform's image with podman
//!    (`--network none`).
//! 5. Prints the measured sizes and writes them to `deploy/image-sizes.md`.
//!
//! Images live in the default containers storage with the `vfs` driver:
//! `podman --storage-driver vfs run --rm localhost/smarter-cni:0.1.0-amd64 ...`.

use std::{
    fmt::Write as _,
    fs,
    os::unix::fs::PermissionsExt as _,
    path::{Path, PathBuf},
    time::Instant,
};

use anyhow::{Context as _, Result, ensure};
use clap::ValueEnum;

mod cross;

use cross::build;
pub(crate) use cross::{check_static_elf, cross_env, debian_packages, ensure_tool, rust_target};

use crate::{run::Cmd, setup};

/// The binaries of the `smarter-cni` crate (its `[[bin]]` targets and `src/bin/`).
pub const BINARIES: [&str; 4] = [
    "smarter-agent",
    "smarter-cni",
    "smarter-bpfctl",
    "smarter-dns",
];
/// The image repository; tags are `<version>-<arch>` and `<version>` (the manifest list).
const REPOSITORY: &str = "localhost/smarter-cni";
/// The workspace version (xtask shares it).
const VERSION: &str = env!("CARGO_PKG_VERSION");
/// buildah and podman flags for this machine's kind (no overlay, no namespaces for RUN).
const STORAGE: [&str; 2] = ["--storage-driver", "vfs"];

/// `cargo xtask image` flags.
#[derive(Debug, clap::Args)]
pub struct ImageArgs {
    /// Platforms to build, comma-separated.
    #[arg(long, value_delimiter = ',', default_value = "amd64,arm64,armv7")]
    pub arch: Vec<Arch>,
    /// Only cross-compile and check the binaries (no buildah, no images, no size file).
    #[arg(long)]
    pub no_build_image: bool,
}

/// A target platform.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Arch {
    /// linux/amd64
    Amd64,
    /// linux/arm64
    Arm64,
    /// linux/arm/v7 (Debian's `armhf`)
    #[value(alias = "armhf")]
    Armv7,
}

/// What a platform needs, in the names of each tool.
pub(crate) struct Platform {
    /// Tag suffix and build-context directory: `${TARGETARCH}${TARGETVARIANT}`.
    pub(crate) name: &'static str,
    /// OCI architecture and variant (`buildah --arch/--variant`).
    oci_arch: &'static str,
    variant: Option<&'static str>,
    /// `std::env::consts::ARCH` of a machine of this platform (to tell native from cross).
    pub(crate) rust_arch: &'static str,
    /// The static Rust target we want.
    musl: &'static str,
    /// Where rustup has no `musl` std: a glibc target linked fully static (`+crt-static`),
    /// and the Debian package with its static libc.
    glibc_fallback: Option<(&'static str, &'static str)>,
    /// GNU triple of the cross gcc used as the linker (`<gnu>-gcc`, Debian `gcc-<gnu>`).
    pub(crate) gnu: &'static str,
    /// ELF `e_machine`.
    pub(crate) elf_machine: u16,
    /// qemu-user-static emulator.
    qemu: &'static str,
}

impl Arch {
    /// What building for this platform needs.
    pub(crate) fn platform(self) -> Platform {
        match self {
            Self::Amd64 => Platform {
                name: "amd64",
                oci_arch: "amd64",
                variant: None,
                rust_arch: "x86_64",
                musl: "x86_64-unknown-linux-musl",
                glibc_fallback: None,
                gnu: "x86_64-linux-gnu",
                elf_machine: 62,
                qemu: "qemu-x86_64-static",
            },
            Self::Arm64 => Platform {
                name: "arm64",
                oci_arch: "arm64",
                variant: None,
                rust_arch: "aarch64",
                musl: "aarch64-unknown-linux-musl",
                glibc_fallback: None,
                gnu: "aarch64-linux-gnu",
                elf_machine: 183,
                qemu: "qemu-aarch64-static",
            },
            Self::Armv7 => Platform {
                name: "armv7",
                oci_arch: "arm",
                variant: Some("v7"),
                rust_arch: "arm",
                musl: "armv7-unknown-linux-musleabihf",
                glibc_fallback: Some(("armv7-unknown-linux-gnueabihf", "libc6-dev-armhf-cross")),
                gnu: "arm-linux-gnueabihf",
                elf_machine: 40,
                qemu: "qemu-arm-static",
            },
        }
    }
}

impl Platform {
    /// Whether this machine is of this platform.
    pub(crate) fn native(&self) -> bool {
        std::env::consts::ARCH == self.rust_arch
    }
    /// `linux/arm/v7`
    fn oci(&self) -> String {
        match self.variant {
            Some(v) => format!("linux/{}/{v}", self.oci_arch),
            None => format!("linux/{}", self.oci_arch),
        }
    }
    fn tag(&self) -> String {
        format!("{REPOSITORY}:{VERSION}-{}", self.name)
    }
}

/// The Rust target chosen for a platform.
pub(crate) struct Target {
    pub(crate) triple: String,
    /// A glibc target: link with `+crt-static`.
    pub(crate) static_glibc: bool,
}

/// Sizes measured for one platform.
struct Measured {
    platform: Platform,
    target: Target,
    binaries: Vec<u64>,
    /// Image sizes: uncompressed (containers storage) and gzip-compressed as pushed to a
    /// registry (the blobs of an OCI layout: layer, config, manifest).
    image: Option<(u64, u64)>,
}

/// Runs `cargo xtask image`; see the [module docs](self).
pub fn image(root: &Path, args: &ImageArgs) -> Result<()> {
    let started = Instant::now();
    let mut arches: Vec<Arch> = Vec::new();
    for a in &args.arch {
        if !arches.contains(a) {
            arches.push(*a);
        }
    }
    ensure!(!arches.is_empty(), "no --arch given");
    let platforms: Vec<Platform> = arches.iter().map(|a| a.platform()).collect();

    // 1. Prerequisites.
    let targets = platforms
        .iter()
        .map(|p| rust_target(root, p))
        .collect::<Result<Vec<_>>>()?;
    setup::debian_packages(&debian_packages(&platforms, &targets, !args.no_build_image))?;
    setup::ebpf_toolchain(root)?;

    // 2. + 3. Binaries.
    let target_base =
        std::env::var_os("CARGO_TARGET_DIR").map_or_else(|| root.join("target"), PathBuf::from);
    let cross_dir = target_base.join("cross");
    let mut measured = Vec::new();
    for (platform, target) in platforms.into_iter().zip(targets) {
        let out = build(root, &cross_dir, &platform, &target)?;
        let mut sizes = Vec::new();
        for name in BINARIES {
            let path = out.join(name);
            check_static_elf(&path, platform.elf_machine)?;
            sizes.push(fs::metadata(&path)?.len());
        }
        smoke_test(&platform, &out)?;
        measured.push(Measured {
            platform,
            target,
            binaries: sizes,
            image: None,
        });
    }
    if args.no_build_image {
        print!("{}", table(&measured));
        println!(
            "xtask image: binaries built and checked in {:.0?} (--no-build-image: no images)",
            started.elapsed()
        );
        return Ok(());
    }

    // 4. Images.
    ensure_tool("buildah")?;
    ensure_tool("podman")?;
    let context = target_base.join("image/context");
    let manifest = format!("{REPOSITORY}:{VERSION}");
    // A previous list first: it names the images about to be replaced.
    let _ = buildah().args(["manifest", "rm", &manifest]).probe();
    for m in &mut measured {
        let out = cross_dir.join(&m.target.triple).join("release");
        m.image = Some(build_image(
            root,
            &context,
            &target_base,
            &m.platform,
            &out,
        )?);
    }
    buildah().args(["manifest", "create", &manifest]).status()?;
    for m in &measured {
        let p = &m.platform;
        let mut add = buildah()
            .args(["manifest", "add", "--os", "linux", "--arch", p.oci_arch])
            .args(p.variant.map(|v| ["--variant", v]).into_iter().flatten());
        add = add
            .arg(&manifest)
            .arg(format!("containers-storage:{}", p.tag()));
        add.status()?;
    }
    run_host_image(&measured)?;

    // 5. Sizes.
    let report = table(&measured);
    print!("{report}");
    let file = root.join("deploy/image-sizes.md");
    fs::write(&file, size_file(&report))
        .with_context(|| format!("cannot write {}", file.display()))?;
    println!(
        "xtask image: {} and its manifest list {manifest} built in {:.0?}; sizes in {}",
        measured
            .iter()
            .map(|m| m.platform.tag())
            .collect::<Vec<_>>()
            .join(", "),
        started.elapsed(),
        file.display()
    );
    Ok(())
}

/// Runs `smarter-cni` (`VERSION`) and `smarter-agent install --help` for the platform:
/// natively, or under qemu-user-static.
fn smoke_test(p: &Platform, out: &Path) -> Result<()> {
    let run = |bin: &str| {
        if p.native() {
            Cmd::new(out.join(bin))
        } else {
            Cmd::new(p.qemu).arg(out.join(bin))
        }
    };
    if !p.native() {
        ensure_tool(p.qemu)?;
    }
    let version = run("smarter-cni")
        .env("CNI_COMMAND", "VERSION")
        .probe()
        .unwrap_or_default();
    ensure!(
        version.contains("\"supportedVersions\""),
        "{} smarter-cni answered VERSION with {version:?}",
        p.name
    );
    let help = run("smarter-agent")
        .args(["install", "--help"])
        .probe()
        .unwrap_or_default();
    ensure!(
        help.contains("--cni-bin-dir"),
        "{} `smarter-agent install --help` printed {help:?}",
        p.name
    );
    let how = if p.native() { "natively" } else { p.qemu };
    println!(
        "xtask image: {} binaries are static; smarter-cni VERSION and smarter-agent install \
         --help run ({how}): {version}",
        p.name
    );
    Ok(())
}

fn buildah() -> Cmd {
    Cmd::new("buildah").args(STORAGE)
}

/// Stages the binaries in `context/bin/<arch>/`, builds the image and measures it.
fn build_image(
    root: &Path,
    context: &Path,
    target_base: &Path,
    p: &Platform,
    out: &Path,
) -> Result<(u64, u64)> {
    let bin = context.join("bin").join(p.name);
    if bin.exists() {
        fs::remove_dir_all(&bin).with_context(|| format!("cannot empty {}", bin.display()))?;
    }
    fs::create_dir_all(&bin).with_context(|| format!("cannot create {}", bin.display()))?;
    for name in BINARIES {
        let dest = bin.join(name);
        fs::copy(out.join(name), &dest)
            .with_context(|| format!("cannot stage {}", dest.display()))?;
        fs::set_permissions(&dest, fs::Permissions::from_mode(0o755))?;
    }
    let tag = p.tag();
    // The previous image of this tag would stay behind untagged.
    let _ = buildah().args(["rmi", "-f", &tag]).probe();
    let dangling = || -> Vec<String> {
        buildah()
            .args([
                "images",
                "--quiet",
                "--no-trunc",
                "--filter",
                "dangling=true",
            ])
            .probe()
            .unwrap_or_default()
            .lines()
            .map(str::to_owned)
            .collect()
    };
    let before = dangling();
    buildah()
        .args(["bud", "--isolation", "chroot", "--os", "linux"])
        .args(["--arch", p.oci_arch])
        .args(p.variant.map(|v| ["--variant", v]).into_iter().flatten())
        .args(["--build-arg", "BINARIES=prebuilt", "-f"])
        .arg(root.join("deploy/Containerfile"))
        .args(["-t", &tag])
        .arg(context)
        .status()?;
    // The `prebuilt` stage is committed as an untagged image, and buildah 1.28 leaves a
    // working container on it (the `FROM ${BINARIES} AS binaries` alias): drop both, and only
    // what this build left.
    let stages: Vec<String> = dangling()
        .into_iter()
        .filter(|id| !before.contains(id))
        .collect();
    if !stages.is_empty() {
        buildah().args(["rmi", "--force"]).args(&stages).status()?;
    }

    let uncompressed = Cmd::new("podman")
        .args(STORAGE)
        .args(["image", "inspect", "--format", "{{.Size}}", &tag])
        .probe()
        .and_then(|s| s.parse::<u64>().ok())
        .with_context(|| format!("podman image inspect {tag} gave no size"))?;
    let dir = target_base.join("image/oci").join(p.name);
    if dir.exists() {
        fs::remove_dir_all(&dir)?;
    }
    fs::create_dir_all(dir.parent().expect("under target/"))?;
    buildah()
        .args(["push", "--quiet", "--compression-format", "gzip"])
        .arg(&tag)
        .arg(format!("oci:{}", dir.display()))
        .status()?;
    let pushed = dir_size(&dir.join("blobs"))?;
    fs::remove_dir_all(&dir)?;
    Ok((uncompressed, pushed))
}

fn dir_size(dir: &Path) -> Result<u64> {
    let mut total = 0;
    for e in fs::read_dir(dir).with_context(|| format!("cannot list {}", dir.display()))? {
        let e = e?;
        let m = e.metadata()?;
        total += if m.is_dir() {
            dir_size(&e.path())?
        } else {
            m.len()
        };
    }
    Ok(total)
}

/// The host platform's image, if built: `smarter-agent install --help` with podman.
fn run_host_image(measured: &[Measured]) -> Result<()> {
    let Some(m) = measured.iter().find(|m| m.platform.native()) else {
        return Ok(());
    };
    Cmd::new("podman")
        .args(STORAGE)
        .args(["run", "--rm", "--network", "none", "--runtime", "runc"])
        .args(["--cgroup-manager", "cgroupfs"])
        .args([
            "--ulimit",
            "nofile=1024:1024",
            "--ulimit",
            "nproc=1024:1024",
        ])
        .arg(m.platform.tag())
        .args(["/bin/smarter-agent", "install", "--help"])
        .status()
}

/// The Markdown table of the measured sizes.
fn table(measured: &[Measured]) -> String {
    let mut t = String::from("| platform | Rust target |");
    for b in BINARIES {
        let _ = write!(t, " `{b}` |");
    }
    t.push_str(" image, uncompressed | image, gzip (pushed) |\n|---|---|");
    t.push_str(&"---:|".repeat(BINARIES.len() + 2));
    t.push('\n');
    for m in measured {
        let static_note = if m.target.static_glibc {
            " (static glibc)"
        } else {
            ""
        };
        let _ = write!(
            t,
            "| {} | `{}`{static_note} |",
            m.platform.oci(),
            m.target.triple
        );
        for size in &m.binaries {
            let _ = write!(t, " {} |", human(*size));
        }
        match m.image {
            Some((raw, gz)) => {
                let _ = writeln!(t, " {} | {} |", human(raw), human(gz));
            }
            None => t.push_str(" not built | not built |\n"),
        }
    }
    t
}

/// `4144376` → `3.95 MiB (4144376 B)`.
fn human(bytes: u64) -> String {
    let centi_mib = (bytes * 100 + 524_288) / 1_048_576;
    format!("{}.{:02} MiB ({bytes} B)", centi_mib / 100, centi_mib % 100)
}

fn size_file(table: &str) -> String {
    let rustc = Cmd::new("rustc")
        .arg("-V")
        .probe()
        .unwrap_or_else(|| "rustc (version unknown)".into());
    format!(
        "# smarter-cni image sizes\n\n\
         Measured by `cargo xtask image` (this file is written by it; do not edit). Release \
         profile (`opt-level = \"s\"`, LTO, one codegen unit, `panic = \"abort\"`, stripped), \
         {rustc}. Binary sizes are the files in `/bin` of the image. Image, uncompressed: its \
         size in containers storage (`podman image inspect --format {{{{.Size}}}}`); image, gzip: \
         the blobs (layer, config, manifest) of the image pushed to an OCI layout with gzip, \
         i.e. what a registry stores and a node downloads.\n\n{table}"
    )
}
