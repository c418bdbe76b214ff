//! The admin listener: its own HTTP/1.1 server (never reachable through the proxy listeners)
//! serving the JSON API, the OpenAPI document, `/metrics`, liveness and readiness, and the
//! dashboard. This file does the I/O (request, body limit, response); [`api`] decides what to
//! answer, as a plain function of the request so it can be tested and fuzzed without sockets.

pub mod api;
mod assets;
mod input;

use crate::control::metrics::Metrics;
use crate::control::runtime::Runtime;
use crate::request::front::linger::{self, Linger};
use crate::request::traffic::Traffic;
use async_trait::async_trait;
use bytes::Bytes;
use log::debug;
use pingora_core::apps::{HttpPersistentSettings, HttpServerApp, ReusedHttpStream};
use pingora_core::protocols::http::ServerSession;
use pingora_core::server::ShutdownWatch;
use pingora_http::ResponseHeader;
use std::sync::Arc;
use std::time::Duration;

/// Largest request body the API reads; beyond it, 413.
pub const MAX_BODY: usize = 64 << 10;
/// How long a client gets to send each part of its request.
const READ_TIMEOUT: Duration = Duration::from_secs(10);
/// Idle keep-alive connections are closed after this many seconds.
const KEEPALIVE_SECS: u64 = 60;

/// A request as the API sees it.
pub struct Request<'a> {
    /// `GET`, `PUT`...
    pub method: &'a str,
    /// The path, without the query.
    pub path: &'a str,
    /// The query, without the `?` (empty without one).
    pub query: &'a str,
    /// The `Authorization` header, if any.
    pub authorization: Option<&'a [u8]>,
    /// The body (at most [`MAX_BODY`] bytes).
    pub body: &'a [u8],
}

/// What the API answers.
#[derive(Debug)]
pub struct Reply {
    /// HTTP status.
    pub status: u16,
    /// `Content-Type`.
    pub content_type: &'static str,
    /// Further headers.
    pub headers: Vec<(&'static str, String)>,
    /// The body.
    pub body: Vec<u8>,
    /// Close the connection after this answer.
    pub close: bool,
}

/// Everything the admin listener serves from.
pub struct Admin {
    /// Pools and their changes.
    pub runtime: Arc<Runtime>,
    /// The Prometheus registry.
    pub metrics: Arc<Metrics>,
    /// The bearer token every API call must carry, when set.
    pub token: Option<String>,
    /// Whether the process is handing over (then writes are refused).
    pub traffic: Arc<Traffic>,
    /// How a connection closes after an answer given before its body was read (a 413).
    pub linger: Option<Linger>,
}

/// The admin listener's application.
pub struct AdminApp(pub Arc<Admin>);

enum Body {
    Read(Vec<u8>),
    TooLarge,
    Failed,
}

async fn read_body(http: &mut ServerSession) -> Body {
    let declared = http
        .get_header(http::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok()?.trim().parse::<u64>().ok());
    if declared.is_some_and(|n| n > MAX_BODY as u64) {
        return Body::TooLarge;
    }
    let mut body = Vec::new();
    loop {
        match http.read_request_body().await {
            Ok(Some(chunk)) if body.len() + chunk.len() > MAX_BODY => return Body::TooLarge,
            Ok(Some(chunk)) => body.extend_from_slice(&chunk),
            Ok(None) => return Body::Read(body),
            Err(e) => {
                debug!("admin: reading a request body failed: {e}");
                return Body::Failed;
            }
        }
    }
}

async fn write(http: &mut ServerSession, reply: Reply) -> pingora_error::Result<()> {
    let mut resp = ResponseHeader::build(reply.status, Some(reply.headers.len() + 3))?;
    resp.insert_header(http::header::CONTENT_TYPE, reply.content_type)?;
    resp.insert_header(http::header::CONTENT_LENGTH, reply.body.len())?;
    resp.insert_header(http::header::CACHE_CONTROL, "no-store")?;
    for (name, value) in reply.headers {
        resp.insert_header(name, value)?;
    }
    if reply.close {
        http.set_keepalive(None);
    }
    http.write_response_header(Box::new(resp)).await?;
    http.write_response_body(Bytes::from(reply.body), true).await
}

#[async_trait]
impl HttpServerApp for AdminApp {
    async fn process_new_http(
        self: &Arc<Self>,
        mut http: ServerSession,
        shutdown: &ShutdownWatch,
    ) -> Option<ReusedHttpStream> {
        http.set_read_timeout(Some(READ_TIMEOUT));
        match http.read_request().await {
            Ok(true) => {}
            Ok(false) => return None,
            Err(e) => {
                debug!("admin: bad request: {e}");
                let _ = http.respond_error(400).await;
                return None;
            }
        }
        let stopping = *shutdown.borrow() || self.0.traffic.draining();
        http.set_keepalive((!stopping).then_some(KEEPALIVE_SECS));
        let body = read_body(&mut http).await;
        let req = http.req_header();
        let (method, path) = (req.method.as_str().to_string(), req.uri.path().to_string());
        let query = req.uri.query().unwrap_or_default().to_string();
        let authorization = req
            .headers
            .get(http::header::AUTHORIZATION)
            .map(|v| v.as_bytes().to_vec());
        let reply = match body {
            Body::Failed => return None,
            Body::TooLarge => api::too_large(),
            Body::Read(body) => {
                let request = Request {
                    method: &method,
                    path: &path,
                    query: &query,
                    authorization: authorization.as_deref(),
                    body: &body,
                };
                api::handle(&self.0, &request).await
            }
        };
        let close = reply.close;
        if let Err(e) = write(&mut http, reply).await {
            debug!("admin: writing a response failed: {e}");
            return None;
        }
        if close {
            // The body was not read: linger, so the client reads the answer, not a reset.
            if let (ServerSession::H1(h1), Some(linger)) = (http, self.0.linger) {
                linger::close(h1.into_inner(), Vec::new(), linger);
            }
            return None;
        }
        let settings = HttpPersistentSettings::for_session(&http);
        match http.finish().await {
            Ok(stream) => stream.map(|s| ReusedHttpStream::from_reusable_stream(s, settings)),
            Err(_) => None,
        }
    }
}
