//! The CNI environment (`CNI_COMMAND`, `CNI_CONTAINERID`, `CNI_NETNS`, `CNI_IFNAME`,
//! `CNI_ARGS`, `CNI_PATH`), parsed from an injected lookup so that tests never touch the
//! process environment.
//!
//! Required variables per verb follow the spec (which is laxer than the reference `skel`):
//!
//! | verb | required | used if present |
//! |------|----------|-----------------|
//! | ADD, CHECK | `CNI_CONTAINERID`, `CNI_NETNS`, `CNI_IFNAME` | `CNI_ARGS`, `CNI_PATH` |
//! | DEL | `CNI_CONTAINERID`, `CNI_IFNAME` | `CNI_NETNS`, `CNI_ARGS`, `CNI_PATH` |
//! | GC | `CNI_PATH` | — |
//! | STATUS | — | `CNI_PATH` |
//! | VERSION | — | — |
//!
//! An empty variable counts as unset. Variables a verb does not use are ignored, not validated.

use std::collections::HashMap;
use std::fmt;
use std::path::PathBuf;

use super::names::{validate_container_id, validate_ifname};
use super::{CniArgs, CniError};

/// The operation requested by `CNI_COMMAND`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Verb {
    /// `ADD`: attach the container to the network.
    Add,
    /// `DEL`: detach; idempotent.
    Del,
    /// `CHECK`: verify an attachment against `prevResult`.
    Check,
    /// `VERSION`: report supported versions.
    Version,
    /// `STATUS`: report readiness to serve ADD (1.1.0).
    Status,
    /// `GC`: remove resources of attachments not in `cni.dev/valid-attachments` (1.1.0).
    Gc,
}

impl Verb {
    /// The `CNI_COMMAND` spelling.
    #[must_use]
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Add => "ADD",
            Self::Del => "DEL",
            Self::Check => "CHECK",
            Self::Version => "VERSION",
            Self::Status => "STATUS",
            Self::Gc => "GC",
        }
    }

    /// Parses a `CNI_COMMAND` value (exact, upper case as the spec writes it).
    #[must_use]
    pub fn parse(s: &str) -> Option<Self> {
        [
            Self::Add,
            Self::Del,
            Self::Check,
            Self::Version,
            Self::Status,
            Self::Gc,
        ]
        .into_iter()
        .find(|verb| verb.as_str() == s)
    }

    /// Whether the verb acts on one attachment (ADD, DEL, CHECK).
    #[must_use]
    pub const fn is_attachment_verb(self) -> bool {
        matches!(self, Self::Add | Self::Del | Self::Check)
    }
}

impl fmt::Display for Verb {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The parsed CNI environment.
///
/// For ADD and CHECK, `container_id`, `netns` and `ifname` are always `Some`; for DEL,
/// `container_id` and `ifname` are. For VERSION, STATUS and GC they are `None`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CniEnv {
    /// `CNI_COMMAND`.
    pub verb: Verb,
    /// `CNI_CONTAINERID`, validated against the spec's pattern.
    pub container_id: Option<String>,
    /// `CNI_NETNS`: the spec's "reference to the isolation domain"; we require an absolute
    /// path (of a network namespace).
    pub netns: Option<String>,
    /// `CNI_IFNAME`, a valid Linux interface name.
    pub ifname: Option<String>,
    /// `CNI_ARGS` (ADD, DEL and CHECK only; default otherwise).
    pub args: CniArgs,
    /// `CNI_PATH`, split on `:` with empty entries dropped.
    pub path: Vec<PathBuf>,
}

/// Which variables a verb requires, and which it reads.
struct Needs {
    attachment: bool,
    netns_required: bool,
    path_required: bool,
}

const fn needs(verb: Verb) -> Needs {
    match verb {
        Verb::Add | Verb::Check => Needs {
            attachment: true,
            netns_required: true,
            path_required: false,
        },
        Verb::Del => Needs {
            attachment: true,
            netns_required: false,
            path_required: false,
        },
        Verb::Gc => Needs {
            attachment: false,
            netns_required: false,
            path_required: true,
        },
        Verb::Status | Verb::Version => Needs {
            attachment: false,
            netns_required: false,
            path_required: false,
        },
    }
}

