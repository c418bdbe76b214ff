//! The compression families of `/metrics`: responses compressed and bytes into and out of the
//! compressors, by route and algorithm, read from the request path's counters when scraped. The
//! other families are in [`super::metrics`].

use super::metric_samples::{counter, desc, family};
use crate::request::compress::stats::{self, ENCODINGS};
use crate::request::compress::token;
use prometheus::core::{Collector, Desc};
use prometheus::proto::{MetricFamily, MetricType};

/// `(name, help, labels)` of the families.
const FAMILIES: [(&str, &str, &[&str]); 2] = [
    (
        "lb_compressed_responses_total",
        "Responses lb compressed, by route (\"\": routes without a name) and algorithm (zstd, br, gzip).",
        &["route", "algorithm"],
    ),
    (
        "lb_compression_bytes_total",
        "Bytes through lb's compressors, by route, algorithm and direction (in: the body as the backend sent it; out: compressed, as sent to the client).",
        &["route", "algorithm", "direction"],
    ),
];

/// Collects the compression counters of every route that ever compressed (they outlive reloads).
pub struct CompressCollector {
    descs: Vec<Desc>,
}

impl Default for CompressCollector {
    /// A collector of the process's compression counters.
    fn default() -> Self {
        let descs = FAMILIES
            .iter()
            .filter_map(|(name, help, labels)| desc(name, help, labels))
            .collect();
        CompressCollector { descs }
    }
}

impl Collector for CompressCollector {
    fn desc(&self) -> Vec<&Desc> {
        self.descs.iter().collect()
    }

    fn collect(&self) -> Vec<MetricFamily> {
        let (mut responses, mut bytes) = (Vec::new(), Vec::new());
        for (route, counters) in stats::all() {
            for encoding in ENCODINGS {
                let (n, bytes_in, bytes_out) = counters.read(encoding);
                let algorithm = token(encoding);
                responses.push(counter(&[("route", &*route), ("algorithm", algorithm)], n as f64));
                for (direction, value) in [("in", bytes_in), ("out", bytes_out)] {
                    let labels = [("route", &*route), ("algorithm", algorithm), ("direction", direction)];
                    bytes.push(counter(&labels, value as f64));
                }
            }
        }
        [responses, bytes]
            .into_iter()
            .zip(FAMILIES)
            .map(|(metrics, (name, help, _))| family(name, help, MetricType::COUNTER, metrics))
            .collect()
    }
}
