//! The I/O of PREF64 discovery (see [`super`]): a netlink socket on `RTNLGRP_ND_USEROPT` for
//! the routers' PREF64 options, `ipv4only.arpa` `AAAA` queries to the node's resolvers (through
//! the node-local DNS's [`Forwarder`]) in a task of their own, and the record in the state
//! directory the plugin's ADD reads ([`StateDir::write_pref64`]).
//!
//! Only the agent discovers: ADD never waits on the network for it.

use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::path::{Path, PathBuf};
use std::time::Duration;

use hickory_proto::op::ResponseCode;
use hickory_proto::rr::{RData, RecordType};
use rtnetlink::sys::protocols::NETLINK_ROUTE;
use rtnetlink::sys::{AsyncSocket as _, AsyncSocketExt as _, SocketAddr, TokioSocket};
use tokio::sync::mpsc;
use tokio::time::{Instant, sleep_until};

use super::{Discovery, Pref64Record, RTNLGRP_ND_USEROPT, from_ipv4only_answers, ra_pref64s};
use crate::datapath::uplink::External;
use crate::dns::query::make_query;
use crate::dns::resolv;
use crate::dns::upstream::Forwarder;
use crate::state::StateDir;

/// How long one `ipv4only.arpa` query may take, over every resolver.
const DNS_TIMEOUT: Duration = Duration::from_secs(5);

/// Where discovery asks and records.
#[derive(Debug, Clone)]
pub struct DiscoveryConfig {
    /// The resolv.conf naming the resolvers RFC 7050 asks (read at each query).
    pub resolv_conf: PathBuf,
    /// Where the prefix in force is recorded for the plugin (`None`: nowhere).
    pub record: Option<StateDir>,
}

/// An RFC 7050 query's outcome: the prefix and the answer's TTL, or nothing.
type DnsOutcome = Option<(Ipv6Addr, Duration)>;

/// PREF64 discovery as the agent runs it (with `nat64Prefix: auto` only).
pub struct Pref64Discovery {
    config: DiscoveryConfig,
    state: Discovery,
    nd: Option<TokioSocket>,
    dns_tx: mpsc::UnboundedSender<DnsOutcome>,
    dns_rx: mpsc::UnboundedReceiver<DnsOutcome>,
    dns_running: bool,
    /// What the record holds (`None`: not written yet by this agent).
    recorded: Option<Option<Pref64Record>>,
}

impl Pref64Discovery {
    /// Starts listening to the routers' PREF64 options in the calling thread's network
    /// namespace (a socket that cannot be opened is logged: RFC 7050 still works).
    #[must_use]
    pub fn start(config: DiscoveryConfig) -> Self {
        let nd = match nd_socket() {
            Ok(s) => Some(s),
            Err(e) => {
                tracing::warn!("cannot follow the routers' PREF64 options (RFC 8781): {e}");
                None
            }
        };
        let (dns_tx, dns_rx) = mpsc::unbounded_channel();
        Self {
            config,
            state: Discovery::default(),
            nd,
            dns_tx,
            dns_rx,
            dns_running: false,
            recorded: None,
        }
    }

    /// Waits until what discovery knows may have changed: a router's PREF64 option came, a
    /// query answered, a prefix expired or the resolvers are due again. Cancel-safe (for
    /// `select!`).
    pub async fn changed(&mut self) {
        loop {
            let deadline = self.state.next_deadline(Instant::now());
            tokio::select! {
                got = recv(self.nd.as_ref()) => match got {
                    Ok(datagram) => {
                        let now = Instant::now();
                        let mut changed = false;
                        for (ifindex, opt) in ra_pref64s(&datagram) {
                            tracing::debug!(ifindex, ?opt, "router advertisement PREF64");
                            changed |= self.state.on_ra(ifindex, opt, now);
                        }
                        if changed {
                            return;
                        }
                    }
                    Err(e) if e.raw_os_error() == Some(nix::libc::ENOBUFS) => {
                        tracing::warn!("PREF64 socket overflowed: {e}");
                    }
                    Err(e) => {
                        tracing::warn!("PREF64 socket failed, no more RFC 8781: {e}");
                        self.nd = None;
                    }
                },
                Some(outcome) = self.dns_rx.recv() => {
                    self.dns_running = false;
                    if self.state.dns_answered(outcome, Instant::now()) {
                        return;
                    }
                }
                () = sleep_or_never(deadline) => return,
            }
        }
    }

