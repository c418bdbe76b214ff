//! Verified rollouts: the persisted state of each route's rollout ([`RolloutState`]: its phase,
//! step, pause, history) and the pure decision of what comes next ([`decide`]) from what the
//! candidate and the baseline showed over the same window. Running them (the driver, the live
//! split, the admin API's actions) is `runtime_rollouts`'s business.

mod machine;

pub use machine::{decide, Decision, Figures, SideWindow};

use crate::config::RolloutConf;
use serde::{Deserialize, Serialize};

/// A rollout's gauges, as `/metrics` shows them.
#[derive(Debug, Clone, PartialEq)]
pub struct Gauges {
    /// [`RolloutState::step_number`].
    pub step: usize,
    /// The candidate's share, in percent.
    pub share: f64,
    /// The phase's name.
    pub phase: &'static str,
    /// Whether it is paused.
    pub paused: bool,
}

/// Each route's rollout gauges, as the runtime last set them.
static GAUGES: std::sync::Mutex<std::collections::BTreeMap<String, Gauges>> =
    std::sync::Mutex::new(std::collections::BTreeMap::new());

/// Sets the gauges to `states`'.
pub fn set_gauges(states: &std::collections::BTreeMap<String, RolloutState>) {
    let mut gauges = GAUGES.lock().unwrap_or_else(|p| p.into_inner());
    *gauges = states
        .iter()
        .map(|(route, s)| {
            let g = Gauges {
                step: s.step_number(),
                share: f64::from(s.share()) / 100.0,
                phase: s.phase.name(),
                paused: s.paused,
            };
            (route.clone(), g)
        })
        .collect();
}

/// Each route's rollout gauges.
pub fn gauges() -> Vec<(String, Gauges)> {
    let gauges = GAUGES.lock().unwrap_or_else(|p| p.into_inner());
    gauges.iter().map(|(r, g)| (r.clone(), g.clone())).collect()
}

/// History entries kept per rollout.
pub const HISTORY: usize = 64;

/// Where a rollout is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Phase {
    /// Copies go to the candidate and its answers are compared; no client sees it.
    Shadow,
    /// The candidate has the share of step `step`.
    Steps,
    /// The last step passed and `on_success: hold` keeps its split.
    Held,
    /// The candidate took the route.
    Promoted,
    /// A gate failed: the candidate lost its share at once.
    RolledBack,
    /// The operator stopped it: the candidate lost its share.
    Aborted,
}

impl Phase {
    /// Whether the rollout still shapes the route's traffic.
    pub fn active(self) -> bool {
        matches!(self, Phase::Shadow | Phase::Steps | Phase::Held)
    }

    /// The name used in the API, the log and the metric.
    pub fn name(self) -> &'static str {
        match self {
            Phase::Shadow => "shadow",
            Phase::Steps => "steps",
            Phase::Held => "held",
            Phase::Promoted => "promoted",
            Phase::RolledBack => "rolled_back",
            Phase::Aborted => "aborted",
        }
    }
}

/// One transition, as the history keeps it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Transition {
    /// When (ms since the epoch).
    pub at_ms: u64,
    /// What happened: `started`, `step`, `promoted`, `rolled_back`, `paused`, `resumed`,
    /// `aborted`, `held`.
    pub event: String,
    /// The phase after it.
    pub phase: Phase,
    /// The candidate's share after it, in percent.
    pub share: f64,
    /// Why, with the figures that decided it.
    pub detail: String,
}

/// A route's rollout as kept in the state file and etcd: enough to resume it anywhere.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RolloutState {
    /// The rollout as written.
    pub spec: RolloutConf,
    /// Whether it comes from the file's `rollouts:` (else from the admin API).
    #[serde(default)]
    pub from_file: bool,
    /// Its phase.
    pub phase: Phase,
    /// The step (0-based) in the `steps` and `held` phases.
    #[serde(default)]
    pub step: usize,
    /// Whether it is paused: its split stays, its clock and gates stop.
    #[serde(default)]
    pub paused: bool,
    /// When the current phase or step began (ms since the epoch).
    pub since_ms: u64,
    /// Why it ended, for a rollback or an abort.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// Its transitions, oldest first, the last [`HISTORY`].
    #[serde(default)]
    pub history: Vec<Transition>,
}

impl RolloutState {
    /// A rollout of `spec` starting now: in its shadow phase if it has one, else at its first
    /// step.
    pub fn start(spec: RolloutConf, from_file: bool, now_ms: u64, how: &str) -> RolloutState {
        let phase = if spec.shadow.is_some() {
            Phase::Shadow
        } else {
            Phase::Steps
        };
        let mut state = RolloutState {
            spec,
            from_file,
            phase,
            step: 0,
            paused: false,
            since_ms: now_ms,
            reason: None,
            history: Vec::new(),
        };
        state.note(now_ms, "started", how.to_string());
        state
    }

    /// The candidate's share of client requests now, in hundredths of a percent.
    pub fn share(&self) -> u32 {
        match self.phase {
            Phase::Steps | Phase::Held => self.spec.share_at(self.step),
            Phase::Promoted => 10_000,
            _ => 0,
        }
    }

    /// The step as `lb_rollout_step` shows it: 1-based in the steps, 0 before them (shadow),
    /// the number of steps once promoted, and 0 once rolled back or aborted.
    pub fn step_number(&self) -> usize {
        match self.phase {
            Phase::Steps | Phase::Held => self.step + 1,
            Phase::Promoted => self.spec.steps.len(),
            _ => 0,
        }
    }

