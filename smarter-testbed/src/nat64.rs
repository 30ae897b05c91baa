//! An IPv6-only primary uplink with a real NAT64 in the wan ([`World::add_nat64`]), for the
//! CLAT (464XLAT): IPv4-only pods reach the IPv4 internet through an uplink that carries only
//! IPv6, their packets translated towards [`NAT64_PREFIX`] on the node and back to IPv4 by the
//! wan's NAT64.
//!
//! The NAT64 is Debian's `tayga` (a userspace stateless translator on a TUN device,
//! [`NAT64_IF`]) running in the wan namespace. tayga refuses to translate the well-known
//! prefix `64:ff9b::/96` with the documentation and shared addresses every world uses
//! ([`WAN_SERVER_IP`](crate::WAN_SERVER_IP) is `203.0.113.1`, RFC 6052 §3.1) and refuses maps
//! inside it, so it translates a network-specific prefix, [`TAYGA_PREFIX`], and the wan maps
//! `64:ff9b::/96` onto that prefix one to one (an nftables `dnat ip6 prefix to` in its
//! prerouting and output, which also maps ICMPv6 errors back): to the node the wan is a NAT64
//! of the well-known prefix. IPv6 sources are mapped by tayga to addresses of [`NAT64_POOL`],
//! which IPv4 servers in the wan and behind it see as the client.
//!
//! Addresses: the uplink is [`NODE_UPLINK_IP6`]`/64` (node, `uplink0`) ↔
//! [`WAN_ROUTER_IP6`]`/64` (wan, `wan0`), no IPv4 on either side; tayga is [`TAYGA_IP4`] and
//! [`TAYGA_IP6`].

use std::fs;
use std::io;
use std::net::{Ipv4Addr, Ipv6Addr};
use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use super::{UPLINK, WAN_UPLINK_IF, World, ns};

/// The node's address on the IPv6-only uplink (`uplink0`).
pub const NODE_UPLINK_IP6: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 0x64, 0, 0, 0, 0, 2);
/// The wan router's address on the IPv6-only uplink (`wan0`): the node's IPv6 default gateway.
pub const WAN_ROUTER_IP6: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 0x64, 0, 0, 0, 0, 1);
/// The node's address on the IPv6-only layer-3 uplink of [`World::add_nat64_l3`]
/// ([`L3_UPLINK`](crate::L3_UPLINK), a raw-IP modem).
pub const NODE_L3_IP6: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 0x65, 0, 0, 0, 0, 2);
/// The wan's address on the IPv6-only layer-3 uplink.
pub const WAN_L3_IP6: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 0x65, 0, 0, 0, 0, 1);
/// Prefix length of the IPv6-only uplink.
pub const UPLINK6_PREFIX_LEN: u8 = 64;
/// The NAT64 prefix the node sends to (the well-known prefix, RFC 6052).
pub const NAT64_PREFIX: Ipv6Addr = Ipv6Addr::new(0x64, 0xff9b, 0, 0, 0, 0, 0, 0);
/// Length of [`NAT64_PREFIX`].
pub const NAT64_PREFIX_LEN: u8 = 96;
/// The network-specific prefix tayga itself translates; the wan maps [`NAT64_PREFIX`] onto it.
pub const TAYGA_PREFIX: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 0x64, 0x64, 0, 0, 0, 0);
/// tayga's TUN device in the wan namespace.
pub const NAT64_IF: &str = "nat64";
/// tayga's own IPv4 address (source of the ICMPv4 errors it makes; answers pings).
pub const TAYGA_IP4: Ipv4Addr = Ipv4Addr::new(192, 168, 255, 1);
/// tayga's own IPv6 address (source of the ICMPv6 errors it makes; answers pings).
pub const TAYGA_IP6: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 0x64, 0xff, 0, 0, 0, 1);
/// The IPv4 pool tayga maps IPv6 sources into (`/24`; IPv4 servers see these as clients).
pub const NAT64_POOL: Ipv4Addr = Ipv4Addr::new(192, 168, 255, 0);
/// Length of [`NAT64_POOL`].
pub const NAT64_POOL_LEN: u8 = 24;

