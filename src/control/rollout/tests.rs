use super::*;
use crate::config::Config;

fn config(rollouts: &str) -> Config {
    let yaml = format!(
        "listeners: [{{address: 127.0.0.1:0}}]\n\
         upstreams:\n  api: {{backends: [{{address: 127.0.0.1:1}}]}}\n  v2: {{backends: [{{address: 127.0.0.1:2}}]}}\n\
         routes: [{{name: api, upstream: api}}]\n{rollouts}"
    );
    let config: Config = serde_yaml::from_str(&yaml).expect("config");
    config.validate("test.yaml").expect("valid");
    config
}

fn spec(extra: &str) -> RolloutConf {
    let yaml = format!("{{route: api, baseline: api, candidate: v2, steps: [10%, 50%, 100%], step_every: 1s, gates: {{min_requests: 10, max_error_ratio_delta: 1%, max_p99_ratio: 2}}{extra}}}");
    serde_yaml::from_str(&yaml).expect("spec")
}

fn side(requests: u64, errors: u64, p99_ms: f64) -> SideWindow {
    SideWindow {
        requests,
        errors,
        p99_ms: Some(p99_ms),
    }
}

fn figures(baseline: SideWindow, candidate: SideWindow) -> Figures {
    Figures {
        baseline,
        candidate,
        compared: 0,
        diverged: 0,
    }
}

#[test]
fn a_step_waits_for_its_time_and_its_requests_then_advances_and_finishes() {
    let mut state = RolloutState::start(spec(""), false, 1_000, "test");
    assert_eq!((state.phase, state.share()), (Phase::Steps, 1_000));
    let good = figures(side(100, 0, 5.0), side(10, 0, 5.0));
    assert_eq!(decide(&state, &good, 1_500), Decision::Wait, "before step_every");
    let few = figures(side(100, 0, 5.0), side(9, 0, 5.0));
    assert_eq!(decide(&state, &few, 5_000), Decision::Wait, "before min_requests");
    let d = decide(&state, &good, 2_000);
    assert!(matches!(d, Decision::Advance(_)), "{d:?}");
    state.apply(&d, 2_000);
    assert_eq!((state.step, state.share(), state.since_ms), (1, 5_000, 2_000));
    state.apply(&Decision::Advance(String::new()), 3_000);
    let d = decide(&state, &good, 4_000);
    assert!(matches!(d, Decision::Finish(_)), "{d:?}");
    state.apply(&d, 4_000);
    assert_eq!(
        (state.phase, state.share(), state.step_number()),
        (Phase::Promoted, 10_000, 3)
    );
    let events: Vec<&str> = state.history.iter().map(|t| t.event.as_str()).collect();
    assert_eq!(events, ["started", "step", "step", "promoted"]);
}

#[test]
fn errors_or_latency_over_the_baseline_roll_back_at_once() {
    let state = RolloutState::start(spec(""), false, 0, "test");
    let errors = figures(side(1000, 1, 5.0), side(20, 1, 5.0));
    let Decision::RollBack(why) = decide(&state, &errors, 10) else {
        panic!("5% of 5xx against 0.1% must roll back")
    };
    assert!(why.contains("5xx"), "{why}");
    let slow = figures(side(1000, 0, 5.0), side(100, 0, 10.5));
    assert!(matches!(decide(&state, &slow, 10), Decision::RollBack(w) if w.contains("p99")));
    let few = figures(side(1000, 0, 5.0), side(99, 0, 10.5));
    assert_eq!(
        decide(&state, &few, 10),
        Decision::Wait,
        "a p99 over 99 requests is not judged"
    );
    // Within the ratio, or over it by less than the slack: not judged.
    for candidate in [side(20, 0, 9.9), side(20, 0, 0.9)] {
        let f = figures(
            side(1000, 0, if candidate.p99_ms == Some(0.9) { 0.3 } else { 5.0 }),
            candidate,
        );
        assert_eq!(decide(&state, &f, 10), Decision::Wait);
    }
    let mut rolled = state.clone();
    rolled.apply(&decide(&state, &errors, 10), 10);
    assert_eq!(
        (rolled.phase, rolled.share(), rolled.step_number()),
        (Phase::RolledBack, 0, 0)
    );
    assert!(rolled.reason.is_some());
}

#[test]
fn the_shadow_phase_compares_before_any_client_sees_the_candidate() {
    let s = spec(", shadow: {duration: 2s, max_divergence: 5%}");
    let mut state = RolloutState::start(s, false, 0, "test");
    assert_eq!((state.phase, state.share()), (Phase::Shadow, 0));
    let mut f = Figures {
        compared: 9,
        diverged: 9,
        ..Figures::default()
    };
    assert_eq!(decide(&state, &f, 10_000), Decision::Wait, "too few compared to judge");
    f.compared = 100;
    f.diverged = 5;
    assert_eq!(
        decide(&state, &f, 1_000),
        Decision::Wait,
        "5% is allowed; the phase lasts 2s"
    );
    let d = decide(&state, &f, 2_000);
    assert!(matches!(d, Decision::Advance(_)), "{d:?}");
    state.apply(&d, 2_000);
    assert_eq!((state.phase, state.step, state.share()), (Phase::Steps, 0, 1_000));
    let state = RolloutState::start(spec(", shadow: {duration: 2s, max_divergence: 5%}"), false, 0, "t");
    f.diverged = 6;
    assert!(matches!(decide(&state, &f, 1), Decision::RollBack(w) if w.contains("6 of 100")));
}

