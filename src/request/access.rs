//! Who may use a route: by client address (`access: {allow, deny}`, nginx's `allow`/`deny`:
//! 403), and by HTTP basic authentication against an htpasswd file of bcrypt hashes
//! (`basic_auth`, nginx's `auth_basic`: 401 with `WWW-Authenticate`). Both are guards, checked in
//! the one admission decision both request loops call. The client is the one lb knows: through
//! `trusted_proxies` and the PROXY protocol.

use crate::config::Cidr;
use crate::request::guard::{Answer, Asked, Guard};
use base64::Engine;
use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};

/// `access`: deny wins, then allow (when it lists anything, the rest is refused).
pub struct Access {
    /// Networks allowed; empty: all.
    pub allow: Vec<Cidr>,
    /// Networks refused.
    pub deny: Vec<Cidr>,
}

impl Access {
    fn allows(&self, client: Option<IpAddr>) -> bool {
        let Some(ip) = client.map(|ip| ip.to_canonical()) else {
            return self.allow.is_empty() && self.deny.is_empty();
        };
        !self.deny.iter().any(|n| n.contains(ip))
            && (self.allow.is_empty() || self.allow.iter().any(|n| n.contains(ip)))
    }
}

impl Guard for Access {
    fn check(&self, asked: &Asked<'_>) -> Option<Answer> {
        (!self.allows(asked.client)).then_some(Answer::Text {
            status: 403,
            detail: "this client is not allowed here",
            close: false,
        })
    }
}

/// Credentials checked at most this many times each before lb remembers the outcome (bcrypt is
/// slow on purpose: a few milliseconds per check).
const REMEMBERED: usize = 4096;

/// `basic_auth`: the users of an htpasswd file, and the outcomes of credentials already checked.
pub struct BasicAuth {
    /// `WWW-Authenticate: Basic realm="..."`, made once.
    challenge: Arc<str>,
    users: HashMap<String, String>,
    /// Outcomes by the exact `Authorization` value.
    seen: Mutex<HashMap<Vec<u8>, bool>>,
}

impl BasicAuth {
    /// A guard for `realm` with `users` (`(name, bcrypt hash)`).
    pub fn new(realm: &str, users: Vec<(String, String)>) -> Self {
        BasicAuth {
            challenge: Arc::from(format!("Basic realm=\"{realm}\", charset=\"UTF-8\"")),
            users: users.into_iter().collect(),
            seen: Mutex::new(HashMap::new()),
        }
    }

    /// Whether `authorization` (the header's value) names a user with its password.
    fn admits(&self, authorization: &[u8]) -> bool {
        if let Some(known) = self.seen.lock().ok().and_then(|s| s.get(authorization).copied()) {
            return known;
        }
        let ok = self.verify(authorization);
        if let Ok(mut seen) = self.seen.lock() {
            if seen.len() >= REMEMBERED {
                seen.clear();
            }
            seen.insert(authorization.to_vec(), ok);
        }
        ok
    }

    fn verify(&self, authorization: &[u8]) -> bool {
        let Some(encoded) = authorization
            .strip_prefix(b"Basic ")
            .or_else(|| authorization.strip_prefix(b"basic "))
        else {
            return false;
        };
        let Ok(decoded) = base64::engine::general_purpose::STANDARD.decode(encoded.trim_ascii()) else {
            return false;
        };
        let Some((user, password)) = std::str::from_utf8(&decoded).ok().and_then(|t| t.split_once(':')) else {
            return false;
        };
        self.users
            .get(user)
            .is_some_and(|hash| bcrypt::verify(password, hash).unwrap_or(false))
    }
}

impl Guard for BasicAuth {
    fn check(&self, asked: &Asked<'_>) -> Option<Answer> {
        let given = asked.req.headers.get(http::header::AUTHORIZATION);
        if given.is_some_and(|v| self.admits(v.as_bytes())) {
            return None;
        }
        Some(Answer::Unauthorized {
            challenge: Arc::clone(&self.challenge),
        })
    }
}

#[cfg(test)]
#[path = "access_tests.rs"]
mod tests;
