//! Runtime state shared by several instances through etcd (`cluster: {etcd: ...}`), as
//! Apache APISIX does: each runtime change of a backend (a registration, a weight or state
//! override, a removal of a listed backend) is one key, `PREFIX/pools/POOL/IP:PORT`, holding
//! its JSON; a registration with a TTL is put under an etcd lease of that TTL, which its
//! heartbeats renew (through any instance), so etcd removes it when they stop, for every
//! instance at once. Every instance reads the prefix at start and then follows a watch from that
//! revision, applying each change to its pools; when etcd is unreachable it keeps serving its
//! last known state, admin writes answer `503`, and the watch is restarted (with a fresh read,
//! to catch up) once etcd is back. A route's runtime split weights are one key too,
//! `PREFIX/routes/NAME` (an lb from before them warns about the key and leaves it alone).

use crate::config::EtcdConf;
use crate::control::rollout::RolloutState;
use crate::control::state_file::{Changes, Override, PoolChanges, Registered, RouteChanges};
use etcd_client::{
    Client, Compare, CompareOp, ConnectOptions, EventType, GetOptions, PutOptions, Txn, TxnOp, WatchOptions,
};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::Duration;

/// One runtime change of one backend, as stored in etcd.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
enum Entry {
    Registered(Registered),
    Override(Override),
    Removed,
    /// A route's changes (under `routes/`, not `pools/`).
    Route(RouteChanges),
    /// A route's rollout (under `rollouts/`).
    Rollout(Box<RolloutState>),
}

/// The keys under the prefix, as last read or watched: key → (create revision, entry).
#[derive(Default)]
pub struct Mirror(BTreeMap<String, (i64, Entry)>);

/// A connection to the cluster's etcd.
pub struct Cluster {
    client: Client,
    prefix: String,
}

/// The entry of backend `addr` in `pc`, if any.
fn entry_of(pc: Option<&PoolChanges>, addr: SocketAddr) -> Option<Entry> {
    let pc = pc?;
    if pc.removed.contains(&addr) {
        return Some(Entry::Removed);
    }
    if let Some(r) = pc.registered.iter().find(|r| r.address == addr) {
        return Some(Entry::Registered(r.clone()));
    }
    pc.overrides
        .iter()
        .find(|o| o.address == addr)
        .map(|o| Entry::Override(o.clone()))
}

/// The lease of `key` renewed, when `key` holds a registration with a TTL of `ttl_ms` under a
/// live lease; `None` when it does not (or the lease ran out): then a new lease is taken.
async fn renewed_lease(client: &mut Client, key: &str, ttl_ms: u64) -> Result<Option<i64>, etcd_client::Error> {
    let got = client.get(key, None).await?;
    let Some(kv) = got.kvs().first() else { return Ok(None) };
    let same_ttl = matches!(
        serde_json::from_slice::<Entry>(kv.value()),
        Ok(Entry::Registered(Registered { ttl_ms: Some(ms), .. })) if ms == ttl_ms
    );
    if kv.lease() == 0 || !same_ttl {
        return Ok(None);
    }
    // etcd's first answer on the keep-alive stream renews the lease, or says it ran out.
    Ok(client.lease_keep_alive(kv.lease()).await.ok().map(|_| kv.lease()))
}

impl Cluster {
    /// A client for `conf` (connections are made on first use).
    pub async fn connect(conf: &EtcdConf) -> Result<Cluster, String> {
        let options = ConnectOptions::new()
            .with_connect_timeout(Duration::from_secs(2))
            .with_timeout(Duration::from_secs(3))
            .with_keep_alive(Duration::from_secs(2), Duration::from_secs(2));
        let endpoints: Vec<String> = conf
            .endpoints
            .iter()
            .map(|e| e.trim_start_matches("http://").trim_end_matches('/').to_string())
            .collect();
        let client = Client::connect(endpoints, Some(options))
            .await
            .map_err(|e| format!("etcd {:?}: {e}", conf.endpoints))?;
        Ok(Cluster {
            client,
            prefix: conf.prefix.clone(),
        })
    }

    fn key(&self, pool: &str, addr: SocketAddr) -> String {
        format!("{}pools/{pool}/{addr}", self.prefix)
    }

    fn route_key(&self, route: &str) -> String {
        format!("{}routes/{route}", self.prefix)
    }

