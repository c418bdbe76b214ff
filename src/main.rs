//! `lb`: parse the command line, start logging, load the configuration, run (or upgrade, or
//! probe). The library does the rest.

use clap::Parser;
use lb::cli::{Cli, Command};
use lb::config::Config;
use std::process::ExitCode;

/// mimalloc instead of glibc's malloc: a request makes dozens of small allocations (headers,
/// futures, buffers), and glibc spent ~24k instructions per proxied request on them.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    lb::process::signals::ignore_hangup_until_ready();
    let cli = Cli::parse();
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("info"))
        .format_timestamp_millis()
        .init();
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
    match lb::process::probe::probe(addr) {
        Ok(status) => {
            println!("lb: http://{addr} answered {status}");
            ExitCode::SUCCESS
        }
        Err(e) => fail(e),
    }
}
