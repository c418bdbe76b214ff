//! Finding the end of a chunked request body, strictly (RFC 9112 §7.1): a byte-at-a-time state machine that
//! validates chunk sizes, extensions and trailers and skips chunk data in bulk; it decodes nothing and
//! copies nothing, the bytes go on unchanged.

use crate::request::front::head::is_tchar;
use std::fmt;

/// Most hex digits in a chunk size (leading zeros included): 16 hold any u64.
pub const MAX_SIZE_DIGITS: u8 = 16;

/// Most bytes of chunk extensions in one chunk-size line, from the end of the size to the CR.
pub const MAX_EXTENSION_BYTES: u16 = 4096;

/// Most bytes of trailer field lines, their CRLFs included, the final empty line excluded.
pub const MAX_TRAILER_BYTES: u16 = 8192;

/// What is wrong with a chunked body; any of them means a 400 and closing the connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChunkError {
    /// A chunk-size line does not start with a hex digit, or the size is followed by something else than an
    /// extension or CRLF.
    BadSize,
    /// A chunk size has more than [`MAX_SIZE_DIGITS`] hex digits.
    SizeTooLong,
    /// A chunk extension does not follow `;name[=token|"quoted"]` with optional whitespace around `;`, `=`.
    BadExtension,
    /// The extensions of one chunk exceed [`MAX_EXTENSION_BYTES`].
    ExtensionTooLong,
    /// Chunk data is not followed by exactly CRLF.
    BadDataEnd,
    /// A CR not followed by LF, or an LF without CR.
    BareCrOrLf,
    /// A trailer field line is malformed (name not a token, whitespace before the colon, obs-fold, control
    /// character in the value).
    BadTrailer,
    /// The trailer section exceeds [`MAX_TRAILER_BYTES`].
    TrailersTooLong,
}

impl ChunkError {
    /// A short description for the log.
    pub fn reason(self) -> &'static str {
        match self {
            ChunkError::BadSize => "invalid chunk size",
            ChunkError::SizeTooLong => "chunk size too long",
            ChunkError::BadExtension => "invalid chunk extension",
            ChunkError::ExtensionTooLong => "chunk extensions too long",
            ChunkError::BadDataEnd => "chunk data not followed by CRLF",
            ChunkError::BareCrOrLf => "bare CR or LF in chunked framing",
            ChunkError::BadTrailer => "invalid trailer field",
            ChunkError::TrailersTooLong => "trailer section too long",
        }
    }
}

impl fmt::Display for ChunkError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.reason())
    }
}

impl std::error::Error for ChunkError {}

/// Where the parser stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// At the start of a chunk-size line: a hex digit must come.
    SizeStart,
    /// Inside the chunk size.
    Size,
    /// Inside the chunk extensions (see [`Ext`]).
    Ext(Ext),
    /// After the CR of a chunk-size line.
    SizeLf,
    /// Inside chunk data, this many bytes left (never 0).
    Data(u64),
    /// After chunk data: CR must come.
    DataCr,
    /// After chunk data and CR: LF must come.
    DataLf,
    /// At the start of a trailer line, or of the final empty line.
    TrailerStart,
    /// Inside a trailer field name.
    TrailerName,
    /// Inside a trailer field value.
    TrailerValue,
    /// After the CR of a trailer line.
    TrailerLf,
    /// After the CR of the final empty line.
    FinalLf,
    /// The body is complete.
    Done,
    /// The body was refused; it stays refused.
    Failed(ChunkError),
}

/// Where the parser stands inside chunk extensions.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Ext {
    /// Whitespace that must lead to `;` (after the size or a value).
    BeforeSemi,
    /// After `;`, before the name.
    BeforeName,
    /// Inside the name.
    Name,
    /// Whitespace after the name: `=` or `;` must come.
    AfterName,
    /// After `=`, before the value.
    BeforeValue,
    /// Inside a token value.
    Token,
    /// Inside a quoted-string value.
    Quoted,
    /// After a backslash inside a quoted-string.
    Escape,
    /// After the closing quote.
    AfterQuoted,
}

/// A chunked-body parser: feed it the body's bytes in any split; it says where the body ends.
#[derive(Debug, Clone)]
pub struct Chunked {
    state: State,
    /// Hex digits of the current chunk size so far.
    digits: u8,
    /// The current chunk size so far.
    size: u64,
    /// Extension bytes of the current chunk-size line so far.
    ext_bytes: u16,
    /// Trailer bytes so far.
    trailer_bytes: u16,
    /// Sum of the chunk sizes announced so far (saturating).
    declared: u64,
}

impl Default for Chunked {
    fn default() -> Self {
        Self::new()
    }
}

