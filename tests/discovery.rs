//! File discovery: a pool's backends follow a file that another program rewrites (atomically:
//! a temporary file renamed into place), within a second; a half-written, invalid or empty file,
//! or a missing one, changes nothing and is reported (log and `lb_discovery_errors_total`);
//! backends listed in the config stay beside the discovered ones; runtime changes and in-place
//! reloads keep the discovered set. Backends in the config may be named by host name.

mod common;

use common::admin::Api;
use common::{eventually, run_lb, tally, Demo, Lb, TempDir, PATIENCE};
use std::path::Path;
use std::time::Duration;

/// Writes `backends` to `path` as another program would: a temporary file, renamed into place.
fn publish(path: &Path, backends: &[&Demo]) {
    let list: Vec<String> = backends.iter().map(|d| format!("- {}\n", d.yaml())).collect();
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, list.concat()).expect("write the temporary file");
    std::fs::rename(&tmp, path).expect("rename into place");
}

/// The pool's members as `address source` pairs, sorted.
async fn members(api: &Api, pool: &str) -> Vec<(String, String)> {
    let json = api.pool(pool).await;
    let mut out: Vec<(String, String)> = json["backends"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|b| {
            let field = |k: &str| b[k].as_str().unwrap_or_default().to_string();
            (field("address"), field("source"))
        })
        .collect();
    out.sort();
    out
}

fn expect(list: &[(&Demo, &str)]) -> Vec<(String, String)> {
    let mut out: Vec<(String, String)> = list.iter().map(|(d, s)| (d.addr.to_string(), s.to_string())).collect();
    out.sort();
    out
}

/// Waits until pool `web` has exactly `want` as members; panics with the log otherwise.
async fn wait_members(lb: &Lb, api: &Api, want: &[(String, String)], limit: Duration, what: &str) {
    let ok = eventually(limit, async || members(api, "web").await == want).await;
    assert!(
        ok,
        "{what}: members {:?}, want {want:?}\n{}",
        members(api, "web").await,
        lb.log()
    );
}

