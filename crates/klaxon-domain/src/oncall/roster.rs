//! Overrides and swaps as events: the changes people make to a schedule
//! while Klaxon runs, each a fact in the schedule's own stream
//! (`schedule-<name>`, see [`stream`]).
//!
//! A [`Roster`] is the state folded from one schedule's events; together
//! with the configured [`Schedule`] it gives the *effective* schedule
//! ([`Roster::effective`]): the configured one with every added override
//! and every taken swap as an override after the configured ones, in the
//! order they took effect (so the latest change wins while it lasts).
//! [`decide`] judges a [`RosterCommand`] of an [`Acting`] person at an
//! instant and returns the one event to append, or a [`RosterError`] that
//! names the rule (nothing is written then).
//!
//! # Rules
//!
//! - **Who may act.** A manager may act for anyone. An engineer only for
//!   their own shifts: add an override over time in which they are on call
//!   (or nobody is), remove an override that names them or that they added,
//!   request a swap of their own shift, take a swap themselves, cancel or
//!   undo a swap they requested or took.
//! - **Swaps.** A swap request names an interval in which the requester is
//!   on call throughout (a hole or someone else's time in it is refused,
//!   naming the interval and who holds it) and which has not started. Anyone
//!   else may take it until it starts; taking it puts the taker on call for
//!   the whole interval. The requester may cancel it until it is taken; a
//!   taken swap may be undone while its interval has not started. No swap
//!   event ever leaves an instant with nobody on call that had somebody
//!   before: undoing a swap whose requester has meanwhile lost their cover
//!   is refused, naming the interval that would be uncovered.
//! - **Limits.** An override or a swap lasts at most [`SPAN_DAYS_MAX`] days
//!   and ends in the future; a schedule has at most [`CHANGES_MAX`] added
//!   overrides and open or taken swaps at once.

use std::collections::BTreeMap;
use std::fmt;

use chrono::{DateTime, SecondsFormat, TimeDelta, Utc};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use super::{Origin, Override, Schedule, Schedules, Span};
use crate::DecodeError;
use crate::class::{Class, Classify};
use crate::ids::ActorId;

/// The longest override or swap, in days.
pub const SPAN_DAYS_MAX: i64 = 92;
/// The most added overrides plus open or taken swaps one schedule may have
/// at once.
pub const CHANGES_MAX: usize = Schedule::OVERRIDES_MAX;

/// The name of the stream of schedule `name`'s events, `schedule-<name>`.
pub fn stream(name: &str) -> String {
    format!("{STREAM_PREFIX}{name}")
}

/// The prefix of every schedule stream.
pub const STREAM_PREFIX: &str = "schedule-";

/// Every kind of roster event, with its schema version.
pub const KINDS: &[&str] = &[
    "oncall.override_added.v1",
    "oncall.override_removed.v1",
    "oncall.swap_requested.v1",
    "oncall.swap_taken.v1",
    "oncall.swap_cancelled.v1",
    "oncall.swap_undone.v1",
];

/// One fact about one schedule: what changed, when and by whom.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RosterEvent {
    /// The schedule's name.
    pub schedule: String,
    /// When it was decided.
    pub at: DateTime<Utc>,
    /// Who decided it.
    pub by: ActorId,
    /// What changed.
    pub change: RosterChange,
}

/// What changed in a schedule's roster.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RosterChange {
    /// `oncall.override_added.v1`.
    OverrideAdded(OverrideAdded),
    /// `oncall.override_removed.v1`.
    OverrideRemoved(OverrideRemoved),
    /// `oncall.swap_requested.v1`.
    SwapRequested(SwapRequested),
    /// `oncall.swap_taken.v1`.
    SwapTaken(SwapTaken),
    /// `oncall.swap_cancelled.v1`.
    SwapCancelled(SwapEnded),
    /// `oncall.swap_undone.v1`.
    SwapUndone(SwapEnded),
}

/// Override `O<override_id>`: `who` is on call during `[from, until)`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OverrideAdded {
    /// Its number in the schedule, from 1.
    pub override_id: u32,
    /// Who is on call during it.
    pub who: ActorId,
    /// Its first instant.
    pub from: DateTime<Utc>,
    /// The first instant after it.
    pub until: DateTime<Utc>,
}

/// Override `O<override_id>` no longer applies.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OverrideRemoved {
    /// The override's number.
    pub override_id: u32,
}

