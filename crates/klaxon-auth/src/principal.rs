//! Who is calling: a named principal with one role, optionally scoped to
//! teams.

use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;
use std::sync::Arc;

use klaxon_domain::ids::ReportSource;
use serde::{Deserialize, Serialize};

use crate::sources::{HelpDesk, SourceNotEarned};
use crate::tokens::TokenStore;

/// What a principal may do, as in DESIGN.md's security table.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// Everything on incidents: declare, override severity, assign, hand
    /// off, resolve; also what engineers and reviewers may do.
    Manager,
    /// Report, acknowledge their own pages, join bridges, post updates.
    Engineer,
    /// Read status feeds and incident summaries; report escalations
    /// (source `executive`); write nothing else.
    Executive,
    /// Read timelines, write reviews and action items.
    Reviewer,
    /// Klaxon's own processes: the log server's API (and what an
    /// integration may do, so that tokens made before that role existed
    /// keep working).
    Service,
    /// Monitoring and help-desk tools, and metrics scrapers: report over
    /// gRPC and the HTTP intake, read `/metrics`; never the log server's
    /// API, so a leaked Alertmanager or Prometheus token cannot write raw
    /// events or change a log group.
    Integration,
}

impl Role {
    /// Every role, in the order of the security table.
    pub const ALL: [Role; 6] =
        [Role::Manager, Role::Engineer, Role::Executive, Role::Reviewer, Role::Service, Role::Integration];

    /// Its name in token files and on the command line.
    pub fn name(self) -> &'static str {
        match self {
            Role::Manager => "manager",
            Role::Engineer => "engineer",
            Role::Executive => "executive",
            Role::Reviewer => "reviewer",
            Role::Service => "service",
            Role::Integration => "integration",
        }
    }

    /// Whether the role belongs to a program rather than a person: no
    /// request rate, reports are of source `api`, and it cannot hold an
    /// incident role, a page or an action item.
    pub fn is_program(self) -> bool {
        matches!(self, Role::Service | Role::Integration)
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Role {
    type Err = String;

    fn from_str(s: &str) -> Result<Role, String> {
        Role::ALL.into_iter().find(|r| r.name() == s).ok_or_else(|| {
            format!("{s:?} is not a role (manager, engineer, executive, reviewer, service, integration)")
        })
    }
}

/// An authenticated caller.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Principal {
    /// The name events record as their actor.
    pub name: String,
    /// What it may do.
    pub role: Role,
    /// The teams it is limited to; empty means every team.
    pub teams: Vec<String>,
}

impl Principal {
    /// Whether it may act on something owned by `team` (`None`: owned by
    /// no known team, which only unscoped principals may touch).
    pub fn in_scope(&self, team: Option<&str>) -> bool {
        !self.is_scoped() || team.is_some_and(|t| self.teams.iter().any(|mine| mine == t))
    }

    /// Whether it is limited to teams: only then does acting on something
    /// need that thing's team looked up.
    pub fn is_scoped(&self) -> bool {
        !self.teams.is_empty()
    }
}

impl fmt::Display for Principal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} ({}", self.name, self.role)?;
        if !self.teams.is_empty() {
            write!(f, " of team {}", self.teams.join(", "))?;
        }
        f.write_str(")")
    }
}

/// Which team owns each service: the service catalog's `team` keys.
pub type Teams = BTreeMap<String, String>;

/// What the authentication layer leaves in a request's extensions for the
/// handlers: the principal, the team of each service, so that a handler
/// that knows which service a command touches can check the principal's
/// scope ([`Grant::check_service`]), and who may report as the help desk
/// ([`Grant::report_source`]).
#[derive(Clone, Debug)]
pub struct Grant {
    /// Who is calling.
    pub principal: Principal,
    /// The service catalog's teams.
    pub teams: Arc<Teams>,
    /// The principals that may report as the help desk.
    pub help_desk: Arc<HelpDesk>,
    /// Every principal now (the token file as the layer reads it): whom
    /// a command may name for an incident role, a page or a shift
    /// ([`Grant::commander`], [`Grant::responder`], [`Grant::check_person`]).
    pub people: Arc<TokenStore>,
}

