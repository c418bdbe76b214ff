//! Response compression on the way to the client, the same for both request loops: the head is
//! decided and edited once the route's response rules have run ([`Lb::compress_head`], the last
//! step of `edit_response`), and every piece of the body passes [`Lb::body_out`], which
//! compresses it and sends it on at once (a sync flush) when the route compresses.

use super::{Ctx, Lb};
use bytes::Bytes;
use pingora_core::protocols::http::ServerSession;
use pingora_error::{Error, ErrorType, Result};
use pingora_http::ResponseHeader;

impl Lb {
    /// Applies the route's compression to the final response head `resp`: edits it and keeps the
    /// body's compressor in `ctx` when it is compressed, adds `Vary: Accept-Encoding` when it
    /// could have been.
    pub(super) fn compress_head(
        &self,
        downstream: &ServerSession,
        resp: &mut ResponseHeader,
        ctx: &mut Ctx,
    ) -> Result<()> {
        if resp.status.is_informational() {
            return Ok(());
        }
        let encoder = match ctx.target.as_ref().and_then(|t| t.compress.as_ref()) {
            // HTTP/2 frames the body itself; an HTTP/1 client gets it chunked.
            Some(compress) => compress.apply(downstream.req_header(), resp, !downstream.is_http2())?,
            None => None,
        };
        ctx.encoder = encoder;
        Ok(())
    }

    /// A piece of the response body (`None`: no bytes) on its way to the client, `end` if it is
    /// the last: the writes switch to going out at once when the body comes in pieces, and the
    /// piece is compressed when the response is (the last one ends the compressed stream).
    pub(super) fn body_out(
        &self,
        downstream: &ServerSession,
        body: &mut Option<Bytes>,
        end: bool,
        ctx: &mut Ctx,
    ) -> Result<()> {
        self.stream_body(downstream, end, ctx);
        super::mirror::capture_body(body.as_ref(), ctx);
        let Some(encoder) = ctx.encoder.as_mut() else {
            return Ok(());
        };
        let input = body.take().unwrap_or_default();
        let out = encoder.encode(&input, end).map_err(|e| {
            let why = format!(
                "compressing the response ({}): {e}",
                crate::request::compress::token(encoder.encoding())
            );
            Error::explain(ErrorType::InternalError, why)
        })?;
        *body = (!out.is_empty()).then_some(out);
        Ok(())
    }

    /// The end of a compressed body that ends with trailers (an HTTP/2 backend's) on Pingora's
    /// loop: the rest of the compressed stream, which Pingora's hook sends in place of the
    /// trailers (a compressed response loses them). `None` for a body not compressed: the
    /// trailers pass.
    pub(super) fn body_end_before_trailers(&self, downstream: &ServerSession, ctx: &mut Ctx) -> Result<Option<Bytes>> {
        if ctx.encoder.is_none() {
            return Ok(None);
        }
        let mut tail = None;
        self.body_out(downstream, &mut tail, true, ctx)?;
        Ok(Some(tail.unwrap_or_default()))
    }
}
