//! Report sources are earned, not claimed: which source a principal's
//! report may carry.
//!
//! Severity rules may key on a report's source (`reported_via`, such as the
//! example `exec-escalation` rule that makes an executive's report a Sev-1),
//! so a source is a privilege like a role:
//!
//! | source | who may report with it |
//! | --- | --- |
//! | `executive` | executives, and only it: their reports are escalations |
//! | `help_desk` | the principals listed in `[auth] help_desk_reporters` |
//! | `manual`, `api` | every other principal that may report |
//! | `alertmanager`, `pager_duty` | nobody over gRPC: the HTTP intake's endpoints set them |
//!
//! An unspecified source is the caller's own: `executive` for an
//! executive, `api` for a service, `manual` for a person. Anything else is
//! refused ([`SourceNotEarned`], `PERMISSION_DENIED`) before anything is
//! written.

use std::collections::BTreeSet;

use klaxon_domain::ids::ReportSource;

use crate::principal::{Principal, Role};

/// The principals allowed to report as the help desk (`[auth]
/// help_desk_reporters`).
pub type HelpDesk = BTreeSet<String>;

/// A source the principal may not claim.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{principal} may not report as {claimed}: {why}")]
pub struct SourceNotEarned {
    /// The principal, as displayed.
    pub principal: String,
    /// The claimed source.
    pub claimed: ReportSource,
    /// Who may.
    pub why: &'static str,
}

impl klaxon_domain::class::Classify for SourceNotEarned {
    fn class(&self) -> klaxon_domain::class::Class {
        klaxon_domain::class::Class::PermissionDenied
    }
}

/// The source of a report `principal` sends over gRPC claiming `claimed`
/// (`None`: unspecified), or why it may not.
pub fn report_source(
    principal: &Principal,
    help_desk: &HelpDesk,
    claimed: Option<ReportSource>,
) -> Result<ReportSource, SourceNotEarned> {
    let refuse = |claimed, why| Err(SourceNotEarned { principal: principal.to_string(), claimed, why });
    let executive = principal.role == Role::Executive;
    match claimed {
        None if executive => Ok(ReportSource::Executive),
        None if principal.role.is_program() => Ok(ReportSource::Api),
        None => Ok(ReportSource::Manual),
        Some(ReportSource::Executive) if executive => Ok(ReportSource::Executive),
        Some(other) if executive => refuse(other, "an executive's report is an escalation (source executive)"),
        Some(ReportSource::Executive) => refuse(ReportSource::Executive, "only executives' reports are escalations"),
        Some(ReportSource::HelpDesk) if help_desk.contains(&principal.name) => Ok(ReportSource::HelpDesk),
        Some(ReportSource::HelpDesk) => {
            refuse(ReportSource::HelpDesk, "only the principals of [auth] help_desk_reporters report as the help desk")
        }
        Some(source @ (ReportSource::Alertmanager | ReportSource::PagerDuty)) => {
            refuse(source, "this source is set by the HTTP intake (/v1/alertmanager, /v2/enqueue) only")
        }
        Some(source @ (ReportSource::Manual | ReportSource::Api)) => Ok(source),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every role and every claim: the source recorded, or `!` when refused.
    #[test]
    fn sources_are_earned_by_the_principal() {
        use ReportSource::*;
        let help_desk = super::HelpDesk::from(["desk".to_owned()]);
        let claims =
            [None, Some(Manual), Some(Api), Some(Alertmanager), Some(PagerDuty), Some(HelpDesk), Some(Executive)];
        let show = |principal: &Principal| {
            claims
                .iter()
                .map(|claim| match report_source(principal, &help_desk, *claim) {
                    Ok(source) => source.as_str().to_owned(),
                    Err(_) => "!".to_owned(),
                })
                .collect::<Vec<_>>()
                .join(" ")
        };
        let person = |name: &str, role| Principal { name: name.into(), role, teams: vec![] };
        //                                          none      manual api am pd help_desk executive
        assert_eq!(show(&person("ceo", Role::Executive)), "executive ! ! ! ! ! executive");
        assert_eq!(show(&person("ana", Role::Engineer)), "manual manual api ! ! ! !");
        assert_eq!(show(&person("maria", Role::Manager)), "manual manual api ! ! ! !");
        assert_eq!(show(&person("monitor", Role::Integration)), "api manual api ! ! ! !");
        assert_eq!(show(&person("klaxon-services", Role::Service)), "api manual api ! ! ! !");
        assert_eq!(show(&person("desk", Role::Engineer)), "manual manual api ! ! help_desk !");
        assert_eq!(show(&person("desk", Role::Executive)), "executive ! ! ! ! ! executive");
        let refused = report_source(&person("ana", Role::Engineer), &help_desk, Some(Executive)).unwrap_err();
        assert_eq!(
            refused.to_string(),
            "ana (engineer) may not report as executive: only executives' reports are escalations"
        );
    }
}
