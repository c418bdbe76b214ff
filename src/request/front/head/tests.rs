//! Tests of [`super`] (head/), in a file of their own so the module stays readable.

use super::*;

const LIMITS: Limits = Limits {
    max_request_line: 64,
    max_head: 400,
};

fn run(input: &str) -> Result<Head, HeadError> {
    parse(input.as_bytes(), &LIMITS)
}

fn ok(input: &str) -> Head {
    match run(input) {
        Ok(head) => head,
        Err(e) => panic!("{input:?}: {e}"),
    }
}

/// 200 for Ok, 0 for Incomplete, else the status.
fn status(input: &[u8]) -> u16 {
    match parse(input, &LIMITS) {
        Ok(_) => 200,
        Err(HeadError::Incomplete) => 0,
        Err(HeadError::Reject(status, _)) => status,
    }
}

const GET: &str = "GET / HTTP/1.1\r\nHost: a\r\n";

/// One row per rule: input, then 200 (Ok), 0 (Incomplete) or the status of the refusal.
const ROWS: &[(&str, u16)] = &[
    // Framing of lines and leading empty lines.
    ("GET / HTTP/1.1\r\nHost: a\r\n\r\n", 200),
    ("\r\n\r\nGET / HTTP/1.1\r\nHost: a\r\n\r\n", 200),
    ("\r\n\r\n\r\n\r\nGET / HTTP/1.1\r\nHost: a\r\n\r\n", 200),
    ("\r\n\r\n\r\n\r\n\r\nGET / HTTP/1.1\r\nHost: a\r\n\r\n", 400),
    ("\r\n\r\n\r\n\r\n\r", 400),
    ("\nGET / HTTP/1.1\r\nHost: a\r\n\r\n", 400),
    ("\rGET / HTTP/1.1\r\nHost: a\r\n\r\n", 400),
    ("GET / HTTP/1.1\nHost: a\r\n\r\n", 400),
    ("GET / HTTP/1.1\rHost: a\r\n\r\n", 400),
    ("GET / HTTP/1.1\r\nHost: a\n\r\n", 400),
    ("GET / HTTP/1.1\r\nHost: a\r\r\n\r\n", 400),
    ("GET / HTTP/1.1\r\nHost: a\r\n\n", 400),
    ("GET / HTTP/1.1\r\nHost: a\r\n\rX", 400),
    ("GET / HTTP/1.1\r\nHost: a\r\n\r", 0),
    ("GET / HTTP/1.1\r\nHost: a\rb\r\n\r\n", 400),
    // Request line.
    ("GET  / HTTP/1.1\r\nHost: a\r\n\r\n", 400),
    ("GET /  HTTP/1.1\r\nHost: a\r\n\r\n", 400),
    ("GET / HTTP/1.1 \r\nHost: a\r\n\r\n", 400),
    (" GET / HTTP/1.1\r\nHost: a\r\n\r\n", 400),
    ("GET\t/ HTTP/1.1\r\nHost: a\r\n\r\n", 400),
    ("G(T / HTTP/1.1\r\nHost: a\r\n\r\n", 400),
    ("get / HTTP/1.1\r\nHost: a\r\n\r\n", 200),
    ("M-SEARCH! / HTTP/1.1\r\nHost: a\r\n\r\n", 200),
    ("GET /\r\n\r\n", 400),
    ("GET\r\n\r\n", 400),
    ("\r\n\r\n\r\n\r\n", 0),
    ("GET / HTTP/1.0\r\n\r\n", 200),
    ("GET / HTTP/1.9\r\nHost: a\r\n\r\n", 200),
    ("GET / HTTP/2.0\r\nHost: a\r\n\r\n", 505),
    ("GET / HTTP/0.9\r\nHost: a\r\n\r\n", 505),
    ("GET / HTTP/3.0\r\nHost: a\r\n\r\n", 505),
    ("GET / http/1.1\r\nHost: a\r\n\r\n", 400),
    ("GET / HTTP/1\r\nHost: a\r\n\r\n", 400),
    ("GET / HTTP/1.10\r\nHost: a\r\n\r\n", 400),
    ("GET / HTTP/1.1x\r\n", 400),
    ("GET / HTTP/11\r\n", 400),
    ("GET / HTTP/1.x\r\n", 400),
    ("GET / HTTP/1.\r\n", 400),
    ("GET / HTTQ", 400),
    // Request target bytes.
    ("GET /a%20b?c=d&e HTTP/1.1\r\nHost: a\r\n\r\n", 200),
    ("GET /a[]=1 HTTP/1.1\r\nHost: a\r\n\r\n", 200),
    ("GET /%zz HTTP/1.1\r\nHost: a\r\n\r\n", 400),
    ("GET /%2 HTTP/1.1\r\nHost: a\r\n\r\n", 400),
    ("GET /% HTTP/1.1\r\nHost: a\r\n\r\n", 400),
    ("GET /a#frag HTTP/1.1\r\nHost: a\r\n\r\n", 400),
    ("GET /a<b HTTP/1.1\r\nHost: a\r\n\r\n", 400),
    ("GET /a>b HTTP/1.1\r\nHost: a\r\n\r\n", 400),
    ("GET /a\"b HTTP/1.1\r\nHost: a\r\n\r\n", 400),
    ("GET /a\\b HTTP/1.1\r\nHost: a\r\n\r\n", 400),
    ("GET /a^b HTTP/1.1\r\nHost: a\r\n\r\n", 400),
    ("GET /a`b HTTP/1.1\r\nHost: a\r\n\r\n", 400),
    ("GET /a{b HTTP/1.1\r\nHost: a\r\n\r\n", 400),
    ("GET /a|b HTTP/1.1\r\nHost: a\r\n\r\n", 400),
    ("GET /a}b HTTP/1.1\r\nHost: a\r\n\r\n", 400),
    ("GET /a\x00b HTTP/1.1\r\nHost: a\r\n\r\n", 400),
    ("GET /a\x7fb HTTP/1.1\r\nHost: a\r\n\r\n", 400),
    ("GET /a\tb HTTP/1.1\r\nHost: a\r\n\r\n", 400),
    ("GET /caf\u{e9} HTTP/1.1\r\nHost: a\r\n\r\n", 400),
    // Target forms.
    ("GET http://a.example/x?y HTTP/1.1\r\nHost: x\r\n\r\n", 200),
    ("GET http://a.example/x?y HTTP/1.1\r\n\r\n", 400),
    ("GET HTTPS://a.example HTTP/1.1\r\nHost: x\r\n\r\n", 200),
    ("GET ftp://a.example/ HTTP/1.1\r\nHost: a\r\n\r\n", 400),
    ("GET http:/a.example/ HTTP/1.1\r\nHost: a\r\n\r\n", 400),
    ("GET http:///x HTTP/1.1\r\nHost: a\r\n\r\n", 400),
    ("GET http://u@a.example/ HTTP/1.1\r\nHost: x\r\n\r\n", 400),
    ("GET http://a.example:99999/ HTTP/1.1\r\nHost: x\r\n\r\n", 400),
    ("GET http://[::1]:8080/ HTTP/1.1\r\nHost: x\r\n\r\n", 200),
    ("GET http://[::1/ HTTP/1.1\r\nHost: x\r\n\r\n", 400),
    ("GET a.example:80 HTTP/1.1\r\nHost: a\r\n\r\n", 400),
    ("GET * HTTP/1.1\r\nHost: a\r\n\r\n", 400),
    ("OPTIONS * HTTP/1.1\r\nHost: a\r\n\r\n", 200),
    ("OPTIONS *x HTTP/1.1\r\nHost: a\r\n\r\n", 400),
    ("CONNECT a.example:443 HTTP/1.1\r\nHost: a.example:443\r\n\r\n", 200),
    ("CONNECT [::1]:443 HTTP/1.1\r\nHost: a\r\n\r\n", 200),
    ("CONNECT a.example HTTP/1.1\r\nHost: a\r\n\r\n", 400),
    ("CONNECT / HTTP/1.1\r\nHost: a\r\n\r\n", 400),
    ("CONNECT http://a.example/ HTTP/1.1\r\nHost: a\r\n\r\n", 400),
    // Field lines.
    ("GET / HTTP/1.1\r\nHost : a\r\n\r\n", 400),
    ("GET / HTTP/1.1\r\nHost\t: a\r\n\r\n", 400),
    ("GET / HTTP/1.1\r\n: a\r\nHost: a\r\n\r\n", 400),
    ("GET / HTTP/1.1\r\nHost: a\r\n folded\r\n\r\n", 400),
    ("GET / HTTP/1.1\r\nHost: a\r\nX: 1\r\n\tfolded\r\n\r\n", 400),
    ("GET / HTTP/1.1\r\n Host: a\r\n\r\n", 400),
    ("GET / HTTP/1.1\r\nHost: a\r\nNoColon\r\n\r\n", 400),
    ("GET / HTTP/1.1\r\nHost: a\r\nX(y): 1\r\n\r\n", 400),
    ("GET / HTTP/1.1\r\nHost: a\r\nX: a\x00b\r\n\r\n", 400),
    ("GET / HTTP/1.1\r\nHost: a\r\nX: a\x01b\r\n\r\n", 400),
    ("GET / HTTP/1.1\r\nHost: a\r\nX: a\x7fb\r\n\r\n", 400),
    ("GET / HTTP/1.1\r\nHost: a\r\nX: a\tb c\u{e9}\r\n\r\n", 200),
    ("GET / HTTP/1.1\r\nHost: a\r\nX:\r\n\r\n", 200),
    // Host.
    ("GET / HTTP/1.1\r\n\r\n", 400),
    ("GET / HTTP/1.1\r\nHost:\r\n\r\n", 400),
    ("GET / HTTP/1.1\r\nHost: a\r\nHost: a\r\n\r\n", 400),
    ("GET / HTTP/1.1\r\nHost: a b\r\n\r\n", 400),
    ("GET / HTTP/1.1\r\nHost: a/b\r\n\r\n", 400),
    ("GET / HTTP/1.1\r\nHost: u@a\r\n\r\n", 400),
    ("GET / HTTP/1.1\r\nHost: a:\r\n\r\n", 400),
    ("GET / HTTP/1.1\r\nHost: a:x\r\n\r\n", 400),
    ("GET / HTTP/1.1\r\nHost: a:65536\r\n\r\n", 400),
    ("GET / HTTP/1.1\r\nHost: a:65535\r\n\r\n", 200),
    ("GET / HTTP/1.1\r\nHost: :80\r\n\r\n", 400),
    ("GET / HTTP/1.1\r\nHost: [::1]\r\n\r\n", 200),
    ("GET / HTTP/1.1\r\nHost: [::1]:80\r\n\r\n", 200),
    ("GET / HTTP/1.1\r\nHost: [::g]\r\n\r\n", 400),
    ("GET / HTTP/1.1\r\nHost: [fe80::1%25eth0]\r\n\r\n", 400),
    ("GET / HTTP/1.1\r\nHost: 10.0.0.1:8080\r\n\r\n", 200),
    ("GET / HTTP/1.1\r\nHost: a%2Eb\r\n\r\n", 200),
    ("GET / HTTP/1.1\r\nHost: a%2\r\n\r\n", 400),
    ("GET / HTTP/1.1\r\nHost: caf\u{e9}\r\n\r\n", 400),
    ("GET / HTTP/1.0\r\n\r\n", 200),
    ("GET / HTTP/1.0\r\nHost:\r\n\r\n", 200),
    ("GET / HTTP/1.0\r\nHost: a\r\nHost: b\r\n\r\n", 400),
    ("GET http://a/ HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n", 400),
    ("GET http://a/ HTTP/1.1\r\nHost: a b\r\n\r\n", 400),
    ("GET http://a/ HTTP/1.1\r\nHost:\r\n\r\n", 200),
    ("OPTIONS * HTTP/1.1\r\n\r\n", 400),
    ("CONNECT a:443 HTTP/1.1\r\n\r\n", 400),
    // Content-Length.
    ("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\n\r\n", 200),
    ("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 0005\r\n\r\n", 200),
    (
        "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 18446744073709551615\r\n\r\n",
        200,
    ),
    (
        "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 18446744073709551616\r\n\r\n",
        400,
    ),
    ("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: -5\r\n\r\n", 400),
    ("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: +5\r\n\r\n", 400),
    ("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5 5\r\n\r\n", 400),
    ("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5,5\r\n\r\n", 400),
    ("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5, 6\r\n\r\n", 400),
    ("POST / HTTP/1.1\r\nHost: a\r\nContent-Length:\r\n\r\n", 400),
    ("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 0x5\r\n\r\n", 400),
    (
        "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\nContent-Length: 5\r\n\r\n",
        400,
    ),
    // Transfer-Encoding.
    ("POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n", 200),
    ("POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: CHUNKED\r\n\r\n", 200),
    (
        "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: , chunked ,\r\n\r\n",
        200,
    ),
    ("POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n", 400),
    (
        "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\nContent-Length: 5\r\n\r\n",
        400,
    ),
    (
        "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n",
        400,
    ),
    ("POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: gzip\r\n\r\n", 400),
    (
        "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked, gzip\r\n\r\n",
        400,
    ),
    (
        "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: gzip, chunked\r\n\r\n",
        501,
    ),
    (
        "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: gzip\r\nTransfer-Encoding: chunked\r\n\r\n",
        501,
    ),
    (
        "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n",
        400,
    ),
    (
        "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked, chunked\r\n\r\n",
        400,
    ),
    (
        "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked;x=1\r\n\r\n",
        400,
    ),
    (
        "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding:\r\n\r\n",
        200,
    ),
    ("POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding:\r\n\r\n", 400),
    (
        "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: \"chunked\"\r\n\r\n",
        400,
    ),
    (
        "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\u{e9}\r\n\r\n",
        400,
    ),
    ("POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: xchunked\r\n\r\n", 400),
    // Connection, Upgrade, Expect.
    ("GET / HTTP/1.1\r\nHost: a\r\nConnection: close, Foo\r\n\r\n", 200),
    ("GET / HTTP/1.1\r\nHost: a\r\nConnection: clo se\r\n\r\n", 400),
    ("GET / HTTP/1.1\r\nHost: a\r\nConnection: a/b\r\n\r\n", 400),
    (
        "GET / HTTP/1.1\r\nHost: a\r\nUpgrade: websocket, h2c/1\r\nConnection: upgrade\r\n\r\n",
        200,
    ),
    ("GET / HTTP/1.1\r\nHost: a\r\nUpgrade: web socket\r\n\r\n", 400),
    ("GET / HTTP/1.1\r\nHost: a\r\nUpgrade: a/b/c\r\n\r\n", 400),
    ("GET / HTTP/1.1\r\nHost: a\r\nExpect: 100-Continue\r\n\r\n", 200),
    ("GET / HTTP/1.1\r\nHost: a\r\nExpect: 200-ok\r\n\r\n", 417),
    ("GET / HTTP/1.1\r\nHost: a\r\nExpect: 100-continue, x\r\n\r\n", 417),
    // Partial input: incomplete, or already invalid.
    ("", 0),
    ("G", 0),
    ("GET / HTTP/1.1\r\nHost: a\r\n", 0),
    ("GET / HTTP/1.1\r\nHost", 0),
    ("GET / HTTP/1.1\r\nHost ", 400),
    ("GET / HTTP/1.1\r\nX: \x00", 400),
    ("GET / HTTP/1.1\r\n ", 400),
    ("GET /\x01", 400),
    ("GET /%zz", 400),
    ("GET /%2", 0),
    ("GE(", 400),
    ("GET / HTTP/2", 0),
    ("GET / HTTP/1.1\r\nContent-Length: 1\r\nContent-Length: 1\r\n", 400),
    ("GET / HTTP/1.1\r\nExpect: x\r\n", 417),
];

