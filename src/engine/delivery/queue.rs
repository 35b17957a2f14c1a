//! Events waiting to be cut into a batch, oldest first.

use std::collections::VecDeque;

use crate::engine::delivery::event::Uuid;
use crate::engine::wire::format::WireFormat;

/// One captured event, already encoded.
#[derive(Debug, Clone)]
pub(crate) struct Item {
    /// The event's JSON fragment, as the wire format wrote it at capture.
    pub fragment: Box<str>,
    /// Its uuid, kept to report which events settled how.
    pub uuid: Uuid,
    /// Capture order; flush generations compare against it.
    pub seq: u64,
    /// Engine time when it was queued; lingering counts from here.
    pub enqueued_ms: u64,
}

/// A limit on one request body.
#[derive(Debug, Clone, Copy)]
pub(crate) struct BodyLimit {
    pub events: usize,
    pub bytes: usize,
    /// Bytes a body of more than one event stays within, unlike `bytes` never keeping one
    /// event out: the size a page's batch is cut to so that, gzipped, it fills one keepalive
    /// body (`Env::batch_limit`).
    pub target: usize,
}

impl BodyLimit {
    /// At most `events` events and `bytes` bytes, with no smaller target.
    pub fn new(events: usize, bytes: usize) -> BodyLimit {
        BodyLimit {
            events,
            bytes,
            target: bytes,
        }
    }

    /// How many of `items` (in order) fit one body.
    pub fn fitting<'a, F: WireFormat>(
        self,
        format: &F,
        items: impl IntoIterator<Item = &'a Item>,
    ) -> usize {
        let mut count = 0;
        let mut bytes = 0;
        for item in items {
            let len = format.body_len(count + 1, bytes + item.fragment.len());
            if count == self.events || len > self.bytes || count > 0 && len > self.target {
                break;
            }
            count += 1;
            bytes += item.fragment.len();
        }
        count
    }
}

/// Events not yet in a batch.
#[derive(Debug, Default)]
pub(crate) struct Queue {
    items: VecDeque<Item>,
    /// Sum of the fragments' lengths.
    bytes: usize,
}

impl Queue {
    pub fn push(&mut self, item: Item) {
        self.bytes += item.fragment.len();
        self.items.push_back(item);
    }

    /// The events, oldest first.
    pub fn iter(&self) -> impl Iterator<Item = &Item> {
        self.items.iter()
    }

    pub fn front(&self) -> Option<&Item> {
        self.items.front()
    }

    /// Events queued. (Read only by the ledger's debug checks and the tests.)
    #[cfg(any(test, debug_assertions))]
    pub fn len(&self) -> usize {
        self.items.len()
    }

    /// Bytes of the queued events' fragments. (Read only by the ledger's debug checks.)
    #[cfg(debug_assertions)]
    pub fn bytes(&self) -> usize {
        self.bytes
    }

    /// Whether the queue holds more than one body under `limit` can carry, so a full batch
    /// can be cut now.
    pub fn has_full_batch<F: WireFormat>(&self, format: &F, limit: BodyLimit) -> bool {
        self.items.len() >= limit.events
            || format.body_len(self.items.len(), self.bytes) > limit.bytes.min(limit.target)
    }

    /// Removes the longest prefix that fits `limit` (possibly none).
    pub fn take_batch<F: WireFormat>(&mut self, format: &F, limit: BodyLimit) -> Vec<Item> {
        let n = limit.fitting(format, &self.items);
        // pop_front rather than drain(..n): the same O(n) work, and VecDeque's Drain costs over
        // a kilobyte of wasm. (split_off would copy the whole rest of the queue per batch.)
        let mut batch = Vec::with_capacity(n);
        while batch.len() < n {
            match self.items.pop_front() {
                Some(item) => batch.push(item),
                None => break,
            }
        }
        self.bytes -= batch.iter().map(|i| i.fragment.len()).sum::<usize>();
        batch
    }

    /// Removes everything.
    pub fn drain_all(&mut self) -> Vec<Item> {
        self.bytes = 0;
        // Popped rather than `Vec::from(VecDeque)`, whose in-place rotation costs half a
        // kilobyte of wasm; the copy is the same O(n).
        let mut all = Vec::with_capacity(self.items.len());
        while let Some(item) = self.items.pop_front() {
            all.push(item);
        }
        all
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::wire::format::PostHogBatch;

    fn item(seq: u64, len: usize) -> Item {
        Item {
            fragment: "x".repeat(len).into(),
            uuid: Uuid(seq as u128),
            seq,
            enqueued_ms: 0,
        }
    }

    #[test]
    fn a_batch_takes_the_oldest_events_that_fit_both_limits() {
        let f = PostHogBatch::new("k");
        let mut q = Queue::default();
        for s in 0..10 {
            q.push(item(s, 100));
        }
        let by_count = q.take_batch(&f, BodyLimit::new(3, 1_000_000));
        assert_eq!(
            by_count.iter().map(|i| i.seq).collect::<Vec<_>>(),
            [0, 1, 2]
        );
        let bytes = f.body_len(2, 200);
        let by_bytes = q.take_batch(&f, BodyLimit::new(100, bytes));
        assert_eq!(by_bytes.iter().map(|i| i.seq).collect::<Vec<_>>(), [3, 4]);
        assert_eq!(q.len(), 5);
        assert!(q.has_full_batch(&f, BodyLimit::new(5, 1_000_000)));
        assert!(!q.has_full_batch(&f, BodyLimit::new(6, 1_000_000)));
        assert!(q.has_full_batch(&f, BodyLimit::new(6, bytes)));
    }

    #[test]
    fn a_target_bounds_a_batch_of_several_but_never_keeps_one_event_out() {
        let f = PostHogBatch::new("k");
        let mut q = Queue::default();
        q.push(item(0, 500));
        for s in 1..10 {
            q.push(item(s, 100));
        }
        let limit = BodyLimit {
            target: f.body_len(3, 300),
            ..BodyLimit::new(100, 1_000_000)
        };
        assert!(q.has_full_batch(&f, limit));
        let alone = q.take_batch(&f, limit);
        assert_eq!(alone.iter().map(|i| i.seq).collect::<Vec<_>>(), [0]);
        let three = q.take_batch(&f, limit);
        assert_eq!(three.iter().map(|i| i.seq).collect::<Vec<_>>(), [1, 2, 3]);
    }
}
