//! A reference of the PROXY protocol for the property tests of [`super`] (proxy_protocol.rs),
//! written from HAProxy's `proxy-protocol.txt` apart from lb's parser: a decoder that says
//! whether bytes are a whole header, the start of one, or neither (v1 addresses through its own
//! IPv4 and IPv6 text grammar, not std's), and the spec's own example lines.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

/// The examples of the spec's section 2.1, with their lengths as the spec counts them.
pub const SPEC_V1_EXAMPLES: [(&str, usize); 5] = [
    ("PROXY TCP4 192.168.0.1 192.168.0.11 56324 443\r\n", 47),
    ("PROXY TCP4 255.255.255.255 255.255.255.255 65535 65535\r\n", 56),
    (
        "PROXY TCP6 ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff 65535 65535\r\n",
        104,
    ),
    ("PROXY UNKNOWN\r\n", 15),
    (
        "PROXY UNKNOWN ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff 65535 65535\r\n",
        107,
    ),
];

/// "the 13 first bytes match the protocol signature block" (§2.2).
pub const SIGNATURE: [u8; 12] = [0x0D, 0x0A, 0x0D, 0x0A, 0x00, 0x0D, 0x0A, 0x51, 0x55, 0x49, 0x54, 0x0A];

/// What the reference makes of a connection's first bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// A whole header of `len` bytes; `source` is the client it stands for (None: the real peer
    /// stays the client: v1 UNKNOWN, v2 LOCAL, and v2 families other than TCP over IPv4/IPv6).
    Header { len: usize, source: Option<SocketAddr> },
    /// The start of a header.
    Short,
    /// Not a header, whatever follows.
    Invalid,
}

/// Decodes the header at the start of `buf`.
pub fn decode(buf: &[u8]) -> Verdict {
    if buf.is_empty() {
        Verdict::Short
    } else if prefix_of(buf, b"PROXY") {
        v1(buf)
    } else if prefix_of(buf, &SIGNATURE) {
        v2(buf)
    } else {
        Verdict::Invalid
    }
}

/// Whether `a` and `b` agree on their common length.
fn prefix_of(a: &[u8], b: &[u8]) -> bool {
    a.iter().zip(b).all(|(x, y)| x == y)
}

/// The longest v1 line, CRLF included: the spec's "worst case", UNKNOWN with two full IPv6
/// addresses and ports.
const V1_MAX: usize = 107;

fn v1(buf: &[u8]) -> Verdict {
    let head = &buf[..buf.len().min(V1_MAX)];
    match head.iter().position(|&b| b == b'\r' || b == b'\n') {
        // "The receiver must not tolerate a single CR or LF character to end the line."
        Some(end) if head[end] == b'\n' => Verdict::Invalid,
        // "If the CRLF sequence is not found in the first 107 characters, [...] invalid."
        Some(end) if end + 2 > V1_MAX => Verdict::Invalid,
        Some(end) => match buf.get(end + 1) {
            // The line is all there but its LF: it has to be valid as it is.
            None if v1_line(&buf[..end]).is_some() => Verdict::Short,
            None => Verdict::Invalid,
            Some(b'\n') => {
                v1_line(&buf[..end]).map_or(Verdict::Invalid, |source| Verdict::Header { len: end + 2, source })
            }
            Some(_) => Verdict::Invalid,
        },
        None if buf.len() >= V1_MAX => Verdict::Invalid,
        None => plausible(buf),
    }
}

/// A whole line without its CRLF: `None` inside for UNKNOWN, `None` outside when invalid.
fn v1_line(line: &[u8]) -> Option<Option<SocketAddr>> {
    let rest = line.strip_prefix(b"PROXY ")?;
    if unknown(rest) {
        return Some(None);
    }
    let rest = std::str::from_utf8(rest).ok()?;
    let fields: Vec<&str> = rest.split(' ').collect();
    let [protocol, source, destination, source_port, destination_port] = fields[..] else {
        return None;
    };
    let address = |text| match protocol {
        "TCP4" => ipv4(text).map(IpAddr::V4),
        "TCP6" => ipv6(text).map(IpAddr::V6),
        _ => None,
    };
    address(destination)?;
    port(destination_port)?;
    Some(Some(SocketAddr::new(address(source)?, port(source_port)?)))
}

