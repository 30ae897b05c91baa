//! The `smarter-cni` CNI plugin binary: only the process edges (environment, stdin,
//! stdout, logging); the protocol and verbs live in the library.

use std::io::Read as _;

fn main() {
    init_logging();
    let mut stdin = Vec::new();
    if let Err(e) = std::io::stdin().read_to_end(&mut stdin) {
        tracing::error!("cannot read stdin: {e}");
    }
    let lookup = |k: &str| std::env::var(k).ok();
    let code = smarter_cni::cmd::run(&lookup, &stdin, &mut std::io::stdout().lock());
    std::process::exit(code);
}

/// Logs go to stderr (stdout is the CNI result), or to the file named by
/// `SMARTER_CNI_LOG_FILE`; the level comes from `SMARTER_CNI_LOG` (default `warn`).
fn init_logging() {
    let filter = tracing_subscriber::EnvFilter::try_from_env("SMARTER_CNI_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_target(false);
    let file = std::env::var_os("SMARTER_CNI_LOG_FILE").and_then(|p| {
        std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(p)
            .ok()
    });
    match file {
        Some(f) => builder
            .with_ansi(false)
            .with_writer(std::sync::Mutex::new(f))
            .init(),
        None => builder.with_writer(std::io::stderr).init(),
    }
}
