//! The `klaxon.v1.SeverityEvaluator` server.

use std::collections::BTreeSet;

use klaxon_domain::ids::{CustomerId, ServiceName};
use klaxon_domain::incident::Incident;
use klaxon_domain::policy::{Breach, Escalated, IncidentDiff, Outcome, PageSeen, Window};
use klaxon_domain::severity::{Explanation, Facts};
use klaxon_proto::convert;
use klaxon_proto::status::from as to_status;
use klaxon_proto::text::check_text;
use klaxon_proto::v1::{self, severity_evaluator_server};
use tonic::{Request, Response, Status};

use crate::Handle;

/// The gRPC server of the evaluator.
#[derive(Clone)]
pub struct SeverityService {
    handle: Handle,
}

impl SeverityService {
    /// Serves explanations and policy tests through `handle`.
    pub fn new(handle: Handle) -> SeverityService {
        SeverityService { handle }
    }

    /// The tonic server to add to a router.
    pub fn into_server(self) -> severity_evaluator_server::SeverityEvaluatorServer<SeverityService> {
        severity_evaluator_server::SeverityEvaluatorServer::new(self)
    }
}

#[tonic::async_trait]
impl severity_evaluator_server::SeverityEvaluator for SeverityService {
    async fn explain(
        &self,
        request: Request<v1::ExplainSeverityRequest>,
    ) -> Result<Response<v1::SeverityExplanation>, Status> {
        let request = request.into_inner();
        if let Some(report) = &request.report {
            if !request.incident_id.is_empty() {
                return Err(klaxon_proto::status::invalid(
                    "incident_id",
                    "must be empty when a hypothetical report is given",
                ));
            }
            check_text(report).map_err(to_status)?;
            let facts = facts(report).map_err(to_status)?;
            let explanation = self.handle.explain_facts(facts);
            return Ok(Response::new(explanation_to_wire("", None, &explanation)));
        }
        let id = convert::incident_id("incident_id", &request.incident_id).map_err(to_status)?;
        let (incident, explanation) = self.handle.explain(id).await.map_err(to_status)?;
        Ok(Response::new(explanation_to_wire(&id.to_string(), Some(&incident), &explanation)))
    }

    async fn test_policy(
        &self,
        request: Request<v1::TestPolicyRequest>,
    ) -> Result<Response<v1::PolicyTestReport>, Status> {
        let request = request.into_inner();
        if request.config_toml.trim().is_empty() {
            return Err(klaxon_proto::status::invalid("config_toml", "must hold the candidate configuration"));
        }
        let window = Window {
            from: convert::from_timestamp("from", request.from.as_ref()).map_err(to_status)?,
            until: convert::from_timestamp("until", request.until.as_ref()).map_err(to_status)?,
        };
        let outcome = self.handle.test_policy(&request.config_toml, window).await.map_err(to_status)?;
        Ok(Response::new(outcome_to_wire(&outcome)))
    }

    async fn lint_policy(
        &self,
        request: Request<v1::LintPolicyRequest>,
    ) -> Result<Response<v1::PolicyLintReport>, Status> {
        let grant = request.extensions().get::<klaxon_auth::Grant>().cloned();
        let (at, days, mut findings) = self.handle.lint_running(request.into_inner().days).await.map_err(to_status)?;
        // Only a server knows its principals: everyone the configuration
        // pages must be able to acknowledge (with authentication; without,
        // the server knows nobody and says nothing).
        if let Some(grant) = grant {
            for (key, name) in self.handle.running_people() {
                if let Err(refused) = grant.responder("person", &name) {
                    let why = match refused {
                        klaxon_domain::Error::InvalidField { reason, .. } => reason,
                        other => other.to_string(),
                    };
                    findings.push(klaxon_domain::policy::cannot_acknowledge(key, &name, &why));
                }
            }
        }
        Ok(Response::new(v1::PolicyLintReport {
            findings: findings
                .into_iter()
                .map(|f| v1::PolicyFinding { kind: f.kind.as_str().to_owned(), key: f.key, message: f.message })
                .collect(),
            at: Some(convert::timestamp(at)),
            days,
        }))
    }
}

