//! A client of lb's admin API: JSON calls with an optional bearer token.

use super::client::{empty, full, request, Client, Resp};
use serde_json::Value;
use std::net::SocketAddr;

/// The admin API of one lb.
pub struct Api {
    pub addr: SocketAddr,
    pub token: Option<String>,
}

impl Api {
    pub fn new(addr: SocketAddr) -> Api {
        Api { addr, token: None }
    }

    pub fn with_token(addr: SocketAddr, token: &str) -> Api {
        Api {
            addr,
            token: Some(token.to_string()),
        }
    }

    /// `method path` with `body`, the raw response.
    pub async fn call(&self, method: &str, path: &str, body: Option<&str>) -> Resp {
        let body = body.map_or_else(empty, |b| full(b.to_string()));
        let mut req = request(method, path, body);
        if let Some(token) = &self.token {
            req.headers_mut()
                .insert("authorization", format!("Bearer {token}").parse().expect("header"));
        }
        let mut client = Client::connect(self.addr).await.expect("connect to the admin listener");
        client.send(req).await.expect("admin call")
    }

    /// The value of `sample` in the `/metrics` exposition (`None` when absent).
    pub async fn metric(&self, sample: &str) -> Option<f64> {
        super::metric_value(&self.call("GET", "/metrics", None).await.text(), sample)
    }

    /// `lb_discovery_errors_total` of `pool` (-1 when absent).
    pub async fn discovery_errors(&self, pool: &str) -> f64 {
        let sample = format!("lb_discovery_errors_total{{pool=\"{pool}\"}}");
        self.metric(&sample).await.unwrap_or(-1.0)
    }

    /// `method path` with `body`: status and JSON.
    pub async fn json(&self, method: &str, path: &str, body: Option<&str>) -> (u16, Value) {
        let resp = self.call(method, path, body).await;
        let json = serde_json::from_slice(&resp.body).unwrap_or_else(|e| panic!("not JSON ({e}): {}", resp.text()));
        (resp.status, json)
    }

    /// `PUT` a backend of `pool` with `body`, expecting 200 or 201.
    pub async fn put(&self, pool: &str, backend: SocketAddr, body: &str) -> Value {
        let (status, json) = self.json("PUT", &backend_path(pool, backend), Some(body)).await;
        assert!(status == 200 || status == 201, "PUT {backend}: {status} {json}");
        json
    }

    /// `PATCH` a backend of `pool` with `body`, expecting 200.
    pub async fn patch(&self, pool: &str, backend: SocketAddr, body: &str) -> Value {
        let (status, json) = self.json("PATCH", &backend_path(pool, backend), Some(body)).await;
        assert_eq!(status, 200, "PATCH {backend} {body}: {json}");
        json
    }

    /// `DELETE` a backend of `pool`, expecting 200.
    pub async fn delete(&self, pool: &str, backend: SocketAddr) -> Value {
        let (status, json) = self.json("DELETE", &backend_path(pool, backend), None).await;
        assert_eq!(status, 200, "DELETE {backend}: {json}");
        json
    }

    /// The pool's JSON.
    pub async fn pool(&self, pool: &str) -> Value {
        let (status, json) = self.json("GET", &format!("/api/v1/pools/{pool}"), None).await;
        assert_eq!(status, 200, "{json}");
        json
    }

    /// The JSON of backend `addr` of `pool`, if it is a member.
    pub async fn backend(&self, pool: &str, addr: SocketAddr) -> Option<Value> {
        let json = self.pool(pool).await;
        let backends = json["backends"].as_array().cloned().unwrap_or_default();
        backends.into_iter().find(|b| b["address"] == addr.to_string())
    }

    /// The members of `pool` as `address state weight source` lines, for comparisons.
    pub async fn summary(&self, pool: &str) -> Vec<String> {
        let json = self.pool(pool).await;
        json["backends"]
            .as_array()
            .map(|list| {
                list.iter()
                    .map(|b| format!("{} {} {} {}", b["address"], b["state"], b["weight"], b["source"]))
                    .collect()
            })
            .unwrap_or_default()
    }
}

/// `/api/v1/pools/{pool}/backends/{addr}`.
pub fn backend_path(pool: &str, addr: SocketAddr) -> String {
    format!("/api/v1/pools/{pool}/backends/{addr}")
}
