//! The executive notifier: who is told about an incident, when, and through
//! which group; the executive update cadence; and status feeds.
//!
//! The notifier service keeps one [`IncidentNotifications`] per incident,
//! folded from the incident's events ([`IncidentNotifications::apply_incident`])
//! and from its own notify events ([`IncidentNotifications::apply_notify`],
//! stream [`stream`] = `notify-INC-<n>`), in log order. After every event,
//! and again at [`next_due`], it calls [`decide`] with the current time and
//! performs what comes back: each [`Post`] is delivered to each of its
//! channels (with [`Post::idempotency_key`]) and recorded with
//! [`Post::delivered`] or [`Post::failed`], one event per channel; each
//! [`Reminder`] is recorded with [`Reminder::overdue`] and sent to the
//! commander. Nothing here reads a clock or does IO.
//!
//! # Semantics
//!
//! - **Notifying.** An incident *notifies* while it is open (Reported,
//!   Declared or Mitigated) and its current severity (declared, assessed or
//!   overridden, as [`Incident::severity`] says) is one of
//!   `[notifier].severities` (exactly those: the list is not a threshold).
//! - **Executives are told once.** Each executive channel is told about a
//!   notifying incident once, at its current severity. It is told **again
//!   only when the severity is raised** to a more severe notifying level
//!   (Sev2 to Sev1 when both notify), because an escalation is news for
//!   executives; a downgrade, a reopening or a return to a severity already
//!   announced tells nobody (the status feed shows those).
//! - **Company-wide once.** When a notifying incident is multi-customer,
//!   each company-wide channel gets one post, once per incident, whatever
//!   happens to the severity later.
//! - **Per channel.** What was told is tracked per (audience, channel): a
//!   crash between two channel deliveries resumes with the channels not yet
//!   recorded, and a channel added to the configuration is told about the
//!   open notifying incidents at the next decision. A recorded failure
//!   settles its post like a delivery (the shell retried before giving up);
//!   a later raise is still announced. With no channel configured for an
//!   audience, nothing is posted to it and nothing is recorded.
//! - **Update cadence.** An open, declared incident whose severity is one
//!   of `[notifier].cadence_severities` must get an executive-audience
//!   update every `cadence` (the `update_cadence` of its severity's SLO,
//!   given as `slo_of`). The update is due at `base + cadence`, where `base`
//!   is the latest of: the declaration, the moment the incident last
//!   entered the cadence (raised to a cadence severity, reopened) and the
//!   latest executive update ([`update_due`]). At that instant (exactly,
//!   not before) [`decide`] returns a [`Reminder`], recorded as
//!   `notify.update_overdue.v1`. Reminders then **repeat every cadence,
//!   counted from the last update** (`base + 2 cadence`, `base + 3
//!   cadence`, ...) until an update is posted, which moves `base`. After a
//!   restart, periods missed while down collapse into one reminder, due at
//!   the latest missed instant.
//! - **Idempotent.** [`decide`] returns only what is not recorded yet: after
//!   its output is recorded and folded in, the same call returns nothing.
//!   The decision is a function of the folded events, the configuration and
//!   `now`, so a service that restarts folds the log and decides again,
//!   firing what is due exactly once.
//!
//! Within one decision: the executive post, then the company-wide post,
//! then the reminder.

use std::collections::{BTreeMap, BTreeSet};

use chrono::{DateTime, TimeDelta, Utc};

use crate::ids::{ActorId, IncidentId, Severity};
use crate::incident::{Incident, IncidentEvent, evolve};
use crate::outbox::{Message, Outcome, Outgoing, Receipt};

mod config;
mod event;
mod feed;
#[cfg(test)]
mod tests;

pub use config::{CHANNELS_MAX, FEED_INTERVAL_MS_MAX, NotifierConfig, NotifierSectionConfig};
pub use event::{
    CHANNEL_CHARS_MAX, DELIVERY_ERROR_CHARS_MAX, DeliveryFailed, ExecutivesNotified, KINDS, NOTIFIER_ACTOR,
    NotifyChange, NotifyEvent, PostAudience, SUMMARY_CHARS_MAX, UpdateOverdue, notifier_actor, stream,
};
pub use feed::{Coalescer, FILTER_CUSTOMERS_MAX, FILTER_SERVICES_MAX, FeedFilter, FeedItem};

