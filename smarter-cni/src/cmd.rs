//! The verbs. [`run`] is the whole plugin: it reads the environment and stdin, validates
//! everything before touching the system, runs one verb and writes the result or the CNI
//! error JSON to stdout. Logs go to stderr through `tracing`.
//!
//! Each verb lives in its own file; they share [`Ctx`] (parsed input and the stores) and
//! the error mapping in [`errors`].

mod add;
mod add6;
pub mod boot;
mod check;
mod datapath;
mod del;
mod errors;
#[cfg(test)]
mod fakes;
pub mod fault;
mod gc;
mod host;
mod network;
mod node;
mod rollback;
mod status;
#[cfg(test)]
mod tests_datapath;
#[cfg(test)]
mod tests_dual;
#[cfg(test)]
mod tests_verbs;

use std::io::Write;

use crate::cni::config::RuntimeConfigErrors;
use crate::cni::{CniEnv, CniError, NetConf, Verb, Version};
use crate::datapath::{Datapaths, System};
use crate::ipam::Ipam;
use crate::state::StateStore;

pub use errors::IntoCni;
pub use fault::{Faults, NoFaults, Step};
pub use host::{Host, Kernel};
pub use node::{GUARD_SYSCTLS, guard_drift};

/// Parsed input of one invocation plus the stores every verb uses.
pub struct Ctx {
    /// The CNI environment.
    pub env: CniEnv,
    /// The network configuration from stdin.
    pub conf: NetConf,
    /// The version to answer in.
    pub version: Version,
    /// Where ADD fails on purpose, to test its rollback: [`NoFaults`] in production, and in
    /// debug builds what `SMARTER_CNI_FAIL_AT` asks for ([`fault::from_env`]).
    pub faults: &'static dyn Faults,
    /// The datapaths ([`crate::datapath::System`]; a fake in the verbs' unit tests).
    pub datapaths: &'static dyn Datapaths,
    /// The node: netlink and sysctls ([`Kernel`]; a fake in the verbs' unit tests).
    pub host: &'static dyn Host,
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