/// The facts of a hypothetical report, as intake would record them: its
/// customers counted, several making it multi-customer. The tier is the
/// handle's to look up.
fn facts(report: &v1::HypotheticalReport) -> Result<Facts, klaxon_domain::Error> {
    let customers: BTreeSet<CustomerId> =
        report.customers.iter().map(|c| convert::parse("customers", c)).collect::<Result<_, _>>()?;
    let count = u32::try_from(customers.len()).unwrap_or(u32::MAX);
    Ok(Facts {
        service: convert::parse_optional::<ServiceName>("service", &report.service)?,
        tier: None,
        customers_affected: count,
        multi_customer: count > 1,
        source: convert::source("source", report.source)?,
        title: report.title.trim().to_owned(),
        description: report.description.trim().to_owned(),
        labels: report.labels.iter().map(|(k, v)| (k.clone(), v.clone())).collect(),
    })
}

fn severity(s: klaxon_domain::ids::Severity) -> i32 {
    convert::severity_to_wire(s) as i32
}

fn explanation_to_wire(id: &str, incident: Option<&Incident>, explanation: &Explanation) -> v1::SeverityExplanation {
    let a = &explanation.assessment;
    v1::SeverityExplanation {
        incident_id: id.to_owned(),
        assessed: severity(a.severity),
        rule_id: a.rule_id.clone().unwrap_or_default(),
        reason: a.reason.clone(),
        reasons: a.reasons.clone(),
        current: incident.and_then(Incident::severity).map_or(0, severity),
        overridden: incident.is_some_and(Incident::severity_overridden),
        rules: explanation
            .rules
            .iter()
            .map(|r| v1::RuleCheck {
                id: r.id.clone(),
                severity: severity(r.severity),
                matched: r.matched,
                chosen: r.chosen,
                conditions: r
                    .conditions
                    .iter()
                    .map(|c| v1::ConditionCheck {
                        condition: c.condition.clone(),
                        held: c.held,
                        detail: c.detail.clone(),
                    })
                    .collect(),
            })
            .collect(),
        lines: explanation.render(),
    }
}

fn outcome_to_wire(outcome: &Outcome) -> v1::PolicyTestReport {
    let s = &outcome.summary;
    v1::PolicyTestReport {
        summary: Some(v1::PolicyTestSummary {
            incidents: s.incidents,
            severity_changed: s.severity_changed,
            rule_changed: s.rule_changed,
            paging_differs: s.paging_differs,
            escalations_differ: s.escalations_differ,
            breaches_new: s.breaches_new,
            breaches_removed: s.breaches_removed,
            acks_not_replayed: s.acks_not_replayed,
        }),
        incidents: outcome.incidents.iter().map(incident_to_wire).collect(),
        from: outcome.window.from.map(convert::timestamp),
        until: outcome.window.until.map(convert::timestamp),
    }
}

fn incident_to_wire(i: &IncidentDiff) -> v1::IncidentReplay {
    let pages = |list: &[PageSeen]| {
        list.iter()
            .map(|p| v1::ReplayedPage {
                at: Some(convert::timestamp(p.at)),
                responder: p.responder.to_string(),
                level: p.level,
                round: p.round,
                reason: p.reason.clone(),
            })
            .collect()
    };
    let escalations = |list: &[Escalated]| {
        list.iter()
            .map(|e| v1::ReplayedEscalation {
                at: Some(convert::timestamp(e.at)),
                from_level: e.from_level,
                to_level: e.to_level,
            })
            .collect()
    };
    let breaches = |list: &[Breach]| {
        list.iter()
            .map(|b| v1::ReplayedBreach { slo: b.slo.clone(), due_at: Some(convert::timestamp(b.due_at)) })
            .collect()
    };
    v1::IncidentReplay {
        incident_id: i.incident.to_string(),
        title: i.title.clone(),
        severity_before: i.severity_before.map_or(0, severity),
        rule_before: i.rule_before.clone().unwrap_or_default(),
        severity_after: i.severity_after.map_or(0, severity),
        rule_after: i.rule_after.clone().unwrap_or_default(),
        pages_before: pages(&i.pages_before),
        pages_after: pages(&i.pages_after),
        escalations_before: escalations(&i.escalations_before),
        escalations_after: escalations(&i.escalations_after),
        breaches_before: breaches(&i.breaches_before),
        breaches_after: breaches(&i.breaches_after),
        acks_not_replayed: i.acks_not_replayed.clone(),
        severity_changed: i.severity_changed,
        rule_changed: i.rule_changed,
        paging_differs: i.paging_differs,
        escalations_differ: i.escalations_differ,
        breaches_new: i.breaches_new,
        breaches_removed: i.breaches_removed,
    }
}
