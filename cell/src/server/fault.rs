//! The crash hook of the partitioning tests (`tests/process/partition.rs`): with
//! `WARREN_FAULT=abort-after-entry` or `abort-after-anchor-delete` in its environment, a
//! cell aborts between the two steps of a cross-cell `mkdir` or `rm`, so a test can check
//! that the janitor repairs what it left after a restart.
//!
//! Only in builds with the feature `fault-injection`, which the root package enables for
//! its tests (a dev-dependency): a production binary neither reads `WARREN_FAULT` nor
//! contains the hook, and [`crash_if_armed`] compiles to nothing.

/// Where a cross-cell step can be interrupted.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum CrashPoint {
    /// Right after an entry marked anchor-pending is committed
    /// (`WARREN_FAULT=abort-after-entry`).
    AfterEntry,
    /// Right after an anchor's removal and its pending unlink are committed
    /// (`WARREN_FAULT=abort-after-anchor-delete`).
    AfterAnchorDelete,
}

/// Aborts the process if `WARREN_FAULT` names `at`.
#[cfg(feature = "fault-injection")]
pub(super) fn crash_if_armed(at: CrashPoint) {
    if armed() == Some(at) {
        tracing::error!(?at, "WARREN_FAULT: aborting the process");
        std::process::abort();
    }
}

/// Without the feature `fault-injection` there is no hook.
#[cfg(not(feature = "fault-injection"))]
#[inline(always)]
pub(super) fn crash_if_armed(_at: CrashPoint) {}

/// The crash point `WARREN_FAULT` names, read once per process.
#[cfg(feature = "fault-injection")]
fn armed() -> Option<CrashPoint> {
    static ARMED: std::sync::OnceLock<Option<CrashPoint>> = std::sync::OnceLock::new();
    *ARMED.get_or_init(|| parse(std::env::var("WARREN_FAULT").ok().as_deref()))
}

/// What a value of `WARREN_FAULT` arms; an unknown one arms nothing (and is logged).
#[cfg(feature = "fault-injection")]
fn parse(value: Option<&str>) -> Option<CrashPoint> {
    match value {
        Some("abort-after-entry") => Some(CrashPoint::AfterEntry),
        Some("abort-after-anchor-delete") => Some(CrashPoint::AfterAnchorDelete),
        Some("") | None => None,
        Some(other) => {
            tracing::warn!(
                fault = other,
                "WARREN_FAULT is not abort-after-entry or abort-after-anchor-delete; ignored"
            );
            None
        }
    }
}

#[cfg(all(test, feature = "fault-injection"))]
mod tests {
    use super::*;

    #[test]
    fn warren_fault_names_the_crash_point() {
        assert_eq!(
            parse(Some("abort-after-entry")),
            Some(CrashPoint::AfterEntry)
        );
        assert_eq!(
            parse(Some("abort-after-anchor-delete")),
            Some(CrashPoint::AfterAnchorDelete)
        );
        assert_eq!(parse(Some("")), None);
        assert_eq!(parse(None), None);
        assert_eq!(parse(Some("abort-somewhere-else")), None);
    }
}