/// What a command may name someone for, and the call that says who can:
/// whoever may make the call may be named.
#[derive(Clone, Copy)]
enum Duty {
    /// The commander, or a handoff's recipient: whoever may accept a handoff.
    Command,
    /// Someone paged or put on call: whoever may acknowledge a page.
    Respond,
}

impl Duty {
    fn method(self) -> &'static str {
        match self {
            Duty::Command => "/klaxon.v1.Incidents/AcceptHandoff",
            Duty::Respond => "/klaxon.v1.Paging/Acknowledge",
        }
    }

    fn what(self) -> &'static str {
        match self {
            Duty::Command => "command an incident",
            Duty::Respond => "acknowledge a page",
        }
    }
}

/// A principal acting outside its teams.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{principal} may not act on {what}: {why}")]
pub struct OutOfScope {
    /// The principal, as displayed.
    pub principal: String,
    /// What was touched.
    pub what: String,
    /// Whose it is.
    pub why: String,
}

impl klaxon_domain::class::Classify for OutOfScope {
    fn class(&self) -> klaxon_domain::class::Class {
        klaxon_domain::class::Class::PermissionDenied
    }
}

impl Grant {
    /// Checks that the principal may act on something of `service`
    /// (`None`: an incident without a service).
    pub fn check_service(&self, service: Option<&str>) -> Result<(), OutOfScope> {
        let team = service.and_then(|s| self.teams.get(s)).map(String::as_str);
        if self.principal.in_scope(team) {
            return Ok(());
        }
        let (what, why) = match (service, team) {
            (None, _) => ("an incident of no service".to_owned(), "only unscoped principals may".to_owned()),
            (Some(s), None) => (format!("service {s}"), "it is in no team's catalog entry".to_owned()),
            (Some(s), Some(t)) => (format!("service {s}"), format!("it belongs to team {t}")),
        };
        Err(OutOfScope { principal: self.principal.to_string(), what, why })
    }

    /// The source a report of this principal carries when it claims
    /// `claimed` (`None`: unspecified), or why it may not (see
    /// [`crate::sources`]).
    pub fn report_source(&self, claimed: Option<ReportSource>) -> Result<ReportSource, SourceNotEarned> {
        crate::sources::report_source(&self.principal, &self.help_desk, claimed)
    }

    /// [`Grant::check_service`] as a gRPC status.
    pub fn permit(&self, service: Option<&str>) -> Result<(), tonic::Status> {
        self.check_service(service).map_err(|e| klaxon_proto::status::to_status(&e))
    }

    /// The principal named `name` in `field` if it can command an incident
    /// (the commander, a handoff's recipient): a principal now (revoked
    /// ones are not) of a role that may accept a handoff (the policy table:
    /// managers). Otherwise the incident would get a commander who cannot
    /// act on it, or a handoff nobody can accept. A principal limited to
    /// teams must also cover the incident's service: see
    /// [`Grant::check_named_scope`].
    pub fn commander(&self, field: &'static str, name: &str) -> Result<Principal, klaxon_domain::Error> {
        self.named_for(field, name, Duty::Command)
    }

    /// The principal named `name` in `field` if it can answer a page (a
    /// person paged directly, put on call by an override, or given a
    /// shift by a swap): a principal now of a role that may acknowledge
    /// pages (the policy table: managers and engineers). Otherwise the
    /// page, or every page of the shift, goes to someone who cannot
    /// acknowledge it.
    pub fn responder(&self, field: &'static str, name: &str) -> Result<Principal, klaxon_domain::Error> {
        self.named_for(field, name, Duty::Respond)
    }

    fn named_for(&self, field: &'static str, name: &str, duty: Duty) -> Result<Principal, klaxon_domain::Error> {
        let principal = self.named(field, name)?;
        if matches!(crate::policy::decide(duty.method(), principal.role), crate::policy::Verdict::Allowed(_)) {
            return Ok(principal);
        }
        let may = crate::policy::rule_of(duty.method()).map(|r| r.roles).unwrap_or_default();
        let may: Vec<String> = may.iter().map(|r| format!("{r}s")).collect();
        let reason = format!("{principal} cannot {}: only {} can", duty.what(), may.join(" and "));
        Err(klaxon_domain::Error::InvalidField { field, reason })
    }

