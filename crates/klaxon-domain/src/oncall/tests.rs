use std::fmt::Write as _;

use chrono::{Datelike, Duration, Offset as _};
use expect_test::expect;
use proptest::prelude::*;

use super::*;

mod roster;

// ---------------------------------------------------------------------------
// Helpers: building configurations and asking questions in one line.

/// A layer named `name` rotating the comma-separated `participants`.
fn layer(name: &str, participants: &str, shift: &str, handoff: &str, start: &str) -> LayerConfig {
    LayerConfig {
        name: name.into(),
        participants: participants.split(',').filter(|p| !p.is_empty()).map(String::from).collect(),
        shift: shift.into(),
        handoff: handoff.into(),
        start: start.into(),
        active: None,
    }
}

/// `layer` restricted to windows `from`-`to` on the comma-separated `days`
/// (all days when empty).
fn windowed(mut layer: LayerConfig, from: &str, to: &str, days: &str) -> LayerConfig {
    let days = (!days.is_empty()).then(|| days.split(',').map(String::from).collect());
    layer.active = Some(WindowConfig { from: from.into(), to: to.into(), days });
    layer
}

fn overriding(who: &str, from: &str, to: &str) -> OverrideConfig {
    OverrideConfig { who: who.into(), from: from.into(), to: to.into() }
}

fn config(zone: &str, layers: Vec<LayerConfig>, overrides: Vec<OverrideConfig>) -> ScheduleConfig {
    ScheduleConfig { name: "payments-primary".into(), time_zone: zone.into(), layers, overrides }
}

fn schedule(zone: &str, layers: Vec<LayerConfig>, overrides: Vec<OverrideConfig>) -> Schedule {
    config(zone, layers, overrides).validate("schedules[0]").unwrap()
}

fn at(rfc3339: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(rfc3339).unwrap().to_utc()
}

fn tz(zone: &str) -> Tz {
    zone.parse().unwrap()
}

/// Who is on call at `instant` and why, as `who (source)`, or `-`.
fn who(schedule: &Schedule, instant: &str) -> String {
    match schedule.on_call_at(at(instant)) {
        Some(on_call) => format!("{} ({})", on_call.who, on_call.source),
        None => "-".into(),
    }
}

/// `instant` on the schedule's local clock, such as `Sun 29 03:00+02`.
fn local_label(tz: Tz, instant: DateTime<Utc>) -> String {
    let local = instant.with_timezone(&tz);
    let offset = local.offset().fix().local_minus_utc();
    let sign = if offset < 0 { '-' } else { '+' };
    let (hours, minutes) = (offset.abs() / 3600, offset.abs() % 3600 / 60);
    let offset = if minutes == 0 { format!("{sign}{hours:02}") } else { format!("{sign}{hours:02}:{minutes:02}") };
    format!("{} {}", local.format("%a %d %H:%M"), offset)
}

fn hours(duration: Duration) -> String {
    let minutes = duration.num_minutes();
    if minutes % 60 == 0 { format!("{}h", minutes / 60) } else { format!("{}h{:02}", minutes / 60, minutes % 60) }
}

/// Checks the flattened timeline's shape: contiguous, strictly increasing,
/// exactly `[from, to)`, adjacent spans with different people.
fn assert_well_formed(spans: &[Span], from: DateTime<Utc>, to: DateTime<Utc>) {
    assert!(!spans.is_empty(), "no spans for [{from}, {to})");
    assert_eq!(spans[0].from, from);
    assert_eq!(spans[spans.len() - 1].until, to);
    for span in spans {
        assert!(span.from < span.until, "empty or reversed span {span:?}");
    }
    for pair in spans.windows(2) {
        assert_eq!(pair[0].until, pair[1].from, "gap or overlap between {:?} and {:?}", pair[0], pair[1]);
        assert_ne!(pair[0].who, pair[1].who, "unmerged spans {:?} and {:?}", pair[0], pair[1]);
    }
}

// ---------------------------------------------------------------------------
// Who is on call: rotations, precedence, windows and overrides.

#[test]
fn rotations_hand_off_at_the_local_time() {
    // Weekly from Monday 2026-01-05 09:00 in Berlin: ana, ben, cat, ana, ...
    let weekly = schedule("Europe/Berlin", vec![layer("weekly", "ana,ben,cat", "7d", "09:00", "2026-01-05")], vec![]);
    // Two 12-hour shifts a day in New York from 2026-01-05 09:00.
    let twice_a_day =
        schedule("America/New_York", vec![layer("half", "ana,ben", "12h", "09:00", "2026-01-05")], vec![]);
    // Five-hour shifts drift around the clock: 09:00, 14:00, 19:00, 00:00, 05:00, 10:00, ...
    let five_hours = schedule("Asia/Kolkata", vec![layer("five", "ana,ben,cat", "5h", "09:00", "2026-01-05")], vec![]);
    let cases = [
        (&weekly, "2026-01-05T08:59:59+01:00", "cat (layer weekly)"), // shift -1: before the start
        (&weekly, "2026-01-05T09:00:00+01:00", "ana (layer weekly)"),
        (&weekly, "2026-01-05T09:00:01+01:00", "ana (layer weekly)"),
        (&weekly, "2026-01-12T08:59:59+01:00", "ana (layer weekly)"),
        (&weekly, "2026-01-12T09:00:00+01:00", "ben (layer weekly)"),
        (&weekly, "2026-01-12T09:00:01+01:00", "ben (layer weekly)"),
        (&weekly, "2026-01-19T09:00:00+01:00", "cat (layer weekly)"),
        (&weekly, "2026-01-26T09:00:00+01:00", "ana (layer weekly)"),
        (&weekly, "2025-12-29T09:00:00+01:00", "cat (layer weekly)"), // shift -1
        (&weekly, "2025-12-29T08:59:59+01:00", "ben (layer weekly)"), // shift -2
        (&weekly, "2025-12-22T08:59:59+01:00", "ana (layer weekly)"), // shift -3
        (&weekly, "2025-01-06T09:00:00+01:00", "cat (layer weekly)"), // shift -52
        (&weekly, "2025-01-06T08:59:59+01:00", "ben (layer weekly)"), // shift -53
        // Summer time: still 09:00 on the local clock, i.e. 07:00Z.
        (&weekly, "2026-07-06T08:59:59+02:00", "ben (layer weekly)"), // shift 25
        (&weekly, "2026-07-06T09:00:00+02:00", "cat (layer weekly)"), // shift 26
        (&twice_a_day, "2026-01-05T20:59:59-05:00", "ana (layer half)"),
        (&twice_a_day, "2026-01-05T21:00:00-05:00", "ben (layer half)"),
        (&twice_a_day, "2026-01-06T08:59:59-05:00", "ben (layer half)"),
        (&twice_a_day, "2026-01-06T09:00:00-05:00", "ana (layer half)"),
        (&twice_a_day, "2026-01-05T08:59:59-05:00", "ben (layer half)"), // shift -1
        (&twice_a_day, "2026-07-01T09:00:00-04:00", "ana (layer half)"), // EDT: still 09:00 local
        (&twice_a_day, "2026-07-01T08:59:59-04:00", "ben (layer half)"),
        (&twice_a_day, "2026-07-01T21:00:00-04:00", "ben (layer half)"),
        (&five_hours, "2026-01-05T13:59:59+05:30", "ana (layer five)"),
        (&five_hours, "2026-01-05T14:00:00+05:30", "ben (layer five)"),
        (&five_hours, "2026-01-06T00:00:00+05:30", "ana (layer five)"), // shift 3
        (&five_hours, "2026-01-06T09:59:59+05:30", "ben (layer five)"), // shift 4 from 05:00
        (&five_hours, "2026-01-06T10:00:00+05:30", "cat (layer five)"), // shift 5
        (&five_hours, "2026-01-05T08:59:59+05:30", "cat (layer five)"), // shift -1 from 04:00
        (&five_hours, "2026-01-05T03:59:59+05:30", "ben (layer five)"), // shift -2
    ];
    for (schedule, instant, expected) in cases {
        assert_eq!(who(schedule, instant), expected, "at {instant}");
    }
}

