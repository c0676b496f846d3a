//! Following the log through NATS JetStream, never trusting NATS alone.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_nats::jetstream::consumer::{DeliverPolicy, pull::OrderedConfig};
use futures_util::StreamExt;
use klaxon_log::{Error, Position, Record};
use tokio::sync::mpsc;
use tokio::time::Instant;

use crate::remote::RemoteLog;
use crate::source::{EventLog, EventSource, Subscription};

/// The header carrying a record's log position on every relayed message.
pub const POSITION_HEADER: &str = "Klaxon-Position";
/// The header marking a record too large for NATS's `max_payload`: the
/// message has no payload and subscribers read the record from the log.
pub const TOO_LARGE_HEADER: &str = "Klaxon-Too-Large";
/// How long a subscription waits for NATS to bring a record it knows
/// exists (from the relay's position notices) before reading it from the
/// log server.
pub const GAP_WAIT: Duration = Duration::from_millis(200);
/// How often a subscription asks the log server for its head even while
/// NATS is connected: NATS may be up and still not get the relay's
/// publishes (a full store, say), and then no notice comes either.
pub const HEAD_POLL_EVERY: Duration = Duration::from_secs(1);
/// Records read from the log server per request when repairing a gap.
const FILL_CHUNK: usize = 512;
/// Records a subscription holds ready for its service.
const BUFFER: usize = 1024;

/// Where in NATS the log goes: one JetStream stream on one subject, and a
/// plain subject for the relay's position notices.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Names {
    /// The JetStream stream's name.
    pub stream: String,
    /// The subject records are published on.
    pub subject: String,
    /// The subject the relay announces its acknowledged position on.
    pub head_subject: String,
}

impl Names {
    /// Names under `prefix` (`klaxon` gives stream `KLAXON`, subjects
    /// `klaxon.log` and `klaxon.head`).
    pub fn with_prefix(prefix: &str) -> Names {
        Names {
            stream: prefix.to_ascii_uppercase().replace(['.', '-'], "_"),
            subject: format!("{prefix}.log"),
            head_subject: format!("{prefix}.head"),
        }
    }
}

impl Default for Names {
    fn default() -> Names {
        Names::with_prefix("klaxon")
    }
}

/// Connects to NATS at `url`, retrying in the background while it is
/// down, and reconnecting quickly after an outage. The process's log says
/// once when NATS cannot be reached or is lost, and when it is back.
pub async fn connect(url: &str, name: &str) -> Result<async_nats::Client, async_nats::ConnectError> {
    let link = Arc::new(NatsLink { url: url.to_owned(), state: Mutex::new(LinkState::Starting) });
    async_nats::ConnectOptions::new()
        .name(name)
        .event_callback(move |event| {
            let link = link.clone();
            async move { link.on(&event) }
        })
        .retry_on_initial_connect()
        .max_reconnects(None)
        .connection_timeout(Duration::from_secs(2))
        .reconnect_delay_callback(|attempts| Duration::from_millis((attempts as u64 * 100).min(1000)))
        .connect(url)
        .await
}

/// What the process's log has said about its NATS connection, so that an
/// outage is said once, not at every reconnect attempt (async-nats logs
/// those itself, at `INFO` under `async_nats`, which the default filter
/// leaves out).
struct NatsLink {
    url: String,
    state: Mutex<LinkState>,
}

enum LinkState {
    /// Not yet connected, and no failure said.
    Starting,
    Connected,
    /// Unreachable (never connected, or lost) since then; said.
    Down(std::time::Instant),
}

impl NatsLink {
    fn on(&self, event: &async_nats::Event) {
        use async_nats::Event;
        let url = &self.url;
        let mut state = self.state.lock().expect("NATS link lock");
        match event {
            Event::Connected => {
                match *state {
                    LinkState::Down(since) => {
                        tracing::info!(%url, after = ?since.elapsed(), "NATS answers again");
                    }
                    LinkState::Starting => tracing::info!(%url, "connected to NATS"),
                    LinkState::Connected => {}
                }
                *state = LinkState::Connected;
            }
            Event::Disconnected => {
                tracing::warn!(%url, "lost NATS; reconnecting (services follow the log server directly meanwhile)");
                *state = LinkState::Down(std::time::Instant::now());
            }
            Event::ClientError(error) if matches!(*state, LinkState::Starting) => {
                tracing::warn!(
                    %url,
                    %error,
                    "cannot reach NATS; retrying until it answers (services follow the log server directly meanwhile)"
                );
                *state = LinkState::Down(std::time::Instant::now());
            }
            // Reconnect attempts of an outage already said.
            Event::ClientError(error) if matches!(*state, LinkState::Down(_)) => {
                tracing::debug!(%url, %error, "NATS still unreachable");
            }
            Event::ClientError(error) => tracing::warn!(%url, %error, "NATS client error"),
            Event::ServerError(error) => tracing::warn!(%url, %error, "NATS reports an error"),
            Event::SlowConsumer(subscription) => {
                tracing::warn!(%url, subscription, "NATS: a subscription here is too slow; messages were dropped")
            }
            Event::LameDuckMode => {
                tracing::info!(%url, "NATS is shutting down (lame duck mode); reconnecting elsewhere")
            }
            Event::Draining | Event::Closed => tracing::debug!(%url, %event, "NATS connection"),
        }
    }
}

