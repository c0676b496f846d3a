//! Two of everything: every service role runs as two `klaxond serve`
//! processes (real processes, a real nats-server, one log server), the
//! gateway knows both replicas of each role, and paging and the notifier
//! claim every delivery through the log. One replica of each role is killed
//! with SIGKILL in the middle of a storm of Sev-1s.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use klaxon_tests::cluster::{Cluster, SERVICES};
use klaxon_tests::config::SECRET_ENV;
use klaxon_tests::klaxon_ok;

use crate::distributed::{Setup, assert_same, rebuilt_snapshot, report, setup_with, snapshot, wait};

/// A short lease, so that a delivery claimed by a killed replica is taken
/// over within the test's patience.
const REPLICA_CONFIG: &str = "[replica]\nclaim_lease_ms = 3000\n";

/// What the receiver accepted, by idempotency key, for messages of `kind`.
fn received(setup: &Setup, kind: impl Fn(&str) -> bool) -> BTreeMap<String, usize> {
    let mut keys = BTreeMap::new();
    for r in setup.receiver.requests().into_iter().filter(|r| r.status < 300) {
        if kind(r.body["kind"].as_str().unwrap_or_default()) {
            assert!(r.signature_ok, "every delivery is signed");
            *keys.entry(r.idempotency_key).or_insert(0) += 1;
        }
    }
    keys
}

/// The deliveries whose claim was taken over after a lease expired (a
/// claim stream with more than one claim): the only ones that may arrive
/// twice. Read from the log's folder once the cluster is stopped.
fn taken_over(data_dir: &std::path::Path) -> BTreeSet<String> {
    let log = klaxon_log::Log::open(data_dir, Default::default()).expect("open the stopped log server's folder");
    let mut claims: BTreeMap<String, Vec<klaxon_reactor::claim::EffectClaimed>> = BTreeMap::new();
    let mut from = klaxon_log::Position(1);
    loop {
        let records = log.read_all(from, 1000).unwrap();
        let Some(last) = records.last() else { break };
        from = klaxon_log::Position(last.position.0 + 1);
        for record in records.iter().filter(|r| r.kind.as_str() == klaxon_reactor::claim::CLAIM_KIND) {
            let claim = klaxon_reactor::claim::EffectClaimed::of(record).unwrap();
            claims.entry(record.stream.as_str().to_owned()).or_default().push(claim);
        }
    }
    claims.into_values().filter(|c| c.len() > 1).flat_map(|c| c[0].keys.clone()).collect()
}

