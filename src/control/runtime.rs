//! The running configuration: the file's pools and routes plus runtime changes, applied to the
//! live routing table as transactions. A change is parsed and checked whole, then persisted,
//! then applied to the pool through its own API in one step; on any error nothing changes.
//! TTLs, the state file at start and in-place reloads go through the same path, so there is
//! one place where backends come and go. Serving the API is `admin`'s job.

use crate::clock::unix_ms;
use crate::config::htpasswd;
use crate::config::{BackendConf, Config, ConfigError, Discovery, EtcdConf, Route};
use crate::control::changes::{self, Change, Effect, Refusal};
use crate::control::checks;
use crate::control::cluster::{Cluster, Mirror};
use crate::control::events::{Events, Kind};
use crate::control::history::History;
use crate::control::state_file::{Changes, StateFile};
use crate::control::view::{self, BackendView, PoolView};
use crate::error::StartError;
use crate::request::access::{Access, BasicAuth};
use crate::request::compress::Compression;
use crate::request::guard::{Guard, HttpsRedirect, RateLimit, RedirectMode};
use crate::request::member::Source;
use crate::request::mirror;
use crate::request::pool::{Pool, PoolLive};
use crate::request::rate_limit::RateLimiter;
use crate::request::route::{Matcher, Router, Routing, Table, Target};
use crate::request::rules::Rules;
use crate::request::stats::RouteStats;
use log::{error, info, warn};
use serde::Serialize;
use std::collections::BTreeMap;
use std::fmt;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::Mutex;

#[path = "runtime_rollouts.rs"]
mod rollouts;
#[path = "runtime_routes.rs"]
mod routes;

pub use rollouts::Action as RolloutAction;

/// Reads the configuration again (file and command-line overrides), validated.
pub type Loader = Box<dyn Fn() -> Result<Config, ConfigError> + Send + Sync>;

/// How long an answered heartbeat may wait for the state file: renewals are written with the
/// next change or once the oldest unwritten one is this old, so at most once per period.
const RENEWALS_EVERY: Duration = Duration::from_secs(1);

/// The desired state behind the live table.
struct Desired {
    /// The file's configuration, with each discovering pool's found backends added.
    config: Config,
    changes: Changes,
    /// Backends found by discovery, by pool: the last good set of each.
    discovered: BTreeMap<String, Vec<BackendConf>>,
    /// When the oldest heartbeat answered but not yet in the state file was answered.
    unwritten_renewal: Option<Instant>,
    /// When the timer's last write of heartbeats failed: it tries again a period later, not at
    /// every tick.
    flush_failed: Option<Instant>,
}

impl Desired {
    /// Notes that the state file holds the whole state, answered heartbeats included.
    fn written(&mut self) {
        self.unwritten_renewal = None;
        self.flush_failed = None;
    }

    /// Whether the timer writes the answered heartbeats now: one has waited a period, and the
    /// timer's last failed try, if any, is a period old.
    fn flush_due(&self) -> bool {
        let waited = |t: Option<Instant>| t.is_some_and(|t| t.elapsed() >= RENEWALS_EVERY);
        waited(self.unwritten_renewal) && (self.flush_failed.is_none() || waited(self.flush_failed))
    }
}

/// The control plane's view of the pools, and the only writer of the routing table.
pub struct Runtime {
    routing: Arc<Routing>,
    desired: Mutex<Desired>,
    store: Option<StateFile>,
    loader: Loader,
    /// The shared store, with `cluster:` (then `store` is not used).
    cluster: Option<EtcdConf>,
    etcd: tokio::sync::OnceCell<Cluster>,
    history: History,
    events: Events,
    rollouts: rollouts::Rollouts,
}

/// What a change did to a backend, as the API answers it.
#[derive(Debug, Serialize)]
pub struct Applied {
    /// `created`, `changed`, `renewed` or `removed`.
    pub result: &'static str,
    /// The backend after the change (before it, for a removal).
    pub backend: Option<BackendView>,
    /// Whether the change is kept in the state file (false without one): written before this
    /// answer, or for a heartbeat that only moves a deadline, within about a second.
    pub persisted: bool,
}

