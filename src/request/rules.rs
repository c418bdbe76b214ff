//! A route's request and response rules as the request path applies them: the path rewritten
//! (a prefix stripped, or a regex replaced, the query kept), header fields removed, set and added,
//! their values expanded from `$variables`. Both request loops call these through the proxy's
//! shared methods; a rule never lets a malformed head through (a rewrite that makes an invalid
//! path is refused, and the request answered 500).

use crate::config::rules::{Fields, Part, Pattern, RequestRules, ResponseRules, Template, Var};
use crate::config::Route;
use http::uri::{PathAndQuery, Uri};
use http::{HeaderMap, HeaderName, HeaderValue};
use std::fmt::Write;
use std::net::IpAddr;

/// What `$variables` stand for in one request.
#[derive(Debug, Default, Clone, Copy)]
pub struct Vars<'a> {
    /// The client (through trusted proxies).
    pub client_ip: Option<IpAddr>,
    /// The request's host.
    pub host: Option<&'a str>,
    /// `http` or `https`.
    pub scheme: &'static str,
    /// The request's id.
    pub request_id: Option<&'a str>,
    /// The client's TCP port.
    pub remote_port: Option<u16>,
}

/// A header value ready to be expanded: literals are made once, at load.
#[derive(Debug, Clone)]
enum Value {
    Literal(HeaderValue),
    Template(Vec<Part>),
}

impl Value {
    fn of(t: &Template) -> Self {
        match t.literal().and_then(|l| HeaderValue::from_str(l).ok()) {
            Some(v) => Value::Literal(v),
            None => Value::Template(t.parts.clone()),
        }
    }

    /// The value for a request (`None` if an expanded variable made it invalid, which the
    /// variables lb offers cannot do).
    fn expand(&self, vars: &Vars<'_>) -> Option<HeaderValue> {
        let parts = match self {
            Value::Literal(v) => return Some(v.clone()),
            Value::Template(parts) => parts,
        };
        let mut out = String::with_capacity(64);
        for part in parts {
            match part {
                Part::Text(t) => out.push_str(t),
                Part::Var(Var::ClientIp) => {
                    if let Some(ip) = vars.client_ip {
                        let _ = write!(out, "{}", ip.to_canonical());
                    }
                }
                Part::Var(Var::Host) => out.push_str(vars.host.unwrap_or("")),
                Part::Var(Var::Scheme) => out.push_str(vars.scheme),
                Part::Var(Var::RequestId) => out.push_str(vars.request_id.unwrap_or("")),
                Part::Var(Var::RemotePort) => {
                    if let Some(port) = vars.remote_port {
                        let _ = write!(out, "{port}");
                    }
                }
            }
        }
        HeaderValue::from_maybe_shared(bytes::Bytes::from(out)).ok()
    }
}

/// Header changes: removed, then set (replacing), then added.
#[derive(Debug, Clone, Default)]
pub struct HeaderEdits {
    remove: Vec<HeaderName>,
    set: Vec<(HeaderName, Value)>,
    add: Vec<(HeaderName, Value)>,
}

impl HeaderEdits {
    fn new(remove: &[crate::config::rules::FieldName], set: &Fields, add: &Fields) -> Self {
        let values = |f: &Fields| f.0.iter().map(|(n, t)| (n.0.clone(), Value::of(t))).collect();
        HeaderEdits {
            remove: remove.iter().map(|n| n.0.clone()).collect(),
            set: values(set),
            add: values(add),
        }
    }

    /// Whether there is nothing to do.
    pub fn is_empty(&self) -> bool {
        self.remove.is_empty() && self.set.is_empty() && self.add.is_empty()
    }

    /// Applies the changes to `headers`.
    pub fn apply(&self, headers: &mut HeaderMap, vars: &Vars<'_>) {
        for name in &self.remove {
            headers.remove(name);
        }
        for (name, value) in &self.set {
            if let Some(v) = value.expand(vars) {
                headers.insert(name.clone(), v);
            }
        }
        for (name, value) in &self.add {
            if let Some(v) = value.expand(vars) {
                headers.append(name.clone(), v);
            }
        }
    }
}

