//! Prometheus samples as lb's collectors build them: a counter or a gauge with its labels. A leaf, so that
//! the collectors of [`super::metrics`] and [`super::compress_metrics`] share it without a circle.

use prometheus::proto::{Counter, Gauge, LabelPair, Metric};

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
