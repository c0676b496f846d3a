//! Years of history on one machine: how long `klaxond up` takes to serve a
//! big log, and how much memory it holds, as the log grows.
//!
//! `cargo bench -p klaxon-tests --bench scale` (a release `klaxond`, built
//! in the bench profile by the bench itself) prints one table row per size:
//!
//! 1. **Generate** (cached; the generator is `e2e/history.rs`, which the
//!    rebuild tests share): a history of about `N` events written straight
//!    into a data folder through `klaxon_log::Log` (64 incidents appended
//!    at once, so appends share group commits). Events are the domain's own:
//!    incident events come from `klaxon_domain::incident::decide` on the
//!    folded state (reports, merges, severity assessments from the default
//!    rules, declarations, commanders, roles, impact, updates, mitigations,
//!    resolutions, validations, noise), page events (paged, delivered,
//!    acknowledged), executive notifications, and reviews (opened exactly
//!    when `review::open_review` says, summaries, action items,
//!    publication) are built from the domain types. Incidents are spread
//!    over the two years before now; all but the newest 0.5% are resolved
//!    or closed. The severity evaluator's checkpoint is saved at the head,
//!    as a system that ran all along would have it. The folder is kept in
//!    `target/scale/events-N` (delete it to regenerate).
//! 2. **First start**: a copy of the folder, `klaxond up --config` with
//!    the paging configuration of the e2e tests (a real webhook receiver);
//!    the time from spawn until every service's `klaxon_processed_position`
//!    equals `klaxon_log_head` (polled on `/metrics` every 50 ms, the head
//!    unchanged across the check), then `VmRSS` from `/proc/<pid>/status`.
//! 3. **An hour of traffic**, compressed: what a busy company sends in an
//!    hour, through gRPC with 16 concurrent clients as fast as it goes
//!    (alert reports, one a second, on 400 alert keys, so most merge into
//!    their open incident; every 60th opens a Sev-2 that is declared,
//!    given a commander, updated three times, mitigated, resolved and
//!    validated; 600 reads of incidents and lists). Then the system settles
//!    and `VmRSS` is read again.
//! 4. **Restart**: SIGTERM, then `klaxond up` on the same folder, timed to
//!    ready as in 2; `VmRSS` at ready and again once the process has gone
//!    quiet (under 0.05 CPU s in a second): work behind ready, such as the
//!    log's scan of its id runs when it found no saved id filter, ends
//!    after ready and only the second reading holds it.
//!
//! For both starts a second table says where the time went: `serving`
//! (spawn until klaxond says where it listens: log open and index rebuild
//! from the log's tail, configuration, wiring) and, for each service, when
//! `/metrics` first showed it at the head (snapshot load and decode, then
//! the fold of the rest).
//!
//! `[memory] evict_closed_after` (closed incidents leave memory) is passed
//! as `24h` when klaxond's configuration has the setting (read from its
//! source), or as `KLAXON_SCALE_EVICT_CLOSED_AFTER` says (`off`: not at all).
//!
//! `KLAXON_SCALE_RESTART_WITHOUT_ID_FILTER=1` deletes the id filter the
//! clean stop saved beside the log before the restart (the baseline: the
//! restart's log scans every id run).
//!
//! `KLAXON_SCALE_CONFIG` is appended to klaxond's configuration (TOML,
//! `\n` for line breaks), for experiments such as
//! `KLAXON_SCALE_CONFIG='[log]\ncache_bytes = 67108864'`.
//!
//! `KLAXON_SCALE_EVENTS` chooses the sizes (default `100000,1000000`; add
//! `10000000` for the 10M row, which takes long: about 2 GB of data and
//! minutes of generation). `KLAXON_SCALE_TRAFFIC` sets the traffic's
//! reports (default 3600). `KLAXON_SCALE_KEEP=1` keeps the generated
//! folders (they are kept by default; `KLAXON_SCALE_KEEP=0` deletes each
//! after its row).
#![allow(missing_docs)]

#[path = "../e2e/history.rs"]
mod history;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use chrono::Utc;
use klaxon_log::Log;
use klaxon_proto::v1::{self, incidents_client::IncidentsClient};
use klaxon_tests::Klaxond;
use klaxon_tests::auth::as_person;
use klaxon_tests::config::Paged;
use klaxon_tests::metrics::scrape;

