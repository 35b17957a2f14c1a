//! What the engine holds in memory across outages, counted exactly by a counting global
//! allocator: the queue filled to its limits behind a collector answering 503 (its batches
//! packed ahead, as a browser's `CompressionStream` does), then drained, again and again. What
//! is live after each drain must not grow once the first outages have sized the engine's
//! buffers: anything an outage leaves behind would add up here, byte for byte.
//!
//! The browser soak (`tests/e2e/soak.test.mjs`) watches the wasm's linear memory, which only
//! ever grows to its high-water mark; this counts live bytes, so it needs no slack. Native
//! only: on wasm32 the crate sets its own allocator (talc).
#![cfg(not(target_arch = "wasm32"))]

mod common;

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicIsize, Ordering};

use spool::engine::{Config, Engine, EventInput, HostFeatures, Notice, Outcome};

/// The system allocator, counting the bytes live.
struct Counting;

static LIVE: AtomicIsize = AtomicIsize::new(0);

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        LIVE.fetch_add(layout.size() as isize, Ordering::Relaxed);
        System.alloc(layout)
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        LIVE.fetch_sub(layout.size() as isize, Ordering::Relaxed);
        System.dealloc(ptr, layout)
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        LIVE.fetch_add(
            new_size as isize - layout.size() as isize,
            Ordering::Relaxed,
        );
        System.realloc(ptr, layout, new_size)
    }
}

#[global_allocator]
static ALLOC: Counting = Counting;

const T0: u64 = 1_700_000_000_000;
const OUTAGES: usize = 12;
/// The first outage sizes the engine's buffers (its queues and maps reach their capacity).
const SETTLED_AFTER: usize = 1;

/// One turn of the host: every request answered with `status` at once, every pack done.
fn turn(e: &mut Engine, status: u16, now: u64) {
    loop {
        let mut any = false;
        while let Some(t) = e.poll_transmit(now) {
            e.handle_outcome(t.id, Outcome::status(status), now);
            any = true;
        }
        while let Some(n) = e.poll_notice() {
            if let Notice::Pack { batch, body, lines } = n {
                let (wire, copy) = common::pack(body, lines);
                e.handle_packed(batch, wire, copy, now);
                any = true;
            }
        }
        if !any {
            return;
        }
    }
}

#[test]
fn outages_leave_nothing_behind() {
    let mut config = Config::new("https://collector.example/batch/");
    config.api_key = "phc_test".into();
    config.max_queue_events = 5000;
    config.max_queue_bytes = 1 << 20;
    config.max_attempts = 100;
    config.initial_backoff_ms = 50;
    config.max_backoff_ms = 200;
    // Live bytes are counted in this process: the test's own buffers are made before the
    // first count and reused.
    let payloads: Vec<String> = (0..100)
        .map(|i| format!(r#"{{"payload":"{}"}}"#, "y".repeat(100 + i)))
        .collect();
    let mut e = Engine::new(config, 1).expect("valid config");
    e.handle_host_features(HostFeatures {
        deferred: false,
        compress: true,
        keepalive: false,
        same_origin: false,
        keepalive_after_unload: false,
        page_close: false,
    });
    let mut now = T0;
    let mut live = Vec::with_capacity(OUTAGES);
    let (mut refused, mut captured) = (0u64, 0u64);
    for _ in 0..OUTAGES {
        // Three times what the queue holds, answered 503 as it goes.
        for i in 0..15_000 {
            let event = EventInput::new("outage").properties(&payloads[i % 100]);
            match e.capture_json(event, now) {
                Ok(_) => captured += 1,
                Err(_) => refused += 1,
            }
            if i % 1000 == 999 {
                now += 10;
                e.handle_timeout(now);
                turn(&mut e, 503, now);
            }
        }
        assert!(e.held_bytes() > (1 << 20) - 2000, "the queue filled");
        // The collector is back: everything held goes.
        for _ in 0..200 {
            now += 100;
            e.handle_timeout(now);
            turn(&mut e, 200, now);
            if e.held_events() == 0 {
                break;
            }
        }
        assert_eq!(e.held_events(), 0, "what was held is delivered");
        live.push(LIVE.load(Ordering::Relaxed));
    }
    let stats = e.stats();
    assert_eq!(stats.delivered, captured);
    assert_eq!(stats.dropped.queue_full, refused);
    println!("live bytes after each outage: {live:?}");
    let settled = live[SETTLED_AFTER - 1];
    for (i, &bytes) in live.iter().enumerate().skip(SETTLED_AFTER) {
        assert!(
            bytes <= settled,
            "live bytes grew from {settled} after outage {SETTLED_AFTER} to {bytes} after outage {}",
            i + 1
        );
    }
}
