//! The edge simulated: thousands of Worker requests through the [`Coalescer`] and its windows'
//! engines, against a collector that answers at random, on a fake clock.
//!
//! Each seed picks a config (window, batch size, subrequest limit, deadline, attempts) and runs
//! one isolate through a stream of requests arriving a few at a time. Each leader carries out
//! its window as the edge shell does (wake, send what `poll_transmit` says, abort what
//! `poll_abort` says, sleep until `poll_timeout`, hand back the answers). Faults:
//!
//! - the collector answers 2xx, 400, 429 with a `Retry-After` of up to 8 s (several windows),
//!   500, 503, accept-then-500, a network error, or never (a stall the engine times out);
//! - a leader's `waitUntil` is cancelled, before its window goes or during its delivery, and
//!   the coalescer is told or not (then its grace runs out);
//! - the isolate is evicted: what it held is a counted loss, and a new isolate takes over;
//! - the subrequest limit is small enough that windows run out of it.
//!
//! After every step the invariants are checked:
//!
//! - none lost: every event is delivered, dropped with a reason, still held by the isolate, or
//!   lost with an evicted isolate (counted), and the counts add up;
//! - none settled twice, and each request's event keeps one uuid across windows;
//! - a delivered event reached the collector;
//! - no request leaves before a `Retry-After` deadline the isolate has taken;
//! - no window makes more requests than its leader's subrequest limit.
//!
//! `SPOOL_EDGE_SIM_SEEDS` sets the seeds (default 12), `SPOOL_EDGE_SIM_REQUESTS` the Worker
//! requests per seed (default 3,000). Run with `--nocapture` to see the totals.

mod common;

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap, HashSet};

use spool::engine::{
    BatchMode, Coalescer, Config, EdgeConfig, Outcome, RequestId, RetryAfter, Rng, Settlement,
    TransmitId, Uuid, WindowId,
};

const T0: u64 = 1_700_000_000_000;

/// What the simulated collector does with one request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Fate {
    Ok,
    BadRequest,
    RetryAfter,
    Unavailable,
    AcceptedThen500,
    NetworkError,
    Stall,
}

const FATES: [(Fate, u64); 7] = [
    (Fate::Ok, 70),
    (Fate::BadRequest, 2),
    (Fate::RetryAfter, 4),
    (Fate::Unavailable, 10),
    (Fate::AcceptedThen500, 4),
    (Fate::NetworkError, 6),
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

    fn name(self) -> &'static str {
        match self {
            Fate::Ok => "ok",
            Fate::BadRequest => "400",
            Fate::RetryAfter => "429 Retry-After",
            Fate::Unavailable => "503",
            Fate::AcceptedThen500 => "accepted then 500",
            Fate::NetworkError => "network error",
            Fate::Stall => "stall",
        }
    }
}

/// Something due at a time on the fake clock.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Step {
    /// Request `n` arrives at the isolate.
    Arrive(u64),
    /// Request `n`'s handler answered: its event is ready.
    Ready(u64),
    /// A leader's timer (or an answer) wakes its window's loop.
    Wake { isolate: u64, window: u64 },
    /// The collector's answer to a request reaches the leader.
    Answer { isolate: u64, window: u64, id: u64 },
    /// The runtime cancels a leader's `waitUntil`.
    Cancel {
        isolate: u64,
        window: u64,
        told: bool,
    },
}

/// A leader's `waitUntil`: alive until its window finishes or it is cancelled.
struct Leader {
    request: u64,
    /// When its window is due to go.
    due: u64,
    /// Cancelled by the runtime: its timers and answers never come.
    dead: bool,
    /// Requests of its window made so far.
    sent: u32,
    /// The collector's answer to each request in flight, by transmit id.
    answers: HashMap<u64, Outcome>,
}

/// Totals over all seeds, printed at the end.
#[derive(Default, Debug)]
struct Totals {
    requests: u64,
    windows: u64,
    events: u64,
    collector_requests: u64,
    faults: HashMap<&'static str, u64>,
    retry_after_answers: u64,
    cancelled_leaders: u64,
    cancelled_told: u64,
    replaced_leaders: u64,
    exhausted_windows: u64,
    handed_back: u64,
    evictions: u64,
    delivered: u64,
    dropped: u64,
    dropped_by_reason: HashMap<&'static str, u64>,
    evicted_loss: u64,
    duplicates_on_collector: u64,
    violations: u64,
}

