//! Page reloads through the engine: events captured across many page loads, a collector that
//! fails at random, spells offline, and at every reload the page going away mid-stream (its
//! requests unanswered, some of them received anyway), what it held stored and taken in by the
//! next load. Checked at the end of each seed:
//!
//! - every captured event reached the collector or was counted as dropped by some load;
//! - no attempt made while offline was spent: nothing is dropped as `attemptsExhausted`;
//! - an event reaches the collector twice only if a request holding it was unanswered at a
//!   reload (at-least-once), and always with its capture timestamp.
//!
//! Further cases close pages whose collector fails at the close (beacons it refused), pages
//! with deferred requests, and navigations in a browser that fails the requests started late
//! in them (ordinary bodies gzipped by the host start only once compressed).

mod common;

use std::collections::HashMap;

use spool::engine::{
    Compression, Config, Engine, EventInput, HostFeatures, Notice, Outcome, PageEvent, Path, Rng,
    Start, Transmit, TransmitId,
};

const T0: u64 = 1_700_000_000_000;

fn uuids_and_timestamps(body: &str) -> Vec<(String, String)> {
    body.match_indices("\"uuid\":\"")
        .map(|(i, _)| {
            let uuid = body[i + 8..i + 44].to_string();
            let ts_at = body[..i].rfind("\"timestamp\":\"").unwrap() + 13;
            (uuid, body[ts_at..ts_at + 24].to_string())
        })
        .collect()
}

/// The collector answers some of what is in flight (`answer` each), keeping the rest; at times
/// nothing, so that a new load may close before its first answer.
fn answer_some(in_flight: &mut Vec<Transmit>, rng: &mut Rng, mut answer: impl FnMut(Transmit)) {
    let stalled = rng.up_to(2) == 0;
    let mut keep = Vec::new();
    for t in in_flight.drain(..) {
        if stalled || rng.up_to(3) == 0 {
            keep.push(t);
        } else {
            answer(t);
        }
    }
    *in_flight = keep;
}

/// Captures up to 100 events at `now`, and now and then a burst of 1,000 (more than the
/// keepalive budget carries); their uuids go to `captured`.
fn capture_some(engine: &mut Engine, rng: &mut Rng, now: u64, captured: &mut Vec<String>) {
    let n = match rng.up_to(10) {
        0 => 1_000,
        _ => rng.up_to(100),
    };
    for _ in 0..n {
        let uuid = engine.capture(EventInput::new("e"), now).unwrap();
        captured.push(uuid.to_string());
    }
}

/// Runs `engine` until it holds nothing (at most 10,000 rounds): each round it is woken at its
/// next deadline (at least 1 ms on), flushed, and `step` hands out and answers what it sends.
fn settle(engine: &mut Engine, now: &mut u64, mut step: impl FnMut(&mut Engine, u64)) {
    let mut rounds = 0;
    while engine.held_events() > 0 && rounds < 10_000 {
        rounds += 1;
        *now = engine.poll_timeout().unwrap_or(*now + 1).max(*now + 1);
        engine.handle_timeout(*now);
        engine.flush(*now);
        step(engine, *now);
    }
}

/// Nothing dropped, and every event `captured` reached the collector (`received`).
fn assert_nothing_lost(
    engine: &Engine,
    captured: &[String],
    received: &HashMap<String, (String, u32)>,
    seed: u64,
) {
    assert_eq!(engine.stats().dropped.total(), 0, "seed {seed}");
    let lost = captured
        .iter()
        .filter(|u| !received.contains_key(*u))
        .count();
    assert_eq!(
        lost,
        0,
        "seed {seed}: {lost} of {} events lost",
        captured.len()
    );
}

/// The engine's timer fires if it is due at `now`.
fn wake_if_due(engine: &mut Engine, now: u64) {
    if engine.poll_timeout().is_some_and(|at| at <= now) {
        engine.handle_timeout(now);
    }
}

