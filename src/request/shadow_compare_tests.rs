use super::*;

/// A whole answer with `status`, `headers` and `body`.
fn answer(status: u16, headers: &[(&str, &str)], body: &str) -> Answer {
    let mut map = HeaderMap::new();
    for (name, value) in headers {
        let name = HeaderName::from_bytes(name.as_bytes()).expect("name");
        map.append(name, value.parse().expect("value"));
    }
    Answer {
        status,
        headers: map,
        body: Bytes::copy_from_slice(body.as_bytes()),
        body_whole: true,
    }
}

fn json(body: &str) -> Answer {
    answer(200, &[("content-type", "application/json")], body)
}

fn strings(items: &[&str]) -> Vec<String> {
    items.iter().map(|s| s.to_string()).collect()
}

fn compare(status: bool, headers: &[&str], body: BodyMode, ignore: &[&str]) -> Compare {
    Compare::new(status, &strings(headers), body, &strings(ignore)).expect("compare")
}

/// `$.timestamp` and `$.request_id` ignored, as in issue 22's example.
fn json_compare() -> Compare {
    compare(
        true,
        &["Content-Type"],
        BodyMode::Json,
        &["$.timestamp", "$.request_id"],
    )
}

/// The paths of the body difference of `a` and `b` under [`json_compare`].
fn paths(a: &str, b: &str) -> Vec<String> {
    json_compare()
        .diff(&json(a), &json(b))
        .map(|d| d.paths)
        .unwrap_or_default()
}

