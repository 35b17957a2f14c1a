//! The edge coalescer's behaviour through its public API: which Worker request leads which
//! batching window, when a window's batch goes, what a window hands on to the next, and how a
//! `Retry-After`, a deadline and the subrequest limit shape a delivery.

use spool::engine::{
    BatchMode, CaptureError, Coalescer, Config, EdgeConfig, Outcome, RequestId, RetryAfter,
    Transmit, WindowId, LEADER_GRACE_MS,
};

const T0: u64 = 1_700_000_000_000;

fn coalescer(adjust: impl FnOnce(&mut EdgeConfig)) -> Coalescer {
    let mut exporter = Config::new("https://collector.example/batch/");
    exporter.api_key = "phc_test".into();
    let mut config = EdgeConfig::new(exporter);
    adjust(&mut config);
    Coalescer::new(config, 7).unwrap()
}

/// Request `n` arrives and its event (path `/n`) is ready at `now`.
fn request(c: &mut Coalescer, n: u64, now: u64) -> Option<WindowId> {
    c.arrive(RequestId(n), now);
    let properties = format!(r#"{{"path":"/{n}"}}"#);
    c.event_ready(RequestId(n), properties, now, now).unwrap()
}

/// Everything window `w` sends at `now`.
fn drain(c: &mut Coalescer, w: WindowId, now: u64) -> Vec<Transmit> {
    c.handle_timeout(w, now);
    std::iter::from_fn(|| c.poll_transmit(w, now)).collect()
}

/// The paths of a body's events, in order.
fn paths(t: &Transmit) -> Vec<String> {
    field(t, |event| &event["properties"]["path"])
}

fn uuids(t: &Transmit) -> Vec<String> {
    field(t, |event| &event["uuid"])
}

/// A string of each event of a PostHog body, in order, parsed.
fn field(t: &Transmit, get: impl Fn(&serde_json::Value) -> &serde_json::Value) -> Vec<String> {
    let body: serde_json::Value = serde_json::from_str(&t.body).expect("the body is JSON");
    let events = body["batch"].as_array().expect("a PostHog batch");
    events
        .iter()
        .map(|event| get(event).as_str().expect("a string").to_owned())
        .collect()
}

fn retry_after(seconds: u64) -> Outcome {
    Outcome::Response {
        status: 429,
        retry_after: RetryAfter::parse(&seconds.to_string()),
        body: None,
    }
}

#[test]
fn requests_within_one_window_reach_the_collector_in_one_request() {
    let mut c = coalescer(|_| {});
    let w = request(&mut c, 1, T0).expect("the first request leads");
    for n in 2..=5 {
        assert_eq!(request(&mut c, n, T0 + 100 * n), None, "request {n} joins");
    }
    let sent = drain(&mut c, w, T0 + 1000);
    assert_eq!(sent.len(), 1);
    assert_eq!(paths(&sent[0]), ["/1", "/2", "/3", "/4", "/5"]);
    assert!(c.handle_outcome(w, sent[0].id, Outcome::status(200), T0 + 1040));
    assert!(c.is_finished(w));
    let report = c.take_report(w).unwrap();
    assert_eq!((report.stats.delivered, report.subrequests), (5, 1));
}

#[test]
fn the_batch_waits_out_the_window_from_its_first_request() {
    let mut c = coalescer(|e| e.exporter.flush_interval_ms = 300);
    let w = request(&mut c, 1, T0).unwrap();
    assert_eq!(c.poll_timeout(w), Some(T0 + 300));
    assert!(
        drain(&mut c, w, T0 + 299).is_empty(),
        "nothing before the window ends"
    );
    assert_eq!(drain(&mut c, w, T0 + 300).len(), 1);
}

#[test]
fn a_request_after_the_window_went_leads_the_next_window() {
    let mut c = coalescer(|_| {});
    let first = request(&mut c, 1, T0).unwrap();
    drain(&mut c, first, T0 + 1000);
    let next = request(&mut c, 2, T0 + 1001).expect("no window forming: request 2 leads");
    assert_ne!(first, next);
    assert_eq!(paths(&drain(&mut c, next, T0 + 2001)[0]), ["/2"]);
}

#[test]
fn in_auto_and_off_mode_each_event_goes_at_once_from_its_own_request() {
    for mode in [BatchMode::Auto, BatchMode::Off] {
        let mut c = coalescer(|e| e.exporter.batch_mode = mode);
        for n in 1..=3 {
            let w = request(&mut c, n, T0).expect("every request leads its own window");
            assert_eq!(c.poll_timeout(w), Some(T0), "no window to wait out");
            let sent = drain(&mut c, w, T0);
            assert_eq!(sent.len(), 1, "{mode:?}");
            assert_eq!(paths(&sent[0]), [format!("/{n}")]);
        }
    }
}

#[test]
fn a_window_of_1250_events_goes_in_batches_of_at_most_500() {
    let mut c = coalescer(|_| {});
    let w = request(&mut c, 0, T0).unwrap();
    for n in 1..1250 {
        request(&mut c, n, T0 + 1);
    }
    let sent = drain(&mut c, w, T0 + 1000);
    assert_eq!(
        sent.iter().map(|t| t.events).collect::<Vec<_>>(),
        [500, 500, 250]
    );
}

#[test]
fn a_leader_that_never_takes_its_window_is_replaced_after_its_grace_and_no_event_is_lost() {
    let mut c = coalescer(|e| e.exporter.flush_interval_ms = 100);
    let lost = request(&mut c, 1, T0).unwrap();
    // Its waitUntil was cancelled: it never wakes. Within its window and grace, it keeps
    // the window.
    assert_eq!(request(&mut c, 2, T0 + 100 + LEADER_GRACE_MS), None);
    let next = request(&mut c, 3, T0 + 100 + LEADER_GRACE_MS + 1).expect("request 3 leads");
    let sent = drain(&mut c, next, T0 + 200 + LEADER_GRACE_MS + 1);
    assert_eq!(paths(&sent[0]), ["/1", "/2", "/3"]);
    assert_eq!(c.stats().replaced_leaders, 1);
    // Should the first leader wake after all, there is nothing left for it to take.
    assert!(drain(&mut c, lost, T0 + 200 + LEADER_GRACE_MS + 2).is_empty());
    assert!(c.is_finished(lost));
}

#[test]
fn a_leader_told_cancelled_before_its_window_leaves_the_events_to_the_next_request() {
    let mut c = coalescer(|_| {});
    request(&mut c, 1, T0).unwrap();
    c.wait_until_cancelled(RequestId(1), T0 + 10);
    let next = request(&mut c, 2, T0 + 20).expect("request 2 leads at once");
    assert_eq!(paths(&drain(&mut c, next, T0 + 1020)[0]), ["/1", "/2"]);
}

#[test]
fn events_of_a_leader_cancelled_mid_delivery_go_to_the_next_leader_with_their_uuids() {
    let mut c = coalescer(|_| {});
    let w = request(&mut c, 1, T0).unwrap();
    request(&mut c, 2, T0 + 1);
    let first = drain(&mut c, w, T0 + 1000).remove(0);
    // The runtime cancels the waitUntil with the request in flight: unacknowledged.
    c.wait_until_cancelled(RequestId(1), T0 + 1100);
    assert_eq!(c.waiting_events(), 2);
    let next = request(&mut c, 3, T0 + 1200).unwrap();
    let resent = drain(&mut c, next, T0 + 2200).remove(0);
    assert_eq!(paths(&resent), ["/1", "/2", "/3"]);
    assert_eq!(
        uuids(&resent)[..2],
        uuids(&first)[..],
        "the same events, resent"
    );
    assert!(c.handle_outcome(next, resent.id, Outcome::status(200), T0 + 2300));
    assert_eq!(c.take_report(next).unwrap().stats.delivered, 3);
}

#[test]
fn a_window_never_makes_more_requests_than_its_leader_may_and_hands_the_rest_on() {
    let mut c = coalescer(|e| {
        e.subrequest_limit = 3;
        e.exporter.max_batch_events = 1;
        e.exporter.initial_backoff_ms = 10;
        e.exporter.max_backoff_ms = 10;
    });
    let w = request(&mut c, 1, T0).unwrap();
    for n in 2..=5 {
        request(&mut c, n, T0);
    }
    let sent = drain(&mut c, w, T0 + 1000);
    assert_eq!(
        sent.len(),
        3,
        "3 of the 5 batches: the leader's subrequests"
    );
    for t in &sent {
        c.handle_outcome(w, t.id, Outcome::status(503), T0 + 1010);
    }
    assert!(drain(&mut c, w, T0 + 2000).is_empty(), "no retry either");
    assert!(c.is_finished(w));
    let report = c.take_report(w).unwrap();
    assert_eq!((report.subrequests, report.handed_back), (3, 3));
    assert_eq!(report.stats.dropped.total(), 0, "not dropped: handed on");
    // The window took no more than its subrequests could carry: 2 never left the list.
    assert_eq!(c.waiting_events(), 5);
    let next = request(&mut c, 6, T0 + 2000).expect("the next request leads");
    let resent = drain(&mut c, next, T0 + 3000);
    let paths: Vec<_> = resent.iter().flat_map(paths).collect();
    assert_eq!(paths, ["/1", "/2", "/3"], "the oldest first");
    assert_eq!(uuids(&resent[0]), uuids(&sent[0]), "the same event, resent");
}

#[test]
fn a_retry_after_answered_to_one_window_holds_back_the_next_window() {
    let mut c = coalescer(|_| {});
    let a = request(&mut c, 1, T0).unwrap();
    let t = drain(&mut c, a, T0 + 1000).remove(0);
    c.handle_outcome(a, t.id, retry_after(10), T0 + 1050);
    let until = T0 + 11_050;
    assert_eq!(c.hold_until(), until);
    let b = request(&mut c, 2, T0 + 2000).unwrap();
    assert!(
        drain(&mut c, b, T0 + 3000).is_empty(),
        "B's batch waits for A's Retry-After"
    );
    assert_eq!(c.poll_timeout(b), Some(until));
    assert!(drain(&mut c, b, until - 1).is_empty());
    assert_eq!(paths(&drain(&mut c, b, until)[0]), ["/2"]);
    assert_eq!(
        paths(&drain(&mut c, a, until)[0]),
        ["/1"],
        "A's retry waits too"
    );
}

#[test]
fn a_retry_after_past_the_deadline_abandons_the_window_at_once_and_counts_it() {
    let mut c = coalescer(|e| e.deadline_ms = 3000);
    let w = request(&mut c, 1, T0).unwrap();
    let t = drain(&mut c, w, T0 + 1000).remove(0);
    c.handle_outcome(w, t.id, retry_after(60), T0 + 1100);
    assert!(c.is_finished(w), "at once, not at the deadline");
    let report = c.take_report(w).unwrap();
    assert_eq!(report.stats.dropped.shutdown, 1);
    assert_eq!(report.stats.last_error.as_deref(), Some("HTTP 429"));
}

#[test]
fn at_the_deadline_the_request_in_flight_is_aborted_and_its_events_counted_abandoned() {
    let mut c = coalescer(|e| {
        e.deadline_ms = 1000;
        e.exporter.request_timeout_ms = 5000;
    });
    let w = request(&mut c, 1, T0).unwrap();
    let t = drain(&mut c, w, T0 + 1000).remove(0);
    assert_eq!(c.poll_timeout(w), Some(T0 + 2000));
    c.handle_timeout(w, T0 + 2000);
    assert_eq!(c.poll_abort(w), Some(t.id));
    assert!(c.is_finished(w));
    assert_eq!(c.take_report(w).unwrap().stats.dropped.shutdown, 1);
}

#[test]
fn a_delivery_silent_past_its_deadline_and_grace_hands_its_events_to_the_next_leader() {
    let mut c = coalescer(|e| e.deadline_ms = 1000);
    let w = request(&mut c, 1, T0).unwrap();
    drain(&mut c, w, T0 + 1000);
    // The leader is gone without a word. Until its deadline and grace are past, its
    // events stay its own.
    let silent_until = T0 + 2000 + LEADER_GRACE_MS;
    let next = request(&mut c, 2, silent_until).expect("request 2 leads the next window");
    assert_eq!(c.waiting_events(), 1);
    c.arrive(RequestId(3), silent_until + 1);
    assert_eq!(c.stats().cancelled_deliveries, 1);
    let sent = drain(&mut c, next, silent_until + 1000);
    assert_eq!(
        paths(&sent[0]),
        ["/1", "/2"],
        "request 1's event goes with request 2's"
    );
}

#[test]
fn the_isolates_events_share_one_distinct_id_across_windows() {
    let mut c = coalescer(|_| {});
    let a = request(&mut c, 1, T0).unwrap();
    let first = drain(&mut c, a, T0 + 1000).remove(0);
    let b = request(&mut c, 2, T0 + 1001).unwrap();
    let second = drain(&mut c, b, T0 + 2001).remove(0);
    let ids = |t: &Transmit| field(t, |event| &event["distinct_id"]);
    assert_eq!(ids(&first), ids(&second));
    assert_eq!(Some(ids(&first)[0].as_str()), c.distinct_id());
}

#[test]
fn a_full_waiting_list_refuses_the_event_and_counts_it() {
    let mut c = coalescer(|e| e.exporter.max_queue_events = 2);
    request(&mut c, 1, T0);
    request(&mut c, 2, T0);
    let refused = c.event_ready(RequestId(3), "{}".into(), T0, T0);
    assert_eq!(refused, Err(CaptureError::QueueFull));
    assert_eq!(c.stats().dropped_waiting_full, 1);
}

#[test]
fn an_edge_option_out_of_its_bounds_is_refused_naming_it() {
    let refused = |adjust: fn(&mut EdgeConfig)| {
        let mut exporter = Config::new("https://collector.example/batch/");
        exporter.api_key = "phc_test".into();
        let mut config = EdgeConfig::new(exporter);
        adjust(&mut config);
        let e = Coalescer::new(config, 7).expect_err("out of bounds");
        (e.field, e.message)
    };
    let deadline = |ms| {
        (
            ("deadlineMs"),
            format!("must be from 100 to 30000 (got {ms})"),
        )
    };
    assert_eq!(refused(|e| e.deadline_ms = 50), deadline(50));
    assert_eq!(refused(|e| e.deadline_ms = 60_000), deadline(60_000));
    assert_eq!(
        refused(|e| e.deadline_ms = 29_500),
        (
            "deadlineMs",
            "must leave the batching window (flushIntervalMs 1000) within waitUntil's 30000 ms: \
             at most 29000 (got 29500)"
                .into()
        )
    );
    let subrequests = |n| {
        (
            "subrequestLimit",
            format!("must be from 1 to 1000 (got {n})"),
        )
    };
    assert_eq!(refused(|e| e.subrequest_limit = 0), subrequests(0));
    assert_eq!(refused(|e| e.subrequest_limit = 1001), subrequests(1001));
    assert_eq!(
        refused(|e| e.event_name.clear()),
        ("eventName", "must not be empty".into())
    );
    assert_eq!(refused(|e| e.exporter.max_attempts = 0).0, "maxAttempts");
    // No window in auto mode: the whole of waitUntil's 30 s may go to the delivery.
    let mut exporter = Config::new("https://collector.example/batch/");
    exporter.api_key = "phc_test".into();
    exporter.batch_mode = BatchMode::Auto;
    let mut config = EdgeConfig::new(exporter);
    config.deadline_ms = 30_000;
    config.subrequest_limit = 1000;
    assert!(Coalescer::new(config, 7).is_ok());
}
