//! Cadenced trend reports (`[[reports]]`): posts each report's last full
//! period to its channels, once per period, across restarts.
//!
//! The timer is derived, like paging's, from the clock and the log: a
//! period is due once its posting time passed and no `report.posted.v1`
//! with its id ([`Report::posted_id`]) is in the log. Posting is: compute
//! the trends of the period (the review service's, as `klaxon trends`
//! would), deliver the table to every channel through the outbox (the
//! idempotency key `report/<name>/<period>`), then append
//! `report.posted.v1` to `reports-<name>` with the derived id. A crash
//! between delivery and record sends the period again after the restart,
//! with the same idempotency key; never zero times.
//!
//! # Replicas
//!
//! Review replicas (the distributed topology) each run a reporter over the
//! same log, and each finds the same period due. With [`Reporter::with_claims`]
//! a reporter first *claims* the period's delivery through the log
//! (`klaxon_reactor::claim`, service [`CLAIM_SERVICE`], the claim stream
//! derived from the channels and the idempotency key, so every replica
//! names the same one): one claim wins each version, and only its winner
//! delivers and records. A loser comes back when the winner's lease runs
//! out: by then the winner has recorded `report.posted.v1` and nothing is
//! left to do, or it died between claiming and recording, and the loser
//! claims the next version and delivers (the same idempotency key: a
//! receiver that deduplicates sees one message even when the winner died
//! after sending). A restarted replica has a new id (`<host>-<pid>`) and
//! waits for its old claim's lease like any other.

use std::sync::Arc;

use chrono::{DateTime, Utc};
use klaxon_domain::outbox::{Outbox, Outcome, Outgoing};
use klaxon_domain::review::reports::{ChannelOutcome, POSTED_KIND, REPORTER_ACTOR, Report, ReportPosted, stream};
use klaxon_log::{EventData, EventKind, ExpectedVersion, Metadata, NewEvent};
use klaxon_reactor::shell::{Finished, finish_at_stop};
use klaxon_reactor::{Claim, Claims, Clock, claim, streams};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use crate::{Error, Handle};

/// The service name in the reporter's claims: with the channels and the
/// idempotency key `report/<name>/<period>`, it names a period's claim
/// stream (`klaxon_reactor::claim::stream`).
pub const CLAIM_SERVICE: &str = "review.reports";

/// Posts the configured reports. Build it, take [`Reporter::checked`],
/// then [`Reporter::run`].
pub struct Reporter {
    reviews: Handle,
    reports: Vec<Report>,
    outbox: Arc<dyn Outbox>,
    clock: Arc<dyn Clock>,
    claims: Option<Claims>,
    checked: watch::Sender<Option<DateTime<Utc>>>,
}

impl Reporter {
    /// Posts `reports` with the trends of `reviews` through `outbox`, at
    /// the times of `clock`.
    pub fn new(reviews: Handle, reports: Vec<Report>, outbox: Arc<dyn Outbox>, clock: Arc<dyn Clock>) -> Reporter {
        Reporter { reviews, reports, outbox, clock, claims: None, checked: watch::channel(None).0 }
    }

    /// Claims each period's delivery through the log before making it, as
    /// `claims.replica`, so that of several review replicas only one posts
    /// it (see the module's "Replicas"). Without claims (one process, the
    /// embedded topology) the reporter posts what is due at once.
    pub fn with_claims(mut self, claims: Claims) -> Reporter {
        self.claims = Some(claims);
        self
    }

    /// The clock's time up to which every due report was posted and
    /// recorded, or found claimed by another replica (`None` before the
    /// first round): what tests wait on.
    pub fn checked(&self) -> watch::Receiver<Option<DateTime<Utc>>> {
        self.checked.subscribe()
    }

