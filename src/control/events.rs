//! The recent events of the pools as an operator wants them listed: registrations, changes,
//! removals, TTL expiries, ejections and readmissions, reloads, changes of routes' splits, each
//! with its time. A bounded list kept in memory ([`CAPACITY`] events of at most a few hundred
//! bytes each: under 100 KB); the log stays the full record.

use crate::clock::unix_ms;
use serde::Serialize;
use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::Mutex;

/// Events kept; older ones are dropped.
pub const CAPACITY: usize = 200;
/// Longest `detail` kept, in bytes (a reload's list of pools can be long).
const MAX_DETAIL: usize = 240;

/// What happened.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Kind {
    /// A backend joined a pool (admin API or discovery).
    Registered,
    /// A backend's state or weight changed (drain, maint, ready...).
    Changed,
    /// A backend left a pool (admin API or discovery).
    Removed,
    /// A registration was not renewed within its TTL and was removed.
    Expired,
    /// A backend went out: its health checks fail, or passive health ejected it.
    Ejected,
    /// A backend that was out takes requests again.
    Readmitted,
    /// The configuration was reloaded in place (or a reload was refused).
    Reloaded,
    /// A route's split weights changed through the admin API.
    RouteChanged,
}

/// One event.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Event {
    /// Increasing number: a client that has seen event `n` has seen every one before it.
    pub id: u64,
    /// When, in milliseconds since the Unix epoch.
    pub at_ms: u64,
    /// What happened.
    pub kind: Kind,
    /// The pool, if the event concerns one.
    pub pool: Option<String>,
    /// The backend (`IP:port`), if the event concerns one.
    pub backend: Option<String>,
    /// The route, if the event concerns one (left out otherwise).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub route: Option<String>,
    /// What happened, in words.
    pub detail: String,
}

#[derive(Default)]
struct List {
    next_id: u64,
    events: VecDeque<Event>,
}

/// The last [`CAPACITY`] events.
#[derive(Default)]
pub struct Events(Mutex<List>);

impl Events {
    /// Records an event now.
    pub fn record(&self, kind: Kind, pool: Option<&str>, backend: Option<SocketAddr>, detail: impl Into<String>) {
        self.record_at(unix_ms(), kind, pool, backend, detail);
    }

    /// Records an event that happened at `at_ms`.
    pub fn record_at(
        &self,
        at_ms: u64,
        kind: Kind,
        pool: Option<&str>,
        backend: Option<SocketAddr>,
        detail: impl Into<String>,
    ) {
        self.push(Event {
            id: 0,
            at_ms,
            kind,
            pool: pool.map(str::to_string),
            backend: backend.map(|b| b.to_string()),
            route: None,
            detail: detail.into(),
        });
    }

    /// Records a change of route `route` now.
    pub fn record_route(&self, route: &str, detail: impl Into<String>) {
        self.push(Event {
            id: 0,
            at_ms: unix_ms(),
            kind: Kind::RouteChanged,
            pool: None,
            backend: None,
            route: Some(route.to_string()),
            detail: detail.into(),
        });
    }

    /// Adds `event`, numbered next, its detail shortened.
    fn push(&self, mut event: Event) {
        let mut list = self.0.lock().unwrap_or_else(|p| p.into_inner());
        list.next_id += 1;
        event.id = list.next_id;
        event.detail = shortened(std::mem::take(&mut event.detail));
        if list.events.len() == CAPACITY {
            list.events.pop_front();
        }
        list.events.push_back(event);
    }

    /// The events kept, newest first.
    pub fn list(&self) -> Vec<Event> {
        let list = self.0.lock().unwrap_or_else(|p| p.into_inner());
        list.events.iter().rev().cloned().collect()
    }
}

/// `text` cut to [`MAX_DETAIL`] bytes at a character boundary, with an ellipsis when cut.
fn shortened(mut text: String) -> String {
    if text.len() <= MAX_DETAIL {
        return text;
    }
    let mut end = MAX_DETAIL;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    text.truncate(end);
    text.push('…');
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_list_is_bounded_and_newest_first() {
        let events = Events::default();
        let addr: SocketAddr = "127.0.0.1:9001".parse().unwrap();
        for i in 0..CAPACITY as u64 + 5 {
            events.record_at(1_000 + i, Kind::Registered, Some("web"), Some(addr), format!("n{i}"));
        }
        let list = events.list();
        assert_eq!(list.len(), CAPACITY);
        assert_eq!(list[0].id, CAPACITY as u64 + 5);
        assert_eq!(list[0].detail, format!("n{}", CAPACITY + 4));
        assert_eq!(list.last().map(|e| e.id), Some(6), "the 5 oldest were dropped");
        assert!(list.windows(2).all(|w| w[0].id > w[1].id && w[0].at_ms >= w[1].at_ms));
        assert_eq!(list[0].backend.as_deref(), Some("127.0.0.1:9001"));
    }

    #[test]
    fn details_are_cut_at_a_character_boundary() {
        let events = Events::default();
        events.record(Kind::Reloaded, None, None, "é".repeat(MAX_DETAIL));
        let detail = &events.list()[0].detail;
        assert!(detail.len() <= MAX_DETAIL + '…'.len_utf8(), "{}", detail.len());
        assert!(detail.ends_with('…'));
        let json = serde_json::to_value(&events.list()[0]).unwrap();
        assert_eq!(json["kind"], "reloaded");
        assert_eq!(json["pool"], serde_json::Value::Null);
    }
}
