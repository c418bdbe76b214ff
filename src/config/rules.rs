//! The traffic rules of a route as the file states them: what a request must look like to match
//! (`match:`), how the request and the response change on the way (`request:`, `response:`),
//! and the values they are built from: regular expressions, header names, and header values with
//! `$variables`. Each parses itself with a clear message, so a mistake is refused where it is
//! written; applying them is `request::rules`' job.

use serde::de::{self, Deserializer, MapAccess, Visitor};
use serde::Deserialize;
use std::fmt;

/// A regular expression, compiled when the file is read (anchored as written: `^...$`).
#[derive(Clone)]
pub struct Pattern(pub regex::Regex);

impl fmt::Debug for Pattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?}", self.0.as_str())
    }
}

impl PartialEq for Pattern {
    fn eq(&self, other: &Self) -> bool {
        self.0.as_str() == other.0.as_str()
    }
}

/// Regexes compile to at most this much memory: a pattern that needs more is refused (the
/// `regex` crate's own bound, lowered: a rule is small).
const REGEX_SIZE_LIMIT: usize = 1 << 20;

impl Pattern {
    /// Compiles `text`.
    pub fn parse(text: &str) -> Result<Self, String> {
        regex::RegexBuilder::new(text)
            .size_limit(REGEX_SIZE_LIMIT)
            .build()
            .map(Pattern)
            .map_err(|e| {
                let why = e.to_string();
                let last = why.lines().last().unwrap_or(&why).trim().to_string();
                format!("{text:?} is not a valid regular expression: {last}")
            })
    }
}

impl<'de> Deserialize<'de> for Pattern {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        Pattern::parse(&text).map_err(de::Error::custom)
    }
}

/// A header field name, checked when the file is read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldName(pub http::HeaderName);

impl<'de> Deserialize<'de> for FieldName {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        parse_name(&text).map(FieldName).map_err(de::Error::custom)
    }
}

fn parse_name(text: &str) -> Result<http::HeaderName, String> {
    http::HeaderName::from_bytes(text.as_bytes()).map_err(|_| format!("{text:?} is not a valid header name"))
}

/// What a `$variable` in a header value stands for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Var {
    /// The client's address (through `trusted_proxies` and the PROXY protocol).
    ClientIp,
    /// The request's host (its `Host`, or the target's authority).
    Host,
    /// `http` or `https`, as the client connected.
    Scheme,
    /// The request's id (`X-Request-Id`, kept or generated).
    RequestId,
    /// The client's TCP port.
    RemotePort,
}

impl Var {
    /// Every variable with its name, for parsing and for the error that lists them.
    pub const ALL: [(&'static str, Var); 5] = [
        ("client_ip", Var::ClientIp),
        ("host", Var::Host),
        ("scheme", Var::Scheme),
        ("request_id", Var::RequestId),
        ("remote_port", Var::RemotePort),
    ];
}

/// A piece of a header value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Part {
    /// Text as written.
    Text(String),
    /// A variable.
    Var(Var),
}

/// A header value with `$variables` (`$$` is a `$`), parsed when the file is read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Template {
    /// The pieces, in order (adjacent text merged).
    pub parts: Vec<Part>,
}

impl Template {
    /// Parses `text`: its literal pieces must be valid in a header value and its variables known.
    pub fn parse(text: &str) -> Result<Self, String> {
        let mut parts = Vec::new();
        let mut text_part = String::new();
        let mut rest = text;
        while let Some(at) = rest.find('$') {
            text_part.push_str(&rest[..at]);
            rest = &rest[at + 1..];
            if let Some(after) = rest.strip_prefix('$') {
                text_part.push('$');
                rest = after;
                continue;
            }
            let len = rest
                .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
                .unwrap_or(rest.len());
            let name = &rest[..len];
            let Some((_, var)) = Var::ALL.iter().find(|(n, _)| *n == name) else {
                let known: Vec<String> = Var::ALL.iter().map(|(n, _)| format!("${n}")).collect();
                return Err(format!(
                    "${name} is not a variable lb knows (it knows {}; write $$ for a $)",
                    known.join(", ")
                ));
            };
            if !text_part.is_empty() {
                parts.push(Part::Text(std::mem::take(&mut text_part)));
            }
            parts.push(Part::Var(*var));
            rest = &rest[len..];
        }
        text_part.push_str(rest);
        if !text_part.is_empty() {
            parts.push(Part::Text(text_part));
        }
        for part in &parts {
            if let Part::Text(t) = part {
                if http::HeaderValue::from_str(t).is_err() || t.contains(['\r', '\n']) {
                    return Err(format!("{text:?} is not a valid header value"));
                }
            }
        }
        Ok(Template { parts })
    }

