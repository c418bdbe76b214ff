//! `lb probe`: is lb answering HTTP on a listener? One request over a fresh connection; any
//! HTTP status counts as alive (a 503 means lb works and its backends do not).

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

const TIMEOUT: Duration = Duration::from_secs(3);

/// Sends `GET /` to `addr` (wildcard addresses through loopback) and returns the status code.
pub fn probe(addr: SocketAddr) -> Result<u16, String> {
    let addr = crate::process::lifecycle::probe_addr(addr);
    let mut stream = TcpStream::connect_timeout(&addr, TIMEOUT).map_err(|e| format!("{addr}: {e}"))?;
    stream.set_read_timeout(Some(TIMEOUT)).map_err(|e| e.to_string())?;
    stream.set_write_timeout(Some(TIMEOUT)).map_err(|e| e.to_string())?;
    let request = "GET / HTTP/1.1\r\nHost: lb-probe\r\nUser-Agent: lb-probe\r\nConnection: close\r\n\r\n";
    stream
        .write_all(request.as_bytes())
        .map_err(|e| format!("{addr}: {e}"))?;
    let mut head = [0u8; 12];
    stream
        .read_exact(&mut head)
        .map_err(|e| format!("{addr}: no HTTP answer: {e}"))?;
    status_of(&head).ok_or_else(|| format!("{addr}: not an HTTP answer: {:?}", String::from_utf8_lossy(&head)))
}

/// `HTTP/1.1 200` → 200.
fn status_of(head: &[u8]) -> Option<u16> {
    let text = std::str::from_utf8(head).ok()?;
    let rest = text.strip_prefix("HTTP/1.")?;
    rest.get(2..5)?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_lines() {
        assert_eq!(status_of(b"HTTP/1.1 503"), Some(503));
        assert_eq!(status_of(b"HTTP/1.0 200"), Some(200));
        assert_eq!(status_of(b"SSH-2.0-Open"), None);
    }
}
