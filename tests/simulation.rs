//! A simulated hour of faults: the engine against a collector that answers at random.
//!
//! Each seed picks a config and drives thousands of captures, flushes, page-hides and a final
//! shutdown through the engine, with a fake clock. The collector answers 2xx, 413, 429 with
//! `Retry-After` (seconds or an HTTP-date), 503, accept-then-500, a network error, or never (a
//! stall the engine must time out). Some events are poisoned: the collector refuses (400) any
//! body that holds one, as PostHog's capture refuses a whole request for one bad event. After
//! every step the invariants are checked:
//!
//! - every captured event ends delivered or dropped with a reason, exactly once, never lost;
//! - no good event is dropped because a poisoned one shared its batch: only poisoned events
//!   are dropped as rejected;
//! - a delivered event reached the collector, and its body kept the capture timestamp;
//! - each attempt's `sent_at` is the time it was sent;
//! - nothing is sent before a `Retry-After` deadline;
//! - never more than `maxInFlight` ordinary requests, never more than 64 KiB of keepalive
//!   bodies in flight;
//! - held events and bytes stay within `maxQueueEvents` / `maxQueueBytes`;
//! - duplicates on the collector only for events whose earlier receipt went unacknowledged;
//! - every flush completes with exactly the events captured before it;
//! - the engine never asks to be woken in the past (no busy loop).
//!
//! `SPOOL_SIM_SEEDS` sets the number of seeds (default 200); `SPOOL_SIM_EVENTS` the events per
//! seed (default 2,000). Run with `--nocapture` to see the totals.

mod common;

use std::collections::{HashMap, HashSet};

use common::write_iso8601;
use spool::engine::{
    BatchId, BatchMode, Config, DropReason, Engine, EventInput, FlushId, FlushReport, HostFeatures,
    Notice, Outcome, PageEvent, Path, RetryAfter, Rng, Settlement, TransmitId, Uuid,
    HOST_CONNECTIONS, KEEPALIVE_QUOTA_BYTES, MAX_RETRY_AFTER_MS,
};

const T0: u64 = 1_700_000_000_000;

/// What the simulated collector does with one request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Fate {
    Ok,
    /// The body holds a poisoned event: 400, whatever else happens.
    Poisoned,
    TooLarge,
    RetryAfterSeconds,
    RetryAfterDate,
    Unavailable,
    AcceptedThen500,
    NetworkError,
    Stall,
}

const FATES: [(Fate, u64); 8] = [
    (Fate::Ok, 64),
    (Fate::TooLarge, 2),
    (Fate::RetryAfterSeconds, 4),
    (Fate::RetryAfterDate, 3),
    (Fate::Unavailable, 10),
    (Fate::AcceptedThen500, 5),
    (Fate::NetworkError, 8),
    (Fate::Stall, 4),
];

impl Fate {
    fn pick(rng: &mut Rng) -> Fate {
        common::pick_weighted(&FATES, rng)
    }

