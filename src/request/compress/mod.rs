//! Response compression per route (`compress:`): which responses are compressed and with what
//! (from the request's `Accept-Encoding` and method, the response's status, encoding, type,
//! length and `Cache-Control`), the edits of the response head that go with it, and the
//! streaming compressor of the body ([`Encoder`]). Both request loops call it through the
//! proxy's shared methods; it reads and writes no connection.

mod accept;
mod encoder;
pub mod stats;

pub use encoder::Encoder;

use crate::config::{CompressConf, Encoding};
use http::header::{
    ACCEPT_ENCODING, ACCEPT_RANGES, CACHE_CONTROL, CONTENT_ENCODING, CONTENT_LENGTH, CONTENT_TYPE, ETAG, RANGE,
    TRANSFER_ENCODING, VARY,
};
use http::{HeaderMap, HeaderValue, Method, Version};
use pingora_error::{Error, ErrorType, Result};
use pingora_http::{RequestHeader, ResponseHeader};
use stats::Counters;
use std::sync::Arc;

/// A route's compression, ready for requests.
#[derive(Debug)]
pub struct Compression {
    /// lb's encodings in its order of preference.
    algorithms: Vec<Encoding>,
    /// Media types compressed, `(type, subtype)` in lower case, `*` for any.
    types: Vec<(String, String)>,
    /// Bodies declared shorter are left alone.
    min_size: u64,
    /// 1 to 9.
    level: u32,
    counters: Arc<Counters>,
}

/// What becomes of one response.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Left as it is: not a response lb compresses, whatever the client accepts.
    Leave,
    /// Not compressed for this request, though it would be for another: it says so in `Vary`.
    Vary,
    /// Compressed with this encoding.
    Compress(Encoding),
}

/// The content-coding token of `encoding`.
pub fn token(encoding: Encoding) -> &'static str {
    match encoding {
        Encoding::Zstd => "zstd",
        Encoding::Br => "br",
        Encoding::Gzip => "gzip",
    }
}

impl Compression {
    /// The compression of route `name` (`None`: unnamed) as `conf` says.
    pub fn of(name: Option<&str>, conf: &CompressConf) -> Self {
        let types = conf
            .types
            .iter()
            .filter_map(|t| t.split_once('/'))
            .map(|(a, b)| (a.trim().to_ascii_lowercase(), b.trim().to_ascii_lowercase()))
            .collect();
        Compression {
            algorithms: conf.algorithms.clone(),
            types,
            min_size: conf.min_size.0,
            level: conf.level,
            counters: stats::counters(name.unwrap_or("")),
        }
    }

    /// What becomes of `resp`, the answer to `req`. Left alone: answers to `HEAD` and to range
    /// requests, responses without a body (1xx, 204, 304, a length of 0), partial ones (206),
    /// encoded ones, `Cache-Control: no-transform`, types not listed, lengths under `min_size`.
    /// An HTTP/1.0 request gets it uncompressed, as from nginx (`gzip_http_version 1.1`): its
    /// response could not be chunked, and the connection would have to close.
    pub fn verdict(&self, req: &RequestHeader, resp: &ResponseHeader) -> Verdict {
        if req.method == Method::HEAD || req.headers.contains_key(RANGE) || !self.compressible(resp) {
            return Verdict::Leave;
        }
        if req.version < Version::HTTP_11 {
            return Verdict::Vary;
        }
        match accept::choose(req.headers.get_all(ACCEPT_ENCODING).iter(), &self.algorithms) {
            Some(encoding) => Verdict::Compress(encoding),
            None => Verdict::Vary,
        }
    }

    /// Whether `resp` is one lb compresses for a client that accepts it.
    fn compressible(&self, resp: &ResponseHeader) -> bool {
        let status = resp.status.as_u16();
        if resp.status.is_informational() || matches!(status, 204 | 206 | 304) {
            return false;
        }
        let headers = &resp.headers;
        if headers.contains_key(CONTENT_ENCODING) || no_transform(headers) {
            return false;
        }
        if let Some(length) = headers.get(CONTENT_LENGTH) {
            // One number by now (the proxy's response policy); anything else is left alone.
            let length = length.to_str().ok().and_then(|l| l.trim().parse::<u64>().ok());
            if length.is_none_or(|n| n == 0 || n < self.min_size) {
                return false;
            }
        }
        self.listed(headers.get(CONTENT_TYPE))
    }

