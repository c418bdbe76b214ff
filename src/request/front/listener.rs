//! Per-listener rules of the front: which listener a connection came in on (TLS or not, h2c,
//! PROXY protocol), the cap on its open connections, its TLS acceptor, and the PROXY header of
//! TLS listeners, which arrives before the handshake.

use super::conn::Conn;
use super::proxy_protocol;
use crate::config::Cidr;
use pingora_core::listeners::tls::Acceptor;
use pingora_core::protocols::l4::stream::Stream as L4Stream;
use pingora_core::protocols::{GetSocketDigest, SocketDigest, Stream, UniqueID};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// What the front knows of one listener.
pub struct ListenerRule {
    /// Where it listens.
    pub address: SocketAddr,
    /// Whether it is a TLS listener.
    pub tls: bool,
    /// Whether it accepts h2c.
    pub h2c: bool,
    /// Whether connections start with a PROXY protocol header.
    pub proxy_protocol: bool,
    /// Most connections open at once.
    pub max_connections: usize,
    open: Arc<AtomicUsize>,
    /// Peers trusted to name the client; empty: any.
    trusted: Arc<Vec<Cidr>>,
    /// TLS listeners: the handshake's settings (certificates by SNI, ALPN).
    acceptor: Option<Arc<Acceptor>>,
}

impl ListenerRule {
    /// The rule of a listener.
    pub fn new(
        address: SocketAddr,
        tls: bool,
        h2c: bool,
        proxy_protocol: bool,
        max_connections: usize,
        trusted: Arc<Vec<Cidr>>,
    ) -> Self {
        ListenerRule {
            address,
            tls,
            h2c,
            proxy_protocol,
            max_connections,
            open: Arc::new(AtomicUsize::new(0)),
            trusted,
            acceptor: None,
        }
    }

    /// The rule with TLS handshakes made by `acceptor`.
    pub fn with_tls(mut self, acceptor: Acceptor) -> Self {
        self.tls = true;
        self.acceptor = Some(Arc::new(acceptor));
        self
    }

    /// The TLS acceptor of a TLS listener.
    pub fn acceptor(&self) -> Option<&Acceptor> {
        self.acceptor.as_deref()
    }

    /// A slot for a new connection, unless the listener is full.
    pub fn admit(&self) -> Option<Slot> {
        self.open
            .fetch_update(Ordering::AcqRel, Ordering::Relaxed, |n| {
                (n < self.max_connections).then_some(n + 1)
            })
            .ok()?;
        Some(Slot(Some(Arc::clone(&self.open))))
    }

    #[cfg(test)]
    /// Connections open now.
    pub fn open(&self) -> usize {
        self.open.load(Ordering::Relaxed)
    }

    /// Peers trusted to name the client; empty: any.
    pub fn trusted(&self) -> &[Cidr] {
        &self.trusted
    }

    /// Whether the TCP peer of `conn` may name the client in a PROXY header.
    pub fn trusts_proxy_header(&self, conn: &Conn) -> bool {
        trusts(&self.trusted, conn.get_socket_digest().as_deref())
    }
}

fn trusts(trusted: &[Cidr], digest: Option<&SocketDigest>) -> bool {
    if trusted.is_empty() {
        return true;
    }
    let peer = digest
        .and_then(|d| d.peer_addr())
        .and_then(|a| a.as_inet())
        .map(|a| a.ip());
    peer.is_some_and(|ip| trusted.iter().any(|net| net.contains(ip)))
}

/// An open connection counted against its listener's cap, given back on drop.
pub struct Slot(Option<Arc<AtomicUsize>>);

impl Slot {
    /// A slot of no listener (a connection the front cannot place).
    pub fn unlimited() -> Self {
        Slot(None)
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        if let Some(open) = &self.0 {
            open.fetch_sub(1, Ordering::AcqRel);
        }
    }
}

