//! The agent's main loop: follow the uplink, tell the datapath, collect conntrack garbage,
//! report health, stop on request.

use std::future::Future;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::Context as _;
use tokio::time::{Instant, MissedTickBehavior, interval, sleep_until};

use super::pref64::discover::{DiscoveryConfig, Pref64Discovery};
use super::uplink::watch::{UplinkWatch, WatchError};
use super::uplink::{External, Uplink};
use crate::cni::{Nat64Prefix, UplinkSelector};
use crate::datapath::DatapathChoice;
use crate::state::StateDir;

/// What the agent drives: the datapath (eBPF or iptables) behind a narrow seam, so the loop
/// is tested with a recording fake and the real datapath is wired in by the binary.
pub trait DatapathControl {
    /// The node's external side changed: interfaces, their addresses, the default route
    /// (called once at start, then only on real changes).
    ///
    /// # Errors
    /// Any failure; the agent logs it and calls again with the then-current value after
    /// [`AgentConfig::retry_interval`].
    fn uplink_changed(&mut self, external: &External) -> anyhow::Result<()>;

    /// Removes expired connection-tracking entries; returns how many.
    ///
    /// # Errors
    /// Any failure; the agent logs it and tries again at the next interval.
    fn gc(&mut self) -> anyhow::Result<usize>;
}

/// The loop's settings.
#[derive(Debug, Clone)]
pub struct AgentConfig {
    /// Which external interfaces pods may leave by.
    pub uplink: UplinkSelector,
    /// The network's bridge (never an external interface).
    pub bridge: String,
    /// What an IPv6-only uplink's CLAT translates to (`nat64Prefix`); with
    /// [`Nat64Prefix::Auto`] the agent discovers it ([`super::pref64`]).
    pub nat64_prefix: Nat64Prefix,
    /// The resolv.conf whose resolvers RFC 7050 discovery asks (`ipv4only.arpa`).
    pub resolv_conf: PathBuf,
    /// Where the discovered NAT64 prefix is recorded for the plugin's ADD (`None`: nowhere).
    pub pref64_record: Option<StateDir>,
    /// How often [`DatapathControl::gc`] runs.
    pub gc_interval: Duration,
    /// Safety-net re-resolution without any event.
    pub resync_interval: Duration,
    /// Events are collected this long before re-resolving.
    pub debounce: Duration,
    /// Delay before retrying a failed dump or [`DatapathControl::uplink_changed`].
    pub retry_interval: Duration,
    /// Health file for the `DaemonSet` probes; see [`Health`].
    pub health_file: Option<PathBuf>,
}

impl Default for AgentConfig {
    fn default() -> Self {
        Self {
            uplink: UplinkSelector::Auto,
            bridge: crate::cni::config::defaults::BRIDGE.to_owned(),
            nat64_prefix: Nat64Prefix::Auto,
            resolv_conf: PathBuf::from("/etc/resolv.conf"),
            pref64_record: None,
            gc_interval: Duration::from_secs(10),
            resync_interval: Duration::from_secs(30),
            debounce: Duration::from_millis(100),
            retry_interval: Duration::from_secs(1),
            health_file: None,
        }
    }
}

/// Readiness and liveness, shared with whoever asks (tests, a future HTTP probe).
///
/// Ready once the uplink has been resolved and handed to the datapath the first time.
/// Alive while the loop keeps turning: [`Health::last_beat`] advances at every tick (at least
/// every `min(gc_interval, resync_interval)`). With a health file configured, the file exists
/// only while ready, and its mtime is the last beat: a readiness probe is `test -f FILE`, a
/// liveness probe checks that the file is younger than a few intervals.
///
/// The health also names the datapath serving the network and why ([`Health::set_datapath`]):
/// the file's second line is `datapath <name> (<reason>)`, e.g. `datapath iptables (auto: eBPF
/// unavailable: ...)`.
#[derive(Debug, Default)]
pub struct Health {
    ready: AtomicBool,
    last_beat: AtomicU64,
    datapath: Mutex<Option<DatapathChoice>>,
}

