//! Loading and validation: every rejected input names its field path in one line.

use super::*;

const GOOD: &str = r#"
listeners:
  - address: 127.0.0.1:8080
upstreams:
  web:
    algorithm: consistent
    hash_key: {header: X-User}
    backends:
      - address: 127.0.0.1:9001
      - address: 127.0.0.1:9002
        weight: 3
    health_check:
      path: /healthz
      interval: 500ms
      expected_statuses: [200, "3xx"]
    retries: 1
    timeouts: {connect: 1s}
  api:
    backends: [{address: "[::1]:9003"}]
routes:
  - host: api.example.com
    upstream: api
  - path_prefix: /
    upstream: web
"#;

fn error_of(yaml: &str) -> String {
    match Config::parse_str(yaml, "t.yaml").and_then(|c| c.validate("t.yaml").map(|_| c)) {
        Ok(_) => panic!("accepted:\n{yaml}"),
        Err(e) => e.to_string(),
    }
}

fn assert_error(yaml: &str, expected: &str) {
    let err = error_of(yaml);
    assert!(err.starts_with("t.yaml: "), "{err}");
    assert!(err.contains(expected), "expected {expected:?} in {err:?}");
    assert!(!err.contains('\n'), "not one line: {err:?}");
}

#[test]
fn a_full_config_loads_with_defaults_filled_in() {
    let c = Config::parse_str(GOOD, "t.yaml").unwrap();
    c.validate("t.yaml").unwrap();
    let web = &c.upstreams["web"];
    assert_eq!(web.backends[1].weight, 3);
    assert_eq!(web.backends[0].weight, 1);
    assert_eq!(web.timeouts.connect.0, Duration::from_secs(1));
    assert_eq!(web.timeouts.read.0, DEFAULT_READ_TIMEOUT);
    let hc = web.health_check.as_ref().unwrap();
    assert_eq!(hc.unhealthy_threshold, DEFAULT_UNHEALTHY_THRESHOLD);
    assert_eq!(c.upstreams["api"].retries, DEFAULT_RETRIES);
    assert_eq!(c.server.grace_period_seconds, 5);
}

#[test]
fn unknown_keys_are_refused_everywhere() {
    assert_error(
        &GOOD.replace("retries: 1", "retry: 1"),
        "upstreams.web.retry: unknown field `retry`",
    );
    assert_error(
        &GOOD.replace("path: /healthz", "pth: /healthz"),
        "upstreams.web.health_check.pth: unknown field `pth`",
    );
    assert_error(
        &format!("{GOOD}\nserver: {{thread: 2}}"),
        "server.thread: unknown field `thread`",
    );
    assert_error(&format!("{GOOD}\nextra: 1"), "unknown field `extra`");
}

#[test]
fn a_route_to_a_missing_pool() {
    assert_error(
        &GOOD.replace("upstream: api", "upstream: apii"),
        "routes[0].upstream: no upstream named \"apii\"",
    );
}

#[test]
fn a_bad_address() {
    let yaml = GOOD.replace("127.0.0.1:9002", "10.0.0.1:http");
    assert_error(
        &yaml,
        "upstreams.web.backends[1].address: \"10.0.0.1:http\" is not an IP:port",
    );
}

#[test]
fn weight_zero() {
    assert_error(
        &GOOD.replace("weight: 3", "weight: 0"),
        "upstreams.web.backends[1].weight: 0 is out of range",
    );
}

#[test]
fn an_empty_pool() {
    let yaml = GOOD.replace("backends: [{address: \"[::1]:9003\"}]", "backends: []");
    assert_error(&yaml, "upstreams.api.backends: a pool needs at least one backend");
}

