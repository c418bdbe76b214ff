//! Property tests of [`super`] (upstream_response.rs), from fixed seeds: [`framed_twice`], a
//! reader of raw response heads, against httparse configured as Pingora reads a backend's head
//! (spaces before the colon, obsolete line folding), on well-formed and mutated heads; and
//! [`refusal`] against a restatement of its bounds on random heads at and around them.

use super::*;
use crate::testing::rng::XorShift;

/// A field line: the names [`framed_twice`] looks for and their look-alikes, in any case, with
/// spaces before the colon, folded, or with the name inside a value.
fn line(rng: &mut XorShift) -> Vec<u8> {
    const NAMES: [&str; 7] = [
        "Content-Length",
        "content-length",
        "TRANSFER-ENCODING",
        "Transfer-Encoding",
        "X-Content-Length",
        "Content-Lengths",
        "Vary",
    ];
    let name = *rng.pick(&NAMES);
    match rng.below(6) {
        0 => format!("{name} : 5\r\n"),
        1 => format!("X-A: a\r\n {name}: folded\r\n"),
        2 => format!("X-A: {name}: 5\r\n"),
        _ => format!("{name}: 5\r\n"),
    }
    .into_bytes()
}

/// A response head of a few such lines.
fn head(rng: &mut XorShift) -> Vec<u8> {
    let mut out = b"HTTP/1.1 200 OK\r\n".to_vec();
    for _ in 0..rng.below(5) {
        out.extend(line(rng));
    }
    out.extend_from_slice(b"\r\n");
    out
}

/// Bytes that matter to a field line, for mutations.
const INTERESTING: &[u8] = b"\r\n \t:cCtT-";

/// The field names of `raw` as Pingora's parser reads them, if it reads a whole head, and its
/// length.
fn names_as_pingora_reads_them(raw: &[u8]) -> Option<(Vec<Vec<u8>>, usize)> {
    let mut fields = [httparse::EMPTY_HEADER; 64];
    let mut response = httparse::Response::new(&mut fields);
    let mut config = httparse::ParserConfig::default();
    config.allow_spaces_after_header_name_in_responses(true);
    config.allow_obsolete_multiline_headers_in_responses(true);
    let Ok(httparse::Status::Complete(len)) = config.parse_response(&mut response, raw) else {
        return None;
    };
    Some((
        response.headers.iter().map(|h| h.name.as_bytes().to_vec()).collect(),
        len,
    ))
}

/// On any head Pingora's parser reads, [`framed_twice`] says whether it names both
/// Content-Length and Transfer-Encoding exactly as that parser sees the fields; on any bytes, it
/// never panics.
#[test]
fn framed_twice_sees_the_fields_pingora_sees() {
    let mut rng = XorShift(0xF4A3_ED70_0C0D_E5E5);
    let (mut both, mut read) = (0, 0);
    for i in 0..30_000 {
        let mut raw = head(&mut rng);
        if i % 2 == 1 {
            rng.mutate(&mut raw, INTERESTING, 3);
        }
        let _ = framed_twice(&raw);
        let Some((names, len)) = names_as_pingora_reads_them(&raw) else {
            continue;
        };
        let named = |want: &[u8]| names.iter().any(|n| n.eq_ignore_ascii_case(want));
        let want = named(b"content-length") && named(b"transfer-encoding");
        // Pingora hands lb the head alone (`get_headers_raw_bytes`).
        assert_eq!(framed_twice(&raw[..len]), want, "{:?}", String::from_utf8_lossy(&raw));
        both += usize::from(want);
        read += 1;
    }
    assert!(both > 1000 && read - both > 1000, "{both} of {read} framed twice");
}

/// A head of `fields` fields, one of them long enough to bring the head near [`MAX_HEAD`]
/// when `big`.
fn response(rng: &mut XorShift, status: u16, fields: usize, big: bool) -> ResponseHeader {
    let mut resp = ResponseHeader::build(status, None).unwrap_or_else(|e| panic!("{e}"));
    let reason = *rng.pick(&[None, Some("OK"), Some("Something Else")]);
    resp.set_reason_phrase(reason).unwrap_or_else(|e| panic!("{e}"));
    for i in 0..fields {
        resp.append_header(format!("x-{}", i % 7), "v")
            .unwrap_or_else(|e| panic!("{e}"));
    }
    if big {
        let len = MAX_HEAD - 200 + rng.below(200);
        resp.append_header("x-big", "b".repeat(len))
            .unwrap_or_else(|e| panic!("{e}"));
    }
    resp
}

/// The head as lb writes it, byte for byte: status line, field lines, blank line.
fn written(resp: &ResponseHeader) -> Vec<u8> {
    let reason = resp.get_reason_phrase().unwrap_or_default();
    let mut out = format!("HTTP/1.1 {} {reason}\r\n", resp.status.as_str()).into_bytes();
    for (name, value) in &resp.headers {
        out.extend([name.as_str().as_bytes(), b": ", value.as_bytes(), b"\r\n"].concat());
    }
    out.extend_from_slice(b"\r\n");
    out
}

/// [`refusal`] refuses exactly a status outside 100–599 (RFC 9110 §15), the informational
/// response past [`MAX_INFORMATIONAL`] (a `101` is final), more than [`MAX_FIELDS`] fields and
/// a head of more than [`MAX_HEAD`] bytes as written: lb's bounds, the RFCs set none.
#[test]
fn refusal_holds_the_bounds_and_nothing_else() {
    let mut rng = XorShift(0x2EF0_5A15_0B0D_1E55);
    let mut refused = 0;
    for _ in 0..5_000 {
        let status = *rng.pick(&[100, 101, 102, 103, 200, 404, 599, 600, 999]);
        let fields = if rng.below(2) == 0 {
            MAX_FIELDS - 3 + rng.below(6)
        } else {
            rng.below(10)
        };
        let big = rng.below(2) == 0;
        let resp = response(&mut rng, status, fields, big);
        let informational = *rng.pick(&[0, MAX_INFORMATIONAL - 1, MAX_INFORMATIONAL]);
        let interim = (100..200).contains(&status) && status != 101;
        let want = !(100..=599).contains(&status)
            || (interim && informational >= MAX_INFORMATIONAL)
            || resp.headers.len() > MAX_FIELDS
            || written(&resp).len() > MAX_HEAD;
        let got = refusal(&resp, informational);
        assert_eq!(got.is_some(), want, "{status}, {} fields, {got:?}", resp.headers.len());
        refused += usize::from(want);
    }
    assert!(refused > 1000 && refused < 4000, "{refused} of 5000 refused");
}