    /// Reads every key: the state and the revision it was read at.
    pub async fn load(&self, mirror: &mut Mirror) -> Result<(Changes, i64), String> {
        let got = self
            .client
            .clone()
            .get(self.prefix.as_str(), Some(GetOptions::new().with_prefix()))
            .await
            .map_err(|e| format!("etcd read failed: {e}"))?;
        let revision = got.header().map_or(0, |h| h.revision());
        mirror.0.clear();
        for kv in got.kvs() {
            let (Ok(key), Ok(value)) = (kv.key_str(), kv.value_str()) else {
                continue;
            };
            match serde_json::from_str::<Entry>(value) {
                Ok(entry) => {
                    mirror.0.insert(key.to_string(), (kv.create_revision(), entry));
                }
                Err(e) => log::warn!("etcd key {key}: not an lb entry, ignored: {e}"),
            }
        }
        Ok((self.changes(mirror), revision))
    }

    /// The state the keys in `mirror` describe (registrations in the order they were made).
    fn changes(&self, mirror: &Mirror) -> Changes {
        let mut changes = Changes::default();
        let mut registered: BTreeMap<String, Vec<(i64, Registered)>> = BTreeMap::new();
        let base = format!("{}pools/", self.prefix);
        let routes = format!("{}routes/", self.prefix);
        let rollouts = format!("{}rollouts/", self.prefix);
        for (key, (created, entry)) in &mirror.0 {
            if let (Some(route), Entry::Route(rc)) = (key.strip_prefix(&routes), entry) {
                changes.routes.insert(route.to_string(), rc.clone());
                continue;
            }
            if let (Some(route), Entry::Rollout(state)) = (key.strip_prefix(&rollouts), entry) {
                changes.rollouts.insert(route.to_string(), (**state).clone());
                continue;
            }
            let Some((pool, addr)) = key.strip_prefix(&base).and_then(|rest| rest.split_once('/')) else {
                continue;
            };
            let Ok(addr) = addr.parse::<SocketAddr>() else { continue };
            let pc = changes.pools.entry(pool.to_string()).or_default();
            match entry {
                Entry::Registered(r) => registered.entry(pool.to_string()).or_default().push((
                    *created,
                    Registered {
                        address: addr,
                        ..r.clone()
                    },
                )),
                Entry::Override(o) => pc.overrides.push(Override {
                    address: addr,
                    ..o.clone()
                }),
                Entry::Removed => pc.removed.push(addr),
                Entry::Route(_) | Entry::Rollout(_) => {
                    log::warn!("etcd key {key}: a route's entry under pools/, ignored")
                }
            }
        }
        for (pool, mut list) in registered {
            list.sort_by_key(|(created, _)| *created);
            let pc = changes.pools.entry(pool).or_default();
            pc.registered = list.into_iter().map(|(_, r)| r).collect();
        }
        changes
    }

    /// Writes the change of backend `addr` of `pool` from `old` to `new`: its key put (under a
    /// lease for a registration with a TTL) or deleted.
    pub async fn write(&self, old: &Changes, new: &Changes, pool: &str, addr: SocketAddr) -> Result<(), String> {
        let before = entry_of(old.pools.get(pool), addr);
        let after = entry_of(new.pools.get(pool), addr);
        let key = self.key(pool, addr);
        let mut client = self.client.clone();
        let failed = |e: etcd_client::Error| format!("etcd write failed: {e}");
        match after {
            None if before.is_some() => {
                client.delete(key, None).await.map_err(failed)?;
            }
            None => {}
            Some(entry) => {
                let value = serde_json::to_string(&entry).map_err(|e| e.to_string())?;
                let Entry::Registered(Registered { ttl_ms: Some(ms), .. }) = &entry else {
                    client.put(key, value, None).await.map_err(failed)?;
                    return Ok(());
                };
                // A heartbeat renews the lease the key holds (etcd's keep-alive) rather than
                // taking a new one each time, so leases do not pile up in etcd.
                let lease = match renewed_lease(&mut client, &key, *ms).await.map_err(failed)? {
                    Some(lease) => lease,
                    None => {
                        let seconds = i64::try_from(ms.div_ceil(1000)).unwrap_or(i64::MAX).max(1);
                        client.lease_grant(seconds, None).await.map_err(failed)?.id()
                    }
                };
                let options = PutOptions::new().with_lease(lease);
                client.put(key, value, Some(options)).await.map_err(failed)?;
            }
        }
        Ok(())
    }

    /// Writes the change of route `route` from `old` to `new`: its key put, or deleted when it
    /// has no change left.
    pub async fn write_route(&self, old: &Changes, new: &Changes, route: &str) -> Result<(), String> {
        let key = self.route_key(route);
        let mut client = self.client.clone();
        let failed = |e: etcd_client::Error| format!("etcd write failed: {e}");
        match new.routes.get(route) {
            Some(rc) => {
                let value = serde_json::to_string(&Entry::Route(rc.clone())).map_err(|e| e.to_string())?;
                client.put(key, value, None).await.map_err(failed)?;
            }
            None if old.routes.contains_key(route) => {
                client.delete(key, None).await.map_err(failed)?;
            }
            None => {}
        }
        Ok(())
    }