#[test]
fn table() {
    for (input, want) in ROWS {
        assert_eq!(status(input.as_bytes()), *want, "{input:?}: {:?}", run(input));
    }
}

#[test]
fn every_prefix_of_a_valid_head_is_incomplete() {
    for (input, want) in ROWS.iter().filter(|(_, want)| *want == 200) {
        let bytes = input.as_bytes();
        for cut in 0..bytes.len() {
            assert_eq!(
                parse(&bytes[..cut], &LIMITS),
                Err(HeadError::Incomplete),
                "{input:?} cut at {cut}"
            );
        }
        assert_eq!(ok(input).len, bytes.len(), "{want} {input:?}");
    }
}

#[test]
fn simple_get() {
    let input = "GET /a?b HTTP/1.1\r\nHost:  example.com:8080 \r\nAccept:*/*\r\n\r\n";
    let head = ok(input);
    assert_eq!(&input[head.method.clone()], "GET");
    assert_eq!(head.minor, 1);
    assert_eq!(head.form, TargetForm::Origin);
    assert_eq!(head.framing, Framing::None);
    assert!(!head.close && !head.upgrade && !head.expect_continue);
    assert_eq!(head.host.map(|h| &input[h]), Some("example.com:8080"));
    let canonical = "GET /a?b HTTP/1.1\r\nHost: example.com:8080\r\nAccept: */*\r\n\r\n";
    assert_eq!(String::from_utf8_lossy(&head.canonical), canonical);
}

