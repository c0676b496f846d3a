//! Shift notices: a real log, the real pager (for overrides), the shift
//! notifier over the same log, deliveries to a real HTTP receiver, a manual
//! clock.

use super::*;
use klaxon_domain::oncall::Schedules;
use klaxon_domain::oncall::notices::{
    DECIDED_KIND, Notice, NoticeKind, NoticesConfig, NoticesSectionConfig, WeeklyConfig,
};
use klaxon_domain::oncall::roster::{Acting, RosterCommand};
use klaxon_log::{EventData, EventKind, ExpectedVersion, Metadata, NewEvent, StreamId};
use klaxon_paging::shifts::{ShiftHandle, ShiftNotifier, ShiftsConfig};
use klaxon_reactor::Clock;

/// Notices on, `notice_before = "15m"`, through the pager channel, with
/// `weekly` if given.
fn notices(weekly: Option<WeeklyConfig>) -> NoticesConfig {
    let section = NoticesSectionConfig { enabled: true, weekly, ..NoticesSectionConfig::default() };
    section.validate("shift_notices", &["pager".to_string()], &|c| c == "pager").unwrap()
}

struct Shifts {
    handle: ShiftHandle,
    stop: CancellationToken,
    task: tokio::task::JoinHandle<Result<(), klaxon_paging::Error>>,
}

impl Shifts {
    fn start(log: &Log, clock: &ManualClock, pager: &PagerConfig, notices: &NoticesConfig) -> Shifts {
        Shifts::start_live(log, clock, pager, Live::new(pager.schedules.clone()), notices)
    }

    /// Over `schedules`, which the test replaces as a reload would.
    fn start_live(
        log: &Log,
        clock: &ManualClock,
        pager: &PagerConfig,
        schedules: Live<Schedules>,
        notices: &NoticesConfig,
    ) -> Shifts {
        let config = ShiftsConfig { notices: Arc::new(notices.clone()), schedules };
        let outbox: Arc<dyn klaxon_domain::outbox::Outbox> = pager.channels.clone();
        let shifts = ShiftNotifier::new(log.clone(), config, outbox, clock.shared());
        let handle = shifts.handle();
        let stop = CancellationToken::new();
        let task = tokio::spawn(shifts.run(stop.clone()));
        Shifts { handle, stop, task }
    }

    /// Stops it (a restart starts a new one over the same log).
    async fn stop(self) {
        self.stop.cancel();
        self.task.await.unwrap().unwrap();
    }

    /// The idempotency keys received so far, once the notices settled.
    async fn received(&self, receiver: &Receiver) -> Vec<String> {
        self.handle.settled().await.unwrap();
        receiver.requests().into_iter().map(|r| r.idempotency_key).collect()
    }
}

/// A receiver, the test configuration delivering to it, and a world (a
/// log, the clock at `start_time`, intake and the pager) over it: what
/// every test but the DST one starts from.
async fn receiver_and_world() -> (Receiver, PagerConfig, tempfile::TempDir, World) {
    let receiver = Receiver::start(SECRET).await;
    let config = config(&receiver.url);
    let (dir, world) = new_world(&config);
    (receiver, config, dir, world)
}

