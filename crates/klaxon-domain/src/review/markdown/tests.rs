//! The postmortem of a full scripted incident, pinned.

use chrono::NaiveDate;
use expect_test::expect;

use super::*;
use crate::ids::{Audience, CustomerId, IncidentRole, Severity};
use crate::incident::Command;
use crate::review::testkit::{Script, actor, assign, declare, inc, mitigate, report, resolve};
use crate::review::{ActionItemId, ReviewCommand, timeline};

fn full() -> Script {
    let item = |n| ActionItemId::new(inc(7), n).unwrap();
    let mut s = Script::new(7, 100);
    s.cmd(0, "svc:alertmanager", report("Checkout is slow", Some("payments-api"), Some(-4)))
        .cmd(2, "alice", declare(Severity::Sev1))
        .paged(2, "ana", Some(0))
        .delivered(2, 1, "slack")
        .escalated(7, 0, Some(1))
        .paged(7, "ben", Some(1))
        .delivered(8, 2, "email")
        .ack(9, "ben", 2)
        .cmd(10, "alice", assign("bob"))
        .cmd(11, "bob", Command::AssignRole { role: IncidentRole::Scribe, person: actor("dave") })
        .noticed(11, "dave", 1)
        .delivered(11, 3, "slack")
        .cmd(
            12,
            "bob",
            Command::RecordCustomerImpact {
                customers_affected: 40,
                customers: vec![CustomerId::new("ACME Corp").unwrap(), CustomerId::new("Globex").unwrap()],
                multi_customer: true,
                summary: "Card payments fail | 3DS too".into(),
            },
        )
        .cmd(15, "bob", Command::PostUpdate { audience: Audience::Executive, text: "Rolling back".into() })
        .cmd(30, "bob", mitigate())
        .cmd(55, "bob", resolve())
        .review(
            120,
            "carol",
            ReviewCommand::WriteSummary {
                summary: "A deploy dropped the index on `orders.created_at`.\n\nCheckout queries scanned the table."
                    .into(),
            },
        )
        .review(
            121,
            "carol",
            ReviewCommand::WriteImpact { impact: "40 customers could not pay for 28 minutes.".into() },
        )
        .review(122, "carol", ReviewCommand::AddContributingFactor { factor: "Migrations are not reviewed".into() })
        .review(123, "carol", ReviewCommand::AddContributingFactor { factor: "No alert on | query time".into() })
        .review(
            124,
            "carol",
            ReviewCommand::AddActionItem { title: "Restore the index".into(), owner: None, due: None },
        )
        .review(
            125,
            "carol",
            ReviewCommand::AddActionItem { title: "Alert on p99 query time".into(), owner: None, due: None },
        )
        .review(126, "carol", ReviewCommand::AssignActionItem { item: item(1), owner: actor("dave") })
        .review(
            127,
            "carol",
            ReviewCommand::SetActionItemDue { item: item(2), due: NaiveDate::from_ymd_opt(2026, 3, 20).unwrap() },
        )
        .review(128, "carol", ReviewCommand::Publish)
        .review(200, "dave", ReviewCommand::CompleteActionItem { item: item(1) });
    s
}