/// What an in-place reload did; its `Display` says it in words for the log and `lb reload`.
#[derive(Debug, Serialize)]
pub struct ReloadReport {
    /// Pools that appeared.
    pub pools_added: Vec<String>,
    /// Pools that are gone.
    pub pools_removed: Vec<String>,
    /// Pools that stay, rebuilt from their new settings, live state kept.
    pub pools_kept: Vec<String>,
    /// The kept pools whose settings (or file backends) changed.
    pub pools_changed: Vec<String>,
    /// Number of routes now.
    pub routes: usize,
    /// Whether the routes changed.
    pub routes_changed: bool,
    /// Sections that changed but only take effect with `lb upgrade` (listeners, server,
    /// admin, metrics, access_log, request_id, tracing, cluster).
    pub needs_upgrade: Vec<&'static str>,
}

impl fmt::Display for ReloadReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut parts = Vec::new();
        for (names, what) in [
            (&self.pools_added, "added"),
            (&self.pools_removed, "removed"),
            (&self.pools_changed, "changed"),
        ] {
            match names.as_slice() {
                [] => {}
                [one] => parts.push(format!("pool {one} {what}")),
                many => parts.push(format!("pools {} {what}", many.join(", "))),
            }
        }
        if self.routes_changed {
            parts.push(format!("routes changed ({} now)", self.routes));
        }
        if parts.is_empty() {
            parts.push("pools and routes unchanged".to_string());
        }
        if !self.needs_upgrade.is_empty() {
            parts.push(format!(
                "changes to {} take effect only with `lb upgrade`",
                self.needs_upgrade.join(", ")
            ));
        }
        f.write_str(&parts.join("; "))
    }
}

/// The label of `route`, `routes[index]` in the file, in `lb_route_requests_total`: its name, or
/// its place for an unnamed one (names cannot hold brackets, so the two never meet).
fn route_label(index: usize, route: &Route) -> String {
    route.name.clone().unwrap_or_else(|| format!("routes[{index}]"))
}

/// Builds the table of `config`'s pools and routes, each pool around the live state of the pool
/// of the same name in `old` (kept across reloads) or a new one; members are not set.
fn build_table(
    config: &Config,
    old: Option<&Table>,
    lives: &BTreeMap<String, Arc<crate::request::rollout::Live>>,
) -> Result<Table, StartError> {
    let mut pools = BTreeMap::new();
    for (name, conf) in &config.upstreams {
        let live = old
            .and_then(|t| t.pools.get(name))
            .map(|p| Arc::clone(p.live()))
            .unwrap_or_else(|| PoolLive::new(name));
        pools.insert(name.clone(), Arc::new(Pool::build(name, conf, live)?));
    }
    let https_port = config
        .listeners
        .iter()
        .find(|l| l.tls.is_some())
        .map(|l| l.address.0.port());
    let mut router = Router::new();
    // Counters go on by label across a reload.
    let stats = |label: String| {
        old.and_then(|t| t.route_stats(&label))
            .unwrap_or_else(|| Arc::new(RouteStats::new(label.into())))
    };
    for (index, route) in config.routes.iter().enumerate() {
        if let Some(pool) = route.upstreams().first().and_then(|name| pools.get(*name)) {
            // A running rollout splits the route between its baseline and its candidate.
            let live = route
                .name
                .as_ref()
                .and_then(|n| lives.get(n))
                .filter(|l| route.split.is_none() && route.upstream.as_deref() == Some(l.baseline.as_str()));
            let rollout_split = live.and_then(|l| l.attach(&pools));
            let target = Target {
                name: route.name.as_deref().map(Arc::from),
                rollout: rollout_split.as_ref().and(live.cloned()),
                split: rollout_split.or_else(|| routes::split_of(route, index, &pools)),
                guards: guards(index, route, https_port)?,
                rules: Rules::of(route),
                mirror: mirror::Mirror::of(index, route, &pools),
                compress: route
                    .compress
                    .as_ref()
                    .map(|c| Compression::of(route.name.as_deref(), c)),
                stats: stats(route_label(index, route)),
                ..Target::to(Arc::clone(pool))
            };
            let matcher = Matcher::of(&route.matches, route.host(), route.path_prefix());
            router.push_matcher(matcher, Arc::new(target));
        }
    }
    if config.routes.is_empty() {
        if let Some(pool) = pools.values().next() {
            let target = Target {
                stats: stats("default".to_string()),
                ..Target::to(Arc::clone(pool))
            };
            router.push(None, None, Arc::new(target));
        }
    }
    Ok(Table { router, pools })
}

