//! The one table of who may call what.
//!
//! Every gRPC method Klaxon serves has one row: the roles that may call it,
//! and whether it acts on something a team owns (`scoped`), in which case
//! the handler also checks the caller's teams against that service's team
//! (see [`crate::Grant::check_service`]). A method without a row is refused
//! to everyone: a new RPC is unreachable until someone decides who may call
//! it. Health checking and reflection are public, so that load balancers
//! and generic gRPC tools work without a token; they reveal nothing that is
//! not in the open-source protocol files.

use crate::principal::Role;

/// Who may call one method.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Rule {
    /// The gRPC path, `/package.Service/Method`.
    pub method: &'static str,
    /// The roles that may call it.
    pub roles: &'static [Role],
    /// Whether it acts on a service's incident, page or review, so that a
    /// principal scoped to teams may call it only for those teams' services.
    pub scoped: bool,
}

/// gRPC services anyone may call, without a token.
pub const PUBLIC_SERVICES: &[&str] = &["grpc.health.v1.Health", "grpc.reflection.v1.ServerReflection"];

use Role::{Engineer as E, Executive as X, Integration as I, Manager as M, Reviewer as R, Service as S};

const MANAGERS: &[Role] = &[M];
const RESPONDERS: &[Role] = &[M, E];
/// Who reports over gRPC: executives too, whose reports are escalations
/// (their source is `executive`, see [`crate::sources`]).
const REPORTERS: &[Role] = &[M, E, X, S, I];
/// Who reports through the HTTP intake: monitoring integrations and the
/// people who run them; not executives, who escalate over gRPC.
const WEBHOOK_REPORTERS: &[Role] = &[M, E, S, I];
const REVIEWERS: &[Role] = &[M, R];
/// Everyone who reads incidents in detail: history, timelines, pages.
const READERS: &[Role] = &[M, E, R];
/// Readers plus executives: summaries, feeds, metrics, published reviews.
const EVERYONE: &[Role] = &[M, E, X, R];
const SERVICES: &[Role] = &[S];

const fn rule(method: &'static str, roles: &'static [Role], scoped: bool) -> Rule {
    Rule { method, roles, scoped }
}

/// Acts on a service's incident, page or review.
const SCOPED: bool = true;
/// Company-wide: reads and lists.
const ANY_TEAM: bool = false;

