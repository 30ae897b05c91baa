//! The test-only seam of ADD's rollback: a failure injected after one of ADD's steps.
//!
//! ADD asks [`Ctx::faults`](super::Ctx::faults) after each of its steps whether to fail there
//! ([`Faults::after`] with a typed [`Step`]). The production seam is [`NoFaults`], which never
//! fails; the injecting one, [`FailAfter`], exists only in debug builds and unit tests, where
//! [`from_env`] builds it from `SMARTER_CNI_FAIL_AT` (the rollback tests of
//! `tests/cni_lifecycle.rs` run the debug binary with it). A release build neither reads the
//! variable nor contains the injecting code.

use crate::cni::CniError;

/// The variable naming the step after which a debug build fails on purpose.
pub const FAIL_AT_ENV: &str = "SMARTER_CNI_FAIL_AT";

/// A step of ADD after which a failure can be injected, in the order ADD takes them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    /// The address is allocated (nothing else exists yet).
    Ipam,
    /// The pod's IPv6 address is allocated (only for a pod that gets IPv6).
    Ipam6,
    /// The veth pair exists, its host end on the bridge.
    Veth,
    /// The pod's interface has its address and default route.
    Pod,
    /// The datapath serves the pod (its entries and hostPorts).
    Datapath,
}

impl Step {
    /// Every step, in ADD's order.
    #[cfg(any(test, debug_assertions))]
    pub const ALL: [Step; 5] = [
        Step::Ipam,
        Step::Ipam6,
        Step::Veth,
        Step::Pod,
        Step::Datapath,
    ];

    /// The point's name as [`FAIL_AT_ENV`] takes it: `after-` and the step.
    #[must_use]
    pub const fn as_str(self) -> &'static str {
        match self {
            Step::Ipam => "after-ipam",
            Step::Ipam6 => "after-ipam6",
            Step::Veth => "after-veth",
            Step::Pod => "after-pod",
            Step::Datapath => "after-datapath",
        }
    }
}

impl std::fmt::Display for Step {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Where ADD may be made to fail between its steps ([`NoFaults`] in production).
pub trait Faults: Sync {
    /// Called when ADD has done `step`; an error makes ADD fail there and roll back.
    ///
    /// # Errors
    /// The injected failure, naming the step.
    fn after(&self, step: Step) -> Result<(), CniError>;
}

/// The production seam: ADD never fails on purpose.
#[derive(Debug, Clone, Copy, Default)]
pub struct NoFaults;

impl Faults for NoFaults {
    #[inline]
    fn after(&self, _step: Step) -> Result<(), CniError> {
        Ok(())
    }
}

/// Fails ADD after the one step it names (debug builds and unit tests only).
#[cfg(any(test, debug_assertions))]
#[derive(Debug, Clone, Copy)]
pub struct FailAfter(pub Step);

#[cfg(any(test, debug_assertions))]
impl Faults for FailAfter {
    fn after(&self, step: Step) -> Result<(), CniError> {
        if step == self.0 {
            return Err(CniError::new(
                CniError::IO,
                format!("injected failure at step {step}"),
                FAIL_AT_ENV,
            ));
        }
        Ok(())
    }
}

/// The faults of this invocation: [`FailAfter`] the step [`FAIL_AT_ENV`] names, else
/// [`NoFaults`].
///
/// # Errors
/// An invalid-environment CNI error naming the value when it is not a [`Step`]'s name.
#[cfg(debug_assertions)]
pub fn from_env(lookup: &dyn Fn(&str) -> Option<String>) -> Result<&'static dyn Faults, CniError> {
    let Some(value) = lookup(FAIL_AT_ENV) else {
        return Ok(&NoFaults);
    };
    let step = Step::ALL
        .into_iter()
        .find(|s| s.as_str() == value)
        .ok_or_else(|| {
            let names: Vec<_> = Step::ALL.iter().map(|s| s.as_str()).collect();
            CniError::new(
                CniError::INVALID_ENV,
                format!(
                    "{FAIL_AT_ENV}={value:?} is not a step of ADD (one of {})",
                    names.join(", ")
                ),
                FAIL_AT_ENV,
            )
        })?;
    // One per process (a plugin run is one verb), like the other seams.
    Ok(Box::leak(Box::new(FailAfter(step))))
}

/// The faults of this invocation: none in a release build (the variable is not read).
///
/// # Errors
/// Never.
#[cfg(not(debug_assertions))]
pub fn from_env(_lookup: &dyn Fn(&str) -> Option<String>) -> Result<&'static dyn Faults, CniError> {
    Ok(&NoFaults)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(value: Option<&str>) -> impl Fn(&str) -> Option<String> {
        move |k| (k == FAIL_AT_ENV).then_some(value?.to_owned())
    }

    #[test]
    fn no_variable_injects_nothing() {
        let faults = from_env(&env(None)).unwrap();
        for step in Step::ALL {
            faults.after(step).unwrap();
        }
    }

    #[test]
    #[cfg(debug_assertions)]
    fn the_named_step_fails_and_no_other() {
        for step in Step::ALL {
            let faults = from_env(&env(Some(step.as_str()))).unwrap();
            for other in Step::ALL {
                let r = faults.after(other);
                if other == step {
                    let err = r.unwrap_err();
                    assert!(err.msg.contains(step.as_str()), "{}", err.msg);
                } else {
                    r.unwrap();
                }
            }
        }
    }

    #[test]
    #[cfg(debug_assertions)]
    fn an_unknown_step_is_refused_naming_the_value() {
        for bad in ["after-nothing", "", "ipam"] {
            let Err(err) = from_env(&env(Some(bad))) else {
                panic!("{bad:?} accepted");
            };
            assert_eq!(err.code, CniError::INVALID_ENV);
            assert!(err.msg.contains(&format!("{bad:?}")), "{}", err.msg);
            assert!(err.msg.contains("after-datapath"), "{}", err.msg);
        }
    }
}
