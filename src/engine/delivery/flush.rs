//! Flush generations: each `flush()` waits for exactly the events captured before it.

/// Names one call to [`Engine::flush`](crate::engine::Engine::flush).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct FlushId(pub u64);

/// How the events a flush waited for ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FlushReport {
    /// Which flush.
    pub id: FlushId,
    /// Events captured before the flush, still held at the call, and since delivered.
    pub delivered: u64,
    /// Those dropped instead.
    pub dropped: u64,
}

#[derive(Debug)]
struct OpenFlush {
    /// Events with a capture sequence below this belong to the flush.
    mark: u64,
    /// Its events not yet settled.
    pending: u64,
    report: FlushReport,
}

/// The flushes still waiting. Usually zero or one; each settled event visits each open flush.
#[derive(Debug, Default)]
pub(crate) struct FlushTracker {
    open: Vec<OpenFlush>,
}

impl FlushTracker {
    /// Starts a flush waiting for `pending` events captured before `mark`; returns its report
    /// at once if there is nothing to wait for.
    pub fn open(&mut self, id: FlushId, mark: u64, pending: u64) -> Option<FlushReport> {
        let report = FlushReport {
            id,
            delivered: 0,
            dropped: 0,
        };
        if pending == 0 {
            return Some(report);
        }
        self.open.push(OpenFlush {
            mark,
            pending,
            report,
        });
        None
    }

    /// Records that the event with capture sequence `seq` settled; appends the reports of
    /// flushes it completed to `done`.
    pub fn settle(&mut self, seq: u64, delivered: bool, done: &mut Vec<FlushReport>) {
        self.open.retain_mut(|f| {
            if seq >= f.mark {
                return true;
            }
            if delivered {
                f.report.delivered += 1;
            } else {
                f.report.dropped += 1;
            }
            f.pending -= 1;
            if f.pending == 0 {
                done.push(f.report);
                return false;
            }
            true
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn overlapping_flushes_each_complete_with_their_own_events() {
        let mut t = FlushTracker::default();
        let mut done = Vec::new();
        assert_eq!(t.open(FlushId(1), 2, 2), None); // events 0, 1
        assert_eq!(t.open(FlushId(2), 3, 3), None); // events 0, 1, 2
        t.settle(2, true, &mut done);
        t.settle(0, false, &mut done);
        assert!(done.is_empty());
        t.settle(1, true, &mut done);
        assert_eq!(
            done,
            [
                FlushReport {
                    id: FlushId(1),
                    delivered: 1,
                    dropped: 1
                },
                FlushReport {
                    id: FlushId(2),
                    delivered: 2,
                    dropped: 1
                },
            ]
        );
    }

    #[test]
    fn a_flush_with_nothing_pending_completes_at_once() {
        let mut t = FlushTracker::default();
        assert_eq!(
            t.open(FlushId(9), 0, 0),
            Some(FlushReport {
                id: FlushId(9),
                delivered: 0,
                dropped: 0
            })
        );
    }
}
