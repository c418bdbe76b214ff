//! The span exporter: a background service that takes finished spans off the tracer's queue
//! every second (in batches of up to 512, OpenTelemetry's batch processor's size), turns them
//! into OpenTelemetry span data and posts them with opentelemetry-otlp over OTLP/HTTP in
//! protobuf. An export that fails, or hangs until `tracing.otlp.timeout`, costs spans only: the
//! queue fills meanwhile and the request path drops what does not fit (counted). A change
//! between working and failing is logged once each way.

use super::{tracer, Finished, Tracer, COUNTS, QUEUE};
use crate::config::TracingConf;
use async_trait::async_trait;
use opentelemetry::trace::{Event, SpanContext, SpanId, SpanKind, Status, TraceFlags, TraceId, TraceState};
use opentelemetry::{InstrumentationScope, KeyValue};
use opentelemetry_http::hyper::HyperClient;
use opentelemetry_otlp::{Protocol, WithExportConfig, WithHttpConfig};
use opentelemetry_sdk::trace::{SpanData, SpanEvents, SpanExporter as _, SpanLinks};
use opentelemetry_sdk::Resource;
use pingora_core::server::ShutdownWatch;
use pingora_core::services::background::BackgroundService;
use std::borrow::Cow;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::mpsc;

/// How often queued spans are sent.
const EXPORT_EVERY: Duration = Duration::from_secs(1);
/// Spans in one export, at most.
const BATCH: usize = 512;
/// How long the last export at shutdown may take.
const LAST_EXPORT: Duration = Duration::from_secs(2);

/// The tracer for the request path and the exporter service of `conf`, joined by a queue of
/// [`QUEUE`] spans; an error says what is wrong with `tracing.otlp`.
pub fn start(conf: &TracingConf) -> Result<(Arc<Tracer>, TraceExport), String> {
    let (tx, rx) = mpsc::channel(QUEUE);
    let timeout = conf.otlp.timeout.0;
    let builder = opentelemetry_otlp::SpanExporter::builder()
        .with_http()
        .with_endpoint(conf.otlp.endpoint.as_str())
        .with_protocol(Protocol::HttpBinary)
        .with_timeout(timeout);
    // A plain connector for http://; for https://, rustls with the system's root certificates.
    let builder = if conf.otlp.endpoint.starts_with("https:") {
        let connector = hyper_rustls::HttpsConnectorBuilder::new()
            .with_native_roots()
            .map_err(|e| format!("no root certificates for https: {e}"))?
            .https_or_http()
            .enable_http1()
            .build();
        builder.with_http_client(HyperClient::new(connector, timeout, None))
    } else {
        builder.with_http_client(HyperClient::with_default_connector(timeout, None))
    };
    let mut exporter = builder.build().map_err(|e| e.to_string())?;
    let resource = Resource::builder_empty()
        .with_service_name(conf.service_name.clone())
        .build();
    exporter.set_resource(&resource);
    let service = TraceExport {
        queue: Mutex::new(Some(rx)),
        exporter,
        endpoint: conf.otlp.endpoint.clone(),
        timeout,
        scope: InstrumentationScope::builder("lb")
            .with_version(env!("CARGO_PKG_VERSION"))
            .build(),
    };
    Ok((Arc::new(tracer(conf.sample.fraction(), tx)), service))
}

/// The background service that exports the queued spans.
pub struct TraceExport {
    queue: Mutex<Option<mpsc::Receiver<Finished>>>,
    exporter: opentelemetry_otlp::SpanExporter,
    endpoint: String,
    timeout: Duration,
    scope: InstrumentationScope,
}

#[async_trait]
impl BackgroundService for TraceExport {
    async fn start(&self, mut shutdown: ShutdownWatch) {
        let Some(mut queue) = self.queue.lock().ok().and_then(|mut q| q.take()) else {
            return;
        };
        let mut failing = false;
        let mut tick = tokio::time::interval(EXPORT_EVERY);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = tick.tick() => {}
                _ = shutdown.changed() => break,
            }
            // A hanging receiver must not hold the service past shutdown.
            tokio::select! {
                _ = self.export_queued(&mut queue, &mut failing) => {}
                _ = shutdown.changed() => break,
            }
        }
        let _ = tokio::time::timeout(LAST_EXPORT, self.export_queued(&mut queue, &mut failing)).await;
    }
}

impl TraceExport {
    /// Exports what is queued, batch after batch.
    async fn export_queued(&self, queue: &mut mpsc::Receiver<Finished>, failing: &mut bool) {
        loop {
            let mut batch = Vec::with_capacity(BATCH.min(queue.len()));
            while batch.len() < BATCH {
                match queue.try_recv() {
                    Ok(span) => batch.push(self.span_data(span)),
                    Err(_) => break,
                }
            }
            if batch.is_empty() {
                return;
            }
            let full = batch.len() == BATCH;
            self.export(batch, failing).await;
            if !full {
                return;
            }
        }
    }