/// The table.
pub const RULES: &[Rule] = &[
    // Incidents: reports and commands.
    rule("/klaxon.v1.Incidents/Report", REPORTERS, SCOPED),
    rule("/klaxon.v1.Incidents/Declare", MANAGERS, SCOPED),
    rule("/klaxon.v1.Incidents/OverrideSeverity", MANAGERS, SCOPED),
    rule("/klaxon.v1.Incidents/AssignCommander", MANAGERS, SCOPED),
    rule("/klaxon.v1.Incidents/RequestHandoff", MANAGERS, SCOPED),
    rule("/klaxon.v1.Incidents/AcceptHandoff", MANAGERS, SCOPED),
    rule("/klaxon.v1.Incidents/DeclineHandoff", MANAGERS, SCOPED),
    rule("/klaxon.v1.Incidents/CancelHandoff", MANAGERS, SCOPED),
    rule("/klaxon.v1.Incidents/AssignRole", MANAGERS, SCOPED),
    rule("/klaxon.v1.Incidents/RemoveRole", MANAGERS, SCOPED),
    rule("/klaxon.v1.Incidents/PostUpdate", RESPONDERS, SCOPED),
    rule("/klaxon.v1.Incidents/RecordCustomerImpact", MANAGERS, SCOPED),
    rule("/klaxon.v1.Incidents/Mitigate", MANAGERS, SCOPED),
    rule("/klaxon.v1.Incidents/Resolve", MANAGERS, SCOPED),
    rule("/klaxon.v1.Incidents/Reopen", MANAGERS, SCOPED),
    rule("/klaxon.v1.Incidents/ValidateResolution", MANAGERS, SCOPED),
    rule("/klaxon.v1.Incidents/MarkNoise", REVIEWERS, SCOPED),
    // Pulling people in wakes them up: the incident manager's call, not an
    // engineer's (an engineer asks the commander on the bridge).
    rule("/klaxon.v1.Incidents/PageResponder", MANAGERS, SCOPED),
    // Many commands over one stream: open to every role that may send one
    // of them (reporters and reviewers); each command is then authorized
    // by its own row above ([`PER_COMMAND`]).
    rule("/klaxon.v1.Incidents/Execute", &[M, E, X, R, S, I], ANY_TEAM),
    // Incidents: queries.
    rule("/klaxon.v1.Incidents/GetIncident", EVERYONE, ANY_TEAM),
    rule("/klaxon.v1.Incidents/ListIncidents", EVERYONE, ANY_TEAM),
    rule("/klaxon.v1.Incidents/GetHistory", READERS, ANY_TEAM),
    // The bridge records who joins and what they say.
    rule("/klaxon.v1.Bridge/Join", RESPONDERS, SCOPED),
    // Severity.
    rule("/klaxon.v1.SeverityEvaluator/Explain", READERS, ANY_TEAM),
    // A dry run of a candidate configuration reads every incident of the
    // window and the candidate's schedules: the incident manager's tool.
    rule("/klaxon.v1.SeverityEvaluator/TestPolicy", MANAGERS, ANY_TEAM),
    // The running configuration's lint names schedules, people on call and
    // channels: the same audience as the dry run.
    rule("/klaxon.v1.SeverityEvaluator/LintPolicy", MANAGERS, ANY_TEAM),
    // Paging.
    rule("/klaxon.v1.Paging/Acknowledge", RESPONDERS, SCOPED),
    rule("/klaxon.v1.Paging/WhoIsOnCall", EVERYONE, ANY_TEAM),
    rule("/klaxon.v1.Paging/ListPages", READERS, ANY_TEAM),
    // Schedules belong to no team: the decider lets an engineer change only
    // their own shifts, a manager anyone's.
    rule("/klaxon.v1.Paging/ChangeSchedule", RESPONDERS, ANY_TEAM),
    rule("/klaxon.v1.Paging/Coverage", READERS, ANY_TEAM),
    // The executive notifier.
    rule("/klaxon.v1.StatusFeed/Subscribe", EVERYONE, ANY_TEAM),
    // Reviews.
    rule("/klaxon.v1.Review/ReplayTimeline", READERS, ANY_TEAM),
    rule("/klaxon.v1.Review/GetMetrics", EVERYONE, ANY_TEAM),
    rule("/klaxon.v1.Review/GetReview", EVERYONE, ANY_TEAM),
    rule("/klaxon.v1.Review/EditReview", REVIEWERS, SCOPED),
    rule("/klaxon.v1.Review/ListActionItems", EVERYONE, ANY_TEAM),
    rule("/klaxon.v1.Review/ExportMarkdown", EVERYONE, ANY_TEAM),
    rule("/klaxon.v1.Review/Trends", EVERYONE, ANY_TEAM),
    // The audit trail shows who did what anywhere: managers only.
    rule("/klaxon.v1.Review/Audit", MANAGERS, ANY_TEAM),
    // The log server: Klaxon's own processes only.
    rule("/klaxon.v1.EventLog/Append", SERVICES, ANY_TEAM),
    rule("/klaxon.v1.EventLog/ReadAll", SERVICES, ANY_TEAM),
    rule("/klaxon.v1.EventLog/ReadStream", SERVICES, ANY_TEAM),
    rule("/klaxon.v1.EventLog/ReadOne", SERVICES, ANY_TEAM),
    rule("/klaxon.v1.EventLog/Locate", SERVICES, ANY_TEAM),
    rule("/klaxon.v1.EventLog/StreamVersion", SERVICES, ANY_TEAM),
    rule("/klaxon.v1.EventLog/Head", SERVICES, ANY_TEAM),
    rule("/klaxon.v1.EventLog/Subscribe", SERVICES, ANY_TEAM),
    rule("/klaxon.v1.EventLog/LoadCheckpoint", SERVICES, ANY_TEAM),
    rule("/klaxon.v1.EventLog/SaveCheckpoint", SERVICES, ANY_TEAM),
    // The log group's Raft messages and membership: the log servers and
    // `klaxond log-group`, with a service token.
    rule("/klaxon.v1.LogGroup/AppendEntries", SERVICES, ANY_TEAM),
    rule("/klaxon.v1.LogGroup/Vote", SERVICES, ANY_TEAM),
    rule("/klaxon.v1.LogGroup/InstallSnapshot", SERVICES, ANY_TEAM),
    rule("/klaxon.v1.LogGroup/Status", SERVICES, ANY_TEAM),
    rule("/klaxon.v1.LogGroup/AddNode", SERVICES, ANY_TEAM),
    rule("/klaxon.v1.LogGroup/RemoveNode", SERVICES, ANY_TEAM),
];

