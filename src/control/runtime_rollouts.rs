//! Rollouts in the runtime: the live side of each running rollout (its split and shadow, kept
//! across table rebuilds), the table rebuilt when rollouts start or end or a promotion hands a
//! route to its candidate, the driver that moves each rollout on from the figures of its window,
//! and the admin API's actions (create, pause, resume, abort, promote now) as transactions:
//! checked, persisted (state file fsynced, or etcd with `cluster:`), then applied; refused with
//! nothing changed. With `cluster:`, only the instance that holds the election drives; every
//! instance applies the state etcd holds.

use super::{build_table, set_all_members, Desired, Runtime};
use crate::clock::unix_ms;
use crate::config::{Config, RolloutConf};
use crate::control::changes::Refusal;
use crate::control::history::{quantile_ms, Counts, SLOTS};
use crate::control::rollout::{self, decide, Decision, Figures, Phase, RolloutState, SideWindow};
use crate::control::state_file::Changes;
use crate::request::rollout::{DivergenceSample, Live, ShadowFigures, SideFigures};
use log::{error, info, warn};
use serde::Serialize;
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

/// The rollouts' side of the runtime.
pub(super) struct Rollouts {
    /// The live side of each running rollout, by route.
    lives: Mutex<BTreeMap<String, Arc<Live>>>,
    /// The live side of each route's last ended rollout, for its figures and divergences.
    ended: Mutex<BTreeMap<String, Arc<Live>>>,
    /// The driver's window of each rollout, by route.
    windows: Mutex<BTreeMap<String, Window>>,
    /// What the current table was built with: running rollouts and promotions.
    built: Mutex<String>,
    /// Whether this instance drives the rollouts: always without `cluster:`, with it while it
    /// holds the election.
    pub(super) driving: AtomicBool,
    /// This instance's name in the election.
    pub(super) id: String,
}

impl Rollouts {
    pub(super) fn new(clustered: bool) -> Self {
        let host = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap_or_default();
        Rollouts {
            lives: Mutex::default(),
            ended: Mutex::default(),
            windows: Mutex::default(),
            built: Mutex::default(),
            driving: AtomicBool::new(!clustered),
            id: format!("{}-{}-{:x}", host.trim(), std::process::id(), unix_ms()),
        }
    }