use event::truncate;

/// The shortest cadence [`decide`] works with; shorter ones (which the
/// configuration never produces) are taken as this, so that reminders
/// cannot come in a tight loop.
const CADENCE_MIN: TimeDelta = TimeDelta::seconds(1);

/// What became of the latest post through one channel.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PostOutcome {
    /// The channel took it.
    Delivered,
    /// The shell gave up.
    Failed {
        /// The last error.
        error: String,
    },
}

/// What one channel of one audience was told about the incident.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PostRecord {
    severity: Severity,
    at: DateTime<Utc>,
    outcome: PostOutcome,
}

impl PostRecord {
    /// The most severe severity announced through the channel, delivered or
    /// failed.
    pub fn severity(&self) -> Severity {
        self.severity
    }
    /// When the latest post was recorded.
    pub fn at(&self) -> DateTime<Utc> {
        self.at
    }
    /// What became of the latest post.
    pub fn outcome(&self) -> &PostOutcome {
        &self.outcome
    }
}

/// Everything the notifier knows about one incident: the fold of the
/// incident's events and of its notify events, in log order.
///
/// Built with the cadence severities of the configuration (when the
/// incident enters the cadence depends on them), so a service rebuilds it
/// after a configuration change, as it does at every start.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IncidentNotifications {
    id: IncidentId,
    cadence_severities: BTreeSet<Severity>,
    incident: Option<Incident>,
    updated_at: Option<DateTime<Utc>>,
    cadence_since: Option<DateTime<Utc>>,
    posts: BTreeMap<(PostAudience, String), PostRecord>,
    overdue_due_at: Option<DateTime<Utc>>,
    notify_events: u64,
}

impl IncidentNotifications {
    /// The state of incident `id` before any event.
    pub fn new(id: IncidentId, config: &NotifierConfig) -> IncidentNotifications {
        IncidentNotifications {
            id,
            cadence_severities: config.cadence_severities().clone(),
            incident: None,
            updated_at: None,
            cadence_since: None,
            posts: BTreeMap::new(),
            overdue_due_at: None,
            notify_events: 0,
        }
    }

    /// The incident's id.
    pub fn id(&self) -> IncidentId {
        self.id
    }
    /// The incident as folded so far; `None` before its report.
    pub fn incident(&self) -> Option<&Incident> {
        self.incident.as_ref()
    }
    /// When the latest incident event folded happened.
    pub fn updated_at(&self) -> Option<DateTime<Utc>> {
        self.updated_at
    }
    /// Since when the update cadence applies, if it does now.
    pub fn cadence_since(&self) -> Option<DateTime<Utc>> {
        self.cadence_since
    }
    /// What each channel of each audience was told, by audience and channel.
    pub fn posts(&self) -> impl Iterator<Item = (PostAudience, &str, &PostRecord)> {
        self.posts.iter().map(|((audience, channel), record)| (*audience, channel.as_str(), record))
    }
    /// What `channel` of `audience` was told, if anything.
    pub fn post(&self, audience: PostAudience, channel: &str) -> Option<&PostRecord> {
        self.posts.get(&(audience, channel.to_owned()))
    }
    /// The due instant of the latest recorded overdue executive update.
    pub fn last_overdue_due_at(&self) -> Option<DateTime<Utc>> {
        self.overdue_due_at
    }
    /// The number of notify events folded, which is the version of the
    /// incident's notify stream: the expected version of the next append.
    pub fn notify_stream_version(&self) -> u64 {
        self.notify_events
    }

