//! `Incidents/Execute`: commands as tagged messages on one stream, each
//! executed, refused and authorized exactly as its unary call.

use std::collections::BTreeMap;
use std::sync::Arc;

use klaxon_auth::{Auth, Role, SharedTeams, Teams, TokenStore};
use klaxon_proto::status::from_command_error;
use klaxon_proto::v1::{self, command_envelope::Command as C, command_outcome::Outcome};
use tokio::sync::mpsc;
use tonic::metadata::MetadataValue;
use tonic::{Code, Request, Status, Streaming};

use crate::support::{Server, by, ctx, sev1};

type Client = v1::incidents_client::IncidentsClient<tonic::transport::Channel>;

/// One open `Execute` stream.
struct Stream {
    tx: Option<mpsc::Sender<v1::CommandEnvelope>>,
    outcomes: Streaming<v1::CommandOutcome>,
}

impl Stream {
    /// Opens a stream with `metadata` applied to its request (who sends).
    async fn open(client: &mut Client, metadata: impl FnOnce(&mut Request<()>)) -> Stream {
        let (tx, rx) = mpsc::channel(256);
        let mut head = Request::new(());
        metadata(&mut head);
        let request = Request::from_parts(
            head.metadata().clone(),
            Default::default(),
            tokio_stream::wrappers::ReceiverStream::new(rx),
        );
        let outcomes = client.execute(request).await.expect("the stream opens").into_inner();
        Stream { tx: Some(tx), outcomes }
    }

    async fn by(client: &mut Client, actor: &str) -> Stream {
        let actor = actor.to_owned();
        Stream::open(client, move |r| *r = by(&actor, ())).await
    }

    async fn send(&self, tag: u64, command: C) {
        let tx = self.tx.as_ref().expect("not half-closed");
        tx.send(v1::CommandEnvelope { tag, command: Some(command) }).await.expect("the stream is open");
    }

    async fn next(&mut self) -> v1::CommandOutcome {
        self.outcomes.message().await.expect("no stream error").expect("an outcome, not the end")
    }

    /// Sends one command and waits for its outcome.
    async fn call(&mut self, tag: u64, command: C) -> Outcome {
        self.send(tag, command).await;
        let outcome = self.next().await;
        assert_eq!(outcome.tag, tag);
        outcome.outcome.expect("an outcome")
    }

    fn half_close(&mut self) {
        self.tx = None;
    }
}

fn refusal(outcome: Outcome) -> Status {
    match outcome {
        Outcome::Error(e) => from_command_error(&e),
        other => panic!("expected a refusal, got {other:?}"),
    }
}

fn answer(outcome: Outcome) -> v1::CommandResponse {
    match outcome {
        Outcome::Command(r) => r,
        other => panic!("expected a command's answer, got {other:?}"),
    }
}

/// The same refusal: code, message and the metadata the mapping adds.
fn assert_same(streamed: &Status, unary: &Status, what: &str) {
    assert_eq!((streamed.code(), streamed.message()), (unary.code(), unary.message()), "{what}");
    let version = |s: &Status| s.metadata().get("klaxon-current-version").map(|v| v.to_str().unwrap().to_owned());
    assert_eq!(version(streamed), version(unary), "{what}: klaxon-current-version");
}

fn report_of(title: &str) -> C {
    C::Report(v1::ReportRequest { title: title.into(), service: "payments".into(), ..Default::default() })
}

fn declare(id: &str, context: Option<v1::CommandContext>) -> C {
    C::Declare(v1::DeclareRequest { incident_id: id.into(), severity: v1::Severity::Sev2 as i32, context })
}

fn mitigate(id: &str, context: Option<v1::CommandContext>) -> C {
    C::Mitigate(v1::MitigateRequest { incident_id: id.into(), summary: "s".into(), context })
}

fn update(id: &str, text: &str, context: Option<v1::CommandContext>) -> C {
    C::PostUpdate(v1::PostUpdateRequest {
        incident_id: id.into(),
        audience: v1::Audience::Internal as i32,
        text: text.into(),
        context,
    })
}