#[test]
fn the_postmortem_of_a_full_incident() {
    let s = full();
    let entries = timeline(s.triples()).unwrap();
    let metrics = IncidentMetrics::compute(&s.incident_events, &s.page_events);
    let markdown = render_markdown(s.incident(), s.review.as_ref(), &entries, &metrics, &s.page_events);
    expect![[r#"
        # INC-7: Checkout is slow

        | Fact | Value |
        | --- | --- |
        | Severity | SEV1 |
        | Service | payments-api |
        | Status | resolved |
        | Commander | bob |
        | Reported | 2026-03-02 09:00:00 by svc:alertmanager via alertmanager |
        | Started | 2026-03-02 08:56:00 |
        | Declared | 2026-03-02 09:02:00 |
        | Mitigated | 2026-03-02 09:30:00: rolled back the deploy |
        | Resolved | 2026-03-02 09:55:00: fixed the query plan |
        | Closed | - |
        | Reopened | 0 times |
        | Review | published 2026-03-02 11:08:00 by carol |

        ## Summary

        A deploy dropped the index on `orders.created_at`.

        Checkout queries scanned the table.

        ## Impact

        - Customers affected: 40
        - Multi-customer: yes
        - Customers named: ACME Corp, Globex
        - Latest assessment: Card payments fail \| 3DS too

        40 customers could not pay for 28 minutes.

        ## Timeline (UTC)

        | Time | Source | Who | What |
        | --- | --- | --- | --- |
        | 2026-03-02 09:00:00 | incident | svc:alertmanager | svc:alertmanager reported INC-7 on payments-api via alertmanager: Checkout is slow |
        | 2026-03-02 09:02:00 | incident | alice | alice declared INC-7 SEV1 |
        | 2026-03-02 09:02:00 | page | klaxon-paging | paged ana (INC-7-P1, level 0, round 0): severity |
        | 2026-03-02 09:02:00 | page | klaxon-paging | delivered INC-7-P1 via slack in 1 attempt |
        | 2026-03-02 09:07:00 | page | klaxon-paging | escalated from level 0 to level 1, round 0 (INC-7-P1 unanswered) |
        | 2026-03-02 09:07:00 | page | klaxon-paging | paged ben (INC-7-P2, level 1, round 0): escalation |
        | 2026-03-02 09:08:00 | page | klaxon-paging | delivered INC-7-P2 via email in 1 attempt |
        | 2026-03-02 09:09:00 | page | ben | ben acknowledged INC-7-P2 |
        | 2026-03-02 09:10:00 | incident | alice | alice made bob incident commander |
        | 2026-03-02 09:11:00 | incident | bob | bob made dave scribe |
        | 2026-03-02 09:11:00 | page | klaxon-paging | paged dave (INC-7-P3, request 1, notice): role_assigned |
        | 2026-03-02 09:11:00 | page | klaxon-paging | delivered INC-7-P3 via slack in 1 attempt |
        | 2026-03-02 09:12:00 | incident | bob | bob recorded impact on 40 customers, multi-customer: Card payments fail \| 3DS too |
        | 2026-03-02 09:15:00 | incident | bob | bob posted an executive update: Rolling back |
        | 2026-03-02 09:30:00 | incident | bob | bob mitigated INC-7: rolled back the deploy |
        | 2026-03-02 09:55:00 | incident | bob | bob resolved INC-7: fixed the query plan |
        | 2026-03-02 09:55:00 | review | klaxon-review | klaxon-review opened the post-incident review of INC-7 |
        | 2026-03-02 11:00:00 | review | carol | carol wrote the review summary: A deploy dropped the index on `orders.created_at`.… |
        | 2026-03-02 11:01:00 | review | carol | carol wrote the impact statement: 40 customers could not pay for 28 minutes. |
        | 2026-03-02 11:02:00 | review | carol | carol added a contributing factor: Migrations are not reviewed |
        | 2026-03-02 11:03:00 | review | carol | carol added a contributing factor: No alert on \| query time |
        | 2026-03-02 11:04:00 | review | carol | carol added action item INC-7-A1: Restore the index |
        | 2026-03-02 11:05:00 | review | carol | carol added action item INC-7-A2: Alert on p99 query time |
        | 2026-03-02 11:06:00 | review | carol | carol assigned INC-7-A1 to dave |
        | 2026-03-02 11:07:00 | review | carol | carol set INC-7-A2 due on 2026-03-20 |
        | 2026-03-02 11:08:00 | review | carol | carol published the post-incident review of INC-7 |
        | 2026-03-02 12:20:00 | review | dave | dave completed INC-7-A1 |

        ## Pages

        | Page | Responder | Level | Reason | Paged | Delivery | Acknowledged |
        | --- | --- | --- | --- | --- | --- | --- |
        | INC-7-P1 | ana | level 0 | severity | 2026-03-02 09:02:00 | delivered via slack | - |
        | INC-7-P2 | ben | level 1 | escalation | 2026-03-02 09:07:00 | delivered via email | 2026-03-02 09:09:00 by ben |
        | INC-7-P3 | dave | notice | role assigned | 2026-03-02 09:11:00 | delivered via slack | - |

        ## Metrics

        | Metric | Value |
        | --- | --- |
        | Time to detect | 4m 00s |
        | Time to acknowledge | 7m 00s |
        | Time to assign | 8m 00s |
        | Time to mitigate | 28m 00s |
        | Time to resolve | 53m 00s |
        | Pages (notices aside) | 2 |
        | Escalations | 1 |
        | Accepted handoffs | 0 |
        | SLO breaches | ack 0, assign 0, update cadence 0, resolve 0 |

        ## Contributing factors

        1. Migrations are not reviewed
        2. No alert on \| query time

        ## Action items

        | Item | Title | Owner | Due | Status |
        | --- | --- | --- | --- | --- |
        | INC-7-A1 | Restore the index | dave | - | done 2026-03-02 by dave |
        | INC-7-A2 | Alert on p99 query time | - | 2026-03-20 | open |
    "#]].assert_eq(&markdown);
}

#[test]
fn a_postmortem_without_review_or_pages() {
    let mut s = Script::new(8, 1);
    s.cmd(0, "desk", report("Invoices | wrong", None, None)).cmd(3, "alice", declare(Severity::Sev3));
    s.cmd(4, "alice", Command::MarkNoise { reason: "test data".into() });
    let entries = timeline(s.triples()).unwrap();
    let metrics = IncidentMetrics::compute(&s.incident_events, &s.page_events);
    let markdown = render_markdown(s.incident(), None, &entries, &metrics, &[]);
    expect![[r#"
        # INC-8: Invoices | wrong

        | Fact | Value |
        | --- | --- |
        | Severity | SEV3 |
        | Service | - |
        | Status | declared |
        | Commander | - |
        | Reported | 2026-03-02 09:00:00 by svc:alertmanager via alertmanager |
        | Started | - |
        | Declared | 2026-03-02 09:03:00 |
        | Mitigated | - |
        | Resolved | - |
        | Closed | - |
        | Reopened | 0 times |
        | Review | not opened |
        | Noise | marked as noise: test data |

        ## Summary

        _No summary written yet._

        ## Impact

        - Customers affected: 0
        - Multi-customer: no
        - Latest assessment: -

        ## Timeline (UTC)

        | Time | Source | Who | What |
        | --- | --- | --- | --- |
        | 2026-03-02 09:00:00 | incident | desk | svc:alertmanager reported INC-8 via alertmanager: Invoices \| wrong |
        | 2026-03-02 09:03:00 | incident | alice | alice declared INC-8 SEV3 |
        | 2026-03-02 09:04:00 | incident | alice | alice marked INC-8 as noise: test data |

        ## Pages

        Nobody was paged.

        ## Metrics

        | Metric | Value |
        | --- | --- |
        | Time to detect | - |
        | Time to acknowledge | - |
        | Time to assign | - |
        | Time to mitigate | - |
        | Time to resolve | - |
        | Pages (notices aside) | 0 |
        | Escalations | 0 |
        | Accepted handoffs | 0 |
        | SLO breaches | ack 0, assign 0, update cadence 0, resolve 0 |

        ## Contributing factors

        _None recorded._

        ## Action items

        _None recorded._
    "#]]
    .assert_eq(&markdown);
}