/// Swap `S<swap_id>`: `requester` asks someone to take `[from, until)`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SwapRequested {
    /// Its number in the schedule, from 1.
    pub swap_id: u32,
    /// Whose shift it is.
    pub requester: ActorId,
    /// The shift's first instant.
    pub from: DateTime<Utc>,
    /// The first instant after the shift.
    pub until: DateTime<Utc>,
}

/// Swap `S<swap_id>` was taken: `taker` is on call during its interval.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SwapTaken {
    /// The swap's number.
    pub swap_id: u32,
    /// Who takes the shift.
    pub taker: ActorId,
}

/// Swap `S<swap_id>` was cancelled (before it was taken) or undone (after).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SwapEnded {
    /// The swap's number.
    pub swap_id: u32,
}

impl RosterChange {
    /// The stable persisted name, one of [`KINDS`].
    pub fn kind(&self) -> &'static str {
        match self {
            RosterChange::OverrideAdded(_) => KINDS[0],
            RosterChange::OverrideRemoved(_) => KINDS[1],
            RosterChange::SwapRequested(_) => KINDS[2],
            RosterChange::SwapTaken(_) => KINDS[3],
            RosterChange::SwapCancelled(_) => KINDS[4],
            RosterChange::SwapUndone(_) => KINDS[5],
        }
    }

    fn fields(&self) -> Value {
        let value = match self {
            RosterChange::OverrideAdded(c) => serde_json::to_value(c),
            RosterChange::OverrideRemoved(c) => serde_json::to_value(c),
            RosterChange::SwapRequested(c) => serde_json::to_value(c),
            RosterChange::SwapTaken(c) => serde_json::to_value(c),
            RosterChange::SwapCancelled(c) | RosterChange::SwapUndone(c) => serde_json::to_value(c),
        };
        value.expect("roster changes serialize")
    }
}

impl RosterEvent {
    /// The stable persisted name of this event, such as
    /// `oncall.swap_taken.v1`.
    pub fn kind(&self) -> &'static str {
        self.change.kind()
    }

    /// The event as the log stores it: one flat JSON object with
    /// `schedule`, `at` and `by`, followed by the change's own fields.
    pub fn to_json(&self) -> Value {
        let mut object = Map::new();
        object.insert("schedule".into(), Value::String(self.schedule.clone()));
        object.insert("at".into(), serde_json::to_value(self.at).expect("timestamps serialize"));
        object.insert("by".into(), Value::String(self.by.to_string()));
        if let Value::Object(fields) = self.change.fields() {
            object.extend(fields);
        }
        Value::Object(object)
    }

    /// Decodes a stored record of kind `kind` (one of [`KINDS`]) whose data
    /// is the text of [`RosterEvent::to_json`].
    pub fn from_json(kind: &str, data: &str) -> Result<RosterEvent, DecodeError> {
        let malformed = |source| DecodeError::Malformed { kind: kind.to_owned(), source };
        let mut object = match serde_json::from_str::<Value>(data).map_err(malformed)? {
            Value::Object(object) => object,
            _ => return Err(malformed(serde::de::Error::custom("expected a JSON object"))),
        };
        let schedule = take(&mut object, "schedule").map_err(malformed)?;
        let at = take(&mut object, "at").map_err(malformed)?;
        let by = take(&mut object, "by").map_err(malformed)?;
        let fields = Value::Object(object);
        let change = match kind {
            "oncall.override_added.v1" => serde_json::from_value(fields).map(RosterChange::OverrideAdded),
            "oncall.override_removed.v1" => serde_json::from_value(fields).map(RosterChange::OverrideRemoved),
            "oncall.swap_requested.v1" => serde_json::from_value(fields).map(RosterChange::SwapRequested),
            "oncall.swap_taken.v1" => serde_json::from_value(fields).map(RosterChange::SwapTaken),
            "oncall.swap_cancelled.v1" => serde_json::from_value(fields).map(RosterChange::SwapCancelled),
            "oncall.swap_undone.v1" => serde_json::from_value(fields).map(RosterChange::SwapUndone),
            _ => return Err(DecodeError::UnknownKind { kind: kind.to_owned() }),
        }
        .map_err(malformed)?;
        Ok(RosterEvent { schedule, at, by, change })
    }

    /// One readable sentence, for notices and the CLI.
    pub fn summary(&self) -> String {
        match &self.change {
            RosterChange::OverrideAdded(c) => {
                format!("override O{}: {} is on call {}", c.override_id, c.who, interval(c.from, c.until))
            }
            RosterChange::OverrideRemoved(c) => format!("override O{} removed", c.override_id),
            RosterChange::SwapRequested(c) => {
                format!("swap S{}: {} asks someone to take {}", c.swap_id, c.requester, interval(c.from, c.until))
            }
            RosterChange::SwapTaken(c) => format!("swap S{} taken by {}", c.swap_id, c.taker),
            RosterChange::SwapCancelled(c) => format!("swap S{} cancelled", c.swap_id),
            RosterChange::SwapUndone(c) => format!("swap S{} undone", c.swap_id),
        }
    }
}

