//! Overrides and swaps as events: the decider's rules, the effective
//! schedule (precedence with configured overrides), and swaps across DST.

use super::*;
use crate::oncall::roster::{
    Acting, Roster, RosterChange, RosterCommand, RosterError, RosterEvent, Rosters, decide, interval,
};

fn actor(name: &str) -> ActorId {
    ActorId::new(name).unwrap()
}

fn engineer(name: &str) -> Acting {
    Acting { actor: actor(name), manager: false }
}

fn manager() -> Acting {
    Acting { actor: actor("mia"), manager: true }
}

/// Day shifts at 09:00 New York: alice from 2020-03-01, then bob, carol.
fn daily() -> Schedule {
    schedule("America/New_York", vec![layer("primary", "alice,bob,carol", "1d", "09:00", "2020-03-01")], vec![])
}

/// A schedule and the roster folded so far, commands applied one by one.
struct World {
    schedule: Schedule,
    roster: Roster,
}

impl World {
    fn new(schedule: Schedule) -> World {
        World { schedule, roster: Roster::default() }
    }

    /// Decides and, when accepted, folds; returns the event or the error
    /// text.
    fn run(&mut self, acting: &Acting, command: RosterCommand, now: &str) -> Result<RosterEvent, String> {
        let event = decide(&self.schedule, &self.roster, acting, &command, at(now)).map_err(|e| e.to_string())?;
        // The log format round-trips every event.
        assert_eq!(RosterEvent::from_json(event.kind(), &event.to_json().to_string()).unwrap(), event);
        self.roster.evolve(&event);
        Ok(event)
    }

    fn ok(&mut self, acting: &Acting, command: RosterCommand, now: &str) -> RosterEvent {
        self.run(acting, command, now).unwrap()
    }

    /// The refusal's text; asserts the roster did not change.
    fn refused(&mut self, acting: &Acting, command: RosterCommand, now: &str) -> String {
        let before = self.roster.clone();
        let error = self.run(acting, command, now).unwrap_err();
        assert_eq!(self.roster, before);
        error
    }

    fn who(&self, instant: &str) -> String {
        who(&self.roster.effective(&self.schedule), instant)
    }
}

fn add(who: &str, from: &str, until: &str) -> RosterCommand {
    RosterCommand::AddOverride { who: actor(who), from: at(from), until: at(until) }
}

fn request(requester: &str, from: &str, until: &str) -> RosterCommand {
    RosterCommand::RequestSwap { requester: actor(requester), from: at(from), until: at(until) }
}

fn take(id: u32, taker: &str) -> RosterCommand {
    RosterCommand::TakeSwap { id, taker: actor(taker) }
}

// alice: 03-01 09:00 EST (14:00Z) .. 03-02 14:00Z; bob 03-02 .. 03-03; carol 03-03 .. 03-04.
const NOW: &str = "2020-02-28T00:00:00Z";

