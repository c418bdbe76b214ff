//! What the access log says about a proxied request, and the status it shows for one that got
//! no response (nginx's 499 when the client went away).

use super::Ctx;
use crate::request::access_log::Entry;
use pingora_core::protocols::http::ServerSession;
use pingora_error::{Error, ErrorSource, ErrorType};

fn version(v: http::Version) -> &'static str {
    match v {
        http::Version::HTTP_10 => "HTTP/1.0",
        http::Version::HTTP_2 => "HTTP/2.0",
        http::Version::HTTP_09 => "HTTP/0.9",
        _ => "HTTP/1.1",
    }
}

/// Whether `e` means the client closed or reset its connection before the response was complete.
pub fn client_gone(e: &Error) -> bool {
    use ErrorType::*;
    e.esource() == &ErrorSource::Downstream && matches!(e.etype(), ReadError | WriteError | ConnectionClosed)
}

/// The status the access log shows for a request that got no response: 499 when the client
/// went away, 0 otherwise.
pub(super) fn unanswered_status(e: Option<&Error>) -> u16 {
    if e.is_some_and(client_gone) {
        499
    } else {
        0
    }
}

/// The access log entry of the request on `downstream` (`e`: how it failed, if it did).
pub fn entry<'a>(downstream: &'a ServerSession, ctx: &'a Ctx, e: Option<&Error>) -> Entry<'a> {
    let req = downstream.req_header();
    let header = |name| req.headers.get(name).map(|v: &http::HeaderValue| v.as_bytes());
    Entry {
        client: ctx.client,
        method: req.method.as_str(),
        target: req
            .uri
            .path_and_query()
            .map_or(b"/".as_slice(), |pq| pq.as_str().as_bytes()),
        version: version(req.version),
        status: downstream
            .response_written()
            .map_or_else(|| unanswered_status(e), |r| r.status.as_u16()),
        bytes: downstream.body_bytes_sent(),
        referer: header(http::header::REFERER),
        user_agent: header(http::header::USER_AGENT),
        pool: ctx.pool.as_ref().map(|p| p.name.as_str()),
        upstream: ctx.tried.last().and_then(|a| a.as_inet().copied()),
        tries: ctx.tried.len(),
        total: ctx.started.map(|t| t.elapsed()).unwrap_or_default(),
        upstream_time: ctx.upstream_time,
        route: ctx.target.as_ref().map(|t| t.stats.label()),
        request_id: ctx.request_id.as_ref().map(|id| id.as_bytes()),
        trace_id: ctx.trace.map(|t| t.trace_id),
    }
}
