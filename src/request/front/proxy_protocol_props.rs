//! Property tests of [`super`] (proxy_protocol.rs) against the reference of
//! proxy_protocol_reference.rs: the spec's example lines, random headers as the spec's sender
//! writes them (v1 TCP4, TCP6 in every RFC 4291 text form, UNKNOWN; v2 PROXY and LOCAL over
//! every listed family, with TLVs), whole and in pieces, and mutated ones, from fixed seeds.
//!
//! lb's policy, as the properties state it: it takes what the spec takes, with the same length
//! and source; refuses what the spec refuses; reads nothing past the header; and decides within
//! a bound: 107 bytes for v1, 16 + address block + 4096 bytes of TLVs for v2. Stricter than the
//! spec in one place, on purpose: a v2 header announcing more than 4096 TLV bytes is refused
//! (the spec allows 65535 bytes in all). And one difference of timing: on a v1 line not ended
//! yet, lb refuses a byte no address or port may hold, but judges whole fields only once the
//! line ends (as the spec says a receiver must wait for the CRLF), where the reference refuses
//! a bad field as soon as a space ends it; lb waits, then refuses.

use super::reference::{decode, v2_address_len, Verdict, SIGNATURE, SPEC_V1_EXAMPLES};
use super::*;
use crate::testing::rng::XorShift;
use std::collections::VecDeque;
use std::future::{ready, Future};

/// A header as a sender writes it, and the client it stands for.
struct Sent {
    bytes: Vec<u8>,
    source: Option<SocketAddr>,
}

fn port(rng: &mut XorShift) -> u16 {
    let any = rng.next() as u16;
    *rng.pick(&[0, 1, 80, 65535, any])
}

fn ipv4(rng: &mut XorShift) -> Ipv4Addr {
    let mut octet = || {
        let any = rng.next() as u8;
        *rng.pick(&[0, 1, 9, 10, 99, 100, 255, any])
    };
    Ipv4Addr::new(octet(), octet(), octet(), octet())
}

fn ipv6(rng: &mut XorShift) -> Ipv6Addr {
    let mut groups = [0u16; 8];
    for group in &mut groups {
        let any = rng.next() as u16;
        *group = *rng.pick(&[0, 0, 0, 1, 0xffff, any]);
    }
    Ipv6Addr::from(groups)
}

/// `address` in one of RFC 4291 §2.2's text forms: groups with or without heading zeros, upper
/// or lower case, a run of zero groups compressed to `::` or not, the last 32 bits dotted.
fn ipv6_text(rng: &mut XorShift, address: Ipv6Addr) -> String {
    let groups = address.segments();
    let dotted = rng.below(4) == 0;
    let hex_groups = if dotted { 6 } else { 8 };
    let padded = rng.below(2) == 0;
    let upper = rng.below(2) == 0;
    let text = |g: &u16| match (padded, upper) {
        (true, true) => format!("{g:04X}"),
        (true, false) => format!("{g:04x}"),
        (false, true) => format!("{g:X}"),
        (false, false) => format!("{g:x}"),
    };
    // A run of zero groups to compress, if any and if chosen.
    let zero_runs: Vec<(usize, usize)> = (0..hex_groups)
        .flat_map(|from| (from + 1..=hex_groups).map(move |to| (from, to)))
        .filter(|&(from, to)| groups[from..to].iter().all(|&g| g == 0))
        .collect();
    let run = (!zero_runs.is_empty() && rng.below(3) != 0).then(|| *rng.pick(&zero_runs));
    let [.., a, b, c, d] = address.octets();
    let last = dotted.then(|| format!("{a}.{b}.{c}.{d}"));
    let texts = |range: std::ops::Range<usize>, last: Option<String>| {
        let texts: Vec<String> = groups[range].iter().map(text).chain(last).collect();
        texts.join(":")
    };
    match run {
        Some((from, to)) => format!("{}::{}", texts(0..from, None), texts(to..hex_groups, last)),
        None => texts(0..hex_groups, last),
    }
}

