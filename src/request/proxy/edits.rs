//! The route's rules and the request id, applied the same way by both request loops: the id a
//! request carries (kept from a trusted proxy, or a new UUIDv7), what the request looks like to
//! the backend (path rewritten, fields removed, set and added, the trace's `traceparent`) and
//! what the response looks like to the client.

use super::{is_tls, peer_ip, Ctx, Lb};
use crate::config::KeepId;
use crate::request::rules::Vars;
use http::request::Parts;
use http::HeaderValue;
use pingora_core::protocols::http::ServerSession;
use pingora_error::{Error, ErrorType, Result};
use pingora_http::ResponseHeader;

/// Longest id kept from a request; a longer one is replaced.
const MAX_ID_LEN: usize = 200;

/// A new request id: a UUIDv7 (time-ordered, so ids sort as requests came).
fn new_id() -> HeaderValue {
    let mut buf = [0u8; uuid::fmt::Hyphenated::LENGTH];
    let text = uuid::Uuid::now_v7().hyphenated().encode_lower(&mut buf);
    HeaderValue::from_str(text).unwrap_or(HeaderValue::from_static("-"))
}

/// `host` without its port, as nginx's `$host` is: `api.example.com:8080` → `api.example.com`,
/// `[::1]:80` → `[::1]`.
fn without_port(host: &str) -> &str {
    let end = match host.rfind(':') {
        Some(colon) if host[colon + 1..].bytes().all(|b| b.is_ascii_digit()) && !host[..colon].ends_with(':') => colon,
        _ => host.len(),
    };
    let name = &host[..end];
    if name.starts_with('[') && !name.ends_with(']') {
        host
    } else {
        name
    }
}

impl Lb {
    /// Gives the request on `downstream` its id and its place in a trace
    /// ([`Lb::begin_trace`]).
    pub(super) fn identify(&self, downstream: &ServerSession, ctx: &mut Ctx) {
        self.give_id(downstream, ctx);
        self.begin_trace(downstream, ctx);
    }

    /// The request's id: the one it came with when `request_id.keep` allows (from a trusted
    /// proxy, or always), else a new one.
    fn give_id(&self, downstream: &ServerSession, ctx: &mut Ctx) {
        let Some((header, keep)) = &self.edge.request_id else {
            return;
        };
        let came = downstream
            .req_header()
            .headers
            .get(header)
            .filter(|v| !v.is_empty() && v.len() <= MAX_ID_LEN);
        let trusted = match keep {
            KeepId::Always => true,
            KeepId::Trusted => peer_ip(downstream).is_some_and(|ip| {
                let ip = ip.to_canonical();
                self.edge.trusted_proxies.iter().any(|net| net.contains(ip))
            }),
        };
        ctx.request_id = Some(came.filter(|_| trusted).cloned().unwrap_or_else(new_id));
    }

    /// What `$variables` stand for in the request on `downstream`.
    fn vars<'a>(&self, downstream: &'a ServerSession, ctx: &'a Ctx) -> Vars<'a> {
        Vars {
            client_ip: ctx.client,
            host: crate::request::request_host(downstream.req_header()).map(without_port),
            scheme: if is_tls(downstream) { "https" } else { "http" },
            request_id: ctx.request_id.as_ref().and_then(|v| v.to_str().ok()),
            remote_port: downstream.client_addr().and_then(|a| a.as_inet()).map(|a| a.port()),
        }
    }

    /// The route's request rules and the id, on the request for the backend: the path rewritten
    /// (a rewrite that makes no valid path is refused: 500), then the fields.
    pub(super) fn edit_request(&self, downstream: &ServerSession, req: &mut Parts, ctx: &Ctx) -> Result<()> {
        if let (Some((header, _)), Some(id)) = (&self.edge.request_id, &ctx.request_id) {
            req.headers.insert(header.clone(), id.clone());
        }
        crate::request::trace::edit_request(ctx.trace.as_ref(), &mut req.headers);
        let Some(target) = &ctx.target else { return Ok(()) };
        let rules = &target.rules;
        if !rules.edits_request() {
            return Ok(());
        }
        rules.rewrite(&mut req.uri).map_err(|bad| {
            let why = format!("the route's rewrite made {:?}, which is not a valid path", bad.0);
            Error::explain(ErrorType::HTTPStatus(500), why)
        })?;
        rules.request.apply(&mut req.headers, &self.vars(downstream, ctx));
        Ok(())
    }

    /// The route's response rules and the id, on a final response for the client.
    pub(super) fn edit_response_rules(
        &self,
        downstream: &ServerSession,
        resp: &mut ResponseHeader,
        ctx: &Ctx,
    ) -> Result<()> {
        if resp.status.is_informational() {
            return Ok(());
        }
        if let (Some((header, _)), Some(id)) = (&self.edge.request_id, &ctx.request_id) {
            resp.insert_header(header.clone(), id.clone())?;
        }
        if let Some(target) = &ctx.target {
            if !target.rules.response.is_empty() {
                target
                    .rules
                    .response
                    .apply_response(resp, &self.vars(downstream, ctx))?;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::without_port;

    #[test]
    fn host_loses_its_port_as_nginx_host_does() {
        for (host, name) in [
            ("api.example.com:8080", "api.example.com"),
            ("api.example.com", "api.example.com"),
            ("[::1]:80", "[::1]"),
            ("[::1]", "[::1]"),
            ("127.0.0.1:1", "127.0.0.1"),
            ("h:", "h"),
        ] {
            assert_eq!(without_port(host), name, "{host}");
        }
    }
}
