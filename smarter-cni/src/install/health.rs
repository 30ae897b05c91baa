//! The agent container's exec probe (`smarter-agent health`): the image has no shell, so
//! `test -f` is not available. The agent's `--health-file` exists while it is ready and its
//! mtime is the loop's last heartbeat (at least every `min(--gc-interval, --resync-interval)`).

use std::fs;
use std::io;
use std::path::Path;
use std::time::{Duration, SystemTime};

use super::InstallError;

/// What the probe asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HealthCheck {
    /// The heartbeat must be at most this old.
    pub max_age: Duration,
    /// A missing file passes (liveness while the agent waits for its first uplink: it is
    /// alive but not ready, and a restart would not help).
    pub allow_missing: bool,
}

/// Checks the health file at `path`; `Ok(Some(age))` for a fresh file, `Ok(None)` for an
/// allowed missing one.
///
/// # Errors
///
/// [`InstallError::Unhealthy`] saying why (missing, stale, unreadable).
pub fn check(path: &Path, probe: HealthCheck) -> Result<Option<Duration>, InstallError> {
    let meta = match fs::metadata(path) {
        Ok(m) => m,
        Err(e) if e.kind() == io::ErrorKind::NotFound && probe.allow_missing => return Ok(None),
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            return Err(InstallError::Unhealthy(format!(
                "not ready: {} does not exist (the agent writes it once the datapath has its \
                 uplink)",
                path.display()
            )));
        }
        Err(e) => {
            return Err(InstallError::Unhealthy(format!("{}: {e}", path.display())));
        }
    };
    let mtime = meta
        .modified()
        .map_err(|e| InstallError::Unhealthy(format!("{}: {e}", path.display())))?;
    // A clock stepped backwards makes the file look new: that is not a hang.
    let age = SystemTime::now()
        .duration_since(mtime)
        .unwrap_or(Duration::ZERO);
    if age > probe.max_age {
        return Err(InstallError::Unhealthy(format!(
            "stale: the agent's last heartbeat in {} was {}s ago (limit {}s)",
            path.display(),
            age.as_secs(),
            probe.max_age.as_secs()
        )));
    }
    Ok(Some(age))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fresh_stale_and_missing() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("agent.health");
        let strict = HealthCheck {
            max_age: Duration::from_secs(30),
            allow_missing: false,
        };
        let lenient = HealthCheck {
            allow_missing: true,
            ..strict
        };
        assert!(
            check(&f, strict)
                .unwrap_err()
                .to_string()
                .contains("not ready")
        );
        assert_eq!(check(&f, lenient).unwrap(), None);
        fs::write(&f, "uplink eth0\n").unwrap();
        assert!(check(&f, strict).unwrap().is_some());
        let old = SystemTime::now() - Duration::from_secs(120);
        fs::File::options()
            .write(true)
            .open(&f)
            .unwrap()
            .set_modified(old)
            .unwrap();
        let err = check(&f, lenient).unwrap_err().to_string();
        assert!(err.contains("stale") && err.contains("limit 30s"), "{err}");
    }
}
