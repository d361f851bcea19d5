//! The one error table (like etcd's `rpctypes`): each Warren condition ↔ a gRPC code plus a
//! machine-readable [`pb::ErrorDetail`] carried in the status details. Cells, proxies and
//! clients all go through [`WarrenError`]; nothing else builds a `tonic::Status` by hand.
//!
//! On the wire the details are gRPC's standard form (docs/protocol.md, "Errors"): the
//! `grpc-status-details-bin` trailer holds a `google.rpc.Status` whose `details` carry one
//! `Any` of type [`ERROR_DETAIL_TYPE_URL`], so Python's `grpc_status.rpc_status`, Go's
//! `status.FromError(..).Details()` and Java's `StatusProto` read it unchanged.

use crate::pb;
use prost::Message;
use std::fmt;

/// The `Any.type_url` of a [`pb::ErrorDetail`] inside the `google.rpc.Status` details.
pub const ERROR_DETAIL_TYPE_URL: &str = "type.googleapis.com/warren.v1.ErrorDetail";

pub use pb::{Effect, ErrorCode};

/// The table: which gRPC code each Warren error code travels as.
///
/// Chosen so that generic gRPC clients retry the right things: `UNAVAILABLE` only for
/// conditions that a retry elsewhere (or later) cures.
pub fn grpc_code(code: ErrorCode) -> tonic::Code {
    use tonic::Code;
    match code {
        ErrorCode::NotMaster => Code::Unavailable,
        ErrorCode::FailoverInProgress => Code::Unavailable,
        ErrorCode::WrongCell => Code::FailedPrecondition,
        ErrorCode::StaleEpoch => Code::FailedPrecondition,
        ErrorCode::SessionExpired => Code::FailedPrecondition,
        ErrorCode::HandleInvalid => Code::FailedPrecondition,
        ErrorCode::NotFound => Code::NotFound,
        ErrorCode::AlreadyExists => Code::AlreadyExists,
        ErrorCode::NotEmpty => Code::FailedPrecondition,
        ErrorCode::PermissionDenied => Code::PermissionDenied,
        ErrorCode::LockHeld => Code::Aborted,
        ErrorCode::GenerationMismatch => Code::Aborted,
        ErrorCode::TooLarge => Code::InvalidArgument,
        ErrorCode::InvalidArgument => Code::InvalidArgument,
        ErrorCode::Overloaded => Code::ResourceExhausted,
        ErrorCode::Unreachable => Code::Unavailable,
        ErrorCode::OutcomeUnknown => Code::Unavailable,
        ErrorCode::Internal | ErrorCode::Unspecified => Code::Internal,
    }
}

/// The table's other column: whether a call that failed with `code` may have taken effect.
///
/// Every refusal is [`Effect::NotApplied`]: the cell checks before it changes anything, and
/// a proxy that could not send a call says so with `UNREACHABLE`. Only a connection lost
/// after the call was sent (`OUTCOME_UNKNOWN`) and a store failing during a write
/// (`INTERNAL`) leave the outcome open.
pub fn effect(code: ErrorCode) -> Effect {
    match code {
        ErrorCode::OutcomeUnknown | ErrorCode::Internal | ErrorCode::Unspecified => Effect::Unknown,
        ErrorCode::NotMaster
        | ErrorCode::WrongCell
        | ErrorCode::StaleEpoch
        | ErrorCode::FailoverInProgress
        | ErrorCode::SessionExpired
        | ErrorCode::HandleInvalid
        | ErrorCode::NotFound
        | ErrorCode::AlreadyExists
        | ErrorCode::NotEmpty
        | ErrorCode::PermissionDenied
        | ErrorCode::LockHeld
        | ErrorCode::GenerationMismatch
        | ErrorCode::TooLarge
        | ErrorCode::InvalidArgument
        | ErrorCode::Overloaded
        | ErrorCode::Unreachable => Effect::NotApplied,
    }
}

impl ErrorCode {
    /// Whether a call that failed with this code may have taken effect ([`effect`]):
    /// false means it certainly did not, so sending it again cannot apply it twice.
    pub fn may_have_taken_effect(self) -> bool {
        effect(self) != Effect::NotApplied
    }
}

/// Whether a caller should retry (possibly after redirecting) rather than give up.
/// Mirrors openraft's split of API errors into "retry or redirect" and "fatal".
pub fn is_retryable(code: ErrorCode) -> bool {
    matches!(
        code,
        ErrorCode::NotMaster
            | ErrorCode::FailoverInProgress
            | ErrorCode::WrongCell
            | ErrorCode::StaleEpoch
            | ErrorCode::Overloaded
            | ErrorCode::Unreachable
    )
}