/// Sends requests and checks that exactly the backends in `names` answer.
async fn serves(lb: &Lb, names: &[&str]) {
    let counts = tally(lb, "/", 30).await;
    let got: Vec<&str> = counts.keys().map(String::as_str).collect();
    assert_eq!(got, names, "{counts:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_discovery_file_is_followed_and_a_bad_one_changes_nothing() {
    let (a, b, c) = (Demo::start("a"), Demo::start("b"), Demo::start("c"));
    let files = TempDir::new("discovery");
    let file = files.path("web-backends.yaml");
    publish(&file, &[&a, &b]);
    let lb = Lb::start(&format!(
        "listeners: [{{address: \"{{listen}}\"}}]
admin: {{address: \"{{admin}}\"}}
upstreams:
  web:
    discovery: {{file: {{path: \"{}\"}}}}
",
        file.display()
    ));
    let api = Api::new(lb.admin());
    wait_members(&lb, &api, &expect(&[(&a, "file"), (&b, "file")]), PATIENCE, "at start").await;
    serves(&lb, &["a", "b"]).await;

    // An atomic rewrite adds c and removes a, within a second.
    publish(&file, &[&b, &c]);
    let want = expect(&[(&b, "file"), (&c, "file")]);
    wait_members(&lb, &api, &want, Duration::from_secs(1), "after a rewrite").await;
    serves(&lb, &["b", "c"]).await;

    // Each bad file is reported and changes nothing.
    let bad: [(&str, &dyn Fn()); 4] = [
        ("half written", &|| {
            let cut = format!("- {}\n- {{address: \"127.0.0.1:", b.yaml());
            std::fs::write(&file, cut).expect("write in place");
        }),
        ("invalid", &|| {
            std::fs::write(file.with_extension("tmp"), "- {address: not-an-address}\n").expect("write");
            std::fs::rename(file.with_extension("tmp"), &file).expect("rename");
        }),
        ("empty", &|| publish(&file, &[])),
        ("missing", &|| std::fs::remove_file(&file).expect("remove")),
    ];
    for (what, write) in bad {
        let before = api.discovery_errors("web").await;
        write();
        let reported = eventually(PATIENCE, async || api.discovery_errors("web").await > before).await;
        assert!(reported, "{what}: not counted\n{}", lb.log());
        assert_eq!(members(&api, "web").await, want, "{what}");
        serves(&lb, &["b", "c"]).await;
    }
    assert!(lb.log().contains("keeps its last good set"), "{}", lb.log());

    // A good file again is applied.
    publish(&file, &[&a]);
    wait_members(
        &lb,
        &api,
        &expect(&[(&a, "file")]),
        Duration::from_secs(1),
        "after recovery",
    )
    .await;
    serves(&lb, &["a"]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn discovered_backends_sit_beside_listed_ones_and_survive_changes_and_reloads() {
    let (a, b, c) = (Demo::start("a"), Demo::start("b"), Demo::start("c"));
    let files = TempDir::new("discovery");
    let file = files.path("more.yaml");
    publish(&file, &[&b, &c]);
    let lb = Lb::start(&format!(
        "listeners: [{{address: \"{{listen}}\"}}]
admin: {{address: \"{{admin}}\", state_file: \"{{dir}}/state.json\"}}
upstreams:
  web:
    backends: [{}]
    discovery: {{file: {{path: \"{}\"}}}}
",
        a.yaml(),
        file.display()
    ));
    let api = Api::new(lb.admin());
    let all = expect(&[(&a, "config"), (&b, "file"), (&c, "file")]);
    wait_members(&lb, &api, &all, PATIENCE, "at start").await;
    serves(&lb, &["a", "b", "c"]).await;

    // A drain of a discovered backend holds while the file lists it, and across a reload.
    api.patch("web", c.addr, r#"{"state": "drain"}"#).await;
    serves(&lb, &["a", "b"]).await;
    let (status, json) = api.json("POST", "/api/v1/reload", None).await;
    assert_eq!(status, 200, "{json}");
    assert_eq!(members(&api, "web").await, all);
    let drained = api.backend("web", c.addr).await.map(|v| v["state"].clone());
    assert_eq!(drained, Some(serde_json::json!("drain")));
    serves(&lb, &["a", "b"]).await;

    // The file loses b: a (from the config) and c stay.
    publish(&file, &[&c]);
    let want = expect(&[(&a, "config"), (&c, "file")]);
    wait_members(&lb, &api, &want, Duration::from_secs(1), "after a rewrite").await;
    serves(&lb, &["a"]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backend_named_by_host_name_is_resolved_and_a_bad_name_is_a_clear_error() {
    let a = Demo::start("a");
    let lb = Lb::start(&format!(
        "listeners: [{{address: \"{{listen}}\"}}]
admin: {{address: \"{{admin}}\"}}
upstreams:
  web:
    backends: [{{address: \"localhost:{}\"}}]
",
        a.addr.port()
    ));
    let api = Api::new(lb.admin());
    assert_eq!(members(&api, "web").await, expect(&[(&a, "config")]));
    serves(&lb, &["a"]).await;

    let dir = TempDir::new("hostname");
    let conf = dir.path("lb.yaml");
    let yaml = "listeners: [{address: 127.0.0.1:1}]\nupstreams:\n  web:\n    backends: [{address: \"no-such-host.invalid:80\"}]\n";
    std::fs::write(&conf, yaml).expect("write config");
    let (status, _, err) = run_lb(&["-t", "-c", &conf.display().to_string()]);
    assert!(!status.success(), "{err}");
    assert_eq!(err.trim().lines().count(), 1, "{err}");
    assert!(
        err.contains("upstreams.web.backends[0].address: \"no-such-host.invalid\" does not resolve"),
        "{err}"
    );
}
