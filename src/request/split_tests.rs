use super::*;
use crate::config::Config;
use crate::request::member::AdminState;

/// Pools `api` and `canary` (one backend each) from a small configuration.
fn pools() -> (Arc<Pool>, Arc<Pool>) {
    let yaml = "listeners: [{address: 127.0.0.1:1}]
upstreams:
  api: {backends: [{address: 127.0.0.1:2}]}
  canary: {backends: [{address: 127.0.0.1:3}]}
";
    let config = Config::parse_str(yaml, "test.yaml").expect("config");
    let pool = |name: &str| Arc::new(Pool::from_config(name, &config.upstreams[name]).expect("pool"));
    (pool("api"), pool("canary"))
}

fn split(weights: [u32; 2], by: Option<SplitBy>) -> Split {
    let (api, canary) = pools();
    let sides = vec![
        ("api".to_string(), api, weights[0]),
        ("canary".to_string(), canary, weights[1]),
    ];
    Split::new("main", sides, by)
}

fn req(headers: &[(&str, &str)]) -> RequestHeader {
    let mut r = RequestHeader::build("GET", b"/", None).expect("request");
    for (name, value) in headers {
        r.append_header(name.to_string(), *value).expect("header");
    }
    r
}

/// How many of `n` requests of `req` each side gets.
fn shares(s: &Split, n: usize, req: &RequestHeader) -> [usize; 2] {
    let mut out = [0; 2];
    for _ in 0..n {
        out[s.choose(req, None).side] += 1;
    }
    out
}

/// Puts every backend of side `i`'s pool in maintenance: the side has no usable backend.
fn take_down(s: &Split, i: usize) {
    for state in s.sides()[i].pool.states().all() {
        state.set_admin(AdminState::Maint);
    }
}

#[test]
fn shares_follow_the_weights_exactly_and_interleave() {
    let s = split([80, 20], None);
    assert_eq!(shares(&s, 1000, &req(&[])), [800, 200]);
    // Smooth: never more than four api requests in a row at 80/20.
    let picks: Vec<usize> = (0..50).map(|_| s.choose(&req(&[]), None).side).collect();
    assert!(picks.windows(5).all(|w| w.contains(&1)), "{picks:?}");
}

#[test]
fn a_side_of_weight_0_takes_nothing_and_new_weights_hold_at_once() {
    let s = split([1, 0], None);
    assert_eq!(shares(&s, 100, &req(&[])), [100, 0]);
    s.set_weights(&[1, 3]);
    assert_eq!(s.weights(), [1, 3]);
    assert_eq!(shares(&s, 100, &req(&[])), [25, 75]);
}

#[test]
fn a_side_without_a_usable_backend_is_passed_over() {
    let s = split([50, 50], None);
    take_down(&s, 1);
    assert_eq!(shares(&s, 100, &req(&[])), [100, 0]);
    // Neither side usable: the weights decide, and the pools answer for themselves.
    take_down(&s, 0);
    assert_eq!(shares(&s, 100, &req(&[])), [50, 50]);
}

#[test]
fn the_cookie_keeps_a_client_on_its_side() {
    let s = split([50, 50], Some(SplitBy::Cookie("lb_split".into())));
    let first = s.choose(&req(&[]), None);
    assert!(first.set_cookie);
    let cookie = s.cookie(first.side).expect("a cookie");
    assert!(
        cookie.starts_with("lb_split=") && cookie.contains("Max-Age=86400"),
        "{cookie}"
    );
    let value = cookie
        .trim_start_matches("lb_split=")
        .split(';')
        .next()
        .unwrap_or_default();
    assert!(!value.contains("api") && !value.contains("canary"), "opaque: {value}");
    let back = req(&[("cookie", &format!("other=1; lb_split={value}"))]);
    for _ in 0..20 {
        assert_eq!(
            s.choose(&back, None),
            Choice {
                side: first.side,
                set_cookie: false
            }
        );
    }
    // A value lb did not set is chosen anew, and replaced.
    assert!(s.choose(&req(&[("cookie", "lb_split=nonsense")]), None).set_cookie);
    // The kept side goes down: the client moves, with a new cookie.
    take_down(&s, first.side);
    let moved = s.choose(&back, None);
    assert_eq!(
        moved,
        Choice {
            side: 1 - first.side,
            set_cookie: true
        }
    );
}

#[test]
fn cookie_ids_are_stable_and_differ_by_route_and_side() {
    assert_eq!(side_id("main", "api"), side_id("main", "api"));
    assert_ne!(side_id("main", "api"), side_id("main", "canary"));
    assert_ne!(side_id("main", "api"), side_id("other", "api"));
    // The split in another process (another instance, after an upgrade) reads the same cookie.
    let a = split([1, 1], Some(SplitBy::Cookie("c".into())));
    let b = split([1, 1], Some(SplitBy::Cookie("c".into())));
    assert_eq!(a.cookie(1), b.cookie(1));
}

#[test]
fn a_hash_key_keeps_a_key_on_its_side_and_spreads_keys_by_weight() {
    let header = http::HeaderName::from_static("x-user");
    let s = split([80, 20], Some(SplitBy::Key(HashKey::Header(header))));
    let mut counts = [0usize; 2];
    for user in 0..10_000 {
        let r = req(&[("x-user", &format!("user-{user}"))]);
        let side = s.choose(&r, None).side;
        assert_eq!(s.choose(&r, None).side, side, "user-{user} moved");
        counts[side] += 1;
    }
    assert!((7_700..=8_300).contains(&counts[0]), "{counts:?}");
    // Without the key, requests are spread by weight.
    assert_eq!(shares(&s, 100, &req(&[])), [80, 20]);
}

#[test]
fn a_hash_key_moves_only_the_keys_of_a_side_that_goes_and_they_come_back() {
    let header = http::HeaderName::from_static("x-user");
    let s = split([50, 50], Some(SplitBy::Key(HashKey::Header(header))));
    let users: Vec<RequestHeader> = (0..200).map(|u| req(&[("x-user", &format!("u{u}"))])).collect();
    let sides = |s: &Split| users.iter().map(|r| s.choose(r, None).side).collect::<Vec<_>>();
    let before = sides(&s);
    assert!(before.contains(&0) && before.contains(&1), "{before:?}");
    take_down(&s, 1);
    assert!(sides(&s).iter().all(|&side| side == 0));
    for state in s.sides()[1].pool.states().all() {
        state.set_admin(AdminState::Ready);
    }
    assert_eq!(sides(&s), before);
}
