//! `monitor`: drop (and trace) events until Ctrl-C or `--count`.

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use nix::sys::signal::{SaFlags, SigAction, SigHandler, SigSet, Signal, sigaction};

use super::Failure;
use super::args::Format;
use super::discover::Net;
use super::rows::{EventRow, proto_name};

static STOP: AtomicBool = AtomicBool::new(false);

extern "C" fn on_signal(_: i32) {
    STOP.store(true, Ordering::Relaxed);
}

/// Streams events of the first selected network (`--network` picks one).
pub(super) fn run(
    fmt: Format,
    nets: &[&Net],
    trace: bool,
    count: Option<usize>,
) -> Result<(), Failure> {
    let Some(n) = nets.first() else {
        return Ok(());
    };
    let (name, dp) = (n.name.as_str(), &n.dp);
    if nets.len() > 1 {
        eprintln!("smarter-bpfctl: monitoring {name} (choose another with --network)");
    }
    let mut reader = dp
        .drops()
        .map_err(|e| Failure::from_err(name, &e))?
        .ok_or_else(|| Failure::new(6, format!("{name}: its datapath reports no drops")))?;
    let action = SigAction::new(
        SigHandler::Handler(on_signal),
        SaFlags::empty(),
        SigSet::empty(),
    );
    for sig in [Signal::SIGINT, Signal::SIGTERM] {
        // SAFETY: the handler only stores to an atomic, which is async-signal-safe.
        unsafe { sigaction(sig, &action) }.map_err(|e| Failure::new(1, e.to_string()))?;
    }
    if trace {
        dp.set_trace(true)
            .map_err(|e| Failure::from_err(name, &e))?;
        eprintln!("smarter-bpfctl: tracing every packet of {name} until interrupted");
    }
    let result = stream(fmt, name, &mut reader, count);
    if trace && let Err(e) = dp.set_trace(false) {
        eprintln!("smarter-bpfctl: could not switch tracing off again: {e}");
    }
    result
}

fn stream(
    fmt: Format,
    name: &str,
    reader: &mut Box<dyn crate::datapath::DropEvents>,
    count: Option<usize>,
) -> Result<(), Failure> {
    let mut seen = 0;
    while !STOP.load(Ordering::Relaxed) && count.is_none_or(|c| seen < c) {
        let Some(ev) = reader
            .next(Duration::from_millis(200))
            .map_err(|e| Failure::from_err(name, &e))?
        else {
            continue;
        };
        seen += 1;
        let row = EventRow {
            network: name.to_string(),
            time_ns: ev.ktime_ns,
            verdict: ev.verdict,
            ifindex: ev.ifindex,
            proto: match ev.proto {
                0 => String::new(),
                p @ (1 | 6 | 17) => proto_name(p).to_string(),
                p => p.to_string(),
            },
            src: ev.src.to_string(),
            sport: ev.sport,
            dst: ev.dst.to_string(),
            dport: ev.dport,
            len: ev.len,
        };
        match fmt {
            Format::Json => println!(
                "{}",
                serde_json::to_string(&row).map_err(|e| Failure::new(1, e.to_string()))?
            ),
            Format::Table => println!(
                "{:>8} {:<15} if{:<4} {:<4} {}:{} -> {}:{} ({} bytes)",
                format!("{:.3}", row.time_ns as f64 / 1e9),
                row.verdict,
                row.ifindex,
                row.proto,
                row.src,
                row.sport,
                row.dst,
                row.dport,
                row.len
            ),
        }
    }
    Ok(())
}
