//! The routing table: host and path-prefix rules, first match wins. It only picks a target;
//! what happens on no match (404) is the proxy's business. [`Routing`] holds the live table of
//! pools and rules the proxy reads on every request and a reload replaces at once.

use crate::request::guard::Guard;
use crate::request::pool::Pool;
use std::collections::BTreeMap;
use std::sync::Arc;

/// Where a route leads, and what happens on the way.
pub struct Target {
    /// The pool that serves it.
    pub pool: Arc<Pool>,
    /// What the request passes first, in order (HTTPS redirect, rate limit, redirect mode).
    pub guards: Vec<Box<dyn Guard>>,
}

impl Target {
    /// A plain route to `pool`.
    pub fn to(pool: Arc<Pool>) -> Self {
        Target {
            pool,
            guards: Vec::new(),
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

struct Rule<T> {
    host: HostMatch,
    prefix: Option<String>,
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
        self.rules.push(Rule {
            host: HostMatch::new(host),
            prefix: prefix.map(str::to_string),
            target,
        });
    }

    /// Every rule's target, in order.
    pub fn targets(&self) -> impl Iterator<Item = &T> {
        self.rules.iter().map(|r| &r.target)
    }

    /// The target of the first rule matching `host` (a `Host` header, port allowed) and `path`.
    pub fn find(&self, host: Option<&str>, path: &str) -> Option<&T> {
        let host = host.map(strip_port);
        self.rules
            .iter()
            .find(|r| r.host.matches(host) && r.prefix.as_deref().is_none_or(|p| path.starts_with(p)))
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

#[cfg(test)]
mod tests {
    use super::*;

    fn table() -> Router<&'static str> {
        let mut r = Router::new();
        r.push(Some("api.example.com"), Some("/v2/"), "api-v2");
        r.push(Some("api.example.com"), None, "api");
        r.push(Some("*.example.com"), None, "sub");
        r.push(None, Some("/static/"), "static");
        r
    }

    #[test]
    fn first_match_wins() {
        let r = table();
        assert_eq!(r.find(Some("api.example.com"), "/v2/x"), Some(&"api-v2"));
        assert_eq!(r.find(Some("API.Example.com:8080"), "/v1"), Some(&"api"));
        assert_eq!(r.find(Some("www.example.com"), "/static/a"), Some(&"sub"));
        assert_eq!(r.find(Some("other.org"), "/static/a"), Some(&"static"));
    }

    #[test]
    fn no_match_is_none() {
        let r = table();
        assert_eq!(r.find(Some("example.com"), "/"), None);
        assert_eq!(r.find(None, "/index.html"), None);
    }

    #[test]
    fn ports_brackets_and_trailing_dots_are_ignored() {
        assert_eq!(strip_port("a.com:80"), "a.com");
        assert_eq!(strip_port("[::1]:8080"), "::1");
        assert_eq!(strip_port("a.com."), "a.com");
        assert_eq!(strip_port("::1"), "::1");
    }

    #[test]
    fn catch_all() {
        let mut r = Router::new();
        r.push(None, None, 1);
        assert_eq!(r.find(None, "/anything"), Some(&1));
    }
}
