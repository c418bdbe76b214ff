//! `lb-demo`: small HTTP backends for the README's curl demos, the tests and the benchmarks.
//! Each `NAME=ADDR` argument starts one backend that answers with its name; see `--help`.

mod body;
mod handler;
mod ws;

use clap::Parser;
use handler::Backend;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use std::io::Write;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;

const AFTER_HELP: &str = "\
Routes (every response carries X-Backend: NAME):
  /                     NAME
  /healthz              200 ok (see /_demo/health)
  /delay/MS             answers after MS milliseconds
  /status/CODE          answers with that status
  /echo                 streams the request body back (X-Echo-Method, X-Echo-Uri headers)
  /headers              method, URI, every request header (one per line), body length
  /bytes/N              streams N bytes
  /parts/N              N parts of 8 bytes a second apart, in a Content-Length body
  /ws                   WebSocket echo
  /upload               reads the body and answers with its length
  /json                 JSON (application/json): service, version (--api-version), backend
                        (NAME), timestamp (Unix ms, new on every answer), items
  /_demo/stats          JSON: requests, connections, in-flight
  /_demo/delay/MS       sets the base delay of every later request
  /_demo/health/CODE    makes /healthz answer CODE

Example: lb-demo a=127.0.0.1:9001 b=127.0.0.1:9002 c=127.0.0.1:9003";

/// Demo HTTP backends.
#[derive(Debug, Parser)]
#[command(name = "lb-demo", about = "Demo HTTP backends for lb", after_help = AFTER_HELP)]
struct Args {
    /// Backends to start, as NAME=IP:PORT (port 0 picks a free port; the address is printed).
    #[arg(required = true, value_parser = parse_backend)]
    backends: Vec<(String, SocketAddr)>,
    /// Delay before every answer except /healthz and /_demo, e.g. 5ms.
    #[arg(long, value_parser = parse_ms, default_value = "0ms")]
    delay: Duration,
    /// Fraction of requests (0 to 1) answered with 500, for a flaky backend.
    #[arg(long, default_value_t = 0.0)]
    fail_rate: f64,
    /// The version field of /json, e.g. 2 for a candidate that answers differently.
    #[arg(long, value_name = "TEXT", default_value = "1")]
    api_version: String,
}

fn parse_backend(text: &str) -> Result<(String, SocketAddr), String> {
    let (name, addr) = text.split_once('=').ok_or("write NAME=IP:PORT")?;
    let addr = addr.parse().map_err(|_| format!("{addr:?} is not IP:PORT"))?;
    Ok((name.to_string(), addr))
}

fn parse_ms(text: &str) -> Result<Duration, String> {
    lb::config::Dur::parse(text).map(|d| d.0)
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args = Args::parse();
    let mut servers = Vec::new();
    for (name, addr) in &args.backends {
        let listener = TcpListener::bind(addr)
            .await
            .map_err(|e| format!("{name}: cannot listen on {addr}: {e}"))?;
        let backend = Arc::new(Backend::new(name, &args.api_version, args.delay, args.fail_rate));
        println!("{name} listening on http://{}", listener.local_addr()?);
        servers.push(tokio::spawn(serve(listener, backend)));
    }
    std::io::stdout().flush()?;
    for server in servers {
        server.await?;
    }
    Ok(())
}

async fn serve(listener: TcpListener, backend: Arc<Backend>) {
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            continue;
        };
        backend.connection_opened();
        let backend = Arc::clone(&backend);
        tokio::spawn(async move {
            let service = service_fn(move |req| {
                let backend = Arc::clone(&backend);
                async move { backend.handle(req).await }
            });
            let _ = http1::Builder::new()
                .serve_connection(TokioIo::new(stream), service)
                .with_upgrades()
                .await;
        });
    }
}
