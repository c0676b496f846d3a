//! Three nodes in this process over real gRPC: replication, refusals,
//! leader changes, snapshots.

use klaxon_bus::server::WriteError;
use klaxon_log::{Error, ExpectedVersion, Position, StreamVersion};

use crate::support::{Cluster, bytes, event};

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn every_node_writes_the_same_records_and_refusals_are_the_same_everywhere() {
    let cluster = Cluster::start(3, |_| {}).await;
    let leader = cluster.leader().await;
    let follower = (leader + 1) % 3;

    let a = cluster.append(leader, "incident-1", ExpectedVersion::NoStream, vec![event(1), event(2)]).await.unwrap();
    assert_eq!((a.first, a.last, a.next_version, a.deduplicated), (Position(1), Position(2), StreamVersion(3), false));
    // A version conflict is the log's typed error, decided in apply.
    let conflict = cluster.append(leader, "incident-1", ExpectedVersion::NoStream, vec![event(3)]).await.unwrap_err();
    assert!(
        matches!(conflict, WriteError::Log(Error::WrongExpectedVersion { actual: StreamVersion(2), .. })),
        "{conflict:?}"
    );
    // Bad input is refused before it is proposed.
    let empty = cluster.append(leader, "incident-1", ExpectedVersion::Any, vec![]).await.unwrap_err();
    assert!(matches!(empty, WriteError::Log(Error::EmptyAppend { .. })), "{empty:?}");
    // A retry with the same ids: the original places.
    let retried = vec![event(4)];
    let first = cluster.append(leader, "incident-2", ExpectedVersion::Any, retried.clone()).await.unwrap();
    let again = cluster.append(leader, "incident-2", ExpectedVersion::NoStream, retried).await.unwrap();
    assert_eq!((again.first, again.deduplicated), (first.first, true));

    // A follower refuses writes and names the leader.
    let refused = cluster.append(follower, "incident-1", ExpectedVersion::Any, vec![event(5)]).await.unwrap_err();
    let leader_address = cluster.options[leader].nodes[leader].address.clone();
    assert!(
        matches!(&refused, WriteError::NotLeader { leader: Some(a) } if *a == leader_address),
        "{refused:?}, leader at {leader_address}"
    );

    let logs = cluster.converged(Position(3)).await;
    assert_eq!(logs[0].len(), 3, "nothing refused was written");
    assert!(logs.iter().all(|l| bytes(l) == bytes(&logs[0])), "the nodes hold different records");
    let head = cluster.node(follower).log.head();
    assert_eq!(head, Position(3));
    cluster.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_new_leader_has_every_acknowledged_append_and_positions_stay_gapless() {
    let mut cluster = Cluster::start(3, |_| {}).await;
    let mut acknowledged = Vec::new();
    for round in 0..3u64 {
        let leader = cluster.leader().await;
        for n in 0..20 {
            let e = event(round * 100 + n);
            let id = e.id;
            let a = cluster.append(leader, "s", ExpectedVersion::Any, vec![e]).await.unwrap();
            acknowledged.push((a.first, id));
        }
        cluster.stop_node(leader).await;
        let next = cluster.leader().await;
        assert_ne!(next, leader);
        cluster.start_node(leader).await;
    }
    let logs = cluster.converged(Position(60)).await;
    for log in &logs {
        assert_eq!(log.len(), 60);
        for (i, r) in log.iter().enumerate() {
            assert_eq!(r.position, Position(i as u64 + 1), "gapless");
        }
        for (position, id) in &acknowledged {
            assert_eq!(log[position.0 as usize - 1].id, *id, "acknowledged append moved");
        }
    }
    assert!(logs.iter().all(|l| bytes(l) == bytes(&logs[0])));
    cluster.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_wiped_follower_catches_up_from_a_snapshot() {
    let mut cluster = Cluster::start(3, |o| {
        o.snapshot_every_entries = 40;
        o.purge_keep_entries = 0;
    })
    .await;
    let leader = cluster.leader().await;
    let wiped = (leader + 1) % 3;
    cluster.stop_node(wiped).await;
    for n in 0..200 {
        cluster.append(leader, &format!("s{}", n % 7), ExpectedVersion::Any, vec![event(n)]).await.unwrap();
    }
    cluster.append(leader, "s0", ExpectedVersion::Any, vec![]).await.expect_err("an empty append is refused");
    std::fs::remove_dir_all(cluster.log_dir(wiped)).unwrap();
    // The leader has purged its Raft log behind a snapshot: entry 1 is gone.
    let status = cluster.node(leader).group.status();
    assert!(status.purged_index > 1, "{status:?}");
    cluster.start_node(wiped).await;
    let logs = cluster.converged(Position(200)).await;
    assert!(logs.iter().all(|l| bytes(l) == bytes(&logs[0])));
    let installed = cluster.node(wiped).group.installed().borrow().clone();
    assert!(installed.count >= 1, "the wiped node replayed instead of installing a snapshot: {installed:?}");
    // And it goes on replicating afterwards.
    let a = cluster.append(leader, "after", ExpectedVersion::NoStream, vec![event(1000)]).await.unwrap();
    let logs = cluster.converged(a.last).await;
    assert!(logs.iter().all(|l| bytes(l) == bytes(&logs[0])));
    cluster.stop().await;
}

/// A node that lost its Raft state must not help elect a leader that lacks
/// what it had acknowledged. X is committed on the leader and on W only;
/// W is wiped; with the leader down, B (without X) and W must not elect B,
/// or X would be lost when B overwrote the leader's log.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_wiped_node_votes_for_nobody_until_it_has_caught_up() {
    let mut cluster = Cluster::start(3, |_| {}).await;
    let a = cluster.leader().await;
    let (b, w) = ((a + 1) % 3, (a + 2) % 3);
    cluster.append(a, "s", ExpectedVersion::Any, vec![event(0)]).await.unwrap();
    cluster.converged(Position(1)).await;
    cluster.stop_node(b).await;
    let x = event(1);
    let x_id = x.id;
    let acknowledged = cluster.append(a, "s", ExpectedVersion::Any, vec![x]).await.unwrap();
    cluster.stop_node(w).await;
    std::fs::remove_dir_all(cluster.log_dir(w)).unwrap();
    cluster.stop_node(a).await;
    cluster.start_node(b).await;
    cluster.start_node(w).await;

    // Barrier: B campaigns and fails again and again (it would win at once
    // if W voted for it). Nobody leads meanwhile.
    let term = cluster.node(b).group.status().term;
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while cluster.node(b).group.status().term < term + 3 {
        for i in [b, w] {
            assert_ne!(cluster.node(i).group.status().state, "leader", "node {} leads without X", i + 1);
        }
        assert!(std::time::Instant::now() < deadline, "B stopped campaigning: {:?}", cluster.node(b).group.status());
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    // The old leader returns: it leads, and X is everywhere at its place.
    cluster.start_node(a).await;
    let logs = cluster.converged(acknowledged.last).await;
    for log in &logs {
        assert_eq!(log[acknowledged.first.0 as usize - 1].id, x_id, "the acknowledged append was lost");
    }
    assert!(logs.iter().all(|l| bytes(l) == bytes(&logs[0])));
    cluster.stop().await;
}

/// The race of a group whose third node starts late (or comes back wiped):
/// it heard the leader's commit but holds little of it when the leader is
/// lost. It still votes for the node that holds the commit (that node then
/// leads, and a client's appends go on), and still refuses a candidate
/// that lacks it. Without the first half, the two live nodes never elect
/// anyone: it declines the up-to-date one, which refuses it for its
/// shorter log, and every append fails until the old leader returns.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_rejoining_node_that_loses_the_leader_before_catching_up_elects_the_node_that_holds_the_commit() {
    use klaxon_bus::{EventLog, RemoteLog};
    use klaxon_proto::v1::RaftMessage;
    use openraft::raft::{AppendEntriesRequest, VoteRequest, VoteResponse};

    let mut cluster = Cluster::start(3, |_| {}).await;
    let a = cluster.leader().await;
    let (b, w) = ((a + 1) % 3, (a + 2) % 3);
    let mut last = Position(0);
    for n in 0..5 {
        last = cluster.append(a, "s", ExpectedVersion::Any, vec![event(n)]).await.unwrap().last;
    }
    cluster.converged(last).await;
    let leader = cluster.node(a).group.raft().metrics().borrow().clone();
    let commit = leader.last_applied.expect("the leader applied the appends");
    let addresses: Vec<String> = cluster.options[0].nodes.iter().map(|n| n.address.clone()).collect();

    // W comes back with no state while the group has committed entries (it
    // rejoins), and the leader is gone.
    cluster.stop_node(w).await;
    std::fs::remove_dir_all(cluster.log_dir(w)).unwrap();
    cluster.stop_node(a).await;
    cluster.start_node(w).await;
    // What W hears from A just before A died: a heartbeat with A's commit
    // that does not match W's empty log, so W holds none of it.
    let network = klaxon_raft::Network::new(Default::default(), None, None).unwrap();
    let mut to_w = network.client(&addresses[w]).unwrap();
    let heartbeat = AppendEntriesRequest::<klaxon_raft::TypeConfig> {
        vote: leader.vote,
        prev_log_id: Some(commit),
        leader_commit: Some(commit),
        entries: Vec::new(),
    };
    to_w.append_entries(RaftMessage { json: serde_json::to_vec(&heartbeat).unwrap() }).await.unwrap();
    assert_eq!(cluster.node(w).group.status().last_log_index, 0, "W holds nothing of the commit");

    // A candidate without the commit (here: an empty log, a later term) is
    // refused by W.
    let lacking = VoteRequest::new(openraft::Vote::new(leader.vote.leader_id().term + 100, b as u64 + 1), None);
    let answer = to_w.vote(RaftMessage { json: serde_json::to_vec(&lacking).unwrap() }).await.unwrap().into_inner();
    let answer: Result<VoteResponse<u64>, openraft::error::RaftError<u64>> =
        serde_json::from_slice(&answer.json).unwrap();
    assert!(!answer.unwrap().vote_granted, "W voted for a candidate lacking the commit");

    // B holds the commit: W's vote makes it the leader, and a client that
    // knows every node (the dead one first) appends through it.
    let leads = cluster.leader().await;
    assert_eq!(leads, b, "the node that holds the commit leads");
    let all = [a, b, w].map(|i| addresses[i].clone()).join(",");
    let remote = RemoteLog::connect_lazy(&all).unwrap();
    let appended = remote.append(&crate::support::sid("s"), ExpectedVersion::Any, vec![event(5)]).await.unwrap();
    assert_eq!(appended.first, last.next());
    assert_eq!(remote.current_address(), addresses[b]);
    let logs = cluster.converged(appended.last).await;
    assert!(logs.iter().all(|l| bytes(l) == bytes(&logs[0])), "W caught up with the new leader");
    cluster.stop().await;
}

/// `RemoteLog` with every node's address: writes find the leader through a
/// follower's hint, survive the leader stopping, and a retry of an append
/// whose answer was lost returns its original places.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_remote_log_follows_the_leader_and_fails_over() {
    use klaxon_bus::{EventLog, RemoteLog};
    let mut cluster = Cluster::start(3, |_| {}).await;
    let leader = cluster.leader().await;
    let addresses: Vec<String> = cluster.options[0].nodes.iter().map(|n| n.address.clone()).collect();
    let address = |i: usize| addresses[i].clone();
    // The follower first: the client learns the leader from its refusal.
    let follower = (leader + 1) % 3;
    let all = [follower, leader, (leader + 2) % 3].map(address).join(",");
    let remote = RemoteLog::connect_lazy(&all).unwrap();
    let stream = crate::support::sid("s");
    let first = remote.append(&stream, ExpectedVersion::NoStream, vec![event(1)]).await.unwrap();
    assert_eq!(first.first, Position(1));
    assert_eq!(remote.current_address(), address(leader));

    let retried = vec![event(2)];
    let original = remote.append(&stream, ExpectedVersion::Any, retried.clone()).await.unwrap();
    cluster.stop_node(leader).await;
    let again = remote.append(&stream, ExpectedVersion::Exact(StreamVersion(1)), retried).await.unwrap();
    assert_eq!((again.first, again.deduplicated), (original.first, true));
    let next = remote.append(&stream, ExpectedVersion::Exact(StreamVersion(2)), vec![event(3)]).await.unwrap();
    assert_eq!(next.first, Position(3));
    assert_ne!(remote.current_address(), address(leader));
    // Reads come from the node that took the write.
    assert_eq!(remote.read_all(Position(0), 10).await.unwrap().len(), 3);
    cluster.stop().await;
}

