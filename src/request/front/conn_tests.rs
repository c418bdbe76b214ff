//! [`Conn`] over an in-memory pipe (`tokio::io::duplex`): what the HTTP layer above may read of
//! pipelined requests and chunked bodies in any split, the combined writes, back-pressure and the
//! buffers given back between requests.

use super::*;
use crate::testing::rng::XorShift;
use tokio::io::{duplex, AsyncReadExt, AsyncWriteExt, DuplexStream};
use tokio::time::timeout;

const DEADLINE: Duration = Duration::from_secs(10);

/// A connection whose client end is `client`, over a pipe that holds `capacity` bytes each way.
fn pair(capacity: usize) -> (Conn, DuplexStream) {
    let (client, server) = duplex(capacity);
    (Conn::new(Box::new(server)), client)
}

/// Fills `conn` until it holds a whole head (up to the blank line): the head's length.
async fn head_arrives(conn: &mut Conn) -> usize {
    loop {
        if let Some(at) = conn.held().windows(4).position(|w| w == b"\r\n\r\n") {
            return at + 4;
        }
        let n = timeout(DEADLINE, conn.fill())
            .await
            .expect("a head in time")
            .expect("read");
        assert!(n > 0, "the client closed before a whole head: {:?}", conn.held());
    }
}

/// Everything the HTTP layer is given of the current request (until `read` gives nothing more).
async fn handed(conn: &mut Conn) -> Vec<u8> {
    let mut got = Vec::new();
    loop {
        let mut buf = [0u8; 7];
        // A read that waits means the request is over: the layer is given nothing past it.
        match timeout(Duration::from_millis(50), conn.read(&mut buf)).await {
            Ok(Ok(0)) | Err(_) => return got,
            Ok(Ok(n)) => got.extend_from_slice(&buf[..n]),
            Ok(Err(e)) => panic!("read: {e}"),
        }
        if conn.request_done() {
            return got;
        }
    }
}

#[tokio::test]
async fn nothing_is_readable_before_a_request_begins() {
    let (mut conn, mut client) = pair(1024);
    client.write_all(b"GET / HTTP/1.1\r\n\r\n").await.unwrap();
    let mut buf = [0u8; 64];
    assert!(timeout(Duration::from_millis(50), conn.read(&mut buf)).await.is_err());
    assert_eq!(
        conn.held(),
        b"GET / HTTP/1.1\r\n\r\n",
        "read ahead, held, not handed on"
    );
}

#[tokio::test]
async fn pipelined_requests_are_handed_on_one_at_a_time() {
    let (mut conn, mut client) = pair(4096);
    let first = b"POST /a HTTP/1.1\r\nContent-Length: 5\r\n\r\nhello";
    let second = b"GET /b HTTP/1.1\r\n\r\n";
    let third = b"POST /c HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n";
    client.write_all(&[&first[..], second, third].concat()).await.unwrap();

    let len = head_arrives(&mut conn).await;
    conn.begin(len, &first[..len], &Framing::Length(5));
    assert_eq!(handed(&mut conn).await, first);
    assert!(conn.request_done());
    assert!(conn.held().starts_with(b"GET /b"), "the next requests stay held");

    let len = head_arrives(&mut conn).await;
    conn.begin(len, second, &Framing::None);
    assert_eq!(handed(&mut conn).await, second);
    assert!(conn.request_done());

    let len = head_arrives(&mut conn).await;
    conn.begin(len, &third[..len], &Framing::Chunked);
    assert_eq!(handed(&mut conn).await, third);
    assert!(conn.request_done());
    assert!(conn.held().is_empty());
}

#[tokio::test]
async fn a_canonical_head_replaces_the_bytes_it_was_parsed_from() {
    let (mut conn, mut client) = pair(1024);
    client
        .write_all(b"GET /x HTTP/1.1\r\nhost:  a \r\n\r\nGET /y")
        .await
        .unwrap();
    let len = head_arrives(&mut conn).await;
    let canonical = b"GET /x HTTP/1.1\r\nhost: a\r\n\r\n";
    conn.begin(len, canonical, &Framing::None);
    assert_eq!(handed(&mut conn).await, canonical);
    assert!(conn.request_done());
    assert_eq!(conn.held(), b"GET /y", "what followed the raw head is kept");
}

