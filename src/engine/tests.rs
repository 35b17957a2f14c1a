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
