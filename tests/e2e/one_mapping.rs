//! One error language (STYLE.md rule 7): a `tonic::Status` is built only
//! in `klaxon_proto::status`, the one mapping from an error's class to
//! gRPC and HTTP status. Every other place classifies its error
//! (`klaxon_domain::class::Classify`) and hands it there. Read from the
//! crates' sources, so a handler that builds its own status fails here,
//! naming the file and line.

use std::path::{Path, PathBuf};

/// The one module allowed to build a status.
const THE_MAPPING: &str = "crates/klaxon-proto/src/status.rs";

/// Where a line of non-test code builds a status: a call of one of
/// `Status`'s constructors (`Status::new`, `Status::invalid_argument`,
/// `tonic::Status::with_details`, ...). The domain's incident `Status::Declared`
/// and `ServingStatus::…` are not constructors and do not count.
fn builds_status(line: &str) -> bool {
    let code = line.split("//").next().unwrap_or_default();
    code.match_indices("Status::").any(|(at, _)| {
        let before = code[..at].chars().next_back();
        let after = code[at + "Status::".len()..].chars().next();
        !before.is_some_and(|c| c.is_alphanumeric() || c == '_') && after.is_some_and(|c| c.is_ascii_lowercase())
    })
}

/// The offending lines of one source file, as `path:line: text`. Test code
/// is skipped: files named `tests.rs`, and everything from a `#[cfg(test)]`
/// inline module (`mod tests {`, which ends a file) on.
fn offences(path: &str, text: &str) -> Vec<String> {
    if path == THE_MAPPING || path.ends_with("/tests.rs") || path.contains("/tests/") {
        return Vec::new();
    }
    let lines: Vec<&str> = text.lines().collect();
    let inline_tests = lines.windows(2).position(|pair| {
        let next = pair[1].trim();
        pair[0].trim() == "#[cfg(test)]" && next.starts_with("mod ") && next.contains('{')
    });
    lines[..inline_tests.unwrap_or(lines.len())]
        .iter()
        .enumerate()
        .filter(|(_, line)| builds_status(line))
        .map(|(n, line)| format!("{path}:{}: {}", n + 1, line.trim()))
        .collect()
}

