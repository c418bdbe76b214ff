//! The proxy service and its listeners: the front over two Pingora proxies (one with h2c),
//! every listener with unbuffered L4 sockets (the front buffers while a request is active, so an
//! idle connection holds no buffer), TLS listeners with their certificate stores (SNI, reload)
//! and ALPN, and the PROXY protocol before TLS where configured.

use crate::config::Config;
use crate::error::StartError;
use crate::process::lifecycle::{Draining, Lifecycle};
use crate::request::access_log::AccessLog;
use crate::request::front::head::Limits;
use crate::request::front::linger::Linger;
use crate::request::front::listener::{ListenerRule, ProxyBeforeTls};
use crate::request::front::{ClientRules, Front, FrontStats};
use crate::request::proxy::{Edge, Lb};
use crate::request::tls::CertStore;
use pingora_core::apps::HttpServerOptions;
use pingora_core::listeners::tls::TlsSettings;
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
    }
}

fn tls_settings(index: usize, tls: &crate::config::TlsConf) -> Result<(TlsSettings, Arc<CertStore>), StartError> {
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
    Ok((settings, store))
}

/// The proxy service of `config` with its listeners, and the certificate stores to watch.
pub fn proxy_service(
    config: &Config,
    conf: &Arc<ServerConf>,
    parts: Parts,
) -> Result<(Service<ProxyApp>, Vec<Arc<CertStore>>), StartError> {
    let trusted = Arc::new(config.trusted_proxies.clone());
    let rules = config
        .listeners
        .iter()
        .map(|l| {
            let tls = l.tls.is_some();
            ListenerRule::new(
                l.address.0,
                tls,
                l.h2c,
                l.proxy_protocol,
                l.max_connections,
                Arc::clone(&trusted),
            )
        })
        .collect();
    let h1 = pingora_proxy::http_proxy(conf, parts.lb.clone());
    let direct = parts.lb.direct_enabled().then(|| parts.lb.clone());
    let h2c = config.listeners.iter().any(|l| l.h2c).then(|| {
        let mut proxy = pingora_proxy::http_proxy(conf, parts.lb);
        let mut options = HttpServerOptions::default();
        options.h2c = true;
        proxy.server_options = Some(options);
        proxy
    });
    let client = client_rules(config);
    let header_timeout = client.header_timeout;
    let front = Front::new(
        h1,
        h2c,
        direct,
        rules,
        client,
        Arc::clone(&parts.life.traffic),
        parts.front_stats,
        parts.access_log,
    );
    let mut service = Service::new("lb proxy".to_string(), Draining::new(front, parts.life));
    let mut stores = Vec::new();
    for (index, listener) in config.listeners.iter().enumerate() {
        let endpoint = ListenerConfig::tcp(listener.address.to_string()).l4_buffer(L4BufferSettings::unbuffered());
        match &listener.tls {
            Some(tls) => {
                let (settings, store) = tls_settings(index, tls)?;
                stores.push(store);
                service.add_listener(endpoint.tls(settings));
            }
            None => service.add_listener(endpoint),
        }
    }
    let proxied_tls: Vec<_> = config
        .listeners
        .iter()
        .filter(|l| l.tls.is_some() && l.proxy_protocol)
        .map(|l| l.address.0)
        .collect();
    if !proxied_tls.is_empty() {
        service.endpoints().set_pre_tls_callback(Arc::new(ProxyBeforeTls {
            addresses: proxied_tls,
            trusted,
            timeout: header_timeout,
        }));
    }
    Ok((service, stores))
}
