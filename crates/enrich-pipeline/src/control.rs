//! [`RunControl`]: stopping a run gently or at once, from another task or a signal handler.

use tokio_util::sync::CancellationToken;

/// How far a [`RunControl`] has been asked to go.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum StopLevel {
    /// Keep going.
    Running,
    /// Take no new span; let the spans in flight finish (each bounded by its backends'
    /// timeouts) and write them.
    Stop,
    /// Also cancel the spans in flight; nothing is written for them.
    Abort,
}

/// The handle that stops a run. Cheap to clone; every clone controls the same run(s).
///
/// The usual wiring: the first Ctrl-C calls [`escalate`](Self::escalate) (a stop), the second
/// calls it again (an abort). Either way the run still commits what finished, records itself in
/// the `runs` table as interrupted, and returns its summary.
#[derive(Debug, Clone, Default)]
pub struct RunControl {
    stop: CancellationToken,
    abort: CancellationToken,
}

impl RunControl {
    /// A control that has not been triggered.
    pub fn new() -> Self {
        Self::default()
    }

    /// Stops taking new spans; spans in flight finish and are written.
    pub fn stop(&self) {
        self.stop.cancel();
    }

    /// Cancels the spans in flight too: they end as cancelled and nothing is written for them
    /// (not even their attempts). Implies [`stop`](Self::stop).
    pub fn abort(&self) {
        self.stop.cancel();
        self.abort.cancel();
    }

    /// Goes one level further: a stop the first time, an abort after that. Returns the level
    /// now in force, for the caller to tell the user ("finishing the spans in flight; press
    /// Ctrl-C again to abort them").
    pub fn escalate(&self) -> StopLevel {
        if self.stop.is_cancelled() {
            self.abort();
        } else {
            self.stop();
        }
        self.level()
    }

    /// The level in force.
    pub fn level(&self) -> StopLevel {
        if self.abort.is_cancelled() {
            StopLevel::Abort
        } else if self.stop.is_cancelled() {
            StopLevel::Stop
        } else {
            StopLevel::Running
        }
    }

    /// Whether no new span may be taken.
    pub(crate) fn is_stopping(&self) -> bool {
        self.stop.is_cancelled()
    }

    /// The token that fires on stop (and abort): a run waiting for a backend wakes on it.
    pub(crate) fn stop_token(&self) -> &CancellationToken {
        &self.stop
    }

    /// The token handed to the cascade: it fires on abort.
    pub(crate) fn abort_token(&self) -> &CancellationToken {
        &self.abort
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escalation_goes_stop_then_abort_and_clones_share_it() {
        let control = RunControl::new();
        let handle = control.clone();
        assert_eq!(control.level(), StopLevel::Running);
        assert_eq!(handle.escalate(), StopLevel::Stop);
        assert!(control.is_stopping() && !control.abort_token().is_cancelled());
        assert_eq!(handle.escalate(), StopLevel::Abort);
        assert!(control.abort_token().is_cancelled());
        assert_eq!(handle.escalate(), StopLevel::Abort);

        let direct = RunControl::new();
        direct.abort();
        assert_eq!(direct.level(), StopLevel::Abort);
        assert!(direct.is_stopping());
    }
}