#[test]
fn added_overrides_win_over_layers_and_configured_overrides_until_removed() {
    let configured = schedule(
        "America/New_York",
        vec![layer("primary", "alice,bob,carol", "1d", "09:00", "2020-03-01")],
        vec![overriding("dave", "2020-03-01T15:00:00Z", "2020-03-01T20:00:00Z")],
    );
    let mut world = World::new(configured);
    assert_eq!(world.who("2020-03-01T16:00:00Z"), "dave (overrides[0])");
    let event = world.ok(&manager(), add("erin", "2020-03-01T16:00:00Z", "2020-03-01T17:00:00Z"), NOW);
    assert_eq!(event.summary(), "override O1: erin is on call [2020-03-01T16:00:00Z, 2020-03-01T17:00:00Z)");
    assert_eq!(world.who("2020-03-01T15:30:00Z"), "dave (overrides[0])");
    assert_eq!(world.who("2020-03-01T16:30:00Z"), "erin (override O1)");
    assert_eq!(world.who("2020-03-01T17:30:00Z"), "dave (overrides[0])");
    // A later added override wins over an earlier one while it lasts.
    world.ok(&manager(), add("fred", "2020-03-01T16:45:00Z", "2020-03-01T18:00:00Z"), NOW);
    assert_eq!(world.who("2020-03-01T16:30:00Z"), "erin (override O1)");
    assert_eq!(world.who("2020-03-01T16:50:00Z"), "fred (override O2)");
    world.ok(&manager(), RosterCommand::RemoveOverride { id: 1 }, NOW);
    assert_eq!(world.who("2020-03-01T16:30:00Z"), "dave (overrides[0])");
    assert_eq!(world.who("2020-03-01T16:50:00Z"), "fred (override O2)");
    assert_eq!(
        world.refused(&manager(), RosterCommand::RemoveOverride { id: 1 }, NOW),
        "override O1 of schedule payments-primary was already removed"
    );
    assert_eq!(
        world.refused(&manager(), RosterCommand::RemoveOverride { id: 7 }, NOW),
        "schedule payments-primary has no override O7"
    );
    // Rosters apply per schedule by name, leaving the others as configured.
    let mut rosters = Rosters::default();
    rosters.evolve(&RosterEvent {
        schedule: "payments-primary".into(),
        at: at(NOW),
        by: actor("mia"),
        change: RosterChange::OverrideAdded(crate::oncall::roster::OverrideAdded {
            override_id: 1,
            who: actor("zed"),
            from: at("2020-03-05T00:00:00Z"),
            until: at("2020-03-06T00:00:00Z"),
        }),
    });
    let effective = rosters.effective(
        &SchedulesConfig(vec![config("America/New_York", vec![layer("l", "x", "1d", "09:00", "2020-01-01")], vec![])])
            .validate("schedules")
            .unwrap(),
    );
    assert_eq!(who(effective.get("payments-primary").unwrap(), "2020-03-05T12:00:00Z"), "zed (override O1)");
}

#[test]
fn engineers_act_only_for_their_own_shifts_managers_for_anyone() {
    let mut world = World::new(daily());
    // bob puts himself on call during alice's shift: refused, nothing written.
    assert_eq!(
        world.refused(&engineer("bob"), add("bob", "2020-03-01T15:00:00Z", "2020-03-01T16:00:00Z"), NOW),
        "engineer bob may only change their own shifts: alice is on call during \
         [2020-03-01T15:00:00Z, 2020-03-01T16:00:00Z)"
    );
    // An interval reaching into someone else's shift names that part.
    assert_eq!(
        world.refused(&engineer("alice"), add("bob", "2020-03-02T13:00:00Z", "2020-03-02T15:00:00Z"), NOW),
        "engineer alice may only change their own shifts: bob is on call during \
         [2020-03-02T14:00:00Z, 2020-03-02T15:00:00Z)"
    );
    // alice gives an hour of her own shift to bob.
    world.ok(&engineer("alice"), add("bob", "2020-03-01T15:00:00Z", "2020-03-01T16:00:00Z"), NOW);
    assert_eq!(world.who("2020-03-01T15:30:00Z"), "bob (override O1)");
    // carol may not remove it (neither names nor added by her); bob may.
    assert_eq!(
        world.refused(&engineer("carol"), RosterCommand::RemoveOverride { id: 1 }, NOW),
        "engineer carol may only change their own shifts: override O1 puts bob on call and was added by alice"
    );
    world.ok(&engineer("bob"), RosterCommand::RemoveOverride { id: 1 }, NOW);
    // A manager may put anyone anywhere.
    world.ok(&manager(), add("carol", "2020-03-01T15:00:00Z", "2020-03-01T16:00:00Z"), NOW);
    // Nobody may request a swap for someone else unless a manager.
    assert_eq!(
        world.refused(&engineer("bob"), request("alice", "2020-03-01T14:00:00Z", "2020-03-01T15:00:00Z"), NOW),
        "engineer bob may only change their own shifts: the swap would be of alice's shift"
    );
    world.ok(&manager(), request("alice", "2020-03-01T14:00:00Z", "2020-03-01T15:00:00Z"), NOW);
    assert_eq!(
        world.refused(&engineer("bob"), take(1, "carol"), NOW),
        "engineer bob may only change their own shifts: only carol (or a manager) may take swap S1 for carol"
    );
}