/// A Warren error: a code from the table, a message a person can act on, and the
/// detail fields some codes carry.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WarrenError {
    pub code: ErrorCode,
    pub message: String,
    /// `NOT_MASTER`: the master's address, if known.
    pub master: String,
    /// `STALE_EPOCH`: the server's epoch.
    pub epoch: u64,
    /// `WRONG_CELL`: the server's map epoch.
    pub map_epoch: u64,
    /// `WRONG_CELL`: the cell that owns the slot.
    pub owner: String,
    /// `NOT_FOUND` from `Open`: the absence may be cached (the master registered the
    /// caller and will invalidate it before the path is created).
    pub cacheable: bool,
    /// `WRONG_CELL` from `Open`: the path is a directory whose child anchor (children,
    /// handles, metadata) lives in `owner`; reopen it there with `OpenTarget::Anchor`.
    pub directory: bool,
    /// `WRONG_CELL{directory}`: the Open that got it created the directory.
    pub created: bool,
}

impl WarrenError {
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        WarrenError {
            code,
            message: message.into(),
            master: String::new(),
            epoch: 0,
            map_epoch: 0,
            owner: String::new(),
            cacheable: false,
            directory: false,
            created: false,
        }
    }

    pub fn not_master(master: impl Into<String>) -> Self {
        let master = master.into();
        let message = if master.is_empty() {
            "this replica is not the master and does not know who is".to_string()
        } else {
            format!("this replica is not the master; the master is {master}")
        };
        WarrenError {
            master,
            ..Self::new(ErrorCode::NotMaster, message)
        }
    }

    pub fn wrong_cell(map_epoch: u64, owner: impl Into<String>) -> Self {
        let owner = owner.into();
        WarrenError {
            map_epoch,
            message: format!(
                "this cell does not own the slot at map epoch {map_epoch}; {owner} does"
            ),
            owner,
            ..Self::new(ErrorCode::WrongCell, "")
        }
    }

    /// `WRONG_CELL{directory}`: `path` is a directory whose child anchor is in `owner`.
    pub fn directory_elsewhere(map_epoch: u64, owner: impl Into<String>, path: &str) -> Self {
        let owner = owner.into();
        WarrenError {
            map_epoch,
            message: format!(
                "{path} is a directory whose children live in cell {owner} (map epoch {map_epoch}); open it there as an anchor"
            ),
            owner,
            directory: true,
            ..Self::new(ErrorCode::WrongCell, "")
        }
    }

    pub fn stale_epoch(epoch: u64, yours: u64) -> Self {
        WarrenError {
            epoch,
            ..Self::new(
                ErrorCode::StaleEpoch,
                format!(
                    "request was made for master epoch {yours}; the master epoch is now {epoch}"
                ),
            )
        }
    }

    pub fn failover_in_progress() -> Self {
        Self::new(
            ErrorCode::FailoverInProgress,
            "the master is recovering from a failover; only KeepAlive is served until every session has acknowledged it",
        )
    }

    pub fn session_expired(message: impl Into<String>) -> Self {
        Self::new(ErrorCode::SessionExpired, message)
    }
    pub fn handle_invalid(message: impl Into<String>) -> Self {
        Self::new(ErrorCode::HandleInvalid, message)
    }
    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new(ErrorCode::NotFound, message)
    }
    pub fn already_exists(message: impl Into<String>) -> Self {
        Self::new(ErrorCode::AlreadyExists, message)
    }
    pub fn not_empty(message: impl Into<String>) -> Self {
        Self::new(ErrorCode::NotEmpty, message)
    }
    pub fn permission_denied(message: impl Into<String>) -> Self {
        Self::new(ErrorCode::PermissionDenied, message)
    }
    pub fn lock_held(message: impl Into<String>) -> Self {
        Self::new(ErrorCode::LockHeld, message)
    }
    pub fn generation_mismatch(message: impl Into<String>) -> Self {
        Self::new(ErrorCode::GenerationMismatch, message)
    }
    pub fn too_large(message: impl Into<String>) -> Self {
        Self::new(ErrorCode::TooLarge, message)
    }
    pub fn invalid_argument(message: impl Into<String>) -> Self {
        Self::new(ErrorCode::InvalidArgument, message)
    }
    pub fn overloaded(message: impl Into<String>) -> Self {
        Self::new(ErrorCode::Overloaded, message)
    }
    pub fn internal(message: impl Into<String>) -> Self {
        Self::new(ErrorCode::Internal, message)
    }
    /// A proxy could not send the call to the cell: not sent, safe to retry.
    pub fn unreachable(message: impl Into<String>) -> Self {
        Self::new(ErrorCode::Unreachable, message)
    }
    /// The connection to the cell failed after the call was sent: it may have taken effect.
    pub fn outcome_unknown(message: impl Into<String>) -> Self {
        Self::new(ErrorCode::OutcomeUnknown, message)
    }

    /// The code's name as in the table, e.g. `NOT_FOUND`.
    pub fn code_name(&self) -> &'static str {
        self.code.as_str_name()
    }

    pub fn is_retryable(&self) -> bool {
        is_retryable(self.code)
    }

    /// Whether the failed call may have taken effect (the table's [`effect`] for the code).
    pub fn may_have_taken_effect(&self) -> bool {
        self.code.may_have_taken_effect()
    }

    fn detail(&self) -> pb::ErrorDetail {
        pb::ErrorDetail {
            code: self.code as i32,
            master: self.master.clone(),
            epoch: self.epoch,
            map_epoch: self.map_epoch,
            owner: self.owner.clone(),
            cacheable: self.cacheable,
            directory: self.directory,
            created: self.created,
            effect: effect(self.code) as i32,
        }
    }

    /// Reads a Warren error back out of a status. `None` when the status carries no Warren
    /// detail (a transport failure, or a server that is not Warren).
    ///
    /// Reads the standard form (a `google.rpc.Status` holding an `Any` of
    /// [`ERROR_DETAIL_TYPE_URL`]) and also the bare `ErrorDetail` that Warren sent before it,
    /// so a client or proxy keeps understanding an older cell during a rolling upgrade.
    pub fn from_status(status: &tonic::Status) -> Option<WarrenError> {
        let detail = decode_detail(status)?;
        let code = ErrorCode::try_from(detail.code).ok()?;
        if code == ErrorCode::Unspecified {
            return None;
        }
        Some(WarrenError {
            code,
            message: status.message().to_string(),
            master: detail.master,
            epoch: detail.epoch,
            map_epoch: detail.map_epoch,
            owner: detail.owner,
            cacheable: detail.cacheable,
            directory: detail.directory,
            created: detail.created,
        })
    }
}