/// A v1 line: TCP4, TCP6 or UNKNOWN (short, or with anything up to the 107 bytes).
fn v1_header(rng: &mut XorShift) -> Sent {
    let (sport, dport) = (port(rng), port(rng));
    let (line, source) = match rng.below(5) {
        0 | 1 => {
            let (s, d) = (ipv4(rng), ipv4(rng));
            (
                format!("PROXY TCP4 {s} {d} {sport} {dport}"),
                Some(SocketAddr::from((s, sport))),
            )
        }
        2 | 3 => {
            let (s, d) = (ipv6(rng), ipv6(rng));
            // Padded groups with a dotted end run past the spec's 39 bytes an address: again.
            let text = std::iter::repeat_with(|| {
                format!("PROXY TCP6 {} {} {sport} {dport}", ipv6_text(rng, s), ipv6_text(rng, d))
            })
            .find(|line| line.len() + 2 <= V1_MAX_LEN);
            (text.unwrap_or_default(), Some(SocketAddr::from((s, sport))))
        }
        _ => {
            let junk: String = (0..rng.below(92))
                .map(|_| *rng.pick(&['a', ' ', ':', '\t', '\u{1}']))
                .collect();
            let line = if rng.below(2) == 0 {
                "PROXY UNKNOWN".to_string()
            } else {
                format!("PROXY UNKNOWN {junk}")
            };
            (line, None)
        }
    };
    Sent {
        bytes: format!("{line}\r\n").into_bytes(),
        source,
    }
}

/// One TLV of a registered type (§2.2.1-2.2.8), or a custom one.
fn tlv(rng: &mut XorShift) -> Vec<u8> {
    let (kind, value): (u8, Vec<u8>) = match rng.below(8) {
        0 => (0x01, b"h2".to_vec()),
        1 => (0x02, b"www.example.com".to_vec()),
        2 => (0x03, rng.next().to_be_bytes()[..4].to_vec()),
        3 => (0x04, vec![0; rng.below(9)]),
        4 => (0x05, (0..rng.below(129)).map(|_| rng.next() as u8).collect()),
        5 => (
            0x20,
            [&[0x01, 0, 0, 0, 0, 0x21, 0, 7][..], b"TLSv1.3", &[0x22, 0, 1, b'a']].concat(),
        ),
        6 => (0x30, b"blue".to_vec()),
        _ => (0xE0 + rng.below(16) as u8, vec![0xAB; rng.below(3000)]),
    };
    let len = u16::try_from(value.len()).unwrap_or(0).to_be_bytes();
    [vec![kind], len.to_vec(), value].concat()
}

/// A v2 header: PROXY or LOCAL, any listed family, addresses, TLVs within lb's 4096 bytes.
fn v2_header(rng: &mut XorShift) -> Sent {
    let local = rng.below(4) == 0;
    let family = *rng.pick(&[0x00, 0x11, 0x12, 0x21, 0x22, 0x31, 0x32]);
    let (sport, dport) = (port(rng), port(rng));
    let (block, source) = match family {
        0x11 | 0x12 => {
            let (s, d) = (ipv4(rng), ipv4(rng));
            let block = [&s.octets()[..], &d.octets(), &sport.to_be_bytes(), &dport.to_be_bytes()].concat();
            (block, SocketAddr::from((s, sport)))
        }
        0x21 | 0x22 => {
            let (s, d) = (ipv6(rng), ipv6(rng));
            let block = [&s.octets()[..], &d.octets(), &sport.to_be_bytes(), &dport.to_be_bytes()].concat();
            (block, SocketAddr::from((s, sport)))
        }
        0x31 | 0x32 => (
            [b"/run/a.sock".to_vec(), vec![0; 97], b"/b".to_vec(), vec![0; 106]].concat(),
            ([0; 4], 0).into(),
        ),
        _ => (Vec::new(), ([0; 4], 0).into()),
    };
    // LOCAL usually carries no block ("it should not present any address"), sometimes one.
    let mut body = if local && rng.below(2) == 0 { Vec::new() } else { block };
    let tlv_start = body.len();
    for _ in 0..rng.below(5) {
        let tlv = tlv(rng);
        if body.len() - tlv_start + tlv.len() <= V2_MAX_TLV_BYTES {
            body.extend(tlv);
        }
    }
    let ver_cmd = if local { 0x20 } else { 0x21 };
    let len = u16::try_from(body.len()).unwrap_or(u16::MAX).to_be_bytes();
    let tcp = matches!(family, 0x11 | 0x21) && !local;
    Sent {
        bytes: [&SIGNATURE[..], &[ver_cmd, family], &len, &body].concat(),
        source: tcp.then_some(source),
    }
}

