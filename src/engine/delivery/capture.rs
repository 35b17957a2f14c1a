//! Taking an event in: checked and encoded once into its wire format's fragment, or refused
//! with the reason. The [`Outbox`](crate::engine::delivery::outbox::Outbox) then admits it
//! within the queue's limits.

use crate::engine::delivery::event::{CaptureError, EventInput, Uuid};
use crate::engine::delivery::rng::Rng;
use crate::engine::wire::format::{EventRecord, WireFormat};
use crate::engine::wire::{sanitize, time};

/// What capture keeps between events: the default distinct id, and a buffer to encode into.
#[derive(Debug)]
pub(crate) struct Intake {
    /// The distinct id events get when a capture names none.
    pub distinct_id: String,
    /// Where an event is encoded, kept to save an allocation per event.
    scratch: String,
}

impl Intake {
    /// Capture with the config's distinct id, or a fresh uuid v7 from `rng` if it names none.
    pub fn new(distinct_id: Option<&str>, rng: &mut Rng) -> Intake {
        let distinct_id = match distinct_id {
            Some(id) => id.to_owned(),
            None => {
                let mut id = String::with_capacity(36);
                Uuid::new_v7(0, rng).write(&mut id);
                id
            }
        };
        Intake {
            distinct_id,
            scratch: String::new(),
        }
    }

    /// Checks and encodes `event` (properties one JSON object) captured at `now_ms`: its
    /// fragment, borrowed until the next call, and its uuid.
    pub fn encode<F: WireFormat>(
        &mut self,
        format: &F,
        rng: &mut Rng,
        event: EventInput<'_>,
        now_ms: u64,
    ) -> Result<(&str, Uuid), CaptureError> {
        if event.name.is_empty() {
            return Err(CaptureError::EmptyName);
        }
        let raw_properties = event.properties.unwrap_or("{}");
        // Lone surrogates are repaired and over-deep nesting refused here, so the collector's
        // parser never refuses a whole batch for this event.
        let repaired = sanitize::check_properties(raw_properties, format.max_properties_depth())
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
            None => Uuid::new_v7(timestamp_ms, rng),
        };
        let distinct_id = event.distinct_id.unwrap_or(&self.distinct_id);
        if sanitize::is_blank(distinct_id) {
            return Err(CaptureError::BlankDistinctId);
        }
        // Encoded into a reused buffer; the outbox copies it into an allocation of its size.
        self.scratch.clear();
        let record = EventRecord {
            name: event.name,
            distinct_id,
            properties,
            timestamp_ms,
            uuid,
        };
        format.write_event(&record, &mut self.scratch);
        Ok((&self.scratch, uuid))
    }
}