#[test]
fn pipelined_requests_take_only_the_first_head() {
    let first = "POST /1 HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\n\r\n";
    let input = format!("{first}abcGET /2 HTTP/1.1\r\nHost: a\r\n\r\n");
    let head = ok(&input);
    assert_eq!(head.len, first.len());
    assert_eq!(head.framing, Framing::Length(3));
    let second = ok(&input[first.len() + 3..]);
    assert_eq!(second.len, input.len() - first.len() - 3);
}

#[test]
fn leading_empty_lines_count_in_len_not_in_canonical() {
    let head = ok("\r\n\r\nGET / HTTP/1.1\r\nHost: a\r\n\r\n");
    assert_eq!(head.len, 4 + GET.len() + 2);
    assert_eq!(head.canonical, format!("{GET}\r\n").into_bytes());
}

#[test]
fn absolute_form_becomes_origin_form_with_host_first() {
    let input = "GET http://b.example:81/p?q HTTP/1.1\r\nX: 1\r\nhOST: a\r\nY: 2\r\n\r\n";
    let head = ok(input);
    assert_eq!(head.form, TargetForm::Absolute);
    assert_eq!(head.host.map(|h| &input[h]), Some("b.example:81"));
    let canonical = "GET /p?q HTTP/1.1\r\nHost: b.example:81\r\nX: 1\r\nY: 2\r\n\r\n";
    assert_eq!(String::from_utf8_lossy(&head.canonical), canonical);
}

