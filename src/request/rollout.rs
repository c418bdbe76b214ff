//! A rollout as the request path sees it ([`Live`]): the route's split between baseline and
//! candidate at the rollout's current share, what each side answered since the current step
//! began (requests, 5xx, a latency histogram), and in the shadow phase the copies to the
//! candidate whose answers are compared with the baseline's. The control plane
//! (`control::rollout`) reads the figures and moves the share; the live state outlives reloads
//! and table rebuilds, which give it the current table's pools ([`Live::attach`]).

use crate::config::RolloutConf;
use crate::request::mirror::Mirror;
use crate::request::pool::Pool;
use crate::request::shadow_compare::{Answer, Compare, Difference};
use crate::request::split::Split;
use crate::request::stats::{Histogram, HistogramSnapshot};
use arc_swap::ArcSwapOption;
use std::collections::{BTreeMap, VecDeque};
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// Comparisons by route since start: (compared, diverged by kind); they outlive the rollouts, as
/// counters must.
static COUNTS: Mutex<BTreeMap<Arc<str>, Compared>> = Mutex::new(BTreeMap::new());

/// Pairs compared, and those that differed by kind.
type Compared = (u64, BTreeMap<&'static str, u64>);

/// Comparisons so far: (route, compared, diverged by kind).
pub fn shadow_counts() -> Vec<(Arc<str>, u64, BTreeMap<&'static str, u64>)> {
    let counts = COUNTS.lock().unwrap_or_else(|p| p.into_inner());
    counts
        .iter()
        .map(|(r, (n, d))| (Arc::clone(r), *n, d.clone()))
        .collect()
}

fn count(route: &Arc<str>, kind: Option<&'static str>) {
    let mut counts = COUNTS.lock().unwrap_or_else(|p| p.into_inner());
    let (compared, diverged) = counts.entry(Arc::clone(route)).or_default();
    *compared += 1;
    if let Some(kind) = kind {
        *diverged.entry(kind).or_insert(0) += 1;
    }
}

/// Differing answers kept for the operator, per rollout.
pub const SAMPLES: usize = 20;

/// What one side answered: counted per request as it ends.
#[derive(Default)]
struct Side {
    requests: AtomicU64,
    errors: AtomicU64,
    latency: Histogram,
}

/// One side's figures at a moment (cumulative).
#[derive(Debug, Clone, Default)]
pub struct SideFigures {
    /// Requests answered.
    pub requests: u64,
    /// Of which 5xx (lb's own 502/503/504 included).
    pub errors: u64,
    /// Their durations.
    pub latency: Option<HistogramSnapshot>,
}

/// A differing pair of answers, as the operator sees it (no bodies, no credentials).
#[derive(Debug, Clone, serde::Serialize)]
pub struct DivergenceSample {
    /// When it was found (ms since the epoch).
    pub at_ms: u64,
    /// The request's method.
    pub method: String,
    /// Its path (without the query string, which may carry credentials).
    pub path: String,
    /// What differed first: `status`, `header`, `body`, or `error` (the candidate gave no
    /// answer).
    pub kind: &'static str,
    /// The baseline's and the candidate's status (0: none).
    pub statuses: (u16, u16),
    /// The compared headers whose values differ.
    pub headers: Vec<String>,
    /// The differing JSON paths (`$` for bodies compared as bytes).
    pub paths: Vec<String>,
}

/// The shadow phase's comparisons so far.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct ShadowFigures {
    /// Pairs compared.
    pub compared: u64,
    /// Pairs that differed, by kind (`status`, `header`, `body`, `error`: the candidate gave no
    /// answer).
    pub diverged: BTreeMap<&'static str, u64>,
}

impl ShadowFigures {
    /// Pairs that differed, any kind.
    pub fn diverged_total(&self) -> u64 {
        self.diverged.values().sum()
    }
}

/// The comparisons: counted since start (the metric), and the recent differing pairs.
#[derive(Default)]
struct Divergences {
    figures: ShadowFigures,
    samples: VecDeque<DivergenceSample>,
}

/// The difference of a candidate that gave no answer to a request the baseline answered with
/// `status`.
fn no_answer(status: u16) -> Difference {
    Difference {
        kind: crate::request::shadow_compare::Kind::Status,
        statuses: (status, 0),
        headers: Vec::new(),
        paths: Vec::new(),
    }
}

