//! The comparison a rollout's shadow phase makes between the baseline's answer (the one the
//! client got) and the candidate's: statuses, chosen headers, and bodies as bytes or as
//! normalised JSON with paths left out. Pure: capturing the answers, sampling, counting and
//! reporting divergences belong to the rollout.

use bytes::Bytes;
use http::{HeaderMap, HeaderName};
use serde_json::{Map, Number, Value};

pub use crate::config::json_path::JsonPath;
use crate::config::json_path::{write_path, At};

/// Differing JSON paths a [`Difference`] records at most; the walk stops there.
pub const MAX_PATHS: usize = 10;

/// Levels of a JSON document the walk descends (serde_json parses no deeper); below, values
/// are compared whole.
const MAX_DEPTH: usize = 128;

/// The path of a whole body that differs: bytes compared (`hash`, or a body that is not JSON).
const WHOLE: &str = "$";

/// One side's answer as captured: the status, the response headers (all of them; the
/// comparison picks the configured ones), the body (up to the capture limit) and whether the
/// body is whole (not cut at the limit).
#[derive(Debug, Clone)]
pub struct Answer {
    /// The response status.
    pub status: u16,
    /// Every response header.
    pub headers: HeaderMap,
    /// The body as captured: all of it when `body_whole`, else its first bytes.
    pub body: Bytes,
    /// Whether `body` is the whole body (a body cut at the capture limit is not compared).
    pub body_whole: bool,
}

/// How bodies are compared (`compare.body` in the config): `none`, `hash` (bytes equal),
/// `json` (parsed, normalised: object key order and number formatting do not matter, the
/// `ignore` paths removed, then equal; a body that is not JSON is compared as bytes).
pub use crate::config::BodyCompare as BodyMode;

/// What differed, for the divergence metric's `kind` label; serialised as its label.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Kind {
    /// The statuses differ.
    Status,
    /// A compared header differs.
    Header,
    /// The bodies differ.
    Body,
}

impl Kind {
    /// Every kind, in the order a difference is classified.
    pub const ALL: [Kind; 3] = [Kind::Status, Kind::Header, Kind::Body];

    /// The metric's label: `status`, `header` or `body`.
    pub fn label(self) -> &'static str {
        match self {
            Kind::Status => "status",
            Kind::Header => "header",
            Kind::Body => "body",
        }
    }
}

impl serde::Serialize for Kind {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.label())
    }
}

/// A difference between two answers. `kind` is the first kind that differs in the order
/// status, header, body; the other fields describe every compared part, so a status
/// difference also lists the headers and body paths that differ.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Difference {
    /// What differed first, in the order status, header, body.
    pub kind: Kind,
    /// The baseline's and the candidate's status (whether or not statuses are compared).
    pub statuses: (u16, u16),
    /// The compared headers whose values differ (lower-case names, in the configured order).
    pub headers: Vec<String>,
    /// The differing JSON paths (at most [`MAX_PATHS`], like `$.items[2].price`), or `["$"]`
    /// when bodies compared as bytes differ; empty when the bodies agree or were not compared.
    pub paths: Vec<String>,
}

/// The comparison a rollout's shadow makes.
#[derive(Debug, Clone)]
pub struct Compare {
    status: bool,
    headers: Vec<HeaderName>,
    body: BodyMode,
    ignore: Vec<JsonPath>,
}

impl Compare {
    /// `status`: compare statuses; `headers`: header names whose values must be equal
    /// (case-insensitive; a header missing on one side differs); `body`: the mode; `ignore`:
    /// JSON paths left out, allowed with `body: json` only (other modes parse no JSON).
    pub fn new(status: bool, headers: &[String], body: BodyMode, ignore: &[String]) -> Result<Compare, String> {
        let mut names: Vec<HeaderName> = Vec::new();
        for text in headers {
            let name = HeaderName::from_bytes(text.as_bytes()).map_err(|_| format!("{text:?} is not a header name"))?;
            if !names.contains(&name) {
                names.push(name);
            }
        }
        let ignore = ignore
            .iter()
            .map(|text| JsonPath::parse(text))
            .collect::<Result<Vec<_>, _>>()?;
        if !ignore.is_empty() && body != BodyMode::Json {
            return Err(format!(
                "ignore needs body: json (with body: {}, no JSON is compared)",
                body.name()
            ));
        }
        Ok(Compare {
            status,
            headers: names,
            body,
            ignore,
        })
    }

    /// How bodies are compared: with `none`, the capture need not keep bodies.
    pub fn body_mode(&self) -> BodyMode {
        self.body
    }

    /// `None` when the answers agree under this comparison, the difference otherwise. Bodies
    /// are compared only when both are whole; with `json`, when either body is not JSON the
    /// two are compared as bytes. Never panics.
    pub fn diff(&self, baseline: &Answer, candidate: &Answer) -> Option<Difference> {
        let status = self.status && baseline.status != candidate.status;
        let headers = self.differing_headers(&baseline.headers, &candidate.headers);
        let paths = self.differing_paths(baseline, candidate);
        let kind = if status {
            Kind::Status
        } else if !headers.is_empty() {
            Kind::Header
        } else if !paths.is_empty() {
            Kind::Body
        } else {
            return None;
        };
        Some(Difference {
            kind,
            statuses: (baseline.status, candidate.status),
            headers,
            paths,
        })
    }