fn take<T: DeserializeOwned>(object: &mut Map<String, Value>, name: &'static str) -> Result<T, serde_json::Error> {
    let value = object.remove(name).ok_or_else(|| <serde_json::Error as serde::de::Error>::missing_field(name))?;
    serde_json::from_value(value)
}

/// `[from, until)` in RFC 3339 UTC, as errors and notices show intervals.
pub fn interval(from: DateTime<Utc>, until: DateTime<Utc>) -> String {
    format!(
        "[{}, {})",
        from.to_rfc3339_opts(SecondsFormat::Secs, true),
        until.to_rfc3339_opts(SecondsFormat::Secs, true)
    )
}

/// An override added by an event.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AddedOverride {
    /// Its number (`O<n>`).
    pub id: u32,
    /// Who is on call during it.
    pub who: ActorId,
    /// Its first instant.
    pub from: DateTime<Utc>,
    /// The first instant after it.
    pub until: DateTime<Utc>,
    /// Who added it.
    pub by: ActorId,
    /// Whether it was removed.
    pub removed: bool,
}

/// A swap request and what became of it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Swap {
    /// Its number (`S<n>`).
    pub id: u32,
    /// Whose shift it is.
    pub requester: ActorId,
    /// Who requested it (the requester, or a manager for them).
    pub requested_by: ActorId,
    /// The shift's first instant.
    pub from: DateTime<Utc>,
    /// The first instant after the shift.
    pub until: DateTime<Utc>,
    /// Where it stands.
    pub state: SwapState,
}

/// Where a swap stands.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum SwapState {
    /// Requested, nobody took it yet.
    Open,
    /// Taken: `taker` is on call during the shift.
    Taken {
        /// Who took it.
        taker: ActorId,
    },
    /// Cancelled before anybody took it.
    Cancelled,
    /// Taken, then undone before the shift started.
    Undone,
}

impl fmt::Display for SwapState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SwapState::Open => f.write_str("open"),
            SwapState::Taken { taker } => write!(f, "taken by {taker}"),
            SwapState::Cancelled => f.write_str("cancelled"),
            SwapState::Undone => f.write_str("undone"),
        }
    }
}

/// The state of one schedule folded from its stream.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Roster {
    version: u64,
    overrides: BTreeMap<u32, AddedOverride>,
    swaps: BTreeMap<u32, Swap>,
    /// The overrides and taken swaps in force, in the order they took
    /// effect (later wins).
    order: Vec<Origin>,
}

impl Roster {
    /// How many events were folded: the stream's version.
    pub fn version(&self) -> u64 {
        self.version
    }

    /// Every added override, removed ones too, by number.
    pub fn overrides(&self) -> impl Iterator<Item = &AddedOverride> {
        self.overrides.values()
    }

    /// Every swap, by number.
    pub fn swaps(&self) -> impl Iterator<Item = &Swap> {
        self.swaps.values()
    }

    /// Swap `S<id>`, if requested.
    pub fn swap(&self, id: u32) -> Option<&Swap> {
        self.swaps.get(&id)
    }

