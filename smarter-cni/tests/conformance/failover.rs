//! The fail-over topology: two uplinks; a UDP stream from a pod to the wan server runs while
//! the wired uplink fails and comes back (several times), with the node agent running as
//! deployed (our datapaths follow the default route through it). Captures behind both uplinks
//! timestamp the stream: for each route change, how long until the first packet of a new flow
//! leaves by the new interface, until the first echo of a datagram sent after the change, and
//! until the long-lived flow moves. Measured and printed, never asserted. Then the core matrix
//! runs while failed over.

use std::net::{Ipv4Addr, SocketAddrV4, UdpSocket};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use smarter_testbed::{NODE_BACKUP_IP, NODE_UPLINK_IP, WAN_SERVER_IP, spawn_in};

use crate::capture::Tapped;
use crate::run::{Bench, Run};
use crate::topo::Topo;
use crate::world::{Agent, Dp, our_conf};

/// The stream's port on the wan server.
const STREAM_PORT: u16 = 7007;
/// Marks the long-lived flow's datagrams (the others each come from a new socket).
const PERSISTENT: u64 = 1 << 63;
/// Route changes: fail over and back, this many times.
const CYCLES: usize = 3;
/// One new flow and one datagram of the long-lived flow per tick.
const TICK: Duration = Duration::from_millis(10);
/// Bounds the wait for the stream to move; a hang guard, not a speed requirement.
const DEADLINE: Duration = Duration::from_secs(10);

/// What one route change did to the stream.
#[derive(Debug, Clone)]
pub struct Change {
    /// `fail_over #1`, `fail_back #1`, ...
    pub what: String,
    /// Until a new flow's first packet was seen behind the new interface.
    pub first_packet: Option<Duration>,
    /// Until a new flow's first packet with the node's address on that link (translated) was
    /// seen there.
    pub first_natted: Option<Duration>,
    /// Until the first echo of a datagram sent after the change came back.
    pub first_echo: Option<Duration>,
    /// Until the long-lived flow was seen behind the new interface (within the phase).
    pub persistent: Option<Duration>,
    /// New flows behind the new interface whose source was not the node's address there
    /// (until the first translated one).
    pub wrong_source: usize,
}

impl Change {
    /// Whether the stream followed the route change (a translated new flow and an echo).
    pub fn moved(&self) -> bool {
        self.first_natted.is_some() && self.first_echo.is_some()
    }
}

/// A pod's stream: every [`TICK`] one datagram from a new socket (a new flow) and one from a
/// long-lived socket; the echoes are recorded with the time they came back.
struct Stream {
    stop: Arc<AtomicBool>,
    sent: Arc<Mutex<Vec<(u64, Instant)>>>,
    echoes: Arc<Mutex<Vec<(u64, Instant)>>>,
    thread: Option<JoinHandle<()>>,
}

fn datagram(seq: u64) -> [u8; 32] {
    let mut d = [0x5a; 32];
    d[..8].copy_from_slice(&seq.to_be_bytes());
    d
}

impl Stream {
    fn start(b: &Bench) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let sent = Arc::new(Mutex::new(Vec::new()));
        let echoes = Arc::new(Mutex::new(Vec::new()));
        let (flag, s, e) = (stop.clone(), sent.clone(), echoes.clone());
        let to = SocketAddrV4::new(WAN_SERVER_IP, STREAM_PORT);
        let thread = spawn_in(b.ns("client"), move || {
            let long = UdpSocket::bind("0.0.0.0:0").expect("bind");
            long.set_nonblocking(true).expect("nonblocking");
            let mut buf = [0u8; 64];
            let mut seq = 0u64;
            let echoed = |buf: &[u8], n: usize| -> Option<u64> {
                (n == 32).then(|| u64::from_be_bytes(buf[..8].try_into().expect("8 bytes")))
            };
            while !flag.load(Ordering::Relaxed) {
                seq += 1;
                let tick = Instant::now();
                let fresh = UdpSocket::bind("0.0.0.0:0").expect("bind");
                fresh
                    .set_read_timeout(Some(Duration::from_millis(1)))
                    .expect("timeout");
                let _ = fresh.send_to(&datagram(seq), to);
                let _ = long.send_to(&datagram(seq | PERSISTENT), to);
                s.lock().expect("not poisoned").push((seq, tick));
                // One tick per TICK whatever the answers do, so counts compare across runs.
                let mut fresh_done = false;
                while tick.elapsed() < TICK {
                    if !fresh_done {
                        if let Ok(n) = fresh.recv(&mut buf)
                            && let Some(got) = echoed(&buf, n)
                        {
                            e.lock().expect("not poisoned").push((got, Instant::now()));
                            fresh_done = true;
                        }
                    } else {
                        std::thread::sleep(Duration::from_millis(1));
                    }
                    while let Ok(n) = long.recv(&mut buf) {
                        if let Some(got) = echoed(&buf, n) {
                            e.lock().expect("not poisoned").push((got, Instant::now()));
                        }
                    }
                }
            }
        });
        Self {
            stop,
            sent,
            echoes,
            thread: Some(thread),
        }
    }

    /// The first echo of a new-flow datagram sent after `t0`: when it came back.
    fn echo_after(&self, t0: Instant) -> Option<Instant> {
        let sent = self.sent.lock().expect("not poisoned");
        let first_seq = sent.iter().find(|(_, at)| *at >= t0)?.0;
        self.echoes
            .lock()
            .expect("not poisoned")
            .iter()
            .find(|(seq, _)| *seq & PERSISTENT == 0 && *seq >= first_seq)
            .map(|(_, at)| *at)
    }

    fn echoed(&self) -> usize {
        self.echoes.lock().expect("not poisoned").len()
    }
}