#[tokio::test]
async fn commands_sent_at_once_on_one_stream_are_each_answered_with_their_tag() {
    let server = Server::start(Default::default()).await;
    let mut c = server.client().await;
    let mut stream = Stream::by(&mut c, "maria").await;
    // Five reports at once: each outcome names its tag and the incident
    // opened from that tag's title.
    for tag in 10..15 {
        stream.send(tag, report_of(&format!("outage {tag}"))).await;
    }
    let mut opened = BTreeMap::new();
    for _ in 10..15 {
        let outcome = stream.next().await;
        let Some(Outcome::Report(r)) = outcome.outcome else { panic!("{outcome:?}") };
        assert_eq!(r.result.unwrap().incident.unwrap().title, format!("outage {}", outcome.tag));
        assert!(opened.insert(outcome.tag, r.incident_id).is_none(), "tag {} answered twice", outcome.tag);
    }
    assert_eq!(opened.keys().copied().collect::<Vec<_>>(), (10..15).collect::<Vec<_>>());
    // Then a declaration of each at once, by the stream's actor.
    for (tag, id) in &opened {
        stream.send(tag + 100, declare(id, None)).await;
    }
    for _ in 0..opened.len() {
        let outcome = stream.next().await;
        let incident = answer(outcome.outcome.unwrap()).incident.unwrap();
        assert_eq!(incident.id, opened[&(outcome.tag - 100)]);
        assert_eq!(incident.status, v1::IncidentStatus::Declared as i32);
    }
    for id in opened.values() {
        let now = c.get_incident(v1::GetIncidentRequest { incident_id: id.clone() }).await.unwrap().into_inner();
        assert_eq!(now.status, v1::IncidentStatus::Declared as i32, "{id}");
        let history = c.get_history(v1::GetHistoryRequest { incident_id: id.clone() }).await.unwrap().into_inner();
        assert_eq!(history.entries.iter().find(|e| e.kind == "incident.declared.v1").unwrap().by, "maria");
    }
}

#[tokio::test]
async fn a_refused_command_answers_its_unary_status_writes_nothing_and_the_stream_goes_on() {
    let server = Server::start(Default::default()).await;
    let mut c = server.client().await;
    let id = sev1(&mut c, "checkout down").await;
    let mut stream = Stream::by(&mut c, "maria").await;
    let head = server.log.head();
    let cases: Vec<(&str, C)> = vec![
        ("no severity", C::Declare(v1::DeclareRequest { incident_id: id.clone(), severity: 0, context: None })),
        ("unknown incident", update("INC-99", "x", None)),
        ("stale expected version", mitigate(&id, ctx("", Some(1)))),
        ("report without a title", C::Report(v1::ReportRequest { title: " ".into(), ..Default::default() })),
        (
            "report with an expected version",
            C::Report(v1::ReportRequest { title: "t".into(), context: ctx("", Some(3)), ..Default::default() }),
        ),
    ];
    for (tag, (what, command)) in cases.into_iter().enumerate() {
        let streamed = refusal(stream.call(tag as u64, command.clone()).await);
        let unary = match command {
            C::Declare(r) => c.declare(by("maria", r)).await.map(|_| ()),
            C::PostUpdate(r) => c.post_update(by("maria", r)).await.map(|_| ()),
            C::Mitigate(r) => c.mitigate(by("maria", r)).await.map(|_| ()),
            C::Report(r) => c.report(by("maria", r)).await.map(|_| ()),
            _ => unreachable!(),
        }
        .expect_err(what);
        assert_same(&streamed, &unary, what);
    }
    let stale = refusal(stream.call(9, mitigate(&id, ctx("", Some(1)))).await);
    assert_eq!(stale.code(), Code::Aborted);
    assert!(stale.metadata().get("klaxon-current-version").is_some(), "the version travels: {stale:?}");
    // An envelope without a command names the field.
    stream.tx.as_ref().unwrap().send(v1::CommandEnvelope { tag: 20, command: None }).await.unwrap();
    let empty = stream.next().await;
    assert_eq!(empty.tag, 20);
    let empty = refusal(empty.outcome.unwrap());
    assert_eq!(empty.code(), Code::InvalidArgument);
    assert!(empty.message().starts_with("invalid command: "), "{}", empty.message());
    assert_eq!(server.log.head(), head, "a refused command wrote to the log");

    // The stream goes on: the next command is executed.
    let posted = answer(stream.call(21, update(&id, "still on it", None)).await);
    assert_eq!(posted.first_position, head.0 + 1);
    assert_eq!(server.log.head().0, head.0 + 1);
}

