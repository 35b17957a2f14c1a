//! Page reloads through the engine: events captured across many page loads, a collector that
//! fails at random, spells offline, and at every reload the page going away mid-stream (its
//! requests unanswered, some of them received anyway), what it held stored and taken in by the
//! next load. Checked at the end of each seed:
//!
//! - every captured event reached the collector or was counted as dropped by some load;
//! - no attempt made while offline was spent: nothing is dropped as `attemptsExhausted`;
//! - an event reaches the collector twice only if a request holding it was unanswered at a
//!   reload (at-least-once), and always with its capture timestamp.

mod common;

use std::collections::HashMap;

use spool::engine::{Config, Engine, EventInput, Outcome, Rng, Transmit};

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
            for (u, ts) in uuids_and_timestamps(&t.body) {
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
                    engine.set_online(!offline, now);
                }
                45..=49 => {
                    // A reload: the page goes away with its requests unanswered (the ordinary
                    // ones given up and sent again keepalive).
                    let _ = engine.page_leaving(now);
                    while let Some(t) = engine.poll_transmit(now) {
                        in_flight.push(t);
                    }
                    engine.page_gone(now);
                    let stored = engine.persist(now);
                    for t in in_flight.drain(..) {
                        unanswered_at_reload += t.events;
                        // Some arrive even so (Chromium rejects them at unload all the same).
                        if !offline && rng.up_to(2) == 0 {
                            receive(&t, &mut received);
                        }
                    }
                    dropped += engine.stats().dropped.total();
                    assert_eq!(engine.stats().dropped.attempts_exhausted, 0, "seed {seed}");
                    engine = Engine::new(config.clone(), seed * 1000 + step).unwrap();
                    engine.set_online(!offline, now);
                    if let Some((text, _)) = stored {
                        common::restore(&mut engine, &text, now);
                    }
                }
                _ => {}
            }
            while let Some(t) = engine.poll_transmit(now) {
                in_flight.push(t);
            }
            // Answer some of what is in flight.
            let mut keep = Vec::new();
            for t in in_flight.drain(..) {
                if rng.up_to(3) == 0 {
                    keep.push(t);
                    continue;
                }
                let outcome = if offline {
                    Outcome::NetworkError("offline".into())
                } else {
                    receive(&t, &mut received);
                    Outcome::status(200)
                };
                engine.handle_outcome(t.id, outcome, now);
            }
            in_flight = keep;
            if let Some(at) = engine.poll_timeout() {
                if at <= now {
                    engine.handle_timeout(now);
                }
            }
            assert_eq!(engine.stats().dropped.attempts_exhausted, 0, "seed {seed}");
        }
        // Online to the end: everything left settles.
        engine.set_online(true, now);
        for t in in_flight.drain(..) {
            receive(&t, &mut received);
            engine.handle_outcome(t.id, Outcome::status(200), now);
        }
        let mut rounds = 0;
        while engine.held_events() > 0 && rounds < 10_000 {
            rounds += 1;
            now = engine.poll_timeout().unwrap_or(now + 1).max(now + 1);
            engine.handle_timeout(now);
            engine.flush(now);
            while let Some(t) = engine.poll_transmit(now) {
                receive(&t, &mut received);
                engine.handle_outcome(t.id, Outcome::status(200), now);
            }
        }
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
