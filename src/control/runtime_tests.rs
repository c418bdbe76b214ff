//! The runtime's transactions in process: TTLs on a clock the test sets, the state file written
//! and restored, refusals that change nothing, reloads and discovery keeping runtime changes.

use super::*;
use crate::control::changes::{Register, Update};
use crate::request::member::AdminState;
use std::path::PathBuf;
use std::sync::Mutex as StdMutex;

const WEB: &str = "listeners: [{address: 127.0.0.1:1}]\nupstreams: {web: {backends: [{address: 127.0.0.1:1}]}}\n";

fn config(yaml: &str) -> Config {
    let config = Config::parse_str(yaml, "test.yaml").expect("parses");
    config.validate("test.yaml").expect("valid");
    config
}

/// A runtime of `yaml` whose reloads read `file` (the same text until a test changes it).
fn runtime_of(yaml: &str, file: &Arc<StdMutex<String>>, state: Option<&Path>) -> Arc<Runtime> {
    let file = Arc::clone(file);
    let loader: Loader = Box::new(move || {
        let text = file.lock().expect("lock").clone();
        let config = Config::parse_str(&text, "test.yaml")?;
        config.validate("test.yaml")?;
        Ok(config)
    });
    Runtime::new(config(yaml), loader, state).expect("runtime")
}

fn runtime(yaml: &str) -> Arc<Runtime> {
    runtime_of(yaml, &Arc::new(StdMutex::new(yaml.to_string())), None)
}

fn addr(s: &str) -> SocketAddr {
    s.parse().expect("address")
}

fn register(ttl: Option<Duration>) -> Change {
    Change::Register(Register {
        ttl: Some(ttl),
        ..Register::default()
    })
}

/// The members of pool `pool` as the API shows them: `(address, state)`.
async fn members(runtime: &Runtime, pool: &str) -> Vec<(String, &'static str)> {
    let view = runtime.pool(pool).await.expect("the pool");
    view.backends.into_iter().map(|b| (b.address, b.state)).collect()
}