#[test]
fn discovery_settings() {
    let with = |d: &str| GOOD.replace("backends: [{address: \"[::1]:9003\"}]", &format!("discovery: {d}"));
    let good = Config::parse_str(&with("{dns: {name: web.internal, port: 80}}"), "t.yaml").unwrap();
    good.validate("t.yaml").unwrap();
    let srv = Config::parse_str(&with("{dns: {name: _http._tcp.web.internal}}"), "t.yaml").unwrap();
    srv.validate("t.yaml").unwrap();
    let file = Config::parse_str(&with("{file: {path: /etc/lb/api.yaml}}"), "t.yaml").unwrap();
    file.validate("t.yaml").unwrap();
    assert_error(&with("{}"), "upstreams.api.discovery: name one source");
    assert_error(
        &with("{file: {path: a.yaml}, dns: {name: a.b, port: 1}}"),
        "upstreams.api.discovery: name one source",
    );
    assert_error(
        &with("{dns: {name: web.internal}}"),
        "upstreams.api.discovery.dns.port: is needed",
    );
    assert_error(
        &with("{dns: {name: 'a b', port: 1}}"),
        "upstreams.api.discovery.dns.name",
    );
    assert_error(
        &with("{dns: {name: a.b, port: 1, refresh: 100ms}}"),
        "upstreams.api.discovery.dns.refresh: must be at least 1s",
    );
    assert_error(&with("{dns: {name: a.b, port: 1, resolver: nowhere}}"), "resolver");
    assert_error(&with("{consul: {}}"), "unknown field `consul`");
}

#[test]
fn a_hash_algorithm_without_key() {
    assert_error(
        &GOOD.replace("hash_key: {header: X-User}", ""),
        "upstreams.web.hash_key: algorithm consistent needs a key",
    );
}

#[test]
fn other_mistakes() {
    assert_error(
        &GOOD.replace("algorithm: consistent", "algorithm: fastest"),
        "upstreams.web.algorithm: unknown variant `fastest`",
    );
    assert_error(
        &GOOD.replace("interval: 500ms", "interval: 500"),
        "upstreams.web.health_check.interval: \"500\" is not a duration",
    );
    assert_error(
        &GOOD.replace("path_prefix: /", "path_prefix: x"),
        "routes[1].path_prefix",
    );
    assert_error(&GOOD.replace("host: api.example.com", "host: 'a b'"), "routes[0].host");
    assert_error(&GOOD.replace("retries: 1", "retries: 99"), "upstreams.web.retries");
    assert_error(
        &GOOD.replace("127.0.0.1:9002", "127.0.0.1:9001"),
        "backends[1].address: 127.0.0.1:9001 is listed twice",
    );
    assert_error(&GOOD.replace("- host: api.example.com\n    upstream: api\n", ""), "");
    assert_error("", "the file is empty");
    assert_error(
        "list",
        "the file must be a mapping of sections (listeners:, upstreams:...): invalid type: string \"list\"",
    );
    assert_error("listeners: [", "");
    assert_error(
        "listeners: []\nupstreams: {}",
        "listeners: define at least one listener",
    );
}

#[test]
fn syntax_and_type_errors_read_as_plain_words() {
    // A syntax error where serde has no field name yet: the path stops at what it knows (no
    // `?`), the line and column say where.
    let bad_indent =
        "listeners: [{address: 127.0.0.1:80}]\nupstreams:\n  web:\n    backends:\n  - address: 1.1.1.1:1\n   bad\n";
    assert_eq!(
        error_of(bad_indent),
        "t.yaml: upstreams: did not find expected key at line 5 column 3, while parsing a block mapping at line 3 column 3"
    );
    // Rust type names become words.
    assert_error(
        &GOOD.replace("retries: 1", "retries: many"),
        "upstreams.web.retries: invalid type: string \"many\", expected a whole number (0 or more) at line",
    );
    assert_error(
        &GOOD.replace("retries: 1", "retries: [1]"),
        "upstreams.web.retries: invalid type: a list, expected a whole number (0 or more) at line",
    );
    assert_error(
        &GOOD.replace(
            "    backends: [{address: \"[::1]:9003\"}]",
            "    backends: {address: \"[::1]:9003\"}",
        ),
        "upstreams.api.backends: invalid type: a mapping, expected a list at line",
    );
    assert_error(
        &GOOD.replace("  - address: 127.0.0.1:8080", "  - 127.0.0.1:8080"),
        "expected a mapping (key: value lines, or {key: value}) at line",
    );
    assert_error(
        &GOOD.replace("weight: 3", "weight: 1.5"),
        "upstreams.web.backends[1].weight: invalid type: floating point `1.5`, expected a whole number (0 or more)",
    );
}

