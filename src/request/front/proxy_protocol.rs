//! PROXY protocol v1 and v2 headers (HAProxy's `proxy-protocol.txt`): parses, strictly, the header a trusted
//! proxy sends before a connection's first byte and says which client and address it stands for; whether
//! a listener expects one (and from whom) is configuration. [`read`] is the one loop that waits
//! for a whole header, over whatever holds a connection's first bytes ([`Incoming`]: the front's
//! connection, or the stream before a TLS handshake).

use std::fmt;
use std::future::Future;
use std::io;
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
    /// (The destination address is checked but not kept: nothing in lb reads it.)
    pub source: Option<SocketAddr>,
}

/// A connection's first bytes as they arrive.
pub trait Incoming {
    /// The bytes that have arrived and are not consumed.
    fn held(&self) -> &[u8];
    /// Reads more into [`Incoming::held`]: the number of bytes, 0 when the peer closed.
    fn fill(&mut self) -> impl Future<Output = io::Result<usize>> + Send;
}

/// Why [`read`] found no header.
#[derive(Debug)]
pub enum ReadError {
    /// What arrived is not a valid header.
    Invalid(&'static str),
    /// The peer closed before a whole header.
    Closed,
    /// Reading failed.
    Io(io::Error),
}

impl fmt::Display for ReadError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ReadError::Invalid(why) => f.write_str(why),
            ReadError::Closed => f.write_str("the connection closed"),
            ReadError::Io(e) => write!(f, "{e}"),
        }
    }
}

/// Reads from `incoming` until its held bytes start with a whole header (which the caller
/// consumes: `len` bytes), or they cannot. Bound it in time: it waits as long as bytes come.
pub async fn read<I: Incoming>(incoming: &mut I) -> Result<Proxied, ReadError> {
    loop {
        match parse(incoming.held()) {
            Ok(proxied) => return Ok(proxied),
            Err(PpError::Invalid(why)) => return Err(ReadError::Invalid(why)),
            Err(PpError::Incomplete) => {}
        }
        match incoming.fill().await {
            Ok(0) => return Err(ReadError::Closed),
            Ok(_) => {}
            Err(e) => return Err(ReadError::Io(e)),
        }
    }
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
        (_, Some(b'\n')) => v1_line(line).map(|source| Proxied { len: eol + 2, source }),
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

/// The source of a complete v1 line without its CRLF (`None`: UNKNOWN); the destination must be
/// as valid as the source but is not kept.
fn v1_line(line: &[u8]) -> Result<Option<SocketAddr>, PpError> {
    let rest = line.strip_prefix(b"PROXY ").unwrap_or_default();
    if let Some(tail) = rest.strip_prefix(b"UNKNOWN") {
        // The receiver must ignore anything after UNKNOWN before the CRLF.
        return match tail.first() {
            None | Some(b' ') => Ok(None),
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
    let address = match protocol {
        "TCP4" => ipv4,
        "TCP6" => ipv6,
        _ => return Err(PpError::Invalid("unknown v1 protocol")),
    };
    let source = address(source)?;
    address(destination)?;
    let source = SocketAddr::new(source, port(source_port)?);
    port(destination_port)?;
    Ok(Some(source))
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
    let source = if local {
        None
    } else {
        v2_block(family, block, address_len)?
    };
    Ok(Proxied { len: 16 + len, source })
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

/// The source of a PROXY command's block (addresses then TLVs), checking the TLVs' shape. Any
/// destination bytes are a valid address; they are not kept.
fn v2_block(family: u8, block: &[u8], address_len: usize) -> Result<Option<SocketAddr>, PpError> {
    let (addresses, tlvs) = block.split_at(address_len.min(block.len()));
    check_tlvs(tlvs)?;
    let source = match (family, addresses) {
        (0x11, &[a, b, c, d, _, _, _, _, p1, p2, _, _]) => {
            SocketAddr::from((Ipv4Addr::new(a, b, c, d), u16::from_be_bytes([p1, p2])))
        }
        (0x21, _) => ipv6_source(addresses).ok_or(PpError::Invalid("short v2 IPv6 addresses"))?,
        // UNSPEC, datagrams and AF_UNIX: the real peer stays the client.
        _ => return Ok(None),
    };
    Ok(Some(source))
}

/// The source of a 36-byte IPv6 address block (16 source, 16 destination bytes, two ports).
fn ipv6_source(block: &[u8]) -> Option<SocketAddr> {
    let source: [u8; 16] = block.get(..16)?.try_into().ok()?;
    let port = u16::from_be_bytes([*block.get(32)?, *block.get(33)?]);
    block.get(35)?; // the destination port: the block is whole
    Some(SocketAddr::from((Ipv6Addr::from(source), port)))
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
#[path = "proxy_protocol_tests.rs"]
mod tests;

#[cfg(test)]
#[path = "proxy_protocol_reference.rs"]
mod reference;

#[cfg(test)]
#[path = "proxy_protocol_props.rs"]
mod props;
