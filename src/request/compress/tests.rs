use super::*;
use crate::config::Size;
use std::io::Read;

fn compression(min_size: u64) -> Compression {
    let conf = CompressConf {
        algorithms: vec![Encoding::Zstd, Encoding::Br, Encoding::Gzip],
        types: vec!["text/*".into(), "application/json".into()],
        min_size: Size(min_size),
        level: 5,
    };
    Compression::of(Some("unit-test"), &conf)
}

fn request(method: &str, headers: &[(&str, &str)]) -> RequestHeader {
    let mut req = RequestHeader::build(method, b"/", None).unwrap();
    for (name, value) in headers {
        req.append_header(name.to_string(), *value).unwrap();
    }
    req
}

fn response(status: u16, headers: &[(&str, &str)]) -> ResponseHeader {
    let mut resp = ResponseHeader::build(status, None).unwrap();
    for (name, value) in headers {
        resp.append_header(name.to_string(), *value).unwrap();
    }
    resp
}

const JSON: (&str, &str) = ("Content-Type", "application/json; charset=utf-8");

#[test]
fn compresses_listed_types_the_client_accepts() {
    let c = compression(1024);
    let req = request("GET", &[("Accept-Encoding", "gzip, br")]);
    assert_eq!(
        c.verdict(&req, &response(200, &[JSON])),
        Verdict::Compress(Encoding::Br)
    );
    let html = response(404, &[("Content-Type", "TEXT/HTML"), ("Content-Length", "5000")]);
    assert_eq!(c.verdict(&req, &html), Verdict::Compress(Encoding::Br));
}

#[test]
fn leaves_what_it_must_not_touch() {
    let c = compression(1024);
    let gzip = [("Accept-Encoding", "gzip")];
    let get = request("GET", &gzip);
    let leave = |req: &RequestHeader, resp: ResponseHeader| assert_eq!(c.verdict(req, &resp), Verdict::Leave);
    leave(&request("HEAD", &gzip), response(200, &[JSON]));
    leave(
        &request("GET", &[gzip[0], ("Range", "bytes=0-9")]),
        response(200, &[JSON]),
    );
    for status in [101, 204, 206, 304] {
        leave(&get, response(status, &[JSON]));
    }
    leave(&get, response(200, &[JSON, ("Content-Encoding", "br")]));
    leave(&get, response(200, &[JSON, ("Content-Length", "1023")]));
    leave(&get, response(200, &[JSON, ("Content-Length", "0")]));
    leave(&get, response(200, &[("Content-Type", "image/png")]));
    leave(&get, response(200, &[]));
    leave(&get, response(200, &[JSON, ("Cache-Control", "public, No-Transform")]));
}

#[test]
fn a_client_that_could_have_had_it_gets_vary() {
    let c = compression(1024);
    let resp = response(200, &[JSON, ("Content-Length", "1024")]);
    assert_eq!(c.verdict(&request("GET", &[]), &resp), Verdict::Vary);
    assert_eq!(
        c.verdict(&request("GET", &[("Accept-Encoding", "gzip;q=0")]), &resp),
        Verdict::Vary
    );
    let mut old = request("GET", &[("Accept-Encoding", "gzip")]);
    old.set_version(Version::HTTP_10);
    assert_eq!(c.verdict(&old, &resp), Verdict::Vary);
}

#[test]
fn apply_edits_the_head() {
    let c = compression(16);
    let req = request("GET", &[("Accept-Encoding", "gzip")]);
    let mut resp = response(
        200,
        &[
            JSON,
            ("Content-Length", "100"),
            ("ETag", "\"v1\""),
            ("Accept-Ranges", "bytes"),
            ("Vary", "Origin"),
        ],
    );
    let encoder = c.apply(&req, &mut resp, true).unwrap().expect("compressed");
    assert_eq!(encoder.encoding(), Encoding::Gzip);
    let h = |name: &str| resp.headers.get(name).map(|v| v.to_str().unwrap().to_string());
    assert_eq!(h("content-encoding").as_deref(), Some("gzip"));
    assert_eq!(h("content-length"), None);
    assert_eq!(h("accept-ranges"), None);
    assert_eq!(h("etag").as_deref(), Some("W/\"v1\""));
    assert_eq!(h("vary").as_deref(), Some("Origin, Accept-Encoding"));
    assert_eq!(h("transfer-encoding").as_deref(), Some("chunked"));
}