impl Chunked {
    /// A parser at the start of a chunked body.
    pub fn new() -> Self {
        Chunked {
            state: State::SizeStart,
            digits: 0,
            size: 0,
            ext_bytes: 0,
            trailer_bytes: 0,
            declared: 0,
        }
    }

    /// The body length the chunk-size lines seen so far announce (the whole of each chunk, even
    /// the parts not received yet): how an oversized body is refused before it is forwarded.
    pub fn declared(&self) -> u64 {
        self.declared
    }

    /// Feeds the next bytes of the body. Returns how many leading bytes of `input` belong to the body (all of
    /// them unless the body ends inside `input`) and whether the body is complete; Err on malformed framing
    /// (and on every later call). Can be called with any split of the input (even 1 byte at a time).
    pub fn advance(&mut self, input: &[u8]) -> Result<(usize, bool), ChunkError> {
        let mut used = 0;
        while let Some(rest) = input.get(used..).filter(|rest| !rest.is_empty()) {
            match self.state {
                State::Done => break,
                State::Failed(e) => return Err(e),
                State::Data(left) => used += self.skip_data(left, rest.len()),
                _ => {
                    self.state = self.step(rest[0]).unwrap_or_else(State::Failed);
                    used += 1;
                }
            }
        }
        match self.state {
            State::Failed(e) => Err(e),
            state => Ok((used, state == State::Done)),
        }
    }

    /// True once the terminating empty line after the last chunk and trailers was seen.
    pub fn is_done(&self) -> bool {
        self.state == State::Done
    }

    /// Skips up to `available` bytes of chunk data with `left` bytes to go; returns how many.
    fn skip_data(&mut self, left: u64, available: usize) -> usize {
        let taken = u64::try_from(available).map_or(left, |available| available.min(left));
        self.state = match left - taken {
            0 => State::DataCr,
            left => State::Data(left),
        };
        // `taken` is at most `available`, a usize.
        usize::try_from(taken).unwrap_or(available)
    }

    /// The state after byte `b`.
    fn step(&mut self, b: u8) -> Result<State, ChunkError> {
        match self.state {
            State::SizeStart => self.size_digit(b).ok_or(ChunkError::BadSize),
            State::Size => self.after_size_digit(b),
            State::Ext(ext) => self.extension(ext, b),
            State::SizeLf => self.size_line_end(b),
            State::DataCr => expect(b, b'\r', State::DataLf, ChunkError::BadDataEnd),
            State::DataLf => expect(b, b'\n', State::SizeStart, ChunkError::BareCrOrLf),
            State::TrailerStart => self.trailer_start(b),
            State::TrailerName => self.trailer_byte().and_then(|()| trailer_name(b)),
            State::TrailerValue => self.trailer_byte().and_then(|()| trailer_value(b)),
            State::TrailerLf => self
                .trailer_byte()
                .and_then(|()| expect(b, b'\n', State::TrailerStart, ChunkError::BareCrOrLf)),
            State::FinalLf => expect(b, b'\n', State::Done, ChunkError::BareCrOrLf),
            // Handled by `advance`, never stepped.
            State::Data(_) | State::Done | State::Failed(_) => Ok(self.state),
        }
    }

    /// Takes hex digit `b` into the size, or `None` if `b` is not one.
    fn size_digit(&mut self, b: u8) -> Option<State> {
        let digit = char::from(b).to_digit(16)?;
        self.size = (self.size << 4) | u64::from(digit);
        self.digits += 1;
        Some(State::Size)
    }

    /// The state after byte `b` inside or just after the size.
    fn after_size_digit(&mut self, b: u8) -> Result<State, ChunkError> {
        if b.is_ascii_hexdigit() {
            if self.digits == MAX_SIZE_DIGITS {
                return Err(ChunkError::SizeTooLong);
            }
            return self.size_digit(b).ok_or(ChunkError::BadSize);
        }
        match b {
            b'\r' => Ok(State::SizeLf),
            b';' | b' ' | b'\t' => self.extension(Ext::BeforeSemi, b),
            b'\n' => Err(ChunkError::BareCrOrLf),
            _ => Err(ChunkError::BadSize),
        }
    }

    /// The state after byte `b` inside the extensions, counting their length.
    fn extension(&mut self, ext: Ext, b: u8) -> Result<State, ChunkError> {
        if b == b'\r' && matches!(ext, Ext::Name | Ext::Token | Ext::AfterQuoted) {
            return Ok(State::SizeLf);
        }
        self.ext_bytes += 1;
        if self.ext_bytes > MAX_EXTENSION_BYTES {
            return Err(ChunkError::ExtensionTooLong);
        }
        extension_step(ext, b).map(State::Ext).ok_or(match b {
            b'\n' => ChunkError::BareCrOrLf,
            _ => ChunkError::BadExtension,
        })
    }

