//! File discovery: pools whose backends come from a file that an orchestrator or a script
//! writes (`discovery: {file: {path: ...}}`). The file holds a list shaped like a pool's
//! `backends:` (or a map with a `backends:` key). Its directory is watched (inotify, through
//! `notify`: an atomic rename into place is seen, which watching the file itself would miss
//! after the first one), and every file is also read again every few seconds in case an event
//! was lost. A file that cannot be read, does not parse, breaks a rule or lists no backend at
//! all changes nothing: the last good set stays, and the failure is logged (once per content)
//! and counted in `lb_discovery_errors_total`. A pool is never emptied by accident.

use crate::config::{BackendConf, MAX_WEIGHT};
use crate::control::runtime::Runtime;
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
    let backends: Vec<BackendConf> = serde_path_to_error::deserialize(list).map_err(|e| {
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
    Ok(backends)
}

/// What was last read from a pool's file, so that the same content is neither applied nor
/// reported twice.
#[derive(PartialEq, Eq)]
enum Seen {
    Content(PathBuf, Vec<u8>),
    Unreadable(PathBuf, String),
}

/// Follows the discovery files of `runtime`'s pools: reads each now, then on every change.
pub struct FileDiscovery {
    runtime: Arc<Runtime>,
    changed: Arc<Notify>,
    watcher: Option<RecommendedWatcher>,
    watched: HashSet<PathBuf>,
    seen: HashMap<String, Seen>,
}

impl FileDiscovery {
    /// Discovery for the pools of `runtime`; nothing is read before [`FileDiscovery::scan`].
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
        FileDiscovery {
            runtime,
            changed,
            watcher,
            watched: HashSet::new(),
            seen: HashMap::new(),
        }
    }

    /// Reads every pool's file and applies what changed.
    pub async fn scan(&mut self) {
        let files = self.runtime.discovery_files().await;
        self.seen.retain(|pool, _| files.iter().any(|(p, _)| p == pool));
        for (pool, path) in files {
            let path = PathBuf::from(path);
            self.watch_dir_of(&path);
            let seen = match std::fs::read(&path) {
                Ok(bytes) => Seen::Content(path.clone(), bytes),
                Err(e) => Seen::Unreadable(path.clone(), e.to_string()),
            };
            if self.seen.get(&pool) == Some(&seen) {
                continue;
            }
            self.apply(&pool, &path, &seen).await;
            self.seen.insert(pool, seen);
        }
    }

    /// Runs discovery until the task is dropped: a scan after every change, and every few
    /// seconds.
    pub async fn run(mut self) {
        loop {
            tokio::select! {
                () = self.changed.notified() => tokio::time::sleep(SETTLE).await,
                () = tokio::time::sleep(REREAD_EVERY) => {}
            }
            self.scan().await;
        }
    }

    async fn apply(&self, pool: &str, path: &Path, seen: &Seen) {
        let stats = |ok: bool| {
            if let Some(p) = self.runtime.routing().load().pools.get(pool) {
                p.stats().discovered(ok);
            }
        };
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