#[test]
fn a_pool_defined_twice_is_refused() {
    let twice = GOOD.replace(
        "  api:\n",
        "  web:\n    backends: [{address: 127.0.0.1:9009}]\n  api:\n",
    );
    assert_error(&twice, "upstreams: \"web\" is defined twice");
}

#[test]
fn several_pools_need_routes() {
    let yaml = GOOD.split("routes:").next().unwrap();
    assert_error(yaml, "routes: with more than one upstream");
}

#[test]
fn server_settings_map_onto_pingora() {
    let c = Config::parse_str(&format!("{GOOD}\nserver: {{threads: 3, grace_period_seconds: 1}}"), "t").unwrap();
    let conf = c.server.pingora_conf();
    assert_eq!((conf.threads, conf.grace_period_seconds), (3, Some(1)));
    assert_eq!(conf.pid_file, server::DEFAULT_PID_FILE);
}

#[test]
fn load_aware_settings_load_and_are_checked() {
    let yaml = GOOD.replace(
        "    retries: 1\n",
        "    retries: 1\n    max_connections: 10\n    queue_size: 8\n    queue_timeout: 2s\n    ewma_decay: 5s\n    sticky: {cookie: S, ttl: 1h, secure: true, same_site: none}\n",
    );
    let c = Config::parse_str(&yaml, "t.yaml").unwrap();
    c.validate("t.yaml").unwrap();
    let web = &c.upstreams["web"];
    assert_eq!((web.max_connections, web.queue_size), (Some(10), 8));
    assert_eq!(web.max_connections_of(&web.backends[0]), Some(10));
    for name in [
        "least_connections",
        "least_conn",
        "power_of_two",
        "p2c",
        "least_time",
        "sticky",
        "first",
    ] {
        let y = yaml.replace("algorithm: consistent", &format!("algorithm: {name}"));
        Config::parse_str(&y, "t").unwrap().validate("t").unwrap();
        assert_eq!(
            name.parse::<Algorithm>().unwrap(),
            Config::parse_str(&y, "t").unwrap().upstreams["web"].algorithm
        );
    }
}

#[test]
fn load_aware_mistakes() {
    assert_error(
        &GOOD.replace("algorithm: consistent", "algorithm: first"),
        "upstreams.web.max_connections: algorithm first fills",
    );
    assert_error(
        &GOOD.replace("weight: 3", "weight: 3\n        max_connections: 0"),
        "upstreams.web.backends[1].max_connections: must be at least 1",
    );
    assert_error(
        &GOOD.replace("    retries: 1\n", "    retries: 1\n    queue_timeout: 0s\n"),
        "upstreams.web.queue_timeout",
    );
    let sticky = GOOD.replace("algorithm: consistent", "algorithm: sticky");
    assert_error(
        &sticky.replace("    retries: 1\n", "    retries: 1\n    sticky: {same_site: none}\n"),
        "upstreams.web.sticky.same_site",
    );
    assert_error(
        &sticky.replace("    retries: 1\n", "    retries: 1\n    sticky: {cookie: 'a b'}\n"),
        "upstreams.web.sticky.cookie",
    );
    assert_error(
        &format!("{GOOD}\nmetrics: {{address: 127.0.0.1:8080}}"),
        "metrics.address: 127.0.0.1:8080 is also a listener",
    );
}

