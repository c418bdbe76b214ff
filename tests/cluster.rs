//! Two lb instances sharing their runtime state through a real etcd (Debian's `etcd-server`,
//! started here on loopback ports): a registration made through one gets traffic from the
//! other, a drain made through the other holds on the first, a TTL registration expires on
//! both; with etcd gone both keep serving their last state and admin writes get 503; with etcd
//! back the next change reaches both.

mod common;

use common::admin::{backend_path, Api};
use common::client::{full, request, Client};
use common::etcd::Etcd;
use common::{eventually, tally, Demo, Lb, PATIENCE};
use std::net::SocketAddr;
use std::time::Duration;

fn config(etcd: &Etcd, a: &Demo) -> String {
    format!(
        "listeners: [{{address: \"{{listen}}\"}}]
admin: {{address: \"{{admin}}\"}}
cluster: {{etcd: {{endpoints: [\"http://{}\"], prefix: /lb-test/}}}}
upstreams:
  web:
    backends: [{}]
",
        etcd.client,
        a.yaml()
    )
}

/// The state of `addr` in pool `web` as instance `api` shows it (`None`: not a member).
async fn state(api: &Api, addr: SocketAddr) -> Option<String> {
    api.backend("web", addr)
        .await
        .map(|b| b["state"].as_str().unwrap_or_default().to_string())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_instances_share_registrations_drains_and_ttls_through_etcd() {
    let mut etcd = Etcd::start().await;
    let (a, b, c) = (Demo::start("a"), Demo::start("b"), Demo::start("c"));
    let (one, two) = (Lb::start(&config(&etcd, &a)), Lb::start(&config(&etcd, &a)));
    let (api1, api2) = (Api::new(one.admin()), Api::new(two.admin()));

    // Registered through instance 1: instance 2 sends it traffic within 2 s.
    api1.put("web", b.addr, "{}").await;
    let seen = eventually(Duration::from_secs(2), async || state(&api2, b.addr).await.is_some()).await;
    assert!(seen, "instance 2 did not get b\n{}", two.log());
    let counts = tally(&two, "/", 20).await;
    assert_eq!(counts.keys().collect::<Vec<_>>(), ["a", "b"], "{counts:?}");

    // Drained through instance 2: it holds on instance 1.
    api2.patch("web", b.addr, r#"{"state": "drain"}"#).await;
    let drained = eventually(Duration::from_secs(2), async || {
        state(&api1, b.addr).await.as_deref() == Some("drain")
    })
    .await;
    assert!(drained, "{}", one.log());
    let counts = tally(&one, "/", 20).await;
    assert_eq!(counts.keys().collect::<Vec<_>>(), ["a"], "{counts:?}");

    // A TTL registration without heartbeats expires on both (etcd's lease ends it).
    api1.put("web", c.addr, r#"{"ttl": "2s"}"#).await;
    assert!(eventually(Duration::from_secs(2), async || state(&api2, c.addr).await.is_some()).await);
    let gone = eventually(PATIENCE, async || {
        state(&api1, c.addr).await.is_none() && state(&api2, c.addr).await.is_none()
    })
    .await;
    assert!(gone, "c did not expire on both");

    // etcd goes away: both keep serving their last state, every request answered; writes get 503.
    etcd.stop();
    for lb in [&one, &two] {
        let counts = tally(lb, "/", 20).await;
        assert_eq!(counts.keys().collect::<Vec<_>>(), ["a"], "{counts:?}");
    }
    let (status, json) = api1
        .json("PATCH", &backend_path("web", b.addr), Some(r#"{"state": "ready"}"#))
        .await;
    assert_eq!(status, 503, "{json}");
    assert!(json["error"].as_str().unwrap_or_default().contains("etcd"), "{json}");
    assert_eq!(state(&api1, b.addr).await.as_deref(), Some("drain"));

    // etcd is back: the next change reaches both.
    etcd.run().await;
    let written = eventually(PATIENCE, async || {
        let (status, _) = api1
            .json("PATCH", &backend_path("web", b.addr), Some(r#"{"state": "ready"}"#))
            .await;
        status == 200
    })
    .await;
    assert!(written, "{}", one.log());
    let ready = eventually(PATIENCE, async || {
        state(&api2, b.addr).await.as_deref() == Some("ready")
    })
    .await;
    assert!(ready, "{}", two.log());
    let counts = tally(&two, "/", 20).await;
    assert_eq!(counts.keys().collect::<Vec<_>>(), ["a", "b"], "{counts:?}");
}

/// How many leases etcd holds (through its JSON gateway).
async fn leases(etcd: &Etcd) -> usize {
    let mut client = Client::connect(etcd.client).await.expect("etcd answers");
    let resp = client
        .send(request("POST", "/v3/lease/leases", full("{}")))
        .await
        .expect("lease list");
    let json: serde_json::Value = serde_json::from_slice(&resp.body).expect("JSON");
    json["leases"].as_array().map_or(0, Vec::len)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn heartbeats_through_either_instance_renew_one_lease() {
    let etcd = Etcd::start().await;
    let (a, b) = (Demo::start("a"), Demo::start("b"));
    let (one, two) = (Lb::start(&config(&etcd, &a)), Lb::start(&config(&etcd, &a)));
    let apis = [Api::new(one.admin()), Api::new(two.admin())];

    // Heartbeats every 400 ms for a TTL of 2 s, taking turns on the two instances (as behind a
    // balanced admin address), for three TTLs: b stays on both, under one lease.
    for beat in 0..15 {
        apis[beat % 2].put("web", b.addr, r#"{"ttl": "2s"}"#).await;
        tokio::time::sleep(Duration::from_millis(400)).await;
    }
    for api in &apis {
        assert_eq!(state(api, b.addr).await.as_deref(), Some("ready"));
    }
    assert_eq!(leases(&etcd).await, 1, "each heartbeat took a new lease");
    let counts = tally(&two, "/", 20).await;
    assert_eq!(counts.keys().collect::<Vec<_>>(), ["a", "b"], "{counts:?}");

    // The heartbeats stop: b expires on both, and its lease with it.
    let gone = eventually(PATIENCE, async || {
        state(&apis[0], b.addr).await.is_none() && state(&apis[1], b.addr).await.is_none()
    })
    .await;
    assert!(gone, "b did not expire on both");
    assert!(eventually(PATIENCE, async || leases(&etcd).await == 0).await);
}
