//! `smarter-agent install | uninstall | health`: the command line of the installer, for the
//! agent binary to hand over to (see [`dispatch`]).
//!
//! The knobs of the conflist come from the environment (the ConfigMap, through `envFrom`; see
//! [`super::settings::KNOBS`]); the directories come from flags.

use std::ffi::OsString;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context as _;
use clap::{Args, Parser, Subcommand};

use super::health::{self, HealthCheck};
use super::{
    CniBinDir, DEFAULT_BINARIES, DEFAULT_CONFLIST_NAME, InstallConfig, UninstallConfig,
    conflist_from,
};

/// The installer's subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Install the binaries and the conflist (from the ConfigMap's environment variables).
    Install(InstallArgs),
    /// Remove what `install` placed; the datapath too once no pod is attached.
    Uninstall(UninstallArgs),
    /// Exit 0 when the agent's health file is present and fresh (the container's probe).
    Health(HealthArgs),
}

/// `install` flags.
#[derive(Debug, Args)]
pub struct InstallArgs {
    /// Directory of the binaries to install [default: this program's directory].
    #[arg(long)]
    pub source_dir: Option<PathBuf>,
    /// CNI bin directory; `auto`: `<host-root>/usr/libexec/cni` where it exists, else
    /// `<host-root>/opt/cni/bin`.
    #[arg(long, default_value = "auto")]
    pub cni_bin_dir: String,
    /// The host's root for `--cni-bin-dir auto`.
    #[arg(long, default_value = "/")]
    pub host_root: PathBuf,
    /// CNI config directory.
    #[arg(long, default_value = "/etc/cni/net.d")]
    pub cni_conf_dir: PathBuf,
    /// File name of the conflist (the runtime uses the lowest-sorted file).
    #[arg(long, default_value = DEFAULT_CONFLIST_NAME)]
    pub conflist_name: String,
    /// A binary to install (repeat) [default: smarter-cni, smarter-bpfctl].
    #[arg(long = "binary")]
    pub binaries: Vec<String>,
    /// Validate and print the conflist; change nothing.
    #[arg(long)]
    pub dry_run: bool,
}

/// `uninstall` flags.
#[derive(Debug, Args)]
pub struct UninstallArgs {
    /// The `stateDir` holding the install manifest [default: $STATE_DIR or
    /// /var/lib/smarter-cni].
    #[arg(long)]
    pub state_dir: Option<PathBuf>,
    /// Remove the binaries even while pods are still attached.
    #[arg(long)]
    pub force: bool,
    /// Leave pins, programs, rules, bridge and state in place.
    #[arg(long)]
    pub keep_datapath: bool,
    /// After a successful uninstall, wait until killed (the uninstall `DaemonSet`'s container
    /// stays Running, so the operator sees it is done on every node).
    #[arg(long)]
    pub wait: bool,
}

/// `health` flags.
#[derive(Debug, Args)]
pub struct HealthArgs {
    /// The agent's `--health-file`.
    #[arg(long)]
    pub file: PathBuf,
    /// Oldest acceptable heartbeat: seconds, or with a unit (`30s`, `2m`).
    #[arg(long, default_value = "30s", value_parser = parse_duration)]
    pub max_age: Duration,
    /// Pass when the file is missing (liveness: not ready yet is not dead).
    #[arg(long)]
    pub allow_missing: bool,
}

#[derive(Debug, Parser)]
#[command(name = "smarter-agent")]
struct Installer {
    #[command(subcommand)]
    command: Command,
}

/// The installer subcommand names, as the first argument.
pub const SUBCOMMANDS: [&str; 3] = ["install", "uninstall", "health"];

/// Runs the installer when `args` (program name first) name one of [`SUBCOMMANDS`];
/// `None` otherwise, so the caller goes on as the agent.
#[must_use]
pub fn dispatch(args: impl IntoIterator<Item = OsString>) -> Option<anyhow::Result<()>> {
    let args: Vec<OsString> = args.into_iter().collect();
    let first = args.get(1)?.to_str()?;
    if !SUBCOMMANDS.contains(&first) {
        return None;
    }
    Some(run(Installer::parse_from(args).command))
}

/// Runs one installer subcommand, reporting on stdout.
///
/// # Errors
///
/// What the step refused or failed to do, with the path or ConfigMap key involved.
pub fn run(command: Command) -> anyhow::Result<()> {
    match command {
        Command::Install(a) => run_install(a),
        Command::Uninstall(a) => {
            run_uninstall(&a)?;
            if a.wait {
                println!("uninstall done; waiting to be deleted");
                loop {
                    std::thread::sleep(Duration::from_secs(3600));
                }
            }
            Ok(())
        }
        Command::Health(a) => {
            let probe = HealthCheck {
                max_age: a.max_age,
                allow_missing: a.allow_missing,
            };
            health::check(&a.file, probe)?;
            Ok(())
        }
    }
}

