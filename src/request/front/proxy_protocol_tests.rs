//! Tests of [`super`] (proxy_protocol.rs), in a file of their own so the module stays readable.

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
    };
    assert_eq!(proxied, Ok(want));
}

#[test]
fn v1_tcp6() {
    let input = b"PROXY TCP6 2001:db8::1 ::ffff:10.0.0.1 0 65535\r\n";
    let want = Proxied {
        len: input.len(),
        source: addr("[2001:db8::1]:0"),
    };
    assert_eq!(parse(input), Ok(want));
}

#[test]
fn v1_unknown() {
    for input in [&b"PROXY UNKNOWN\r\n"[..], b"PROXY UNKNOWN anything \x01 goes\r\nrest"] {
        let len = input.iter().position(|&b| b == b'\n').map_or(0, |i| i + 1);
        assert_eq!(parse(input), Ok(Proxied { len, source: None }));
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
    };
    assert_eq!(parse(&input), Ok(want));
}

#[test]
fn v2_tcp6() {
    let input = v2_header(0x21, 0x21, &ipv6_block());
    let want = Proxied {
        len: 52,
        source: addr("[2001:db8::1]:65535"),
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
    let none = |input: &[u8]| parse(input).map(|p| (p.len, p.source));
    // LOCAL: any block is skipped, even a short one.
    assert_eq!(none(&v2_header(0x20, 0x00, &[])), Ok((16, None)));
    assert_eq!(none(&v2_header(0x20, 0x11, &IPV4_BLOCK)), Ok((28, None)));
    assert_eq!(none(&v2_header(0x20, 0x11, &[])), Ok((16, None)));
    assert_eq!(none(&v2_header(0x20, 0x00, &[1, 2, 3])), Ok((19, None)));
    // PROXY with UNSPEC, UDP or AF_UNIX.
    assert_eq!(none(&v2_header(0x21, 0x00, &[])), Ok((16, None)));
    assert_eq!(none(&v2_header(0x21, 0x12, &IPV4_BLOCK)), Ok((28, None)));
    assert_eq!(none(&v2_header(0x21, 0x22, &ipv6_block())), Ok((52, None)));
    assert_eq!(none(&v2_header(0x21, 0x31, &[0; 216])), Ok((232, None)));
    assert_eq!(none(&v2_header(0x21, 0x32, &[0; 216])), Ok((232, None)));
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
            // What is accepted is accepted from its own bytes alone, and no prefix of it is refused.
            assert_eq!(parse(&input[..proxied.len]), Ok(proxied));
            let cut = (next() % proxied.len as u64) as usize;
            assert_eq!(parse(&input[..cut]), Err(PpError::Incomplete), "{input:?} cut at {cut}");
        }
    }
}
