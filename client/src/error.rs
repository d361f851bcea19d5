//! The client library's one error type, [`Error`]: a Warren error from the table in
//! `warren-proto`, a transport failure, a malformed reply, or an argument rejected locally
//! before anything was sent.

use warren_proto::{Effect, ErrorCode, WarrenError};

/// Everything a client call can fail with.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum Error {
    /// The server answered with an error from the table (`NOT_FOUND`, `LOCK_HELD`, …), or
    /// the library concluded one locally (`SESSION_EXPIRED` once the session is gone).
    #[error("{0}")]
    Warren(WarrenError),
    /// The server could not be reached or did not answer in time. The message names the
    /// address and the cause, e.g. `cannot reach 127.0.0.1:7100: connection refused`.
    #[error("{0}")]
    Transport(String),
    /// The server answered, but the reply is not what the protocol promises (a required
    /// field missing, an unknown enum value, an id of the wrong length).
    #[error("bad reply: {0}")]
    Protocol(String),
    /// An argument the library rejected before sending anything (for example a sequencer
    /// string that does not parse, or a relative path).
    #[error("{0}")]
    InvalidArgument(String),
    /// The handle was poisoned ([`Handle::poison`](crate::Handle::poison)): its calls fail
    /// without being sent (or, in flight, without waiting for their reply).
    #[error("{0}")]
    Poisoned(String),
}

impl Error {
    /// The code from the error table, when there is one. Arguments rejected locally count
    /// as `INVALID_ARGUMENT`; transport failures and malformed replies have no code.
    pub fn code(&self) -> Option<ErrorCode> {
        match self {
            Error::Warren(e) => Some(e.code),
            Error::InvalidArgument(_) => Some(ErrorCode::InvalidArgument),
            Error::Transport(_) | Error::Protocol(_) | Error::Poisoned(_) => None,
        }
    }

    /// A code name for people and scripts: the table's name when there is a code,
    /// `UNAVAILABLE` for transport failures, `INTERNAL` for malformed replies and
    /// `CANCELLED` for calls on a poisoned handle.
    pub fn code_name(&self) -> &'static str {
        match self {
            Error::Warren(e) => e.code_name(),
            Error::Transport(_) => "UNAVAILABLE",
            Error::Protocol(_) => "INTERNAL",
            Error::InvalidArgument(_) => ErrorCode::InvalidArgument.as_str_name(),
            Error::Poisoned(_) => "CANCELLED",
        }
    }

    /// The human half of the error, without the code.
    pub fn message(&self) -> String {
        match self {
            Error::Warren(e) => e.message.clone(),
            Error::Transport(m) | Error::InvalidArgument(m) | Error::Poisoned(m) => m.clone(),
            Error::Protocol(m) => format!("bad reply: {m}"),
        }
    }

    /// The Warren error, if this is one.
    pub fn warren(&self) -> Option<&WarrenError> {
        match self {
            Error::Warren(e) => Some(e),
            _ => None,
        }
    }

    /// Whether the condition may clear up by itself (a redirect, a failover, a transport
    /// failure), as opposed to one the caller must fix.
    pub fn is_retryable(&self) -> bool {
        match self {
            Error::Warren(e) => e.is_retryable(),
            Error::Transport(_) => true,
            Error::Protocol(_) | Error::InvalidArgument(_) | Error::Poisoned(_) => false,
        }
    }

    /// Whether the failed call may have taken effect: the error table's column for a
    /// Warren error ([`ErrorCode::may_have_taken_effect`]); [`Effect::NotApplied`] for what
    /// the library refused before sending; [`Effect::Unknown`] for a transport failure or a
    /// malformed reply, where the library cannot tell whether the server acted (its own
    /// retries of idempotent calls, and of calls a proxy reports `UNREACHABLE`, happen
    /// before an error gets here).
    pub fn effect(&self) -> Effect {
        match self {
            Error::Warren(e) => warren_proto::error::effect(e.code),
            Error::InvalidArgument(_) | Error::Poisoned(_) => Effect::NotApplied,
            Error::Transport(_) | Error::Protocol(_) => Effect::Unknown,
        }
    }

    /// Whether the failed call may have taken effect ([`Error::effect`] is not
    /// `NotApplied`).
    pub fn may_have_taken_effect(&self) -> bool {
        self.effect() != Effect::NotApplied
    }

    /// `SESSION_EXPIRED` with the given message.
    pub(crate) fn session_expired(message: impl Into<String>) -> Self {
        Error::Warren(WarrenError::session_expired(message))
    }

    /// Turns a status from the server at `addr` into an error: a Warren error when the
    /// status carries a Warren detail, otherwise a transport failure.
    pub(crate) fn from_status(status: &tonic::Status, addr: &str) -> Self {
        if let Some(e) = WarrenError::from_status(status) {
            return Error::Warren(e);
        }
        let cause = error_chain(status, status.message());
        match status.code() {
            tonic::Code::DeadlineExceeded => {
                Error::Transport(format!("no reply from {addr} in time: {cause}"))
            }
            tonic::Code::Unavailable | tonic::Code::Unknown | tonic::Code::Cancelled => {
                Error::Transport(format!("cannot reach {addr}: {cause}"))
            }
            // A TLS port's answer to a plaintext client (warren_tls::server): the message
            // says what to give.
            tonic::Code::Unauthenticated if status.message().starts_with("TLS: ") => {
                Error::Transport(format!("cannot use {addr}: {cause}"))
            }
            code => Error::Transport(format!(
                "{addr} answered {code:?} without a Warren error (is it a Warren server?): {cause}"
            )),
        }
    }

    /// A call to `addr` that got no reply within `timeout`.
    pub(crate) fn timed_out(addr: &str, timeout: std::time::Duration) -> Self {
        Error::Transport(format!("no reply from {addr} within {timeout:?}"))
    }
}

