//! The verbs. [`run`] is the whole plugin: it reads the environment and stdin, validates
//! everything before touching the system, runs one verb and writes the result or the CNI
//! error JSON to stdout. Logs go to stderr through `tracing`.
//!
//! Each verb lives in its own file; they share [`Ctx`] (parsed input and the stores) and
//! the error mapping in [`errors`].

mod add;
mod check;
mod datapath;
mod del;
mod errors;
mod gc;
pub mod naming;
mod node;
mod status;

use std::io::Write;
use std::path::PathBuf;

use crate::cni::config::RuntimeConfigErrors;
use crate::cni::{CniEnv, CniError, NetConf, TcAttachMode, Verb, Version};
use crate::datapath::{AttachMode, DatapathConfig};
use crate::ipam::Ipam;
use crate::state::StateStore;

pub use errors::IntoCni;

/// Parsed input of one invocation plus the stores every verb uses.
pub struct Ctx {
    /// The CNI environment.
    pub env: CniEnv,
    /// The network configuration from stdin.
    pub conf: NetConf,
    /// The version to answer in.
    pub version: Version,
    /// Step at which to fail on purpose (tests of rollback; debug builds only).
    pub fail_at: Option<String>,
}

impl Ctx {
    /// The IPAM of this network.
    ///
    /// # Errors
    /// CNI error when the store cannot be opened.
    pub fn ipam(&self) -> Result<Ipam, CniError> {
        Ipam::new(
            &self.conf.data_dir,
            &self.conf.name,
            self.conf.subnet,
            self.conf.gateway,
        )
        .into_cni()
    }

    /// The attachment records of this network.
    ///
    /// # Errors
    /// CNI error when the directory cannot be created.
    pub fn state(&self) -> Result<StateStore, CniError> {
        StateStore::open(&self.conf.state_dir, &self.conf.name).into_cni()
    }

    /// The settings the datapath needs.
    #[must_use]
    pub fn datapath_config(&self) -> DatapathConfig {
        DatapathConfig {
            gateway: self.conf.gateway,
            subnet: self.conf.subnet,
            ct_max_entries: self.conf.ct_max_entries,
        }
    }

    /// How to attach TC programs, as configured.
    #[must_use]
    pub fn attach_mode(&self) -> AttachMode {
        match self.conf.tc_attach {
            TcAttachMode::Auto => AttachMode::Auto,
            TcAttachMode::Tcx => AttachMode::Tcx,
            TcAttachMode::Netlink => AttachMode::Netlink,
        }
    }

    /// The lock directory for the datapath loader (bpffs cannot hold regular files).
    #[must_use]
    pub fn lock_dir(&self) -> PathBuf {
        self.conf.state_dir.join(&self.conf.name)
    }

    /// Fails on purpose at `step` when the test hook asks for it.
    ///
    /// # Errors
    /// An I/O CNI error naming the step.
    pub fn fault(&self, step: &str) -> Result<(), CniError> {
        if self.fail_at.as_deref() == Some(step) {
            return Err(CniError::new(
                CniError::IO,
                format!("injected failure at step {step}"),
                "SMARTER_CNI_FAIL_AT",
            ));
        }
        Ok(())
    }
}

/// Runs the plugin: `lookup` reads the environment, `stdin` is the request, the answer
/// goes to `out`. Returns the process exit code.
pub fn run(lookup: &dyn Fn(&str) -> Option<String>, stdin: &[u8], out: &mut dyn Write) -> i32 {
    let (answer, code) = match dispatch(lookup, stdin) {
        Ok(Some(v)) => (Some(v), 0),
        Ok(None) => (None, 0),
        Err((e, version)) => {
            tracing::error!(code = e.code, "{}: {}", e.msg, e.details);
            (Some(e.to_json(&version)), 1)
        }
    };
    if let Some(v) = answer {
        let text = serde_json::to_string(&v).expect("JSON values serialize");
        if writeln!(out, "{text}").is_err() {
            return 2;
        }
    }
    code
}

/// Refuses directories reached through a symlink someone other than root could have planted.
fn safe_dirs(conf: &NetConf) -> Result<(), CniError> {
    for (key, dir) in [
        ("dataDir", &conf.data_dir),
        ("stateDir", &conf.state_dir),
        ("bpffsDir", &conf.bpffs_dir),
    ] {
        crate::cni::config::paths::check_no_unsafe_symlinks(dir).map_err(|why| {
            CniError::new(
                CniError::INVALID_CONFIG,
                format!("{key} {}: {why}", dir.display()),
                key,
            )
        })?;
    }
    Ok(())
}

fn dispatch(
    lookup: &dyn Fn(&str) -> Option<String>,
    stdin: &[u8],
) -> Result<Option<serde_json::Value>, (CniError, String)> {
    let fallback = crate::cni::version::LATEST.as_str().to_string();
    let env = CniEnv::from_lookup(lookup).map_err(|e| (e, fallback.clone()))?;
    if env.verb == Verb::Version {
        return Ok(Some(crate::cni::version::version_info_from_stdin(stdin)));
    }
    // DEL never uses runtimeConfig: a capability we cannot read must not leave the sandbox
    // impossible to remove.
    let runtime_config_errors = if env.verb == Verb::Del {
        RuntimeConfigErrors::Ignore
    } else {
        RuntimeConfigErrors::Refuse
    };
    let conf = NetConf::parse_with(stdin, runtime_config_errors)
        .map_err(|e| (e, fallback.clone()))?;
    let version = conf.cni_version;
    let answer_version = version.as_str().to_string();
    crate::cni::version::check_verb(version, env.verb).map_err(|e| (e, answer_version.clone()))?;
    let fail_at = if cfg!(debug_assertions) {
        lookup("SMARTER_CNI_FAIL_AT")
    } else {
        None
    };
    if env.verb != Verb::Status {
        safe_dirs(&conf).map_err(|e| (e, answer_version.clone()))?;
    }
    let ctx = Ctx {
        env,
        conf,
        version,
        fail_at,
    };
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| {
            (
                CniError::new(CniError::IO, "cannot start the runtime", e.to_string()),
                answer_version.clone(),
            )
        })?;
    let started = std::time::Instant::now();
    let res = rt.block_on(async {
        match ctx.env.verb {
            Verb::Add => add::add(&ctx).await.map(Some),
            Verb::Del => del::del(&ctx).await.map(|()| None),
            Verb::Check => check::check(&ctx).await.map(|()| None),
            Verb::Gc => gc::gc(&ctx).await.map(|()| None),
            Verb::Status => status::status(&ctx).await.map(|()| None),
            Verb::Version => unreachable!("handled above"),
        }
    });
    if matches!(ctx.env.verb, Verb::Add | Verb::Del | Verb::Check | Verb::Gc)
        && let Err(e) = crate::opstats::record(
            &ctx.conf.state_dir,
            &ctx.conf.name,
            ctx.env.verb.as_str(),
            started.elapsed(),
            res.is_ok(),
        )
    {
        tracing::debug!("cannot record operation statistics: {e}");
    }
    res.map_err(|e| (e, answer_version))
}