    /// The value when it holds no variable.
    pub fn literal(&self) -> Option<&str> {
        match self.parts.as_slice() {
            [] => Some(""),
            [Part::Text(t)] => Some(t),
            _ => None,
        }
    }
}

impl<'de> Deserialize<'de> for Template {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = Scalar::deserialize(d)?.0;
        Template::parse(&text).map_err(de::Error::custom)
    }
}

/// A YAML scalar taken as text (`X-Canary: 1` means the text "1").
struct Scalar(String);

impl<'de> Deserialize<'de> for Scalar {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = Scalar;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a string, number or boolean")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Scalar, E> {
                Ok(Scalar(v.to_string()))
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<Scalar, E> {
                Ok(Scalar(v.to_string()))
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<Scalar, E> {
                Ok(Scalar(v.to_string()))
            }
            fn visit_f64<E: de::Error>(self, v: f64) -> Result<Scalar, E> {
                Ok(Scalar(v.to_string()))
            }
            fn visit_bool<E: de::Error>(self, v: bool) -> Result<Scalar, E> {
                Ok(Scalar(v.to_string()))
            }
        }
        d.deserialize_any(V)
    }
}

/// A map in the order written (`{a: 1, b: 2}`), its keys and values checked as `K` and `V`.
#[derive(Debug, Clone, PartialEq)]
pub struct Ordered<K, V>(pub Vec<(K, V)>);

impl<K, V> Default for Ordered<K, V> {
    fn default() -> Self {
        Ordered(Vec::new())
    }
}

impl<'de, K: Deserialize<'de>, V: Deserialize<'de>> Deserialize<'de> for Ordered<K, V> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Entries<K, V>(std::marker::PhantomData<(K, V)>);
        impl<'de, K: Deserialize<'de>, V: Deserialize<'de>> Visitor<'de> for Entries<K, V> {
            type Value = Ordered<K, V>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a map")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
                let mut entries = Vec::new();
                while let Some(entry) = map.next_entry()? {
                    entries.push(entry);
                }
                Ok(Ordered(entries))
            }
        }
        d.deserialize_map(Entries(std::marker::PhantomData))
    }
}

/// Header fields in the order written (`{Name: value, ...}`), each name checked, each value a
/// [`Template`].
pub type Fields = Ordered<FieldName, Template>;

/// How a header or a query parameter must look for a route to match.
#[derive(Debug, Clone, PartialEq)]
pub enum ValueMatch {
    /// `{present: true}`: there (any value), or `false`: absent.
    Present(bool),
    /// `{regex: "..."}`: a value matching the expression (anchored as written).
    Regex(Pattern),
    /// A value equal to this text (a YAML scalar, as text; case-sensitive).
    Exact(String),
}

