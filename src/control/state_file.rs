//! Runtime changes (registrations, weights, drains, removals; routes' split weights) as they
//! are kept on disk: the persisted model and its atomic write (temp file, fsync, rename, fsync
//! of the directory).
//! A file that cannot be parsed is set aside, never fatal. What the changes mean for the pools
//! is `runtime`'s business.

use crate::control::rollout::RolloutState;
use crate::request::member::AdminState;
use log::{error, info};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::io::Write;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

/// Format version written in the file.
pub const VERSION: u32 = 1;

/// Every runtime change, by pool and by route.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Changes {
    /// Format version.
    #[serde(default = "version")]
    pub version: u32,
    /// Changes per pool name.
    #[serde(default)]
    pub pools: BTreeMap<String, PoolChanges>,
    /// Changes per route name. Left out of the file when there are none, so that a file without
    /// route changes stays readable by an lb from before them.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub routes: BTreeMap<String, RouteChanges>,
    /// Rollouts by route (running and finished), left out when there are none.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub rollouts: BTreeMap<String, RolloutState>,
}

/// One route's changes relative to its file.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RouteChanges {
    /// Split weights instead of the file's, by upstream (only those that differ from it).
    #[serde(default)]
    pub split: BTreeMap<String, u32>,
}

fn version() -> u32 {
    VERSION
}

impl Default for Changes {
    fn default() -> Self {
        Changes {
            version: VERSION,
            pools: BTreeMap::new(),
            routes: BTreeMap::new(),
            rollouts: BTreeMap::new(),
        }
    }
}

/// One pool's changes relative to its file.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PoolChanges {
    /// Backends registered through the API, in registration order.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub registered: Vec<Registered>,
    /// Weight or state changes of backends from the file.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub overrides: Vec<Override>,
    /// Backends of the file deleted through the API.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub removed: Vec<SocketAddr>,
}

impl PoolChanges {
    /// Whether there is nothing to keep.
    pub fn is_empty(&self) -> bool {
        self.registered.is_empty() && self.overrides.is_empty() && self.removed.is_empty()
    }

    /// The registration of `addr`, if any.
    pub fn registered(&self, addr: SocketAddr) -> Option<&Registered> {
        self.registered.iter().find(|r| r.address == addr)
    }

    /// The override of `addr`, if any.
    pub fn override_of(&self, addr: SocketAddr) -> Option<&Override> {
        self.overrides.iter().find(|o| o.address == addr)
    }
}

/// A backend registered through the API.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Registered {
    /// `IP:port`.
    pub address: SocketAddr,
    /// Relative weight.
    pub weight: u32,
    /// Ready, drain or maint.
    #[serde(default)]
    pub state: AdminState,
    /// Most requests in flight; `None`: the pool's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_connections: Option<usize>,
    /// Heartbeat period in milliseconds, when the registration has a TTL.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ttl_ms: Option<u64>,
    /// When it is removed unless renewed, in milliseconds since the Unix epoch.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_at_ms: Option<u64>,
}

/// A change to a backend of the file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Override {
    /// `IP:port`.
    pub address: SocketAddr,
    /// Weight instead of the file's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub weight: Option<u32>,
    /// State instead of `ready`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub state: Option<AdminState>,
}

/// The state file.
pub struct StateFile {
    path: PathBuf,
}

impl StateFile {
    /// The file at `path` (not read yet).
    pub fn new(path: &Path) -> Self {
        StateFile {
            path: path.to_path_buf(),
        }
    }

    /// Where it is.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The changes kept in the file: none when it does not exist; when it cannot be read or
    /// parsed, it is renamed to `<file>.corrupt-<unix seconds>`, the problem is logged, and
    /// `lb` carries on with the configuration file alone.
    pub fn load(&self) -> Changes {
        let text = match std::fs::read_to_string(&self.path) {
            Ok(text) => text,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Changes::default(),
            Err(e) => {
                error!(
                    "state file {}: cannot read: {e}; starting without runtime changes",
                    self.path.display()
                );
                return Changes::default();
            }
        };
        match parse(&text) {
            Ok(changes) => {
                info!("state file {}: runtime changes restored", self.path.display());
                changes
            }
            Err(why) => {
                self.set_aside(&why);
                Changes::default()
            }
        }
    }