    /// The key of route `route`'s rollout.
    fn rollout_key(&self, route: &str) -> String {
        format!("{}rollouts/{route}", self.prefix)
    }

    /// The election's key: beside the prefix, not under it (its value is no entry).
    fn driver_key(&self) -> String {
        format!("{}.rollout-driver", self.prefix.trim_end_matches('/'))
    }

    /// Writes route `route`'s rollout (`None`: deletes it). With `driver`, only while that
    /// instance holds the election (a driver that lost it must not move a rollout the new one
    /// drives).
    pub async fn write_rollout(
        &self,
        route: &str,
        state: Option<&RolloutState>,
        driver: Option<&str>,
    ) -> Result<(), String> {
        let key = self.rollout_key(route);
        let op = match state {
            Some(s) => {
                let value = serde_json::to_string(&Entry::Rollout(Box::new(s.clone()))).map_err(|e| e.to_string())?;
                TxnOp::put(key, value, None)
            }
            None => TxnOp::delete(key, None),
        };
        let mut txn = Txn::new();
        if let Some(id) = driver {
            txn = txn.when([Compare::value(self.driver_key(), CompareOp::Equal, id)]);
        }
        let done = self
            .client
            .clone()
            .txn(txn.and_then([op]))
            .await
            .map_err(|e| format!("etcd write failed: {e}"))?;
        if done.succeeded() {
            Ok(())
        } else {
            Err("this instance no longer drives the rollouts".into())
        }
    }

    /// One round of the rollout driver's election: renews `lease` if this instance (`id`)
    /// holds it, else tries to take the key under a new lease of `ttl_s` seconds. `Ok(true)`:
    /// this instance drives until the lease runs out.
    pub async fn campaign(&self, id: &str, lease: &mut Option<i64>, ttl_s: i64) -> Result<bool, String> {
        let mut client = self.client.clone();
        let failed = |e: etcd_client::Error| format!("etcd election: {e}");
        if let Some(held) = *lease {
            if client.lease_keep_alive(held).await.is_ok() {
                let got = client.get(self.driver_key(), None).await.map_err(failed)?;
                if got.kvs().first().is_some_and(|kv| kv.value() == id.as_bytes()) {
                    return Ok(true);
                }
            }
            *lease = None;
        }
        let granted = client.lease_grant(ttl_s, None).await.map_err(failed)?.id();
        let key = self.driver_key();
        let txn = Txn::new()
            .when([Compare::create_revision(key.clone(), CompareOp::Equal, 0)])
            .and_then([TxnOp::put(key, id, Some(PutOptions::new().with_lease(granted)))]);
        if client.txn(txn).await.map_err(failed)?.succeeded() {
            *lease = Some(granted);
            return Ok(true);
        }
        let _ = client.lease_revoke(granted).await;
        Ok(false)
    }

    /// Gives up the election: its lease revoked, so the key goes at once.
    pub async fn resign(&self, lease: i64) -> Result<(), String> {
        let mut client = self.client.clone();
        client
            .lease_revoke(lease)
            .await
            .map(drop)
            .map_err(|e| format!("etcd election: {e}"))
    }

    /// Follows the keys from `revision`: calls `apply` with the whole state after every
    /// change; returns when the watch ends (etcd gone, or the revision compacted).
    pub async fn watch(
        &self,
        mirror: &mut Mirror,
        revision: i64,
        mut apply: impl AsyncFnMut(Changes),
    ) -> Result<(), String> {
        let options = WatchOptions::new().with_prefix().with_start_revision(revision + 1);
        let mut stream = self
            .client
            .clone()
            .watch(self.prefix.as_str(), Some(options))
            .await
            .map_err(|e| format!("etcd watch failed: {e}"))?;
        loop {
            let Some(resp) = stream.message().await.map_err(|e| format!("etcd watch ended: {e}"))? else {
                return Err("etcd watch ended".to_string());
            };
            if resp.canceled() {
                return Err(format!(
                    "etcd watch canceled (compacted at {})",
                    resp.compact_revision()
                ));
            }
            if resp.events().is_empty() {
                continue;
            }
            for event in resp.events() {
                let Some(kv) = event.kv() else { continue };
                let Ok(key) = kv.key_str() else { continue };
                match event.event_type() {
                    EventType::Delete => {
                        mirror.0.remove(key);
                    }
                    EventType::Put => match kv.value_str().map(serde_json::from_str::<Entry>) {
                        Ok(Ok(entry)) => {
                            mirror.0.insert(key.to_string(), (kv.create_revision(), entry));
                        }
                        _ => log::warn!("etcd key {key}: not an lb entry, ignored"),
                    },
                }
            }
            apply(self.changes(mirror)).await;
        }
    }
}