#[test]
fn two_replicas_of_every_role_deliver_every_page_and_post_once_with_one_of_each_killed() {
    let setup = setup_with(600, REPLICA_CONFIG);
    let mut cluster =
        Cluster::start_replicated(setup.dir.path(), &setup.config, &[(SECRET_ENV, setup.secret.as_str())], 2);
    let storm = 12;
    let mut ids = Vec::new();
    for n in 1..=storm {
        if n == storm / 2 + 1 {
            // Midway: the first replica of every role (the one the gateway
            // prefers) dies, with whatever it was doing.
            for role in SERVICES {
                cluster.kill(role);
            }
        }
        // Through the gateway, which fails over to the surviving intake.
        ids.push(report(&cluster.url, &format!("Checkout fails {n}")));
    }
    let distinct: BTreeSet<&String> = ids.iter().collect();
    assert_eq!(distinct.len(), storm, "every report made one incident: {ids:?}");

    // Every Sev-1 pages ana once and tells the executives once.
    let pages = || received(&setup, |k| k == "page");
    let posts = || received(&setup, |k| k.ends_with("_post"));
    wait(Duration::from_secs(60), &format!("{storm} pages and {storm} posts"), || {
        pages().len() >= storm && posts().len() >= storm
    });

    // The barrier over the survivors, then every projection.
    let survivors: Vec<String> =
        cluster.labels().into_iter().filter(|l| l.ends_with("-2")).map(|l| cluster.metrics_address(&l)).collect();
    let survivors: Vec<&str> = survivors.iter().map(String::as_str).collect();
    // A page reaches the receiver before its delivery is recorded: settle
    // and read again until every page's outcome is in the log.
    let mut state = BTreeMap::new();
    wait(Duration::from_secs(30), "every page's delivery recorded", || {
        klaxon_tests::metrics::settle(&cluster.metrics_address("log"), &survivors);
        state = snapshot(&cluster.url, &ids);
        state
            .iter()
            .filter(|(k, _)| k.starts_with("pages "))
            .all(|(_, v)| v["pages"].as_array().is_some_and(|pages| pages.iter().all(|p| p["delivery"] != "pending")))
    });
    // What the survivors claimed and won (asserted at the end).
    let mut survivors_won = Vec::new();
    for (label, at_least) in [("paging-2", storm / 2), ("notifier-2", storm / 2)] {
        let metrics = klaxon_tests::metrics::scrape(&cluster.metrics_address(label));
        let role = label.trim_end_matches("-2");
        let name = format!("klaxon_claims_won_total{{service=\"{role}\",replica=\"{label}\"}}");
        let won = metrics.get(&name).copied().unwrap_or(0.0) as usize;
        survivors_won.push((label, won, at_least));
    }
    let (pages, posts) = (pages(), posts());
    assert_eq!(pages.len(), storm, "one page per incident: {pages:?}");
    assert_eq!(posts.len(), storm, "one executive post per incident: {posts:?}");
    for id in &ids {
        let paged = state[&format!("pages {id}")]["pages"].as_array().unwrap().len();
        assert_eq!(paged, 1, "{id} paged once: {}", state[&format!("pages {id}")]);
    }
    let in_log: BTreeSet<String> = state
        .iter()
        .filter(|(k, _)| k.starts_with("pages "))
        .flat_map(|(_, v)| v["pages"].as_array().unwrap().iter().map(|p| p["page_id"].as_str().unwrap().to_owned()))
        .collect();
    assert_eq!(pages.keys().cloned().collect::<BTreeSet<_>>(), in_log, "the pages delivered are the pages in the log");
    assert!(cluster.all_running().is_empty(), "no survivor died: {:?}", cluster.all_running());

    let data_dir = cluster.data_dir.clone();
    cluster.stop();
    assert_same(&state, &rebuilt_snapshot(&setup, &data_dir, &ids), "two replicas with kills vs rebuild");

    // A key arrives twice only where a killed replica had claimed it (and
    // perhaps sent it) and its lease expired: at-least-once at the
    // boundary, with the same idempotency key for the receiver to dedupe.
    let taken_over = taken_over(&data_dir);
    let twice: Vec<&String> = pages.iter().chain(&posts).filter(|(_, n)| **n > 1).map(|(k, _)| k).collect();
    eprintln!("deliveries taken over after a lease: {}; received twice: {twice:?}", taken_over.len());
    for key in &twice {
        assert!(taken_over.contains(*key), "{key} arrived twice without a claim taken over: {taken_over:?}");
    }
    // The survivors claimed (and won) what came after the kills.
    for (label, won, at_least) in survivors_won {
        assert!(won >= at_least, "{label} won {won} claims, expected at least {at_least}");
    }
}