/// Whether a line cut short (no CR or LF yet) can still become a valid one: its fields so far
/// are whole and valid, the last one made of bytes its place allows.
fn plausible(partial: &[u8]) -> Verdict {
    let plausible = match partial.strip_prefix(b"PROXY ") {
        None => prefix_of(partial, b"PROXY ") && partial.len() < 6,
        Some(rest) => plausible_rest(rest),
    };
    if plausible {
        Verdict::Short
    } else {
        Verdict::Invalid
    }
}

/// Whether the protocol is UNKNOWN: "the receiver must ignore anything presented before the
/// CRLF is found".
fn unknown(rest: &[u8]) -> bool {
    rest == b"UNKNOWN" || rest.starts_with(b"UNKNOWN ")
}

fn plausible_rest(rest: &[u8]) -> bool {
    if unknown(rest) {
        return true;
    }
    let Ok(rest) = std::str::from_utf8(rest) else {
        return false;
    };
    let fields: Vec<&str> = rest.split(' ').collect();
    let (last, whole) = fields.split_last().unwrap_or((&"", &[]));
    let Some(protocol) = whole.first() else {
        return ["TCP4", "TCP6", "UNKNOWN"].iter().any(|p| p.starts_with(last));
    };
    let family_chars: fn(char) -> bool = match *protocol {
        "TCP4" => |c| c.is_ascii_digit() || c == '.',
        "TCP6" => |c| c.is_ascii_hexdigit() || c == ':' || c == '.',
        _ => return false,
    };
    let valid_so_far = whole[1..].iter().enumerate().all(|(i, field)| match (i, *protocol) {
        (0 | 1, "TCP4") => ipv4(field).is_some(),
        (0 | 1, _) => ipv6(field).is_some(),
        _ => port(field).is_some(),
    });
    let chars = if fields.len() <= 3 {
        family_chars
    } else {
        |c: char| c.is_ascii_digit()
    };
    fields.len() <= 5 && valid_so_far && last.chars().all(chars)
}

/// "exactly 4 integers in the range [0..255] [...] separated by exactly one dot [...] Heading
/// zeroes are not permitted".
fn ipv4(text: &str) -> Option<Ipv4Addr> {
    let parts: Vec<u8> = text.split('.').map(decimal_u8).collect::<Option<_>>()?;
    let [a, b, c, d] = parts[..] else { return None };
    Some(Ipv4Addr::new(a, b, c, d))
}

fn decimal_u8(text: &str) -> Option<u8> {
    let value = decimal(text)?;
    u8::try_from(value).ok()
}

/// A decimal number without sign or heading zero, below 2^32.
fn decimal(text: &str) -> Option<u32> {
    let digits = text.as_bytes();
    let canonical = !digits.is_empty() && digits.len() <= 5 && (digits[0] != b'0' || digits.len() == 1);
    if !canonical || !digits.iter().all(u8::is_ascii_digit) {
        return None;
    }
    Some(digits.iter().fold(0, |n, &d| n * 10 + u32::from(d - b'0')))
}

/// "a decimal integer in the range [0..65535] [...] Heading zeroes are not permitted".
fn port(text: &str) -> Option<u16> {
    u16::try_from(decimal(text)?).ok()
}

/// RFC 4291 §2.2 text: groups of 1 to 4 hex digits, at most one `::` standing for one or more
/// zero groups, and a dotted IPv4 address as the last 32 bits.
fn ipv6(text: &str) -> Option<Ipv6Addr> {
    let (head, tail) = match text.split_once("::") {
        Some((head, tail)) => (groups(head, tail.is_empty())?, Some(groups(tail, true)?)),
        None => (groups(text, true)?, None),
    };
    let mut all = head.clone();
    match tail {
        None if all.len() == 8 => {}
        Some(tail) if head.len() + tail.len() <= 7 => {
            all.resize(8 - tail.len(), 0);
            all.extend(tail);
        }
        _ => return None,
    }
    let all: [u16; 8] = all.try_into().ok()?;
    Some(Ipv6Addr::from(all))
}