impl CniEnv {
    /// Parses the environment through `lookup` (e.g. `&|k| std::env::var(k).ok()`).
    ///
    /// # Errors
    ///
    /// - code 4 naming every missing or invalid variable in one message;
    /// - from [`CniArgs::parse`]: code 2 (unknown or malformed `CNI_ARGS`) or 4 (bad `IP`).
    pub fn from_lookup(lookup: &dyn Fn(&str) -> Option<String>) -> Result<Self, CniError> {
        let get = |name: &str| lookup(name).filter(|v| !v.is_empty());
        let verb = match get("CNI_COMMAND") {
            None => return Err(CniError::invalid_env("invalid CNI environment: CNI_COMMAND is missing")),
            Some(cmd) => Verb::parse(&cmd).ok_or_else(|| {
                CniError::invalid_env(format!(
                    "invalid CNI environment: CNI_COMMAND {cmd:?} is not one of ADD, DEL, CHECK, VERSION, STATUS, GC"
                ))
            })?,
        };
        let needs = needs(verb);
        let mut problems = Vec::new();
        let mut env = Self {
            verb,
            container_id: None,
            netns: None,
            ifname: None,
            args: CniArgs::default(),
            path: Vec::new(),
        };

        if needs.attachment {
            env.container_id = get("CNI_CONTAINERID");
            match &env.container_id {
                None => problems.push("CNI_CONTAINERID is missing".to_owned()),
                Some(id) => {
                    if let Err(why) = validate_container_id(id) {
                        problems.push(format!("CNI_CONTAINERID {id:?} {why}"));
                    }
                }
            }
            env.netns = get("CNI_NETNS");
            match &env.netns {
                None if needs.netns_required => problems.push("CNI_NETNS is missing".to_owned()),
                Some(netns) if !netns.starts_with('/') => {
                    problems.push(format!("CNI_NETNS {netns:?} is not an absolute path"));
                }
                _ => {}
            }
            env.ifname = get("CNI_IFNAME");
            match &env.ifname {
                None => problems.push("CNI_IFNAME is missing".to_owned()),
                Some(ifname) => {
                    if let Err(why) = validate_ifname(ifname) {
                        problems.push(format!("CNI_IFNAME {ifname:?} {why}"));
                    }
                }
            }
        }
        if verb != Verb::Version {
            let raw = get("CNI_PATH").unwrap_or_default();
            env.path = raw
                .split(':')
                .filter(|p| !p.is_empty())
                .map(PathBuf::from)
                .collect();
            if needs.path_required && env.path.is_empty() {
                problems.push("CNI_PATH is missing".to_owned());
            }
        }
        if !problems.is_empty() {
            return Err(CniError::invalid_env(format!(
                "invalid CNI environment for {verb}: {}",
                problems.join("; ")
            )));
        }
        if needs.attachment {
            env.args = CniArgs::parse(&get("CNI_ARGS").unwrap_or_default())?;
        }
        Ok(env)
    }

    /// `CNI_CONTAINERID`.
    ///
    /// # Errors
    ///
    /// Code 4 if unset (only possible for VERSION, STATUS and GC).
    pub fn container_id(&self) -> Result<&str, CniError> {
        required(self.container_id.as_deref(), "CNI_CONTAINERID", self.verb)
    }

    /// `CNI_IFNAME`.
    ///
    /// # Errors
    ///
    /// Code 4 if unset (only possible for VERSION, STATUS and GC).
    pub fn ifname(&self) -> Result<&str, CniError> {
        required(self.ifname.as_deref(), "CNI_IFNAME", self.verb)
    }

    /// `CNI_NETNS`.
    ///
    /// # Errors
    ///
    /// Code 4 if unset (possible for DEL, VERSION, STATUS and GC).
    pub fn netns(&self) -> Result<&str, CniError> {
        required(self.netns.as_deref(), "CNI_NETNS", self.verb)
    }

    /// `(CNI_CONTAINERID, CNI_IFNAME, CNI_NETNS)`, as ADD and CHECK need them.
    ///
    /// # Errors
    ///
    /// Code 4 naming the first unset variable.
    pub fn pod_triplet(&self) -> Result<(&str, &str, &str), CniError> {
        Ok((self.container_id()?, self.ifname()?, self.netns()?))
    }

    /// Parses the environment from a map of variables.
    ///
    /// # Errors
    ///
    /// As [`CniEnv::from_lookup`].
    pub fn from_map(vars: &HashMap<String, String>) -> Result<Self, CniError> {
        Self::from_lookup(&|name| vars.get(name).cloned())
    }
}

/// `value`, or a code-4 error naming `name`.
fn required<'a>(value: Option<&'a str>, name: &str, verb: Verb) -> Result<&'a str, CniError> {
    value.ok_or_else(|| CniError::invalid_env(format!("{name} is not set for {verb}")))
}

#[cfg(test)]
mod tests;