/// The guards of `route`, in the order they are checked: the HTTPS redirect (to `https_port`),
/// access by address, basic auth (its users read from their file now), the rate limit,
/// redirect mode.
fn guards(index: usize, route: &Route, https_port: Option<u16>) -> Result<Vec<Box<dyn Guard>>, StartError> {
    let mut guards: Vec<Box<dyn Guard>> = Vec::new();
    if let Some(status) = route.https_redirect {
        guards.push(Box::new(HttpsRedirect {
            status,
            port: https_port,
        }));
    }
    if let Some(access) = &route.access {
        guards.push(Box::new(Access {
            allow: access.allow.clone(),
            deny: access.deny.clone(),
        }));
    }
    if let Some(auth) = &route.basic_auth {
        let users = htpasswd::read(&auth.users_file).map_err(|message| StartError::Route {
            index,
            message: format!("basic_auth.users_file: {message}"),
        })?;
        guards.push(Box::new(BasicAuth::new(&auth.realm, users)));
    }
    if let Some(r) = &route.rate_limit {
        guards.push(Box::new(RateLimit {
            limiter: RateLimiter::new(r.requests_per_second, r.burst()),
            key: r.key.clone(),
        }));
    }
    if let Some(status) = route.redirect {
        guards.push(Box::new(RedirectMode { status }));
    }
    Ok(guards)
}

/// Adds to each discovering pool of `config` the backends `discovered` found for it (those the
/// file does not list already).
fn add_discovered(config: &mut Config, discovered: &BTreeMap<String, Vec<BackendConf>>) {
    for (name, conf) in config.upstreams.iter_mut() {
        if conf.discovery.is_none() {
            continue;
        }
        conf.backends.retain(|b| b.source == Source::Config);
        for found in discovered.get(name).into_iter().flatten() {
            if !conf.backends.iter().any(|b| b.address == found.address) {
                conf.backends.push(found.clone());
            }
        }
    }
}

/// Sets every pool of `table` to its members under `config` and `changes`, and every split
/// route to its weights.
fn set_all_members(table: &Table, config: &Config, changes: &Changes) {
    for (name, pool) in &table.pools {
        if let Some(conf) = config.upstreams.get(name) {
            pool.set_members(&changes::members(conf, changes.pools.get(name)));
        }
    }
    routes::set_all_splits(table, config, changes);
}

/// The sections an in-place reload cannot apply, where `old` and `new` differ.
fn needs_upgrade(old: &Config, new: &Config) -> Vec<&'static str> {
    let mut out = Vec::new();
    let listeners = |c: &Config| c.listeners.iter().map(|l| l.address).collect::<Vec<_>>();
    if listeners(old) != listeners(new) {
        out.push("listeners");
    }
    if old.server != new.server {
        out.push("server");
    }
    if old.admin != new.admin {
        out.push("admin");
    }
    if old.cluster != new.cluster {
        out.push("cluster");
    }
    if old.metrics.as_ref().map(|m| m.address) != new.metrics.as_ref().map(|m| m.address) {
        out.push("metrics");
    }
    if old.access_log != new.access_log {
        out.push("access_log");
    }
    if old.request_id != new.request_id {
        out.push("request_id");
    }
    if old.tracing != new.tracing {
        out.push("tracing");
    }
    out
}

impl Runtime {
    /// The runtime of `config` (read again by `loader` on a reload), keeping runtime changes in
    /// `state_file` when given. Pools have the file's members until [`Runtime::restore`].
    pub fn new(config: Config, loader: Loader, state_file: Option<&Path>) -> Result<Arc<Runtime>, StartError> {
        let config_cluster = config.cluster.as_ref().map(|c| c.etcd.clone());
        let clustered = config_cluster.is_some();
        let table = build_table(&config, None, &BTreeMap::new())?;
        set_all_members(&table, &config, &Changes::default());
        Ok(Arc::new(Runtime {
            routing: Arc::new(Routing::from_pointee(table)),
            desired: Mutex::new(Desired {
                config,
                changes: Changes::default(),
                discovered: BTreeMap::new(),
                unwritten_renewal: None,
                flush_failed: None,
            }),
            store: state_file.filter(|_| config_cluster.is_none()).map(StateFile::new),
            loader,
            cluster: config_cluster,
            etcd: tokio::sync::OnceCell::new(),
            history: History::default(),
            events: Events::default(),
            rollouts: rollouts::Rollouts::new(clustered),
        }))
    }

