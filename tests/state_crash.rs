//! What the state file promises, through the real binary: `kill -9` in the middle of heavy
//! registration churn from many clients leaves a file that parses and holds, for every backend,
//! its last answered state or the one after the request in flight (and no heartbeat answered
//! more than a second before the last one is missing); concurrent changes to one backend take
//! effect one at a time and the API, the file and the traffic agree on the last; a state
//! directory that turns read-only gets `503`s that change nothing while lb serves on, and
//! writes succeed again once it is writable.

#[path = "state_crash/churn.rs"]
mod churn;
mod common;
#[path = "state_crash/crash.rs"]
mod crash;
#[path = "state_crash/jail.rs"]
mod jail;
#[path = "state_crash/race.rs"]
mod race;

use churn::{parse_state, unix_ms, Reg};
use common::admin::{backend_path, Api};
use common::client::Resp;
use common::rng::XorShift;
use common::{tally, write_config, Demo, Lb, TempDir, PATIENCE};
use crash::{churn_and_kill, tmpfs_dir};
use jail::Jail;
use race::{assert_not_to_b, events, race};
use serde_json::Value;
use std::collections::BTreeMap;
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// Pool `web` of `backends` (YAML flow mappings) with an admin listener keeping `state_file`.
fn pool_config(backends: &[String], state_file: &str) -> String {
    format!(
        "listeners: [{{address: \"{{listen}}\"}}]
admin: {{address: \"{{admin}}\", state_file: \"{state_file}\"}}
upstreams:
  web:
    backends: [{}]
",
        backends.join(", ")
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn kill_9_during_registration_churn_loses_no_answered_change() {
    churn_and_kill(&tmpfs_dir("crash"), 3, 500..2500).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn kill_9_during_registration_churn_with_the_state_file_on_disk_loses_no_answered_change() {
    churn_and_kill(&TempDir::new("crash-disk"), 1, 100..300).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_changes_to_one_backend_serialise_and_the_api_the_file_and_the_traffic_agree() {
    let (a, b, c) = (Demo::start("a"), Demo::start("b"), Demo::start("c"));
    let lb = Lb::start(&pool_config(&[a.yaml(), c.yaml()], "{dir}/state.json"));
    Api::new(lb.admin()).put("web", b.addr, r#"{"weight": 1}"#).await;
    let mut rng = XorShift(unix_ms() | 1);
    let first = race(&lb, b.addr, 2, &["ready", "drain", "maint"], &mut rng).await;
    // The second race ends the other way: so both a weight's share and a drain are checked.
    let states: &[&'static str] = if first.state == "ready" {
        &["drain", "maint"]
    } else {
        &["ready"]
    };
    let second = race(&lb, b.addr, 101, states, &mut rng).await;
    assert_ne!(first.state == "ready", second.state == "ready");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_read_only_state_directory_refuses_writes_with_503_while_lb_serves_on() {
    let (a, b, c) = (Demo::start("a"), Demo::start("b"), Demo::start("c"));
    let (lb, jail, state_file) = start_jailed(&a);
    let api = Api::new(lb.admin());
    let heartbeat = r#"{"ttl": "60s"}"#;
    api.put("web", b.addr, heartbeat).await;
    let read = || std::fs::read_to_string(&state_file).expect("the state file");
    let (members, file, mark) = (api.summary("web").await, read(), events(&api).await.len());

    jail.set_read_only(lb.proc.pid(), true);
    let writes = [
        ("PUT", c.addr, Some("{}")),
        ("PATCH", b.addr, Some(r#"{"state": "drain"}"#)),
        ("PUT", b.addr, Some(r#"{"weight": 3}"#)),
        ("DELETE", b.addr, None),
    ];
    for (method, addr, body) in writes {
        let resp = api.call(method, &backend_path("web", addr), body).await;
        refused(&resp, &jail, &state_file);
    }
    assert_eq!(api.summary("web").await, members, "the pool changed");
    assert_eq!(read(), file);
    assert_eq!(events(&api).await.len(), mark, "a refused change is no event");
    let both: BTreeMap<String, usize> = [("a".to_string(), 10), ("b".to_string(), 10)].into();
    assert_eq!(tally(&lb, "/", 20).await, both, "proxying goes on");
    let refusal = heartbeat_until_refused(&api, b.addr, heartbeat).await;
    refused(&refusal, &jail, &state_file);
    let logged = format!("cannot write the state file {}", state_file.display());
    assert!(lb.log().contains(&logged), "{}", lb.log());

    jail.set_read_only(lb.proc.pid(), false);
    let json = api.put("web", c.addr, "{}").await;
    assert_eq!(
        (json["result"].as_str(), json["persisted"].as_bool()),
        (Some("created"), Some(true))
    );
    let now = parse_state(&read());
    assert!(now.contains_key(&c.addr), "{now:?}");
    let deadline = |kept: &BTreeMap<SocketAddr, (Reg, Option<u64>)>| kept.get(&b.addr).and_then(|k| k.1);
    assert!(
        deadline(&now) > deadline(&parse_state(&file)),
        "the heartbeats answered are written with the change"
    );
    api.patch("web", b.addr, r#"{"state": "drain"}"#).await;
    assert_not_to_b(&tally(&lb, "/", 20).await, 20);
    assert_eq!(parse_state(&read())[&b.addr].0.state, "drain");
}

/// lb with pool web of `a`, its state file in a directory the test can make read-only: lb,
/// the directory, the state file.
fn start_jailed(a: &Demo) -> (Lb, Jail, PathBuf) {
    let dir = TempDir::new("read-only");
    let jail = Jail::new(&dir.path("state"));
    let state_file = jail.dir.join("state.json");
    let listen = common::free_addr();
    let conf = write_config(&dir, &pool_config(&[a.yaml()], "{dir}/state/state.json"), listen);
    let proc = jail.spawn_lb(&conf, &dir.path("lb.log"));
    let lb = Lb {
        addr: listen,
        dir,
        proc,
        args: Vec::new(),
        env: Vec::new(),
    };
    let end = Instant::now() + PATIENCE;
    while !(TcpStream::connect(listen).is_ok() && lb.log().contains("lb ready")) {
        assert!(Instant::now() < end, "lb did not start:\n{}", lb.log());
        std::thread::sleep(Duration::from_millis(20));
    }
    (lb, jail, state_file)
}

/// Heartbeats backend `b` (`body`) every 50 ms until one is refused, and returns the refusal.
/// Heartbeats are answered before they are written, so the first passes; once one has waited
/// a second unwritten, the next must write first, and is refused when it cannot.
async fn heartbeat_until_refused(api: &Api, b: SocketAddr, body: &str) -> Resp {
    let (end, mut renewed) = (Instant::now() + PATIENCE, 0);
    loop {
        let resp = api.call("PUT", &backend_path("web", b), Some(body)).await;
        if resp.status != 200 {
            assert!(renewed >= 1, "the first heartbeat was refused: {}", resp.text());
            return resp;
        }
        renewed += 1;
        assert!(Instant::now() < end, "{renewed} heartbeats answered 200, none refused");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Checks that `resp` is the refusal of a change the state file could not take.
fn refused(resp: &Resp, jail: &Jail, state_file: &Path) {
    assert_eq!(resp.status, 503, "{}", resp.text());
    assert_eq!(resp.header("retry-after"), "1");
    let json: Value = serde_json::from_slice(&resp.body).expect("a JSON answer");
    let want = format!(
        "cannot write the state file {}: {}; nothing was changed",
        state_file.display(),
        jail.os_error()
    );
    assert_eq!(json["error"], want.as_str());
}