    /// Posts what is due, then sleeps until the next posting time, until
    /// `shutdown`. A failing log stops it with the error (the process
    /// restarts it; nothing is lost: the period is still due).
    ///
    /// A stop lets a post under way finish, delivery and record, for at
    /// most the shell's `DRAIN_WAIT` ([`finish_at_stop`]): cut
    /// between the two, the period would be sent again after the restart.
    pub async fn run(self, shutdown: CancellationToken) -> Result<(), Error> {
        if self.reports.is_empty() {
            return Ok(());
        }
        loop {
            let now = self.clock.now();
            let mut next: Option<DateTime<Utc>> = None;
            for report in &self.reports {
                let due = match finish_at_stop(&shutdown, "a trend report", self.post_due(report, now)).await {
                    Finished::Done(due) => due?,
                    Finished::Stopped(posted) => return posted.map_or(Ok(()), |p| p.map(drop)),
                };
                next = Some(next.map_or(due, |n| n.min(due)));
            }
            self.checked.send_replace(Some(now));
            let Some(next) = next else { return Ok(()) };
            // A posting time already reached (a post took long) is a new round at once.
            if next > now {
                tokio::select! {
                    _ = shutdown.cancelled() => return Ok(()),
                    _ = self.clock.sleep_until(next) => {}
                }
            } else if shutdown.is_cancelled() {
                return Ok(());
            }
        }
    }

    /// Posts `report`'s period due at `now`, if it was not posted and (with
    /// claims) this replica wins its claim; returns when to look again:
    /// when the report is due next, or when another replica's claim on the
    /// period runs out.
    async fn post_due(&self, report: &Report, now: DateTime<Utc>) -> Result<DateTime<Utc>, Error> {
        let Some(period) = report.due(now, &|_| false) else {
            return Ok(report.next_due(now, &|_| true));
        };
        let next = report.next_due(now, &|p| p == period.id);
        let bus = self.reviews.reactor().bus();
        let id = report.posted_id(&period);
        if bus.locate(id).await?.is_some() {
            return Ok(next);
        }
        let trends = self.reviews.trends(period.from, period.to, report.filter()).await?;
        let message = report.message(&period, &trends);
        if let Some(claims) = &self.claims {
            let sends: Vec<Outgoing> =
                report.channels().iter().map(|c| Outgoing { channel: c.clone(), message: message.clone() }).collect();
            match claim::claim(bus, claims, CLAIM_SERVICE, &sends, None, now).await? {
                Claim::Won { .. } => {}
                Claim::Lost { holder, until } => {
                    tracing::info!(report = report.name(), period = %period.id, %holder, %until, "another replica posts this trend report");
                    return Ok(until.min(next));
                }
            }
            // Won, but the holder before may have recorded the period after
            // this replica looked (its lease ran out as it did).
            if bus.locate(id).await?.is_some() {
                return Ok(next);
            }
        }
        let mut channels = Vec::with_capacity(report.channels().len());
        for channel in report.channels() {
            let outcome = self.outbox.deliver(channel, &message).await;
            let (delivered, error) = match outcome {
                Outcome::Delivered { .. } => (true, None),
                Outcome::Failed { error, .. } => {
                    tracing::warn!(report = report.name(), period = %period.id, channel, %error, "a report was not delivered");
                    (false, Some(error))
                }
            };
            channels.push(ChannelOutcome { channel: channel.clone(), delivered, error });
        }
        let posted = ReportPosted { report: report.name().to_owned(), period: period.clone(), at: now, channels };
        let event = NewEvent {
            id,
            kind: EventKind::new(POSTED_KIND).expect("the kind is valid"),
            data: EventData::from_value(&posted.to_json())?,
            metadata: Metadata { actor: Some(REPORTER_ACTOR.to_owned()), ..Metadata::default() },
        };
        let stream = streams::stream_id(stream(report.name()));
        bus.append(&stream, ExpectedVersion::Any, vec![event]).await?;
        tracing::info!(report = report.name(), period = %period.id, "posted a trend report");
        Ok(next)
    }
}
