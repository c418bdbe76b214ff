//! When copies of a request go out, shared by both request loops: the route's mirror, and in a
//! rollout's shadow phase the copy to the candidate, whose answer is compared with the
//! baseline's. A request without a body is copied as its head goes to the backend (the first
//! attempt's, with the route's rules applied: the copy's pool sees what the backend sees); one
//! with a body once the body is read, if it fits the copier's `max_body` (lb's own loop takes
//! only requests without a body; Pingora's feeds the body through [`body`]). The baseline's
//! answer for the comparison is captured as it passes ([`capture_head`], [`capture_body`]) and
//! handed over when the request ends ([`finish`]).

use super::Ctx;
use crate::request::mirror::{Mirror, OnReply, Reply};
use crate::request::rollout::Pair;
use crate::request::shadow_compare::Answer;
use bytes::{Bytes, BytesMut};
use pingora_http::{RequestHeader, ResponseHeader};
use std::sync::Arc;

/// A request's copy for one copier.
#[derive(Default)]
pub enum Copy {
    /// Not decided yet (no attempt yet).
    #[default]
    Undecided,
    /// Waiting for the rest of the body.
    Pending(Box<Pending>),
    /// Sent, not sampled, too large, or no copier: nothing more to do.
    Done,
}

/// A copy waiting for the request body.
pub struct Pending {
    head: RequestHeader,
    body: BytesMut,
    mirror: Arc<Mirror>,
    pair: Option<Arc<Pair>>,
}

/// The baseline's answer as it passes, for the shadow's comparison.
pub struct Capture {
    pair: Arc<Pair>,
    /// The final status and headers, once they came.
    head: Option<(u16, http::HeaderMap)>,
    body: BytesMut,
    /// Whether `body` is all of it (false once it outgrew `limit`).
    whole: bool,
    limit: usize,
}

/// Whether `head` announces a body (a length above zero, or chunked).
fn has_body(head: &RequestHeader) -> bool {
    let length = head.headers.get(http::header::CONTENT_LENGTH);
    head.headers.contains_key(http::header::TRANSFER_ENCODING)
        || length.is_some_and(|v| v.as_bytes().iter().any(|b| *b != b'0'))
}

/// Called with each attempt's head for the backend: decides the copies on the first.
pub(super) fn begin(head: &RequestHeader, ctx: &mut Ctx) {
    if !matches!(ctx.mirror, Copy::Undecided) {
        return;
    }
    let (mirror, shadow) = match ctx.target.as_ref() {
        Some(target) => (
            target.mirror.as_ref().filter(|m| m.sampled()).cloned(),
            target.rollout.as_ref().and_then(|live| {
                let mirror = live.shadow_copy()?;
                Some((
                    mirror,
                    Pair::new(Arc::clone(live), head.method.as_str(), head.uri.path()),
                ))
            }),
        ),
        None => (None, None),
    };
    ctx.mirror = decide(head, mirror, None);
    ctx.shadow = match shadow {
        Some((mirror, pair)) => {
            let limit = mirror.max_body;
            let copy = decide(head, Some(mirror), Some(Arc::clone(&pair)));
            if !matches!(copy, Copy::Done) || !has_body(head) {
                ctx.capture = Some(Capture {
                    pair,
                    head: None,
                    body: BytesMut::new(),
                    whole: true,
                    limit,
                });
            }
            copy
        }
        None => Copy::Done,
    };
}

/// The copy of `head` for `mirror` (none without one): sent now without a body, waiting for
/// one that fits, given up on one that cannot.
fn decide(head: &RequestHeader, mirror: Option<Arc<Mirror>>, pair: Option<Arc<Pair>>) -> Copy {
    let Some(mirror) = mirror else { return Copy::Done };
    if !has_body(head) {
        mirror.send(head.clone(), Bytes::new(), pair.map(to_pair));
        return Copy::Done;
    }
    let length = head
        .headers
        .get(http::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok()?.parse::<usize>().ok());
    if length.is_some_and(|n| n > mirror.max_body) {
        mirror.too_large();
        return Copy::Done;
    }
    let room = length.unwrap_or(0).min(mirror.max_body);
    Copy::Pending(Box::new(Pending {
        head: head.clone(),
        body: BytesMut::with_capacity(room),
        mirror,
        pair,
    }))
}

/// Hands what became of the candidate's copy to `pair`.
fn to_pair(pair: Arc<Pair>) -> OnReply {
    Box::new(move |reply| match reply {
        Reply::Answer(answer) => pair.candidate(Some(answer)),
        Reply::NoAnswer => pair.candidate(None),
        Reply::NotSent => pair.give_up(),
    })
}

/// Called with each piece of the client's request body: the copies go once the body ended.
pub(super) fn body(piece: Option<&Bytes>, end: bool, ctx: &mut Ctx) {
    for copy in [&mut ctx.mirror, &mut ctx.shadow] {
        feed(copy, piece, end);
    }
    if matches!(ctx.shadow, Copy::Done) && ctx.capture.as_ref().is_some_and(|c| c.pair.gave_up()) {
        ctx.capture = None;
    }
}

fn feed(copy: &mut Copy, piece: Option<&Bytes>, end: bool) {
    let Copy::Pending(pending) = copy else { return };
    if let Some(piece) = piece {
        if pending.body.len() + piece.len() > pending.mirror.max_body {
            pending.mirror.too_large();
            if let Some(pair) = &pending.pair {
                pair.give_up();
            }
            *copy = Copy::Done;
            return;
        }
        pending.body.extend_from_slice(piece);
    }
    if end {
        if let Copy::Pending(p) = std::mem::replace(copy, Copy::Done) {
            let Pending {
                head,
                body,
                mirror,
                pair,
            } = *p;
            mirror.send(head, body.freeze(), pair.map(to_pair));
        }
    }
}

/// Called with the backend's final response head (before lb edits it); a retry's replaces the
/// first's.
pub(super) fn capture_head(resp: &ResponseHeader, ctx: &mut Ctx) {
    if let Some(capture) = &mut ctx.capture {
        capture.head = Some((resp.status.as_u16(), resp.headers.clone()));
        capture.body.clear();
        capture.whole = true;
    }
}

/// Called with each piece of the backend's response body (before compression).
pub(super) fn capture_body(piece: Option<&Bytes>, ctx: &mut Ctx) {
    let (Some(capture), Some(piece)) = (&mut ctx.capture, piece) else {
        return;
    };
    if !capture.whole {
        return;
    }
    if capture.body.len() + piece.len() > capture.limit {
        capture.whole = false;
        capture.body = BytesMut::new();
        return;
    }
    capture.body.extend_from_slice(piece);
}

/// Called when the request ends: a whole exchange hands the baseline's answer to the comparison.
pub(super) fn finish(failed: bool, ctx: &mut Ctx) {
    let Some(capture) = ctx.capture.take() else { return };
    match capture.head {
        Some((status, headers)) if !failed => capture.pair.baseline(Answer {
            status,
            headers,
            body: capture.body.freeze(),
            body_whole: capture.whole,
        }),
        _ => capture.pair.give_up(),
    }
}
