//! The routing table: each rule a set of match conditions (host, path prefix or regex, methods,
//! headers, query parameters), first match wins. It only picks a target; what happens on no
//! match (404) is the proxy's business. [`Routing`] holds the live table of pools and rules the
//! proxy reads on every request and a reload replaces at once.

use crate::config::rules::{MatchConf, Pattern, ValueMatch};
use crate::request::compress::Compression;
use crate::request::guard::Guard;
use crate::request::pool::Pool;
use crate::request::rules::Rules;
use crate::request::split::Split;
use crate::request::stats::RouteStats;
use http::{HeaderName, Method};
use pingora_http::RequestHeader;
use std::collections::BTreeMap;
use std::sync::Arc;

/// Where a route leads, and what happens on the way.
pub struct Target {
    /// The route's name, if it has one.
    pub name: Option<Arc<str>>,
    /// The pool that serves it; with a split, the first side's, and [`Target::split`] chooses
    /// each request's ([`Target::choose`]).
    pub pool: Arc<Pool>,
    /// The weighted split between pools, if the route has one.
    pub split: Option<Arc<Split>>,
    /// What the request passes first, in order (HTTPS redirect, rate limit, redirect mode).
    pub guards: Vec<Box<dyn Guard>>,
    /// How the request and the response change on the way.
    pub rules: Rules,
    /// Where copies of the route's requests go, if anywhere.
    pub mirror: Option<Arc<crate::request::mirror::Mirror>>,
    /// How responses are compressed; `None`: they are not.
    pub compress: Option<Compression>,
    /// Its responses by status class, under the route's label.
    pub stats: Arc<RouteStats>,
    /// The route's rollout, while one runs: its split is [`Target::split`].
    pub rollout: Option<Arc<crate::request::rollout::Live>>,
}

impl Target {
    /// A plain route to `pool`.
    pub fn to(pool: Arc<Pool>) -> Self {
        Target {
            name: None,
            pool,
            split: None,
            guards: Vec::new(),
            rules: Rules::default(),
            mirror: None,
            compress: None,
            stats: Arc::default(),
            rollout: None,
        }
    }
}

/// The pools and the rules that lead to them, as one consistent generation.
#[derive(Default)]
pub struct Table {
    /// Rules, in order.
    pub router: Router<Arc<Target>>,
    /// Every pool by name (routed to or not).
    pub pools: BTreeMap<String, Arc<Pool>>,
}

impl Table {
    /// The counters of the route labelled `label` ([`RouteStats::label`]), to carry over a
    /// reload.
    pub fn route_stats(&self, label: &str) -> Option<Arc<RouteStats>> {
        self.router
            .targets()
            .find(|t| t.stats.label() == label)
            .map(|t| Arc::clone(&t.stats))
    }

    /// Forgets guard state no longer needed, such as rate-limit keys back to a full burst
    /// (called every few seconds).
    pub fn sweep_guards(&self, now_ns: u64) {
        for guard in self.router.targets().flat_map(|t| &t.guards) {
            guard.sweep(now_ns);
        }
    }
}

/// The live table: read per request, swapped whole by a reload.
pub type Routing = arc_swap::ArcSwap<Table>;

/// How a rule matches the request's host.
#[derive(Debug, Clone, PartialEq, Eq)]
enum HostMatch {
    Any,
    /// Exact name, lower case.
    Exact(String),
    /// `*.example.com`: stored as `.example.com`, matches any subdomain.
    Subdomain(String),
}

impl HostMatch {
    fn new(pattern: Option<&str>) -> Self {
        match pattern.map(|p| p.trim_end_matches('.').to_ascii_lowercase()) {
            None => HostMatch::Any,
            Some(p) => match p.strip_prefix('*') {
                Some(suffix) => HostMatch::Subdomain(suffix.to_string()),
                None => HostMatch::Exact(p),
            },
        }
    }

    fn matches(&self, host: Option<&str>) -> bool {
        match (self, host) {
            (HostMatch::Any, _) => true,
            (_, None) => false,
            (HostMatch::Exact(name), Some(h)) => h.eq_ignore_ascii_case(name),
            (HostMatch::Subdomain(suffix), Some(h)) => {
                h.len() > suffix.len()
                    && h.is_char_boundary(h.len() - suffix.len())
                    && h[h.len() - suffix.len()..].eq_ignore_ascii_case(suffix)
            }
        }
    }
}

/// What a request must look like for a rule to match: every condition given.
#[derive(Debug, Clone)]
pub struct Matcher {
    host: HostMatch,
    prefix: Option<String>,
    regex: Option<Pattern>,
    methods: Option<Vec<Method>>,
    headers: Vec<(HeaderName, ValueMatch)>,
    query: Vec<(String, ValueMatch)>,
}

impl Matcher {
    /// Conditions on the host and the path prefix only (`None`: any).
    pub fn simple(host: Option<&str>, prefix: Option<&str>) -> Self {
        Matcher {
            host: HostMatch::new(host),
            prefix: prefix.map(str::to_string),
            regex: None,
            methods: None,
            headers: Vec::new(),
            query: Vec::new(),
        }
    }

    /// The conditions of `conf`, with the host and prefix given (wherever the route wrote them).
    pub fn of(conf: &MatchConf, host: Option<&str>, prefix: Option<&str>) -> Self {
        Matcher {
            regex: conf.path_regex.clone(),
            methods: conf.methods.as_ref().map(|m| m.iter().map(|m| m.0.clone()).collect()),
            headers: conf.headers.0.iter().map(|(n, m)| (n.0.clone(), m.clone())).collect(),
            query: conf.query.0.clone(),
            ..Matcher::simple(host, prefix)
        }
    }

