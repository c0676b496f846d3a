//! Claims: how replicas of one service share its deliveries through the log.
//!
//! Two replicas of a reacting service fold the same log and decide the same
//! [`crate::Deliver`] effects. Before sending, the shell appends a *claim*
//! to a stream of its own, `claim-<id>`, where the id is derived from the
//! service's name and the idempotency keys of the messages (the same
//! delivery decided by any replica names the same stream). The append is
//! made at an exact version (`NoStream` for the first claim), so only one
//! replica wins each version; the winner sends and records, the others
//! skip. Event ids are derived from the stream, the version and the
//! replica, so a replica retrying its own claim is answered idempotently
//! while another replica's claim at the same version is a conflict: the
//! loser is told by the expected version, never by event-id dedup.
//!
//! Almost every delivery is the first of its stream, so the first claim is
//! appended at `NoStream` without reading the stream first (one round trip
//! to the log, not two); a conflict means the stream exists and says its
//! version, and the shell reads the last claim and decides as below. An
//! idempotent answer never
//! decides by itself: every log (in process, over gRPC, the Raft group)
//! answers a known event id before it checks the expected version, so it
//! says that this replica's claim is in the log, not that it is the last
//! one; the shell reads the stream then too.
//!
//! A claim holds for a *lease*: it carries the claimer's clock reading and
//! the lease's length, and expires at their sum. A loser waits for that
//! instant (read from the injected [`crate::Clock`], never a wall timer),
//! and decides again: if the winner recorded the outcome meanwhile, there is
//! nothing left to deliver; if the winner died after claiming, the loser
//! claims the next version and delivers. The messages keep their
//! idempotency keys across claims, so a receiver that deduplicates by key
//! sees a delivery made twice at that boundary (the winner died after
//! sending but before recording) as one.

use std::fmt;

use chrono::{DateTime, TimeDelta, Utc};
use klaxon_bus::Bus;
use klaxon_domain::ids::KLAXON_NAMESPACE;
use klaxon_domain::outbox::Outgoing;
use klaxon_log::{EventData, EventKind, ExpectedVersion, Metadata, NewEvent, Record, StreamId, StreamVersion};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::Error;

/// The kind of a claim record.
pub const CLAIM_KIND: &str = "reactor.effect_claimed.v1";
/// The prefix of every claim stream.
pub const CLAIM_STREAM_PREFIX: &str = "claim-";
/// Longest replica id, in bytes.
pub const REPLICA_ID_BYTES_MAX: usize = 128;
/// The default lease: longer than any channel's bounded retries take, so a
/// live winner records before a loser may take over.
pub const LEASE_DEFAULT_MS: u64 = 60_000;
/// Claim appends in one go: the first without a read, each later one after
/// reading the stream again (following a conflict or an idempotent answer).
const ATTEMPTS_MAX: u32 = 4;

/// Who a replica is, in its claims: 1 to [`REPLICA_ID_BYTES_MAX`] bytes of
/// ASCII letters, digits, `-`, `_`, `.`, `:` and `@`.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct ReplicaId(String);

impl ReplicaId {
    /// Checks `id`.
    pub fn new(id: impl Into<String>) -> Result<ReplicaId, String> {
        let id = id.into();
        if id.is_empty() || id.len() > REPLICA_ID_BYTES_MAX {
            return Err(format!("a replica id is 1 to {REPLICA_ID_BYTES_MAX} bytes, not {}", id.len()));
        }
        if let Some(c) = id.chars().find(|c| !(c.is_ascii_alphanumeric() || "-_.:@".contains(*c))) {
            return Err(format!("a replica id holds ASCII letters, digits and -_.:@, not {c:?}"));
        }
        Ok(ReplicaId(id))
    }

    /// `<host>-<pid>`: distinct for every process of a machine, and a new
    /// one after a restart (which then waits for its old claims' leases).
    pub fn from_host_and_pid(host: &str, pid: u32) -> ReplicaId {
        let host: String = host.chars().filter(|c| c.is_ascii_alphanumeric() || "-_.".contains(*c)).take(96).collect();
        let host = if host.is_empty() { "replica".to_owned() } else { host };
        ReplicaId(format!("{host}-{pid}"))
    }

