//! Acceptance 6 of the core issue and the command line: every shipped config validates with
//! `lb -t -c`; each config mistake is one line naming the file and field, with a non-zero exit;
//! `--help` documents every flag; the quick start and the overrides work.

mod common;

use common::{crate_dir, eventually, get, run_lb, tally, Demo, Lb, TempDir, PATIENCE};

#[test]
fn every_file_in_conf_validates() {
    let mut checked = 0;
    for entry in std::fs::read_dir(crate_dir().join("conf")).unwrap() {
        let path = entry.unwrap().path();
        if !matches!(path.extension().and_then(|e| e.to_str()), Some("yaml" | "yml")) {
            continue;
        }
        let (status, out, err) = run_lb(&["-t", "-c", path.to_str().unwrap()]);
        assert!(status.success(), "{}: {err}", path.display());
        assert!(out.contains("is valid"), "{out}");
        checked += 1;
    }
    assert!(checked >= 2, "conf/ has {checked} configs");
}

/// `{listen}` is filled with a free address: should a mistake be accepted, lb must not take a
/// fixed port.
const BASE: &str = "listeners: [{address: \"{listen}\"}]
upstreams:
  web:
    algorithm: round_robin
    backends:
      - address: 127.0.0.1:9001
      - address: 127.0.0.1:9002
        weight: 2
routes:
  - {path_prefix: /, upstream: web}
";

/// (what to change in BASE, what the one-line error must contain)
const MISTAKES: &[(&str, &str, &str)] = &[
    (
        "algorithm: round_robin",
        "algoritm: round_robin",
        "upstreams.web.algoritm: unknown field `algoritm`",
    ),
    (
        "upstream: web}",
        "upstream: api}",
        "routes[0].upstream: no upstream named \"api\"",
    ),
    (
        "127.0.0.1:9002",
        "10.0.0.1:http",
        "upstreams.web.backends[1].address: \"10.0.0.1:http\" is not an IP:port",
    ),
    (
        "weight: 2",
        "weight: 0",
        "upstreams.web.backends[1].weight: 0 is out of range",
    ),
    (
        "algorithm: round_robin",
        "algorithm: hash",
        "upstreams.web.hash_key: algorithm hash needs a key",
    ),
    (
        "algorithm: round_robin",
        "algorithm: fastest",
        "upstreams.web.algorithm: unknown variant `fastest`",
    ),
    (
        "listeners: [{address: \"{listen}\"}]",
        "listeners: []",
        "listeners: define at least one listener",
    ),
    (
        "upstreams:",
        "server: {threads: 0}\nupstreams:",
        "server.threads: must be at least 1",
    ),
];

#[test]
fn each_config_mistake_is_one_line_naming_the_file_and_field() {
    let dir = TempDir::new("mistakes");
    let listen = common::free_addr().to_string();
    let mut cases: Vec<(String, String)> = MISTAKES
        .iter()
        .map(|(from, to, expect)| {
            assert!(BASE.contains(from), "{from}");
            let yaml = BASE.replacen(from, to, 1).replace("{listen}", &listen);
            (yaml, expect.to_string())
        })
        .collect();
    let empty_pool = BASE.replace("{listen}", &listen).replace(
        "    backends:\n      - address: 127.0.0.1:9001\n      - address: 127.0.0.1:9002\n        weight: 2\n",
        "    backends: []\n",
    );
    cases.push((
        empty_pool,
        "upstreams.web.backends: a pool needs at least one backend".into(),
    ));
    cases.push(("listeners: [".into(), "did not find expected".into()));
    cases.push(("".into(), "the file is empty".into()));
    for (i, (yaml, expect)) in cases.iter().enumerate() {
        let file = dir.path(&format!("bad{i}.yaml"));
        std::fs::write(&file, yaml).unwrap();
        let file = file.to_str().unwrap();
        for args in [vec!["-t", "-c", file], vec!["-c", file]] {
            let (status, _, err) = run_lb(&args);
            assert_eq!(status.code(), Some(1), "{args:?} accepted:\n{yaml}");
            assert_eq!(err.lines().count(), 1, "not one line: {err}");
            assert!(err.starts_with(&format!("lb: {file}: ")), "{err}");
            assert!(err.contains(expect.as_str()), "expected {expect:?} in {err}");
        }
    }
    let (status, _, err) = run_lb(&["-t", "-c", "/nonexistent/lb.yaml"]);
    assert_eq!(status.code(), Some(1));
    assert!(err.starts_with("lb: /nonexistent/lb.yaml: cannot read"), "{err}");
}

