//! Shift notices (`[shift_notices]`): tells people when their shift starts
//! and ends and when an override or swap moves one of their shifts, and
//! posts each schedule's weekly summary of handoffs.
//!
//! A small component of its own beside the pager (the reactor shell is
//! keyed by incident; these notices are keyed by schedule). It follows the
//! same rules as paging:
//!
//! - **Fold.** It folds the whole log from position 1 before it decides
//!   anything: every schedule stream (`oncall::roster::Rosters`, so the
//!   schedules are the effective ones, and each schedule event's moved
//!   notices, [`notices::moves`]), the recorded configurations (below) and
//!   every `shifts-<schedule>` stream ([`notices::Notices`]).
//! - **Decide by appending first.** What [`notices::due`] says is due at the
//!   clock's time is appended as `shift.notice_decided.v1` with an id
//!   derived from the notice's key (schedule, person, kind, instant), so
//!   the log's idempotency makes it once across restarts and replicas.
//! - **Deliver, record.** Every decided notice without a
//!   `shift.notice_sent.v1` is delivered through the outbox (one message
//!   per channel and recipient, the key as idempotency key) and its
//!   outcome appended with an id derived from the key. A restart between
//!   the two delivers it; a recorded delivery is never repeated. With
//!   [`Claims`] (replicas) a delivery is claimed through the log first.
//! - **Timers from events.** It sleeps on the injected [`Clock`] until
//!   [`notices::next_due`], or until a record arrives.
//! - **Reloaded schedules.** The configured schedules are read through a
//!   [`Live`] view (the pager's, which a SIGHUP reload replaces): a new
//!   view wakes it, and from then on every notice is decided on the new
//!   schedules (with the log's overrides and swaps applied to them). A
//!   schedule added by a reload gets its notices, a removed one none; a
//!   notice already decided is never decided again (its id is still
//!   derived from schedule, person, kind and instant), and one decided but
//!   not yet sent is still delivered.
//! - **Moved by a reload.** A reload's own record (`config.applied.v1`,
//!   stream `config`; a start with a changed file writes one too) carries
//!   the configuration: its `[[schedules]]` are
//!   compared with those of the configuration recorded before it
//!   ([`notices::reload_moves`], overrides and swaps applied to both), and
//!   whoever's shifts in the next two weeks moved is told once, keyed by
//!   the record's id (derived from the log, not from the live view, so
//!   replicas and restarts agree). The first record compares with
//!   nothing.

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use klaxon_bus::{Bus, SharedRecord, Subscription};
use klaxon_domain::audit::{self, ConfigApplied};
use klaxon_domain::oncall::Schedules;
use klaxon_domain::oncall::notices::{
    self, ACTOR, DECIDED_KIND, Notice, NoticeEvent, NoticeSent, Notices, NoticesConfig, SENT_KIND, SendOutcome,
};
use klaxon_domain::oncall::roster::Rosters;
use klaxon_domain::outbox::{Message, Outbox, Outcome, Outgoing};
use klaxon_log::{EventData, EventKind, ExpectedVersion, Metadata, NewEvent, Position, Record};
use klaxon_reactor::shell::{Finished, finish_at_stop};
use klaxon_reactor::{Claim, Claims, Clock, Live, decode, streams};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use crate::Error;

/// The most passes of deciding in one round (each pass decides what the
/// records folded back during the previous one call for; two suffice
/// unless records keep arriving, and the rest waits for the next round).
const ROUND_PASSES_MAX: usize = 8;

/// How long [`ShiftHandle::settled`] waits.
pub const SETTLED_WAIT: Duration = Duration::from_secs(10);

/// What the shift notices decide with.
#[derive(Clone)]
pub struct ShiftsConfig {
    /// `[shift_notices]`.
    pub notices: Arc<NoticesConfig>,
    /// The configured schedules (their streams' overrides and swaps are
    /// applied from the log), as a reload leaves them: the view the
    /// pager reads (an `Arc<Schedules>` converts into a fixed one).
    pub schedules: Live<Schedules>,
}