fn run_install(a: InstallArgs) -> anyhow::Result<()> {
    let conflist = conflist_from(|k| std::env::var(k).ok())?;
    if a.dry_run {
        print!("{}", String::from_utf8_lossy(&conflist.bytes));
        return Ok(());
    }
    let source_dir = match a.source_dir {
        Some(d) => d,
        None => std::env::current_exe()
            .context("finding this program's directory (use --source-dir)")?
            .parent()
            .map(PathBuf::from)
            .unwrap_or_default(),
    };
    let cfg = InstallConfig {
        source_dir,
        binaries: if a.binaries.is_empty() {
            DEFAULT_BINARIES.iter().map(|s| (*s).to_owned()).collect()
        } else {
            a.binaries
        },
        cni_bin_dir: match a.cni_bin_dir.as_str() {
            "auto" => CniBinDir::Auto { root: a.host_root },
            dir => CniBinDir::Path(dir.into()),
        },
        cni_conf_dir: a.cni_conf_dir,
        conflist_name: a.conflist_name,
        conflist,
    };
    let report = super::install(&cfg)?;
    for p in &report.written {
        println!("installed {}", p.display());
    }
    for p in &report.unchanged {
        println!("unchanged {}", p.display());
    }
    for p in &report.removed {
        println!(
            "removed {} (left over from a previous install)",
            p.display()
        );
    }
    if let Some(p) = &report.created_pin_root {
        println!("created pin root {} (mode 0700)", p.display());
    }
    for w in &report.warnings {
        println!("warning: {w}");
    }
    Ok(())
}

fn run_uninstall(a: &UninstallArgs) -> anyhow::Result<()> {
    let state_dir = a.state_dir.clone().unwrap_or_else(|| {
        std::env::var_os("STATE_DIR")
            .filter(|v| !v.is_empty())
            .map_or_else(
                || PathBuf::from(crate::cni::config::defaults::STATE_DIR),
                PathBuf::from,
            )
    });
    let report = super::uninstall(&UninstallConfig {
        state_dir: state_dir.clone(),
        force: a.force,
        keep_datapath: a.keep_datapath,
    })?;
    if !report.had_manifest {
        println!(
            "nothing to uninstall: no install manifest in {}",
            state_dir.display()
        );
        return Ok(());
    }
    for p in &report.removed {
        println!("removed {}", p.display());
    }
    for (p, why) in &report.kept {
        println!("kept {}: {why}", p.display());
    }
    for d in &report.datapath {
        println!("removed {d}");
    }
    if report.attachments > 0 {
        println!(
            "{} pod(s) still attached: datapath kept; delete them and run uninstall again",
            report.attachments
        );
    }
    Ok(())
}

/// `30`, `30s`, `2m`, `1h` → a duration.
fn parse_duration(text: &str) -> Result<Duration, String> {
    let (digits, unit) = text.split_at(
        text.find(|c: char| !c.is_ascii_digit())
            .unwrap_or(text.len()),
    );
    let n: u64 = digits
        .parse()
        .map_err(|_| format!("{text:?} is not a duration like 30s or 2m"))?;
    let secs = match unit {
        "" | "s" => n,
        "m" => n * 60,
        "h" => n * 3600,
        _ => return Err(format!("{text:?}: the unit must be s, m or h")),
    };
    Ok(Duration::from_secs(secs))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(parse_duration("30").unwrap(), Duration::from_secs(30));
        assert_eq!(parse_duration("30s").unwrap(), Duration::from_secs(30));
        assert_eq!(parse_duration("2m").unwrap(), Duration::from_secs(120));
        assert!(parse_duration("x").is_err());
        assert!(parse_duration("5d").is_err());
    }

    #[test]
    fn only_installer_commands_are_dispatched() {
        let args = |v: &[&str]| v.iter().map(OsString::from).collect::<Vec<_>>();
        assert!(dispatch(args(&["smarter-agent", "--conf", "x"])).is_none());
        assert!(dispatch(args(&["smarter-agent"])).is_none());
        let missing = dispatch(args(&[
            "smarter-agent",
            "health",
            "--file",
            "/nonexistent/agent.health",
        ]));
        assert!(missing.expect("dispatched").is_err());
    }
}