/// The rule of the listener a connection arrived on at `local`: the same address, or a
/// wildcard address on the same port.
pub fn find(rules: &[ListenerRule], local: SocketAddr) -> Option<&ListenerRule> {
    rules.iter().find(|r| r.address == local).or_else(|| {
        rules
            .iter()
            .find(|r| r.address.port() == local.port() && r.address.ip().is_unspecified())
    })
}

/// Refuses a connection over its listener's cap: a 503 to an HTTP/1 client, then close; a TLS
/// connection closes at once, before its handshake (which is what a flood costs most).
pub async fn refuse_full(mut stream: Stream, tls: bool) -> Option<Stream> {
    if tls {
        return None;
    }
    let body = "503 Service Unavailable: too many connections on this listener\n";
    let resp = format!(
        "HTTP/1.1 503 Service Unavailable\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Length: {}\r\nRetry-After: 1\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    if !matches!(stream.selected_alpn_proto(), Some(pingora_core::protocols::ALPN::H2)) {
        let _ = stream.write_all(resp.as_bytes()).await;
        let _ = stream.flush().await;
    }
    None
}

/// Reads the PROXY header of a TLS listener's connection, before the handshake: its source
/// becomes the client when the peer is trusted; the bytes read past it are put back.
pub async fn proxy_before_tls(stream: &mut L4Stream, trusted: &[Cidr]) -> Result<(), String> {
    let digest = stream.get_socket_digest();
    let (source, rest) = read_header(stream).await?;
    stream.rewind(&rest);
    if let Some(source) = source.filter(|_| trusts(trusted, digest.as_deref())) {
        let replaced = SocketDigest::from_raw_fd(stream.id());
        let _ = replaced
            .peer_addr
            .set(Some(pingora_core::protocols::l4::socket::SocketAddr::Inet(source)));
        stream.set_socket_digest(replaced);
    }
    Ok(())
}

/// Reads a PROXY header off `stream`: the source it names and the bytes read past it.
async fn read_header(stream: &mut L4Stream) -> Result<(Option<SocketAddr>, Vec<u8>), String> {
    let mut incoming = Unread {
        stream,
        buf: Vec::with_capacity(256),
    };
    let proxied = proxy_protocol::read(&mut incoming).await.map_err(|e| e.to_string())?;
    Ok((proxied.source, incoming.buf[proxied.len..].to_vec()))
}

/// A stream's first bytes, read before the TLS handshake (and put back after the header).
struct Unread<'a> {
    stream: &'a mut L4Stream,
    buf: Vec<u8>,
}

impl proxy_protocol::Incoming for Unread<'_> {
    fn held(&self) -> &[u8] {
        &self.buf
    }

    async fn fill(&mut self) -> std::io::Result<usize> {
        let mut chunk = [0u8; 256];
        let n = self.stream.read(&mut chunk).await?;
        self.buf.extend_from_slice(&chunk[..n]);
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rule(addr: &str, max: usize) -> ListenerRule {
        ListenerRule::new(addr.parse().unwrap(), false, false, false, max, Arc::default())
    }

    #[test]
    fn slots_cap_connections_and_come_back() {
        let r = rule("127.0.0.1:80", 2);
        let (a, b) = (r.admit().unwrap(), r.admit().unwrap());
        assert!(r.admit().is_none());
        drop(a);
        let c = r.admit().unwrap();
        assert_eq!(r.open(), 2);
        drop((b, c));
        assert_eq!(r.open(), 0);
    }

    #[test]
    fn wildcard_listeners_match_by_port() {
        let rules = vec![rule("127.0.0.1:80", 1), rule("0.0.0.0:81", 1)];
        assert_eq!(
            find(&rules, "127.0.0.1:80".parse().unwrap()).unwrap().address.port(),
            80
        );
        assert_eq!(find(&rules, "10.1.1.1:81".parse().unwrap()).unwrap().address.port(), 81);
        assert!(find(&rules, "10.1.1.1:80".parse().unwrap()).is_none());
    }
}