    /// The id as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for ReplicaId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// How a service's replicas share deliveries: who this one is, and how long
/// its claims hold.
#[derive(Clone, Debug)]
pub struct Claims {
    /// This replica.
    pub replica: ReplicaId,
    /// How long a claim holds before another replica may take over.
    pub lease: TimeDelta,
}

impl Claims {
    /// Claims as `replica`, each holding for `lease_ms` milliseconds.
    pub fn new(replica: ReplicaId, lease_ms: u64) -> Claims {
        Claims { replica, lease: TimeDelta::milliseconds(i64::try_from(lease_ms).unwrap_or(i64::MAX / 2)) }
    }
}

/// What a claim record says.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct EffectClaimed {
    /// The service whose delivery it is.
    pub service: String,
    /// The replica that claimed it.
    pub replica: String,
    /// The idempotency keys of the messages.
    pub keys: Vec<String>,
    /// The claimer's clock when it claimed.
    pub at: DateTime<Utc>,
    /// The lease, in milliseconds: the claim holds until `at` plus it.
    pub lease_ms: u64,
}

impl EffectClaimed {
    /// When the claim stops holding.
    pub fn expires(&self) -> DateTime<Utc> {
        self.at + TimeDelta::milliseconds(i64::try_from(self.lease_ms).unwrap_or(i64::MAX / 2))
    }

    /// The claim in `record`, which must be of [`CLAIM_KIND`].
    pub fn of(record: &Record) -> Result<EffectClaimed, Error> {
        if record.kind.as_str() != CLAIM_KIND {
            return Err(Error::Undecodable {
                position: record.position,
                reason: format!("{} is no claim", record.kind),
            });
        }
        serde_json::from_str(record.data.as_str())
            .map_err(|e| Error::Undecodable { position: record.position, reason: e.to_string() })
    }
}

/// What came of claiming a delivery.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Claim {
    /// This replica holds the claim (the `version`-th of its stream, or an
    /// earlier one of its own still in the log): it delivers.
    Won {
        /// The claim's version in its stream.
        version: u64,
    },
    /// Another replica holds it until `until`; decide again then.
    Lost {
        /// The holder.
        holder: String,
        /// When its claim expires.
        until: DateTime<Utc>,
    },
}

/// The claim stream of a delivery of `service` sending `sends`: UUIDv5 of
/// the service and the messages' idempotency keys.
pub fn stream(service: &str, sends: &[Outgoing]) -> StreamId {
    let mut name = String::from(service);
    for send in sends {
        name.push('\n');
        name.push_str(&send.channel);
        name.push('\n');
        name.push_str(&send.message.idempotency_key);
    }
    let id = Uuid::new_v5(&KLAXON_NAMESPACE, name.as_bytes());
    StreamId::new(format!("{CLAIM_STREAM_PREFIX}{id}")).expect("a prefix and a UUID make a valid stream id")
}

