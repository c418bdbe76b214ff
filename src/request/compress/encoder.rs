//! One response body's compressor: gzip (flate2 over zlib-ng), brotli or zstd, fed the body a
//! piece at a time. Each piece that is not the last is flushed through (a sync flush: the client
//! can decode everything sent so far), so a streamed response is never held back; the last one
//! ends the stream. It counts what went in and out in its route's [`Counters`].

use super::stats::Counters;
use crate::config::Encoding;
use bytes::Bytes;
use std::io::{self, Write};
use std::sync::{Arc, Mutex};

/// brotli's window: 2^19 = 512 KiB, ngx_brotli's default (`brotli_window 512k`); the size of
/// brotli's own input buffer.
const BROTLI_WINDOW_LOG: u32 = 19;
const BROTLI_BUFFER: usize = 4096;

/// zstd's window, capped as brotli's: at the levels lb uses zstd would take up to 2 MiB per
/// response for a body of unknown length.
const ZSTD_WINDOW_LOG: u32 = 19;

/// Output reserved for a piece at most, before the compressor writes it.
const MAX_RESERVE: usize = 16 * 1024;

/// The compressor of one of the three encodings, writing into a `Vec` taken after each piece.
enum Kind {
    Gzip(flate2::write::GzEncoder<Vec<u8>>),
    /// `None` once finished (brotli ends its stream only when the writer is consumed).
    Br(Option<Box<brotli::CompressorWriter<Vec<u8>>>>),
    /// In a mutex only because zstd's context is `Send` but not `Sync` and a request's context
    /// must be both; it is never contended.
    Zstd(Mutex<zstd::stream::write::Encoder<'static, Vec<u8>>>),
}

/// The compressor of one response body.
pub struct Encoder {
    kind: Kind,
    encoding: Encoding,
    counters: Arc<Counters>,
    finished: bool,
}

impl Encoder {
    /// A compressor for `encoding` at lb's `level` (1 to 9), counting into `counters`. The level
    /// is each algorithm's own level of that number: gzip's whole range (nginx's
    /// `gzip_comp_level`); brotli's 10-11 and zstd's 10-22 are for compressing files ahead of
    /// time, too slow for every response.
    pub fn new(encoding: Encoding, level: u32, counters: Arc<Counters>) -> io::Result<Self> {
        let level = level.clamp(1, 9);
        let kind = match encoding {
            Encoding::Gzip => Kind::Gzip(flate2::write::GzEncoder::new(
                Vec::new(),
                flate2::Compression::new(level),
            )),
            Encoding::Br => Kind::Br(Some(Box::new(brotli::CompressorWriter::new(
                Vec::new(),
                BROTLI_BUFFER,
                level,
                BROTLI_WINDOW_LOG,
            )))),
            Encoding::Zstd => {
                let mut zstd = zstd::stream::write::Encoder::new(Vec::new(), level as i32)?;
                zstd.window_log(ZSTD_WINDOW_LOG)?;
                Kind::Zstd(Mutex::new(zstd))
            }
        };
        counters.started(encoding);
        Ok(Encoder {
            kind,
            encoding,
            counters,
            finished: false,
        })
    }

    /// The encoding it writes.
    pub fn encoding(&self) -> Encoding {
        self.encoding
    }

    /// Compresses `input`, the next piece of the body, and returns what can be sent of the
    /// compressed stream: all of `input`'s share when more follows (`end` false), the rest of the
    /// stream when it is the last. Nothing after the end.
    pub fn encode(&mut self, input: &[u8], end: bool) -> io::Result<Bytes> {
        // Nothing new to flush: a sync flush of no input would still cost bytes.
        if self.finished || (input.is_empty() && !end) {
            return Ok(Bytes::new());
        }
        self.finished = end;
        let out = match &mut self.kind {
            Kind::Gzip(gz) => {
                gz.get_mut().reserve(input.len().min(MAX_RESERVE));
                gz.write_all(input)?;
                if end {
                    gz.try_finish()?;
                } else {
                    gz.flush()?;
                }
                std::mem::take(gz.get_mut())
            }
            Kind::Br(slot) => brotli_piece(slot, input, end)?,
            Kind::Zstd(zstd) => {
                let zstd = zstd.get_mut().map_err(|_| io::Error::other("zstd encoder poisoned"))?;
                zstd.get_mut().reserve(input.len().min(MAX_RESERVE));
                zstd.write_all(input)?;
                if end {
                    zstd.do_finish()?;
                } else {
                    zstd.flush()?;
                }
                std::mem::take(zstd.get_mut())
            }
        };
        self.counters.add(self.encoding, input.len(), out.len());
        Ok(Bytes::from(out))
    }
}

/// A piece through brotli; the last one consumes the writer, which ends the stream.
fn brotli_piece(
    slot: &mut Option<Box<brotli::CompressorWriter<Vec<u8>>>>,
    input: &[u8],
    end: bool,
) -> io::Result<Vec<u8>> {
    let Some(br) = slot.as_mut() else {
        return Ok(Vec::new());
    };
    br.get_mut().reserve(input.len().min(MAX_RESERVE));
    br.write_all(input)?;
    if !end {
        br.flush()?;
        return Ok(std::mem::take(br.get_mut()));
    }
    match slot.take() {
        Some(br) => Ok(br.into_inner()),
        None => Ok(Vec::new()),
    }
}
