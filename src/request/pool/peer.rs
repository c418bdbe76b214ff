//! How a pool connects to its backends: Pingora `HttpPeer` options built once from the pool's
//! settings (timeouts, TLS with SNI and verification, a CA bundle of its own, HTTP/2 by ALPN or
//! prior knowledge), then per attempt only the address, the SNI and the timeouts that depend
//! on the request (upgrades, a total deadline).

use crate::config::{Protocol, Upstream};
use pingora_core::protocols::ALPN;
use pingora_core::upstreams::peer::{HttpPeer, PeerOptions};
use pingora_core::utils::tls::{parse_x509, WrappedX509};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

/// What every attempt of a pool shares.
pub struct PeerTemplate {
    options: PeerOptions,
    tls: bool,
    sni: Option<String>,
    /// Idle timeout of upgraded connections.
    tunnel: Duration,
    /// Deadline of a request's attempts, from its arrival.
    pub total: Option<Duration>,
    group: u64,
}

/// Reads the CA certificates of `path` (PEM): `Err(problem)` naming the file.
pub fn load_ca(path: &str) -> Result<Vec<Vec<u8>>, String> {
    use x509_parser::prelude::{FromDer, X509Certificate};
    let bytes = std::fs::read(path).map_err(|e| format!("{path}: cannot read: {e}"))?;
    let certs: Vec<Vec<u8>> = rustls_pemfile::certs(&mut bytes.as_slice())
        .map(|c| c.map(|c| c.as_ref().to_vec()))
        .collect::<Result<_, _>>()
        .map_err(|e| format!("{path}: not PEM: {e}"))?;
    if certs.is_empty() {
        return Err(format!("{path}: no certificate (PEM) found"));
    }
    for der in &certs {
        X509Certificate::from_der(der).map_err(|e| format!("{path}: not a certificate: {e}"))?;
    }
    Ok(certs)
}

impl PeerTemplate {
    /// The template of pool `name` (`Err(problem)` when its CA file cannot be used).
    pub fn new(name: &str, conf: &Upstream) -> Result<Self, String> {
        let t = &conf.timeouts;
        let mut options = PeerOptions::new();
        options.connection_timeout = Some(t.connect.0);
        options.read_timeout = Some(t.read.0);
        options.write_timeout = Some(t.write.0);
        options.idle_timeout = Some(t.idle.0);
        let tls = conf.tls.is_some();
        options.alpn = match (conf.protocol, tls) {
            (Protocol::Http2, _) => ALPN::H2,
            (Protocol::Auto, true) => ALPN::H2H1,
            _ => ALPN::H1,
        };
        if let Some(tls) = &conf.tls {
            options.verify_cert = tls.verify;
            options.verify_hostname = tls.verify;
            if let Some(path) = &tls.ca_file {
                let cas: Vec<WrappedX509> = load_ca(path)?
                    .into_iter()
                    .map(|der| WrappedX509::new(der, parse_x509))
                    .collect();
                options.ca = Some(Arc::from(cas.into_boxed_slice()));
            }
        }
        // Pools with their own TLS settings never share pooled connections with other pools.
        let group = if tls { fnv(name.as_bytes()) } else { 0 };
        Ok(PeerTemplate {
            options,
            tls,
            sni: conf.tls.as_ref().and_then(|t| t.sni.clone()),
            tunnel: t.tunnel.0,
            total: t.total.map(|d| d.0),
            group,
        })
    }

    /// The peer for an attempt on `addr`; `upgrade`: the request asks for a protocol upgrade
    /// (its connection gets the tunnel timeout); `left`: what remains of the total deadline.
    pub fn peer(&self, addr: SocketAddr, upgrade: bool, left: Option<Duration>) -> Box<HttpPeer> {
        let sni = match (&self.sni, self.tls) {
            (Some(sni), _) => sni.clone(),
            (None, true) => addr.ip().to_string(),
            (None, false) => String::new(),
        };
        let mut peer = HttpPeer::new(addr, self.tls, sni);
        peer.group_key = self.group;
        peer.options = self.options.clone();
        if upgrade {
            peer.options.read_timeout = Some(self.tunnel);
            peer.options.write_timeout = Some(self.tunnel);
        }
        if let Some(left) = left {
            let cap = |t: Option<Duration>| Some(t.map_or(left, |t| t.min(left)));
            peer.options.connection_timeout = cap(peer.options.connection_timeout);
            peer.options.read_timeout = cap(peer.options.read_timeout);
            peer.options.write_timeout = cap(peer.options.write_timeout);
        }
        Box::new(peer)
    }

    /// The idle timeout of upgraded connections.
    pub fn tunnel(&self) -> Duration {
        self.tunnel
    }

    /// Whether backends are reached over TLS.
    pub fn tls(&self) -> bool {
        self.tls
    }

    /// Whether backends are reached over plaintext HTTP/1.1 (what lb's own request loop speaks).
    pub fn plain_http1(&self) -> bool {
        !self.tls && matches!(self.options.alpn, ALPN::H1)
    }
}

fn fnv(bytes: &[u8]) -> u64 {
    use std::hash::Hasher;
    let mut h = fnv::FnvHasher::default();
    h.write(bytes);
    h.finish() | 1
}
