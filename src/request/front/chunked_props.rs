//! Property tests of [`super`] (chunked.rs) against the reference decoder of
//! chunked_reference.rs: random valid bodies, mutated ones, and arbitrary splits, from fixed
//! seeds (a failure replays; 50,000 cases in all, about 1.5 s in a release build).
//!
//! lb's policy, as the properties state it: it decides exactly as RFC 9112 §7.1 does, ending
//! at the same byte with the same declared size, except that it bounds what the RFC leaves
//! unbounded (a chunk size of at most 16 hex digits, leading zeros included; 4096 bytes of
//! extensions per chunk; 8192 bytes of trailer fields) and refuses a body past them. Stricter
//! than the RFC there, on purpose; laxer nowhere.

use super::reference::{decode, Verdict};
use super::*;
use crate::testing::rng::XorShift;

/// A chunked body built piece by piece, so that a mutation can aim at one piece.
#[derive(Clone)]
struct Body {
    /// Each chunk: its size line's digits, its extensions, its data.
    chunks: Vec<(Vec<u8>, Vec<u8>, Vec<u8>)>,
    /// The last chunk's zeros and extensions.
    last: (Vec<u8>, Vec<u8>),
    /// Trailer field lines, CRLF included.
    trailers: Vec<Vec<u8>>,
}

impl Body {
    fn bytes(&self) -> Vec<u8> {
        let mut out = Vec::new();
        for (size, ext, data) in &self.chunks {
            out.extend_from_slice(&[size, ext, &b"\r\n"[..], data, b"\r\n"].concat());
        }
        out.extend_from_slice(&[&self.last.0, &self.last.1, &b"\r\n"[..]].concat());
        self.trailers.iter().for_each(|line| out.extend_from_slice(line));
        out.extend_from_slice(b"\r\n");
        out
    }

    fn declared(&self) -> u64 {
        self.chunks.iter().map(|(_, _, data)| data.len() as u64).sum()
    }
}

const TCHARS: &[u8] = b"!#$%&'*+-.^_`|~09azAZ";
const QDTEXT: &[u8] = b"\t !#[]~azAZ09;=,\x80\xff";
const DATA: &[u8] = b"\r\n0;=\"\\: \t\x00\x7f\x80\xffaZ";

fn token(rng: &mut XorShift, max: usize) -> Vec<u8> {
    (0..=rng.below(max)).map(|_| *rng.pick(TCHARS)).collect()
}

fn ws(rng: &mut XorShift) -> Vec<u8> {
    (0..rng.below(3)).map(|_| *rng.pick(b" \t")).collect()
}

/// Hex digits of `n` in random case, with a few leading zeros (16 digits at most).
fn size_digits(rng: &mut XorShift, n: u64) -> Vec<u8> {
    let hex = if rng.below(2) == 0 {
        format!("{n:x}")
    } else {
        format!("{n:X}")
    };
    let zeros = rng.below(3).min(16 - hex.len());
    [vec![b'0'; zeros], hex.into_bytes()].concat()
}

/// Zero to three `BWS ";" BWS name [ BWS "=" BWS value ]`.
fn extensions(rng: &mut XorShift) -> Vec<u8> {
    let mut out = Vec::new();
    for _ in 0..rng.below(4) {
        out.extend([ws(rng), b";".to_vec(), ws(rng), token(rng, 8)].concat());
        match rng.below(3) {
            0 => {}
            1 => out.extend([ws(rng), b"=".to_vec(), ws(rng), token(rng, 8)].concat()),
            _ => {
                out.extend([ws(rng), b"=".to_vec(), ws(rng), b"\"".to_vec()].concat());
                for _ in 0..rng.below(8) {
                    match rng.below(4) {
                        0 => out.extend([b'\\', *rng.pick(b"\"\\ \ta\x80")]),
                        _ => out.push(*rng.pick(QDTEXT)),
                    }
                }
                out.push(b'"');
            }
        }
    }
    out
}

fn trailer_line(rng: &mut XorShift) -> Vec<u8> {
    let value: Vec<u8> = (0..rng.below(12))
        .map(|_| *rng.pick(b" \tazAZ09:;\"\x80\xff"))
        .collect();
    [token(rng, 10), b":".to_vec(), value, b"\r\n".to_vec()].concat()
}

fn data(rng: &mut XorShift) -> Vec<u8> {
    let len = match rng.below(8) {
        0 => 1,
        1 => 200 + rng.below(3000),
        _ => 1 + rng.below(40),
    };
    (0..len).map(|_| *rng.pick(DATA)).collect()
}

