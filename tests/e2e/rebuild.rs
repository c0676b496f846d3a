//! Bounded memory through a from-scratch rebuild (issue 19): intake,
//! paging, the executive notifier and review fold a long generated history (thousands
//! of incidents over two years, almost all closed long ago; see
//! `history.rs`) from position 1, with no snapshot, over a real sled log in
//! a temporary folder, with the configuration the paging e2e tests run
//! (webhooks to a real receiver) and a manual clock. While they fold, the
//! most incidents each holds at once (`Progress::held_max`) stays within
//! what it holds once caught up (open work) plus a small constant; and
//! what they then answer, incident by incident and in aggregate (intake's
//! list pages with their filters, from its rows table; review's trends
//! with theirs, from its rows table), is what services that never evict
//! answer over the same log.
//!
//! (Here rather than in each service's crate: one history feeds the three,
//! and the services do not depend on one another.)

use std::num::NonZeroU64;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, TimeDelta, Utc};
use klaxon_domain::catalog::ServiceCatalogConfig;
use klaxon_domain::ids::{IncidentId, ServiceName, Severity};
use klaxon_domain::incident::Status;
use klaxon_domain::notifier::NotifierSectionConfig;
use klaxon_domain::oncall::SchedulesConfig;
use klaxon_domain::paging::PagingFileConfig;
use klaxon_domain::review::TrendFilter;
use klaxon_log::{Log, Position};
use klaxon_notifier::{Notifier, NotifierOptions};
use klaxon_paging::{Pager, PagerConfig};
use klaxon_reactor::{ManualClock, Progress, SnapshotFile};
use klaxon_review::Reviews;
use klaxon_tests::config::{Paged, SECRET_ENV};
use tokio_util::sync::CancellationToken;

use crate::history;

/// Incidents in the generated history (about six records each): 3,000,
/// or 16,000 (about 100,000 records, the scale bench's first row) with
/// `KLAXON_SLOW_TESTS=1`.
fn incidents() -> u64 {
    if std::env::var("KLAXON_SLOW_TESTS").as_deref() == Ok("1") { 16_000 } else { 3_000 }
}
/// Per mille of them (the newest) left open.
const OPEN_PER_MILLE: u64 = 10;
/// `[memory] evict_closed_after`, as the scale bench runs it.
const AFTER: Duration = Duration::from_secs(24 * 3600);
/// What a shell may hold during the fold beyond what it holds once caught
/// up: the incidents the records since its last look for finished ones
/// touched. It looks every `EVICT_EVERY` (1,024) records, and an incident
/// has about six, so half that is a loose bound (without eviction a
/// shell holds all 3,000).
const SLACK: u64 = klaxon_reactor::shell::EVICT_EVERY / 2;

fn now() -> DateTime<Utc> {
    "2026-11-02T10:00:00Z".parse().unwrap()
}

/// The three services' configuration, parsed from the TOML `klaxond` is
/// given in the paging e2e tests.
struct Configs {
    pager: PagerConfig,
    notifier: NotifierOptions,
    catalog: Arc<klaxon_domain::catalog::ServiceCatalog>,
}

fn configs(paged: &Paged) -> Configs {
    #[derive(serde::Deserialize)]
    struct File {
        services: ServiceCatalogConfig,
        schedules: SchedulesConfig,
        notifier: NotifierSectionConfig,
        channels: Vec<klaxon_channels::ChannelConfig>,
        #[serde(flatten)]
        paging: PagingFileConfig,
    }
    let text = std::fs::read_to_string(&paged.config).unwrap();
    let mut table: toml::Table = toml::from_str(&text).unwrap();
    table.remove("severity");
    let file: File = table.try_into().unwrap();
    let schedules = file.schedules.validate("schedules").unwrap();
    let paging = Arc::new(file.paging.validate("", &schedules).unwrap());
    let secret = paged.secret.clone();
    let channels = Arc::new(
        klaxon_channels::Channels::new(&file.channels, |v| (v == SECRET_ENV).then(|| secret.clone())).unwrap(),
    );
    let catalog = Arc::new(file.services.validate("services").unwrap());
    Configs {
        pager: PagerConfig {
            paging: paging.clone(),
            catalog: catalog.clone(),
            schedules: Arc::new(schedules),
            channels: channels.clone(),
        },
        notifier: NotifierOptions {
            notifier: Arc::new(file.notifier.validate("notifier").unwrap()),
            paging: Some(paging),
            channels,
            feed_lag_max: klaxon_notifier::feed::CHANGES_BUFFER,
        },
        catalog,
    }
}