fn online_event(online: bool) -> PageEvent {
    match online {
        true => PageEvent::Online,
        false => PageEvent::Offline,
    }
}

#[test]
fn reloads_mid_stream_lose_nothing_and_offline_spends_no_attempts() {
    for seed in 0..40u64 {
        let mut rng = Rng::new(seed + 1);
        let mut config = Config::new("https://collector.example/batch/");
        config.api_key = "phc_sim".into();
        config.max_attempts = 2;
        config.initial_backoff_ms = 50;
        config.max_backoff_ms = 200;
        // No timeouts: online, requests are answered 2xx or not at all, so the only failures
        // are the offline ones, which must spend no attempts.
        config.request_timeout_ms = 600_000;
        let mut now = T0;
        let mut engine = Engine::new(config.clone(), seed).unwrap();
        let mut captured: HashMap<String, String> = HashMap::new();
        let mut received: HashMap<String, (String, u32)> = HashMap::new();
        let mut dropped = 0u64;
        let mut unanswered_at_reload = 0usize;
        let mut in_flight: Vec<Transmit> = Vec::new();
        let mut offline = false;
        let receive = |t: &Transmit, received: &mut HashMap<String, (String, u32)>| {
            for (u, ts) in uuids_and_timestamps(&common::wire_text(t)) {
                let e = received.entry(u).or_insert((ts.clone(), 0));
                assert_eq!(e.0, ts, "seed {seed}: a copy with another timestamp");
                e.1 += 1;
            }
        };
        for step in 0..400 {
            now += 1 + rng.up_to(300);
            match rng.up_to(100) {
                0..=39 => {
                    for _ in 0..rng.up_to(30) {
                        let uuid = engine
                            .capture(EventInput::new("e").properties(r#"{"k":1}"#), now)
                            .unwrap();
                        captured.insert(uuid.to_string(), String::new());
                    }
                }
                40..=44 => {
                    offline = !offline;
                    engine.handle_page(online_event(!offline), now);
                }
                45..=49 => {
                    // A reload: the page goes away with its requests unanswered (the ordinary
                    // ones given up and sent again keepalive); the browser refuses beacons.
                    let _ = engine.handle_page(PageEvent::PageHide, now);
                    while let Some(t) = engine.poll_transmit(now) {
                        match t.path {
                            Path::Beacon => {
                                engine.handle_outcome(t.id, Outcome::Refused, now);
                            }
                            _ => in_flight.push(t),
                        }
                    }
                    let stored = engine.persist(now);
                    for t in in_flight.drain(..) {
                        unanswered_at_reload += t.events;
                        // The browser carries a keepalive request on after the page, to a
                        // collector that is up; an ordinary one given up may have arrived
                        // (Chromium rejects them at unload all the same), or not.
                        let carried = t.path == Path::Keepalive || t.outlives;
                        if !offline && (carried || rng.up_to(2) == 0) {
                            receive(&t, &mut received);
                        }
                    }
                    dropped += engine.stats().dropped.total();
                    assert_eq!(engine.stats().dropped.attempts_exhausted, 0, "seed {seed}");
                    engine = Engine::new(config.clone(), seed * 1000 + step).unwrap();
                    engine.handle_page(online_event(!offline), now);
                    if let Some((text, _, _)) = stored {
                        common::restore(&mut engine, &text, now);
                    }
                }
                _ => {}
            }
            while let Some(t) = engine.poll_transmit(now) {
                in_flight.push(t);
            }
            answer_some(&mut in_flight, &mut rng, |t| {
                let outcome = if offline {
                    Outcome::NetworkError("offline".into())
                } else {
                    receive(&t, &mut received);
                    Outcome::status(200)
                };
                engine.handle_outcome(t.id, outcome, now);
            });
            wake_if_due(&mut engine, now);
            assert_eq!(engine.stats().dropped.attempts_exhausted, 0, "seed {seed}");
        }
        // Online to the end: everything left settles.
        engine.handle_page(PageEvent::Online, now);
        for t in in_flight.drain(..) {
            receive(&t, &mut received);
            engine.handle_outcome(t.id, Outcome::status(200), now);
        }
        settle(&mut engine, &mut now, |engine, now| {
            while let Some(t) = engine.poll_transmit(now) {
                receive(&t, &mut received);
                engine.handle_outcome(t.id, Outcome::status(200), now);
            }
        });
        dropped += engine.stats().dropped.total();
        let lost = captured
            .keys()
            .filter(|u| !received.contains_key(*u))
            .count() as u64;
        assert!(
            lost <= dropped,
            "seed {seed}: {lost} events neither received nor counted ({dropped} dropped)"
        );
        let repeats: u32 = received.values().map(|(_, n)| n - 1).sum();
        assert!(
            repeats as usize <= unanswered_at_reload,
            "seed {seed}: {repeats} repeats, {unanswered_at_reload} unanswered at reloads"
        );
    }
}

/// A collector that fails at random, often just as the page closes, with beacons the browser
/// accepts (and sometimes refuses) and the collector refuses while it is down: a beacon's
/// events count as delivered only where the collector's last answer was a success, so every
/// event the collector refused reaches it from a later load, or is counted as dropped.
///
/// The collector's failures are ones the page sees: when it goes down, the requests in flight
/// (and one flushed for the purpose) are answered 503, as a page that holds events for a
/// while sees them. Checked at the end of each seed: nothing lost, nothing dropped.
#[test]
fn a_collector_failing_at_page_close_loses_nothing_to_beacons_it_refused() {
    // Beacons the browser accepted while the collector was down: their events must not count.
    let mut refused_beacons = 0usize;
    for seed in 0..20u64 {
        let mut rng = Rng::new(seed + 7);
        let mut config = page_config();
        // Plain page-hide bodies: the keepalive budget carries a few hundred events, and
        // beacons the rest.
        config.compression = Compression::None;
        let mut now = T0;
        // A browser's host: it packs batches ahead and keeps copies (answered each step).
        let host = HostFeatures {
            compress: true,
            keepalive: true,
            ..HostFeatures::default()
        };
        let new_engine = |id: u64, now: u64| page_engine(&config, host, id, now);
        let mut engine = new_engine(seed, now);
        let mut captured: Vec<String> = Vec::new();
        let mut received: HashMap<String, (String, u32)> = HashMap::new();
        let mut in_flight: Vec<Transmit> = Vec::new();
        let mut up = rng.up_to(2) == 0;
        let answer = |engine: &mut Engine,
                      t: Transmit,
                      up: bool,
                      now: u64,
                      received: &mut HashMap<String, (String, u32)>| {
            if up {
                receive(&t, received);
            }
            let status = if up { 200 } else { 503 };
            engine.handle_outcome(t.id, Outcome::status(status), now);
        };
        for step in 0..200 {
            now += 1 + rng.up_to(500);
            match rng.up_to(100) {
                0..=49 => capture_some(&mut engine, &mut rng, now, &mut captured),
                50..=59 => {
                    up = !up;
                    if !up {
                        // Down: the page sees it in the answers to what it has in flight.
                        let uuid = engine.capture(EventInput::new("probe"), now).unwrap();
                        captured.push(uuid.to_string());
                        engine.flush(now);
                        while let Some(t) = engine.poll_transmit(now) {
                            in_flight.push(t);
                        }
                        for t in in_flight.drain(..) {
                            answer(&mut engine, t, up, now, &mut received);
                        }
                    }
                }
                60..=69 => {
                    // The page closes: keepalive requests (unanswered), then beacons, which
                    // the browser accepts until its budget is spent, then the stored copy.
                    let _ = engine.handle_page(PageEvent::BeforeUnload, now);
                    let _ = engine.handle_page(PageEvent::PageHide, now);
                    let mut budget = rng.up_to(20);
                    while let Some(t) = engine.poll_transmit(now) {
                        if t.path != Path::Beacon {
                            in_flight.push(t);
                            continue;
                        }
                        if budget == 0 {
                            engine.handle_outcome(t.id, Outcome::Refused, now);
                            continue;
                        }
                        budget -= 1;
                        let delivered = engine.stats().delivered;
                        engine.handle_outcome(t.id, Outcome::Accepted, now);
                        if up {
                            receive(&t, &mut received);
                        } else {
                            refused_beacons += 1;
                            assert_eq!(
                                engine.stats().delivered,
                                delivered,
                                "seed {seed}: a beacon the collector refused counted delivered"
                            );
                        }
                    }
                    let stored = engine.persist(now);
                    for t in in_flight.drain(..) {
                        // A keepalive request reaches a collector that is up.
                        if up {
                            receive(&t, &mut received);
                        }
                    }
                    assert_eq!(engine.stats().dropped.total(), 0, "seed {seed}");
                    engine = new_engine(seed * 1000 + step, now);
                    if let Some((text, _, _)) = stored {
                        common::restore(&mut engine, &text, now);
                    }
                }
                _ => {}
            }
            while let Some(t) = engine.poll_transmit(now) {
                in_flight.push(t);
            }
            answer_some(&mut in_flight, &mut rng, |t| {
                answer(&mut engine, t, up, now, &mut received)
            });
            wake_if_due(&mut engine, now);
            common::answer_packs(&mut engine, now);
        }
        // The collector recovers for good: everything left settles.
        up = true;
        for t in in_flight.drain(..) {
            answer(&mut engine, t, up, now, &mut received);
        }
        settle(&mut engine, &mut now, |engine, now| {
            while let Some(t) = engine.poll_transmit(now) {
                answer(engine, t, up, now, &mut received);
            }
        });
        assert_nothing_lost(&engine, &captured, &received, seed);
    }
    assert!(refused_beacons > 0, "the case is exercised");
}

/// Pages with deferred requests (`fetchLater`): the collector goes down and up (the page sees
/// it at once, in the answers to what it has in flight), pages close (their armed requests go
/// as they unload, to a collector up or down), and some go into the back/forward cache and come
/// back (their armed requests went as they entered it). The browser refuses a deferred request
/// now and then (its quota). Checked at the end of each seed: nothing lost, nothing dropped,
/// nothing counted delivered that the collector did not take, and no event stored by a load
/// that had it carried by a deferred request.
#[test]
fn deferred_requests_deliver_what_is_held_at_close_and_lose_nothing() {
    let mut armed_at_close = 0usize;
    for seed in 0..20u64 {
        let mut rng = Rng::new(seed + 11);
        let config = page_config();
        let mut now = T0;
        let host = HostFeatures {
            deferred: true,
            compress: true,
            ..HostFeatures::default()
        };
        let new_engine = |id: u64| page_engine(&config, host, id, T0);
        let mut engine = new_engine(seed);
        let mut captured: Vec<String> = Vec::new();
        let mut received: HashMap<String, (String, u32)> = HashMap::new();
        let mut in_flight: Vec<Transmit> = Vec::new();
        let mut armed: HashMap<TransmitId, Transmit> = HashMap::new();
        // Events the collector has taken, and events the engines counted delivered.
        let mut taken = 0u64;
        let mut delivered_before = 0u64;
        let mut up = true;
        // Hands out what the engine sends: deferred requests are armed (or refused), the
        // others go in flight; aborts take armed ones back.
        let poll = |engine: &mut Engine,
                    rng: &mut Rng,
                    now: u64,
                    in_flight: &mut Vec<Transmit>,
                    armed: &mut HashMap<TransmitId, Transmit>| {
            loop {
                while let Some(t) = engine.poll_transmit(now) {
                    match t.path {
                        Path::Deferred if rng.up_to(10) == 0 => {
                            engine.handle_outcome(t.id, Outcome::Refused, now);
                        }
                        Path::Deferred => {
                            armed.insert(t.id, t);
                        }
                        Path::Beacon => {
                            engine.handle_outcome(t.id, Outcome::Refused, now);
                        }
                        _ => in_flight.push(t),
                    }
                }
                let mut more = false;
                while let Some(n) = engine.poll_notice() {
                    match n {
                        Notice::Abort(id) => {
                            armed.remove(&id);
                            more = true;
                        }
                        // The host's compressor answers at once.
                        Notice::Pack { batch, body, lines } => {
                            let (wire, copy) = common::pack(body, lines);
                            engine.handle_packed(batch, wire, copy, now);
                            more = true;
                        }
                        _ => {}
                    }
                }
                if !more {
                    break;
                }
            }
        };
        for step in 0..200 {
            now += 1 + rng.up_to(500);
            match rng.up_to(100) {
                0..=49 => capture_some(&mut engine, &mut rng, now, &mut captured),
                50..=59 => {
                    up = !up;
                    if !up {
                        let uuid = engine.capture(EventInput::new("probe"), now).unwrap();
                        captured.push(uuid.to_string());
                        engine.flush(now);
                        poll(&mut engine, &mut rng, now, &mut in_flight, &mut armed);
                        for t in in_flight.drain(..) {
                            engine.handle_outcome(t.id, Outcome::status(503), now);
                        }
                    }
                }
                60..=69 => {
                    // The page closes; its armed requests go as it unloads.
                    let _ = engine.handle_page(PageEvent::BeforeUnload, now);
                    let _ = engine.handle_page(PageEvent::PageHide, now);
                    poll(&mut engine, &mut rng, now, &mut in_flight, &mut armed);
                    armed_at_close += armed.len();
                    for (_, t) in armed.drain() {
                        if up {
                            receive(&t, &mut received);
                            taken += t.events as u64;
                        }
                    }
                    let bfcache = rng.up_to(4) == 0;
                    if bfcache {
                        // Back from the back/forward cache, with the same engine.
                        engine.handle_page(PageEvent::PageShow, now + 1);
                    } else {
                        let stored = engine.persist(now);
                        for t in in_flight.drain(..) {
                            if up {
                                receive(&t, &mut received);
                            }
                        }
                        assert_eq!(engine.stats().dropped.total(), 0, "seed {seed}");
                        delivered_before += engine.stats().delivered;
                        engine = new_engine(seed * 1000 + step);
                        if let Some((text, _, _)) = stored {
                            common::restore(&mut engine, &text, now);
                        }
                    }
                }
                _ => {}
            }
            poll(&mut engine, &mut rng, now, &mut in_flight, &mut armed);
            answer_some(&mut in_flight, &mut rng, |t| {
                if up {
                    receive(&t, &mut received);
                    taken += t.events as u64;
                }
                let status = if up { 200 } else { 503 };
                engine.handle_outcome(t.id, Outcome::status(status), now);
            });
            wake_if_due(&mut engine, now);
        }
        // The collector recovers for good: everything left settles.
        for t in in_flight.drain(..) {
            receive(&t, &mut received);
            taken += t.events as u64;
            engine.handle_outcome(t.id, Outcome::status(200), now);
        }
        settle(&mut engine, &mut now, |engine, now| {
            poll(engine, &mut rng, now, &mut in_flight, &mut armed);
            for t in in_flight.drain(..) {
                receive(&t, &mut received);
                taken += t.events as u64;
                engine.handle_outcome(t.id, Outcome::status(200), now);
            }
        });
        assert_nothing_lost(&engine, &captured, &received, seed);
        let delivered = delivered_before + engine.stats().delivered;
        assert!(
            delivered <= taken,
            "seed {seed}: {delivered} counted delivered, the collector took {taken}"
        );
    }
    assert!(armed_at_close > 0, "the case is exercised");
}

/// Navigations in a browser that fails, once the page is gone, the keepalive requests the page
/// started late: after `beforeunload` and before `pagehide`, once an answer came (Chromium
/// did, for one started 90 ms into a navigation). Ordinary bodies are gzipped by the host
/// first, so a request may start only once its body is compressed, during the navigation.
/// Requests started before that answer reach the collector; ordinary ones not outliving the
/// page are cancelled with it; bodies still compressing never leave. Checked at the end of
/// each seed: nothing lost, nothing dropped.
#[test]
fn requests_started_late_in_a_navigation_and_failed_by_the_browser_lose_nothing() {
    let mut late_at_close = 0usize;
    for seed in 0..12u64 {
        let mut rng = Rng::new(seed + 13);
        let config = page_config();
        let mut now = T0;
        // Chromium's host: it gzips ahead and sends on the keepalive requests it fails as
        // the page goes (those started in time).
        let host = HostFeatures {
            compress: true,
            keepalive: true,
            keepalive_after_unload: true,
            ..HostFeatures::default()
        };
        let new_engine = |id: u64, now: u64| page_engine(&config, host, id, now);
        let mut engine = new_engine(seed, now);
        let mut captured: Vec<String> = Vec::new();
        let mut received: HashMap<String, (String, u32)> = HashMap::new();
        let mut sim = Wire::default();
        for step in 0..200 {
            now += 1 + rng.up_to(500);
            match rng.up_to(100) {
                0..=54 => capture_some(&mut engine, &mut rng, now, &mut captured),
                55..=69 => {
                    // A navigation, often at the end of a busy task (more than the keepalive
                    // quota carries): answers and compressed bodies come in between
                    // `beforeunload` and `pagehide`.
                    if rng.up_to(3) == 0 {
                        for i in 0..2_000 {
                            let props = format!(
                                "{{\"i\":{i},\"r\":{},\"path\":\"/checkout\"}}",
                                rng.next_u64()
                            );
                            let event = EventInput::new("click").properties(&props);
                            captured.push(engine.capture(event, now).unwrap().to_string());
                        }
                    }
                    let _ = engine.handle_page(PageEvent::BeforeUnload, now);
                    sim.unloading = true;
                    for _ in 0..rng.up_to(3) {
                        sim.poll(&mut engine, now);
                        sim.answer_some(&mut engine, &mut rng, now, &mut received);
                        sim.compress_some(&mut engine, &mut rng, now);
                    }
                    sim.poll(&mut engine, now);
                    let _ = engine.handle_page(PageEvent::PageHide, now);
                    // What starts in `pagehide` the browser sends on.
                    sim.unloading = false;
                    sim.poll(&mut engine, now);
                    let stored = engine.persist(now);
                    late_at_close += sim.gone(&mut received);
                    assert_eq!(engine.stats().dropped.total(), 0, "seed {seed}");
                    engine = new_engine(seed * 1000 + step, now);
                    if let Some((text, _, _)) = stored {
                        common::restore(&mut engine, &text, now);
                    }
                }
                _ => {}
            }
            sim.poll(&mut engine, now);
            sim.answer_some(&mut engine, &mut rng, now, &mut received);
            sim.compress_some(&mut engine, &mut rng, now);
            wake_if_due(&mut engine, now);
        }
        // Everything left settles.
        settle(&mut engine, &mut now, |engine, now| {
            sim.poll(engine, now);
            sim.compress_some(engine, &mut rng, now);
            sim.answer_some(engine, &mut rng, now, &mut received);
        });
        assert_nothing_lost(&engine, &captured, &received, seed);
    }
    assert!(late_at_close > 0, "the case is exercised");
}

/// One page's requests, as the browser holds them (see
/// [`requests_started_late_in_a_navigation_and_failed_by_the_browser_lose_nothing`]).
#[derive(Default)]
struct Wire {
    /// Ordinary requests whose bodies the host is gzipping: not started yet.
    compressing: Vec<Transmit>,
    /// Started: each with whether it outlives the page (`keepalive: true`) and whether it
    /// started late (after `beforeunload` and before `pagehide`, once an answer came).
    started: Vec<(Transmit, bool, bool)>,
    /// Between `beforeunload` and `pagehide`.
    unloading: bool,
    answered_unloading: bool,
}

impl Wire {
    /// Takes what the engine sends and its notices: packs done at once, aborts carried out,
    /// beacons refused (the browser's budget is spent).
    fn poll(&mut self, engine: &mut Engine, now: u64) {
        loop {
            while let Some(t) = engine.poll_transmit(now) {
                match t.path {
                    Path::Beacon => {
                        engine.handle_outcome(t.id, Outcome::Refused, now);
                    }
                    Path::Ordinary if t.gzipped.is_none() => self.compressing.push(t),
                    _ => {
                        let outlives = t.path != Path::Ordinary || t.outlives;
                        let late = self.unloading && self.answered_unloading;
                        self.started.push((t, outlives, late));
                    }
                }
            }
            let mut more = false;
            while let Some(n) = engine.poll_notice() {
                match n {
                    Notice::Abort(id) => {
                        self.compressing.retain(|t| t.id != id);
                        self.started.retain(|(t, ..)| t.id != id);
                    }
                    Notice::Pack { batch, body, lines } => {
                        let (wire, copy) = common::pack(body, lines);
                        engine.handle_packed(batch, wire, copy, now);
                        more = true;
                    }
                    _ => {}
                }
            }
            if !more {
                break;
            }
        }
    }

    /// The host's compressor finishes some bodies: each request starts as the engine says.
    fn compress_some(&mut self, engine: &mut Engine, rng: &mut Rng, now: u64) {
        for t in std::mem::take(&mut self.compressing) {
            if rng.up_to(1) == 0 {
                self.compressing.push(t);
                continue;
            }
            let late = self.unloading && self.answered_unloading;
            match engine.handle_compressed(t.id, t.body.len() / 10 + 20, now) {
                Start::No => {}
                Start::Ordinary => self.started.push((t, false, late)),
                Start::Outliving => self.started.push((t, true, late)),
            }
        }
    }

    /// The collector (always up) answers some of the requests started.
    fn answer_some(
        &mut self,
        engine: &mut Engine,
        rng: &mut Rng,
        now: u64,
        received: &mut HashMap<String, (String, u32)>,
    ) {
        for (t, outlives, late) in std::mem::take(&mut self.started) {
            if rng.up_to(2) == 0 {
                self.started.push((t, outlives, late));
                continue;
            }
            receive(&t, received);
            self.answered_unloading |= self.unloading;
            engine.handle_outcome(t.id, Outcome::status(200), now);
        }
    }

    /// The page is gone: requests that outlive it and started in time reach the collector,
    /// those started late are failed by the browser, the others are cancelled, and bodies
    /// still compressing never leave. Returns how many were started late.
    fn gone(&mut self, received: &mut HashMap<String, (String, u32)>) -> usize {
        let mut late_ones = 0;
        for (t, outlives, late) in self.started.drain(..) {
            late_ones += usize::from(late && outlives);
            if outlives && !late {
                receive(&t, received);
            }
        }
        *self = Wire::default();
        late_ones
    }
}

/// The page cases' config: no request times out, and the queue holds every burst.
fn page_config() -> Config {
    let mut config = Config::new("https://collector.example/batch/");
    config.api_key = "phc_sim".into();
    config.request_timeout_ms = 600_000;
    config.max_queue_events = 100_000;
    config.max_queue_bytes = 64 << 20;
    config
}

/// A page's engine (`id` seeds it) on a `host`, its storage open at `now`.
fn page_engine(config: &Config, host: HostFeatures, id: u64, now: u64) -> Engine {
    let mut e = Engine::new(config.clone(), id).unwrap();
    e.handle_host_features(host);
    e.handle_storage_opened(true, now);
    e
}

/// The collector takes in `t`: each event's uuid, with its timestamp, and how often.
fn receive(t: &Transmit, received: &mut HashMap<String, (String, u32)>) {
    for (u, ts) in uuids_and_timestamps(&common::wire_text(t)) {
        received.entry(u).or_insert((ts, 0)).1 += 1;
    }
}