fn shift_records(log: &Log) -> Vec<String> {
    let records = log.read_all(Position(1), 100_000).unwrap();
    records.into_iter().filter(|r| r.kind.as_str().starts_with("shift.")).map(|r| r.kind.to_string()).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn start_and_end_notices_come_at_the_right_instants_across_a_dst_change() {
    let receiver = Receiver::start(SECRET).await;
    let config = new_york_config(&receiver.url);
    let dir = tempfile::tempdir().unwrap();
    let log = Log::open(dir.path(), Default::default()).unwrap();
    // Saturday 2027-03-13, 08:00 EST: ben's shift (03-12 09:00 EST to
    // 03-13 09:00 EST) is running; ana's runs 03-13 09:00 EST to 03-14
    // 09:00 EDT, 23 hours across the change to summer time.
    let clock = ManualClock::new(at("2027-03-13T13:00:00Z"));
    let shifts = Shifts::start(&log, &clock, &config, &notices(None));
    // A current shift gets its start notice at the first start.
    let ben_starts = "shift/payments-primary/ben/starts/2027-03-12T14:00:00Z/ben";
    assert_eq!(shifts.received(&receiver).await, [ben_starts]);
    let first = &receiver.requests()[0];
    assert!(first.signature_ok);
    assert_eq!(first.body["recipient"], "ben");
    assert_eq!(first.body["kind"], "shift_notice");

    // 15 minutes before 09:00 EST, not a second earlier.
    clock.advance(TimeDelta::minutes(45) - TimeDelta::seconds(1));
    assert_eq!(shifts.received(&receiver).await.len(), 1);
    clock.advance(TimeDelta::seconds(1));
    let ana_starts = "shift/payments-primary/ana/starts/2027-03-13T14:00:00Z/ana";
    assert_eq!(shifts.received(&receiver).await[1..], [ana_starts]);
    let text = receiver.requests()[1].body["text"].as_str().unwrap().to_owned();
    assert!(text.contains("Sat 2027-03-13 09:00 EST") && text.contains("Sun 2027-03-14 09:00 EDT"), "{text}");

    // At 09:00 EST ben's shift ends.
    clock.advance(TimeDelta::minutes(15));
    let ben_ends = "shift/payments-primary/ben/ends/2027-03-13T14:00:00Z/ben";
    assert_eq!(shifts.received(&receiver).await[2..], [ben_ends]);

    // 23 hours later (09:00 EDT is 13:00Z): ben's start notice at 12:45Z,
    // ana's end at 13:00Z.
    clock.advance(at("2027-03-14T12:45:00Z") - at("2027-03-13T14:00:00Z") - TimeDelta::seconds(1));
    assert_eq!(shifts.received(&receiver).await.len(), 3);
    clock.advance(TimeDelta::seconds(1));
    let ben_again = "shift/payments-primary/ben/starts/2027-03-14T13:00:00Z/ben";
    assert_eq!(shifts.received(&receiver).await[3..], [ben_again]);
    clock.advance(TimeDelta::minutes(15));
    let ana_ends = "shift/payments-primary/ana/ends/2027-03-14T13:00:00Z/ana";
    assert_eq!(shifts.received(&receiver).await[4..], [ana_ends]);

    // Each notice was decided, then recorded as sent, once.
    let kinds = shift_records(&log);
    assert_eq!(kinds.iter().filter(|k| *k == "shift.notice_decided.v1").count(), 5);
    assert_eq!(kinds.iter().filter(|k| *k == "shift.notice_sent.v1").count(), 5);
    shifts.stop().await;
}

/// A stop while a notice is being delivered (the receiver slow to answer)
/// lets the round finish: the notice is recorded as sent, and the restart
/// sends nothing again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stop_during_a_delivery_lets_the_notice_be_recorded_as_sent() {
    let receiver = Receiver::start(SECRET).await;
    receiver.answer_after(std::time::Duration::from_millis(800));
    let config = new_york_config(&receiver.url);
    let dir = tempfile::tempdir().unwrap();
    let log = Log::open(dir.path(), Default::default()).unwrap();
    // ben's shift is running: his start notice is sent at the first start.
    let clock = ManualClock::new(at("2027-03-13T13:00:00Z"));
    let shifts = Shifts::start(&log, &clock, &config, &notices(None));
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while receiver.requests().is_empty() {
        assert!(std::time::Instant::now() < deadline, "ben's start notice is sent");
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    assert_eq!(shift_records(&log), ["shift.notice_decided.v1"], "not answered yet");
    shifts.stop().await;
    assert_eq!(shift_records(&log), ["shift.notice_decided.v1", "shift.notice_sent.v1"]);

    let again = Shifts::start(&log, &clock, &config, &notices(None));
    assert_eq!(again.received(&receiver).await.len(), 1, "nothing is sent twice");
    again.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_override_tells_both_people_once_and_restarts_send_nothing_twice() {
    let (receiver, config, _dir, w) = receiver_and_world().await;
    let notices = notices(None);
    // Wednesday 2026-11-25: ana's week (since 11-23, two days ago) runs;
    // it is too late for its start notice.
    let shifts = Shifts::start(&w.log, &w.clock, &config, &notices);
    assert_eq!(shifts.received(&receiver).await, Vec::<String>::new());

    // carl takes Tuesday 12-01 out of ben's week (11-30 to 12-07).
    let maria = Acting { actor: ActorId::new("maria").unwrap(), manager: true };
    let add = RosterCommand::AddOverride {
        who: ActorId::new("carl").unwrap(),
        from: at("2026-12-01T00:00:00Z"),
        until: at("2026-12-02T00:00:00Z"),
    };
    w.pager.change_schedule("payments-primary", &maria, &add, None).await.unwrap();
    let mut received = shifts.received(&receiver).await;
    received.sort();
    assert_eq!(received.len(), 2, "{received:?}");
    assert!(received[0].starts_with("shift/payments-primary/ben/moved/"), "{received:?}");
    assert!(received[1].starts_with("shift/payments-primary/carl/moved/"), "{received:?}");
    let requests = receiver.requests();
    let ben = requests.iter().find(|r| r.body["recipient"] == "ben").unwrap();
    let text = ben.body["text"].as_str().unwrap();
    assert!(text.contains("No longer on call: Mon 2026-11-30 00:00 UTC – Mon 2026-12-07 00:00 UTC"), "{text}");
    assert!(text.contains("Now on call: Mon 2026-11-30 00:00 UTC – Tue 2026-12-01 00:00 UTC"), "{text}");
    assert!(text.contains("Now on call: Wed 2026-12-02 00:00 UTC – Mon 2026-12-07 00:00 UTC"), "{text}");
    let carl = requests.iter().find(|r| r.body["recipient"] == "carl").unwrap();
    let text = carl.body["text"].as_str().unwrap();
    assert!(text.contains("Now on call: Tue 2026-12-01 00:00 UTC – Wed 2026-12-02 00:00 UTC"), "{text}");

    // A new notifier over the same log sends nothing again.
    shifts.stop().await;
    let shifts = Shifts::start(&w.log, &w.clock, &config, &notices);
    assert_eq!(shifts.received(&receiver).await.len(), 2);
    shifts.stop().await;

    // A notice decided by a process that died before delivering it: the
    // next one delivers it, once.
    let ana_ends = "payments-primary/ana/ends/2026-11-30T00:00:00Z";
    let decided = Notice {
        key: ana_ends.into(),
        schedule: "payments-primary".into(),
        kind: NoticeKind::Ends,
        person: Some(ActorId::new("ana").unwrap()),
        at: w.clock.now(),
        shift: None,
        removed: vec![],
        added: vec![],
        handoffs: vec![],
        title: "Your on-call shift on payments-primary ended".into(),
        text: "ana, your shift ended.".into(),
        sends: vec![klaxon_domain::oncall::notices::Send { channel: "pager".into(), recipient: Some("ana".into()) }],
    };
    let event = NewEvent {
        id: Notice::decided_id(ana_ends),
        kind: EventKind::new(DECIDED_KIND).unwrap(),
        data: EventData::from_value(&decided.to_json()).unwrap(),
        metadata: Metadata::default(),
    };
    let stream = StreamId::new("shifts-payments-primary").unwrap();
    w.log.append(&stream, ExpectedVersion::Any, vec![event]).await.unwrap();
    let shifts = Shifts::start(&w.log, &w.clock, &config, &notices);
    assert_eq!(shifts.received(&receiver).await[2..], [format!("shift/{ana_ends}/ana")]);
    shifts.stop().await;
    let shifts = Shifts::start(&w.log, &w.clock, &config, &notices);
    assert_eq!(shifts.received(&receiver).await.len(), 3);

    // When the shift ends it is not decided again; ben's start is new.
    w.clock.advance(at("2026-11-30T00:00:00Z") - w.clock.now());
    let received = shifts.received(&receiver).await;
    assert_eq!(received[3..], ["shift/payments-primary/ben/starts/2026-11-30T00:00:00Z/ben"], "{received:?}");
    assert_eq!(receiver.requests().iter().filter(|r| r.idempotency_key.contains("ana/ends")).count(), 1);
    shifts.stop().await;
    w.stop.cancel();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_weekly_summary_is_posted_once_a_week_across_restarts() {
    let (receiver, config, _dir, w) = receiver_and_world().await;
    let (log, clock) = (w.log.clone(), w.clock.clone());
    let weekly = WeeklyConfig {
        day: Some("mon".into()),
        time: Some("09:00".into()),
        time_zone: Some("Europe/Berlin".into()),
        channel: Some("pager".into()),
        to_people: false,
    };
    let notices = notices(Some(weekly));
    let summaries = |keys: Vec<String>| keys.into_iter().filter(|k| k.contains("/summary/")).collect::<Vec<_>>();
    let shifts = Shifts::start(&log, &clock, &config, &notices);
    // Wednesday: last Monday's summary is in the past.
    assert_eq!(summaries(shifts.received(&receiver).await), Vec::<String>::new());

    // Monday 2026-11-30 09:00 in Berlin is 08:00Z.
    clock.advance(at("2026-11-30T08:00:00Z") - start_time() - TimeDelta::seconds(1));
    assert_eq!(summaries(shifts.received(&receiver).await), Vec::<String>::new());
    clock.advance(TimeDelta::seconds(1));
    let week1 = ["shift/duty-managers/summary/2026-11-30", "shift/payments-primary/summary/2026-11-30"];
    let mut got = summaries(shifts.received(&receiver).await);
    got.sort();
    assert_eq!(got, week1);
    let post = receiver.requests().into_iter().find(|r| r.idempotency_key == week1[1]).unwrap();
    assert!(post.body["recipient"].is_null(), "to the channel, not a person");
    let text = post.body["text"].as_str().unwrap();
    assert!(text.contains("Mon 2026-11-30 08:00 UTC – Mon 2026-12-07 00:00 UTC: ben"), "{text}");
    assert!(text.contains("Mon 2026-12-07 00:00 UTC – Mon 2026-12-07 08:00 UTC: ana"), "{text}");

    // Restarted an hour later: nothing again.
    shifts.stop().await;
    clock.advance(TimeDelta::hours(1));
    let shifts = Shifts::start(&log, &clock, &config, &notices);
    assert_eq!(summaries(shifts.received(&receiver).await).len(), 2);

    // The next Monday, the next week's.
    clock.advance(TimeDelta::days(7) - TimeDelta::hours(1));
    let mut got = summaries(shifts.received(&receiver).await).split_off(2);
    got.sort();
    assert_eq!(got, ["shift/duty-managers/summary/2026-12-07", "shift/payments-primary/summary/2026-12-07"]);
    shifts.stop().await;
    w.stop.cancel();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn disabled_notices_send_and_record_nothing() {
    let (receiver, config, _dir, w) = receiver_and_world().await;
    let shifts = Shifts::start(&w.log, &w.clock, &config, &NoticesConfig::disabled());
    let maria = Acting { actor: ActorId::new("maria").unwrap(), manager: true };
    let add = RosterCommand::AddOverride {
        who: ActorId::new("carl").unwrap(),
        from: at("2026-12-01T00:00:00Z"),
        until: at("2026-12-02T00:00:00Z"),
    };
    w.pager.change_schedule("payments-primary", &maria, &add, None).await.unwrap();
    assert_eq!(shifts.received(&receiver).await, Vec::<String>::new());
    // Across a handoff (ben starts 11-30) and the override's start.
    w.clock.advance(at("2026-12-01T00:00:00Z") - w.clock.now());
    assert_eq!(shifts.received(&receiver).await, Vec::<String>::new());
    assert_eq!(shift_records(&w.log), Vec::<String>::new());
    shifts.stop().await;
    w.stop.cancel();
}

/// `payments-primary`: ana and `second` weekly from 2026-11-23.
fn payments_primary(second: &str) -> String {
    format!(
        r#"
[[schedules]]
name = "payments-primary"
time_zone = "UTC"
[[schedules.layers]]
name = "weekly"
participants = ["ana", "{second}"]
shift = "7d"
handoff = "00:00"
start = "2026-11-23"
"#
    )
}

/// `payments-primary` (ana and `second` weekly from 2026-11-23), the
/// duty managers, and `extra`.
fn reloaded(second: &str, extra: &str) -> Arc<Schedules> {
    schedules(&format!("{}{DUTY_MANAGERS}{extra}", payments_primary(second)))
}

/// `db-primary`: dave and `second` every two days, handing off at 10:10
/// UTC from 2026-11-25 (ten minutes after the test's start: dave's start
/// notice is due at once; `second`'s running shift started two days
/// before, too long ago for a start notice).
fn db_primary(second: &str) -> String {
    format!(
        r#"
[[schedules]]
name = "db-primary"
time_zone = "UTC"
[[schedules.layers]]
name = "daily"
participants = ["dave", "{second}"]
shift = "2d"
handoff = "10:10"
start = "2026-11-25"
"#
    )
}

/// A reload (the pager's configuration and the notices' schedules
/// replaced together, as `klaxond` does at SIGHUP) changes the notices
/// from then on: a changed rotation's next start goes to its new person,
/// an added schedule gets its notices, a removed one none, an override
/// moves the reloaded shifts; nothing decided is decided or sent again,
/// also by a notifier started afresh.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reload_changes_the_notices_from_then_on_and_sends_nothing_twice() {
    let (receiver, config, _dir, w) = receiver_and_world().await;
    let notices = notices(None);
    let live = Live::new(config.schedules.clone());
    let reload = |schedules: Arc<Schedules>| {
        w.config.set(Arc::new(PagerConfig { schedules: schedules.clone(), ..(*w.config.get()).clone() }));
        live.set(schedules);
    };
    // Wednesday 2026-11-25 10:00: ana's week runs (too late for its start).
    let shifts = Shifts::start_live(&w.log, &w.clock, &config, live.clone(), &notices);
    assert_eq!(shifts.received(&receiver).await, Vec::<String>::new());

    // Reloaded: carl instead of ben next week, and db-primary, whose
    // first shift (dave's) starts at 10:10, within the 15 minutes' notice.
    reload(reloaded("carl", &db_primary("erin")));
    let dave_starts = "shift/db-primary/dave/starts/2026-11-25T10:10:00Z/dave";
    assert_eq!(shifts.received(&receiver).await, [dave_starts]);

    // Reloaded again with dave's shift as it was (frank after him): his
    // notice is not decided again.
    reload(reloaded("carl", &db_primary("frank")));
    assert_eq!(shifts.received(&receiver).await, [dave_starts]);

    // An override on the reloaded rotation moves carl's week, not ben's.
    let maria = Acting { actor: ActorId::new("maria").unwrap(), manager: true };
    let add = RosterCommand::AddOverride {
        who: ActorId::new("zoe").unwrap(),
        from: at("2026-12-01T00:00:00Z"),
        until: at("2026-12-02T00:00:00Z"),
    };
    w.pager.change_schedule("payments-primary", &maria, &add, None).await.unwrap();
    let mut moved = shifts.received(&receiver).await.split_off(1);
    moved.sort();
    assert_eq!(moved.len(), 2, "{moved:?}");
    assert!(moved[0].starts_with("shift/payments-primary/carl/moved/"), "{moved:?}");
    assert!(moved[1].starts_with("shift/payments-primary/zoe/moved/"), "{moved:?}");

    // db-primary removed: dave's end (11-27 10:10) and frank's start
    // are never sent. Next Monday's start is carl's.
    reload(reloaded("carl", ""));
    assert_eq!(shifts.received(&receiver).await.len(), 3);
    w.clock.advance(at("2026-11-30T00:00:00Z") - w.clock.now() - TimeDelta::minutes(15));
    let received = shifts.received(&receiver).await;
    assert_eq!(received[3..], ["shift/payments-primary/carl/starts/2026-11-30T00:00:00Z/carl"], "{received:?}");
    w.clock.advance(TimeDelta::minutes(15));
    let received = shifts.received(&receiver).await;
    assert_eq!(received[4..], ["shift/payments-primary/ana/ends/2026-11-30T00:00:00Z/ana"], "{received:?}");
    assert!(!received.iter().any(|k| k.contains("/ben/") || k.contains("/frank/") || k.contains("dave/ends")));

    // A notifier started afresh on the reloaded schedules sends nothing
    // again; every notice was decided and recorded as sent once.
    shifts.stop().await;
    let shifts = Shifts::start_live(&w.log, &w.clock, &config, live.clone(), &notices);
    assert_eq!(shifts.received(&receiver).await.len(), 5);
    let kinds = shift_records(&w.log);
    assert_eq!(kinds.iter().filter(|k| *k == DECIDED_KIND).count(), 5, "{kinds:?}");
    assert_eq!(kinds.iter().filter(|k| *k == "shift.notice_sent.v1").count(), 5, "{kinds:?}");
    shifts.stop().await;
    w.stop.cancel();
}

/// Records a configuration whose `payments-primary` rotates ana and
/// `second` weekly (beside the duty managers), as `klaxond` records a
/// start or a reload; returns its hash.
async fn record_schedules(log: &Log, previous: Option<&str>, second: &str, extra: &str) -> String {
    let toml = format!(
        r#"{}{DUTY_MANAGERS}
[paging]
severities = ["sev1"]
{extra}"#,
        payments_primary(second)
    );
    let config = serde_json::to_value(toml::from_str::<toml::Table>(&toml).unwrap()).unwrap();
    let hash = format!("{:x}", std::hash::BuildHasher::hash_one(&std::hash::RandomState::new(), &toml));
    record_applied(log, previous, &hash, config).await;
    hash
}

/// A reload whose `[[schedules]]` give ben's coming week to carl tells
/// both, once: derived from the recorded configurations (the live view
/// is never replaced here), so a notifier started afresh and a second one
/// side by side send nothing again; a configuration that changes no
/// schedule tells nobody.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reload_that_moves_shifts_tells_whose_once_from_the_recorded_configuration() {
    let receiver = Receiver::start(SECRET).await;
    let config = config(&receiver.url);
    let dir = tempfile::tempdir().unwrap();
    let log = Log::open(dir.path(), Default::default()).unwrap();
    let first = record_schedules(&log, None, "ben", "").await;
    // The clock at the first record: moved notices are sent within a day
    // of their record, whose time is the log's.
    let recorded_at = log.read_all(Position(1), 10).unwrap()[0].recorded_at;
    let clock = ManualClock::new(recorded_at);
    let notices = notices(None);
    let moved = |keys: Vec<String>| -> Vec<String> { keys.into_iter().filter(|k| k.contains("/moved/")).collect() };

    let shifts = Shifts::start(&log, &clock, &config, &notices);
    assert_eq!(moved(shifts.received(&receiver).await), Vec::<String>::new(), "the first record moves nothing");

    let second = record_schedules(&log, Some(&first), "carl", "").await;
    let reload_id = log
        .read_all(Position(1), 10)
        .unwrap()
        .into_iter()
        .rfind(|r| r.kind.as_str() == "config.applied.v1")
        .unwrap()
        .id;
    let mut keys = moved(shifts.received(&receiver).await);
    keys.sort();
    assert_eq!(
        keys,
        [
            format!("shift/payments-primary/ben/moved/{reload_id}/ben"),
            format!("shift/payments-primary/carl/moved/{reload_id}/carl"),
        ]
    );
    let texts: Vec<String> = receiver
        .requests()
        .into_iter()
        .filter(|r| r.idempotency_key.contains("/moved/"))
        .map(|r| r.body["text"].as_str().unwrap_or_default().to_owned())
        .collect();
    assert!(texts.iter().any(|t| t.starts_with("ben, your on-call shifts on payments-primary changed.")), "{texts:?}");

    // Another key changes, no schedule: nobody is told.
    record_schedules(&log, Some(&second), "carl", "[notifier]\nseverities = [\"sev1\"]\n").await;
    assert_eq!(moved(shifts.received(&receiver).await).len(), 2);

    // Started afresh, and a second notifier beside it: nothing again.
    shifts.stop().await;
    let again = Shifts::start(&log, &clock, &config, &notices);
    let beside = Shifts::start(&log, &clock, &config, &notices);
    assert_eq!(moved(again.received(&receiver).await).len(), 2);
    assert_eq!(moved(beside.received(&receiver).await).len(), 2);
    let kinds = shift_records(&log);
    let decided = log
        .read_all(Position(1), 100_000)
        .unwrap()
        .into_iter()
        .filter(|r| r.kind.as_str() == DECIDED_KIND && r.data.as_str().contains("/moved/"))
        .count();
    assert_eq!(decided, 2, "{kinds:?}");
    again.stop().await;
    beside.stop().await;
}