/// Per mille of incidents (the newest) left open.
const OPEN_PER_MILLE: u64 = 5;
/// How long a start may take before the bench gives up.
const READY_LIMIT: Duration = Duration::from_secs(3600);

/// What one generated folder holds.
#[derive(Clone, Copy, Debug)]
struct Generated {
    events: u64,
    incidents: u64,
    open: u64,
}

impl Generated {
    fn to_line(self) -> String {
        format!("{} {} {}", self.events, self.incidents, self.open)
    }

    fn from_line(line: &str) -> Option<Generated> {
        let mut parts = line.split_whitespace().map(|p| p.parse::<u64>().ok());
        Some(Generated { events: parts.next()??, incidents: parts.next()??, open: parts.next()?? })
    }
}

/// klaxond's configuration source: whether it knows `[memory]
/// evict_closed_after` (bounded memory, issue 19) is read from it, so that
/// the bench passes the setting exactly when the klaxond it builds takes it.
const KLAXOND_CONFIG_SOURCE: &str = include_str!("../../crates/klaxond/src/config.rs");

/// `[memory] evict_closed_after` for the starts: `KLAXON_SCALE_EVICT_CLOSED_AFTER`
/// (a duration such as `24h`, or `off`), else `24h` when klaxond has the
/// setting, else none.
fn evict_closed_after() -> Option<String> {
    match std::env::var("KLAXON_SCALE_EVICT_CLOSED_AFTER") {
        Ok(v) if v == "off" || v.is_empty() => None,
        Ok(v) => Some(v),
        Err(_) => KLAXOND_CONFIG_SOURCE.contains("evict_closed_after").then(|| "24h".to_owned()),
    }
}

/// Writes about `target` events into a new log at `dir` (see
/// `e2e/history.rs`).
fn generate(dir: &Path, target: u64, runtime: &tokio::runtime::Runtime) -> Generated {
    let log = Log::open(dir, klaxon_log::Options::default()).expect("open the log");
    let incidents = history::incidents_for(target);
    let written = runtime.block_on(async {
        let written = history::write(&log, incidents, OPEN_PER_MILLE, Utc::now(), true).await;
        let head = log.head();
        // What a severity evaluator that ran all along would have saved.
        log.save_checkpoint(klaxon_severity_consumer(), head).await.expect("save the checkpoint");
        log.close().await;
        written
    });
    Generated { events: written.events, incidents, open: written.open }
}

/// The severity evaluator's checkpoint name (`klaxon_severity::CONSUMER`;
/// the tests crate does not depend on the service).
fn klaxon_severity_consumer() -> &'static str {
    "severity"
}

fn folder_bytes(dir: &Path) -> u64 {
    std::fs::read_dir(dir)
        .map(|entries| {
            entries
                .flatten()
                .map(|e| match e.file_type() {
                    Ok(t) if t.is_dir() => folder_bytes(&e.path()),
                    _ => e.metadata().map_or(0, |m| m.len()),
                })
                .sum()
        })
        .unwrap_or(0)
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).expect("create the copy");
    for entry in std::fs::read_dir(from).expect("read the folder") {
        let entry = entry.expect("an entry");
        let target = to.join(entry.file_name());
        if entry.file_type().expect("a file type").is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), target).expect("copy a file");
        }
    }
}

fn rss_mb(pid: u32) -> f64 {
    status_mb(pid, "VmRSS:")
}

/// `VmRSS` once the process has gone quiet after ready (under 0.05 CPU
/// seconds in a second, at most 60 s), and how many seconds that took:
/// work that goes on behind ready (the log's id scan at open, snapshot
/// saves) is in it.
fn settled_rss_mb(pid: u32) -> (f64, f64) {
    let begun = Instant::now();
    let mut before = cpu_by_thread(pid).0;
    while begun.elapsed() < Duration::from_secs(60) {
        std::thread::sleep(Duration::from_secs(1));
        let now = cpu_by_thread(pid).0;
        if now - before < 0.05 {
            break;
        }
        before = now;
    }
    (rss_mb(pid), begun.elapsed().as_secs_f64())
}

