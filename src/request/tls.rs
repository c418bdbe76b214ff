//! Certificates of TLS listeners: loaded from PEM files, chosen per handshake by SNI among each
//! certificate's names (the first certificate is the default), and reloaded when their files
//! change on disk (certbot renewals) without a restart; a renewal that cannot be loaded keeps the
//! certificates in use. The handshake itself is Pingora's (rustls).

use crate::config::CertPair;
use arc_swap::ArcSwap;
use log::{error, info};
use pingora_core::tls::sign::CertifiedKey;
use pingora_core::tls::{CertificateDer, PrivateKeyDer};
use pingora_core::tls::{ClientHello, CryptoProvider, ResolvesServerCert};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

/// How often certificate files are looked at for changes.
pub const RELOAD_EVERY: Duration = Duration::from_secs(1);

/// One loaded certificate with the names it answers for (lower case; `*.example.com` matches
/// one label).
struct Loaded {
    names: Vec<String>,
    key: Arc<CertifiedKey>,
}

/// Why a certificate pair cannot be used: which file (`cert` or `key`) and what is wrong.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PairError {
    /// `cert` or `key`.
    pub field: &'static str,
    /// The problem, naming the file.
    pub message: String,
}

fn pair_error(field: &'static str, message: String) -> PairError {
    PairError { field, message }
}

/// Reads and checks `pair`: both files readable, a certificate chain and a private key in them,
/// and the key matching the certificate.
fn load(pair: &CertPair) -> Result<Loaded, PairError> {
    pingora_core::tls::install_default_crypto_provider();
    let certs = read_certs(&pair.cert)?;
    let key = read_key(&pair.key)?;
    let provider = CryptoProvider::get_default().ok_or_else(|| pair_error("key", "no TLS crypto provider".into()))?;
    let signing = provider
        .key_provider
        .load_private_key(key)
        .map_err(|e| pair_error("key", format!("{}: unusable private key: {e}", pair.key)))?;
    let names = names_of(&certs[0]).map_err(|e| pair_error("cert", format!("{}: {e}", pair.cert)))?;
    let certified = CertifiedKey::new(certs, signing);
    certified.keys_match().map_err(|_| {
        let msg = format!("{} does not match the certificate in {}", pair.key, pair.cert);
        pair_error("key", msg)
    })?;
    Ok(Loaded {
        names,
        key: Arc::new(certified),
    })
}

fn read_certs(path: &str) -> Result<Vec<CertificateDer<'static>>, PairError> {
    let bytes = std::fs::read(path).map_err(|e| pair_error("cert", format!("{path}: cannot read: {e}")))?;
    let certs: Vec<_> = rustls_pemfile::certs(&mut bytes.as_slice())
        .collect::<Result<_, _>>()
        .map_err(|e| pair_error("cert", format!("{path}: not PEM: {e}")))?;
    if certs.is_empty() {
        return Err(pair_error("cert", format!("{path}: no certificate (PEM) found")));
    }
    Ok(certs)
}

fn read_key(path: &str) -> Result<PrivateKeyDer<'static>, PairError> {
    let bytes = std::fs::read(path).map_err(|e| pair_error("key", format!("{path}: cannot read: {e}")))?;
    rustls_pemfile::private_key(&mut bytes.as_slice())
        .map_err(|e| pair_error("key", format!("{path}: not PEM: {e}")))?
        .ok_or_else(|| pair_error("key", format!("{path}: no private key (PEM) found")))
}

/// The DNS names of a certificate: its subject alternative names, else its common name.
fn names_of(cert: &CertificateDer) -> Result<Vec<String>, String> {
    use x509_parser::prelude::{FromDer, GeneralName, X509Certificate};
    let (_, x509) = X509Certificate::from_der(cert.as_ref()).map_err(|e| format!("not a certificate: {e}"))?;
    let mut names: Vec<String> = x509
        .subject_alternative_name()
        .ok()
        .flatten()
        .map(|san| {
            san.value
                .general_names
                .iter()
                .filter_map(|n| match n {
                    GeneralName::DNSName(d) => Some(d.to_ascii_lowercase()),
                    _ => None,
                })
                .collect()
        })
        .unwrap_or_default();
    if names.is_empty() {
        let cn = x509.subject().iter_common_name().next().and_then(|cn| cn.as_str().ok());
        names.extend(cn.map(str::to_ascii_lowercase));
    }
    Ok(names)
}

