//! The `klaxon.v1.SeverityEvaluator` server.

use klaxon_proto::convert;
use klaxon_proto::status::from as to_status;
use klaxon_proto::v1::{self, severity_evaluator_server};
use tonic::{Request, Response, Status};

use crate::Handle;

/// The gRPC server of the evaluator.
#[derive(Clone)]
pub struct SeverityService {
    handle: Handle,
}

impl SeverityService {
    /// Serves explanations through `handle`.
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
        let id = convert::incident_id("incident_id", &request.get_ref().incident_id).map_err(to_status)?;
        let (incident, explanation) = self.handle.explain(id).await.map_err(to_status)?;
        let a = &explanation.assessment;
        let severity = |s| convert::severity_to_wire(s) as i32;
        Ok(Response::new(v1::SeverityExplanation {
            incident_id: id.to_string(),
            assessed: severity(a.severity),
            rule_id: a.rule_id.clone().unwrap_or_default(),
            reason: a.reason.clone(),
            reasons: a.reasons.clone(),
            current: incident.severity().map_or(0, severity),
            overridden: incident.severity_overridden(),
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
        }))
    }
}