/// A memory line (`VmRSS:`, `VmHWM:`) of `/proc/<pid>/status`, in MB.
fn status_mb(pid: u32, line: &str) -> f64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("read /proc/<pid>/status");
    let kb: f64 = status
        .lines()
        .find_map(|l| l.strip_prefix(line))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("a {line} line"));
    kb / 1024.0
}

/// When a start was ready: the log's head then, and when (seconds after
/// the spawn) each service first reported it had processed the head; and
/// what the wait saw of the process (load-independent work beside the
/// wall-clock time).
struct Ready {
    head: u64,
    services: Vec<(String, f64)>,
    /// The slowest `/metrics` answer while waiting, in seconds.
    slowest_scrape_s: f64,
    /// Scrapes made while waiting.
    scrapes: u64,
}

/// Clock ticks per second in `/proc/<pid>/stat` (`getconf CLK_TCK`, 100 on
/// Linux).
const TICKS_PER_S: f64 = 100.0;

/// CPU seconds (user + system) from a `/proc/.../stat` line: the name in
/// parentheses, then utime and stime (fields 14 and 15).
fn stat_cpu(stat: &str) -> Option<(String, f64)> {
    let (open, close) = (stat.find('(')?, stat.rfind(')')?);
    let name = stat[open + 1..close].to_owned();
    let fields: Vec<&str> = stat[close + 1..].split_whitespace().collect();
    // Fields after the name start at field 3 (state).
    let ticks = fields.get(11)?.parse::<f64>().ok()? + fields.get(12)?.parse::<f64>().ok()?;
    Some((name, ticks / TICKS_PER_S))
}

/// The process's CPU seconds so far (every thread, live or gone), and the
/// live threads' CPU seconds summed by thread name, the most first.
fn cpu_by_thread(pid: u32) -> (f64, Vec<(String, f64)>) {
    let total =
        std::fs::read_to_string(format!("/proc/{pid}/stat")).ok().and_then(|s| stat_cpu(&s)).map_or(0.0, |c| c.1);
    let mut by_name: Vec<(String, f64)> = Vec::new();
    for task in std::fs::read_dir(format!("/proc/{pid}/task")).into_iter().flatten().flatten() {
        let Some((name, cpu)) = std::fs::read_to_string(task.path().join("stat")).ok().and_then(|s| stat_cpu(&s))
        else {
            continue;
        };
        match by_name.iter_mut().find(|(n, _)| *n == name) {
            Some((_, sum)) => *sum += cpu,
            None => by_name.push((name, cpu)),
        }
    }
    by_name.sort_by(|a, b| b.1.total_cmp(&a.1));
    (total, by_name)
}

/// `VmHWM` (the peak resident memory so far) of `pid`, in MB.
fn peak_rss_mb(pid: u32) -> f64 {
    status_mb(pid, "VmHWM:")
}

/// What a start cost, read when it was ready: CPU seconds in all and by
/// thread, the peak RSS, and the slowest `/metrics` answer.
fn work(pid: u32, ready: &Ready) -> String {
    let (total, threads) = cpu_by_thread(pid);
    let each: Vec<String> = threads.iter().take(4).map(|(n, c)| format!("{n} {c:.1}")).collect();
    format!(
        "CPU {total:.1} s ({}); peak RSS {:.0} MB; slowest of {} scrapes {:.3} s",
        each.join(", "),
        peak_rss_mb(pid),
        ready.scrapes,
        ready.slowest_scrape_s
    )
}

