//! The replicated log as real processes: three `klaxond serve log` nodes
//! with `[log_group]`, a real `nats-server`, clients that are the real
//! `RemoteLog`. Leaders are killed with SIGKILL, cut off by black-holing
//! proxies, followers wiped; what must hold: every acknowledged append is on
//! every node at the same position, positions are gapless, nothing is
//! duplicated, a position is never acknowledged for two different appends,
//! and the relay to JetStream follows the leader.

use std::collections::{BTreeMap, HashSet};
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use klaxon_bus::{EventLog, RemoteLog};
use klaxon_log::{
    EventData, EventKind, ExpectedVersion, Metadata, NewEvent, Position, Record, StreamId, StreamVersion,
};
use klaxon_tests::group::{GroupOptions, LogGroup};
use klaxon_tests::nats::NatsServer;
use rand::{Rng, SeedableRng};

/// An acknowledged append: where the log said it is.
#[derive(Clone, Debug)]
struct Ack {
    at: Instant,
    position: Position,
    stream: String,
    version: u64,
    id: uuid::Uuid,
}

/// Clients appending in a loop, each to its own stream with exact expected
/// versions, recording every acknowledgement.
struct Storm {
    acks: Arc<Mutex<Vec<Ack>>>,
    stop: Arc<std::sync::atomic::AtomicBool>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

fn event(client: usize, n: u64) -> NewEvent {
    NewEvent {
        id: uuid::Uuid::new_v4(),
        kind: EventKind::new("storm.appended.v1").unwrap(),
        data: EventData::from_value(&serde_json::json!({ "client": client, "n": n })).unwrap(),
        metadata: Metadata { actor: Some(format!("client-{client}")), ..Metadata::default() },
    }
}

impl Storm {
    fn start(runtime: &tokio::runtime::Runtime, addresses: &str, clients: usize) -> Storm {
        let acks = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let token = klaxon_tests::auth::token(klaxon_tests::auth::SERVICE);
        let _entered = runtime.enter();
        let tasks = (0..clients)
            .map(|c| {
                let remote = RemoteLog::connect_lazy_tls(addresses, None, Some(token)).unwrap();
                let (acks, stop) = (acks.clone(), stop.clone());
                runtime.spawn(async move {
                    let stream = StreamId::new(format!("storm-{c}")).unwrap();
                    let mut version = 0u64;
                    let mut n = 0u64;
                    while !stop.load(std::sync::atomic::Ordering::SeqCst) {
                        n += 1;
                        let e = event(c, n);
                        let id = e.id;
                        match remote.append(&stream, ExpectedVersion::Exact(StreamVersion(version)), vec![e]).await {
                            Ok(a) => {
                                version = a.next_version.0 - 1;
                                let ack = Ack {
                                    at: Instant::now(),
                                    position: a.first,
                                    stream: stream.to_string(),
                                    version,
                                    id,
                                };
                                acks.lock().unwrap().push(ack);
                            }
                            // Not acknowledged (no leader for the whole retry
                            // window, or an earlier unacknowledged append was
                            // committed after all): learn the version and go on.
                            Err(_) => {
                                if let Ok(v) = remote.stream_version(&stream).await {
                                    version = v.0;
                                }
                            }
                        }
                    }
                })
            })
            .collect();
        Storm { acks, stop, tasks }
    }

    fn acks(&self) -> Vec<Ack> {
        self.acks.lock().unwrap().clone()
    }