#[test]
fn a_swap_is_requested_taken_and_undone_before_its_shift() {
    let mut world = World::new(daily());
    let (from, until) = ("2020-03-01T14:00:00Z", "2020-03-02T14:00:00Z");
    let event = world.ok(&engineer("alice"), request("alice", from, until), NOW);
    assert_eq!(event.summary(), "swap S1: alice asks someone to take [2020-03-01T14:00:00Z, 2020-03-02T14:00:00Z)");
    assert_eq!(world.who("2020-03-01T20:00:00Z"), "alice (layer primary)");
    assert_eq!(
        world.refused(&engineer("alice"), take(1, "alice"), NOW),
        "invalid taker: alice requested swap S1: someone else must take it"
    );
    world.ok(&engineer("carol"), take(1, "carol"), NOW);
    assert_eq!(world.who("2020-03-01T14:00:00Z"), "carol (swap S1)");
    assert_eq!(world.who("2020-03-02T13:59:59Z"), "carol (swap S1)");
    assert_eq!(world.who("2020-03-02T14:00:00Z"), "bob (layer primary)");
    assert_eq!(world.refused(&engineer("bob"), take(1, "bob"), NOW), "swap S1 is already taken by carol");
    assert_eq!(
        world.refused(&engineer("alice"), RosterCommand::CancelSwap { id: 1 }, NOW),
        "swap S1 was already taken by carol: undo it instead (while its shift has not started)"
    );
    // bob is neither requester nor taker.
    assert_eq!(
        world.refused(&engineer("bob"), RosterCommand::UndoSwap { id: 1 }, NOW),
        "engineer bob may only change their own shifts: swap S1 is between alice and carol"
    );
    // Once the shift started, it stays.
    assert_eq!(
        world.refused(&engineer("alice"), RosterCommand::UndoSwap { id: 1 }, "2020-03-01T14:00:00Z"),
        "the shift of swap S1 started at 2020-03-01T14:00:00Z: it can no longer be undone"
    );
    world.ok(&engineer("carol"), RosterCommand::UndoSwap { id: 1 }, "2020-03-01T13:59:59Z");
    assert_eq!(world.who("2020-03-01T20:00:00Z"), "alice (layer primary)");
    assert_eq!(world.refused(&engineer("alice"), RosterCommand::UndoSwap { id: 1 }, NOW), "swap S1 is already undone");
}

#[test]
fn a_swap_can_be_cancelled_only_until_taken() {
    let mut world = World::new(daily());
    world.ok(&engineer("bob"), request("bob", "2020-03-02T14:00:00Z", "2020-03-02T20:00:00Z"), NOW);
    assert_eq!(
        world.refused(&engineer("carol"), RosterCommand::CancelSwap { id: 1 }, NOW),
        "engineer carol may only change their own shifts: swap S1 is bob's"
    );
    assert_eq!(
        world.refused(&engineer("bob"), RosterCommand::UndoSwap { id: 1 }, NOW),
        "swap S1 was not taken: cancel it instead"
    );
    world.ok(&engineer("bob"), RosterCommand::CancelSwap { id: 1 }, NOW);
    assert_eq!(world.refused(&engineer("carol"), take(1, "carol"), NOW), "swap S1 is already cancelled");
    assert_eq!(world.refused(&engineer("carol"), take(9, "carol"), NOW), "schedule payments-primary has no swap S9");
    assert_eq!(world.who("2020-03-02T15:00:00Z"), "bob (layer primary)");
}

