//! PROXY protocol v1 and v2 headers (HAProxy's `proxy-protocol.txt`): parses, strictly, the header a trusted
//! proxy sends before a connection's first byte and says which client and address it stands for; whether
//! a listener expects one (and from whom) is configuration, and nothing here reads a socket.

use std::fmt;
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr};

/// Longest v1 header, its CRLF included.
pub const V1_MAX_LEN: usize = 107;

/// The 12 bytes that open a v2 header.
pub const V2_SIGNATURE: [u8; 12] = *b"\r\n\r\n\0\r\nQUIT\n";

/// Most TLV bytes accepted after a v2 address block.
pub const V2_MAX_TLV_BYTES: usize = 4096;

/// Why no PROXY header is (yet) accepted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PpError {
    /// More bytes are needed; what came so far can still begin a valid header.
    Incomplete,
    /// Not a valid PROXY header: close the connection. The reason is for the log.
    Invalid(&'static str),
}

impl fmt::Display for PpError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PpError::Incomplete => f.write_str("incomplete PROXY header"),
            PpError::Invalid(reason) => write!(f, "invalid PROXY header: {reason}"),
        }
    }
}

impl std::error::Error for PpError {}

/// A valid PROXY header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Proxied {
    /// Bytes of `buf` taken by the header; the client's own bytes follow.
    pub len: usize,
    /// The original client, or `None` when the real peer stays the client (v1 UNKNOWN; v2 LOCAL, UNSPEC,
    /// AF_UNIX or datagram addresses).
    pub source: Option<SocketAddr>,
    /// The address the client connected to, `None` whenever `source` is.
    pub destination: Option<SocketAddr>,
}

/// Parses a PROXY header at the start of `buf`: v1 (text, `PROXY TCP4|TCP6|UNKNOWN ...\r\n`, at most 107
/// bytes) or v2 (binary signature `\r\n\r\n\0\r\nQUIT\n`, version/command, family, length, addresses, TLVs
/// checked for shape and skipped). `source` is None for v1 UNKNOWN and for v2 LOCAL or unsupported
/// families (AF_UNIX, UNSPEC, datagrams): the real peer stays the client.
pub fn parse(buf: &[u8]) -> Result<Proxied, PpError> {
    match buf.first() {
        None => Err(PpError::Incomplete),
        Some(b'P') => v1(buf),
        Some(b'\r') => v2(buf),
        Some(_) => Err(PpError::Invalid("no PROXY protocol signature")),
    }
}

/// Whether `bytes` and `full` agree on their common length.
fn agrees(bytes: &[u8], full: &[u8]) -> bool {
    let n = bytes.len().min(full.len());
    bytes[..n] == full[..n]
}

// ---------------------------------------------------------------------------------------------------------
// Version 1

/// Parses a v1 header.
fn v1(buf: &[u8]) -> Result<Proxied, PpError> {
    let window = &buf[..buf.len().min(V1_MAX_LEN)];
    let Some(eol) = window.iter().position(|&b| b == b'\r' || b == b'\n') else {
        v1_prefix(window)?;
        if buf.len() >= V1_MAX_LEN {
            return Err(PpError::Invalid("v1 line longer than 107 bytes"));
        }
        return Err(PpError::Incomplete);
    };
    let line = &window[..eol];
    v1_prefix(line)?;
    match (window[eol], buf.get(eol + 1)) {
        (b'\n', _) => Err(PpError::Invalid("bare LF")),
        _ if eol + 2 > V1_MAX_LEN => Err(PpError::Invalid("v1 line longer than 107 bytes")),
        (_, None) => Err(PpError::Incomplete),
        (_, Some(b'\n')) => v1_line(line).map(|(source, destination)| Proxied {
            len: eol + 2,
            source,
            destination,
        }),
        (_, Some(_)) => Err(PpError::Invalid("bare CR")),
    }
}