    /// The first acknowledgement after `since`, waiting at most `limit`.
    fn next_ack_after(&self, since: Instant, limit: Duration) -> Instant {
        let deadline = Instant::now() + limit;
        loop {
            if let Some(at) = self.acks.lock().unwrap().iter().map(|a| a.at).filter(|at| *at > since).min() {
                return at;
            }
            assert!(Instant::now() < deadline, "no append acknowledged within {limit:?}");
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    fn stop(self, runtime: &tokio::runtime::Runtime) -> Vec<Ack> {
        self.stop.store(true, std::sync::atomic::Ordering::SeqCst);
        for task in self.tasks {
            runtime.block_on(task).unwrap();
        }
        self.acks.lock().unwrap().clone()
    }
}

/// Every record of node `i`, read from it directly.
fn records_of(runtime: &tokio::runtime::Runtime, group: &LogGroup, i: usize) -> Vec<Record> {
    let token = klaxon_tests::auth::token(klaxon_tests::auth::SERVICE);
    let _entered = runtime.enter();
    let remote = RemoteLog::connect_lazy_tls(&group.nodes[i].address, None, Some(token)).unwrap();
    runtime.block_on(remote.read_all(Position(0), usize::MAX)).unwrap()
}

/// What must hold once the group has settled: the nodes hold the same
/// records, gapless; every acknowledged append is where it was
/// acknowledged, once; no event id appears twice; each stream's versions
/// are gapless.
fn check_log(runtime: &tokio::runtime::Runtime, group: &LogGroup, acks: &[Ack]) -> Vec<Record> {
    let leader = group.leader(Duration::from_secs(20));
    let head = group.status(leader).unwrap().head;
    group.converged(head, Duration::from_secs(30));
    let logs: Vec<Vec<Record>> = (0..group.nodes.len()).map(|i| records_of(runtime, group, i)).collect();
    let log = &logs[leader];
    for (i, other) in logs.iter().enumerate() {
        assert_eq!(other.len(), log.len(), "node {} holds {} records, the leader {}", i + 1, other.len(), log.len());
        for (a, b) in other.iter().zip(log) {
            assert_eq!(a.to_bytes(), b.to_bytes(), "node {} differs at position {}", i + 1, a.position);
        }
    }
    for (i, r) in log.iter().enumerate() {
        assert_eq!(r.position, Position(i as u64 + 1), "positions are gapless");
    }
    let mut ids = HashSet::new();
    let mut versions: BTreeMap<&str, u64> = BTreeMap::new();
    for r in log {
        assert!(ids.insert(r.id), "event {} is in the log twice", r.id);
        let v = versions.entry(r.stream.as_str()).or_default();
        *v += 1;
        assert_eq!(r.version.0, *v, "stream {} versions are gapless", r.stream);
    }
    let mut by_position: BTreeMap<Position, uuid::Uuid> = BTreeMap::new();
    for ack in acks {
        if let Some(other) = by_position.insert(ack.position, ack.id) {
            assert_eq!(other, ack.id, "position {} was acknowledged for two appends", ack.position);
        }
        let record = log.get(ack.position.0 as usize - 1).unwrap_or_else(|| panic!("acknowledged {ack:?} is lost"));
        assert_eq!(
            (record.id, record.stream.as_str(), record.version.0),
            (ack.id, ack.stream.as_str(), ack.version),
            "an acknowledged append moved"
        );
    }
    logs.into_iter().nth(leader).unwrap()
}

/// Waits until the JetStream stream holds every record of the log: the
/// relay follows the leader.
fn relayed(runtime: &tokio::runtime::Runtime, nats: &NatsServer, head: u64) {
    runtime.block_on(async {
        let client = async_nats::connect(&nats.url).await.unwrap();
        let js = async_nats::jetstream::new(client);
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let last = match js.get_stream("KLAXON").await {
                Ok(mut stream) => stream.info().await.map(|i| i.state.last_sequence).unwrap_or(0),
                Err(_) => 0,
            };
            if last >= head {
                assert_eq!(last, head, "the stream holds more than the log");
                return;
            }
            assert!(Instant::now() < deadline, "JetStream stopped at {last}, the log is at {head}");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    });
}

fn setup(dir: &Path, options: &GroupOptions) -> (NatsServer, LogGroup) {
    let nats = NatsServer::start(&dir.join("nats"));
    let env = klaxon_tests::auth::cluster_env(dir);
    let group = LogGroup::start(&dir.join("group"), "", &nats.url, &env, options);
    (nats, group)
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap()
}

/// Waits until node `i` answers and follows a leader.
fn rejoined(group: &LogGroup, i: usize, limit: Duration) {
    let deadline = Instant::now() + limit;
    loop {
        if let Ok(s) = group.status(i) {
            if s.leader_id.is_some() && s.state != "candidate" {
                return;
            }
        }
        assert!(Instant::now() < deadline, "node {} did not rejoin within {limit:?}", i + 1);
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn the_leader_killed_twenty_times_under_a_storm_of_appends_loses_and_duplicates_nothing() {
    let cycles = if std::env::var("KLAXON_SLOW_TESTS").as_deref() == Ok("1") { 50 } else { 20 };
    let seed = klaxon_tests::seed::seed(
        "the_leader_killed_twenty_times_under_a_storm_of_appends_loses_and_duplicates_nothing",
    );
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let dir = tempfile::tempdir().unwrap();
    let (nats, mut group) = setup(dir.path(), &GroupOptions::default());
    let runtime = runtime();
    group.leader(Duration::from_secs(30));
    let storm = Storm::start(&runtime, &group.addresses(), 16);
    storm.next_ack_after(Instant::now(), Duration::from_secs(30));
    let mut failovers = Vec::new();
    for cycle in 0..cycles {
        std::thread::sleep(Duration::from_millis(rng.random_range(100..400)));
        let leader = group.leader(Duration::from_secs(20));
        let killed = Instant::now();
        group.kill(leader);
        // A new leader serves within a few seconds.
        let served = storm.next_ack_after(killed, Duration::from_secs(20));
        failovers.push(served - killed);
        group.restart(leader);
        rejoined(&group, leader, Duration::from_secs(20));
        println!("cycle {cycle}: killed node {}, next append acknowledged after {:?}", leader + 1, served - killed);
    }
    let acks = storm.stop(&runtime);
    let log = check_log(&runtime, &group, &acks);
    relayed(&runtime, &nats, log.len() as u64);
    failovers.sort();
    println!(
        "{cycles} leader kills, {} acknowledged appends, {} records; failover p50 {:?}, max {:?}",
        acks.len(),
        log.len(),
        failovers[failovers.len() / 2],
        failovers.last().unwrap()
    );
    assert!(acks.len() > cycles, "the storm made progress");
    group.stop();
}

#[test]
fn a_leader_cut_off_acknowledges_nothing_and_rejoins_once_healed() {
    let dir = tempfile::tempdir().unwrap();
    let options = GroupOptions { partitionable: true, ..GroupOptions::default() };
    let (nats, group) = setup(dir.path(), &options);
    let runtime = runtime();
    let old = group.leader(Duration::from_secs(30));
    let storm = Storm::start(&runtime, &group.addresses(), 8);
    storm.next_ack_after(Instant::now(), Duration::from_secs(30));

    group.isolate(old, true);
    let cut = Instant::now();
    // Barrier: the majority elects a leader of its own and goes on.
    let deadline = Instant::now() + Duration::from_secs(30);
    let new = loop {
        let views: Vec<_> = (0..3).filter(|i| *i != old).filter_map(|i| group.status(i).ok()).collect();
        if let Some(leader) = views.iter().find(|s| s.state == "leader") {
            if views.iter().all(|s| s.leader_id == Some(leader.node_id)) {
                break leader.node_id as usize - 1;
            }
        }
        assert!(Instant::now() < deadline, "the majority elected no leader: {views:?}");
        std::thread::sleep(Duration::from_millis(50));
    };
    assert_ne!(new, old);
    storm.next_ack_after(Instant::now(), Duration::from_secs(20));

    // The old leader still believes it leads, and acknowledges nothing.
    let token = klaxon_tests::auth::token(klaxon_tests::auth::SERVICE);
    let _entered = runtime.enter();
    let pinned = RemoteLog::connect_lazy_tls(&group.nodes[old].address, None, Some(token))
        .unwrap()
        .with_retry_for(Duration::ZERO);
    let stream = StreamId::new("isolated").unwrap();
    let tries: Vec<NewEvent> = (0..3).map(|n| event(99, n)).collect();
    let tasks: Vec<_> = tries
        .iter()
        .map(|e| {
            let (pinned, stream, e) = (pinned.clone(), stream.clone(), e.clone());
            runtime.spawn(async move { pinned.append(&stream, ExpectedVersion::Any, vec![e]).await })
        })
        .collect();
    let results: Vec<_> = tasks.into_iter().map(|t| runtime.block_on(t).unwrap()).collect();
    for result in &results {
        assert!(result.is_err(), "the isolated node acknowledged {result:?}");
    }
    let isolated_for = cut.elapsed();

    group.isolate(old, false);
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Ok(s) = group.status(old) {
            if s.state == "follower" && s.leader_id.is_some_and(|l| l != old as u64 + 1) {
                break;
            }
        }
        assert!(Instant::now() < deadline, "the old leader did not step down: {:?}", group.status(old));
        std::thread::sleep(Duration::from_millis(50));
    }
    let acks = storm.stop(&runtime);
    let log = check_log(&runtime, &group, &acks);
    let refused: HashSet<uuid::Uuid> = tries.iter().map(|e| e.id).collect();
    assert!(log.iter().all(|r| !refused.contains(&r.id)), "an append the isolated node refused was committed");
    relayed(&runtime, &nats, log.len() as u64);
    println!("isolated for {isolated_for:?}; {} acknowledged appends, {} records", acks.len(), log.len());
    group.stop();
}

/// After the leader is SIGKILLed, a follower cut off from the others goes
/// on naming it (its election timeout is ten minutes, so it does not stand
/// itself) while the other three elect a new leader. A client that knows
/// the dead leader and that follower first must not bounce between the two:
/// it passes over a hint to a node it already found dead in this round and
/// asks every node it knows, so its append reaches the new leader.
#[test]
fn a_client_reaches_the_new_leader_while_a_follower_still_names_the_dead_one() {
    let dir = tempfile::tempdir().unwrap();
    let stale = 1;
    let options = GroupOptions {
        nodes: 5,
        partitionable: true,
        node_tuning: vec![(stale, "election_timeout_min_ms = 600000\nelection_timeout_max_ms = 600001\n".into())],
        ..GroupOptions::default()
    };
    let (_nats, mut group) = setup(dir.path(), &options);
    let runtime = runtime();
    // Every node stands once, when it initializes the group, so `stale` may
    // have won that first election: a leader is settled among the others
    // while it is down (restarted at once, it could resume leading on its
    // own vote); restarted after that, it only follows.
    group.leader(Duration::from_secs(30));
    group.kill(stale);
    let old = group.leader(Duration::from_secs(30));
    group.restart(stale);
    assert_ne!(old, stale, "a node that does not stand cannot lead");
    // Barrier: `stale` has heard from the leader (`leader` skips a node that
    // does not answer yet).
    let deadline = Instant::now() + Duration::from_secs(30);
    while group.status(stale).map(|s| s.leader_id) != Ok(Some(old as u64 + 1)) {
        assert!(
            Instant::now() < deadline,
            "node {} does not follow node {}: {:?}",
            stale + 1,
            old + 1,
            group.status(stale)
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    group.isolate(stale, true);
    group.kill(old);

    // The dead leader first, then the follower that names it, then the rest.
    let order: Vec<usize> = [old, stale].into_iter().chain((0..5).filter(|i| *i != old && *i != stale)).collect();
    let addresses: Vec<&str> = order.iter().map(|i| group.nodes[*i].address.as_str()).collect();
    let token = klaxon_tests::auth::token(klaxon_tests::auth::SERVICE);
    let _entered = runtime.enter();
    let remote = RemoteLog::connect_lazy_tls(&addresses.join(","), None, Some(token))
        .unwrap()
        .with_retry_for(Duration::from_secs(30));
    let stream = StreamId::new("failover").unwrap();
    runtime
        .block_on(remote.append(&stream, ExpectedVersion::NoStream, vec![event(0, 1)]))
        .unwrap_or_else(|e| panic!("the append found no leader: {e}"));

    // It was acknowledged by a leader of the other three, while the cut-off
    // follower still named the dead one.
    let leader = group.nodes.iter().position(|n| n.address == remote.current_address()).unwrap();
    assert!(leader != old && leader != stale, "acknowledged by node {}", leader + 1);
    assert_eq!(group.status(leader).unwrap().state, "leader");
    let view = group.status(stale).unwrap();
    assert_eq!(view.leader_id, Some(old as u64 + 1), "the cut-off follower names the dead leader: {view:?}");

    group.isolate(stale, false);
    group.stop();
}

#[test]
fn a_follower_killed_wiped_and_restarted_catches_up_from_a_snapshot() {
    let dir = tempfile::tempdir().unwrap();
    let mut options = GroupOptions::default();
    options.tuning.push_str("snapshot_every_entries = 50\npurge_keep_entries = 0\n");
    let (nats, mut group) = setup(dir.path(), &options);
    let runtime = runtime();
    let leader = group.leader(Duration::from_secs(30));
    let follower = (leader + 1) % 3;
    group.kill(follower);
    let storm = Storm::start(&runtime, &group.addresses(), 16);
    // Until the leader has taken a snapshot and purged its Raft log behind
    // it: entry 1 is gone, so the wiped node cannot replay from it.
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let status = group.status(leader).unwrap();
        if status.purged_index > 1 && storm.acks().len() > 500 {
            break;
        }
        assert!(Instant::now() < deadline, "the leader kept its whole Raft log: {status:?}");
        std::thread::sleep(Duration::from_millis(50));
    }
    group.wipe(follower);
    group.restart(follower);
    let acks = storm.stop(&runtime);
    let log = check_log(&runtime, &group, &acks);
    let status = group.status(follower).unwrap();
    assert!(status.snapshots_installed >= 1, "the wiped node replayed instead of installing a snapshot: {status:?}");
    assert_eq!(status.head, log.len() as u64);
    relayed(&runtime, &nats, log.len() as u64);
    group.stop();
}

/// `klaxond log-group` as an operator uses it.
fn log_group_cli(env: &[(String, String)], server: &str, args: &[&str]) -> serde_json::Value {
    let out = std::process::Command::new(klaxon_tests::binary("klaxond"))
        .args(["log-group", "--json", "--server", server])
        .args(args)
        .envs(env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
        .output()
        .expect("run klaxond log-group");
    assert!(out.status.success(), "klaxond log-group {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    serde_json::from_slice(&out.stdout).expect("JSON")
}

#[test]
fn a_dead_node_is_replaced_with_log_group_remove_and_add() {
    let dir = tempfile::tempdir().unwrap();
    let options = GroupOptions::default();
    let nats = NatsServer::start(&dir.path().join("nats"));
    let env = klaxon_tests::auth::cluster_env(dir.path());
    let mut group = LogGroup::start(&dir.path().join("group"), "", &nats.url, &env, &options);
    let runtime = runtime();
    let leader = group.leader(Duration::from_secs(30));
    let dead = (leader + 1) % 3;
    let other = (leader + 2) % 3;
    let status = log_group_cli(&env, &group.nodes[other].address, &["status"]);
    let nodes = status["nodes"].as_array().unwrap();
    assert_eq!(nodes.len(), 3, "{status}");
    assert_eq!(nodes.iter().filter(|n| n["state"] == "leader").count(), 1, "{status}");

    // The node dies with its disk; it is removed (asked of a follower, which
    // points the command at the leader), and the group goes on with two.
    group.kill(dead);
    group.wipe(dead);
    let changed = log_group_cli(&env, &group.nodes[other].address, &["remove", &(dead + 1).to_string()]);
    assert_eq!(changed["members"].as_array().unwrap().len(), 2, "{changed}");
    // Repeating it changes nothing.
    let again = log_group_cli(&env, &group.nodes[other].address, &["remove", &(dead + 1).to_string()]);
    assert_eq!(again["members"], changed["members"], "{again}");
    let storm = Storm::start(&runtime, &group.addresses(), 4);
    storm.next_ack_after(Instant::now(), Duration::from_secs(20));

    // A new, empty node with the same id and address is added back.
    group.restart(dead);
    let address = group.nodes[dead].address.clone();
    let changed = log_group_cli(&env, &group.nodes[other].address, &["add", &(dead + 1).to_string(), &address]);
    let members = changed["members"].as_array().unwrap();
    assert_eq!(members.len(), 3, "{changed}");
    assert!(members.iter().all(|m| !m.as_str().unwrap().contains("learner")), "{changed}");
    let again = log_group_cli(&env, &group.nodes[other].address, &["add", &(dead + 1).to_string(), &address]);
    assert_eq!(again["members"], changed["members"], "adding a member again changes nothing: {again}");
    let acks = storm.stop(&runtime);
    let log = check_log(&runtime, &group, &acks);
    let status = log_group_cli(&env, &address, &["status"]);
    let back = status["nodes"].as_array().unwrap().iter().find(|n| n["id"] == dead as u64 + 1).unwrap().clone();
    assert_eq!(back["head"], log.len() as u64, "{status}");
    assert_eq!(back["voter"], true, "{status}");
    relayed(&runtime, &nats, log.len() as u64);
    group.stop();
}