#[test]
fn absolute_form_with_empty_path() {
    let cases = [
        (
            "GET http://a HTTP/1.1\r\nHost: x\r\n\r\n",
            "GET / HTTP/1.1\r\nHost: a\r\n\r\n",
        ),
        (
            "GET http://a?x=1 HTTP/1.1\r\nHost: x\r\n\r\n",
            "GET /?x=1 HTTP/1.1\r\nHost: a\r\n\r\n",
        ),
        (
            "OPTIONS http://a HTTP/1.1\r\nHost: x\r\n\r\n",
            "OPTIONS * HTTP/1.1\r\nHost: a\r\n\r\n",
        ),
        (
            "OPTIONS http://a/ HTTP/1.1\r\nHost: x\r\n\r\n",
            "OPTIONS / HTTP/1.1\r\nHost: a\r\n\r\n",
        ),
        (
            "GET http://[::1]:8 HTTP/1.0\r\n\r\n",
            "GET / HTTP/1.0\r\nHost: [::1]:8\r\n\r\n",
        ),
    ];
    for (input, canonical) in cases {
        assert_eq!(String::from_utf8_lossy(&ok(input).canonical), canonical, "{input:?}");
    }
}

#[test]
fn other_forms_are_kept() {
    let head = ok("OPTIONS * HTTP/1.1\r\nHost: a\r\n\r\n");
    assert_eq!(head.form, TargetForm::Asterisk);
    assert!(head.canonical.starts_with(b"OPTIONS * HTTP/1.1\r\n"));
    let input = "CONNECT a.example:443 HTTP/1.1\r\nHost: h\r\n\r\n";
    let head = ok(input);
    assert_eq!(head.form, TargetForm::Authority);
    assert_eq!(head.host.map(|h| &input[h]), Some("h"));
    assert!(head.canonical.starts_with(b"CONNECT a.example:443 HTTP/1.1\r\n"));
}

