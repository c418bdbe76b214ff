//! Tests of [`super`] (chunked.rs), in a file of their own so the module stays readable.

use super::*;

/// Feeds `input` whole; returns (bytes used, done) or the error.
fn feed(input: &[u8]) -> Result<(usize, bool), ChunkError> {
    Chunked::new().advance(input)
}

/// Feeds `input` in pieces cut at `cuts`; returns the total used and whether done.
fn feed_split(input: &[u8], cuts: &[usize]) -> Result<(usize, bool), ChunkError> {
    let mut parser = Chunked::new();
    let mut used = 0;
    let mut from = 0;
    for &to in cuts.iter().chain(std::iter::once(&input.len())) {
        let (n, done) = parser.advance(&input[from..to])?;
        used += n;
        assert_eq!(done, parser.is_done());
        if done {
            return Ok((used, true));
        }
        assert_eq!(n, to - from, "all bytes are used until the end");
        from = to;
    }
    Ok((used, false))
}

const VALID: &[&str] = &[
    "0\r\n\r\n",
    "000\r\n\r\n",
    "5\r\nhello\r\n0\r\n\r\n",
    "5\r\nhe\r\no\r\n0\r\n\r\n",
    "A\r\n0123456789\r\n1\r\n!\r\n0\r\n\r\n",
    "a\r\n0123456789\r\n0\r\n\r\n",
    "0000000000000003\r\nabc\r\n0\r\n\r\n",
    "3;a\r\nabc\r\n0\r\n\r\n",
    "3;a=b;c=\"d e\\\"f\"\r\nabc\r\n0;last\r\n\r\n",
    "3 ; a = b ; c\r\nabc\r\n0\r\n\r\n",
    "3\t;a=\"\"\r\nabc\r\n0\r\n\r\n",
    "3;a=\"x\" ;b\r\nabc\r\n0\r\n\r\n",
    "0\r\nExpires: never\r\nX-Sum:abc\r\n\r\n",
    "0\r\nX: \t\x7e\r\nY:\r\n\r\n",
];

#[test]
fn valid_bodies_in_one_piece() {
    for body in VALID {
        assert_eq!(feed(body.as_bytes()), Ok((body.len(), true)), "{body:?}");
    }
}

#[test]
fn valid_bodies_at_every_split() {
    for body in VALID {
        let bytes = body.as_bytes();
        for a in 0..=bytes.len() {
            assert_eq!(feed_split(bytes, &[a]), Ok((bytes.len(), true)), "{body:?} cut at {a}");
            for b in a..=bytes.len() {
                assert_eq!(
                    feed_split(bytes, &[a, b]),
                    Ok((bytes.len(), true)),
                    "{body:?} cut at {a}, {b}"
                );
            }
        }
    }
}

#[test]
fn one_byte_at_a_time() {
    for body in VALID {
        let bytes = body.as_bytes();
        let cuts: Vec<usize> = (1..bytes.len()).collect();
        assert_eq!(feed_split(bytes, &cuts), Ok((bytes.len(), true)), "{body:?}");
    }
}

#[test]
fn the_body_ends_inside_the_input() {
    let input = b"3\r\nabc\r\n0\r\n\r\nGET / HTTP/1.1\r\n";
    assert_eq!(feed(input), Ok((13, true)));
    let mut parser = Chunked::new();
    assert_eq!(parser.advance(&input[..10]), Ok((10, false)));
    assert_eq!(parser.advance(&input[10..]), Ok((3, true)));
    assert_eq!(parser.advance(b"more"), Ok((0, true)));
    assert!(parser.is_done());
}

#[test]
fn incomplete_bodies_use_everything() {
    for body in VALID {
        for cut in 0..body.len() {
            assert_eq!(feed(&body.as_bytes()[..cut]), Ok((cut, false)), "{body:?} cut at {cut}");
        }
    }
}

#[test]
fn large_sizes() {
    let mut parser = Chunked::new();
    assert_eq!(parser.advance(b"FFFFFFFFFFFFFFFF\r\n"), Ok((18, false)));
    assert_eq!(parser.advance(&[0u8; 1000]), Ok((1000, false)));
    assert_eq!(parser.state, State::Data(u64::MAX - 1000));
}

