//! The engine's core: an event from capture to settlement. Events are taken in and queued
//! (`capture`, `event`, `queue`), cut into batches that are sent, answered, retried or split
//! (`batch`, `retry`, `scheduler`), counted exactly once (`ledger`, `stats`, `flush`), under
//! the endpoint's `Retry-After` (`hold`) and what its answers said of it (`health`), on one
//! timer table (`timer`), until `shutdown`.

pub(crate) mod batch;
pub(crate) mod capture;
pub(crate) mod config;
pub(crate) mod event;
pub(crate) mod flush;
pub(crate) mod health;
pub(crate) mod hold;
pub(crate) mod ledger;
pub(crate) mod notice;
pub(crate) mod queue;
pub(crate) mod retry;
pub(crate) mod rng;
pub(crate) mod scheduler;
pub(crate) mod shutdown;
pub(crate) mod stats;
pub(crate) mod timer;
pub(crate) mod transmit;