impl Drop for Stream {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// Waits (up to [`DEADLINE`]) until, after `t0`, a new flow left by `far_if` with the node's
/// address on that link and an echo of a datagram sent after `t0` came back, then lets the
/// stream run on the new path for a while (20 echoes); what it measured.
fn follow(b: &Bench, stream: &Stream, what: String, t0: Instant, far_if: &str) -> Change {
    let node_ip: Ipv4Addr = if far_if == "wan2" {
        NODE_BACKUP_IP
    } else {
        NODE_UPLINK_IP
    };
    let end = t0 + DEADLINE;
    let translated = |t: &Tapped| t.seq & PERSISTENT == 0 && t.src == node_ip;
    while Instant::now() < end {
        let taps = b.wan_capture().tapped();
        let moved = taps
            .iter()
            .filter(|t| t.at >= t0 && t.ifname == far_if)
            .any(translated);
        if moved && stream.echo_after(t0).is_some() {
            let have = stream.echoed();
            let settle = Instant::now() + Duration::from_secs(2);
            while stream.echoed() < have + 20 && Instant::now() < settle {
                std::thread::sleep(Duration::from_millis(5));
            }
            break;
        }
        std::thread::sleep(Duration::from_millis(2));
    }
    let taps = b.wan_capture().tapped();
    let after: Vec<&Tapped> = taps
        .iter()
        .filter(|t| t.at >= t0 && t.ifname == far_if)
        .collect();
    let natted_at = after.iter().find(|t| translated(t)).map(|t| t.at);
    Change {
        what,
        first_packet: after
            .iter()
            .find(|t| t.seq & PERSISTENT == 0)
            .map(|t| t.at - t0),
        first_natted: natted_at.map(|at| at - t0),
        first_echo: stream.echo_after(t0).map(|at| at - t0),
        persistent: after
            .iter()
            .find(|t| t.seq & PERSISTENT != 0)
            .map(|t| t.at - t0),
        wrong_source: after
            .iter()
            .filter(|t| t.seq & PERSISTENT == 0 && t.src != node_ip)
            .filter(|t| natted_at.is_none_or(|n| t.at <= n))
            .count(),
    }
}

/// Runs the fail-over topology through `dp`: the stream over [`CYCLES`] route changes both
/// ways, then the core matrix while failed over; our datapaths with the node agent running
/// when `agent`, by the plugin's setup alone otherwise. `None` when the test skips.
pub fn run(dp: Dp, agent: bool) -> Option<(Run, Vec<Change>)> {
    let b = Bench::start(dp, Topo::Failover, Some(STREAM_PORT))?;
    let _agent =
        (dp != Dp::Reference && agent).then(|| Agent::start(&b.w, &our_conf(dp, &b.w, b.topo)));
    let stream = Stream::start(&b);
    let end = Instant::now() + DEADLINE;
    while stream.echoed() < 10 && Instant::now() < end {
        std::thread::sleep(Duration::from_millis(10));
    }
    let started = stream.echoed() >= 10;
    let mut changes = Vec::new();
    if !started {
        changes.push(Change {
            what: "the stream via uplink0 before any change".into(),
            first_packet: None,
            first_natted: None,
            first_echo: None,
            persistent: None,
            wrong_source: 0,
        });
    }
    'cycles: for round in (1..=CYCLES).filter(|_| started) {
        for over in [true, false] {
            let (what, far_if) = if over {
                b.w.fail_over().expect("fail over");
                ("fail_over", "wan2")
            } else {
                b.w.fail_back().expect("fail back");
                ("fail_back", "wan0")
            };
            let t0 = Instant::now();
            let c = follow(&b, &stream, format!("{what} #{round}"), t0, far_if);
            let moved = c.moved();
            changes.push(c);
            if !moved {
                // The stream did not follow: more changes would only repeat it.
                break 'cycles;
            }
        }
    }
    // The core matrix while failed over (a fresh change; the stream keeps running), once the
    // datapath translates new flows to the backup's address.
    b.w.fail_over().expect("fail over");
    let t0 = Instant::now();
    changes.push(follow(&b, &stream, "fail_over (matrix)".into(), t0, "wan2"));
    let outcomes = b.run_cases(&Topo::Failover.cases());
    b.w.fail_back().expect("fail back");
    drop(stream);
    Some((b.finish(outcomes), changes))
}

/// One line per change: milliseconds after the change, `-` when it did not happen within the
/// phase.
pub fn describe(dp: Dp, changes: &[Change]) -> String {
    let ms = |d: Option<Duration>| {
        d.map_or_else(
            || "-".to_owned(),
            |d| format!("{:.1} ms", d.as_secs_f64() * 1000.0),
        )
    };
    changes
        .iter()
        .map(|c| {
            format!(
                "{}: {}: first new-flow packet out {} (translated {}), first echo {}, \
                 long-lived flow moved {}; {} new flows out with a pod source before\n",
                dp.name(),
                c.what,
                ms(c.first_packet),
                ms(c.first_natted),
                ms(c.first_echo),
                ms(c.persistent),
                c.wrong_source
            )
        })
        .collect()
}