    /// The live sides of the running rollouts, for a table build.
    pub(super) fn lives(&self) -> BTreeMap<String, Arc<Live>> {
        lock(&self.lives).clone()
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// A rollout's current window: what both sides had counted when its phase or step began here
/// (on this instance: a new driver starts a fresh window), and the last window's baseline with
/// enough requests, the reference when the baseline gets too few (as at a 100% step).
struct Window {
    key: (Phase, usize, u64),
    start: [SideFigures; 2],
    compared: u64,
    diverged: u64,
    reference: Option<SideWindow>,
}

/// What a table was built with: the running rollouts (by identity) and the promotions.
fn signature(lives: &BTreeMap<String, Arc<Live>>, promoted: &BTreeMap<String, String>) -> String {
    let lives: Vec<_> = lives.iter().map(|(r, l)| (r, Arc::as_ptr(l))).collect();
    format!("{lives:?} {promoted:?}")
}

/// Histogram counts of `f`, cumulative, the total last.
fn counts(f: &SideFigures) -> Counts {
    let mut out = [0; SLOTS];
    if let Some(s) = &f.latency {
        for (slot, (_, n)) in out.iter_mut().zip(&s.buckets) {
            *slot = *n;
        }
        out[SLOTS - 1] = s.count;
    }
    out
}

/// One side's figures between `start` and `now`.
fn between(start: &SideFigures, now: &SideFigures) -> SideWindow {
    let (a, b) = (counts(start), counts(now));
    let delta: Counts = std::array::from_fn(|i| b[i].saturating_sub(a[i]));
    SideWindow {
        requests: now.requests.saturating_sub(start.requests),
        errors: now.errors.saturating_sub(start.errors),
        p99_ms: quantile_ms(&delta, 0.99),
    }
}

/// A rollout as the admin API shows it.
#[derive(Debug, Serialize)]
pub struct RolloutView {
    /// The route.
    pub route: String,
    /// `shadow`, `steps`, `held`, `promoted`, `rolled_back` or `aborted`.
    pub phase: &'static str,
    /// The step, 1-based (0 in the shadow phase and after a rollback or abort).
    pub step: usize,
    /// The candidate's share of the route's requests now, in percent.
    pub share: f64,
    /// Whether it is paused.
    pub paused: bool,
    /// When the current phase or step began (ms since the epoch).
    pub since_ms: u64,
    /// Why it ended, for a rollback or an abort.
    pub reason: Option<String>,
    /// Whether this instance drives it (with `cluster:`, one instance does).
    pub driving: bool,
    /// The current window's figures, as the gates see them (running rollouts, on the driving
    /// instance).
    pub window: Option<Figures>,
    /// The shadow's comparisons since this instance began the rollout.
    pub shadow: Option<ShadowFigures>,
    /// Recent differing answers (no bodies, no credentials).
    pub divergences: Vec<DivergenceSample>,
    /// The rollout as written.
    pub spec: RolloutConf,
    /// Where it comes from: `file` or `api`.
    pub source: &'static str,
    /// Its transitions, oldest first.
    pub history: Vec<rollout::Transition>,
}

/// An operator's action on a rollout.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// Stops its clock and gates; the split stays.
    Pause,
    /// Starts them again, with a fresh window.
    Resume,
    /// Ends it: the candidate loses its share at once.
    Abort,
    /// Ends it: the candidate takes the route now.
    Promote,
}

impl Action {
    /// The action named `name` in `POST /api/v1/rollouts/{route}/{name}`.
    pub fn named(name: &str) -> Option<Action> {
        match name {
            "pause" => Some(Action::Pause),
            "resume" => Some(Action::Resume),
            "abort" => Some(Action::Abort),
            "promote" => Some(Action::Promote),
            _ => None,
        }
    }
}

impl Runtime {
    /// Brings the live rollouts to `desired`'s state (their shares, their shadows), and rebuilds
    /// the table when a rollout started or ended or a route was promoted.
    pub(super) fn sync_rollouts(&self, desired: &Desired) {
        let states = &desired.changes.rollouts;
        rollout::set_gauges(states);
        let mut lives = lock(&self.rollouts.lives);
        let gone: Vec<String> = lives
            .iter()
            .filter(|(route, live)| {
                !states
                    .get(*route)
                    .is_some_and(|s| s.phase.active() && s.spec == *live.spec())
            })
            .map(|(route, _)| route.clone())
            .collect();
        for route in gone {
            if let Some(live) = lives.remove(&route) {
                live.set(0, false);
                lock(&self.rollouts.ended).insert(route, live);
            }
        }
        for (route, state) in states.iter().filter(|(_, s)| s.phase.active()) {
            if !lives.contains_key(route) {
                match Live::new(&state.spec) {
                    Ok(live) => {
                        lives.insert(route.clone(), Arc::new(live));
                    }
                    Err(e) => error!("rollout of route {route}: {e}"),
                }
            }
            if let Some(live) = lives.get(route) {
                live.set(state.share(), state.phase == Phase::Shadow);
            }
        }
        let promoted = rollout::promotions(&desired.config, states);
        let lives = lives.clone();
        let signature = signature(&lives, &promoted);
        let mut built = lock(&self.rollouts.built);
        if *built == signature {
            return;
        }
        let config = rollout::effective(&desired.config, states);
        let old = self.routing.load_full();
        match build_table(&config, Some(&old), &lives) {
            Ok(table) => {
                set_all_members(&table, &config, &desired.changes);
                self.routing.store(Arc::new(table));
                *built = signature;
            }
            Err(e) => error!("rollouts: the routing table could not be rebuilt: {e}"),
        }
    }