    /// Whether the collector stored the body (a 2xx, or a lost acknowledgment).
    fn received(self) -> bool {
        matches!(self, Fate::Ok | Fate::AcceptedThen500 | Fate::Stall)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Settled {
    Delivered,
    Dropped,
}

struct InFlight {
    keepalive: bool,
    /// An ordinary request with `keepalive: true`: it takes keepalive quota too.
    outlives: bool,
    bytes: usize,
    uuids: Vec<Uuid>,
    fate: Fate,
}

/// A pending answer from the collector.
struct Answer {
    at: u64,
    id: TransmitId,
    outcome: Outcome,
    /// A 2xx: the events' receipt is acknowledged if the engine takes the answer.
    acks: bool,
}

/// A pack the host's compressor has not answered yet.
struct PendingPack {
    at: u64,
    batch: BatchId,
    wire: Option<Vec<u8>>,
    copy: Option<Vec<u8>>,
}

/// Totals over all seeds, printed at the end.
#[derive(Default, Debug)]
struct Totals {
    events: u64,
    refused_at_capture: u64,
    attempts: u64,
    keepalive_attempts: u64,
    faults: HashMap<&'static str, u64>,
    late_answers_ignored: u64,
    duplicates: u64,
    delivered: u64,
    dropped: HashMap<&'static str, u64>,
    flushes: u64,
    page_hides: u64,
    beacons_refused: u64,
    violations: u64,
    /// Poisoned events dropped as rejected, each alone.
    poisoned_rejected: u64,
}

struct Sim {
    engine: Engine,
    config: Config,
    rng: Rng,
    now: u64,
    /// Capture timestamps of accepted events, as rendered in bodies.
    captured: HashMap<Uuid, String>,
    settled: HashMap<Uuid, Settled>,
    /// Accepted and not yet settled: what a flush called now waits for.
    unsettled: HashSet<Uuid>,
    /// Receipts at the collector, and how many of them the engine took as acknowledged.
    received: HashMap<Uuid, u32>,
    acked: HashMap<Uuid, u32>,
    in_flight: HashMap<TransmitId, InFlight>,
    answers: Vec<Answer>,
    /// No request may leave before this (the strictest Retry-After answered so far).
    gate: u64,
    flushes: HashMap<FlushId, HashSet<Uuid>>,
    shutdown_done: bool,
    /// Events the collector refuses wherever they are.
    poisoned: HashSet<Uuid>,
    /// The page is on the collector's origin (a third of the seeds).
    same_origin: bool,
    /// The host's compressor answers each pack after up to this many ms (0: at once), in
    /// half of the seeds that pack: meanwhile batches are sent, answered, split and packed
    /// again.
    pack_delay_ms: u64,
    packs: Vec<PendingPack>,
    /// `beforeunload` fired, and neither `pagehide` nor a change of visibility since.
    navigating: bool,
}

impl Sim {
    fn new(seed: u64) -> Sim {
        let mut rng = Rng::new(seed);
        let mut config = Config::new("http://127.0.0.1:1/batch/");
        config.api_key = "phc_sim".into();
        config.batch_mode =
            [BatchMode::Linger, BatchMode::Auto, BatchMode::Off][rng.up_to(2) as usize];
        config.flush_interval_ms = 50 + rng.up_to(3000);
        config.max_batch_events = 1 + rng.up_to(199) as usize;
        config.max_batch_bytes = 2_000 + rng.up_to(80_000) as usize;
        config.max_queue_events = 50 + rng.up_to(3000) as usize;
        config.max_queue_bytes = 20_000 + rng.up_to(1_000_000) as usize;
        config.max_attempts = 1 + rng.up_to(9) as u32;
        config.initial_backoff_ms = 10 + rng.up_to(1000);
        config.max_backoff_ms = config.initial_backoff_ms + rng.up_to(30_000);
        config.max_in_flight = 1 + rng.up_to(7) as usize;
        config.request_timeout_ms = 500 + rng.up_to(5000);
        let mut engine = Engine::new(config.clone(), seed).expect("valid config");
        engine.report_settlements(true);
        // The page is on the collector's origin in a third of the seeds.
        let same_origin = seed % 3 == 0;
        engine.handle_host_features(HostFeatures {
            deferred: false,
            compress: seed % 2 == 0,
            // Ordinary requests outlive the page where they can, in half the seeds.
            keepalive: seed % 4 < 2,
            same_origin,
            keepalive_after_unload: false,
            // Its compression warmed up at the first answer, as in a page.
            page_close: true,
        });
        let pack_delay_ms = match seed % 4 {
            0 => 1 + rng.up_to(2_000),
            _ => 0,
        };
        Sim {
            same_origin,
            pack_delay_ms,
            packs: Vec::new(),
            navigating: false,
            engine,
            config,
            rng,
            now: T0,
            captured: HashMap::new(),
            settled: HashMap::new(),
            unsettled: HashSet::new(),
            received: HashMap::new(),
            acked: HashMap::new(),
            in_flight: HashMap::new(),
            answers: Vec::new(),
            gate: 0,
            flushes: HashMap::new(),
            shutdown_done: false,
            poisoned: HashSet::new(),
        }
    }

    fn capture(&mut self, i: u64, t: &mut Totals) {
        // One event in 100 is poisoned.
        let poison = self.rng.up_to(99) == 0;
        let props = if poison {
            format!("{{\"i\":{i},\"poison\":true}}")
        } else if self.rng.up_to(50) == 0 {
            // Now and then an event too large for any batch.
            format!(
                "{{\"i\":{i},\"pad\":\"{}\"}}",
                "x".repeat(self.config.max_batch_bytes)
            )
        } else {
            format!("{{\"i\":{i},\"path\":\"/checkout\"}}")
        };
        // Some captures name a past timestamp, as a caller replaying events would.
        let ts = if self.rng.up_to(4) == 0 {
            Some(self.now - self.rng.up_to(60_000))
        } else {
            None
        };
        let mut event = EventInput::new("sim_event").properties(&props);
        if let Some(ts) = ts {
            event = event.timestamp_ms(ts);
        }
        t.events += 1;
        match self.engine.capture(event, self.now) {
            Ok(uuid) => {
                let mut iso = String::new();
                write_iso8601(&mut iso, ts.unwrap_or(self.now));
                assert!(
                    self.captured.insert(uuid, iso).is_none() && self.unsettled.insert(uuid),
                    "uuid minted twice"
                );
                if poison {
                    self.poisoned.insert(uuid);
                }
            }
            Err(_) => t.refused_at_capture += 1,
        }
    }

    /// Drains the engine's requests and notices, checking each.
    fn drain(&mut self, t: &mut Totals) {
        // Notices first: an abort frees its slot before the retry it made room for is sent.
        self.drain_notices(t);
        while let Some(tx) = self.engine.poll_transmit(self.now) {
            if tx.path == Path::Beacon {
                // The browser's beacon budget is spent: every beacon is refused, and its
                // events wait (stored) until the page is shown again.
                assert!(self
                    .engine
                    .handle_outcome(tx.id, Outcome::Refused, self.now));
                t.beacons_refused += 1;
                continue;
            }
            t.attempts += 1;
            assert!(
                !(self.navigating && self.same_origin)
                    || self.in_flight.len() + 1 < HOST_CONNECTIONS,
                "{} requests in flight to the page's host as it navigates, and one more",
                self.in_flight.len()
            );
            assert!(
                self.now >= self.gate,
                "sent at {} before Retry-After {}",
                self.now,
                self.gate
            );
            let mut sent_at = String::new();
            write_iso8601(&mut sent_at, self.now);
            // A body packed ahead carries no `sent_at`; one made now carries the send time.
            let stamp = match &tx.query {
                Some(q) => q == &format!("_={}", self.now),
                None => tx.body.ends_with(&format!("\"sent_at\":\"{sent_at}\"}}")),
            };
            assert!(
                stamp,
                "sent_at is the send time, in the body or, packed, the URL"
            );
            let text = common::wire_text(&tx);
            let uuids = parse_events(&text)
                .into_iter()
                .map(|(ts, uuid)| {
                    let uuid = Uuid::parse(uuid).expect("uuid in body");
                    let captured = self
                        .captured
                        .get(&uuid)
                        .expect("only captured events are sent");
                    assert_eq!(captured, ts, "body keeps the capture timestamp");
                    assert!(
                        !self.settled.contains_key(&uuid),
                        "a settled event is sent again"
                    );
                    uuid
                })
                .collect::<Vec<_>>();
            assert_eq!(uuids.len(), tx.events);
            assert!(
                tx.body.len() <= self.config.max_batch_bytes,
                "body over maxBatchBytes"
            );
            let fate = if uuids.iter().any(|u| self.poisoned.contains(u)) {
                Fate::Poisoned
            } else {
                Fate::pick(&mut self.rng)
            };
            *t.faults.entry(fate_name(fate)).or_default() += u64::from(fate != Fate::Ok);
            if fate.received() {
                for u in &uuids {
                    let n = self.received.entry(*u).or_default();
                    *n += 1;
                    if *n > 1 {
                        t.duplicates += 1;
                    }
                }
            }
            if tx.path == Path::Keepalive {
                t.keepalive_attempts += 1;
            }
            let slow = self.rng.up_to(10) == 0;
            let delay = 1 + self.rng.up_to(if slow { 8000 } else { 400 });
            let outcome = match fate {
                Fate::Ok => Some(Outcome::status(200)),
                Fate::Poisoned => Some(Outcome::status(400)),
                Fate::TooLarge => Some(Outcome::status(413)),
                Fate::Unavailable => Some(Outcome::status(503)),
                Fate::AcceptedThen500 => Some(Outcome::status(500)),
                Fate::NetworkError => Some(Outcome::NetworkError("connection reset".into())),
                Fate::RetryAfterSeconds => Some(Outcome::Response {
                    status: 429,
                    retry_after: RetryAfter::parse(&(self.rng.up_to(5)).to_string()),
                    body: None,
                }),
                Fate::RetryAfterDate => {
                    // Dated a few seconds after the answer arrives, at whole-second precision.
                    let date = http_date(self.now + delay + self.rng.up_to(6000));
                    Some(Outcome::Response {
                        status: 503,
                        retry_after: RetryAfter::parse(&date),
                        body: None,
                    })
                }
                Fate::Stall => None,
            };
            if let Some(outcome) = outcome {
                let acks = fate == Fate::Ok;
                self.answers.push(Answer {
                    at: self.now + delay,
                    id: tx.id,
                    outcome,
                    acks,
                });
            }
            self.in_flight.insert(
                tx.id,
                InFlight {
                    keepalive: tx.path == Path::Keepalive,
                    outlives: tx.outlives,
                    bytes: tx.wire_len(),
                    uuids,
                    fate,
                },
            );
        }
        if self.drain_notices(t) {
            // A pack back may let a batch go (the page hidden): drained again.
            return self.drain(t);
        }
        self.check();
    }

    /// Handles the notices; whether a pack came back among them.
    fn drain_notices(&mut self, t: &mut Totals) -> bool {
        let mut packed = false;
        while let Some(n) = self.engine.poll_notice() {
            match n {
                // Half the seeds' hosts pack batches ahead; the compressor answers at once,
                // or (half of those) after a while.
                Notice::Pack { batch, body, lines } => {
                    let (wire, copy) = common::pack(body, lines);
                    if self.pack_delay_ms == 0 {
                        self.engine.handle_packed(batch, wire, copy, self.now);
                        packed = true;
                    } else {
                        let at = self.now + self.rng.up_to(self.pack_delay_ms);
                        self.packs.push(PendingPack {
                            at,
                            batch,
                            wire,
                            copy,
                        });
                    }
                }
                Notice::ReadStored | Notice::WriteStored { .. } | Notice::RemoveStored => {
                    unreachable!("the simulated page keeps no copies")
                }
                Notice::Settled { settlement, uuids } => {
                    for u in uuids {
                        let how = match settlement {
                            Settlement::Delivered => Settled::Delivered,
                            Settlement::Dropped(_) => Settled::Dropped,
                        };
                        if settlement == Settlement::Dropped(DropReason::Rejected(400)) {
                            assert!(
                                self.poisoned.contains(&u),
                                "a good event was dropped because a poisoned one shared its batch"
                            );
                            t.poisoned_rejected += 1;
                        }
                        assert!(self.captured.contains_key(&u), "settled an unknown event");
                        assert!(self.settled.insert(u, how).is_none(), "event settled twice");
                        self.unsettled.remove(&u);
                        let acked = self.acked.get(&u).copied().unwrap_or(0);
                        match how {
                            Settled::Delivered => {
                                assert_eq!(acked, 1, "delivered without an acknowledged receipt")
                            }
                            Settled::Dropped => assert_eq!(acked, 0, "dropped after delivery"),
                        }
                    }
                }
                Notice::FlushComplete(FlushReport {
                    id,
                    delivered,
                    dropped,
                }) => {
                    let waited = self.flushes.remove(&id).expect("known flush");
                    assert_eq!(
                        delivered + dropped,
                        waited.len() as u64,
                        "flush counted its own events"
                    );
                    let d = waited
                        .iter()
                        .filter(|u| self.settled.get(u) == Some(&Settled::Delivered))
                        .count();
                    assert_eq!(d as u64, delivered);
                    assert!(
                        waited.iter().all(|u| self.settled.contains_key(u)),
                        "flush completed early"
                    );
                    t.flushes += 1;
                }
                Notice::Abort(id) => {
                    // The shell aborts the fetch; sometimes its answer still arrives and must be ignored.
                    self.in_flight.remove(&id);
                }
                Notice::ShutdownComplete { .. } => self.shutdown_done = true,
                Notice::QueueOverflow { .. } => {}
            }
        }
        packed
    }

    fn check(&self) {
        let ordinary = self.in_flight.values().filter(|f| !f.keepalive).count();
        assert!(
            ordinary <= self.config.max_in_flight,
            "{ordinary} requests in flight"
        );
        let ka: usize = self
            .in_flight
            .values()
            .filter(|f| f.keepalive || f.outlives)
            .map(|f| f.bytes)
            .sum();
        assert!(
            ka <= KEEPALIVE_QUOTA_BYTES,
            "{ka} keepalive bytes in flight"
        );
        let s = self.engine.stats();
        assert!(
            (s.queued + s.in_flight) as usize <= self.config.max_queue_events,
            "queue over its event bound"
        );
        assert!(
            self.engine.held_bytes() <= self.config.max_queue_bytes,
            "queue over its byte bound"
        );
        let held = self.captured.len() - self.settled.len();
        assert_eq!(
            (s.queued + s.in_flight) as usize,
            held,
            "an event is neither held nor settled"
        );
    }

    fn answer(&mut self, a: Answer, t: &mut Totals) {
        let known = self.in_flight.remove(&a.id);
        if let Outcome::Response {
            retry_after: Some(ra),
            ..
        } = &a.outcome
        {
            if known.is_some() {
                let until = match *ra {
                    RetryAfter::Delay(ms) => self.now + ms.min(MAX_RETRY_AFTER_MS),
                    RetryAfter::At(at) => at.clamp(self.now, self.now + MAX_RETRY_AFTER_MS),
                };
                self.gate = self.gate.max(until);
            }
        }
        let taken = self.engine.handle_outcome(a.id, a.outcome, self.now);
        assert_eq!(
            taken,
            known.is_some(),
            "engine took an answer to a request it gave up"
        );
        if !taken {
            t.late_answers_ignored += 1;
        }
        if let (true, Some(f)) = (a.acks && taken, known) {
            assert_eq!(f.fate, Fate::Ok);
            for u in f.uuids {
                *self.acked.entry(u).or_default() += 1;
            }
        }
    }

    fn run(&mut self, events: u64, t: &mut Totals) {
        let mut next_capture = self.now;
        let mut captured = 0;
        let mut shutting_down = false;
        let mut steps = 0u64;
        loop {
            steps += 1;
            assert!(steps < 10_000_000, "simulation did not finish");
            if captured == events && !shutting_down {
                shutting_down = true;
                let deadline = self.now + [500, 5_000, 60_000][self.rng.up_to(2) as usize];
                self.engine.shutdown(self.now, deadline);
                self.drain(t);
            }
            if self.shutdown_done {
                // Late answers after shutdown are ignored too.
                for a in std::mem::take(&mut self.answers) {
                    self.now = self.now.max(a.at);
                    self.answer(a, t);
                }
                break;
            }
            let next_answer = self.answers.iter().map(|a| a.at).min();
            let next_pack = self.packs.iter().map(|p| p.at).min();
            let wake = self.engine.poll_timeout();
            let capture_at = (captured < events).then_some(next_capture);
            let soonest = [next_answer, next_pack, wake, capture_at];
            let Some(at) = soonest.into_iter().flatten().min() else {
                panic!("stuck: nothing to wait for, shutdown not complete");
            };
            self.now = self.now.max(at);
            if next_pack == Some(at) {
                let i = self.packs.iter().position(|p| p.at == at).unwrap();
                let p = self.packs.swap_remove(i);
                self.engine.handle_packed(p.batch, p.wire, p.copy, self.now);
                self.drain(t);
            } else if next_answer == Some(at) {
                let i = self.answers.iter().position(|a| a.at == at).unwrap();
                let a = self.answers.swap_remove(i);
                self.answer(a, t);
            } else if wake == Some(at) {
                self.engine.handle_timeout(self.now);
                self.drain(t);
                // Handled and drained, nothing is due any more: the shell's timer never spins.
                if let Some(next) = self.engine.poll_timeout() {
                    assert!(next > self.now, "asked to wake at {next}, now {}", self.now);
                }
                continue;
            } else {
                self.capture(captured, t);
                captured += 1;
                // Bursts, steady trickles and long pauses.
                next_capture = self.now
                    + match self.rng.up_to(99) {
                        0..=59 => 0,
                        60..=94 => self.rng.up_to(200),
                        _ => self.rng.up_to(20_000),
                    };
                match self.rng.up_to(999) {
                    0..=9 => {
                        let id = self.engine.flush(self.now);
                        self.flushes.insert(id, self.unsettled.clone());
                    }
                    10..=12 => {
                        t.page_hides += 1;
                        self.navigating = false;
                        self.engine.handle_page(PageEvent::Hidden, self.now);
                    }
                    13..=20 => {
                        self.navigating = false;
                        self.engine.handle_page(PageEvent::Visible, self.now);
                    }
                    23..=24 => {
                        // A navigation starts (or a `beforeunload` is cancelled: shown again later).
                        t.page_hides += 1;
                        self.navigating = true;
                        self.engine.handle_page(PageEvent::BeforeUnload, self.now);
                    }
                    21..=22 => {
                        self.navigating = false;
                        // `pagehide` into the back/forward cache, shown again later: its
                        // ordinary requests given up and sent again keepalive.
                        t.page_hides += 1;
                        let _ = self.engine.handle_page(PageEvent::PageHide, self.now);
                    }
                    _ => {}
                }
            }
            self.drain(t);
        }
        // Every event accepted ended delivered or dropped, exactly once.
        assert_eq!(self.settled.len(), self.captured.len(), "events lost");
        assert!(self.flushes.is_empty(), "a flush never completed");
        let s = self.engine.stats();
        let delivered = self
            .settled
            .values()
            .filter(|s| **s == Settled::Delivered)
            .count() as u64;
        assert_eq!(s.delivered, delivered);
        assert_eq!(s.queued + s.in_flight, 0);
        t.delivered += s.delivered;
        for (k, v) in [
            ("queueFull", s.dropped.queue_full),
            ("tooLarge", s.dropped.too_large),
            ("rejected", s.dropped.rejected),
            ("attemptsExhausted", s.dropped.attempts_exhausted),
            ("shutdown", s.dropped.shutdown),
        ] {
            *t.dropped.entry(k).or_default() += v;
        }
        // Everything the engine accounted for: the accepted events, and those refused at
        // capture and counted as dropped.
        assert_eq!(
            s.delivered + s.dropped.total(),
            self.captured.len() as u64 + s.dropped.queue_full + s.dropped.too_large
        );
    }
}

fn fate_name(f: Fate) -> &'static str {
    match f {
        Fate::Ok => "ok",
        Fate::Poisoned => "400 poisoned",
        Fate::TooLarge => "413",
        Fate::RetryAfterSeconds => "429 Retry-After seconds",
        Fate::RetryAfterDate => "503 Retry-After date",
        Fate::Unavailable => "503",
        Fate::AcceptedThen500 => "accepted then 500",
        Fate::NetworkError => "network error",
        Fate::Stall => "stall (timeout)",
    }
}

/// A PostHog batch body, as far as the invariants read it.
#[derive(serde::Deserialize)]
struct Body<'a> {
    #[serde(borrow)]
    batch: Vec<BodyEvent<'a>>,
}

