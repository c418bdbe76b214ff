//! Discovery: pools whose backends come from a file that an orchestrator or a script writes
//! (`discovery: {file: {path: ...}}`) or from DNS (`discovery: {dns: {...}}`, see [`super::dns`]).
//!
//! A discovery file holds a list shaped like a pool's `backends:` (or a map with a `backends:`
//! key). Its directory is watched (inotify, through `notify`: an atomic rename into place is
//! seen, which watching the file itself would miss after the first one), and every file is also
//! read again every few seconds in case an event was lost.
//!
//! Whatever the source, a result that cannot be had (unreadable file, failed lookup), does not
//! parse, breaks a rule or holds no backend at all changes nothing: the last good set stays, and
//! the failure is logged (once, until the outcome changes) and counted in
//! `lb_discovery_errors_total`. A pool is never emptied by accident.

use crate::config::{BackendConf, Discovery, DnsDiscovery, MAX_WEIGHT};
use crate::control::dns;
use crate::control::runtime::Runtime;
use crate::request::member::Source;
use log::{error, info, warn};
use notify::{RecommendedWatcher, RecursiveMode, Watcher};
use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::Notify;

/// How often every file is read again without an event.
const REREAD_EVERY: Duration = Duration::from_secs(2);
/// Quiet time after an event before reading, so a burst of events (a write, then a rename)
/// gives one read.
const SETTLE: Duration = Duration::from_millis(30);

/// Parses the backends in `text`, a discovery file's content: the list, checked.
pub fn parse(text: &str) -> Result<Vec<BackendConf>, String> {
    let value: serde_yaml::Value = serde_yaml::from_str(text).map_err(|e| format!("not valid YAML: {e}"))?;
    let list = match value {
        serde_yaml::Value::Mapping(mut map) => map
            .remove("backends")
            .ok_or("a map needs a backends: key holding the list")?,
        serde_yaml::Value::Null => return Err("no backend listed (an empty file)".to_string()),
        other => other,
    };
    let mut backends: Vec<BackendConf> = serde_path_to_error::deserialize(list).map_err(|e| {
        let at = e.path().to_string();
        format!(
            "backends{}: {}",
            if at == "." { String::new() } else { format!("[{at}]") },
            e.inner()
        )
    })?;
    if backends.is_empty() {
        return Err("no backend listed (an empty list looks like an outage)".to_string());
    }
    let mut seen = HashSet::new();
    for (i, b) in backends.iter().enumerate() {
        if !(1..=MAX_WEIGHT).contains(&b.weight) {
            return Err(format!(
                "backends[{i}].weight: {} is out of range 1-{MAX_WEIGHT}",
                b.weight
            ));
        }
        if !seen.insert(b.address) {
            return Err(format!("backends[{i}].address: {} is listed twice", b.address));
        }
    }
    for b in &mut backends {
        b.source = Source::File;
    }
    Ok(backends)
}

/// What was last read from a pool's file, so that the same content is neither applied nor
/// reported twice.
#[derive(PartialEq, Eq)]
enum Seen {
    Content(PathBuf, Vec<u8>),
    Unreadable(PathBuf, String),
}

