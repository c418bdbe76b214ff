//! The rollout families of `/metrics`: each route's rollout (its step, the candidate's share, its
//! phase) as the control plane last set it, and the shadow phase's comparisons and divergences
//! by route and kind, counted on the request path since start. The other families are in
//! [`super::metrics`].

use super::metric_samples::{counter, desc, family, gauge};
use super::rollout::gauges;
use crate::request::rollout::shadow_counts;
use prometheus::core::{Collector, Desc};
use prometheus::proto::{Metric, MetricFamily, MetricType};

/// `(name, type, help, labels)` of the families.
const FAMILIES: [(&str, MetricType, &str, &[&str]); 5] = [
    (
        "lb_rollout_step",
        MetricType::GAUGE,
        "The step each route's rollout is at, from 1 (0: the shadow phase, or rolled back or aborted; the number of steps once promoted).",
        &["route"],
    ),
    (
        "lb_rollout_share",
        MetricType::GAUGE,
        "The candidate's share of each route's requests under its rollout now, in percent.",
        &["route"],
    ),
    (
        "lb_rollout_phase",
        MetricType::GAUGE,
        "1 for the phase each route's rollout is in (shadow, steps, held, promoted, rolled_back, aborted), with paused=\"true\" while paused.",
        &["route", "phase", "paused"],
    ),
    (
        "lb_shadow_comparisons_total",
        MetricType::COUNTER,
        "Pairs of answers (baseline, candidate) compared in rollouts' shadow phases, by route.",
        &["route"],
    ),
    (
        "lb_shadow_divergences_total",
        MetricType::COUNTER,
        "Compared pairs that differed, by route and kind: status, header, body, or error (the candidate gave no answer).",
        &["route", "kind"],
    ),
];

/// Collects the rollouts' gauges and the shadows' counters.
pub struct RolloutCollector {
    descs: Vec<Desc>,
}

impl Default for RolloutCollector {
    fn default() -> Self {
        let descs = FAMILIES
            .iter()
            .filter_map(|(name, _, help, labels)| desc(name, help, labels))
            .collect();
        RolloutCollector { descs }
    }
}

impl Collector for RolloutCollector {
    fn desc(&self) -> Vec<&Desc> {
        self.descs.iter().collect()
    }

    fn collect(&self) -> Vec<MetricFamily> {
        let mut out: [Vec<Metric>; 5] = Default::default();
        for (route, g) in gauges() {
            out[0].push(gauge(&[("route", &route)], g.step as f64));
            out[1].push(gauge(&[("route", &route)], g.share));
            let paused = if g.paused { "true" } else { "false" };
            out[2].push(gauge(&[("route", &route), ("phase", g.phase), ("paused", paused)], 1.0));
        }
        for (route, compared, diverged) in shadow_counts() {
            out[3].push(counter(&[("route", &route)], compared as f64));
            for (kind, n) in diverged {
                out[4].push(counter(&[("route", &route), ("kind", kind)], n as f64));
            }
        }
        out.into_iter()
            .zip(FAMILIES)
            .map(|(metrics, (name, kind, help, _))| family(name, help, kind, metrics))
            .collect()
    }
}
