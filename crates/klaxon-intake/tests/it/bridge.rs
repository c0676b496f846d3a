//! The incident bridge over real gRPC streams.

use std::time::Duration;

use klaxon_proto::v1::{self, bridge_request, bridge_response};
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::Code;

use crate::support::{Server, by, sev1};

struct Participant {
    send: mpsc::Sender<v1::BridgeRequest>,
    receive: tonic::Streaming<v1::BridgeResponse>,
    snapshot: v1::Incident,
}

async fn join(server: &Server, incident: &str, name: &str) -> Result<Participant, tonic::Status> {
    let (send, outbound) = mpsc::channel(16);
    send.send(v1::BridgeRequest {
        message: Some(bridge_request::Message::Join(v1::JoinBridge {
            incident_id: incident.into(),
            participant: name.into(),
            role: v1::IncidentRole::SubjectMatterExpert as i32,
        })),
    })
    .await
    .unwrap();
    let mut receive = server.bridge().await.join(by(name, ReceiverStream::new(outbound))).await?.into_inner();
    let first = receive.message().await?.expect("a snapshot");
    let Some(bridge_response::Message::Snapshot(snapshot)) = first.message else {
        panic!("first message must be the snapshot")
    };
    Ok(Participant { send, receive, snapshot })
}

impl Participant {
    async fn note(&self, text: &str) {
        self.send.send(v1::BridgeRequest { message: Some(bridge_request::Message::Note(text.into())) }).await.unwrap();
    }

    /// The next event, waiting at most 10 s.
    async fn event(&mut self) -> v1::HistoryEntry {
        let message = tokio::time::timeout(Duration::from_secs(10), self.receive.message())
            .await
            .expect("an event within 10 s")
            .unwrap()
            .expect("the stream is open");
        match message.message {
            Some(bridge_response::Message::Event(e)) => e,
            other => panic!("expected an event, got {other:?}"),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_engineers_see_every_note_in_log_order() {
    let server = Server::start(Default::default()).await;
    let mut client = server.client().await;
    let id = sev1(&mut client, "search is down").await;
    let mut ana = join(&server, &id, "ana").await.unwrap();
    assert_eq!(ana.snapshot.participants, ["ana"]);
    let mut ben = join(&server, &id, "ben").await.unwrap();
    let mut cat = join(&server, &id, "cat").await.unwrap();
    assert_eq!(cat.snapshot.participants, ["ana", "ben", "cat"]);
    // Ana sees Ben and Cat join; Ben sees Cat join.
    assert_eq!(ana.event().await.summary, "ben joined the bridge as subject matter expert");
    assert_eq!(ana.event().await.summary, "cat joined the bridge as subject matter expert");
    assert_eq!(ben.event().await.summary, "cat joined the bridge as subject matter expert");

    const NOTES: usize = 10;
    let writers = [&ana, &ben, &cat];
    let sends = writers.iter().enumerate().map(|(w, p)| async move {
        for n in 0..NOTES {
            p.note(&format!("note {n} from {w}")).await;
        }
    });
    futures_join(sends).await;
    let mut seen = Vec::new();
    for p in [&mut ana, &mut ben, &mut cat] {
        let mut events = Vec::new();
        for _ in 0..3 * NOTES {
            events.push(p.event().await);
        }
        seen.push(events);
    }
    let positions = |events: &Vec<v1::HistoryEntry>| events.iter().map(|e| e.position).collect::<Vec<_>>();
    assert_eq!(positions(&seen[0]), positions(&seen[1]));
    assert_eq!(positions(&seen[0]), positions(&seen[2]));
    assert!(seen[0].windows(2).all(|w| w[0].position < w[1].position), "log order");
    assert!(seen[0].iter().all(|e| e.kind == "incident.status_update_posted.v1"));
    // The notes are internal status updates by their authors, in the log.
    let history =
        client.get_history(v1::GetHistoryRequest { incident_id: id.clone() }).await.unwrap().into_inner().entries;
    let notes: Vec<_> = history.iter().filter(|e| e.kind == "incident.status_update_posted.v1").collect();
    assert_eq!(notes.len(), 3 * NOTES);
    assert!(notes.iter().all(|e| e.data_json.contains("\"audience\":\"internal\"")));

    // Leaving is recorded and seen by the others; a dropped client counts as leaving.
    ana.send
        .send(v1::BridgeRequest { message: Some(bridge_request::Message::Leave(v1::LeaveBridge {})) })
        .await
        .unwrap();
    assert_eq!(ben.event().await.summary, "ana left the bridge");
    drop(cat);
    assert_eq!(ben.event().await.summary, "cat left the bridge");
    let now = client.get_incident(v1::GetIncidentRequest { incident_id: id }).await.unwrap().into_inner();
    assert_eq!(now.participants, ["ben"]);
}

async fn futures_join<F: std::future::Future<Output = ()>>(futures: impl Iterator<Item = F>) {
    let handles: Vec<_> = futures.collect();
    for f in handles {
        f.await;
    }
}

#[tokio::test]
async fn a_full_bridge_refuses_one_more_and_joining_needs_a_join_first() {
    let server = Server::start(klaxon_intake::Options { bridge_participants_max: 2, ..Default::default() }).await;
    let mut client = server.client().await;
    let id = sev1(&mut client, "queue backlog").await;
    let _a = join(&server, &id, "a").await.unwrap();
    let _b = join(&server, &id, "b").await.unwrap();
    let head = server.log.head();
    let err = join(&server, &id, "c").await.err().expect("the bridge is full");
    assert_eq!(err.code(), Code::ResourceExhausted);
    assert!(err.message().contains("full (2 participants)"), "{}", err.message());
    assert_eq!(server.log.head(), head);

    let err = join(&server, "INC-77", "d").await.err().expect("unknown incident");
    assert_eq!(err.code(), Code::NotFound);

    let (send, outbound) = mpsc::channel(1);
    send.send(v1::BridgeRequest { message: Some(bridge_request::Message::Note("hi".into())) }).await.unwrap();
    let err = server.bridge().await.join(by("e", ReceiverStream::new(outbound))).await.expect_err("join first");
    assert_eq!(err.code(), Code::InvalidArgument);
    assert!(err.message().contains("first message"), "{}", err.message());
    assert_eq!(server.log.head(), head);
}