/// A directory of its own for `tag`, empty.
fn scratch(tag: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("lb-runtime-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).expect("scratch directory");
    d
}

#[tokio::test]
async fn a_registration_with_a_ttl_lives_until_the_ttl_runs_out_and_its_expiry_is_an_event() {
    let rt = runtime(WEB);
    let joined = unix_ms();
    let applied = rt
        .apply("web", addr("127.0.0.2:80"), register(Some(Duration::from_secs(2))))
        .await
        .expect("registered");
    assert_eq!((applied.result, applied.persisted), ("created", false));
    assert_eq!(members(&rt, "web").await.len(), 2);
    assert_eq!(
        rt.routing().load().pools["web"].states().all().len(),
        2,
        "the live pool has it"
    );

    rt.expire_at(joined + 1_000).await;
    assert_eq!(members(&rt, "web").await.len(), 2, "within its TTL");
    assert!(!rt.events().list().iter().any(|e| e.kind == Kind::Expired));

    rt.expire_at(joined + 60_000).await;
    assert_eq!(members(&rt, "web").await, [("127.0.0.1:1".to_string(), "ready")]);
    assert_eq!(
        rt.routing().load().pools["web"].states().all().len(),
        1,
        "and the live pool"
    );
    let expired: Vec<_> = rt
        .events()
        .list()
        .into_iter()
        .filter(|e| e.kind == Kind::Expired)
        .collect();
    assert_eq!(expired.len(), 1, "{expired:?}");
    assert_eq!(expired[0].backend.as_deref(), Some("127.0.0.2:80"));
    assert!(expired[0].detail.contains("TTL of 2000 ms"), "{}", expired[0].detail);

    // A registration without a TTL never expires.
    rt.apply("web", addr("127.0.0.3:80"), register(None))
        .await
        .expect("registered");
    rt.expire_at(u64::MAX).await;
    assert_eq!(members(&rt, "web").await.len(), 2);
}

#[tokio::test]
async fn changes_are_written_to_the_state_file_and_the_next_process_restores_them() {
    let dir = scratch("restore");
    let state = dir.join("state.json");
    let file = Arc::new(StdMutex::new(WEB.to_string()));
    let first = runtime_of(WEB, &file, Some(&state));
    let applied = first
        .apply("web", addr("127.0.0.2:80"), register(None))
        .await
        .expect("registered");
    assert!(applied.persisted);
    let drain = Change::Update(Update {
        state: Some(AdminState::Drain),
        ..Update::default()
    });
    assert_eq!(
        first
            .apply("web", addr("127.0.0.1:1"), drain)
            .await
            .expect("drained")
            .result,
        "changed"
    );
    let want = vec![
        ("127.0.0.1:1".to_string(), "drain"),
        ("127.0.0.2:80".to_string(), "ready"),
    ];
    assert_eq!(members(&first, "web").await, want);

    let second = runtime_of(WEB, &file, Some(&state));
    assert_eq!(
        members(&second, "web").await.len(),
        1,
        "the file's members until restored"
    );
    second.restore().await;
    assert_eq!(members(&second, "web").await, want);
    assert_eq!(second.routing().load().pools["web"].states().all().len(), 2);
    std::fs::remove_dir_all(dir).expect("clean up");
}

#[tokio::test]
async fn a_change_that_cannot_be_written_or_checked_is_refused_and_changes_nothing() {
    let dir = scratch("refused");
    let state = dir.join("no-such-directory").join("state.json");
    let file = Arc::new(StdMutex::new(WEB.to_string()));
    let rt = runtime_of(WEB, &file, Some(&state));
    let before = members(&rt, "web").await;

    let refused = rt
        .apply("web", addr("127.0.0.2:80"), register(None))
        .await
        .expect_err("refused");
    assert_eq!(refused.status, 503, "{refused}");
    assert!(refused.message.contains("nothing was changed"), "{refused}");
    assert!(refused.message.contains(&state.display().to_string()), "{refused}");
    assert!(refused.message.contains("os error"), "{refused}");
    assert_eq!(members(&rt, "web").await, before);
    assert_eq!(rt.routing().load().pools["web"].states().all().len(), 1);

    let heavy = Change::Register(Register {
        weight: Some(100_000),
        ..Register::default()
    });
    let refused = rt.apply("web", addr("127.0.0.2:80"), heavy).await.expect_err("refused");
    assert_eq!(refused.status, 400, "{refused}");
    let refused = rt
        .apply("nope", addr("127.0.0.2:80"), register(None))
        .await
        .expect_err("refused");
    assert_eq!(refused.status, 404, "{refused}");
    assert_eq!(members(&rt, "web").await, before);
    assert!(rt.events().list().is_empty(), "a refusal is no event");
    std::fs::remove_dir_all(dir).expect("clean up");
}

/// The deadline of backend `addr` of pool web in the state file at `path`.
fn written_deadline(path: &Path, backend: SocketAddr) -> Option<u64> {
    let kept = StateFile::new(path).load();
    kept.pools.get("web")?.registered(backend)?.expires_at_ms
}

/// The deadline of backend `addr` of pool web in the runtime's changes.
async fn deadline_of(rt: &Runtime, backend: SocketAddr) -> Option<u64> {
    let desired = rt.desired.lock().await;
    desired.changes.pools.get("web")?.registered(backend)?.expires_at_ms
}

/// One heartbeat of `addr` (TTL 60 s): the answer and the deadline it set.
async fn heartbeat(rt: &Runtime, backend: SocketAddr) -> (Result<Applied, Refusal>, Option<u64>) {
    // One heartbeat, once the clock has moved past the last deadline's millisecond (one in the
    // same millisecond would not move it, and a second try would be another heartbeat).
    let before = deadline_of(rt, backend).await;
    while before.is_some_and(|b| crate::clock::unix_ms() + 60_000 <= b) {
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    let answer = rt.apply("web", backend, register(Some(Duration::from_secs(60)))).await;
    (answer, deadline_of(rt, backend).await)
}

/// Makes the oldest unwritten heartbeat `age` old.
async fn age_unwritten(rt: &Runtime, age: Duration) {
    let mut desired = rt.desired.lock().await;
    assert!(desired.unwritten_renewal.is_some(), "a heartbeat waits");
    desired.unwritten_renewal = Instant::now().checked_sub(age);
}

#[tokio::test]
async fn a_heartbeat_is_answered_before_it_is_written_but_none_waits_unwritten_past_a_second() {
    let dir = scratch("heartbeats");
    let state = dir.join("state.json");
    let file = Arc::new(StdMutex::new(WEB.to_string()));
    let rt = runtime_of(WEB, &file, Some(&state));
    let b = addr("127.0.0.2:80");
    rt.apply("web", b, register(Some(Duration::from_secs(60))))
        .await
        .expect("registered");
    let first = written_deadline(&state, b).expect("written before the answer");

    // Answered at once, written later: by the timer a second after it...
    let (answer, second) = heartbeat(&rt, b).await;
    assert_eq!(answer.expect("renewed").result, "renewed");
    assert_eq!(written_deadline(&state, b), Some(first), "not written yet");
    rt.expire_at(unix_ms()).await;
    assert_eq!(written_deadline(&state, b), Some(first), "not due yet");
    age_unwritten(&rt, RENEWALS_EVERY).await;
    rt.expire_at(unix_ms()).await;
    assert_eq!(written_deadline(&state, b), second, "written once due");
    assert!(rt.desired.lock().await.unwritten_renewal.is_none());

    // ... or with the next change.
    let (_, third) = heartbeat(&rt, b).await;
    let heavier = Change::Update(Update {
        weight: Some(2),
        ..Update::default()
    });
    rt.apply("web", b, heavier).await.expect("changed");
    assert_eq!(written_deadline(&state, b), third, "written with the change");

    // A heartbeat that finds one unwritten for a second writes first, and is refused, changing
    // nothing, when it cannot.
    heartbeat(&rt, b).await.0.expect("renewed");
    age_unwritten(&rt, RENEWALS_EVERY).await;
    std::fs::remove_dir_all(&dir).expect("the state file's directory gone");
    let before = rt.desired.lock().await.changes.clone();
    let (refused, _) = heartbeat(&rt, b).await;
    let refused = refused.expect_err("refused");
    assert_eq!(refused.status, 503, "{refused}");
    assert!(refused.message.contains("nothing was changed"), "{refused}");
    assert_eq!(rt.desired.lock().await.changes, before, "the deadline did not move");
    // The timer fails too, and tries again a second later, not at every tick.
    rt.expire_at(unix_ms()).await;
    let failed = rt.desired.lock().await.flush_failed;
    assert!(failed.is_some(), "the timer tried");
    rt.expire_at(unix_ms()).await;
    assert_eq!(
        rt.desired.lock().await.flush_failed,
        failed,
        "and did not try again at once"
    );
    std::fs::create_dir_all(&dir).expect("the directory back");
    let (answer, fourth) = heartbeat(&rt, b).await;
    assert_eq!(answer.expect("renewed").result, "renewed");
    assert_eq!(written_deadline(&state, b), fourth, "written before the answer");
    std::fs::remove_dir_all(dir).expect("clean up");
}

#[tokio::test]
async fn a_reload_keeps_live_pools_and_runtime_changes_and_a_bad_one_changes_nothing() {
    let file = Arc::new(StdMutex::new(WEB.to_string()));
    let rt = runtime_of(WEB, &file, None);
    rt.apply("web", addr("127.0.0.2:80"), register(None))
        .await
        .expect("registered");
    let live = Arc::clone(rt.routing().load().pools["web"].live());

    *file.lock().expect("lock") = "listeners: [{address: 127.0.0.1:1}]\nupstreams:\n  web: {backends: [{address: 127.0.0.1:1}, {address: 127.0.0.1:5}]}\n  api: {backends: [{address: 127.0.0.1:2}]}\nroutes: [{path_prefix: /api/, upstream: api}, {upstream: web}]\n".to_string();
    let report = rt.reload().await.expect("reloaded");
    assert_eq!(report.pools_added, ["api"]);
    assert_eq!(report.pools_kept, ["web"]);
    assert_eq!(report.pools_changed, ["web"]);
    assert!(report.pools_removed.is_empty() && report.routes_changed && report.needs_upgrade.is_empty());
    assert_eq!(report.routes, 2);
    let web: Vec<String> = members(&rt, "web").await.into_iter().map(|(a, _)| a).collect();
    assert_eq!(
        web,
        ["127.0.0.1:1", "127.0.0.1:5", "127.0.0.2:80"],
        "the registration stays"
    );
    let table = rt.routing().load_full();
    assert!(
        Arc::ptr_eq(table.pools["web"].live(), &live),
        "the kept pool keeps its live state"
    );

    *file.lock().expect("lock") = "upstreams: {web: {backends: [{address: nonsense}]}}\n".to_string();
    let refused = rt.reload().await.expect_err("refused");
    assert!(refused.contains("test.yaml"), "{refused}");
    assert!(Arc::ptr_eq(&rt.routing().load_full(), &table), "the table is untouched");
    assert_eq!(members(&rt, "web").await.len(), 3);
    let reloads: Vec<String> = rt
        .events()
        .list()
        .into_iter()
        .filter(|e| e.kind == Kind::Reloaded)
        .map(|e| e.detail)
        .rev()
        .collect();
    assert_eq!(reloads.len(), 2, "oldest first: {reloads:?}");
    assert!(
        reloads[0].starts_with("applied in place: pool api added"),
        "{reloads:?}"
    );
    assert!(reloads[1].starts_with("refused, nothing changed"), "{reloads:?}");
}

#[tokio::test]
async fn discovery_replaces_the_found_set_and_keeps_the_file_and_runtime_backends() {
    let yaml = "listeners: [{address: 127.0.0.1:1}]\nupstreams: {web: {backends: [{address: 127.0.0.1:1}], discovery: {dns: {name: web.test, port: 80}}}}\n";
    let rt = runtime(yaml);
    let found = |addrs: &[&str]| -> Vec<BackendConf> {
        addrs
            .iter()
            .map(|a| BackendConf {
                address: crate::config::Addr(addr(a)),
                weight: 1,
                max_connections: None,
                source: Source::Dns,
            })
            .collect()
    };
    let (added, removed) = rt
        .set_discovered("web", found(&["127.0.0.2:80", "127.0.0.3:80"]))
        .await
        .expect("applied");
    assert_eq!(
        (added, removed),
        (vec![addr("127.0.0.2:80"), addr("127.0.0.3:80")], vec![])
    );
    rt.apply("web", addr("127.0.0.9:80"), register(None))
        .await
        .expect("registered");

    let (added, removed) = rt
        .set_discovered("web", found(&["127.0.0.3:80", "127.0.0.4:80"]))
        .await
        .expect("applied");
    assert_eq!(
        (added, removed),
        (vec![addr("127.0.0.4:80")], vec![addr("127.0.0.2:80")])
    );
    let web: Vec<String> = members(&rt, "web").await.into_iter().map(|(a, _)| a).collect();
    assert_eq!(web, ["127.0.0.1:1", "127.0.0.3:80", "127.0.0.4:80", "127.0.0.9:80"]);
    assert!(rt.set_discovered("nope", found(&["127.0.0.2:80"])).await.is_err());
    let by_discovery = rt.events().list().iter().filter(|e| e.detail == "by discovery").count();
    assert_eq!(by_discovery, 4, "two found, then one more found and one gone");
}
