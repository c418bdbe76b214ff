//! `rollouts:` (and the body of `POST /api/v1/rollouts`): a candidate pool rolled out behind a
//! named route, first shadowed (copies compared, no client sees it), then given a growing share
//! of the route's requests step by step while gates compare it with the baseline, and promoted
//! or rolled back. The model and its checks, shared by the file and the admin API; running it is
//! `control::rollout`'s business.

use super::json_path::JsonPath;
use super::validate::{problem, Problem};
use super::{Config, Dur, Percent, Size, SplitBy};
use serde::{Deserialize, Serialize};
use std::time::Duration;

/// One rollout.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RolloutConf {
    /// The named route rolled out; it must be served by `baseline` alone (no split).
    pub route: String,
    /// The upstream serving the route today.
    pub baseline: String,
    /// The upstream rolled out.
    pub candidate: String,
    /// A first phase in which the candidate gets copies only and its answers are compared with
    /// the baseline's. Default: none (the steps start at once).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub shadow: Option<ShadowConf>,
    /// The candidate's share of the route's requests at each step, increasing, e.g.
    /// `[1%, 5%, 25%, 50%, 100%]`.
    pub steps: Vec<Percent>,
    /// How long each step lasts at least (it also waits for `gates.min_requests`). Default `1m`.
    #[serde(default = "default_step_every")]
    pub step_every: Dur,
    /// What keeps a client on one side across steps (the forms of a route's `split_by`).
    /// Default: each request chosen anew.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub split_by: Option<SplitBy>,
    /// What the candidate must show, step by step, against the baseline.
    #[serde(default)]
    pub gates: Gates,
    /// What happens after the last step passes. Default `promote`.
    #[serde(default)]
    pub on_success: OnSuccess,
}

/// `shadow:`: copies of a sample of the route's requests go to the candidate, its answers are
/// compared with the baseline's and thrown away.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ShadowConf {
    /// The share of requests copied. Default `100%`.
    #[serde(default = "all")]
    pub sample: Percent,
    /// How long the phase lasts at least (it also waits for `gates.min_requests` comparisons).
    /// Default `1m`.
    #[serde(default = "default_step_every")]
    pub duration: Dur,
    /// What is compared.
    #[serde(default)]
    pub compare: CompareConf,
    /// JSON paths left out of a `json` body comparison (`$.timestamp`, `$.items[*].id`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ignore: Vec<String>,
    /// The share of comparisons that may differ; more stops the rollout. Default `1%`.
    #[serde(default = "one_percent")]
    pub max_divergence: Percent,
    /// Bodies are captured for comparison up to this size; a larger one is not compared (nor
    /// is a request with a larger body copied). Default `1MiB`.
    #[serde(default = "default_max_body")]
    pub max_body: Size,
}

/// `shadow.compare:`.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct CompareConf {
    /// Whether the statuses must be equal. Default true.
    #[serde(default = "yes")]
    pub status: bool,
    /// Response headers whose values must be equal. Default none.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub headers: Vec<String>,
    /// How bodies are compared: `none`, `hash` (equal bytes) or `json` (equal after parsing,
    /// key order aside, `ignore` paths left out). Default `none`.
    #[serde(default)]
    pub body: BodyCompare,
}

impl Default for CompareConf {
    fn default() -> Self {
        CompareConf {
            status: true,
            headers: Vec::new(),
            body: BodyCompare::None,
        }
    }
}

/// How the shadow compares bodies.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum BodyCompare {
    /// Not at all.
    #[default]
    None,
    /// Byte for byte.
    Hash,
    /// As JSON, normalised.
    Json,
}

/// `gates:`: judged over each step's window, candidate against baseline.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Gates {
    /// Requests the candidate must have answered in a step (comparisons in the shadow phase)
    /// before it is judged. Default 100.
    #[serde(default = "hundred")]
    pub min_requests: u64,
    /// How much the candidate's share of 5xx answers may exceed the baseline's. Default `1%`.
    #[serde(default = "one_percent")]
    pub max_error_ratio_delta: Percent,
    /// How many times the baseline's 99th percentile of response time the candidate's may be.
    /// Default 1.5.
    #[serde(default = "default_p99_ratio")]
    pub max_p99_ratio: f64,
}

impl Default for Gates {
    fn default() -> Self {
        Gates {
            min_requests: hundred(),
            max_error_ratio_delta: one_percent(),
            max_p99_ratio: default_p99_ratio(),
        }
    }
}

/// What a rollout does once its last step passed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum OnSuccess {
    /// The candidate takes the route; the baseline gets no more of its requests.
    #[default]
    Promote,
    /// The last step's split stays until the operator promotes or aborts.
    Hold,
}

