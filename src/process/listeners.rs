//! The proxy service and its listeners: the front over two Pingora proxies (one with h2c), both
//! with the HTTP/2 limits of `clients.http2`, every listener a plain TCP one with unbuffered L4
//! sockets (the front buffers while a request is active, so an idle connection holds no buffer;
//! and the front makes TLS handshakes itself, within `clients.handshake_timeout`, with each TLS
//! listener's certificate store (SNI, reload) and ALPN).

use crate::config::Config;
use crate::error::StartError;
use crate::process::lifecycle::{Draining, Lifecycle};
use crate::request::access_log::AccessLog;
use crate::request::front::head::Limits;
use crate::request::front::linger::Linger;
use crate::request::front::listener::ListenerRule;
use crate::request::front::{h2, ClientRules, Front, FrontStats};
use crate::request::proxy::{Edge, Lb};
use crate::request::tls::CertStore;
use pingora_core::apps::HttpServerOptions;
use pingora_core::listeners::tls::{Acceptor, TlsSettings};
use pingora_core::listeners::{L4BufferSettings, ListenerConfig, ALPN};
use pingora_core::server::configuration::ServerConf;
use pingora_core::services::listening::Service;
use pingora_proxy::HttpProxy;
use std::sync::Arc;

/// The proxy application as Pingora runs it.
pub type ProxyApp = Draining<Front<HttpProxy<Lb>, Lb>>;

/// What the proxy service needs besides the configuration.
pub struct Parts {
    /// The proxy (routing, pools).
    pub lb: Lb,
    /// Draining and in-flight state.
    pub life: Arc<Lifecycle>,
    /// The access log, for the front's own answers.
    pub access_log: Option<Arc<AccessLog>>,
    /// Counters of the front's own answers.
    pub front_stats: Arc<FrontStats>,
}

/// `clients.max_body_size`, `None` for no limit (0): the front checks it against the head, the
/// proxy against a declared length and the body as it comes.
fn max_body(config: &Config) -> Option<u64> {
    let max = config.clients.max_body_size.0;
    (max > 0).then_some(max)
}

/// The client rules of `config`.
pub fn client_rules(config: &Config) -> ClientRules {
    let c = &config.clients;
    ClientRules {
        header_timeout: c.header_timeout.0,
        keepalive_timeout: c.keepalive_timeout.0,
        keepalive_requests: c.keepalive_requests,
        body_timeout: c.body_timeout.0,
        limits: Limits {
            max_request_line: usize::try_from(c.max_request_line.0).unwrap_or(usize::MAX),
            max_head: usize::try_from(c.max_header_size.0).unwrap_or(usize::MAX),
        },
        max_body: max_body(config),
        linger: linger(config),
        handshake_timeout: c.handshake_timeout.0,
        h2_control_frames: c.http2.max_control_frames,
    }
}

/// The bounds of a lingering close of `config` (`clients.lingering_*`), `None` when it is off.
pub fn linger(config: &Config) -> Option<Linger> {
    let c = &config.clients;
    (!c.lingering_time.0.is_zero()).then_some(Linger {
        time: c.lingering_time.0,
        timeout: c.lingering_timeout.0,
        bytes: c.lingering_size.0,
    })
}

/// `LB_PROXY_PATH=pingora` in the environment turns lb's own request loop off: every request
/// goes through Pingora's `HttpProxy` (to compare the two; the test suite passes on both).
pub const PROXY_PATH_ENV: &str = "LB_PROXY_PATH";

/// The proxy's edge settings of `config`.
pub fn edge(config: &Config) -> Edge {
    Edge {
        trusted_proxies: config.trusted_proxies.clone(),
        max_body: max_body(config),
        direct: std::env::var_os(PROXY_PATH_ENV).is_none_or(|path| path != "pingora"),
        upstream_keepalive: config.server.upstream_keepalive_pool_size,
        send_timeout: config.clients.send_timeout.0,
        request_id: (config.request_id.enabled).then(|| (config.request_id.header.0.clone(), config.request_id.keep)),
        body_min_rate: config.clients.body_min_rate.0,
        body_timeout: config.clients.body_timeout.0,
        // Set by the server with the exporter it starts.
        tracer: None,
    }
}

/// A Pingora proxy over `lb` for client connections: HTTP/2 with `clients.http2`'s limits, idle
/// HTTP/2 connections closed after `clients.keepalive_timeout`; `h2c` for prior knowledge.
fn http_proxy(config: &Config, conf: &Arc<ServerConf>, lb: Lb, h2c: bool) -> HttpProxy<Lb> {
    let mut proxy = pingora_proxy::http_proxy(conf, lb);
    proxy.h2_options = Some(h2::options(&config.clients.http2));
    let mut options = HttpServerOptions::default();
    options.h2c = h2c;
    options.h2_idle_timeout = Some(config.clients.keepalive_timeout.0);
    proxy.server_options = Some(options);
    proxy
}

fn tls_acceptor(index: usize, tls: &crate::config::TlsConf) -> Result<(Acceptor, Arc<CertStore>), StartError> {
    let store = CertStore::load(&tls.certificates).map_err(|(i, e)| StartError::Listener {
        index,
        message: format!("tls.certificates[{i}].{}: {}", e.field, e.message),
    })?;
    let mut settings = TlsSettings::intermediate("", "").map_err(|e| StartError::Listener {
        index,
        message: format!("tls: {e}"),
    })?;
    settings.set_cert_resolver(Arc::clone(&store) as Arc<_>);
    settings.set_alpn(if tls.http2 { ALPN::H2H1 } else { ALPN::H1 });
    Ok((settings.build(), store))
}

/// The proxy service of `config` with its listeners, and the certificate stores to watch.
pub fn proxy_service(
    config: &Config,
    conf: &Arc<ServerConf>,
    parts: Parts,
) -> Result<(Service<ProxyApp>, Vec<Arc<CertStore>>), StartError> {
    let trusted = Arc::new(config.trusted_proxies.clone());
    let mut rules = Vec::new();
    let mut stores = Vec::new();
    for (index, l) in config.listeners.iter().enumerate() {
        let rule = ListenerRule::new(
            l.address.0,
            false,
            l.h2c,
            l.proxy_protocol,
            l.max_connections,
            Arc::clone(&trusted),
        );
        rules.push(match &l.tls {
            Some(tls) => {
                let (acceptor, store) = tls_acceptor(index, tls)?;
                stores.push(store);
                rule.with_tls(acceptor)
            }
            None => rule,
        });
    }
    let h1 = http_proxy(config, conf, parts.lb.clone(), false);
    let direct = parts.lb.direct_enabled().then(|| parts.lb.clone());
    let h2c = config
        .listeners
        .iter()
        .any(|l| l.h2c)
        .then(|| http_proxy(config, conf, parts.lb, true));
    let front = Front::new(
        h1,
        h2c,
        direct,
        rules,
        client_rules(config),
        Arc::clone(&parts.life.traffic),
        parts.front_stats,
        parts.access_log,
    );
    let mut service = Service::new("lb proxy".to_string(), Draining::new(front, parts.life));
    for listener in &config.listeners {
        let endpoint = ListenerConfig::tcp(listener.address.to_string()).l4_buffer(L4BufferSettings::unbuffered());
        service.add_listener(endpoint);
    }
    Ok((service, stores))
}