const INVALID: &[(&str, ChunkError)] = &[
    ("\r\n", ChunkError::BadSize),
    ("g\r\n", ChunkError::BadSize),
    (" 5\r\n", ChunkError::BadSize),
    ("-5\r\n", ChunkError::BadSize),
    ("+5\r\n", ChunkError::BadSize),
    ("0x5\r\n", ChunkError::BadSize),
    ("5g\r\n", ChunkError::BadSize),
    ("5 \r\n", ChunkError::BadExtension),
    ("00000000000000000\r\n\r\n", ChunkError::SizeTooLong),
    ("10000000000000000\r\n", ChunkError::SizeTooLong),
    ("5\n", ChunkError::BareCrOrLf),
    ("5\rx", ChunkError::BareCrOrLf),
    ("5\r\r", ChunkError::BareCrOrLf),
    ("5;\r\n", ChunkError::BadExtension),
    ("5;=b\r\n", ChunkError::BadExtension),
    ("5;a=\r\n", ChunkError::BadExtension),
    ("5;a b\r\n", ChunkError::BadExtension),
    ("5;a=b c\r\n", ChunkError::BadExtension),
    ("5;a=b \r\n", ChunkError::BadExtension),
    ("5;a =\r\n", ChunkError::BadExtension),
    ("5;a=\"b\r\n", ChunkError::BadExtension),
    ("5;a=\"b\"c\r\n", ChunkError::BadExtension),
    ("5;a=\"\\\x01\"\r\n", ChunkError::BadExtension),
    ("5;a=\"\x00\"\r\n", ChunkError::BadExtension),
    ("5;a=b\n", ChunkError::BareCrOrLf),
    ("5;a(\r\n", ChunkError::BadExtension),
    ("5\r\nhelloX\r\n", ChunkError::BadDataEnd),
    ("5\r\nhello\n", ChunkError::BareCrOrLf),
    ("5\r\nhello\rX", ChunkError::BareCrOrLf),
    ("5\r\nhello\r\n\r\n", ChunkError::BadSize),
    ("0\r\n\n", ChunkError::BareCrOrLf),
    ("0\r\n\rX", ChunkError::BareCrOrLf),
    ("0\r\nX: 1\n", ChunkError::BareCrOrLf),
    ("0\r\nX: 1\rX", ChunkError::BareCrOrLf),
    ("0\r\n X: 1\r\n\r\n", ChunkError::BadTrailer),
    ("0\r\nX : 1\r\n\r\n", ChunkError::BadTrailer),
    ("0\r\n: 1\r\n\r\n", ChunkError::BadTrailer),
    ("0\r\nX\r\n\r\n", ChunkError::BadTrailer),
    ("0\r\nX: a\x00b\r\n\r\n", ChunkError::BadTrailer),
    ("0\r\nX: a\x7fb\r\n\r\n", ChunkError::BadTrailer),
    ("0\r\nX: 1\r\n\tfolded\r\n\r\n", ChunkError::BadTrailer),
];

#[test]
fn invalid_bodies() {
    for (body, error) in INVALID {
        assert_eq!(feed(body.as_bytes()), Err(*error), "{body:?}");
        let cuts: Vec<usize> = (1..body.len()).collect();
        assert_eq!(feed_split(body.as_bytes(), &cuts), Err(*error), "{body:?} byte by byte");
    }
}

#[test]
fn errors_are_sticky() {
    let mut parser = Chunked::new();
    assert_eq!(parser.advance(b"x"), Err(ChunkError::BadSize));
    assert_eq!(parser.advance(b"0\r\n\r\n"), Err(ChunkError::BadSize));
    assert_eq!(parser.advance(b""), Err(ChunkError::BadSize));
    assert!(!parser.is_done());
}

#[test]
fn extension_limit() {
    let ext = |n: usize| format!("1;{}\r\nx\r\n0\r\n\r\n", "a".repeat(n));
    let max = usize::from(MAX_EXTENSION_BYTES);
    assert_eq!(feed(ext(max - 1).as_bytes()).map(|r| r.1), Ok(true));
    assert_eq!(feed(ext(max).as_bytes()), Err(ChunkError::ExtensionTooLong));
    // The limit is per chunk.
    let two = format!("1;{a}\r\nx\r\n1;{a}\r\ny\r\n0;{a}\r\n\r\n", a = "a".repeat(max - 1));
    assert_eq!(feed(two.as_bytes()).map(|r| r.1), Ok(true));
}

#[test]
fn trailer_limit() {
    let max = usize::from(MAX_TRAILER_BYTES);
    let trailers = |n: usize| format!("0\r\nX: {}\r\n\r\n", "v".repeat(n - 5));
    assert_eq!(feed(trailers(max).as_bytes()).map(|r| r.1), Ok(true));
    assert_eq!(feed(trailers(max + 1).as_bytes()), Err(ChunkError::TrailersTooLong));
}

#[test]
fn error_reasons() {
    assert_eq!(ChunkError::BareCrOrLf.to_string(), "bare CR or LF in chunked framing");
    for (_, error) in INVALID {
        assert!(!error.reason().is_empty());
    }
}

use crate::testing::rng::XorShift;

#[test]
fn mutations_never_panic_and_splits_agree() {
    const BYTES: &[u8] = b"\r\n \t;=\"\\:0fF9gx\x00\x7f\x80";
    let mut rng = XorShift(0xDEAD_BEEF_CAFE_F00D);
    for _ in 0..100_000 {
        let mut input = VALID[rng.below(VALID.len())].as_bytes().to_vec();
        for _ in 0..=rng.below(2) {
            let at = rng.below(input.len());
            let byte = BYTES[rng.below(BYTES.len())];
            match rng.below(3) {
                0 => input[at] = byte,
                1 => input.insert(at, byte),
                _ => {
                    input.remove(at);
                }
            }
        }
        let whole = feed(&input);
        if let Ok((used, done)) = whole {
            assert!(used <= input.len() && (done || used == input.len()));
        }
        let cut = rng.below(input.len() + 1);
        assert_eq!(feed_split(&input, &[cut]), whole, "{input:?} cut at {cut}");
    }
}