    /// Whether `req` (for `host`, its port stripped) meets every condition.
    fn matches(&self, req: &RequestHeader, host: Option<&str>) -> bool {
        let path = req.uri.path();
        self.host.matches(host)
            && self.prefix.as_deref().is_none_or(|p| path.starts_with(p))
            && self.methods.as_ref().is_none_or(|m| m.contains(&req.method))
            && self.regex.as_ref().is_none_or(|r| r.0.is_match(path))
            && self.headers.iter().all(|(name, want)| header_matches(req, name, want))
            && self
                .query
                .iter()
                .all(|(name, want)| query_matches(req.uri.query(), name, want))
    }
}

/// Whether header `name` of `req` is as `want` says (any of its values, for a value).
fn header_matches(req: &RequestHeader, name: &HeaderName, want: &ValueMatch) -> bool {
    let mut values = req.headers.get_all(name).iter();
    match want {
        ValueMatch::Present(present) => values.next().is_some() == *present,
        ValueMatch::Exact(text) => values.any(|v| v.as_bytes() == text.as_bytes()),
        ValueMatch::Regex(re) => values.any(|v| v.to_str().is_ok_and(|v| re.0.is_match(v))),
    }
}

/// Whether parameter `name` of `query` is as `want` says (any of its values, percent-decoded).
fn query_matches(query: Option<&str>, name: &str, want: &ValueMatch) -> bool {
    let mut values = query.unwrap_or("").split('&').filter_map(|pair| {
        let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
        (decode(key) == name).then(|| decode(value))
    });
    match want {
        ValueMatch::Present(present) => values.next().is_some() == *present,
        ValueMatch::Exact(text) => values.any(|v| v == *text),
        ValueMatch::Regex(re) => values.any(|v| re.0.is_match(&v)),
    }
}

fn decode(text: &str) -> std::borrow::Cow<'_, str> {
    percent_encoding::percent_decode_str(text).decode_utf8_lossy()
}

struct Rule<T> {
    matcher: Matcher,
    target: T,
}

/// Ordered rules mapping a request's host and path to a target.
pub struct Router<T> {
    rules: Vec<Rule<T>>,
}

impl<T> Router<T> {
    /// An empty table: nothing matches.
    pub fn new() -> Self {
        Router { rules: Vec::new() }
    }

    /// Appends a rule; `None` for host or prefix means "any".
    pub fn push(&mut self, host: Option<&str>, prefix: Option<&str>, target: T) {
        self.push_matcher(Matcher::simple(host, prefix), target);
    }

    /// Appends a rule with `matcher`'s conditions.
    pub fn push_matcher(&mut self, matcher: Matcher, target: T) {
        self.rules.push(Rule { matcher, target });
    }

    /// Every rule's target, in order.
    pub fn targets(&self) -> impl Iterator<Item = &T> {
        self.rules.iter().map(|r| &r.target)
    }

    /// The target of the first rule `req` matches (its host from the target or `Host`, port
    /// allowed).
    pub fn find(&self, req: &RequestHeader) -> Option<&T> {
        let host = crate::request::request_host(req).map(strip_port);
        self.rules
            .iter()
            .find(|r| r.matcher.matches(req, host))
            .map(|r| &r.target)
    }
}

impl<T> Default for Router<T> {
    fn default() -> Self {
        Self::new()
    }
}

/// `example.com:8080` → `example.com`, `[::1]:80` → `::1`; a trailing dot is dropped.
fn strip_port(host: &str) -> &str {
    let name = if let Some(rest) = host.strip_prefix('[') {
        rest.split(']').next().unwrap_or(rest)
    } else if host.matches(':').count() == 1 {
        host.split(':').next().unwrap_or(host)
    } else {
        host
    };
    name.trim_end_matches('.')
}

/// What routing a request decided: its route, the pool that serves it (with a split, the side
/// chosen), and the split cookie its response sets, if any.
pub struct Routed {
    /// The route.
    pub target: Arc<Target>,
    /// The pool.
    pub pool: Arc<Pool>,
    /// A `Set-Cookie` value for the response.
    pub set_cookie: Option<String>,
}

impl Target {
    /// Whether lb's own loop can serve every request of the route: its pool (every side's, for
    /// a split) is reached over plaintext HTTP/1.1.
    pub fn plain_http1(&self) -> bool {
        self.pool.plain_http1() && self.split.as_ref().is_none_or(|s| s.plain_http1())
    }

    /// Routes a request of `req` from `client` here: the pool (a split's side, chosen now) and
    /// the split cookie to set.
    pub fn choose(self: &Arc<Self>, req: &RequestHeader, client: Option<std::net::IpAddr>) -> Routed {
        let Some(split) = &self.split else {
            return Routed {
                target: Arc::clone(self),
                pool: Arc::clone(&self.pool),
                set_cookie: None,
            };
        };
        let choice = split.choose(req, client);
        let pool = split.side_pool(choice.side).unwrap_or(&self.pool);
        Routed {
            pool: Arc::clone(pool),
            set_cookie: choice.set_cookie.then(|| split.cookie(choice.side)).flatten(),
            target: Arc::clone(self),
        }
    }
}

#[cfg(test)]
#[path = "route_tests.rs"]
mod tests;
