//! Acceptance 1 and 2 of the core issue: round robin and weights split exactly; hashing keeps a
//! key on its backend; consistent hashing moves only the removed backend's keys; source-IP
//! hashing with clients bound to different 127.0.0.x addresses.

mod common;

use common::client::{empty, request};
use common::{tally, Client, Demo, Lb};
use std::collections::{BTreeMap, HashMap};
use std::net::IpAddr;

fn pool_yaml(algorithm: &str, extra: &str, backends: &[(&Demo, u32)]) -> String {
    let list: Vec<String> = backends
        .iter()
        .map(|(d, w)| format!("      - {{address: \"{}\", weight: {w}}}", d.addr))
        .collect();
    format!(
        "listeners: [{{address: \"{{listen}}\"}}]\nupstreams:\n  web:\n    algorithm: {algorithm}\n{extra}    backends:\n{}\n",
        list.join("\n")
    )
}

fn counts_of(counts: &BTreeMap<String, usize>, names: &[&str]) -> Vec<usize> {
    names.iter().map(|n| counts.get(*n).copied().unwrap_or(0)).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn round_robin_gives_each_of_three_backends_exactly_a_third() {
    let (a, b, c) = (Demo::start("a"), Demo::start("b"), Demo::start("c"));
    let lb = Lb::start(&pool_yaml("round_robin", "", &[(&a, 1), (&b, 1), (&c, 1)]));
    let counts = tally(&lb, "/", 300).await;
    assert_eq!(counts_of(&counts, &["a", "b", "c"]), [100, 100, 100], "{counts:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn weights_one_two_three_split_six_hundred_requests_100_200_300() {
    let (a, b, c) = (Demo::start("a"), Demo::start("b"), Demo::start("c"));
    let lb = Lb::start(&pool_yaml("weighted_round_robin", "", &[(&a, 1), (&b, 2), (&c, 3)]));
    // Smooth weighted round robin is exact per cycle (the issue allows ±10%).
    let counts = counts_of(&tally(&lb, "/", 600).await, &["a", "b", "c"]);
    assert_eq!(counts, [100, 200, 300]);
    // Smooth: interleaved, so no backend answers three times in a row (a burst order such as
    // a b b c c c would).
    let mut client = Client::connect(lb.addr).await.unwrap();
    let mut order = Vec::new();
    for _ in 0..12 {
        order.push(client.get("/").await.unwrap().backend());
    }
    assert!(order.windows(3).all(|w| !(w[0] == w[1] && w[1] == w[2])), "{order:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn random_follows_weights() {
    let (a, b, c) = (Demo::start("a"), Demo::start("b"), Demo::start("c"));
    let lb = Lb::start(&pool_yaml("random", "", &[(&a, 1), (&b, 1), (&c, 2)]));
    let counts = counts_of(&tally(&lb, "/", 1200).await, &["a", "b", "c"]);
    // Expected 300/300/600; the standard deviation is about 16, so ±25% is very safe.
    for (got, want) in counts.iter().zip([300usize, 300, 600]) {
        assert!(got.abs_diff(want) * 4 <= want, "{counts:?}");
    }
}

/// Maps each key (sent in `X-Key`) to the backend that answered, over one connection.
async fn key_map(lb: &Lb, keys: &[String]) -> HashMap<String, String> {
    let mut client = Client::connect(lb.addr).await.unwrap();
    let mut map = HashMap::new();
    for key in keys {
        let mut req = request("GET", "/", empty());
        req.headers_mut().insert("x-key", key.parse().unwrap());
        let resp = client.send(req).await.unwrap();
        assert_eq!(resp.status, 200);
        map.insert(key.clone(), resp.backend());
    }
    map
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hash_on_uri_and_cookie_keeps_each_key_on_one_backend() {
    let demos = [Demo::start("a"), Demo::start("b"), Demo::start("c")];
    let backends: Vec<(&Demo, u32)> = demos.iter().map(|d| (d, 1)).collect();
    let lb = Lb::start(&pool_yaml("hash", "    hash_key: uri\n", &backends));
    let mut client = Client::connect(lb.addr).await.unwrap();
    let mut used = std::collections::BTreeSet::new();
    for i in 0..60 {
        let path = format!("/item/{i}?v=1");
        let first = client.get(&path).await.unwrap().backend();
        for _ in 0..3 {
            assert_eq!(client.get(&path).await.unwrap().backend(), first, "{path}");
        }
        used.insert(first);
    }
    assert_eq!(used.len(), 3, "60 URIs should land on all 3 backends: {used:?}");

    let lb = Lb::start(&pool_yaml("hash", "    hash_key: {cookie: sid}\n", &backends));
    let mut client = Client::connect(lb.addr).await.unwrap();
    let mut used = std::collections::BTreeSet::new();
    for i in 0..30 {
        let mut seen = std::collections::BTreeSet::new();
        for path in ["/a", "/b", "/c"] {
            let mut req = request("GET", path, empty());
            req.headers_mut()
                .insert("cookie", format!("theme=dark; sid=user{i}").parse().unwrap());
            let resp = client.send(req).await.unwrap();
            assert_eq!(resp.status, 200, "{}", resp.text());
            seen.insert(resp.backend());
        }
        assert_eq!(seen.len(), 1, "sid=user{i} moved: {seen:?}");
        used.extend(seen);
    }
    assert!(used.len() >= 2, "30 sids all landed on {used:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn consistent_hashing_moves_only_the_keys_of_a_removed_backend() {
    let demos = [Demo::start("a"), Demo::start("b"), Demo::start("c"), Demo::start("d")];
    let key = "    hash_key: {header: X-Key}\n";
    let all: Vec<(&Demo, u32)> = demos.iter().map(|d| (d, 1)).collect();
    let keys: Vec<String> = (0..1000).map(|i| format!("user-{i}")).collect();

    let before = key_map(&Lb::start(&pool_yaml("consistent", key, &all)), &keys).await;
    let again = key_map(&Lb::start(&pool_yaml("consistent", key, &all)), &keys).await;
    assert_eq!(before, again, "the same key must reach the same backend");

    let removed = "c";
    let three: Vec<(&Demo, u32)> = all.iter().copied().filter(|(d, _)| d.name != removed).collect();
    let after = key_map(&Lb::start(&pool_yaml("consistent", key, &three)), &keys).await;
    let moved: Vec<&String> = keys.iter().filter(|k| before[*k] != after[*k]).collect();
    assert!(
        moved.iter().all(|k| before[*k] == removed),
        "a key not on {removed} moved"
    );
    assert!(moved.len() <= 350, "{} of 1000 keys moved", moved.len());
    assert!(!moved.is_empty(), "{removed} had no keys at all");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn source_ip_hash_pins_each_client_address() {
    let demos = [Demo::start("a"), Demo::start("b"), Demo::start("c")];
    let backends: Vec<(&Demo, u32)> = demos.iter().map(|d| (d, 1)).collect();
    let lb = Lb::start(&pool_yaml("consistent", "    hash_key: source_ip\n", &backends));
    let mut used = std::collections::BTreeSet::new();
    for host in 1..=24u8 {
        let ip: IpAddr = format!("127.0.0.{host}").parse().unwrap();
        let mut seen = std::collections::BTreeSet::new();
        for _ in 0..2 {
            // A new connection (new source port) each time: only the address may matter.
            let mut client = Client::connect_from(Some(ip), lb.addr).await.unwrap();
            for _ in 0..3 {
                seen.insert(client.get("/").await.unwrap().backend());
            }
        }
        assert_eq!(seen.len(), 1, "client {ip} moved between {seen:?}");
        used.extend(seen);
    }
    assert!(used.len() >= 2, "24 client addresses all hashed to {used:?}");
}