    /// Records `event` in the history (the oldest entries go past [`HISTORY`]).
    pub fn note(&mut self, at_ms: u64, event: &str, detail: String) {
        if self.history.len() >= HISTORY {
            self.history.remove(0);
        }
        self.history.push(Transition {
            at_ms,
            event: event.to_string(),
            phase: self.phase,
            share: f64::from(self.share()) / 100.0,
            detail,
        });
    }

    /// Applies `decision`, taken at `now_ms`: the new phase or step, its history entry; returns
    /// the event's name and detail, or `None` for [`Decision::Wait`].
    pub fn apply(&mut self, decision: &Decision, now_ms: u64) -> Option<(&'static str, String)> {
        let (event, detail) = match decision {
            Decision::Wait => return None,
            Decision::Advance(detail) => {
                if self.phase == Phase::Shadow {
                    self.phase = Phase::Steps;
                    self.step = 0;
                } else {
                    self.step += 1;
                }
                ("step", detail.clone())
            }
            Decision::Finish(detail) => match self.spec.on_success {
                crate::config::OnSuccess::Promote => {
                    self.phase = Phase::Promoted;
                    ("promoted", detail.clone())
                }
                crate::config::OnSuccess::Hold => {
                    self.phase = Phase::Held;
                    ("held", detail.clone())
                }
            },
            Decision::RollBack(why) => {
                self.phase = Phase::RolledBack;
                self.reason = Some(why.clone());
                ("rolled_back", why.clone())
            }
        };
        self.since_ms = now_ms;
        self.note(now_ms, event, detail.clone());
        Some((event, detail))
    }
}

#[cfg(test)]
#[path = "tests.rs"]
mod tests;

/// `kept` made to fit `config`: a rollout whose route or pools are gone is dropped; one from the
/// file that the file no longer lists is aborted if it still ran (finished ones stay, for their
/// history); each of the file's rollouts resumes from its kept state when that is of the same
/// baseline and candidate (with the file's new settings, its step kept within them), and
/// otherwise starts now, unless `start` is false (with `cluster:` only the driving instance
/// starts them) or another rollout of the route still runs. Each drop or start is logged.
pub fn reconcile(
    config: &crate::config::Config,
    kept: &std::collections::BTreeMap<String, RolloutState>,
    now_ms: u64,
    start: bool,
) -> std::collections::BTreeMap<String, RolloutState> {
    let mut out = std::collections::BTreeMap::new();
    for (route, state) in kept {
        let pools = [&state.spec.baseline, &state.spec.candidate];
        let fits = config.routes.iter().any(|r| r.name.as_deref() == Some(route.as_str()))
            && pools.iter().all(|p| config.upstreams.contains_key(*p));
        if !fits {
            log::warn!("rollout of route {route}: its route or pools are no longer configured: dropped");
            continue;
        }
        let mut state = state.clone();
        let listed = config.rollouts.iter().any(|r| &r.route == route);
        if state.from_file && !listed && state.phase.active() {
            state.phase = Phase::Aborted;
            state.reason = Some("removed from the configuration".into());
            state.since_ms = now_ms;
            state.note(now_ms, "aborted", "removed from the configuration".into());
            log::warn!("rollout of route {route}: removed from the configuration: aborted");
        }
        out.insert(route.clone(), state);
    }
    for spec in &config.rollouts {
        let same = |s: &RolloutState| s.spec.baseline == spec.baseline && s.spec.candidate == spec.candidate;
        match out.get_mut(&spec.route) {
            Some(state) if same(state) => {
                state.spec = spec.clone();
                state.from_file = true;
                state.step = state.step.min(spec.steps.len().saturating_sub(1));
            }
            Some(state) if state.phase.active() => log::warn!(
                "rollout of route {} to {}: the route's rollout to {} still runs; the file's waits for it to end",
                spec.route,
                spec.candidate,
                state.spec.candidate
            ),
            _ if start => {
                log::info!("rollout of route {} to {}: started", spec.route, spec.candidate);
                let state = RolloutState::start(spec.clone(), true, now_ms, "from the configuration");
                out.insert(spec.route.clone(), state);
            }
            _ => {}
        }
    }
    out
}

/// The routes a promoted rollout hands to its candidate: route → candidate, for routes the
/// file still serves by the rollout's baseline.
pub fn promotions(
    config: &crate::config::Config,
    states: &std::collections::BTreeMap<String, RolloutState>,
) -> std::collections::BTreeMap<String, String> {
    states
        .iter()
        .filter(|(_, s)| s.phase == Phase::Promoted)
        .filter(|(route, s)| {
            config
                .routes
                .iter()
                .any(|r| r.name.as_deref() == Some(route.as_str()) && r.upstream.as_deref() == Some(&s.spec.baseline))
        })
        .map(|(route, s)| (route.clone(), s.spec.candidate.clone()))
        .collect()
}

/// `config` with its promoted routes served by their candidates.
pub fn effective(
    config: &crate::config::Config,
    states: &std::collections::BTreeMap<String, RolloutState>,
) -> crate::config::Config {
    let promoted = promotions(config, states);
    let mut config = config.clone();
    for route in &mut config.routes {
        if let Some(candidate) = route.name.as_ref().and_then(|n| promoted.get(n)) {
            route.upstream = Some(candidate.clone());
        }
    }
    config
}