/// A valid body within lb's bounds: 0 to 5 chunks of 1 to 3200 bytes, extensions, trailers.
fn valid_body(rng: &mut XorShift) -> Body {
    let chunks = (0..rng.below(6))
        .map(|_| {
            let data = data(rng);
            (size_digits(rng, data.len() as u64), extensions(rng), data)
        })
        .collect();
    let last = (vec![b'0'; 1 + rng.below(3)], extensions(rng));
    let trailers = (0..rng.below(4)).map(|_| trailer_line(rng)).collect();
    Body { chunks, last, trailers }
}

/// What follows a body on the connection.
fn tail(rng: &mut XorShift) -> Vec<u8> {
    match rng.below(3) {
        0 => Vec::new(),
        1 => b"GET / HTTP/1.1\r\n".to_vec(),
        _ => (0..rng.below(8)).map(|_| *rng.pick(DATA)).collect(),
    }
}

/// lb on `input` in one piece: (bytes used, done) or the error, and the size declared.
fn lb(input: &[u8]) -> (Result<(usize, bool), ChunkError>, u64) {
    let mut parser = Chunked::new();
    (parser.advance(input), parser.declared())
}

/// lb on `input` cut at `cuts` (ascending): the same shape as [`lb`].
fn lb_split(input: &[u8], cuts: &[usize]) -> (Result<(usize, bool), ChunkError>, u64) {
    let mut parser = Chunked::new();
    let (mut used, mut from) = (0, 0);
    for &to in cuts.iter().chain([&input.len()]) {
        match parser.advance(&input[from..to]) {
            Err(e) => return (Err(e), parser.declared()),
            Ok((n, true)) => return (Ok((used + n, true)), parser.declared()),
            Ok((n, false)) => used += n,
        }
        from = to;
    }
    (Ok((used, false)), parser.declared())
}

/// Whether lb's answer on `input` is the one the reference's verdict calls for.
fn agrees(input: &[u8]) -> Result<(), String> {
    let (verdict, measures) = decode(input);
    let (result, declared) = lb(input);
    let ok = match (verdict, result) {
        // Stricter than the RFC: past a bound lb refuses what the RFC would still take.
        (Verdict::Complete { .. } | Verdict::Short { .. }, Err(e)) if !measures.within_lb_limits() => {
            matches!(
                e,
                ChunkError::SizeTooLong | ChunkError::ExtensionTooLong | ChunkError::TrailersTooLong
            )
        }
        // Laxer nowhere: what the RFC refuses, lb refuses (it may say so at another byte, with
        // another reason, or at a bound first).
        (Verdict::Invalid, result) => result.is_err(),
        (_, _) if !measures.within_lb_limits() => false,
        (Verdict::Complete { len, declared: want }, Ok((used, true))) => used == len && declared == want,
        (Verdict::Short { declared: want }, Ok((used, false))) => used == input.len() && declared == want,
        _ => false,
    };
    if ok {
        return Ok(());
    }
    Err(format!(
        "{:?}: reference {verdict:?} {measures:?}, lb {result:?} declaring {declared}",
        String::from_utf8_lossy(input)
    ))
}

/// Ascending cut points: a few random ones, or every byte.
fn cuts(rng: &mut XorShift, len: usize) -> Vec<usize> {
    if rng.below(16) == 0 && len < 512 {
        return (1..len).collect();
    }
    let mut cuts: Vec<usize> = (0..rng.below(6)).map(|_| rng.below(len + 1)).collect();
    cuts.sort_unstable();
    cuts
}

/// (a) Random valid bodies, followed by other bytes: the reference and lb take the whole body,
/// end at its last byte and declare the sum of its chunk sizes; every split gives the same.
#[test]
fn valid_bodies_end_where_the_reference_ends() {
    let mut rng = XorShift(0xC0DE_C4A1_0B0D_1E5A);
    for _ in 0..20_000 {
        let body = valid_body(&mut rng);
        let bytes = body.bytes();
        let input = [bytes.clone(), tail(&mut rng)].concat();
        let want = Verdict::Complete {
            len: bytes.len(),
            declared: body.declared(),
        };
        let (verdict, measures) = decode(&input);
        assert_eq!(verdict, want, "reference on {:?}", String::from_utf8_lossy(&input));
        assert!(measures.within_lb_limits());
        assert_eq!(agrees(&input), Ok(()));
        let cut = cuts(&mut rng, input.len());
        assert_eq!(lb_split(&input, &cut), lb(&input), "{input:?} cut at {cut:?}");
    }
}

