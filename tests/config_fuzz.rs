//! Config fuzz: the shipped `conf/lb.yaml`, and a config using every traffic rule, each mutated
//! 300 ways (lines deleted, repeated or
//! re-indented, values of the wrong type, huge or negative numbers and durations, empty lists,
//! non-ASCII, the file cut short) and each checked with `lb -t`: it never panics or hangs; it
//! says the file is valid and exits 0, or prints one line naming the file and where the mistake
//! is (a field path, a line and column, or the field in backquotes) and exits 1.

mod common;

use common::rng::XorShift;
use common::{crate_dir, run_lb, TempDir};

const MUTANTS: usize = 300;

/// What a value may be replaced with.
const VALUES: &[&str] = &[
    "[1, 2]",
    "{a: 1}",
    "\"text\"",
    "-5",
    "99999999999999999999999",
    "18446744073709551616",
    "-1s",
    "0",
    "0s",
    "1e400",
    "\"\"",
    "[]",
    "{}",
    "~",
    "yes",
    "ü日本語",
    "\"\\u0000\"",
    "10000000000000d",
    "1.5",
    "&a x",
    "*nowhere",
    "!!binary aGVsbG8=",
    // What traffic rules read: regexes, templates, header names and values, networks, shares.
    "\"^/(.*\"",
    "\"(?P<n>x)${n}$2${\"",
    "\"$\"",
    "\"$$client_ip$host$nope\"",
    "\"a\\r\\nb\"",
    "\"X Bad\"",
    "10.0.0.0/33",
    "\"::ffff:10.0.0.1/120\"",
    "101%",
    "-1%",
    "\"[\\\\\"",
    "{regex: \"(\"}",
    "{present: maybe}",
];

/// One mutation of `text`.
fn mutate(text: &str, rng: &mut XorShift) -> String {
    let mut lines: Vec<String> = text.lines().map(str::to_string).collect();
    let at = rng.below(lines.len());
    match rng.below(8) {
        0 => {
            lines.remove(at);
        }
        1 => {
            let line = lines[at].clone();
            lines.insert(at, line);
        }
        2 => lines[at] = format!(" {}", lines[at]),
        3 => lines[at] = lines[at].trim_start().to_string(),
        4 => {
            // The value of a `key: value` line, replaced.
            let value = rng.pick(VALUES);
            if let Some(colon) = lines[at].find(": ") {
                lines[at] = format!("{}: {value}", &lines[at][..colon]);
            } else {
                lines[at].push_str(value);
            }
        }
        5 => lines[at] = lines[at].replace(|c: char| c.is_ascii_digit(), "9"),
        6 => {
            let cut = text.char_indices().map(|(i, _)| i).nth(rng.below(text.chars().count()));
            return text[..cut.unwrap_or(0)].to_string();
        }
        _ => lines[at] = lines[at].replace('e', "é"),
    }
    let mut out = lines.join("\n");
    out.push('\n');
    out
}

/// Whether the message (after `lb: FILE: `) says where the mistake is.
fn names_where(message: &str) -> bool {
    let path = message
        .split(": ")
        .next()
        .is_some_and(|p| !p.is_empty() && p.chars().all(|c| c.is_alphanumeric() || "._-[]".contains(c)));
    path || message.contains(" line ") || message.contains('`') || message.starts_with("the file ")
}

/// A config using every traffic rule (the htpasswd file is `HTPASSWD`, filled in by the test).
const RULES: &str = r#"listeners: [{address: "127.0.0.1:1"}]
trusted_proxies: [10.0.0.0/8]
request_id: {header: X-Request-Id, keep: trusted}
upstreams:
  api: {backends: [{address: 127.0.0.1:9001}]}
  canary: {backends: [{address: 127.0.0.1:9002}]}
  shadow: {backends: [{address: 127.0.0.1:9003}]}
