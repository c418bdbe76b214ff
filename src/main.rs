//! `lb`: parse the command line, start logging, load the configuration, run. The library does the rest.

use clap::Parser;
use lb::cli::Cli;
use std::process::ExitCode;

fn main() -> ExitCode {
    let cli = Cli::parse();
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("info"))
        .format_timestamp_millis()
        .init();
    let config = match cli.config() {
        Ok(config) => config,
        Err(e) => {
            eprintln!("lb: {e}");
            return ExitCode::FAILURE;
        }
    };
    if cli.test {
        println!("lb: configuration {} is valid", cli.source());
        return ExitCode::SUCCESS;
    }
    match lb::server::run(config, cli.pingora_opt()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("lb: {e}");
            ExitCode::FAILURE
        }
    }
}
