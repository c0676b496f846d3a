//! Klaxon's tracing setup, and the bridge between `tracing` spans and the
//! W3C trace context that Klaxon's events carry.
//!
//! [`init`] installs what every `klaxond` process logs with (the `fmt` layer
//! on stderr, filtered by `RUST_LOG`) and, only when
//! `OTEL_EXPORTER_OTLP_ENDPOINT` (or `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`) is
//! set, a `tracing-opentelemetry` layer that exports Klaxon's spans over
//! OTLP/gRPC with a batch span processor. The returned [`Guard`] flushes and
//! shuts the exporter down when dropped.
//!
//! [`Traced`] is how a service joins a trace: a `tracing` span whose parent
//! is the `traceparent` of the request or event that caused the work (or a
//! new root), and the `traceparent` that the work passes on to the events it
//! appends. Parsing and rendering go through OpenTelemetry's
//! `TraceContextPropagator`, never by hand.
//!
//! What it must never do: make a command or a delivery fail (a bad
//! `traceparent` starts a new trace; an unreachable collector loses spans,
//! nothing else), export spans of other crates (tonic, h2 and the exporter's
//! own would feed back into the exporter), or hold a stopping process for
//! longer than [`SHUTDOWN_WAIT`].

use std::io::IsTerminal;
use std::time::Duration;

use opentelemetry::propagation::{Extractor, Injector, TextMapPropagator};
use opentelemetry::trace::{TraceContextExt, TracerProvider as _};
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::propagation::TraceContextPropagator;
use opentelemetry_sdk::trace::SdkTracerProvider;
use tracing::Span;
use tracing_opentelemetry::OpenTelemetrySpanExt;
use tracing_subscriber::filter::{EnvFilter, filter_fn};
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{Layer, fmt};

/// The variable that turns export on (the OTLP exporter's own name for it).
pub const ENDPOINT_VAR: &str = "OTEL_EXPORTER_OTLP_ENDPOINT";
/// The traces-only endpoint, which also turns export on and wins over
/// [`ENDPOINT_VAR`] for traces.
pub const TRACES_ENDPOINT_VAR: &str = "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT";
/// Overrides the `service.name` resource that [`init`] is given.
pub const SERVICE_NAME_VAR: &str = "OTEL_SERVICE_NAME";
/// The log filter when `RUST_LOG` is not set.
pub const LOG_FILTER_DEFAULT: &str = "info,h2=warn,tower=warn,openraft=warn,async_nats=warn";
/// The longest a dropped [`Guard`] waits for the last spans to be exported.
pub const SHUTDOWN_WAIT: Duration = Duration::from_secs(5);
/// The instrumentation scope of Klaxon's spans.
const SCOPE: &str = "klaxon";
/// The W3C header, metadata key and field name of a trace context.
const TRACEPARENT: &str = "traceparent";

/// What can go wrong while setting up.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The OTLP exporter could not be built from the `OTEL_*` variables
    /// (for example an endpoint that is not a URL).
    #[error("OpenTelemetry export: {0}")]
    Exporter(#[from] opentelemetry_otlp::ExporterBuildError),
    /// A global subscriber was installed already.
    #[error("tracing is already set up: {0}")]
    AlreadySet(#[from] tracing_subscriber::util::TryInitError),
}

/// Keeps the trace exporter running; dropping it exports the spans still
/// queued (waiting at most [`SHUTDOWN_WAIT`]) and stops the exporter.
///
/// Drop it after the work is done and before the tokio runtime that [`init`]
/// ran in: the exporter's connection lives on that runtime.
#[must_use = "dropping the guard stops the trace export"]
pub struct Guard {
    provider: Option<SdkTracerProvider>,
}

impl Drop for Guard {
    fn drop(&mut self) {
        if let Some(provider) = self.provider.take() {
            if let Err(e) = provider.shutdown_with_timeout(SHUTDOWN_WAIT) {
                // The subscriber may be the one that failed; say it plainly.
                eprintln!("klaxon: the last trace spans may not have been exported: {e}");
            }
        }
    }
}

/// Installs the global `tracing` subscriber of a process named
/// `service_name` (the `service.name` resource of its spans unless
/// `OTEL_SERVICE_NAME` says otherwise).
///
/// Logs go to stderr through the `fmt` layer, filtered by `RUST_LOG`
/// (default [`LOG_FILTER_DEFAULT`]), in colour only when stderr is a
/// terminal and `NO_COLOR` is unset or empty. When `OTEL_EXPORTER_OTLP_ENDPOINT` or
/// `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT` is set, spans of Klaxon's own crates
/// at `INFO` and above are exported over OTLP/gRPC as well, whatever
/// `RUST_LOG` says; the exporter reads the other standard variables itself
/// (`OTEL_EXPORTER_OTLP_TIMEOUT`, `OTEL_EXPORTER_OTLP_HEADERS`,
/// `OTEL_BSP_SCHEDULE_DELAY`, …). The connection is made lazily: an
/// unreachable collector never delays the start.
///
/// With an endpoint, this must run inside a tokio runtime (after
/// `Runtime::enter`): the exporter's gRPC channel is spawned on it.
pub fn init(service_name: &str) -> Result<Guard, Error> {
    let log_filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| LOG_FILTER_DEFAULT.into());
    // Colours only for a person at a terminal: a log file, a pipe or the
    // journal gets plain text (and `NO_COLOR` is honoured either way).
    let ansi = std::io::stderr().is_terminal() && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty());
    let logs = fmt::layer().with_writer(std::io::stderr).with_ansi(ansi).with_filter(log_filter);
    let provider = if export_configured() { Some(provider(service_name)?) } else { None };
    let traces = provider.as_ref().map(|provider| {
        tracing_opentelemetry::layer()
            .with_tracer(provider.tracer(SCOPE))
            .with_filter(filter_fn(|meta| meta.target().starts_with(SCOPE) && *meta.level() <= tracing::Level::INFO))
    });
    tracing_subscriber::registry().with(logs).with(traces).try_init()?;
    if provider.is_some() {
        tracing::info!("exporting OpenTelemetry traces over OTLP/gRPC");
    }
    Ok(Guard { provider })
}