#[test]
fn versions() {
    let head = ok("GET / HTTP/1.7\r\nHost: a\r\n\r\n");
    assert_eq!(head.minor, 1);
    assert!(head.canonical.starts_with(b"GET / HTTP/1.1\r\n"));
    let head = ok("GET / HTTP/1.0\r\n\r\n");
    assert_eq!((head.minor, head.host, head.close), (0, None, true));
    assert!(head.canonical.starts_with(b"GET / HTTP/1.0\r\n"));
}

#[test]
fn persistence() {
    let close = |input: &str| ok(input).close;
    assert!(!close("GET / HTTP/1.1\r\nHost: a\r\n\r\n"));
    assert!(close("GET / HTTP/1.1\r\nHost: a\r\nConnection: foo, CLOSE\r\n\r\n"));
    assert!(close("GET / HTTP/1.0\r\n\r\n"));
    assert!(!close("GET / HTTP/1.0\r\nConnection: Keep-Alive\r\n\r\n"));
    assert!(close("GET / HTTP/1.0\r\nConnection: keep-alive, close\r\n\r\n"));
    assert!(close(
        "GET / HTTP/1.1\r\nHost: a\r\nConnection: keep-alive\r\nConnection: close\r\n\r\n"
    ));
}

#[test]
fn upgrade_needs_field_option_and_http11() {
    let upgrade = |input: &str| ok(input).upgrade;
    assert!(upgrade(
        "GET / HTTP/1.1\r\nHost: a\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n"
    ));
    assert!(!upgrade("GET / HTTP/1.1\r\nHost: a\r\nUpgrade: websocket\r\n\r\n"));
    assert!(!upgrade("GET / HTTP/1.1\r\nHost: a\r\nConnection: upgrade\r\n\r\n"));
    assert!(!upgrade(
        "GET / HTTP/1.1\r\nHost: a\r\nConnection: upgrade\r\nUpgrade: ,\r\n\r\n"
    ));
    assert!(!upgrade(
        "GET / HTTP/1.0\r\nConnection: upgrade\r\nUpgrade: websocket\r\n\r\n"
    ));
}

