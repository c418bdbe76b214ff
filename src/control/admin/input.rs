//! What the API reads from a request: the path's pool and backend address (percent-decoded),
//! the bearer token, and the JSON bodies of `PUT` and `PATCH`, each turned into a typed change
//! or a 4xx message that says what is wrong.

use crate::config::{Dur, MAX_WEIGHT};
use crate::control::changes::{Register, Update};
use crate::request::member::AdminState;
use serde::{Deserialize, Deserializer};
use std::net::SocketAddr;

/// A 4xx: status and message.
pub type Bad = (u16, String);

/// `Some(value)` for a present field (`null` included), so that `Option<Option<T>>` tells a
/// missing field (`None`) from `null` (`Some(None)`).
fn present<'de, D: Deserializer<'de>, T: Deserialize<'de>>(d: D) -> Result<Option<T>, D::Error> {
    T::deserialize(d).map(Some)
}

/// The body of `PUT /api/v1/pools/{pool}/backends/{addr}`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PutBody {
    #[serde(default)]
    weight: Option<u32>,
    #[serde(default)]
    state: Option<AdminState>,
    #[serde(default, deserialize_with = "present")]
    ttl: Option<Option<String>>,
    #[serde(default, deserialize_with = "present")]
    max_connections: Option<Option<usize>>,
}

/// The body of `PATCH /api/v1/pools/{pool}/backends/{addr}`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PatchBody {
    #[serde(default)]
    weight: Option<u32>,
    #[serde(default)]
    state: Option<AdminState>,
}

/// `body` as `T`, which must be written as a JSON object (serde would also take an array).
pub(super) fn json<T: serde::de::DeserializeOwned>(body: &[u8]) -> Result<T, Bad> {
    let value: serde_json::Value =
        serde_json::from_slice(body).map_err(|e| (400, format!("invalid JSON body: {e}")))?;
    if !value.is_object() {
        return Err((400, "invalid JSON body: expected an object {...}".into()));
    }
    serde_json::from_value(value).map_err(|e| (400, format!("invalid JSON body: {e}")))
}

fn weight(w: Option<u32>) -> Result<Option<u32>, Bad> {
    match w {
        Some(0) => Err((
            400,
            "weight 0 is not allowed: weights go from 1 to 256; to stop new requests, PATCH {\"state\": \"drain\"}"
                .into(),
        )),
        Some(w) if w > MAX_WEIGHT => Err((
            400,
            format!("weight {w} is out of range: weights go from 1 to {MAX_WEIGHT}"),
        )),
        w => Ok(w),
    }
}

/// A registration from a `PUT` body (empty: all defaults).
pub fn register(body: &[u8]) -> Result<Register, Bad> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(Register::default());
    }
    let b: PutBody = json(body)?;
    let ttl = match b.ttl {
        Some(Some(text)) => {
            let d = Dur::parse(&text).map_err(|e| (400, format!("ttl: {e}")))?;
            if d.0.is_zero() {
                return Err((400, "ttl: must be longer than 0 (null removes the TTL)".into()));
            }
            Some(Some(d.0))
        }
        Some(None) => Some(None),
        None => None,
    };
    if b.max_connections == Some(Some(0)) {
        return Err((400, "max_connections: must be at least 1 (null for the pool's)".into()));
    }
    Ok(Register {
        weight: weight(b.weight)?,
        state: b.state,
        ttl,
        max_connections: b.max_connections,
    })
}

/// An update from a `PATCH` body.
pub fn update(body: &[u8]) -> Result<Update, Bad> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Err((
            400,
            "a PATCH needs a JSON body: {\"state\": \"drain\"} and/or {\"weight\": N}".into(),
        ));
    }
    let b: PatchBody = json(body)?;
    if b.weight.is_none() && b.state.is_none() {
        return Err((
            400,
            "nothing to change: give state (ready, drain, maint) and/or weight".into(),
        ));
    }
    Ok(Update {
        weight: weight(b.weight)?,
        state: b.state,
    })
}

/// `%XX`-decodes a path segment (a `%` without two hex digits stays as it is); `None` when it
/// is not valid UTF-8 afterwards.
pub fn decode(segment: &str) -> Option<String> {
    let decoded = percent_encoding::percent_decode_str(segment).decode_utf8().ok()?;
    Some(decoded.into_owned())
}

/// The backend address of a path segment (`127.0.0.1:9001`, `[::1]:9001`, percent-encoded or
/// not).
pub fn address(segment: &str) -> Result<SocketAddr, Bad> {
    let text = decode(segment).unwrap_or_default();
    text.parse().map_err(|_| {
        (
            400,
            format!("{text:?} is not an IP:port backend address (e.g. 127.0.0.1:9001)"),
        )
    })
}

