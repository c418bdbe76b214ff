//! When a route's mirror gets its copy, shared by both request loops: a request without a body
//! is copied as its head goes to the backend (the first attempt's, with the route's rules
//! applied: the shadow pool sees what the backend sees); one with a body once the body is read,
//! if it fits `mirror.max_body` (lb's own loop takes only requests without a body; Pingora's
//! feeds the body through [`body`]).

use super::Ctx;
use bytes::{Bytes, BytesMut};
use pingora_http::RequestHeader;

/// A request's copy for the mirror.
#[derive(Default)]
pub enum Copy {
    /// Not decided yet (no attempt yet).
    #[default]
    Undecided,
    /// Waiting for the rest of the body.
    Pending(Box<RequestHeader>, BytesMut),
    /// Sent, not sampled, too large, or no mirror: nothing more to do.
    Done,
}

/// Whether `head` announces a body (a length above zero, or chunked).
fn has_body(head: &RequestHeader) -> bool {
    let length = head.headers.get(http::header::CONTENT_LENGTH);
    head.headers.contains_key(http::header::TRANSFER_ENCODING)
        || length.is_some_and(|v| v.as_bytes().iter().any(|b| *b != b'0'))
}

/// Called with each attempt's head for the backend: decides the copy on the first.
pub(super) fn begin(head: &RequestHeader, ctx: &mut Ctx) {
    if !matches!(ctx.mirror, Copy::Undecided) {
        return;
    }
    ctx.mirror = Copy::Done;
    let Some(mirror) = ctx.target.as_ref().and_then(|t| t.mirror.as_ref()) else {
        return;
    };
    if !mirror.sampled() {
        return;
    }
    if !has_body(head) {
        mirror.send(head.clone(), Bytes::new());
        return;
    }
    let length = head
        .headers
        .get(http::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok()?.parse::<usize>().ok());
    if length.is_some_and(|n| n > mirror.max_body) {
        mirror.too_large();
        return;
    }
    let room = length.unwrap_or(0).min(mirror.max_body);
    ctx.mirror = Copy::Pending(Box::new(head.clone()), BytesMut::with_capacity(room));
}

/// Called with each piece of the client's request body: the copy goes once the body ended.
pub(super) fn body(piece: Option<&Bytes>, end: bool, ctx: &mut Ctx) {
    let Copy::Pending(_, buf) = &mut ctx.mirror else { return };
    let Some(mirror) = ctx.target.as_ref().and_then(|t| t.mirror.as_ref()) else {
        return;
    };
    if let Some(piece) = piece {
        if buf.len() + piece.len() > mirror.max_body {
            mirror.too_large();
            ctx.mirror = Copy::Done;
            return;
        }
        buf.extend_from_slice(piece);
    }
    if end {
        if let Copy::Pending(head, buf) = std::mem::replace(&mut ctx.mirror, Copy::Done) {
            mirror.send(*head, buf.freeze());
        }
    }
}
