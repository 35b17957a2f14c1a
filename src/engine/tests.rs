//! The engine on the page-hide path, and an OTLP collector's partial success, as a user of the
//! exporter would notice them. The rest of the engine's behaviour is specified through its
//! public API in `tests/engine.rs`.

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

/// A body's `sent_at`, parsed.
fn sent_at(body: &str) -> String {
    let body: serde_json::Value = serde_json::from_str(body).expect("the body is JSON");
    body["sent_at"].as_str().expect("sent_at").to_owned()
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
    let sent = drain(&mut e, T0 + 6002);
    assert_eq!(sent.len(), 2);
    // Stamped when they went, not when the page was hidden.
    for t in &sent {
        assert_eq!(sent_at(&t.body), "2023-11-14T22:13:26.002Z");
    }
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
    let (text, stored) = e.persist(T0).expect("something held");
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
    let (text, stored) = old.persist(T0).unwrap();
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
    let (text, stored) = old.persist(T0).unwrap();
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
    let (text, _) = old.persist(T0).unwrap();
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
    let (_, stored) = e.persist(T0).unwrap();
    assert_eq!(stored, 100);
    // Restored from the back/forward cache: it sends again.
    e.page_visible(T0 + 20_000);
    assert!(!drain(&mut e, T0 + 20_000).is_empty());
}

#[test]
fn requests_failing_as_the_page_unloads_spend_no_attempts_and_nothing_is_dropped() {
    // Firefox rejects the old document's fetches once a navigation starts: every resend
    // between `beforeunload` and `pagehide` fails at once.
    let mut c = config();
    c.max_attempts = 2;
    let mut e = engine(c);
    many(&mut e, 300, T0);
    e.page_hidden(T0 + 1);
    let mut now = T0 + 1;
    let mut failed = 0;
    for _ in 0..10 {
        let sent = drain(&mut e, now);
        for t in &sent {
            e.handle_outcome(t.id, Outcome::NetworkError("unloading".into()), now);
            failed += 1;
        }
        now += 1;
    }
    assert!(failed > 0);
    assert_eq!(e.stats().dropped.total(), 0, "{:?}", e.stats());
    // A failed batch is not resent at once in a loop while hidden: it keeps its backoff.
    assert!(drain(&mut e, now).is_empty(), "resent at once while hidden");
    // At pagehide the held events still go by beacon, or are stored for the next load.
    let (_, stored) = e.persist(now).unwrap();
    assert_eq!(stored, 300);
    let beacon = e.poll_beacon(now).expect("a beacon for what failed");
    assert!(beacon.events > 0);
}

#[test]
fn a_copy_another_tab_took_in_is_never_stored_again_for_a_third_load() {
    let mut old = engine(config());
    let first = many(&mut old, 30, T0);
    let (text, stored) = old.persist(T0).unwrap();
    assert_eq!(stored, 30);
    // Another tab's next load claims that copy while this page still runs, then this page
    // captures more and writes its copy again (as it does at page-hide).
    let mut other = engine(config());
    assert_eq!(other.restore(&text, T0 + 5), 30);
    old.stored_copy_taken();
    let later = many(&mut old, 5, T0 + 10);
    let (text, stored) = old.persist(T0).unwrap();
    assert_eq!(stored, 5, "only the events the other load did not take");
    let mut third = engine(config());
    assert_eq!(third.restore(&text, T0 + 20), 5);
    third.flush(T0 + 20);
    let sent: Vec<String> = drain(&mut third, T0 + 20)
        .iter()
        .flat_map(|t| uuids_in(&t.body))
        .collect();
    let expected: Vec<String> = later.iter().map(|u| u.to_string()).collect();
    assert_eq!(sent, expected);
    assert!(first.iter().all(|u| !sent.contains(&u.to_string())));
    // Once everything held was taken, nothing is left to store.
    old.stored_copy_taken();
    assert_eq!(old.persist(T0), None);
}
