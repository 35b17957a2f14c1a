//! The engine's core: an event from capture to settlement. Events are taken in and queued
//! (`capture`, `event`, `queue`), cut into batches that are sent, answered, retried or split
//! (`batch`, `retry`, `scheduler`), counted exactly once (`ledger`, `stats`, `flush`), under
//! the endpoint's `Retry-After` (`hold`) and what its answers said of it (`health`), on one
//! timer table (`timer`), until `shutdown`.
//!
//! State is owned by types: the [`outbox::Outbox`] holds every event not yet settled (the
//! queue, the batches, the ledger, the flushes), the [`endpoint::Endpoint`] what the collector
//! asked and showed (its hold, its health, whether the page is offline), and the [`Env`] what
//! every part is handed (the config, the wire format, the randomness, the notices raised). A
//! part borrows what it needs, explicitly, from the engine's facade.

pub(crate) mod batch;
pub(crate) mod capture;
pub(crate) mod config;
pub(crate) mod endpoint;
pub(crate) mod event;
pub(crate) mod flush;
pub(crate) mod health;
pub(crate) mod hold;
pub(crate) mod ledger;
pub(crate) mod notice;
pub(crate) mod outbox;
pub(crate) mod queue;
pub(crate) mod retry;
pub(crate) mod rng;
pub(crate) mod scheduler;
pub(crate) mod shutdown;
pub(crate) mod stats;
pub(crate) mod timer;
pub(crate) mod transmit;

use std::collections::VecDeque;

use crate::engine::page::pack::PackRatio;
use crate::engine::wire::format::WireFormat;
use config::{BatchMode, Config};
use notice::Notice;
use queue::BodyLimit;
use rng::Rng;

/// What every part of the engine is handed: the rules in force (the config and the wire
/// format), the engine's randomness (uuids, jitter), and the notices raised for the shell.
#[derive(Debug)]
pub(crate) struct Env<F> {
    pub config: Config,
    pub format: F,
    pub rng: Rng,
    pub notices: VecDeque<Notice>,
    /// How well a page's batches gzip, where they are packed ahead: batches are then cut to
    /// fill one keepalive body once packed (`page/pack`).
    pub pack_ratio: Option<PackRatio>,
}

impl<F> Env<F> {
    pub fn new(config: Config, format: F, rng: Rng) -> Env<F> {
        let notices = VecDeque::new();
        Env {
            config,
            format,
            rng,
            notices,
            pack_ratio: None,
        }
    }

    /// Raises `notice` for the shell.
    pub fn notify(&mut self, notice: Notice) {
        self.notices.push_back(notice);
    }
}

impl<F: WireFormat> Env<F> {
    /// The most one request body may carry, by the batch mode; on a page that packs batches
    /// ahead, a batch of several events is cut to what fills one keepalive body once gzipped
    /// ([`PackRatio::target`]): the page-close path then sends a few full bodies rather
    /// than many small ones.
    pub fn batch_limit(&self) -> BodyLimit {
        let events = match self.config.batch_mode {
            BatchMode::Off => 1,
            _ => self.config.max_batch_events,
        };
        let mut limit = BodyLimit::new(events, self.config.max_batch_bytes);
        if let Some(ratio) = self.pack_ratio {
            limit.target = limit.bytes.min(ratio.target());
        }
        limit
    }
}
