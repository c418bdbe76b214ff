use super::*;
use crate::config::Config;

fn rules(route_yaml: &str) -> Rules {
    let yaml = format!(
        "listeners: [{{address: 127.0.0.1:8080}}]\nupstreams: {{web: {{backends: [{{address: 127.0.0.1:9001}}]}}}}\nroutes:\n  - {route_yaml}\n"
    );
    let config = Config::parse_str(&yaml, "t.yaml").unwrap();
    config.validate("t.yaml").unwrap();
    Rules::of(&config.routes[0])
}

fn rewritten(r: &Rules, target: &str) -> Result<String, BadPath> {
    let mut uri: Uri = target.parse().unwrap();
    r.rewrite(&mut uri).map(|()| uri.to_string())
}

#[test]
fn a_stripped_prefix_leaves_a_path_and_the_query() {
    let r = rules("{upstream: web, request: {strip_prefix: /api}}");
    assert_eq!(rewritten(&r, "/api/users?x=1").unwrap(), "/users?x=1");
    assert_eq!(rewritten(&r, "/api").unwrap(), "/");
    assert_eq!(rewritten(&r, "/api?x").unwrap(), "/?x");
    assert_eq!(rewritten(&r, "/apix/y").unwrap(), "/apix/y", "not under the prefix");
    assert_eq!(rewritten(&r, "/other").unwrap(), "/other");
    let r = rules("{upstream: web, request: {strip_prefix: /api/}}");
    assert_eq!(rewritten(&r, "/api/users").unwrap(), "/users");
}

#[test]
fn a_regex_rewrite_keeps_the_query_and_refuses_what_is_not_a_path() {
    let r = rules("{upstream: web, request: {rewrite: {regex: \"^/old/(.*)$\", replace: \"/new/$1\"}}}");
    assert_eq!(rewritten(&r, "/old/a/b?q=1&r=2").unwrap(), "/new/a/b?q=1&r=2");
    assert_eq!(rewritten(&r, "/else").unwrap(), "/else");
    let r = rules("{upstream: web, request: {rewrite: {regex: \"^/(.*)$\", replace: \"$1\"}}}");
    assert_eq!(
        rewritten(&r, "/x").unwrap_err(),
        BadPath("x".into()),
        "no leading slash"
    );
    let r = rules("{upstream: web, request: {rewrite: {regex: \"^/p(.*)$\", replace: \"$1\"}}}");
    assert!(rewritten(&r, "/p?x").is_err(), "nothing left is not a path");
}

#[test]
fn header_edits_remove_then_set_then_add_with_variables() {
    let r = rules(
        "{upstream: web, request: {remove_headers: [X-Internal], set_headers: {Host: internal.api, X-Client: \"$client_ip:$remote_port via $scheme for $host id $request_id\"}, add_headers: {X-Env: prod}}}",
    );
    let mut h = HeaderMap::new();
    h.insert("x-internal", HeaderValue::from_static("secret"));
    h.insert("host", HeaderValue::from_static("api.example.com"));
    h.insert("x-env", HeaderValue::from_static("dev"));
    let vars = Vars {
        client_ip: Some("::ffff:192.0.2.7".parse().unwrap()),
        host: Some("api.example.com"),
        scheme: "https",
        request_id: Some("0190-abc"),
        remote_port: Some(51000),
    };
    r.request.apply(&mut h, &vars);
    assert!(h.get("x-internal").is_none());
    assert_eq!(h["host"], "internal.api");
    assert_eq!(
        h["x-client"],
        "192.0.2.7:51000 via https for api.example.com id 0190-abc"
    );
    let envs: Vec<_> = h.get_all("x-env").iter().collect();
    assert_eq!(envs, ["dev", "prod"]);
}
