//! Engine behaviour as a user of the exporter would notice it.

use super::*;

const T0: u64 = 1_700_000_000_000;

fn config() -> Config {
    let mut c = Config::new("https://collector.example/batch/");
    c.api_key = "phc_test".into();
    c
}

fn engine(c: Config) -> Engine {
    let mut e = Engine::new(c, 1).expect("valid config");
    e.report_settlements(true);
    e
}

fn capture(e: &mut Engine, name: &str, now: u64) -> Uuid {
    e.capture(EventInput::new(name), now).expect("captured")
}

fn drain(e: &mut Engine, now: u64) -> Vec<Transmit> {
    std::iter::from_fn(|| e.poll_transmit(now)).collect()
}

fn notices(e: &mut Engine) -> Vec<Notice> {
    std::iter::from_fn(|| e.poll_notice()).collect()
}

/// The flush completions among the notices.
fn flush_reports(e: &mut Engine) -> Vec<FlushReport> {
    notices(e)
        .into_iter()
        .filter_map(|n| match n {
            Notice::FlushComplete(r) => Some(r),
            _ => None,
        })
        .collect()
}

fn sent_at(body: &str) -> &str {
    let i = body.rfind("\"sent_at\":\"").expect("sent_at") + 11;
    &body[i..i + 24]
}

#[test]
fn an_event_lingers_for_the_flush_interval_then_goes() {
    let mut e = engine(config());
    capture(&mut e, "a", T0);
    assert!(drain(&mut e, T0 + 999).is_empty());
    assert_eq!(e.poll_timeout(), Some(T0 + 1000));
    let sent = drain(&mut e, T0 + 1000);
    assert_eq!(sent.len(), 1);
    assert_eq!(sent[0].events, 1);
    assert!(!sent[0].keepalive);
}

#[test]
fn a_full_batch_goes_at_once_without_waiting_for_the_timer() {
    let mut c = config();
    c.max_batch_events = 10;
    let mut e = engine(c);
    for i in 0..25 {
        capture(&mut e, &format!("e{i}"), T0);
    }
    let sent = drain(&mut e, T0);
    assert_eq!(sent.iter().map(|t| t.events).collect::<Vec<_>>(), [10, 10]);
    assert_eq!(e.stats().queued, 5);
}

#[test]
fn batches_respect_max_batch_bytes() {
    let mut c = config();
    c.max_batch_bytes = 2_000;
    c.max_in_flight = 64;
    let mut e = engine(c);
    let props = format!("{{\"pad\":\"{}\"}}", "x".repeat(300));
    for _ in 0..20 {
        e.capture(EventInput::new("big").properties(&props), T0)
            .unwrap();
    }
    e.flush(T0);
    let sent = drain(&mut e, T0);
    assert!(
        sent.iter().all(|t| t.body.len() <= 2_000),
        "{:?}",
        sent.iter().map(|t| t.body.len()).collect::<Vec<_>>()
    );
    assert_eq!(sent.iter().map(|t| t.events).sum::<usize>(), 20);
}