#[test]
fn admin_section_rules() {
    let ok = format!("{GOOD}\nadmin: {{address: 127.0.0.1:9900, state_file: /tmp/s.json}}");
    let c = Config::parse_str(&ok, "t.yaml").unwrap();
    c.validate("t.yaml").unwrap();
    assert_eq!(c.admin.unwrap().state_file.as_deref(), Some("/tmp/s.json"));
    assert_error(
        &format!("{GOOD}\nadmin: {{address: 0.0.0.0:9900}}"),
        "admin.address: 0.0.0.0:9900 is not a loopback address: set token",
    );
    let with_token = format!("{GOOD}\nadmin: {{address: 0.0.0.0:9900, token: s3cret}}");
    Config::parse_str(&with_token, "t.yaml")
        .unwrap()
        .validate("t.yaml")
        .unwrap();
    assert_error(
        &format!("{GOOD}\nadmin: {{address: 127.0.0.1:9900, token: a, token_env: B}}"),
        "admin.token_env: set token or token_env, not both",
    );
    assert_error(
        &format!("{GOOD}\nadmin: {{address: 10.0.0.1:9900, token_env: LB_TEST_SURELY_UNSET_VAR}}"),
        "admin.token_env: the environment variable LB_TEST_SURELY_UNSET_VAR is not set",
    );
    assert_error(
        &format!("{GOOD}\nadmin: {{address: 127.0.0.1:9900, token: \"a b\"}}"),
        "admin.token: the token must be non-empty",
    );
    assert_error(
        &format!("{GOOD}\nadmin: {{address: 127.0.0.1:8080}}"),
        "admin.address: 127.0.0.1:8080 is also a listener",
    );
    assert_error(
        &format!("{GOOD}\nadmin: {{address: 127.0.0.1:9900, tokn: x}}"),
        "admin.tokn: unknown field `tokn`",
    );
}

#[test]
fn lingering_has_nginxs_defaults_and_can_be_turned_off() {
    let config = Config::parse_str(GOOD, "t.yaml").unwrap();
    let c = &config.clients;
    assert_eq!(
        (c.lingering_time.0, c.lingering_timeout.0, c.lingering_size.0),
        (
            std::time::Duration::from_secs(30),
            std::time::Duration::from_secs(5),
            64 << 20
        )
    );
    let with = |c: &str| format!("{GOOD}clients: {c}\n");
    let off = Config::parse_str(&with("{lingering_time: 0s, lingering_timeout: 0s}"), "t.yaml").unwrap();
    off.validate("t.yaml").unwrap();
    assert_error(
        &with("{lingering_timeout: 0s}"),
        "clients.lingering_timeout: must be longer than 0 (turn lingering off with lingering_time: 0s)",
    );
    assert_error(&with("{lingering_size: lots}"), "clients.lingering_size");
}

#[test]
fn hostile_client_limits_have_their_defaults_and_refuse_what_http2_cannot_take() {
    let config = Config::parse_str(GOOD, "t.yaml").unwrap();
    let c = &config.clients;
    assert_eq!(
        (c.handshake_timeout.0, c.send_timeout.0, c.body_min_rate.0),
        (
            std::time::Duration::from_secs(10),
            std::time::Duration::from_secs(60),
            500
        )
    );
    assert_eq!(c.http2, crate::config::Http2Conf::default());
    assert_eq!(c.http2.max_concurrent_streams, 100);
    let with = |c: &str| format!("{GOOD}clients: {c}\n");
    for (clients, error) in [
        (
            "{handshake_timeout: 0s}",
            "clients.handshake_timeout: must be longer than 0",
        ),
        ("{send_timeout: 0s}", "clients.send_timeout: must be longer than 0"),
        (
            "{http2: {max_concurrent_streams: 0}}",
            "clients.http2.max_concurrent_streams: must be from 1 to 2147483647",
        ),
        (
            "{http2: {max_header_list_size: 10}}",
            "clients.http2.max_header_list_size: must be from 1KiB to 16MiB",
        ),
        (
            "{http2: {header_table_size: 2MiB}}",
            "clients.http2.header_table_size: must be at most 1MiB",
        ),
        (
            "{http2: {max_pending_resets: 0}}",
            "clients.http2.max_pending_resets: must be at least 1",
        ),
        (
            "{http2: {max_control_frames: 0}}",
            "clients.http2.max_control_frames: must be at least 1",
        ),
        (
            "{http2: {max_streams: 5}}",
            "clients.http2.max_streams: unknown field `max_streams`",
        ),
    ] {
        assert_error(&with(clients), error);
    }
    let off = Config::parse_str(&with("{body_min_rate: 0}"), "t.yaml").unwrap();
    off.validate("t.yaml").unwrap();
}
