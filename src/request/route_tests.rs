use super::*;
use crate::config::rules::MatchConf;

fn req(method: &str, host: Option<&str>, target: &str, headers: &[(&str, &str)]) -> RequestHeader {
    let mut r = RequestHeader::build(method, target.as_bytes(), None).unwrap();
    if let Some(h) = host {
        r.insert_header("host", h).unwrap();
    }
    for (n, v) in headers {
        r.append_header(n.to_string(), *v).unwrap();
    }
    r
}

fn get(host: Option<&str>, path: &str) -> RequestHeader {
    req("GET", host, path, &[])
}

fn table() -> Router<&'static str> {
    let mut r = Router::new();
    r.push(Some("api.example.com"), Some("/v2/"), "api-v2");
    r.push(Some("api.example.com"), None, "api");
    r.push(Some("*.example.com"), None, "sub");
    r.push(None, Some("/static/"), "static");
    r
}

#[test]
fn first_match_wins() {
    let r = table();
    assert_eq!(r.find(&get(Some("api.example.com"), "/v2/x")), Some(&"api-v2"));
    assert_eq!(r.find(&get(Some("API.Example.com:8080"), "/v1")), Some(&"api"));
    assert_eq!(r.find(&get(Some("www.example.com"), "/static/a")), Some(&"sub"));
    assert_eq!(r.find(&get(Some("other.org"), "/static/a")), Some(&"static"));
}

#[test]
fn no_match_is_none() {
    let r = table();
    assert_eq!(r.find(&get(Some("example.com"), "/")), None);
    assert_eq!(r.find(&get(None, "/index.html")), None);
}

#[test]
fn ports_brackets_and_trailing_dots_are_ignored() {
    assert_eq!(strip_port("a.com:80"), "a.com");
    assert_eq!(strip_port("[::1]:8080"), "::1");
    assert_eq!(strip_port("a.com."), "a.com");
    assert_eq!(strip_port("::1"), "::1");
}

#[test]
fn catch_all() {
    let mut r = Router::new();
    r.push(None, None, 1);
    assert_eq!(r.find(&get(None, "/anything")), Some(&1));
}

fn matcher(yaml: &str) -> Matcher {
    let conf: MatchConf = serde_yaml::from_str(yaml).unwrap();
    Matcher::of(&conf, conf.host.as_deref(), conf.path_prefix.as_deref())
}

#[test]
fn every_condition_must_hold() {
    let mut r = Router::new();
    r.push_matcher(
        matcher("{host: api.example.com, path_prefix: /api/, methods: [GET, POST], headers: {X-Canary: \"1\"}}"),
        "canary",
    );
    r.push_matcher(matcher("{path_regex: \"^/v[0-9]+/users/[0-9]+$\"}"), "users");
    r.push_matcher(
        matcher("{headers: {X-Env: {regex: \"^(dev|qa)$\"}, X-Debug: {present: true}}}"),
        "debug",
    );
    r.push_matcher(matcher("{query: {debug: \"1 2\", trace: {present: false}}}"), "query");
    r.push_matcher(
        matcher("{headers: {X-Beta: {present: false}}, methods: [DELETE]}"),
        "delete",
    );
    let canary = [("x-canary", "1")];
    assert_eq!(
        r.find(&req("POST", Some("api.example.com"), "/api/x", &canary)),
        Some(&"canary")
    );
    assert_eq!(
        r.find(&req("PUT", Some("api.example.com"), "/api/x", &canary)),
        None,
        "method"
    );
    assert_eq!(
        r.find(&req("GET", Some("api.example.com"), "/api/x", &[("x-canary", "2")])),
        None
    );
    assert_eq!(r.find(&get(None, "/v2/users/42")), Some(&"users"));
    assert_eq!(r.find(&get(None, "/v2/users/42/x")), None, "anchored as written");
    let debug = [("x-env", "qa"), ("x-debug", "")];
    assert_eq!(r.find(&req("GET", None, "/", &debug)), Some(&"debug"));
    assert_eq!(
        r.find(&req("GET", None, "/", &[("x-env", "prod"), ("x-debug", "1")])),
        None
    );
    assert_eq!(
        r.find(&get(None, "/?a=b&debug=1%202")),
        Some(&"query"),
        "percent-decoded"
    );
    assert_eq!(r.find(&get(None, "/?debug=1%202&trace")), None, "trace present");
    assert_eq!(r.find(&req("DELETE", None, "/", &[])), Some(&"delete"));
    assert_eq!(r.find(&req("DELETE", None, "/", &[("x-beta", "1")])), None);
}