/// Intake, paging, the notifier and review over one log, folding it from
/// scratch.
struct Shells {
    intake: klaxon_intake::Handle,
    pager: klaxon_paging::Handle,
    notifier: klaxon_notifier::Handle,
    reviews: klaxon_review::Handle,
    stop: CancellationToken,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

/// The barrier, for a long fold on a loaded machine: waits again while the
/// shell keeps folding (its applied position moves between two waits),
/// fails when it stops moving short of `head`.
async fn processed<S: klaxon_reactor::Service>(shell: &klaxon_reactor::Handle<S>, head: Position) {
    let mut applied = shell.progress().applied;
    for _ in 0..100 {
        match shell.wait_processed(head).await {
            Ok(_) => return,
            Err(e) => {
                let now = shell.progress().applied;
                assert!(now > applied, "{e}");
                applied = now;
            }
        }
    }
    panic!("{} did not reach {head}", S::NAME);
}

impl Shells {
    fn start(log: &Log, configs: &Configs, clock: &ManualClock, after: Option<Duration>) -> Shells {
        Shells::start_with(log, configs, clock, after, None)
    }

    /// As [`Shells::start`], saving snapshots in `snapshots` (at the head
    /// and at the stop) and resuming from those found there.
    fn start_with(
        log: &Log,
        configs: &Configs,
        clock: &ManualClock,
        after: Option<Duration>,
        snapshots: Option<&Path>,
    ) -> Shells {
        let stop = CancellationToken::new();
        let mut pager = Pager::new(log.clone(), configs.pager.clone(), clock.shared());
        let mut notifier = Notifier::new(log.clone(), configs.notifier.clone(), clock.shared());
        let mut reviews = Reviews::new(log.clone(), configs.catalog.clone(), clock.shared());
        let mut intake = klaxon_intake::Intake::new(log.clone(), Default::default(), clock.shared());
        if let Some(after) = after {
            intake = intake.with_evict_closed_after(after);
            pager = pager.with_eviction(after);
            notifier = notifier.with_eviction(after);
            reviews = reviews.with_eviction(after);
        }
        if let Some(dir) = snapshots {
            let every = NonZeroU64::new(1 << 40).unwrap();
            pager = pager.with_snapshots(SnapshotFile::new(dir.join("paging.snap")), every);
            notifier = notifier.with_snapshots(SnapshotFile::new(dir.join("notifier.snap")), every);
            reviews = reviews.with_snapshots(SnapshotFile::new(dir.join("review.snap")), every);
        }
        let (p, n, r, i) = (pager.handle(), notifier.handle(), reviews.handle(), intake.handle());
        let tasks = vec![
            tokio::spawn({
                let stop = stop.clone();
                async move { intake.run(stop).await.unwrap() }
            }),
            tokio::spawn({
                let stop = stop.clone();
                async move { pager.run(stop).await.unwrap() }
            }),
            tokio::spawn({
                let stop = stop.clone();
                async move { notifier.run(stop).await.unwrap() }
            }),
            tokio::spawn({
                let stop = stop.clone();
                async move { reviews.run(stop).await.unwrap() }
            }),
        ];
        Shells { intake: i, pager: p, notifier: n, reviews: r, stop, tasks }
    }

