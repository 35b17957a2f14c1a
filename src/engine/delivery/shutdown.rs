//! Shutdown: after `Engine::shutdown` the engine takes no more events, sends what it holds,
//! and at the deadline abandons the rest, counted as dropped `shutdown`.

use crate::engine::delivery::outbox::Outbox;
use crate::engine::delivery::scheduler::Plan;
use crate::engine::delivery::stats::DropReason;
use crate::engine::delivery::Env;
use crate::engine::Notice;

/// A shutdown asked for.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Shutdown {
    /// When what is left is abandoned.
    pub deadline: u64,
    /// [`Notice::ShutdownComplete`] was sent: nothing is held, nothing more goes.
    pub done: bool,
}

impl Outbox {
    /// Stops taking events; everything held goes without lingering until `deadline_ms`.
    /// `false` if a shutdown was asked already.
    pub fn begin_shutdown(&mut self, deadline_ms: u64) -> bool {
        if self.shutdown.is_some() {
            return false;
        }
        self.shutdown = Some(Shutdown {
            deadline: deadline_ms,
            done: false,
        });
        self.force_mark = u64::MAX;
        true
    }

    /// The shutdown deadline still to be kept, if one runs.
    pub fn shutdown_deadline(&self) -> Option<u64> {
        self.shutdown.filter(|s| !s.done).map(|s| s.deadline)
    }

    /// Completes a shutdown that has nothing left, or nothing it could still send before its
    /// deadline (`next`: the next request the scheduler plans).
    pub fn finish_idle_shutdown<F>(&mut self, env: &mut Env<F>, next: Option<Plan>) {
        let Some(deadline) = self.shutdown_deadline() else {
            return;
        };
        let idle = self.ledger.in_flight_events() == 0 && self.ready.is_empty();
        // Backoff or Retry-After reaching past the deadline: waiting changes nothing.
        if self.ledger.held_events() == 0 || idle && next.is_none_or(|p| p.at > deadline) {
            self.abandon_all(env);
        }
    }

    /// Drops everything held as `shutdown`, aborting requests in flight, and completes the
    /// shutdown.
    pub fn abandon_all<F>(&mut self, env: &mut Env<F>) {
        let abandoned = self.drop_all(env, DropReason::Shutdown);
        if let Some(s) = &mut self.shutdown {
            if !s.done {
                s.done = true;
                env.notices
                    .push_back(Notice::ShutdownComplete { abandoned });
            }
        }
    }
}