/// The `ErrorDetail` in a status's `grpc-status-details-bin`, in either form.
///
/// The standard form is tried first. A bare `ErrorDetail` can also decode as a
/// `google.rpc.Status` (its fields 1 and 2 are a varint and a string there too), but never
/// with `details` (field 3, length-delimited, is `epoch`, a varint, in an `ErrorDetail`), so
/// one without details is read as the bare form — unless it restates the status's own
/// code and message, which is another service's standard status with no details.
fn decode_detail(status: &tonic::Status) -> Option<pb::ErrorDetail> {
    let bytes = status.details();
    if bytes.is_empty() {
        return None;
    }
    if let Ok(standard) = tonic_types::Status::decode(bytes) {
        if let Some(any) = standard
            .details
            .iter()
            .find(|any| any.type_url == ERROR_DETAIL_TYPE_URL)
        {
            return pb::ErrorDetail::decode(any.value.as_slice()).ok();
        }
        let restates_status = standard.code == status.code() as i32
            && !standard.message.is_empty()
            && standard.message == status.message();
        if !standard.details.is_empty() || restates_status {
            // Standard form, but no Warren detail in it.
            return None;
        }
    }
    pb::ErrorDetail::decode(bytes).ok()
}

impl fmt::Display for WarrenError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.code_name(), self.message)
    }
}

impl std::error::Error for WarrenError {}