    /// The IPv6 IPAM of this network (`subnet6`), in the same directory as [`Ctx::ipam`].
    ///
    /// # Errors
    /// CNI error when the store cannot be opened.
    pub fn ipam6(&self) -> Result<crate::ipam::Ipam6, CniError> {
        crate::ipam::Ipam6::new(
            &self.conf.data_dir,
            &self.conf.name,
            self.conf.subnet6,
            self.conf.gateway6(),
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
}

/// The node agent's after-boot reconciliation (the plugin does the same on its first call
/// after a boot): see [`boot::reconcile`]. Returns the attachments retired and the torn
/// records removed.
///
/// # Errors
///
/// As the reconciliation fails (state directory, a retirement).
pub async fn reconcile_after_boot(conf: &NetConf) -> Result<boot::Reconciled, CniError> {
    let ctx = Ctx {
        env: CniEnv {
            verb: Verb::Gc,
            container_id: None,
            netns: None,
            ifname: None,
            args: crate::cni::CniArgs::default(),
            path: Vec::new(),
        },
        conf: conf.clone(),
        version: conf.cni_version,
        faults: &NoFaults,
        datapaths: &System,
        host: &Kernel,
    };
    boot::reconcile(&ctx).await
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
    // Every answer, errors included, carries the config's cniVersion; only a config with
    // none to read is answered in the newest.
    let answer_version = crate::cni::version::answer_version(stdin);
    let env = CniEnv::from_lookup(lookup).map_err(|e| (e, answer_version.clone()))?;
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
        .map_err(|e| (e, answer_version.clone()))?;
    let version = conf.cni_version;
    let answer_version = version.as_str().to_string();
    crate::cni::version::check_verb(version, env.verb).map_err(|e| (e, answer_version.clone()))?;
    let faults = fault::from_env(lookup).map_err(|e| (e, answer_version.clone()))?;
    if env.verb != Verb::Status {
        safe_dirs(&conf).map_err(|e| (e, answer_version.clone()))?;
    }
    let ctx = Ctx {
        env,
        conf,
        version,
        faults,
        datapaths: &System,
        host: &Kernel,
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
        if matches!(ctx.env.verb, Verb::Add | Verb::Del | Verb::Check | Verb::Gc) {
            // Never fails the verb: what is left is retried by the next call and by GC.
            if let Err(e) = boot::reconcile(&ctx).await {
                tracing::warn!("{}", e.msg);
            }
        }
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

#[cfg(test)]
mod tests {
    use serde_json::{Value, json};

    use super::run;

    type Env<'a> = [(&'a str, &'a str)];

    /// Runs the plugin on `stdin` with `env` and returns (exit code, stdout JSON).
    fn answer(env: &[(&str, &str)], stdin: &[u8]) -> (i32, Value) {
        let lookup = |k: &str| {
            env.iter()
                .find(|(name, _)| *name == k)
                .map(|(_, v)| (*v).to_owned())
        };
        let mut out = Vec::new();
        let code = run(&lookup, stdin, &mut out);
        (code, serde_json::from_slice(&out).expect("stdout is JSON"))
    }

    /// Error results carry the config's cniVersion, whichever step refused the call; the
    /// newest only when no cniVersion can be read. None of these touches the system: each
    /// fails in validation.
    #[test]
    fn error_results_carry_the_configs_version() {
        let add = [
            ("CNI_COMMAND", "ADD"),
            ("CNI_CONTAINERID", "c1"),
            ("CNI_NETNS", "/run/netns/none"),
            ("CNI_IFNAME", "eth0"),
            ("CNI_PATH", "/opt/cni/bin"),
        ];
        let no_command = [("CNI_PATH", "/opt/cni/bin")];
        let status = [("CNI_COMMAND", "STATUS"), ("CNI_PATH", "/opt/cni/bin")];
        for version in ["0.4.0", "1.0.0", "1.1.0"] {
            let conf = |extra: Value| {
                let mut c = json!({"cniVersion": version, "type": "smarter-cni"});
                for (k, v) in extra.as_object().unwrap() {
                    c[k] = v.clone();
                }
                serde_json::to_vec(&c).unwrap()
            };
            let cases: [(&Env, Vec<u8>, u64); 5] = [
                // code 7: an invalid value
                (&add, conf(json!({"subnet": "10.0.0.0/33"})), 7),
                // code 2: an unknown key
                (&add, conf(json!({"bogus": true})), 2),
                // code 7: a runtimeConfig value
                (
                    &add,
                    conf(json!({"runtimeConfig": {"portMappings": [{"HostPort": 0}]}})),
                    7,
                ),
                // code 4: the environment, checked before the config
                (&no_command, conf(json!({})), 4),
                // code 7: the directories are checked before any verb runs
                (&add, conf(json!({"dataDir": "/etc/x"})), 7),
            ];
            for (env, stdin, want_code) in cases {
                let (code, out) = answer(env, &stdin);
                assert_eq!(code, 1, "{out}");
                assert_eq!(out["code"], want_code, "{version}: {out}");
                assert_eq!(out["cniVersion"], version, "{out}");
            }
            // STATUS below 1.1.0: code 1 in the config's own version.
            if version != "1.1.0" {
                let (_, out) = answer(&status, &conf(json!({})));
                assert_eq!(
                    (out["code"].as_u64(), &out["cniVersion"]),
                    (Some(1), &json!(version)),
                    "{out}"
                );
            }
        }
        // An injected fault that names no step of ADD is refused, naming the value.
        if cfg!(debug_assertions) {
            let mut env = add.to_vec();
            env.push(("SMARTER_CNI_FAIL_AT", "after-lunch"));
            let (_, out) = answer(&env, br#"{"cniVersion": "1.0.0", "type": "smarter-cni"}"#);
            assert_eq!(out["code"], 4, "{out}");
            assert!(
                out["msg"].as_str().unwrap().contains("after-lunch"),
                "{out}"
            );
        }
        // A version we do not speak is answered in that version (code 1)…
        let (_, out) = answer(&add, br#"{"cniVersion": "0.3.1", "type": "smarter-cni"}"#);
        assert_eq!(
            (out["code"].as_u64(), &out["cniVersion"]),
            (Some(1), &json!("0.3.1"))
        );
        // …and only an unreadable one in the newest.
        for stdin in [&b"{\"cniVersion\": "[..], b"{\"type\": \"smarter-cni\"}"] {
            let (_, out) = answer(&add, stdin);
            assert_eq!(out["cniVersion"], "1.1.0", "{out}");
        }
    }
}
