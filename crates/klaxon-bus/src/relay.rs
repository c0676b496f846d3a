//! The relay: every committed record, published to JetStream in order.

use std::collections::VecDeque;
use std::time::Duration;

use async_nats::HeaderMap;
use async_nats::jetstream::context::{PublishAckFuture, PublishErrorKind};
use async_nats::jetstream::message::PublishMessage;
use async_nats::jetstream::stream::{Config as StreamConfig, StorageType};
use futures_util::FutureExt;
use klaxon_log::{Log, Position, Record};
use tokio_util::sync::CancellationToken;

use crate::jetstream::{Names, POSITION_HEADER, TOO_LARGE_HEADER};

/// The relay's checkpoint name in the log.
pub const CHECKPOINT: &str = "relay";
/// Publishes awaiting their acknowledgement at most.
const IN_FLIGHT_MAX: usize = 256;
/// How often the relay announces the position it has reached.
pub const NOTICE_EVERY: Duration = Duration::from_secs(1);
/// How long the relay waits for NATS to acknowledge a publish.
const ACK_WAIT: Duration = Duration::from_secs(2);
/// Acknowledged records between two checkpoint saves.
const CHECKPOINT_EVERY: u64 = 1024;

/// What stops the relay for good (everything else it retries).
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The stream holds more than the log: it belongs to another log.
    #[error(
        "JetStream stream {stream} ends at sequence {last}, past the log's head {head}: it was filled from another log; delete it or configure another prefix"
    )]
    ForeignStream {
        /// The stream.
        stream: String,
        /// Its last sequence.
        last: u64,
        /// The log's head.
        head: Position,
    },
    /// The log failed.
    #[error(transparent)]
    Log(#[from] klaxon_log::Error),
}

/// Publishes the log to JetStream: record at position `p` becomes stream
/// sequence `p` (the publish says `Nats-Expected-Last-Sequence: p - 1`),
/// with the event id as `Nats-Msg-Id`, the position in `Klaxon-Position`
/// and the trace in `traceparent`.
///
/// On start and after every failure (NATS down, a lost tail, a wiped
/// stream) it asks the stream where it ends and goes on from there: a tail
/// NATS acknowledged and then lost is published again, and nothing is
/// skipped. It saves the position NATS acknowledged as its checkpoint, to
/// notice such losses, and announces it on the notice subject every second
/// so that consumers notice a lost tail too.
pub struct Relay {
    log: Log,
    client: async_nats::Client,
    names: Names,
    acked: tokio::sync::watch::Sender<Position>,
}

/// While the relay is interrupted with nothing acknowledged, how often it
/// says so again.
const STILL_INTERRUPTED_EVERY: Duration = Duration::from_secs(60);

/// An interruption of the relay: since when, when last said, and the
/// position acknowledged when it began (one acknowledged since ends it).
struct Interruption {
    since: std::time::Instant,
    said: std::time::Instant,
    acked: Position,
}

impl Relay {
    /// A relay from `log` to the JetStream of `client`.
    pub fn new(log: Log, client: async_nats::Client, names: Names) -> Relay {
        Relay { log, client, names, acked: tokio::sync::watch::channel(Position::ZERO).0 }
    }

    /// The position NATS has acknowledged up to, as it moves.
    pub fn acknowledged(&self) -> tokio::sync::watch::Receiver<Position> {
        self.acked.subscribe()
    }

    /// Runs until `shutdown`.
    pub async fn run(self, shutdown: CancellationToken) -> Result<(), Error> {
        let notices = tokio::spawn(announce(
            self.client.clone(),
            self.names.head_subject.clone(),
            self.acked.subscribe(),
            shutdown.clone(),
        ));
        let mut pause = Duration::from_millis(100);
        // An interruption is said when it begins (nothing was acknowledged
        // since the last one), and then once a minute while it lasts.
        let mut interrupted: Option<Interruption> = None;
        let result = loop {
            let round = tokio::select! {
                _ = shutdown.cancelled() => break Ok(()),
                round = self.round() => round,
            };
            match round {
                Err(RoundError::Fatal(e)) => break Err(e),
                Err(RoundError::Retry(reason)) => {
                    let acked = *self.acked.borrow();
                    match &mut interrupted {
                        Some(i) if i.acked == acked => {
                            if i.said.elapsed() >= STILL_INTERRUPTED_EVERY {
                                i.said = std::time::Instant::now();
                                let since = i.since.elapsed();
                                tracing::warn!(%reason, ?since, %acked, "relay still interrupted; retrying");
                            } else {
                                tracing::debug!(%reason, ?pause, "relay still interrupted; retrying");
                            }
                        }
                        _ => {
                            tracing::warn!(%reason, ?pause, %acked, "relay interrupted; resynchronising with the stream");
                            let now = std::time::Instant::now();
                            interrupted = Some(Interruption { since: now, said: now, acked });
                        }
                    }
                }
                Ok(()) => break Ok(()),
            }
            tokio::select! {
                _ = shutdown.cancelled() => break Ok(()),
                _ = tokio::time::sleep(pause) => {}
            }
            pause = (pause * 2).min(Duration::from_secs(2));
        };
        let acked = *self.acked.borrow();
        if acked > Position::ZERO {
            let _ = self.log.save_checkpoint(CHECKPOINT, acked).await;
        }
        notices.abort();
        result
    }