#[derive(serde::Deserialize)]
struct BodyEvent<'a> {
    timestamp: &'a str,
    uuid: &'a str,
}

/// The (timestamp, uuid) pairs of a PostHog batch body written by the engine, parsed.
fn parse_events(body: &str) -> Vec<(&str, &str)> {
    let body: Body = serde_json::from_str(body).expect("the body is a PostHog batch");
    body.batch
        .into_iter()
        .map(|e| (e.timestamp, e.uuid))
        .collect()
}

/// An IMF-fixdate for `ms`, e.g. `Tue, 14 Nov 2023 22:13:20 GMT`.
fn http_date(ms: u64) -> String {
    let mut iso = String::new();
    write_iso8601(&mut iso, ms);
    let days = ms / 86_400_000;
    let weekday = ["Thu", "Fri", "Sat", "Sun", "Mon", "Tue", "Wed"][(days % 7) as usize];
    let month = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ][iso[5..7].parse::<usize>().unwrap() - 1];
    format!(
        "{weekday}, {} {month} {} {} GMT",
        &iso[8..10],
        &iso[0..4],
        &iso[11..19]
    )
}

fn env(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

#[test]
fn http_date_helper_matches_the_engines_parser() {
    let ms = 1_700_000_000_000;
    assert_eq!(http_date(ms), "Tue, 14 Nov 2023 22:13:20 GMT");
    assert_eq!(RetryAfter::parse(&http_date(ms)), Some(RetryAfter::At(ms)));
}

#[test]
fn random_faults_never_lose_duplicate_or_rush_an_event() {
    let seeds = env("SPOOL_SIM_SEEDS", 200);
    let events = env("SPOOL_SIM_EVENTS", 2_000);
    let mut totals = Totals::default();
    for seed in 0..seeds {
        let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            let mut t = Totals::default();
            Sim::new(seed).run(events, &mut t);
            t
        }));
        match result {
            Ok(t) => merge(&mut totals, t),
            Err(e) => {
                totals.violations += 1;
                let msg = e
                    .downcast_ref::<String>()
                    .cloned()
                    .or_else(|| e.downcast_ref::<&str>().map(|s| s.to_string()))
                    .unwrap_or_default();
                eprintln!("seed {seed}: violation: {msg}");
            }
        }
    }
    println!("simulation: {seeds} seeds x {events} events");
    println!("{totals:#?}");
    assert_eq!(
        totals.violations, 0,
        "violations in {} seeds",
        totals.violations
    );
    assert!(
        totals.poisoned_rejected > 0,
        "poisoned events were captured and refused"
    );
}

fn merge(into: &mut Totals, t: Totals) {
    into.events += t.events;
    into.refused_at_capture += t.refused_at_capture;
    into.attempts += t.attempts;
    into.keepalive_attempts += t.keepalive_attempts;
    into.late_answers_ignored += t.late_answers_ignored;
    into.duplicates += t.duplicates;
    into.delivered += t.delivered;
    into.flushes += t.flushes;
    into.page_hides += t.page_hides;
    into.beacons_refused += t.beacons_refused;
    into.poisoned_rejected += t.poisoned_rejected;
    for (k, v) in t.faults {
        *into.faults.entry(k).or_default() += v;
    }
    for (k, v) in t.dropped {
        *into.dropped.entry(k).or_default() += v;
    }
}
