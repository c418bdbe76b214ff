//! Property tests of the response rules of [`super`] (policy.rs), alone and behind the parser
//! that hands them a backend's response head (Pingora's HTTP/1 client session, as both request
//! loops read it, then `upstream_response::refusal`), against an oracle that restates the RFCs
//! on the field list itself:
//!
//! - RFC 9110 §15: a status outside 100–599 is refused (a 502).
//! - RFC 9112 §6.3: Transfer-Encoding wins over Content-Length, which goes.
//! - RFC 9110 §8.6: Content-Length values (fields and comma-separated elements) that are not
//!   all one decimal number make the response invalid (a 502); identical ones become one field.
//! - RFC 9110 §7.6.1: `Connection`, the fields it names, and the hop-by-hop fields (Keep-Alive,
//!   Proxy-Connection, TE, Trailer, Upgrade) do not pass. lb's policy keeps the framing fields
//!   even when `Connection` names them (the HTTP layer frames the body by them; dropping them
//!   would let a backend change the framing) and leaves a `101` whole (its Upgrade and
//!   Connection make the switch).
//! - Everything else passes, the values of each field in their order.
//! - RFC 9112 §6.3: a response to HEAD, a 204, a 304, or one of length 0 has no body
//!   ([`bodiless`]), however the length is written.
//!
//! Header lists are built with the `http` crate from fixed seeds; a failure replays.

use super::*;
use crate::testing::rng::XorShift;
use http::header::TRANSFER_ENCODING;
use http::HeaderValue;
use pingora_core::protocols::http::v1::client::HttpSession;
use pingora_core::protocols::http::HttpTask;

type Fields = Vec<(HeaderName, HeaderValue)>;

/// The field names of the oracle's hop-by-hop rule (RFC 9110 §7.6.1, RFC 9112 §9.6).
const HOP: [&str; 6] = [
    "connection",
    "keep-alive",
    "proxy-connection",
    "te",
    "trailer",
    "upgrade",
];

/// The response the client gets, as the oracle sees it: the fields that pass (values with their
/// surrounding whitespace trimmed, as on the wire), and the one Content-Length, if any.
#[derive(Debug, PartialEq)]
struct Expected {
    fields: Vec<(String, Vec<Vec<u8>>)>,
    content_length: Option<u64>,
}

/// OWS trimmed (RFC 9110 §5.6.3).
fn trim(value: &[u8]) -> &[u8] {
    let start = value
        .iter()
        .position(|b| !matches!(b, b' ' | b'\t'))
        .unwrap_or(value.len());
    let end = value
        .iter()
        .rposition(|b| !matches!(b, b' ' | b'\t'))
        .map_or(start, |i| i + 1);
    &value[start..end]
}

/// Every Content-Length element as a number (1*DIGIT); Err if one is not.
fn content_lengths(fields: &Fields) -> Result<Vec<u64>, ()> {
    let values = fields.iter().filter(|(name, _)| name == CONTENT_LENGTH);
    let elements = values.flat_map(|(_, value)| value.as_bytes().split(|&b| b == b','));
    elements
        .map(|element| {
            let digits = trim(element);
            let all_digits = !digits.is_empty() && digits.iter().all(u8::is_ascii_digit);
            let text = std::str::from_utf8(digits).map_err(|_| ())?;
            all_digits.then(|| text.parse::<u64>().ok()).flatten().ok_or(())
        })
        .collect()
}

/// The names a response's hop-by-hop rule removes (none from a 101).
fn removed(status: u16, fields: &Fields) -> Vec<String> {
    if status == 101 {
        return Vec::new();
    }
    let named = fields
        .iter()
        .filter(|(name, _)| name == CONNECTION)
        .flat_map(|(_, value)| value.as_bytes().split(|&b| b == b','))
        .filter_map(|option| std::str::from_utf8(trim(option)).ok())
        .filter(|option| !option.is_empty() && option.bytes().all(crate::request::front::head::is_tchar))
        .map(str::to_ascii_lowercase)
        .filter(|name| name != "content-length" && name != "transfer-encoding");
    HOP.iter().map(|s| s.to_string()).chain(named).collect()
}

/// The oracle: what passes of a `status` response with `fields`, or Err when it is refused.
fn oracle(status: u16, fields: &Fields) -> Result<Expected, ()> {
    // RFC 9110 §15: a status outside 100–599 is invalid.
    if !(100..=599).contains(&status) {
        return Err(());
    }
    let chunked = fields.iter().any(|(name, _)| name == TRANSFER_ENCODING);
    let lengths = if chunked { Vec::new() } else { content_lengths(fields)? };
    let content_length = match lengths[..] {
        [] => None,
        [first, ref rest @ ..] if rest.iter().all(|n| *n == first) => Some(first),
        _ => return Err(()),
    };
    let removed = removed(status, fields);
    let mut kept: Vec<(String, Vec<Vec<u8>>)> = Vec::new();
    for (name, value) in fields {
        if name == CONTENT_LENGTH || removed.iter().any(|r| r == name.as_str()) {
            continue;
        }
        let value = trim(value.as_bytes()).to_vec();
        match kept.iter_mut().find(|(n, _)| n == name.as_str()) {
            Some((_, values)) => values.push(value),
            None => kept.push((name.to_string(), vec![value])),
        }
    }
    Ok(Expected {
        fields: kept,
        content_length,
    })
}