struct Sim {
    seed: u64,
    rng: Rng,
    config: EdgeConfig,
    now: u64,
    steps: BinaryHeap<Reverse<(u64, u64, Step)>>,
    next_step: u64,
    /// The isolate (its number: a new one after an eviction) and its coalescer.
    isolate: u64,
    coalescer: Coalescer,
    leaders: HashMap<u64, Leader>,
    /// Events the isolate took in (ready and accepted), since it started.
    isolate_events: u64,
    /// Each request's event: its uuid once seen, and how it settled.
    uuid_of: HashMap<u64, Uuid>,
    request_of: HashMap<Uuid, u64>,
    settled: HashMap<Uuid, Settlement>,
    /// Events settled without a uuid seen on the wire (refused at capture, abandoned unsent).
    settled_unseen: u64,
    /// Every event the collector stored, by uuid.
    received: HashMap<Uuid, u32>,
    /// The latest `Retry-After` deadline the isolate has taken.
    hold_known: u64,
    totals: Totals,
    violations: Vec<String>,
}

impl Sim {
    fn new(seed: u64) -> Sim {
        let mut rng = Rng::new(seed);
        let mut exporter = Config::new("https://collector.example/batch/");
        exporter.api_key = "phc_sim".into();
        exporter.batch_mode = match rng.up_to(5) {
            0 => BatchMode::Auto,
            _ => BatchMode::Linger,
        };
        exporter.flush_interval_ms = [50, 200, 1000][rng.up_to(2) as usize];
        exporter.max_batch_events = [3, 10, 100][rng.up_to(2) as usize];
        exporter.max_attempts = [3, 6, 10][rng.up_to(2) as usize];
        exporter.initial_backoff_ms = 50;
        exporter.max_backoff_ms = 2000;
        exporter.request_timeout_ms = 1000;
        let mut config = EdgeConfig::new(exporter);
        config.subrequest_limit = [4, 10, 50][rng.up_to(2) as usize];
        config.deadline_ms = [3000, 10_000, 25_000][rng.up_to(2) as usize];
        let coalescer = Sim::isolate(&config, seed, 0);
        Sim {
            seed,
            rng,
            config,
            now: T0,
            steps: BinaryHeap::new(),
            next_step: 0,
            isolate: 0,
            coalescer,
            leaders: HashMap::new(),
            isolate_events: 0,
            uuid_of: HashMap::new(),
            request_of: HashMap::new(),
            settled: HashMap::new(),
            settled_unseen: 0,
            received: HashMap::new(),
            hold_known: 0,
            totals: Totals::default(),
            violations: Vec::new(),
        }
    }

    fn isolate(config: &EdgeConfig, seed: u64, n: u64) -> Coalescer {
        let mut c = Coalescer::new(config.clone(), seed.wrapping_mul(31).wrapping_add(n)).unwrap();
        c.report_settlements(true);
        c
    }

    fn schedule(&mut self, at: u64, step: Step) {
        self.next_step += 1;
        self.steps.push(Reverse((at, self.next_step, step)));
    }

    fn violate(&mut self, what: String) {
        self.totals.violations += 1;
        if self.violations.len() < 20 {
            self.violations.push(format!(
                "seed {} at +{} ms: {what}",
                self.seed,
                self.now - T0
            ));
        }
    }

    /// Runs `requests` Worker requests, then quiet requests until the isolate holds nothing
    /// (or gives up and evicts it: the rest is a counted loss).
    fn run(&mut self, requests: u64) {
        let mut at = T0;
        for n in 0..requests {
            // A few at a time, with quiet gaps now and then that let windows close.
            at += match self.rng.up_to(20) {
                0 => 1500 + self.rng.up_to(3000),
                _ => self.rng.up_to(30),
            };
            self.schedule(at, Step::Arrive(n));
        }
        let mut n = requests;
        loop {
            while let Some(Reverse((at, _, step))) = self.steps.pop() {
                self.now = self.now.max(at);
                self.step(step);
                self.check();
            }
            if self.coalescer.held_events() == 0 || n > requests + 200 {
                break;
            }
            // Quiet traffic picks up what was handed back or left waiting.
            self.schedule(self.now + 2000, Step::Arrive(n));
            n += 1;
        }
        self.totals.requests += n;
        let held = self.coalescer.held_events();
        if held > 0 {
            self.violate(format!(
                "{held} events still held after {} quiet requests",
                n - requests
            ));
        }
        self.evict();
        self.check();
        let missing: Vec<u64> = (0..n)
            .filter(|r| {
                self.uuid_of
                    .get(r)
                    .is_none_or(|u| !self.settled.contains_key(u))
            })
            .collect();
        let unseen = self.settled_unseen + self.totals.evicted_loss;
        if missing.len() as u64 > unseen {
            self.violate(format!(
                "{} events neither settled nor counted (e.g. request {:?})",
                missing.len() as u64 - unseen,
                missing.first()
            ));
        }
    }