    /// The feed item of the incident as folded so far, with its executive
    /// update due per `slo_of`; `None` before its report.
    pub fn feed_item(&self, slo_of: impl Fn(Severity) -> TimeDelta) -> Option<FeedItem> {
        let incident = self.incident.as_ref()?;
        let at = self.updated_at.unwrap_or_else(|| incident.first_reported_at());
        Some(FeedItem::of(incident, at, update_due(self, slo_of)))
    }

    /// Folds one event of the incident's own stream.
    pub fn apply_incident(&mut self, event: &IncidentEvent) {
        debug_assert_eq!(event.incident, self.id, "event folded into another incident");
        let was = self.in_cadence();
        self.incident = evolve(self.incident.take(), event);
        self.updated_at = Some(self.updated_at.map_or(event.at, |at| at.max(event.at)));
        match (was, self.in_cadence()) {
            (false, true) => self.cadence_since = Some(event.at),
            (true, false) => self.cadence_since = None,
            _ => {}
        }
    }

    /// Whether the update cadence applies: open, declared, and of a cadence
    /// severity.
    fn in_cadence(&self) -> bool {
        self.incident.as_ref().is_some_and(|incident| {
            incident.is_open()
                && incident.declared_at().is_some()
                && incident.severity().is_some_and(|s| self.cadence_severities.contains(&s))
        })
    }

    /// Folds one event of the incident's notify stream.
    pub fn apply_notify(&mut self, event: &NotifyEvent) {
        debug_assert_eq!(event.incident, self.id, "notify event folded into another incident");
        self.notify_events += 1;
        match &event.change {
            NotifyChange::ExecutivesNotified(n) => {
                self.record(n.audience, &n.channel, n.severity, event.at, PostOutcome::Delivered);
            }
            NotifyChange::DeliveryFailed(f) => {
                let outcome = PostOutcome::Failed { error: f.error.clone() };
                self.record(f.audience, &f.channel, f.severity, event.at, outcome);
            }
            NotifyChange::UpdateOverdue(o) => {
                self.overdue_due_at = Some(self.overdue_due_at.map_or(o.due_at, |due| due.max(o.due_at)));
            }
        }
    }

    fn record(
        &mut self,
        audience: PostAudience,
        channel: &str,
        severity: Severity,
        at: DateTime<Utc>,
        outcome: PostOutcome,
    ) {
        let key = (audience, channel.to_owned());
        let severity = self.posts.get(&key).map_or(severity, |old| old.severity.max(severity));
        self.posts.insert(key, PostRecord { severity, at, outcome });
    }
}

/// Something the notifier must do now: a pure description, performed and
/// recorded by the service.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Notification {
    /// Tell the executive-facing group about the incident.
    Executive(Post),
    /// Tell every customer-facing team about a multi-customer incident.
    CompanyWide(Post),
    /// Remind the commander that an executive update is overdue.
    CadenceReminder(Reminder),
}

impl Notification {
    /// What carrying it out sends, channel by channel: a post goes to each
    /// of its channels; a reminder to every executive channel, addressed to
    /// the commander. `state` is the incident's, for its title.
    pub fn outgoing(&self, state: &IncidentNotifications, config: &NotifierConfig) -> Vec<Outgoing> {
        let id = state.id;
        match self {
            Notification::Executive(post) | Notification::CompanyWide(post) => {
                let title = state.incident.as_ref().map_or("", |i| i.title());
                post.channels
                    .iter()
                    .map(|channel| Outgoing {
                        channel: channel.clone(),
                        message: Message {
                            idempotency_key: post.idempotency_key(channel),
                            kind: format!("{}_post", post.audience.as_str()),
                            title: format!("{} {id}: {title}", post.severity),
                            text: post.summary.clone(),
                            fields: BTreeMap::from([
                                ("incident".into(), id.to_string().into()),
                                ("severity".into(), post.severity.to_string().into()),
                            ]),
                            recipient: None,
                        },
                    })
                    .collect()
            }
            Notification::CadenceReminder(reminder) => {
                let message = Message {
                    idempotency_key: format!("{id}/update-due/{}", reminder.due_at.timestamp()),
                    kind: "update_reminder".into(),
                    title: format!("{id}: an executive update is overdue"),
                    text: reminder.text(),
                    fields: BTreeMap::from([("incident".into(), id.to_string().into())]),
                    recipient: reminder.commander.as_ref().map(|c| c.to_string()),
                };
                let channels = config.executive_channels().iter();
                channels.map(|channel| Outgoing { channel: channel.clone(), message: message.clone() }).collect()
            }
        }
    }

