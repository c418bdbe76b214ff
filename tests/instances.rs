//! Several lb instances side by side behave as one: with the same membership, consistent
//! hashing sends every key to the same backend on every instance, and a sticky cookie issued
//! by one instance pins the client on another (the cookie names the backend, not a
//! per-process slot).

mod common;

use common::client::{empty, request, Client};
use common::{Demo, Lb};

fn config<'a>(algorithm: &str, extra: &str, demos: impl Iterator<Item = &'a Demo>) -> String {
    let list: Vec<String> = demos.map(|d| d.yaml()).collect();
    format!(
        "listeners: [{{address: \"{{listen}}\"}}]
upstreams:
  web:
    algorithm: {algorithm}
{extra}    backends: [{}]
",
        list.join(", ")
    )
}

/// The backend that answers `key` (sent in `X-User`) through `client`.
async fn backend_for(client: &mut Client, key: &str) -> String {
    let mut req = request("GET", "/", empty());
    req.headers_mut().insert("x-user", key.parse().expect("header"));
    let resp = client.send(req).await.expect("request");
    assert_eq!(resp.status, 200, "{}", resp.text());
    resp.backend()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_instances_route_a_thousand_hash_keys_identically() {
    let demos: Vec<Demo> = ["a", "b", "c", "d"].iter().map(|n| Demo::start(n)).collect();
    // The second lists the backends in another order: membership decides, not the file's order.
    let key = "    hash_key: {header: X-User}\n";
    let one = Lb::start(&config("consistent", key, demos.iter()));
    let two = Lb::start(&config("consistent", key, demos.iter().rev()));
    let (mut c1, mut c2) = (
        Client::connect(one.addr).await.expect("connect"),
        Client::connect(two.addr).await.expect("connect"),
    );
    let mut spread = std::collections::BTreeMap::new();
    for i in 0..1000 {
        let key = format!("user-{i}");
        let (b1, b2) = (backend_for(&mut c1, &key).await, backend_for(&mut c2, &key).await);
        assert_eq!(b1, b2, "key {key}");
        *spread.entry(b1).or_insert(0) += 1;
    }
    assert_eq!(spread.len(), 4, "{spread:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sticky_cookie_from_one_instance_pins_on_another() {
    let demos: Vec<Demo> = ["a", "b", "c"].iter().map(|n| Demo::start(n)).collect();
    let yaml = config("sticky", "    sticky: {cookie: SRV}\n", demos.iter());
    let (one, two) = (Lb::start(&yaml), Lb::start(&yaml));
    let (mut c1, mut c2) = (
        Client::connect(one.addr).await.expect("connect"),
        Client::connect(two.addr).await.expect("connect"),
    );
    let mut pinned = std::collections::BTreeSet::new();
    for _ in 0..30 {
        let first = c1.get("/").await.expect("request");
        let cookie = first.header("set-cookie");
        let cookie = cookie.split(';').next().unwrap_or_default().to_string();
        assert!(cookie.starts_with("SRV="), "{cookie:?}");
        for _ in 0..5 {
            let mut req = request("GET", "/", empty());
            req.headers_mut().insert("cookie", cookie.parse().expect("cookie"));
            let resp = c2.send(req).await.expect("request");
            assert_eq!(resp.backend(), first.backend(), "cookie {cookie}");
            assert_eq!(resp.header("set-cookie"), "", "the other instance re-pinned {cookie}");
        }
        pinned.insert(first.backend());
    }
    assert_eq!(pinned.len(), 3, "{pinned:?}");
}
