//! Property tests of [`super`] (shadow_compare.rs), from fixed seeds so a failure replays:
//!
//! - JSON documents written with shuffled keys, spaces and other spellings of their numbers,
//!   some mutated: the comparison finds a difference exactly when an oracle that restates value
//!   equality (numbers by value, members by key, no paths, no ignore) says they differ.
//! - Every path a difference reports parses, and ignoring the reported paths, round after
//!   round, makes the documents agree without a path ever being reported twice.
//! - Mutated and random bytes as bodies, in every mode, whole or not, with random ignore
//!   paths: no panic, an answer agrees with itself, and whether two answers differ (and how)
//!   does not depend on which is the baseline.
//! - Random path texts: `JsonPath::parse` never panics, and what it accepts prints back to a
//!   text that parses to the same path; paths built from random steps (any key) round-trip.

use super::*;
use crate::config::json_path::Step;
use crate::testing::rng::XorShift;

/// Keys of the generated documents: plain and odd ones, so paths take both notations.
const KEYS: [&str; 9] = ["a", "b", "id", "price", "odd key", "it's", "2x", "é", "a\\b\n"];

/// A random document at most 4 levels deep; numbers are small integers and quarters, which
/// every spelling (`2`, `2.0`, `2e0`) writes exactly.
fn document(rng: &mut XorShift, depth: usize) -> Value {
    match rng.below(if depth >= 4 { 4 } else { 7 }) {
        0 => Value::Null,
        1 => Value::Bool(rng.below(2) == 0),
        2 => number(rng),
        3 => Value::from(*rng.pick(&["x", "y", ""])),
        4 => Value::Array((0..rng.below(4)).map(|_| document(rng, depth + 1)).collect()),
        _ => Value::Object(
            (0..rng.below(4))
                .map(|_| (rng.pick(&KEYS).to_string(), document(rng, depth + 1)))
                .collect(),
        ),
    }
}

fn number(rng: &mut XorShift) -> Value {
    let n = rng.below(7) as i64 - 3;
    if rng.below(2) == 0 {
        Value::from(n)
    } else {
        Value::from(n as f64 / 4.0)
    }
}

/// `value` as JSON text, members in a random order, numbers spelt one of three ways.
fn write(rng: &mut XorShift, value: &Value, out: &mut String) {
    match value {
        Value::Number(n) => {
            let f = n.as_f64().unwrap_or(0.0);
            let text = match rng.below(3) {
                0 => n.to_string(),
                1 => format!("{f:?}"),
                _ => format!("{f:e}"),
            };
            out.push_str(&text);
        }
        Value::Array(items) => {
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                out.push_str(if i == 0 { " " } else { ", " });
                write(rng, item, out);
            }
            out.push(']');
        }
        Value::Object(map) => {
            let mut members: Vec<_> = map.iter().collect();
            for i in (1..members.len()).rev() {
                members.swap(i, rng.below(i + 1));
            }
            out.push('{');
            for (i, (key, item)) in members.into_iter().enumerate() {
                out.push_str(if i == 0 { "" } else { " ,\n" });
                out.push_str(&Value::from(key.as_str()).to_string());
                out.push(':');
                write(rng, item, out);
            }
            out.push('}');
        }
        other => out.push_str(&other.to_string()),
    }
}

fn written(rng: &mut XorShift, value: &Value) -> String {
    let mut out = String::new();
    write(rng, value, &mut out);
    out
}

/// Changes one node of `value`: a new value, or a member or element more or less.
fn mutate(rng: &mut XorShift, value: &mut Value) {
    let go_down = rng.below(3) != 0;
    match value {
        Value::Object(map) if go_down && !map.is_empty() => {
            let key = rng.pick(&map.keys().cloned().collect::<Vec<_>>()).clone();
            if let Some(child) = map.get_mut(&key) {
                mutate(rng, child);
            }
        }
        Value::Array(items) if go_down && !items.is_empty() => {
            let i = rng.below(items.len());
            mutate(rng, &mut items[i]);
        }
        Value::Object(map) if rng.below(2) == 0 => {
            let key = rng.pick(&KEYS).to_string();
            if map.remove(&key).is_none() {
                map.insert(key, document(rng, 3));
            }
        }
        Value::Array(items) if rng.below(2) == 0 => match items.pop() {
            Some(_) => {}
            None => items.push(document(rng, 3)),
        },
        other => *other = document(rng, 2),
    }
}