    /// The events recording it, given the receipts of its
    /// [`Notification::outgoing`] (in that order) and the time `at` it was
    /// decided: one `notify.executives_notified.v1` or
    /// `notify.delivery_failed.v1` per channel of a post; one
    /// `notify.update_overdue.v1` for a reminder, however its deliveries went
    /// (the breach happened either way).
    pub fn recorded(&self, receipts: &[Receipt], at: DateTime<Utc>) -> Vec<NotifyEvent> {
        match self {
            Notification::Executive(post) | Notification::CompanyWide(post) => receipts
                .iter()
                .map(|r| match &r.outcome {
                    Outcome::Delivered { .. } => post.delivered(&r.channel, r.at),
                    Outcome::Failed { error, .. } => post.failed(&r.channel, error, r.at),
                })
                .collect(),
            Notification::CadenceReminder(reminder) => vec![reminder.overdue(at)],
        }
    }
}

/// A post to deliver to some channels of one audience.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Post {
    incident: IncidentId,
    audience: PostAudience,
    severity: Severity,
    summary: String,
    channels: Vec<String>,
}

impl Post {
    /// The incident the post is about.
    pub fn incident(&self) -> IncidentId {
        self.incident
    }
    /// Who the post is for.
    pub fn audience(&self) -> PostAudience {
        self.audience
    }
    /// The severity it announces.
    pub fn severity(&self) -> Severity {
        self.severity
    }
    /// The text to post, at most [`SUMMARY_CHARS_MAX`] characters.
    pub fn summary(&self) -> &str {
        &self.summary
    }
    /// The channels still to tell, in the order configured; never empty.
    pub fn channels(&self) -> &[String] {
        &self.channels
    }

    /// The idempotency key of the delivery through `channel`, such as
    /// `INC-7/executive/sev1/exec-slack`: the same post through the same
    /// channel always has the same key, so a redelivery after a crash can be
    /// recognised by the receiver.
    pub fn idempotency_key(&self, channel: &str) -> String {
        format!("{}/{}/sev{}/{channel}", self.incident, self.audience, self.severity.number())
    }

    /// The `notify.executives_notified.v1` event recording that `channel`
    /// took the post at `at`.
    pub fn delivered(&self, channel: &str, at: DateTime<Utc>) -> NotifyEvent {
        debug_assert!(self.channels.iter().any(|c| c == channel), "{channel} is not a channel of the post");
        self.event(
            at,
            NotifyChange::ExecutivesNotified(ExecutivesNotified {
                channel: truncate(channel, CHANNEL_CHARS_MAX),
                audience: self.audience,
                severity: self.severity,
                summary: self.summary.clone(),
            }),
        )
    }

    /// The `notify.delivery_failed.v1` event recording that the shell gave
    /// up delivering the post through `channel` with `error` (cut to
    /// [`DELIVERY_ERROR_CHARS_MAX`] characters).
    pub fn failed(&self, channel: &str, error: &str, at: DateTime<Utc>) -> NotifyEvent {
        debug_assert!(self.channels.iter().any(|c| c == channel), "{channel} is not a channel of the post");
        self.event(
            at,
            NotifyChange::DeliveryFailed(DeliveryFailed {
                channel: truncate(channel, CHANNEL_CHARS_MAX),
                audience: self.audience,
                severity: self.severity,
                error: truncate(error, DELIVERY_ERROR_CHARS_MAX),
            }),
        )
    }

    fn event(&self, at: DateTime<Utc>, change: NotifyChange) -> NotifyEvent {
        NotifyEvent { incident: self.incident, at, by: notifier_actor(), change }
    }
}