#[test]
fn later_layers_overrides_and_windows_take_precedence() {
    let base = layer("base", "ana,ben", "7d", "09:00", "2026-01-05");
    // Business hours on weekdays: cat and dan alternate daily from Monday.
    let business =
        windowed(layer("business", "cat,dan", "1d", "09:00", "2026-01-05"), "09:00", "17:00", "mon,tue,wed,thu,fri");
    // Friday nights, overnight until Saturday 06:00.
    let night = windowed(layer("night", "eve", "7d", "00:00", "2026-01-02"), "22:00", "06:00", "fri");
    let layered = schedule("Europe/Berlin", vec![base.clone(), business, night], vec![]);
    let overridden = schedule(
        "Europe/Berlin",
        vec![base],
        vec![
            overriding("dan", "2026-01-07T09:00:00+01:00", "2026-01-08T09:00:00+01:00"),
            overriding("fay", "2026-01-07T12:00:00+01:00", "2026-01-07T13:00:00+01:00"), // inside dan's: wins
            overriding("gus", "2026-01-07T07:00:00Z", "2026-01-07T10:00:00+01:00"),      // overlaps dan's start: wins
        ],
    );
    let cases = [
        (&layered, "2026-01-12T08:59:59+01:00", "ana (layer base)"), // Monday before business hours
        (&layered, "2026-01-12T09:00:00+01:00", "dan (layer business)"), // business shift 7
        (&layered, "2026-01-12T16:59:59+01:00", "dan (layer business)"),
        (&layered, "2026-01-12T17:00:00+01:00", "ben (layer base)"), // the base layer handed off at 09:00
        (&layered, "2026-01-13T10:00:00+01:00", "cat (layer business)"),
        (&layered, "2026-01-10T10:00:00+01:00", "ana (layer base)"), // Saturday: no business hours
        (&layered, "2026-01-09T21:59:59+01:00", "ana (layer base)"), // Friday evening
        (&layered, "2026-01-09T22:00:00+01:00", "eve (layer night)"),
        (&layered, "2026-01-10T05:59:59+01:00", "eve (layer night)"), // Saturday morning, same window
        (&layered, "2026-01-10T06:00:00+01:00", "ana (layer base)"),
        (&layered, "2026-01-10T22:00:00+01:00", "ana (layer base)"), // Saturday night: no window
        (&overridden, "2026-01-07T08:59:59+01:00", "gus (overrides[2])"),
        (&overridden, "2026-01-07T07:59:59+01:00", "ana (layer base)"),
        (&overridden, "2026-01-07T10:00:00+01:00", "dan (overrides[0])"), // gus ended, dan's still runs
        (&overridden, "2026-01-07T11:59:59+01:00", "dan (overrides[0])"),
        (&overridden, "2026-01-07T12:00:00+01:00", "fay (overrides[1])"),
        (&overridden, "2026-01-07T12:59:59+01:00", "fay (overrides[1])"),
        (&overridden, "2026-01-07T13:00:00+01:00", "dan (overrides[0])"),
        (&overridden, "2026-01-08T08:59:59+01:00", "dan (overrides[0])"),
        (&overridden, "2026-01-08T09:00:00+01:00", "ana (layer base)"), // `to` is exclusive
    ];
    for (schedule, instant, expected) in cases {
        assert_eq!(who(schedule, instant), expected, "at {instant}");
    }
}