/// `v4` in the NAT64 prefix: [`NAT64_PREFIX`] with `v4` in the last 32 bits
/// (`203.0.113.1` → `64:ff9b::cb00:7101`).
#[must_use]
pub const fn nat64_addr(v4: Ipv4Addr) -> Ipv6Addr {
    Ipv6Addr::from_bits(NAT64_PREFIX.to_bits() | v4.to_bits() as u128)
}

/// The running tayga: killed and waited for on drop (its TUN device goes with the wan).
pub(crate) struct Tayga {
    child: Child,
    log: PathBuf,
}

impl Tayga {
    fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The log's last lines, for errors.
    fn log_tail(&self) -> String {
        let text = fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(10)..].join("\n")
    }
}

impl Drop for Tayga {
    fn drop(&mut self) {
        let _ = self.child.kill();
        if let Err(e) = self.child.wait() {
            eprintln!("testbed: cannot wait for tayga {}: {e}", self.child.id());
        }
    }
}

/// Where tayga is: on `PATH` or in the sbin directories (not always on a test's `PATH`).
fn find_tayga() -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain(["/usr/sbin", "/sbin"].map(PathBuf::from))
        .map(|d| d.join("tayga"))
        .find(|p| p.is_file())
}

impl World {
    /// Makes the primary uplink IPv6-only and puts a NAT64 in the wan (see the module docs):
    ///
    /// - `uplink0` loses its IPv4 address and every IPv4 route through it (the default route
    ///   with them), `wan0` its IPv4 address; they get [`NODE_UPLINK_IP6`] and
    ///   [`WAN_ROUTER_IP6`] (`/64`, `nodad`) and the node an IPv6 default route via
    ///   [`WAN_ROUTER_IP6`]. IPv6 is enabled in both namespaces and forwarded by the wan.
    ///   Other uplinks of [`topology`](crate::topology) keep what they have.
    /// - tayga runs in the wan on [`NAT64_IF`] (its configuration, data and log in the
    ///   world's directory), routes `64:ff9b::/96`, [`TAYGA_PREFIX`]`/96`, [`TAYGA_IP6`] and
    ///   [`NAT64_POOL`]`/24` to it; the wan forwards IPv4, so the wan's server (local) and
    ///   [`World::add_far`]'s (whose ICMP "fragmentation needed" tayga turns into ICMPv6
    ///   "packet too big") answer the pool addresses through tayga.
    ///
    /// tayga is killed and waited for when the world is dropped, also on a panic. A
    /// [`World::reboot`] wires the IPv6-only uplink again; tayga keeps running.
    ///
    /// # Errors
    /// `tayga not installed` when it is not found (tests skip on it); when `ip`, `sysctl`,
    /// `nft` or tayga fails (the message has tayga's log), the world has no wan or already a
    /// NAT64.
    pub fn add_nat64(&mut self) -> io::Result<()> {
        let wan = self.wan_ns()?;
        if self.extras.nat64.is_some() {
            return Err(io::Error::other("the world already has a NAT64"));
        }
        let Some(tayga) = find_tayga() else {
            return Err(io::Error::new(
                io::ErrorKind::NotFound,
                "tayga not installed (apt-get install tayga; World::add_nat64 runs it)",
            ));
        };
        self.wire_uplink6()?;
        let dir = self.dir.path().join("tayga");
        let conf = write_config(&dir)?;
        let w = wan.name();
        let conf_arg = conf.to_string_lossy().into_owned();
        ns::run(wan.command(&tayga).args(["--mktun", "--config", &conf_arg]))?;
        ns::ip(&["-n", w, "link", "set", NAT64_IF, "up"])?;
        for route in [
            format!("{NAT64_PREFIX}/{NAT64_PREFIX_LEN}"),
            format!("{TAYGA_PREFIX}/{NAT64_PREFIX_LEN}"),
            format!("{TAYGA_IP6}/128"),
            format!("{NAT64_POOL}/{NAT64_POOL_LEN}"),
        ] {
            ns::ip(&["-n", w, "route", "add", &route, "dev", NAT64_IF])?;
        }
        wan.exec(&["sysctl", "-qw", "net.ipv4.ip_forward=1"])?;
        wan.exec(&["sysctl", "-qw", "net.ipv6.conf.all.forwarding=1"])?;
        ns::run(
            wan.command("nft")
                .args(["-f", &dir.join("wkp.nft").to_string_lossy()]),
        )?;
        let log = dir.join("tayga.log");
        let out = fs::File::create(&log)?;
        // `-d`: in the foreground, messages on stderr (`--nodetach` alone logs to syslog).
        let child = wan
            .command(&tayga)
            .args(["-d", "--config", &conf_arg])
            .stdin(Stdio::null())
            .stdout(out.try_clone()?)
            .stderr(out)
            .spawn()?;
        self.extras.nat64 = Some(Tayga { child, log });
        self.await_tayga()
    }