/// Checks that `line` (without CRLF, maybe cut short) can begin a v1 header.
fn v1_prefix(line: &[u8]) -> Result<(), PpError> {
    if !agrees(line, b"PROXY ") {
        return Err(PpError::Invalid("no PROXY protocol signature"));
    }
    let rest = line.get(6..).unwrap_or_default();
    if ![&b"TCP4 "[..], b"TCP6 ", b"UNKNOWN"]
        .iter()
        .any(|protocol| agrees(rest, protocol))
    {
        return Err(PpError::Invalid("unknown v1 protocol"));
    }
    let addresses = if rest.starts_with(b"TCP") {
        rest.get(5..).unwrap_or_default()
    } else {
        b""
    };
    if !addresses
        .iter()
        .all(|&b| b.is_ascii_hexdigit() || b == b'.' || b == b':' || b == b' ')
    {
        return Err(PpError::Invalid("invalid character in v1 addresses"));
    }
    Ok(())
}

/// The (source, destination) of a complete v1 line without its CRLF.
type Endpoints = (Option<SocketAddr>, Option<SocketAddr>);

/// Parses a complete v1 line without its CRLF.
fn v1_line(line: &[u8]) -> Result<Endpoints, PpError> {
    let rest = line.strip_prefix(b"PROXY ").unwrap_or_default();
    if let Some(tail) = rest.strip_prefix(b"UNKNOWN") {
        // The receiver must ignore anything after UNKNOWN before the CRLF.
        return match tail.first() {
            None | Some(b' ') => Ok((None, None)),
            Some(_) => Err(PpError::Invalid("unknown v1 protocol")),
        };
    }
    let text = std::str::from_utf8(rest).map_err(|_| PpError::Invalid("invalid character in v1 addresses"))?;
    let mut parts = text.split(' ');
    let mut fields = [""; 5];
    for field in &mut fields {
        *field = parts.next().ok_or(PpError::Invalid("missing fields in v1 line"))?;
    }
    if parts.next().is_some() {
        return Err(PpError::Invalid("extra fields in v1 line"));
    }
    let [protocol, source, destination, source_port, destination_port] = fields;
    let (source, destination) = match protocol {
        "TCP4" => (ipv4(source)?, ipv4(destination)?),
        "TCP6" => (ipv6(source)?, ipv6(destination)?),
        _ => return Err(PpError::Invalid("unknown v1 protocol")),
    };
    let source = SocketAddr::new(source, port(source_port)?);
    Ok((
        Some(source),
        Some(SocketAddr::new(destination, port(destination_port)?)),
    ))
}

/// A dotted-quad IPv4 address (std's parser refuses leading zeros, as the spec wants).
fn ipv4(text: &str) -> Result<std::net::IpAddr, PpError> {
    let address = text
        .parse::<Ipv4Addr>()
        .map_err(|_| PpError::Invalid("invalid v1 IPv4 address"))?;
    Ok(address.into())
}

/// An IPv6 address.
fn ipv6(text: &str) -> Result<std::net::IpAddr, PpError> {
    let address = text
        .parse::<Ipv6Addr>()
        .map_err(|_| PpError::Invalid("invalid v1 IPv6 address"))?;
    Ok(address.into())
}

/// A decimal port, 0 to 65535, without sign or leading zero.
fn port(text: &str) -> Result<u16, PpError> {
    let bytes = text.as_bytes();
    let canonical = matches!(bytes, [b'0'] | [b'1'..=b'9', ..]) && bytes.iter().all(u8::is_ascii_digit);
    if !canonical {
        return Err(PpError::Invalid("invalid v1 port"));
    }
    text.parse::<u16>().map_err(|_| PpError::Invalid("invalid v1 port"))
}

// ---------------------------------------------------------------------------------------------------------
// Version 2

