//! The checker on small hand-made histories: a consistent one passes, and each kind of bad
//! history (a lost acknowledgement, a duplicate, a gap, a false conflict, …) is caught.

use super::*;
use crate::history::{GroupDelivery, ReadResult, SessionEnd, StreamReadFrom, SubscriptionSession};

fn id(number: u128) -> Uuid {
    Uuid::from_u128(number)
}

fn seen(number: u128, stream: &str, revision: u64, position: u64) -> Seen {
    Seen {
        id: id(number),
        stream: stream.to_owned(),
        revision,
        position,
    }
}

fn append(
    client: u32,
    times: (Micros, Micros),
    stream: &str,
    expected: Expected,
    ids: &[u128],
    outcome: AppendOutcome,
) -> Operation {
    Operation {
        client,
        invoked_at: times.0,
        completed_at: times.1,
        action: Action::Append {
            stream: stream.to_owned(),
            expected,
            event_ids: ids.iter().map(|number| id(*number)).collect(),
            outcome,
        },
    }
}

fn acknowledged(last_revision: u64, position: u64) -> AppendOutcome {
    AppendOutcome::Acknowledged {
        last_revision,
        position,
    }
}

fn read_stream(times: (Micros, Micros), stream: &str, from: u64, events: Vec<Seen>) -> Operation {
    Operation {
        client: 9,
        invoked_at: times.0,
        completed_at: times.1,
        action: Action::ReadStream {
            stream: stream.to_owned(),
            from: StreamReadFrom::Revision(from),
            max_count: 100,
            result: ReadResult::Events {
                events,
                reached_end: true,
            },
        },
    }
}

/// Two clients on stream `a`, one on `b`: events 1,2 (one batch) then 3 on `a`, 4 on `b`.
fn final_order() -> Vec<Seen> {
    vec![
        seen(1, "a", 0, 100),
        seen(2, "a", 1, 110),
        seen(4, "b", 0, 120),
        seen(3, "a", 2, 130),
    ]
}

fn consistent_history() -> History {
    History {
        operations: vec![
            append(
                1,
                (0, 10),
                "a",
                Expected::NoStream,
                &[1, 2],
                acknowledged(1, 110),
            ),
            // Client 2 expected no stream too, and lost the race.
            append(
                2,
                (5, 12),
                "a",
                Expected::NoStream,
                &[5],
                AppendOutcome::WrongExpected { current: Some(1) },
            ),
            append(2, (13, 20), "b", Expected::Any, &[4], acknowledged(0, 120)),
            append(
                1,
                (21, 30),
                "a",
                Expected::Exact(1),
                &[3],
                acknowledged(2, 130),
            ),
            // Lost in a kill: never written.
            append(
                2,
                (25, 40),
                "a",
                Expected::Exact(2),
                &[6],
                AppendOutcome::Unknown {
                    error: "connection reset".to_owned(),
                },
            ),
            read_stream(
                (31, 35),
                "a",
                1,
                vec![seen(2, "a", 1, 110), seen(3, "a", 2, 130)],
            ),
            Operation {
                client: 3,
                invoked_at: 31,
                completed_at: 36,
                action: Action::ReadAll {
                    from_position: Some(110),
                    max_count: 10,
                    result: ReadResult::Events {
                        events: final_order()[1..].to_vec(),
                        reached_end: true,
                    },
                },
            },
        ],
        sessions: vec![
            SubscriptionSession {
                subscriber: 1,
                after_position: None,
                started_at: 0,
                deliveries: vec![(11, seen(1, "a", 0, 100)), (11, seen(2, "a", 1, 110))],
                end: SessionEnd::Dropped {
                    error: "killed".to_owned(),
                },
            },
            SubscriptionSession {
                subscriber: 1,
                after_position: Some(110),
                started_at: 45,
                deliveries: vec![(46, seen(4, "b", 0, 120)), (46, seen(3, "a", 2, 130))],
                end: SessionEnd::CaughtUp,
            },
        ],
        // Event 2 again after a kill, before its ack reached a checkpoint.
        group_deliveries: [1, 2, 2, 4, 3]
            .iter()
            .map(|number| {
                let event = final_order()
                    .into_iter()
                    .find(|event| event.id == id(*number))
                    .expect("an event of the final order");
                GroupDelivery {
                    consumer: 0,
                    at: 45,
                    event,
                }
            })
            .collect(),
        group_caught_up: true,
    }
}

fn rules(report: &Report) -> Vec<Rule> {
    report
        .violations
        .iter()
        .map(|violation| violation.rule)
        .collect()
}

fn assert_caught(history: &History, order: &[Seen], rule: Rule) {
    let report = check(history, order);
    assert!(
        rules(&report).contains(&rule),
        "expected a {rule:?} violation, got {:?}",
        report.violations
    );
}

