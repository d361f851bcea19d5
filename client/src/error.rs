//! The client library's one error type, [`Error`]: a Warren error from the table in
//! `warren-proto`, a transport failure (mapped to the table's `UNREACHABLE` or
//! `OUTCOME_UNKNOWN`, docs/protocol.md "Errors"), a malformed reply, or an argument
//! rejected locally before anything was sent.

use warren_proto::{Effect, ErrorCode, WarrenError};

/// Everything a client call can fail with.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum Error {
    /// The server answered with an error from the table (`NOT_FOUND`, `LOCK_HELD`, …), or
    /// the library concluded one locally (`SESSION_EXPIRED` once the session is gone).
    #[error("{0}")]
    Warren(WarrenError),
    /// The server could not be reached or did not answer in time, with the table's code
    /// for it: `UNREACHABLE` when the request provably never left this process
    /// (connection refused, DNS, a TLS handshake refused, no connection in time: safe to
    /// send again, whatever the call), `OUTCOME_UNKNOWN` when it may have been sent (a
    /// connection reset mid-call, no reply in time: the call may have taken effect). The
    /// message names the address and the cause, e.g. `cannot reach 127.0.0.1:7100:
    /// connection refused`. Make one with [`Error::unreachable`] or
    /// [`Error::outcome_unknown`].
    #[error("{message}")]
    Transport {
        /// [`ErrorCode::Unreachable`] or [`ErrorCode::OutcomeUnknown`].
        code: ErrorCode,
        /// What failed, where.
        message: String,
    },
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
    /// A transport failure where the request never left this process: `UNREACHABLE`,
    /// [`Effect::NotApplied`].
    pub fn unreachable(message: impl Into<String>) -> Self {
        Error::Transport {
            code: ErrorCode::Unreachable,
            message: message.into(),
        }
    }

    /// A transport failure after the request may have been sent: `OUTCOME_UNKNOWN`,
    /// [`Effect::Unknown`].
    pub fn outcome_unknown(message: impl Into<String>) -> Self {
        Error::Transport {
            code: ErrorCode::OutcomeUnknown,
            message: message.into(),
        }
    }

    /// The code from the error table, when there is one. Arguments rejected locally count
    /// as `INVALID_ARGUMENT`, transport failures as `UNREACHABLE` or `OUTCOME_UNKNOWN`;
    /// malformed replies and calls on a poisoned handle have no code.
    pub fn code(&self) -> Option<ErrorCode> {
        match self {
            Error::Warren(e) => Some(e.code),
            Error::Transport { code, .. } => Some(*code),
            Error::InvalidArgument(_) => Some(ErrorCode::InvalidArgument),
            Error::Protocol(_) | Error::Poisoned(_) => None,
        }
    }

    /// A code name for people and scripts: the table's name when there is a code,
    /// `INTERNAL` for malformed replies and `CANCELLED` for calls on a poisoned handle.
    pub fn code_name(&self) -> &'static str {
        match self {
            Error::Warren(e) => e.code_name(),
            Error::Transport { code, .. } => code.as_str_name(),
            Error::Protocol(_) => "INTERNAL",
            Error::InvalidArgument(_) => ErrorCode::InvalidArgument.as_str_name(),
            Error::Poisoned(_) => "CANCELLED",
        }
    }

    /// The human half of the error, without the code.
    pub fn message(&self) -> String {
        match self {
            Error::Warren(e) => e.message.clone(),
            Error::Transport { message: m, .. }
            | Error::InvalidArgument(m)
            | Error::Poisoned(m) => m.clone(),
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
            Error::Transport { .. } => true,
            Error::Protocol(_) | Error::InvalidArgument(_) | Error::Poisoned(_) => false,
        }
    }

    /// Whether the failed call may have taken effect: the error table's column for a
    /// Warren error and for a transport failure ([`ErrorCode::may_have_taken_effect`]:
    /// `UNREACHABLE` not applied, `OUTCOME_UNKNOWN` unknown); [`Effect::NotApplied`] for
    /// what the library refused before sending; [`Effect::Unknown`] for a malformed reply,
    /// where the library cannot tell whether the server acted (its own retries of
    /// idempotent calls, and of calls a proxy reports `UNREACHABLE`, happen before an
    /// error gets here).
    pub fn effect(&self) -> Effect {
        match self {
            Error::Warren(WarrenError { code, .. }) | Error::Transport { code, .. } => {
                warren_proto::error::effect(*code)
            }
            Error::InvalidArgument(_) | Error::Poisoned(_) => Effect::NotApplied,
            Error::Protocol(_) => Effect::Unknown,
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
    /// status carries a Warren detail, otherwise a transport failure, `UNREACHABLE` when
    /// the request provably never left ([`crate::transport::not_sent`]: the channel could
    /// not connect) or a TLS port refused a plaintext request, else `OUTCOME_UNKNOWN`.
    pub(crate) fn from_status(status: &tonic::Status, addr: &str) -> Self {
        if let Some(e) = WarrenError::from_status(status) {
            return Error::Warren(e);
        }
        let cause = error_chain(status, status.message());
        match status.code() {
            _ if crate::transport::not_sent(status) => {
                Error::unreachable(format!("cannot reach {addr}: {cause}"))
            }
            tonic::Code::DeadlineExceeded => {
                Error::outcome_unknown(format!("no reply from {addr} in time: {cause}"))
            }
            tonic::Code::Unavailable | tonic::Code::Unknown | tonic::Code::Cancelled => {
                Error::outcome_unknown(format!("lost the call to {addr}: {cause}"))
            }
            // A TLS port's answer to a plaintext client (warren_tls::server), refused
            // before any Warren service saw it: the message says what to give.
            tonic::Code::Unauthenticated if status.message().starts_with("TLS: ") => {
                Error::unreachable(format!("cannot use {addr}: {cause}"))
            }
            code => Error::outcome_unknown(format!(
                "{addr} answered {code:?} without a Warren error (is it a Warren server?): {cause}"
            )),
        }
    }

    /// A call to `addr` that got no reply within `timeout` (it may have been sent).
    pub(crate) fn timed_out(addr: &str, timeout: std::time::Duration) -> Self {
        Error::outcome_unknown(format!("no reply from {addr} within {timeout:?}"))
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
        assert_eq!(t.code(), Some(ErrorCode::OutcomeUnknown));
        assert!(!Error::InvalidArgument("relative path".into()).may_have_taken_effect());
    }

    #[test]
    fn a_status_without_a_warren_error_is_a_lost_call() {
        let e = Error::from_status(&tonic::Status::unavailable("connection reset"), "h:1");
        assert_eq!(e.code(), Some(ErrorCode::OutcomeUnknown));
        assert_eq!(e.code_name(), "OUTCOME_UNKNOWN");
        assert_eq!(e.message(), "lost the call to h:1: connection reset");
        assert!(e.is_retryable());
        assert!(
            e.warren().is_none(),
            "a transport failure, not a server's answer"
        );
        let late = Error::from_status(&tonic::Status::deadline_exceeded("timeout"), "h:1");
        assert_eq!(
            (late.code_name(), late.effect()),
            ("OUTCOME_UNKNOWN", Effect::Unknown)
        );
        let e = Error::timed_out("h:1", std::time::Duration::from_secs(2));
        assert_eq!(
            (e.code_name(), e.effect()),
            ("OUTCOME_UNKNOWN", Effect::Unknown)
        );
        assert_eq!(e.to_string(), "no reply from h:1 within 2s");
    }

    /// Transport failures map to the table: a request that never left is `UNREACHABLE`
    /// and not applied, one that may have been sent `OUTCOME_UNKNOWN`, effect unknown.
    #[tokio::test]
    async fn transport_failures_map_to_the_table() {
        // A call on a channel to a port where nothing listens (port 1): refused before
        // anything was sent.
        let channel = tonic::transport::Endpoint::from_static("http://127.0.0.1:1").connect_lazy();
        let status = warren_proto::pb::warren_client::WarrenClient::new(channel)
            .locate(warren_proto::pb::LocateRequest::default())
            .await
            .expect_err("nothing listens on port 1");
        let e = Error::from_status(&status, "127.0.0.1:1");
        assert_eq!(e.code(), Some(ErrorCode::Unreachable), "{e}");
        assert_eq!(e.code_name(), "UNREACHABLE");
        assert_eq!(e.effect(), Effect::NotApplied);
        assert!(!e.may_have_taken_effect() && e.is_retryable());
        assert!(e.message().starts_with("cannot reach 127.0.0.1:1: "), "{e}");
        // A dial that fails says the same.
        let e = crate::transport::dial("127.0.0.1:1", std::time::Duration::from_secs(5))
            .await
            .expect_err("nothing listens on port 1");
        assert_eq!(
            (e.code_name(), e.effect()),
            ("UNREACHABLE", Effect::NotApplied)
        );
        // A TLS port refusing a plaintext request: nothing ran.
        let tls = tonic::Status::unauthenticated("TLS: this port serves mutual TLS");
        assert_eq!(Error::from_status(&tls, "h:1").code_name(), "UNREACHABLE");
        // The constructors.
        assert_eq!(
            Error::unreachable("x").effect(),
            warren_proto::error::effect(ErrorCode::Unreachable)
        );
        assert_eq!(Error::outcome_unknown("x").effect(), Effect::Unknown);
    }

    #[test]
    fn local_rejections_are_invalid_argument() {
        let e = Error::InvalidArgument("nope".into());
        assert_eq!(e.code(), Some(ErrorCode::InvalidArgument));
        assert_eq!(e.code_name(), "INVALID_ARGUMENT");
        assert!(!e.is_retryable());
    }
}
