//! Responses `lb` writes itself: 404 for unrouted requests, redirects (HTTPS, redirect mode),
//! 429 with `Retry-After`, the final-recipient answer to `Max-Forwards: 0`, and the short error
//! replies when proxying fails (503 no backend, 502 bad response, 504 timeout), with the status
//! mapping.

use bytes::Bytes;
use http::header::{CACHE_CONTROL, CONTENT_LENGTH, CONTENT_TYPE};
use http::StatusCode;
use log::debug;
use pingora_core::protocols::http::ServerSession;
use pingora_error::{Error, ErrorSource, ErrorType, Result};
use pingora_http::ResponseHeader;

fn build(code: u16, detail: &str) -> Result<(ResponseHeader, Bytes)> {
    let reason = StatusCode::from_u16(code)
        .ok()
        .and_then(|s| s.canonical_reason())
        .unwrap_or("Error");
    let body = Bytes::from(format!("{code} {reason}: {detail}\n"));
    let mut resp = ResponseHeader::build(code, Some(4))?;
    resp.insert_header(CONTENT_TYPE, "text/plain; charset=utf-8")?;
    resp.insert_header(CONTENT_LENGTH, body.len())?;
    resp.insert_header(CACHE_CONTROL, "no-store")?;
    Ok((resp, body))
}

/// Writes `resp` and its whole `body`.
async fn write(session: &mut ServerSession, resp: ResponseHeader, body: Bytes) -> Result<()> {
    session.write_response_header(Box::new(resp)).await?;
    session.write_response_body(body, true).await
}

/// Answers the request with `code` and a one-line body, keeping the client connection.
pub async fn send(session: &mut ServerSession, code: u16, detail: &str) -> Result<()> {
    let (resp, body) = build(code, detail)?;
    write(session, resp, body).await
}

/// Answers with redirect `status` to `location`.
pub async fn redirect(session: &mut ServerSession, status: u16, location: &str) -> Result<()> {
    let (mut resp, body) = build(status, location)?;
    resp.insert_header("Location", location)?;
    write(session, resp, body).await
}

/// Answers 401 with `WWW-Authenticate: challenge`.
pub async fn unauthorized(session: &mut ServerSession, challenge: &str) -> Result<()> {
    let (mut resp, body) = build(401, "this route needs a user name and password")?;
    resp.insert_header("WWW-Authenticate", challenge)?;
    write(session, resp, body).await
}

/// Answers 429 with `Retry-After: seconds`.
pub async fn too_many(session: &mut ServerSession, seconds: u64) -> Result<()> {
    let (mut resp, body) = build(429, "rate limit exceeded")?;
    resp.insert_header("Retry-After", seconds)?;
    write(session, resp, body).await
}

/// Answers an OPTIONS or TRACE request whose `Max-Forwards` reached 0, as its final recipient:
/// OPTIONS gets 200 with the methods lb forwards; TRACE 405 (lb does not echo requests).
pub async fn final_recipient(session: &mut ServerSession) -> Result<()> {
    const ALLOW: &str = "GET, HEAD, POST, PUT, PATCH, DELETE, OPTIONS";
    let options = session.req_header().method == http::Method::OPTIONS;
    let (mut resp, body) = if options {
        let mut resp = ResponseHeader::build(200, Some(2))?;
        resp.insert_header(CONTENT_LENGTH, 0)?;
        (resp, Bytes::new())
    } else {
        build(405, "TRACE is not supported")?
    };
    resp.insert_header("Allow", ALLOW)?;
    write(session, resp, body).await
}

/// Answers a failed proxy attempt with `code`, unless a response has already started.
pub async fn send_error(downstream: &mut ServerSession, code: u16) {
    let detail = match code {
        413 => crate::request::front::TOO_LARGE,
        503 => "no backend is available",
        504 => "the backend did not answer in time",
        502 => "the backend failed",
        408 => "the request was not received in time",
        400 => "the request is malformed",
        _ => "the request failed",
    };
    let result = match build(code, detail) {
        Ok((resp, body)) => downstream.write_error_response(resp, body).await,
        Err(e) => Err(e),
    };
    if let Err(e) = result {
        debug!("could not send the {code} response: {e}");
    }
}

/// The status for a failed request: 503 when no backend could be reached (as HAProxy), 504 when
/// a backend timed out, 502 for other backend failures, 4xx for client faults, 0 when the client
/// is gone.
pub fn status_for(e: &Error) -> u16 {
    use ErrorType::*;
    match (e.esource(), e.etype()) {
        (_, HTTPStatus(code)) => *code,
        (ErrorSource::Upstream, ConnectTimedout | ConnectRefused | ConnectNoRoute | ConnectError)
        | (ErrorSource::Upstream, TLSHandshakeFailure | TLSHandshakeTimedout | InvalidCert)
        | (ErrorSource::Upstream, HandshakeError | BindError | SocketError | ConnectProxyFailure) => 503,
        (ErrorSource::Upstream, ReadTimedout | WriteTimedout) => 504,
        (ErrorSource::Upstream, _) => 502,
        // A body whose framing breaks (the front's chunked checks) is the client's bad request.
        (ErrorSource::Downstream, ReadError) if malformed(e) => 400,
        (ErrorSource::Downstream, ReadError | WriteError | ConnectionClosed) => 0,
        (ErrorSource::Downstream, ReadTimedout) => 408,
        (ErrorSource::Downstream, _) => 400,
        (ErrorSource::Internal | ErrorSource::Unset, _) => 500,
    }
}

/// Whether `e` comes from bytes that break HTTP's framing (`InvalidData` from the front's
/// connection), rather than from the connection itself.
fn malformed(e: &Error) -> bool {
    e.root_cause()
        .downcast_ref::<std::io::Error>()
        .is_some_and(|io| io.kind() == std::io::ErrorKind::InvalidData)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn up(t: ErrorType) -> Box<Error> {
        Error::new_up(t)
    }

    #[test]
    fn statuses() {
        assert_eq!(status_for(&up(ErrorType::ConnectRefused)), 503);
        assert_eq!(status_for(&up(ErrorType::ReadTimedout)), 504);
        assert_eq!(status_for(&up(ErrorType::InvalidHTTPHeader)), 502);
        assert_eq!(status_for(&Error::explain(ErrorType::HTTPStatus(503), "x")), 503);
        assert_eq!(status_for(&Error::new_down(ErrorType::ConnectionClosed)), 0);
        assert_eq!(status_for(&Error::new_down(ErrorType::InvalidHTTPHeader)), 400);
        assert_eq!(status_for(&Error::new_in(ErrorType::InternalError)), 500);
    }

    #[test]
    fn bodies_are_one_line() {
        let (resp, body) = build(503, "no backend is available").unwrap();
        assert_eq!(resp.status, 503);
        assert_eq!(&body[..], b"503 Service Unavailable: no backend is available\n");
    }
}