    /// [`World::add_nat64`], then a layer-3 uplink ([`World::add_l3_uplink`], MTU `mtu`) that is
    /// IPv6-only too and takes the IPv6 default route: a cellular modem in raw-IP mode on an
    /// IPv6-only APN ([`NODE_L3_IP6`] ↔ [`WAN_L3_IP6`], `/64`, no IPv4 on either end).
    ///
    /// # Errors
    /// As [`World::add_nat64`] and [`World::add_l3_uplink`].
    pub fn add_nat64_l3(&mut self, mtu: u32) -> io::Result<()> {
        self.add_nat64()?;
        self.add_l3_uplink(mtu)?;
        let wan = self.wan_ns()?;
        let (n, w) = (self.node.name(), wan.name());
        for (ns, dev, me) in [
            (n, crate::L3_UPLINK, NODE_L3_IP6),
            (w, crate::WAN_L3_IF, WAN_L3_IP6),
        ] {
            ns::ip(&["-n", ns, "-4", "addr", "flush", "dev", dev])?;
            ns::ip(&["-n", ns, "-4", "route", "flush", "dev", dev])?;
            let addr = format!("{me}/{UPLINK6_PREFIX_LEN}");
            ns::ip(&["-n", ns, "addr", "add", &addr, "dev", dev, "nodad"])?;
        }
        ns::ip(&[
            "-n",
            n,
            "-6",
            "route",
            "replace",
            "default",
            "dev",
            crate::L3_UPLINK,
        ])
    }

    /// Waits until tayga answers a ping at [`TAYGA_IP4`] (it translates from then on).
    fn await_tayga(&mut self) -> io::Result<()> {
        let deadline = Instant::now() + Duration::from_secs(10);
        let ip = TAYGA_IP4.to_string();
        loop {
            let tayga = self.extras.nat64.as_mut().expect("just set");
            if let Some(status) = tayga.child.try_wait()? {
                let log = tayga.log_tail();
                return Err(io::Error::other(format!("tayga exited ({status}): {log}")));
            }
            if self
                .wan_ns()?
                .succeeds(&["ping", "-c", "1", "-W", "1", &ip])
            {
                return Ok(());
            }
            if Instant::now() > deadline {
                let log = self.extras.nat64.as_ref().map(Tayga::log_tail);
                return Err(io::Error::other(format!(
                    "tayga does not answer at {TAYGA_IP4}: {}",
                    log.unwrap_or_default()
                )));
            }
        }
    }

    /// The uplink without IPv4 and with IPv6 (after [`World::add_nat64`] and after a boot).
    pub(crate) fn wire_uplink6(&self) -> io::Result<()> {
        let wan = self.wan_ns()?;
        let (n, w) = (self.node.name(), wan.name());
        for ns in [&self.node, wan] {
            ns.exec(&[
                "sysctl",
                "-qw",
                "net.ipv6.conf.all.disable_ipv6=0",
                "net.ipv6.conf.default.disable_ipv6=0",
            ])?;
        }
        for (ns, dev, me) in [
            (n, UPLINK, NODE_UPLINK_IP6),
            (w, WAN_UPLINK_IF, WAN_ROUTER_IP6),
        ] {
            // The routes through the link go with the address; flush what might be left.
            ns::ip(&["-n", ns, "-4", "addr", "flush", "dev", dev])?;
            ns::ip(&["-n", ns, "-4", "route", "flush", "dev", dev])?;
            let addr = format!("{me}/{UPLINK6_PREFIX_LEN}");
            ns::ip(&["-n", ns, "addr", "add", &addr, "dev", dev, "nodad"])?;
        }
        let gw = WAN_ROUTER_IP6.to_string();
        ns::ip(&[
            "-n", n, "-6", "route", "replace", "default", "via", &gw, "dev", UPLINK,
        ])
    }

    /// Whether the world has the IPv6-only uplink and NAT64 of [`World::add_nat64`].
    #[must_use]
    pub fn has_nat64(&self) -> bool {
        self.extras.nat64.is_some()
    }