/// The `since` parameter of a query (`since=1767225600000`: milliseconds since the Unix epoch),
/// if there is one.
pub fn since(query: &str) -> Result<Option<u64>, Bad> {
    let Some(value) = query.split('&').find_map(|pair| pair.strip_prefix("since=")) else {
        return Ok(None);
    };
    value.parse().map(Some).map_err(|_| {
        (
            400,
            format!("since={value:?} is not a time in milliseconds since the Unix epoch"),
        )
    })
}

/// Whether `authorization` carries `Bearer <token>`, compared in constant time.
pub fn authorized(token: Option<&str>, authorization: Option<&[u8]>) -> bool {
    let Some(token) = token else { return true };
    let Some(given) = authorization.and_then(|a| a.strip_prefix(b"Bearer ")) else {
        return false;
    };
    // Constant time in the bytes compared (a different length is refused at once).
    subtle::ConstantTimeEq::ct_eq(given.trim_ascii(), token.as_bytes()).into()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn put_bodies() {
        assert_eq!(register(b"").unwrap(), Register::default());
        let r = register(br#"{"weight": 3, "ttl": "10s", "state": "drain"}"#).unwrap();
        assert_eq!(r.weight, Some(3));
        assert_eq!(r.ttl, Some(Some(Duration::from_secs(10))));
        assert_eq!(r.state, Some(AdminState::Drain));
        assert_eq!(register(br#"{"ttl": null}"#).unwrap().ttl, Some(None));
        for (bad, needle) in [
            (&br#"{"weight": 0}"#[..], "weight 0 is not allowed"),
            (br#"{"weight": 257}"#, "out of range"),
            (br#"{"weight": -1}"#, "invalid JSON body"),
            (br#"null"#, "expected an object"),
            (br#"{"weight": "3"}"#, "invalid type"),
            (br#"{"state": "sleeping"}"#, "unknown variant `sleeping`"),
            (br#"{"ttl": "10"}"#, "ttl: \"10\" is not a duration"),
            (br#"{"ttl": "0s"}"#, "must be longer than 0"),
            (br#"{"wieght": 2}"#, "unknown field `wieght`"),
            (br#"{"weight": 2"#, "invalid JSON body"),
            (br#"[1]"#, "invalid JSON body"),
        ] {
            let (status, msg) = register(bad).unwrap_err();
            assert_eq!(status, 400);
            assert!(msg.contains(needle), "{msg:?} lacks {needle:?}");
        }
    }

    #[test]
    fn patch_bodies() {
        assert_eq!(update(br#"{"state": "maint"}"#).unwrap().state, Some(AdminState::Maint));
        assert!(update(b"").unwrap_err().1.contains("needs a JSON body"));
        assert!(update(b"{}").unwrap_err().1.contains("nothing to change"));
        assert!(update(br#"{"ttl": "1s"}"#).unwrap_err().1.contains("unknown field"));
    }

    #[test]
    fn since_parameters() {
        assert_eq!(since(""), Ok(None));
        assert_eq!(since("other=1"), Ok(None));
        assert_eq!(since("since=1767225600000"), Ok(Some(1_767_225_600_000)));
        assert_eq!(since("a=b&since=5"), Ok(Some(5)));
        assert!(since("since=-1").unwrap_err().1.contains("not a time"));
        assert!(since("since=").is_err());
    }

    #[test]
    fn addresses_and_tokens() {
        assert_eq!(address("127.0.0.1:9001").unwrap(), "127.0.0.1:9001".parse().unwrap());
        assert_eq!(address("%5B%3A%3A1%5D:80").unwrap(), "[::1]:80".parse().unwrap());
        assert_eq!(address("[::1]:80").unwrap(), "[::1]:80".parse().unwrap());
        assert!(address("localhost:80").is_err());
        assert!(address("%FF%FE").is_err());
        assert_eq!(decode("a%2Fb%zz%4").as_deref(), Some("a/b%zz%4"), "a lone % stays");
        assert_eq!(decode("%FF"), None, "not UTF-8");
        assert!(authorized(Some("s3"), Some(b"Bearer  s3 ")), "spaces around the token");
        assert!(!authorized(Some("s3"), Some(b"Bearer ")));
        assert!(authorized(None, None));
        assert!(authorized(Some("s3"), Some(b"Bearer s3")));
        assert!(!authorized(Some("s3"), Some(b"Bearer s4")));
        assert!(!authorized(Some("s3"), Some(b"Bearer s33")));
        assert!(!authorized(Some("s3"), Some(b"Basic s3")));
        assert!(!authorized(Some("s3"), None));
    }
}