    /// One export, counted and (on a change of state) logged.
    async fn export(&self, batch: Vec<SpanData>, failing: &mut bool) {
        let n = batch.len() as u64;
        // The exporter has its own deadline; this one covers what it might not.
        let deadline = self.timeout + Duration::from_secs(1);
        let result = match tokio::time::timeout(deadline, self.exporter.export(batch)).await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(e)) => Err(e.to_string()),
            Err(_) => Err(format!("no answer within {}s", deadline.as_secs())),
        };
        match result {
            Ok(()) => {
                COUNTS[0].fetch_add(n, Ordering::Relaxed);
                if std::mem::replace(failing, false) {
                    log::info!("tracing: spans reach {} again", self.endpoint);
                }
            }
            Err(why) => {
                COUNTS[2].fetch_add(n, Ordering::Relaxed);
                if !std::mem::replace(failing, true) {
                    log::warn!(
                        "tracing: exporting spans to {} failed: {why} (spans are dropped until it works)",
                        self.endpoint
                    );
                }
            }
        }
    }

    /// OpenTelemetry's form of `s`: a server span with lb's attributes, and the last attempt's
    /// request and response as events.
    fn span_data(&self, s: Finished) -> SpanData {
        let name = match &s.route {
            Some(route) => format!("{} {route}", s.method),
            None => s.method.to_string(),
        };
        let status = match (&s.error, s.status) {
            (Some((_, why)), _) => Status::error(why.clone()),
            (None, 500..=599) => Status::error(format!("status {}", s.status)),
            _ => Status::Unset,
        };
        let context = SpanContext::new(
            TraceId::from_bytes(s.trace_id.to_be_bytes()),
            SpanId::from_bytes(s.span.id.to_be_bytes()),
            TraceFlags::SAMPLED,
            false,
            TraceState::NONE,
        );
        SpanData {
            span_context: context,
            parent_span_id: s
                .parent
                .map_or(SpanId::INVALID, |p| SpanId::from_bytes(p.to_be_bytes())),
            parent_span_is_remote: s.parent.is_some(),
            span_kind: SpanKind::Server,
            name: Cow::Owned(name),
            start_time: s.span.start,
            end_time: s.end.max(s.span.start),
            events: events(&s),
            attributes: attributes(s),
            dropped_attributes_count: 0,
            links: SpanLinks::default(),
            status,
            instrumentation_scope: self.scope.clone(),
        }
    }
}

/// The span's attributes: OpenTelemetry's HTTP names where there is one, `lb.` otherwise.
fn attributes(s: Finished) -> Vec<KeyValue> {
    let mut out = Vec::with_capacity(12);
    out.push(KeyValue::new("http.request.method", s.method.to_string()));
    out.push(KeyValue::new("url.path", s.path));
    if s.status > 0 {
        out.push(KeyValue::new("http.response.status_code", i64::from(s.status)));
    }
    if let Some(client) = s.client {
        out.push(KeyValue::new("client.address", client.to_canonical().to_string()));
    }
    if let Some(route) = s.route {
        out.push(KeyValue::new("lb.route", route.to_string()));
    }
    if let Some(pool) = s.pool {
        out.push(KeyValue::new("lb.pool", pool.name.clone()));
    }
    if let Some(upstream) = s.upstream {
        out.push(KeyValue::new("lb.upstream.address", upstream.to_string()));
    }
    out.push(KeyValue::new("lb.tries", s.tries as i64));
    if let Some(took) = s.upstream_time {
        out.push(KeyValue::new("lb.upstream.response_time", took.as_secs_f64()));
    }
    if let Some(id) = s.request_id.as_ref().and_then(|v| v.to_str().ok()) {
        out.push(KeyValue::new("lb.request_id", id.to_string()));
    }
    if let Some((kind, _)) = s.error {
        out.push(KeyValue::new("error.type", kind));
    }
    out
}

/// `upstream request` when the last attempt began, `upstream response` when its head came.
fn events(s: &Finished) -> SpanEvents {
    let mut events = Vec::new();
    if let Some(sent) = s.upstream_sent {
        let at = s.span.start + sent;
        events.push(Event::new("upstream request", at, Vec::new(), 0));
        if let Some(took) = s.upstream_time {
            events.push(Event::new("upstream response", at + took, Vec::new(), 0));
        }
    }
    // `SpanEvents` is non-exhaustive: built from its default.
    let mut out = SpanEvents::default();
    out.events = events;
    out
}