#[test]
fn on_call_reports_how_long_the_answer_holds() {
    let base = layer("base", "ana,ben", "7d", "09:00", "2026-01-05");
    let business =
        windowed(layer("business", "cat", "7d", "09:00", "2026-01-05"), "09:00", "17:00", "mon,tue,wed,thu,fri");
    let schedule = schedule(
        "Europe/Berlin",
        vec![base, business],
        vec![overriding("dan", "2026-01-10T12:00:00+01:00", "2026-01-10T14:00:00+01:00")],
    );
    let describe = |instant: &str| {
        let on_call = schedule.on_call_at(at(instant)).unwrap();
        let tz = schedule.time_zone();
        format!(
            "{instant}: {} ({}) from {} until {}\n",
            on_call.who,
            on_call.source,
            local_label(tz, on_call.from),
            local_label(tz, on_call.until)
        )
    };
    let actual: String = [
        "2026-01-06T10:00:00+01:00", // business hours
        "2026-01-06T18:00:00+01:00", // evening: the base layer, until business hours open again
        "2026-01-09T18:00:00+01:00", // Friday evening: until the override
        "2026-01-10T13:00:00+01:00", // the override
        "2026-01-10T15:00:00+01:00", // after it: until Monday's handoff and business hours
    ]
    .into_iter()
    .map(describe)
    .collect();
    expect![[r#"
        2026-01-06T10:00:00+01:00: cat (layer business) from Tue 06 09:00 +01 until Tue 06 17:00 +01
        2026-01-06T18:00:00+01:00: ana (layer base) from Tue 06 17:00 +01 until Wed 07 09:00 +01
        2026-01-09T18:00:00+01:00: ana (layer base) from Fri 09 17:00 +01 until Sat 10 12:00 +01
        2026-01-10T13:00:00+01:00: dan (overrides[0]) from Sat 10 12:00 +01 until Sat 10 14:00 +01
        2026-01-10T15:00:00+01:00: ana (layer base) from Sat 10 14:00 +01 until Mon 12 09:00 +01
    "#]]
    .assert_eq(&actual);
}

// ---------------------------------------------------------------------------
// Daylight saving time, in both directions, in three zones.

/// The DST changes of 2026 in the three zones, as (zone, local date).
const CHANGES: [(&str, &str, &str); 6] = [
    ("America/New_York", "2026-03-08", "forward"),
    ("America/New_York", "2026-11-01", "back"),
    ("Europe/Berlin", "2026-03-29", "forward"),
    ("Europe/Berlin", "2026-10-25", "back"),
    ("Australia/Sydney", "2026-04-05", "back"),
    ("Australia/Sydney", "2026-10-04", "forward"),
];

/// The handoffs of a four-person rotation from two days before `date` to two
/// days after, on the local clock, with the length of each shift between.
fn handoffs_around(zone: &str, date: &str, shift: &str, handoff: &str) -> String {
    let schedule = schedule(zone, vec![layer("rota", "p0,p1,p2,p3", shift, handoff, "2026-01-01")], vec![]);
    let tz = schedule.time_zone();
    let date = NaiveDate::parse_from_str(date, "%Y-%m-%d").unwrap();
    let from = resolve(tz, (date - Duration::days(1)).and_time(NaiveTime::MIN));
    let to = resolve(tz, (date + Duration::days(2)).and_time(NaiveTime::MIN));
    let spans = schedule.coverage(from, to);
    assert_well_formed(&spans, from, to);
    let mut out = String::new();
    for span in &spans[1..spans.len() - 1] {
        write!(out, "{} [{}] ", local_label(tz, span.from), hours(span.until - span.from)).unwrap();
    }
    write!(out, "{}", local_label(tz, spans[spans.len() - 1].from)).unwrap();
    out
}

#[test]
fn day_shifts_across_dst_changes() {
    let mut actual = String::new();
    for (zone, date, direction) in CHANGES {
        // 01:30 is in New York's doubled hour, 02:30 in the others' (and in
        // every spring-forward gap).
        for handoff in ["09:00", "02:30", "01:30"] {
            let handoffs = handoffs_around(zone, date, "1d", handoff);
            writeln!(actual, "{zone} {date} {direction} 1d@{handoff}: {handoffs}").unwrap();
        }
    }
    expect![[r#"
        America/New_York 2026-03-08 forward 1d@09:00: Sat 07 09:00 -05 [23h] Sun 08 09:00 -04 [24h] Mon 09 09:00 -04
        America/New_York 2026-03-08 forward 1d@02:30: Sat 07 02:30 -05 [23h30] Sun 08 03:00 -04 [23h30] Mon 09 02:30 -04
        America/New_York 2026-03-08 forward 1d@01:30: Sat 07 01:30 -05 [24h] Sun 08 01:30 -05 [23h] Mon 09 01:30 -04
        America/New_York 2026-11-01 back 1d@09:00: Sat 31 09:00 -04 [25h] Sun 01 09:00 -05 [24h] Mon 02 09:00 -05
        America/New_York 2026-11-01 back 1d@02:30: Sat 31 02:30 -04 [25h] Sun 01 02:30 -05 [24h] Mon 02 02:30 -05
        America/New_York 2026-11-01 back 1d@01:30: Sat 31 01:30 -04 [24h] Sun 01 01:30 -04 [25h] Mon 02 01:30 -05
        Europe/Berlin 2026-03-29 forward 1d@09:00: Sat 28 09:00 +01 [23h] Sun 29 09:00 +02 [24h] Mon 30 09:00 +02
        Europe/Berlin 2026-03-29 forward 1d@02:30: Sat 28 02:30 +01 [23h30] Sun 29 03:00 +02 [23h30] Mon 30 02:30 +02
        Europe/Berlin 2026-03-29 forward 1d@01:30: Sat 28 01:30 +01 [24h] Sun 29 01:30 +01 [23h] Mon 30 01:30 +02
        Europe/Berlin 2026-10-25 back 1d@09:00: Sat 24 09:00 +02 [25h] Sun 25 09:00 +01 [24h] Mon 26 09:00 +01
        Europe/Berlin 2026-10-25 back 1d@02:30: Sat 24 02:30 +02 [24h] Sun 25 02:30 +02 [25h] Mon 26 02:30 +01
        Europe/Berlin 2026-10-25 back 1d@01:30: Sat 24 01:30 +02 [24h] Sun 25 01:30 +02 [25h] Mon 26 01:30 +01
        Australia/Sydney 2026-04-05 back 1d@09:00: Sat 04 09:00 +11 [25h] Sun 05 09:00 +10 [24h] Mon 06 09:00 +10
        Australia/Sydney 2026-04-05 back 1d@02:30: Sat 04 02:30 +11 [24h] Sun 05 02:30 +11 [25h] Mon 06 02:30 +10
        Australia/Sydney 2026-04-05 back 1d@01:30: Sat 04 01:30 +11 [24h] Sun 05 01:30 +11 [25h] Mon 06 01:30 +10
        Australia/Sydney 2026-10-04 forward 1d@09:00: Sat 03 09:00 +10 [23h] Sun 04 09:00 +11 [24h] Mon 05 09:00 +11
        Australia/Sydney 2026-10-04 forward 1d@02:30: Sat 03 02:30 +10 [23h30] Sun 04 03:00 +11 [23h30] Mon 05 02:30 +11
        Australia/Sydney 2026-10-04 forward 1d@01:30: Sat 03 01:30 +10 [24h] Sun 04 01:30 +10 [23h] Mon 05 01:30 +11
    "#]]
    .assert_eq(&actual);
}

#[test]
fn hour_shifts_across_dst_changes() {
    let mut actual = String::new();
    for (zone, date, direction) in CHANGES {
        for (shift, handoff) in [("12h", "09:00"), ("12h", "02:30"), ("8h", "01:30")] {
            let handoffs = handoffs_around(zone, date, shift, handoff);
            writeln!(actual, "{zone} {date} {direction} {shift}@{handoff}: {handoffs}").unwrap();
        }
    }
    expect![[r#"
        America/New_York 2026-03-08 forward 12h@09:00: Sat 07 09:00 -05 [12h] Sat 07 21:00 -05 [11h] Sun 08 09:00 -04 [12h] Sun 08 21:00 -04 [12h] Mon 09 09:00 -04 [12h] Mon 09 21:00 -04
        America/New_York 2026-03-08 forward 12h@02:30: Sat 07 02:30 -05 [12h] Sat 07 14:30 -05 [11h30] Sun 08 03:00 -04 [11h30] Sun 08 14:30 -04 [12h] Mon 09 02:30 -04 [12h] Mon 09 14:30 -04
        America/New_York 2026-03-08 forward 8h@01:30: Sat 07 01:30 -05 [8h] Sat 07 09:30 -05 [8h] Sat 07 17:30 -05 [8h] Sun 08 01:30 -05 [7h] Sun 08 09:30 -04 [8h] Sun 08 17:30 -04 [8h] Mon 09 01:30 -04 [8h] Mon 09 09:30 -04 [8h] Mon 09 17:30 -04
        America/New_York 2026-11-01 back 12h@09:00: Sat 31 09:00 -04 [12h] Sat 31 21:00 -04 [13h] Sun 01 09:00 -05 [12h] Sun 01 21:00 -05 [12h] Mon 02 09:00 -05 [12h] Mon 02 21:00 -05
        America/New_York 2026-11-01 back 12h@02:30: Sat 31 02:30 -04 [12h] Sat 31 14:30 -04 [13h] Sun 01 02:30 -05 [12h] Sun 01 14:30 -05 [12h] Mon 02 02:30 -05 [12h] Mon 02 14:30 -05
        America/New_York 2026-11-01 back 8h@01:30: Sat 31 01:30 -04 [8h] Sat 31 09:30 -04 [8h] Sat 31 17:30 -04 [8h] Sun 01 01:30 -04 [9h] Sun 01 09:30 -05 [8h] Sun 01 17:30 -05 [8h] Mon 02 01:30 -05 [8h] Mon 02 09:30 -05 [8h] Mon 02 17:30 -05
        Europe/Berlin 2026-03-29 forward 12h@09:00: Sat 28 09:00 +01 [12h] Sat 28 21:00 +01 [11h] Sun 29 09:00 +02 [12h] Sun 29 21:00 +02 [12h] Mon 30 09:00 +02 [12h] Mon 30 21:00 +02
        Europe/Berlin 2026-03-29 forward 12h@02:30: Sat 28 02:30 +01 [12h] Sat 28 14:30 +01 [11h30] Sun 29 03:00 +02 [11h30] Sun 29 14:30 +02 [12h] Mon 30 02:30 +02 [12h] Mon 30 14:30 +02
        Europe/Berlin 2026-03-29 forward 8h@01:30: Sat 28 01:30 +01 [8h] Sat 28 09:30 +01 [8h] Sat 28 17:30 +01 [8h] Sun 29 01:30 +01 [7h] Sun 29 09:30 +02 [8h] Sun 29 17:30 +02 [8h] Mon 30 01:30 +02 [8h] Mon 30 09:30 +02 [8h] Mon 30 17:30 +02
        Europe/Berlin 2026-10-25 back 12h@09:00: Sat 24 09:00 +02 [12h] Sat 24 21:00 +02 [13h] Sun 25 09:00 +01 [12h] Sun 25 21:00 +01 [12h] Mon 26 09:00 +01 [12h] Mon 26 21:00 +01
        Europe/Berlin 2026-10-25 back 12h@02:30: Sat 24 02:30 +02 [12h] Sat 24 14:30 +02 [12h] Sun 25 02:30 +02 [13h] Sun 25 14:30 +01 [12h] Mon 26 02:30 +01 [12h] Mon 26 14:30 +01
        Europe/Berlin 2026-10-25 back 8h@01:30: Sat 24 01:30 +02 [8h] Sat 24 09:30 +02 [8h] Sat 24 17:30 +02 [8h] Sun 25 01:30 +02 [9h] Sun 25 09:30 +01 [8h] Sun 25 17:30 +01 [8h] Mon 26 01:30 +01 [8h] Mon 26 09:30 +01 [8h] Mon 26 17:30 +01
        Australia/Sydney 2026-04-05 back 12h@09:00: Sat 04 09:00 +11 [12h] Sat 04 21:00 +11 [13h] Sun 05 09:00 +10 [12h] Sun 05 21:00 +10 [12h] Mon 06 09:00 +10 [12h] Mon 06 21:00 +10
        Australia/Sydney 2026-04-05 back 12h@02:30: Sat 04 02:30 +11 [12h] Sat 04 14:30 +11 [12h] Sun 05 02:30 +11 [13h] Sun 05 14:30 +10 [12h] Mon 06 02:30 +10 [12h] Mon 06 14:30 +10
        Australia/Sydney 2026-04-05 back 8h@01:30: Sat 04 01:30 +11 [8h] Sat 04 09:30 +11 [8h] Sat 04 17:30 +11 [8h] Sun 05 01:30 +11 [9h] Sun 05 09:30 +10 [8h] Sun 05 17:30 +10 [8h] Mon 06 01:30 +10 [8h] Mon 06 09:30 +10 [8h] Mon 06 17:30 +10
        Australia/Sydney 2026-10-04 forward 12h@09:00: Sat 03 09:00 +10 [12h] Sat 03 21:00 +10 [11h] Sun 04 09:00 +11 [12h] Sun 04 21:00 +11 [12h] Mon 05 09:00 +11 [12h] Mon 05 21:00 +11
        Australia/Sydney 2026-10-04 forward 12h@02:30: Sat 03 02:30 +10 [12h] Sat 03 14:30 +10 [11h30] Sun 04 03:00 +11 [11h30] Sun 04 14:30 +11 [12h] Mon 05 02:30 +11 [12h] Mon 05 14:30 +11
        Australia/Sydney 2026-10-04 forward 8h@01:30: Sat 03 01:30 +10 [8h] Sat 03 09:30 +10 [8h] Sat 03 17:30 +10 [8h] Sun 04 01:30 +10 [7h] Sun 04 09:30 +11 [8h] Sun 04 17:30 +11 [8h] Mon 05 01:30 +11 [8h] Mon 05 09:30 +11 [8h] Mon 05 17:30 +11
    "#]]
    .assert_eq(&actual);
}

/// The shift that contains the instant of the DST change is 23 or 25 hours
/// long for day shifts (11 or 13 for 12-hour shifts), and at every minute of
/// the three days around it exactly one person is on call.
#[test]
fn the_shift_containing_a_dst_change_is_shorter_or_longer() {
    let cases = [
        // (zone, instant of the change, shift, handoff, hours of the shift containing it)
        ("America/New_York", "2026-03-08T07:00:00Z", "1d", "09:00", 23),
        ("America/New_York", "2026-11-01T06:00:00Z", "1d", "09:00", 25),
        ("Europe/Berlin", "2026-03-29T01:00:00Z", "1d", "09:00", 23),
        ("Europe/Berlin", "2026-10-25T01:00:00Z", "1d", "09:00", 25),
        ("Europe/Berlin", "2026-10-25T01:00:00Z", "1d", "02:30", 25),
        ("Australia/Sydney", "2026-04-04T16:00:00Z", "1d", "09:00", 25),
        ("Australia/Sydney", "2026-04-04T16:00:00Z", "1d", "02:30", 25),
        ("Australia/Sydney", "2026-10-03T16:00:00Z", "1d", "09:00", 23),
        ("America/New_York", "2026-03-08T07:00:00Z", "12h", "09:00", 11),
        ("America/New_York", "2026-11-01T06:00:00Z", "12h", "09:00", 13),
        ("Europe/Berlin", "2026-03-29T01:00:00Z", "12h", "09:00", 11),
        ("Europe/Berlin", "2026-10-25T01:00:00Z", "12h", "09:00", 13),
        ("Australia/Sydney", "2026-04-04T16:00:00Z", "12h", "09:00", 13),
        ("Australia/Sydney", "2026-10-03T16:00:00Z", "12h", "09:00", 11),
        ("America/New_York", "2026-03-08T07:00:00Z", "7d", "09:00", 7 * 24 - 1),
        ("Europe/Berlin", "2026-10-25T01:00:00Z", "7d", "09:00", 7 * 24 + 1),
    ];
    for (zone, change, shift, handoff, expected_hours) in cases {
        let schedule = schedule(zone, vec![layer("rota", "p0,p1,p2,p3", shift, handoff, "2026-01-01")], vec![]);
        let tz = schedule.time_zone();
        let change = at(change);
        let offset = |instant: DateTime<Utc>| instant.with_timezone(&tz).offset().fix();
        assert_ne!(offset(change - Duration::seconds(1)), offset(change), "{zone}: no change at {change}");
        let on_call = schedule.on_call_at(change).unwrap();
        assert_eq!((on_call.until - on_call.from).num_hours(), expected_hours, "{zone} {shift}@{handoff}");
        assert_eq!((on_call.until - on_call.from).num_seconds() % 3600, 0, "{zone} {shift}@{handoff}");

        let (from, to) = (change - Duration::days(2), change + Duration::days(2));
        let spans = schedule.coverage(from, to);
        assert_well_formed(&spans, from, to);
        assert!(spans.iter().all(|span| span.who.is_some()), "{zone}: nobody on call in {spans:?}");
        let mut instant = from;
        while instant < to {
            let span = spans.iter().find(|span| span.from <= instant && instant < span.until).unwrap();
            assert_eq!(schedule.on_call_at(instant).map(|on_call| on_call.who), span.who, "{zone} at {instant}");
            instant += Duration::minutes(1);
        }
    }
}

#[test]
fn windows_across_dst_changes() {
    // A window on the night of the change, from inside the doubled hour or the gap.
    let cases = [
        // Berlin, spring: 02:30 does not exist, the window opens at 03:00 CEST.
        ("Europe/Berlin", "02:30", "04:00", "2026-03-29T00:59:59Z", "-"),
        ("Europe/Berlin", "02:30", "04:00", "2026-03-29T01:00:00Z", "ana (layer night)"),
        ("Europe/Berlin", "02:30", "04:00", "2026-03-29T01:59:59Z", "ana (layer night)"),
        ("Europe/Berlin", "02:30", "04:00", "2026-03-29T02:00:00Z", "-"),
        // Berlin, spring: a window entirely inside the gap is empty.
        ("Europe/Berlin", "02:10", "02:50", "2026-03-29T01:00:00Z", "-"),
        ("Europe/Berlin", "02:10", "02:50", "2026-03-28T01:10:00Z", "ana (layer night)"), // the day before
        // Berlin, autumn: 02:30 exists twice, the window opens at the first (CEST).
        ("Europe/Berlin", "02:30", "04:00", "2026-10-25T00:29:59Z", "-"),
        ("Europe/Berlin", "02:30", "04:00", "2026-10-25T00:30:00Z", "ana (layer night)"),
        ("Europe/Berlin", "02:30", "04:00", "2026-10-25T02:59:59Z", "ana (layer night)"),
        ("Europe/Berlin", "02:30", "04:00", "2026-10-25T03:00:00Z", "-"),
        // Berlin, autumn: closing at 02:30 closes at the first 02:30 (CEST).
        ("Europe/Berlin", "01:00", "02:30", "2026-10-25T00:29:59Z", "ana (layer night)"),
        ("Europe/Berlin", "01:00", "02:30", "2026-10-25T00:30:00Z", "-"),
        ("Europe/Berlin", "01:00", "02:30", "2026-10-25T01:15:00Z", "-"), // 02:15 CET, the second time
        // New York, spring: the window closes at the end of the gap.
        ("America/New_York", "01:00", "02:30", "2026-03-08T06:59:59Z", "ana (layer night)"),
        ("America/New_York", "01:00", "02:30", "2026-03-08T07:00:00Z", "-"),
        // Sydney, autumn (April): a whole-day window on Sunday lasts 25 hours.
        ("Australia/Sydney", "00:00", "00:00", "2026-04-04T12:59:59Z", "-"),
        ("Australia/Sydney", "00:00", "00:00", "2026-04-04T13:00:00Z", "ana (layer night)"),
        ("Australia/Sydney", "00:00", "00:00", "2026-04-05T13:59:59Z", "ana (layer night)"),
        ("Australia/Sydney", "00:00", "00:00", "2026-04-05T14:00:00Z", "-"),
    ];
    for (zone, from, to, instant, expected) in cases {
        let days = if zone == "Australia/Sydney" { "sun" } else { "" };
        let night = windowed(layer("night", "ana", "7d", "00:00", "2026-01-04"), from, to, days);
        let schedule = schedule(zone, vec![night], vec![]);
        assert_eq!(who(&schedule, instant), expected, "{zone} {from}-{to} at {instant}");
    }
}

#[test]
fn a_gap_longer_than_a_shift_skips_a_participant() {
    // Antarctica/Troll jumps from +00 to +02 at 01:00 UTC on the last Sunday
    // of March: the local times 01:00 to 02:59 do not exist. With hourly
    // shifts at :30, the boundaries 01:30 and 02:30 both map to 03:00, and
    // the shift between them (p1's) is empty: p0 hands straight over to p2.
    let schedule =
        schedule("Antarctica/Troll", vec![layer("hourly", "p0,p1,p2,p3", "1h", "00:30", "2026-03-29")], vec![]);
    let tz = schedule.time_zone();
    let (from, to) = (at("2026-03-29T00:00:00Z"), at("2026-03-29T03:00:00Z"));
    let spans = schedule.coverage(from, to);
    assert_well_formed(&spans, from, to);
    let actual: String =
        spans.iter().map(|span| format!("{} {}\n", local_label(tz, span.from), span.who.as_ref().unwrap())).collect();
    expect![[r#"
        Sun 29 00:00 +00 p3
        Sun 29 00:30 +00 p0
        Sun 29 03:00 +02 p2
        Sun 29 03:30 +02 p3
        Sun 29 04:30 +02 p0
    "#]]
    .assert_eq(&actual);
}

#[test]
fn outside_the_supported_range_nobody_is_on_call() {
    let schedule = schedule("Europe/Berlin", vec![layer("weekly", "ana", "7d", "09:00", "2026-01-05")], vec![]);
    assert_eq!(schedule.on_call_at(Schedule::EARLIEST - Duration::seconds(1)), None);
    assert_eq!(schedule.on_call_at(Schedule::LATEST), None);
    assert_eq!(schedule.on_call_at(DateTime::<Utc>::MAX_UTC), None);
    assert_eq!(schedule.on_call_at(DateTime::<Utc>::MIN_UTC), None);
    assert!(schedule.on_call_at(Schedule::EARLIEST).is_some());
    assert!(schedule.on_call_at(Schedule::LATEST - Duration::seconds(1)).is_some());
    let spans = schedule.coverage(DateTime::<Utc>::MIN_UTC, DateTime::<Utc>::MAX_UTC);
    let nobody = |from, until| Span { who: None, from, until };
    let ana = Some(ActorId::new("ana").unwrap());
    assert_eq!(
        spans,
        [
            nobody(DateTime::<Utc>::MIN_UTC, Schedule::EARLIEST),
            Span { who: ana, from: Schedule::EARLIEST, until: Schedule::LATEST },
            nobody(Schedule::LATEST, DateTime::<Utc>::MAX_UTC),
        ]
    );
    assert_eq!(schedule.coverage(Schedule::LATEST, Schedule::EARLIEST), []);
}

// ---------------------------------------------------------------------------
// Configuration.

#[test]
fn configuration_deserializes_from_the_documented_shape() {
    let json = r#"[{
        "name": "payments-primary",
        "time_zone": "Europe/Berlin",
        "layers": [{
            "name": "weekly",
            "participants": ["ana", "ben", "cat"],
            "shift": "7d",
            "handoff": "09:00",
            "start": "2026-01-05",
            "active": { "from": "09:00", "to": "17:00", "days": ["mon", "tue", "wed", "thu", "fri"] }
        }],
        "overrides": [{ "who": "dan", "from": "2026-11-26T09:00:00+01:00", "to": "2026-11-27T09:00:00+01:00" }]
    }]"#;
    let config: SchedulesConfig = serde_json::from_str(json).unwrap();
    let schedules = config.validate("schedules").unwrap();
    assert_eq!(schedules.len(), 1);
    let schedule = schedules.get("payments-primary").unwrap();
    assert!(schedules.get("payments").is_none());
    assert_eq!(schedule.time_zone(), chrono_tz::Europe::Berlin);
    let layer = &schedule.layers()[0];
    assert_eq!(layer.shift(), Shift::Days(7));
    assert_eq!(layer.handoff(), NaiveTime::from_hms_opt(9, 0, 0).unwrap());
    assert_eq!(layer.start(), NaiveDate::from_ymd_opt(2026, 1, 5).unwrap());
    let window = layer.active().unwrap();
    assert!(window.opens_on(Weekday::Fri) && !window.opens_on(Weekday::Sat));
    assert_eq!(schedule.overrides()[0].from(), at("2026-11-26T08:00:00Z"));
    assert_eq!(who(schedule, "2026-11-26T10:00:00+01:00"), "dan (overrides[0])");

    let typo = r#"[{ "name": "x", "timezone": "Europe/Berlin", "layers": [] }]"#;
    assert!(
        serde_json::from_str::<SchedulesConfig>(typo).unwrap_err().to_string().contains("unknown field `timezone`")
    );
}

#[test]
fn invalid_configurations_name_the_key_and_the_problem() {
    let good = || layer("weekly", "ana,ben,cat", "7d", "09:00", "2026-01-05");
    let with = |change: fn(&mut LayerConfig)| {
        let mut layer = good();
        change(&mut layer);
        config("Europe/Berlin", vec![layer], vec![])
    };
    let overrides = |overrides: Vec<OverrideConfig>| config("Europe/Berlin", vec![good()], overrides);
    let cases = [
        config("Europe/Berln", vec![good()], vec![]),
        config("europe/berlin", vec![good()], vec![]),
        config("Europe/Berlin", vec![], vec![]),
        config("Europe/Berlin", vec![good(); 17], vec![]),
        config("Europe/Berlin", vec![good(), good()], vec![]),
        ScheduleConfig { name: "Payments".into(), ..config("Europe/Berlin", vec![good()], vec![]) },
        ScheduleConfig { name: String::new(), ..config("Europe/Berlin", vec![good()], vec![]) },
        ScheduleConfig { name: "p".repeat(65), ..config("Europe/Berlin", vec![good()], vec![]) },
        with(|l| l.name = "week ly".into()),
        with(|l| l.participants = vec![]),
        with(|l| l.participants = vec!["ana".into(), "ben".into(), "ana".into()]),
        with(|l| l.participants = vec!["ana".into(), "b n".into()]),
        with(|l| l.participants = vec!["".into()]),
        with(|l| l.participants = (0..257).map(|i| format!("p{i}")).collect()),
        with(|l| l.shift = "0d".into()),
        with(|l| l.shift = "0h".into()),
        with(|l| l.shift = "29d".into()),
        with(|l| l.shift = "673h".into()),
        with(|l| l.shift = "99999999999999d".into()),
        with(|l| l.shift = "7w".into()),
        with(|l| l.shift = "d".into()),
        with(|l| l.shift = "-1d".into()),
        with(|l| l.shift = "7 d".into()),
        with(|l| l.shift = "7é".into()),
        with(|l| l.handoff = "9:00".into()),
        with(|l| l.handoff = "24:00".into()),
        with(|l| l.handoff = "09:60".into()),
        with(|l| l.handoff = "09:00:00".into()),
        with(|l| l.start = "2026-02-30".into()),
        with(|l| l.start = "2026-1-5".into()),
        with(|l| l.start = "1899-12-31".into()),
        with(|l| l.start = "2200-01-01".into()),
        with(|l| l.active = Some(WindowConfig { from: "9".into(), to: "17:00".into(), days: None })),
        with(|l| l.active = Some(WindowConfig { from: "09:00".into(), to: "25:00".into(), days: None })),
        with(|l| l.active = Some(WindowConfig { from: "09:00".into(), to: "17:00".into(), days: Some(vec![]) })),
        with(|l| {
            l.active = Some(WindowConfig {
                from: "09:00".into(),
                to: "17:00".into(),
                days: Some(vec!["mon".into(), "Tue".into()]),
            })
        }),
        with(|l| {
            l.active = Some(WindowConfig {
                from: "09:00".into(),
                to: "17:00".into(),
                days: Some(vec!["mon".into(), "mon".into()]),
            })
        }),
        overrides(vec![overriding("dan", "2026-11-26T09:00:00+01:00", "2026-11-26T09:00:00+01:00")]),
        overrides(vec![
            overriding("dan", "2026-11-26T09:00:00+01:00", "2026-11-27T09:00:00+01:00"),
            overriding("eve", "2026-11-26T09:00:00+01:00", "2026-11-27T09:00:00+01:00"),
            overriding("fay", "2026-11-27T09:00:00+01:00", "2026-11-26T09:00:00+01:00"),
        ]),
        overrides(vec![overriding("dan", "2026-11-26 09:00", "2026-11-27T09:00:00+01:00")]),
        overrides(vec![overriding("dan", "2026-11-26T09:00:00+01:00", "2026-11-27T09:00:00")]),
        overrides(vec![overriding("d n", "2026-11-26T09:00:00+01:00", "2026-11-27T09:00:00+01:00")]),
    ];
    let actual: String = cases
        .iter()
        .map(|config| match config.validate("schedules[0]") {
            Ok(_) => "ok\n".to_string(),
            Err(error) => format!("{error}\n"),
        })
        .collect();
    expect![[r#"
        schedules[0].time_zone: unknown IANA time zone "Europe/Berln"
        schedules[0].time_zone: unknown IANA time zone "europe/berlin"
        schedules[0].layers: must have at least one layer
        schedules[0].layers: at most 16 layers are allowed, found 17
        schedules[0].layers[1].name: "weekly" is already the name of layers[0]
        schedules[0].name: "Payments": character 'P' is not allowed (use a-z 0-9 _ -)
        schedules[0].name: must not be empty
        schedules[0].name: "ppppppppppppppppppppppppppppppppppppppppppppppppppppppppppppppppp" is 65 characters long, at most 64 are allowed
        schedules[0].layers[0].name: "week ly": character ' ' is not allowed (use a-z 0-9 _ -)
        schedules[0].layers[0].participants: must name at least one participant
        schedules[0].layers[0].participants: "ana" appears twice
        schedules[0].layers[0].participants[1]: "b n": character ' ' is not allowed (use A-Z a-z 0-9 _ . @ : -)
        schedules[0].layers[0].participants[0]: must not be empty
        schedules[0].layers[0].participants: at most 256 participants are allowed, found 257
        schedules[0].layers[0].shift: "0d" must be at least 1 day or 1 hour
        schedules[0].layers[0].shift: "0h" must be at least 1 day or 1 hour
        schedules[0].layers[0].shift: "29d" must be at most 28 days
        schedules[0].layers[0].shift: "673h" must be at most 672 hours
        schedules[0].layers[0].shift: "99999999999999d" must be at most 28 days
        schedules[0].layers[0].shift: "7w": expected "<n>d" (calendar days) or "<n>h" (hours)
        schedules[0].layers[0].shift: "d": expected "<n>d" (calendar days) or "<n>h" (hours)
        schedules[0].layers[0].shift: "-1d": expected "<n>d" (calendar days) or "<n>h" (hours)
        schedules[0].layers[0].shift: "7 d": expected "<n>d" (calendar days) or "<n>h" (hours)
        schedules[0].layers[0].shift: "7é": expected "<n>d" (calendar days) or "<n>h" (hours)
        schedules[0].layers[0].handoff: "9:00": expected a local time "HH:MM" from "00:00" to "23:59"
        schedules[0].layers[0].handoff: "24:00": expected a local time "HH:MM" from "00:00" to "23:59"
        schedules[0].layers[0].handoff: "09:60": expected a local time "HH:MM" from "00:00" to "23:59"
        schedules[0].layers[0].handoff: "09:00:00": expected a local time "HH:MM" from "00:00" to "23:59"
        schedules[0].layers[0].start: "2026-02-30": expected a local date "YYYY-MM-DD"
        schedules[0].layers[0].start: "2026-1-5": expected a local date "YYYY-MM-DD"
        schedules[0].layers[0].start: "1899-12-31" must be between 1900-01-01 and 2199-12-31
        schedules[0].layers[0].start: "2200-01-01" must be between 1900-01-01 and 2199-12-31
        schedules[0].layers[0].active.from: "9": expected a local time "HH:MM" from "00:00" to "23:59"
        schedules[0].layers[0].active.to: "25:00": expected a local time "HH:MM" from "00:00" to "23:59"
        schedules[0].layers[0].active.days: must name at least one day
        schedules[0].layers[0].active.days[1]: "Tue": expected one of mon, tue, wed, thu, fri, sat, sun
        schedules[0].layers[0].active.days: "mon" appears twice
        schedules[0].overrides[0]: "to" must be after "from"
        schedules[0].overrides[2]: "to" must be after "from"
        schedules[0].overrides[0].from: "2026-11-26 09:00": expected an RFC 3339 instant such as "2026-11-26T09:00:00+01:00"
        schedules[0].overrides[0].to: "2026-11-27T09:00:00": expected an RFC 3339 instant such as "2026-11-26T09:00:00+01:00"
        schedules[0].overrides[0].who: "d n": character ' ' is not allowed (use A-Z a-z 0-9 _ . @ : -)
    "#]]
    .assert_eq(&actual);

    let twice = SchedulesConfig(vec![
        config("Europe/Berlin", vec![good()], vec![]),
        ScheduleConfig { name: "other".into(), ..config("Europe/Berlin", vec![good()], vec![]) },
        config("America/New_York", vec![good()], vec![]),
    ]);
    expect![[r#"schedules[2].name: "payments-primary" is already the name of schedules[0]"#]]
        .assert_eq(&twice.validate("schedules").unwrap_err().to_string());
}

// ---------------------------------------------------------------------------
// Properties.

/// Zones with DST in both hemispheres, half-hour and 45-minute offsets, a
/// half-hour DST change (Lord Howe), changes at midnight (Santiago) and no
/// DST at all (Kolkata).
const ZONES: [&str; 8] = [
    "America/New_York",
    "Europe/Berlin",
    "Australia/Sydney",
    "Europe/London",
    "Australia/Lord_Howe",
    "America/Santiago",
    "Pacific/Chatham",
    "Asia/Kolkata",
];

/// The instants of `year` at which `tz` changes its offset, to the second.
fn offset_changes(tz: Tz, year: i32) -> Vec<DateTime<Utc>> {
    let offset = |instant: DateTime<Utc>| instant.with_timezone(&tz).offset().fix();
    let mut changes = Vec::new();
    let mut hour = Utc.with_ymd_and_hms(year, 1, 1, 0, 0, 0).unwrap();
    while hour.year() == year {
        let next = hour + Duration::hours(1);
        if offset(hour) != offset(next) {
            let (mut low, mut high) = (hour, next); // offset(low) != offset(high)
            while high - low > Duration::seconds(1) {
                let middle = low + (high - low) / 2;
                if offset(middle) == offset(low) { low = middle } else { high = middle }
            }
            changes.push(high);
        }
        hour = next;
    }
    changes
}

/// A random window of up to three weeks on either side of a random DST
/// change of 2020..2030 (or mid-year in zones without DST).
fn window_around_a_change() -> impl Strategy<Value = (Tz, DateTime<Utc>, DateTime<Utc>)> {
    (0..ZONES.len(), 2020..2030i32, 0..4usize, 0..21 * 86_400i64, 1..21 * 86_400i64).prop_map(
        |(zone, year, pick, before, after)| {
            let tz = tz(ZONES[zone]);
            let changes = offset_changes(tz, year);
            let center = if changes.is_empty() {
                Utc.with_ymd_and_hms(year, 7, 1, 0, 0, 0).unwrap()
            } else {
                changes[pick % changes.len()]
            };
            (tz, center - Duration::seconds(before), center + Duration::seconds(after))
        },
    )
}

fn hh_mm(minute: u32) -> String {
    format!("{:02}:{:02}", minute / 60, minute % 60)
}

fn layer_config(index: usize) -> impl Strategy<Value = LayerConfig> {
    let shift = prop_oneof![(1..=14u32).prop_map(|n| format!("{n}d")), (1..=48u32).prop_map(|n| format!("{n}h"))];
    let window = proptest::option::of((0..1440u32, 0..1440u32, 1..128u8).prop_map(|(from, to, days)| {
        let names = ["mon", "tue", "wed", "thu", "fri", "sat", "sun"];
        let days = names.iter().enumerate().filter(|(i, _)| days & (1 << i) != 0).map(|(_, d)| d.to_string()).collect();
        WindowConfig { from: hh_mm(from), to: hh_mm(to), days: Some(days) }
    }));
    let start =
        (0..(11 * 365u64)).prop_map(|days| NaiveDate::from_ymd_opt(2020, 1, 1).unwrap() + chrono::Days::new(days));
    (1..=5usize, shift, 0..1440u32, start, window).prop_map(move |(len, shift, handoff, start, active)| LayerConfig {
        name: format!("layer{index}"),
        participants: (0..len).map(|i| format!("l{index}p{i}")).collect(),
        shift,
        handoff: hh_mm(handoff),
        start: start.to_string(),
        active,
    })
}

fn overrides_within(from: DateTime<Utc>, to: DateTime<Utc>) -> impl Strategy<Value = Vec<OverrideConfig>> {
    let seconds = (to - from).num_seconds();
    proptest::collection::vec((0..seconds, 1..3 * 86_400i64, 0..3usize), 0..4).prop_map(move |overrides| {
        overrides
            .into_iter()
            .map(|(start, len, who)| {
                let start = from + Duration::seconds(start);
                OverrideConfig {
                    who: format!("o{who}"),
                    from: start.to_rfc3339(),
                    to: (start + Duration::seconds(len)).to_rfc3339(),
                }
            })
            .collect()
    })
}

/// A schedule of one to three random layers (with or without windows) and
/// up to three random overrides, with a window of time around a DST change
/// and instants inside it.
fn schedule_and_window() -> impl Strategy<Value = (Schedule, DateTime<Utc>, DateTime<Utc>, Vec<DateTime<Utc>>)> {
    window_around_a_change().prop_flat_map(|(tz, from, to)| {
        let layers = (1..=3usize).prop_flat_map(|n| (0..n).map(layer_config).collect::<Vec<_>>());
        let seconds = (to - from).num_seconds();
        let instants = proptest::collection::vec((0..seconds).prop_map(move |s| from + Duration::seconds(s)), 1..24);
        (layers, overrides_within(from, to), instants).prop_map(move |(layers, overrides, instants)| {
            let schedule = schedule(tz.name(), layers, overrides);
            (schedule, from, to, instants)
        })
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    /// The timeline is contiguous and exact, and every answer of
    /// `on_call_at` agrees with it and with its own span.
    #[test]
    fn coverage_and_on_call_agree((schedule, from, to, instants) in schedule_and_window()) {
        let spans = schedule.coverage(from, to);
        assert_well_formed(&spans, from, to);
        for instant in instants {
            let span = spans.iter().find(|span| span.from <= instant && instant < span.until).unwrap();
            let on_call = schedule.on_call_at(instant);
            prop_assert_eq!(on_call.as_ref().map(|on_call| on_call.who.clone()), span.who.clone());
            let Some(on_call) = on_call else { continue };
            prop_assert!(on_call.from <= instant && instant < on_call.until, "{:?} at {}", on_call, instant);
            for same in [on_call.from, on_call.until - Duration::seconds(1)] {
                let again = schedule.on_call_at(same).unwrap();
                prop_assert_eq!((&again.who, &again.source), (&on_call.who, &on_call.source), "at {}", same);
            }
            // The last-listed override containing the instant decides.
            let deciding = schedule.overrides().iter().rposition(|o| o.from() <= instant && instant < o.to());
            if let Some(index) = deciding {
                prop_assert_eq!(&on_call.who, schedule.overrides()[index].who());
                prop_assert_eq!(&on_call.source, &Source::Override(index));
            } else {
                prop_assert!(matches!(on_call.source, Source::Layer(_)));
            }
        }
    }

    /// With one layer and no window, every handoff is at a local wall-clock
    /// time of the rotation's grid (`start` at `handoff` plus a multiple of
    /// the shift), at the earlier instant when that local time exists twice
    /// and at the end of the gap when it does not exist; consecutive handoffs
    /// are consecutive grid points, and the participant is the grid index
    /// modulo the number of participants.
    #[test]
    fn handoffs_follow_the_local_clock(
        (tz, from, to) in window_around_a_change(),
        layer in layer_config(0).prop_filter("rotating", |l| l.participants.len() >= 2),
    ) {
        let layer = LayerConfig { active: None, ..layer };
        let schedule = schedule(tz.name(), vec![layer], vec![]);
        let layer = &schedule.layers()[0];
        let epoch = layer.start().and_time(layer.handoff());
        let step = match layer.shift() {
            Shift::Days(n) => Duration::days(i64::from(n)),
            Shift::Hours(n) => Duration::hours(i64::from(n)),
        };
        let spans = schedule.coverage(from, to);
        assert_well_formed(&spans, from, to);
        let mut previous: Option<i64> = None;
        for span in &spans[1..] {
            let handoff = span.from;
            let local = handoff.with_timezone(&tz).naive_local();
            let before = (handoff - Duration::seconds(1)).with_timezone(&tz);
            let jumped = before.offset().fix() != handoff.with_timezone(&tz).offset().fix();
            // The grid points this handoff stands for: one, or at the end of
            // a gap every grid point in the gap (all mapped to its end) up to
            // the last one, whose shift is the one that runs. The shifts of
            // the others are empty: a gap at least as long as a shift.
            let (first, k) = if jumped {
                let skipped_from = before.naive_local() + Duration::seconds(1);
                let first = (skipped_from - epoch).num_seconds().div_euclid(step.num_seconds())
                    + i64::from((skipped_from - epoch).num_seconds().rem_euclid(step.num_seconds()) != 0);
                let last = (local - epoch).num_seconds().div_euclid(step.num_seconds());
                let grid = epoch + step * i32::try_from(first).unwrap();
                prop_assert!(skipped_from <= grid && grid <= local, "handoff at {} after {}: grid {}", handoff, before, grid);
                prop_assert!(first <= last, "handoff at {}: grid points {}..={}", handoff, first, last);
                (first, last)
            } else {
                let elapsed = (local - epoch).num_seconds();
                prop_assert_eq!(elapsed.rem_euclid(step.num_seconds()), 0, "handoff at {} ({}) is off the grid", handoff, local);
                prop_assert_eq!(tz.from_local_datetime(&local).earliest().unwrap().to_utc(), handoff, "not the earlier instant");
                let k = elapsed / step.num_seconds();
                (k, k)
            };
            if let Some(previous) = previous {
                prop_assert_eq!(first, previous + 1, "handoff at {} skipped a shift", handoff);
            }
            previous = Some(k);
            let len = i64::try_from(layer.participants().len()).unwrap();
            let expected = &layer.participants()[usize::try_from(k.rem_euclid(len)).unwrap()];
            prop_assert_eq!(span.who.as_ref(), Some(expected));
        }
    }

    /// A windowed layer over a one-person base layer decides exactly when the
    /// local clock is inside a window (checked where the local time exists
    /// once; doubled hours are covered by the table tests).
    #[test]
    fn windows_follow_the_local_clock(
        (tz, from, to) in window_around_a_change(),
        top in layer_config(1).prop_filter("windowed", |l| l.active.is_some()),
        offsets in proptest::collection::vec(0..1_000_000i64, 1..32),
    ) {
        let window = top.active.clone().unwrap();
        let schedule = schedule(tz.name(), vec![layer("base", "zz", "7d", "09:00", "2026-01-05"), top], vec![]);
        let parsed = *schedule.layers()[1].active().unwrap();
        for offset in offsets {
            let instant = from + Duration::seconds(offset % (to - from).num_seconds());
            let local = instant.with_timezone(&tz).naive_local();
            if !matches!(tz.from_local_datetime(&local), LocalResult::Single(_)) {
                continue;
            }
            let (time, today, yesterday) = (local.time(), local.weekday(), local.weekday().pred());
            let inside = if parsed.to() > parsed.from() {
                parsed.opens_on(today) && parsed.from() <= time && time < parsed.to()
            } else {
                (parsed.opens_on(today) && time >= parsed.from()) || (parsed.opens_on(yesterday) && time < parsed.to())
            };
            let source = schedule.on_call_at(instant).unwrap().source;
            prop_assert_eq!(source == Source::Layer("layer1".into()), inside, "{:?} at {} ({})", window, instant, local);
        }
    }
}