    /// Notes that the table was just built (by a reload) with the live rollouts as they were
    /// and `desired`'s promotions, then brings the rollouts to `desired` (rebuilding the table
    /// again only if that changes which rollouts run).
    pub(super) fn rollouts_built(&self, desired: &Desired) {
        let promoted = rollout::promotions(&desired.config, &desired.changes.rollouts);
        *lock(&self.rollouts.built) = signature(&self.rollouts.lives(), &promoted);
        self.sync_rollouts(desired);
    }

    /// The figures of `route`'s current window, the window started anew when the rollout's
    /// phase or step changed since.
    fn figures(&self, route: &str, live: &Live, state: &RolloutState) -> Figures {
        let key = (state.phase, state.step, state.since_ms);
        let now = live.figures();
        let shadow = live.shadow_figures();
        let min = state.spec.gates.min_requests;
        let mut windows = lock(&self.rollouts.windows);
        let window = windows.entry(route.to_string()).or_insert_with(|| Window {
            key,
            start: now.clone(),
            compared: shadow.compared,
            diverged: shadow.diverged_total(),
            reference: None,
        });
        if window.key != key {
            let closed = between(&window.start[0], &now[0]);
            if closed.requests >= min {
                window.reference = Some(closed);
            }
            window.key = key;
            window.start = now.clone();
            window.compared = shadow.compared;
            window.diverged = shadow.diverged_total();
        }
        let mut baseline = between(&window.start[0], &now[0]);
        if baseline.requests < min {
            if let Some(reference) = &window.reference {
                baseline = reference.clone();
            }
        }
        Figures {
            baseline,
            candidate: between(&window.start[1], &now[1]),
            compared: shadow.compared.saturating_sub(window.compared),
            diverged: shadow.diverged_total().saturating_sub(window.diverged),
        }
    }

    /// One round of the driver: each running rollout this instance drives moves on if its
    /// figures say so. A change that cannot be kept (state file, etcd) is tried again next round.
    pub async fn drive_rollouts(&self) {
        if !self.rollouts.driving.load(Ordering::Relaxed) {
            return;
        }
        let mut desired = self.desired.lock().await;
        if self.cluster.is_some() {
            self.start_file_rollouts(&mut desired).await;
        }
        let now = unix_ms();
        let states: Vec<(String, RolloutState)> = desired
            .changes
            .rollouts
            .iter()
            .filter(|(_, s)| matches!(s.phase, Phase::Shadow | Phase::Steps) && !s.paused)
            .map(|(r, s)| (r.clone(), s.clone()))
            .collect();
        for (route, state) in states {
            let Some(live) = lock(&self.rollouts.lives).get(&route).cloned() else {
                continue;
            };
            let figures = self.figures(&route, &live, &state);
            let decision = decide(&state, &figures, now);
            if decision == Decision::Wait {
                continue;
            }
            let mut next = state.clone();
            let Some((event, detail)) = next.apply(&decision, now) else {
                continue;
            };
            if let Err(refusal) = self.change_rollout(&mut desired, &route, Some(next), true).await {
                warn!(
                    "rollout of route {route}: {event} not kept, tried again: {}",
                    refusal.message
                );
                continue;
            }
            let text = format!("rollout {event}: {detail}");
            if event == "rolled_back" {
                warn!("route {route}: {text}");
            } else {
                info!("route {route}: {text}");
            }
            self.events.record_route(&route, text);
        }
    }

    /// With `cluster:`, the driver starts the file's rollouts that etcd does not hold yet: a
    /// route without a rollout, or whose rollout to another candidate has ended.
    async fn start_file_rollouts(&self, desired: &mut Desired) {
        let specs = desired.config.rollouts.clone();
        for spec in specs {
            let startable = desired.changes.rollouts.get(&spec.route).is_none_or(|s| {
                let same = s.spec.baseline == spec.baseline && s.spec.candidate == spec.candidate;
                !s.phase.active() && !same
            });
            if !startable {
                continue;
            }
            let route = spec.route.clone();
            let state = RolloutState::start(spec, true, unix_ms(), "from the configuration");
            match self.change_rollout(desired, &route, Some(state), true).await {
                Ok(_) => info!("route {route}: rollout started from the configuration"),
                Err(r) => warn!("rollout of route {route}: not started yet: {}", r.message),
            }
        }
    }