/// The client's first bytes after the header.
fn tail(rng: &mut XorShift) -> Vec<u8> {
    match rng.below(3) {
        0 => Vec::new(),
        1 => b"GET / HTTP/1.1\r\nHost: a\r\n\r\n".to_vec(),
        _ => b"\x16\x03\x01\x02\x00\x01".to_vec(),
    }
}

/// A connection's first bytes arriving in the pieces given.
struct Pieces {
    held: Vec<u8>,
    rest: VecDeque<Vec<u8>>,
}

impl Incoming for Pieces {
    fn held(&self) -> &[u8] {
        &self.held
    }

    fn fill(&mut self) -> impl Future<Output = io::Result<usize>> + Send {
        let piece = self.rest.pop_front().unwrap_or_default();
        self.held.extend_from_slice(&piece);
        ready(Ok(piece.len()))
    }
}

/// [`read`] on `input` cut at random places into non-empty pieces.
fn read_in_pieces(rng: &mut XorShift, input: &[u8]) -> Result<Proxied, ReadError> {
    let mut cuts: Vec<usize> = (0..rng.below(8)).map(|_| rng.below(input.len() + 1)).collect();
    cuts.extend([0, input.len()]);
    cuts.sort_unstable();
    cuts.dedup();
    let rest = cuts.windows(2).map(|w| input[w[0]..w[1]].to_vec()).collect();
    let mut pieces = Pieces { held: Vec::new(), rest };
    futures::executor::block_on(read(&mut pieces))
}

/// Whether [`read`] in pieces ended as [`parse`] on the whole input says it must.
fn same_in_pieces(whole: Result<Proxied, PpError>, pieces: Result<Proxied, ReadError>) -> bool {
    match (whole, pieces) {
        (Ok(a), Ok(b)) => a == b,
        (Err(PpError::Invalid(_)), Err(ReadError::Invalid(_))) => true,
        (Err(PpError::Incomplete), Err(ReadError::Closed)) => true,
        _ => false,
    }
}

#[test]
fn the_spec_examples() {
    for (line, len) in SPEC_V1_EXAMPLES {
        let input = [line.as_bytes(), b"GET / HTTP/1.1\r\n"].concat();
        let want = decode(&input);
        assert!(
            matches!(want, Verdict::Header { len: l, .. } if l == len),
            "{line:?}: {want:?}"
        );
        let got = parse(&input).map(|p| Verdict::Header {
            len: p.len,
            source: p.source,
        });
        assert_eq!(got, Ok(want), "{line:?}");
    }
    assert_eq!(
        decode(SPEC_V1_EXAMPLES[0].0.as_bytes()),
        Verdict::Header {
            len: 47,
            source: "192.168.0.1:56324".parse().ok()
        }
    );
}

/// Random valid headers, followed by the client's bytes: the reference and lb take them with
/// the sender's length and source, also when they arrive in pieces; every cut is a start.
#[test]
fn valid_headers_are_taken_whole_and_in_pieces() {
    let mut rng = XorShift(0x9A0C_0DE5_0F5E_ED00);
    for i in 0..20_000 {
        let sent = if i % 2 == 0 {
            v1_header(&mut rng)
        } else {
            v2_header(&mut rng)
        };
        let want = Proxied {
            len: sent.bytes.len(),
            source: sent.source,
        };
        let input = [sent.bytes.clone(), tail(&mut rng)].concat();
        let text = String::from_utf8_lossy(&input);
        assert_eq!(
            decode(&input),
            Verdict::Header {
                len: want.len,
                source: want.source
            },
            "reference on {text:?}"
        );
        assert_eq!(parse(&input), Ok(want), "{text:?}");
        assert!(same_in_pieces(Ok(want), read_in_pieces(&mut rng, &input)), "{text:?}");
        for _ in 0..4 {
            let cut = rng.below(want.len);
            assert_eq!(
                decode(&input[..cut]),
                Verdict::Short,
                "reference on {text:?} cut at {cut}"
            );
            assert_eq!(parse(&input[..cut]), Err(PpError::Incomplete), "{text:?} cut at {cut}");
        }
    }
}

/// Whether `input` is a v2 header announcing more TLV bytes than lb takes.
fn over_tlv_bound(input: &[u8]) -> bool {
    let (Some(&family), Some(&[high, low])) = (input.get(13), input.get(14..16).and_then(|b| b.first_chunk())) else {
        return false;
    };
    let announced = usize::from(u16::from_be_bytes([high, low]));
    input.starts_with(&SIGNATURE) && v2_address_len(family).is_some_and(|a| announced > a + V2_MAX_TLV_BYTES)
}

