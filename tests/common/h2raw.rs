//! A raw HTTP/2 client for hostile-client tests: frames written byte by byte (so a test can send
//! what no well-behaved client would), HPACK without Huffman, and frames read back as they come.

use std::net::SocketAddr;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Frame types (RFC 9113 §6).
pub const DATA: u8 = 0;
pub const HEADERS: u8 = 1;
pub const PRIORITY: u8 = 2;
pub const RST_STREAM: u8 = 3;
pub const SETTINGS: u8 = 4;
pub const PING: u8 = 6;
pub const GOAWAY: u8 = 7;
pub const WINDOW_UPDATE: u8 = 8;
pub const CONTINUATION: u8 = 9;

/// Flags.
pub const END_STREAM: u8 = 0x1;
pub const ACK: u8 = 0x1;
pub const END_HEADERS: u8 = 0x4;

/// One frame as read.
#[derive(Debug, Clone)]
pub struct Frame {
    pub kind: u8,
    pub flags: u8,
    pub stream: u32,
    pub payload: Vec<u8>,
}

impl Frame {
    /// The error code of a GOAWAY or RST_STREAM.
    pub fn error_code(&self) -> Option<u32> {
        let at = match self.kind {
            GOAWAY => 4,
            RST_STREAM => 0,
            _ => return None,
        };
        let b = self.payload.get(at..at + 4)?;
        Some(u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
    }

    /// The `:status` of a HEADERS frame lb sent (HPACK static-table indices or a literal).
    pub fn status(&self) -> Option<u16> {
        if self.kind != HEADERS {
            return None;
        }
        let first = *self.payload.first()?;
        // Indexed :status entries 8..=14 of the static table.
        let statuses = [200, 204, 206, 304, 400, 404, 500];
        if first & 0x80 != 0 {
            return statuses.get(usize::from(first & 0x7f).checked_sub(8)?).copied();
        }
        // A literal with the :status name (index 8..14) and a 3-digit value, plain or
        // Huffman-coded (RFC 7541 Appendix B).
        let len = *self.payload.get(1)?;
        if len & 0x80 == 0 {
            let value = self.payload.get(2..5)?;
            return std::str::from_utf8(value).ok()?.parse().ok();
        }
        huffman_digits(self.payload.get(2..2 + usize::from(len & 0x7f))?, 3)
    }
}

/// The first `n` digits of a Huffman-coded string of digits ('0'-'2': 5-bit codes 0-2, '3'-'9':
/// 6-bit codes 0x19-0x1f).
fn huffman_digits(bytes: &[u8], n: usize) -> Option<u16> {
    let bit = |i: usize| bytes.get(i / 8).map(|b| (b >> (7 - i % 8)) & 1);
    let (mut at, mut value) = (0, 0u16);
    for _ in 0..n {
        let five = (0..5).try_fold(0u8, |acc, k| Some(acc << 1 | bit(at + k)?))?;
        let digit = if five <= 2 {
            at += 5;
            five
        } else {
            let six = five << 1 | bit(at + 5)?;
            at += 6;
            six.checked_sub(0x19)? + 3
        };
        value = value * 10 + u16::from(digit);
    }
    Some(value)
}

/// A frame's bytes.
pub fn frame(kind: u8, flags: u8, stream: u32, payload: &[u8]) -> Vec<u8> {
    let len = payload.len() as u32;
    let mut f = len.to_be_bytes()[1..].to_vec();
    f.extend_from_slice(&[kind, flags]);
    f.extend_from_slice(&stream.to_be_bytes());
    f.extend_from_slice(payload);
    f
}

/// An HPACK string literal, not Huffman-coded (lengths up to 2^21).
fn string(s: &[u8], out: &mut Vec<u8>) {
    integer(s.len(), 7, 0, out);
    out.extend_from_slice(s);
}

/// An HPACK integer with an `n`-bit prefix after the bits `first`.
pub fn integer(mut v: usize, n: u32, first: u8, out: &mut Vec<u8>) {
    let max = (1usize << n) - 1;
    if v < max {
        out.push(first | v as u8);
        return;
    }
    out.push(first | max as u8);
    v -= max;
    while v >= 128 {
        out.push((v % 128 + 128) as u8);
        v /= 128;
    }
    out.push(v as u8);
}

/// A header field literal without indexing.
pub fn literal(name: &str, value: &[u8], out: &mut Vec<u8>) {
    out.push(0x00);
    string(name.as_bytes(), out);
    string(value, out);
}

/// A header field literal with incremental indexing (it enters the server's HPACK table).
pub fn indexed_literal(name: &str, value: &[u8], out: &mut Vec<u8>) {
    out.push(0x40);
    string(name.as_bytes(), out);
    string(value, out);
}

/// A header block for `GET path` on `authority`, plus `extra` fields.
pub fn get_block(path: &str, authority: &str, extra: &[(&str, &str)]) -> Vec<u8> {
    let mut block = vec![0x82, 0x86]; // :method GET, :scheme http
    literal(":path", path.as_bytes(), &mut block);
    literal(":authority", authority.as_bytes(), &mut block);
    for (name, value) in extra {
        literal(name, value.as_bytes(), &mut block);
    }
    block
}

/// An HTTP/2 connection with prior knowledge.
pub struct H2 {
    pub conn: TcpStream,
    buf: Vec<u8>,
}

impl H2 {
    /// Connects to `addr` and sends the preface with `settings` (id, value pairs).
    pub async fn connect(addr: SocketAddr, settings: &[(u16, u32)]) -> std::io::Result<H2> {
        let mut conn = TcpStream::connect(addr).await?;
        let mut payload = Vec::new();
        for (id, value) in settings {
            payload.extend_from_slice(&id.to_be_bytes());
            payload.extend_from_slice(&value.to_be_bytes());
        }
        let mut hello = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n".to_vec();
        hello.extend(frame(SETTINGS, 0, 0, &payload));
        conn.write_all(&hello).await?;
        Ok(H2 { conn, buf: Vec::new() })
    }