/// Concurrent appends share Raft entries (the leader's group commit), and
/// each still gets its own answer: here 64 appends race for 8 new streams.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_appends_are_proposed_together_and_each_gets_its_own_answer() {
    let cluster = Cluster::start(3, |_| {}).await;
    let leader = cluster.leader().await;
    let before = cluster.node(leader).group.status().last_log_index;
    let group = cluster.node(leader).group.clone();
    let tasks: Vec<_> = (0..64u64)
        .map(|n| {
            let group = group.clone();
            tokio::spawn(async move {
                let stream = crate::support::sid(&format!("s{}", n % 8));
                let e = event(n);
                let id = e.id;
                (id, klaxon_bus::server::Writes::append(&group, &stream, ExpectedVersion::NoStream, vec![e]).await)
            })
        })
        .collect();
    let mut won = Vec::new();
    for task in tasks {
        match task.await.unwrap() {
            (id, Ok(a)) => won.push((a.first, id)),
            (_, Err(WriteError::Log(Error::WrongExpectedVersion { actual: StreamVersion(1), .. }))) => {}
            (_, other) => panic!("unexpected answer {other:?}"),
        }
    }
    assert_eq!(won.len(), 8, "one append per stream wins");
    let logs = cluster.converged(Position(8)).await;
    for (position, id) in &won {
        assert_eq!(logs[0][position.0 as usize - 1].id, *id, "each winner is told its own place");
    }
    let entries = cluster.node(leader).group.status().last_log_index - before;
    assert!(entries < 64, "64 appends took {entries} Raft entries: not batched");
    cluster.stop().await;
}