    fn set_aside(&self, why: &str) {
        let aside = PathBuf::from(format!(
            "{}.corrupt-{}",
            self.path.display(),
            crate::clock::unix_ms() / 1000
        ));
        match std::fs::rename(&self.path, &aside) {
            Ok(()) => error!(
                "state file {} is invalid ({why}); moved to {} and starting without runtime changes",
                self.path.display(),
                aside.display()
            ),
            Err(e) => error!(
                "state file {} is invalid ({why}) and could not be moved aside ({e}); starting without runtime changes",
                self.path.display()
            ),
        }
    }

    /// Writes `changes` atomically: a temporary file beside it, fsync, rename over the old
    /// one, fsync of the directory. On error the old file is untouched.
    pub fn save(&self, changes: &Changes) -> std::io::Result<()> {
        let text = serde_json::to_vec_pretty(changes).map_err(std::io::Error::other)?;
        let dir = match self.path.parent() {
            Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
            _ => PathBuf::from("."),
        };
        let tmp = dir.join(format!(
            ".{}.tmp-{}",
            self.path.file_name().and_then(|n| n.to_str()).unwrap_or("state"),
            std::process::id()
        ));
        let written = (|| {
            let mut file = std::fs::File::create(&tmp)?;
            file.write_all(&text)?;
            file.write_all(b"\n")?;
            file.sync_all()?;
            std::fs::rename(&tmp, &self.path)?;
            std::fs::File::open(&dir)?.sync_all()
        })();
        if written.is_err() {
            let _ = std::fs::remove_file(&tmp);
        }
        written
    }
}

/// Parses the file's text, checking what serde cannot.
fn parse(text: &str) -> Result<Changes, String> {
    let changes: Changes = serde_json::from_str(text).map_err(|e| e.to_string())?;
    if changes.version != VERSION {
        return Err(format!("version {} is not {VERSION}", changes.version));
    }
    for (pool, c) in &changes.pools {
        let weights = c
            .registered
            .iter()
            .map(|r| r.weight)
            .chain(c.overrides.iter().filter_map(|o| o.weight));
        if let Some(w) = weights
            .into_iter()
            .find(|w| !(1..=crate::config::MAX_WEIGHT).contains(w))
        {
            return Err(format!("pool {pool}: weight {w} is out of range"));
        }
    }
    Ok(changes)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dir(tag: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("lb-state-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).unwrap();
        d
    }

    fn sample() -> Changes {
        let mut c = Changes::default();
        c.pools.entry("web".into()).or_default().registered.push(Registered {
            address: "127.0.0.1:9004".parse().unwrap(),
            weight: 3,
            state: AdminState::Drain,
            max_connections: None,
            ttl_ms: Some(10_000),
            expires_at_ms: Some(123),
        });
        c.pools.entry("web".into()).or_default().overrides.push(Override {
            address: "127.0.0.1:9001".parse().unwrap(),
            weight: None,
            state: Some(AdminState::Maint),
        });
        c.routes
            .entry("api".into())
            .or_default()
            .split
            .insert("canary".into(), 0);
        c
    }

    #[test]
    fn a_file_without_route_changes_does_not_name_them() {
        let mut c = sample();
        c.routes.clear();
        let text = serde_json::to_string(&c).unwrap();
        assert!(!text.contains("routes"), "{text}");
        assert_eq!(parse(&text), Ok(c));
    }

    #[test]
    fn saved_changes_load_back() {
        let d = dir("roundtrip");
        let file = StateFile::new(&d.join("state.json"));
        assert_eq!(file.load(), Changes::default(), "missing file: no changes");
        file.save(&sample()).unwrap();
        assert_eq!(file.load(), sample());
        let leftovers: Vec<_> = std::fs::read_dir(&d).unwrap().collect();
        assert_eq!(leftovers.len(), 1, "no temporary file left");
        std::fs::remove_dir_all(d).unwrap();
    }

    #[test]
    fn a_corrupt_file_is_set_aside() {
        let d = dir("corrupt");
        let path = d.join("state.json");
        for bad in [
            "{not json",
            r#"{"version": 1, "pools": {"web": {"registered": [{"address": "x"}]}}}"#,
            r#"{"version": 9}"#,
            r#"{"version": 1, "pools": {"w": {"registered": [{"address": "127.0.0.1:1", "weight": 0}]}}}"#,
        ] {
            std::fs::write(&path, bad).unwrap();
            assert_eq!(StateFile::new(&path).load(), Changes::default(), "{bad}");
            assert!(!path.exists(), "{bad}: set aside");
        }
        let aside = std::fs::read_dir(&d).unwrap().count();
        assert!(aside >= 1);
        std::fs::remove_dir_all(d).unwrap();
    }
}