/// Whether an OTLP endpoint for traces is configured.
fn export_configured() -> bool {
    [ENDPOINT_VAR, TRACES_ENDPOINT_VAR].iter().any(|var| std::env::var(var).is_ok_and(|v| !v.trim().is_empty()))
}

fn provider(service_name: &str) -> Result<SdkTracerProvider, Error> {
    let exporter = opentelemetry_otlp::SpanExporter::builder().with_tonic().build()?;
    let name = std::env::var(SERVICE_NAME_VAR).ok().filter(|n| !n.trim().is_empty());
    let resource = Resource::builder().with_service_name(name.unwrap_or_else(|| service_name.to_owned())).build();
    Ok(SdkTracerProvider::builder().with_batch_exporter(exporter).with_resource(resource).build())
}

/// A span joined to a trace, and the W3C `traceparent` its work passes on.
///
/// The span's parent is the `traceparent` given to [`Traced::new`]; without
/// one (or with one that does not parse) it starts a new trace. When spans
/// are exported, [`Traced::traceparent`] is the span's own context, so that
/// whatever the work causes (events, calls) becomes its child. When they
/// are not (no endpoint, or no subscriber at all, as in unit tests) the
/// span has no trace context of its own, and the given `traceparent` is
/// passed on unchanged, so a trace still travels through a process that
/// does not export.
#[derive(Clone, Debug)]
pub struct Traced {
    span: Span,
    traceparent: Option<String>,
}

impl Traced {
    /// Joins `span` (a new span: not entered yet, created with
    /// `parent: None` so it does not also hang below whatever span happens
    /// to be current) to the trace of `parent`.
    pub fn new(span: Span, parent: Option<&str>) -> Traced {
        let parent_cx = parent.map(extract).unwrap_or_default();
        // Without the OpenTelemetry layer there is nothing to attach to;
        // that is the "not exported" case, not an error.
        let _ = span.set_parent(parent_cx);
        let traceparent = inject(&span.context()).or_else(|| parent.map(str::to_owned));
        Traced { span, traceparent }
    }

    /// The span: run the work in it (`Instrument::instrument`, `in_scope`).
    pub fn span(&self) -> &Span {
        &self.span
    }

    /// The trace context to store in the events this work appends.
    pub fn traceparent(&self) -> Option<&str> {
        self.traceparent.as_deref()
    }
}

/// The OpenTelemetry context whose remote parent is `traceparent`; an empty
/// one (so: a new trace) when it does not parse.
fn extract(traceparent: &str) -> opentelemetry::Context {
    TraceContextPropagator::new().extract(&One(traceparent))
}

/// `cx`'s span as a W3C `traceparent`, when it has a valid one.
fn inject(cx: &opentelemetry::Context) -> Option<String> {
    if !cx.span().span_context().is_valid() {
        return None;
    }
    let mut carrier = Carrier(None);
    TraceContextPropagator::new().inject_context(cx, &mut carrier);
    carrier.0
}

/// A carrier holding only a `traceparent`.
struct One<'a>(&'a str);

impl Extractor for One<'_> {
    fn get(&self, key: &str) -> Option<&str> {
        key.eq_ignore_ascii_case(TRACEPARENT).then_some(self.0)
    }

    fn keys(&self) -> Vec<&str> {
        vec![TRACEPARENT]
    }
}

/// Receives the `traceparent` that a propagator writes (and drops the rest).
struct Carrier(Option<String>);

impl Injector for Carrier {
    fn set(&mut self, key: &str, value: String) {
        if key.eq_ignore_ascii_case(TRACEPARENT) {
            self.0 = Some(value);
        }
    }
}

#[cfg(test)]
mod tests;