    /// Waits until the three have processed the log's head and it holds
    /// still (each may react to what another appended); returns the head.
    async fn settled(&self, log: &Log) -> Position {
        for _ in 0..20 {
            let head = log.head();
            processed(self.pager.reactor(), head).await;
            processed(self.notifier.reactor(), head).await;
            processed(self.reviews.reactor(), head).await;
            // Intake's barrier waits a few seconds at a time: again while
            // it keeps folding.
            for attempt in 0.. {
                match self.intake.wait_for(head).await {
                    Ok(()) => break,
                    Err(e) => assert!(attempt < 100, "intake did not reach {head}: {e}"),
                }
            }
            if log.head() == head {
                return head;
            }
        }
        panic!("the services did not settle: the head kept moving");
    }

    fn progress(&self) -> [(&'static str, Progress); 3] {
        [
            ("paging", self.pager.reactor().progress()),
            ("notifier", self.notifier.reactor().progress()),
            ("review", self.reviews.reactor().progress()),
        ]
    }

    /// What the three answer about `id`: paging's and the notifier's
    /// entries and review's dossier (read back from the log when evicted).
    async fn answers(&self, id: IncidentId) -> [String; 3] {
        let json = |v: Option<String>| v.unwrap_or_default();
        let paging = self
            .pager
            .reactor()
            .read_incident(id, |s| s.incidents().get(&id).map(|p| serde_json::to_string(p).unwrap()))
            .await
            .unwrap();
        let notifier = self
            .notifier
            .reactor()
            .read_incident(id, |s| s.incidents().get(&id).map(|n| serde_json::to_string(n).unwrap()))
            .await
            .unwrap();
        let dossier = serde_json::to_string(&self.reviews.dossier(id).await.unwrap()).unwrap();
        [json(paging), json(notifier), dossier]
    }

    /// What they answer over every incident: paging's counts, trend
    /// reports of the whole history and of a quarter, unfiltered and by
    /// service, team and severity, and intake's incident list, every page,
    /// unfiltered and by status, severity and service.
    async fn aggregates(&self) -> Vec<String> {
        let mut answers = vec![format!("{:?}", self.pager.counts())];
        let service = |s: &str| Some(ServiceName::new(s).unwrap());
        let filters = [
            TrendFilter::default(),
            TrendFilter { service: service("payments"), ..Default::default() },
            TrendFilter { team: Some("payments".into()), ..Default::default() },
            TrendFilter { severity: Some(Severity::Sev4), ..Default::default() },
            TrendFilter { severity: Some(Severity::Sev2), service: service("checkout"), ..Default::default() },
        ];
        for (from, to) in
            [(now() - TimeDelta::days(800), now()), (now() - TimeDelta::days(200), now() - TimeDelta::days(110))]
        {
            for filter in &filters {
                let trends = self.reviews.trends(from, to, filter).await.unwrap();
                answers.push(serde_json::to_string(&trends).unwrap());
            }
        }
        let lists = [
            klaxon_intake::ListFilter::default(),
            klaxon_intake::ListFilter { statuses: vec![Status::Closed], ..Default::default() },
            klaxon_intake::ListFilter { statuses: vec![Status::Declared, Status::Resolved], ..Default::default() },
            klaxon_intake::ListFilter { severities: vec![Severity::Sev2, Severity::Sev1], ..Default::default() },
            klaxon_intake::ListFilter { service: service("payments"), ..Default::default() },
            klaxon_intake::ListFilter { service: service("nowhere"), ..Default::default() },
        ];
        for filter in &lists {
            let mut below = None;
            for _ in 0..10_000 {
                let (page, next) = self.intake.list(filter, 97, below).await.unwrap();
                let numbers: Vec<u64> = page.iter().map(|i| i.id().number()).collect();
                answers.push(format!("{filter:?} below {below:?}: {numbers:?} next {next:?}"));
                answers.push(format!("{page:?}"));
                below = next;
                if below.is_none() {
                    break;
                }
            }
        }
        answers
    }

    async fn stop(self) {
        self.stop.cancel();
        for task in self.tasks {
            task.await.unwrap();
        }
    }
}

#[test]
fn a_rebuild_from_scratch_holds_open_work_while_it_folds_and_answers_as_one_that_never_evicts() {
    let paged = Paged::start(600, true, "");
    let configs = configs(&paged);
    let dir = tempfile::tempdir().unwrap();
    paged.runtime.block_on(async {
        let log = Log::open(dir.path(), Default::default()).unwrap();
        let incidents = incidents();
        let written = history::write(&log, incidents, OPEN_PER_MILLE, now(), false).await;
        let clock = ManualClock::new(now());

        // Shells that never evict fold it first and carry out whatever the
        // history still owes (their reactions are in the log afterwards).
        let kept = Shells::start(&log, &configs, &clock, None);
        let head = kept.settled(&log).await;
        for (service, p) in kept.progress() {
            assert_eq!(p.held, incidents, "{service} without eviction holds every incident: {p:?}");
        }
        assert_eq!(kept.intake.held() as u64, incidents);

        // A rebuild from scratch with eviction: bounded by open work while
        // it folds, nothing new to write, and the same answers.
        let evicting = Shells::start(&log, &configs, &clock, Some(AFTER));
        assert_eq!(evicting.settled(&log).await, head, "the rebuild wrote nothing");
        for (service, p) in evicting.progress() {
            eprintln!("{service}: {p:?} ({} events, {} open)", written.events, written.open);
            assert_eq!(p.held + p.evicted, incidents, "{service}: {p:?}");
            assert!(p.held >= written.open, "{service} holds every open incident: {p:?}");
            assert!(p.held < incidents / 4, "{service} evicted most of the history: {p:?}");
            assert!(
                p.held_max <= p.held + SLACK,
                "{service} held {} incidents at once while folding, {} once caught up (open: {}): {p:?}",
                p.held_max,
                p.held,
                written.open
            );
        }
        // Review's evicted incidents are rows in its table, not in memory:
        // its state counts them (written, each, at least once).
        let reviews = evicting.reviews.reactor();
        let (rows, writes, _) = reviews.read(|state| reviews.service().table_counts(state));
        let evicted = reviews.progress().evicted;
        eprintln!("review: {rows} trend rows on disk, {writes} slots written, {evicted} evicted");
        assert!(rows <= evicted && rows >= evicted * 9 / 10, "{rows} rows, {evicted} evicted");
        assert!(writes >= rows);
        let (evicted_aggregates, kept_aggregates) = (evicting.aggregates().await, kept.aggregates().await);
        assert!(evicted_aggregates.len() > 30, "the lists have pages");
        for (evicted, kept) in evicted_aggregates.iter().zip(&kept_aggregates) {
            assert_eq!(evicted, kept);
        }
        assert_eq!(evicted_aggregates.len(), kept_aggregates.len());
        // Intake evicts by its clock's timer as it folds: by now (after
        // thousands of queries) every due eviction is done.
        let held = evicting.intake.held() as u64;
        assert_eq!(held + evicting.intake.evicted() as u64, incidents, "intake");
        assert!(held >= written.open && held < incidents / 4, "intake holds open work: {held}");
        for number in 1..=incidents {
            let id = IncidentId::from_number(number).unwrap();
            assert_eq!(evicting.answers(id).await, kept.answers(id).await, "incident {id}");
        }
        evicting.stop().await;
        kept.stop().await;
    });
}

/// Evicted incidents across a restart from snapshots: the snapshots of
/// shells that evicted most of a history keep nothing of the evicted
/// incidents (no list of their ids: the log says which they are), and
/// after the restart, new records about evicted incidents (reopened, then
/// resolved again) read them back from the log and lead to what shells
/// that never evict make of the same log: these, folding it from scratch
/// afterwards, find nothing more to write and answer the same, incident by
/// incident and in aggregate.
#[test]
fn after_a_restart_from_snapshots_evicted_incidents_come_back_from_the_log_and_answer_as_if_never_evicted() {
    use klaxon_domain::ids::ActorId;
    use klaxon_domain::incident::{Command, Status};
    use klaxon_log::{ExpectedVersion, StreamVersion};
    use klaxon_reactor::{Append, Ids, streams};

    const INCIDENTS: u64 = 1_500;
    const REOPENED: usize = 4;
    let paged = Paged::start(600, true, "");
    let configs = configs(&paged);
    let dir = tempfile::tempdir().unwrap();
    let snapshots = dir.path().join("snapshots");
    paged.runtime.block_on(async {
        let log = Log::open(dir.path().join("log"), Default::default()).unwrap();
        history::write(&log, INCIDENTS, OPEN_PER_MILLE, now(), false).await;
        let clock = ManualClock::new(now());

        let evicting = Shells::start_with(&log, &configs, &clock, Some(AFTER), Some(&snapshots));
        evicting.settled(&log).await;
        // Resolved incidents, evicted by all three, to reopen later.
        let mut resolved = Vec::new();
        for number in 1..=INCIDENTS {
            let id = IncidentId::from_number(number).unwrap();
            let records = log.read_stream(&streams::incident(id), StreamVersion(1), usize::MAX).unwrap();
            let incident = klaxon_reactor::decode::fold_incident(&records).unwrap().unwrap();
            let pager = evicting.pager.reactor();
            let (notifier, review) = (evicting.notifier.reactor(), evicting.reviews.reactor());
            if incident.status() == Status::Resolved
                && pager.is_evicted(id).await.unwrap()
                && notifier.is_evicted(id).await.unwrap()
                && review.is_evicted(id).await.unwrap()
            {
                resolved.push((id, incident));
            }
            if resolved.len() == REOPENED {
                break;
            }
        }
        assert_eq!(resolved.len(), REOPENED, "the history has resolved incidents, evicted");
        evicting.stop().await;

        // Paging's and the notifier's snapshots hold open work only: no id
        // of an evicted incident (review keeps fixed-size trend rows).
        for file in ["paging.snap", "notifier.snap"] {
            let text = String::from_utf8_lossy(&std::fs::read(snapshots.join(file)).unwrap()).into_owned();
            for (id, _) in &resolved {
                assert!(!text.contains(&format!("\"{id}\"")), "{file} mentions evicted {id}");
            }
        }

        // New records about them: each reopened, then resolved again.
        let maria = ActorId::new("maria").unwrap();
        for (id, incident) in &resolved {
            let mut state = Some(incident.clone());
            for command in [Command::Reopen { reason: "back".into() }, Command::Resolve { summary: "again".into() }] {
                let events = klaxon_domain::incident::decide(state.as_ref(), &command, id, &maria, now()).unwrap();
                for event in &events {
                    state = klaxon_domain::incident::evolve(state, event);
                }
                let ids = Ids::caused_by(uuid::Uuid::new_v4(), "test.command");
                let append = Append::new(streams::incident(*id), ExpectedVersion::Any, &events, ids);
                log.append(&append.stream, append.expected, append.to_new_events(None).unwrap()).await.unwrap();
            }
        }

        // The restart resumes from the snapshots and reads the reopened
        // incidents back from the log.
        let restarted = Shells::start_with(&log, &configs, &clock, Some(AFTER), Some(&snapshots));
        let head = restarted.settled(&log).await;
        for (service, p) in restarted.progress() {
            assert!(p.resumed > Position::ZERO, "{service} resumed from its snapshot: {p:?}");
            assert!(p.read_back >= REOPENED as u64, "{service} read the reopened incidents back: {p:?}");
            assert_eq!(p.held + p.evicted, INCIDENTS, "{service}: {p:?}");
        }

        let kept = Shells::start(&log, &configs, &clock, None);
        assert_eq!(kept.settled(&log).await, head, "shells that never evict find nothing more to do");
        assert_eq!(restarted.aggregates().await, kept.aggregates().await);
        for number in 1..=INCIDENTS {
            let id = IncidentId::from_number(number).unwrap();
            assert_eq!(restarted.answers(id).await, kept.answers(id).await, "incident {id}");
        }
        restarted.stop().await;
        kept.stop().await;
    });
}

/// Not a check: measures review's snapshot and restart over a generated
/// history (run on demand, `--run-ignored only`; `KLAXON_MEASURE_INCIDENTS`
/// incidents, 30,000 by default, 1% open): the fold from scratch with
/// eviction, the snapshot a clean stop saves (bytes), and a restart from
/// it until caught up (wall time and the process's CPU time, which a
/// loaded machine inflates less). Prints one line; see docs/benchmarks.md.
#[test]
#[ignore = "a measurement, run on demand"]
fn measure_review_snapshot_and_restart() {
    let incidents: u64 = std::env::var("KLAXON_MEASURE_INCIDENTS").ok().and_then(|v| v.parse().ok()).unwrap_or(30_000);
    let dir = tempfile::tempdir().unwrap();
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build().unwrap();
    runtime.block_on(async {
        let log = Log::open(dir.path().join("log"), Default::default()).unwrap();
        let written = history::write(&log, incidents, OPEN_PER_MILLE, now(), false).await;
        let head = log.head();
        let catalog = Arc::new(klaxon_domain::catalog::ServiceCatalog::default());
        let clock = ManualClock::new(now());
        let file = dir.path().join("reviews.snap");
        let cpu = || {
            let stat = std::fs::read_to_string("/proc/self/stat").unwrap();
            let fields: Vec<&str> = stat.rsplit_once(')').unwrap().1.split_whitespace().collect();
            // utime + stime, in clock ticks (100 per second).
            (fields[11].parse::<u64>().unwrap() + fields[12].parse::<u64>().unwrap()) as f64 / 100.0
        };
        let mut lines = Vec::new();
        for run in ["scratch", "restart"] {
            let reviews = Reviews::new(log.clone(), catalog.clone(), clock.shared())
                .with_snapshots(klaxon_reactor::SnapshotFile::new(&file), std::num::NonZeroU64::new(1 << 40).unwrap())
                .with_eviction(AFTER);
            let handle = reviews.handle();
            let stop = CancellationToken::new();
            let (begun, cpu0) = (std::time::Instant::now(), cpu());
            let task = tokio::spawn({
                let stop = stop.clone();
                async move { reviews.run(stop).await.unwrap() }
            });
            processed(handle.reactor(), head).await;
            let (wall, cpu) = (begun.elapsed().as_secs_f64(), cpu() - cpu0);
            let p = handle.reactor().progress();
            stop.cancel();
            task.await.unwrap();
            let bytes = std::fs::metadata(&file).unwrap().len();
            // The evicted incidents' trend rows, beside it (a sparse file).
            let rows = std::fs::metadata(dir.path().join("reviews.snap.rows")).unwrap();
            let rows = {
                use std::os::unix::fs::MetadataExt;
                format!("rows table {} B ({} B on disk)", rows.len(), rows.blocks() * 512)
            };
            // To look inside: a copy of the snapshot (a header, then JSON).
            if let Ok(keep) = std::env::var("KLAXON_MEASURE_KEEP") {
                std::fs::copy(&file, keep).unwrap();
            }
            lines.push(format!(
                "{run}: ready {wall:.2} s wall, {cpu:.2} s CPU; held {} evicted {}; snapshot after it {bytes} bytes, {rows}",
                p.held, p.evicted
            ));
        }
        eprintln!(
            "review over {incidents} incidents ({} events, {} open): {}",
            written.events,
            written.open,
            lines.join("; ")
        );
    });
}
