//! The gate every application call passes before it is sent: open while the session is
//! safe, closed (calls wait) in jeopardy, and failing every call with `SESSION_EXPIRED`
//! once the session has expired or been closed. The state machine drives it with
//! [`Command::SetState`](super::core::Command::SetState).

use crate::error::Error;
use crate::types::SessionState;
use std::time::Duration;
use tokio::sync::watch;
use tokio::time::Instant;

/// See the module docs.
#[derive(Debug)]
pub(crate) struct CallGate {
    state: watch::Sender<SessionState>,
}

impl CallGate {
    /// An open gate (a new session is safe).
    pub(crate) fn new() -> Self {
        CallGate {
            state: watch::Sender::new(SessionState::Safe),
        }
    }

    /// Publishes the session's state.
    pub(crate) fn set(&self, state: SessionState) {
        self.state.send_replace(state);
    }

    /// The state last published.
    #[cfg(test)]
    pub(crate) fn state(&self) -> SessionState {
        *self.state.borrow()
    }

    /// Waits while the session is in jeopardy. `Ok(waited)` once it is safe (`waited`: how
    /// long the call was held back), `SESSION_EXPIRED` once it is over.
    pub(crate) async fn admit(&self) -> Result<Duration, Error> {
        let started = Instant::now();
        let mut rx = self.state.subscribe();
        // The sender lives in `self`, so `wait_for` cannot see it dropped.
        let state = rx
            .wait_for(|s| *s != SessionState::Jeopardy)
            .await
            .map(|s| *s)
            .unwrap_or(SessionState::Closed);
        match state {
            SessionState::Safe | SessionState::Jeopardy => Ok(started.elapsed()),
            SessionState::Expired => Err(Error::session_expired("the session has expired")),
            SessionState::Closed => Err(Error::session_expired("the session was closed")),
        }
    }

    /// Resolves with `SESSION_EXPIRED` once the session is over; for racing calls in flight.
    pub(crate) async fn ended(&self) -> Error {
        let mut rx = self.state.subscribe();
        let state = rx
            .wait_for(|s| !s.is_live())
            .await
            .map(|s| *s)
            .unwrap_or(SessionState::Closed);
        if state == SessionState::Closed {
            Error::session_expired("the session was closed")
        } else {
            Error::session_expired("the session has expired")
        }
    }
}
