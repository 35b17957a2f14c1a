//! The collector's health as its answers showed it: what a request whose answer never comes
//! (a beacon the browser accepted) may be counted on.
//!
//! A browser that accepts a beacon or a keepalive request says nothing about the collector.
//! Such a request's events count as delivered only if the collector's last answer before it
//! left was a success; otherwise they stay held, and so in the copy stored for the next load.

/// What the collector's last answer said of it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) enum Health {
    /// No answer yet.
    #[default]
    Unknown,
    /// The last answer took the request (a 2xx).
    Answering,
    /// The last answer was a failure: another status, a network error or a timeout.
    Failing,
}

impl Health {
    /// The collector answered: `took` says whether it took the request.
    pub fn answered(&mut self, took: bool) {
        *self = match took {
            true => Health::Answering,
            false => Health::Failing,
        };
    }
}