#[test]
fn expect_continue() {
    assert!(ok("POST / HTTP/1.1\r\nHost: a\r\nExpect: 100-CONTINUE\r\n\r\n").expect_continue);
    assert!(!ok("POST / HTTP/1.0\r\nExpect: 100-continue\r\n\r\n").expect_continue);
    assert!(!ok("POST / HTTP/1.1\r\nHost: a\r\nExpect:\r\n\r\n").expect_continue);
}

#[test]
fn framing() {
    let framing = |input: &str| ok(input).framing;
    assert_eq!(
        framing("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 0042\r\n\r\n"),
        Framing::Length(42)
    );
    assert_eq!(
        framing("POST / HTTP/1.1\r\nHost: a\r\ntransfer-encoding: Chunked\r\n\r\n"),
        Framing::Chunked
    );
    assert_eq!(framing("POST / HTTP/1.1\r\nHost: a\r\n\r\n"), Framing::None);
}

#[test]
fn request_line_limit() {
    let limits = Limits {
        max_request_line: 16,
        max_head: 1000,
    };
    let exact = b"GET /23456 HTTP/1.1\r\nHost: a\r\n\r\n";
    assert_eq!(
        parse(
            exact,
            &Limits {
                max_request_line: 19,
                ..limits
            }
        )
        .map(|h| h.len),
        Ok(exact.len())
    );
    assert_eq!(
        parse(
            exact,
            &Limits {
                max_request_line: 18,
                ..limits
            }
        ),
        Err(HeadError::Reject(414, "request line too long"))
    );
    // A long line without its CRLF yet is refused once it passes the limit, not before.
    assert_eq!(
        parse(b"GET /234567890123", &limits),
        Err(HeadError::Reject(414, "request line too long"))
    );
    assert_eq!(parse(b"GET /23456789012", &limits), Err(HeadError::Incomplete));
    // ... unless its prefix is already invalid.
    assert_eq!(
        parse(b"GET /\x00", &limits),
        Err(HeadError::Reject(400, "invalid request target"))
    );
}