    /// Checks that `named` (from [`Grant::commander`] or
    /// [`Grant::responder`]) may act on an incident of `service` (`None`:
    /// of no service).
    pub fn check_named_scope(
        &self,
        field: &'static str,
        named: Principal,
        service: Option<&str>,
    ) -> Result<(), klaxon_domain::Error> {
        let theirs = Grant { principal: named, ..self.clone() };
        theirs.check_service(service).map_err(|e| klaxon_domain::Error::InvalidField {
            field,
            reason: format!("{e}, so they cannot take this incident on"),
        })
    }

    /// Checks that `name` in `field` is a person now: a principal not
    /// revoked, and not a program (the holder of a scribe's or a subject
    /// matter expert's role).
    pub fn check_person(&self, field: &'static str, name: &str) -> Result<(), klaxon_domain::Error> {
        let principal = self.named(field, name)?;
        if principal.role.is_program() {
            let reason = format!("{principal} is a program, not a person");
            return Err(klaxon_domain::Error::InvalidField { field, reason });
        }
        Ok(())
    }

    fn named(&self, field: &'static str, name: &str) -> Result<Principal, klaxon_domain::Error> {
        self.people.principal_named(name).ok_or_else(|| klaxon_domain::Error::InvalidField {
            field,
            reason: format!("no principal is named {name} (`klaxond token list` shows them; revoked ones are gone)"),
        })
    }

    /// The grant of a request whose principal is limited to teams: the only
    /// callers for whom a handler needs to look up which service a command
    /// touches. `None` without authentication, and for an unscoped
    /// principal, who may act on every service.
    pub fn scoped<T>(request: &tonic::Request<T>) -> Option<&Grant> {
        request.extensions().get::<Grant>().filter(|grant| grant.principal.is_scoped())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn grant(teams: &[&str]) -> Grant {
        Grant {
            principal: Principal {
                name: "pat".into(),
                role: Role::Engineer,
                teams: teams.iter().map(|t| t.to_string()).collect(),
            },
            teams: Arc::new(Teams::from([("checkout".into(), "payments".into()), ("web".into(), "frontend".into())])),
            help_desk: Arc::default(),
            people: Arc::new(TokenStore::open(std::path::Path::new("/nonexistent/tokens.toml")).unwrap()),
        }
    }

    #[test]
    fn unscoped_principals_act_on_everything() {
        let g = grant(&[]);
        for service in [Some("checkout"), Some("web"), Some("unlisted"), None] {
            assert_eq!(g.check_service(service), Ok(()), "{service:?}");
        }
    }

    #[test]
    fn scoped_principals_act_only_on_their_teams_services() {
        let g = grant(&["payments"]);
        assert_eq!(g.check_service(Some("checkout")), Ok(()));
        let e = g.check_service(Some("web")).unwrap_err();
        assert_eq!(
            e.to_string(),
            "pat (engineer of team payments) may not act on service web: it belongs to team frontend"
        );
        assert!(g.check_service(Some("unlisted")).unwrap_err().to_string().contains("in no team's catalog entry"));
        assert!(g.check_service(None).unwrap_err().to_string().contains("an incident of no service"));
    }

    #[test]
    fn only_scoped_principals_need_a_service_looked_up() {
        let request = |grant: Option<Grant>| {
            let mut request = tonic::Request::new(());
            if let Some(grant) = grant {
                request.extensions_mut().insert(grant);
            }
            request
        };
        assert!(Grant::scoped(&request(None)).is_none());
        assert!(Grant::scoped(&request(Some(grant(&[])))).is_none());
        let scoped = request(Some(grant(&["payments"])));
        let denied = Grant::scoped(&scoped).expect("scoped").permit(Some("web")).unwrap_err();
        assert_eq!(denied.code(), tonic::Code::PermissionDenied);
    }

    #[test]
    fn roles_parse_from_their_names_only() {
        for role in Role::ALL {
            assert_eq!(role.name().parse::<Role>(), Ok(role));
        }
        assert!("admin".parse::<Role>().unwrap_err().contains("not a role"));
        assert!("Manager".parse::<Role>().is_err());
    }
}
