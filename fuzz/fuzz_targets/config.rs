//! Any config a caller can spell is either refused with an error naming a field, or runs.
#![no_main]

use libfuzzer_sys::fuzz_target;
use spool::engine::{BatchMode, Config, Engine, EventInput};

fuzz_target!(|data: &[u8]| {
    // Ten numbers from the first 80 bytes, then the endpoint and the batch mode's text.
    if data.len() < 80 {
        return;
    }
    let (numbers, rest) = data.split_at(80);
    let n = |i: usize| u64::from_le_bytes(numbers[i * 8..i * 8 + 8].try_into().unwrap());
    let text = String::from_utf8_lossy(rest);
    let (endpoint, mode) = text.split_once('\0').unwrap_or((&text, "linger"));
    let mut c = Config::new(endpoint);
    c.api_key = "phc_fuzz".into();
    c.allow_insecure = n(0) & 1 == 1;
    c.flush_interval_ms = n(0) >> 1;
    c.max_batch_events = n(1) as usize;
    c.max_batch_bytes = n(2) as usize;
    c.max_queue_events = n(3) as usize;
    c.max_queue_bytes = n(4) as usize;
    c.max_attempts = n(5) as u32;
    c.initial_backoff_ms = n(6);
    c.max_backoff_ms = n(7);
    c.max_in_flight = n(8) as usize;
    c.request_timeout_ms = n(9);
    match BatchMode::parse(mode) {
        Ok(m) => c.batch_mode = m,
        Err(e) => assert_eq!(e.field, "batchMode"),
    }
    let valid = c.validate();
    match Engine::new(c, 1) {
        Err(e) => {
            assert_eq!(Err(e.clone()), valid);
            assert!(e.full_message().contains(e.field));
        }
        Ok(mut engine) => {
            assert_eq!(valid, Ok(()));
            // An accepted config runs: a capture, a flush, a request.
            let now = 1_700_000_000_000;
            engine.capture(EventInput::new("e"), now).expect("a small event fits any valid config");
            engine.flush(now);
            assert!(engine.poll_transmit(now).is_some());
        }
    }
});
