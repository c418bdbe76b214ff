//! What the front counts of clients it cuts off for breaking a limit: each reason a counter, and
//! the HTTP/2 errors lb sent, by frame and error code. Read by the metrics; nothing here decides.

use std::sync::atomic::{AtomicU64, Ordering};

/// Why a client connection (or one of its requests) was cut off.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reason {
    /// The TLS handshake (with its PROXY header) did not end within `clients.handshake_timeout`.
    HandshakeTimeout,
    /// The TLS handshake failed (not TLS, no common version or cipher, a bad PROXY header...).
    HandshakeFailed,
    /// An HTTP/2 client sent more frames without requests or bodies than
    /// `clients.http2.max_control_frames` allows.
    ControlFlood,
    /// A client stopped reading: a write waited longer than `clients.send_timeout`.
    SendTimeout,
    /// A request body came slower than `clients.body_min_rate`.
    BodyTooSlow,
    /// `accept()` failed (out of file descriptors, most often): lb waits a second and tries again.
    AcceptFailed,
}

impl Reason {
    /// Every reason, in the order of [`counts`].
    pub const ALL: [Reason; 6] = [
        Reason::HandshakeTimeout,
        Reason::HandshakeFailed,
        Reason::ControlFlood,
        Reason::SendTimeout,
        Reason::BodyTooSlow,
        Reason::AcceptFailed,
    ];

    /// The metric's label.
    pub fn label(self) -> &'static str {
        match self {
            Reason::HandshakeTimeout => "tls_handshake_timeout",
            Reason::HandshakeFailed => "tls_handshake_failed",
            Reason::ControlFlood => "http2_control_flood",
            Reason::SendTimeout => "send_timeout",
            Reason::BodyTooSlow => "body_too_slow",
            Reason::AcceptFailed => "accept_failed",
        }
    }
}

static REJECTED: [AtomicU64; Reason::ALL.len()] = [const { AtomicU64::new(0) }; Reason::ALL.len()];

/// Counts one client cut off for `reason`.
pub fn count(reason: Reason) {
    REJECTED[reason as usize].fetch_add(1, Ordering::Relaxed);
}

/// Clients cut off so far, by reason.
pub fn counts() -> impl Iterator<Item = (&'static str, u64)> {
    Reason::ALL
        .iter()
        .map(|r| (r.label(), REJECTED[*r as usize].load(Ordering::Relaxed)))
}

/// HTTP/2 error codes (RFC 9113 §7), by value.
pub const H2_CODES: [&str; 14] = [
    "no_error",
    "protocol_error",
    "internal_error",
    "flow_control_error",
    "settings_timeout",
    "stream_closed",
    "frame_size_error",
    "refused_stream",
    "cancel",
    "compression_error",
    "connect_error",
    "enhance_your_calm",
    "inadequate_security",
    "http_1_1_required",
];

/// The frames that carry an error code.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorFrame {
    /// A connection error.
    GoAway = 0,
    /// A stream error.
    RstStream = 1,
}

/// Per frame, per code (the last slot: codes lb does not know).
static H2_SENT: [[AtomicU64; H2_CODES.len() + 1]; 2] = [const { [const { AtomicU64::new(0) }; H2_CODES.len() + 1] }; 2];

/// Counts an error frame lb sent to a client with `code`. A graceful GOAWAY (`NO_ERROR`) and a
/// stream lb cancels (`CANCEL`: the request ended on lb's side) are not errors of the client's,
/// and are not counted.
pub fn h2_sent(frame: ErrorFrame, code: u32) {
    if code == 0 || (frame == ErrorFrame::RstStream && code == 8) {
        return;
    }
    let i = usize::try_from(code).unwrap_or(usize::MAX).min(H2_CODES.len());
    H2_SENT[frame as usize][i].fetch_add(1, Ordering::Relaxed);
}

/// HTTP/2 errors sent so far: `(frame, code, count)` for each count above 0.
pub fn h2_counts() -> Vec<(&'static str, &'static str, u64)> {
    let mut out = Vec::new();
    for (frame, name) in [(ErrorFrame::GoAway, "goaway"), (ErrorFrame::RstStream, "rst_stream")] {
        for (i, n) in H2_SENT[frame as usize].iter().enumerate() {
            let n = n.load(Ordering::Relaxed);
            if n > 0 {
                out.push((name, H2_CODES.get(i).copied().unwrap_or("unknown"), n));
            }
        }
    }
    out
}