/// A reminder to the commander that the executive update due at `due_at`
/// was not posted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reminder {
    /// The incident.
    pub incident: IncidentId,
    /// Who to remind; `None` when the incident has no commander (the
    /// service may tell the duty manager instead).
    pub commander: Option<ActorId>,
    /// When the update was due.
    pub due_at: DateTime<Utc>,
}

impl Reminder {
    /// The `notify.update_overdue.v1` event recording the breach, noticed at
    /// `at` (the `now` of the decision).
    pub fn overdue(&self, at: DateTime<Utc>) -> NotifyEvent {
        NotifyEvent {
            incident: self.incident,
            at,
            by: notifier_actor(),
            change: NotifyChange::UpdateOverdue(UpdateOverdue {
                due_at: self.due_at,
                commander: self.commander.clone(),
            }),
        }
    }

    /// The reminder's text for the commander.
    pub fn text(&self) -> String {
        format!(
            "{}: an executive update was due at {}; please post one for the executive audience",
            self.incident,
            self.due_at.to_rfc3339()
        )
    }
}

/// What is due at `now` for the incident of `state`: posts not yet
/// recorded and an overdue executive update, in that order. See the
/// [module documentation](self) for the rules.
///
/// `slo_of` gives the update cadence of a severity (the service passes
/// `|s| paging_config.slo(s).update_cadence`). After what this returns is
/// recorded and folded back, the same call returns nothing.
pub fn decide(
    state: &IncidentNotifications,
    config: &NotifierConfig,
    slo_of: impl Fn(Severity) -> TimeDelta,
    now: DateTime<Utc>,
) -> Vec<Notification> {
    let mut decided = owed_posts(state, config);
    if let Some((due, cadence)) = next_reminder(state, &slo_of) {
        if now >= due {
            let elapsed_ms = (now - due).num_milliseconds();
            let periods = elapsed_ms / cadence.num_milliseconds();
            let due_at = cadence.checked_mul(i32::try_from(periods).unwrap_or(i32::MAX)).map_or(now, |k| due + k);
            let commander = state.incident.as_ref().and_then(|i| i.commander().cloned());
            decided.push(Notification::CadenceReminder(Reminder { incident: state.id, commander, due_at }));
        }
    }
    decided
}

/// The earliest instant at which [`decide`] would return something, or
/// `None` when nothing is pending. Posts still owed are due at once: the
/// instant returned is then the time of the latest incident event, which
/// may be in the past.
pub fn next_due(
    state: &IncidentNotifications,
    config: &NotifierConfig,
    slo_of: impl Fn(Severity) -> TimeDelta,
) -> Option<DateTime<Utc>> {
    let posts = if owed_posts(state, config).is_empty() { None } else { state.updated_at };
    let reminder = next_reminder(state, &slo_of).map(|(due, _)| due);
    posts.into_iter().chain(reminder).min()
}

/// When the next executive update is due under the update cadence: `base +
/// cadence` (see the module docs), in the past when it is overdue; `None`
/// when no cadence applies.
pub fn update_due(state: &IncidentNotifications, slo_of: impl Fn(Severity) -> TimeDelta) -> Option<DateTime<Utc>> {
    cadence_base(state, &slo_of).map(|(base, cadence)| base + cadence)
}

/// The base of the cadence and the cadence, when one applies.
fn cadence_base(
    state: &IncidentNotifications,
    slo_of: &impl Fn(Severity) -> TimeDelta,
) -> Option<(DateTime<Utc>, TimeDelta)> {
    let since = state.cadence_since?;
    let incident = state.incident.as_ref()?;
    let cadence = slo_of(incident.severity()?).max(CADENCE_MIN);
    let update = incident.latest_update(crate::ids::Audience::Executive).map(|u| u.at);
    Some((update.map_or(since, |at| at.max(since)), cadence))
}