impl From<WarrenError> for tonic::Status {
    fn from(e: WarrenError) -> Self {
        let code = grpc_code(e.code);
        let details = tonic_types::Status {
            code: code as i32,
            message: e.message.clone(),
            details: vec![prost_types::Any {
                type_url: ERROR_DETAIL_TYPE_URL.to_string(),
                value: e.detail().encode_to_vec(),
            }],
        }
        .encode_to_vec();
        tonic::Status::with_details(code, e.message, details.into())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_through_status() {
        let all = [
            WarrenError::not_master("127.0.0.1:1"),
            WarrenError::wrong_cell(7, "c2"),
            WarrenError::directory_elsewhere(7, "c3", "/ls/x/d"),
            WarrenError::stale_epoch(9, 8),
            WarrenError::failover_in_progress(),
            WarrenError::not_found("/ls/x/y does not exist"),
            WarrenError::too_large("too big"),
        ];
        for e in all {
            let status: tonic::Status = e.clone().into();
            assert_eq!(status.code(), grpc_code(e.code));
            assert_eq!(WarrenError::from_status(&status), Some(e));
        }
    }

    /// The effect column: refusals did not apply; a call lost after it was sent, or a store
    /// failing under it, may have; and the detail carries the column for other languages.
    #[test]
    fn the_table_says_whether_a_call_may_have_taken_effect() {
        let not_applied = [
            ErrorCode::NotFound,
            ErrorCode::LockHeld,
            ErrorCode::GenerationMismatch,
            ErrorCode::WrongCell,
            ErrorCode::SessionExpired,
            ErrorCode::NotMaster,
            ErrorCode::Unreachable,
        ];
        for code in not_applied {
            assert!(!code.may_have_taken_effect(), "{code:?}");
        }
        for code in [ErrorCode::OutcomeUnknown, ErrorCode::Internal] {
            assert!(code.may_have_taken_effect(), "{code:?}");
        }
        for (e, want) in [
            (WarrenError::unreachable("no master"), Effect::NotApplied),
            (WarrenError::outcome_unknown("reset"), Effect::Unknown),
        ] {
            assert_eq!(e.detail().effect, want as i32);
            assert_eq!(grpc_code(e.code), tonic::Code::Unavailable);
        }
        assert!(WarrenError::unreachable("x").is_retryable());
        assert!(!WarrenError::outcome_unknown("x").is_retryable());
    }

    #[test]
    fn every_code_has_a_row() {
        for raw in 1..=18 {
            let code = ErrorCode::try_from(raw).unwrap();
            // Unspecified is the only code that may map to Internal besides Internal itself.
            if code != ErrorCode::Internal {
                assert_ne!(grpc_code(code), tonic::Code::Internal, "{code:?}");
            }
        }
    }

    /// The trailer is a `google.rpc.Status` restating the code and message, with the
    /// detail as its one `Any`: what `grpc_status.rpc_status.from_call` checks.
    #[test]
    fn details_are_a_standard_google_rpc_status() {
        let e = WarrenError::wrong_cell(7, "c2");
        let status: tonic::Status = e.clone().into();
        let standard = tonic_types::Status::decode(status.details()).unwrap();
        assert_eq!(standard.code, tonic::Code::FailedPrecondition as i32);
        assert_eq!(standard.message, status.message());
        assert_eq!(standard.details.len(), 1);
        assert_eq!(standard.details[0].type_url, ERROR_DETAIL_TYPE_URL);
        let detail = pb::ErrorDetail::decode(standard.details[0].value.as_slice()).unwrap();
        assert_eq!(detail.code, ErrorCode::WrongCell as i32);
        assert_eq!((detail.map_epoch, detail.owner.as_str()), (7, "c2"));
    }

    /// A status from a Warren of before the standard form (a bare `ErrorDetail` in the
    /// trailer) still reads, for every field shape: with and without `epoch`, which is the
    /// field that would be `details` in a `google.rpc.Status`.
    #[test]
    fn reads_the_old_bare_form() {
        let all = [
            WarrenError::not_master("127.0.0.1:1"),
            WarrenError::not_master(""),
            WarrenError::wrong_cell(7, "c2"),
            WarrenError::stale_epoch(9, 8),
            WarrenError::not_empty("/ls/x has children"),
            WarrenError::lock_held("held"),
            WarrenError {
                cacheable: true,
                ..WarrenError::not_found("/ls/x/y does not exist")
            },
        ];
        for e in all {
            let bare = e.detail().encode_to_vec();
            let status = tonic::Status::with_details(grpc_code(e.code), &e.message, bare.into());
            assert_eq!(WarrenError::from_status(&status), Some(e));
        }
    }

    #[test]
    fn a_standard_status_without_warren_detail_is_not_a_warren_error() {
        let other = tonic_types::Status {
            code: tonic::Code::NotFound as i32,
            message: "no such thing".into(),
            details: vec![],
        };
        let status = tonic::Status::with_details(
            tonic::Code::NotFound,
            "no such thing",
            other.encode_to_vec().into(),
        );
        assert_eq!(WarrenError::from_status(&status), None);
        let with_foreign_any = tonic_types::Status {
            details: vec![prost_types::Any {
                type_url: "type.googleapis.com/google.rpc.RetryInfo".into(),
                value: vec![],
            }],
            ..other
        };
        let status = tonic::Status::with_details(
            tonic::Code::NotFound,
            "no such thing",
            with_foreign_any.encode_to_vec().into(),
        );
        assert_eq!(WarrenError::from_status(&status), None);
    }

    #[test]
    fn foreign_status_is_not_a_warren_error() {
        assert_eq!(
            WarrenError::from_status(&tonic::Status::unavailable("conn refused")),
            None
        );
    }
}
