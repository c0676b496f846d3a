use opentelemetry::trace::TracerProvider as _;
use opentelemetry_sdk::trace::SdkTracerProvider;
use tracing_subscriber::layer::SubscriberExt;

use super::Traced;

const PARENT: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

/// Runs `f` with the OpenTelemetry layer (spans are made, nothing exported).
fn traced<T>(f: impl FnOnce() -> T) -> T {
    let provider = SdkTracerProvider::builder().build();
    let subscriber =
        tracing_subscriber::registry().with(tracing_opentelemetry::layer().with_tracer(provider.tracer("test")));
    tracing::subscriber::with_default(subscriber, f)
}

/// `(trace id, span id, flags)` of a traceparent.
fn parts(traceparent: &str) -> (&str, &str, &str) {
    let fields: Vec<&str> = traceparent.split('-').collect();
    assert_eq!(fields.len(), 4, "{traceparent}");
    assert_eq!(fields[0], "00", "{traceparent}");
    (fields[1], fields[2], fields[3])
}

#[test]
fn a_span_continues_the_given_trace_with_its_own_span_id() {
    let child = traced(|| Traced::new(tracing::info_span!(parent: None, "child"), Some(PARENT)));
    let (trace, span, flags) = parts(child.traceparent().unwrap());
    assert_eq!(trace, "4bf92f3577b34da6a3ce929d0e0e4736");
    assert_ne!(span, "00f067aa0ba902b7");
    assert_eq!(flags, "01");
    assert!(klaxon_log::is_traceparent(child.traceparent().unwrap()), "the log accepts it");
}

#[test]
fn a_chain_of_spans_stays_in_one_trace() {
    let (first, second) = traced(|| {
        let first = Traced::new(tracing::info_span!(parent: None, "first"), None);
        let second = Traced::new(tracing::info_span!(parent: None, "second"), first.traceparent());
        (first, second)
    });
    let (first, second) = (parts(first.traceparent().unwrap()), parts(second.traceparent().unwrap()));
    assert_eq!(first.0, second.0);
    assert_ne!(first.1, second.1);
}

#[test]
fn without_a_parent_or_with_a_bad_one_a_new_trace_starts() {
    let bad = ["", "00-00000000000000000000000000000000-00f067aa0ba902b7-01", "not a trace", "00-4bf9-00f0-01"];
    for parent in bad.iter().map(|b| Some(*b)).chain([None]) {
        let root = traced(|| Traced::new(tracing::info_span!(parent: None, "root"), parent));
        let (trace, _, flags) = parts(root.traceparent().unwrap());
        assert_ne!(trace, "4bf92f3577b34da6a3ce929d0e0e4736", "{parent:?}");
        assert_eq!(flags, "01", "{parent:?}");
    }
}

#[test]
fn an_unsampled_parent_keeps_its_children_unsampled() {
    let parent = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-00";
    let child = traced(|| Traced::new(tracing::info_span!(parent: None, "child"), Some(parent)));
    let (trace, _, flags) = parts(child.traceparent().unwrap());
    assert_eq!((trace, flags), ("4bf92f3577b34da6a3ce929d0e0e4736", "00"));
}

#[test]
fn without_export_the_given_trace_is_passed_on_unchanged() {
    let child = Traced::new(tracing::info_span!(parent: None, "child"), Some(PARENT));
    assert_eq!(child.traceparent(), Some(PARENT));
    let root = Traced::new(tracing::info_span!(parent: None, "root"), None);
    assert_eq!(root.traceparent(), None);
}
