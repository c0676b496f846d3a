//! The evaluator component.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use klaxon_bus::Bus;
use klaxon_domain::ids::{ActorId, IncidentId, Severity, reaction_event_id};
use klaxon_domain::incident::{Change, Incident, IncidentEvent, Incidents, SeverityAssessed};
use klaxon_domain::severity::{Explanation, Facts, Rules, ServiceCatalog, reassess};
use klaxon_log::{EventData, EventKind, ExpectedVersion, Metadata, NewEvent, Position, Record};
use klaxon_reactor::{decode, streams};
use klaxon_telemetry::Traced;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

/// The evaluator's checkpoint name in the log.
pub const CONSUMER: &str = "severity";
/// The actor recorded on assessments.
pub const ACTOR: &str = "klaxon-severity";
/// The reaction name that, with the cause's id, derives an assessment's id.
const REACTION: &str = "severity.assessed";
/// Records between two checkpoint saves.
const CHECKPOINT_EVERY: u64 = 256;

/// What can go wrong.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The log failed.
    #[error(transparent)]
    Log(#[from] klaxon_log::Error),
    /// A stored incident event does not decode.
    #[error(transparent)]
    Projection(#[from] klaxon_reactor::Error),
    /// No such incident.
    #[error("unknown incident {0}")]
    UnknownIncident(IncidentId),
    /// The evaluator is not keeping up or stopped.
    #[error("the severity evaluator is unavailable: {0}")]
    Unavailable(String),
}

/// The severity evaluator. Build it, take [`Handle`]s, then [`Evaluator::run`].
pub struct Evaluator {
    handle: Handle,
}

/// A cheap-to-clone handle for queries.
#[derive(Clone)]
pub struct Handle {
    log: Bus,
    rules: Arc<Rules>,
    catalog: Arc<ServiceCatalog>,
    incidents: Arc<RwLock<Incidents>>,
    applied: watch::Sender<Position>,
}

impl Evaluator {
    /// An evaluator applying `rules` with the service `catalog`.
    pub fn new(log: impl Into<Bus>, rules: Arc<Rules>, catalog: Arc<ServiceCatalog>) -> Evaluator {
        let handle = Handle {
            log: log.into(),
            rules,
            catalog,
            incidents: Arc::new(RwLock::new(Incidents::default())),
            applied: watch::channel(Position::ZERO).0,
        };
        Evaluator { handle }
    }

    /// A handle to it.
    pub fn handle(&self) -> Handle {
        self.handle.clone()
    }

    /// Folds the log from position 1 and reacts to every incident event
    /// after its checkpoint, until `shutdown` or the log closes.
    pub async fn run(self, shutdown: CancellationToken) -> Result<(), Error> {
        let h = &self.handle;
        let checkpoint = h.log.load_checkpoint(CONSUMER).await?;
        let by = ActorId::new(ACTOR).expect("a valid actor id");
        // Assessments appended but not yet seen coming back: later events of
        // the same incident compare with them, not with the stale fold.
        let mut pending: HashMap<IncidentId, Severity> = HashMap::new();
        let mut saved = checkpoint;
        let mut subscription = h.log.subscribe(Position(1));
        loop {
            let record = tokio::select! {
                _ = shutdown.cancelled() => break,
                next = subscription.next() => match next {
                    None => break,
                    Some(record) => record?,
                },
            };
            let decoded = decode::incident(&record)?;
            if let Some(event) = &decoded {
                h.incidents.write().expect("projection lock").apply(event);
            }
            if let Some(event) = decoded {
                if matches!(event.change, Change::SeverityAssessed(_)) {
                    pending.remove(&event.incident);
                } else if record.position > checkpoint {
                    self.react(&record, &event, &by, &mut pending).await?;
                }
            }
            h.applied.send_replace(record.position);
            if record.position.0 >= saved.0 + CHECKPOINT_EVERY {
                h.log.save_checkpoint(CONSUMER, record.position).await?;
                saved = record.position;
            }
        }
        let applied = *h.applied.borrow();
        if applied > saved {
            // Best effort: a closed log means the process is stopping anyway.
            let _ = h.log.save_checkpoint(CONSUMER, applied).await;
        }
        Ok(())
    }

    async fn react(
        &self,
        cause: &Record,
        event: &IncidentEvent,
        by: &ActorId,
        pending: &mut HashMap<IncidentId, Severity>,
    ) -> Result<(), Error> {
        let h = &self.handle;
        let Some(incident) = h.incidents.read().expect("projection lock").get(event.incident).cloned() else {
            return Ok(());
        };
        let Some(assessment) = reassess(&incident, &h.rules, &h.catalog) else { return Ok(()) };
        if pending.get(&event.incident) == Some(&assessment.severity) {
            return Ok(());
        }
        // The assessment continues the cause's trace; its event carries the
        // assessment's own span, so that paging and the notifier descend
        // from it.
        let span = tracing::info_span!(
            parent: None, "severity.assess", incident = %event.incident, severity = %assessment.severity
        );
        let traced = Traced::new(span, cause.metadata.traceparent.as_deref());
        let assessed = IncidentEvent {
            incident: event.incident,
            at: event.at,
            by: by.clone(),
            change: Change::SeverityAssessed(SeverityAssessed {
                severity: assessment.severity,
                rule: assessment.rule_id.clone(),
                reason: assessment.reason.clone(),
                reasons: assessment.reasons.clone(),
            }),
        };
        let new = NewEvent {
            id: reaction_event_id(cause.id, REACTION, 0),
            kind: EventKind::new(assessed.kind()).expect("domain kinds are valid"),
            data: EventData::from_value(&assessed.to_json())?,
            metadata: Metadata {
                actor: Some(ACTOR.into()),
                correlation_id: cause.metadata.correlation_id,
                causation_id: Some(cause.id),
                traceparent: traced.traceparent().map(str::to_owned),
            },
        };
        let stream = streams::incident(event.incident);
        h.log.append(&stream, ExpectedVersion::Any, vec![new]).instrument(traced.span().clone()).await?;
        traced.span().in_scope(|| {
            tracing::info!(incident = %event.incident, severity = %assessment.severity, rule = ?assessment.rule_id, "severity assessed");
        });
        pending.insert(event.incident, assessment.severity);
        Ok(())
    }
}

impl Handle {
    /// The last log position folded into this service's projection (for
    /// the consumer-lag metric).
    pub fn applied(&self) -> Position {
        *self.applied.borrow()
    }

    /// Why the incident has (or would get) its severity, from the rules as
    /// configured, on the incident as currently known.
    pub async fn explain(&self, id: IncidentId) -> Result<(Incident, Explanation), Error> {
        let head = self.log.head().await?;
        let mut applied = self.applied.subscribe();
        match tokio::time::timeout(Duration::from_secs(5), applied.wait_for(|p| *p >= head)).await {
            Ok(Ok(_)) => {}
            _ => return Err(Error::Unavailable(format!("not caught up with position {head}"))),
        }
        let incident =
            self.incidents.read().expect("projection lock").get(id).cloned().ok_or(Error::UnknownIncident(id))?;
        let explanation = self.rules.explain(&Facts::of(&incident, &self.catalog));
        Ok((incident, explanation))
    }
}
