//! On-call changes through the real binaries: an override made with the
//! `klaxon` CLI is what `WhoIsOnCall` answers and whom a Sev-1 pages; an
//! engineer is refused someone else's shift with nothing written; a swap
//! requested and taken through the CLI survives a restart of `klaxond`;
//! `klaxon oncall coverage` lists holes; shift notices are sent once across
//! a restart, follow a schedule added at SIGHUP and tell whose shifts a
//! reload moved.

use std::time::Duration;

use chrono::{DateTime, SecondsFormat, TimeDelta, Utc};
use klaxon_tests::config::Paged;
use klaxon_tests::receiver::Receiver;
use klaxon_tests::{Klaxond, klaxon, klaxon_json, klaxon_ok};

fn rfc3339(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Secs, true)
}

/// The shift notices `receiver` accepted, in order: (idempotency key,
/// recipient).
fn shift_notices(receiver: &Receiver) -> Vec<(String, String)> {
    let requests = receiver.requests();
    let notices = requests.into_iter().filter(|r| r.body["kind"] == "shift_notice" && r.status < 300);
    notices.map(|r| (r.idempotency_key, r.body["recipient"].as_str().unwrap_or_default().to_owned())).collect()
}

/// The shift notices once there are at least `n` (or after 20 s).
fn wait_for_notices(receiver: &Receiver, n: usize) -> Vec<(String, String)> {
    for _ in 0..400 {
        if shift_notices(receiver).len() >= n {
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    shift_notices(receiver)
}

#[test]
fn a_cli_override_is_on_call_and_paged_and_engineers_change_only_their_own_shifts() {
    let paged = Paged::start(600, false, "");
    let (runtime, receiver) = (&paged.runtime, &paged.receiver);
    let data = paged.dir.path().join("data");
    let (args, env) = (paged.config_args(), paged.env());
    let server = Klaxond::start_with_env(&data, &args, &env);
    let metrics = server.http_address.clone().expect("up serves metrics");
    let head = || klaxon_tests::metrics::scrape(&metrics)["klaxon_log_head"];

    // ana is on call all the time (one-person daily layer); maria puts carl
    // on call for the next two hours.
    let now = Utc::now();
    let (from, until) = (rfc3339(now - TimeDelta::minutes(1)), rfc3339(now + TimeDelta::hours(2)));
    let added = klaxon_ok(
        &server.url,
        "maria",
        &["oncall", "override", "--schedule", "payments-primary", "--who", "carl", "--from", &from, "--until", &until],
    );
    assert!(added.starts_with("override O1: carl is on call ["), "{added}");
    let who = klaxon_json(&server.url, "ana", &["oncall", "payments-primary"]);
    assert_eq!(who["on_call"][0]["who"], "carl", "{who}");
    assert_eq!(who["on_call"][0]["source"], "override O1", "{who}");
    // A mistyped schedule (or a subcommand that is not one) names the
    // schedules there are, for a lookup and for a change, writing nothing.
    let before = head();
    for args in [
        &["oncall", "payments-primray"][..],
        &["oncall", "override", "--schedule", "payments-primray", "--who", "carl", "--from", &from, "--until", &until],
    ] {
        let refused = klaxon(&server.url, "maria", args);
        let stderr = String::from_utf8_lossy(&refused.stderr);
        assert_eq!(refused.status.code(), Some(1), "{stderr}");
        assert!(
            stderr.contains("unknown schedule \"payments-primray\"; the schedules are payments-primary"),
            "{stderr}"
        );
    }
    assert_eq!(head(), before, "a refused change writes nothing");

    // mallory (an engineer) may not put herself on call over carl's override,
    // nor remove it: refused naming whose time it is, nothing written.
    let before = head();
    let refused = klaxon(
        &server.url,
        "mallory",
        &[
            "oncall",
            "override",
            "--schedule",
            "payments-primary",
            "--who",
            "mallory",
            "--from",
            &from,
            "--until",
            &until,
        ],
    );
    assert_eq!(refused.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(stderr.contains("engineer mallory may only change their own shifts: carl is on call during ["), "{stderr}");
    let removal =
        klaxon(&server.url, "mallory", &["oncall", "override", "remove", "--schedule", "payments-primary", "O1"]);
    assert_eq!(removal.status.code(), Some(1));
    let (later, later_until) = (rfc3339(now + TimeDelta::hours(3)), rfc3339(now + TimeDelta::hours(4)));
    let swap = klaxon(
        &server.url,
        "mallory",
        &[
            "oncall",
            "swap",
            "request",
            "--schedule",
            "payments-primary",
            "--for",
            "ana",
            "--from",
            &later,
            "--until",
            &later_until,
        ],
    );
    let stderr = String::from_utf8_lossy(&swap.stderr);
    assert_eq!(swap.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("the swap would be of ana's shift"), "{stderr}");
    assert_eq!(head(), before, "a refused change wrote something");

    // A Sev-1 pages carl, the override's holder.
    klaxon_ok(
        &server.url,
        "monitor",
        &[
            "report",
            "--title",
            "EU checkout down",
            "--service",
            "payments",
            "--customer",
            "acme",
            "--customer",
            "globex",
        ],
    );
    let pages = runtime.block_on(receiver.wait_for_delivered(1, Duration::from_secs(20)));
    assert_eq!(pages[0].body["recipient"], "carl", "{:?}", pages[0].body);

    // ana swaps tomorrow's hour to carl; carl takes it; after a restart the
    // swap still holds, and undoing it (before it starts) restores ana.
    let tomorrow = now + TimeDelta::days(1);
    let (swap_from, swap_until) = (rfc3339(tomorrow), rfc3339(tomorrow + TimeDelta::hours(1)));
    let requested = klaxon_ok(
        &server.url,
        "ana",
        &["oncall", "swap", "request", "--schedule", "payments-primary", "--from", &swap_from, "--until", &swap_until],
    );
    assert!(requested.starts_with("swap S1: ana asks someone to take ["), "{requested}");
    let taken = klaxon_ok(&server.url, "carl", &["oncall", "swap", "take", "--schedule", "payments-primary", "S1"]);
    assert!(taken.starts_with("swap S1 taken by carl"), "{taken}");
    assert!(server.stop().success());
    let server = Klaxond::start_with_env(&data, &args, &env);
    let at = ["oncall", "payments-primary", "--at", swap_from.as_str()];
    let who = klaxon_json(&server.url, "ana", &at);
    assert_eq!((&who["on_call"][0]["who"], &who["on_call"][0]["source"]), (&"carl".into(), &"swap S1".into()), "{who}");
    let cancel = klaxon(&server.url, "ana", &["oncall", "swap", "cancel", "--schedule", "payments-primary", "S1"]);
    let stderr = String::from_utf8_lossy(&cancel.stderr);
    assert!(stderr.contains("swap S1 was already taken by carl: undo it instead"), "{stderr}");
    klaxon_ok(&server.url, "ana", &["oncall", "swap", "undo", "--schedule", "payments-primary", "S1"]);
    assert_eq!(klaxon_json(&server.url, "ana", &at)["on_call"][0]["who"], "ana");

    // ana's layer covers everything: no holes.
    let coverage = klaxon_ok(&server.url, "ana", &["oncall", "coverage", "--from", &from, "--to", &swap_until]);
    assert!(coverage.starts_with("no holes"), "{coverage}");
    assert!(server.stop().success());
}

/// Shift notices through `klaxond up`: an override made with the CLI tells
/// both people whose shifts it moved, once, on the webhook of `[paging]
/// channels`; after a restart nothing is sent again (the next change's
/// notices are the next ones the receiver gets).
#[test]
fn a_cli_override_sends_shift_notices_once_across_a_restart() {
    let paged = Paged::start(600, false, "[shift_notices]\nenabled = true\n");
    let (runtime, receiver) = (&paged.runtime, &paged.receiver);
    let data = paged.dir.path().join("data");
    let (args, env) = (paged.config_args(), paged.env());
    let server = Klaxond::start_with_env(&data, &args, &env);
    let wait = |n: usize| wait_for_notices(receiver, n);

    // ana is on call all the time; carl takes an hour starting in an hour.
    let now = Utc::now();
    let (from, until) = (rfc3339(now + TimeDelta::hours(1)), rfc3339(now + TimeDelta::hours(2)));
    let override_args =
        ["oncall", "override", "--schedule", "payments-primary", "--who", "carl", "--from", &from, "--until", &until];
    klaxon_ok(&server.url, "maria", &override_args);
    let mut first = wait(2);
    first.sort();
    assert_eq!(first.len(), 2, "{first:?}");
    assert_eq!((first[0].1.as_str(), first[1].1.as_str()), ("ana", "carl"), "{first:?}");
    assert!(first.iter().all(|(key, _)| key.starts_with("shift/payments-primary/")), "{first:?}");
    let carl = receiver.requests().into_iter().find(|r| r.body["recipient"] == "carl").unwrap();
    assert!(carl.signature_ok);
    assert!(carl.body["text"].as_str().unwrap().contains("Now on call: "), "{:?}", carl.body);

    // Restarted, then the override is removed: the next two notices are the
    // removal's; the first two were not sent again.
    assert!(server.stop().success());
    let server = Klaxond::start_with_env(&data, &args, &env);
    klaxon_ok(&server.url, "maria", &["oncall", "override", "remove", "--schedule", "payments-primary", "O1"]);
    let all = wait(4);
    assert_eq!(all.len(), 4, "{all:?}");
    let mut keys: Vec<&String> = all.iter().map(|(k, _)| k).collect();
    keys.sort();
    keys.dedup();
    assert_eq!(keys.len(), 4, "a notice was sent twice: {all:?}");
    let _ = runtime;
    assert!(server.stop().success());
}

/// A schedule added to the file and applied at SIGHUP gets its shift
/// notices from then on: dave's shift of the new `db-primary` starts in
/// ten minutes, so its start notice is due at once after the reload (and
/// was not before, the schedule did not exist). The reload is recorded.
#[test]
fn a_schedule_added_at_sighup_gets_its_shift_notices() {
    let paged = Paged::start(600, false, "[shift_notices]\nenabled = true\n");
    let receiver = &paged.receiver;
    let (args, env) = (paged.config_args(), paged.env());
    let server = Klaxond::start_with_env(&paged.dir.path().join("data"), &args, &env);
    let metrics = server.http_address.clone().expect("up serves metrics");
    klaxon_tests::metrics::settle(&metrics, &[&metrics]);
    assert_eq!(shift_notices(receiver), Vec::<(String, String)>::new(), "ana's shift has no start or end in sight");

    // dave and erin hand off every two days at the next ten minutes' mark;
    // erin's running shift started two days ago (too long for a notice).
    let start = Utc::now() + TimeDelta::minutes(10);
    let added = format!(
        "\n[[schedules]]\nname = \"db-primary\"\ntime_zone = \"UTC\"\n[[schedules.layers]]\nname = \"pairs\"\n\
         participants = [\"dave\", \"erin\"]\nshift = \"2d\"\nhandoff = \"{}\"\nstart = \"{}\"\n",
        start.format("%H:%M"),
        start.format("%Y-%m-%d"),
    );
    let mut text = std::fs::read_to_string(&paged.config).unwrap();
    text.push_str(&added);
    std::fs::write(&paged.config, text).unwrap();
    klaxon_tests::signal(server.pid(), "HUP");
    let notices = wait_for_notices(receiver, 1);
    let handoff = start.format("%Y-%m-%dT%H:%M:00Z");
    assert_eq!(notices, [(format!("shift/db-primary/dave/starts/{handoff}/dave"), "dave".to_owned())]);
    let audit = || klaxon_ok(&server.url, "maria", &["audit", "--kind", "config.applied", "--format", "json"]);
    let mut recorded = audit();
    for _ in 0..100 {
        if recorded.contains("applied at reload") {
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
        recorded = audit();
    }
    assert!(recorded.contains("schedules[db-primary]"), "the reload is recorded with its diff: {recorded}");

    // Nothing is sent twice: a stop and a start with the new file send no
    // notice again.
    assert!(server.stop().success());
    let server = Klaxond::start_with_env(&paged.dir.path().join("data"), &args, &env);
    let metrics = server.http_address.clone().expect("up serves metrics");
    klaxon_tests::metrics::settle(&metrics, &[&metrics]);
    assert_eq!(shift_notices(receiver).len(), 1);
    assert!(server.stop().success());
}

/// The moved shift notices of a SIGHUP reload: `payments-primary` goes from
/// ana alone to ana and bob on alternate days, so both are told, once,
/// that their shifts of the next two weeks moved (derived from the
/// reload's `config.applied.v1` record); a restart sends nothing again.
#[test]
fn a_reload_that_moves_shifts_tells_both_people_once_across_a_restart() {
    let paged = Paged::start(600, false, "[shift_notices]\nenabled = true\n");
    let receiver = &paged.receiver;
    let (args, env) = (paged.config_args(), paged.env());
    let data = paged.dir.path().join("data");
    let server = Klaxond::start_with_env(&data, &args, &env);
    let metrics = server.http_address.clone().expect("up serves metrics");
    klaxon_tests::metrics::settle(&metrics, &[&metrics]);
    let moved = || -> Vec<(String, String)> {
        shift_notices(receiver).into_iter().filter(|(key, _)| key.contains("/moved/")).collect()
    };
    assert_eq!(moved(), Vec::<(String, String)>::new());

    let text = std::fs::read_to_string(&paged.config).unwrap();
    let alternate = text.replace("participants = [\"ana\"]", "participants = [\"ana\", \"bob\"]");
    assert_ne!(alternate, text);
    std::fs::write(&paged.config, alternate).unwrap();
    klaxon_tests::signal(server.pid(), "HUP");
    for _ in 0..400 {
        if moved().len() >= 2 {
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let mut first = moved();
    first.sort();
    let people: Vec<&str> = first.iter().map(|(_, to)| to.as_str()).collect();
    assert_eq!(people, ["ana", "bob"], "{first:?}");
    assert!(first.iter().all(|(key, _)| key.starts_with("shift/payments-primary/")), "{first:?}");
    // bob's moved notice (his first shift's start notice may come too).
    let bob = receiver
        .requests()
        .into_iter()
        .find(|r| r.body["recipient"] == "bob" && r.idempotency_key.contains("/moved/"))
        .unwrap();
    assert!(bob.body["text"].as_str().unwrap().contains("Now on call: "), "{:?}", bob.body);
    klaxon_tests::metrics::settle(&metrics, &[&metrics]);
    assert!(server.stop().success());

    let server = Klaxond::start_with_env(&data, &args, &env);
    let metrics = server.http_address.clone().expect("up serves metrics");
    klaxon_tests::metrics::settle(&metrics, &[&metrics]);
    assert_eq!(moved().len(), 2, "nothing sent twice: {:?}", moved());
    assert!(server.stop().success());
}
