//! The [`Lot`] with real loopback sockets: a parked connection comes back with its request and
//! addresses, a client that leaves is closed and not resumed, deadlines (on paused time) close
//! idle ones and the shutdown grace shortens them; every closed connection gives its slot back.

use super::super::listener::ListenerRule;
use super::*;
use std::sync::Arc;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio::sync::{mpsc, watch};
use tokio::time::timeout;

const DEADLINE: Duration = Duration::from_secs(20);

/// A served-side connection as the front holds it (with the socket digest Pingora's listener
/// gives), and the client's end.
async fn connection() -> (Box<Conn>, tokio::net::TcpStream) {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let client = tokio::net::TcpStream::connect(listener.local_addr().expect("addr"))
        .await
        .expect("connect");
    let (served, peer) = listener.accept().await.expect("accept");
    let local = served.local_addr().expect("local");
    let mut stream = L4Stream::from(served);
    let digest = SocketDigest::from_raw_fd(stream.as_raw_fd());
    let _ = digest.peer_addr.set(Some(SocketAddr::Inet(peer)));
    let _ = digest.local_addr.set(Some(SocketAddr::Inet(local)));
    stream.set_socket_digest(digest);
    (Box::new(Conn::new(Box::new(stream))), client)
}

/// A running lot whose woken connections arrive on the channel; the sender stops the server.
fn running_lot(late: Duration) -> (Arc<Lot>, mpsc::UnboundedReceiver<Woken>, watch::Sender<bool>) {
    let lot = Arc::new(Lot::new().expect("lot"));
    let (woke, woken) = mpsc::unbounded_channel();
    let (stop, shutdown) = watch::channel(false);
    let running = Arc::clone(&lot);
    tokio::spawn(async move {
        running
            .run(shutdown, late, move |w| {
                let _ = woke.send(w);
            })
            .await;
    });
    (lot, woken, stop)
}

fn parked(lot: &Lot) -> usize {
    lot.entries().slab.len()
}

fn wait(for_: Duration, served: usize) -> Wait {
    Wait {
        until: Instant::now() + for_,
        first: false,
        served,
    }
}

