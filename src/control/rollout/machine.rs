//! What a rollout does next, decided from its state and the figures of its current window: pure,
//! so that every rule is tested without a clock or a network.
//!
//! - Shadow phase: once `gates.min_requests` pairs were compared, more than `max_divergence`
//!   differing rolls back at once; otherwise the phase ends when `duration` has passed.
//! - Steps: once the candidate answered `gates.min_requests` requests in the step, a share of
//!   5xx more than `max_error_ratio_delta` above the baseline's, or a 99th percentile more than
//!   `max_p99_ratio` times the baseline's (and more than [`P99_SLACK_MS`] above it, both over at
//!   least [`P99_MIN_REQUESTS`]) rolls back at once; otherwise the step ends when `step_every` has passed, and the last one finishes.

use super::{Phase, RolloutState};

/// Differences of 99th percentiles below this are never judged: the histograms' finest bucket
/// is half a millisecond, so smaller ones are noise.
pub const P99_SLACK_MS: f64 = 1.0;

/// A 99th percentile is judged only over at least this many requests on each side: over fewer
/// it is the slowest request or two, not a percentile.
pub const P99_MIN_REQUESTS: u64 = 100;

/// One side's figures over the window.
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize)]
pub struct SideWindow {
    /// Requests answered.
    pub requests: u64,
    /// Of which 5xx.
    pub errors: u64,
    /// Their 99th percentile of response time, in milliseconds.
    pub p99_ms: Option<f64>,
}

impl SideWindow {
    /// Its share of 5xx, in percent (0 without requests).
    pub fn error_percent(&self) -> f64 {
        if self.requests == 0 {
            0.0
        } else {
            self.errors as f64 * 100.0 / self.requests as f64
        }
    }

    fn text(&self) -> String {
        let p99 = self.p99_ms.map_or_else(|| "-".to_string(), |p| format!("{p:.1} ms"));
        format!(
            "{} requests, {:.2}% 5xx, p99 {p99}",
            self.requests,
            self.error_percent()
        )
    }
}

/// The window's figures: both sides since the step began (the baseline's from the last window
/// with enough requests when it has too few now, as at a 100% step), and the shadow's
/// comparisons since the phase began.
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize)]
pub struct Figures {
    /// The baseline.
    pub baseline: SideWindow,
    /// The candidate.
    pub candidate: SideWindow,
    /// Pairs compared in the shadow phase.
    pub compared: u64,
    /// Of which differed.
    pub diverged: u64,
}

/// What comes next.
#[derive(Debug, Clone, PartialEq)]
pub enum Decision {
    /// Nothing yet.
    Wait,
    /// On to the next step (from the shadow phase: the first), with why.
    Advance(String),
    /// The last step passed: promote or hold, with why.
    Finish(String),
    /// A gate failed: why.
    RollBack(String),
}

/// The decision for `state` at `now_ms` given `f`.
pub fn decide(state: &RolloutState, f: &Figures, now_ms: u64) -> Decision {
    if state.paused {
        return Decision::Wait;
    }
    let elapsed = now_ms.saturating_sub(state.since_ms);
    match state.phase {
        Phase::Shadow => shadow(state, f, elapsed),
        Phase::Steps => step(state, f, elapsed),
        _ => Decision::Wait,
    }
}

fn shadow(state: &RolloutState, f: &Figures, elapsed: u64) -> Decision {
    let Some(shadow) = &state.spec.shadow else {
        return Decision::Advance("no shadow phase".into());
    };
    if f.compared < state.spec.gates.min_requests {
        return Decision::Wait;
    }
    let percent = f.diverged as f64 * 100.0 / f.compared as f64;
    let limit = shadow.max_divergence.0;
    let said = format!(
        "{} of {} compared answers differed ({percent:.2}%",
        f.diverged, f.compared
    );
    if percent > limit {
        return Decision::RollBack(format!("shadow: {said} > {limit}%)"));
    }
    if elapsed >= millis(shadow.duration.0) {
        return Decision::Advance(format!("shadow passed: {said} ≤ {limit}%)"));
    }
    Decision::Wait
}

fn step(state: &RolloutState, f: &Figures, elapsed: u64) -> Decision {
    let spec = &state.spec;
    let gates = &spec.gates;
    let (c, b) = (&f.candidate, &f.baseline);
    if c.requests < gates.min_requests {
        return Decision::Wait;
    }
    let at = format!(
        "step {} ({}%): candidate {}; baseline {}",
        state.step + 1,
        f64::from(spec.share_at(state.step)) / 100.0,
        c.text(),
        b.text()
    );
    let delta = c.error_percent() - b.error_percent();
    if delta > gates.max_error_ratio_delta.0 {
        return Decision::RollBack(format!(
            "{at}: 5xx {delta:.2} points over the baseline's (limit {})",
            gates.max_error_ratio_delta.0
        ));
    }
    let enough = c.requests.min(b.requests) >= P99_MIN_REQUESTS;
    if let (Some(cp), Some(bp), true) = (c.p99_ms, b.p99_ms, enough) {
        if cp > bp * gates.max_p99_ratio && cp - bp > P99_SLACK_MS {
            return Decision::RollBack(format!(
                "{at}: p99 {:.2}× the baseline's (limit {})",
                cp / bp.max(f64::MIN_POSITIVE),
                gates.max_p99_ratio
            ));
        }
    }
    if elapsed < millis(spec.step_every.0) {
        return Decision::Wait;
    }
    if state.step + 1 >= spec.steps.len() {
        Decision::Finish(format!("{at}: the last step passed"))
    } else {
        Decision::Advance(format!("{at}: passed"))
    }
}

fn millis(d: std::time::Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}
