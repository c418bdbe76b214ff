//! `lb`: parse the command line, start logging, load the configuration, run (or upgrade, or
//! probe). The library does the rest.

use clap::Parser;
use lb::cli::{Cli, Command};
use lb::config::Config;
use std::process::ExitCode;

/// jemalloc instead of glibc's malloc: a request makes dozens of small allocations (headers,
/// futures, buffers), and glibc spent ~24k instructions per proxied request on them. jemalloc
/// rather than mimalloc (whose allocation path costs ~2% fewer instructions per request) for what
/// happens after a burst: jemalloc's background thread returns freed pages to the system within
/// about a second on every thread, while mimalloc only purges a thread's pages when that thread
/// allocates again, so an idle worker kept a burst's memory for good (5,000 connections opened and
/// parked left 4 KiB each behind with two worker threads; with jemalloc 0.9 KiB, most of it given
/// back). `--no-default-features` builds with glibc's malloc, for heap profilers such as massif.
#[cfg(feature = "jemalloc")]
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

/// jemalloc's settings, read at its start-up (`_RJEM_MALLOC_CONF` in the environment adds to
/// them): a background thread purges freed pages, dirty pages go back after 1 s (a busy lb
/// reuses them long before), and then at once to the system. A thread's cache is trimmed after
/// every 4 MiB it allocates rather than every 64 KiB (~1.5k fewer instructions per request,
/// under 1 MiB more kept after 5,000 connections closed).
#[cfg(feature = "jemalloc")]
#[export_name = "_rjem_malloc_conf"]
pub static MALLOC_CONF: &[u8] =
    b"background_thread:true,dirty_decay_ms:1000,muzzy_decay_ms:0,tcache_gc_incr_bytes:4194304\0";

fn main() -> ExitCode {
    lb::process::signals::ignore_hangup_until_ready();
    let cli = Cli::parse();
    lb::process::logging::init();
    // A probe of a given address needs no configuration.
    if let (Some(Command::Probe { addr: Some(addr) }), None) = (&cli.command, &cli.conf) {
        return probe_addr(addr.0);
    }
    let config = match cli.config() {
        Ok(config) => config,
        Err(e) => return fail(e),
    };
    match &cli.command {
        Some(Command::Upgrade { timeout }) => upgrade(&cli, &config, timeout.0),
        Some(Command::Probe { addr }) => probe(&config, addr.map(|a| a.0)),
        Some(Command::Reload) => match lb::process::reload::run(&config) {
            Ok(summary) => {
                println!("lb: {summary}");
                ExitCode::SUCCESS
            }
            Err(e) => fail(e),
        },
        None => run(&cli, config),
    }
}

fn fail(e: impl std::fmt::Display) -> ExitCode {
    eprintln!("lb: {e}");
    ExitCode::FAILURE
}

fn run(cli: &Cli, config: Config) -> ExitCode {
    // Listeners are only tried when they are not taken over from a running lb.
    if let Err(e) = lb::process::preflight::check(&config, &cli.source(), !cli.test && !cli.upgrade) {
        return fail(e);
    }
    if cli.test {
        println!("lb: configuration {} is valid", cli.source());
        return ExitCode::SUCCESS;
    }
    if lb::process::supervisor::wanted() {
        return match lb::process::supervisor::run(cli.clone()) {
            Ok(code) => ExitCode::from(code.clamp(0, 255) as u8),
            Err(e) => fail(e),
        };
    }
    let source = cli.clone();
    let loader = Box::new(move || source.config());
    match lb::process::server::run(config, loader, cli.pingora_opt()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => fail(e),
    }
}

fn upgrade(cli: &Cli, config: &Config, timeout: std::time::Duration) -> ExitCode {
    if let Err(e) = lb::process::preflight::check(config, &cli.source(), false) {
        return fail(e);
    }
    match lb::process::upgrade::run(cli, config, timeout) {
        Ok(summary) => {
            println!("lb: {summary}");
            ExitCode::SUCCESS
        }
        Err(e) => fail(e),
    }
}

fn probe(config: &Config, addr: Option<std::net::SocketAddr>) -> ExitCode {
    let Some(addr) = addr.or_else(|| config.listeners.first().map(|l| l.address.0)) else {
        return fail("no listener to probe");
    };
    probe_addr(addr)
}

fn probe_addr(addr: std::net::SocketAddr) -> ExitCode {
    match lb::process::probe::probe(addr) {
        Ok(status) => {
            println!("lb: http://{addr} answered {status}");
            ExitCode::SUCCESS
        }
        Err(e) => fail(e),
    }
}