/// A route's rollout on the request path.
pub struct Live {
    /// The route's name.
    pub route: Arc<str>,
    /// The upstream serving the route before the rollout.
    pub baseline: String,
    /// The upstream rolled out.
    pub candidate: String,
    spec: RolloutConf,
    /// The candidate's share, in hundredths of a percent.
    share: AtomicU32,
    /// Whether copies go to the candidate (the shadow phase).
    shadowing: AtomicBool,
    /// The current table's split between the two.
    split: ArcSwapOption<Split>,
    /// The current table's copier to the candidate, in the shadow phase.
    mirror: ArcSwapOption<Mirror>,
    compare: Option<Compare>,
    sides: [Side; 2],
    divergences: Mutex<Divergences>,
}

impl Live {
    /// The live side of rollout `spec`, at share 0 and shadowing or not.
    pub fn new(spec: &RolloutConf) -> Result<Live, String> {
        let compare = match &spec.shadow {
            Some(s) => Some(Compare::new(
                s.compare.status,
                &s.compare.headers,
                s.compare.body,
                &s.ignore,
            )?),
            None => None,
        };
        Ok(Live {
            route: Arc::from(spec.route.as_str()),
            baseline: spec.baseline.clone(),
            candidate: spec.candidate.clone(),
            spec: spec.clone(),
            share: AtomicU32::new(0),
            shadowing: AtomicBool::new(false),
            split: ArcSwapOption::empty(),
            mirror: ArcSwapOption::empty(),
            compare,
            sides: Default::default(),
            divergences: Mutex::default(),
        })
    }

    /// The rollout as written.
    pub fn spec(&self) -> &RolloutConf {
        &self.spec
    }

    /// The split of the route for a new table with `pools` (baseline first), at the current
    /// share; the copier to the candidate too, when the rollout has a shadow phase. `None` when
    /// a pool is missing.
    pub fn attach(&self, pools: &BTreeMap<String, Arc<Pool>>) -> Option<Arc<Split>> {
        let baseline = pools.get(&self.baseline)?;
        let candidate = pools.get(&self.candidate)?;
        let share = self.share.load(Ordering::Relaxed);
        let sides = vec![
            (self.baseline.clone(), Arc::clone(baseline), 10_000 - share.min(10_000)),
            (self.candidate.clone(), Arc::clone(candidate), share),
        ];
        let split = Arc::new(Split::new(&self.route, sides, self.spec.split_by.clone()));
        self.split.store(Some(Arc::clone(&split)));
        let mirror = self.spec.shadow.as_ref().map(|s| {
            let max_body = usize::try_from(s.max_body.0).unwrap_or(usize::MAX);
            Arc::new(Mirror::new(
                Arc::clone(&self.route),
                Arc::clone(candidate),
                s.sample.0,
                max_body,
            ))
        });
        self.mirror.store(mirror);
        Some(split)
    }

    /// Sets the candidate's share (hundredths of a percent) and whether copies go to it, for
    /// the next request on.
    pub fn set(&self, share: u32, shadowing: bool) {
        let share = share.min(10_000);
        self.share.store(share, Ordering::Relaxed);
        self.shadowing.store(shadowing, Ordering::Relaxed);
        if let Some(split) = self.split.load_full() {
            split.set_weights(&[10_000 - share, share]);
        }
    }

    /// The candidate's share now, in hundredths of a percent.
    pub fn share(&self) -> u32 {
        self.share.load(Ordering::Relaxed)
    }

    /// The copier of a request sampled for the shadow phase, if this one is.
    pub fn shadow_copy(&self) -> Option<Arc<Mirror>> {
        if !self.shadowing.load(Ordering::Relaxed) {
            return None;
        }
        self.mirror.load_full().filter(|m| m.sampled())
    }

    /// Counts a finished request of the route served by pool `pool` with `status` in `took`.
    pub fn record(&self, pool: &str, status: u16, took: Duration) {
        let side = if pool == self.candidate {
            &self.sides[1]
        } else if pool == self.baseline {
            &self.sides[0]
        } else {
            return;
        };
        side.requests.fetch_add(1, Ordering::Relaxed);
        if status >= 500 {
            side.errors.fetch_add(1, Ordering::Relaxed);
        }
        side.latency.observe(took);
    }