/// Where the shift notices are.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ShiftProgress {
    /// The last position folded, with everything it called for done.
    pub folded: Position,
    /// The clock's time of the last round: every notice due then was
    /// decided, delivered and recorded.
    pub checked: Option<DateTime<Utc>>,
    /// When the next round is due (as of `checked`).
    pub due: Option<DateTime<Utc>>,
    /// Notices decided by this process.
    pub decided: u64,
    /// Notices delivered (and recorded) by this process.
    pub sent: u64,
    /// The [`Live::generation`] of the configured schedules the last round
    /// decided on.
    pub schedules: u64,
}

/// The shift notices. Build it, take [`ShiftNotifier::handle`], then
/// [`ShiftNotifier::run`] it.
pub struct ShiftNotifier {
    bus: Bus,
    config: ShiftsConfig,
    outbox: Arc<dyn Outbox>,
    clock: Arc<dyn Clock>,
    claims: Option<Claims>,
    progress: watch::Sender<ShiftProgress>,
}

/// A cheap-to-clone handle: progress, and the barrier tests wait on.
#[derive(Clone)]
pub struct ShiftHandle {
    bus: Bus,
    clock: Arc<dyn Clock>,
    schedules: Live<Schedules>,
    progress: watch::Receiver<ShiftProgress>,
}

/// What the notices fold from the log.
struct State {
    rosters: Rosters,
    notices: Notices,
    /// The configured schedules `effective` was computed from.
    configured: Arc<Schedules>,
    /// `configured` with `rosters` applied.
    effective: Arc<Schedules>,
    /// The configured schedules of the configuration the log recorded
    /// last (`config.applied.v1`), which the next recorded one is compared
    /// with for moved shifts; `None` before the first.
    recorded: Option<Schedules>,
    applied: Position,
}

impl State {
    /// Takes the configured schedules in force now (after a reload): the
    /// effective ones are computed afresh from them.
    fn refresh(&mut self, current: Arc<Schedules>) {
        if !Arc::ptr_eq(&current, &self.configured) {
            self.effective = Arc::new(self.rosters.effective(&current));
            self.configured = current;
        }
    }
}

impl ShiftNotifier {
    /// Shift notices over `log`, delivered through `outbox` (the channels),
    /// at the times of `clock`.
    pub fn new(log: impl Into<Bus>, config: ShiftsConfig, outbox: Arc<dyn Outbox>, clock: Arc<dyn Clock>) -> Self {
        ShiftNotifier {
            bus: log.into(),
            config,
            outbox,
            clock,
            claims: None,
            progress: watch::channel(ShiftProgress::default()).0,
        }
    }

    /// Claims each delivery through the log first, so that replicas side
    /// by side deliver it once (see `klaxon_reactor::claim`).
    pub fn with_claims(mut self, claims: Claims) -> Self {
        self.claims = Some(claims);
        self
    }

    /// A handle to it.
    pub fn handle(&self) -> ShiftHandle {
        ShiftHandle {
            bus: self.bus.clone(),
            clock: self.clock.clone(),
            schedules: self.config.schedules.clone(),
            progress: self.progress.subscribe(),
        }
    }