    /// Resynchronises with the stream, then publishes until a failure.
    async fn round(&self) -> Result<(), RoundError> {
        // A short timeout: an ack that does not come within it means NATS is
        // away, and the relay should resynchronise rather than wait.
        let js = async_nats::jetstream::ContextBuilder::new().timeout(ACK_WAIT).build(self.client.clone());
        let config = StreamConfig {
            name: self.names.stream.clone(),
            subjects: vec![self.names.subject.clone()],
            storage: StorageType::File,
            ..Default::default()
        };
        let mut stream = js.get_or_create_stream(config).await.map_err(RoundError::retry)?;
        let last = stream.info().await.map_err(RoundError::retry)?.state.last_sequence;
        let head = self.log.head();
        if last > head.0 {
            return Err(RoundError::Fatal(Error::ForeignStream { stream: self.names.stream.clone(), last, head }));
        }
        let checkpoint = self.log.load_checkpoint(CHECKPOINT).map_err(|e| RoundError::Fatal(e.into()))?;
        if last < checkpoint.0 {
            tracing::warn!(
                stream_ends_at = last,
                acknowledged_before = checkpoint.0,
                "JetStream lost records it had acknowledged; publishing them again from the log"
            );
        }
        self.acked.send_replace(Position(last));
        let mut saved = checkpoint;
        let mut subscription = self.log.subscribe(Position(last + 1));
        let mut in_flight: VecDeque<(Position, PublishAckFuture)> = VecDeque::new();
        loop {
            // Publish what is ready without waiting; wait for an ack only
            // when the window is full or nothing else is ready.
            let ready = if in_flight.len() < IN_FLIGHT_MAX {
                if in_flight.is_empty() { Some(subscription.next().await) } else { subscription.next().now_or_never() }
            } else {
                None
            };
            match ready {
                Some(None) => return Ok(()), // the log closed
                Some(Some(record)) => {
                    let record = record.map_err(|e| RoundError::Fatal(e.into()))?;
                    // A tail republished after a loss goes without its id: the
                    // dedup window may still remember it, and expected-last-
                    // sequence already rules out a double.
                    let with_id = record.position > checkpoint;
                    let max_payload = self.client.server_info().max_payload;
                    let ack = js
                        .send_publish(self.names.subject.clone(), message(&record, with_id, max_payload))
                        .await
                        .map_err(RoundError::retry)?;
                    in_flight.push_back((record.position, ack));
                }
                None => {
                    let (position, ack) = in_flight.pop_front().expect("waiting only with publishes in flight");
                    match ack.await {
                        Ok(ack) if ack.sequence == position.0 => {}
                        Ok(ack) => {
                            return Err(RoundError::Retry(format!(
                                "position {position} was stored as sequence {} (duplicate: {})",
                                ack.sequence, ack.duplicate
                            )));
                        }
                        Err(e) if e.kind() == PublishErrorKind::WrongLastSequence => {
                            return Err(RoundError::Retry(format!("the stream moved under the relay: {e}")));
                        }
                        Err(e) => return Err(RoundError::retry(e)),
                    }
                    self.acked.send_replace(position);
                    if position.0 >= saved.0 + CHECKPOINT_EVERY {
                        self.log
                            .save_checkpoint(CHECKPOINT, position)
                            .await
                            .map_err(|e| RoundError::Fatal(e.into()))?;
                        saved = position;
                    }
                }
            }
        }
    }
}

/// Header room kept below NATS's `max_payload` for our headers.
const HEADER_ROOM: usize = 1024;

/// The message for `record`. One larger than the server takes goes as a
/// placeholder without payload: it still holds the record's sequence, and
/// subscribers read the record from the log server.
fn message(record: &Record, with_id: bool, max_payload: usize) -> PublishMessage {
    let mut headers = HeaderMap::new();
    headers.insert(POSITION_HEADER, record.position.0.to_string().as_str());
    if let Some(traceparent) = &record.metadata.traceparent {
        headers.insert("traceparent", traceparent.as_str());
    }
    let mut payload = record.to_bytes();
    if payload.len() + HEADER_ROOM > max_payload {
        tracing::warn!(
            position = %record.position,
            bytes = payload.len(),
            max_payload,
            "record too large for NATS; publishing a placeholder (subscribers read it from the log)"
        );
        headers.insert(TOO_LARGE_HEADER, payload.len().to_string().as_str());
        payload.clear();
    }
    let message =
        PublishMessage::build().payload(payload.into()).headers(headers).expected_last_sequence(record.position.0 - 1);
    if with_id { message.message_id(record.id.to_string()) } else { message }
}

/// Announces the acknowledged position every [`NOTICE_EVERY`].
async fn announce(
    client: async_nats::Client,
    subject: String,
    acked: tokio::sync::watch::Receiver<Position>,
    shutdown: CancellationToken,
) {
    let mut every = tokio::time::interval(NOTICE_EVERY);
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = every.tick() => {}
        }
        let position = *acked.borrow();
        if position > Position::ZERO {
            // Lost while NATS is away; the next one follows in a second.
            let _ = client.publish(subject.clone(), position.0.to_string().into()).await;
        }
    }
}

enum RoundError {
    Retry(String),
    Fatal(Error),
}

impl RoundError {
    fn retry(e: impl std::fmt::Display) -> RoundError {
        RoundError::Retry(e.to_string())
    }
}