/// Parses a v2 header.
fn v2(buf: &[u8]) -> Result<Proxied, PpError> {
    if !agrees(buf, &V2_SIGNATURE) {
        return Err(PpError::Invalid("no PROXY protocol signature"));
    }
    let local = match buf.get(12) {
        Some(0x20) => true,
        Some(0x21) => false,
        Some(b) if b >> 4 != 2 => return Err(PpError::Invalid("v2 version is not 2")),
        Some(_) => return Err(PpError::Invalid("unknown v2 command")),
        None => return Err(PpError::Incomplete),
    };
    let family = match buf.get(13) {
        Some(&family) => family,
        None => return Err(PpError::Incomplete),
    };
    let address_len = v2_address_len(family)?;
    let (Some(&high), Some(&low)) = (buf.get(14), buf.get(15)) else {
        return Err(PpError::Incomplete);
    };
    let len = usize::from(u16::from_be_bytes([high, low]));
    if !local && len < address_len {
        return Err(PpError::Invalid("v2 length shorter than the address block"));
    }
    if len > address_len + V2_MAX_TLV_BYTES {
        return Err(PpError::Invalid("v2 header too long"));
    }
    let block = buf.get(16..16 + len).ok_or(PpError::Incomplete)?;
    // LOCAL: the proxy speaks for itself; the whole block is skipped, family included.
    let (source, destination) = if local {
        (None, None)
    } else {
        v2_block(family, block, address_len)?
    };
    Ok(Proxied {
        len: 16 + len,
        source,
        destination,
    })
}

/// The address-block length of a v2 family/transport byte; the spec's listed combinations only.
fn v2_address_len(family: u8) -> Result<usize, PpError> {
    match family {
        0x00 => Ok(0),
        0x11 | 0x12 => Ok(12),
        0x21 | 0x22 => Ok(36),
        0x31 | 0x32 => Ok(216),
        _ => Err(PpError::Invalid("unknown v2 address family or transport")),
    }
}

/// The endpoints of a PROXY command's block (addresses then TLVs), checking the TLVs' shape.
fn v2_block(family: u8, block: &[u8], address_len: usize) -> Result<Endpoints, PpError> {
    let (addresses, tlvs) = block.split_at(address_len.min(block.len()));
    check_tlvs(tlvs)?;
    let endpoints = match (family, addresses) {
        (0x11, &[a, b, c, d, e, f, g, h, sp1, sp2, dp1, dp2]) => (
            SocketAddr::from((Ipv4Addr::new(a, b, c, d), u16::from_be_bytes([sp1, sp2]))),
            SocketAddr::from((Ipv4Addr::new(e, f, g, h), u16::from_be_bytes([dp1, dp2]))),
        ),
        (0x21, _) => ipv6_endpoints(addresses).ok_or(PpError::Invalid("short v2 IPv6 addresses"))?,
        // UNSPEC, datagrams and AF_UNIX: the real peer stays the client.
        _ => return Ok((None, None)),
    };
    Ok((Some(endpoints.0), Some(endpoints.1)))
}

/// Source and destination of a 36-byte IPv6 address block.
fn ipv6_endpoints(block: &[u8]) -> Option<(SocketAddr, SocketAddr)> {
    let source: [u8; 16] = block.get(..16)?.try_into().ok()?;
    let destination: [u8; 16] = block.get(16..32)?.try_into().ok()?;
    let port = |at: usize| Some(u16::from_be_bytes([*block.get(at)?, *block.get(at + 1)?]));
    Some((
        SocketAddr::from((Ipv6Addr::from(source), port(32)?)),
        SocketAddr::from((Ipv6Addr::from(destination), port(34)?)),
    ))
}