/// Claims the delivery of `sends` for `claims.replica` at `now`: appends the
/// next claim when there is none or the last one expired, wins at once when
/// the last one is this replica's own, and loses to an unexpired claim of
/// another. `correlation_id` is the incident's.
///
/// Almost every delivery is the first of its claim stream, so the first
/// attempt appends the version-1 claim at [`ExpectedVersion::NoStream`]
/// without reading the stream's version: one round trip to the log instead
/// of two. A conflict (the stream exists) reports the stream's version, so
/// the last claim is read at once and decides; a deduplicated answer (this
/// replica's own version-1 claim exists, but later claims of others may
/// follow it: the log answers a known event id before it checks the
/// expected version) says no version, so the version is read first.
pub async fn claim(
    bus: &Bus,
    claims: &Claims,
    service: &str,
    sends: &[Outgoing],
    correlation_id: Option<Uuid>,
    now: DateTime<Utc>,
) -> Result<Claim, Error> {
    let stream = stream(service, sends);
    let claimed = EffectClaimed {
        service: service.to_owned(),
        replica: claims.replica.to_string(),
        keys: sends.iter().map(|s| s.message.idempotency_key.clone()).collect(),
        at: now,
        lease_ms: u64::try_from(claims.lease.num_milliseconds()).unwrap_or(0),
    };
    let event = |version: u64| -> Result<NewEvent, Error> {
        Ok(NewEvent {
            id: claim_id(&stream, version, &claims.replica),
            kind: EventKind::new(CLAIM_KIND).expect("a valid kind"),
            data: EventData::from_value(&claimed)?,
            metadata: Metadata {
                actor: Some(claims.replica.to_string()),
                correlation_id,
                causation_id: None,
                traceparent: None,
            },
        })
    };
    // Each attempt is one append; every one after the first follows a read.
    let mut attempts = 1;
    // The stream's version as a conflict reported it. The log answers a
    // conflict only once every write before it is durable (and over gRPC
    // from the node that decided it), so the record at that version can be
    // read at once, without asking for the version first.
    let mut reported = match bus.append(&stream, ExpectedVersion::NoStream, vec![event(0)?]).await {
        Ok(appended) if !appended.deduplicated => return Ok(Claim::Won { version: 1 }),
        // This replica's version-1 claim is in the log (an earlier claim,
        // or a retry of this append whose answer was lost); whether it
        // still holds depends on what came after it, and the answer does
        // not say the stream's version.
        Ok(_) => None,
        // The stream exists, at `actual`.
        Err(klaxon_log::Error::WrongExpectedVersion { actual, .. }) => Some(actual.0),
        Err(e) => return Err(e.into()),
    };
    loop {
        let (version, was_reported) = match reported.take() {
            Some(version) => (version, true),
            None => (bus.stream_version(&stream).await?.0, false),
        };
        if version > 0 {
            let last = bus.read_stream(&stream, StreamVersion(version), 1).await?;
            let Some(last) = last.first() else {
                // A version reported by a conflict that this read does not
                // show yet (another node answered it): ask for the version.
                if was_reported {
                    continue;
                }
                return Err(Error::Unavailable {
                    service: "claims",
                    reason: format!("{stream} has version {version} but no record there"),
                });
            };
            let held = EffectClaimed::of(last)?;
            if held.replica == claims.replica.as_str() {
                return Ok(Claim::Won { version });
            }
            if now < held.expires() {
                let until = held.expires();
                return Ok(Claim::Lost { holder: held.replica, until });
            }
        }
        if attempts >= ATTEMPTS_MAX {
            // Every attempt met a newer claim or a stale read: decide again
            // once a lease has passed.
            return Ok(Claim::Lost { holder: "unknown".into(), until: now + claims.lease });
        }
        attempts += 1;
        let expected =
            if version == 0 { ExpectedVersion::NoStream } else { ExpectedVersion::Exact(StreamVersion(version)) };
        match bus.append(&stream, expected, vec![event(version)?]).await {
            Ok(appended) if !appended.deduplicated => return Ok(Claim::Won { version: version + 1 }),
            // This replica's claim of this version is already in the log
            // although the read showed the stream before it (a read behind
            // the writes, or a retry whose answer was lost): later claims
            // may follow it, so read again rather than conclude.
            Ok(_) => continue,
            // Another replica claimed this version first (or a stale read
            // showed an older version): decide again at the version the
            // conflict reports.
            Err(klaxon_log::Error::WrongExpectedVersion { actual, .. }) => reported = Some(actual.0),
            Err(e) => return Err(e.into()),
        }
    }
}

/// The event id of `replica`'s claim appended after `version` of `stream`:
/// the same for a retry of that claim (answered idempotently), another for
/// another replica's claim of the same version (refused by the expected
/// version).
fn claim_id(stream: &StreamId, version: u64, replica: &ReplicaId) -> Uuid {
    Uuid::new_v5(&KLAXON_NAMESPACE, format!("{stream}@{version}/{replica}").as_bytes())
}
