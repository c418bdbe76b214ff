//! A pool member as the control plane describes it: address, weight, admin state (ready,
//! drain, maint), source and cap. The live state that goes with it is `selection::load`'s.

use std::net::SocketAddr;

/// An operator's say on a backend (HAProxy's admin states).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AdminState {
    /// Takes requests.
    #[default]
    Ready,
    /// Takes no new requests, except from sticky clients already pinned to it; requests in
    /// flight finish.
    Drain,
    /// Takes nothing new at all (maintenance); requests in flight finish.
    Maint,
}

impl AdminState {
    /// The name in the API and the metrics: `ready`, `drain`, `maint`.
    pub fn name(self) -> &'static str {
        match self {
            AdminState::Ready => "ready",
            AdminState::Drain => "drain",
            AdminState::Maint => "maint",
        }
    }

    /// Every state, in order.
    pub const ALL: [AdminState; 3] = [AdminState::Ready, AdminState::Drain, AdminState::Maint];

    pub(crate) fn from_u8(v: u8) -> Self {
        match v {
            1 => AdminState::Drain,
            2 => AdminState::Maint,
            _ => AdminState::Ready,
        }
    }
}

/// Where a backend's membership comes from (defined with the configuration, which names it for
/// its discovered entries).
pub use crate::config::Source;

/// How a member is configured: everything about a backend that the control plane sets.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Member {
    /// The backend.
    pub addr: SocketAddr,
    /// Relative weight, 1 to 256.
    pub weight: u32,
    /// Ready, drain or maint.
    pub state: AdminState,
    /// Where it comes from.
    pub source: Source,
    /// Most requests in flight at once; `None` for no limit.
    pub max_connections: Option<usize>,
}

impl Member {
    /// A ready member from the file with no cap.
    pub fn new(addr: SocketAddr, weight: u32) -> Self {
        Member {
            addr,
            weight,
            state: AdminState::Ready,
            source: Source::Config,
            max_connections: None,
        }
    }
}