/// A pool's DNS discovery, running in a task of its own.
struct DnsTask {
    conf: DnsDiscovery,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for DnsTask {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Follows the discovery sources of `runtime`'s pools.
pub struct Discoverer {
    runtime: Arc<Runtime>,
    changed: Arc<Notify>,
    watcher: Option<RecommendedWatcher>,
    watched: HashSet<PathBuf>,
    seen: HashMap<String, Seen>,
    dns: HashMap<String, DnsTask>,
}

impl Discoverer {
    /// Discovery for the pools of `runtime`; nothing is read before [`Discoverer::scan`].
    pub fn new(runtime: Arc<Runtime>) -> Self {
        let changed = Arc::new(Notify::new());
        let wake = Arc::clone(&changed);
        let watcher = notify::recommended_watcher(move |event: notify::Result<notify::Event>| {
            if event.is_ok() {
                wake.notify_one();
            }
        })
        .map_err(|e| warn!("discovery files will be read every {REREAD_EVERY:?} only: cannot watch them: {e}"))
        .ok();
        Discoverer {
            runtime,
            changed,
            watcher,
            watched: HashSet::new(),
            seen: HashMap::new(),
            dns: HashMap::new(),
        }
    }

    /// Reads every pool's file and applies what changed; starts (or stops) the DNS discovery
    /// of pools as their settings come and go. At start (`first`), each DNS name is resolved
    /// once before this returns.
    pub async fn scan(&mut self, first: bool) {
        let sources = self.runtime.discovery_sources().await;
        self.seen
            .retain(|pool, _| sources.iter().any(|(p, d)| p == pool && d.file.is_some()));
        self.dns.retain(|pool, task| {
            sources
                .iter()
                .any(|(p, d)| p == pool && d.dns.as_ref() == Some(&task.conf))
        });
        for (pool, discovery) in sources {
            match discovery {
                Discovery { file: Some(file), .. } => self.read_file(&pool, PathBuf::from(file.path)).await,
                Discovery { dns: Some(conf), .. } if !self.dns.contains_key(&pool) => {
                    let task = tokio::spawn(follow_dns(Arc::clone(&self.runtime), pool.clone(), conf.clone()));
                    if first {
                        // The first answer (or failure) is in within the resolver's timeouts.
                        let _ = tokio::time::timeout(Duration::from_secs(5), wait_first(&self.runtime, &pool)).await;
                    }
                    self.dns.insert(pool, DnsTask { conf, task });
                }
                _ => {}
            }
        }
    }

    async fn read_file(&mut self, pool: &str, path: PathBuf) {
        self.watch_dir_of(&path);
        let seen = match std::fs::read(&path) {
            Ok(bytes) => Seen::Content(path.clone(), bytes),
            Err(e) => Seen::Unreadable(path.clone(), e.to_string()),
        };
        if self.seen.get(pool) == Some(&seen) {
            return;
        }
        self.apply(pool, &path, &seen).await;
        self.seen.insert(pool.to_string(), seen);
    }

    /// Runs discovery until the task is dropped: a scan after every change to a watched
    /// directory, and every few seconds (which also follows reloads).
    pub async fn run(mut self) {
        loop {
            tokio::select! {
                () = self.changed.notified() => tokio::time::sleep(SETTLE).await,
                () = tokio::time::sleep(REREAD_EVERY) => {}
            }
            self.scan(false).await;
        }
    }

    async fn apply(&self, pool: &str, path: &Path, seen: &Seen) {
        let stats = |ok: bool| count(&self.runtime, pool, ok);
        let found = match seen {
            Seen::Unreadable(_, e) => Err(format!("cannot read it: {e}")),
            Seen::Content(_, bytes) => std::str::from_utf8(bytes)
                .map_err(|_| "not UTF-8 text".to_string())
                .and_then(parse),
        };
        let outcome = match found {
            Ok(found) => self.runtime.set_discovered(pool, found).await,
            Err(e) => Err(e),
        };
        match outcome {
            Ok((added, removed)) => {
                stats(true);
                if !added.is_empty() || !removed.is_empty() {
                    info!(
                        "pool {pool}: discovery file {} read: added {added:?}, removed {removed:?}",
                        path.display()
                    );
                }
            }
            Err(e) => {
                stats(false);
                error!(
                    "pool {pool}: discovery file {}: {e}; the pool keeps its last good set of backends",
                    path.display()
                );
            }
        }
    }

    fn watch_dir_of(&mut self, path: &Path) {
        let dir = match path.parent() {
            Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
            _ => PathBuf::from("."),
        };
        let Some(watcher) = self.watcher.as_mut() else { return };
        if self.watched.contains(&dir) {
            return;
        }
        match watcher.watch(&dir, RecursiveMode::NonRecursive) {
            Ok(()) => {
                self.watched.insert(dir);
            }
            Err(e) => warn!(
                "cannot watch {} for discovery (read again every {REREAD_EVERY:?}): {e}",
                dir.display()
            ),
        }
    }
}

/// Counts a discovery result of `pool`.
fn count(runtime: &Runtime, pool: &str, ok: bool) {
    if let Some(p) = runtime.routing().load().pools.get(pool) {
        p.stats().discovered(ok);
    }
}

/// Waits until `pool` has a discovery result, good or bad.
async fn wait_first(runtime: &Runtime, pool: &str) {
    loop {
        let done = runtime
            .routing()
            .load()
            .pools
            .get(pool)
            .is_none_or(|p| p.stats().discoveries() != (0, 0));
        if done {
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// Resolves `conf`'s name for pool `pool` again and again, applying each good answer.
async fn follow_dns(runtime: Arc<Runtime>, pool: String, conf: DnsDiscovery) {
    let resolver = match dns::resolver(&conf) {
        Ok(r) => r,
        Err(e) => {
            count(&runtime, &pool, false);
            error!("pool {pool}: DNS discovery of {} cannot start: {e}", conf.name);
            return;
        }
    };
    let mut last_error: Option<String> = None;
    loop {
        let outcome = match dns::resolve(&resolver, &conf).await {
            Ok((found, until)) => runtime.set_discovered(&pool, found).await.map(|diff| (diff, until)),
            Err(e) => Err(e),
        };
        let wait = match outcome {
            Ok(((added, removed), until)) => {
                count(&runtime, &pool, true);
                if last_error.take().is_some() || !added.is_empty() || !removed.is_empty() {
                    info!(
                        "pool {pool}: DNS {} resolved: added {added:?}, removed {removed:?}",
                        conf.name
                    );
                }
                dns::next_wait(until, conf.refresh.0)
            }
            Err(e) => {
                count(&runtime, &pool, false);
                if last_error.as_ref() != Some(&e) {
                    error!("pool {pool}: DNS discovery: {e}; the pool keeps its last good set of backends");
                }
                last_error = Some(e);
                conf.refresh.0.max(dns::MIN_REFRESH)
            }
        };
        tokio::time::sleep(wait).await;
    }
}

#[cfg(test)]
mod tests {
    use super::parse;

    #[test]
    fn lists_and_maps_parse_and_bad_files_are_refused() {
        let list = parse("- {address: 127.0.0.1:9001}\n- {address: 127.0.0.1:9002, weight: 3}\n");
        let list = list.unwrap_or_else(|e| panic!("{e}"));
        assert_eq!((list.len(), list[1].weight), (2, 3));
        let map = parse("backends:\n  - address: 127.0.0.1:9001\n").unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(map.len(), 1);
        for (text, why) in [
            ("", "empty file"),
            ("[]", "empty list"),
            ("- {address: 127.0.0.1:9001", "half written"),
            ("- {address: nowhere}", "bad address"),
            ("- {address: 127.0.0.1:1, weight: 0}", "weight 0"),
            ("- {address: 127.0.0.1:1}\n- {address: 127.0.0.1:1}", "duplicate"),
            ("- {address: 127.0.0.1:1, colour: red}", "unknown field"),
            ("hosts: []", "map without backends"),
        ] {
            assert!(parse(text).is_err(), "{why}: {text:?}");
        }
    }
}