/// Polls `done` until it holds, within [`DEADLINE`] (of the clock the test runs on).
async fn eventually(what: &str, mut done: impl FnMut() -> bool) {
    let end = Instant::now() + DEADLINE;
    while !done() {
        assert!(Instant::now() < end, "not in time: {what}");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// A plaintext listener's rule with room for four connections (its address is never bound).
fn rule() -> ListenerRule {
    ListenerRule::new(
        "127.0.0.1:1".parse().unwrap(),
        false,
        false,
        false,
        4,
        Arc::new(Vec::new()),
    )
}

#[tokio::test]
async fn a_parked_connection_comes_back_with_its_request_and_addresses() {
    let (lot, mut woken, _stop) = running_lot(Duration::from_secs(1));
    let rule = rule();
    let (conn, mut client) = connection().await;
    let (_, before) = conn.parts_to_park().expect("a quiet plaintext connection parks");
    lot.park(conn, wait(Duration::from_secs(60), 3), rule.admit().unwrap())
        .map_err(|_| "refused")
        .unwrap();
    assert_eq!((parked(&lot), rule.open()), (1, 1));
    // Nothing wakes it before its request.
    assert!(timeout(Duration::from_millis(100), woken.recv()).await.is_err());

    client.write_all(b"GET /next HTTP/1.1\r\n\r\n").await.unwrap();
    let mut back = timeout(DEADLINE, woken.recv())
        .await
        .expect("woken in time")
        .expect("woken");
    assert_eq!((back.wait.served, back.wait.first, parked(&lot)), (3, false, 0));
    let (_, after) = back.conn.parts_to_park().expect("the addresses");
    assert_eq!((after.peer, after.local), (before.peer, before.local));
    assert_eq!(after.peer, Some(client.local_addr().unwrap()));
    // The request's bytes are all there: the lot only peeked.
    let mut held = Vec::new();
    while held.len() < 22 {
        timeout(DEADLINE, back.conn.fill()).await.unwrap().unwrap();
        held = back.conn.held().to_vec();
    }
    assert_eq!(held, b"GET /next HTTP/1.1\r\n\r\n");
    // The connection still answers its client.
    back.conn
        .write_all_now(b"HTTP/1.1 204 No Content\r\n\r\n")
        .await
        .unwrap();
    let mut answer = [0u8; 27];
    timeout(DEADLINE, client.read_exact(&mut answer))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(&answer, b"HTTP/1.1 204 No Content\r\n\r\n");
    drop(back);
    assert_eq!(rule.open(), 0, "the slot travels with the connection");
}

#[tokio::test]
async fn a_client_that_leaves_is_closed_and_not_resumed() {
    let (lot, mut woken, _stop) = running_lot(Duration::from_secs(1));
    let rule = rule();
    for _ in 0..3 {
        let (conn, client) = connection().await;
        lot.park(conn, wait(Duration::from_secs(60), 1), rule.admit().unwrap())
            .map_err(|_| "refused")
            .unwrap();
        drop(client);
    }
    eventually("the three closed", || parked(&lot) == 0).await;
    assert_eq!(rule.open(), 0);
    assert!(woken.try_recv().is_err(), "a closed connection is not served");
}

#[tokio::test]
async fn a_connection_that_holds_bytes_or_has_no_socket_is_not_parked() {
    let lot = Lot::new().expect("lot");
    let (mut conn, mut client) = connection().await;
    client.write_all(b"G").await.unwrap();
    while conn.held().is_empty() {
        timeout(DEADLINE, conn.fill()).await.unwrap().unwrap();
    }
    assert!(lot
        .park(conn, wait(Duration::from_secs(60), 1), Slot::unlimited())
        .is_err());
    let (pipe, _other) = tokio::io::duplex(64);
    let piped = Box::new(Conn::new(Box::new(pipe)));
    assert!(lot
        .park(piped, wait(Duration::from_secs(60), 1), Slot::unlimited())
        .is_err());
    assert_eq!(parked(&lot), 0);
}

#[tokio::test(start_paused = true)]
async fn an_idle_connection_is_closed_at_its_deadline_not_before() {
    let (lot, mut woken, _stop) = running_lot(Duration::from_secs(1));
    let start = Instant::now();
    let (conn, mut client) = connection().await;
    lot.park(conn, wait(Duration::from_secs(5), 1), Slot::unlimited())
        .map_err(|_| "refused")
        .unwrap();
    tokio::time::sleep(Duration::from_secs(4)).await;
    assert_eq!(parked(&lot), 1, "still parked 1 s before its deadline");
    let mut rest = Vec::new();
    let read = timeout(Duration::from_secs(60), client.read_to_end(&mut rest)).await;
    assert!(read.is_ok() && rest.is_empty(), "closed by the lot: {read:?} {rest:?}");
    let waited = start.elapsed();
    assert!(
        waited >= Duration::from_secs(5) && waited <= Duration::from_secs(5) + SWEEP_EVERY * 2,
        "closed after {waited:?}"
    );
    assert_eq!(parked(&lot), 0);
    assert!(woken.try_recv().is_err());
}

#[tokio::test(start_paused = true)]
async fn a_stopping_server_gives_parked_connections_only_the_grace() {
    let (lot, _woken, stop) = running_lot(Duration::from_secs(2));
    let (conn, mut client) = connection().await;
    lot.park(conn, wait(Duration::from_secs(3600), 1), Slot::unlimited())
        .map_err(|_| "refused")
        .unwrap();
    tokio::time::sleep(Duration::from_secs(1)).await;
    let stopped = Instant::now();
    stop.send(true).unwrap();
    let mut rest = Vec::new();
    let read = timeout(Duration::from_secs(60), client.read_to_end(&mut rest)).await;
    assert!(read.is_ok(), "closed within the grace");
    let waited = stopped.elapsed();
    assert!(
        waited >= Duration::from_secs(2) && waited <= Duration::from_secs(2) + SWEEP_EVERY * 2,
        "closed {waited:?} after the stop"
    );
    // One parked after the stop waits no longer than the grace either.
    let (conn, mut client) = connection().await;
    lot.park(conn, wait(Duration::from_secs(3600), 1), Slot::unlimited())
        .map_err(|_| "refused")
        .unwrap();
    let read = timeout(Duration::from_secs(60), client.read_to_end(&mut rest)).await;
    assert!(read.is_ok() && stopped.elapsed() <= Duration::from_secs(2) + SWEEP_EVERY * 2);
}