#[test]
fn the_body_carries_the_capture_timestamp_and_the_send_time_as_sent_at() {
    let mut e = engine(config());
    let uuid = e
        .capture(
            EventInput::new("signup")
                .properties(r#"{"plan":"pro"}"#)
                .distinct_id("u7"),
            T0,
        )
        .unwrap();
    let t = drain(&mut e, T0 + 1500).remove(0);
    assert_eq!(
        t.body,
        format!(
            r#"{{"api_key":"phc_test","batch":[{{"event":"signup","distinct_id":"u7","properties":{{"plan":"pro"}},"timestamp":"2023-11-14T22:13:20.000Z","uuid":"{uuid}"}}],"sent_at":"2023-11-14T22:13:21.500Z"}}"#
        )
    );
}

#[test]
fn a_caller_supplied_timestamp_and_uuid_are_kept() {
    let mut e = engine(config());
    let given = "01890a5d-ac96-774b-bcce-b302099a8057";
    let uuid = e
        .capture(EventInput::new("x").uuid(given).timestamp_ms(T0 - 5), T0)
        .unwrap();
    assert_eq!(uuid.to_string(), given);
    let body = drain(&mut e, T0 + 1000).remove(0).body;
    assert!(body.contains(given));
    assert!(body.contains("\"timestamp\":\"2023-11-14T22:13:19.995Z\""));
}

#[test]
fn events_without_a_distinct_id_share_the_exporters_own() {
    let mut e = engine(config());
    let id = e.distinct_id().to_string();
    assert_eq!(id.len(), 36);
    capture(&mut e, "x", T0);
    assert!(drain(&mut e, T0 + 1000)[0]
        .body
        .contains(&format!("\"distinct_id\":\"{id}\"")));
}

#[test]
fn capture_json_encodes_as_capture_does_without_checking_the_json_again() {
    let mut checked = engine(config());
    let mut trusted = engine(config());
    let event = EventInput::new("x")
        .properties(" {\"a\":[1,{\"b\":null}]} ")
        .uuid("0190a3c1-7a2b-7c3d-8e4f-5a6b7c8d9e0f");
    checked.capture(event, T0).unwrap();
    trusted.capture_json(event, T0).unwrap();
    let body = |e: &mut Engine| drain(e, T0 + 1000).remove(0).body;
    assert_eq!(body(&mut checked), body(&mut trusted));
    // What capture refuses, capture_json takes as given: the caller vouches for it.
    let broken = EventInput::new("x").properties("{\"a\":");
    assert!(checked.capture(broken, T0).is_err());
    assert!(trusted.capture_json(broken, T0).is_ok());
    // Everything else is checked the same.
    assert_eq!(
        trusted.capture_json(EventInput::new(""), T0),
        Err(CaptureError::EmptyName)
    );
}

#[test]
fn malformed_events_are_refused_and_the_exporter_keeps_working() {
    let mut e = engine(config());
    assert_eq!(
        e.capture(EventInput::new(""), T0),
        Err(CaptureError::EmptyName)
    );
    assert!(matches!(
        e.capture(EventInput::new("x").properties("[1]"), T0),
        Err(CaptureError::InvalidProperties(_))
    ));
    assert_eq!(
        e.capture(EventInput::new("x").uuid("nope"), T0),
        Err(CaptureError::InvalidUuid)
    );
    assert!(matches!(
        e.capture(EventInput::new("x").timestamp_ms(u64::MAX), T0),
        Err(CaptureError::InvalidTimestamp(_))
    ));
    capture(&mut e, "fine", T0);
    assert_eq!(e.stats().queued, 1);
    assert_eq!(e.stats().dropped.total(), 0);
}

#[test]
fn an_event_larger_than_a_batch_is_refused_and_counted_too_large() {
    let mut c = config();
    c.max_batch_bytes = 1_000;
    let mut e = engine(c);
    let props = format!("{{\"pad\":\"{}\"}}", "x".repeat(1_000));
    let err = e
        .capture(EventInput::new("big").properties(&props), T0)
        .unwrap_err();
    assert!(matches!(err, CaptureError::TooLarge { max: 1_000, .. }));
    assert!(err.to_string().contains("maxBatchBytes is 1000"), "{err}");
    assert_eq!(e.stats().dropped.too_large, 1);
    assert_eq!(e.stats().queued, 0);
}

#[test]
fn a_full_queue_drops_new_events_and_warns_once_per_episode() {
    let mut c = config();
    c.max_queue_events = 3;
    let mut e = engine(c);
    for _ in 0..3 {
        capture(&mut e, "x", T0);
    }
    for _ in 0..5 {
        assert_eq!(
            e.capture(EventInput::new("over"), T0),
            Err(CaptureError::QueueFull)
        );
    }
    assert_eq!(e.stats().dropped.queue_full, 5);
    let warnings = |e: &mut Engine| {
        notices(e)
            .into_iter()
            .filter(|n| matches!(n, Notice::QueueOverflow { .. }))
            .count()
    };
    assert_eq!(warnings(&mut e), 1);
    // Drain the queue: the warning re-arms.
    e.flush(T0);
    let t = drain(&mut e, T0).remove(0);
    e.handle_outcome(t.id, Outcome::status(200), T0 + 10);
    for _ in 0..4 {
        let _ = e.capture(EventInput::new("again"), T0 + 20);
    }
    assert_eq!(warnings(&mut e), 1);
}

#[test]
fn the_queue_bound_counts_bytes_too() {
    let mut c = config();
    c.max_queue_bytes = 1024;
    let mut e = engine(c);
    let props = format!("{{\"pad\":\"{}\"}}", "x".repeat(300));
    let ok = (0..10)
        .filter(|_| {
            e.capture(EventInput::new("x").properties(&props), T0)
                .is_ok()
        })
        .count();
    assert_eq!(ok, 2);
    assert!(e.held_bytes() <= 1024);
    assert_eq!(e.stats().dropped.queue_full, 8);
}

#[test]
fn auto_mode_sends_at_once_when_idle_and_accumulates_while_busy() {
    let mut c = config();
    c.batch_mode = BatchMode::Auto;
    c.max_in_flight = 1;
    let mut e = engine(c);
    capture(&mut e, "first", T0);
    let first = drain(&mut e, T0);
    assert_eq!(first.len(), 1);
    for _ in 0..5 {
        capture(&mut e, "later", T0 + 1);
    }
    assert!(
        drain(&mut e, T0 + 2).is_empty(),
        "accumulates while a request is in flight"
    );
    assert_eq!(
        e.poll_timeout(),
        Some(T0 + 10_000),
        "only the request timeout is armed"
    );
    e.handle_outcome(first[0].id, Outcome::status(200), T0 + 50);
    let second = drain(&mut e, T0 + 50);
    assert_eq!(second.iter().map(|t| t.events).collect::<Vec<_>>(), [5]);
}

#[test]
fn off_mode_sends_one_event_per_request() {
    let mut c = config();
    c.batch_mode = BatchMode::Off;
    let mut e = engine(c);
    for _ in 0..3 {
        capture(&mut e, "x", T0);
    }
    let sent = drain(&mut e, T0);
    assert_eq!(sent.iter().map(|t| t.events).collect::<Vec<_>>(), [1, 1, 1]);
}

#[test]
fn no_more_than_max_in_flight_requests_and_a_slow_one_holds_only_its_batch() {
    let mut c = config();
    c.max_batch_events = 1;
    c.max_in_flight = 2;
    let mut e = engine(c);
    for _ in 0..5 {
        capture(&mut e, "x", T0);
    }
    let sent = drain(&mut e, T0);
    assert_eq!(sent.len(), 2);
    // The second answers, the first stays slow: the next goes.
    e.handle_outcome(sent[1].id, Outcome::status(200), T0 + 10);
    let next = drain(&mut e, T0 + 10);
    assert_eq!(next.len(), 1);
    assert_eq!(e.stats().in_flight_requests, 2);
}

#[test]
fn a_503_is_retried_after_jittered_backoff_with_the_same_uuids_and_a_new_sent_at() {
    let mut e = engine(config());
    let uuid = capture(&mut e, "x", T0);
    let first = drain(&mut e, T0 + 1000).remove(0);
    e.handle_outcome(first.id, Outcome::status(503), T0 + 1100);
    let wake = e.poll_timeout().unwrap();
    assert!(
        (T0 + 1100..=T0 + 2100).contains(&wake),
        "backoff within the first ceiling"
    );
    e.handle_timeout(wake);
    let retry = drain(&mut e, wake).remove(0);
    assert_eq!(retry.attempt, 2);
    assert_eq!(retry.batch, first.batch);
    assert_ne!(retry.id, first.id);
    assert!(retry.body.contains(&uuid.to_string()));
    assert_ne!(sent_at(&retry.body), sent_at(&first.body));
    e.handle_outcome(retry.id, Outcome::status(200), wake + 5);
    let s = e.stats();
    assert_eq!((s.delivered, s.retried, s.requests), (1, 1, 2));
    assert_eq!(s.last_error.as_deref(), Some("HTTP 503"));
}

#[test]
fn a_400_for_a_lone_event_drops_it_as_rejected_without_retrying() {
    let mut e = engine(config());
    capture(&mut e, "x", T0);
    let t = drain(&mut e, T0 + 1000).remove(0);
    e.handle_outcome(t.id, Outcome::status(400), T0 + 1010);
    assert_eq!(e.stats().dropped.rejected, 1);
    assert_eq!(e.poll_timeout(), None);
    assert!(notices(&mut e).contains(&Notice::Settled {
        settlement: Settlement::Dropped(DropReason::Rejected(400)),
        uuids: vec![Uuid::parse(&t.body[t.body.find("uuid\":\"").unwrap() + 7..][..36]).unwrap()],
    }));
}

#[test]
fn retries_stop_after_max_attempts_and_the_batch_is_counted_exhausted() {
    let mut c = config();
    c.max_attempts = 3;
    let mut e = engine(c);
    capture(&mut e, "x", T0);
    let mut now = T0 + 1000;
    for _ in 0..3 {
        let t = drain(&mut e, now).remove(0);
        e.handle_outcome(t.id, Outcome::NetworkError("reset".into()), now);
        if let Some(w) = e.poll_timeout() {
            now = w;
            e.handle_timeout(now);
        }
    }
    let s = e.stats();
    assert_eq!(s.dropped.attempts_exhausted, 1);
    assert_eq!((s.requests, s.retried), (3, 2));
    assert!(drain(&mut e, now + 100_000).is_empty());
}

#[test]
fn retry_after_holds_every_batch_until_the_named_time() {
    let mut c = config();
    c.max_batch_events = 1;
    c.max_in_flight = 1;
    let mut e = engine(c);
    capture(&mut e, "a", T0);
    capture(&mut e, "b", T0);
    let t = drain(&mut e, T0).remove(0);
    let ra = RetryAfter::parse("2").unwrap();
    e.handle_outcome(
        t.id,
        Outcome::Response {
            status: 429,
            retry_after: Some(ra),
            body: None,
        },
        T0 + 100,
    );
    assert_eq!(e.poll_timeout(), Some(T0 + 2100));
    assert!(
        drain(&mut e, T0 + 2099).is_empty(),
        "neither the retry nor the other batch goes early"
    );
    capture(&mut e, "c", T0 + 500);
    e.flush(T0 + 600);
    assert!(
        drain(&mut e, T0 + 2099).is_empty(),
        "a flush does not bypass Retry-After"
    );
    assert_eq!(drain(&mut e, T0 + 2100).len(), 1);
}

#[test]
fn retry_after_as_an_http_date_is_honoured() {
    let mut e = engine(config());
    capture(&mut e, "x", T0);
    let t = drain(&mut e, T0 + 1000).remove(0);
    // T0 + 1000 is 2023-11-14T22:13:21Z; ask for 22:13:24.
    let ra = RetryAfter::parse("Tue, 14 Nov 2023 22:13:24 GMT").unwrap();
    e.handle_outcome(
        t.id,
        Outcome::Response {
            status: 503,
            retry_after: Some(ra),
            body: None,
        },
        T0 + 1000,
    );
    assert_eq!(e.poll_timeout(), Some(T0 + 4000));
    assert!(drain(&mut e, T0 + 3999).is_empty());
    let retry = drain(&mut e, T0 + 4000).remove(0);
    assert_eq!(sent_at(&retry.body), "2023-11-14T22:13:24.000Z");
}

#[test]
fn a_413_splits_the_batch_and_sends_the_halves() {
    let mut e = engine(config());
    for _ in 0..4 {
        capture(&mut e, "x", T0);
    }
    let t = drain(&mut e, T0 + 1000).remove(0);
    e.handle_outcome(t.id, Outcome::status(413), T0 + 1010);
    let halves = drain(&mut e, T0 + 1010);
    assert_eq!(halves.iter().map(|t| t.events).collect::<Vec<_>>(), [2, 2]);
    for h in &halves {
        e.handle_outcome(h.id, Outcome::status(200), T0 + 1020);
    }
    assert_eq!(e.stats().delivered, 4);
}

#[test]
fn a_request_past_its_timeout_is_aborted_and_retried_and_its_late_answer_ignored() {
    let mut e = engine(config());
    capture(&mut e, "x", T0);
    let t = drain(&mut e, T0 + 1000).remove(0);
    assert_eq!(e.poll_timeout(), Some(T0 + 11_000));
    e.handle_timeout(T0 + 11_000);
    assert!(notices(&mut e).contains(&Notice::Abort(t.id)));
    assert_eq!(e.stats().last_error.as_deref(), Some("timeout"));
    assert!(
        !e.handle_outcome(t.id, Outcome::status(200), T0 + 11_001),
        "late answer ignored"
    );
    assert_eq!(e.stats().delivered, 0);
    let wake = e.poll_timeout().unwrap();
    e.handle_timeout(wake);
    assert_eq!(drain(&mut e, wake)[0].attempt, 2);
}

#[test]
fn flush_sends_at_once_and_completes_when_its_events_settle() {
    let mut e = engine(config());
    capture(&mut e, "a", T0);
    capture(&mut e, "b", T0);
    let f = e.flush(T0 + 1);
    let t = drain(&mut e, T0 + 1).remove(0);
    capture(&mut e, "after", T0 + 2);
    assert!(notices(&mut e)
        .iter()
        .all(|n| !matches!(n, Notice::FlushComplete(_))));
    e.handle_outcome(t.id, Outcome::status(200), T0 + 30);
    let done = flush_reports(&mut e);
    assert_eq!(
        done,
        [FlushReport {
            id: f,
            delivered: 2,
            dropped: 0
        }]
    );
    assert_eq!(e.stats().queued, 1, "the later capture still lingers");
}

#[test]
fn overlapping_flushes_each_wait_for_exactly_their_own_events() {
    let mut c = config();
    c.max_batch_events = 1;
    let mut e = engine(c);
    capture(&mut e, "a", T0);
    let f1 = e.flush(T0);
    let ta = drain(&mut e, T0).remove(0);
    capture(&mut e, "b", T0);
    let f2 = e.flush(T0);
    let tb = drain(&mut e, T0).remove(0);
    e.handle_outcome(tb.id, Outcome::status(200), T0 + 5);
    assert!(
        notices(&mut e)
            .iter()
            .all(|n| !matches!(n, Notice::FlushComplete(_))),
        "f2 waits for a too"
    );
    e.handle_outcome(ta.id, Outcome::status(400), T0 + 6);
    let done = flush_reports(&mut e);
    assert_eq!(
        done,
        [
            FlushReport {
                id: f1,
                delivered: 0,
                dropped: 1
            },
            FlushReport {
                id: f2,
                delivered: 1,
                dropped: 1
            },
        ]
    );
}

#[test]
fn a_flush_with_nothing_held_completes_at_once() {
    let mut e = engine(config());
    let f = e.flush(T0);
    assert_eq!(
        notices(&mut e),
        [Notice::FlushComplete(FlushReport {
            id: f,
            delivered: 0,
            dropped: 0
        })]
    );
}

#[test]
fn shutdown_sends_everything_then_refuses_captures() {
    let mut e = engine(config());
    capture(&mut e, "a", T0);
    e.shutdown(T0, T0 + 2000);
    assert_eq!(
        e.capture(EventInput::new("late"), T0),
        Err(CaptureError::ShutDown)
    );
    let t = drain(&mut e, T0).remove(0);
    e.handle_outcome(t.id, Outcome::status(200), T0 + 10);
    assert!(notices(&mut e).contains(&Notice::ShutdownComplete { abandoned: 0 }));
    assert_eq!(e.poll_timeout(), None);
}

#[test]
fn shutdown_abandons_what_is_left_at_the_deadline_and_counts_it() {
    let mut c = config();
    c.max_batch_events = 1;
    c.max_in_flight = 1;
    let mut e = engine(c);
    capture(&mut e, "a", T0);
    capture(&mut e, "b", T0);
    e.shutdown(T0, T0 + 2000);
    let t = drain(&mut e, T0).remove(0);
    assert_eq!(e.poll_timeout(), Some(T0 + 2000));
    e.handle_timeout(T0 + 2000);
    let n = notices(&mut e);
    assert!(n.contains(&Notice::Abort(t.id)));
    assert!(n.contains(&Notice::ShutdownComplete { abandoned: 2 }));
    assert_eq!(e.stats().dropped.shutdown, 2);
    assert_eq!(e.stats().queued + e.stats().in_flight, 0);
    assert!(!e.handle_outcome(t.id, Outcome::status(200), T0 + 2001));
}

#[test]
fn shutdown_gives_up_early_when_retry_after_reaches_past_its_deadline() {
    let mut e = engine(config());
    capture(&mut e, "a", T0);
    let t = drain(&mut e, T0 + 1000).remove(0);
    e.shutdown(T0 + 1000, T0 + 3000);
    let ra = Some(RetryAfter::Delay(60_000));
    e.handle_outcome(
        t.id,
        Outcome::Response {
            status: 429,
            retry_after: ra,
            body: None,
        },
        T0 + 1100,
    );
    assert!(notices(&mut e).contains(&Notice::ShutdownComplete { abandoned: 1 }));
}

#[test]
fn page_hide_sends_everything_as_keepalive_within_the_64_kib_budget() {
    let mut c = config();
    c.max_queue_events = 100_000;
    c.max_queue_bytes = 1 << 30;
    let mut e = engine(c);
    let props = r#"{"path":"/checkout","plan":"pro","amount":42.5}"#;
    for _ in 0..1_000 {
        e.capture(EventInput::new("click").properties(props), T0)
            .unwrap();
    }
    let report = e.page_hidden(T0 + 5);
    let sent = drain(&mut e, T0 + 5);
    let keepalive: Vec<_> = sent.iter().filter(|t| t.keepalive).collect();
    let bytes: usize = keepalive.iter().map(|t| t.body.len()).sum();
    assert!(bytes <= KEEPALIVE_QUOTA_BYTES, "{bytes}");
    assert!(
        bytes > KEEPALIVE_QUOTA_BYTES * 9 / 10,
        "the budget is used: {bytes}"
    );
    assert_eq!(report.keepalive_bytes, bytes);
    assert_eq!(report.keepalive_events + report.left_events, 1_000);
    // What did not fit goes as ordinary requests, up to maxInFlight, without lingering.
    let ordinary = sent.iter().filter(|t| !t.keepalive).count();
    assert_eq!(ordinary, 4);
    // As keepalive requests finish, more of the rest goes keepalive.
    e.handle_outcome(keepalive[0].id, Outcome::status(200), T0 + 20);
    let more = drain(&mut e, T0 + 20);
    assert!(more.iter().any(|t| t.keepalive));
}

#[test]
fn page_hide_skips_backoff_but_not_retry_after() {
    let mut c = config();
    c.max_batch_events = 1;
    let mut e = engine(c);
    capture(&mut e, "a", T0);
    let t = drain(&mut e, T0 + 1000).remove(0);
    e.handle_outcome(t.id, Outcome::status(503), T0 + 1000);
    e.page_hidden(T0 + 1001);
    let retry = drain(&mut e, T0 + 1001);
    assert_eq!(retry.len(), 1);
    assert!(retry[0].keepalive);
    e.handle_outcome(
        retry[0].id,
        Outcome::Response {
            status: 429,
            retry_after: Some(RetryAfter::Delay(5000)),
            body: None,
        },
        T0 + 1002,
    );
    capture(&mut e, "b", T0 + 1003);
    let report = e.page_hidden(T0 + 1004);
    assert_eq!(report.keepalive_requests, 0);
    assert_eq!(report.left_events, 2);
    assert!(drain(&mut e, T0 + 6001).is_empty());
    assert_eq!(drain(&mut e, T0 + 6002).len(), 2);
}

#[test]
fn after_the_page_is_visible_again_events_linger_as_configured() {
    let mut e = engine(config());
    e.page_hidden(T0);
    e.page_visible(T0 + 1);
    capture(&mut e, "x", T0 + 2);
    assert!(drain(&mut e, T0 + 2).is_empty());
    assert_eq!(e.poll_timeout(), Some(T0 + 1002));
}

#[test]
fn an_invalid_config_is_refused_naming_the_field() {
    let mut c = config();
    c.max_in_flight = 0;
    let err = Engine::new(c, 1).err().expect("refused");
    assert_eq!(err.field, "maxInFlight");
}

#[test]
fn a_hold_from_another_exporter_delays_every_request_like_retry_after() {
    let mut e = engine(config());
    e.hold_until(T0 + 5_000, T0);
    capture(&mut e, "x", T0);
    e.flush(T0);
    assert!(drain(&mut e, T0 + 4_999).is_empty());
    assert_eq!(e.poll_timeout(), Some(T0 + 5_000));
    assert_eq!(drain(&mut e, T0 + 5_000).len(), 1);
    // Capped like a Retry-After, and never shortened.
    e.hold_until(u64::MAX, T0 + 6_000);
    assert_eq!(e.retry_after_until(), T0 + 6_000 + MAX_RETRY_AFTER_MS);
    e.hold_until(T0, T0 + 6_000);
    assert_eq!(e.retry_after_until(), T0 + 6_000 + MAX_RETRY_AFTER_MS);
}

/// Answers every request as a collector that refuses (400) any body holding a `"bad"` event,
/// until nothing is held; returns the requests made.
fn answer_strictly(e: &mut Engine, mut now: u64) -> usize {
    let mut requests = 0;
    e.flush(now);
    for _ in 0..10_000 {
        let sent = drain(e, now);
        if sent.is_empty() {
            match e.poll_timeout() {
                Some(t) => {
                    now = now.max(t);
                    e.handle_timeout(now);
                    continue;
                }
                None => break,
            }
        }
        for t in sent {
            requests += 1;
            let status = if t.body.contains("\"bad\"") { 400 } else { 200 };
            e.handle_outcome(t.id, Outcome::status(status), now + 5);
        }
        now += 5;
    }
    requests
}

#[test]
fn one_event_a_collector_refuses_costs_only_itself_within_the_documented_requests() {
    for bad_at in [0, 37, 99] {
        let mut e = engine(config());
        for i in 0..100 {
            let name = if i == bad_at { "bad" } else { "good" };
            capture(&mut e, name, T0);
        }
        let requests = answer_strictly(&mut e, T0);
        let s = e.stats();
        assert_eq!(s.delivered, 99, "bad event at {bad_at}");
        assert_eq!(s.dropped.rejected, 1);
        // 1 request, then at most 2·⌈log2 100⌉ = 14 more.
        assert!(requests <= 1 + 14, "{requests} requests");
    }
}

#[test]
fn several_refused_events_are_isolated_and_the_rest_delivered() {
    let mut e = engine(config());
    for i in 0..100 {
        capture(&mut e, if i % 10 == 3 { "bad" } else { "good" }, T0);
    }
    let requests = answer_strictly(&mut e, T0);
    assert_eq!(e.stats().delivered, 90);
    assert_eq!(e.stats().dropped.rejected, 10);
    assert!(requests <= 1 + 2 * 99, "{requests} requests");
}

#[test]
fn lone_surrogates_are_repaired_and_bad_ids_and_deep_properties_refused_at_capture() {
    let mut e = engine(config());
    e.capture(
        EventInput::new("cut").properties(r#"{"s":"x\ud83d","ok":"\ud83d\ude00"}"#),
        T0,
    )
    .unwrap();
    for id in ["", "  \t"] {
        let err = e
            .capture(EventInput::new("e").distinct_id(id), T0)
            .unwrap_err();
        assert_eq!(err, CaptureError::BlankDistinctId);
    }
    let deep = format!(
        "{{\"a\":{}{}}}",
        "[".repeat(POSTHOG_MAX_PROPERTIES_DEPTH),
        "]".repeat(POSTHOG_MAX_PROPERTIES_DEPTH)
    );
    let err = e
        .capture(EventInput::new("deep").properties(&deep), T0)
        .unwrap_err();
    assert!(matches!(err, CaptureError::TooDeep { .. }), "{err}");
    assert!(err.message().contains("124"), "{err}");
    e.flush(T0);
    let t = drain(&mut e, T0).remove(0);
    assert!(t.body.contains(r#""s":"x\ufffd","ok":"\ud83d\ude00""#));
    assert!(serde_json::from_str::<serde_json::Value>(&t.body).is_ok());
}

#[test]
fn an_otlp_partial_success_drops_the_refused_count_and_delivers_the_rest() {
    let mut c = Config::new("https://collector.example/v1/logs");
    c.format = Format::Otlp;
    let mut e = engine(c);
    for _ in 0..5 {
        capture(&mut e, "x", T0);
    }
    e.flush(T0);
    let t = drain(&mut e, T0).remove(0);
    e.handle_outcome(
        t.id,
        Outcome::Response {
            status: 200,
            retry_after: None,
            body: Some(r#"{"partialSuccess":{"rejectedLogRecords":"2"}}"#.into()),
        },
        T0 + 5,
    );
    let s = e.stats();
    assert_eq!((s.delivered, s.dropped.rejected), (3, 2));
    // 500 is final for OTLP; 503 is retried.
    capture(&mut e, "y", T0 + 10);
    e.flush(T0 + 10);
    let t = drain(&mut e, T0 + 10).remove(0);
    e.handle_outcome(t.id, Outcome::status(500), T0 + 20);
    assert_eq!(e.stats().dropped.rejected, 3);
}

fn uuids_in(body: &str) -> Vec<String> {
    body.match_indices("\"uuid\":\"")
        .map(|(i, _)| body[i + 8..i + 44].to_string())
        .collect()
}

fn many(e: &mut Engine, n: usize, now: u64) -> Vec<Uuid> {
    let props = r#"{"path":"/checkout","plan":"pro","amount":42.5}"#;
    (0..n)
        .map(|_| {
            e.capture(EventInput::new("click").properties(props), now)
                .unwrap()
        })
        .collect()
}

#[test]
fn page_hide_keepalive_bodies_are_quarter_quota_so_four_fill_it() {
    let mut e = engine(config());
    many(&mut e, 1_000, T0);
    let report = e.page_hidden(T0 + 5);
    assert_eq!(report.keepalive_requests, KEEPALIVE_MAX_REQUESTS);
    let sent = drain(&mut e, T0 + 5);
    for t in sent.iter().filter(|t| t.keepalive) {
        assert!(t.body.len() <= KEEPALIVE_BODY_BYTES, "{}", t.body.len());
    }
    assert!(report.keepalive_bytes > KEEPALIVE_QUOTA_BYTES * 9 / 10);
}

#[test]
fn at_pagehide_beacons_go_until_the_browser_refuses_one_and_the_refused_events_wait() {
    let mut e = engine(config());
    let uuids = many(&mut e, 3_000, T0);
    e.page_hidden(T0 + 1);
    let before = drain(&mut e, T0 + 1);
    // The browser takes three beacons, then refuses.
    let mut accepted = 0;
    let mut refused = None;
    while let Some(t) = e.poll_beacon(T0 + 2) {
        assert!(t.body.len() <= KEEPALIVE_BODY_BYTES);
        if accepted == 3 {
            refused = Some(t.events);
            e.beacon_refused(t.id, T0 + 2);
            break;
        }
        accepted += 1;
        e.handle_outcome(t.id, Outcome::status(202), T0 + 2);
    }
    let refused = refused.expect("a refusal");
    let stats = e.stats();
    assert!(stats.delivered > 0);
    // Nothing is lost: what is neither delivered nor in flight is stored.
    let (text, stored) = e.persist().expect("something held");
    assert_eq!(stored as u64, 3_000 - stats.delivered);
    assert!(text.contains(&uuids[2_999].to_string()));
    // The refused attempt was not spent.
    assert!(refused > 0);
    assert_eq!(before.len(), KEEPALIVE_MAX_REQUESTS + 4);
}

#[test]
fn stored_events_go_first_on_the_next_load_with_their_uuid_and_timestamp_and_a_fresh_sent_at() {
    let mut old = engine(config());
    let uuids = many(&mut old, 250, T0);
    old.page_hidden(T0 + 10);
    let in_flight = drain(&mut old, T0 + 10);
    assert!(!in_flight.is_empty());
    // The page dies with its requests unanswered: all 250 are stored (at-least-once).
    let (text, stored) = old.persist().unwrap();
    assert_eq!(stored, 250);
    assert!(!text.contains("phc_test"), "the API key is never stored");

    let later = T0 + 60_000;
    let mut next = engine(config());
    capture(&mut next, "new", later);
    assert_eq!(next.restore(&text, later), 250);
    assert_eq!(next.stats().restored, 250);
    let sent = drain(&mut next, later);
    let mut seen = Vec::new();
    for t in &sent {
        assert_eq!(sent_at(&t.body), "2023-11-14T22:14:20.000Z");
        assert!(t
            .body
            .contains("\"timestamp\":\"2023-11-14T22:13:20.000Z\""));
        seen.extend(uuids_in(&t.body));
    }
    // The stored events go before the new one, which lingers.
    assert_eq!(seen.len(), 250);
    let expected: Vec<String> = uuids.iter().map(|u| u.to_string()).collect();
    assert_eq!(seen, expected);
    for t in sent {
        next.handle_outcome(t.id, Outcome::status(200), later + 5);
    }
    assert_eq!(next.stats().delivered, 250);
    assert_eq!(next.stats().queued, 1);
}

#[test]
fn stored_events_older_than_seven_days_or_over_the_byte_cap_are_counted_as_persist_cap() {
    let mut c = config();
    c.max_queue_bytes = 1 << 30;
    c.max_queue_events = 1_000_000;
    let mut old = engine(c.clone());
    let big = format!(r#"{{"blob":"{}"}}"#, "x".repeat(9_000));
    for _ in 0..200 {
        old.capture(EventInput::new("big").properties(&big), T0)
            .unwrap();
    }
    let (text, stored) = old.persist().unwrap();
    assert!(text.len() <= PERSIST_MAX_BYTES);
    assert!(stored < 200);
    let mut next = engine(c.clone());
    assert_eq!(next.restore(&text, T0 + 1), stored);
    assert_eq!(next.stats().dropped.persist_cap, 200 - stored as u64);

    let mut stale = engine(c);
    assert_eq!(stale.restore(&text, T0 + PERSIST_MAX_AGE_MS + 1), 0);
    assert_eq!(stale.stats().dropped.persist_cap, 200);
    assert_eq!(stale.held_events(), 0);
}

#[test]
fn corrupt_stored_text_is_counted_and_the_readable_events_still_go() {
    let mut old = engine(config());
    many(&mut old, 3, T0);
    let (text, _) = old.persist().unwrap();
    let broken = format!("{text}this is not an event\n");
    let mut next = engine(config());
    assert_eq!(next.restore(&broken, T0 + 1), 3);
    assert_eq!(next.stats().storage_errors, 1);
    let mut none = engine(config());
    assert_eq!(none.restore("{\"not\":\"ours\"}", T0), 0);
    assert_eq!(none.stats().storage_errors, 1);
}

#[test]
fn offline_failures_spend_no_attempts_and_going_online_sends_at_once() {
    let mut c = config();
    c.max_attempts = 2;
    let mut e = engine(c);
    capture(&mut e, "a", T0);
    e.set_online(false, T0);
    let mut now = T0 + 1000;
    for _ in 0..10 {
        let sent = drain(&mut e, now);
        assert_eq!(sent.len(), 1, "retried while offline");
        e.handle_outcome(sent[0].id, Outcome::NetworkError("offline".into()), now);
        now = e.poll_timeout().unwrap();
    }
    assert_eq!(e.stats().dropped.attempts_exhausted, 0);
    // Back online: the waiting batch goes now, not at its backoff.
    let sent = drain(&mut e, now - 1);
    assert!(sent.is_empty());
    e.set_online(true, now - 1);
    let sent = drain(&mut e, now - 1);
    assert_eq!(sent.len(), 1);
    e.handle_outcome(sent[0].id, Outcome::status(200), now);
    assert_eq!(e.stats().delivered, 1);
}

#[test]
fn online_failures_still_spend_attempts() {
    let mut c = config();
    c.max_attempts = 2;
    let mut e = engine(c);
    capture(&mut e, "a", T0);
    let mut now = T0 + 1000;
    for _ in 0..2 {
        let sent = drain(&mut e, now);
        e.handle_outcome(sent[0].id, Outcome::NetworkError("refused".into()), now);
        now = e.poll_timeout().unwrap_or(now);
    }
    assert_eq!(e.stats().dropped.attempts_exhausted, 1);
}

#[test]
fn after_pagehide_a_failed_keepalive_request_is_not_resent_but_stays_stored() {
    let mut e = engine(config());
    many(&mut e, 100, T0);
    e.page_hidden(T0 + 1);
    let sent = drain(&mut e, T0 + 1);
    assert!(!sent.is_empty());
    e.page_gone(T0 + 2);
    e.handle_outcome(sent[0].id, Outcome::NetworkError("unload".into()), T0 + 3);
    assert!(drain(&mut e, T0 + 10_000).is_empty());
    let (_, stored) = e.persist().unwrap();
    assert_eq!(stored, 100);
    // Restored from the back/forward cache: it sends again.
    e.page_visible(T0 + 20_000);
    assert!(!drain(&mut e, T0 + 20_000).is_empty());
}