/// When the next reminder is due (the first `base + k cadence` after the
/// latest recorded one), and the cadence.
fn next_reminder(
    state: &IncidentNotifications,
    slo_of: &impl Fn(Severity) -> TimeDelta,
) -> Option<(DateTime<Utc>, TimeDelta)> {
    let (base, cadence) = cadence_base(state, slo_of)?;
    let due = match state.overdue_due_at {
        Some(last) if last > base => last + cadence,
        _ => base + cadence,
    };
    Some((due, cadence))
}

/// The posts the current state owes: see the module docs.
fn owed_posts(state: &IncidentNotifications, config: &NotifierConfig) -> Vec<Notification> {
    let Some(incident) = state.incident.as_ref().filter(|i| i.is_open()) else { return Vec::new() };
    let Some(severity) = incident.severity().filter(|s| config.notifies(*s)) else { return Vec::new() };
    let mut posts = Vec::new();

    let executive: Vec<String> = config
        .executive_channels()
        .iter()
        .filter(|channel| state.post(PostAudience::Executive, channel).is_none_or(|told| severity > told.severity))
        .cloned()
        .collect();
    if !executive.is_empty() {
        let told = executive.iter().filter_map(|c| state.post(PostAudience::Executive, c)).map(|r| r.severity).max();
        let summary = executive_summary(incident, severity, told);
        posts.push(Notification::Executive(Post {
            incident: state.id,
            audience: PostAudience::Executive,
            severity,
            summary,
            channels: executive,
        }));
    }

    if incident.multi_customer() {
        let company: Vec<String> = config
            .company_wide_channels()
            .iter()
            .filter(|channel| state.post(PostAudience::CompanyWide, channel).is_none())
            .cloned()
            .collect();
        if !company.is_empty() {
            posts.push(Notification::CompanyWide(Post {
                incident: state.id,
                audience: PostAudience::CompanyWide,
                severity,
                summary: company_wide_summary(incident, severity),
                channels: company,
            }));
        }
    }
    posts
}

/// The executive post: `INC-7 is SEV1 (declared): <title>.` or, when the
/// channels were told a lower severity (`told`, the most severe they were
/// told), `INC-7 was raised from SEV2 to SEV1 (declared): <title>.`,
/// followed by the details.
fn executive_summary(incident: &Incident, severity: Severity, told: Option<Severity>) -> String {
    let id = incident.id();
    let status = incident.status();
    let head = match told {
        Some(before) if before < severity => format!("{id} was raised from {before} to {severity} ({status})"),
        _ => format!("{id} is {severity} ({status})"),
    };
    truncate(&format!("{head}: {}.{}", sentence(incident.title()), details(incident)), SUMMARY_CHARS_MAX)
}

/// `text` without its final periods, to be ended with one.
fn sentence(text: &str) -> &str {
    text.trim_end_matches('.')
}

/// The company-wide post: `INC-7 (SEV1) affects several customers:
/// <title>.` followed by the details.
fn company_wide_summary(incident: &Incident, severity: Severity) -> String {
    let head = format!("{} ({severity}) affects several customers", incident.id());
    truncate(&format!("{head}: {}.{}", sentence(incident.title()), details(incident)), SUMMARY_CHARS_MAX)
}

/// ` Service: payments. Commander: ana. Impact: 12 customers: <summary>.`
fn details(incident: &Incident) -> String {
    let mut text = String::new();
    if let Some(service) = incident.service() {
        text.push_str(&format!(" Service: {service}."));
    }
    match incident.commander() {
        Some(commander) => text.push_str(&format!(" Commander: {commander}.")),
        None => text.push_str(" No commander yet."),
    }
    let customers = match incident.customers_affected() {
        0 => None,
        1 => Some("1 customer".to_owned()),
        n => Some(format!("{n} customers")),
    };
    match (customers, incident.impact_summary()) {
        (Some(customers), Some(summary)) => text.push_str(&format!(" Impact: {customers}: {}.", sentence(summary))),
        (Some(customers), None) => text.push_str(&format!(" Impact: {customers}.")),
        (None, Some(summary)) => text.push_str(&format!(" Impact: {}.", sentence(summary))),
        (None, None) => {}
    }
    text
}