    /// The live table, for the proxy and the health checks.
    pub fn routing(&self) -> &Arc<Routing> {
        &self.routing
    }

    /// The pools' last 15 minutes (sampled by the pools' background service).
    pub fn history(&self) -> &History {
        &self.history
    }

    /// The recent events of the pools.
    pub fn events(&self) -> &Events {
        &self.events
    }

    /// The etcd client, with `cluster:`.
    async fn etcd(&self) -> Option<Result<&Cluster, String>> {
        let conf = self.cluster.as_ref()?;
        Some(self.etcd.get_or_try_init(|| Cluster::connect(conf)).await)
    }

    /// Writes a change made through this instance to etcd (with `cluster:`): `Ok(false)`
    /// without a cluster, a 503 when etcd cannot take it.
    async fn share(&self, old: &Changes, new: &Changes, pool: &str, addr: SocketAddr) -> Result<bool, Refusal> {
        let Some(etcd) = self.etcd().await else {
            return Ok(false);
        };
        let written = match etcd {
            Ok(etcd) => etcd.write(old, new, pool, addr).await,
            Err(e) => Err(e),
        };
        written.map(|()| true).map_err(|e| {
            let msg = format!("the shared state (etcd) is unreachable: {e}; nothing was changed");
            error!("{msg}");
            Refusal::new(503, msg)
        })
    }

    /// Makes `shared` (the cluster's state, as etcd holds it) this instance's runtime state.
    pub async fn adopt(&self, shared: Changes) {
        let mut desired = self.desired.lock().await;
        // The driving instance starts the file's new rollouts (in etcd), not each instance.
        let changes = changes::reconcile_starting(&desired.config, &shared, unix_ms(), false);
        set_all_members(&self.routing.load(), &desired.config, &changes);
        desired.changes = changes;
        self.sync_rollouts(&desired);
    }