fn sources(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap_or_else(|e| panic!("read {}: {e}", dir.display())) {
        let path = entry.unwrap().path();
        if path.is_dir() {
            sources(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

#[test]
fn no_status_is_built_outside_the_one_mapping() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap();
    let mut files = Vec::new();
    for krate in std::fs::read_dir(root.join("crates")).unwrap() {
        let src = krate.unwrap().path().join("src");
        if src.is_dir() {
            sources(&src, &mut files);
        }
    }
    assert!(files.len() > 50, "the crates' sources were found ({} files)", files.len());
    let mut found = Vec::new();
    for file in files {
        let relative = file.strip_prefix(root).unwrap().to_string_lossy().into_owned();
        found.extend(offences(&relative, &std::fs::read_to_string(&file).unwrap()));
    }
    assert_eq!(found, Vec::<String>::new(), "build these through klaxon_proto::status");
    let mapping = std::fs::read_to_string(root.join(THE_MAPPING)).unwrap();
    assert!(mapping.lines().any(builds_status), "the mapping itself builds the statuses");
}

/// The check itself can fail: a handler's own status is named with its
/// line; the domain's incident status, comments and test code are not.
#[test]
fn a_status_built_in_a_handler_is_named() {
    let source = "\
use tonic::Status;
#[cfg(test)]
mod tests;
fn a() -> Status { tonic::Status::invalid_argument(\"x\") }
fn b(s: IncidentStatus) -> bool { s == Status::Declared || h == ServingStatus::Serving }
// Status::internal is what we used to write
fn c() -> Result<(), Status> { Err(Status::new(Code::Internal, \"x\")) }
#[cfg(test)]
mod tests { fn d() { Status::unavailable(\"x\"); } }
";
    assert_eq!(
        offences("crates/klaxon-paging/src/grpc.rs", source),
        [
            "crates/klaxon-paging/src/grpc.rs:4: fn a() -> Status { tonic::Status::invalid_argument(\"x\") }",
            "crates/klaxon-paging/src/grpc.rs:7: fn c() -> Result<(), Status> { Err(Status::new(Code::Internal, \"x\")) }",
        ]
    );
    assert_eq!(offences("crates/klaxon-paging/src/grpc/tests.rs", source), Vec::<String>::new());
    assert_eq!(offences(THE_MAPPING, source), Vec::<String>::new());
}

/// The same condition gets the same status from every service of a real
/// `klaxond`: an unknown incident is `NOT_FOUND` ("unknown incident …") and
/// a malformed id `INVALID_ARGUMENT` from intake, paging, review and severity; a stale
/// `expected_version` is `ABORTED` with the current version in the
/// `klaxon-current-version` trailer from intake and review alike.
#[test]
fn the_same_condition_gets_the_same_status_from_every_service() {
    use klaxon_proto::v1;
    use klaxon_tests::Klaxond;
    use klaxon_tests::auth::as_person;
    use tonic::Code;

    let dir = tempfile::tempdir().unwrap();
    let config = concat!(env!("CARGO_MANIFEST_DIR"), "/../deploy/klaxon.toml");
    let server = Klaxond::start_with(&dir.path().join("data"), &["--config", config]);
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let url = server.url.clone();
    let channel =
        runtime.block_on(async move { tonic::transport::Endpoint::from_shared(url).unwrap().connect().await.unwrap() });
    let mut incidents = v1::incidents_client::IncidentsClient::with_interceptor(channel.clone(), as_person("maria"));
    let mut paging = v1::paging_client::PagingClient::with_interceptor(channel.clone(), as_person("maria"));
    let mut review = v1::review_client::ReviewClient::with_interceptor(channel.clone(), as_person("rita"));
    let mut severity =
        v1::severity_evaluator_client::SeverityEvaluatorClient::with_interceptor(channel.clone(), as_person("maria"));

    // Every service's answer for one incident id, by RPC.
    let mut answers = |id: &str| -> Vec<(&'static str, tonic::Status)> {
        let id = id.to_owned();
        let edit = v1::EditReviewRequest {
            context: None,
            incident_id: id.clone(),
            edit: Some(v1::edit_review_request::Edit::AddActionItem("Add a canary".into())),
        };
        let mitigate = v1::MitigateRequest { context: None, incident_id: id.clone(), summary: "rolled back".into() };
        runtime.block_on(async {
            vec![
                (
                    "Incidents/GetIncident",
                    incidents.get_incident(v1::GetIncidentRequest { incident_id: id.clone() }).await.unwrap_err(),
                ),
                ("Incidents/Mitigate", incidents.mitigate(mitigate).await.unwrap_err()),
                (
                    "Paging/ListPages",
                    paging.list_pages(v1::ListPagesRequest { incident_id: id.clone() }).await.unwrap_err(),
                ),
                (
                    "Review/GetMetrics",
                    review.get_metrics(v1::GetMetricsRequest { incident_id: id.clone() }).await.unwrap_err(),
                ),
                ("Review/EditReview", review.edit_review(edit).await.unwrap_err()),
                (
                    "SeverityEvaluator/Explain",
                    severity
                        .explain(v1::ExplainSeverityRequest { incident_id: id.clone(), report: None })
                        .await
                        .unwrap_err(),
                ),
            ]
        })
    };
    for (rpc, status) in answers("INC-999") {
        assert_eq!(status.code(), Code::NotFound, "{rpc} on an unknown incident: {status:?}");
        // In the same words, too.
        assert!(
            status.message().contains("unknown incident INC-999"),
            "{rpc} names the incident: {}",
            status.message()
        );
    }
    for (rpc, status) in answers("incident nine") {
        assert_eq!(status.code(), Code::InvalidArgument, "{rpc} on a malformed id: {status:?}");
        assert!(status.message().contains("incident_id"), "{rpc} names the field: {}", status.message());
    }
    // A page of an incident paging never saw: the incident is unknown.
    let ack = v1::AcknowledgeRequest { page_id: "INC-999-P1".into(), ..Default::default() };
    let status = runtime.block_on(paging.acknowledge(ack)).unwrap_err();
    assert_eq!(status.code(), Code::NotFound, "{status:?}");
    assert!(status.message().contains("unknown incident INC-999"), "{}", status.message());

    // A version conflict, from intake and from review.
    let report = v1::ReportRequest { title: "Search is slow".into(), service: "search".into(), ..Default::default() };
    let id = runtime.block_on(incidents.report(report)).unwrap().into_inner().incident_id;
    let declare = v1::DeclareRequest { context: None, incident_id: id.clone(), severity: v1::Severity::Sev2 as i32 };
    let declared = runtime.block_on(incidents.declare(declare)).unwrap().into_inner();
    let version = declared.incident.unwrap().version;
    let stale =
        |expected: u64| Some(v1::CommandContext { request_id: String::new(), expected_version: Some(expected) });
    let mitigate = v1::MitigateRequest { context: stale(version + 5), incident_id: id.clone(), summary: "x".into() };
    let conflict = runtime.block_on(incidents.mitigate(mitigate)).unwrap_err();
    assert_eq!(conflict.code(), Code::Aborted, "{conflict:?}");
    assert_eq!(conflict.metadata().get("klaxon-current-version").unwrap(), version.to_string().as_str());

    let resolve = v1::ResolveRequest { context: None, incident_id: id.clone(), summary: "index rebuilt".into() };
    runtime.block_on(incidents.resolve(resolve)).unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    let opened = loop {
        let view = runtime.block_on(review.get_review(v1::GetReviewRequest { incident_id: id.clone() }));
        match view {
            Ok(view) if view.get_ref().opened => break view.into_inner(),
            _ => {}
        }
        assert!(std::time::Instant::now() < deadline, "the review did not open within 30 s");
        std::thread::sleep(std::time::Duration::from_millis(50));
    };
    let edit = v1::EditReviewRequest {
        context: stale(opened.version + 5),
        incident_id: id.clone(),
        edit: Some(v1::edit_review_request::Edit::AddActionItem("Add a canary".into())),
    };
    let conflict = runtime.block_on(review.edit_review(edit)).unwrap_err();
    assert_eq!(conflict.code(), Code::Aborted, "{conflict:?}");
    assert_eq!(conflict.metadata().get("klaxon-current-version").unwrap(), opened.version.to_string().as_str());

    drop((incidents, paging, review, severity, channel, runtime));
    assert!(server.stop().success());
}
