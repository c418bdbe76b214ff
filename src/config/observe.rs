//! What lb tells about each request beyond proxying it: its id (`request_id:`), and later its
//! trace. Writing ids and spans is the request path's job.

use super::rules::FieldName;
use serde::Deserialize;

/// Where a request's id comes from when it arrives with one.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum KeepId {
    /// Kept when the TCP peer is in `trusted_proxies` (it set the id); replaced otherwise, so a
    /// client cannot choose the id the logs show.
    #[default]
    Trusted,
    /// Always kept.
    Always,
}

/// `request_id:`: every proxied request carries an id, sent to the backend, returned to the
/// client and written to the access log.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RequestIdConf {
    /// Whether requests get ids. Default `true`.
    pub enabled: bool,
    /// The header that carries it. Default `X-Request-Id`.
    pub header: FieldName,
    /// When an id that came with the request is kept. Default `trusted`.
    pub keep: KeepId,
}

impl Default for RequestIdConf {
    fn default() -> Self {
        RequestIdConf {
            enabled: true,
            header: FieldName(http::HeaderName::from_static("x-request-id")),
            keep: KeepId::Trusted,
        }
    }
}