/// The oracle: the same value, numbers by value and members by key.
fn same(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => x.as_f64() == y.as_f64(),
        (Value::Array(x), Value::Array(y)) => x.len() == y.len() && x.iter().zip(y).all(|(a, b)| same(a, b)),
        (Value::Object(x), Value::Object(y)) => {
            x.len() == y.len() && x.iter().all(|(key, a)| y.get(key).is_some_and(|b| same(a, b)))
        }
        _ => a == b,
    }
}

fn whole(status: u16, body: impl Into<Bytes>) -> Answer {
    Answer {
        status,
        headers: HeaderMap::new(),
        body: body.into(),
        body_whole: true,
    }
}

fn json_compare(ignore: &[String]) -> Compare {
    Compare::new(false, &[], BodyMode::Json, ignore).expect("compare")
}

#[test]
fn json_differences_match_the_oracle() {
    let mut rng = XorShift(0x5AD0_C0A1_E5CE_0022);
    let mut differed = 0;
    for round in 0..3000 {
        let a = document(&mut rng, 0);
        let mut b = a.clone();
        for _ in 0..rng.below(3) {
            mutate(&mut rng, &mut b);
        }
        let (text_a, text_b) = (written(&mut rng, &a), written(&mut rng, &b));
        let parsed: Value = serde_json::from_str(&text_a).expect(&text_a);
        assert!(same(&parsed, &a), "round {round}: {text_a} does not read back");
        let diff = json_compare(&[]).diff(&whole(200, text_a.clone()), &whole(200, text_b.clone()));
        assert_eq!(
            diff.is_some(),
            !same(&a, &b),
            "round {round}: {text_a} against {text_b}: {diff:?}"
        );
        if let Some(diff) = diff {
            differed += 1;
            assert!(
                !diff.paths.is_empty() && diff.paths.len() <= MAX_PATHS,
                "round {round}: {diff:?}"
            );
            ignoring_the_paths_agrees(round, &text_a, &text_b, diff.paths);
        }
    }
    assert!(
        differed > 1000,
        "only {differed} of 3000 pairs differed: the mutations are too weak"
    );
}

/// Adds the reported paths to `ignore` until the documents agree; a path is never reported
/// once it is ignored. A difference at the root (`$`) cannot be ignored.
fn ignoring_the_paths_agrees(round: usize, a: &str, b: &str, mut paths: Vec<String>) {
    let mut ignore: Vec<String> = Vec::new();
    for _ in 0..200 {
        if paths.iter().any(|p| p == "$") {
            return;
        }
        for path in &paths {
            assert!(
                JsonPath::parse(path).is_ok(),
                "round {round}: reported {path:?} does not parse"
            );
            assert!(!ignore.contains(path), "round {round}: {path} reported while ignored");
        }
        ignore.extend(paths);
        match json_compare(&ignore).diff(&whole(200, a.to_string()), &whole(200, b.to_string())) {
            None => return,
            Some(diff) => paths = diff.paths,
        }
    }
    panic!("round {round}: {a} against {b} still differ ignoring {ignore:?}");
}

/// A random path text: a valid one mutated, or characters of paths at random.
fn path_text(rng: &mut XorShift) -> String {
    const SEEDS: [&str; 6] = [
        "$.a.b",
        "$.items[*].price",
        "$['odd key']",
        "$[12].x",
        r"$['\u00e9\'']",
        "$.*",
    ];
    const INTERESTING: &[u8] = b"$.[]*'\"\\u0123456789abcdef-_ \xc3\xa9";
    let mut bytes = rng.pick(&SEEDS).as_bytes().to_vec();
    if rng.below(4) == 0 {
        bytes = (0..rng.below(12)).map(|_| *rng.pick(INTERESTING)).collect();
    }
    rng.mutate(&mut bytes, INTERESTING, 6);
    String::from_utf8_lossy(&bytes).into_owned()
}