    /// Folds one event of the schedule's stream.
    pub fn evolve(&mut self, event: &RosterEvent) {
        self.version += 1;
        match &event.change {
            RosterChange::OverrideAdded(c) => {
                self.overrides.insert(
                    c.override_id,
                    AddedOverride {
                        id: c.override_id,
                        who: c.who.clone(),
                        from: c.from,
                        until: c.until,
                        by: event.by.clone(),
                        removed: false,
                    },
                );
                self.order.push(Origin::Added(c.override_id));
            }
            RosterChange::OverrideRemoved(c) => {
                if let Some(o) = self.overrides.get_mut(&c.override_id) {
                    o.removed = true;
                }
                self.order.retain(|origin| *origin != Origin::Added(c.override_id));
            }
            RosterChange::SwapRequested(c) => {
                self.swaps.insert(
                    c.swap_id,
                    Swap {
                        id: c.swap_id,
                        requester: c.requester.clone(),
                        requested_by: event.by.clone(),
                        from: c.from,
                        until: c.until,
                        state: SwapState::Open,
                    },
                );
            }
            RosterChange::SwapTaken(c) => {
                if let Some(swap) = self.swaps.get_mut(&c.swap_id) {
                    swap.state = SwapState::Taken { taker: c.taker.clone() };
                }
                self.order.push(Origin::Swap(c.swap_id));
            }
            RosterChange::SwapCancelled(c) => {
                if let Some(swap) = self.swaps.get_mut(&c.swap_id) {
                    swap.state = SwapState::Cancelled;
                }
            }
            RosterChange::SwapUndone(c) => {
                if let Some(swap) = self.swaps.get_mut(&c.swap_id) {
                    swap.state = SwapState::Undone;
                }
                self.order.retain(|origin| *origin != Origin::Swap(c.swap_id));
            }
        }
    }

    /// The overrides this roster puts in force, in the order they took
    /// effect.
    pub fn in_force(&self) -> Vec<Override> {
        self.order
            .iter()
            .filter_map(|origin| match *origin {
                Origin::Added(n) => {
                    let o = self.overrides.get(&n)?;
                    Some(Override { who: o.who.clone(), from: o.from, to: o.until, origin: *origin })
                }
                Origin::Swap(n) => {
                    let s = self.swaps.get(&n)?;
                    let SwapState::Taken { taker } = &s.state else { return None };
                    Some(Override { who: taker.clone(), from: s.from, to: s.until, origin: *origin })
                }
                Origin::Config => None,
            })
            .collect()
    }

    /// The effective schedule: `configured` with this roster's overrides
    /// and taken swaps after its own overrides.
    pub fn effective(&self, configured: &Schedule) -> Schedule {
        configured.with_overrides(self.in_force())
    }

    /// How many changes are in force or pending (the [`CHANGES_MAX`] count).
    fn live_changes(&self) -> usize {
        let overrides = self.overrides.values().filter(|o| !o.removed).count();
        let swaps = self.swaps.values().filter(|s| matches!(s.state, SwapState::Open | SwapState::Taken { .. }));
        overrides + swaps.count()
    }
}

/// The rosters of every schedule, by schedule name.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Rosters(BTreeMap<String, Roster>);

impl Rosters {
    /// Whether no schedule has an event.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The roster of `schedule` (empty when it has no events).
    pub fn get(&self, schedule: &str) -> Option<&Roster> {
        self.0.get(schedule)
    }

    /// Folds one event into its schedule's roster.
    pub fn evolve(&mut self, event: &RosterEvent) {
        self.0.entry(event.schedule.clone()).or_default().evolve(event);
    }

    /// Every configured schedule with its roster applied: what paging and
    /// `WhoIsOnCall` answer from. Events of schedules that are no longer
    /// configured are ignored.
    pub fn effective(&self, configured: &Schedules) -> Schedules {
        Schedules {
            schedules: configured
                .iter()
                .map(|s| match self.0.get(s.name()) {
                    Some(roster) => roster.effective(s),
                    None => s.clone(),
                })
                .collect(),
        }
    }
}

/// What someone asks to change in a schedule.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RosterCommand {
    /// Put `who` on call during `[from, until)`.
    AddOverride {
        /// Who is on call.
        who: ActorId,
        /// The first instant.
        from: DateTime<Utc>,
        /// The first instant after.
        until: DateTime<Utc>,
    },
    /// Remove override `O<id>`.
    RemoveOverride {
        /// The override's number.
        id: u32,
    },
    /// Ask someone to take `requester`'s shift `[from, until)`.
    RequestSwap {
        /// Whose shift it is.
        requester: ActorId,
        /// The first instant.
        from: DateTime<Utc>,
        /// The first instant after.
        until: DateTime<Utc>,
    },
    /// `taker` takes swap `S<id>`.
    TakeSwap {
        /// The swap's number.
        id: u32,
        /// Who takes the shift.
        taker: ActorId,
    },
    /// Cancel swap `S<id>` before anyone takes it.
    CancelSwap {
        /// The swap's number.
        id: u32,
    },
    /// Undo taken swap `S<id>` before its shift starts.
    UndoSwap {
        /// The swap's number.
        id: u32,
    },
}