    /// Whether media type `value` (its parameters aside) is one of the listed types.
    fn listed(&self, value: Option<&HeaderValue>) -> bool {
        let Some(text) = value.and_then(|v| v.to_str().ok()) else {
            return false;
        };
        let media = text.split(';').next().unwrap_or("").trim();
        let Some((kind, sub)) = media.split_once('/') else {
            return false;
        };
        let fits = |want: &str, got: &str| want == "*" || want.eq_ignore_ascii_case(got);
        self.types.iter().any(|(k, s)| fits(k, kind) && fits(s, sub))
    }

    /// Applies the verdict on `resp` (the answer to `req`) and returns the compressor of its body,
    /// if it is compressed: `Content-Encoding` set, `Content-Length` and `Accept-Ranges` gone, a
    /// strong `ETag` made weak (the bytes differ, RFC 9110 §8.8.1, as nginx does), `Vary:
    /// Accept-Encoding`, and chunked framing for an HTTP/1 client (`http1`).
    pub fn apply(&self, req: &RequestHeader, resp: &mut ResponseHeader, http1: bool) -> Result<Option<Encoder>> {
        let encoding = match self.verdict(req, resp) {
            Verdict::Leave => return Ok(None),
            Verdict::Vary => {
                add_vary(resp)?;
                return Ok(None);
            }
            Verdict::Compress(encoding) => encoding,
        };
        let encoder = Encoder::new(encoding, self.level, Arc::clone(&self.counters))
            .map_err(|e| Error::explain(ErrorType::InternalError, format!("compressor: {e}")))?;
        resp.insert_header(CONTENT_ENCODING, token(encoding))?;
        resp.remove_header(&CONTENT_LENGTH);
        resp.remove_header(&ACCEPT_RANGES);
        weaken_etag(resp)?;
        add_vary(resp)?;
        if http1 {
            resp.set_version(Version::HTTP_11);
            resp.insert_header(TRANSFER_ENCODING, "chunked")?;
        }
        Ok(Some(encoder))
    }
}

/// Whether `Cache-Control` says `no-transform` (RFC 9111 §5.2.2.6).
fn no_transform(headers: &HeaderMap) -> bool {
    headers
        .get_all(CACHE_CONTROL)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|d| d.trim().eq_ignore_ascii_case("no-transform"))
}

/// Adds `Accept-Encoding` to `Vary` unless it is there (or `*` is): in the one `Vary` field,
/// after what the backend listed.
fn add_vary(resp: &mut ResponseHeader) -> Result<()> {
    let values: Vec<&str> = resp
        .headers
        .get_all(VARY)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .map(str::trim)
        .filter(|v| !v.is_empty())
        .collect();
    let named = values
        .iter()
        .flat_map(|v| v.split(','))
        .map(str::trim)
        .any(|f| f == "*" || f.eq_ignore_ascii_case("accept-encoding"));
    if named {
        return Ok(());
    }
    if values.is_empty() {
        return resp.insert_header(VARY, "Accept-Encoding");
    }
    let joined = format!("{}, Accept-Encoding", values.join(", "));
    resp.insert_header(VARY, joined)
}

/// A strong `ETag` becomes weak; one that is neither (not a quoted string) goes.
fn weaken_etag(resp: &mut ResponseHeader) -> Result<()> {
    let Some(etag) = resp.headers.get(ETAG) else {
        return Ok(());
    };
    let bytes = etag.as_bytes();
    if bytes.starts_with(b"W/") {
        return Ok(());
    }
    if !bytes.starts_with(b"\"") {
        resp.remove_header(&ETAG);
        return Ok(());
    }
    let weak = [b"W/", bytes].concat();
    match HeaderValue::from_bytes(&weak) {
        Ok(value) => resp.insert_header(ETAG, value),
        Err(_) => {
            resp.remove_header(&ETAG);
            Ok(())
        }
    }
}

#[cfg(test)]
mod tests;