    /// Writes raw bytes.
    pub async fn send(&mut self, bytes: &[u8]) -> std::io::Result<()> {
        self.conn.write_all(bytes).await
    }

    /// The next frame, or `None` when the connection closed (or nothing came within `quiet`).
    pub async fn next(&mut self, quiet: Duration) -> Option<Frame> {
        loop {
            if self.buf.len() >= 9 {
                let len = u32::from_be_bytes([0, self.buf[0], self.buf[1], self.buf[2]]) as usize;
                if self.buf.len() >= 9 + len {
                    let f: Vec<u8> = self.buf.drain(..9 + len).collect();
                    let stream = u32::from_be_bytes([f[5], f[6], f[7], f[8]]) & 0x7fff_ffff;
                    return Some(Frame {
                        kind: f[3],
                        flags: f[4],
                        stream,
                        payload: f[9..].to_vec(),
                    });
                }
            }
            let mut chunk = [0u8; 16 << 10];
            match tokio::time::timeout(quiet, self.conn.read(&mut chunk)).await {
                Ok(Ok(n)) if n > 0 => self.buf.extend_from_slice(&chunk[..n]),
                _ => return None,
            }
        }
    }

    /// Reads frames (answering SETTINGS) until `until` holds for one, the connection closes or
    /// `quiet` passes without a frame; the frames read.
    pub async fn read_until(&mut self, quiet: Duration, mut until: impl FnMut(&Frame) -> bool) -> Vec<Frame> {
        let mut seen = Vec::new();
        while let Some(f) = self.next(quiet).await {
            if f.kind == SETTINGS && f.flags & ACK == 0 {
                let _ = self.send(&frame(SETTINGS, ACK, 0, &[])).await;
            }
            let done = until(&f);
            seen.push(f);
            if done {
                break;
            }
        }
        seen
    }

    /// Whether the connection is closed by the server within `limit` (frames on the way read
    /// and dropped).
    pub async fn closed_within(&mut self, limit: Duration) -> bool {
        let end = tokio::time::Instant::now() + limit;
        let mut chunk = [0u8; 16 << 10];
        loop {
            let left = end.saturating_duration_since(tokio::time::Instant::now());
            match tokio::time::timeout(left, self.conn.read(&mut chunk)).await {
                Ok(Ok(0)) | Ok(Err(_)) => return true,
                Ok(Ok(_)) => {}
                Err(_) => return false,
            }
        }
    }
}