/// `input` ended as a v1 line ends (an unended line the reference refuses, lb may still wait on).
fn end_line(input: &[u8]) -> Vec<u8> {
    let end: &[u8] = if input.ends_with(b"\r") { b"\n" } else { b"\r\n" };
    [input, end].concat()
}

/// Whether lb's answer on `input` is the one the reference's verdict calls for.
fn agrees(input: &[u8]) -> bool {
    match (decode(input), parse(input)) {
        (Verdict::Header { len, source }, Ok(p)) => p == Proxied { len, source },
        (Verdict::Short, Err(PpError::Incomplete)) | (Verdict::Invalid, Err(PpError::Invalid(_))) => true,
        // Stricter: more than 4096 TLV bytes, refused as soon as announced.
        (Verdict::Header { .. } | Verdict::Short, Err(PpError::Invalid(_))) => over_tlv_bound(input),
        // An unended v1 line that cannot become valid: lb waits for its end, then refuses.
        (Verdict::Invalid, Err(PpError::Incomplete)) => {
            input.starts_with(b"P")
                && input.len() < V1_MAX_LEN
                && matches!(parse(&end_line(input)), Err(PpError::Invalid(_)))
        }
        _ => false,
    }
}

/// Breaks `header` where parsers slip: the v2 length, a TLV's length, v1 separators.
fn break_field(rng: &mut XorShift, header: &mut Vec<u8>) {
    if header.starts_with(&SIGNATURE) && header.len() >= 16 {
        let at = if rng.below(2) == 0 {
            14
        } else {
            16 + rng.below(header.len() - 15)
        };
        let any = rng.next() as u16;
        let value = *rng.pick(&[0u16, 1, 11, 12, 35, 36, 215, 216, 4108, 4109, 4348, 0xFFFF, any]);
        let end = (at + 2).min(header.len());
        header.splice(at..end, value.to_be_bytes());
    } else {
        let at = rng.below(header.len());
        const WITH: [&[u8]; 10] = [b"  ", b"", b"\r", b"\n", b" 0", b"::", b".", b"00", b"%1", b"\xff"];
        let with = *rng.pick(&WITH);
        header.splice(at..at + 1, with.iter().copied());
    }
}

/// Bytes that matter to the parser, for mutations.
const INTERESTING: &[u8] = b"\r\n .:0f9F\x00\x11\x20\x21\x7f\xff";

/// Mutated headers: lb never panics, refuses what the reference refuses (an unended v1 line
/// once it ends), takes the rest as the reference does, decides within its bounds, reads
/// nothing past the header, and answers the same in pieces.
#[test]
fn mutated_headers_are_judged_as_the_reference_judges_them() {
    let mut rng = XorShift(0x0BAD_C0FF_EE00_1DEA);
    let bound = 16 + 216 + V2_MAX_TLV_BYTES;
    let mut seen = [0usize; 3];
    for i in 0..60_000 {
        let sent = if i % 2 == 0 {
            v1_header(&mut rng)
        } else {
            v2_header(&mut rng)
        };
        let mut input = sent.bytes;
        if rng.below(3) == 0 {
            break_field(&mut rng, &mut input);
        }
        input.extend(tail(&mut rng));
        rng.mutate(&mut input, INTERESTING, 3);
        let text = String::from_utf8_lossy(&input);
        assert!(
            agrees(&input),
            "{text:?}: reference {:?}, lb {:?}",
            decode(&input),
            parse(&input)
        );
        let whole = parse(&input);
        match whole {
            Ok(p) => {
                // Nothing past the header counts: not its absence, not its bytes.
                assert_eq!(parse(&input[..p.len]), whole, "{text:?}");
                let other = [&input[..p.len], b"\r\n\x00PROXY garbage"].concat();
                assert_eq!(parse(&other), whole, "{text:?}");
                seen[0] += 1;
            }
            Err(PpError::Incomplete) => {
                let limit = if input.starts_with(b"P") { V1_MAX_LEN } else { bound };
                assert!(input.len() < limit, "waits on {} bytes: {text:?}", input.len());
                seen[1] += 1;
            }
            Err(PpError::Invalid(_)) => seen[2] += 1,
        }
        assert!(same_in_pieces(whole, read_in_pieces(&mut rng, &input)), "{text:?}");
    }
    assert!(seen.iter().all(|&n| n > 3000), "taken, waiting, refused: {seen:?}");
}
