//! Taking an event in: checked, encoded once into its wire format's fragment, and queued, or
//! refused with the reason (and counted, where it is a drop).

use crate::engine::delivery::event::{CaptureError, EventInput, Uuid};
use crate::engine::delivery::queue::Item;
use crate::engine::delivery::stats::DropReason;
use crate::engine::wire::format::{EventRecord, WireFormat};
use crate::engine::wire::{sanitize, time};
use crate::engine::{Engine, Notice};

impl<F: WireFormat> Engine<F> {
    /// Checks, encodes and queues `event`, whose properties are one JSON object.
    pub(crate) fn enqueue(
        &mut self,
        event: EventInput<'_>,
        now_ms: u64,
    ) -> Result<Uuid, CaptureError> {
        if self.shutdown.is_some() {
            return Err(CaptureError::ShutDown);
        }
        if event.name.is_empty() {
            return Err(CaptureError::EmptyName);
        }
        let raw_properties = event.properties.unwrap_or("{}");
        // Lone surrogates are repaired and over-deep nesting refused here, so the collector's
        // parser never refuses a whole batch for this event.
        let repaired =
            sanitize::check_properties(raw_properties, self.format.max_properties_depth())
                .map_err(|e| CaptureError::TooDeep {
                    depth: e.depth,
                    max: e.max,
                })?;
        let properties = repaired.as_deref().unwrap_or(raw_properties);
        let timestamp_ms = event.timestamp_ms.unwrap_or(now_ms);
        if timestamp_ms > time::MAX_TIMESTAMP_MS {
            return Err(CaptureError::InvalidTimestamp(timestamp_ms));
        }
        let uuid = match event.uuid {
            Some(text) => Uuid::parse(text).ok_or(CaptureError::InvalidUuid)?,
            None => Uuid::new_v7(timestamp_ms, &mut self.rng),
        };
        let distinct_id = event.distinct_id.unwrap_or(&self.distinct_id);
        if sanitize::is_blank(distinct_id) {
            return Err(CaptureError::BlankDistinctId);
        }
        // Encoded into a reused buffer, then copied into an allocation of exactly its size.
        self.scratch.clear();
        self.format.write_event(
            &EventRecord {
                name: event.name,
                distinct_id,
                properties,
                timestamp_ms,
                uuid,
            },
            &mut self.scratch,
        );
        let len = self.scratch.len();
        let alone = self.format.body_len(1, len);
        if alone > self.config.max_batch_bytes {
            self.ledger.stats.dropped.add(DropReason::TooLarge, 1);
            return Err(CaptureError::TooLarge {
                bytes: alone,
                max: self.config.max_batch_bytes,
            });
        }
        if !self.ledger.has_room(&self.config, len) {
            self.ledger.stats.dropped.add(DropReason::QueueFull, 1);
            if !self.overflow_warned {
                self.overflow_warned = true;
                self.notices.push_back(Notice::QueueOverflow {
                    max_events: self.config.max_queue_events,
                    max_bytes: self.config.max_queue_bytes,
                });
            }
            return Err(CaptureError::QueueFull);
        }
        self.ledger.hold(len);
        self.queue.push(Item {
            fragment: Box::from(self.scratch.as_str()),
            uuid,
            seq: self.next_seq,
            enqueued_ms: now_ms,
        });
        self.next_seq += 1;
        self.rearm();
        Ok(uuid)
    }
}