/// Whether certificate name `pattern` covers `host` (both lower case).
fn covers(pattern: &str, host: &str) -> bool {
    match pattern.strip_prefix("*.") {
        Some(suffix) => host
            .split_once('.')
            .is_some_and(|(label, rest)| !label.is_empty() && rest == suffix),
        None => pattern == host,
    }
}

/// Checks every pair of a listener (for `lb -t` and start-up): `Err((index, problem))`.
pub fn check(pairs: &[CertPair]) -> Result<(), (usize, PairError)> {
    pairs
        .iter()
        .enumerate()
        .try_for_each(|(i, pair)| load(pair).map(|_| ()).map_err(|e| (i, e)))
}

/// The certificates of one TLS listener, as rustls' certificate resolver.
pub struct CertStore {
    pairs: Vec<CertPair>,
    loaded: ArcSwap<Vec<Loaded>>,
    /// Modification times of the files when last loaded.
    stamps: Mutex<Vec<Option<SystemTime>>>,
}

impl std::fmt::Debug for CertStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CertStore").field("pairs", &self.pairs).finish()
    }
}

fn stamps(pairs: &[CertPair]) -> Vec<Option<SystemTime>> {
    let mtime = |p: &str| std::fs::metadata(p).and_then(|m| m.modified()).ok();
    pairs.iter().flat_map(|p| [mtime(&p.cert), mtime(&p.key)]).collect()
}

impl CertStore {
    /// Loads every pair: `Err((index, problem))` for the first that cannot be used.
    pub fn load(pairs: &[CertPair]) -> Result<Arc<CertStore>, (usize, PairError)> {
        let loaded = load_all(pairs)?;
        Ok(Arc::new(CertStore {
            pairs: pairs.to_vec(),
            loaded: ArcSwap::from_pointee(loaded),
            stamps: Mutex::new(stamps(pairs)),
        }))
    }

    /// Loads the files again if any changed since the last load; a set that cannot be loaded
    /// (a renewal half written, a key not matching yet) is logged and the current one kept
    /// until the files change again.
    pub fn reload_if_changed(&self) {
        let now = stamps(&self.pairs);
        let Ok(mut seen) = self.stamps.lock() else { return };
        if *seen == now {
            return;
        }
        *seen = now;
        match load_all(&self.pairs) {
            Ok(loaded) => {
                self.loaded.store(Arc::new(loaded));
                info!("TLS certificates reloaded: {}", self.describe());
            }
            Err((i, e)) => error!(
                "TLS certificates not reloaded, the ones in use stay: certificates[{i}].{}: {}",
                e.field, e.message
            ),
        }
    }

    fn describe(&self) -> String {
        let names: Vec<String> = self.loaded.load().iter().map(|l| l.names.join(" ")).collect();
        names.join(", ")
    }
}

fn load_all(pairs: &[CertPair]) -> Result<Vec<Loaded>, (usize, PairError)> {
    pairs
        .iter()
        .enumerate()
        .map(|(i, pair)| load(pair).map_err(|e| (i, e)))
        .collect()
}

impl ResolvesServerCert for CertStore {
    fn resolve(&self, hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        let loaded = self.loaded.load();
        let sni = hello.server_name().map(str::to_ascii_lowercase);
        let chosen = sni.and_then(|host| loaded.iter().find(|l| l.names.iter().any(|n| covers(n, &host))));
        chosen.or_else(|| loaded.first()).map(|l| Arc::clone(&l.key))
    }
}

/// Reloads changed certificates of `stores` every [`RELOAD_EVERY`]; never returns.
pub async fn watch(stores: Vec<Arc<CertStore>>) {
    loop {
        tokio::time::sleep(RELOAD_EVERY).await;
        for store in &stores {
            store.reload_if_changed();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wildcards_cover_one_label() {
        assert!(covers("example.com", "example.com"));
        assert!(covers("*.example.com", "api.example.com"));
        assert!(!covers("*.example.com", "example.com"));
        assert!(!covers("*.example.com", "a.b.example.com"));
        assert!(!covers("api.example.com", "www.example.com"));
    }

    #[test]
    fn unreadable_files_name_themselves() {
        let pair = CertPair {
            cert: "/nonexistent/lb-test.pem".into(),
            key: "/nonexistent/lb-test.key".into(),
        };
        let (i, e) = check(std::slice::from_ref(&pair)).unwrap_err();
        assert_eq!((i, e.field), (0, "cert"));
        assert!(
            e.message.starts_with("/nonexistent/lb-test.pem: cannot read"),
            "{}",
            e.message
        );
    }
}