/// Who acts, and whether as a manager (who may act for anyone).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Acting {
    /// The person acting (the events' `by`).
    pub actor: ActorId,
    /// Whether they act as a manager.
    pub manager: bool,
}

/// Why a roster command was refused. Nothing is written.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RosterError {
    /// A field is malformed or out of range.
    #[error("invalid {field}: {reason}")]
    Invalid {
        /// The request field, as the API spells it.
        field: &'static str,
        /// What is wrong with it.
        reason: String,
    },
    /// No such override in the schedule.
    #[error("schedule {schedule} has no override O{id}")]
    UnknownOverride {
        /// The schedule.
        schedule: String,
        /// The number asked for.
        id: u32,
    },
    /// No such swap in the schedule.
    #[error("schedule {schedule} has no swap S{id}")]
    UnknownSwap {
        /// The schedule.
        schedule: String,
        /// The number asked for.
        id: u32,
    },
    /// An engineer acting on someone else's shift.
    #[error("engineer {actor} may only change their own shifts: {why}")]
    NotTheirs {
        /// Who tried.
        actor: ActorId,
        /// Whose it is, and when.
        why: String,
    },
    /// The requester is not on call throughout the interval of a swap.
    #[error("{requester} is not on call throughout {}: {} during {}", interval(*from, *until), holder_text(holder.as_ref()), interval(span.0, span.1))]
    NotOnCall {
        /// Whose shift the swap was to be.
        requester: ActorId,
        /// The interval asked for.
        from: DateTime<Utc>,
        /// Its end.
        until: DateTime<Utc>,
        /// Who is on call instead (`None`: nobody).
        holder: Option<ActorId>,
        /// When.
        span: (DateTime<Utc>, DateTime<Utc>),
    },
    /// The change would leave somebody's time with nobody on call.
    #[error("{what} would leave {} with nobody on call", interval(.from.0, .from.1))]
    WouldLeaveGap {
        /// The change, in words (`undoing swap S2`).
        what: String,
        /// The interval that would be uncovered.
        from: (DateTime<Utc>, DateTime<Utc>),
    },
    /// The current state forbids the command; the text names the rule.
    #[error("{0}")]
    Rule(String),
    /// Too many changes in force.
    #[error("schedule {schedule} already has {max} overrides and swaps in force or open (the limit)")]
    TooMany {
        /// The schedule.
        schedule: String,
        /// The limit.
        max: usize,
    },
}

fn holder_text(holder: Option<&ActorId>) -> String {
    match holder {
        Some(who) => format!("{who} is on call"),
        None => "nobody is on call".to_owned(),
    }
}

impl Classify for RosterError {
    fn class(&self) -> Class {
        match self {
            RosterError::Invalid { .. } => Class::InvalidArgument,
            RosterError::UnknownOverride { .. } | RosterError::UnknownSwap { .. } => Class::NotFound,
            RosterError::NotTheirs { .. } => Class::PermissionDenied,
            RosterError::NotOnCall { .. } | RosterError::WouldLeaveGap { .. } | RosterError::Rule(_) => {
                Class::FailedPrecondition
            }
            RosterError::TooMany { .. } => Class::ResourceExhausted,
        }
    }
}