#[test]
fn head_limit() {
    let input = format!("{GET}X: 1\r\n\r\n");
    let exact = Limits {
        max_request_line: 100,
        max_head: input.len(),
    };
    assert_eq!(parse(input.as_bytes(), &exact).map(|h| h.len), Ok(input.len()));
    let short = Limits {
        max_head: input.len() - 1,
        ..exact
    };
    assert_eq!(
        parse(input.as_bytes(), &short),
        Err(HeadError::Reject(431, "request head too large"))
    );
    // Incomplete heads are refused as soon as they pass the limit.
    assert_eq!(
        parse(&input.as_bytes()[..input.len() - 1], &short),
        Err(HeadError::Incomplete)
    );
    let long = format!("{GET}X: {}", "y".repeat(input.len()));
    assert_eq!(
        parse(long.as_bytes(), &exact),
        Err(HeadError::Reject(431, "request head too large"))
    );
    // Leading empty lines do not count.
    let lead = format!("\r\n\r\n{input}");
    assert_eq!(parse(lead.as_bytes(), &exact).map(|h| h.len), Ok(lead.len()));
    // A head limit below the request line limit still holds.
    let tiny = Limits {
        max_request_line: 100,
        max_head: 8,
    };
    assert_eq!(
        parse(b"GET /aaaaaaaa", &tiny),
        Err(HeadError::Reject(431, "request head too large"))
    );
}

#[test]
fn field_count_limit() {
    let fields = |n: usize| format!("{GET}{}\r\n", "X: 1\r\n".repeat(n));
    let big = Limits {
        max_request_line: 100,
        max_head: 10_000,
    };
    assert!(parse(fields(MAX_FIELDS - 1).as_bytes(), &big).is_ok());
    let too_many = fields(MAX_FIELDS);
    assert_eq!(
        parse(too_many.as_bytes(), &big),
        Err(HeadError::Reject(431, "too many header fields"))
    );
    // Refused as soon as the extra field starts.
    let started = format!("{GET}{}X", "X: 1\r\n".repeat(MAX_FIELDS - 1));
    assert_eq!(
        parse(started.as_bytes(), &big),
        Err(HeadError::Reject(431, "too many header fields"))
    );
}

#[test]
fn obs_text_is_kept_in_values() {
    let head = parse(b"GET / HTTP/1.1\r\nHost: a\r\nX: \xff\x80 \r\n\r\n", &LIMITS);
    let head = head.map(|h| h.canonical);
    assert_eq!(
        head.as_deref(),
        Ok(&b"GET / HTTP/1.1\r\nHost: a\r\nX: \xff\x80\r\n\r\n"[..])
    );
}

#[test]
fn errors_display() {
    assert_eq!(HeadError::Reject(400, "bare LF").to_string(), "400: bare LF");
    assert_eq!(HeadError::Incomplete.to_string(), "incomplete request head");
}

use crate::testing::rng::XorShift;

const INTERESTING: &[u8] = b"\r\n \t:,;/?%#*@[]\"\x00\x7f\x80\xff0aAzZ-";

/// Changes, inserts, deletes or truncates a few bytes of `input`.
fn mutate(rng: &mut XorShift, input: &mut Vec<u8>) {
    for _ in 0..=rng.below(3) {
        let at = rng.below(input.len() + 1);
        let byte = match rng.below(2) {
            0 => INTERESTING[rng.below(INTERESTING.len())],
            _ => rng.next() as u8,
        };
        match rng.below(4) {
            0 if at < input.len() => input[at] = byte,
            1 => input.insert(at, byte),
            2 if at < input.len() => {
                input.remove(at);
            }
            _ => input.truncate(at),
        }
    }
}