/// Colon-separated groups (none for ""); `last`: the final one may be a dotted IPv4 address.
fn groups(text: &str, last: bool) -> Option<Vec<u16>> {
    if text.is_empty() {
        return Some(Vec::new());
    }
    let parts: Vec<&str> = text.split(':').collect();
    let mut out = Vec::new();
    for (i, part) in parts.iter().enumerate() {
        if last && i + 1 == parts.len() && part.contains('.') {
            let [a, b, c, d] = ipv4(part)?.octets();
            out.extend([u16::from_be_bytes([a, b]), u16::from_be_bytes([c, d])]);
        } else if (1..=4).contains(&part.len()) && part.chars().all(|c| c.is_ascii_hexdigit()) {
            out.push(u16::from_str_radix(part, 16).ok()?);
        } else {
            return None;
        }
    }
    Some(out)
}

/// The address-block length of a v2 family/transport byte (§2.2, "In practice, the following
/// protocol bytes are expected"); others "must be rejected as invalid by receivers".
pub fn v2_address_len(family: u8) -> Option<usize> {
    match family {
        0x00 => Some(0),
        0x11 | 0x12 => Some(12),
        0x21 | 0x22 => Some(36),
        0x31 | 0x32 => Some(216),
        _ => None,
    }
}

fn v2(buf: &[u8]) -> Verdict {
    let Some([ver_cmd, family, high, low]) = buf.get(12..16).and_then(|b| <[u8; 4]>::try_from(b).ok()) else {
        // Cut short: what there is of the fixed part must be valid.
        let ver_cmd_ok = buf.get(12).is_none_or(|b| matches!(b, 0x20 | 0x21));
        let family_ok = buf.get(13).is_none_or(|&f| v2_address_len(f).is_some());
        return if ver_cmd_ok && family_ok {
            Verdict::Short
        } else {
            Verdict::Invalid
        };
    };
    let (Some(address_len), 0x20 | 0x21) = (v2_address_len(family), ver_cmd) else {
        return Verdict::Invalid;
    };
    let len = usize::from(u16::from_be_bytes([high, low]));
    let local = ver_cmd == 0x20;
    if !local && len < address_len {
        return Verdict::Invalid;
    }
    let Some(block) = buf.get(16..16 + len) else {
        return Verdict::Short;
    };
    // LOCAL: "discard the protocol block including the family".
    let source = if local {
        None
    } else {
        v2_source(family, &block[..address_len])
    };
    if !local && !tlvs_whole(&block[address_len..]) {
        return Verdict::Invalid;
    }
    Verdict::Header { len: 16 + len, source }
}

/// The source of TCP over IPv4 or IPv6 (network byte order: addresses, then ports).
fn v2_source(family: u8, addresses: &[u8]) -> Option<SocketAddr> {
    let port = |at: usize| u16::from_be_bytes([addresses[at], addresses[at + 1]]);
    match family {
        0x11 => Some(SocketAddr::new(
            Ipv4Addr::from(<[u8; 4]>::try_from(&addresses[..4]).ok()?).into(),
            port(8),
        )),
        0x21 => Some(SocketAddr::new(
            Ipv6Addr::from(<[u8; 16]>::try_from(&addresses[..16]).ok()?).into(),
            port(32),
        )),
        _ => None,
    }
}

/// Whether `tlvs` is whole type-length-value vectors (type: 1 byte, length: 2, then the value).
fn tlvs_whole(mut tlvs: &[u8]) -> bool {
    while !tlvs.is_empty() {
        let Some([_, high, low]) = tlvs.get(..3).and_then(|b| <[u8; 3]>::try_from(b).ok()) else {
            return false;
        };
        let Some(rest) = tlvs.get(3 + usize::from(u16::from_be_bytes([high, low]))..) else {
            return false;
        };
        tlvs = rest;
    }
    true
}