impl HeaderEdits {
    /// Applies the changes to a response head (through its API, which keeps its header-case
    /// map in step).
    pub fn apply_response(
        &self,
        resp: &mut pingora_http::ResponseHeader,
        vars: &Vars<'_>,
    ) -> pingora_error::Result<()> {
        for name in &self.remove {
            resp.remove_header(name);
        }
        for (name, value) in &self.set {
            if let Some(v) = value.expand(vars) {
                resp.insert_header(name.clone(), v)?;
            }
        }
        for (name, value) in &self.add {
            if let Some(v) = value.expand(vars) {
                resp.append_header(name.clone(), v)?;
            }
        }
        Ok(())
    }
}

/// How the path changes.
#[derive(Debug, Clone)]
enum PathEdit {
    /// A prefix removed (`/api` from `/api/x` and `/api`).
    Strip(String),
    /// A regex replaced (the first match).
    Rewrite(Pattern, String),
}

/// A path rewrite that produced something that is not a path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BadPath(pub String);

/// A route's rules.
#[derive(Debug, Clone, Default)]
pub struct Rules {
    path: Option<PathEdit>,
    /// The request's header changes.
    pub request: HeaderEdits,
    /// The response's header changes.
    pub response: HeaderEdits,
}

impl Rules {
    /// The rules of `route`.
    pub fn of(route: &Route) -> Self {
        let RequestRules {
            strip_prefix,
            rewrite,
            set_headers,
            add_headers,
            remove_headers,
        } = &route.request;
        let path = match (strip_prefix, rewrite) {
            (Some(prefix), _) => Some(PathEdit::Strip(prefix.trim_end_matches('/').to_string())),
            (None, Some(r)) => Some(PathEdit::Rewrite(r.regex.clone(), r.replace.clone())),
            (None, None) => None,
        };
        let ResponseRules {
            set_headers: rset,
            add_headers: radd,
            remove_headers: rremove,
        } = &route.response;
        Rules {
            path,
            request: HeaderEdits::new(remove_headers, set_headers, add_headers),
            response: HeaderEdits::new(rremove, rset, radd),
        }
    }

    /// Whether the request's path or headers change.
    pub fn edits_request(&self) -> bool {
        self.path.is_some() || !self.request.is_empty()
    }

    /// Rewrites the path of `uri` (its query kept), if a rule says so.
    pub fn rewrite(&self, uri: &mut Uri) -> Result<(), BadPath> {
        let Some(edit) = &self.path else { return Ok(()) };
        let path = uri.path();
        let new_path = match edit {
            PathEdit::Strip(prefix) => match path.strip_prefix(prefix.as_str()) {
                Some("") => "/".to_string(),
                Some(rest) if rest.starts_with('/') => rest.to_string(),
                _ => return Ok(()),
            },
            PathEdit::Rewrite(regex, replace) => match regex.0.replace(path, replace.as_str()) {
                std::borrow::Cow::Borrowed(_) => return Ok(()),
                std::borrow::Cow::Owned(p) => p,
            },
        };
        let with_query = match uri.query() {
            Some(q) => format!("{new_path}?{q}"),
            None => new_path,
        };
        let valid = with_query.starts_with('/') && !with_query.contains(['#', ' ']);
        let pq = PathAndQuery::try_from(with_query.as_str())
            .ok()
            .filter(|_| valid)
            .ok_or_else(|| BadPath(with_query.clone()))?;
        let mut parts = std::mem::take(uri).into_parts();
        parts.path_and_query = Some(pq);
        *uri = Uri::from_parts(parts).map_err(|_| BadPath(with_query))?;
        Ok(())
    }
}

#[cfg(test)]
#[path = "rules_tests.rs"]
mod tests;