#[test]
fn a_consistent_history_passes_and_is_counted() {
    let report = check(&consistent_history(), &final_order());
    assert!(report.is_clean(), "{:?}", report.violations);
    assert_eq!(
        report.figures,
        Figures {
            events_in_final_order: 4,
            appends_acknowledged: 3,
            events_acknowledged: 4,
            appends_refused: 1,
            appends_unanswered: 1,
            appends_unanswered_applied: 0,
            reads_checked: 2,
            sessions_checked: 2,
            deliveries_checked: 4,
            group_deliveries: 5,
            group_redeliveries: 1,
        }
    );
}

#[test]
fn a_lost_acknowledged_event_is_caught() {
    let mut order = final_order();
    order.pop();
    assert_caught(&consistent_history(), &order, Rule::AcknowledgedLost);
}

#[test]
fn an_event_appearing_twice_is_caught() {
    let mut order = final_order();
    order.push(seen(3, "a", 3, 140));
    assert_caught(&consistent_history(), &order, Rule::FinalOrder);
}

#[test]
fn two_winners_of_one_revision_are_caught() {
    let mut history = consistent_history();
    history.operations.push(append(
        4,
        (50, 60),
        "b",
        Expected::Any,
        &[7],
        acknowledged(0, 140),
    ));
    let mut order = final_order();
    order.push(seen(7, "b", 0, 140));
    assert_caught(&history, &order, Rule::FinalOrder);
}

#[test]
fn an_acknowledged_event_at_another_revision_is_caught() {
    let mut history = consistent_history();
    history.operations[3] = append(1, (21, 30), "a", Expected::Any, &[3], acknowledged(3, 130));
    assert_caught(&history, &final_order(), Rule::AcknowledgedMisplaced);
}

#[test]
fn an_ignored_expected_revision_is_caught() {
    let mut history = consistent_history();
    history.operations[3] = append(
        1,
        (21, 30),
        "a",
        Expected::Exact(0),
        &[3],
        acknowledged(2, 130),
    );
    assert_caught(&history, &final_order(), Rule::ExpectedRevisionIgnored);
}

#[test]
fn a_refusal_while_the_expected_revision_held_is_caught() {
    let mut history = consistent_history();
    // Sent after revision 1 was acknowledged and answered before revision 2 was sent.
    history.operations.push(append(
        3,
        (15, 18),
        "a",
        Expected::Exact(1),
        &[8],
        AppendOutcome::WrongExpected { current: Some(2) },
    ));
    assert_caught(&history, &final_order(), Rule::FalseConflict);
}

#[test]
fn a_refused_append_that_was_written_is_caught() {
    let mut history = consistent_history();
    history.operations[1] = append(
        2,
        (5, 12),
        "a",
        Expected::NoStream,
        &[3],
        AppendOutcome::WrongExpected { current: Some(1) },
    );
    history.operations[3] = append(
        1,
        (21, 30),
        "a",
        Expected::Exact(1),
        &[9],
        acknowledged(2, 130),
    );
    assert_caught(&history, &final_order(), Rule::RefusedButWritten);
}

#[test]
fn half_of_an_unanswered_batch_is_caught() {
    let mut history = consistent_history();
    history.operations[4] = append(
        2,
        (25, 40),
        "a",
        Expected::Any,
        &[6, 10],
        AppendOutcome::Unknown {
            error: "connection reset".to_owned(),
        },
    );
    let mut order = final_order();
    order.push(seen(6, "a", 3, 140));
    assert_caught(&history, &order, Rule::BatchSplit);
}

#[test]
fn an_event_nobody_sent_is_caught() {
    let mut order = final_order();
    order.push(seen(99, "b", 1, 140));
    assert_caught(&consistent_history(), &order, Rule::EventFromNowhere);
}

#[test]
fn an_append_ordered_before_one_acknowledged_earlier_is_caught() {
    let mut history = consistent_history();
    // Event 4 (position 120) was sent after event 3 (position 130) was acknowledged.
    history.operations[2] = append(2, (31, 40), "b", Expected::Any, &[4], acknowledged(0, 120));
    assert_caught(&history, &final_order(), Rule::RealTimeOrder);
}

#[test]
fn a_read_missing_an_acknowledged_append_is_caught() {
    let mut history = consistent_history();
    history
        .operations
        .push(read_stream((31, 35), "a", 1, vec![seen(2, "a", 1, 110)]));
    assert_caught(&history, &final_order(), Rule::StaleRead);
}

#[test]
fn a_read_going_backwards_in_time_is_caught() {
    let mut history = consistent_history();
    // Sees event 6 of the unanswered append, which never made it: not in the final order.
    history
        .operations
        .push(read_stream((41, 42), "a", 3, vec![seen(6, "a", 3, 140)]));
    assert_caught(&history, &final_order(), Rule::NotInOrder);
    // A read that saw revision 2 before another read, sent later, saw only up to 1.
    let mut history = consistent_history();
    history.operations[3] = append(
        1,
        (21, 50),
        "a",
        Expected::Exact(1),
        &[3],
        AppendOutcome::Unknown {
            error: "timeout".to_owned(),
        },
    );
    history.operations[5] = read_stream((22, 23), "a", 2, vec![seen(3, "a", 2, 130)]);
    history
        .operations
        .push(read_stream((24, 25), "a", 1, vec![seen(2, "a", 1, 110)]));
    assert_caught(&history, &final_order(), Rule::StaleRead);
}

