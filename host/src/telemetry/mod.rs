//! Traces: OpenTelemetry spans of every run, exported over OTLP/HTTP
//! (protobuf). Off unless an endpoint is set (`telemetry.otlp.endpoint`,
//! `OTEL_EXPORTER_OTLP_ENDPOINT` or `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`);
//! then, and only then, `main` installs the layer that turns the gateway's
//! trace spans into OpenTelemetry spans. Every span constructor in [`spans`]
//! returns `Span::none()` while off, so the hot path builds nothing.
//!
//! The spans follow the GenAI semantic conventions (semconv v1.41.0, status
//! "Development"): `invoke_agent {agent}` per run under the door's server
//! span, `chat {model}` per model call, `execute_tool {name}` per tool the
//! agent ran itself, an HTTP client span per outbound request.

mod spans;

use std::sync::OnceLock;

use anyhow::Context as _;
use opentelemetry::trace::TracerProvider as _;
use opentelemetry_otlp::{WithExportConfig, WithHttpConfig};
use opentelemetry_sdk::trace::{Sampler, SdkTracerProvider};
use tracing_subscriber::Layer;
use tracing_subscriber::registry::LookupSpan;

use crate::config::{Config, HeaderValueConfig};

pub use crate::config::TelemetryConfig;

pub use spans::{
    ChatSpan, HttpClientSpan, RUN_SPAN_TARGET, failed, in_run, inject, invoke_agent, log_event, responded, run_span,
    server_span, tool_returned, tool_span, ws_server_span,
};

/// What the span constructors need to know, fixed at start-up.
#[derive(Debug)]
pub(crate) struct Settings {
    capture_content: bool,
    trust_incoming: bool,
}

static SETTINGS: OnceLock<Settings> = OnceLock::new();

/// The settings while tracing is on; `None` (one load) while off.
pub(crate) fn settings() -> Option<&'static Settings> {
    SETTINGS.get()
}

/// True once tracing was started in this process.
pub fn enabled() -> bool {
    SETTINGS.get().is_some()
}

/// The running exporter; flushed by [`Tracing::shutdown`].
pub struct Tracing {
    provider: SdkTracerProvider,
    tracer: opentelemetry_sdk::trace::SdkTracer,
    /// Where spans go, for the start-up log line: scheme and host only.
    collector: String,
    ratio: f64,
}

impl Tracing {
    /// Start exporting when the config or the environment names an endpoint;
    /// `Ok(None)` (and nothing installed) otherwise.
    pub fn start(config: &Config) -> anyhow::Result<Option<Self>> {
        let env = |k: &str| std::env::var(k).ok().filter(|v| !v.trim().is_empty());
        let telemetry = &config.telemetry;
        let endpoint = telemetry.otlp.endpoint.as_deref().map(str::trim).filter(|e| !e.is_empty());
        let from_env = env("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT").or_else(|| env("OTEL_EXPORTER_OTLP_ENDPOINT"));
        if endpoint.is_none() && from_env.is_none() {
            return Ok(None);
        }
        if env("OTEL_SDK_DISABLED").is_some_and(|v| v.eq_ignore_ascii_case("true")) {
            return Ok(None);
        }
        let ratio = telemetry.sample_ratio;
        anyhow::ensure!((0.0..=1.0).contains(&ratio), "telemetry.sampleRatio: {ratio} is not between 0 and 1");
        let mut headers = std::collections::HashMap::new();
        for (name, value) in &telemetry.otlp.headers {
            let value = match value {
                HeaderValueConfig::Value(v) => v.clone(),
                HeaderValueConfig::Env { value_env } => match std::env::var(value_env) {
                    Ok(v) if !v.is_empty() => crate::config::Secret::new(v),
                    _ => anyhow::bail!(
                        "telemetry.otlp.headers.{name}.valueEnv: environment variable {value_env} is not set"
                    ),
                },
            };
            http::HeaderValue::from_str(value.expose())
                .map_err(|_| anyhow::anyhow!("telemetry.otlp.headers.{name}: not a valid header value"))?;
            headers.insert(name.clone(), value.expose().to_string());
        }
        let mut exporter = opentelemetry_otlp::SpanExporter::builder()
            .with_http()
            .with_protocol(opentelemetry_otlp::Protocol::HttpBinary)
            .with_headers(headers);
        if let Some(endpoint) = endpoint {
            exporter = exporter.with_endpoint(traces_url(endpoint));
        }
        let exporter = exporter.build().context("telemetry.otlp: cannot build the OTLP exporter")?;
        let mut resource = opentelemetry_sdk::Resource::builder();
        if env("OTEL_SERVICE_NAME").is_none() {
            resource = resource.with_service_name("wasmclaw");
        }
        let resource =
            resource.with_attribute(opentelemetry::KeyValue::new("service.version", env!("CARGO_PKG_VERSION")));
        let provider = SdkTracerProvider::builder()
            .with_batch_exporter(exporter)
            .with_sampler(Sampler::ParentBased(Box::new(Sampler::TraceIdRatioBased(ratio))))
            .with_resource(resource.build())
            .build();
        let tracer = provider.tracer("wasmclaw");
        let loopback = config.gateway.bind.parse::<std::net::IpAddr>().is_ok_and(|ip| ip.is_loopback());
        let trust_incoming = telemetry.trust_incoming_traceparent.unwrap_or(loopback);
        let _ = SETTINGS.set(Settings { capture_content: telemetry.capture_content, trust_incoming });
        let collector = origin(endpoint.or(from_env.as_deref()).unwrap_or_default());
        Ok(Some(Self { provider, tracer, collector, ratio }))
    }

