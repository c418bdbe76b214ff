//! Traffic rules through the real binary: each match form picks its route (first match wins,
//! nothing matched is a 404, the old top-level host/path_prefix still work); request rules reach
//! a raw backend byte for byte and response rules the client; request ids; access by address
//! (direct, through trusted proxies, through the PROXY protocol); basic auth, its file reloaded.
//! Run on both request loops by scripts/test (LB_PROXY_PATH=pingora the second time).

mod common;

use common::raw::{self, RawBackend};
use common::{eventually, run_lb, Client, Lb, PATIENCE};
use http::Request;
use std::net::{IpAddr, SocketAddr};
use std::time::Duration;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;

/// A backend that answers every request 200 with a `Server` and `X-Powered-By` to remove.
async fn backend() -> RawBackend {
    let answer =
        b"HTTP/1.1 200 OK\r\nServer: app/1.0\r\nX-Powered-By: php\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok";
    RawBackend::start(Some(vec![(Duration::ZERO, answer.to_vec())])).await
}

/// `request` sent on a new connection; the whole answer.
async fn exchange(lb: SocketAddr, request: &str) -> raw::Answer {
    raw::send(lb, request.as_bytes(), Duration::from_secs(10)).await
}

/// A GET of `path` with `extra` header lines (each ending in CRLF), `Connection: close`.
fn get(path: &str, extra: &str) -> String {
    format!("GET {path} HTTP/1.1\r\nHost: shop.example.com\r\n{extra}Connection: close\r\n\r\n")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_match_form_picks_its_route_and_the_first_match_wins() {
    let web = backend().await;
    // Each route tags its answers with its name, so the answer says which route took it.
    let tag = |name: &str| format!("response: {{set_headers: {{X-Route: {name}}}}}");
    let lb = Lb::start(&format!(
        "listeners: [{{address: \"{{listen}}\"}}]
upstreams:
  web: {{backends: [{{address: \"{web}\"}}]}}
routes:
  - {{host: old.example.com, path_prefix: /legacy/, upstream: web, {legacy}}}
  - {{name: posts, match: {{path_prefix: /m/, methods: [POST, PUT]}}, upstream: web, {posts}}}
  - {{name: canary, match: {{path_prefix: /m/, headers: {{X-Canary: \"1\"}}}}, upstream: web, {canary}}}
  - {{name: env, match: {{path_prefix: /m/, headers: {{X-Env: {{regex: \"^(dev|qa)$\"}}}}}}, upstream: web, {env}}}
  - {{name: debug, match: {{path_prefix: /m/, headers: {{X-Debug: {{present: true}}}}}}, upstream: web, {debug}}}
  - {{name: query, match: {{path_prefix: /m/, query: {{debug: \"1\"}}}}, upstream: web, {query}}}
  - {{name: users, match: {{path_regex: \"^/v[0-9]+/users/[0-9]+$\"}}, upstream: web, {users}}}
  - {{name: api, match: {{host: api.example.com, path_prefix: /m/}}, upstream: web, {api}}}
  - {{name: rest, match: {{path_prefix: /m/}}, upstream: web, {rest}}}
",
        web = web.addr,
        legacy = tag("legacy"),
        posts = tag("posts"),
        canary = tag("canary"),
        env = tag("env"),
        debug = tag("debug"),
        query = tag("query"),
        users = tag("users"),
        api = tag("api"),
        rest = tag("rest"),
    ));
    let post = "POST /m/x HTTP/1.1\r\nHost: h\r\nX-Canary: 1\r\nContent-Length: 0\r\nConnection: close\r\n\r\n";
    let cases: Vec<(String, Option<&str>)> = vec![
        // Method, before the header route that also matches (first match wins).
        (post.to_string(), Some("posts")),
        (get("/m/x", "X-Canary: 1\r\n"), Some("canary")),
        (get("/m/x", "X-Canary: 2\r\n"), Some("rest")),
        (get("/m/x", "X-Env: qa\r\n"), Some("env")),
        (get("/m/x", "X-Env: prod\r\n"), Some("rest")),
        (get("/m/x", "X-Env: qa-2\r\n"), Some("rest")),
        (get("/m/x", "X-Debug: \r\n"), Some("debug")),
        (get("/m/x?a=b&debug=1", ""), Some("query")),
        (get("/m/x?debug=10", ""), Some("rest")),
        (get("/v2/users/42", ""), Some("users")),
        (get("/v2/users/42/posts", ""), None),
        (get("/x/v2/users/42", ""), None),
        (
            "GET /m/x HTTP/1.1\r\nHost: api.example.com:8080\r\nConnection: close\r\n\r\n".into(),
            Some("api"),
        ),
        (get("/m/x", ""), Some("rest")),
        (
            "GET /legacy/a HTTP/1.1\r\nHost: old.example.com\r\nConnection: close\r\n\r\n".into(),
            Some("legacy"),
        ),
        (get("/legacy/a", ""), None),
        (get("/nothing", ""), None),
    ];
    for (request, route) in cases {
        let answer = exchange(lb.addr, &request).await;
        match route {
            Some(route) => {
                assert_eq!(answer.status(), 200, "{request:?}\n{}", answer.text());
                assert_eq!(answer.header("x-route").as_deref(), Some(route), "{request:?}");
            }
            None => assert_eq!(answer.status(), 404, "{request:?}\n{}", answer.text()),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn request_rules_reach_the_backend_exactly_and_response_rules_the_client() {
    let web = backend().await;
    let lb = Lb::start(&format!(
        "listeners: [{{address: \"{{listen}}\"}}]
upstreams:
  web: {{backends: [{{address: \"{}\"}}]}}
routes:
  - name: api
    match: {{path_prefix: /api/}}
    upstream: web
    request:
      strip_prefix: /api
      set_headers: {{Host: internal.api, X-Client: \"$client_ip:$remote_port $scheme $host $request_id $$5\"}}
      add_headers: {{X-Env: prod}}
      remove_headers: [X-Internal-Debug]
    response:
      set_headers: {{Strict-Transport-Security: max-age=63072000}}
      remove_headers: [Server, X-Powered-By]
  - name: old
    match: {{path_prefix: /old/}}
    upstream: web
    request: {{rewrite: {{regex: \"^/old/(?P<rest>.*)$\", replace: \"/new/${{rest}}\"}}}}
  - name: broken
    match: {{path_prefix: /broken/}}
    upstream: web
    request: {{rewrite: {{regex: \"^/broken/(.*)$\", replace: \"$1\"}}}}
",
        web.addr
    ));

    let mut conn = TcpStream::connect(lb.addr).await.expect("connect");
    let port = conn.local_addr().expect("local").port();
    let request = "GET /api/items/7?sort=asc&x=%20 HTTP/1.1\r\nHost: shop.example.com:8080\r\n\
                   X-Internal-Debug: 1\r\nX-Env: dev\r\nX-Client: forged\r\nConnection: close\r\n\r\n";
    conn.write_all(request.as_bytes()).await.expect("write");
    let answer = raw::read_all(&mut conn, Duration::from_secs(10)).await;
    assert_eq!(answer.status(), 200, "{}", answer.text());
    let id = answer.header("x-request-id").expect("a request id for the client");
    let head = web.requests().pop().expect("the backend got the request");
    let lines: Vec<&str> = head.split("\r\n").collect();
    assert_eq!(lines[0], "GET /items/7?sort=asc&x=%20 HTTP/1.1", "{head}");
    let fields = |name: &str| -> Vec<&str> {
        let prefix = format!("{}: ", name.to_ascii_lowercase());
        lines
            .iter()
            .filter(|l| l.to_ascii_lowercase().starts_with(&prefix))
            .map(|l| &l[prefix.len()..])
            .collect()
    };
    assert_eq!(fields("host"), ["internal.api"], "{head}");
    assert_eq!(
        fields("x-client"),
        [format!("127.0.0.1:{port} http shop.example.com {id} $5").as_str()],
        "{head}"
    );
    assert_eq!(fields("x-env"), ["dev", "prod"], "{head}");
    assert!(fields("x-internal-debug").is_empty(), "{head}");
    assert_eq!(fields("x-request-id"), [id.as_str()], "{head}");
    // The client: the response rules applied, the backend's body intact.
    assert_eq!(
        answer.header("strict-transport-security").as_deref(),
        Some("max-age=63072000")
    );
    assert_eq!(answer.header("server"), None, "{}", answer.text());
    assert_eq!(answer.header("x-powered-by"), None, "{}", answer.text());
    assert!(answer.text().ends_with("\r\n\r\nok"), "{}", answer.text());

    // A regex rewrite with a named group, the query kept.
    let answer = exchange(lb.addr, &get("/old/a/b?q=1", "")).await;
    assert_eq!(answer.status(), 200, "{}", answer.text());
    let head = web.requests().pop().expect("rewritten request");
    assert!(head.starts_with("GET /new/a/b?q=1 HTTP/1.1\r\n"), "{head}");

    // A rewrite that makes no valid path: 500, logged, nothing forwarded.
    let before = web.requests().len();
    let answer = exchange(lb.addr, &get("/broken/x", "")).await;
    assert_eq!(answer.status(), 500, "{}", answer.text());
    assert_eq!(web.requests().len(), before, "{:?}", web.requests().last());
    assert!(
        eventually(PATIENCE, async || lb.log().contains("not a valid path")).await,
        "{}",
        lb.log()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn request_ids_are_made_or_kept_from_trusted_proxies_only() {
    let web = backend().await;
    let lb = Lb::start(&format!(
        "listeners: [{{address: \"{{listen}}\"}}]
trusted_proxies: [127.0.0.2/32]
upstreams:
  web: {{backends: [{{address: \"{}\"}}]}}
routes:
  - {{path_prefix: /, upstream: web}}
",
        web.addr
    ));
    let ask = async |from: &str, id: Option<&str>| -> (String, String) {
        let mut client = Client::connect_from(Some(from.parse().expect("ip")), lb.addr)
            .await
            .expect("connect");
        let mut req = Request::new(common::client::empty());
        *req.uri_mut() = "/".parse().expect("uri");
        if let Some(id) = id {
            req.headers_mut().insert("x-request-id", id.parse().expect("id"));
        }
        let resp = client.send(req).await.expect("request");
        assert_eq!(resp.status, 200);
        let sent = web.requests().pop().expect("forwarded");
        let at_backend = sent
            .split("\r\n")
            .find_map(|l| {
                l.strip_prefix("x-request-id: ")
                    .or_else(|| l.strip_prefix("X-Request-Id: "))
            })
            .unwrap_or_default()
            .to_string();
        (resp.header("x-request-id"), at_backend)
    };
    // None came: a UUIDv7, the same to the backend and back.
    let (back, sent) = ask("127.0.0.3", None).await;
    assert_eq!(back, sent);
    let uuid = uuid::Uuid::parse_str(&back).expect("a UUID");
    assert_eq!(uuid.get_version_num(), 7, "{back}");
    // From a trusted proxy: kept. From anyone else: replaced.
    assert_eq!(
        ask("127.0.0.2", Some("edge-42")).await,
        ("edge-42".into(), "edge-42".into())
    );
    let (back, sent) = ask("127.0.0.3", Some("forged-1")).await;
    assert_eq!(back, sent);
    assert_ne!(back, "forged-1");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn access_lists_refuse_by_the_client_lb_knows() {
    let web = backend().await;
    let lb = Lb::start(&format!(
        "listeners:
  - {{address: \"{{listen}}\"}}
  - {{address: \"{{other}}\", proxy_protocol: true}}
trusted_proxies: [127.0.0.9/32, 127.0.0.1/32]
upstreams:
  web: {{backends: [{{address: \"{}\"}}]}}
routes:
  - {{name: office, match: {{path_prefix: /admin/}}, upstream: web, access: {{allow: [127.0.0.0/29, 192.0.2.0/24], deny: [127.0.0.4/32]}}}}
  - {{path_prefix: /, upstream: web}}
",
        web.addr
    ));
    let from = async |ip: &str, forwarded: Option<&str>, path: &str| -> u16 {
        let ip: IpAddr = ip.parse().expect("ip");
        let mut client = Client::connect_from(Some(ip), lb.addr).await.expect("connect");
        let mut req = Request::new(common::client::empty());
        *req.uri_mut() = path.parse().expect("uri");
        if let Some(f) = forwarded {
            req.headers_mut().insert("x-forwarded-for", f.parse().expect("xff"));
        }
        client.send(req).await.expect("request").status
    };
    assert_eq!(from("127.0.0.2", None, "/admin/x").await, 200);
    assert_eq!(from("127.0.0.4", None, "/admin/x").await, 403, "deny wins over allow");
    assert_eq!(from("127.0.0.12", None, "/admin/x").await, 403, "not in allow");
    assert_eq!(from("127.0.0.12", None, "/public").await, 200, "other routes open");
    // Through a trusted proxy the client is the forwarded address; an untrusted peer's
    // X-Forwarded-For is not believed.
    assert_eq!(from("127.0.0.9", Some("192.0.2.7"), "/admin/x").await, 200);
    assert_eq!(from("127.0.0.9", Some("198.51.100.1"), "/admin/x").await, 403);
    assert_eq!(from("127.0.0.12", Some("192.0.2.7"), "/admin/x").await, 403);
    // Through the PROXY protocol (from a trusted proxy: 127.0.0.1), the client is the
    // header's source.
    let other = lb.dir.named_addr("other");
    for (source, status) in [("192.0.2.8", 200), ("198.51.100.2", 403), ("127.0.0.4", 403)] {
        let mut conn = TcpStream::connect(other).await.expect("connect");
        let request = format!(
            "PROXY TCP4 {source} 127.0.0.1 40000 80\r\nGET /admin/x HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n"
        );
        conn.write_all(request.as_bytes()).await.expect("write");
        let answer = raw::read_all(&mut conn, Duration::from_secs(10)).await;
        assert_eq!(answer.status(), status, "{source}: {}", answer.text());
    }
    assert_eq!(web.requests().len(), 4, "refused requests reached the backend");
}

/// An htpasswd file with `users` (name, password), bcrypt at the lowest cost (the test's speed).
fn htpasswd(path: &std::path::Path, users: &[(&str, &str)]) {
    let lines: Vec<String> = users
        .iter()
        .map(|(u, p)| format!("{u}:{}", bcrypt::hash(p, 4).expect("hash")))
        .collect();
    std::fs::write(path, lines.join("\n") + "\n").expect("write htpasswd");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn basic_auth_asks_admits_refuses_and_rereads_its_file_on_reload() {
    use base64::Engine;
    let web = backend().await;
    let dir = common::TempDir::new("auth");
    let users = dir.path("htpasswd");
    htpasswd(&users, &[("alice", "s3cret"), ("bob", "hunter2")]);
    let lb = Lb::start(&format!(
        "listeners: [{{address: \"{{listen}}\"}}]
admin: {{address: \"{{admin}}\"}}
upstreams:
  web: {{backends: [{{address: \"{}\"}}]}}
routes:
  - {{name: ops, match: {{path_prefix: /ops/}}, upstream: web, basic_auth: {{realm: ops tools, users_file: {}}}}}
  - {{path_prefix: /, upstream: web}}
",
        web.addr,
        users.display()
    ));
    let ask = async |credentials: Option<&str>| -> raw::Answer {
        let auth = credentials
            .map(|c| {
                let encoded = base64::engine::general_purpose::STANDARD.encode(c);
                format!("Authorization: Basic {encoded}\r\n")
            })
            .unwrap_or_default();
        exchange(lb.addr, &get("/ops/x", &auth)).await
    };
    let answer = ask(None).await;
    assert_eq!(answer.status(), 401, "{}", answer.text());
    assert_eq!(
        answer.header("www-authenticate").as_deref(),
        Some("Basic realm=\"ops tools\", charset=\"UTF-8\"")
    );
    assert_eq!(ask(Some("alice:s3cret")).await.status(), 200);
    assert_eq!(ask(Some("bob:hunter2")).await.status(), 200);
    assert_eq!(ask(Some("alice:hunter2")).await.status(), 401);
    assert_eq!(ask(Some("mallory:s3cret")).await.status(), 401);
    assert_eq!(ask(Some("alice")).await.status(), 401);
    assert_eq!(
        exchange(lb.addr, &get("/ops/x", "Authorization: Basic !!!\r\n"))
            .await
            .status(),
        401
    );
    assert_eq!(exchange(lb.addr, &get("/open", "")).await.status(), 200);
    assert_eq!(web.requests().len(), 3, "refused requests reached the backend");

    // A new file, read on reload: alice's new password passes, the old one and bob fail.
    htpasswd(&users, &[("alice", "n3w")]);
    let conf = lb.dir.path("lb.yaml");
    let (status, _, err) = run_lb(&["reload", "-c", conf.to_str().expect("path")]);
    assert!(status.success(), "{err}");
    assert!(
        eventually(PATIENCE, async || ask(Some("alice:n3w")).await.status() == 200).await,
        "{}",
        lb.log()
    );
    assert_eq!(ask(Some("alice:s3cret")).await.status(), 401);
    assert_eq!(ask(Some("bob:hunter2")).await.status(), 401);
    // A broken file on reload is refused, and the running users stay.
    std::fs::write(&users, "alice:{SHA}abc\n").expect("write");
    let (status, _, err) = run_lb(&["reload", "-c", conf.to_str().expect("path")]);
    assert!(!status.success(), "a broken htpasswd reloaded");
    assert!(err.contains("basic_auth.users_file"), "{err}");
    assert_eq!(ask(Some("alice:n3w")).await.status(), 200);
}

#[test]
fn each_bad_rule_is_one_line_naming_the_file_and_field() {
    let dir = common::TempDir::new("bad-rules");
    let weak = dir.path("weak-htpasswd");
    std::fs::write(&weak, "bob:{SHA}xyz\n").expect("write");
    let route = "    upstream: web\n";
    let cases: Vec<(String, String)> = vec![
        (
            format!("{route}    request: {{rewrite: {{regex: \"^/(.*\", replace: /x}}}}"),
            "routes[0].request.rewrite.regex: \"^/(.*\" is not a valid regular expression".into(),
        ),
        (
            format!("{route}    match: {{path_regex: \"^/v[0-9\"}}"),
            "routes[0].match.path_regex: \"^/v[0-9\" is not a valid regular expression".into(),
        ),
        (
            format!("{route}    match: {{headers: {{X-A: {{regex: \"(\"}}}}}}"),
            "routes[0].match.headers.X-A.regex: \"(\" is not a valid regular expression".into(),
        ),
        (
            format!("{route}    request: {{set_headers: {{\"Bad Name\": x}}}}"),
            "routes[0].request.set_headers.Bad Name: \"Bad Name\" is not a valid header name".into(),
        ),
        (
            format!("{route}    response: {{add_headers: {{X-A: \"a\\u0001b\"}}}}"),
            "routes[0].response.add_headers.X-A: \"a\\u{1}b\" is not a valid header value".into(),
        ),
        (
            format!("{route}    request: {{set_headers: {{X-A: \"$nope\"}}}}"),
            "routes[0].request.set_headers.X-A: $nope is not a variable lb knows".into(),
        ),
        (
            format!("{route}    request: {{rewrite: {{regex: \"^/(.*)$\", replace: \"/$1x\"}}}}"),
            "routes[0].request.rewrite.replace: $1x names no group of the regex (it has 1;".into(),
        ),
        (
            "    split: [{upstream: web, weight: 0}, {upstream: canary, weight: 0}]".into(),
            "routes[0].split: weights add up to 0".into(),
        ),
        (
            "    split: [{upstream: web, weight: 1}, {upstream: nope, weight: 1}]".into(),
            "routes[0].split[1].upstream: no upstream named \"nope\"".into(),
        ),
        (
            format!("{route}    mirror: {{upstream: nope}}"),
            "routes[0].mirror.upstream: no upstream named \"nope\"".into(),
        ),
        (
            format!("{route}    basic_auth: {{realm: ops, users_file: /nonexistent/htpasswd}}"),
            "routes[0].basic_auth.users_file: cannot read /nonexistent/htpasswd".into(),
        ),
        (
            format!("{route}    basic_auth: {{realm: ops, users_file: {}}}", weak.display()),
            "routes[0].basic_auth.users_file: ".to_string()
                + &format!("{}: line 1: user \"bob\" has no bcrypt hash", weak.display()),
        ),
        (
            format!("{route}    access: {{allow: [10.0.0.0/33]}}"),
            "routes[0].access.allow[0]: \"10.0.0.0/33\" is not an IP network".into(),
        ),
        (
            format!("{route}    access: {{deny: [hello]}}"),
            "routes[0].access.deny[0]: \"hello\" is not an IP network".into(),
        ),
        (
            format!("{route}    match: {{methods: [\"GE T\"]}}"),
            "routes[0].match.methods[0]: \"GE T\" is not an HTTP method".into(),
        ),
        (
            format!("{route}    request: {{strip_prefix: api}}"),
            "routes[0].request.strip_prefix: \"api\" must be a path starting with /".into(),
        ),
    ];
    let base = format!(
        "listeners: [{{address: \"{}\"}}]
upstreams:
  web: {{backends: [{{address: 127.0.0.1:9001}}]}}
  canary: {{backends: [{{address: 127.0.0.1:9002}}]}}
routes:
  - name: api
",
        common::free_addr()
    );
    for (i, (rule, expect)) in cases.iter().enumerate() {
        let file = dir.path(&format!("bad{i}.yaml"));
        std::fs::write(&file, format!("{base}{rule}\n")).expect("write");
        let file = file.to_str().expect("path");
        let (status, _, err) = run_lb(&["-t", "-c", file]);
        assert_eq!(status.code(), Some(1), "{rule} accepted");
        assert_eq!(err.lines().count(), 1, "not one line: {err}");
        assert!(err.starts_with(&format!("lb: {file}: ")), "{err}");
        assert!(err.contains(expect.as_str()), "expected {expect:?} in {err}");
    }
}
