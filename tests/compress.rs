//! Response compression through the real binary (issue 21): Debian's curl with `--compressed`
//! gets each of zstd, br and gzip and the body round-trips, with `Vary: Accept-Encoding`, a weak
//! `ETag` and no `Content-Length`; the client's q-values and the route's order of preference
//! decide; HEAD, 204, 304, Range and 206, small, already encoded, `no-transform` and unlisted
//! responses pass untouched; a streamed response's first chunk reaches the client, decodable,
//! before the backend sends the last; the counters in `/metrics` add up (and pass `promtool`).
//! Every test passes on both request loops (`LB_PROXY_PATH=pingora` for Pingora's), and on lb's
//! own loop the requests stay on it.

mod common;

use common::{eventually, Lb, PATIENCE};
use std::io::{Read, Write};
use std::net::SocketAddr;
use std::process::Command;
use std::sync::{Arc, Mutex};
use std::time::Instant;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Notify;

/// The compressible body: 16 KiB-ish of JSON.
fn json() -> Vec<u8> {
    let items: Vec<String> = (0..400)
        .map(|i| format!("{{\"id\":{i},\"name\":\"item {i}\"}}"))
        .collect();
    format!("[{}]", items.join(",")).into_bytes()
}

/// gzip of `body`, for the backend's already-encoded answer.
fn gzipped(body: &[u8]) -> Vec<u8> {
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    gz.write_all(body).expect("gzip");
    gz.finish().expect("gzip")
}

/// The backend's first and last chunk of `/stream`.
const FIRST: &str = "the first chunk, sent at once;";
const LAST: &str = "the last chunk, sent once the client saw the first.";

/// A backend whose answer depends on the path: `/stream` sends its first chunk, then waits for
/// `release` (or the test's patience) before the last.
struct Backend {
    addr: SocketAddr,
    release: Arc<Notify>,
    task: tokio::task::JoinHandle<()>,
}

impl Backend {
    async fn start() -> Backend {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        let release = Arc::new(Notify::new());
        let notify = Arc::clone(&release);
        let task = tokio::spawn(async move {
            while let Ok((conn, _)) = listener.accept().await {
                tokio::spawn(serve(conn, Arc::clone(&notify)));
            }
        });
        Backend { addr, release, task }
    }
}

