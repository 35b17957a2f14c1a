//! What the engine tells the shell besides requests: a [`Notice`], drained with
//! [`Engine::poll_notice`](crate::engine::Engine::poll_notice).

use crate::engine::{BatchId, DropReason, FlushReport, TransmitId, Uuid};

/// How events settled, in a [`Notice::Settled`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Settlement {
    /// The collector acknowledged them.
    Delivered,
    /// They were given up, for this reason.
    Dropped(DropReason),
}

/// Something the shell should know or do, drained with [`Engine::poll_notice`](crate::engine::Engine::poll_notice).
///
/// # Example
/// ```
/// use spool::engine::{Config, Engine, EventInput, Notice, Outcome};
/// let now = 1_700_000_000_000;
/// let mut config = Config::new("https://collector.example/batch/");
/// config.api_key = "phc_project_key".into();
/// let mut engine = Engine::new(config, 1).unwrap();
/// engine.capture(EventInput::new("a"), now).unwrap();
/// let flush = engine.flush(now);
/// let t = engine.poll_transmit(now).unwrap();
/// engine.handle_outcome(t.id, Outcome::status(200), now + 10);
/// match engine.poll_notice() {
///     Some(Notice::FlushComplete(report)) => {
///         assert_eq!((report.id, report.delivered), (flush, 1));
///     }
///     other => panic!("{other:?}"),
/// }
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Notice {
    /// A flush's events have all settled: resolve the caller's promise.
    FlushComplete(FlushReport),
    /// `shutdown` finished: everything was delivered, dropped or abandoned.
    ShutdownComplete {
        /// Events abandoned at the deadline.
        abandoned: u64,
    },
    /// Stop the request with this id (timed out, or abandoned at shutdown); its outcome, if
    /// any arrives, is ignored.
    Abort(TransmitId),
    /// The queue just filled up and events are being dropped; emitted once per episode (again
    /// only after the queue has drained).
    QueueOverflow {
        /// The `maxQueueEvents` in force.
        max_events: usize,
        /// The `maxQueueBytes` in force.
        max_bytes: usize,
    },
    /// Read what earlier loads of the endpoint stored, and hand each text to
    /// [`Engine::handle_restore`](crate::engine::Engine::handle_restore) (see [`Engine::handle_storage_opened`](crate::engine::Engine::handle_storage_opened)).
    ReadStored,
    /// Write `text` as this exporter's stored copy, replacing the last one; it holds
    /// `events` events. Before writing, check the last copy written is still there: if
    /// another load took it, call [`Engine::handle_stored_copy_taken`](crate::engine::Engine::handle_stored_copy_taken)
    /// with that copy's `mark` instead (a new text follows).
    WriteStored {
        /// The copy ([`Engine::persist`](crate::engine::Engine::persist)).
        text: String,
        /// Events in it.
        events: usize,
        /// Says which events it holds, for `handle_stored_copy_taken`: keep the mark of the
        /// copy last written (a copy not written, or replaced before it was, says nothing of
        /// what another load took).
        mark: u64,
    },
    /// Remove this exporter's stored copy: nothing is held, or the page is shown again and
    /// holds its events itself.
    RemoveStored,
    /// Pack batch `batch` ahead, asynchronously, and hand the bytes to
    /// [`Engine::handle_packed`](crate::engine::Engine::handle_packed) (`None` for one the host
    /// could not compress): `body` gzipped, `lines` raw-deflated. Only once the host said it
    /// can ([`HostFeatures::compress`](crate::engine::HostFeatures::compress)).
    Pack {
        /// The batch.
        batch: BatchId,
        /// Its body, without `sent_at`, to gzip.
        body: Option<String>,
        /// Its lines in the stored copy, to deflate (raw).
        lines: Option<String>,
    },
    /// Events settled (only with [`Engine::report_settlements`](crate::engine::Engine::report_settlements) on).
    Settled {
        /// How.
        settlement: Settlement,
        /// Which events.
        uuids: Vec<Uuid>,
    },
}