/// Polls `/metrics` until every service has processed the log's head and
/// the head held still meanwhile; notes when each service first got there
/// (seconds since `begun`).
fn wait_ready(up: &Klaxond, begun: Instant) -> Ready {
    let address = up.http_address.as_deref().expect("up serves HTTP");
    let deadline = Instant::now() + READY_LIMIT;
    let mut services: Vec<(String, f64)> = Vec::new();
    let (mut slowest_scrape_s, mut scrapes) = (0.0_f64, 0);
    loop {
        let asked = Instant::now();
        let metrics = scrape(address);
        slowest_scrape_s = slowest_scrape_s.max(asked.elapsed().as_secs_f64());
        scrapes += 1;
        let head = metrics.get("klaxon_log_head").copied().unwrap_or(0.0) as u64;
        let positions: Vec<(&str, u64)> = metrics
            .iter()
            .filter_map(|(name, v)| {
                let service = name.strip_prefix("klaxon_processed_position{service=\"")?.strip_suffix("\"}")?;
                Some((service, *v as u64))
            })
            .collect();
        for (service, position) in &positions {
            if *position >= head && !services.iter().any(|(s, _)| s == service) {
                services.push(((*service).to_owned(), begun.elapsed().as_secs_f64()));
            }
        }
        if !positions.is_empty() && positions.iter().all(|(_, p)| *p >= head) {
            let again = scrape(address).get("klaxon_log_head").copied().unwrap_or(0.0) as u64;
            if again == head {
                return Ready { head, services, slowest_scrape_s, scrapes };
            }
        }
        assert!(Instant::now() < deadline, "not ready within {READY_LIMIT:?}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// One start's phases: `serving` (spawn until it listens: log open and
/// index rebuild from its tail, configuration, wiring), then each service's
/// time to the head (snapshot load and decode, folding the rest).
fn phases(serving_s: f64, ready: &Ready) -> String {
    let mut services = ready.services.clone();
    services.sort_by(|a, b| a.0.cmp(&b.0));
    let each: Vec<String> = services.iter().map(|(s, t)| format!("{s} {t:.2}")).collect();
    format!("serving {serving_s:.2}; {}", each.join(", "))
}

/// An hour of a busy company, compressed; returns the calls made.
async fn traffic(url: &str, reports: u64) -> u64 {
    let channel =
        tonic::transport::Channel::from_shared(url.to_owned()).expect("a URL").connect().await.expect("connect");
    let calls = Arc::new(AtomicU64::new(0));
    let next = Arc::new(AtomicU64::new(0));
    let tasks: Vec<_> = (0..16)
        .map(|client| {
            let channel = channel.clone();
            let (calls, next) = (calls.clone(), next.clone());
            tokio::spawn(async move {
                let monitor = IncidentsClient::with_interceptor(channel.clone(), as_person("alertmanager"));
                let manager = IncidentsClient::with_interceptor(
                    channel,
                    as_person(history::MANAGERS[client % history::MANAGERS.len()]),
                );
                let (mut monitor, mut manager) = (monitor, manager);
                loop {
                    let n = next.fetch_add(1, Ordering::Relaxed);
                    if n >= reports {
                        break;
                    }
                    let key = format!("traffic/alert-{}", n % 400);
                    let reported = monitor
                        .report(v1::ReportRequest {
                            source: v1::ReportSource::Api as i32,
                            title: format!("alert {}", n % 400),
                            service: "payments".into(),
                            dedup_key: key,
                            ..Default::default()
                        })
                        .await
                        .expect("report")
                        .into_inner();
                    calls.fetch_add(1, Ordering::Relaxed);
                    if n % 6 == 0 {
                        let id = reported.incident_id.clone();
                        manager.get_incident(v1::GetIncidentRequest { incident_id: id }).await.expect("get");
                        manager
                            .list_incidents(v1::ListIncidentsRequest { page_size: 50, ..Default::default() })
                            .await
                            .expect("list");
                        calls.fetch_add(2, Ordering::Relaxed);
                    }
                    if n % 60 == 0 {
                        // A real incident: a new report, driven to closed.
                        let id = monitor
                            .report(v1::ReportRequest {
                                source: v1::ReportSource::Api as i32,
                                title: format!("checkout errors {n}"),
                                service: "payments".into(),
                                ..Default::default()
                            })
                            .await
                            .expect("report")
                            .into_inner()
                            .incident_id;
                        let ctx = || None;
                        let i = || id.clone();
                        manager
                            .declare(v1::DeclareRequest {
                                incident_id: i(),
                                severity: v1::Severity::Sev2 as i32,
                                context: ctx(),
                            })
                            .await
                            .expect("declare");
                        manager
                            .assign_commander(v1::AssignCommanderRequest {
                                incident_id: i(),
                                commander: history::MANAGERS[client % history::MANAGERS.len()].into(),
                                context: ctx(),
                            })
                            .await
                            .expect("assign");
                        for text in ["Investigating.", "Identified a bad deploy.", "Rolled back; watching."] {
                            manager
                                .post_update(v1::PostUpdateRequest {
                                    incident_id: i(),
                                    audience: v1::Audience::Internal as i32,
                                    text: text.into(),
                                    context: ctx(),
                                })
                                .await
                                .expect("update");
                        }
                        manager
                            .mitigate(v1::MitigateRequest {
                                incident_id: i(),
                                summary: "rolled back".into(),
                                context: ctx(),
                            })
                            .await
                            .expect("mitigate");
                        manager
                            .resolve(v1::ResolveRequest { incident_id: i(), summary: "fixed".into(), context: ctx() })
                            .await
                            .expect("resolve");
                        manager
                            .validate_resolution(v1::ValidateResolutionRequest {
                                incident_id: i(),
                                note: "ok".into(),
                                context: ctx(),
                            })
                            .await
                            .expect("validate");
                        calls.fetch_add(9, Ordering::Relaxed);
                    }
                }
            })
        })
        .collect();
    for task in tasks {
        task.await.expect("a client");
    }
    calls.load(Ordering::Relaxed)
}

struct Row {
    generated: Generated,
    folder_mb: f64,
    ready_s: f64,
    appended_at_start: u64,
    rss_mb: f64,
    traffic_calls: u64,
    traffic_s: f64,
    rss_after_mb: f64,
    restart_s: f64,
    rss_restart_mb: f64,
    /// `VmRSS` once the restarted process went quiet, and when (s after ready).
    rss_settled_mb: f64,
    settled_s: f64,
    first_phases: String,
    restart_phases: String,
    first_work: String,
    restart_work: String,
}

fn main() {
    let sizes: Vec<u64> = std::env::var("KLAXON_SCALE_EVENTS")
        .unwrap_or_else(|_| "100000,1000000".into())
        .split(',')
        .map(|s| s.trim().parse().expect("KLAXON_SCALE_EVENTS: comma-separated event counts"))
        .collect();
    let reports: u64 = std::env::var("KLAXON_SCALE_TRAFFIC").ok().and_then(|s| s.parse().ok()).unwrap_or(3600);
    let keep = std::env::var("KLAXON_SCALE_KEEP").map_or(true, |v| v != "0");
    klaxon_tests::build_klaxond_for_bench();
    // target/<profile>/deps/scale-… -> target/scale
    let exe = std::env::current_exe().expect("the bench's path");
    let cache: PathBuf = exe.ancestors().nth(3).expect("target/").join("scale");
    std::fs::create_dir_all(&cache).expect("create target/scale");
    let evict = evict_closed_after();
    let mut extra = String::from("[limits]\nrequests_per_second = 0\n");
    if let Some(after) = &evict {
        extra.push_str(&format!("[memory]\nevict_closed_after = {after:?}\n"));
    }
    // More configuration for an experiment, such as `[log] cache_bytes`.
    if let Ok(more) = std::env::var("KLAXON_SCALE_CONFIG") {
        extra.push_str(&more.replace("\\n", "\n"));
        extra.push('\n');
    }
    let paged = Paged::start(1800, false, &extra);
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    let mut rows = Vec::new();
    for size in sizes {
        let folder = cache.join(format!("events-{size}"));
        let marker = folder.join("generated");
        let generated = match std::fs::read_to_string(&marker).ok().and_then(|l| Generated::from_line(&l)) {
            Some(generated) => generated,
            None => {
                let _ = std::fs::remove_dir_all(&folder);
                eprintln!("generating {size} events into {} ...", folder.display());
                let begun = Instant::now();
                let generated = generate(&folder.join("data"), size, &runtime);
                eprintln!("  {generated:?} in {:.1} s", begun.elapsed().as_secs_f64());
                std::fs::write(&marker, generated.to_line()).expect("write the marker");
                generated
            }
        };
        let folder_mb = folder_bytes(&folder.join("data")) as f64 / 1e6;
        let run = cache.join(format!("run-{size}"));
        let _ = std::fs::remove_dir_all(&run);
        copy_dir(&folder.join("data"), &run);

        eprintln!("{size}: first start ...");
        let begun = Instant::now();
        let up = Klaxond::start_with_env(&run, &paged.config_args(), &paged.env());
        let serving_s = begun.elapsed().as_secs_f64();
        let ready = wait_ready(&up, begun);
        let ready_s = begun.elapsed().as_secs_f64();
        let rss = rss_mb(up.pid());
        let first_phases = phases(serving_s, &ready);
        let first_work = work(up.pid(), &ready);
        eprintln!("  ready in {ready_s:.2} s ({first_phases}), {rss:.0} MB; {first_work}; traffic ...");
        let begun = Instant::now();
        let traffic_calls = runtime.block_on(traffic(&up.url, reports));
        let traffic_s = begun.elapsed().as_secs_f64();
        wait_ready(&up, begun);
        let rss_after = rss_mb(up.pid());
        assert!(up.stop().success(), "klaxond stopped cleanly");

        // The baseline of the saved id filter: without it the restart's log
        // scans every id run, as before the file existed.
        if std::env::var("KLAXON_SCALE_RESTART_WITHOUT_ID_FILTER").is_ok_and(|v| v == "1") {
            std::fs::remove_file(run.join(klaxon_log::ID_FILTER_FILE_NAME))
                .expect("the clean stop saved the id filter");
        }
        eprintln!("{size}: restart ...");
        let begun = Instant::now();
        let up = Klaxond::start_with_env(&run, &paged.config_args(), &paged.env());
        let serving_s = begun.elapsed().as_secs_f64();
        let restarted = wait_ready(&up, begun);
        let restart_s = begun.elapsed().as_secs_f64();
        let rss_restart = rss_mb(up.pid());
        let restart_phases = phases(serving_s, &restarted);
        let restart_work = work(up.pid(), &restarted);
        let (rss_settled, settled_s) = settled_rss_mb(up.pid());
        eprintln!(
            "  ready in {restart_s:.2} s ({restart_phases}), {rss_restart:.0} MB; {restart_work}; quiet {settled_s:.0} s later: {rss_settled:.0} MB"
        );
        assert!(up.stop().success(), "klaxond stopped cleanly");
        std::fs::remove_dir_all(&run).expect("remove the copy");
        if !keep {
            std::fs::remove_dir_all(&folder).expect("remove the generated folder");
        }
        rows.push(Row {
            generated,
            folder_mb,
            ready_s,
            appended_at_start: ready.head - generated.events,
            first_phases,
            restart_phases,
            first_work,
            restart_work,
            rss_mb: rss,
            traffic_calls,
            traffic_s,
            rss_after_mb: rss_after,
            restart_s,
            rss_restart_mb: rss_restart,
            rss_settled_mb: rss_settled,
            settled_s,
        });
    }
    println!();
    println!(
        "| events | incidents | open | data folder MB | first start ready s | appended at start | RSS MB | traffic calls (s) | RSS after traffic MB | restart ready s | RSS after restart MB | RSS once quiet MB (s after ready) |"
    );
    println!("| ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |");
    for r in &rows {
        println!(
            "| {} | {} | {} | {:.0} | {:.2} | {} | {:.0} | {} ({:.1}) | {:.0} | {:.2} | {:.0} | {:.0} ({:.0}) |",
            r.generated.events,
            r.generated.incidents,
            r.generated.open,
            r.folder_mb,
            r.ready_s,
            r.appended_at_start,
            r.rss_mb,
            r.traffic_calls,
            r.traffic_s,
            r.rss_after_mb,
            r.restart_s,
            r.rss_restart_mb,
            r.rss_settled_mb,
            r.settled_s
        );
    }
    println!();
    println!("Where the time goes (seconds after the spawn: serving = listening, then each service at the head):");
    println!();
    println!("| events | first start | restart |");
    println!("| ---: | --- | --- |");
    for r in &rows {
        println!("| {} | {} | {} |", r.generated.events, r.first_phases, r.restart_phases);
    }
    println!();
    println!(
        "What each start cost until ready (klaxond's CPU seconds in all and by thread name, from /proc; VmHWM; the slowest /metrics answer):"
    );
    println!();
    println!("| events | first start | restart |");
    println!("| ---: | --- | --- |");
    for r in &rows {
        println!("| {} | {} | {} |", r.generated.events, r.first_work, r.restart_work);
    }
    println!();
    match &evict {
        Some(after) => println!("[memory] evict_closed_after = {after:?}"),
        None => println!("No [memory] evict_closed_after (this klaxond has no such setting, or it was turned off)."),
    }
    println!("Targets at 1M events: first start ready <= 2 s, RSS <= 300 MB.");
}