    fn step(&mut self, step: Step) {
        match step {
            Step::Arrive(n) => {
                self.coalescer.arrive(RequestId(n), self.now);
                // The handler takes up to 50 ms; now and then it throws.
                let answered = self.now + self.rng.up_to(50);
                self.schedule(answered, Step::Ready(n));
                // Now and then the isolate is evicted.
                if self.rng.up_to(1500) == 0 {
                    self.evict();
                }
            }
            Step::Ready(n) => {
                self.totals.events += 1;
                let properties = format!(r#"{{"req":{n}}}"#);
                let led = self
                    .coalescer
                    .event_ready(RequestId(n), properties, self.now, self.now);
                let Ok(led) = led else {
                    self.violate(format!("request {n}'s event refused: {led:?}"));
                    return;
                };
                self.isolate_events += 1;
                if let Some(window) = led {
                    self.lead(n, window);
                }
                // A leader that will never take its window keeps it no longer than its grace.
                if let Some((w, _)) = self.coalescer.forming() {
                    let grace = self.config.leader_grace_ms;
                    if let Some(l) = self.leaders.get(&w.0) {
                        if l.dead && self.now > l.due + grace {
                            let late = self.now - l.due;
                            self.violate(format!(
                                "request {n} joined window {} whose leader is gone, {late} ms after it was due",
                                w.0
                            ));
                        }
                    }
                }
            }
            Step::Wake { isolate, window } if isolate == self.isolate => self.drive(window),
            Step::Answer {
                isolate,
                window,
                id,
            } if isolate == self.isolate => {
                let Some(leader) = self.leaders.get_mut(&window) else {
                    return;
                };
                if leader.dead {
                    return;
                }
                let Some(outcome) = leader.answers.remove(&id) else {
                    return; // aborted: the answer is never read
                };
                let w = WindowId(window);
                if let Outcome::Response {
                    retry_after: Some(ra),
                    ..
                } = &outcome
                {
                    self.hold_known = self.hold_known.max(ra.deadline(self.now));
                }
                self.coalescer
                    .handle_outcome(w, TransmitId(id), outcome, self.now);
                self.drive(window);
            }
            Step::Cancel {
                isolate,
                window,
                told,
            } if isolate == self.isolate => {
                let Some(leader) = self.leaders.get_mut(&window) else {
                    return;
                };
                if leader.dead {
                    return;
                }
                leader.dead = true;
                let request = leader.request;
                self.totals.cancelled_leaders += 1;
                if told {
                    self.totals.cancelled_told += 1;
                    self.coalescer
                        .wait_until_cancelled(RequestId(request), self.now);
                }
                self.drain_settled();
            }
            // Steps of an evicted isolate never happen.
            _ => {}
        }
    }

    /// Request `request` leads `window`: its waitUntil starts (and may be cancelled).
    fn lead(&mut self, request: u64, window: WindowId) {
        let due = self
            .coalescer
            .poll_timeout(window)
            .expect("a forming window is due");
        self.leaders.insert(
            window.0,
            Leader {
                request,
                due,
                dead: false,
                sent: 0,
                answers: HashMap::new(),
            },
        );
        if self.rng.up_to(30) == 0 {
            // Half before the window goes, half during its delivery.
            let at = match self.rng.up_to(1) {
                0 => self.now + self.rng.up_to(self.config.window_ms()),
                _ => due + self.rng.up_to(self.config.deadline_ms),
            };
            let told = self.rng.up_to(1) == 0;
            self.schedule(
                at,
                Step::Cancel {
                    isolate: self.isolate,
                    window: window.0,
                    told,
                },
            );
        }
        // The edge shell runs the first turn of the loop at once.
        self.drive(window.0);
    }

    /// One turn of a leader's loop, as the edge shell (`src/web/edge.rs`) runs it.
    fn drive(&mut self, window: u64) {
        let w = WindowId(window);
        let Some(leader) = self.leaders.get(&window) else {
            return;
        };
        if leader.dead {
            return;
        }
        self.coalescer.handle_timeout(w, self.now);
        while let Some(t) = self.coalescer.poll_transmit(w, self.now) {
            self.send(window, t.id.0, &t.body);
        }
        while let Some(id) = self.coalescer.poll_abort(w) {
            if let Some(leader) = self.leaders.get_mut(&window) {
                leader.answers.remove(&id.0);
            }
        }
        self.drain_settled();
        if self.coalescer.is_finished(w) {
            let report = self.coalescer.take_report(w);
            let leader = self.leaders.remove(&window).expect("the leader");
            self.coalescer
                .wait_until_ended(RequestId(leader.request), self.now);
            if let Some(r) = report {
                if r.subrequests != leader.sent {
                    self.violate(format!(
                        "window {window} reports {} requests, made {}",
                        r.subrequests, leader.sent
                    ));
                }
            }
            return;
        }
        if let Some(at) = self.coalescer.poll_timeout(w) {
            if at < self.now {
                self.violate(format!("window {window} asks to wake in the past ({at})"));
            }
            self.schedule(
                at.max(self.now),
                Step::Wake {
                    isolate: self.isolate,
                    window,
                },
            );
        }
    }

    /// The collector receives a request of `window`; its answer is scheduled.
    fn send(&mut self, window: u64, id: u64, body: &str) {
        self.totals.collector_requests += 1;
        if self.now < self.hold_known {
            let early = self.hold_known - self.now;
            self.violate(format!(
                "window {window} sent {early} ms before a Retry-After deadline"
            ));
        }
        let limit = self.config.subrequest_limit;
        let leader = self.leaders.get_mut(&window).expect("a live leader sends");
        leader.sent += 1;
        let sent = leader.sent;
        if sent > limit {
            self.violate(format!(
                "window {window} made {sent} requests, its leader may make {limit}"
            ));
        }
        let events = parse_events(body);
        for &(request, uuid) in &events {
            match self.uuid_of.get(&request) {
                Some(u) if *u != uuid => {
                    self.violate(format!("request {request}'s event has two uuids"))
                }
                _ => {
                    self.uuid_of.insert(request, uuid);
                    self.request_of.insert(uuid, request);
                }
            }
        }
        let fate = Fate::pick(&mut self.rng);
        *self.totals.faults.entry(fate.name()).or_default() += 1;
        if fate.received() {
            for &(_, uuid) in &events {
                let n = self.received.entry(uuid).or_default();
                *n += 1;
                if *n > 1 {
                    self.totals.duplicates_on_collector += 1;
                }
            }
        }
        let outcome = match fate {
            Fate::Ok => Outcome::status(200),
            Fate::BadRequest => Outcome::status(400),
            Fate::RetryAfter => {
                self.totals.retry_after_answers += 1;
                let seconds = 1 + self.rng.up_to(7);
                Outcome::Response {
                    status: 429,
                    retry_after: RetryAfter::parse(&seconds.to_string()),
                    body: None,
                }
            }
            Fate::Unavailable => Outcome::status(503),
            Fate::AcceptedThen500 => Outcome::status(500),
            Fate::NetworkError => Outcome::NetworkError("connection reset".into()),
            Fate::Stall => return, // never answered: the engine times it out
        };
        let latency = 5 + self.rng.up_to(300);
        let leader = self.leaders.get_mut(&window).expect("a live leader sends");
        leader.answers.insert(id, outcome);
        self.schedule(
            self.now + latency,
            Step::Answer {
                isolate: self.isolate,
                window,
                id,
            },
        );
    }

    /// Records what the isolate settled; each event once.
    fn drain_settled(&mut self) {
        while let Some((how, uuids)) = self.coalescer.poll_settled() {
            if uuids.is_empty() {
                self.settled_unseen += 1;
            }
            for uuid in uuids {
                if let Some(before) = self.settled.insert(uuid, how) {
                    self.violate(format!("{uuid} settled twice: {before:?}, then {how:?}"));
                }
                match how {
                    Settlement::Delivered => {
                        self.totals.delivered += 1;
                        if !self.received.contains_key(&uuid) {
                            self.violate(format!("{uuid} delivered, never received"));
                        }
                    }
                    Settlement::Dropped(reason) => {
                        self.totals.dropped += 1;
                        *self
                            .totals
                            .dropped_by_reason
                            .entry(reason.name())
                            .or_default() += 1;
                        if !self.request_of.contains_key(&uuid) {
                            self.settled_unseen += 1;
                        }
                    }
                }
            }
        }
    }

    /// The isolate is evicted: what it holds is lost (counted), a new isolate takes over.
    fn evict(&mut self) {
        self.drain_settled();
        let lost = self.coalescer.held_events() as u64;
        self.totals.evicted_loss += lost;
        self.totals.evictions += 1;
        let stats = self.coalescer.stats();
        self.totals.windows += stats.windows;
        self.totals.replaced_leaders += stats.replaced_leaders;
        self.totals.exhausted_windows += stats.exhausted_deliveries;
        self.totals.handed_back += stats.handed_back;
        self.isolate += 1;
        self.coalescer = Sim::isolate(&self.config, self.seed, self.isolate);
        self.leaders.clear();
        self.isolate_events = 0;
        // A new isolate knows no Retry-After.
        self.hold_known = 0;
    }

    /// None lost: the isolate's events are delivered, dropped or still held.
    fn check(&mut self) {
        let stats = self.coalescer.stats();
        let accounted = stats.delivered + stats.dropped + self.coalescer.held_events() as u64;
        if accounted != self.isolate_events {
            self.violate(format!(
                "the isolate took {} events: {} delivered + {} dropped + {} held = {accounted}",
                self.isolate_events,
                stats.delivered,
                stats.dropped,
                self.coalescer.held_events()
            ));
        }
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
    properties: Properties,
    uuid: &'a str,
}

/// The properties the simulated Worker gives each request's event.
#[derive(serde::Deserialize)]
struct Properties {
    req: u64,
}

/// `(request, uuid)` of each event in a PostHog batch body, parsed.
fn parse_events(body: &str) -> Vec<(u64, Uuid)> {
    let body: Body = serde_json::from_str(body).expect("the body is a PostHog batch");
    body.batch
        .into_iter()
        .map(|e| (e.properties.req, Uuid::parse(e.uuid).expect("a valid uuid")))
        .collect()
}

fn env(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

#[test]
fn thousands_of_worker_requests_lose_none_settle_none_twice_and_rush_no_retry_after() {
    let seeds = env("SPOOL_EDGE_SIM_SEEDS", 12);
    let requests = env("SPOOL_EDGE_SIM_REQUESTS", 3000);
    let mut totals = Totals::default();
    let mut violations = Vec::new();
    let mut configs = HashSet::new();
    for seed in 1..=seeds {
        let mut sim = Sim::new(seed);
        configs.insert((sim.config.window_ms(), sim.config.subrequest_limit));
        sim.run(requests);
        violations.append(&mut sim.violations);
        merge(&mut totals, sim.totals);
    }
    println!("edge simulation, {seeds} seeds × {requests} Worker requests: {totals:#?}");
    assert!(violations.is_empty(), "{violations:#?}");
    assert_eq!(totals.violations, 0);
    // Every event ends delivered, dropped with a reason, or lost with an evicted isolate.
    assert_eq!(
        totals.delivered + totals.dropped + totals.evicted_loss,
        totals.events,
        "{totals:#?}"
    );
    // The run exercised what it claims to.
    if seeds >= 12 && requests >= 3000 {
        assert!(totals.windows > 1000, "windows: {}", totals.windows);
        assert!(totals.cancelled_leaders > 50);
        assert!(totals.cancelled_told > 0 && totals.cancelled_told < totals.cancelled_leaders);
        assert!(
            totals.replaced_leaders > 0,
            "leaders replaced after their grace"
        );
        assert!(totals.exhausted_windows > 0, "windows out of subrequests");
        assert!(totals.handed_back > 0);
        assert!(totals.evictions > seeds, "isolates evicted mid-run");
        assert!(totals.retry_after_answers > 100);
        assert!(configs.len() > 3);
    }
}

fn merge(into: &mut Totals, t: Totals) {
    into.requests += t.requests;
    into.windows += t.windows;
    into.events += t.events;
    into.collector_requests += t.collector_requests;
    for (k, v) in t.faults {
        *into.faults.entry(k).or_default() += v;
    }
    into.retry_after_answers += t.retry_after_answers;
    into.cancelled_leaders += t.cancelled_leaders;
    into.cancelled_told += t.cancelled_told;
    into.replaced_leaders += t.replaced_leaders;
    into.exhausted_windows += t.exhausted_windows;
    into.handed_back += t.handed_back;
    into.evictions += t.evictions;
    into.delivered += t.delivered;
    into.dropped += t.dropped;
    for (k, v) in t.dropped_by_reason {
        *into.dropped_by_reason.entry(k).or_default() += v;
    }
    into.evicted_loss += t.evicted_loss;
    into.duplicates_on_collector += t.duplicates_on_collector;
    into.violations += t.violations;
}