#[test]
fn a_swap_request_must_be_the_requesters_and_in_the_future() {
    let mut world = World::new(daily());
    assert_eq!(
        world.refused(&engineer("alice"), request("alice", "2020-03-02T12:00:00Z", "2020-03-02T16:00:00Z"), NOW),
        "alice is not on call throughout [2020-03-02T12:00:00Z, 2020-03-02T16:00:00Z): bob is on call during \
         [2020-03-02T14:00:00Z, 2020-03-02T16:00:00Z)"
    );
    assert_eq!(
        world.refused(
            &engineer("alice"),
            request("alice", "2020-03-01T15:00:00Z", "2020-03-01T16:00:00Z"),
            "2020-03-01T15:30:00Z"
        ),
        "invalid from: the shift to swap must not have started (2020-03-01T15:00:00Z is before now, 2020-03-01T15:30:00Z)"
    );
    assert_eq!(
        world.refused(&engineer("alice"), request("alice", "2020-03-01T16:00:00Z", "2020-03-01T15:00:00Z"), NOW),
        "invalid until: must be after \"from\""
    );
    assert_eq!(
        world.refused(&manager(), add("bob", "2020-03-01T16:00:00Z", "2020-07-01T15:00:00Z"), NOW),
        "invalid until: at most 92 days after \"from\""
    );
    assert_eq!(
        world.refused(&manager(), add("bob", "2020-02-01T16:00:00Z", "2020-02-02T15:00:00Z"), NOW),
        "invalid until: 2020-02-02T15:00:00Z is already past"
    );
    // A swap of a hole is refused naming it.
    let mut windowed_world = World::new(schedule(
        "America/New_York",
        vec![windowed(layer("day", "alice,bob", "1d", "09:00", "2020-03-01"), "09:00", "17:00", "")],
        vec![],
    ));
    assert_eq!(
        windowed_world.refused(
            &engineer("alice"),
            request("alice", "2020-03-01T14:00:00Z", "2020-03-01T23:00:00Z"),
            NOW
        ),
        "alice is not on call throughout [2020-03-01T14:00:00Z, 2020-03-01T23:00:00Z): nobody is on call during \
         [2020-03-01T22:00:00Z, 2020-03-01T23:00:00Z)"
    );
}

#[test]
fn undoing_a_swap_that_would_leave_a_gap_is_refused_naming_it() {
    // Days 09:00-17:00 only; alice covers the evening of 03-01 by override O1.
    let mut world = World::new(schedule(
        "America/New_York",
        vec![windowed(layer("day", "alice,bob", "1d", "09:00", "2020-03-01"), "09:00", "17:00", "")],
        vec![],
    ));
    world.ok(&manager(), add("alice", "2020-03-01T22:00:00Z", "2020-03-02T01:00:00Z"), NOW);
    world.ok(&engineer("alice"), request("alice", "2020-03-01T22:00:00Z", "2020-03-02T01:00:00Z"), NOW);
    world.ok(&engineer("bob"), take(1, "bob"), NOW);
    world.ok(&manager(), RosterCommand::RemoveOverride { id: 1 }, NOW);
    assert_eq!(world.who("2020-03-01T23:00:00Z"), "bob (swap S1)");
    assert_eq!(
        world.refused(&engineer("alice"), RosterCommand::UndoSwap { id: 1 }, NOW),
        "undoing swap S1 would leave [2020-03-01T22:00:00Z, 2020-03-02T01:00:00Z) with nobody on call"
    );
    let error = decide(&world.schedule, &world.roster, &manager(), &RosterCommand::UndoSwap { id: 1 }, at(NOW));
    assert!(matches!(error, Err(RosterError::WouldLeaveGap { .. })));
}