/// Stretches one piece of `body` past or up to one of lb's bounds.
fn stretch(rng: &mut XorShift, body: &mut Body, over: bool) {
    let extra = usize::from(over);
    match rng.below(3) {
        0 => {
            let zeros = usize::from(MAX_SIZE_DIGITS) + extra - 1;
            body.last.0 = vec![b'0'; zeros + 1];
        }
        1 => {
            // `;` then a name: the extensions are exactly the bound's length, or one more.
            let name = vec![b'x'; usize::from(MAX_EXTENSION_BYTES) - 1 + extra];
            body.last.1 = [b";".to_vec(), name].concat();
        }
        _ => {
            let other: usize = body.trailers.iter().map(Vec::len).sum();
            let room = usize::from(MAX_TRAILER_BYTES).saturating_sub(other + 4) + extra;
            body.trailers
                .push([b"X:".to_vec(), vec![b'v'; room], b"\r\n".to_vec()].concat());
        }
    }
}

/// lb's bounds are the only place where it is stricter than the RFC: a body stretched to a
/// bound passes, one byte past it is refused with the bound's error.
#[test]
fn bodies_at_a_bound_pass_and_one_byte_past_it_are_refused() {
    let mut rng = XorShift(0x0B0D_BEEF_1234_5678);
    for i in 0..600 {
        let mut body = valid_body(&mut rng);
        body.trailers.truncate(1);
        let over = i % 2 == 1;
        stretch(&mut rng, &mut body, over);
        let input = body.bytes();
        let (verdict, measures) = decode(&input);
        assert!(matches!(verdict, Verdict::Complete { .. }), "{verdict:?}");
        assert_eq!(measures.within_lb_limits(), !over, "{measures:?}");
        match lb(&input).0 {
            Ok((used, true)) if !over => assert_eq!(used, input.len()),
            Err(ChunkError::SizeTooLong | ChunkError::ExtensionTooLong | ChunkError::TrailersTooLong) if over => {}
            other => panic!("{measures:?}: lb {other:?}"),
        }
    }
}

/// Breaks one piece of `body` in a way parsers get wrong: a size too big for a u64 or for its
/// data, a very long extension or trailer section.
fn break_piece(rng: &mut XorShift, body: &mut Body) {
    let huge: Vec<u8> = match rng.below(3) {
        0 => b"10000000000000000".to_vec(),
        1 => b"FFFFFFFFFFFFFFFF".to_vec(),
        _ => (0..1 + rng.below(40))
            .map(|_| *rng.pick(b"0123456789abcdefABCDEF"))
            .collect(),
    };
    let long = 4000 + rng.below(200);
    match (rng.below(4), body.chunks.first_mut()) {
        (0, Some(chunk)) => chunk.0 = huge,
        (0, None) => body.last.0 = huge,
        (1, _) => body.last.1 = [&b";a=\""[..], &vec![b'q'; long], b"\""].concat(),
        (2, _) => body.last.1 = [b";".to_vec(), vec![b'n'; long]].concat(),
        _ => body
            .trailers
            .push([b"T:".to_vec(), vec![b'v'; 2 * long], b"\r\n".to_vec()].concat()),
    }
}

/// Bytes that matter to the parser, for mutations.
const INTERESTING: &[u8] = b"\r\n \t;=\"\\:0fF9gx\x00\x7f\x80\xff";

/// (b) Mutated bodies: lb never panics, refuses whatever the reference refuses, and otherwise
/// decides as the reference does (but past its bounds); (c) every split of the input gives the
/// answer of the whole input, declared size included.
#[test]
fn mutated_bodies_are_refused_when_the_reference_refuses_them_in_any_split() {
    let mut rng = XorShift(0x5EED_0FC4_B0D1_E5ED);
    let mut seen = [0usize; 4];
    for _ in 0..30_000 {
        let mut body = valid_body(&mut rng);
        if rng.below(4) == 0 {
            break_piece(&mut rng, &mut body);
        }
        let mut input = [body.bytes(), tail(&mut rng)].concat();
        rng.mutate(&mut input, INTERESTING, 3);
        if let Err(why) = agrees(&input) {
            panic!("{why}");
        }
        let whole = lb(&input);
        let cut = cuts(&mut rng, input.len());
        assert_eq!(lb_split(&input, &cut), whole, "{input:?} cut at {cut:?}");
        seen[match whole.0 {
            Ok((_, true)) => 0,
            Ok((_, false)) => 1,
            Err(ChunkError::SizeTooLong | ChunkError::ExtensionTooLong | ChunkError::TrailersTooLong) => 2,
            Err(_) => 3,
        }] += 1;
    }
    // Each outcome is well represented: the generator reaches every branch of the property.
    assert!(
        seen.iter().all(|&n| n > 1000),
        "complete, waiting, past a bound, refused: {seen:?}"
    );
}

/// The parser's state is a few integers: it holds no buffer, so no input makes it allocate.
#[test]
fn the_state_is_a_few_words() {
    assert!(
        std::mem::size_of::<Chunked>() <= 48,
        "{}",
        std::mem::size_of::<Chunked>()
    );
}
