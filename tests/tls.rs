//! TLS through the real binary: a listener with two certificates answers each name with its
//! own, over HTTP/2 and HTTP/1.1 (curl, by ALPN); a certificate replaced on disk is served
//! without a restart; bad certificate settings fail `lb -t` with one line; pools reach backends
//! over TLS (verified, own CA, SNI) and over HTTP/2 (by ALPN, and h2c), and plain listeners
//! take h2c.

mod common;

use common::certs::{curl, make, subject};
use common::{eventually, run_lb, write_config, Demo, Lb, TempDir, PATIENCE};

fn tls_yaml(certs: &TempDir, demo: &Demo, extra_listener: &str) -> String {
    let p = |f: &str| certs.path(f).display().to_string();
    format!(
        "listeners:
  - address: \"{{listen}}\"
    h2c: true
  - address: \"{{tls}}\"
    tls:
      certificates:
        - {{cert: \"{}\", key: \"{}\"}}
        - {{cert: \"{}\", key: \"{}\"}}
{extra_listener}access_log: {{path: \"{{dir}}/access.log\"}}
upstreams:
  web:
    backends: [{}]
",
        p("example.pem"),
        p("example.key"),
        p("api.pem"),
        p("api.key"),
        demo.yaml()
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sni_picks_each_certificate_over_http2_and_http1_and_a_renewal_is_served_without_restart() {
    let certs = TempDir::new("certs");
    make(&certs, "example", &["example.test", "www.example.test"]);
    make(&certs, "api", &["api.test", "*.api.test"]);
    let demo = Demo::start("a");
    let lb = Lb::start(&tls_yaml(&certs, &demo, ""));
    let port = lb.dir.named_addr("tls").port();
    let check = move |name: &'static str, extra: &'static [&'static str]| {
        tokio::task::spawn_blocking(move || subject(name, port, extra))
    };
    let (s, out) = check("example.test", &["--http2"]).await.unwrap();
    assert_eq!((s.as_str(), out.as_str()), ("CN=example.test", "2 200"));
    let (s, out) = check("v1.api.test", &["--http1.1"]).await.unwrap();
    assert_eq!((s.as_str(), out.as_str()), ("CN=api.test", "1.1 200"));
    let (s, _) = check("unknown.test", &[]).await.unwrap();
    assert_eq!(s, "CN=example.test", "the first certificate is the default");
    // Plain listener: HTTP/2 with prior knowledge (h2c) and HTTP/1.1 side by side.
    let plain = format!("http://{}/", lb.addr);
    let (_, h2c, _) = curl(&[
        "-s",
        "--http2-prior-knowledge",
        "-o",
        "/dev/null",
        "-w",
        "%{http_version}",
        &plain,
    ]);
    assert_eq!(h2c, "2");
    let (_, h1, _) = curl(&["-s", "-o", "/dev/null", "-w", "%{http_version}", &plain]);
    assert_eq!(h1, "1.1");
    let log = std::fs::read_to_string(lb.dir.path("access.log")).unwrap_or_default();
    assert!(log.is_empty() || log.contains("HTTP/2.0"), "{log}");

    // certbot-style renewal: new files moved into place.
    let renewed = TempDir::new("renewed");
    let (cert, key) = make(&renewed, "example", &["renewed.example.test", "example.test"]);
    std::fs::copy(&key, certs.path("example.key.new")).unwrap();
    std::fs::copy(&cert, certs.path("example.pem.new")).unwrap();
    std::fs::rename(certs.path("example.key.new"), certs.path("example.key")).unwrap();
    std::fs::rename(certs.path("example.pem.new"), certs.path("example.pem")).unwrap();
    let served = eventually(PATIENCE, async || {
        let (s, out) = check("example.test", &[]).await.unwrap();
        s == "CN=renewed.example.test" && out.ends_with(" 200")
    })
    .await;
    assert!(served, "the renewed certificate was not served:\n{}", lb.log());
    assert!(lb.log().contains("TLS certificates reloaded"), "{}", lb.log());
}

#[test]
fn bad_certificate_settings_fail_lb_t_with_one_line() {
    let certs = TempDir::new("badcerts");
    make(&certs, "example", &["example.test"]);
    make(&certs, "api", &["api.test"]);
    let dir = TempDir::new("badtls");
    let cases = [
        (
            certs.path("missing.pem"),
            certs.path("example.key"),
            "listeners[0].tls.certificates[0].cert",
            "cannot read",
        ),
        (
            certs.path("example.pem"),
            certs.path("api.key"),
            "listeners[0].tls.certificates[0].key",
            "does not match the certificate",
        ),
        (
            certs.path("example.key"),
            certs.path("example.key"),
            "listeners[0].tls.certificates[0].cert",
            "no certificate",
        ),
    ];
    for (cert, key, field, problem) in cases {
        let yaml = format!(
            "listeners: [{{address: \"{{listen}}\", tls: {{certificates: [{{cert: \"{}\", key: \"{}\"}}]}}}}]\nupstreams: {{web: {{backends: [{{address: 127.0.0.1:9}}]}}}}\n",
            cert.display(),
            key.display()
        );
        let conf = write_config(&dir, &yaml, common::free_addr());
        let (status, _, err) = run_lb(&["-t", "-c", conf.to_str().unwrap()]);
        assert_eq!(status.code(), Some(1), "{err}");
        let line = err.trim();
        assert!(!line.contains('\n'), "more than one line: {line}");
        assert!(line.contains(field) && line.contains(problem), "{line}");
    }
}

/// A second lb serving `demo` over TLS with the `api` certificate (and h2c on its plain
/// listener): a TLS and HTTP/2 backend for the first.
fn backend_lb(certs: &TempDir, demo: &Demo) -> Lb {
    let p = |f: &str| certs.path(f).display().to_string();
    Lb::start(&format!(
        "listeners:
  - {{address: \"{{listen}}\", h2c: true}}
  - {{address: \"{{tls}}\", tls: {{certificates: [{{cert: \"{}\", key: \"{}\"}}]}}}}
access_log: {{path: \"{{dir}}/access.log\"}}
upstreams:
  web:
    backends: [{}]
",
        p("api.pem"),
        p("api.key"),
        demo.yaml()
    ))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pools_reach_backends_over_verified_tls_and_http2() {
    let certs = TempDir::new("upcerts");
    make(&certs, "api", &["api.test"]);
    let demo = Demo::start("a");
    let backend = backend_lb(&certs, &demo);
    let tls = backend.dir.named_addr("tls");
    let ca = certs.path("ca.pem").display().to_string();
    let pool = |name: &str, addr: std::net::SocketAddr, options: &str| {
        format!("  {name}:\n    backends: [{{address: \"{addr}\"}}]\n    outlier_detection: {{consecutive_failures: 0}}\n    {options}\n")
    };
    let yaml = format!(
        "listeners: [{{address: \"{{listen}}\"}}]\nupstreams:\n{}{}{}{}routes:\n  - {{path_prefix: /tls1/, upstream: tls1}}\n  - {{path_prefix: /tls2/, upstream: tls2}}\n  - {{path_prefix: /wrong/, upstream: wrong}}\n  - {{path_prefix: /h2c/, upstream: h2c}}\n",
        pool("tls1", tls, &format!("tls: {{sni: api.test, ca_file: \"{ca}\"}}")),
        pool("tls2", tls, &format!("tls: {{sni: api.test, ca_file: \"{ca}\"}}\n    protocol: http2")),
        pool("wrong", tls, &format!("tls: {{sni: other.test, ca_file: \"{ca}\"}}")),
        pool("h2c", backend.addr, "protocol: http2"),
    );
    let front = Lb::start(&yaml);
    for (path, version) in [("/tls1/x", "HTTP/1.1"), ("/tls2/x", "HTTP/2.0"), ("/h2c/x", "HTTP/2.0")] {
        let resp = common::get(front.addr, path).await.unwrap();
        assert_eq!(
            (resp.status, resp.backend()),
            (200, "a".to_string()),
            "{path}: {}\n{}",
            resp.text(),
            front.log()
        );
        let seen = eventually(PATIENCE, async || {
            let log = std::fs::read_to_string(backend.dir.path("access.log")).unwrap_or_default();
            log.lines()
                .any(|l| l.contains(&format!("\"GET {path} {version}\" 200")))
        })
        .await;
        assert!(
            seen,
            "{path} did not arrive as {version}: {}",
            std::fs::read_to_string(backend.dir.path("access.log")).unwrap_or_default()
        );
    }
    // A certificate that does not name the SNI is refused: the backend is not reached.
    let resp = common::get(front.addr, "/wrong/x").await.unwrap();
    assert!(
        resp.status == 502 || resp.status == 503,
        "{} {}",
        resp.status,
        resp.text()
    );
}