    /// The state after the LF ending a chunk-size line: data, or trailers after the last chunk.
    fn size_line_end(&mut self, b: u8) -> Result<State, ChunkError> {
        if b != b'\n' {
            return Err(ChunkError::BareCrOrLf);
        }
        let size = std::mem::take(&mut self.size);
        self.declared = self.declared.saturating_add(size);
        self.digits = 0;
        self.ext_bytes = 0;
        Ok(if size == 0 {
            State::TrailerStart
        } else {
            State::Data(size)
        })
    }

    /// The state after the first byte of a trailer line or of the final empty line.
    fn trailer_start(&mut self, b: u8) -> Result<State, ChunkError> {
        match b {
            b'\r' => Ok(State::FinalLf),
            b'\n' => Err(ChunkError::BareCrOrLf),
            _ if is_tchar(b) => self.trailer_byte().map(|()| State::TrailerName),
            _ => Err(ChunkError::BadTrailer),
        }
    }

    /// Counts one trailer byte against [`MAX_TRAILER_BYTES`].
    fn trailer_byte(&mut self) -> Result<(), ChunkError> {
        self.trailer_bytes += 1;
        if self.trailer_bytes > MAX_TRAILER_BYTES {
            return Err(ChunkError::TrailersTooLong);
        }
        Ok(())
    }
}

/// `next` if `b` is `want`, else `error`.
fn expect(b: u8, want: u8, next: State, error: ChunkError) -> Result<State, ChunkError> {
    if b == want {
        Ok(next)
    } else if b == b'\n' || (b == b'\r' && want != b'\r') {
        Err(ChunkError::BareCrOrLf)
    } else {
        Err(error)
    }
}

/// The state after byte `b` inside a trailer field name.
fn trailer_name(b: u8) -> Result<State, ChunkError> {
    match b {
        b':' => Ok(State::TrailerValue),
        _ if is_tchar(b) => Ok(State::TrailerName),
        b'\n' => Err(ChunkError::BareCrOrLf),
        _ => Err(ChunkError::BadTrailer),
    }
}

/// The state after byte `b` inside a trailer field value (VCHAR, obs-text, SP, HTAB).
fn trailer_value(b: u8) -> Result<State, ChunkError> {
    match b {
        b'\r' => Ok(State::TrailerLf),
        b'\n' => Err(ChunkError::BareCrOrLf),
        b' ' | b'\t' | 0x21..=0x7e | 0x80..=0xff => Ok(State::TrailerValue),
        _ => Err(ChunkError::BadTrailer),
    }
}

/// The extension state after byte `b` (not the CR ending the line), or `None` if `b` is not allowed there.
fn extension_step(ext: Ext, b: u8) -> Option<Ext> {
    let ws = b == b' ' || b == b'\t';
    let next = match ext {
        Ext::BeforeSemi if ws => Ext::BeforeSemi,
        Ext::BeforeSemi => return (b == b';').then_some(Ext::BeforeName),
        Ext::BeforeName if ws => Ext::BeforeName,
        Ext::BeforeName | Ext::Name if is_tchar(b) => Ext::Name,
        Ext::Name | Ext::AfterName if ws => Ext::AfterName,
        Ext::Name | Ext::AfterName | Ext::Token | Ext::AfterQuoted if b == b';' => Ext::BeforeName,
        Ext::Name | Ext::AfterName if b == b'=' => Ext::BeforeValue,
        Ext::BeforeValue if ws => Ext::BeforeValue,
        Ext::BeforeValue if b == b'"' => Ext::Quoted,
        Ext::BeforeValue | Ext::Token if is_tchar(b) => Ext::Token,
        Ext::Token | Ext::AfterQuoted if ws => Ext::BeforeSemi,
        Ext::Quoted => quoted_step(b)?,
        Ext::Escape => return (ws || (0x21..=0x7e).contains(&b) || b >= 0x80).then_some(Ext::Quoted),
        _ => return None,
    };
    Some(next)
}

/// The state after byte `b` inside a quoted-string: qdtext, a backslash, or the closing quote.
fn quoted_step(b: u8) -> Option<Ext> {
    match b {
        b'"' => Some(Ext::AfterQuoted),
        b'\\' => Some(Ext::Escape),
        b'\t' | b' ' | 0x21..=0x7e | 0x80..=0xff => Some(Ext::Quoted),
        _ => None,
    }
}

#[cfg(test)]
#[path = "chunked_tests.rs"]
mod tests;

#[cfg(test)]
#[path = "chunked_reference.rs"]
mod reference;

#[cfg(test)]
#[path = "chunked_props.rs"]
mod props;