#[tokio::test]
async fn a_request_id_sent_again_is_a_duplicate_on_the_stream_and_across_transports() {
    let server = Server::start(Default::default()).await;
    let mut c = server.client().await;
    let id = sev1(&mut c, "search slow").await;
    let mut stream = Stream::by(&mut c, "maria").await;
    let first = answer(stream.call(1, update(&id, "looking", ctx("update-1", None))).await);
    assert!(!first.deduplicated);
    let head = server.log.head();
    assert_eq!(first.last_position, head.0);

    let again = answer(stream.call(2, update(&id, "looking", ctx("update-1", None))).await);
    assert!(again.deduplicated);
    assert_eq!((again.first_position, again.last_position), (first.first_position, first.last_position));
    // The same id over a unary call, and over another stream.
    let unary = c
        .post_update(by(
            "maria",
            v1::PostUpdateRequest {
                incident_id: id.clone(),
                audience: v1::Audience::Internal as i32,
                text: "looking".into(),
                context: ctx("update-1", None),
            },
        ))
        .await
        .unwrap()
        .into_inner();
    assert!(unary.deduplicated);
    let mut other = Stream::by(&mut c, "maria").await;
    assert!(answer(other.call(3, update(&id, "looking", ctx("update-1", None))).await).deduplicated);
    // A report's request id too.
    let report = || {
        C::Report(v1::ReportRequest { title: "disk full".into(), context: ctx("report-1", None), ..Default::default() })
    };
    let Outcome::Report(r1) = stream.call(4, report()).await else { panic!("the report was refused") };
    let Outcome::Report(r2) = other.call(5, report()).await else { panic!("the report was refused") };
    assert_eq!(r1.incident_id, r2.incident_id);
    assert!(r2.result.unwrap().deduplicated);
    assert_eq!(server.log.head().0, head.0 + 1, "one report written, nothing else");
    let history = c.get_history(v1::GetHistoryRequest { incident_id: id }).await.unwrap().into_inner().entries;
    assert_eq!(history.iter().filter(|e| e.kind == "incident.status_update_posted.v1").count(), 1);
}

#[tokio::test]
async fn half_closing_ends_the_stream_after_every_outcome() {
    let server = Server::start(Default::default()).await;
    let mut c = server.client().await;
    let mut stream = Stream::by(&mut c, "maria").await;
    // More than the server keeps in flight: it reads on as outcomes go out.
    let count = 150u64;
    for tag in 0..count {
        stream.send(tag, report_of(&format!("alert {tag}"))).await;
    }
    stream.half_close();
    let mut tags = Vec::new();
    while let Some(outcome) = stream.outcomes.message().await.expect("the stream ends cleanly") {
        assert!(matches!(outcome.outcome, Some(Outcome::Report(_))), "{outcome:?}");
        tags.push(outcome.tag);
    }
    tags.sort();
    assert_eq!(tags, (0..count).collect::<Vec<_>>(), "every command answered once before the end");
    assert_eq!(server.log.head().0, count);
}

#[tokio::test]
async fn a_stopping_server_answers_what_it_read_and_ends_the_stream_unavailable() {
    let server = Server::start(Default::default()).await;
    let mut c = server.client().await;
    let mut stream = Stream::by(&mut c, "maria").await;
    let Outcome::Report(_) = stream.call(1, report_of("before the stop")).await else { panic!("refused") };
    server.stop();
    let end = stream.outcomes.message().await.expect_err("the stream ends with a status");
    assert_eq!(end.code(), Code::Unavailable, "{end:?}");
    assert!(end.message().contains("the server is stopping"), "{}", end.message());
}

/// A server behind the authentication layer, and its tokens by name.
async fn with_auth() -> (Server, BTreeMap<&'static str, String>, tempfile::TempDir) {
    with_auth_and_rate(None).await
}