    /// Folds the whole log, then decides and delivers what is due, and
    /// from then on follows the log and the clock until `shutdown`. A
    /// failing log stops it with the error; nothing is lost (what was due
    /// is still due at the next start).
    pub async fn run(self, shutdown: CancellationToken) -> Result<(), Error> {
        let configured = self.config.schedules.get();
        let mut state = State {
            rosters: Rosters::default(),
            notices: Notices::default(),
            configured: configured.clone(),
            effective: configured,
            recorded: None,
            applied: Position(0),
        };
        let mut subscription = self.bus.follow(Position(1));
        let head = self.bus.head().await.map_err(klaxon_reactor::Error::from)?;
        tokio::select! {
            _ = shutdown.cancelled() => return Ok(()),
            caught_up = self.fold_until(&mut subscription, &mut state, head) => caught_up?,
        }
        let mut progress = ShiftProgress { folded: state.applied, ..ShiftProgress::default() };
        let mut round = true;
        loop {
            if round {
                let now = self.clock.now();
                // The generation first: the schedules read after it are
                // that generation's or a later one's.
                let generation = self.config.schedules.generation();
                state.refresh(self.config.schedules.get());
                // A round delivers and records: a stop lets it finish.
                let work = self.round(&mut subscription, &mut state, now, &mut progress);
                let wake = match finish_at_stop(&shutdown, "a round of shift notices", work).await {
                    Finished::Done(wake) => wake?,
                    Finished::Stopped(done) => return done.map_or(Ok(()), |d| d.map(drop)),
                };
                progress.checked = Some(now);
                progress.due = wake;
                progress.schedules = generation;
            }
            progress.folded = state.applied;
            self.progress.send_replace(progress);
            // A record folded while the round delivered (a recorded
            // configuration's moved shifts, a swap) may call for a notice
            // now: another round at once, not at the next wake-up.
            if round && self.due_now(&state) {
                continue;
            }
            let wake = progress.due;
            let sleep = async {
                match wake {
                    Some(at) => self.clock.sleep_until(at).await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                _ = shutdown.cancelled() => return Ok(()),
                _ = sleep => round = true,
                () = self.config.schedules.changed(progress.schedules) => round = true,
                record = subscription.next_shared() => round = self.fold_next(record, &mut state)?,
            }
        }
    }

    /// Decides what is due at `now` (appending it first), then delivers
    /// every decided notice not sent yet and records the outcome. Returns
    /// when to look again.
    async fn round(
        &self,
        subscription: &mut Subscription,
        state: &mut State,
        now: DateTime<Utc>,
        progress: &mut ShiftProgress,
    ) -> Result<Option<DateTime<Utc>>, Error> {
        let config = &self.config.notices;
        if !config.enabled() {
            return Ok(None);
        }
        // Folding back what a pass appended may fold records that call for
        // more (a schedule event's or a recorded configuration's moved
        // notices, appended meanwhile): decided in the next pass, not left
        // until the next wake-up.
        for _ in 0..ROUND_PASSES_MAX {
            let mut decided = 0;
            let schedules = state.effective.clone();
            for schedule in schedules.iter() {
                for notice in notices::due(config, schedule, &state.notices, now) {
                    let id = Notice::decided_id(&notice.key);
                    let last = self.append(&notice.schedule, id, DECIDED_KIND, notice.to_json()).await?;
                    self.fold_until(subscription, state, last).await?;
                    progress.decided += 1;
                    decided += 1;
                    tracing::info!(notice = %notice.key, "decided a shift notice");
                }
            }
            if decided == 0 {
                break;
            }
        }
        let schedules = state.effective.clone();
        let mut wake = schedules.iter().filter_map(|s| notices::next_due(config, s, now)).min();
        let undelivered: Vec<Notice> = state.notices.undelivered().cloned().collect();
        for notice in undelivered {
            if let Some(until) = self.claim(&notice, now).await? {
                wake = Some(wake.map_or(until, |w| w.min(until)));
                continue;
            }
            let mut outcomes = Vec::with_capacity(notice.sends.len());
            for send in &notice.sends {
                let message = message(&notice, send);
                let (delivered, error) = match self.outbox.deliver(&send.channel, &message).await {
                    Outcome::Delivered { .. } => (true, None),
                    Outcome::Failed { error, .. } => {
                        tracing::warn!(notice = %notice.key, channel = %send.channel, %error, "a shift notice was not delivered");
                        (false, Some(error))
                    }
                };
                outcomes.push(SendOutcome {
                    channel: send.channel.clone(),
                    recipient: send.recipient.clone(),
                    delivered,
                    error,
                });
            }
            let sent = NoticeSent { key: notice.key.clone(), schedule: notice.schedule.clone(), at: now, outcomes };
            let data = serde_json::to_value(&sent).expect("a notice outcome serializes");
            let last = self.append(&notice.schedule, Notice::sent_id(&notice.key), SENT_KIND, data).await?;
            self.fold_until(subscription, state, last).await?;
            progress.sent += 1;
        }
        Ok(wake)
    }

    /// With claims: whether another replica holds the delivery of
    /// `notice` (until when). Without: never.
    async fn claim(&self, notice: &Notice, now: DateTime<Utc>) -> Result<Option<DateTime<Utc>>, Error> {
        let Some(claims) = &self.claims else { return Ok(None) };
        let sends: Vec<Outgoing> = notice
            .sends
            .iter()
            .map(|send| Outgoing { channel: send.channel.clone(), message: message(notice, send) })
            .collect();
        match klaxon_reactor::claim::claim(&self.bus, claims, "shifts", &sends, None, now).await? {
            Claim::Won { .. } => Ok(None),
            Claim::Lost { until, .. } => Ok(Some(until)),
        }
    }

    /// Appends one notice event to `shifts-<schedule>`; returns its
    /// position (the first one's, when it was in the log already).
    async fn append(
        &self,
        schedule: &str,
        id: uuid::Uuid,
        kind: &str,
        data: serde_json::Value,
    ) -> Result<Position, Error> {
        let event = NewEvent {
            id,
            kind: EventKind::new(kind).expect("the kinds are valid"),
            data: EventData::from_value(&data).map_err(klaxon_reactor::Error::from)?,
            metadata: Metadata { actor: Some(ACTOR.to_owned()), ..Metadata::default() },
        };
        let stream = streams::stream_id(notices::stream(schedule));
        let appended =
            self.bus.append(&stream, ExpectedVersion::Any, vec![event]).await.map_err(klaxon_reactor::Error::from)?;
        Ok(appended.last)
    }

    /// Whether a notice is due now that no round decided yet.
    fn due_now(&self, state: &State) -> bool {
        let (config, now) = (&self.config.notices, self.clock.now());
        config.enabled() && state.effective.iter().any(|s| !notices::due(config, s, &state.notices, now).is_empty())
    }

    /// Folds records until `position` is folded.
    async fn fold_until(
        &self,
        subscription: &mut Subscription,
        state: &mut State,
        position: Position,
    ) -> Result<(), Error> {
        while state.applied < position {
            self.fold_next(subscription.next_shared().await, state)?;
        }
        Ok(())
    }

    /// Folds the subscription's next record; returns whether it concerns
    /// shifts (a schedule or notice event).
    fn fold_next(
        &self,
        record: Option<Result<Arc<SharedRecord>, klaxon_log::Error>>,
        state: &mut State,
    ) -> Result<bool, Error> {
        let record = match record {
            Some(record) => record.map_err(klaxon_reactor::Error::from)?,
            None => {
                return Err(klaxon_reactor::Error::Unavailable {
                    service: "shifts",
                    reason: "the log's subscription ended".into(),
                }
                .into());
            }
        };
        state.applied = record.position;
        self.fold(&record, state)
    }

    fn fold(&self, record: &Record, state: &mut State) -> Result<bool, Error> {
        if let Some(event) = decode::roster(record)? {
            state.refresh(self.config.schedules.get());
            let configured = state.configured.get(&event.schedule).is_some();
            let before = state.effective.get(&event.schedule).cloned();
            state.rosters.evolve(&event);
            state.effective = Arc::new(state.rosters.effective(&state.configured));
            if let (true, Some(before), Some(after)) = (configured, before, state.effective.get(&event.schedule)) {
                let moved = notices::moves(&self.config.notices, &before, after, record.id, event.at);
                state.notices.moved(moved);
            }
            return Ok(true);
        }
        let kind = record.kind.as_str();
        if kind == audit::CONFIG_APPLIED && record.stream.as_str() == audit::CONFIG_STREAM {
            self.fold_config(record, state);
            return Ok(true);
        }
        // A notice kind this version does not know (`shift.*`) is refused, not skipped.
        if decode::in_family(notices::KINDS, kind) {
            let event = NoticeEvent::from_json(kind, record.data.as_str())
                .map_err(|e| klaxon_reactor::Error::Undecodable { position: record.position, reason: e.to_string() })?;
            state.notices.evolve(&event);
            return Ok(true);
        }
        Ok(false)
    }
}

impl ShiftNotifier {
    /// Folds a recorded configuration: the shifts its `[[schedules]]` moved
    /// against the configuration recorded before it (overrides and swaps
    /// applied to both) become moved notices, keyed by the record's id, so
    /// every replica and every restart derives the same ones. A record
    /// whose schedules do not validate (written by another version) is
    /// logged and taken as no baseline: nothing is compared with it.
    fn fold_config(&self, record: &Record, state: &mut State) {
        let schedules = serde_json::from_str::<ConfigApplied>(record.data.as_str())
            .map_err(|e| e.to_string())
            .and_then(|applied| notices::recorded_schedules(&applied.config).map_err(|e| e.to_string()));
        let schedules = match schedules {
            Ok(schedules) => schedules,
            Err(error) => {
                tracing::warn!(position = %record.position, %error, "a recorded configuration's schedules do not validate; no shift moves derived from it");
                state.recorded = None;
                return;
            }
        };
        if let Some(before) = &state.recorded {
            let config = &self.config.notices;
            let moved =
                notices::reload_moves(config, &state.rosters, before, &schedules, record.id, record.recorded_at);
            state.notices.moved(moved);
        }
        state.recorded = Some(schedules);
    }
}

/// The message of one send of `notice`.
fn message(notice: &Notice, send: &notices::Send) -> Message {
    let mut fields = std::collections::BTreeMap::new();
    fields.insert("schedule".to_owned(), serde_json::Value::from(notice.schedule.clone()));
    fields.insert("notice".to_owned(), serde_json::Value::from(notice.kind.as_str()));
    if let Some(person) = &notice.person {
        fields.insert("person".to_owned(), serde_json::Value::from(person.to_string()));
    }
    if let Some(shift) = &notice.shift {
        fields.insert("from".to_owned(), serde_json::Value::from(shift.from.to_rfc3339()));
        fields.insert("until".to_owned(), serde_json::Value::from(shift.until.to_rfc3339()));
    }
    Message {
        idempotency_key: send.idempotency_key(&notice.key),
        kind: "shift_notice".to_owned(),
        title: notice.title.clone(),
        text: notice.text.clone(),
        fields,
        recipient: send.recipient.clone(),
        thread: None,
    }
}

impl ShiftHandle {
    /// Where the notices are now.
    pub fn progress(&self) -> ShiftProgress {
        *self.progress.borrow()
    }

    /// Waits until the notices folded the log's current head and did
    /// everything due at the clock's current time (or found nothing due
    /// before their next wake-up) on the schedules configured now (after
    /// any reload so far): the barrier tests wait on before asserting
    /// what was sent.
    pub async fn settled(&self) -> Result<ShiftProgress, Error> {
        let head = self.bus.head().await.map_err(klaxon_reactor::Error::from)?;
        let now = self.clock.now();
        let generation = self.schedules.generation();
        let mut progress = self.progress.clone();
        let done = |p: &ShiftProgress| {
            p.folded >= head
                && p.schedules >= generation
                && p.checked.is_some_and(|c| c >= now || p.due.is_none_or(|d| d > now))
        };
        match tokio::time::timeout(SETTLED_WAIT, progress.wait_for(done)).await {
            Ok(Ok(p)) => Ok(*p),
            _ => Err(klaxon_reactor::Error::Unavailable {
                service: "shifts",
                reason: format!("not settled at {head} and {now} within {SETTLED_WAIT:?}"),
            }
            .into()),
        }
    }
}
