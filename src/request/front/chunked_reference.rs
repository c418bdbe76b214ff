//! A reference decoder of chunked framing for the property tests of [`super`] (chunked.rs): a
//! deliberately plain recursive descent over RFC 9112 §7.1's grammar, written apart from lb's
//! byte-at-a-time state machine, that says whether an input is a whole body, the start of one,
//! or neither, and measures what lb bounds (the RFC does not).
//!
//! ```text
//! chunked-body = *chunk last-chunk trailer-section CRLF
//! chunk        = chunk-size [ chunk-ext ] CRLF chunk-data CRLF     ; chunk-size = 1*HEXDIG
//! last-chunk   = 1*("0") [ chunk-ext ] CRLF
//! chunk-ext    = *( BWS ";" BWS token [ BWS "=" BWS ( token / quoted-string ) ] )
//! trailer-section = *( field-name ":" OWS field-value OWS CRLF )
//! ```

/// What the reference decoder makes of an input.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// A whole body of `len` bytes (what follows is not the body's), its chunk sizes adding up
    /// to `declared` (saturating).
    Complete { len: usize, declared: u64 },
    /// All of the input is the start of a body; the chunk-size lines whole so far announce
    /// `declared` bytes.
    Short { declared: u64 },
    /// No continuation makes it a body.
    Invalid,
}

/// What the RFC leaves unbounded and lb bounds, measured over the bytes the decoder went through.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Measures {
    /// Most hex digits in one chunk size, leading zeros included.
    pub size_digits: usize,
    /// Most bytes of chunk extensions in one chunk-size line (from the end of the size to the CR).
    pub extension_bytes: usize,
    /// Bytes of trailer field lines, their CRLFs included (the final empty line excluded).
    pub trailer_bytes: usize,
}

impl Measures {
    /// Whether lb's bounds (`MAX_SIZE_DIGITS`, `MAX_EXTENSION_BYTES`, `MAX_TRAILER_BYTES`) hold.
    pub fn within_lb_limits(&self) -> bool {
        self.size_digits <= usize::from(super::MAX_SIZE_DIGITS)
            && self.extension_bytes <= usize::from(super::MAX_EXTENSION_BYTES)
            && self.trailer_bytes <= usize::from(super::MAX_TRAILER_BYTES)
    }
}

/// Why the descent stopped early.
enum Stop {
    /// The input ended; everything before was a valid start.
    Short,
    /// A byte the grammar does not allow there.
    Invalid,
}

type Step<T> = Result<T, Stop>;

/// The region of the input being measured.
#[derive(Clone, Copy)]
enum Region {
    Size,
    Extensions,
    Trailers,
}

/// Decodes `input` from its first byte.
pub fn decode(input: &[u8]) -> (Verdict, Measures) {
    let mut d = Decoder {
        input,
        at: 0,
        declared: 0,
        region: None,
        measures: Measures::default(),
    };
    let verdict = match d.body() {
        Ok(()) => Verdict::Complete {
            len: d.at,
            declared: d.declared,
        },
        Err(Stop::Short) => {
            d.at = input.len();
            d.close_region();
            Verdict::Short { declared: d.declared }
        }
        Err(Stop::Invalid) => Verdict::Invalid,
    };
    (verdict, d.measures)
}

struct Decoder<'a> {
    input: &'a [u8],
    at: usize,
    /// Sum of the chunk sizes whose line ended (saturating).
    declared: u64,
    region: Option<(Region, usize)>,
    measures: Measures,
}