    /// Puts the discovered prefix into `ext`'s CLAT (decided with the well-known prefix), asks
    /// the resolvers when it is due (never when there is no CLAT), and records the prefix in
    /// force for the plugin.
    pub fn apply(&mut self, ext: &mut External) {
        let Some(clat) = ext.clat.as_mut() else {
            return;
        };
        let now = Instant::now();
        let chosen = self.state.current(clat.ifindex, now);
        if let Some(r) = chosen {
            clat.pref64 = r.prefix;
        }
        if !self.dns_running && self.state.dns_due(clat.ifindex, now) {
            self.dns_running = true;
            let tx = self.dns_tx.clone();
            let resolv_conf = self.config.resolv_conf.clone();
            tokio::spawn(async move {
                let _ = tx.send(ask_ipv4only(&resolv_conf).await);
            });
        }
        if self.recorded != Some(chosen) {
            self.record(chosen);
        }
    }

    fn record(&mut self, chosen: Option<Pref64Record>) {
        match &chosen {
            Some(r) => tracing::info!("NAT64 prefix {r} (discovered)"),
            None => tracing::info!("no NAT64 prefix discovered; the well-known one"),
        }
        let Some(dir) = &self.config.record else {
            self.recorded = Some(chosen);
            return;
        };
        match dir.write_pref64(chosen.as_ref()) {
            Ok(()) => self.recorded = Some(chosen),
            Err(e) => tracing::warn!("cannot record {}: {e}", dir.pref64().display()),
        }
    }
}

/// A netlink socket on `RTNLGRP_ND_USEROPT` (raw: netlink-packet-route does not parse
/// `RTM_NEWNDUSEROPT`, so it stays off the rtnetlink connection).
fn nd_socket() -> io::Result<TokioSocket> {
    let mut s = TokioSocket::new(NETLINK_ROUTE)?;
    s.socket_mut().bind(&SocketAddr::new(0, 0))?;
    s.socket_mut().add_membership(RTNLGRP_ND_USEROPT)?;
    Ok(s)
}

async fn recv(nd: Option<&TokioSocket>) -> io::Result<Vec<u8>> {
    match nd {
        Some(s) => s.recv_from_full().await.map(|(d, _)| d),
        None => std::future::pending().await,
    }
}

async fn sleep_or_never(deadline: Option<Instant>) {
    match deadline {
        Some(t) => sleep_until(t).await,
        None => std::future::pending().await,
    }
}

/// RFC 7050: `ipv4only.arpa.` `AAAA` through the resolvers of `resolv_conf`.
async fn ask_ipv4only(resolv_conf: &Path) -> DnsOutcome {
    let servers = resolv::load(
        resolv_conf,
        Path::new(resolv::SYSTEMD_RESOLV_CONF),
        IpAddr::V4(Ipv4Addr::UNSPECIFIED),
    );
    if servers.is_empty() {
        tracing::warn!(
            "RFC 7050: no resolver in {}; asking again later",
            resolv_conf.display()
        );
        return None;
    }
    let forwarder = Forwarder::new(servers, DNS_TIMEOUT);
    let resp = forwarder
        .forward(&make_query("ipv4only.arpa.", RecordType::AAAA))
        .await;
    let mut ttl = u32::MAX;
    let answers: Vec<Ipv6Addr> = resp
        .answers
        .iter()
        .filter_map(|r| match &r.data {
            RData::AAAA(a) => {
                ttl = ttl.min(r.ttl);
                Some(a.0)
            }
            _ => None,
        })
        .collect();
    let found = (resp.metadata.response_code == ResponseCode::NoError)
        .then(|| from_ipv4only_answers(&answers))
        .flatten();
    match found {
        Some(p) => Some((p, Duration::from_secs(u64::from(ttl)))),
        None => {
            tracing::info!(
                "RFC 7050: no NAT64 prefix in the answer for ipv4only.arpa ({}, {answers:?}); \
                 asking again later",
                resp.metadata.response_code
            );
            None
        }
    }
}