    /// Both sides' figures so far, baseline first.
    pub fn figures(&self) -> [SideFigures; 2] {
        self.sides.each_ref().map(|s| SideFigures {
            requests: s.requests.load(Ordering::Relaxed),
            errors: s.errors.load(Ordering::Relaxed),
            latency: Some(s.latency.snapshot()),
        })
    }

    /// Compares a pair of answers to request `method path` (the baseline's, the candidate's or
    /// `None` when the candidate gave none) and counts the outcome.
    pub fn compared(&self, method: &str, path: &str, baseline: &Answer, candidate: Option<&Answer>) {
        let Some(compare) = &self.compare else { return };
        let difference = match candidate {
            Some(candidate) => compare.diff(baseline, candidate).map(|d| {
                let kind = d.kind.label();
                (kind, d)
            }),
            None => Some(("error", no_answer(baseline.status))),
        };
        count(&self.route, difference.as_ref().map(|(kind, _)| *kind));
        let mut d = self.divergences.lock().unwrap_or_else(|p| p.into_inner());
        d.figures.compared += 1;
        let Some((kind, difference)) = difference else { return };
        *d.figures.diverged.entry(kind).or_insert(0) += 1;
        if d.samples.len() == SAMPLES {
            d.samples.pop_front();
        }
        d.samples.push_back(DivergenceSample {
            at_ms: crate::clock::unix_ms(),
            method: method.to_string(),
            path: path.to_string(),
            kind,
            statuses: difference.statuses,
            headers: difference.headers,
            paths: difference.paths,
        });
    }

    /// The comparisons so far.
    pub fn shadow_figures(&self) -> ShadowFigures {
        let d = self.divergences.lock().unwrap_or_else(|p| p.into_inner());
        d.figures.clone()
    }

    /// The recent differing pairs, oldest first.
    pub fn samples(&self) -> Vec<DivergenceSample> {
        let d = self.divergences.lock().unwrap_or_else(|p| p.into_inner());
        d.samples.iter().cloned().collect()
    }
}

/// A request copied in the shadow phase: the two answers meet here, whichever comes first, and
/// are compared once both came. A side that gives up (the client's exchange failed, the body
/// was too large to copy) leaves the pair uncompared.
pub struct Pair {
    live: Arc<Live>,
    method: String,
    path: String,
    halves: Mutex<Halves>,
}

#[derive(Default)]
struct Halves {
    baseline: Option<Answer>,
    /// `Some(None)`: the candidate gave no answer.
    candidate: Option<Option<Answer>>,
    gave_up: bool,
}

impl Pair {
    /// A pair for request `method path` of `live`'s route.
    pub fn new(live: Arc<Live>, method: &str, path: &str) -> Arc<Pair> {
        Arc::new(Pair {
            live,
            method: method.to_string(),
            path: path.to_string(),
            halves: Mutex::default(),
        })
    }

    fn halves(&self) -> std::sync::MutexGuard<'_, Halves> {
        self.halves.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The baseline's answer (what the client got from the backend).
    pub fn baseline(&self, answer: Answer) {
        let mut h = self.halves();
        if !h.gave_up {
            h.baseline = Some(answer);
        }
        self.meet(h);
    }

    /// The candidate's answer, or `None` when it gave none (failed, timed out).
    pub fn candidate(&self, answer: Option<Answer>) {
        let mut h = self.halves();
        if !h.gave_up {
            h.candidate = Some(answer);
        }
        self.meet(h);
    }

    /// The pair will not be compared.
    pub fn give_up(&self) {
        let mut h = self.halves();
        *h = Halves {
            gave_up: true,
            ..Halves::default()
        };
    }

    /// Whether it was given up.
    pub fn gave_up(&self) -> bool {
        self.halves().gave_up
    }

    /// Compares the answers once both are in (outside the lock).
    fn meet(&self, mut h: std::sync::MutexGuard<'_, Halves>) {
        if h.baseline.is_none() || h.candidate.is_none() {
            return;
        }
        let (Some(baseline), Some(candidate)) = (h.baseline.take(), h.candidate.take()) else {
            return;
        };
        h.gave_up = true;
        drop(h);
        self.live
            .compared(&self.method, &self.path, &baseline, candidate.as_ref());
    }
}