impl Health {
    /// A new, not-ready health record.
    #[must_use]
    pub fn new() -> Arc<Self> {
        Arc::new(Self::default())
    }

    /// True once the first uplink decision reached the datapath.
    #[must_use]
    pub fn is_ready(&self) -> bool {
        self.ready.load(Ordering::Acquire)
    }

    /// Records which datapath serves the network and why (reported in the health file).
    pub fn set_datapath(&self, choice: DatapathChoice) {
        *self
            .datapath
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = Some(choice);
    }

    /// The datapath serving the network and why, once [`Self::set_datapath`] was called.
    #[must_use]
    pub fn datapath(&self) -> Option<DatapathChoice> {
        self.datapath
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }

    /// Seconds since the Unix epoch of the loop's last beat (0 before the first).
    #[must_use]
    pub fn last_beat(&self) -> u64 {
        self.last_beat.load(Ordering::Acquire)
    }

    fn beat(&self, file: Option<&PathBuf>, uplink: Option<&Uplink>) {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        self.last_beat.store(now, Ordering::Release);
        if let (Some(path), true) = (file, self.is_ready()) {
            let mut text =
                uplink.map_or_else(|| "uplink none".to_string(), |u| format!("uplink {u}"));
            text.push('\n');
            if let Some(choice) = self.datapath() {
                text.push_str(&format!("datapath {choice}\n"));
            }
            if let Err(e) = write_atomically(path, &text) {
                tracing::warn!(path = %path.display(), "cannot write health file: {e}");
            }
        }
    }
}

fn write_atomically(path: &PathBuf, text: &str) -> std::io::Result<()> {
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, text)?;
    std::fs::rename(&tmp, path)
}

/// Runs the agent until `shutdown` completes, in the calling thread's network namespace.
///
/// # Errors
/// When the netlink subscription cannot be opened at start (later failures are logged and
/// retried, never fatal).
pub async fn run<D: DatapathControl>(
    config: &AgentConfig,
    datapath: &mut D,
    health: &Health,
    shutdown: impl Future<Output = ()>,
) -> anyhow::Result<()> {
    let mut watch = UplinkWatch::subscribe(
        config.uplink.clone(),
        config.bridge.clone(),
        config.nat64_prefix.resolve(|| None),
    )
    .context("subscribing to link, address and route changes")?;
    // Discovery only with `auto`: a configured prefix (or `off`) is never overridden.
    let mut pref64 = (config.nat64_prefix == Nat64Prefix::Auto).then(|| {
        Pref64Discovery::start(DiscoveryConfig {
            resolv_conf: config.resolv_conf.clone(),
            record: config.pref64_record.clone(),
        })
    });
    tracing::info!(uplink = ?config.uplink, gc_every = ?config.gc_interval, "agent started");
    let mut state = Loop {
        config,
        current: None,
        delivered: false,
        pending: Some(Instant::now()),
    };
    let mut resync = interval(config.resync_interval);
    resync.set_missed_tick_behavior(MissedTickBehavior::Delay);
    resync.tick().await;
    let mut gc = interval(config.gc_interval);
    gc.set_missed_tick_behavior(MissedTickBehavior::Delay);
    gc.tick().await;
    tokio::pin!(shutdown);
    loop {
        let pending = state.pending;
        tokio::select! {
            () = &mut shutdown => break,
            event = watch.changed() => match event {
                Ok(()) => state.schedule(config.debounce),
                Err(e) => {
                    tracing::warn!("{e}; subscribing again");
                    tokio::time::sleep(config.retry_interval).await;
                    if let Err(e) = watch.resubscribe() {
                        tracing::error!("{e}");
                    }
                    state.schedule(Duration::ZERO);
                }
            },
            () = discovered(pref64.as_mut()) => state.schedule(Duration::ZERO),
            () = sleep_until(pending.unwrap_or_else(Instant::now)), if pending.is_some() => {
                state.pending = None;
                state.refresh(&watch, pref64.as_mut(), datapath, health).await;
            }
            _ = resync.tick() => {
                tracing::debug!("periodic resync");
                state.refresh(&watch, pref64.as_mut(), datapath, health).await;
            }
            _ = gc.tick() => {
                match datapath.gc() {
                    Ok(0) => {}
                    Ok(n) => tracing::debug!(removed = n, "garbage collected (expired flows, ownerless entries)"),
                    Err(e) => tracing::warn!("conntrack gc failed: {e:#}"),
                }
                health.beat(config.health_file.as_ref(), state.preferred());
            }
        }
    }
    if let Some(path) = &config.health_file
        && let Err(e) = std::fs::remove_file(path)
        && e.kind() != std::io::ErrorKind::NotFound
    {
        tracing::warn!(path = %path.display(), "cannot remove health file: {e}");
    }
    tracing::info!("agent stopped");
    Ok(())
}