impl Decoder<'_> {
    fn body(&mut self) -> Step<()> {
        loop {
            let size = self.size_line()?;
            if size == 0 {
                break;
            }
            // chunk-data (any octets), then CRLF.
            let left = self.input.len() - self.at;
            if u128::from(size) > left as u128 {
                return Err(Stop::Short);
            }
            self.at += size as usize;
            self.crlf()?;
        }
        self.trailer_section()
    }

    /// chunk-size [ chunk-ext ] CRLF; returns the size.
    fn size_line(&mut self) -> Step<u64> {
        self.open_region(Region::Size);
        let mut size: u128 = 0;
        let mut digits = 0;
        while let Some(digit) = self.peek_opt().and_then(|b| char::from(b).to_digit(16)) {
            size = size.saturating_mul(16).saturating_add(u128::from(digit));
            digits += 1;
            self.at += 1;
        }
        if digits == 0 {
            self.peek()?;
            return Err(Stop::Invalid);
        }
        self.close_region();
        self.open_region(Region::Extensions);
        self.extensions()?;
        self.close_region();
        self.crlf()?;
        let size = u64::try_from(size).unwrap_or(u64::MAX);
        self.declared = self.declared.saturating_add(size);
        Ok(size)
    }

    /// *( BWS ";" BWS token [ BWS "=" BWS ( token / quoted-string ) ] ), up to the CR.
    fn extensions(&mut self) -> Step<()> {
        loop {
            let spaced = self.bws();
            match self.peek()? {
                b'\r' if !spaced => return Ok(()),
                b';' => self.at += 1,
                _ => return Err(Stop::Invalid),
            }
            self.bws();
            self.token()?;
            let before = self.at;
            self.bws();
            if self.peek()? == b'=' {
                self.at += 1;
                self.bws();
                match self.peek()? {
                    b'"' => self.quoted_string()?,
                    _ => self.token()?,
                }
            } else {
                // That whitespace, if any, leads the next extension.
                self.at = before;
            }
        }
    }

    /// DQUOTE *( qdtext / quoted-pair ) DQUOTE.
    fn quoted_string(&mut self) -> Step<()> {
        self.at += 1;
        loop {
            let b = self.next()?;
            match b {
                b'"' => return Ok(()),
                b'\\' => {
                    let escaped = self.next()?;
                    if !(escaped == b'\t' || escaped == b' ' || is_vchar_or_obs(escaped)) {
                        return Err(Stop::Invalid);
                    }
                }
                b'\t' | b' ' | b'!' | 0x23..=0x5b | 0x5d..=0x7e | 0x80..=0xff => {}
                _ => return Err(Stop::Invalid),
            }
        }
    }

    /// *( field-name ":" OWS field-value OWS CRLF ) CRLF.
    fn trailer_section(&mut self) -> Step<()> {
        self.open_region(Region::Trailers);
        loop {
            if self.peek()? == b'\r' {
                self.close_region();
                return self.crlf();
            }
            self.token()?;
            if self.next()? != b':' {
                return Err(Stop::Invalid);
            }
            // OWS field-value OWS: any run of SP, HTAB, VCHAR and obs-text.
            while self.peek()? != b'\r' {
                if !matches!(self.peek()?, b' ' | b'\t') && !is_vchar_or_obs(self.peek()?) {
                    return Err(Stop::Invalid);
                }
                self.at += 1;
            }
            self.crlf()?;
        }
    }

    /// 1*tchar.
    fn token(&mut self) -> Step<()> {
        let from = self.at;
        while self.peek_opt().is_some_and(is_tchar) {
            self.at += 1;
        }
        if self.at == from {
            self.peek()?;
            return Err(Stop::Invalid);
        }
        Ok(())
    }

    /// *( SP / HTAB ); whether there was any.
    fn bws(&mut self) -> bool {
        let from = self.at;
        while matches!(self.peek_opt(), Some(b' ' | b'\t')) {
            self.at += 1;
        }
        self.at > from
    }

    fn crlf(&mut self) -> Step<()> {
        for want in [b'\r', b'\n'] {
            if self.next()? != want {
                return Err(Stop::Invalid);
            }
        }
        Ok(())
    }

    fn peek_opt(&self) -> Option<u8> {
        self.input.get(self.at).copied()
    }

    fn peek(&self) -> Step<u8> {
        self.peek_opt().ok_or(Stop::Short)
    }

    fn next(&mut self) -> Step<u8> {
        let b = self.peek()?;
        self.at += 1;
        Ok(b)
    }

    fn open_region(&mut self, region: Region) {
        self.region = Some((region, self.at));
    }

    /// Records the length of the region that ends here.
    fn close_region(&mut self) {
        let Some((region, from)) = self.region.take() else {
            return;
        };
        let n = self.at - from;
        let measure = match region {
            Region::Size => &mut self.measures.size_digits,
            Region::Extensions => &mut self.measures.extension_bytes,
            Region::Trailers => &mut self.measures.trailer_bytes,
        };
        *measure = match region {
            Region::Trailers => n,
            _ => (*measure).max(n),
        };
    }
}

/// tchar (RFC 9110 §5.6.2).
pub fn is_tchar(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

/// VCHAR or obs-text.
pub fn is_vchar_or_obs(b: u8) -> bool {
    (0x21..=0x7e).contains(&b) || b >= 0x80
}
