//! `/metrics` through the real binary: Prometheus' own checker (`promtool check metrics`, from
//! Debian's prometheus package) accepts the exposition on the admin listener and on the
//! `metrics:` listener; `lb_requests_total` rises by exactly the requests a test sent; the
//! duration histograms have buckets that add up; the process collector is there.

mod common;

use common::admin::Api;
use common::{eventually, get, Client, Demo, Lb, PATIENCE};
use std::collections::BTreeMap;
use std::process::Command;

/// Samples of the exposition by their full series name (`name{labels}`).
fn samples(text: &str) -> BTreeMap<String, f64> {
    text.lines()
        .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
        .filter_map(|l| {
            let (series, value) = l.rsplit_once(' ')?;
            Some((series.to_string(), value.parse().ok()?))
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_parse_and_count_exactly_what_was_sent() {
    let a = Demo::start("a");
    let metrics_addr = common::free_addr();
    let lb = Lb::start(&format!(
        "listeners: [{{address: \"{{listen}}\"}}]
admin: {{address: \"{{admin}}\", token: m-token}}
metrics: {{address: \"{metrics_addr}\"}}
upstreams:
  web:
    backends: [{}]
    health_check: {{path: /healthz, interval: 200ms}}
",
        a.yaml()
    ));
    let api = Api::with_token(lb.admin(), "m-token");
    let scrape = async || api.call("GET", "/metrics", None).await.text();
    let before = samples(&scrape().await);

    let mut client = Client::connect(lb.addr).await.unwrap();
    for _ in 0..37 {
        assert_eq!(client.get("/").await.unwrap().status, 200);
    }
    for _ in 0..5 {
        assert_eq!(client.get("/status/503").await.unwrap().status, 503);
    }
    assert_eq!(client.get("/status/404").await.unwrap().status, 404);
    let ok = "lb_requests_total{pool=\"web\",code=\"2xx\"}";
    // The count is taken as the request ends: poll until all 43 are in.
    let done = eventually(PATIENCE, async || {
        let s = samples(&scrape().await);
        s.get(ok).copied().unwrap_or(0.0) - before.get(ok).copied().unwrap_or(0.0) >= 37.0
            && s.get("lb_request_duration_seconds_count{pool=\"web\"}")
                .copied()
                .unwrap_or(0.0)
                >= 43.0
    })
    .await;
    assert!(done, "the requests were not all counted");
    let text = scrape().await;
    let after = samples(&text);
    let rise = |series: &str| after.get(series).copied().unwrap_or(0.0) - before.get(series).copied().unwrap_or(0.0);
    assert_eq!(rise(ok), 37.0);
    assert_eq!(rise("lb_requests_total{pool=\"web\",code=\"5xx\"}"), 5.0);
    assert_eq!(rise("lb_requests_total{pool=\"web\",code=\"4xx\"}"), 1.0);
    assert_eq!(rise("lb_request_duration_seconds_count{pool=\"web\"}"), 43.0);
    assert_eq!(rise("lb_upstream_response_seconds_count{pool=\"web\"}"), 43.0);

    // Histograms: buckets, cumulative, +Inf equal to the count.
    for family in ["lb_request_duration_seconds", "lb_upstream_response_seconds"] {
        let buckets: Vec<(String, f64)> = after
            .iter()
            .filter(|(k, _)| k.starts_with(&format!("{family}_bucket{{pool=\"web\"")))
            .map(|(k, v)| (k.clone(), *v))
            .collect();
        assert!(buckets.len() >= 10, "{family}: {buckets:?}");
        let inf = after[&format!("{family}_bucket{{pool=\"web\",le=\"+Inf\"}}")];
        assert_eq!(inf, after[&format!("{family}_count{{pool=\"web\"}}")], "{family}");
        assert!(after[&format!("{family}_sum{{pool=\"web\"}}")] > 0.0);
    }
    for series in [
        format!("lb_backend_up{{pool=\"web\",backend=\"{}\"}}", a.addr),
        format!(
            "lb_backend_admin_state{{pool=\"web\",backend=\"{}\",state=\"ready\"}}",
            a.addr
        ),
        "lb_requests_inflight".to_string(),
        "lb_retries_total{pool=\"web\"}".to_string(),
        "lb_pool_queued{pool=\"web\"}".to_string(),
        "lb_pool_refused_total{pool=\"web\",reason=\"queue_full\"}".to_string(),
        format!(
            "lb_health_checks_total{{pool=\"web\",backend=\"{}\",result=\"pass\"}}",
            a.addr
        ),
        "process_cpu_seconds_total".to_string(),
        "process_resident_memory_bytes".to_string(),
        "process_open_fds".to_string(),
    ] {
        assert!(after.contains_key(&series), "{series} missing from\n{text}");
    }
    assert_eq!(
        after[&format!("lb_backend_up{{pool=\"web\",backend=\"{}\"}}", a.addr)],
        1.0
    );

    // Prometheus' own checker, on both endpoints.
    let (ok, said) = common::promtool(&text);
    assert!(ok, "promtool rejects the admin exposition: {said}\n{text}");
    let plain = get(metrics_addr, "/metrics").await.unwrap();
    assert!(plain.header("content-type").starts_with("text/plain; version=0.0.4"));
    let (ok, said) = common::promtool(&plain.text());
    assert!(ok, "promtool rejects the metrics listener's exposition: {said}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_grafana_dashboard_queries_metrics_lb_exports_in_valid_promql() {
    let a = Demo::start("a");
    let lb = Lb::start(&format!(
        "listeners: [{{address: \"{{listen}}\"}}]\nadmin: {{address: \"{{admin}}\"}}\nupstreams: {{web: {{backends: [{}]}}}}\n",
        a.yaml()
    ));
    let text = Api::new(lb.admin()).call("GET", "/metrics", None).await.text();
    let families: Vec<&str> = text
        .lines()
        .filter_map(|l| l.strip_prefix("# TYPE ")?.split(' ').next())
        .collect();
    let path = common::crate_dir().join("deploy/grafana/lb.json");
    let dashboard: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    let exprs: Vec<String> = dashboard["panels"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|p| p["targets"].as_array().cloned().unwrap_or_default())
        .filter_map(|t| t["expr"].as_str().map(str::to_string))
        .collect();
    assert!(exprs.len() >= 10, "{exprs:?}");
    let dir = common::TempDir::new("grafana");
    let mut rules = String::from("groups:\n  - name: dashboard\n    rules:\n");
    for (i, expr) in exprs.iter().enumerate() {
        // Every metric a panel reads is one lb exports.
        for word in expr.split(|c: char| !(c.is_ascii_alphanumeric() || c == '_')) {
            if word.starts_with("lb_") || word.starts_with("process_") {
                let family = ["_bucket", "_count", "_sum"]
                    .iter()
                    .fold(word, |w, s| w.strip_suffix(s).unwrap_or(w));
                assert!(
                    families.contains(&family),
                    "the dashboard reads {word}, which lb does not export"
                );
            }
        }
        let concrete = expr
            .replace("$__rate_interval", "1m")
            .replace("$pool", ".*")
            .replace("$job", ".*");
        rules.push_str(&format!(
            "      - record: dashboard:expr_{i}\n        expr: '{}'\n",
            concrete.replace('\'', "''")
        ));
    }
    let file = dir.path("rules.yml");
    std::fs::write(&file, rules).unwrap();
    let out = Command::new("promtool")
        .args(["check", "rules"])
        .arg(&file)
        .output()
        .expect("promtool");
    assert!(
        out.status.success(),
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}