#[test]
fn a_read_returning_an_event_before_it_was_sent_is_caught() {
    let mut history = consistent_history();
    history
        .operations
        .push(read_stream((1, 2), "a", 2, vec![seen(3, "a", 2, 130)]));
    assert_caught(&history, &final_order(), Rule::FromTheFuture);
}

#[test]
fn a_subscription_gap_or_duplicate_is_caught() {
    let mut history = consistent_history();
    history.sessions[1].deliveries.remove(0);
    assert_caught(&history, &final_order(), Rule::NotInOrder);

    let mut history = consistent_history();
    history.sessions[0]
        .deliveries
        .push((12, seen(2, "a", 1, 110)));
    let report = check(&history, &final_order());
    assert_eq!(rules(&report), [Rule::NotInOrder]);
    assert!(
        report.violations[0].detail.contains("a duplicate"),
        "{report:?}"
    );
}

#[test]
fn a_subscription_that_caught_up_short_is_caught() {
    let mut history = consistent_history();
    history.sessions[1].deliveries.pop();
    assert_caught(&history, &final_order(), Rule::SubscriptionIncomplete);
}

#[test]
fn an_event_the_group_never_delivered_is_caught() {
    let mut history = consistent_history();
    history
        .group_deliveries
        .retain(|delivery| delivery.event.id != id(4));
    assert_caught(&history, &final_order(), Rule::GroupLost);
    // Before the consumers caught up, a missing delivery is no violation.
    history.group_caught_up = false;
    assert!(check(&history, &final_order()).is_clean());
}

#[test]
fn a_group_delivering_an_event_not_in_the_final_order_is_caught() {
    let mut history = consistent_history();
    history.group_deliveries[0].event.revision = 7;
    assert_caught(&history, &final_order(), Rule::NotInOrder);
}

/// The consistent history cut after its first three operations (all answered by 20 µs, the
/// rest sent from 21 µs on), with the first three events of the final order: the soak's
/// phases between kills.
fn first_phase() -> (History, Vec<Seen>) {
    let history = consistent_history();
    let phase = History {
        operations: history.operations[..3].to_vec(),
        sessions: history.sessions[..1].to_vec(),
        group_deliveries: Vec::new(),
        group_caught_up: false,
    };
    (phase, final_order()[..3].to_vec())
}

/// `history` and `order` checked in two steps: the first phase, then what followed.
fn check_in_two_steps(history: &History, order: &[Seen]) -> (Report, Report) {
    let (phase, prefix) = first_phase();
    let (first, checked) = check_since(&phase, &prefix, Checked::default());
    assert_eq!(checked.events(), prefix.len());
    let (second, _) = check_since(history, order, checked);
    (first, second)
}

#[test]
fn checking_in_two_steps_passes_and_counts_what_checking_at_once_does() {
    let history = consistent_history();
    let (first, second) = check_in_two_steps(&history, &final_order());
    assert!(first.is_clean(), "{:?}", first.violations);
    assert!(second.is_clean(), "{:?}", second.violations);
    assert_eq!(second.figures, check(&history, &final_order()).figures);
}

#[test]
fn a_read_missing_an_append_acknowledged_in_an_earlier_step_is_caught() {
    let mut history = consistent_history();
    // Stream `b` was acknowledged at revision 0 by 20 µs; this read found nothing there.
    history.operations[5] = read_stream((31, 35), "b", 0, Vec::new());
    let (first, second) = check_in_two_steps(&history, &final_order());
    assert!(first.is_clean(), "{:?}", first.violations);
    assert!(rules(&second).contains(&Rule::StaleRead), "{:?}", second);
}

#[test]
fn an_append_refused_in_an_earlier_step_and_written_later_is_caught() {
    let history = consistent_history();
    let mut order = final_order();
    order.push(seen(5, "a", 3, 140));
    let (first, second) = check_in_two_steps(&history, &order);
    assert!(first.is_clean(), "{:?}", first.violations);
    assert!(
        rules(&second).contains(&Rule::RefusedButWritten),
        "{:?}",
        second
    );
}

#[test]
fn an_append_acknowledged_in_an_earlier_step_and_written_again_later_is_caught() {
    let history = consistent_history();
    let mut order = final_order();
    // Event 4 (acknowledged at `b`@0 in the first step) again, after everything.
    order.push(seen(4, "b", 1, 140));
    let (_, second) = check_in_two_steps(&history, &order);
    assert!(rules(&second).contains(&Rule::FinalOrder), "{:?}", second);
}