/// openraft restores a node that was leading when it stopped as leader at
/// once when it restarts. Such a node must not count as leading (and run
/// the relay) before a majority confirms it: here another node leads a
/// newer term by then, and the restarted one only steps down.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_leader_restarted_after_losing_its_term_never_counts_as_leading() {
    let mut cluster = Cluster::start(3, |_| {}).await;
    let old = cluster.leader().await;
    cluster.append(old, "s", ExpectedVersion::Any, vec![event(1)]).await.unwrap();
    cluster.converged(Position(1)).await;
    cluster.stop_node(old).await;
    let new = cluster.leader().await;
    cluster.append(new, "s", ExpectedVersion::Any, vec![event(2)]).await.unwrap();
    cluster.start_node(old).await;
    let mut leading = cluster.node(old).group.leading();
    let ever = leading.borrow_and_update().to_owned();
    let watcher = tokio::spawn(async move {
        let mut ever = ever;
        while leading.changed().await.is_ok() {
            ever |= *leading.borrow_and_update();
        }
        ever
    });
    // Barrier: the restarted node follows the new leader.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    loop {
        let status = cluster.node(old).group.status();
        if status.state == "follower" && status.leader_id == Some(new as u64 + 1) {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "{status:?}");
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    cluster.converged(Position(2)).await;
    cluster.stop_node(old).await;
    assert!(!watcher.await.unwrap(), "the restarted node counted as leading in a term that was over");
    cluster.stop().await;
}
