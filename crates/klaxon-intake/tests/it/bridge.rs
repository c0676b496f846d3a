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
    recorded: Vec<v1::NoteRecorded>,
}

async fn join(server: &Server, incident: &str, name: &str) -> Result<Participant, tonic::Status> {
    let (send, outbound) = mpsc::channel(16);
    send.send(v1::BridgeRequest {
        message: Some(bridge_request::Message::Join(v1::JoinBridge {
            incident_id: incident.into(),
            participant: name.into(),
            role: v1::IncidentRole::SubjectMatterExpert as i32,
        })),
        request_id: String::new(),
    })
    .await
    .unwrap();
    let mut receive = server.bridge().await.join(by(name, ReceiverStream::new(outbound))).await?.into_inner();
    let first = receive.message().await?.expect("a snapshot");
    let Some(bridge_response::Message::Snapshot(snapshot)) = first.message else {
        panic!("first message must be the snapshot")
    };
    Ok(Participant { send, receive, snapshot, recorded: Vec::new() })
}

impl Participant {
    async fn note(&self, text: &str) {
        self.note_with_id(text, "").await;
    }

    async fn note_with_id(&self, text: &str, request_id: &str) {
        let note = v1::BridgeRequest {
            message: Some(bridge_request::Message::Note(text.into())),
            request_id: request_id.into(),
        };
        self.send.send(note).await.unwrap();
    }

    /// The next message, waiting at most 10 s.
    async fn next(&mut self) -> Result<bridge_response::Message, tonic::Status> {
        let message = tokio::time::timeout(Duration::from_secs(10), self.receive.message())
            .await
            .expect("a message within 10 s")?
            .expect("the stream is open");
        Ok(message.message.expect("a message"))
    }

    /// The next event, waiting at most 10 s; answers to notes on the way
    /// are kept in `recorded`.
    async fn event(&mut self) -> v1::HistoryEntry {
        loop {
            match self.next().await.unwrap() {
                bridge_response::Message::Event(e) => return e,
                bridge_response::Message::NoteRecorded(r) => self.recorded.push(r),
                other => panic!("expected an event, got {other:?}"),
            }
        }
    }

    /// The next answer to a note, waiting at most 10 s; events on the way
    /// are dropped.
    async fn recorded(&mut self) -> v1::NoteRecorded {
        if !self.recorded.is_empty() {
            return self.recorded.remove(0);
        }
        loop {
            if let bridge_response::Message::NoteRecorded(r) = self.next().await.unwrap() {
                return r;
            }
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
        .send(v1::BridgeRequest {
            message: Some(bridge_request::Message::Leave(v1::LeaveBridge {})),
            request_id: String::new(),
        })
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
    let note =
        v1::BridgeRequest { message: Some(bridge_request::Message::Note("hi".into())), request_id: String::new() };
    send.send(note).await.unwrap();
    let err = server.bridge().await.join(by("e", ReceiverStream::new(outbound))).await.expect_err("join first");
    assert_eq!(err.code(), Code::InvalidArgument);
    assert!(err.message().contains("first message"), "{}", err.message());
    assert_eq!(server.log.head(), head);
}

#[tokio::test]
async fn a_note_sent_again_with_its_request_id_is_recorded_once_also_on_a_new_bridge() {
    let server = Server::start(Default::default()).await;
    let mut client = server.client().await;
    let id = sev1(&mut client, "checkout errors").await;
    let mut ana = join(&server, &id, "ana").await.unwrap();
    ana.note_with_id("rolling back", "note-1").await;
    let first = ana.recorded().await;
    assert_eq!((first.request_id.as_str(), first.deduplicated), ("note-1", false));
    assert_eq!(ana.event().await.position, first.position);
    let head = server.log.head();
    ana.note_with_id("rolling back", "note-1").await;
    let again = ana.recorded().await;
    assert_eq!((again.position, again.deduplicated), (first.position, true), "the first answer");
    assert_eq!(server.log.head(), head, "the retry wrote nothing");
    drop(ana);

    // A new bridge (the client reconnected): the same note is still the first.
    let rejoin = async {
        loop {
            // The old session records the departure first.
            match join(&server, &id, "ana").await {
                Ok(p) => break p,
                Err(e) if e.code() == Code::FailedPrecondition => tokio::time::sleep(Duration::from_millis(20)).await,
                Err(e) => panic!("{e}"),
            }
        }
    };
    let mut ana = tokio::time::timeout(Duration::from_secs(10), rejoin).await.expect("rejoined within 10 s");
    let head = server.log.head();
    ana.note_with_id("rolling back", "note-1").await;
    let again = ana.recorded().await;
    assert_eq!((again.position, again.deduplicated), (first.position, true));
    assert_eq!(server.log.head(), head, "the retry wrote nothing");
    let history = client.get_history(v1::GetHistoryRequest { incident_id: id }).await.unwrap().into_inner().entries;
    assert_eq!(history.iter().filter(|e| e.kind == "incident.status_update_posted.v1").count(), 1);
}

#[tokio::test]
async fn a_note_of_control_characters_is_refused_naming_the_note_and_writes_nothing() {
    let server = Server::start(Default::default()).await;
    let mut client = server.client().await;
    let id = sev1(&mut client, "checkout errors").await;
    let mut ana = join(&server, &id, "ana").await.unwrap();
    let head = server.log.head();
    ana.note("\u{0}\u{1}\u{2}").await;
    let refused = ana.next().await.expect_err("refused");
    assert_eq!(refused.code(), Code::InvalidArgument);
    assert!(refused.message().starts_with("invalid note: must be text without control characters"), "{refused:?}");
    // The session ended; only its departure was written.
    tokio::time::timeout(Duration::from_secs(10), async {
        while server.log.head().0 < head.0 + 1 {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await
    .expect("the departure is recorded");
    let history = client.get_history(v1::GetHistoryRequest { incident_id: id }).await.unwrap().into_inner().entries;
    let kinds: Vec<&str> = history.iter().skip_while(|e| e.position <= head.0).map(|e| e.kind.as_str()).collect();
    assert_eq!(kinds, ["incident.participant_left.v1"]);
}
