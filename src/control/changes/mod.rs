//! The pure rules of runtime changes: what a registration, an update or a removal does to a
//! pool's [`PoolChanges`], what membership a pool's file plus its changes give, and how kept
//! changes are reconciled with a (new) configuration. No I/O, no pools: `runtime` applies the
//! result. Routes' split weights have their own rules in [`routes`].

pub mod routes;

use crate::config::{Config, Upstream, MAX_WEIGHT};
use crate::control::state_file::{Changes, Override, PoolChanges, Registered};
use crate::request::member::{AdminState, Member, Source};
use crate::request::pool::config_members;
use log::{info, warn};
use std::net::SocketAddr;
use std::time::Duration;

/// Why a change is refused: an HTTP status and a message for `{"error": ...}`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct Refusal {
    /// 400, 404, 409, 500, 503...
    pub status: u16,
    /// What is wrong.
    pub message: String,
}

impl Refusal {
    /// A refusal with `status`.
    pub fn new(status: u16, message: impl Into<String>) -> Self {
        Refusal {
            status,
            message: message.into(),
        }
    }
}

/// A registration or its renewal (`PUT`): fields left out keep their value (or take their
/// default for a new backend).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Register {
    /// Weight, 1 to 256 (default 1).
    pub weight: Option<u32>,
    /// Admin state (default ready).
    pub state: Option<AdminState>,
    /// `Some(Some(d))` sets a TTL, `Some(None)` removes it.
    pub ttl: Option<Option<Duration>>,
    /// `Some(Some(n))` caps in-flight requests, `Some(None)` falls back to the pool's.
    pub max_connections: Option<Option<usize>>,
}

/// A change of an existing backend (`PATCH`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Update {
    /// New weight.
    pub weight: Option<u32>,
    /// New admin state.
    pub state: Option<AdminState>,
}

/// One change to one backend.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Change {
    /// `PUT`.
    Register(Register),
    /// `PATCH`.
    Update(Update),
    /// `DELETE`.
    Remove,
}

/// What a change did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Effect {
    /// A backend joined the pool.
    Created,
    /// A backend's settings changed (or a `PUT` repeated them).
    Changed,
    /// Nothing changed but perhaps a TTL deadline: a heartbeat, or a repeated `PUT`.
    Renewed,
    /// A backend left the pool.
    Removed,
}

/// Applies `change` for `addr` to `pc`, the changes of pool `conf`, at `now_ms`.
pub fn apply(
    pc: &mut PoolChanges,
    conf: &Upstream,
    addr: SocketAddr,
    change: &Change,
    now_ms: u64,
) -> Result<Effect, Refusal> {
    let in_file = conf.backends.iter().any(|b| b.address.0 == addr);
    let known = (in_file && !pc.removed.contains(&addr)) || pc.registered(addr).is_some();
    match change {
        Change::Register(r) => register(pc, conf, addr, in_file, r, now_ms),
        _ if !known => Err(Refusal::new(404, format!("backend {addr} is not in this pool"))),
        Change::Update(u) if in_file => {
            override_file_backend(pc, conf, addr, u.weight, u.state);
            Ok(Effect::Changed)
        }
        Change::Update(u) => {
            if let Some(r) = pc.registered.iter_mut().find(|r| r.address == addr) {
                r.weight = u.weight.unwrap_or(r.weight);
                r.state = u.state.unwrap_or(r.state);
            }
            Ok(Effect::Changed)
        }
        Change::Remove => {
            pc.registered.retain(|r| r.address != addr);
            pc.overrides.retain(|o| o.address != addr);
            if in_file {
                pc.removed.push(addr);
            }
            Ok(Effect::Removed)
        }
    }
}

fn register(
    pc: &mut PoolChanges,
    conf: &Upstream,
    addr: SocketAddr,
    in_file: bool,
    r: &Register,
    now_ms: u64,
) -> Result<Effect, Refusal> {
    if in_file {
        if matches!(r.ttl, Some(Some(_))) {
            let msg = format!(
                "{addr} is listed in the configuration file: only backends registered through the API have a TTL"
            );
            return Err(Refusal::new(409, msg));
        }
        if r.max_connections.is_some() {
            let msg = format!("{addr} is listed in the configuration file: set its max_connections there");
            return Err(Refusal::new(409, msg));
        }
        let was_removed = pc.removed.contains(&addr);
        pc.removed.retain(|a| *a != addr);
        override_file_backend(pc, conf, addr, r.weight, r.state);
        return Ok(if was_removed { Effect::Created } else { Effect::Changed });
    }
    let existing = pc.registered.iter().position(|x| x.address == addr);
    let before = existing.map(|i| pc.registered[i].clone());
    let mut entry = before.clone().unwrap_or(Registered {
        address: addr,
        weight: 1,
        state: AdminState::Ready,
        max_connections: None,
        ttl_ms: None,
        expires_at_ms: None,
    });
    entry.weight = r.weight.unwrap_or(entry.weight);
    entry.state = r.state.unwrap_or(entry.state);
    if let Some(max) = r.max_connections {
        entry.max_connections = max;
    }
    if let Some(ttl) = r.ttl {
        entry.ttl_ms = ttl.map(|d| d.as_millis() as u64);
    }
    // Every registration renews its TTL: a heartbeat is a repeated PUT.
    entry.expires_at_ms = entry.ttl_ms.map(|ttl| now_ms.saturating_add(ttl));
    let effect = match &before {
        None => Effect::Created,
        Some(b)
            if Registered {
                expires_at_ms: entry.expires_at_ms,
                ..b.clone()
            } == entry =>
        {
            Effect::Renewed
        }
        Some(_) => Effect::Changed,
    };
    match existing {
        Some(i) => pc.registered[i] = entry,
        None => pc.registered.push(entry),
    }
    Ok(effect)
}