    /// Makes `state` route `route`'s rollout (`None`: forgets it): kept first (etcd with
    /// `cluster:`, guarded by the election when `driver`; else the state file), then applied.
    async fn change_rollout(
        &self,
        desired: &mut Desired,
        route: &str,
        state: Option<RolloutState>,
        driver: bool,
    ) -> Result<bool, Refusal> {
        let mut changes: Changes = desired.changes.clone();
        match state {
            Some(state) => changes.rollouts.insert(route.to_string(), state),
            None => changes.rollouts.remove(route),
        };
        let persisted = match self.etcd().await {
            Some(Ok(etcd)) => {
                let guard = driver.then_some(self.rollouts.id.as_str());
                etcd.write_rollout(route, changes.rollouts.get(route), guard)
                    .await
                    .map_err(|e| {
                        Refusal::new(
                            503,
                            format!("the shared state (etcd) cannot take it: {e}; nothing was changed"),
                        )
                    })?;
                true
            }
            Some(Err(e)) => {
                return Err(Refusal::new(
                    503,
                    format!("the shared state (etcd) is unreachable: {e}; nothing was changed"),
                ))
            }
            None => self.write_change(desired, &changes, crate::control::changes::Effect::Changed)?,
        };
        desired.changes = changes;
        self.sync_rollouts(desired);
        Ok(persisted)
    }

    /// The view of `route`'s rollout from `state`.
    fn rollout_view(&self, route: &str, state: &RolloutState) -> RolloutView {
        let live = lock(&self.rollouts.lives).get(route).cloned().or_else(|| {
            let ended = lock(&self.rollouts.ended);
            ended.get(route).filter(|l| *l.spec() == state.spec).cloned()
        });
        let driving = self.rollouts.driving.load(Ordering::Relaxed);
        let running = matches!(state.phase, Phase::Shadow | Phase::Steps);
        RolloutView {
            route: route.to_string(),
            phase: state.phase.name(),
            step: state.step_number(),
            share: f64::from(state.share()) / 100.0,
            paused: state.paused,
            since_ms: state.since_ms,
            reason: state.reason.clone(),
            driving,
            window: live
                .as_ref()
                .filter(|_| running && driving)
                .map(|l| self.figures(route, l, state)),
            shadow: live
                .as_ref()
                .filter(|_| state.spec.shadow.is_some())
                .map(|l| l.shadow_figures()),
            divergences: live.as_ref().map(|l| l.samples()).unwrap_or_default(),
            spec: state.spec.clone(),
            source: if state.from_file { "file" } else { "api" },
            history: state.history.clone(),
        }
    }

    /// Every rollout (running and finished), by route.
    pub async fn rollouts(&self) -> Vec<RolloutView> {
        let desired = self.desired.lock().await;
        let states = desired.changes.rollouts.clone();
        drop(desired);
        states.iter().map(|(r, s)| self.rollout_view(r, s)).collect()
    }

    /// Route `route`'s rollout.
    pub async fn rollout(&self, route: &str) -> Option<RolloutView> {
        let desired = self.desired.lock().await;
        let state = desired.changes.rollouts.get(route).cloned()?;
        drop(desired);
        Some(self.rollout_view(route, &state))
    }

    /// Starts rollout `spec` from the admin API: checked against the routes as served now (400),
    /// one running rollout per route (409), kept, then applied.
    pub async fn create_rollout(&self, spec: RolloutConf) -> Result<RolloutView, Refusal> {
        let mut desired = self.desired.lock().await;
        let served: Config = rollout::effective(&desired.config, &desired.changes.rollouts);
        spec.check(&served)
            .map_err(|(field, msg)| Refusal::new(400, format!("{field}: {msg}")))?;
        if let Some(running) = desired.changes.rollouts.get(&spec.route).filter(|s| s.phase.active()) {
            let msg = format!(
                "route {} has a running rollout (to {}, {}): abort or promote it first",
                spec.route,
                running.spec.candidate,
                running.phase.name()
            );
            return Err(Refusal::new(409, msg));
        }
        let route = spec.route.clone();
        let state = RolloutState::start(spec, false, unix_ms(), "through the admin API");
        self.change_rollout(&mut desired, &route, Some(state.clone()), false)
            .await?;
        let text = format!("rollout to {} started through the admin API", state.spec.candidate);
        info!("route {route}: {text}");
        self.events.record_route(&route, text);
        drop(desired);
        Ok(self.rollout_view(&route, &state))
    }

