//! The checks of one route that serde cannot make: the upstreams it names exist, its conditions
//! and rules are coherent (one place for the host, a path prefix that starts with `/`, a split
//! whose weights add up to something), and the files it reads can be read. The first problem is
//! reported with its field path.

use super::rules::{MatchConf, RequestRules};
use super::validate::{problem, Problem};
use super::{Config, Route};

impl Config {
    /// Checks route `route`, at `path` (`routes[2]`).
    pub(super) fn check_route(&self, path: &str, route: &Route) -> Result<(), Problem> {
        if let Some(name) = &route.name {
            let ok = !name.is_empty() && name.bytes().all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b));
            if !ok {
                return problem(
                    format!("{path}.name"),
                    format!("{name:?} is not a valid name (letters, digits, - _ .)"),
                );
            }
        }
        self.check_target(path, route)?;
        check_match(path, route)?;
        check_request(&format!("{path}.request"), &route.request)?;
        if let Some(limit) = &route.rate_limit {
            let rps = limit.requests_per_second;
            if !(rps.is_finite() && rps > 0.0 && rps <= 1e9) {
                return problem(format!("{path}.rate_limit.requests_per_second"), "must be above 0");
            }
            if limit.burst == Some(0) {
                return problem(format!("{path}.rate_limit.burst"), "must be at least 1");
            }
        }
        if route.https_redirect.is_some() && !self.listeners.iter().any(|l| l.tls.is_some()) {
            let msg = "there is no TLS listener to redirect to";
            return problem(format!("{path}.https_redirect"), msg);
        }
        self.check_extras(path, route)
    }

    /// Where the route leads: one upstream, or a split between several, all defined.
    fn check_target(&self, path: &str, route: &Route) -> Result<(), Problem> {
        match (&route.upstream, &route.split) {
            (Some(_), Some(_)) => return problem(format!("{path}.split"), "give either upstream or split, not both"),
            (None, None) => return problem(format!("{path}.upstream"), "missing: give upstream (or split)"),
            (Some(up), None) => self.known_upstream(&format!("{path}.upstream"), up)?,
            (None, Some(split)) => {
                if split.is_empty() {
                    return problem(format!("{path}.split"), "list at least one {upstream, weight}");
                }
                for (i, side) in split.iter().enumerate() {
                    self.known_upstream(&format!("{path}.split[{i}].upstream"), &side.upstream)?;
                    if split[..i].iter().any(|s| s.upstream == side.upstream) {
                        return problem(format!("{path}.split[{i}].upstream"), "is listed twice");
                    }
                }
                if split.iter().map(|s| u64::from(s.weight)).sum::<u64>() == 0 {
                    return problem(format!("{path}.split"), "weights add up to 0: nothing would be served");
                }
            }
        }
        if route.split_by.is_some() && route.split.is_none() {
            return problem(format!("{path}.split_by"), "there is no split to keep clients on");
        }
        Ok(())
    }

    fn known_upstream(&self, path: &str, name: &str) -> Result<(), Problem> {
        if self.upstreams.contains_key(name) {
            return Ok(());
        }
        let names: Vec<&str> = self.upstreams.keys().map(String::as_str).collect();
        problem(
            path,
            format!("no upstream named {name:?} (defined: {})", names.join(", ")),
        )
    }

    /// Access control, basic auth, compression and the mirror.
    fn check_extras(&self, path: &str, route: &Route) -> Result<(), Problem> {
        if let Some(auth) = &route.basic_auth {
            if let Err(why) = super::htpasswd::read(&auth.users_file) {
                return problem(format!("{path}.basic_auth.users_file"), why);
            }
            if auth.realm.contains(['"', '\\']) || auth.realm.chars().any(char::is_control) {
                return problem(
                    format!("{path}.basic_auth.realm"),
                    "must not hold quotes, backslashes or control characters",
                );
            }
        }
        if let Some(access) = &route.access {
            if access.allow.is_empty() && access.deny.is_empty() {
                return problem(format!("{path}.access"), "give allow or deny (or leave access out)");
            }
        }
        if let Some(compress) = &route.compress {
            let at = format!("{path}.compress");
            if compress.algorithms.is_empty() {
                return problem(format!("{at}.algorithms"), "list at least one of zstd, br, gzip");
            }
            if !(1..=9).contains(&compress.level) {
                return problem(format!("{at}.level"), "must be from 1 to 9");
            }
            for (i, t) in compress.types.iter().enumerate() {
                let ok = t.split_once('/').is_some_and(|(a, b)| !a.is_empty() && !b.is_empty());
                if !ok {
                    return problem(
                        format!("{at}.types[{i}]"),
                        format!("{t:?} is not a media type (e.g. text/* or application/json)"),
                    );
                }
            }
        }
        if let Some(mirror) = &route.mirror {
            self.known_upstream(&format!("{path}.mirror.upstream"), &mirror.upstream)?;
            if route.upstreams().contains(&mirror.upstream.as_str()) {
                return problem(
                    format!("{path}.mirror.upstream"),
                    "is the route's own upstream: a mirror copies to another",
                );
            }
        }
        Ok(())
    }
}