#[test]
fn an_ignored_timestamp_agrees() {
    let a = json(r#"{"service":"demo","timestamp":1700000000000,"request_id":"a1"}"#);
    let b = json(r#"{"service":"demo","timestamp":1700000000999,"request_id":"b2"}"#);
    assert_eq!(json_compare().diff(&a, &b), None);
    // Absent on one side is ignored too.
    assert_eq!(json_compare().diff(&a, &json(r#"{"service":"demo"}"#)), None);
}

#[test]
fn a_changed_field_gives_its_path() {
    let a = r#"{"items":[{"id":1,"price":10},{"id":2,"price":20}],"timestamp":1}"#;
    let b = r#"{"items":[{"id":1,"price":10},{"id":2,"price":25}],"timestamp":2}"#;
    let diff = json_compare().diff(&json(a), &json(b)).expect("a difference");
    assert_eq!(diff.kind, Kind::Body);
    assert_eq!(diff.statuses, (200, 200));
    assert!(diff.headers.is_empty());
    assert_eq!(diff.paths, ["$.items[1].price"]);
}

#[test]
fn key_order_and_number_spelling_do_not_matter() {
    let a = r#"{"a":1,"b":{"x":[1.5,2],"y":null},"c":100}"#;
    let b = r#" { "c" : 1e2, "b" : { "y":null, "x":[ 1.50, 2.0 ] }, "a" : 1.0 } "#;
    assert_eq!(paths(a, b), Vec::<String>::new());
    assert_eq!(paths(r#"{"n":-3}"#, r#"{"n":-3.0}"#), Vec::<String>::new());
    assert_eq!(paths(r#"{"n":1}"#, r#"{"n":"1"}"#), ["$.n"]);
    assert_eq!(
        paths(r#"{"n":18446744073709551615}"#, r#"{"n":18446744073709551614}"#),
        ["$.n"]
    );
}

#[test]
fn keys_on_one_side_and_array_lengths_differ_at_their_paths() {
    assert_eq!(paths(r#"{"a":1,"b":2}"#, r#"{"a":1,"c":2}"#), ["$.b", "$.c"]);
    assert_eq!(paths(r#"{"l":[1,2]}"#, r#"{"l":[1,2,3,4]}"#), ["$.l[2]"]);
    assert_eq!(paths(r#"{"l":[1,9,3]}"#, r#"{"l":[1,2]}"#), ["$.l[1]", "$.l[2]"]);
    assert_eq!(paths(r#"{"l":[]}"#, r#"{"l":{}}"#), ["$.l"]);
    assert_eq!(paths("[1]", "2"), ["$"]);
    assert_eq!(
        paths(r#"{"odd key":1,"it's":1,"2x":1}"#, "{}"),
        ["$['2x']", r"$['it\'s']", "$['odd key']"]
    );
}

#[test]
fn ignored_paths_with_wildcards_and_indexes() {
    let c = compare(
        false,
        &[],
        BodyMode::Json,
        &["$.items[*].at", "$.list[0]", "$['odd key']", "$.m.*"],
    );
    let a = json(r#"{"items":[{"id":1,"at":5},{"id":2,"at":6}],"list":[7,8],"odd key":1,"m":{"p":1}}"#);
    let b = json(r#"{"items":[{"id":1,"at":9},{"id":2}],"list":[0,8],"odd key":2,"m":{"q":2}}"#);
    assert_eq!(c.diff(&a, &b), None);
    let b = json(r#"{"items":[{"id":1},{"id":3}],"list":[0,9],"m":{}}"#);
    assert_eq!(c.diff(&a, &b).expect("differs").paths, ["$.items[1].id", "$.list[1]"]);
}

#[test]
fn at_most_ten_paths() {
    let a: Vec<String> = (0..50).map(|i| format!("\"k{i:02}\":{i}")).collect();
    let b: Vec<String> = (0..50).map(|i| format!("\"k{i:02}\":{}", i + 1)).collect();
    let found = paths(&format!("{{{}}}", a.join(",")), &format!("{{{}}}", b.join(",")));
    assert_eq!(found.len(), MAX_PATHS);
    assert_eq!(found[0], "$.k00");
}

#[test]
fn a_body_that_is_not_json_is_compared_as_bytes() {
    assert_eq!(json_compare().diff(&json("plain"), &json("plain")), None);
    assert_eq!(json_compare().diff(&json(""), &json("")), None);
    assert_eq!(paths("plain", "other"), ["$"]);
    assert_eq!(paths(r#"{"a":1}"#, "{\"a\":1"), ["$"]);
}

#[test]
fn header_names_are_case_insensitive_and_missing_differs() {
    let c = compare(
        true,
        &["Content-Type", "X-Version", "x-version", "X-Absent"],
        BodyMode::None,
        &[],
    );
    let a = answer(200, &[("content-type", "text/plain"), ("x-version", "1")], "a");
    let b = answer(200, &[("Content-Type", "text/plain"), ("X-VERSION", "1")], "b");
    assert_eq!(c.diff(&a, &b), None);
    let b = answer(200, &[("content-type", "text/html")], "b");
    let diff = c.diff(&a, &b).expect("differs");
    assert_eq!(diff.kind, Kind::Header);
    assert_eq!(diff.headers, ["content-type", "x-version"]);
    assert!(diff.paths.is_empty());
    // Every value of a repeated header counts, in order.
    let two = answer(
        200,
        &[("content-type", "text/plain"), ("x-version", "1"), ("x-version", "2")],
        "",
    );
    assert_eq!(c.diff(&a, &two).expect("differs").headers, ["x-version"]);
}

#[test]
fn a_status_difference_wins_over_body_and_header_differences() {
    let a = answer(200, &[("content-type", "application/json")], r#"{"a":1}"#);
    let b = answer(500, &[("content-type", "text/plain")], r#"{"a":2}"#);
    let diff = json_compare().diff(&a, &b).expect("differs");
    assert_eq!(diff.kind, Kind::Status);
    assert_eq!(diff.statuses, (200, 500));
    assert_eq!(diff.headers, ["content-type"]);
    assert_eq!(diff.paths, ["$.a"]);
    // Statuses not compared: the header comes first.
    let c = compare(false, &["content-type"], BodyMode::Json, &[]);
    assert_eq!(c.diff(&a, &b).expect("differs").kind, Kind::Header);
    assert_eq!(compare(false, &[], BodyMode::None, &[]).diff(&a, &b), None);
}

#[test]
fn hash_mode_compares_bytes() {
    let c = compare(true, &[], BodyMode::Hash, &[]);
    assert_eq!(c.diff(&json(r#"{"a":1}"#), &json(r#"{"a":1}"#)), None);
    let diff = c
        .diff(&json(r#"{"a":1,"b":2}"#), &json(r#"{"b":2,"a":1}"#))
        .expect("differs");
    assert_eq!((diff.kind, diff.paths), (Kind::Body, vec!["$".to_string()]));
}

#[test]
fn a_body_that_is_not_whole_is_not_compared() {
    for mode in [BodyMode::Hash, BodyMode::Json] {
        let c = compare(true, &["content-type"], mode, &[]);
        let mut a = json(r#"{"a":1,"b":"#);
        a.body_whole = false;
        assert_eq!(c.diff(&a, &json(r#"{"a":2}"#)), None, "{mode:?}");
        assert_eq!(c.diff(&json(r#"{"a":2}"#), &a), None, "{mode:?}");
        let mut b = answer(503, &[], "x");
        b.body_whole = false;
        let diff = c.diff(&a, &b).expect("the status still differs");
        assert_eq!(
            (diff.kind, diff.headers, diff.paths),
            (Kind::Status, strings(&["content-type"]), vec![])
        );
    }
}

#[test]
fn the_difference_serialises_kind_as_its_label() {
    let diff = json_compare()
        .diff(&json(r#"{"a":1}"#), &json(r#"{"a":2}"#))
        .expect("differs");
    let text = serde_json::to_string(&diff).expect("serialise");
    assert_eq!(
        text,
        r#"{"kind":"body","statuses":[200,200],"headers":[],"paths":["$.a"]}"#
    );
    let labels: Vec<&str> = Kind::ALL.iter().map(|k| k.label()).collect();
    assert_eq!(labels, ["status", "header", "body"]);
}

#[test]
fn body_modes_read_their_config_names() {
    for (text, mode) in [
        ("none", BodyMode::None),
        ("hash", BodyMode::Hash),
        ("json", BodyMode::Json),
    ] {
        assert_eq!(serde_yaml::from_str::<BodyMode>(text).expect("mode"), mode);
        assert_eq!(mode.name(), text);
        assert_eq!(compare(true, &[], mode, &[]).body_mode(), mode);
    }
    assert!(serde_yaml::from_str::<BodyMode>("JSON").is_err());
    assert_eq!(BodyMode::default(), BodyMode::None);
}

#[test]
fn new_refuses_bad_headers_paths_and_ignore_without_json() {
    let err = |headers: &[&str], body, ignore: &[&str]| {
        Compare::new(true, &strings(headers), body, &strings(ignore)).expect_err("refused")
    };
    assert_eq!(
        err(&["bad name"], BodyMode::None, &[]),
        r#""bad name" is not a header name"#
    );
    assert_eq!(
        err(&[], BodyMode::Json, &["$.a", "timestamp"]),
        r#"JSON path "timestamp": a path starts with '$'"#
    );
    assert_eq!(
        err(&[], BodyMode::Hash, &["$.a"]),
        "ignore needs body: json (with body: hash, no JSON is compared)"
    );
}

#[test]
fn paths_parse_and_print_back() {
    for text in [
        "$.a.b",
        "$.a[0]",
        "$.a[*].b",
        "$['odd key']",
        "$[3]",
        "$.a-b_c.é",
        r"$['it\'s']",
        "$['\\u0001']",
    ] {
        let path = JsonPath::parse(text).expect(text);
        assert_eq!(path.to_string(), text);
    }
    let same = |a: &str, b: &str| assert_eq!(JsonPath::parse(a).expect(a), JsonPath::parse(b).expect(b));
    same("$.*", "$[*]");
    same(r#"$["a"]"#, "$.a");
    same(r#"$['a\"\/\n']"#, "$['a\"/\\u000a']");
    same("$['2x']", "$['\\u0032x']");
}

#[test]
fn bad_paths_say_what_is_wrong() {
    let cases = [
        (
            "$",
            "'$' alone is the whole body; to leave bodies out, write body: none",
        ),
        ("", "a path starts with '$'"),
        ("a.b", "a path starts with '$'"),
        ("$a", "'a' at byte 1 is not '.' or '['"),
        (
            "$.",
            "'.' at byte 1 needs a name (letters, digits, '_', '-'), not the end; write ['...'] for other keys",
        ),
        ("$.a b", "' ' at byte 3 is not '.' or '['"),
        ("$..a", "'..' at byte 1 (descendants) is not supported"),
        ("$.a[", "'[' at byte 3 needs an index, '*' or a quoted key"),
        ("$.a[1", "'[' at byte 3 needs ']' at byte 5, the path ends"),
        ("$.a[1x]", "'[' at byte 3 needs ']' at byte 5, not 'x'"),
        ("$.a[-1]", "'[-' at byte 3: negative indexes are not supported"),
        (
            "$[99999999999999999999999]",
            "index 99999999999999999999999 at byte 2 is too large",
        ),
        ("$['a", "the quoted key of '[' at byte 1 is not closed"),
        (
            r"$['a\q']",
            r#"the escape at byte 4 is not one of \\ \' \" \/ \b \f \n \r \t \uXXXX"#,
        ),
        (
            r"$['\ud800']",
            "the escape at byte 3 needs four hex digits of a character (not a surrogate)",
        ),
        (
            r"$['\u12']",
            "the escape at byte 3 needs four hex digits of a character (not a surrogate)",
        ),
    ];
    for (text, what) in cases {
        let err = JsonPath::parse(text).expect_err(text);
        assert_eq!(err, format!("JSON path {text:?}: {what}"));
    }
    assert!(JsonPath::parse(&format!("${}", ".a".repeat(129))).is_err());
    assert!(JsonPath::parse(&format!("${}", ".a".repeat(128))).is_ok());
}