/// An [`EventSource`] over the JetStream stream the relay fills.
///
/// A subscription first reads what the log server already has, then
/// follows JetStream from the next position with an ordered consumer. It
/// yields only position `next`: a repeated or older message is skipped; a
/// message past `next` means NATS lost something, and the gap is read from
/// the log server first. The relay's position notices reveal a lost tail,
/// and while NATS is unreachable the subscription polls the log server, so
/// the service keeps up through an outage.
#[derive(Clone)]
pub struct JetStreamSource {
    client: async_nats::Client,
    log: RemoteLog,
    names: Names,
}

impl JetStreamSource {
    /// A source reading from `client`'s JetStream and repairing from `log`.
    pub fn new(client: async_nats::Client, log: RemoteLog, names: Names) -> JetStreamSource {
        // Repairs must not block a subscription for long: it tries again
        // on its next tick anyway.
        JetStreamSource { client, log: log.with_retry_for(Duration::from_millis(500)), names }
    }
}

impl EventSource for JetStreamSource {
    fn subscribe(&self, from: Position) -> Subscription {
        let (tx, rx) = mpsc::channel(BUFFER);
        tokio::spawn(follow(self.clone(), from.max(Position(1)), tx));
        Subscription::from_stream(Box::pin(tokio_stream::wrappers::ReceiverStream::new(rx)))
    }
}

type Messages = async_nats::jetstream::consumer::pull::Ordered;

struct Follower {
    source: JetStreamSource,
    tx: mpsc::Sender<Result<Record, Error>>,
    next: Position,
    /// The highest position known to exist (notices, the log server).
    known: Position,
    /// When the subscription last moved, or last learnt of records it
    /// lacks: NATS has [`GAP_WAIT`] from then to bring them.
    last_progress: Instant,
}

enum Step {
    Message(Option<Result<Box<async_nats::jetstream::Message>, String>>),
    Notice(Option<async_nats::Message>),
    Tick,
    Closed,
}

async fn follow(source: JetStreamSource, from: Position, tx: mpsc::Sender<Result<Record, Error>>) {
    let mut f = Follower { source, tx, next: from, known: Position::ZERO, last_progress: Instant::now() };
    let mut notices = f.source.client.subscribe(f.source.names.head_subject.clone()).await.ok();
    let mut messages: Option<Messages> = None;
    let mut last_attempt: Option<Instant> = None;
    let mut last_poll = Instant::now();
    let mut tick = tokio::time::interval(GAP_WAIT);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    // A refusal or an outage is said by the log server's client itself.
    if let Ok(head) = f.source.log.head().await {
        f.known = head;
    }
    loop {
        // Known records NATS has not brought: from the log server. At the
        // start this is the whole catch-up, before any consumer exists.
        let stalled = messages.is_none() || f.last_progress.elapsed() >= GAP_WAIT;
        if f.known >= f.next && stalled && !f.fill(f.known).await {
            return;
        }
        // A consumer needs NATS: while it is away, asking would only hold
        // up the polling of the log server.
        let connected = f.source.client.connection_state() == async_nats::connection::State::Connected;
        if messages.is_none() && connected && last_attempt.is_none_or(|t| t.elapsed() >= Duration::from_secs(1)) {
            last_attempt = Some(Instant::now());
            messages = f.consumer().await;
        }
        let step = tokio::select! {
            _ = f.tx.closed() => Step::Closed,
            m = next_message(&mut messages) => Step::Message(m),
            n = next_notice(&mut notices) => Step::Notice(n),
            _ = tick.tick() => Step::Tick,
        };
        match step {
            Step::Closed => return,
            Step::Message(Some(Ok(message))) => {
                if !f.on_message(&message).await {
                    return;
                }
            }
            Step::Message(Some(Err(e))) => {
                tracing::debug!(error = %e, next = %f.next, "JetStream consumer failed; recreating it");
                messages = None;
            }
            Step::Message(None) => messages = None,
            Step::Notice(Some(notice)) => {
                if let Some(p) = std::str::from_utf8(&notice.payload).ok().and_then(|s| s.trim().parse().ok()) {
                    f.learn(Position(p));
                }
            }
            Step::Notice(None) => notices = None,
            Step::Tick => {
                // Without NATS no notices come: ask the log server at every
                // tick. With NATS, still now and then.
                let connected = f.source.client.connection_state() == async_nats::connection::State::Connected;
                if !connected || last_poll.elapsed() >= HEAD_POLL_EVERY {
                    last_poll = Instant::now();
                    if let Ok(head) = f.source.log.head().await {
                        f.learn(head);
                    }
                }
            }
        }
    }
}

