//! Both request loops, in process: the front as `proxy_service` wires it, over a real loopback
//! connection, with lb's own loop on and off. One admission decision serves both, so a new kind
//! of answer — here a synthetic guard's 418 — reaches the client the same way whichever loop
//! takes the request, and a request no guard stops is proxied by the loop that should take it.

use super::listeners::{client_rules, edge};
use super::stack_tests::accepted;
use crate::config::Config;
use crate::request::front::listener::ListenerRule;
use crate::request::front::{Front, FrontStats};
use crate::request::guard::{Answer, Asked, Guard};
use crate::request::pool::Pool;
use crate::request::proxy::Lb;
use crate::request::route::{Table, Target};
use crate::request::traffic::Traffic;
use pingora_core::apps::ServerApp;
use pingora_core::server::configuration::ServerConf;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// Answers every request under `/teapot/` with 418, as a new rule would.
struct Teapot;

impl Guard for Teapot {
    fn check(&self, asked: &Asked<'_>) -> Option<Answer> {
        asked.req.uri.path().starts_with("/teapot/").then_some(Answer::Text {
            status: 418,
            detail: "a synthetic answer",
            close: false,
        })
    }
}

/// A backend that answers each request on a connection with `200 backend`, until it closes.
async fn backend() -> std::net::SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move {
        while let Ok((mut conn, _)) = listener.accept().await {
            tokio::spawn(async move {
                let mut buf = vec![0u8; 4096];
                let mut seen = Vec::new();
                while let Ok(n) = conn.read(&mut buf).await {
                    if n == 0 {
                        return;
                    }
                    seen.extend_from_slice(&buf[..n]);
                    while let Some(end) = seen.windows(4).position(|w| w == b"\r\n\r\n") {
                        seen.drain(..end + 4);
                        let answer = b"HTTP/1.1 200 OK\r\nContent-Length: 8\r\n\r\nbackend\n";
                        if conn.write_all(answer).await.is_err() {
                            return;
                        }
                    }
                }
            });
        }
    });
    addr
}

/// What a client gets for `requests` on one connection (the last closes it) through the front
/// with lb's own loop `direct` or not, and the front's count of requests by loop.
async fn through_front(direct: bool, requests: &[&str]) -> (String, [(&'static str, u64); 2]) {
    let backend = backend().await;
    let yaml = format!(
        "listeners: [{{address: 127.0.0.1:1}}]\nupstreams: {{web: {{backends: [{{address: \"{backend}\"}}]}}}}\n"
    );
    let config = Config::parse_str(&yaml, "test.yaml").expect("config");
    let pool = Arc::new(Pool::from_config("web", &config.upstreams["web"]).expect("pool"));
    let mut table = Table::default();
    let target = Target {
        pool: Arc::clone(&pool),
        guards: vec![Box::new(Teapot)],
    };
    table.router.push(None, None, Arc::new(target));
    table.pools.insert("web".into(), pool);
    let traffic = Traffic::new();
    let mut settings = edge(&config);
    settings.direct = direct;
    let lb = Lb::new(
        Arc::new(arc_swap::ArcSwap::from_pointee(table)),
        Arc::clone(&traffic),
        None,
        settings,
    );

    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    let stats = Arc::new(FrontStats::default());
    let rule = ListenerRule::new(addr, false, false, false, 64, Arc::new(Vec::new()));
    let conf = Arc::new(ServerConf::default());
    let front = Arc::new(Front::new(
        pingora_proxy::http_proxy(&conf, lb.clone()),
        None,
        lb.direct_enabled().then(|| lb.clone()),
        vec![rule],
        client_rules(&config),
        traffic,
        Arc::clone(&stats),
        None,
    ));
    let (_stop, shutdown) = tokio::sync::watch::channel(false);
    let served = tokio::spawn(async move {
        let (conn, _) = listener.accept().await.expect("accept");
        front.process_new(accepted(conn), &shutdown).await;
    });

    let mut client = TcpStream::connect(addr).await.expect("connect");
    let mut all = String::new();
    for (i, path) in requests.iter().enumerate() {
        let close = if i + 1 == requests.len() {
            "Connection: close\r\n"
        } else {
            ""
        };
        all.push_str(&format!("GET {path} HTTP/1.1\r\nHost: t\r\n{close}\r\n"));
    }
    client.write_all(all.as_bytes()).await.expect("write");
    let mut answer = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(20), client.read_to_end(&mut answer)).await;
    assert!(
        read.is_ok(),
        "no close within 20 s: {}",
        String::from_utf8_lossy(&answer)
    );
    let _ = tokio::time::timeout(Duration::from_secs(20), served).await;
    // The connection is served in a task of its own, which counts its last request after the
    // client has read the answer: wait for the count with a deadline.
    let counted = || stats.paths().iter().map(|(_, n)| n).sum::<u64>();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while counted() < requests.len() as u64 && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    (String::from_utf8_lossy(&answer).into_owned(), stats.paths())
}

/// The statuses in `answers`, in order.
fn statuses(answers: &str) -> Vec<&str> {
    answers
        .split("HTTP/1.1 ")
        .skip(1)
        .filter_map(|a| a.split(' ').next())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_guards_answer_reaches_the_client_on_both_loops() {
    let requests = ["/teapot/a", "/ok", "/teapot/b?q=1"];
    let (own, own_paths) = through_front(true, &requests).await;
    let (pingora, pingora_paths) = through_front(false, &requests).await;
    assert_eq!(statuses(&own), ["418", "200", "418"], "{own}");
    assert_eq!(statuses(&pingora), ["418", "200", "418"], "{pingora}");
    let body = |text: &str| text.matches("418 I'm a teapot: a synthetic answer").count();
    assert_eq!((body(&own), body(&pingora)), (2, 2), "{own}\n{pingora}");
    // lb's own loop took all three (its answers included); with it off, Pingora's did.
    assert_eq!(own_paths, [("lb", 3), ("pingora", 0)]);
    assert_eq!(pingora_paths, [("lb", 0), ("pingora", 3)]);
}