impl Drop for Backend {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// One request per connection (the backend closes after answering).
async fn serve(mut conn: TcpStream, release: Arc<Notify>) {
    let mut head = Vec::new();
    let mut buf = [0u8; 4096];
    while !head.windows(4).any(|w| w == b"\r\n\r\n") {
        match conn.read(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(n) => head.extend_from_slice(&buf[..n]),
        }
    }
    let head = String::from_utf8_lossy(&head).to_ascii_lowercase();
    let mut words = head.split_whitespace();
    let (method, path) = (words.next().unwrap_or(""), words.next().unwrap_or(""));
    if path == "/stream" {
        let start = "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nTransfer-Encoding: chunked\r\n\r\n";
        let first = format!("{start}{:x}\r\n{FIRST}\r\n", FIRST.len());
        let _ = conn.write_all(first.as_bytes()).await;
        let _ = tokio::time::timeout(PATIENCE, release.notified()).await;
        let last = format!("{:x}\r\n{LAST}\r\n0\r\n\r\n", LAST.len());
        let _ = conn.write_all(last.as_bytes()).await;
        return;
    }
    let (status, headers, body) = answer(path, head.contains("\r\nrange:"));
    let mut out = format!("HTTP/1.1 {status}\r\nConnection: close\r\n{headers}");
    if !status.starts_with("204") && !status.starts_with("304") {
        out.push_str(&format!("Content-Length: {}\r\n", body.len()));
    }
    let mut bytes = format!("{out}\r\n").into_bytes();
    if method != "head" {
        bytes.extend_from_slice(&body);
    }
    let _ = conn.write_all(&bytes).await;
}

/// Status line, extra header lines and body of the answer to `path`.
fn answer(path: &str, range: bool) -> (&'static str, String, Vec<u8>) {
    let json_type = "Content-Type: application/json\r\n";
    let body = json();
    match path.trim_start_matches("/g") {
        "/json" => (
            "200 OK",
            format!("{json_type}ETag: \"v1\"\r\nVary: Origin\r\nAccept-Ranges: bytes\r\n"),
            body,
        ),
        "/text" => ("200 OK", "Content-Type: text/html; charset=utf-8\r\n".into(), body),
        "/small" => ("200 OK", json_type.into(), body[..1023].to_vec()),
        "/png" => ("200 OK", "Content-Type: image/png\r\n".into(), body),
        "/encoded" => (
            "200 OK",
            format!("{json_type}Content-Encoding: gzip\r\n"),
            gzipped(&body),
        ),
        "/no-transform" => ("200 OK", format!("{json_type}Cache-Control: no-transform\r\n"), body),
        "/empty" => ("204 No Content", json_type.into(), Vec::new()),
        "/cached" => ("304 Not Modified", format!("{json_type}ETag: \"v1\"\r\n"), Vec::new()),
        "/range" if range => (
            "206 Partial Content",
            format!("{json_type}Content-Range: bytes 0-99/{}\r\n", body.len()),
            body[..100].to_vec(),
        ),
        "/range" => ("200 OK", json_type.into(), body),
        _ => (
            "404 Not Found",
            "Content-Type: text/plain\r\n".into(),
            b"no such path".to_vec(),
        ),
    }
}

fn yaml(backend: SocketAddr, metrics: SocketAddr) -> String {
    format!(
        "listeners: [{{address: \"{{listen}}\"}}]
metrics: {{address: \"{metrics}\"}}
upstreams:
  web:
    backends: [{{address: \"{backend}\"}}]
routes:
  - name: gzip-only
    match: {{path_prefix: /g/}}
    upstream: web
    request: {{strip_prefix: /g}}
    compress: {{algorithms: [gzip], types: [application/json]}}
  - name: all
    path_prefix: /
    upstream: web
    compress: {{algorithms: [zstd, br, gzip], types: [text/*, application/json], min_size: 1KiB}}
"
    )
}

/// What curl got: status, header fields (names in lower case) and body.
struct Got {
    status: u16,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl Got {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(n, _)| n == name).map(|(_, v)| v.as_str())
    }
}

/// `curl` to `path` on `lb` with `args`; with `--compressed` curl decodes what it gets.
async fn curl(lb: &Lb, path: &str, args: &[&str]) -> Got {
    let url = format!("http://{}{path}", lb.addr);
    let (head, body) = (lb.dir.path("head.txt"), lb.dir.path("body.bin"));
    let mut command = Command::new("curl");
    command
        .args(["-sS", "--max-time", "30", "-D"])
        .arg(&head)
        .arg("-o")
        .arg(&body);
    command.args(args).arg(&url);
    let out = tokio::task::spawn_blocking(move || command.output())
        .await
        .expect("join")
        .expect("curl is missing: run scripts/setup (Debian package curl)");
    assert!(
        out.status.success(),
        "curl {args:?} {url}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let head = std::fs::read_to_string(&head).expect("head");
    let mut lines = head.lines();
    let status = lines
        .next()
        .and_then(|l| l.split(' ').nth(1))
        .and_then(|s| s.parse().ok());
    let headers = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(n, v)| (n.trim().to_ascii_lowercase(), v.trim().to_string()))
        .collect();
    let body = std::fs::read(&body).unwrap_or_default();
    Got {
        status: status.unwrap_or(0),
        headers,
        body,
    }
}

/// A sample of the exposition at `metrics` (0 when absent).
async fn metric(metrics: SocketAddr, sample: &str) -> f64 {
    let text = common::client::get(metrics, "/metrics")
        .await
        .map(|r| r.text())
        .unwrap_or_default();
    common::metric_value(&text, sample).unwrap_or(0.0)
}

/// On lb's own loop (the default), every request of the test was served by it.
async fn stayed_on_lbs_own_loop(metrics: SocketAddr, requests: f64) {
    if std::env::var("LB_PROXY_PATH").is_ok_and(|p| p == "pingora") {
        return;
    }
    let own = "lb_http1_requests_total{path=\"lb\"}";
    let counted = eventually(PATIENCE, async || metric(metrics, own).await >= requests).await;
    let pingora = metric(metrics, "lb_http1_requests_total{path=\"pingora\"}").await;
    assert!(
        counted && pingora == 0.0,
        "own loop: {}, pingora: {pingora}",
        metric(metrics, own).await
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn curl_gets_each_encoding_and_the_body_round_trips() {
    let backend = Backend::start().await;
    let metrics = common::free_addr();
    let lb = Lb::start(&yaml(backend.addr, metrics));
    let body = json();
    for algorithm in ["zstd", "br", "gzip"] {
        let accept = format!("Accept-Encoding: {algorithm}");
        let got = curl(&lb, "/json", &["--compressed", "-H", &accept]).await;
        assert_eq!(got.status, 200);
        assert_eq!(got.header("content-encoding"), Some(algorithm), "{accept}");
        assert!(got.body == body, "{accept}: the body did not round-trip");
        assert_eq!(got.header("content-length"), None, "{accept}");
        assert_eq!(got.header("transfer-encoding"), Some("chunked"), "{accept}");
        assert_eq!(got.header("vary"), Some("Origin, Accept-Encoding"), "{accept}");
        assert_eq!(got.header("etag"), Some("W/\"v1\""), "{accept}");
        assert_eq!(got.header("accept-ranges"), None, "{accept}");
    }
    // curl's own Accept-Encoding (deflate, gzip, br, zstd): the route's order decides.
    let got = curl(&lb, "/text", &["--compressed"]).await;
    assert_eq!(got.header("content-encoding"), Some("zstd"));
    assert!(got.body == body);
    let raw = curl(&lb, "/text", &["-H", "Accept-Encoding: gzip"]).await;
    assert!(
        raw.body.len() * 4 < body.len(),
        "gzip: {} bytes of {}",
        raw.body.len(),
        body.len()
    );
    // A route that offers gzip only.
    let got = curl(&lb, "/g/json", &["--compressed"]).await;
    assert_eq!(got.header("content-encoding"), Some("gzip"));
    assert!(got.body == body);
    let sample = |algorithm: &str, direction: &str| {
        format!("lb_compression_bytes_total{{route=\"all\",algorithm=\"{algorithm}\",direction=\"{direction}\"}}")
    };
    let len = body.len() as f64;
    assert_eq!(metric(metrics, &sample("zstd", "in")).await, 2.0 * len);
    assert_eq!(metric(metrics, &sample("br", "in")).await, len);
    assert_eq!(metric(metrics, &sample("gzip", "in")).await, 2.0 * len);
    for algorithm in ["zstd", "br", "gzip"] {
        let out = metric(metrics, &sample(algorithm, "out")).await;
        assert!(out > 0.0 && out < len / 2.0, "{algorithm} out: {out}");
    }
    let responses = "lb_compressed_responses_total{route=\"gzip-only\",algorithm=\"gzip\"}";
    assert_eq!(metric(metrics, responses).await, 1.0);
    assert_eq!(
        metric(
            metrics,
            "lb_compressed_responses_total{route=\"all\",algorithm=\"zstd\"}"
        )
        .await,
        2.0
    );
    let text = common::client::get(metrics, "/metrics")
        .await
        .map(|r| r.text())
        .unwrap_or_default();
    let (ok, said) = common::promtool(&text);
    assert!(ok, "promtool check metrics: {said}");
    stayed_on_lbs_own_loop(metrics, 6.0).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn q_values_decide_and_a_refusal_still_gets_vary() {
    let backend = Backend::start().await;
    let metrics = common::free_addr();
    let lb = Lb::start(&yaml(backend.addr, metrics));
    let body = json();
    for (accept, expected) in [
        ("zstd;q=0, br;q=0.5, gzip", Some("gzip")),
        ("zstd;q=0.2, br;q=0.9, gzip;q=0.5", Some("br")),
        ("*;q=0, gzip;q=0.1", Some("gzip")),
        ("*", Some("zstd")),
        ("gzip;q=0.5, identity", None),
        ("zstd;q=0, br;q=0, gzip;q=0", None),
        ("*;q=0", None),
        ("deflate", None),
        ("", None),
    ] {
        // `Name;` is how curl sends a field with an empty value.
        let field = match accept {
            "" => "Accept-Encoding;".to_string(),
            _ => format!("Accept-Encoding: {accept}"),
        };
        let got = curl(&lb, "/json", &["--compressed", "-H", &field]).await;
        assert_eq!(got.header("content-encoding"), expected, "{accept:?}");
        assert!(got.body == body, "{accept:?}");
        assert_eq!(got.header("vary"), Some("Origin, Accept-Encoding"), "{accept:?}");
        if expected.is_none() {
            assert_eq!(got.header("etag"), Some("\"v1\""), "{accept:?}");
            assert_eq!(
                got.header("content-length"),
                Some(&*body.len().to_string()),
                "{accept:?}"
            );
        }
    }
    stayed_on_lbs_own_loop(metrics, 9.0).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn responses_that_must_stay_as_they_are_pass_untouched() {
    let backend = Backend::start().await;
    let metrics = common::free_addr();
    let lb = Lb::start(&yaml(backend.addr, metrics));
    let body = json();
    let accept = ["-H", "Accept-Encoding: zstd, br, gzip"];
    let with = |more: &'static [&'static str]| [&accept[..], more].concat();
    let encoded = gzipped(&body);
    // `None`: a HEAD, whose head curl writes where the body would go.
    for (path, args, status, expected) in [
        ("/json", with(&["-I"]), 200, None),
        ("/empty", with(&[]), 204, Some(Vec::new())),
        ("/cached", with(&["-H", "If-None-Match: \"v1\""]), 304, Some(Vec::new())),
        (
            "/range",
            with(&["-H", "Range: bytes=0-99"]),
            206,
            Some(body[..100].to_vec()),
        ),
        // The backend ignores the Range: lb does not compress an answer to a range request.
        ("/json", with(&["-H", "Range: bytes=0-99"]), 200, Some(body.clone())),
        ("/small", with(&[]), 200, Some(body[..1023].to_vec())),
        ("/png", with(&[]), 200, Some(body.clone())),
        ("/encoded", with(&[]), 200, Some(encoded.clone())),
        ("/no-transform", with(&[]), 200, Some(body.clone())),
        // HTTP/1.0: no chunked framing for a compressed body of unknown length (nginx's
        // gzip_http_version 1.1).
        ("/json", with(&["--http1.0"]), 200, Some(body.clone())),
    ] {
        let got = curl(&lb, path, &args).await;
        let what = format!("{path} {args:?}");
        assert_eq!(got.status, status, "{what}");
        let encoding = got.header("content-encoding");
        assert_eq!(encoding, (path == "/encoded").then_some("gzip"), "{what}");
        if let Some(expected) = expected {
            assert!(got.body == expected, "{what}: {} bytes", got.body.len());
        }
        if path == "/json" && status == 200 && !args.contains(&"-I") {
            assert_eq!(got.header("content-length"), Some(&*body.len().to_string()), "{what}");
        }
    }
    // HEAD keeps the GET's length and strong ETag.
    let head = curl(&lb, "/json", &with(&["-I"])).await;
    assert_eq!(head.header("content-length"), Some(&*body.len().to_string()));
    assert_eq!(head.header("etag"), Some("\"v1\""));
    stayed_on_lbs_own_loop(metrics, 11.0).await;
}

/// Decodes one content-coding as the bytes arrive, into a shared buffer.
struct Sink(Arc<Mutex<Vec<u8>>>);

impl Write for Sink {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().expect("lock").extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

fn decoder(algorithm: &str, out: &Arc<Mutex<Vec<u8>>>) -> Box<dyn Write + Send> {
    let sink = Sink(Arc::clone(out));
    match algorithm {
        "gzip" => Box::new(flate2::write::GzDecoder::new(sink)),
        "br" => Box::new(brotli::DecompressorWriter::new(sink, 4096)),
        _ => Box::new(zstd::stream::write::Decoder::new(sink).expect("zstd")),
    }
}

/// Takes the complete chunks at the start of `buf` (HTTP/1.1 chunked framing): their data, and
/// whether the last chunk came.
fn take_chunks(buf: &mut Vec<u8>) -> (Vec<u8>, bool) {
    let mut data = Vec::new();
    loop {
        let Some(line_end) = buf.windows(2).position(|w| w == b"\r\n") else {
            return (data, false);
        };
        let size_text = String::from_utf8_lossy(&buf[..line_end]).to_string();
        let size = usize::from_str_radix(size_text.split(';').next().unwrap_or("").trim(), 16).expect("chunk size");
        let need = line_end + 2 + size + 2;
        if buf.len() < need {
            return (data, false);
        }
        data.extend_from_slice(&buf[line_end + 2..line_end + 2 + size]);
        buf.drain(..need);
        if size == 0 {
            return (data, true);
        }
    }
}

/// Reads the chunked response on `conn` (head first), decoding with `algorithm`, until `until`
/// holds for what is decoded so far, the body ends, or the deadline passes.
struct Stream {
    conn: TcpStream,
    buf: Vec<u8>,
    head: Option<String>,
    decoder: Box<dyn Write + Send>,
    decoded: Arc<Mutex<Vec<u8>>>,
    ended: bool,
}

impl Stream {
    async fn read_until(&mut self, deadline: Instant, until: impl Fn(&[u8]) -> bool) -> bool {
        let mut piece = [0u8; 16384];
        while !until(&self.decoded.lock().expect("lock")) {
            if self.ended {
                return false;
            }
            let left = deadline.saturating_duration_since(Instant::now());
            let n = match tokio::time::timeout(left, self.conn.read(&mut piece)).await {
                Ok(Ok(n)) if n > 0 => n,
                _ => return false,
            };
            self.buf.extend_from_slice(&piece[..n]);
            if self.head.is_none() {
                let Some(at) = self.buf.windows(4).position(|w| w == b"\r\n\r\n") else {
                    continue;
                };
                self.head = Some(String::from_utf8_lossy(&self.buf[..at]).into_owned());
                self.buf.drain(..at + 4);
            }
            let (data, ended) = take_chunks(&mut self.buf);
            self.decoder.write_all(&data).expect("decodes");
            self.decoder.flush().expect("decodes");
            self.ended = ended;
        }
        true
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_streamed_response_reaches_the_client_chunk_by_chunk() {
    let backend = Backend::start().await;
    let metrics = common::free_addr();
    let lb = Lb::start(&yaml(backend.addr, metrics));
    for algorithm in ["zstd", "br", "gzip"] {
        let mut conn = TcpStream::connect(lb.addr).await.expect("connect");
        let request = format!("GET /stream HTTP/1.1\r\nHost: x\r\nAccept-Encoding: {algorithm}\r\n\r\n");
        conn.write_all(request.as_bytes()).await.expect("write");
        let decoded = Arc::new(Mutex::new(Vec::new()));
        let mut stream = Stream {
            conn,
            buf: Vec::new(),
            head: None,
            decoder: decoder(algorithm, &decoded),
            decoded: Arc::clone(&decoded),
            ended: false,
        };
        let deadline = Instant::now() + PATIENCE;
        let first = stream.read_until(deadline, |d| d == FIRST.as_bytes()).await;
        assert!(
            first,
            "{algorithm}: the first chunk did not arrive alone: {:?}",
            stream.head
        );
        let head = stream.head.clone().unwrap_or_default().to_ascii_lowercase();
        assert!(head.contains(&format!("content-encoding: {algorithm}")), "{head}");
        assert!(head.contains("vary: accept-encoding"), "{head}");
        backend.release.notify_one();
        let whole = format!("{FIRST}{LAST}");
        let last = stream.read_until(deadline, |d| d == whole.as_bytes()).await;
        assert!(
            last,
            "{algorithm}: {:?}",
            String::from_utf8_lossy(&decoded.lock().expect("lock"))
        );
        if !stream.ended {
            stream.read_until(deadline, |_| false).await;
        }
        assert!(stream.ended, "{algorithm}: the chunked body did not end");
    }
    stayed_on_lbs_own_loop(metrics, 3.0).await;
}

/// What lb sends decodes with the Rust crates too, an oracle besides curl's libraries.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn decoders_agree_with_curl() {
    let backend = Backend::start().await;
    let metrics = common::free_addr();
    let lb = Lb::start(&yaml(backend.addr, metrics));
    let body = json();
    for algorithm in ["zstd", "br", "gzip"] {
        let raw = curl(&lb, "/json", &["-H", &format!("Accept-Encoding: {algorithm}")]).await;
        let mut out = Vec::new();
        let bytes = &raw.body[..];
        match algorithm {
            "gzip" => flate2::read::GzDecoder::new(bytes).read_to_end(&mut out).map(drop),
            "br" => brotli::Decompressor::new(bytes, 4096).read_to_end(&mut out).map(drop),
            _ => zstd::stream::read::Decoder::new(bytes)
                .and_then(|mut d| d.read_to_end(&mut out))
                .map(drop),
        }
        .expect("decodes");
        assert!(out == body, "{algorithm}");
    }
}
