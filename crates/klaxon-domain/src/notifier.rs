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
//! commander and the communications leads, on the channels that reach a
//! person (never the executive channels). Nothing here reads a clock or
//! does IO.
//!
//! # Semantics
//!
//! - **Notifying.** An incident *notifies* while it is open (Reported,
//!   Declared or Mitigated) and its current severity (declared, assessed or
//!   overridden, as [`Incident::severity`] says) is one of
//!   `[notifier].severities` (exactly those: the list is not a threshold).
//! - **Executives are told, then followed.** Each executive channel is
//!   told about a notifying incident once, at its current severity, and
//!   told **again at once when the severity is raised** to a more severe
//!   notifying level (an escalation is news). From then on the channel
//!   **follows the incident**: every change of what executives see (status:
//!   declared, mitigated, resolved, reopened, closed; commander; severity,
//!   a downgrade included; the latest executive-audience update) is owed a
//!   follow-up carrying the latest state and the next update due. Changes
//!   are counted per audience ([`IncidentNotifications::changes`]) and
//!   each post records the count it covers (`through`), so a change that
//!   comes while a post is on its way is owed one more follow-up: the last
//!   state is never dropped. Follow-ups are **coalesced**: a channel gets
//!   at most one post per `follow_up_interval` (`[notifier]`), so a burst
//!   becomes one post with the latest state. On a channel that threads, the
//!   first post's thread (`notify.thread_started.v1`) carries every later
//!   post to that channel, also after a restart.
//! - **Company-wide life cycle.** When an open incident is multi-customer
//!   at one of `[notifier].company_wide_severities` (Sev-1 and Sev-2 by
//!   default), each company-wide channel gets a first post, then a
//!   follow-up (coalesced the same way) for every company-wide update, the
//!   mitigation, a reopening and, on resolution, the all-clear.
//! - **Per channel.** What was told is tracked per (audience, channel): a
//!   crash between two channel deliveries resumes with the channels not yet
//!   recorded, and a channel added to the configuration is told about the
//!   open notifying incidents at the next decision. A recorded failure
//!   settles its post like a delivery (the shell retried before giving up);
//!   a later raise or change is still announced. With no channel configured
//!   for an audience, nothing is posted to it and nothing is recorded.
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
//! Within one decision: the executive post and follow-up, then the
//! company-wide ones, then the reminder.

use std::collections::{BTreeMap, BTreeSet};

use chrono::{DateTime, TimeDelta, Utc};

use crate::ids::{ActorId, Audience, IncidentId, IncidentRole, Severity};
use crate::incident::{Incident, IncidentEvent, Status, Update, evolve};
use crate::outbox::{Message, Outcome, Outgoing, Receipt};

mod config;
mod event;
mod feed;
#[cfg(test)]
mod tests;

pub use config::{
    CHANNELS_MAX, FEED_INTERVAL_MS_MAX, FOLLOW_UP_INTERVAL_MS_MAX, NotifierConfig, NotifierSectionConfig,
};
pub use event::{
    CHANNEL_CHARS_MAX, DELIVERY_ERROR_CHARS_MAX, DeliveryFailed, ExecutivesNotified, KINDS, NOTIFIER_ACTOR,
    NotifyChange, NotifyEvent, PostAudience, SUMMARY_CHARS_MAX, THREAD_CHARS_MAX, ThreadStarted, UpdateOverdue,
    notifier_actor, stream,
};
pub use feed::{Coalescer, FILTER_CUSTOMERS_MAX, FILTER_SERVICES_MAX, FeedFilter, FeedItem};

use event::truncate;

/// The shortest cadence [`decide`] works with; shorter ones (which the
/// configuration never produces) are taken as this, so that reminders
/// cannot come in a tight loop.
const CADENCE_MIN: TimeDelta = TimeDelta::seconds(1);

/// What became of the latest post through one channel.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
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
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct PostRecord {
    severity: Severity,
    at: DateTime<Utc>,
    outcome: PostOutcome,
    through: u64,
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
    /// How many changes of the audience's view the latest post covered.
    pub fn through(&self) -> u64 {
        self.through
    }
}