/// Records `weight` and `state` for a backend of the file, keeping only what differs from it.
fn override_file_backend(
    pc: &mut PoolChanges,
    conf: &Upstream,
    addr: SocketAddr,
    weight: Option<u32>,
    state: Option<AdminState>,
) {
    let file_weight = conf
        .backends
        .iter()
        .find(|b| b.address.0 == addr)
        .map_or(1, |b| b.weight);
    let mut o = pc.override_of(addr).cloned().unwrap_or(Override {
        address: addr,
        weight: None,
        state: None,
    });
    if let Some(w) = weight {
        o.weight = (w != file_weight).then_some(w);
    }
    if let Some(s) = state {
        o.state = (s != AdminState::Ready).then_some(s);
    }
    pc.overrides.retain(|x| x.address != addr);
    if o.weight.is_some() || o.state.is_some() {
        pc.overrides.push(o);
    }
}

/// The membership of pool `conf` with `pc` applied: the file's backends (minus removed ones,
/// with overrides), then registered ones in registration order.
pub fn members(conf: &Upstream, pc: Option<&PoolChanges>) -> Vec<Member> {
    let empty = PoolChanges::default();
    let pc = pc.unwrap_or(&empty);
    let mut members: Vec<Member> = config_members(conf)
        .into_iter()
        .filter(|m| !pc.removed.contains(&m.addr))
        .map(|mut m| {
            if let Some(o) = pc.override_of(m.addr) {
                m.weight = o.weight.unwrap_or(m.weight);
                m.state = o.state.unwrap_or(m.state);
            }
            m
        })
        .collect();
    members.extend(pc.registered.iter().map(|r| Member {
        addr: r.address,
        weight: r.weight,
        state: r.state,
        source: Source::Api,
        max_connections: r.max_connections.or(conf.max_connections),
    }));
    members
}

/// Checks `members` against pool `conf`'s rules: weights in range, and caps for `first`.
pub fn check_members(pool: &str, conf: &Upstream, members: &[Member]) -> Result<(), Refusal> {
    if let Some(m) = members.iter().find(|m| !(1..=MAX_WEIGHT).contains(&m.weight)) {
        return Err(Refusal::new(
            400,
            format!("weight {} is out of range 1-{MAX_WEIGHT}", m.weight),
        ));
    }
    let uncapped = members.iter().find(|m| m.max_connections.is_none());
    if let (crate::config::Algorithm::First, Some(m)) = (conf.algorithm, uncapped) {
        let msg = format!(
            "pool {pool} uses algorithm first, which needs max_connections: give {} one (the pool sets none)",
            m.addr
        );
        return Err(Refusal::new(400, msg));
    }
    Ok(())
}

/// `kept` made to fit `config` (routes' changes by [`routes::reconcile`]): pools that are gone
/// and registrations whose TTL ran out are dropped, changes to file backends that are no longer
/// listed are dropped, and a registered backend the file now lists becomes a file backend
/// (keeping its weight and state). Each dropped change is logged.
pub fn reconcile(config: &Config, kept: &Changes, now_ms: u64) -> Changes {
    reconcile_starting(config, kept, now_ms, true)
}

/// [`reconcile`], starting the file's new rollouts only when `start` (see
/// [`crate::control::rollout::reconcile`]).
pub fn reconcile_starting(config: &Config, kept: &Changes, now_ms: u64, start: bool) -> Changes {
    let mut out = Changes::default();
    for (name, pc) in &kept.pools {
        let Some(conf) = config.upstreams.get(name) else {
            warn!("pool {name} is no longer configured: its runtime changes are dropped");
            continue;
        };
        let listed = |a: &SocketAddr| conf.backends.iter().any(|b| b.address.0 == *a);
        let mut next = PoolChanges {
            overrides: pc.overrides.iter().filter(|o| listed(&o.address)).cloned().collect(),
            removed: pc.removed.iter().filter(|a| listed(a)).copied().collect(),
            registered: Vec::new(),
        };
        for r in &pc.registered {
            if r.expires_at_ms.is_some_and(|t| t <= now_ms) {
                info!(
                    "pool {name} backend {}: its TTL ran out while lb was not running, not restored",
                    r.address
                );
            } else if listed(&r.address) {
                info!(
                    "pool {name} backend {}: now listed in the configuration file",
                    r.address
                );
                override_file_backend(&mut next, conf, r.address, Some(r.weight), Some(r.state));
            } else {
                next.registered.push(r.clone());
            }
        }
        if !next.is_empty() {
            out.pools.insert(name.clone(), next);
        }
    }
    out.routes = routes::reconcile(config, &kept.routes);
    out.rollouts = crate::control::rollout::reconcile(config, &kept.rollouts, now_ms, start);
    out
}

#[cfg(test)]
mod tests;