routes:
  - name: api
    match:
      host: api.example.com
      path_regex: "^/v[0-9]+/users/(?P<id>[0-9]+)$"
      methods: [GET, HEAD, POST]
      headers: {X-Canary: "1", X-Env: {regex: "^(dev|qa)$"}, X-Debug: {present: true}}
      query: {debug: "1"}
    split:
      - {upstream: api, weight: 95}
      - {upstream: canary, weight: 5}
    request:
      rewrite: {regex: "^/v[0-9]+/users/(?P<id>[0-9]+)$", replace: "/users/${id}"}
      set_headers: {Host: internal.api, X-Client: "$client_ip:$remote_port"}
      add_headers: {X-Env: prod, X-Id: "$request_id $scheme $host $$"}
      remove_headers: [X-Internal-Debug]
    response:
      set_headers: {Strict-Transport-Security: "max-age=63072000"}
      remove_headers: [Server, X-Powered-By]
    compress: {algorithms: [zstd, br, gzip], types: [text/*, application/json], min_size: 1KiB}
    mirror: {upstream: shadow, sample: 10%, max_body: 64KiB}
  - name: ops
    match: {path_prefix: /ops/}
    upstream: api
    request: {strip_prefix: /ops}
    access: {allow: [10.0.0.0/8, "2001:db8::/32"], deny: [10.9.0.0/16]}
    basic_auth: {realm: ops, users_file: HTPASSWD}
rollouts:
  - route: ops
    baseline: api
    candidate: canary
    shadow:
      sample: 20%
      duration: 2m
      compare: {status: true, headers: [Content-Type], body: json}
      ignore: [$.timestamp, "$.items[*].id", "$['odd key']"]
      max_divergence: 1%
      max_body: 1MiB
    steps: [1%, 5%, 25%, 50%, 100%]
    step_every: 1m
    split_by: {cookie: lb_rollout}
    gates: {min_requests: 200, max_error_ratio_delta: 0.5%, max_p99_ratio: 1.2}
    on_success: promote
"#;

#[test]
fn lb_t_on_three_hundred_mutants_of_a_config_with_every_rule_and_a_rollout_answers_in_one_line_and_never_panics() {
    let dir = TempDir::new("rules-fuzz");
    let users = dir.path("htpasswd");
    // user "ops", password "ops", bcrypt at cost 4.
    std::fs::write(
        &users,
        "ops:$2y$04$z4Fq3uGyJgZzOAe2nM0b7OXbuR1r3Yw3rC2uEJ0mZb0ki0sHmZ7dS\n",
    )
    .expect("htpasswd");
    let text = RULES.replace("HTPASSWD", &users.display().to_string());
    check_mutants(&text, &dir, XorShift(0x2c_0ffe_e5ed));
}

#[test]
fn lb_t_on_three_hundred_mutants_of_the_shipped_config_answers_in_one_line_and_never_panics() {
    let shipped = std::fs::read_to_string(crate_dir().join("conf/lb.yaml")).expect("conf/lb.yaml");
    let dir = TempDir::new("config-fuzz");
    check_mutants(&shipped, &dir, XorShift(0x1b_f00d_5eed));
}

/// `lb -t` on [`MUTANTS`] mutants of `shipped`: valid, or refused in one line saying where; never
/// a panic or a hang.
fn check_mutants(shipped: &str, dir: &TempDir, mut rng: XorShift) {
    let original = dir.path("original.yaml");
    std::fs::write(&original, shipped).expect("write the original");
    let (status, _, err) = run_lb(&["-t", "-c", &original.display().to_string()]);
    assert!(status.success(), "the original is valid: {err}");
    let (mut valid, mut refused) = (0, 0);
    for i in 0..MUTANTS {
        let mut text = mutate(shipped, &mut rng);
        if rng.below(3) == 0 {
            text = mutate(&text, &mut rng);
        }
        let file = dir.path(&format!("m{i}.yaml"));
        std::fs::write(&file, &text).expect("write the mutant");
        let file = file.display().to_string();
        // run_lb fails the test if lb runs past its limit (a hang).
        let (status, out, err) = run_lb(&["-t", "-c", &file]);
        let replay = || format!("mutant {i} ({file}):\n{text}\nstdout: {out}\nstderr: {err}");
        assert!(!err.contains("panicked"), "a panic: {}", replay());
        if status.success() {
            assert!(out.contains("is valid"), "{}", replay());
            valid += 1;
            continue;
        }
        assert_eq!(status.code(), Some(1), "{}", replay());
        let lines: Vec<&str> = err.lines().filter(|l| !l.trim().is_empty()).collect();
        assert_eq!(lines.len(), 1, "one line: {}", replay());
        let message = lines[0].strip_prefix(&format!("lb: {file}: ")).unwrap_or_else(|| {
            panic!("the line names the file: {}", replay());
        });
        assert!(names_where(message), "the line says where: {}", replay());
        refused += 1;
        let _ = std::fs::remove_file(&file);
    }
    // Both kinds occur, so the check means something either way.
    assert!(valid >= 20 && refused >= 100, "{valid} valid, {refused} refused");
}
