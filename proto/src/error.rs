//! The one error table (like etcd's `rpctypes`): each Warren condition ↔ a gRPC code plus a
//! machine-readable [`pb::ErrorDetail`] carried in the status details. Cells, proxies and
//! clients all go through [`WarrenError`]; nothing else builds a `tonic::Status` by hand.

use crate::pb;
use prost::Message;
use std::fmt;

pub use pb::ErrorCode;

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
        ErrorCode::Internal | ErrorCode::Unspecified => Code::Internal,
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

    /// The code's name as in the table, e.g. `NOT_FOUND`.
    pub fn code_name(&self) -> &'static str {
        self.code.as_str_name()
    }

    pub fn is_retryable(&self) -> bool {
        is_retryable(self.code)
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
        }
    }

    /// Reads a Warren error back out of a status. `None` when the status carries no Warren
    /// detail (a transport failure, or a server that is not Warren).
    pub fn from_status(status: &tonic::Status) -> Option<WarrenError> {
        let detail = pb::ErrorDetail::decode(status.details()).ok()?;
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

impl fmt::Display for WarrenError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.code_name(), self.message)
    }
}

impl std::error::Error for WarrenError {}

impl From<WarrenError> for tonic::Status {
    fn from(e: WarrenError) -> Self {
        let details = e.detail().encode_to_vec();
        tonic::Status::with_details(grpc_code(e.code), e.message, details.into())
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

    #[test]
    fn every_code_has_a_row() {
        for raw in 1..=16 {
            let code = ErrorCode::try_from(raw).unwrap();
            // Unspecified is the only code that may map to Internal besides Internal itself.
            if code != ErrorCode::Internal {
                assert_ne!(grpc_code(code), tonic::Code::Internal, "{code:?}");
            }
        }
    }

    #[test]
    fn foreign_status_is_not_a_warren_error() {
        assert_eq!(
            WarrenError::from_status(&tonic::Status::unavailable("conn refused")),
            None
        );
    }
}