#[test]
fn vary_is_added_once() {
    for (before, after) in [
        (vec![], "Accept-Encoding"),
        (vec!["accept-encoding"], "accept-encoding"),
        (vec!["*"], "*"),
        (vec!["Origin", "Cookie"], "Origin, Cookie, Accept-Encoding"),
        (vec!["Origin, Accept-Encoding"], "Origin, Accept-Encoding"),
    ] {
        let mut resp = response(200, &[]);
        for v in &before {
            resp.append_header("Vary", *v).unwrap();
        }
        add_vary(&mut resp).unwrap();
        let all: Vec<_> = resp.headers.get_all(VARY).iter().map(|v| v.to_str().unwrap()).collect();
        let joined = all.join(", ");
        assert_eq!(joined, after, "{before:?}");
    }
}

#[test]
fn etags_weakened_like_nginx() {
    for (before, after) in [("\"x\"", Some("W/\"x\"")), ("W/\"x\"", Some("W/\"x\"")), ("x", None)] {
        let mut resp = response(200, &[("ETag", before)]);
        weaken_etag(&mut resp).unwrap();
        assert_eq!(resp.headers.get(ETAG).map(|v| v.to_str().unwrap()), after);
    }
}

fn decode(encoding: Encoding, bytes: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    match encoding {
        Encoding::Gzip => flate2::read::GzDecoder::new(bytes).read_to_end(&mut out).map(drop),
        Encoding::Br => brotli::Decompressor::new(bytes, 4096).read_to_end(&mut out).map(drop),
        Encoding::Zstd => zstd::stream::read::Decoder::new(bytes)
            .and_then(|mut d| d.read_to_end(&mut out))
            .map(drop),
    }
    .unwrap();
    out
}

/// The longest prefix of the body a decoder yields from an unfinished stream.
fn decode_prefix(encoding: Encoding, bytes: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    let mut buf = [0u8; 1024];
    let mut reader: Box<dyn Read> = match encoding {
        Encoding::Gzip => Box::new(flate2::read::GzDecoder::new(bytes)),
        Encoding::Br => Box::new(brotli::Decompressor::new(bytes, 4096)),
        Encoding::Zstd => Box::new(zstd::stream::read::Decoder::new(bytes).unwrap()),
    };
    while let Ok(n) = reader.read(&mut buf) {
        if n == 0 {
            break;
        }
        out.extend_from_slice(&buf[..n]);
    }
    out
}

#[test]
fn every_piece_is_decodable_when_flushed_and_the_whole_round_trips() {
    let first = b"{\"first\": \"piece\"}\n".repeat(50);
    let last = b"{\"last\": \"piece\"}\n".repeat(50);
    for encoding in stats::ENCODINGS {
        let counters = Arc::new(Counters::default());
        let mut encoder = Encoder::new(encoding, 5, Arc::clone(&counters)).unwrap();
        let a = encoder.encode(&first, false).unwrap();
        assert!(!a.is_empty(), "{encoding:?}");
        assert_eq!(
            decode_prefix(encoding, &a),
            first,
            "{encoding:?}: the first piece alone"
        );
        assert!(encoder.encode(&[], false).unwrap().is_empty());
        let b = encoder.encode(&last, true).unwrap();
        assert!(
            encoder.encode(b"more", true).unwrap().is_empty(),
            "nothing after the end"
        );
        let whole = [&a[..], &b[..]].concat();
        assert_eq!(
            decode(encoding, &whole),
            [&first[..], &last[..]].concat(),
            "{encoding:?}"
        );
        let (n, bytes_in, bytes_out) = counters.read(encoding);
        assert_eq!(
            (n, bytes_in, bytes_out),
            (1, (first.len() + last.len()) as u64, whole.len() as u64)
        );
        assert!(bytes_out < bytes_in / 4, "{encoding:?}: {bytes_out} bytes");
    }
}

#[test]
fn an_empty_body_ends_a_valid_stream() {
    for encoding in stats::ENCODINGS {
        let mut encoder = Encoder::new(encoding, 1, Arc::default()).unwrap();
        let out = encoder.encode(&[], true).unwrap();
        assert!(decode(encoding, &out).is_empty(), "{encoding:?}");
    }
}