impl<'de> Deserialize<'de> for ValueMatch {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = ValueMatch;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a value, {regex: \"...\"} or {present: true|false}")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<ValueMatch, E> {
                Ok(ValueMatch::Exact(v.to_string()))
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<ValueMatch, E> {
                Ok(ValueMatch::Exact(v.to_string()))
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<ValueMatch, E> {
                Ok(ValueMatch::Exact(v.to_string()))
            }
            fn visit_f64<E: de::Error>(self, v: f64) -> Result<ValueMatch, E> {
                Ok(ValueMatch::Exact(v.to_string()))
            }
            fn visit_bool<E: de::Error>(self, v: bool) -> Result<ValueMatch, E> {
                Ok(ValueMatch::Exact(v.to_string()))
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<ValueMatch, A::Error> {
                let found = match map.next_key::<String>()?.as_deref() {
                    Some("regex") => ValueMatch::Regex(map.next_value()?),
                    Some("present") => ValueMatch::Present(map.next_value()?),
                    Some(other) => {
                        return Err(de::Error::custom(format!(
                            "unknown field `{other}`, expected `regex` or `present`"
                        )))
                    }
                    None => return Err(de::Error::custom("is empty: give a value, regex or present")),
                };
                if let Some(more) = map.next_key::<String>()? {
                    return Err(de::Error::custom(format!(
                        "`{more}` cannot come with it: one condition each"
                    )));
                }
                Ok(found)
            }
        }
        d.deserialize_any(V)
    }
}

/// `match:`: every condition given must hold.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MatchConf {
    /// `Host` (or the target's authority), case-insensitive, port ignored; `*.example.com`
    /// matches subdomains.
    #[serde(default)]
    pub host: Option<String>,
    /// A path prefix (plain string, as nginx's `location /api/`).
    #[serde(default)]
    pub path_prefix: Option<String>,
    /// A regular expression the path must match (as nginx's `location ~`), anchored as written.
    #[serde(default)]
    pub path_regex: Option<Pattern>,
    /// Methods, any of them (`[GET, HEAD]`).
    #[serde(default)]
    pub methods: Option<Vec<MethodName>>,
    /// Request headers, each as [`ValueMatch`] says (names case-insensitive).
    #[serde(default)]
    pub headers: Ordered<FieldName, ValueMatch>,
    /// Query parameters by name (case-sensitive), each as [`ValueMatch`] says, against the
    /// percent-decoded value.
    #[serde(default)]
    pub query: Ordered<String, ValueMatch>,
}

/// An HTTP method, checked when the file is read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MethodName(pub http::Method);

impl<'de> Deserialize<'de> for MethodName {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        let valid = !text.is_empty() && text.bytes().all(|b| b.is_ascii_alphanumeric() || b"-_.!".contains(&b));
        match http::Method::from_bytes(text.as_bytes()) {
            Ok(m) if valid => Ok(MethodName(m)),
            _ => Err(de::Error::custom(format!("{text:?} is not an HTTP method"))),
        }
    }
}

/// A path rewrite: `regex` matched against the path, replaced by `replace` (`$1`, `${name}`).
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Rewrite {
    /// What to match in the path.
    pub regex: Pattern,
    /// What replaces the match (the regex crate's `$1` / `${name}` syntax).
    pub replace: String,
}

/// `request:`: how the request changes before the backend sees it, in this order: the path,
/// then removed, set and added headers.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RequestRules {
    /// A path prefix removed (nginx's `proxy_pass http://up/;` under `location /api/`): `/api/x`
    /// → `/x`, `/api` → `/`.
    #[serde(default)]
    pub strip_prefix: Option<String>,
    /// A regex rewrite of the path; the query string is kept.
    #[serde(default)]
    pub rewrite: Option<Rewrite>,
    /// Headers set, replacing any of the same name (nginx's `proxy_set_header`).
    #[serde(default)]
    pub set_headers: Fields,
    /// Headers added beside any of the same name.
    #[serde(default)]
    pub add_headers: Fields,
    /// Headers removed.
    #[serde(default)]
    pub remove_headers: Vec<FieldName>,
}

/// `response:`: how the backend's response changes before the client sees it.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ResponseRules {
    /// Headers set, replacing any of the same name (nginx's `add_header ... always` for one).
    #[serde(default)]
    pub set_headers: Fields,
    /// Headers added beside any of the same name.
    #[serde(default)]
    pub add_headers: Fields,
    /// Headers removed (nginx's `proxy_hide_header`).
    #[serde(default)]
    pub remove_headers: Vec<FieldName>,
}

#[cfg(test)]
#[path = "rules_tests.rs"]
mod tests;