async fn next_message(messages: &mut Option<Messages>) -> Option<Result<Box<async_nats::jetstream::Message>, String>> {
    match messages {
        Some(m) => m.next().await.map(|r| r.map(Box::new).map_err(|e| e.to_string())),
        None => std::future::pending().await,
    }
}

async fn next_notice(notices: &mut Option<async_nats::Subscriber>) -> Option<async_nats::Message> {
    match notices {
        Some(n) => n.next().await,
        None => std::future::pending().await,
    }
}

impl Follower {
    /// An ordered consumer from `next`, or `None` while NATS or the stream
    /// is not there.
    async fn consumer(&self) -> Option<Messages> {
        let js = async_nats::jetstream::new(self.source.client.clone());
        let attempt = async {
            let stream = js.get_stream(&self.source.names.stream).await.map_err(|e| e.to_string())?;
            let config = OrderedConfig {
                deliver_policy: DeliverPolicy::ByStartSequence { start_sequence: self.next.0 },
                ..Default::default()
            };
            let consumer = stream.create_consumer(config).await.map_err(|e| e.to_string())?;
            consumer.messages().await.map_err(|e| e.to_string())
        };
        match tokio::time::timeout(Duration::from_secs(2), attempt).await {
            Ok(Ok(messages)) => Some(messages),
            Ok(Err(e)) => {
                tracing::debug!(error = %e, "no JetStream consumer yet; following the log server");
                None
            }
            Err(_) => None,
        }
    }

    /// Handles one message; false when the subscriber has gone.
    async fn on_message(&mut self, message: &async_nats::jetstream::Message) -> bool {
        let position = message
            .headers
            .as_ref()
            .and_then(|h| h.get(POSITION_HEADER))
            .and_then(|v| v.as_str().parse::<u64>().ok())
            .map(Position);
        let Some(position) = position else {
            tracing::warn!(subject = %message.subject, "a message without a position header; ignored");
            return true;
        };
        self.learn(position);
        if position < self.next {
            return true; // seen already
        }
        let placeholder = message.headers.as_ref().is_some_and(|h| h.get(TOO_LARGE_HEADER).is_some());
        if position > self.next || placeholder {
            // NATS lost or reordered something, or the record did not fit
            // in a message: the log server has it.
            if !self.fill(Position(position.0 - 1)).await {
                return false;
            }
            if placeholder {
                return self.fill(position).await;
            }
        }
        self.fill_or_take(position, &message.payload).await
    }

    /// Yields the record at `position` (= `next`) from the message, or from
    /// the log server when the message does not verify.
    async fn fill_or_take(&mut self, position: Position, payload: &[u8]) -> bool {
        if position != self.next {
            return true; // the fill could not reach it; a later tick will
        }
        match Record::from_bytes(position, payload) {
            Ok(record) => self.yield_record(record).await,
            Err(e) => {
                tracing::warn!(error = %e, "a relayed record does not verify; reading it from the log server");
                self.fill(position).await
            }
        }
    }

    /// Yields records from `next` through `to` read from the log server;
    /// false when the subscriber has gone. A log server that cannot be
    /// reached leaves the rest for a later attempt.
    async fn fill(&mut self, to: Position) -> bool {
        while self.next <= to {
            let want = usize::try_from(to.0 - self.next.0 + 1).unwrap_or(FILL_CHUNK).min(FILL_CHUNK);
            match self.source.log.read_all(self.next, want).await {
                Ok(records) if records.is_empty() => return true,
                Ok(records) => {
                    for record in records {
                        if !self.yield_record(record).await {
                            return false;
                        }
                    }
                }
                Err(Error::Unavailable { reason }) => {
                    tracing::debug!(%reason, next = %self.next, "the log server is unavailable; will retry");
                    return true;
                }
                Err(e) => {
                    let _ = self.tx.send(Err(e)).await;
                    return false;
                }
            }
        }
        true
    }

    /// Records up to `position` exist. NATS gets [`GAP_WAIT`] from now to
    /// bring any that are new.
    fn learn(&mut self, position: Position) {
        if position > self.known {
            if self.known < self.next {
                self.last_progress = Instant::now();
            }
            self.known = position;
        }
    }

    async fn yield_record(&mut self, record: Record) -> bool {
        debug_assert_eq!(record.position, self.next);
        if record.position != self.next {
            return true;
        }
        self.next = record.position.next();
        self.last_progress = Instant::now();
        self.tx.send(Ok(record)).await.is_ok()
    }
}