impl From<WarrenError> for Error {
    fn from(e: WarrenError) -> Self {
        Error::Warren(e)
    }
}

/// `first`, followed by the messages of `err`'s sources that say something new,
/// joined with `": "`. Tonic's errors wrap hyper's which wrap the OS error; each level
/// alone is vague ("transport error"), the chain is what a person needs.
pub(crate) fn error_chain(err: &dyn std::error::Error, first: &str) -> String {
    let mut out = first.to_string();
    let mut source = err.source();
    while let Some(s) = source {
        let text = s.to_string();
        if !text.is_empty() && !out.contains(&text) {
            if !out.is_empty() {
                out.push_str(": ");
            }
            out.push_str(&text);
        }
        source = s.source();
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn warren_status_keeps_its_code() {
        let status: tonic::Status = WarrenError::lock_held("held by someone").into();
        let e = Error::from_status(&status, "h:1");
        assert_eq!(e.code(), Some(ErrorCode::LockHeld));
        assert_eq!(e.code_name(), "LOCK_HELD");
        assert_eq!(e.message(), "held by someone");
        assert!(!e.may_have_taken_effect());
    }

    #[test]
    fn the_effect_follows_the_table_and_is_unknown_for_transport_failures() {
        let lost: tonic::Status = WarrenError::outcome_unknown("reset after send").into();
        assert_eq!(Error::from_status(&lost, "h:1").effect(), Effect::Unknown);
        let unsent: tonic::Status = WarrenError::unreachable("no master").into();
        let e = Error::from_status(&unsent, "h:1");
        assert_eq!((e.effect(), e.is_retryable()), (Effect::NotApplied, true));
        let t = Error::from_status(&tonic::Status::unavailable("connection reset"), "h:1");
        assert!(t.may_have_taken_effect());
        assert!(!Error::InvalidArgument("relative path".into()).may_have_taken_effect());
    }

    #[test]
    fn foreign_status_is_a_transport_failure() {
        let e = Error::from_status(&tonic::Status::unavailable("connection refused"), "h:1");
        assert_eq!(e.code(), None);
        assert_eq!(e.code_name(), "UNAVAILABLE");
        assert_eq!(e.message(), "cannot reach h:1: connection refused");
        assert!(e.is_retryable());
    }

    #[test]
    fn local_rejections_are_invalid_argument() {
        let e = Error::InvalidArgument("nope".into());
        assert_eq!(e.code(), Some(ErrorCode::InvalidArgument));
        assert_eq!(e.code_name(), "INVALID_ARGUMENT");
        assert!(!e.is_retryable());
    }
}