#[test]
fn mutations_never_panic_and_canonical_heads_reparse() {
    let seeds: Vec<&str> = ROWS.iter().filter(|(_, s)| *s == 200).map(|(i, _)| *i).collect();
    let mut rng = XorShift(0x9E37_79B9_7F4A_7C15);
    let reparse = Limits {
        max_request_line: 1000,
        max_head: 10_000,
    };
    let mut accepted = 0;
    for _ in 0..100_000 {
        let mut input = seeds[rng.below(seeds.len())].as_bytes().to_vec();
        mutate(&mut rng, &mut input);
        let head = match parse(&input, &LIMITS) {
            Ok(head) => head,
            Err(HeadError::Incomplete) => continue,
            Err(refused) => {
                // Refusals are final: more bytes never make a refused prefix acceptable.
                input.extend_from_slice(b"\r\n\r\n");
                assert!(
                    matches!(parse(&input, &LIMITS), Err(HeadError::Reject(..))),
                    "{input:?} {refused}"
                );
                continue;
            }
        };
        accepted += 1;
        assert!(head.len <= input.len());
        for cut in 0..head.len {
            assert_eq!(
                parse(&input[..cut], &LIMITS),
                Err(HeadError::Incomplete),
                "{input:?} cut at {cut}"
            );
        }
        let again = parse(&head.canonical, &reparse).unwrap_or_else(|e| panic!("{input:?}: {e}"));
        assert_eq!(again.canonical, head.canonical, "{input:?}");
        let host_of = |h: &Head, buf: &[u8]| h.host.clone().map(|r| buf[r].to_vec());
        assert_eq!(
            (again.framing, host_of(&again, &head.canonical), again.minor),
            (head.framing, host_of(&head, &input), head.minor)
        );
        assert_eq!(
            (again.close, again.upgrade, again.expect_continue),
            (head.close, head.upgrade, head.expect_continue)
        );
    }
    assert!(accepted > 1000, "only {accepted} mutated heads accepted");
}

#[test]
fn random_bytes_are_refused_or_incomplete_and_nothing_passes_zero_limits() {
    let mut rng = XorShift(42);
    let (mut incomplete, mut refused) = (0, 0);
    let zero = Limits {
        max_request_line: 0,
        max_head: 0,
    };
    for _ in 0..20_000 {
        let len = rng.below(80);
        let input: Vec<u8> = (0..len).map(|_| INTERESTING[rng.below(INTERESTING.len())]).collect();
        match parse(&input, &LIMITS) {
            // Random bytes rarely make a request; one that does ends where its blank line does.
            Ok(head) => assert!(
                head.len <= input.len() && input[..head.len].ends_with(b"\n"),
                "{input:?}"
            ),
            Err(HeadError::Incomplete) => incomplete += 1,
            Err(_) => refused += 1,
        }
        assert!(parse(&input, &zero).is_err(), "{input:?} passed zero limits");
    }
    assert!(
        incomplete > 100 && refused > 10_000,
        "{incomplete} incomplete, {refused} refused"
    );
}

/// httparse (the parser Pingora uses) as an oracle: it is laxer than lb's parser (bare LF,
/// bytes ≥ 0x80 in targets), so every head lb accepts, mutated or not, httparse must accept
/// too, ending at the same byte, with the same method and version.
#[test]
fn httparse_accepts_every_head_lb_accepts_and_agrees_on_where_it_ends() {
    let seeds: Vec<&str> = ROWS.iter().filter(|(_, s)| *s == 200).map(|(i, _)| *i).collect();
    let mut rng = XorShift(0x0DDB_1A5E_5BAD_5EED);
    let mut compared = 0;
    for i in 0..100_000 {
        let mut input = seeds[rng.below(seeds.len())].as_bytes().to_vec();
        if i % 4 != 0 {
            mutate(&mut rng, &mut input);
        }
        let Ok(head) = parse(&input, &LIMITS) else { continue };
        // lb takes any HTTP/1.x as 1.1 (RFC 9112 §2.3); httparse knows 1.0 and 1.1 only.
        let line = &input[head.method.start..];
        let line = &line[..line.iter().position(|&b| b == b'\n').unwrap_or(line.len())];
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        if !(line.ends_with(b" HTTP/1.0") || line.ends_with(b" HTTP/1.1")) {
            continue;
        }
        let mut fields = [httparse::EMPTY_HEADER; 128];
        let mut oracle = httparse::Request::new(&mut fields);
        let parsed = oracle.parse(&input);
        assert!(
            matches!(parsed, Ok(httparse::Status::Complete(n)) if n == head.len),
            "{:?}: lb took {} bytes, httparse {parsed:?}",
            String::from_utf8_lossy(&input),
            head.len
        );
        assert_eq!(oracle.method.map(str::as_bytes), Some(&input[head.method.clone()]));
        assert_eq!(
            oracle.version,
            Some(head.minor),
            "{:?}",
            String::from_utf8_lossy(&input)
        );
        compared += 1;
    }
    assert!(compared > 25_000, "only {compared} heads compared");
}