    /// The layer that exports the gateway's trace spans (and only those).
    pub fn layer<S>(&self) -> impl Layer<S> + use<S>
    where
        S: tracing::Subscriber + for<'a> LookupSpan<'a>,
    {
        tracing_opentelemetry::layer()
            .with_tracer(self.tracer.clone())
            .with_tracked_inactivity(false)
            .with_threads(false)
            .with_location(false)
            // Attaching the span's OpenTelemetry context on every enter (each poll of an
            // instrumented future) serves only code that reads `Context::current()`; ours
            // parents and injects from the `tracing` span itself.
            .with_context_activation(false)
            .with_filter(only_trace_spans())
    }

    /// Say where spans go (once the log is set up); never the headers.
    pub fn announce(&self) {
        tracing::info!(
            collector = %self.collector,
            sample_ratio = self.ratio,
            "traces: exporting over OTLP/HTTP (telemetry.otlp.endpoint)"
        );
    }

    /// The log filter's addition: trace spans are for the exporter, not the log.
    pub fn log_directive() -> tracing_subscriber::filter::Directive {
        format!("{RUN_SPAN_TARGET}=off").parse().expect("a valid directive")
    }

    /// Export what is still queued, then stop (at the end of `main`).
    pub async fn shutdown(self) {
        let provider = self.provider;
        // The exporter's client blocks: off the async workers.
        let done = tokio::task::spawn_blocking(move || provider.shutdown()).await;
        if let Ok(Err(e)) = done {
            eprintln!("telemetry: flushing the last spans failed: {e}");
        }
    }
}

/// The exporter's filter: spans of [`RUN_SPAN_TARGET`], all at `info`. Its
/// level hint matters as much as the target: without one the subscriber's
/// maximum level becomes `trace`, and every `log` record of every dependency
/// (reqwest's per-request `debug!`s) is then built and dispatched to the
/// filters only to be dropped.
fn only_trace_spans() -> tracing_subscriber::filter::FilterFn<impl Fn(&tracing::Metadata<'_>) -> bool> {
    tracing_subscriber::filter::filter_fn(|meta| meta.target() == RUN_SPAN_TARGET)
        .with_max_level_hint(tracing::level_filters::LevelFilter::INFO)
}

/// `scheme://host:port` of `url`, without credentials, path or query.
fn origin(url: &str) -> String {
    match url.parse::<http::Uri>() {
        Ok(uri) => {
            let authority = uri.authority().map_or("", |a| a.as_str());
            let host = authority.rsplit('@').next().unwrap_or_default();
            format!("{}://{host}", uri.scheme_str().unwrap_or("http"))
        }
        Err(_) => "(not a URL)".into(),
    }
}

/// The traces URL of a base endpoint, as the OTLP exporters derive it from
/// `OTEL_EXPORTER_OTLP_ENDPOINT`.
fn traces_url(endpoint: &str) -> String {
    let base = endpoint.trim_end_matches('/');
    if base.ends_with("/v1/traces") { base.to_string() } else { format!("{base}/v1/traces") }
}

#[cfg(test)]
mod tests {
    use tracing::level_filters::LevelFilter;
    use tracing_subscriber::Layer as _;
    use tracing_subscriber::layer::{Filter, SubscriberExt as _};

    #[test]
    fn the_exporter_layer_keeps_the_subscribers_level_at_info() {
        let filter = super::only_trace_spans();
        assert_eq!(
            Filter::<tracing_subscriber::Registry>::max_level_hint(&filter),
            Some(LevelFilter::INFO),
            "without a hint the subscriber enables every level, and every `log` record is dispatched"
        );
        // With the log's own layer at `warn`, as `main` builds it: the subscriber's level is the larger.
        let provider = opentelemetry_sdk::trace::SdkTracerProvider::builder().build();
        let tracing = super::Tracing {
            tracer: opentelemetry::trace::TracerProvider::tracer(&provider, "test"),
            provider,
            collector: String::new(),
            ratio: 1.0,
        };
        let logs = tracing_subscriber::fmt::layer().with_filter(LevelFilter::WARN);
        let subscriber = tracing_subscriber::registry().with(logs).with(tracing.layer());
        assert_eq!(tracing::Subscriber::max_level_hint(&subscriber), Some(LevelFilter::INFO));
    }

    #[test]
    fn a_base_endpoint_gets_the_traces_path_once() {
        assert_eq!(super::traces_url("http://127.0.0.1:4318"), "http://127.0.0.1:4318/v1/traces");
        assert_eq!(super::traces_url("http://c:4318/otlp/"), "http://c:4318/otlp/v1/traces");
        assert_eq!(super::traces_url("http://c:4318/v1/traces"), "http://c:4318/v1/traces");
    }

    #[test]
    fn the_logged_collector_has_no_credentials_path_or_query() {
        assert_eq!(
            super::origin("https://user:pw@otlp.example.com:4318/v1/traces?key=k"),
            "https://otlp.example.com:4318"
        );
    }
}