    /// The process id of the world's tayga (see [`World::add_nat64`]).
    #[must_use]
    pub fn tayga_pid(&self) -> Option<u32> {
        self.extras.nat64.as_ref().map(Tayga::pid)
    }
}

/// Writes tayga's configuration and the wan's `64:ff9b::/96` mapping (nftables) into `dir`
/// (created, with tayga's data directory); returns the configuration's path.
fn write_config(dir: &Path) -> io::Result<PathBuf> {
    let data = dir.join("data");
    fs::create_dir_all(&data)?;
    let conf = dir.join("tayga.conf");
    fs::write(
        &conf,
        format!(
            "tun-device {NAT64_IF}\n\
             ipv4-addr {TAYGA_IP4}\n\
             ipv6-addr {TAYGA_IP6}\n\
             prefix {TAYGA_PREFIX}/{NAT64_PREFIX_LEN}\n\
             dynamic-pool {NAT64_POOL}/{NAT64_POOL_LEN}\n\
             data-dir {}\n",
            data.display()
        ),
    )?;
    let map = format!(
        "ip6 daddr {NAT64_PREFIX}/{NAT64_PREFIX_LEN} dnat ip6 prefix to ip6 daddr map \
         {{ {NAT64_PREFIX}/{NAT64_PREFIX_LEN} : {TAYGA_PREFIX}/{NAT64_PREFIX_LEN} }}"
    );
    fs::write(
        dir.join("wkp.nft"),
        format!(
            "table ip6 smarter_testbed_nat64 {{\n\
             \tchain pre {{ type nat hook prerouting priority dstnat; policy accept; {map}; }}\n\
             \tchain out {{ type nat hook output priority -100; policy accept; {map}; }}\n\
             }}\n"
        ),
    )?;
    Ok(conf)
}

/// Kills the tayga processes of worlds whose process is `doomed` (its configuration lies in
/// the world's directory, named `smt-<pid>-…`): a tayga keeps its namespace alive.
pub(crate) fn sweep(doomed: &dyn Fn(i32) -> bool) {
    let Ok(procs) = fs::read_dir("/proc") else {
        return;
    };
    for p in procs.flatten() {
        let Ok(pid) = p.file_name().to_string_lossy().parse::<i32>() else {
            continue;
        };
        let Ok(cmdline) = fs::read(p.path().join("cmdline")) else {
            continue;
        };
        let mut args = cmdline.split(|b| *b == 0).map(String::from_utf8_lossy);
        if !args.next().is_some_and(|a| a.ends_with("tayga")) {
            continue;
        }
        let owner = args
            .filter_map(|a| {
                let name = Path::new(a.as_ref()).components().find_map(|c| {
                    c.as_os_str()
                        .to_str()
                        .filter(|s| s.starts_with("smt-"))
                        .map(str::to_owned)
                })?;
                name.split('-').nth(1)?.parse::<i32>().ok()
            })
            .next();
        if owner.is_some_and(doomed) {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(pid),
                nix::sys::signal::Signal::SIGKILL,
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nat64_addr_embeds_the_ipv4_address_in_the_last_32_bits() {
        assert_eq!(
            nat64_addr(Ipv4Addr::new(203, 0, 113, 1)),
            "64:ff9b::cb00:7101".parse::<Ipv6Addr>().unwrap()
        );
        assert_eq!(
            nat64_addr(Ipv4Addr::new(100, 64, 0, 2)),
            "64:ff9b::100.64.0.2".parse::<Ipv6Addr>().unwrap()
        );
    }

    #[test]
    fn the_config_names_the_device_the_prefix_and_the_pool() {
        let dir = tempfile::tempdir().unwrap();
        let conf = fs::read_to_string(write_config(dir.path()).unwrap()).unwrap();
        assert!(conf.contains("tun-device nat64\n"), "{conf}");
        assert!(conf.contains("prefix 2001:db8:64:64::/96\n"), "{conf}");
        assert!(conf.contains("dynamic-pool 192.168.255.0/24\n"), "{conf}");
        let nft = fs::read_to_string(dir.path().join("wkp.nft")).unwrap();
        assert!(nft.contains("64:ff9b::/96 : 2001:db8:64:64::/96"), "{nft}");
    }
}