/// Methods that carry many commands, each authorized as the unary method
/// it stands for (with the token checked again, see [`crate::Reauth`]):
/// their own row only says who may open them.
pub const PER_COMMAND: &[&str] = &["/klaxon.v1.Incidents/Execute"];

/// The HTTP intake (Alertmanager, PagerDuty): who may report through it.
pub const HTTP_REPORTERS: &[Role] = WEBHOOK_REPORTERS;
/// The executives' status page (`/status`): who may sign in to it, the
/// readers of the status feed.
pub const STATUS_PAGE_READERS: &[Role] = EVERYONE;
/// `GET /metrics`: who may scrape it.
pub const METRICS_READERS: &[Role] = &[M, S, I];

/// What the table says about one call.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// Anyone may call it, without a token.
    Public,
    /// The role may call it.
    Allowed(&'static Rule),
    /// The role may not, or nobody may (no row).
    Denied(Option<&'static Rule>),
}

/// The row of `method`, if it has one.
pub fn rule_of(method: &str) -> Option<&'static Rule> {
    RULES.iter().find(|r| r.method == method)
}

/// Whether `method` is public.
pub fn is_public(method: &str) -> bool {
    method
        .strip_prefix('/')
        .and_then(|m| m.split_once('/'))
        .is_some_and(|(service, _)| PUBLIC_SERVICES.contains(&service))
}

/// What the table says about `role` calling `method`.
pub fn decide(method: &str, role: Role) -> Verdict {
    if is_public(method) {
        return Verdict::Public;
    }
    match rule_of(method) {
        Some(rule) if rule.roles.contains(&role) => Verdict::Allowed(rule),
        other => Verdict::Denied(other),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// DESIGN.md: executives read status feeds and summaries and report
    /// escalations, nothing else; the log (and its group) is reachable by
    /// services only; an integration only reports.
    #[test]
    fn executives_only_read_and_escalate_and_only_services_reach_the_log() {
        // `Execute` only opens a stream: each command on it is judged by its
        // own row (PER_COMMAND), so an executive's stream carries reports only.
        let reads = [
            "/Get",
            "/List",
            "/Subscribe",
            "/Trends",
            "/ExportMarkdown",
            "/WhoIsOnCall",
            ".Incidents/Report",
            ".Incidents/Execute",
        ];
        for method in PER_COMMAND {
            assert!(rule_of(method).is_some(), "{method} has its own row");
        }
        for rule in RULES.iter().filter(|r| r.roles.contains(&X)) {
            assert!(reads.iter().any(|r| rule.method.contains(r)), "{} is open to executives", rule.method);
        }
        for rule in RULES.iter().filter(|r| r.roles.contains(&I)) {
            assert!(rule.method.ends_with("/Report") || PER_COMMAND.contains(&rule.method), "{}", rule.method);
        }
        for rule in RULES {
            let log =
                rule.method.starts_with("/klaxon.v1.EventLog/") || rule.method.starts_with("/klaxon.v1.LogGroup/");
            assert_eq!(rule.roles == SERVICES, log, "{}", rule.method);
        }
    }

    #[test]
    fn every_method_has_one_row_and_unknown_ones_are_refused() {
        for (i, a) in RULES.iter().enumerate() {
            assert!(RULES[i + 1..].iter().all(|b| b.method != a.method), "{} twice", a.method);
        }
        for role in Role::ALL {
            assert_eq!(decide("/klaxon.v1.Incidents/Obliterate", role), Verdict::Denied(None));
            assert_eq!(decide("/grpc.health.v1.Health/Check", role), Verdict::Public);
        }
        assert!(!is_public("/grpc.health.v1.Healthy/Check"));
    }
}