/// The match conditions: the host and path prefix in one place each, well formed.
fn check_match(path: &str, route: &Route) -> Result<(), Problem> {
    let m: &MatchConf = &route.matches;
    if route.host.is_some() && m.host.is_some() {
        return problem(
            format!("{path}.match.host"),
            "the route gives host twice (top level and match)",
        );
    }
    if route.path_prefix.is_some() && m.path_prefix.is_some() {
        return problem(
            format!("{path}.match.path_prefix"),
            "the route gives path_prefix twice (top level and match)",
        );
    }
    let at = |field: &str| {
        if m.host.is_some() || m.path_prefix.is_some() {
            format!("{path}.match.{field}")
        } else {
            format!("{path}.{field}")
        }
    };
    if let Some(prefix) = route.path_prefix() {
        if !prefix.starts_with('/') {
            return problem(at("path_prefix"), format!("{prefix:?} must start with /"));
        }
    }
    if let Some(host) = route.host() {
        check_host_pattern(host).or_else(|msg| problem(at("host"), msg))?;
    }
    if m.methods.as_ref().is_some_and(Vec::is_empty) {
        return problem(
            format!("{path}.match.methods"),
            "list at least one method (or leave methods out)",
        );
    }
    Ok(())
}

/// The request rules: one way of changing the path, a prefix that is a path.
fn check_request(path: &str, rules: &RequestRules) -> Result<(), Problem> {
    if rules.strip_prefix.is_some() && rules.rewrite.is_some() {
        return problem(
            format!("{path}.rewrite"),
            "give either strip_prefix or rewrite, not both",
        );
    }
    if let Some(prefix) = &rules.strip_prefix {
        if !prefix.starts_with('/') || prefix.len() < 2 {
            return problem(
                format!("{path}.strip_prefix"),
                format!("{prefix:?} must be a path starting with / (and more than /)"),
            );
        }
    }
    if let Some(rewrite) = &rules.rewrite {
        if rewrite.replace.contains(['\r', '\n', ' ']) {
            return problem(format!("{path}.rewrite.replace"), "must not hold spaces or line breaks");
        }
        if let Err(why) = check_references(&rewrite.regex.0, &rewrite.replace) {
            return problem(format!("{path}.rewrite.replace"), why);
        }
    }
    Ok(())
}

/// Every group `replace` names (`$1`, `${1}`, `$name`, `${name}`; `$$` is a `$`) exists in
/// `regex`: the regex crate replaces a missing one with nothing, so `/new/$1x` (group `1x`) would
/// quietly drop the match.
fn check_references(regex: &regex::Regex, replace: &str) -> Result<(), String> {
    let mut rest = replace;
    while let Some(at) = rest.find('$') {
        rest = &rest[at + 1..];
        let name = if let Some(braced) = rest.strip_prefix('{') {
            let Some(end) = braced.find('}') else {
                return Err("a ${ without its }".to_string());
            };
            rest = &braced[end + 1..];
            &braced[..end]
        } else if let Some(after) = rest.strip_prefix('$') {
            rest = after;
            continue;
        } else {
            let end = rest
                .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
                .unwrap_or(rest.len());
            let name = &rest[..end];
            rest = &rest[end..];
            name
        };
        let known = match name.parse::<usize>() {
            Ok(n) => n < regex.captures_len(),
            Err(_) => regex.capture_names().flatten().any(|n| n == name),
        };
        if !name.is_empty() && !known {
            return Err(format!(
                "${name} names no group of the regex (it has {}; write ${{1}}x when a letter or digit follows)",
                regex.captures_len() - 1
            ));
        }
    }
    Ok(())
}

/// A host name pattern: a name or `*.` and a name, no port.
pub(super) fn check_host_pattern(host: &str) -> Result<(), String> {
    let name = host.strip_prefix("*.").unwrap_or(host);
    let valid = !name.is_empty()
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.' || b == b'_');
    if valid {
        Ok(())
    } else {
        Err(format!(
            "{host:?} is not a host name (write e.g. example.com or *.example.com, no port)"
        ))
    }
}
