//! Replicas side by side: two shells of the same service on one real log,
//! delivering through real channels to a real HTTP receiver that counts
//! requests by idempotency key.

use std::sync::{Arc, Mutex};

use axum::http::HeaderMap;
use klaxon_bus::Bus;
use klaxon_channels::{ChannelConfig, Channels};
use klaxon_domain::ids::IncidentId;
use klaxon_log::{Log, Position, StreamVersion};
use klaxon_reactor::claim::{self, CLAIM_KIND, EffectClaimed};
use klaxon_reactor::{Claim, Claims, Handle, Reactor, ReplicaId};
use tokio_util::sync::CancellationToken;

use crate::{Marking, World, late};

/// A webhook receiver on loopback that answers 200 and remembers each
/// request's `Idempotency-Key`; it stops when dropped.
struct Receiver {
    url: String,
    keys: Arc<Mutex<Vec<String>>>,
    stop: CancellationToken,
}

impl Drop for Receiver {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

impl Receiver {
    async fn start() -> Receiver {
        let keys = Arc::new(Mutex::new(Vec::new()));
        let seen = keys.clone();
        let app = axum::Router::new().route(
            "/hook",
            axum::routing::post(move |headers: HeaderMap| {
                let seen = seen.clone();
                async move {
                    let key = headers.get("idempotency-key").and_then(|v| v.to_str().ok()).unwrap_or("").to_owned();
                    seen.lock().unwrap().push(key);
                    "ok"
                }
            }),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/hook", listener.local_addr().unwrap());
        let stop = CancellationToken::new();
        let until = stop.clone();
        tokio::spawn(async move {
            let _ = axum::serve(listener, app).with_graceful_shutdown(until.cancelled_owned()).await;
        });
        Receiver { url, keys, stop }
    }

    /// Every key received, sorted (a key twice is a delivery made twice).
    fn keys(&self) -> Vec<String> {
        let mut keys = self.keys.lock().unwrap().clone();
        keys.sort();
        keys
    }
}

fn claims(replica: &str, lease_minutes: i64) -> Claims {
    Claims::new(ReplicaId::new(replica).unwrap(), u64::try_from(lease_minutes * 60_000).unwrap())
}

/// A marking replica that delivers late incidents at once through a
/// `hook` channel posting to `receiver`, claiming as `replica`.
fn replica(w: &World, receiver: &Receiver, replica: &str, stop: &CancellationToken) -> Handle<Marking> {
    let channel = ChannelConfig {
        name: "hook".into(),
        kind: "slack".into(),
        url: Some(receiver.url.clone()),
        attempts_max: Some(1),
        ..ChannelConfig::default()
    };
    let channels = Arc::new(Channels::new(&[channel], |_| None).unwrap());
    let marking = Marking { chain: 0, late: Some(chrono::TimeDelta::zero()), channel: "hook" };
    let reactor =
        Reactor::new(w.log.clone(), marking, w.clock.shared()).with_outbox(channels).with_claims(claims(replica, 5));
    let handle = reactor.handle();
    tokio::spawn(reactor.run(stop.clone()));
    handle
}

fn incident(n: u64) -> IncidentId {
    IncidentId::from_number(n).unwrap()
}

/// The claims in the log for incident `n`'s late delivery.
fn claims_of(w: &World, n: u64) -> Vec<EffectClaimed> {
    let stream = claim::stream("marking", &late(incident(n), "hook"));
    let records = w.log.read_stream(&stream, StreamVersion(1), 100).unwrap();
    assert!(records.iter().all(|r| r.kind.as_str() == CLAIM_KIND));
    records.iter().map(|r| EffectClaimed::of(r).unwrap()).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_replicas_on_one_log_deliver_each_message_once() {
    let w = World::new();
    let receiver = Receiver::start().await;
    let a = replica(&w, &receiver, "replica-a", &w.stop);
    let b = replica(&w, &receiver, "replica-b", &w.stop);
    let incidents = 20;
    for n in 1..=incidents {
        w.report(n).await;
    }
    // The barrier on both: every delivery either replica decided has been
    // claimed, made or skipped, and recorded.
    a.wait_processed(w.log.head()).await.unwrap();
    b.wait_processed(w.log.head()).await.unwrap();
    let head = w.log.head();
    a.wait_processed(head).await.unwrap();
    b.wait_processed(head).await.unwrap();

    let expected: Vec<String> = {
        let mut keys: Vec<String> = (1..=incidents).map(|n| format!("{}/late", incident(n))).collect();
        keys.sort();
        keys
    };
    assert_eq!(receiver.keys(), expected, "each message delivered exactly once");
    assert_eq!(w.marks(), (1..=incidents).map(|n| (n, 1)).collect::<Vec<_>>(), "each delivery recorded once");
    let (ca, cb) = (a.claim_counts(), b.claim_counts());
    assert_eq!(ca.won + cb.won, incidents, "one claim won per delivery: {ca:?} {cb:?}");
    for n in 1..=incidents {
        let held = claims_of(&w, n);
        assert_eq!(held.len(), 1, "one claim for INC-{n}: {held:?}");
        assert!(["replica-a", "replica-b"].contains(&held[0].replica.as_str()));
    }
    w.stop.cancel();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_delivery_whose_claimer_died_is_taken_over_once_its_lease_expires() {
    let w = World::new();
    let receiver = Receiver::start().await;
    w.report(1).await;
    // A replica claimed the delivery, then died before sending or recording.
    let bus = Bus::embedded(w.log.clone());
    let sends = late(incident(1), "hook");
    let now = crate::NowUtc::now_utc(&w.clock);
    let dead = claim::claim(&bus, &claims("replica-dead", 5), "marking", &sends, None, now).await.unwrap();
    assert_eq!(dead, Claim::Won { version: 1 });

    let b = replica(&w, &receiver, "replica-b", &w.stop);
    let progress = b.wait_processed(w.log.head()).await.unwrap();
    assert_eq!(receiver.keys(), Vec::<String>::new(), "the lease holds: nothing sent");
    assert_eq!(progress.due, Some(now + chrono::TimeDelta::minutes(5)), "decided again when the lease expires");
    assert_eq!(b.claim_counts().lost, 1);

    // A second before expiry: still held.
    w.clock.advance(chrono::TimeDelta::minutes(5) - chrono::TimeDelta::seconds(1));
    b.wait_processed(w.log.head()).await.unwrap();
    assert_eq!(receiver.keys(), Vec::<String>::new());

    // At expiry the survivor claims the next version and delivers, once.
    w.clock.advance(chrono::TimeDelta::seconds(1));
    let progress = b.wait_processed(w.log.head()).await.unwrap();
    assert_eq!(receiver.keys(), [format!("{}/late", incident(1))]);
    assert_eq!(w.marks(), [(1, 1)]);
    let replicas: Vec<String> = claims_of(&w, 1).into_iter().map(|c| c.replica).collect();
    assert_eq!(replicas, ["replica-dead", "replica-b"], "the next claim version");
    assert_eq!(progress.due, None);
    w.clock.advance(chrono::TimeDelta::hours(1));
    b.wait_processed(w.log.head()).await.unwrap();
    assert_eq!(receiver.keys().len(), 1, "once");
    w.stop.cancel();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_claim_is_lost_to_another_replica_and_kept_by_its_own() {
    let w = World::new();
    let bus = Bus::embedded(w.log.clone());
    let sends = late(incident(7), "hook");
    let now = crate::NowUtc::now_utc(&w.clock);
    let head = |w: &World| w.log.head();
    let a = claims("replica-a", 5);
    assert_eq!(claim::claim(&bus, &a, "marking", &sends, None, now).await.unwrap(), Claim::Won { version: 1 });
    let before = head(&w);
    // The same replica again (a retry, a restart under the same id): still
    // its claim, and nothing written.
    assert_eq!(claim::claim(&bus, &a, "marking", &sends, None, now).await.unwrap(), Claim::Won { version: 1 });
    assert_eq!(head(&w), before);
    // Another replica loses while the lease holds, and writes nothing.
    let b = claims("replica-b", 5);
    let lost = claim::claim(&bus, &b, "marking", &sends, None, now + chrono::TimeDelta::minutes(4)).await.unwrap();
    assert_eq!(lost, Claim::Lost { holder: "replica-a".into(), until: now + chrono::TimeDelta::minutes(5) });
    assert_eq!(head(&w), before, "a lost claim writes nothing");
    // Another service's delivery with the same keys is another claim.
    assert_eq!(claim::claim(&bus, &b, "other", &sends, None, now).await.unwrap(), Claim::Won { version: 1 });
    assert_eq!(head(&w), Position(before.0 + 1));
}

/// The log of `w` served over real gRPC on loopback, counting the calls it
/// answers by method; it stops when dropped.
struct CountingServer {
    address: std::net::SocketAddr,
    calls: Arc<Mutex<std::collections::BTreeMap<String, u64>>>,
    stop: CancellationToken,
}

impl Drop for CountingServer {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

impl CountingServer {
    async fn start(log: &klaxon_log::Log) -> CountingServer {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap();
        let stop = CancellationToken::new();
        let calls = Arc::new(Mutex::new(std::collections::BTreeMap::new()));
        let counted = calls.clone();
        let server = klaxon_bus::server::LogServer::new(log.clone(), stop.clone()).into_server();
        let until = stop.clone();
        tokio::spawn(async move {
            tonic::transport::Server::builder()
                // Called once per request the server takes, with its path
                // (`/klaxon.v1.EventLog/Append`): the count of round trips.
                .trace_fn(move |request| {
                    let method = request.uri().path().rsplit('/').next().unwrap_or("").to_owned();
                    *counted.lock().unwrap().entry(method).or_default() += 1;
                    tracing::Span::none()
                })
                .add_service(server)
                .serve_with_incoming_shutdown(
                    tokio_stream::wrappers::TcpListenerStream::new(listener),
                    until.cancelled_owned(),
                )
                .await
                .unwrap();
        });
        CountingServer { address, calls, stop }
    }

    /// A bus that appends and reads through this server (its log's
    /// records followed in process).
    fn bus(&self, log: &Log) -> Bus {
        let remote = klaxon_bus::RemoteLog::connect_lazy(&self.address.to_string()).unwrap();
        Bus::new(Arc::new(remote), Arc::new(log.clone()))
    }

    /// The calls answered so far, by method, and forgets them.
    fn take(&self) -> Vec<(String, u64)> {
        std::mem::take(&mut *self.calls.lock().unwrap()).into_iter().collect()
    }
}

fn calls(list: &[(&str, u64)]) -> Vec<(String, u64)> {
    list.iter().map(|(m, n)| ((*m).to_owned(), *n)).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_first_claim_over_grpc_is_one_append_without_a_version_read() {
    let w = World::new();
    let server = CountingServer::start(&w.log).await;
    let bus = server.bus(&w.log);
    let sends = late(incident(3), "hook");
    let now = crate::NowUtc::now_utc(&w.clock);

    let a = claims("replica-a", 5);
    assert_eq!(claim::claim(&bus, &a, "marking", &sends, None, now).await.unwrap(), Claim::Won { version: 1 });
    assert_eq!(server.take(), calls(&[("Append", 1)]), "the first claim: one round trip");
    // Another replica's claim conflicts, and reads the holder's claim at
    // the version the conflict reported: two round trips, as reading the
    // version and the claim first took.
    let b = claims("replica-b", 5);
    let lost = claim::claim(&bus, &b, "marking", &sends, None, now).await.unwrap();
    assert_eq!(lost, Claim::Lost { holder: "replica-a".into(), until: now + chrono::TimeDelta::minutes(5) });
    assert_eq!(server.take(), calls(&[("Append", 1), ("ReadStream", 1)]));
    // The holder again (a retry, a restart under the same id): its own
    // version-1 claim is answered idempotently, which says no version.
    assert_eq!(claim::claim(&bus, &a, "marking", &sends, None, now).await.unwrap(), Claim::Won { version: 1 });
    assert_eq!(server.take(), calls(&[("Append", 1), ("ReadStream", 1), ("StreamVersion", 1)]));
    // Past the lease, the other replica takes over at version 2.
    let later = now + chrono::TimeDelta::minutes(5);
    assert_eq!(claim::claim(&bus, &b, "marking", &sends, None, later).await.unwrap(), Claim::Won { version: 2 });
    assert_eq!(server.take(), calls(&[("Append", 2), ("ReadStream", 1)]));
    let replicas: Vec<String> = claims_of(&w, 3).into_iter().map(|c| c.replica).collect();
    assert_eq!(replicas, ["replica-a", "replica-b"], "a lost claim wrote nothing");
}

/// A replica's own first claim is in the log, another replica took the
/// delivery over after its lease, and the first claims again: the log
/// answers the first claim's event id as a retry (before it checks the
/// expected version), which must not count as holding the delivery.
async fn an_old_claim_of_its_own_does_not_win_over_a_later_claim(bus: &Bus, w: &World) {
    let sends = late(incident(5), "hook");
    let now = crate::NowUtc::now_utc(&w.clock);
    let (a, b) = (claims("replica-a", 5), claims("replica-b", 5));
    assert_eq!(claim::claim(bus, &a, "marking", &sends, None, now).await.unwrap(), Claim::Won { version: 1 });
    let later = now + chrono::TimeDelta::minutes(6);
    assert_eq!(claim::claim(bus, &b, "marking", &sends, None, later).await.unwrap(), Claim::Won { version: 2 });
    let head = w.log.head();

    // While b's claim holds, a loses to it and writes nothing.
    let again = later + chrono::TimeDelta::minutes(1);
    let lost = claim::claim(bus, &a, "marking", &sends, None, again).await.unwrap();
    assert_eq!(lost, Claim::Lost { holder: "replica-b".into(), until: later + chrono::TimeDelta::minutes(5) });
    assert_eq!(w.log.head(), head, "a lost claim writes nothing");
    // b keeps its own.
    assert_eq!(claim::claim(bus, &b, "marking", &sends, None, again).await.unwrap(), Claim::Won { version: 2 });
    // Once b's lease expired, a claims the next version.
    let expired = later + chrono::TimeDelta::minutes(5);
    assert_eq!(claim::claim(bus, &a, "marking", &sends, None, expired).await.unwrap(), Claim::Won { version: 3 });
    let replicas: Vec<String> = claims_of(w, 5).into_iter().map(|c| c.replica).collect();
    assert_eq!(replicas, ["replica-a", "replica-b", "replica-a"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_old_claim_of_its_own_does_not_win_over_a_later_claim_in_process() {
    let w = World::new();
    an_old_claim_of_its_own_does_not_win_over_a_later_claim(&Bus::embedded(w.log.clone()), &w).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_old_claim_of_its_own_does_not_win_over_a_later_claim_over_grpc() {
    let w = World::new();
    let server = CountingServer::start(&w.log).await;
    let bus = server.bus(&w.log);
    an_old_claim_of_its_own_does_not_win_over_a_later_claim(&bus, &w).await;
}

#[test]
fn replica_ids_are_checked() {
    assert!(ReplicaId::new("host-1.example:4242").is_ok());
    assert_eq!(ReplicaId::new("").unwrap_err(), "a replica id is 1 to 128 bytes, not 0");
    assert_eq!(ReplicaId::new("a b").unwrap_err(), "a replica id holds ASCII letters, digits and -_.:@, not ' '");
    assert_eq!(ReplicaId::from_host_and_pid("web 1/x", 42).as_str(), "web1x-42");
    assert_eq!(ReplicaId::from_host_and_pid("", 7).as_str(), "replica-7");
}
