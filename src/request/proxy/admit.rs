//! Admission: the one decision, for both request loops, of what becomes of a request once its
//! head is read — lb answers it itself ([`Answer`]), or it is proxied to a route's pool, and
//! whether lb's own loop may take it. Every answer lb gives without a backend is decided here, in
//! this order: a bad `Host` (400), too many header fields (431, for HTTP/2: the front counted
//! HTTP/1's), `Max-Forwards: 0` (the final recipient's answer), no route
//! (404), a declared body over `clients.max_body_size` (413, checked before the route's guards
//! as nginx checks `client_max_body_size` before its rewrite phase), then the route's
//! [`Guard`](crate::request::guard::Guard)s in their order. A route with a split chooses its
//! side here, once, for whichever loop serves the request
//! ([`Target::choose`](crate::request::route::Target::choose)). Writing an
//! answer is [`Lb::answer`]'s, the same for both loops.
//!
//! A split route goes to Pingora's loop whole when one of its sides needs it: the side is chosen
//! once, on the loop that serves the request, and a request lb's loop declines is read again
//! from the start by Pingora's, so a choice made before the decline could not be kept (choosing
//! twice would skew the shares towards the sides lb's loop serves).

use super::{forwarded, is_tls, policy, respond, Ctx, Lb};
use crate::request::front::head::MAX_FIELDS;
use crate::request::front::TOO_LARGE;
use crate::request::guard::{Answer, Asked};
use crate::request::route::Routed;
use pingora_core::protocols::http::ServerSession;
use pingora_error::Result;
use std::net::IpAddr;

/// Which loop asks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Loop {
    /// lb's own HTTP/1 loop ([`super::direct`]): it takes what it can.
    Lb,
    /// Pingora's `HttpProxy`: it takes everything.
    Pingora,
}

/// What becomes of a request.
pub(crate) enum Admission {
    /// lb answers; `target`: the route it matched, if any (its pool counts the answer).
    Answer {
        /// The answer.
        answer: Answer,
        /// The route matched and its pool, if one did.
        target: Option<Routed>,
    },
    /// It goes to the route's pool (a split's side chosen).
    Proxy(Routed),
    /// lb's loop asked, and the route's pool needs Pingora's (TLS or HTTP/2 to the backends).
    /// Decided before anything is counted (no rate-limit token is taken), so that Pingora's loop
    /// can ask again.
    ToPingora,
}

impl Admission {
    fn answer(answer: Answer, target: Option<Routed>) -> Self {
        Admission::Answer { answer, target }
    }
}

impl Lb {
    /// What becomes of the request on `downstream` from `client`, asked by loop `from`.
    pub(crate) fn admit(&self, downstream: &ServerSession, client: Option<IpAddr>, from: Loop) -> Admission {
        let req = downstream.req_header();
        if let Some(why) = policy::bad_host(req) {
            let answer = Answer::Text {
                status: 400,
                detail: why,
                close: true,
            };
            return Admission::answer(answer, None);
        }
        // HTTP/1 heads were counted by the front; an HTTP/2 head meets the same limit here.
        if req.headers.len() > MAX_FIELDS {
            let answer = Answer::Text {
                status: 431,
                detail: "the request has more header fields than lb takes",
                close: true,
            };
            return Admission::answer(answer, None);
        }
        if forwarded::max_forwards(req) == Some(0) {
            // The last hop answers itself (RFC 9110 §7.6.2).
            return Admission::answer(Answer::FinalRecipient, None);
        }
        let Some(target) = self.route(req) else {
            let answer = Answer::Text {
                status: 404,
                detail: "no route matches this host and path",
                close: false,
            };
            return Admission::answer(answer, None);
        };
        if from == Loop::Lb && !target.plain_http1() {
            return Admission::ToPingora;
        }
        let routed = target.choose(req, client);
        let declared = req
            .headers
            .get(http::header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok()?.parse::<u64>().ok());
        if declared.zip(self.edge.max_body).is_some_and(|(n, max)| n > max) {
            let answer = Answer::Text {
                status: 413,
                detail: TOO_LARGE,
                close: true,
            };
            return Admission::answer(answer, Some(routed));
        }
        let asked = Asked {
            req,
            tls: is_tls(downstream),
            client,
            now_ns: crate::clock::mono_ns(),
        };
        match target.guards.iter().find_map(|g| g.check(&asked)) {
            Some(answer) => Admission::answer(answer, Some(routed)),
            None => Admission::Proxy(routed),
        }
    }

    /// Writes `answer` on `downstream` (the route's pool in `ctx`, if any, is the one redirect
    /// mode picks from).
    pub(crate) async fn answer(&self, downstream: &mut ServerSession, ctx: &mut Ctx, answer: Answer) -> Result<()> {
        match answer {
            Answer::Text { status, detail, close } => {
                if close {
                    downstream.set_keepalive(None);
                }
                respond::send(downstream, status, detail).await
            }
            Answer::FinalRecipient => respond::final_recipient(downstream).await,
            Answer::Redirect { status, location } => respond::redirect(downstream, status, &location).await,
            Answer::TooMany { retry_after } => respond::too_many(downstream, retry_after).await,
            Answer::ToBackend { status } => self.redirect_to_backend(downstream, ctx, status).await,
            Answer::Unauthorized { challenge } => respond::unauthorized(downstream, &challenge).await,
        }
    }

    /// Redirect mode: picks a backend as for proxying and sends the client there.
    async fn redirect_to_backend(&self, downstream: &mut ServerSession, ctx: &mut Ctx, status: u16) -> Result<()> {
        let Some(pool) = ctx.pool.clone() else {
            return respond::send(downstream, 503, "no backend is available").await;
        };
        let key = pool.key(downstream.req_header(), ctx.client);
        match pool.pick(key.as_bytes(), &[]).await {
            Ok(picked) => {
                let addr = picked.lease.state().addr;
                let location = policy::backend_location(downstream.req_header(), addr, pool.backend_tls());
                drop(picked);
                respond::redirect(downstream, status, &location).await
            }
            Err(refused) => respond::send(downstream, 503, &refused.to_string()).await,
        }
    }
}
