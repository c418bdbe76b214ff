//! A minimal WebSocket client over a raw TCP stream (RFC 6455): the handshake, masked text
//! frames out, server frames in.

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Opens a WebSocket to `path` at `addr`: the stream and the handshake's response head.
pub async fn connect(addr: std::net::SocketAddr, path: &str) -> (TcpStream, String) {
    try_connect(addr, path).await.expect("WebSocket handshake")
}

/// Opens a WebSocket to `path` at `addr` whose first message ("hello") comes back: the stream
/// and the handshake's response head. Pingora 0.9's HTTP/1 proxy tears an upgrade down right
/// after its 101 when it reads the backend's 101 before the request's own empty body
/// (cloudflare/pingora#946, open): a fast backend on loopback makes that ordering common. Up to
/// five tries; the README's known limits say so.
pub async fn connect_echoing(addr: std::net::SocketAddr, path: &str) -> (TcpStream, String) {
    for _ in 0..5 {
        let (mut conn, head) = connect(addr, path).await;
        if !head.starts_with("HTTP/1.1 101") {
            return (conn, head);
        }
        send(&mut conn, "hello").await;
        if matches!(receive(&mut conn).await, Ok((1, text)) if text == "hello") {
            return (conn, head);
        }
    }
    panic!("five WebSocket tunnels to {addr}{path} closed after their 101");
}

/// As [`connect`], failures returned.
pub async fn try_connect(addr: std::net::SocketAddr, path: &str) -> std::io::Result<(TcpStream, String)> {
    let mut conn = TcpStream::connect(addr).await?;
    let request = format!(
        "GET {path} HTTP/1.1\r\nHost: ws.test\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
    );
    conn.write_all(request.as_bytes()).await?;
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        if conn.read(&mut byte).await? == 0 {
            break;
        }
        head.push(byte[0]);
    }
    Ok((conn, String::from_utf8_lossy(&head).into_owned()))
}

/// Sends `text` as one masked text frame.
pub async fn send(conn: &mut TcpStream, text: &str) {
    try_send(conn, text).await.expect("write frame");
}

/// As [`send`], failures returned.
pub async fn try_send(conn: &mut TcpStream, text: &str) -> std::io::Result<()> {
    let mask = [0x37u8, 0xfa, 0x21, 0x3d];
    let payload = text.as_bytes();
    assert!(payload.len() < 126, "short messages only");
    let mut frame = vec![0x81, 0x80 | payload.len() as u8];
    frame.extend_from_slice(&mask);
    frame.extend(payload.iter().enumerate().map(|(i, b)| b ^ mask[i % 4]));
    conn.write_all(&frame).await
}

/// Reads one (short, unmasked) frame: its opcode and payload.
pub async fn receive(conn: &mut TcpStream) -> std::io::Result<(u8, String)> {
    let mut head = [0u8; 2];
    conn.read_exact(&mut head).await?;
    let len = (head[1] & 0x7f) as usize;
    let mut payload = vec![0u8; len];
    conn.read_exact(&mut payload).await?;
    Ok((head[0] & 0x0f, String::from_utf8_lossy(&payload).into_owned()))
}
