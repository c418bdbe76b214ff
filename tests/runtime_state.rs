//! Runtime changes are never silently lost: registrations, weights and drains survive a
//! restart, an `lb upgrade` and an in-place reload (admin API, `lb reload`, SIGHUP); an expired
//! TTL does not come back; a corrupt state file is set aside and lb starts anyway.

mod common;

use common::admin::Api;
use common::daemon::{alive, read_pid, start_daemon, Daemon};
use common::{eventually, run_lb, tally, write_config, Demo, Lb, TempDir, PATIENCE};
use std::time::{Duration, Instant};

fn config(backends: &[&Demo], extra: &str) -> String {
    let list: Vec<String> = backends.iter().map(|d| d.yaml()).collect();
    format!(
        "listeners: [{{address: \"{{listen}}\"}}]
admin: {{address: \"{{admin}}\", state_file: \"{{dir}}/state.json\"}}
upstreams:
  web:
    backends: [{}]
{extra}",
        list.join(", ")
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn changes_survive_a_restart_but_an_expired_ttl_does_not() {
    let (a, b, c, d, e) = (
        Demo::start("a"),
        Demo::start("b"),
        Demo::start("c"),
        Demo::start("d"),
        Demo::start("e"),
    );
    let lb = Lb::start(&config(&[&a, &b], ""));
    let api = Api::new(lb.admin());
    api.put("web", c.addr, r#"{"weight": 2}"#).await;
    api.patch("web", b.addr, r#"{"state": "drain"}"#).await;
    api.patch("web", a.addr, r#"{"weight": 3}"#).await;
    api.put("web", e.addr, r#"{"ttl": "60s"}"#).await;
    api.put("web", d.addr, r#"{"ttl": "2s"}"#).await;
    let short_ttl = Instant::now();
    let before: Vec<String> = api.summary("web").await;
    assert_eq!(before.len(), 5);

    let lb = {
        let mut lb = lb;
        lb.stop();
        // Let d's TTL run out while lb is not running.
        let wait = Duration::from_millis(2200).saturating_sub(short_ttl.elapsed());
        tokio::time::sleep(wait).await;
        lb.restart()
    };
    let api = Api::new(lb.admin());
    let after = api.summary("web").await;
    let expected: Vec<String> = before
        .iter()
        .filter(|l| !l.contains(&d.addr.to_string()))
        .cloned()
        .collect();
    assert_eq!(after, expected, "{}", lb.log());
    assert!(
        lb.log().contains("its TTL ran out while lb was not running"),
        "{}",
        lb.log()
    );
    // Weights 3 (a), 2 (c), 1 (e); b is drained and gets nothing.
    let seen = tally(&lb, "/", 140).await;
    let n = |k: &str| seen.get(k).copied().unwrap_or(0);
    assert!(
        n("b") == 0 && n("a") > n("c") && n("c") > n("e") && n("e") > 0,
        "{seen:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn changes_survive_an_upgrade() {
    let (a, b, c) = (Demo::start("a"), Demo::start("b"), Demo::start("c"));
    let dir = TempDir::new("state-upgrade");
    let listen = common::free_addr();
    let yaml = format!(
        "server: {{daemon: true, pid_file: {{dir}}/lb.pid, upgrade_sock: {{dir}}/upgrade.sock, \
         error_log: {{dir}}/error.log, threads: 2, grace_period_seconds: 2, graceful_shutdown_timeout_seconds: 1}}\n{}",
        config(&[&a, &b], "")
    );
    let (old, conf) = start_daemon(&dir, &yaml, listen);
    let api = Api::new(dir.admin_addr());
    api.put("web", c.addr, r#"{"weight": 2}"#).await;
    api.patch("web", a.addr, r#"{"state": "maint"}"#).await;
    let before = api.summary("web").await;

    let (status, out, err) = tokio::task::spawn_blocking(move || run_lb(&["upgrade", "-c", &conf]))
        .await
        .unwrap();
    let new = Daemon {
        pid: read_pid(&dir.path("lb.pid")),
    };
    assert!(status.success(), "{out}{err}");
    assert_ne!(new.pid, old.pid);
    assert!(
        eventually(PATIENCE, async || !alive(old.pid)).await,
        "the old lb did not exit"
    );
    assert_eq!(api.summary("web").await, before);
    let client_view = tally_on(listen, 30).await;
    assert_eq!(
        client_view,
        [("b".to_string(), 10), ("c".to_string(), 20)].into_iter().collect()
    );
}

async fn tally_on(addr: std::net::SocketAddr, n: usize) -> std::collections::BTreeMap<String, usize> {
    let mut client = common::Client::connect(addr).await.unwrap();
    let mut counts = std::collections::BTreeMap::new();
    for _ in 0..n {
        let resp = client.get("/").await.unwrap();
        assert_eq!(resp.status, 200);
        *counts.entry(resp.backend()).or_insert(0) += 1;
    }
    counts
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_in_place_reload_applies_pools_and_routes_and_keeps_runtime_changes() {
    let (a, b, c, d) = (Demo::start("a"), Demo::start("b"), Demo::start("c"), Demo::start("d"));
    let lb = Lb::start(&config(&[&a, &b], ""));
    let api = Api::new(lb.admin());
    api.put("web", c.addr, "{}").await;
    api.patch("web", b.addr, r#"{"state": "drain"}"#).await;
    let before = api.summary("web").await;
    let pid = lb.proc.pid();

    // A new pool with a route, through the API.
    let more = format!(
        "  other:\n    backends: [{}]\nroutes:\n  - {{path_prefix: /other/, upstream: other}}\n  - {{upstream: web}}\n",
        d.yaml()
    );
    write_config(&lb.dir, &config(&[&a, &b], &more), lb.addr);
    let (status, json) = api.json("POST", "/api/v1/reload", None).await;
    assert_eq!(status, 200, "{json}");
    assert_eq!(json["report"]["pools_added"], serde_json::json!(["other"]));
    assert_eq!(json["report"]["needs_upgrade"], serde_json::json!([]));
    // What changed, in words: in the answer and in the log.
    assert_eq!(json["note"], "pool other added; routes changed (2 now)", "{json}");
    assert!(
        lb.log()
            .contains("configuration reloaded in place: pool other added; routes changed (2 now)"),
        "{}",
        lb.log()
    );
    assert_eq!(api.summary("web").await, before, "runtime changes kept");
    assert_eq!(tally(&lb, "/other/x", 4).await.get("d"), Some(&4));
    assert_eq!(
        tally(&lb, "/", 6).await,
        [("a".to_string(), 3), ("c".to_string(), 3)].into_iter().collect()
    );

    // A broken file: refused, nothing changes.
    std::fs::write(lb.dir.path("lb.yaml"), "listeners: [\n").unwrap();
    let (status, json) = api.json("POST", "/api/v1/reload", None).await;
    assert_eq!(status, 400, "{json}");
    assert!(json["error"].as_str().unwrap().contains("nothing changed"), "{json}");
    assert_eq!(tally(&lb, "/other/x", 2).await.get("d"), Some(&2));

    // A listener change is reported as needing an upgrade; `lb reload` says so.
    let moved = config(&[&a, &b], "").replace("{listen}", &common::free_addr().to_string());
    write_config(&lb.dir, &moved, lb.addr);
    let conf = lb.dir.path("lb.yaml").display().to_string();
    let (status, out, err) = tokio::task::spawn_blocking(move || run_lb(&["reload", "-c", &conf]))
        .await
        .unwrap();
    assert!(status.success(), "{out}{err}");
    assert_eq!(
        out.trim(),
        "lb: reloaded: pool other removed; routes changed (0 now); changes to listeners take effect only with `lb upgrade`"
    );
    let now = tally(&lb, "/other/x", 2).await;
    assert!(!now.contains_key("d"), "the route to other is still there: {now:?}");

    // SIGHUP does the same.
    write_config(&lb.dir, &config(&[&a, &b], &more), lb.addr);
    lb.proc.signal("HUP");
    let reloaded = eventually(PATIENCE, async || tally(&lb, "/other/x", 1).await.contains_key("d")).await;
    assert!(reloaded, "{}", lb.log());
    assert_eq!(api.summary("web").await, before);
    assert_eq!(lb.proc.pid(), pid, "the same process throughout");
    let log = lb.log();
    assert_eq!(log.matches("configuration reloaded in place").count(), 3, "{log}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_corrupt_state_file_is_set_aside_and_lb_starts() {
    let a = Demo::start("a");
    let lb = Lb::start(&config(&[&a], ""));
    // A state file cut short (a full disk, a hand edit), found at the next start.
    std::fs::write(lb.dir.path("state.json"), "{\"version\": 1, \"pools\": {\"web\": [tr").unwrap();
    let lb = lb.restart();
    let log = lb.log();
    assert!(log.contains("is invalid") && log.contains("moved to"), "{log}");
    let aside = std::fs::read_dir(&lb.dir.0)
        .unwrap()
        .filter_map(|e| e.ok())
        .any(|e| e.file_name().to_string_lossy().starts_with("state.json.corrupt-"));
    assert!(aside, "the corrupt file was not set aside");
    assert_eq!(tally(&lb, "/", 2).await.get("a"), Some(&2));
    // And the next change writes a good file again.
    let api = Api::new(lb.admin());
    api.patch("web", a.addr, r#"{"weight": 2}"#).await;
    let text = std::fs::read_to_string(lb.dir.path("state.json")).unwrap();
    assert!(text.contains("\"weight\": 2"), "{text}");
}