#[tokio::test]
async fn a_chunked_body_ends_where_its_framing_does_in_any_split() {
    let body = b"5;ext=1\r\nhello\r\n10\r\n0123456789abcdef\r\n0\r\nTrailer: t\r\n\r\n";
    let next = b"GET /next HTTP/1.1\r\n\r\n";
    let head = b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n";
    let whole = [&head[..], body, next].concat();
    let mut rng = XorShift(7);
    for round in 0..40 {
        let (mut conn, mut client) = pair(64);
        let mut cuts: Vec<usize> = (0..3).map(|_| rng.below(whole.len())).collect();
        cuts.sort_unstable();
        let pieces = whole.clone();
        let writer = tokio::spawn(async move {
            let mut at = 0;
            for cut in cuts.into_iter().chain([pieces.len()]) {
                client.write_all(&pieces[at..cut]).await.unwrap();
                client.flush().await.unwrap();
                tokio::task::yield_now().await;
                at = cut;
            }
            client
        });
        let len = head_arrives(&mut conn).await;
        conn.begin(len, head, &Framing::Chunked);
        let mut got = Vec::new();
        while !conn.request_done() {
            let mut buf = [0u8; 5];
            let n = timeout(DEADLINE, conn.read(&mut buf))
                .await
                .expect("body in time")
                .unwrap();
            assert!(n > 0, "round {round}: EOF inside the body");
            got.extend_from_slice(&buf[..n]);
        }
        assert_eq!(got, [&head[..], body].concat(), "round {round}");
        let _client = writer.await.unwrap();
        // The next request arrives held, never handed on as part of this one.
        let len = head_arrives(&mut conn).await;
        assert_eq!(&conn.held()[..len], next, "round {round}");
    }
}

#[tokio::test]
async fn a_bad_chunk_size_is_an_error_not_data() {
    let (mut conn, mut client) = pair(1024);
    let head = b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n";
    client
        .write_all(&[&head[..], b"zz\r\nboom\r\n"].concat())
        .await
        .unwrap();
    let len = head_arrives(&mut conn).await;
    conn.begin(len, head, &Framing::Chunked);
    let mut got = Vec::new();
    let err = loop {
        let mut buf = [0u8; 16];
        match timeout(DEADLINE, conn.read(&mut buf)).await.expect("an answer in time") {
            Ok(n) => {
                assert!(n > 0, "EOF instead of an error");
                got.extend_from_slice(&buf[..n]);
            }
            Err(e) => break e,
        }
    };
    assert_eq!(err.kind(), io::ErrorKind::InvalidData);
    assert!(head.starts_with(&got), "no byte of the bad body is handed on: {got:?}");
}

#[tokio::test]
async fn small_writes_go_out_together_when_flushed() {
    let (mut conn, mut client) = pair(1 << 16);
    conn.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n")
        .await
        .unwrap();
    conn.write_all(b"ok").await.unwrap();
    let mut buf = [0u8; 128];
    assert!(
        timeout(Duration::from_millis(50), client.read(&mut buf)).await.is_err(),
        "nothing is written before the flush"
    );
    conn.flush().await.unwrap();
    let n = client.read(&mut buf).await.unwrap();
    assert_eq!(
        &buf[..n],
        b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok",
        "one write"
    );

    conn.set_flush_each(true);
    conn.write_all(b"streamed").await.unwrap();
    let n = timeout(DEADLINE, client.read(&mut buf)).await.unwrap().unwrap();
    assert_eq!(&buf[..n], b"streamed", "a streaming body goes out at once");
}

#[tokio::test]
async fn a_client_that_does_not_read_holds_the_writer_back() {
    let (mut conn, mut client) = pair(1024);
    let big = vec![b'x'; 64 << 10];
    let mut write = Box::pin(async move {
        conn.write_all(&big).await?;
        conn.flush().await?;
        io::Result::Ok(conn)
    });
    // The pipe holds 1 KiB: the write waits while the client reads nothing ...
    assert!(timeout(Duration::from_millis(50), &mut write).await.is_err());
    // ... and completes, every byte in order, once it reads.
    let reader = tokio::spawn(async move {
        let mut got = vec![0u8; 64 << 10];
        client.read_exact(&mut got).await.map(|_| got)
    });
    let _conn = timeout(DEADLINE, write).await.expect("written in time").unwrap();
    let got = timeout(DEADLINE, reader).await.unwrap().unwrap().unwrap();
    assert!(got.iter().all(|&b| b == b'x'));
}

#[tokio::test]
async fn buffers_are_given_back_between_requests() {
    let (mut conn, mut client) = pair(1 << 17);
    // A head larger than what is kept between requests has to be held whole.
    let head = format!(
        "GET / HTTP/1.1\r\nX-Large: {}\r\n\r\n",
        "v".repeat(3 * KEEP_BETWEEN_REQUESTS)
    );
    client.write_all(head.as_bytes()).await.unwrap();
    let len = head_arrives(&mut conn).await;
    assert!(conn.rbuf.capacity() > KEEP_BETWEEN_REQUESTS);
    conn.begin(len, head.as_bytes(), &Framing::None);
    let mut all = vec![0u8; head.len()];
    timeout(DEADLINE, conn.read_exact(&mut all)).await.unwrap().unwrap();
    assert!(conn.request_done());
    conn.idle();
    assert_eq!(
        conn.rbuf.capacity(),
        0,
        "a large buffer is not kept for the next request"
    );

    client.write_all(b"GET").await.unwrap();
    timeout(DEADLINE, conn.fill()).await.unwrap().unwrap();
    conn.idle();
    assert_eq!(conn.held(), b"GET", "a buffer that holds bytes is kept");
    conn.consume(3);
    conn.shed();
    assert_eq!((conn.rbuf.capacity(), conn.wbuf.capacity()), (0, 0));
}