/// Judges `command` of `acting` on `configured` (the schedule as
/// configured) whose stream folded to `roster`, at `now`: the one event to
/// append, or why not. See the [module docs](self) for the rules.
pub fn decide(
    configured: &Schedule,
    roster: &Roster,
    acting: &Acting,
    command: &RosterCommand,
    now: DateTime<Utc>,
) -> Result<RosterEvent, RosterError> {
    let name = configured.name();
    let effective = roster.effective(configured);
    let change = match command {
        RosterCommand::AddOverride { who, from, until } => {
            check_interval(*from, *until, now)?;
            check_room(name, roster)?;
            if !acting.manager {
                let theirs = |w: &ActorId| *w == acting.actor;
                if let Some(span) =
                    effective.coverage(*from, *until).into_iter().find(|s| !s.who.as_ref().is_none_or(theirs))
                {
                    return Err(not_theirs(acting, &span));
                }
            }
            let override_id = next_number(roster.overrides.keys())?;
            RosterChange::OverrideAdded(OverrideAdded { override_id, who: who.clone(), from: *from, until: *until })
        }
        RosterCommand::RemoveOverride { id } => {
            let o = roster.overrides.get(id).ok_or(RosterError::UnknownOverride { schedule: name.into(), id: *id })?;
            if o.removed {
                return Err(RosterError::Rule(format!("override O{id} of schedule {name} was already removed")));
            }
            if !acting.manager && o.who != acting.actor && o.by != acting.actor {
                return Err(RosterError::NotTheirs {
                    actor: acting.actor.clone(),
                    why: format!("override O{id} puts {} on call and was added by {}", o.who, o.by),
                });
            }
            RosterChange::OverrideRemoved(OverrideRemoved { override_id: *id })
        }
        RosterCommand::RequestSwap { requester, from, until } => {
            check_interval(*from, *until, now)?;
            if *from < now {
                return Err(RosterError::Invalid {
                    field: "from",
                    reason: format!(
                        "the shift to swap must not have started ({} is before now, {})",
                        from.to_rfc3339_opts(SecondsFormat::Secs, true),
                        now.to_rfc3339_opts(SecondsFormat::Secs, true)
                    ),
                });
            }
            check_room(name, roster)?;
            if !acting.manager && *requester != acting.actor {
                return Err(RosterError::NotTheirs {
                    actor: acting.actor.clone(),
                    why: format!("the swap would be of {requester}'s shift"),
                });
            }
            if let Some(span) =
                effective.coverage(*from, *until).into_iter().find(|s| s.who.as_ref() != Some(requester))
            {
                return Err(RosterError::NotOnCall {
                    requester: requester.clone(),
                    from: *from,
                    until: *until,
                    holder: span.who,
                    span: (span.from, span.until),
                });
            }
            let swap_id = next_number(roster.swaps.keys())?;
            RosterChange::SwapRequested(SwapRequested {
                swap_id,
                requester: requester.clone(),
                from: *from,
                until: *until,
            })
        }
        RosterCommand::TakeSwap { id, taker } => {
            let swap = open_swap(name, roster, *id)?;
            if !acting.manager && *taker != acting.actor {
                return Err(RosterError::NotTheirs {
                    actor: acting.actor.clone(),
                    why: format!("only {taker} (or a manager) may take swap S{id} for {taker}"),
                });
            }
            if *taker == swap.requester {
                return Err(RosterError::Invalid {
                    field: "taker",
                    reason: format!("{taker} requested swap S{id}: someone else must take it"),
                });
            }
            if swap.from <= now {
                return Err(RosterError::Rule(format!(
                    "the shift of swap S{id} started at {}: it can no longer be taken (a manager can add an override)",
                    swap.from.to_rfc3339_opts(SecondsFormat::Secs, true)
                )));
            }
            RosterChange::SwapTaken(SwapTaken { swap_id: *id, taker: taker.clone() })
        }
        RosterCommand::CancelSwap { id } => {
            let swap = roster.swaps.get(id).ok_or(RosterError::UnknownSwap { schedule: name.into(), id: *id })?;
            if !acting.manager && swap.requester != acting.actor && swap.requested_by != acting.actor {
                return Err(RosterError::NotTheirs {
                    actor: acting.actor.clone(),
                    why: format!("swap S{id} is {}'s", swap.requester),
                });
            }
            match &swap.state {
                SwapState::Open => RosterChange::SwapCancelled(SwapEnded { swap_id: *id }),
                SwapState::Taken { taker } => {
                    return Err(RosterError::Rule(format!(
                        "swap S{id} was already taken by {taker}: undo it instead (while its shift has not started)"
                    )));
                }
                state => return Err(RosterError::Rule(format!("swap S{id} is already {state}"))),
            }
        }
        RosterCommand::UndoSwap { id } => {
            let swap = roster.swaps.get(id).ok_or(RosterError::UnknownSwap { schedule: name.into(), id: *id })?;
            let SwapState::Taken { taker } = &swap.state else {
                return Err(RosterError::Rule(match swap.state {
                    SwapState::Open => format!("swap S{id} was not taken: cancel it instead"),
                    ref state => format!("swap S{id} is already {state}"),
                }));
            };
            if !acting.manager
                && swap.requester != acting.actor
                && *taker != acting.actor
                && swap.requested_by != acting.actor
            {
                return Err(RosterError::NotTheirs {
                    actor: acting.actor.clone(),
                    why: format!("swap S{id} is between {} and {taker}", swap.requester),
                });
            }
            if swap.from <= now {
                return Err(RosterError::Rule(format!(
                    "the shift of swap S{id} started at {}: it can no longer be undone",
                    swap.from.to_rfc3339_opts(SecondsFormat::Secs, true)
                )));
            }
            RosterChange::SwapUndone(SwapEnded { swap_id: *id })
        }
    };
    let event = RosterEvent { schedule: name.to_owned(), at: now, by: acting.actor.clone(), change };
    if let RosterChange::SwapTaken(SwapTaken { swap_id, .. }) | RosterChange::SwapUndone(SwapEnded { swap_id }) =
        &event.change
    {
        let swap = &roster.swaps[swap_id];
        let verb = if matches!(event.change, RosterChange::SwapTaken(_)) { "taking" } else { "undoing" };
        check_no_new_hole(
            configured,
            &effective,
            roster,
            &event,
            swap.from,
            swap.until,
            &format!("{verb} swap S{swap_id}"),
        )?;
    }
    Ok(event)
}