/// Checks that `tlvs` is a sequence of whole type-length-value entries.
fn check_tlvs(mut tlvs: &[u8]) -> Result<(), PpError> {
    while let [_, high, low, rest @ ..] = tlvs {
        let len = usize::from(u16::from_be_bytes([*high, *low]));
        tlvs = rest
            .get(len..)
            .ok_or(PpError::Invalid("v2 TLV longer than the header"))?;
    }
    if !tlvs.is_empty() {
        return Err(PpError::Invalid("v2 TLV cut short"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addr(text: &str) -> Option<SocketAddr> {
        text.parse().ok()
    }

    #[test]
    fn v1_tcp4() {
        let input = b"PROXY TCP4 192.168.0.1 192.168.0.11 56324 443\r\nGET / HTTP/1.1\r\n";
        let proxied = parse(input);
        let want = Proxied {
            len: 47,
            source: addr("192.168.0.1:56324"),
            destination: addr("192.168.0.11:443"),
        };
        assert_eq!(proxied, Ok(want));
    }

    #[test]
    fn v1_tcp6() {
        let input = b"PROXY TCP6 2001:db8::1 ::ffff:10.0.0.1 0 65535\r\n";
        let want = Proxied {
            len: input.len(),
            source: addr("[2001:db8::1]:0"),
            destination: addr("[::ffff:10.0.0.1]:65535"),
        };
        assert_eq!(parse(input), Ok(want));
    }

    #[test]
    fn v1_unknown() {
        for input in [&b"PROXY UNKNOWN\r\n"[..], b"PROXY UNKNOWN anything \x01 goes\r\nrest"] {
            let len = input.iter().position(|&b| b == b'\n').map_or(0, |i| i + 1);
            assert_eq!(
                parse(input),
                Ok(Proxied {
                    len,
                    source: None,
                    destination: None
                })
            );
        }
    }

    #[test]
    fn v1_longest_lines() {
        let worst = format!("PROXY UNKNOWN {f} {f} 65535 65535\r\n", f = "ffff:".repeat(7) + "ffff");
        assert_eq!(worst.len(), V1_MAX_LEN);
        assert_eq!(parse(worst.as_bytes()).map(|p| p.len), Ok(V1_MAX_LEN));
        let longer = format!("PROXY UNKNOWN {}\r\n", "x".repeat(92));
        assert_eq!(longer.len(), V1_MAX_LEN + 1);
        assert!(matches!(parse(longer.as_bytes()), Err(PpError::Invalid(_))));
        let tcp6 = format!("PROXY TCP6 {f} {f} 65535 65535\r\n", f = "ffff:".repeat(7) + "ffff");
        assert_eq!(parse(tcp6.as_bytes()).map(|p| p.len), Ok(104));
    }

    const V1_VALID: &[&str] = &[
        "PROXY TCP4 1.2.3.4 5.6.7.8 1 2\r\n",
        "PROXY TCP4 0.0.0.0 255.255.255.255 0 65535\r\n",
        "PROXY TCP6 ::1 FE80::A 80 8080\r\n",
        "PROXY UNKNOWN\r\n",
        "PROXY UNKNOWN ::1 ::2 1 2\r\n",
    ];

    const V1_INVALID: &[&str] = &[
        "PROXY TCP4 1.2.3.4 5.6.7.8 1 2\n",
        "PROXY TCP4 1.2.3.4 5.6.7.8 1 2\rX",
        "PROXY TCP4 1.2.3.4 5.6.7.8 1\r\n",
        "PROXY TCP4 1.2.3.4 5.6.7.8 1 2 3\r\n",
        "PROXY TCP4 1.2.3.4 5.6.7.8 1 2 \r\n",
        "PROXY TCP4  1.2.3.4 5.6.7.8 1 2\r\n",
        "PROXY TCP4 1.2.3.4  5.6.7.8 1 2\r\n",
        "PROXY  TCP4 1.2.3.4 5.6.7.8 1 2\r\n",
        "PROXY TCP4 01.2.3.4 5.6.7.8 1 2\r\n",
        "PROXY TCP4 1.2.3 5.6.7.8 1 2\r\n",
        "PROXY TCP4 1.2.3.256 5.6.7.8 1 2\r\n",
        "PROXY TCP4 ::1 5.6.7.8 1 2\r\n",
        "PROXY TCP6 1.2.3.4 ::1 1 2\r\n",
        "PROXY TCP6 ::1%1 ::1 1 2\r\n",
        "PROXY TCP4 1.2.3.4 5.6.7.8 +1 2\r\n",
        "PROXY TCP4 1.2.3.4 5.6.7.8 01 2\r\n",
        "PROXY TCP4 1.2.3.4 5.6.7.8 1 65536\r\n",
        "PROXY TCP4 1.2.3.4 5.6.7.8 1 -2\r\n",
        "PROXY TCP4 1.2.3.4 5.6.7.8 1 2x\r\n",
        "PROXY TCP5 1.2.3.4 5.6.7.8 1 2\r\n",
        "PROXY tcp4 1.2.3.4 5.6.7.8 1 2\r\n",
        "PROXY UNKNOWNX\r\n",
        "PROXY\r\n",
        "PROXY \r\n",
        "PROXY TCP4\r\n",
        "proxy TCP4 1.2.3.4 5.6.7.8 1 2\r\n",
        "PROXY TCP4 1.2.3.4\t5.6.7.8 1 2\r\n",
        "GET / HTTP/1.1\r\n",
        "PROX\n",
        "PROXY TCP4 1.2.3.4 x",
        "PROXY TCP9",
        "PROXY TCP4 1.2.3.4 5.6.7.8 1 2  3\r\n",
    ];

    #[test]
    fn v1_valid_and_every_prefix_incomplete() {
        for line in V1_VALID {
            let bytes = line.as_bytes();
            assert_eq!(parse(bytes).map(|p| p.len), Ok(bytes.len()), "{line:?}");
            for cut in 0..bytes.len() {
                assert_eq!(parse(&bytes[..cut]), Err(PpError::Incomplete), "{line:?} cut at {cut}");
            }
        }
    }

    #[test]
    fn v1_invalid() {
        for line in V1_INVALID {
            let result = parse(line.as_bytes());
            assert!(matches!(result, Err(PpError::Invalid(_))), "{line:?}: {result:?}");
        }
    }

    #[test]
    fn v1_long_line_without_crlf_is_invalid_at_107_bytes() {
        let partial = format!("PROXY UNKNOWN {}", "x".repeat(92));
        assert_eq!(partial.len(), V1_MAX_LEN - 1);
        assert_eq!(parse(partial.as_bytes()), Err(PpError::Incomplete));
        let full = format!("{partial}x");
        assert!(matches!(parse(full.as_bytes()), Err(PpError::Invalid(_))));
        let cr_last = format!("{partial}\r");
        assert!(matches!(parse(cr_last.as_bytes()), Err(PpError::Invalid(_))));
    }

    #[test]
    fn other_protocols_are_refused_at_once() {
        for input in [&b"G"[..], b"\x16\x03\x01", b"\r\n\r\n\x01", b"PRI * HTTP/2.0", b"PX"] {
            assert!(matches!(parse(input), Err(PpError::Invalid(_))), "{input:?}");
        }
        assert_eq!(parse(b""), Err(PpError::Incomplete));
    }

    /// A v2 header: signature, version/command, family, length, then `body`.
    fn v2_header(ver_cmd: u8, family: u8, body: &[u8]) -> Vec<u8> {
        let mut out = V2_SIGNATURE.to_vec();
        out.extend_from_slice(&[ver_cmd, family]);
        out.extend_from_slice(&u16::try_from(body.len()).unwrap_or(u16::MAX).to_be_bytes());
        out.extend_from_slice(body);
        out
    }

    const IPV4_BLOCK: [u8; 12] = [10, 0, 0, 1, 192, 168, 1, 2, 0x1f, 0x90, 0x01, 0xbb];

    fn ipv6_block() -> Vec<u8> {
        let mut block = Vec::new();
        block.extend_from_slice(
            &"2001:db8::1"
                .parse::<Ipv6Addr>()
                .map(|a| a.octets())
                .unwrap_or_default(),
        );
        block.extend_from_slice(&Ipv6Addr::LOCALHOST.octets());
        block.extend_from_slice(&[0xff, 0xff, 0, 80]);
        block
    }

    #[test]
    fn v2_tcp4_with_trailing_data() {
        let mut input = v2_header(0x21, 0x11, &IPV4_BLOCK);
        input.extend_from_slice(b"GET /");
        let want = Proxied {
            len: 28,
            source: addr("10.0.0.1:8080"),
            destination: addr("192.168.1.2:443"),
        };
        assert_eq!(parse(&input), Ok(want));
    }

    #[test]
    fn v2_tcp6() {
        let input = v2_header(0x21, 0x21, &ipv6_block());
        let want = Proxied {
            len: 52,
            source: addr("[2001:db8::1]:65535"),
            destination: addr("[::1]:80"),
        };
        assert_eq!(parse(&input), Ok(want));
    }

    #[test]
    fn v2_with_tlvs() {
        let mut body = IPV4_BLOCK.to_vec();
        body.extend_from_slice(&[0x02, 0, 3, b'a', b'.', b'b', 0x04, 0, 0, 0xE0, 0, 1, 7]);
        let input = v2_header(0x21, 0x11, &body);
        assert_eq!(
            parse(&input).map(|p| (p.len, p.source)),
            Ok((16 + body.len(), addr("10.0.0.1:8080")))
        );
        for bad_tail in [&[0x02u8, 0, 4, b'a'][..], &[0x02, 0], &[0x04]] {
            let mut bad = IPV4_BLOCK.to_vec();
            bad.extend_from_slice(bad_tail);
            assert!(
                matches!(parse(&v2_header(0x21, 0x11, &bad)), Err(PpError::Invalid(_))),
                "{bad_tail:?}"
            );
        }
    }

    #[test]
    fn v2_without_usable_addresses() {
        let none = |input: &[u8]| parse(input).map(|p| (p.len, p.source, p.destination));
        // LOCAL: any block is skipped, even a short one.
        assert_eq!(none(&v2_header(0x20, 0x00, &[])), Ok((16, None, None)));
        assert_eq!(none(&v2_header(0x20, 0x11, &IPV4_BLOCK)), Ok((28, None, None)));
        assert_eq!(none(&v2_header(0x20, 0x11, &[])), Ok((16, None, None)));
        assert_eq!(none(&v2_header(0x20, 0x00, &[1, 2, 3])), Ok((19, None, None)));
        // PROXY with UNSPEC, UDP or AF_UNIX.
        assert_eq!(none(&v2_header(0x21, 0x00, &[])), Ok((16, None, None)));
        assert_eq!(none(&v2_header(0x21, 0x12, &IPV4_BLOCK)), Ok((28, None, None)));
        assert_eq!(none(&v2_header(0x21, 0x22, &ipv6_block())), Ok((52, None, None)));
        assert_eq!(none(&v2_header(0x21, 0x31, &[0; 216])), Ok((232, None, None)));
        assert_eq!(none(&v2_header(0x21, 0x32, &[0; 216])), Ok((232, None, None)));
    }

    #[test]
    fn v2_invalid() {
        let invalid = |input: Vec<u8>| assert!(matches!(parse(&input), Err(PpError::Invalid(_))), "{input:?}");
        invalid(v2_header(0x11, 0x11, &IPV4_BLOCK)); // version 1
        invalid(v2_header(0x31, 0x11, &IPV4_BLOCK)); // version 3
        invalid(v2_header(0x22, 0x11, &IPV4_BLOCK)); // command 2
        invalid(v2_header(0x2F, 0x11, &IPV4_BLOCK)); // command 15
        for family in [0x01, 0x02, 0x10, 0x13, 0x20, 0x30, 0x41, 0xF1] {
            invalid(v2_header(0x21, family, &IPV4_BLOCK));
        }
        invalid(v2_header(0x21, 0x11, &IPV4_BLOCK[..11])); // short address block
        invalid(v2_header(0x21, 0x21, &IPV4_BLOCK)); // IPv6 needs 36 bytes
        invalid(v2_header(0x21, 0x31, &[0; 100])); // AF_UNIX needs 216
                                                   // Length over the address block plus 4096 TLV bytes, refused before it all arrives.
        let mut long = V2_SIGNATURE.to_vec();
        long.extend_from_slice(&[0x21, 0x11]);
        long.extend_from_slice(&u16::try_from(12 + V2_MAX_TLV_BYTES + 1).unwrap_or(0).to_be_bytes());
        invalid(long);
        // Refused as soon as the version byte is wrong.
        invalid([&V2_SIGNATURE[..], &[0x10]].concat());
        invalid([&V2_SIGNATURE[..], &[0x21, 0x05]].concat());
    }

    #[test]
    fn v2_longest_tlvs_accepted() {
        let mut body = IPV4_BLOCK.to_vec();
        let value_len = V2_MAX_TLV_BYTES - 3;
        body.extend_from_slice(&[0xE0]);
        body.extend_from_slice(&u16::try_from(value_len).unwrap_or(0).to_be_bytes());
        body.resize(12 + V2_MAX_TLV_BYTES, 0);
        assert_eq!(
            parse(&v2_header(0x21, 0x11, &body)).map(|p| p.len),
            Ok(16 + 12 + V2_MAX_TLV_BYTES)
        );
    }

    #[test]
    fn v2_every_prefix_incomplete() {
        let mut tlv_body = IPV4_BLOCK.to_vec();
        tlv_body.extend_from_slice(&[0x01, 0, 2, b'h', b'2']);
        let headers = [
            v2_header(0x21, 0x11, &IPV4_BLOCK),
            v2_header(0x21, 0x21, &ipv6_block()),
            v2_header(0x20, 0x00, &[]),
            v2_header(0x21, 0x11, &tlv_body),
        ];
        for header in headers {
            for cut in 0..header.len() {
                assert_eq!(
                    parse(&header[..cut]),
                    Err(PpError::Incomplete),
                    "{header:?} cut at {cut}"
                );
            }
            assert_eq!(parse(&header).map(|p| p.len), Ok(header.len()));
        }
    }

    #[test]
    fn display() {
        assert_eq!(PpError::Invalid("bare LF").to_string(), "invalid PROXY header: bare LF");
        assert_eq!(PpError::Incomplete.to_string(), "incomplete PROXY header");
    }

    #[test]
    fn mutations_never_panic() {
        let mut seeds: Vec<Vec<u8>> = V1_VALID.iter().map(|s| s.as_bytes().to_vec()).collect();
        seeds.push(v2_header(0x21, 0x11, &IPV4_BLOCK));
        seeds.push(v2_header(0x21, 0x21, &ipv6_block()));
        seeds.push(v2_header(0x20, 0x00, &[]));
        let mut state = 0x1234_5678_9ABC_DEF1u64;
        let mut next = move || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        };
        for _ in 0..100_000 {
            let seed = &seeds[(next() % seeds.len() as u64) as usize];
            let mut input = seed.clone();
            for _ in 0..=next() % 3 {
                if input.is_empty() {
                    break;
                }
                let at = (next() % input.len() as u64) as usize;
                match next() % 3 {
                    0 => input[at] = next() as u8,
                    1 => input.insert(at, b"\r\n .:0f\x00\xff"[(next() % 9) as usize]),
                    _ => input.truncate(at),
                }
            }
            if let Ok(proxied) = parse(&input) {
                assert!(proxied.len <= input.len());
                assert_eq!(proxied.source.is_some(), proxied.destination.is_some());
                // What is accepted is accepted from its own bytes alone, and no prefix of it is refused.
                assert_eq!(parse(&input[..proxied.len]), Ok(proxied));
                let cut = (next() % proxied.len as u64) as usize;
                assert_eq!(parse(&input[..cut]), Err(PpError::Incomplete), "{input:?} cut at {cut}");
            }
        }
    }
}