#[test]
fn help_documents_every_flag() {
    let (status, out, _) = run_lb(&["--help"]);
    assert!(status.success());
    for flag in [
        "-c, --conf",
        "-t, --test",
        "-d, --daemon",
        "-u, --upgrade",
        "--algorithm",
        "--hash-key",
        "--health-check-interval",
        "--health-check-path",
        "--listen",
        "--backend",
        "SIGQUIT",
        "RUST_LOG",
    ] {
        assert!(out.contains(flag), "--help lacks {flag}:\n{out}");
    }
    let listen = common::free_addr().to_string();
    let (status, _, err) = run_lb(&[
        "--algorithm",
        "fastest",
        "--listen",
        &listen,
        "--backend",
        "127.0.0.1:1",
    ]);
    assert_eq!(status.code(), Some(2));
    assert!(err.contains("unknown algorithm \"fastest\""), "{err}");
    let (status, _, err) = run_lb(&[]);
    assert_eq!(status.code(), Some(1));
    assert!(err.contains("give -c FILE, or --backend ADDR"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn quick_start_without_a_file() {
    let (a, b) = (Demo::start("a"), Demo::start("b"));
    let lb = Lb::start_quick(&[
        "--backend".into(),
        a.addr.to_string(),
        "--backend".into(),
        format!("{},weight=3", b.addr),
    ]);
    let counts = tally(&lb, "/", 40).await;
    assert_eq!((counts["a"], counts["b"]), (10, 30), "{counts:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn command_line_overrides_apply_to_every_pool() {
    let (a, b) = (Demo::start("a"), Demo::start("b"));
    let yaml = format!(
        "listeners: [{{address: \"{{listen}}\"}}]\nupstreams:\n  web:\n    algorithm: random\n    backends: [{}, {}]\n",
        a.yaml(),
        b.yaml()
    );
    let lb = Lb::start_args(
        &yaml,
        &[
            "--algorithm",
            "round_robin",
            "--health-check-path",
            "/healthz",
            "--health-check-interval",
            "100ms",
        ],
    );
    let counts = tally(&lb, "/", 40).await;
    assert_eq!((counts["a"], counts["b"]), (20, 20), "round robin expected: {counts:?}");

    // Health checks were switched on by the flags: failing /healthz ejects the backend.
    assert_eq!(get(a.addr, "/_demo/health/503").await.unwrap().status, 200);
    let needle = format!("pool web backend {} becomes unhealthy, status 503", a.addr);
    assert!(
        eventually(PATIENCE, async || lb.log().contains(&needle)).await,
        "{}",
        lb.log()
    );
    let counts = tally(&lb, "/", 20).await;
    assert_eq!(counts.get("a"), None, "{counts:?}");
}

#[test]
fn a_listener_address_in_use_is_a_clear_error() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap().to_string();
    let (status, _, err) = run_lb(&["--listen", &addr, "--backend", "127.0.0.1:9"]);
    assert_eq!(status.code(), Some(1));
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(err.contains(&format!("cannot listen on {addr}")), "{err}");
}

#[test]
fn reload_and_upgrade_say_when_no_lb_runs() {
    let dir = TempDir::new("not-running");
    let admin = common::free_addr();
    let pid_file = dir.path("lb.pid");
    let file = dir.path("lb.yaml");
    let yaml = BASE.replace("{listen}", &common::free_addr().to_string());
    let with_admin = format!("{yaml}admin: {{address: \"{admin}\"}}\n");
    std::fs::write(&file, &with_admin).unwrap();
    let (status, _, err) = run_lb(&["reload", "-c", file.to_str().unwrap()]);
    assert_eq!(status.code(), Some(1));
    assert_eq!(err.trim(), format!("lb: is lb running? no admin listener on {admin}"));
    // Without an admin listener, reload goes through the pid file.
    let with_pid = format!("server: {{pid_file: {}}}\n{yaml}", pid_file.display());
    std::fs::write(&file, with_pid).unwrap();
    let (status, _, err) = run_lb(&["reload", "-c", file.to_str().unwrap()]);
    assert_eq!(status.code(), Some(1));
    assert_eq!(
        err.trim(),
        format!("lb: is lb running? no pid file {}", pid_file.display())
    );
    let (status, _, err) = run_lb(&["upgrade", "-c", file.to_str().unwrap()]);
    assert_eq!(status.code(), Some(1));
    assert!(err.contains("no running lb found"), "{err}");
    // Neither suggests the quick start's --backend without -c.
    for cmd in ["reload", "upgrade"] {
        let (status, _, err) = run_lb(&[cmd]);
        assert_eq!(status.code(), Some(1));
        assert!(
            err.contains(&format!("lb {cmd}: give -c FILE")) && !err.contains("--backend"),
            "{err}"
        );
    }
}
