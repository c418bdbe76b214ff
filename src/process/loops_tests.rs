//! Both request loops, in process: the front as `proxy_service` wires it, over a real loopback
//! connection, with lb's own loop on and off. One admission decision serves both, so a new kind
//! of answer — here a synthetic guard's 418 — reaches the client the same way whichever loop
//! takes the request, and a request no guard stops is proxied by the loop that should take it.

use super::listeners::edge;
use super::stack_tests::{backend, proxied, read_to_close, serve, statuses, Backend};
use crate::config::Config;
use crate::request::guard::{Answer, Asked, Guard};
use crate::request::pool::Pool;
use crate::request::proxy::Lb;
use crate::request::route::{Table, Target};
use crate::request::traffic::Traffic;
use std::sync::Arc;
use tokio::io::AsyncWriteExt;
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

/// What a client gets for `requests` on one connection (the last closes it) through the front
/// with lb's own loop `direct` or not, and the front's count of requests by loop.
async fn through_front(direct: bool, requests: &[&str]) -> (String, [(&'static str, u64); 2]) {
    let (backend, _) = backend(Backend::Answer).await;
    let yaml = format!(
        "listeners: [{{address: 127.0.0.1:1}}]\nupstreams: {{web: {{backends: [{{address: \"{backend}\"}}]}}}}\n"
    );
    let config = Config::parse_str(&yaml, "test.yaml").expect("config");
    let pool = Arc::new(Pool::from_config("web", &config.upstreams["web"]).expect("pool"));
    let mut table = Table::default();
    let target = Target {
        guards: vec![Box::new(Teapot)],
        ..Target::to(Arc::clone(&pool))
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
    let (stats, _stop) = serve(listener, &lb, traffic, &config);

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
    let answer = read_to_close(&mut client).await;
    proxied(&stats, requests.len() as u64).await;
    (answer, stats.paths())
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
