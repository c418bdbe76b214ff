//! Prometheus samples as lb's collectors build them: a counter or a gauge with its labels, a
//! family's description and the family of its samples. A leaf, so that
//! the collectors of [`super::metrics`] and [`super::compress_metrics`] share it without a circle.

use prometheus::core::Desc;
use prometheus::proto::{Counter, Gauge, LabelPair, Metric, MetricFamily, MetricType};
use std::collections::HashMap;

/// A counter sample with `labels` and `value`.
pub(super) fn counter(labels: &[(&str, &str)], value: f64) -> Metric {
    let mut c = Counter::default();
    c.set_value(value);
    let mut m = Metric::from_label(label_pairs(labels));
    m.set_counter(c);
    m
}

/// A gauge sample with `labels` and `value`.
pub(super) fn gauge(labels: &[(&str, &str)], value: f64) -> Metric {
    let mut g = Gauge::default();
    g.set_value(value);
    let mut m = Metric::from_label(label_pairs(labels));
    m.set_gauge(g);
    m
}

/// `labels` as Prometheus label pairs.
pub(super) fn label_pairs(labels: &[(&str, &str)]) -> Vec<LabelPair> {
    labels
        .iter()
        .map(|(k, v)| {
            let mut pair = LabelPair::default();
            pair.set_name(k.to_string());
            pair.set_value(v.to_string());
            pair
        })
        .collect()
}

/// The description of family `name` with `help` and `labels` (`None`: Prometheus refuses it).
pub(super) fn desc(name: &str, help: &str, labels: &[&str]) -> Option<Desc> {
    let labels = labels.iter().map(|l| l.to_string()).collect();
    Desc::new(name.to_string(), help.to_string(), labels, HashMap::new()).ok()
}

/// Family `name` of type `kind` with `help`, holding `metrics`.
pub(super) fn family(name: &str, help: &str, kind: MetricType, metrics: Vec<Metric>) -> MetricFamily {
    let mut family = MetricFamily::default();
    family.set_name(name.to_string());
    family.set_help(help.to_string());
    family.set_field_type(kind);
    family.set_metric(metrics);
    family
}