#[test]
fn the_cli_reports_through_the_other_intake_when_one_is_killed() {
    let setup = setup_with(600, REPLICA_CONFIG);
    let mut cluster =
        Cluster::start_replicated(setup.dir.path(), &setup.config, &[(SECRET_ENV, setup.secret.as_str())], 2);
    // The CLI knows both intakes and uses the first that answers.
    let both = format!("http://{},http://{}", cluster.address("intake"), cluster.address("intake-2"));
    let first = klaxon_ok(&both, "monitor", &["report", "--title", "Before", "--service", "payments"]);
    cluster.kill("intake");
    let second = klaxon_ok(&both, "monitor", &["report", "--title", "After", "--service", "payments"]);
    assert_ne!(first.trim(), second.trim());
    // The survivor holds both incidents.
    let survivor = format!("http://{}", cluster.address("intake-2"));
    let list = klaxon_ok(&survivor, "rita", &["list"]);
    assert!(list.contains(first.trim()) && list.contains(second.trim()), "{list}");
    // With every intake gone, the CLI says which it tried.
    cluster.kill("intake-2");
    let out = klaxon_tests::klaxon(&both, "monitor", &["report", "--title", "Nowhere", "--service", "payments"]);
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains(&cluster.address("intake")) && stderr.contains(&cluster.address("intake-2")), "{stderr}");
    cluster.stop();
}

/// Shift notices with two paging replicas (each runs the shift notices
/// beside its pager, claiming through the log): six schedules whose first
/// shift starts in ten minutes, and an override made through the gateway,
/// call for eight notices; both replicas decide them at once, and each
/// is decided, delivered and recorded once.
#[test]
fn two_paging_replicas_send_each_shift_notice_once() {
    let start = chrono::Utc::now() + chrono::TimeDelta::minutes(10);
    let mut extra = String::from("[shift_notices]\nenabled = true\n");
    for n in 1..=6 {
        // dave-n starts at the ten minutes' mark; erin-n's running shift
        // started two days before (too long ago for a notice).
        extra.push_str(&format!(
            "\n[[schedules]]\nname = \"db-{n}\"\ntime_zone = \"UTC\"\n[[schedules.layers]]\nname = \"pairs\"\n\
             participants = [\"dave-{n}\", \"erin-{n}\"]\nshift = \"2d\"\nhandoff = \"{}\"\nstart = \"{}\"\n",
            start.format("%H:%M"),
            start.format("%Y-%m-%d"),
        ));
    }
    let setup = setup_with(600, &extra);
    let cluster = Cluster::start_replicated(setup.dir.path(), &setup.config, &[(SECRET_ENV, setup.secret.as_str())], 2);
    let notices = || received(&setup, |k| k == "shift_notice");
    wait(Duration::from_secs(60), "six start notices", || notices().len() >= 6);

    // carl takes an hour of ana's: ana and carl are told.
    let (from, until) = (start + chrono::TimeDelta::hours(1), start + chrono::TimeDelta::hours(2));
    let (from, until) = (from.to_rfc3339(), until.to_rfc3339());
    let args =
        ["oncall", "override", "--schedule", "payments-primary", "--who", "carl", "--from", &from, "--until", &until];
    klaxon_ok(&cluster.url, "maria", &args);
    wait(Duration::from_secs(60), "eight notices", || notices().len() >= 8);
    let data_dir = cluster.data_dir.clone();
    cluster.stop();

    let received = notices();
    let handoff = start.format("%Y-%m-%dT%H:%M:00Z");
    let mut expected: BTreeSet<String> =
        (1..=6).map(|n| format!("shift/db-{n}/dave-{n}/starts/{handoff}/dave-{n}")).collect();
    let moved: Vec<&String> = received.keys().filter(|k| k.contains("/moved/")).collect();
    assert_eq!(moved.len(), 2, "{received:?}");
    expected.extend(moved.into_iter().cloned());
    assert_eq!(received.keys().cloned().collect::<BTreeSet<_>>(), expected);
    assert!(received.values().all(|n| *n == 1), "a notice arrived twice: {received:?}");

    // In the log: each notice decided once and recorded as sent once.
    let log = klaxon_log::Log::open(&data_dir, Default::default()).expect("open the stopped log server's folder");
    let records = log.read_all(klaxon_log::Position(1), 100_000).unwrap();
    let count = |kind: &str| records.iter().filter(|r| r.kind.as_str() == kind).count();
    assert_eq!(count("shift.notice_decided.v1"), 8);
    assert_eq!(count("shift.notice_sent.v1"), 8);
}