#[test]
fn path_texts_never_panic_and_what_parses_prints_back() {
    let mut rng = XorShift(0x0BAD_9A7B_0022_0001);
    let mut accepted = 0;
    for round in 0..20_000 {
        let text = path_text(&mut rng);
        if let Ok(path) = JsonPath::parse(&text) {
            accepted += 1;
            let printed = path.to_string();
            assert_eq!(
                JsonPath::parse(&printed).as_ref(),
                Ok(&path),
                "round {round}: {text:?} printed {printed:?}"
            );
        }
    }
    assert!(accepted > 2000, "only {accepted} of 20000 texts parsed");
}

#[test]
fn paths_of_any_keys_round_trip() {
    let mut rng = XorShift(0x0BAD_9A7B_0022_0002);
    let chars = [
        'a', 'Z', '0', '_', '-', ' ', '.', '\'', '"', '\\', '[', ']', '*', '$', 'é', '\n', '\u{1}', '\u{85}', '😀',
    ];
    for round in 0..5000 {
        let steps: Vec<Step> = (0..1 + rng.below(4))
            .map(|_| match rng.below(3) {
                0 => Step::Any,
                1 => Step::Index(rng.below(1000)),
                _ => Step::Key((0..rng.below(5)).map(|_| *rng.pick(&chars)).collect()),
            })
            .collect();
        let path = JsonPath(steps);
        let printed = path.to_string();
        assert_eq!(
            JsonPath::parse(&printed).as_ref(),
            Ok(&path),
            "round {round}: {printed:?}"
        );
    }
}

/// A body for the no-panic rounds: a document, mutated as bytes, or random bytes.
fn body(rng: &mut XorShift) -> Vec<u8> {
    const INTERESTING: &[u8] = b"{}[],:\"\\0123456789.eE+-tnulfrs \n\xff\xc3";
    let document = document(rng, 0);
    let mut bytes = written(rng, &document).into_bytes();
    match rng.below(3) {
        0 => {}
        1 => rng.mutate(&mut bytes, INTERESTING, 8),
        _ => bytes = (0..rng.below(64)).map(|_| rng.next() as u8).collect(),
    }
    bytes
}

fn random_answer(rng: &mut XorShift) -> Answer {
    let mut answer = whole(*rng.pick(&[200, 200, 404, 500]), body(rng));
    answer.body_whole = rng.below(5) != 0;
    for _ in 0..rng.below(3) {
        let name = *rng.pick(&["content-type", "x-version", "etag"]);
        answer
            .headers
            .append(name, (*rng.pick(&["a", "b"])).parse().expect("value"));
    }
    answer
}

fn random_compare(rng: &mut XorShift) -> Compare {
    let headers: Vec<String> = ["Content-Type", "X-Version", "X-Absent"]
        .iter()
        .take(rng.below(4))
        .map(|s| s.to_string())
        .collect();
    let body = *rng.pick(&[BodyMode::None, BodyMode::Hash, BodyMode::Json]);
    let mut ignore = Vec::new();
    if body == BodyMode::Json {
        ignore = (0..rng.below(4))
            .map(|_| path_text(rng))
            .filter(|t| JsonPath::parse(t).is_ok())
            .collect();
    }
    Compare::new(rng.below(2) == 0, &headers, body, &ignore).expect("compare")
}

#[test]
fn any_bytes_agree_with_themselves_and_compare_symmetrically() {
    let mut rng = XorShift(0x0BAD_B0D1_E500_0022);
    for round in 0..5000 {
        let compare = random_compare(&mut rng);
        let (a, b) = (random_answer(&mut rng), random_answer(&mut rng));
        assert_eq!(compare.diff(&a, &a), None, "round {round}: {a:?} under {compare:?}");
        let (ab, ba) = (compare.diff(&a, &b), compare.diff(&b, &a));
        assert_eq!(
            ab.as_ref().map(|d| d.kind),
            ba.as_ref().map(|d| d.kind),
            "round {round}"
        );
        if let (Some(ab), Some(ba)) = (ab, ba) {
            assert_eq!(ab.headers, ba.headers, "round {round}");
            assert_eq!(ab.paths.is_empty(), ba.paths.is_empty(), "round {round}");
            assert_eq!(ab.statuses, (ba.statuses.1, ba.statuses.0), "round {round}");
        }
    }
}