async fn with_auth_and_rate(
    rate: Option<Arc<klaxon_auth::RateLimit>>,
) -> (Server, BTreeMap<&'static str, String>, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("tokens.toml");
    let principals: [(&str, Role, &[&str]); 4] = [
        ("maria", Role::Manager, &[]),
        ("ana", Role::Engineer, &[]),
        ("pat", Role::Engineer, &["frontend"]),
        ("rita", Role::Reviewer, &[]),
    ];
    let mut tokens = BTreeMap::new();
    for (name, role, teams) in principals {
        let teams: Vec<String> = teams.iter().map(|t| t.to_string()).collect();
        tokens.insert(name, klaxon_auth::tokens::create(&path, name, role, &teams).unwrap());
    }
    let teams = Teams::from([("payments".into(), "payments".into()), ("web".into(), "frontend".into())]);
    let auth = Auth {
        tokens: Arc::new(TokenStore::open(&path).unwrap()),
        teams: SharedTeams::new(teams),
        rate,
        help_desk: Arc::default(),
    };
    (Server::start_with(Default::default(), Some(auth)).await, tokens, dir)
}

fn bearer<T>(token: &str, message: T) -> Request<T> {
    let mut request = Request::new(message);
    request.metadata_mut().insert("authorization", MetadataValue::try_from(format!("Bearer {token}")).unwrap());
    request
}

#[tokio::test]
async fn each_command_is_authorized_as_its_unary_call_and_a_revoked_token_stops_the_next() {
    let (server, tokens, dir) = with_auth().await;
    let mut c = server.client().await;
    let id = c
        .report(bearer(
            &tokens["maria"],
            v1::ReportRequest { title: "checkout down".into(), service: "payments".into(), ..Default::default() },
        ))
        .await
        .unwrap()
        .into_inner()
        .incident_id;
    let head = server.log.head();

    // An engineer opens a stream: a declaration is the managers', an
    // update is theirs too.
    let ana = tokens["ana"].clone();
    let mut stream = Stream::open(&mut c, |r| *r = bearer(&ana, ())).await;
    let streamed = refusal(stream.call(1, declare(&id, None)).await);
    let unary = c
        .declare(bearer(&ana, v1::DeclareRequest { incident_id: id.clone(), severity: 2, context: None }))
        .await
        .unwrap_err();
    assert_eq!(streamed.code(), Code::PermissionDenied);
    assert!(streamed.message().contains("may not call /klaxon.v1.Incidents/Declare"), "{}", streamed.message());
    assert_same(&streamed, &unary, "an engineer declaring");
    // A reviewer may open a stream (they mark noise) but not report.
    let rita = tokens["rita"].clone();
    let mut reviewer = Stream::open(&mut c, |r| *r = bearer(&rita, ())).await;
    let streamed = refusal(reviewer.call(1, report_of("not mine")).await);
    let unary = c
        .report(bearer(
            &rita,
            v1::ReportRequest { title: "not mine".into(), service: "payments".into(), ..Default::default() },
        ))
        .await
        .unwrap_err();
    assert_same(&streamed, &unary, "a reviewer reporting");
    // An engineer of another team may not act on a payments incident.
    let pat = tokens["pat"].clone();
    let mut scoped = Stream::open(&mut c, |r| *r = bearer(&pat, ())).await;
    let streamed = refusal(scoped.call(1, update(&id, "from frontend", None)).await);
    let unary = c
        .post_update(bearer(
            &pat,
            v1::PostUpdateRequest { incident_id: id.clone(), audience: 1, text: "from frontend".into(), context: None },
        ))
        .await
        .unwrap_err();
    assert_eq!(streamed.code(), Code::PermissionDenied);
    assert!(streamed.message().contains("may not act on service payments"), "{}", streamed.message());
    assert_same(&streamed, &unary, "a scoped engineer out of scope");
    assert_eq!(server.log.head(), head, "a refused command wrote to the log");

    // What the engineer may do goes through, recorded as them.
    let posted = answer(stream.call(2, update(&id, "on it", None)).await);
    assert_eq!(posted.first_position, head.0 + 1);
    let history = c.get_history(bearer(&tokens["maria"], v1::GetHistoryRequest { incident_id: id.clone() })).await;
    assert_eq!(history.unwrap().into_inner().entries.last().unwrap().by, "ana");

    // Revoked while the stream is open: the next command is refused.
    klaxon_auth::tokens::revoke(&dir.path().join("tokens.toml"), "ana").unwrap();
    let head = server.log.head();
    let streamed = refusal(stream.call(3, update(&id, "after revocation", None)).await);
    let unary = c
        .post_update(bearer(
            &ana,
            v1::PostUpdateRequest {
                incident_id: id.clone(),
                audience: 1,
                text: "after revocation".into(),
                context: None,
            },
        ))
        .await
        .unwrap_err();
    assert_eq!(streamed.code(), Code::Unauthenticated);
    assert_same(&streamed, &unary, "a revoked token");
    assert_eq!(server.log.head(), head, "a revoked token wrote to the log");

    // Without a token the stream does not open.
    let refused = c
        .execute(Request::new(tokio_stream::iter(Vec::<v1::CommandEnvelope>::new())))
        .await
        .expect_err("no token, no stream");
    assert_eq!(refused.code(), Code::Unauthenticated);
}