    /// Applies `action` to `route`'s rollout: 404 without one, 409 when it cannot apply (it
    /// ended already, or is not paused for a resume).
    pub async fn act_on_rollout(&self, route: &str, action: Action) -> Result<RolloutView, Refusal> {
        let mut desired = self.desired.lock().await;
        let Some(state) = desired.changes.rollouts.get(route).cloned() else {
            return Err(Refusal::new(404, format!("route {route:?} has no rollout")));
        };
        if !state.phase.active() {
            let msg = format!(
                "the rollout of route {route} has ended ({}): nothing to do",
                state.phase.name()
            );
            return Err(Refusal::new(409, msg));
        }
        let now = unix_ms();
        let mut next = state.clone();
        let (event, detail) = match action {
            Action::Pause if state.paused => {
                return Err(Refusal::new(
                    409,
                    format!("the rollout of route {route} is paused already"),
                ))
            }
            Action::Resume if !state.paused => {
                return Err(Refusal::new(409, format!("the rollout of route {route} is not paused")))
            }
            Action::Pause => {
                next.paused = true;
                ("paused", "by the operator")
            }
            Action::Resume => {
                next.paused = false;
                next.since_ms = now;
                ("resumed", "by the operator: the step starts again")
            }
            Action::Abort => {
                next.phase = Phase::Aborted;
                next.paused = false;
                next.since_ms = now;
                next.reason = Some("aborted by the operator".into());
                ("aborted", "by the operator")
            }
            Action::Promote => {
                next.phase = Phase::Promoted;
                next.paused = false;
                next.since_ms = now;
                ("promoted", "by the operator")
            }
        };
        next.note(now, event, detail.to_string());
        self.change_rollout(&mut desired, route, Some(next.clone()), false)
            .await?;
        let text = format!("rollout {event} {detail}");
        info!("route {route}: {text}");
        self.events.record_route(route, text);
        drop(desired);
        Ok(self.rollout_view(route, &next))
    }
}

/// The lease of the rollout driver's election: a driver that dies is replaced within it.
const ELECTION_TTL_S: i64 = 3;

impl Runtime {
    /// With `cluster:`, this instance's part in the election of the one that drives the
    /// rollouts, for as long as the process runs (without it, this instance drives). While there
    /// is no rollout (none in the file, none running), no instance campaigns.
    pub async fn elect_rollout_driver(&self) {
        if self.cluster.is_none() {
            return std::future::pending().await;
        }
        let mut lease = None;
        loop {
            let wanted = {
                let desired = self.desired.lock().await;
                let running = desired.changes.rollouts.values().any(|s| s.phase.active());
                running || !desired.config.rollouts.is_empty()
            };
            let won = match self.etcd().await {
                // Without a rollout to drive, no instance holds a lease for it.
                Some(Ok(etcd)) if !wanted => match lease.take() {
                    Some(held) => etcd.resign(held).await.map(|()| false),
                    None => Ok(false),
                },
                Some(Ok(etcd)) => etcd.campaign(&self.rollouts.id, &mut lease, ELECTION_TTL_S).await,
                Some(Err(e)) => Err(e),
                None => return,
            };
            let now = matches!(won, Ok(true));
            if self.rollouts.driving.swap(now, Ordering::Relaxed) != now {
                info!(
                    "rollouts: this instance ({}) {} them",
                    self.rollouts.id,
                    if now { "drives" } else { "no longer drives" }
                );
            }
            if let Err(e) = won {
                log::debug!("{e}");
            }
            tokio::time::sleep(std::time::Duration::from_secs(1)).await;
        }
    }
}