/// What PREF64 discovery learns (never, without it).
async fn discovered(pref64: Option<&mut Pref64Discovery>) {
    match pref64 {
        Some(d) => d.changed().await,
        None => std::future::pending().await,
    }
}

/// The loop's mutable state.
struct Loop<'a> {
    config: &'a AgentConfig,
    /// The value last delivered to the datapath.
    current: Option<External>,
    /// Whether anything was delivered yet (the first decision is always delivered).
    delivered: bool,
    /// When to re-resolve next (debounce or retry), if scheduled.
    pending: Option<Instant>,
}

impl Loop<'_> {
    /// The uplink of the default route in what was last delivered.
    fn preferred(&self) -> Option<&Uplink> {
        self.current.as_ref().and_then(External::preferred)
    }

    /// Schedules a re-resolution `after` from now unless one is already due earlier, so a
    /// burst of events costs one dump, at most `debounce` after its first event.
    fn schedule(&mut self, after: Duration) {
        let at = Instant::now() + after;
        self.pending = Some(self.pending.map_or(at, |p| p.min(at)));
    }

    async fn refresh<D: DatapathControl>(
        &mut self,
        watch: &UplinkWatch,
        pref64: Option<&mut Pref64Discovery>,
        datapath: &mut D,
        health: &Health,
    ) {
        let mut resolved = match watch.external().await {
            Ok(r) => r,
            Err(e @ WatchError::Dump { .. }) => {
                tracing::warn!("cannot resolve the uplink: {e}; retrying");
                self.schedule(self.config.retry_interval);
                return;
            }
            Err(e) => {
                tracing::warn!("cannot resolve the uplink: {e}");
                return;
            }
        };
        if let Some(d) = pref64 {
            d.apply(&mut resolved);
        }
        if self.delivered && self.current.as_ref() == Some(&resolved) {
            health.beat(self.config.health_file.as_ref(), self.preferred());
            return;
        }
        match (resolved.preferred(), &resolved.clat) {
            (Some(u), _) => tracing::info!("uplink is {u}"),
            (None, Some(c)) => tracing::info!(
                "no IPv4 uplink: pods' IPv4 leaves {} by the CLAT ({} to {}/96)",
                c.name,
                c.addr,
                c.pref64
            ),
            (None, None) => {
                tracing::warn!(selector = ?watch.selector(), "no usable default uplink");
            }
        }
        for u in &resolved.uplinks {
            tracing::debug!("external interface {u}");
        }
        match datapath.uplink_changed(&resolved) {
            Ok(()) => {
                self.current = Some(resolved);
                self.delivered = true;
                health.ready.store(true, Ordering::Release);
            }
            Err(e) => {
                tracing::error!("datapath rejected the uplink change: {e:#}; retrying");
                self.schedule(self.config.retry_interval);
            }
        }
        health.beat(self.config.health_file.as_ref(), self.preferred());
    }
}