fn default_step_every() -> Dur {
    Dur(Duration::from_secs(60))
}
fn all() -> Percent {
    Percent(100.0)
}
fn one_percent() -> Percent {
    Percent(1.0)
}
fn default_max_body() -> Size {
    Size(1 << 20)
}
fn yes() -> bool {
    true
}
fn hundred() -> u64 {
    100
}
fn default_p99_ratio() -> f64 {
    1.5
}

impl RolloutConf {
    /// Checks the rollout against `config` (its routes as they are served now: a promoted
    /// rollout's route names its candidate). The problem's path is relative to the rollout.
    pub fn check(&self, config: &Config) -> Result<(), Problem> {
        let Some(route) = config
            .routes
            .iter()
            .find(|r| r.name.as_deref() == Some(self.route.as_str()))
        else {
            return problem("route", format!("no route is named {:?}", self.route));
        };
        for (field, name) in [("baseline", &self.baseline), ("candidate", &self.candidate)] {
            if !config.upstreams.contains_key(name) {
                return problem(field, format!("no upstream is named {name:?}"));
            }
        }
        if route.split.is_some() || route.upstream.as_deref() != Some(self.baseline.as_str()) {
            let served = route.upstreams().join(", ");
            return problem(
                "baseline",
                format!(
                    "route {:?} is served by {served}, not by {:?} alone",
                    self.route, self.baseline
                ),
            );
        }
        if self.candidate == self.baseline {
            return problem("candidate", "must differ from baseline");
        }
        self.check_steps()?;
        self.check_gates()?;
        match &self.shadow {
            Some(shadow) => shadow.check().or_else(|(f, m)| problem(format!("shadow.{f}"), m)),
            None => Ok(()),
        }
    }

    fn check_steps(&self) -> Result<(), Problem> {
        if self.steps.is_empty() {
            return problem("steps", "list at least one share, e.g. [5%, 25%, 100%]");
        }
        let mut last = 0.0;
        for (i, step) in self.steps.iter().enumerate() {
            if step.0 <= last {
                let why = if i == 0 {
                    "must be more than 0%".to_string()
                } else {
                    format!(
                        "{}% must be more than the step before ({last}%): steps increase",
                        step.0
                    )
                };
                return problem(format!("steps[{i}]"), why);
            }
            last = step.0;
        }
        if self.step_every.0 < Duration::from_secs(1) {
            return problem("step_every", "must be at least 1s");
        }
        Ok(())
    }

    fn check_gates(&self) -> Result<(), Problem> {
        let g = &self.gates;
        if g.min_requests == 0 || g.min_requests > 10_000_000 {
            return problem("gates.min_requests", "must be from 1 to 10000000");
        }
        if !(1.0..=100.0).contains(&g.max_p99_ratio) {
            return problem(
                "gates.max_p99_ratio",
                format!(
                    "{} is out of range: write a ratio from 1 to 100, e.g. 1.2",
                    g.max_p99_ratio
                ),
            );
        }
        Ok(())
    }

    /// The candidate's share at step `step` (0-based), in hundredths of a percent.
    pub fn share_at(&self, step: usize) -> u32 {
        self.steps.get(step).map_or(0, |p| basis_points(*p))
    }
}

/// `p` in hundredths of a percent (`5%` → 500), the unit of a rollout's split weights.
pub fn basis_points(p: Percent) -> u32 {
    (p.0 * 100.0).round().clamp(0.0, 10_000.0) as u32
}

impl ShadowConf {
    fn check(&self) -> Result<(), Problem> {
        if self.sample.0 <= 0.0 {
            return problem("sample", "must be more than 0%");
        }
        if self.duration.0 < Duration::from_secs(1) {
            return problem("duration", "must be at least 1s");
        }
        for (i, name) in self.compare.headers.iter().enumerate() {
            if http::HeaderName::from_bytes(name.as_bytes()).is_err() {
                return problem(
                    format!("compare.headers[{i}]"),
                    format!("{name:?} is not a header name"),
                );
            }
        }
        for (i, path) in self.ignore.iter().enumerate() {
            JsonPath::parse(path)
                .map(drop)
                .or_else(|why| problem(format!("ignore[{i}]"), why))?;
        }
        if !self.ignore.is_empty() && self.compare.body != BodyCompare::Json {
            return problem("ignore", "JSON paths are ignored only with compare.body: json");
        }
        Ok(())
    }
}

impl Config {
    /// Checks `rollouts:`: each against the routes, one per route.
    pub(super) fn check_rollouts(&self) -> Result<(), Problem> {
        let mut routes = std::collections::HashSet::new();
        for (i, rollout) in self.rollouts.iter().enumerate() {
            rollout
                .check(self)
                .or_else(|(field, msg)| problem(format!("rollouts[{i}].{field}"), msg))?;
            if !routes.insert(&rollout.route) {
                return problem(
                    format!("rollouts[{i}].route"),
                    format!("route {:?} has a rollout above: one per route", rollout.route),
                );
            }
        }
        Ok(())
    }
}