/// The regression an earlier attempt's property test found: a 1-hour
/// rotation with handoff 11:00 in New York on the day clocks spring forward
/// (2020-03-08, 02:00 EST -> 03:00 EDT). The shift that contains the gap
/// runs 01:00 EST to 03:00 EDT, one real hour; swapping it and the shifts
/// around it leaves no gap and undoing restores the rotation exactly.
#[test]
fn swaps_across_the_new_york_spring_forward_leave_no_gap() {
    let configured =
        schedule("America/New_York", vec![layer("hourly", "ann,ben,cat", "1h", "11:00", "2020-03-08")], vec![]);
    let (from, to) = (at("2020-03-08T04:00:00Z"), at("2020-03-08T10:00:00Z"));
    let original = configured.coverage(from, to);
    assert!(configured.holes(from, to).is_empty());
    let mut world = World::new(configured);
    let now = "2020-03-01T00:00:00Z";
    // Every shift of the morning is swapped to dan, one by one.
    for (n, span) in original.iter().enumerate() {
        let holder = span.who.clone().unwrap();
        let number = u32::try_from(n + 1).unwrap();
        world.ok(&manager(), RosterCommand::RequestSwap { requester: holder, from: span.from, until: span.until }, now);
        world.ok(&engineer("dan"), take(number, "dan"), now);
        let effective = world.roster.effective(&world.schedule);
        assert!(effective.holes(from, to).is_empty(), "a hole after swapping {}", interval(span.from, span.until));
        assert_eq!(effective.on_call_at(span.from).unwrap().who, actor("dan"));
    }
    let effective = world.roster.effective(&world.schedule);
    assert_eq!(
        effective.coverage(original[0].from, original.last().unwrap().until),
        vec![Span { who: Some(actor("dan")), from: original[0].from, until: original.last().unwrap().until }]
    );
    // The shift across the gap: 01:00 EST (06:00Z) to 03:00 EDT (07:00Z).
    assert_eq!(world.who("2020-03-08T06:30:00Z"), "dan (swap S3)");
    for n in 1..=u32::try_from(original.len()).unwrap() {
        world.ok(&engineer("dan"), RosterCommand::UndoSwap { id: n }, now);
    }
    assert_eq!(world.roster.effective(&world.schedule).coverage(from, to), original);
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(128))]

    /// For any schedule around a DST change: swapping the shift on call at
    /// a random instant to a newcomer leaves every instant covered that was
    /// covered, puts the newcomer on call exactly during the shift, and
    /// undoing it restores the timeline.
    #[test]
    fn a_swap_never_leaves_a_gap((schedule, from, to, instants) in schedule_and_window()) {
        let original = schedule.coverage(from, to);
        for instant in instants {
            let Some(on_call) = schedule.on_call_at(instant) else { continue };
            let now = on_call.from - Duration::seconds(1);
            let mut roster = Roster::default();
            let request = RosterCommand::RequestSwap { requester: on_call.who.clone(), from: on_call.from, until: on_call.until };
            let requested = decide(&schedule, &roster, &manager(), &request, now);
            let requested = match requested {
                Ok(event) => event,
                // Only a span longer than the limit may be refused.
                Err(RosterError::Invalid { field: "until", .. }) => continue,
                Err(e) => return Err(TestCaseError::fail(format!("{e} at {instant}"))),
            };
            roster.evolve(&requested);
            let taken = decide(&schedule, &roster, &engineer("newcomer"), &take(1, "newcomer"), now).unwrap();
            roster.evolve(&taken);
            let swapped = roster.effective(&schedule);
            for span in &original {
                for probe in [span.from, span.until - Duration::seconds(1)] {
                    let after = swapped.on_call_at(probe).map(|o| o.who);
                    if on_call.from <= probe && probe < on_call.until {
                        prop_assert_eq!(after, Some(actor("newcomer")), "at {}", probe);
                    } else {
                        prop_assert_eq!(after, span.who.clone(), "at {}", probe);
                    }
                }
            }
            let undone = decide(&schedule, &roster, &engineer("newcomer"), &RosterCommand::UndoSwap { id: 1 }, now).unwrap();
            roster.evolve(&undone);
            prop_assert_eq!(roster.effective(&schedule).coverage(from, to), original.clone());
        }
    }
}
