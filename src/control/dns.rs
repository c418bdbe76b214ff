//! DNS discovery: a pool's backends are the addresses a name resolves to (`hickory-resolver`,
//! against the system's resolver or the one given). A/AAAA records take the configured port;
//! SRV records (names starting with `_`) give each target's port and weight, the lowest
//! priority only (RFC 2782). The name is resolved again when its records' TTL runs out, at
//! least every `refresh` and at most every second. An empty answer (NXDOMAIN, no records) is
//! treated like an outage, as is a failed lookup: the last good set stays.

use crate::config::{Addr, BackendConf, DnsDiscovery, MAX_WEIGHT};
use crate::request::member::Source;
use hickory_resolver::config::{ConnectionConfig, NameServerConfig, ResolverConfig, ResolverOpts};
use hickory_resolver::net::runtime::TokioRuntimeProvider;
use hickory_resolver::proto::rr::RData;
use hickory_resolver::{Resolver, TokioResolver};
use std::collections::BTreeSet;
use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

/// Shortest wait between two resolutions of a name.
pub const MIN_REFRESH: Duration = Duration::from_secs(1);

/// A resolver for `conf`: its `resolver` (UDP, then TCP), or the system's.
pub fn resolver(conf: &DnsDiscovery) -> Result<TokioResolver, String> {
    let mut opts = ResolverOpts::default();
    opts.timeout = Duration::from_secs(2);
    opts.attempts = 2;
    let builder = match conf.resolver {
        Some(Addr(addr)) => {
            let mut udp = ConnectionConfig::udp();
            udp.port = addr.port();
            let mut tcp = ConnectionConfig::tcp();
            tcp.port = addr.port();
            let server = NameServerConfig::new(addr.ip(), true, vec![udp, tcp]);
            Resolver::builder_with_config(
                ResolverConfig::from_name_servers(vec![server]),
                TokioRuntimeProvider::default(),
            )
        }
        None => TokioResolver::builder_tokio().map_err(|e| format!("cannot read the system's DNS settings: {e}"))?,
    };
    builder
        .with_options(opts)
        .build()
        .map_err(|e| format!("cannot build a DNS resolver: {e}"))
}

/// The name as a fully qualified one (a trailing dot: no search list).
fn fqdn(name: &str) -> String {
    if name.ends_with('.') {
        name.to_string()
    } else {
        format!("{name}.")
    }
}

/// Resolves `conf`'s name: the backends found (sorted, never empty) and when the answer expires.
pub async fn resolve(resolver: &TokioResolver, conf: &DnsDiscovery) -> Result<(Vec<BackendConf>, Instant), String> {
    let name = fqdn(&conf.name);
    let mut found: BTreeSet<(SocketAddr, u32)> = BTreeSet::new();
    let valid_until;
    if conf.is_srv() {
        let srv = resolver
            .srv_lookup(name.as_str())
            .await
            .map_err(|e| lookup_error(&name, "SRV", &e))?;
        let mut until = srv.valid_until();
        let records: Vec<_> = srv
            .answers()
            .iter()
            .filter_map(|r| match &r.data {
                RData::SRV(s) => Some(s.clone()),
                _ => None,
            })
            .collect();
        let best = records.iter().map(|s| s.priority).min();
        for s in records.iter().filter(|s| Some(s.priority) == best) {
            let target = s.target.to_ascii();
            let ips = resolver
                .lookup_ip(target.as_str())
                .await
                .map_err(|e| lookup_error(&target, "A/AAAA", &e))?;
            until = until.min(ips.valid_until());
            let weight = u32::from(s.weight).clamp(1, MAX_WEIGHT);
            found.extend(ips.iter().map(|ip| (SocketAddr::new(ip, s.port), weight)));
        }
        valid_until = until;
    } else {
        let port = conf.port.unwrap_or(80);
        let ips = resolver
            .lookup_ip(name.as_str())
            .await
            .map_err(|e| lookup_error(&name, "A/AAAA", &e))?;
        valid_until = ips.valid_until();
        found.extend(ips.iter().map(|ip: IpAddr| (SocketAddr::new(ip, port), 1)));
    }
    if found.is_empty() {
        return Err(format!("{name}: no address in the answer (it looks like an outage)"));
    }
    let mut seen = BTreeSet::new();
    let backends = found
        .into_iter()
        .filter(|(addr, _)| seen.insert(*addr))
        .map(|(addr, weight)| BackendConf {
            address: Addr(addr),
            weight,
            max_connections: None,
            source: Source::Dns,
        })
        .collect();
    Ok((backends, valid_until))
}

fn lookup_error(name: &str, kind: &str, e: &hickory_resolver::net::NetError) -> String {
    if e.is_no_records_found() {
        format!("{name}: no {kind} record (an empty answer looks like an outage)")
    } else {
        format!("{name}: {kind} lookup failed: {e}")
    }
}

/// How long to wait before resolving again: until the answer expires, within
/// [`MIN_REFRESH`]..=`refresh`.
pub fn next_wait(valid_until: Instant, refresh: Duration) -> Duration {
    valid_until
        .saturating_duration_since(Instant::now())
        .clamp(MIN_REFRESH, refresh.max(MIN_REFRESH))
}