#[test]
fn a_paused_or_ended_rollout_waits_and_hold_keeps_the_last_split() {
    let mut state = RolloutState::start(spec(", on_success: hold"), false, 0, "test");
    let good = figures(side(100, 0, 5.0), side(100, 0, 5.0));
    state.paused = true;
    assert_eq!(decide(&state, &good, 60_000), Decision::Wait);
    state.paused = false;
    state.step = 2;
    let d = decide(&state, &good, 60_000);
    state.apply(&d, 60_000);
    assert_eq!((state.phase, state.share()), (Phase::Held, 10_000));
    assert_eq!(decide(&state, &good, 120_000), Decision::Wait);
}

#[test]
fn the_files_rollouts_start_once_and_resume_from_their_state() {
    let file = config("rollouts: [{route: api, baseline: api, candidate: v2, steps: [50%, 100%]}]");
    let started = reconcile(&file, &Default::default(), 5, true);
    let state = started.get("api").expect("started");
    assert!(state.from_file && state.phase == Phase::Steps && state.since_ms == 5);
    assert!(
        reconcile(&file, &Default::default(), 5, false).is_empty(),
        "only the driver starts"
    );
    // A kept state resumes, a finished one does not start again.
    let mut kept = started.clone();
    if let Some(s) = kept.get_mut("api") {
        s.step = 1;
    }
    assert_eq!(reconcile(&file, &kept, 99, true), kept);
    if let Some(s) = kept.get_mut("api") {
        s.phase = Phase::Promoted;
    }
    assert_eq!(reconcile(&file, &kept, 99, true), kept);
    assert_eq!(promotions(&file, &kept).get("api").map(String::as_str), Some("v2"));
    assert_eq!(effective(&file, &kept).routes[0].upstream.as_deref(), Some("v2"));
    // Gone from the file while it runs: aborted.
    if let Some(s) = kept.get_mut("api") {
        s.phase = Phase::Steps;
    }
    let without = config("");
    let after = reconcile(&without, &kept, 100, true);
    assert_eq!(after.get("api").map(|s| s.phase), Some(Phase::Aborted));
}

#[test]
fn bad_rollouts_are_refused_with_their_field() {
    let file = config("");
    for (extra, field) in [
        ("route: nope, baseline: api, candidate: v2, steps: [10%]", "route"),
        ("route: api, baseline: v2, candidate: api, steps: [10%]", "baseline"),
        ("route: api, baseline: api, candidate: v3, steps: [10%]", "candidate"),
        ("route: api, baseline: api, candidate: api, steps: [10%]", "candidate"),
        ("route: api, baseline: api, candidate: v2, steps: []", "steps"),
        ("route: api, baseline: api, candidate: v2, steps: [10%, 5%]", "steps[1]"),
        ("route: api, baseline: api, candidate: v2, steps: [0%]", "steps[0]"),
        (
            "route: api, baseline: api, candidate: v2, steps: [10%], gates: {max_p99_ratio: 0.5}",
            "gates.max_p99_ratio",
        ),
        (
            "route: api, baseline: api, candidate: v2, steps: [10%], gates: {min_requests: 0}",
            "gates.min_requests",
        ),
        (
            "route: api, baseline: api, candidate: v2, steps: [10%], step_every: 10ms",
            "step_every",
        ),
        (
            "route: api, baseline: api, candidate: v2, steps: [10%], shadow: {ignore: [timestamp]}",
            "shadow.ignore[0]",
        ),
        (
            "route: api, baseline: api, candidate: v2, steps: [10%], shadow: {compare: {headers: [\"a b\"]}}",
            "shadow.compare.headers[0]",
        ),
    ] {
        let spec: RolloutConf = serde_yaml::from_str(&format!("{{{extra}}}")).expect(extra);
        let (got, msg) = spec.check(&file).expect_err(extra);
        assert_eq!(got, field, "{extra}: {msg}");
    }
    for text in [
        "{route: api, baseline: api, candidate: v2, steps: [150%]}",
        "{route: api, steps: [1%]}",
    ] {
        assert!(serde_yaml::from_str::<RolloutConf>(text).is_err(), "{text}");
    }
}

#[test]
fn a_state_goes_through_json_unchanged() {
    let state = RolloutState::start(
        spec(", split_by: {cookie: lb_rollout}, shadow: {ignore: [$.timestamp], compare: {body: json}}"),
        true,
        7,
        "t",
    );
    let text = serde_json::to_string(&state).expect("json");
    let back: RolloutState = serde_json::from_str(&text).expect(&text);
    assert_eq!(back, state);
}