/// `header` as the oracle describes a response (Content-Length apart, as a number).
fn observed(header: &ResponseHeader) -> Result<Expected, String> {
    let lengths: Vec<&HeaderValue> = header.headers.get_all(CONTENT_LENGTH).iter().collect();
    let content_length = match lengths[..] {
        [] => None,
        [one] => Some(
            std::str::from_utf8(one.as_bytes())
                .ok()
                .and_then(|t| t.parse().ok())
                .ok_or("bad value")?,
        ),
        _ => return Err(format!("{} Content-Length fields", lengths.len())),
    };
    let fields = header
        .headers
        .keys()
        .filter(|name| *name != CONTENT_LENGTH)
        .map(|name| {
            let values = header.headers.get_all(name).iter().map(|v| v.as_bytes().to_vec());
            (name.to_string(), values.collect())
        })
        .collect();
    Ok(Expected { fields, content_length })
}

/// `e` with its fields sorted by name: the order between different fields is not significant
/// (RFC 9110 §5.3), and lb does not keep it (`http::HeaderMap::remove` moves the last field
/// into the place of the one removed); the order of each field's values is, and is compared.
fn by_name(mut e: Expected) -> Expected {
    e.fields.sort_by(|a, b| a.0.cmp(&b.0));
    e
}

/// At most one Content-Length and no hop-by-hop field (a 101 apart): what the client may get.
fn invariants(header: &ResponseHeader) -> bool {
    let hop = HOP.iter().any(|name| header.headers.contains_key(*name));
    header.headers.get_all(CONTENT_LENGTH).iter().count() <= 1 && (header.status == 101 || !hop)
}

const STATUSES: [u16; 13] = [99, 100, 101, 103, 200, 204, 206, 304, 404, 500, 503, 600, 999];

/// One of the `|`-separated words of `list`.
fn word<'a>(rng: &mut XorShift, list: &'a str) -> &'a str {
    let words: Vec<&str> = list.split('|').collect();
    words[rng.below(words.len())]
}

/// One field: mostly the names the rules are about, with values that test them.
fn field(rng: &mut XorShift) -> (HeaderName, HeaderValue) {
    const NAMES: &str = "content-length|content-length|transfer-encoding|connection|connection|\
        keep-alive|proxy-connection|te|trailer|upgrade|x-a|x-b|set-cookie|cache-control|vary|proxy-authenticate";
    const LENGTHS: &str =
        "5|5|05|0|00|0, 00|5, 5|5,5|5 ,05|6||abc|-1|+5|5,|18446744073709551615|18446744073709551616|0x5|5 5";
    const CODINGS: &str = "chunked|gzip, chunked|gzip|Chunked|chunked, gzip";
    const OPTIONS: &str = "close|keep-alive|Upgrade|x-a|X-B|te|content-length|Transfer-Encoding|set-cookie|\
        connection|bad option||\"x-a\"|vary";
    const OTHERS: &str = "1|a b|timeout=5|websocket|trailers||caf\u{e9}";
    let name = word(rng, NAMES);
    let value = match name {
        "content-length" => word(rng, LENGTHS).to_string(),
        "transfer-encoding" => word(rng, CODINGS).to_string(),
        "connection" => {
            let options: Vec<&str> = (0..1 + rng.below(4)).map(|_| word(rng, OPTIONS)).collect();
            options.join(word(rng, ",|, | ,|,,"))
        }
        _ => word(rng, OTHERS).to_string(),
    };
    let value = HeaderValue::from_bytes(value.as_bytes()).unwrap_or(HeaderValue::from_static("x"));
    (HeaderName::from_bytes(name.as_bytes()).unwrap_or(CONNECTION), value)
}

fn fields(rng: &mut XorShift) -> Fields {
    (0..rng.below(10)).map(|_| field(rng)).collect()
}

/// `fields` in a ResponseHeader, in their order.
fn response(status: u16, fields: &Fields) -> ResponseHeader {
    let mut header = ResponseHeader::build(status, None).unwrap_or_else(|e| panic!("{e}"));
    for (name, value) in fields {
        header
            .append_header(name.clone(), value.clone())
            .unwrap_or_else(|e| panic!("{e}"));
    }
    header
}