    /// With `cluster:`, follows etcd for as long as the process runs: the state read at start,
    /// then every change, with a fresh read whenever the watch has to start again.
    pub async fn follow_cluster(self: Arc<Self>) {
        if self.cluster.is_none() {
            return std::future::pending().await;
        }
        let mut mirror = Mirror::default();
        let mut failing = false;
        loop {
            let followed = match self.etcd().await {
                Some(Ok(etcd)) => match etcd.load(&mut mirror).await {
                    Ok((shared, revision)) => {
                        self.adopt(shared).await;
                        if std::mem::take(&mut failing) {
                            info!("the shared state (etcd) is reachable again: caught up");
                        }
                        let runtime = Arc::clone(&self);
                        etcd.watch(&mut mirror, revision, async move |shared| runtime.adopt(shared).await)
                            .await
                    }
                    Err(e) => Err(e),
                },
                Some(Err(e)) => Err(e),
                None => return,
            };
            if let Err(e) = followed {
                if !std::mem::replace(&mut failing, true) {
                    warn!("{e}; serving the last known state until etcd answers again");
                }
            }
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
    }

    /// Writes `changes` to the state file (durable when it returns `Ok`): `Ok(false)` without
    /// one; a 503 when it cannot be written (a read-only or full disk...), which the caller
    /// turns into "nothing changed". The previous file stays whole either way.
    fn persist(&self, changes: &Changes) -> Result<bool, Refusal> {
        let Some(store) = &self.store else { return Ok(false) };
        store.save(changes).map(|()| true).map_err(|e| {
            let msg = format!(
                "cannot write the state file {}: {e}; nothing was changed",
                store.path().display()
            );
            error!("{msg}");
            Refusal::new(503, msg)
        })
    }

    /// Writes `changes`, the state after a change through the API with `effect`, before it is
    /// answered. A heartbeat that only moves a deadline is answered first and written with the
    /// next write, unless an unwritten one has waited [`RENEWALS_EVERY`] already: then it is
    /// written now (and refused if it cannot be), so no answered heartbeat waits much longer.
    fn write_change(&self, desired: &mut Desired, changes: &Changes, effect: Effect) -> Result<bool, Refusal> {
        if self.store.is_none() {
            return Ok(false);
        }
        if effect == Effect::Renewed {
            let since = *desired.unwritten_renewal.get_or_insert_with(Instant::now);
            if since.elapsed() < RENEWALS_EVERY {
                return Ok(true);
            }
        }
        self.persist(changes)?;
        // The whole state was written: the heartbeats waiting with it too.
        desired.written();
        Ok(true)
    }

    /// Restores the state file's changes (start-up, and after an upgrade's hand-over), made to
    /// fit the configuration.
    pub async fn restore(&self) {
        if let Some(Ok(etcd)) = self.etcd().await {
            match tokio::time::timeout(Duration::from_secs(5), etcd.load(&mut Mirror::default())).await {
                Ok(Ok((shared, _))) => self.adopt(shared).await,
                Ok(Err(e)) => warn!("{e}; starting from the configuration alone until etcd answers"),
                Err(_) => warn!("etcd did not answer in 5 s; starting from the configuration alone until it does"),
            }
            return;
        }
        // Without a state file there is nothing to restore, but the file's rollouts start.
        let kept = self.store.as_ref().map(StateFile::load).unwrap_or_default();
        let mut desired = self.desired.lock().await;
        let changes = changes::reconcile(&desired.config, &kept, unix_ms());
        set_all_members(&self.routing.load(), &desired.config, &changes);
        desired.changes = kept;
        self.commit(&mut desired, changes);
        self.sync_rollouts(&desired);
    }

    /// Makes `changes` the runtime changes, written to the state file when they differ from
    /// the current ones. The pools already have them: a failed write is logged (by
    /// [`Runtime::persist`]) and retried with the next change.
    fn commit(&self, desired: &mut Desired, changes: Changes) {
        if changes != desired.changes && self.persist(&changes).is_ok() {
            desired.written();
        }
        desired.changes = changes;
    }

    /// Applies `change` to backend `addr` of pool `pool`: checked, persisted, applied, or
    /// refused with nothing changed.
    pub async fn apply(&self, pool: &str, addr: SocketAddr, change: Change) -> Result<Applied, Refusal> {
        let mut desired = self.desired.lock().await;
        let table = self.routing.load_full();
        let (Some(live), Some(conf)) = (table.pools.get(pool), desired.config.upstreams.get(pool)) else {
            return Err(Refusal::new(404, format!("no pool named {pool:?}")));
        };
        let before = view::backend(live, addr, &desired.changes);
        let was = before.as_ref().map(|b| (b.state, b.weight));
        let mut changes = desired.changes.clone();
        let pc = changes.pools.entry(pool.to_string()).or_default();
        let effect = changes::apply(pc, conf, addr, &change, unix_ms())?;
        if pc.is_empty() {
            changes.pools.remove(pool);
        }
        let members = changes::members(conf, changes.pools.get(pool));
        changes::check_members(pool, conf, &members)?;
        // Written (to etcd, or the state file and its directory fsynced) before the pool changes
        // and the client hears of it: an answered change survives a crash.
        let persisted = if self.cluster.is_some() {
            self.share(&desired.changes, &changes, pool, addr).await?
        } else {
            self.write_change(&mut desired, &changes, effect)?
        };
        live.set_members(&members);
        desired.changes = changes;
        let backend = match effect {
            Effect::Removed => before,
            _ => view::backend(live, addr, &desired.changes),
        };
        if effect != Effect::Renewed {
            info!(
                "pool {pool} backend {addr}: {} through the admin API",
                result_name(effect)
            );
            let (kind, detail) = applied_event(effect, was, backend.as_ref());
            self.events.record(kind, Some(pool), Some(addr), detail);
        }
        Ok(Applied {
            result: result_name(effect),
            backend,
            persisted,
        })
    }

    /// Removes registrations whose TTL ran out, and writes pending renewals (at most once a
    /// second). Called a few times a second.
    pub async fn expire(&self) {
        self.expire_at(unix_ms()).await;
    }

    /// [`Runtime::expire`] with the wall clock at `now` (milliseconds since the Unix epoch).
    async fn expire_at(&self, now: u64) {
        let mut desired = self.desired.lock().await;
        let mut changes = desired.changes.clone();
        let mut expired = Vec::new();
        for (name, pc) in changes.pools.iter_mut() {
            pc.registered.retain(|r| {
                let alive = r.expires_at_ms.is_none_or(|t| t > now);
                if !alive {
                    expired.push((name.clone(), r.address, r.ttl_ms.unwrap_or(0)));
                }
                alive
            });
        }
        changes.pools.retain(|_, pc| !pc.is_empty());
        if expired.is_empty() {
            if desired.flush_due() {
                match self.persist(&desired.changes) {
                    Ok(_) => desired.written(),
                    Err(_) => desired.flush_failed = Some(Instant::now()),
                }
            }
            return;
        }
        // The backends are gone whatever the disk says: a failed write is logged (by persist)
        // and retried with the next renewal or change.
        if self.persist(&changes).is_ok() {
            desired.written();
        }
        let table = self.routing.load();
        for (name, addr, ttl) in expired {
            if let (Some(pool), Some(conf)) = (table.pools.get(&name), desired.config.upstreams.get(&name)) {
                pool.set_members(&changes::members(conf, changes.pools.get(&name)));
            }
            warn!("pool {name} backend {addr} removed: no heartbeat within its TTL of {ttl} ms");
            let detail = format!("removed: no heartbeat within its TTL of {ttl} ms");
            self.events.record(Kind::Expired, Some(&name), Some(addr), detail);
        }
        desired.changes = changes;
    }

    /// Re-reads the configuration and applies its pools and routes in place: pools that stay
    /// keep their live state and runtime changes, new pools get a first (strict) round of
    /// health checks before they take traffic. On any error nothing changes.
    pub async fn reload(&self) -> Result<ReloadReport, String> {
        let outcome = self.reload_in_place().await;
        self.events.record(Kind::Reloaded, None, None, reload_detail(&outcome));
        outcome
    }

    async fn reload_in_place(&self) -> Result<ReloadReport, String> {
        let mut config = (self.loader)().map_err(|e| e.to_string())?;
        let mut desired = self.desired.lock().await;
        desired
            .discovered
            .retain(|name, _| config.upstreams.get(name).is_some_and(|u| u.discovery.is_some()));
        add_discovered(&mut config, &desired.discovered);
        let old = self.routing.load_full();
        let start = self.cluster.is_none();
        let changes = changes::reconcile_starting(&config, &desired.changes, unix_ms(), start);
        let table = {
            let served = crate::control::rollout::effective(&config, &changes.rollouts);
            build_table(&served, Some(&old), &self.rollouts.lives()).map_err(|e| e.to_string())?
        };
        for (name, conf) in &config.upstreams {
            changes::check_members(name, conf, &changes::members(conf, changes.pools.get(name)))
                .map_err(|r| format!("upstreams.{name}: {}", r.message))?;
        }
        set_all_members(&table, &config, &changes);
        let fresh: Vec<Arc<Pool>> = table
            .pools
            .iter()
            .filter(|(name, _)| !old.pools.contains_key(*name))
            .map(|(_, p)| Arc::clone(p))
            .collect();
        checks::first_rounds(fresh).await;
        let was = &desired.config.upstreams;
        let report = ReloadReport {
            pools_added: names(&table, |n| !old.pools.contains_key(n)),
            pools_removed: names(&old, |n| !table.pools.contains_key(n)),
            pools_kept: names(&table, |n| old.pools.contains_key(n)),
            pools_changed: names(&table, |n| {
                was.get(n).is_some_and(|u| Some(u) != config.upstreams.get(n))
            }),
            routes: config.routes.len(),
            routes_changed: desired.config.routes != config.routes,
            needs_upgrade: needs_upgrade(&desired.config, &config),
        };
        self.routing.store(Arc::new(table));
        self.commit(&mut desired, changes);
        desired.config = config;
        self.rollouts_built(&desired);
        info!("configuration reloaded in place: {report}");
        Ok(report)
    }

    /// The discovery settings of the pools that have some: `(pool, discovery)`.
    pub async fn discovery_sources(&self) -> Vec<(String, Discovery)> {
        let desired = self.desired.lock().await;
        desired
            .config
            .upstreams
            .iter()
            .filter_map(|(name, u)| Some((name.clone(), u.discovery.clone()?)))
            .collect()
    }

    /// Makes `found` the discovered backends of pool `pool` (a checked, non-empty set), applied
    /// at once; returns the addresses added and removed. Runtime changes to backends that are
    /// gone are dropped, as on a reload.
    pub async fn set_discovered(
        &self,
        pool: &str,
        found: Vec<BackendConf>,
    ) -> Result<(Vec<SocketAddr>, Vec<SocketAddr>), String> {
        let mut desired = self.desired.lock().await;
        let before: Vec<SocketAddr> = match desired.config.upstreams.get(pool) {
            Some(u) if u.discovery.is_some() => u.backends.iter().map(|b| b.address.0).collect(),
            _ => return Err(format!("pool {pool} has no discovery")),
        };
        let mut discovered = desired.discovered.clone();
        discovered.insert(pool.to_string(), found);
        let mut config = desired.config.clone();
        add_discovered(&mut config, &discovered);
        let changes = changes::reconcile(&config, &desired.changes, unix_ms());
        let Some(conf) = config.upstreams.get(pool) else {
            return Err(format!("pool {pool} is gone"));
        };
        let members = changes::members(conf, changes.pools.get(pool));
        changes::check_members(pool, conf, &members).map_err(|r| r.message)?;
        let after: Vec<SocketAddr> = conf.backends.iter().map(|b| b.address.0).collect();
        self.commit(&mut desired, changes);
        if let Some(live) = self.routing.load().pools.get(pool) {
            live.set_members(&members);
        }
        let added: Vec<SocketAddr> = after.iter().filter(|a| !before.contains(a)).copied().collect();
        let removed: Vec<SocketAddr> = before.iter().filter(|a| !after.contains(a)).copied().collect();
        for (kind, list) in [(Kind::Registered, &added), (Kind::Removed, &removed)] {
            for addr in list {
                self.events.record(kind, Some(pool), Some(*addr), "by discovery");
            }
        }
        desired.config = config;
        desired.discovered = discovered;
        Ok((added, removed))
    }

    /// Every pool, as the API shows it.
    pub async fn pools(&self) -> Vec<PoolView> {
        let desired = self.desired.lock().await;
        let table = self.routing.load();
        table.pools.values().map(|p| view::pool(p, &desired.changes)).collect()
    }

    /// Pool `name`, as the API shows it.
    pub async fn pool(&self, name: &str) -> Option<PoolView> {
        let desired = self.desired.lock().await;
        let table = self.routing.load();
        table.pools.get(name).map(|p| view::pool(p, &desired.changes))
    }
}

fn names(table: &Table, keep: impl Fn(&String) -> bool) -> Vec<String> {
    table.pools.keys().filter(|n| keep(n)).cloned().collect()
}

/// The event of a change through the API: `was` is the backend's (state, weight) before it,
/// `now` the backend after it.
fn applied_event(effect: Effect, was: Option<(&str, usize)>, now: Option<&BackendView>) -> (Kind, String) {
    let kind = match effect {
        Effect::Created => Kind::Registered,
        Effect::Removed => Kind::Removed,
        Effect::Changed | Effect::Renewed => Kind::Changed,
    };
    let mut detail = Vec::new();
    if let (Some((state, weight)), Some(now), Effect::Changed) = (was, now, effect) {
        if state != now.state {
            detail.push(format!("state {state} → {}", now.state));
        }
        if weight != now.weight {
            detail.push(format!("weight {weight} → {}", now.weight));
        }
    }
    if let (Some(now), Effect::Created) = (now, effect) {
        detail.push(format!("weight {}, {}", now.weight, now.state));
    }
    detail.push("through the admin API".to_string());
    (kind, detail.join(", "))
}

/// What a reload event says: what changed (the report's own words, as in the log), or why
/// nothing did.
fn reload_detail(outcome: &Result<ReloadReport, String>) -> String {
    match outcome {
        Ok(report) => format!("applied in place: {report}"),
        Err(e) => format!("refused, nothing changed: {e}"),
    }
}

fn result_name(effect: Effect) -> &'static str {
    match effect {
        Effect::Created => "created",
        Effect::Changed => "changed",
        Effect::Renewed => "renewed",
        Effect::Removed => "removed",
    }
}

#[cfg(test)]
#[path = "runtime_tests.rs"]
mod tests;