    /// The compared headers whose values (all of them, in order) are not the same.
    fn differing_headers(&self, a: &HeaderMap, b: &HeaderMap) -> Vec<String> {
        self.headers
            .iter()
            .filter(|name| !a.get_all(*name).iter().eq(b.get_all(*name).iter()))
            .map(|name| name.as_str().to_string())
            .collect()
    }

    /// The body's differences: empty when they agree or are not compared.
    fn differing_paths(&self, a: &Answer, b: &Answer) -> Vec<String> {
        if self.body == BodyMode::None || !a.body_whole || !b.body_whole || a.body == b.body {
            return Vec::new();
        }
        if self.body == BodyMode::Json {
            let parse = |body: &Bytes| serde_json::from_slice::<Value>(body).ok();
            if let (Some(x), Some(y)) = (parse(&a.body), parse(&b.body)) {
                return json_differences(&x, &y, &self.ignore);
            }
        }
        vec![WHOLE.to_string()]
    }
}

impl BodyMode {
    /// The name the config uses.
    fn name(self) -> &'static str {
        match self {
            BodyMode::None => "none",
            BodyMode::Hash => "hash",
            BodyMode::Json => "json",
        }
    }
}

/// The paths where `a` and `b` differ (at most [`MAX_PATHS`]), `ignore`'s paths left out.
fn json_differences(a: &Value, b: &Value, ignore: &[JsonPath]) -> Vec<String> {
    let live: Vec<&JsonPath> = ignore.iter().collect();
    let mut walk = Walk { paths: Vec::new() };
    walk.values(a, b, &mut Vec::new(), &live);
    walk.paths
}

/// Both documents walked side by side; each differing leaf's path recorded.
struct Walk {
    paths: Vec<String>,
}

impl Walk {
    fn full(&self) -> bool {
        self.paths.len() >= MAX_PATHS
    }

    fn record(&mut self, path: &[At<'_>]) {
        if !self.full() {
            self.paths.push(write_path(path));
        }
    }

    /// `live`: the ignored paths whose first `path.len()` steps select `path`.
    fn values<'v>(&mut self, a: &'v Value, b: &'v Value, path: &mut Vec<At<'v>>, live: &[&JsonPath]) {
        match (a, b) {
            _ if self.full() => {}
            (Value::Object(x), Value::Object(y)) if path.len() < MAX_DEPTH => self.objects(x, y, path, live),
            (Value::Array(x), Value::Array(y)) if path.len() < MAX_DEPTH => self.arrays(x, y, path, live),
            _ if same_leaf(a, b) => {}
            _ => self.record(path),
        }
    }

    /// Members of either object; a key on one side only differs at its path.
    fn objects<'v>(
        &mut self,
        x: &'v Map<String, Value>,
        y: &'v Map<String, Value>,
        path: &mut Vec<At<'v>>,
        live: &[&JsonPath],
    ) {
        let only_y = y.iter().filter(|(key, _)| !x.contains_key(*key));
        let members = x.iter().map(|(key, va)| (key, Some(va), y.get(key)));
        for (key, va, vb) in members.chain(only_y.map(|(key, vb)| (key, None, Some(vb)))) {
            self.child(At::Key(key), va, vb, path, live);
            if self.full() {
                return;
            }
        }
    }

    /// Elements at the same index; arrays of different lengths differ at the first index
    /// past the shorter one that is not ignored.
    fn arrays<'v>(&mut self, x: &'v [Value], y: &'v [Value], path: &mut Vec<At<'v>>, live: &[&JsonPath]) {
        for i in 0..x.len().max(y.len()) {
            let (va, vb) = (x.get(i), y.get(i));
            let compared = self.child(At::Index(i), va, vb, path, live);
            if self.full() || (compared && (va.is_none() || vb.is_none())) {
                return;
            }
        }
    }

    /// One child (on one side or both) unless ignored; whether it was compared.
    fn child<'v>(
        &mut self,
        at: At<'v>,
        a: Option<&'v Value>,
        b: Option<&'v Value>,
        path: &mut Vec<At<'v>>,
        live: &[&JsonPath],
    ) -> bool {
        let Some(live) = below(live, path.len(), at) else {
            return false;
        };
        path.push(at);
        match (a, b) {
            (Some(a), Some(b)) => self.values(a, b, path, &live),
            _ => self.record(path),
        }
        path.pop();
        true
    }
}

/// The ignored paths still live below the child `at` of a value `depth` steps deep, or `None`
/// when one of them ends there (the child is ignored).
fn below<'p>(live: &[&'p JsonPath], depth: usize, at: At<'_>) -> Option<Vec<&'p JsonPath>> {
    let mut next = Vec::new();
    for path in live {
        if path.steps().get(depth).is_some_and(|step| step.selects(at)) {
            if path.steps().len() == depth + 1 {
                return None;
            }
            next.push(*path);
        }
    }
    Some(next)
}

/// Equal leaves (or, below [`MAX_DEPTH`], equal values); numbers by value, so `1`, `1.0`
/// and `1e0` are the same.
fn same_leaf(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => same_number(x, y),
        _ => a == b,
    }
}

fn same_number(x: &Number, y: &Number) -> bool {
    let integer = |n: &Number| n.as_i64().map(i128::from).or_else(|| n.as_u64().map(i128::from));
    match (integer(x), integer(y)) {
        (Some(i), Some(j)) => i == j,
        _ => x.as_f64() == y.as_f64(),
    }
}

#[cfg(test)]
#[path = "shadow_compare_tests.rs"]
mod tests;

#[cfg(test)]
#[path = "shadow_compare_props.rs"]
mod props;