#[tokio::test]
async fn the_client_going_away_is_eof_and_nothing_is_parked_after() {
    let (mut conn, client) = pair(1024);
    drop(client);
    assert_eq!(timeout(DEADLINE, conn.fill()).await.unwrap().unwrap(), 0);
    assert_eq!(conn.fill().await.unwrap(), 0, "EOF stays EOF");
    assert!(conn.parts_to_park().is_none());
}

#[tokio::test]
async fn an_upgraded_connection_passes_everything_through() {
    let (mut conn, mut client) = pair(1024);
    let head = b"GET /ws HTTP/1.1\r\nUpgrade: websocket\r\nConnection: upgrade\r\n\r\n";
    client
        .write_all(&[&head[..], b"frames after the head"].concat())
        .await
        .unwrap();
    let len = head_arrives(&mut conn).await;
    conn.begin(len, head, &Framing::None);
    let mut buf = vec![0u8; head.len()];
    conn.read_exact(&mut buf).await.unwrap();
    conn.set_tunnel();
    let mut rest = [0u8; 21];
    timeout(DEADLINE, conn.read_exact(&mut rest)).await.unwrap().unwrap();
    assert_eq!(&rest, b"frames after the head");
    assert!(!conn.request_done(), "a tunnel never ends a request");
}

const LINGER: Linger = Linger {
    time: Duration::from_secs(30),
    timeout: Duration::from_secs(5),
    bytes: 1 << 20,
};

/// A connection with a request of `body` bytes begun and its head handed on, lingering on close.
async fn begun(capacity: usize, body: u64) -> (Box<Conn>, DuplexStream) {
    let (conn, mut client) = pair(capacity);
    let mut conn = Box::new(conn);
    conn.set_linger(Some(LINGER));
    let head = format!("POST / HTTP/1.1\r\nContent-Length: {body}\r\n\r\n");
    client.write_all(head.as_bytes()).await.unwrap();
    let len = head_arrives(&mut conn).await;
    conn.begin(len, head.as_bytes(), &Framing::Length(body));
    (conn, client)
}

#[tokio::test]
async fn a_connection_closed_with_the_body_unread_reads_it_away_after_the_answer() {
    let (mut conn, mut client) = begun(1024, 1 << 16).await;
    // An answer still in the write buffer when the connection is dropped.
    conn.write_all(b"HTTP/1.1 413 Payload Too Large\r\n\r\n").await.unwrap();
    drop(conn);
    // The client sends all of its body (far more than the pipe holds): it is read away.
    let body = vec![b'x'; 1 << 16];
    timeout(DEADLINE, client.write_all(&body))
        .await
        .expect("the body is read")
        .unwrap();
    // The client is done sending: the lingering ends with its close, not a timeout.
    AsyncWriteExt::shutdown(&mut client).await.unwrap();
    let mut answer = Vec::new();
    let read = timeout(DEADLINE, client.read_to_end(&mut answer))
        .await
        .expect("closed")
        .unwrap();
    assert_eq!(
        &answer[..read],
        b"HTTP/1.1 413 Payload Too Large\r\n\r\n",
        "then lb's side closed"
    );
}

#[tokio::test(start_paused = true)]
async fn lingering_ends_at_its_bounds() {
    // A client that goes quiet: cut after lingering_timeout.
    let (conn, mut client) = begun(1 << 16, 100).await;
    drop(conn);
    let mut answer = Vec::new();
    timeout(Duration::from_secs(6), client.read_to_end(&mut answer))
        .await
        .expect("closed")
        .unwrap();
    let start = tokio::time::Instant::now();
    tokio::time::sleep(Duration::from_secs(6)).await;
    assert!(
        client.write_all(b"late").await.is_err(),
        "closed after {:?}",
        start.elapsed()
    );

    // A client that keeps sending: cut after lingering_size.
    let (conn, mut client) = begun(1 << 16, 100 << 20).await;
    drop(conn);
    let chunk = vec![b'x'; 64 << 10];
    let mut sent = 0usize;
    while client.write_all(&chunk).await.is_ok() {
        sent += chunk.len();
        assert!(sent < 4 << 20, "still read after {sent} bytes");
    }
    assert!(sent >= LINGER.bytes as usize - chunk.len(), "cut after {sent} bytes");
}

#[tokio::test]
async fn a_finished_request_or_a_client_gone_closes_at_once() {
    let (mut conn, mut client) = begun(1024, 4).await;
    client.write_all(b"body").await.unwrap();
    let mut got = [0u8; 64];
    let mut n = 0;
    while !conn.request_done() {
        n += conn.read(&mut got[n..]).await.unwrap();
    }
    drop(conn);
    let mut rest = Vec::new();
    client.read_to_end(&mut rest).await.unwrap();
    assert!(
        client.write_all(b"more").await.is_err(),
        "no lingering: the pipe is gone"
    );
}