#[tokio::test]
async fn each_command_of_a_stream_counts_against_the_request_rate_like_a_unary_call() {
    use std::num::NonZeroU32;
    // One per second, bursts of three: the stream's opening and two commands.
    let rate = klaxon_auth::RateLimit::new(NonZeroU32::new(1).unwrap(), NonZeroU32::new(3).unwrap());
    let (server, tokens, _dir) = with_auth_and_rate(Some(Arc::new(rate))).await;
    let mut c = server.client().await;
    let ana = tokens["ana"].clone();
    let mut stream = Stream::open(&mut c, |r| *r = bearer(&ana, ())).await;
    for tag in 1..=2 {
        let Outcome::Report(_) = stream.call(tag, report_of(&format!("alert {tag}"))).await else {
            panic!("within the burst")
        };
    }
    let head = server.log.head();
    let over = refusal(stream.call(3, report_of("one too many")).await);
    assert_eq!(over.code(), Code::ResourceExhausted, "{over:?}");
    assert!(over.message().starts_with("ana (engineer) is over its request rate"), "{}", over.message());
    assert_eq!(server.log.head(), head, "a command over the rate wrote to the log");
}

/// The server reads a stream's commands only while fewer than
/// [`EXECUTE_IN_FLIGHT_MAX`] run: a client sending far faster than
/// commands complete does not make the server take them all in. Updates of
/// one incident run one at a time, so a client sending thousands is far
/// ahead of their outcomes. A stop runs exactly the commands read and no
/// other, so what the log gains after it is what was read ahead: at most the
/// limit.
#[tokio::test]
async fn a_stream_reads_at_most_the_in_flight_limit_of_commands_ahead_of_their_outcomes() {
    use klaxon_intake::grpc::EXECUTE_IN_FLIGHT_MAX;

    const SENT: u64 = 2000;
    let server = Server::start(Default::default()).await;
    let mut c = server.client().await;
    let id = sev1(&mut c, "one incident, many updates").await;
    let mut stream = Stream::by(&mut c, "maria").await;
    let tx = stream.tx.clone().expect("open");
    let sender = tokio::spawn(async move {
        for tag in 0..SENT {
            let envelope = v1::CommandEnvelope { tag, command: Some(update(&id, &format!("update {tag}"), None)) };
            if tx.send(envelope).await.is_err() {
                return;
            }
        }
    });
    let start = server.log.head().0;
    for _ in 0..10 {
        let outcome = stream.next().await;
        answer(outcome.outcome.expect("an outcome"));
    }
    server.stop();
    let at_stop = server.log.head().0;
    let mut answered = 10;
    let end = loop {
        match stream.outcomes.message().await {
            Ok(Some(outcome)) => {
                answer(outcome.outcome.expect("an outcome"));
                answered += 1;
            }
            Ok(None) => panic!("the stream ended without saying why"),
            Err(status) => break status,
        }
    };
    assert_eq!(end.code(), Code::Unavailable, "{end:?}");
    drop(sender);
    // Every command read was answered and only those ran: one event each.
    let end_head = server.log.head().0;
    assert_eq!(end_head - start, answered, "the events written and the commands answered");
    let ran_after_the_stop = end_head - at_stop;
    assert!(
        ran_after_the_stop <= EXECUTE_IN_FLIGHT_MAX as u64,
        "{ran_after_the_stop} of {SENT} commands ran after the stop: the stream had read more than \
         {EXECUTE_IN_FLIGHT_MAX} ahead of their outcomes"
    );
}