/// The response head on the wire, names in random case.
fn wire(rng: &mut XorShift, status: u16, fields: &Fields) -> Vec<u8> {
    let mut out = format!("HTTP/1.1 {status:03} Reason\r\n").into_bytes();
    for (name, value) in fields {
        let upper = rng.below(2) == 0;
        out.extend(
            name.as_str()
                .bytes()
                .map(|b| if upper { b.to_ascii_uppercase() } else { b }),
        );
        out.extend_from_slice(b": ");
        out.extend_from_slice(value.as_bytes());
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(b"\r\n");
    out
}

/// A backend's response head through Pingora's HTTP/1 client session (its parse and its
/// framing checks) and lb's response rules: the head the client gets, or Err (a 502).
fn through_lb(raw: Vec<u8>) -> Result<ResponseHeader, String> {
    let mut upstream = HttpSession::new(Box::new(std::io::Cursor::new(raw)));
    let task = futures::executor::block_on(upstream.read_response_task()).map_err(|e| e.to_string())?;
    let HttpTask::Header(mut header, _) = task else {
        return Err("no response head".into());
    };
    if let Some(why) = super::super::upstream_response::refusal(&header, 0) {
        return Err(why.into());
    }
    strip_hop_by_hop(&mut header);
    single_content_length(&mut header).map_err(|e| e.to_string())?;
    Ok(*header)
}

/// Random response heads through Pingora's parser and lb's rules: never a panic, refused
/// exactly when the oracle refuses them, and otherwise with the oracle's fields: at most one
/// Content-Length, no hop-by-hop field, every other field with its values in order; and taken
/// for bodiless exactly when RFC 9112 §6.3 says there is no body.
#[test]
fn response_heads_from_the_wire_pass_as_the_rfcs_say() {
    let mut rng = XorShift(0x8E5F_0A5E_2026_0001);
    let (mut refused, mut passed) = (0, 0);
    for _ in 0..20_000 {
        let status = *rng.pick(&STATUSES);
        let fields = fields(&mut rng);
        let raw = wire(&mut rng, status, &fields);
        let text = String::from_utf8_lossy(&raw).into_owned();
        match (oracle(status, &fields), through_lb(raw)) {
            (Err(()), Err(_)) => refused += 1,
            (Ok(want), Ok(header)) => {
                assert!(invariants(&header), "{text:?}: {:?}", header.headers);
                let head = rng.below(2) == 0;
                // RFC 9112 §6.3: no body after a HEAD, a 204 or 304, or a length of zero.
                let none = head || matches!(status, 204 | 304) || want.content_length == Some(0);
                assert_eq!(bodiless(head, &header), none, "{text:?}, HEAD: {head}");
                let got = observed(&header).unwrap_or_else(|e| panic!("{text:?}: {e}"));
                assert_eq!(by_name(got), by_name(want), "{text:?}");
                passed += 1;
            }
            (want, got) => panic!("{text:?}: oracle {want:?}, lb {:?}", got.map(|h| h.headers.clone())),
        }
    }
    assert!(refused > 2000 && passed > 2000, "{refused} refused, {passed} passed");
}

/// The rules alone, on any field list (also those Pingora's parser would refuse): never a
/// panic; the hop-by-hop rule removes exactly the oracle's fields, each field's values in
/// order; Content-Length values of one number become one field with it, others are refused.
#[test]
fn the_rules_alone_on_any_field_list() {
    let mut rng = XorShift(0x8E5F_0A5E_2026_0002);
    for _ in 0..20_000 {
        let status = *rng.pick(&STATUSES[1..]);
        let fields = fields(&mut rng);
        let mut header = response(status, &fields);
        strip_hop_by_hop(&mut header);
        let removed = removed(status, &fields);
        let want: Fields = fields
            .iter()
            .filter(|(n, _)| !removed.iter().any(|r| r == n.as_str()))
            .cloned()
            .collect();
        for name in header.headers.keys().chain(want.iter().map(|(n, _)| n)) {
            let got: Vec<_> = header.headers.get_all(name).iter().collect();
            let wanted: Vec<_> = want.iter().filter(|(n, _)| n == name).map(|(_, v)| v).collect();
            assert_eq!(got, wanted, "{status} {fields:?}: {name}");
        }
        let before: Vec<HeaderValue> = header.headers.get_all(CONTENT_LENGTH).iter().cloned().collect();
        let elements = before.iter().flat_map(|v| v.as_bytes().split(|&b| b == b',')).count();
        let result = single_content_length(&mut header).map(|()| header.headers.get_all(CONTENT_LENGTH));
        let got: Result<Vec<&HeaderValue>, _> = result.map(|values| values.iter().collect());
        match content_lengths(&want).as_deref() {
            // One value or none: left as it is (an invalid one was Pingora's to refuse).
            _ if elements < 2 => assert_eq!(got.ok(), Some(before.iter().collect())),
            // One number: one field with it.
            Ok([first, rest @ ..]) if rest.iter().all(|n| n == first) => {
                assert_eq!(got.ok(), Some(vec![&HeaderValue::from(*first)]), "{fields:?}")
            }
            _ => assert!(got.is_err(), "{fields:?}"),
        }
    }
}