/// What the executive-facing group follows of an incident: a change of any
/// of it is owed a follow-up.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
struct ExecutiveView {
    status: Status,
    commander: Option<ActorId>,
    severity: Option<Severity>,
    update: Option<Update>,
}

/// What the company-wide group follows: the phase (ongoing, mitigated,
/// resolved: a closure is no news there) and the company-wide updates.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
struct CompanyView {
    phase: Status,
    update: Option<Update>,
}

fn executive_view(incident: &Incident) -> ExecutiveView {
    ExecutiveView {
        status: incident.status(),
        commander: incident.commander().cloned(),
        severity: incident.severity(),
        update: incident.latest_update(Audience::Executive).cloned(),
    }
}

fn company_view(incident: &Incident) -> CompanyView {
    let phase = match incident.status() {
        Status::Reported | Status::Declared => Status::Declared,
        Status::Mitigated => Status::Mitigated,
        Status::Resolved | Status::Closed => Status::Resolved,
    };
    CompanyView { phase, update: incident.latest_update(Audience::CompanyWide).cloned() }
}

/// Everything the notifier knows about one incident: the fold of the
/// incident's events and of its notify events, in log order.
///
/// Built with the cadence severities of the configuration (when the
/// incident enters the cadence depends on them), so a service rebuilds it
/// after a configuration change, as it does at every start.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct IncidentNotifications {
    id: IncidentId,
    cadence_severities: BTreeSet<Severity>,
    incident: Option<Incident>,
    updated_at: Option<DateTime<Utc>>,
    cadence_since: Option<DateTime<Utc>>,
    #[serde(with = "pairs")]
    posts: BTreeMap<(PostAudience, String), PostRecord>,
    #[serde(with = "pairs")]
    threads: BTreeMap<(PostAudience, String), String>,
    executive_view: Option<ExecutiveView>,
    executive_changes: u64,
    company_view: Option<CompanyView>,
    company_changes: u64,
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
            threads: BTreeMap::new(),
            executive_view: None,
            executive_changes: 0,
            company_view: None,
            company_changes: 0,
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
    /// How many times the incident changed as `audience` sees it (status,
    /// commander, severity and executive updates for executives; phase and
    /// company-wide updates company-wide): what a post covers.
    pub fn changes(&self, audience: PostAudience) -> u64 {
        match audience {
            PostAudience::Executive => self.executive_changes,
            PostAudience::CompanyWide => self.company_changes,
        }
    }
    /// The incident's thread on `channel` of `audience`, once its first
    /// post there started one (`notify.thread_started.v1`).
    pub fn thread(&self, audience: PostAudience, channel: &str) -> Option<&str> {
        self.threads.get(&(audience, channel.to_owned())).map(String::as_str)
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
        let executive = self.incident.as_ref().map(executive_view);
        if executive != self.executive_view {
            self.executive_view = executive;
            self.executive_changes += 1;
        }
        let company = self.incident.as_ref().map(company_view);
        if company != self.company_view {
            self.company_view = company;
            self.company_changes += 1;
        }
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
                self.record(n.audience, &n.channel, n.severity, event.at, PostOutcome::Delivered, n.through);
            }
            NotifyChange::DeliveryFailed(f) => {
                let outcome = PostOutcome::Failed { error: f.error.clone() };
                self.record(f.audience, &f.channel, f.severity, event.at, outcome, f.through);
            }
            NotifyChange::UpdateOverdue(o) => {
                self.overdue_due_at = Some(self.overdue_due_at.map_or(o.due_at, |due| due.max(o.due_at)));
            }
            NotifyChange::ThreadStarted(t) => {
                // The first thread stays the thread: follow-ups never move it.
                self.threads.entry((t.audience, t.channel.clone())).or_insert_with(|| t.thread.clone());
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
        through: Option<u64>,
    ) {
        let key = (audience, channel.to_owned());
        let severity = self.posts.get(&key).map_or(severity, |old| old.severity.max(severity));
        // A record from before follow-ups covers what was folded before it.
        let through = through.unwrap_or_else(|| self.changes(audience));
        let through = self.posts.get(&key).map_or(through, |old| old.through.max(through));
        self.posts.insert(key, PostRecord { severity, at, outcome, through });
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
    /// of its channels; a reminder to the commander and to each
    /// communications lead (one message each, addressed to them) through
    /// [`NotifierConfig::people_channels`], never to the executive
    /// channels; nobody to remind sends nothing (the breach is still
    /// recorded). `state` is the incident's, for its title and roles.
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
                            kind: if post.follow_up {
                                format!("{}_update", post.audience.as_str())
                            } else {
                                format!("{}_post", post.audience.as_str())
                            },
                            title: format!("{} {id}: {title}", post.severity),
                            text: post.summary.clone(),
                            fields: BTreeMap::from([
                                ("incident".into(), id.to_string().into()),
                                ("severity".into(), post.severity.to_string().into()),
                                ("status".into(), post.status.as_str().into()),
                            ]),
                            recipient: None,
                            thread: post.threads.get(channel).cloned(),
                        },
                    })
                    .collect()
            }
            Notification::CadenceReminder(reminder) => {
                // The commander and the communications leads write the
                // executive update: they are reminded, each on the channels
                // that reach a person; the executives are not.
                let leads = state.incident.as_ref().and_then(|i| i.roles().get(&IncidentRole::CommunicationsLead));
                let mut people: Vec<&ActorId> = reminder.commander.iter().collect();
                people.extend(leads.into_iter().flatten().filter(|p| Some(*p) != reminder.commander.as_ref()));
                let mut sends = Vec::new();
                for person in people {
                    let message = Message {
                        idempotency_key: format!("{id}/update-due/{}/{person}", reminder.due_at.timestamp()),
                        kind: "update_reminder".into(),
                        title: format!("{id}: an executive update is overdue"),
                        text: reminder.text(),
                        fields: BTreeMap::from([("incident".into(), id.to_string().into())]),
                        recipient: Some(person.to_string()),
                        thread: None,
                    };
                    let channels = config.people_channels().iter();
                    sends.extend(channels.map(|c| Outgoing { channel: c.clone(), message: message.clone() }));
                }
                sends
            }
        }
    }

    /// The events recording it, given the receipts of its
    /// [`Notification::outgoing`] (in that order) and the time `at` it was
    /// decided: one `notify.executives_notified.v1` or
    /// `notify.delivery_failed.v1` per channel of a post, each delivery
    /// that started the incident's thread on its channel followed by its
    /// `notify.thread_started.v1`; one `notify.update_overdue.v1` for a
    /// reminder, however its deliveries went (the breach happened either
    /// way).
    pub fn recorded(&self, receipts: &[Receipt], at: DateTime<Utc>) -> Vec<NotifyEvent> {
        match self {
            Notification::Executive(post) | Notification::CompanyWide(post) => receipts
                .iter()
                .flat_map(|r| match &r.outcome {
                    Outcome::Delivered { thread, .. } => {
                        let started =
                            thread.as_deref().and_then(|thread| post.thread_started(&r.channel, thread, r.at));
                        std::iter::once(post.delivered(&r.channel, r.at)).chain(started).collect::<Vec<_>>()
                    }
                    Outcome::Failed { error, .. } => vec![post.failed(&r.channel, error, r.at)],
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
    /// The incident's thread on each of `channels` that has one.
    threads: BTreeMap<String, String>,
    /// The incident's status when decided.
    status: Status,
    /// The changes of the audience's view it covers.
    through: u64,
    /// Whether it follows up an earlier post to its channels.
    follow_up: bool,
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
    /// Whether it follows up earlier posts (with the latest state) rather
    /// than announcing the incident or a raise of its severity.
    pub fn is_follow_up(&self) -> bool {
        self.follow_up
    }
    /// The changes of the audience's view of the incident it covers.
    pub fn through(&self) -> u64 {
        self.through
    }

    /// The idempotency key of the delivery through `channel`, such as
    /// `INC-7/executive/sev1/exec-slack`: the same post through the same
    /// channel always has the same key, so a redelivery after a crash can be
    /// recognised by the receiver.
    /// A follow-up's key names the changes it covers instead, such as
    /// `INC-7/executive/update-5/exec-slack`.
    pub fn idempotency_key(&self, channel: &str) -> String {
        if self.follow_up {
            format!("{}/{}/update-{}/{channel}", self.incident, self.audience, self.through)
        } else {
            format!("{}/{}/sev{}/{channel}", self.incident, self.audience, self.severity.number())
        }
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
                through: Some(self.through),
            }),
        )
    }

    /// The `notify.thread_started.v1` event recording that the delivery
    /// through `channel` started the incident's thread `thread` there;
    /// `None` when the post followed up a thread already (or the thread id
    /// is too long to keep whole).
    pub fn thread_started(&self, channel: &str, thread: &str, at: DateTime<Utc>) -> Option<NotifyEvent> {
        if self.threads.contains_key(channel) || thread.is_empty() || thread.chars().count() > THREAD_CHARS_MAX {
            return None;
        }
        Some(self.event(
            at,
            NotifyChange::ThreadStarted(ThreadStarted {
                channel: truncate(channel, CHANNEL_CHARS_MAX),
                audience: self.audience,
                thread: thread.to_owned(),
            }),
        ))
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
                through: Some(self.through),
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

/// What is due at `now` for the incident of `state`: first posts and
/// raises, follow-ups whose channel's coalescing interval has passed, and
/// an overdue executive update, in that order. See the [module
/// documentation](self) for the rules.
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
    let due = update_due(state, &slo_of);
    let mut decided = owed(state, config, due, Some(now)).into_iter().map(|(notification, _)| notification).collect();
    push_reminder(&mut decided, state, &slo_of, now);
    decided
}

fn push_reminder(
    decided: &mut Vec<Notification>,
    state: &IncidentNotifications,
    slo_of: &impl Fn(Severity) -> TimeDelta,
    now: DateTime<Utc>,
) {
    if let Some((due, cadence)) = next_reminder(state, slo_of) {
        if now >= due {
            let elapsed_ms = (now - due).num_milliseconds();
            let periods = elapsed_ms / cadence.num_milliseconds();
            let due_at = cadence.checked_mul(i32::try_from(periods).unwrap_or(i32::MAX)).map_or(now, |k| due + k);
            let commander = state.incident.as_ref().and_then(|i| i.commander().cloned());
            decided.push(Notification::CadenceReminder(Reminder { incident: state.id, commander, due_at }));
        }
    }
}

/// The earliest instant at which [`decide`] would return something, or
/// `None` when nothing is pending. Posts still owed are due at once: the
/// instant returned is then the time of the latest incident event, which
/// may be in the past; a follow-up is due when its channel's coalescing
/// interval has passed, and not before that event either.
pub fn next_due(
    state: &IncidentNotifications,
    config: &NotifierConfig,
    slo_of: impl Fn(Severity) -> TimeDelta,
) -> Option<DateTime<Utc>> {
    let latest = state.updated_at?;
    let posts = owed(state, config, update_due(state, &slo_of), None).into_iter().map(|(_, due)| due.max(latest));
    let reminder = next_reminder(state, &slo_of).map(|(due, _)| due);
    posts.chain(reminder).min()
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

/// The posts the current state owes, each with the instant it is due:
/// first posts and raises at once (`DateTime::MIN_UTC`), follow-ups when
/// their channels' coalescing interval has passed. With `now`, only those
/// due by then, and a follow-up goes to every channel of its audience due
/// by then; without, one post per audience and kind, due at the earliest
/// of its channels. `update_due` is the next executive update's due time.
fn owed(
    state: &IncidentNotifications,
    config: &NotifierConfig,
    update_due: Option<DateTime<Utc>>,
    now: Option<DateTime<Utc>>,
) -> Vec<(Notification, DateTime<Utc>)> {
    let Some(incident) = state.incident.as_ref() else { return Vec::new() };
    let mut posts = Vec::new();
    let notifying = incident.severity().filter(|s| incident.is_open() && config.notifies(*s));

    // Executives: the first post and raises while the incident notifies.
    let mut first: Vec<String> = Vec::new();
    if let Some(severity) = notifying {
        first = config
            .executive_channels()
            .iter()
            .filter(|channel| state.post(PostAudience::Executive, channel).is_none_or(|told| severity > told.severity))
            .cloned()
            .collect();
        if !first.is_empty() {
            let told = first.iter().filter_map(|c| state.post(PostAudience::Executive, c)).map(|r| r.severity).max();
            let summary = executive_summary(incident, severity, told, update_due);
            posts.push((
                Notification::Executive(post(state, PostAudience::Executive, severity, summary, &first, false)),
                DateTime::<Utc>::MIN_UTC,
            ));
        }
    }
    // Then the follow-ups of every channel told before.
    if let Some((channels, due)) =
        follow_ups(state, config, PostAudience::Executive, config.executive_channels(), &first, now)
    {
        let severity = follow_up_severity(state, PostAudience::Executive, &channels);
        let summary = executive_follow_up(incident, severity, update_due);
        posts.push((
            Notification::Executive(post(state, PostAudience::Executive, severity, summary, &channels, true)),
            due,
        ));
    }

    // Company-wide: the first post of a multi-customer incident at a
    // company-wide severity, then its life cycle.
    let mut first: Vec<String> = Vec::new();
    let company =
        incident.severity().filter(|s| incident.is_open() && incident.multi_customer() && config.company_wide(*s));
    if let Some(severity) = company {
        first = config
            .company_wide_channels()
            .iter()
            .filter(|channel| state.post(PostAudience::CompanyWide, channel).is_none())
            .cloned()
            .collect();
        if !first.is_empty() {
            let summary = company_wide_summary(incident, severity);
            posts.push((
                Notification::CompanyWide(post(state, PostAudience::CompanyWide, severity, summary, &first, false)),
                DateTime::<Utc>::MIN_UTC,
            ));
        }
    }
    if let Some((channels, due)) =
        follow_ups(state, config, PostAudience::CompanyWide, config.company_wide_channels(), &first, now)
    {
        let severity = follow_up_severity(state, PostAudience::CompanyWide, &channels);
        let summary = company_wide_follow_up(incident, severity);
        posts.push((
            Notification::CompanyWide(post(state, PostAudience::CompanyWide, severity, summary, &channels, true)),
            due,
        ));
    }
    posts.retain(|(_, due)| now.is_none_or(|now| *due <= now));
    posts
}

/// A post of `summary` to `channels` of `audience`, covering the changes
/// folded so far.
fn post(
    state: &IncidentNotifications,
    audience: PostAudience,
    severity: Severity,
    summary: String,
    channels: &[String],
    follow_up: bool,
) -> Post {
    let status = state.incident.as_ref().map_or(Status::Reported, Incident::status);
    Post {
        incident: state.id,
        audience,
        severity,
        summary,
        threads: threads(state, audience, channels),
        channels: channels.to_vec(),
        status,
        through: state.changes(audience),
        follow_up,
    }
}

/// The channels of `audience` owed a follow-up (told before, a change
/// since, not getting a first post or raise in `first`), with when the
/// earliest is due: a channel's last post plus the coalescing interval.
/// With `now`, only the channels due by then.
fn follow_ups(
    state: &IncidentNotifications,
    config: &NotifierConfig,
    audience: PostAudience,
    configured: &[String],
    first: &[String],
    now: Option<DateTime<Utc>>,
) -> Option<(Vec<String>, DateTime<Utc>)> {
    let changes = state.changes(audience);
    let owed: Vec<(String, DateTime<Utc>)> = configured
        .iter()
        .filter(|channel| !first.contains(channel))
        .filter_map(|channel| {
            let told = state.post(audience, channel)?;
            (told.through < changes).then(|| (channel.clone(), told.at + config.follow_up_interval()))
        })
        .filter(|(_, due)| now.is_none_or(|now| *due <= now))
        .collect();
    let due = owed.iter().map(|(_, due)| *due).min()?;
    Some((owed.into_iter().map(|(channel, _)| channel).collect(), due))
}

/// The severity a follow-up names: the incident's, or the one told.
fn follow_up_severity(state: &IncidentNotifications, audience: PostAudience, channels: &[String]) -> Severity {
    let told = channels.iter().filter_map(|c| state.post(audience, c)).map(|r| r.severity).max();
    state.incident.as_ref().and_then(Incident::severity).or(told).unwrap_or(Severity::Sev1)
}

/// The incident's threads on `channels` of `audience`, by channel.
fn threads(state: &IncidentNotifications, audience: PostAudience, channels: &[String]) -> BTreeMap<String, String> {
    channels.iter().filter_map(|channel| Some((channel.clone(), state.thread(audience, channel)?.to_owned()))).collect()
}

/// The executive post: `INC-7 is SEV1 (declared): <title>.` or, when the
/// channels were told a lower severity (`told`, the most severe they were
/// told), `INC-7 was raised from SEV2 to SEV1 (declared): <title>.`,
/// followed by the details and when the next executive update is due.
fn executive_summary(
    incident: &Incident,
    severity: Severity,
    told: Option<Severity>,
    update_due: Option<DateTime<Utc>>,
) -> String {
    let id = incident.id();
    let status = incident.status();
    let head = match told {
        Some(before) if before < severity => format!("{id} was raised from {before} to {severity} ({status})"),
        _ => format!("{id} is {severity} ({status})"),
    };
    let text = format!("{head}: {}.{}{}", sentence(incident.title()), details(incident), next_update(update_due));
    truncate(&text, SUMMARY_CHARS_MAX)
}

/// The executive follow-up: `INC-7 update: SEV1, mitigated: <title>.`, the
/// details, the latest executive update and when the next one is due.
fn executive_follow_up(incident: &Incident, severity: Severity, update_due: Option<DateTime<Utc>>) -> String {
    let mut text =
        format!("{} update: {severity}, {}: {}.", incident.id(), incident.status(), sentence(incident.title()));
    text.push_str(&details(incident));
    if let Some(update) = incident.latest_update(Audience::Executive) {
        text.push_str(&format!(" Latest update: {}.", sentence(&update.text)));
    }
    if incident.is_open() {
        text.push_str(&next_update(update_due));
    }
    truncate(&text, SUMMARY_CHARS_MAX)
}

/// ` Next update due 2026-03-02 00:31 UTC.`, when the cadence applies.
fn next_update(due: Option<DateTime<Utc>>) -> String {
    due.map_or(String::new(), |due| format!(" Next update due {}.", due.format("%Y-%m-%d %H:%M UTC")))
}

/// The company-wide follow-up: `All clear: INC-7 (SEV1) is resolved:
/// <title>.` on resolution, `INC-7 (SEV1) is mitigated: …` on mitigation,
/// else `INC-7 (SEV1) update: …`, with the latest company-wide update.
fn company_wide_follow_up(incident: &Incident, severity: Severity) -> String {
    let id = incident.id();
    let head = match incident.status() {
        Status::Resolved | Status::Closed => format!("All clear: {id} ({severity}) is resolved"),
        Status::Mitigated => format!("{id} ({severity}) is mitigated"),
        Status::Reported | Status::Declared => format!("{id} ({severity}) update"),
    };
    let mut text = format!("{head}: {}.", sentence(incident.title()));
    if let Some(update) = incident.latest_update(Audience::CompanyWide) {
        text.push_str(&format!(" {}.", sentence(&update.text)));
    }
    truncate(&text, SUMMARY_CHARS_MAX)
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

/// A map with keys JSON cannot name (tuples) as a list of pairs, in
/// snapshots.
mod pairs {
    use std::collections::BTreeMap;

    use serde::{Deserialize, Deserializer, Serialize, Serializer};

    pub(super) fn serialize<K: Serialize, V: Serialize, S: Serializer>(
        map: &BTreeMap<K, V>,
        serializer: S,
    ) -> Result<S::Ok, S::Error> {
        serializer.collect_seq(map.iter())
    }

    pub(super) fn deserialize<'de, K: Deserialize<'de> + Ord, V: Deserialize<'de>, D: Deserializer<'de>>(
        deserializer: D,
    ) -> Result<BTreeMap<K, V>, D::Error> {
        Ok(Vec::<(K, V)>::deserialize(deserializer)?.into_iter().collect())
    }
}
