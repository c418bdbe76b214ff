//! The `listeners:` entries: where clients connect (plain or TLS with certificates chosen by SNI,
//! HTTP/2 by ALPN or h2c, the PROXY protocol, a connection cap). The limits every client
//! connection gets are `clients`'; serving them is `request::front`'s job.

use super::Addr;
use serde::Deserialize;

/// Default cap on open client connections per listener.
pub const DEFAULT_MAX_CONNECTIONS: usize = 10_000;
fn yes() -> bool {
    true
}

fn default_max_connections() -> usize {
    DEFAULT_MAX_CONNECTIONS
}

/// One listening address.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Listener {
    /// `IP:port`, e.g. `0.0.0.0:8080`.
    pub address: Addr,
    /// TLS: certificates chosen by SNI, HTTP/2 and HTTP/1.1 by ALPN. Default: plain HTTP.
    #[serde(default)]
    pub tls: Option<TlsConf>,
    /// Plain listeners: accept HTTP/2 with prior knowledge (h2c) beside HTTP/1.1. Default `false`.
    #[serde(default)]
    pub h2c: bool,
    /// Expect a PROXY protocol header (v1 or v2) before each connection's data, as sent by an L4
    /// load balancer (HAProxy, AWS NLB...). Default `false`.
    #[serde(default)]
    pub proxy_protocol: bool,
    /// Most client connections open at once; more are refused (503 on plain HTTP/1, closed
    /// otherwise). Default 10000.
    #[serde(default = "default_max_connections")]
    pub max_connections: usize,
}

impl Listener {
    /// A plain HTTP listener on `address` with the defaults.
    pub fn plain(address: Addr) -> Self {
        Listener {
            address,
            tls: None,
            h2c: false,
            proxy_protocol: false,
            max_connections: DEFAULT_MAX_CONNECTIONS,
        }
    }

    /// `http` or `https`.
    pub fn scheme(&self) -> &'static str {
        if self.tls.is_some() {
            "https"
        } else {
            "http"
        }
    }
}

/// TLS on a listener.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TlsConf {
    /// Certificates with their keys (PEM files). The one whose names match the client's SNI is
    /// used; the first is the default. Files replaced on disk are picked up within seconds.
    pub certificates: Vec<CertPair>,
    /// Offer HTTP/2 by ALPN (`h2`, then `http/1.1`). Default `true`.
    #[serde(default = "yes")]
    pub http2: bool,
}

/// A certificate chain and its private key.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CertPair {
    /// PEM file: the certificate, then its intermediates.
    pub cert: String,
    /// PEM file: the private key (PKCS#8, PKCS#1 or SEC1).
    pub key: String,
}