fn open_swap<'a>(name: &str, roster: &'a Roster, id: u32) -> Result<&'a Swap, RosterError> {
    let swap = roster.swaps.get(&id).ok_or(RosterError::UnknownSwap { schedule: name.into(), id })?;
    match &swap.state {
        SwapState::Open => Ok(swap),
        state => Err(RosterError::Rule(format!("swap S{id} is already {state}"))),
    }
}

fn not_theirs(acting: &Acting, span: &Span) -> RosterError {
    let holder = span.who.as_ref().map_or_else(|| "nobody".to_owned(), ToString::to_string);
    RosterError::NotTheirs {
        actor: acting.actor.clone(),
        why: format!("{holder} is on call during {}", interval(span.from, span.until)),
    }
}

fn check_interval(from: DateTime<Utc>, until: DateTime<Utc>, now: DateTime<Utc>) -> Result<(), RosterError> {
    let invalid = |field, reason: String| Err(RosterError::Invalid { field, reason });
    if from < Schedule::EARLIEST || until > Schedule::LATEST {
        return invalid("from", "must be between 1900-01-01 and 2200-01-01".to_owned());
    }
    if until <= from {
        return invalid("until", "must be after \"from\"".to_owned());
    }
    if until - from > TimeDelta::days(SPAN_DAYS_MAX) {
        return invalid("until", format!("at most {SPAN_DAYS_MAX} days after \"from\""));
    }
    if until <= now {
        return invalid("until", format!("{} is already past", until.to_rfc3339_opts(SecondsFormat::Secs, true)));
    }
    Ok(())
}

fn check_room(name: &str, roster: &Roster) -> Result<(), RosterError> {
    if roster.live_changes() >= CHANGES_MAX {
        return Err(RosterError::TooMany { schedule: name.to_owned(), max: CHANGES_MAX });
    }
    Ok(())
}

fn next_number<'a>(mut taken: impl DoubleEndedIterator<Item = &'a u32>) -> Result<u32, RosterError> {
    let last = taken.next_back().copied().unwrap_or(0);
    last.checked_add(1).ok_or_else(|| RosterError::Rule("the schedule has used every number".to_owned()))
}

/// Refuses `event` if, applied, some instant of `[from, until)` that has
/// somebody on call now would have nobody.
fn check_no_new_hole(
    configured: &Schedule,
    before: &Schedule,
    roster: &Roster,
    event: &RosterEvent,
    from: DateTime<Utc>,
    until: DateTime<Utc>,
    what: &str,
) -> Result<(), RosterError> {
    let mut after = roster.clone();
    after.evolve(event);
    let after = after.effective(configured);
    for hole in after.holes(from, until) {
        if let Some(lost) = before.coverage(hole.from, hole.until).into_iter().find(|s| s.who.is_some()) {
            return Err(RosterError::WouldLeaveGap { what: what.to_owned(), from: (lost.from, lost.until) });
        }
    }
    Ok(())
}
