//! The fault hooks of the process tests: with `WARREN_FAULT=<hook>` in its environment, a
//! cell aborts (as `kill -9` would stop it) or stalls at one chosen step, so a test can
//! check what a restart leaves. The partitioning tests (`tests/process/partition.rs`)
//! interrupt a cross-cell `mkdir` or `rm` between its two steps; the reshard fault tests
//! (`tests/process/reshard_faults.rs`) stop a source, a target or the meta cell at a
//! chosen step of a slot move, or stretch a final copy past the freeze bound. The
//! partitioning hooks are described in docs/partitioning.md, the reshard hooks in
//! docs/operations.md ("Reshard fault hooks").
//!
//! Only in builds with the feature `fault-injection`, which the root package enables for
//! its tests (a dev-dependency): a production binary neither reads `WARREN_FAULT` nor
//! contains the hooks, and [`crash_if_armed`] and [`final_export_delay`] compile to
//! nothing.

use std::time::Duration;

/// Where a step can be interrupted.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum CrashPoint {
    /// Right after an entry marked anchor-pending is committed
    /// (`WARREN_FAULT=abort-after-entry`).
    AfterEntry,
    /// Right after an anchor's removal and its pending unlink are committed
    /// (`WARREN_FAULT=abort-after-anchor-delete`).
    AfterAnchorDelete,
    /// A reshard source, on the first `ExportSlots` it receives, before exporting: the
    /// source dies during the copy (`WARREN_FAULT=abort-on-export`).
    OnExport,
    /// A reshard source, once a `FreezeSlots` is in force and before it answers: the
    /// source dies with the slots frozen (`WARREN_FAULT=abort-on-freeze`).
    OnFreeze,
    /// A reshard target, on the first `ImportSlots` carrying a catch-up round (a bundle
    /// relative to what it staged, not a full copy), before staging it: the target dies
    /// during catch-up (`WARREN_FAULT=abort-on-catch-up-import`).
    OnCatchUpImport,
    /// The meta cell's job driver, on a map commit of slots their source has handed off,
    /// before writing the map: the meta master dies between the commit point and the map
    /// (`WARREN_FAULT=abort-before-map-commit`).
    BeforeMapCommit,
}

/// What `WARREN_FAULT` can arm.
#[cfg(feature = "fault-injection")]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Fault {
    Crash(CrashPoint),
    /// A reshard source answers an `ExportSlots` of slots it holds frozen only after
    /// [`SLOW_FINAL_EXPORT`], so the freeze passes its bound before the hand-off
    /// (`WARREN_FAULT=slow-final-export`).
    SlowFinalExport,
}

/// How long `slow-final-export` holds a final export: longer than any freeze bound a test
/// gives (`--freeze-timeout 500ms`), shorter than a test's patience.
#[cfg(feature = "fault-injection")]
const SLOW_FINAL_EXPORT: Duration = Duration::from_secs(3);

/// Every hook's name and what it arms.
#[cfg(feature = "fault-injection")]
const HOOKS: [(&str, Fault); 7] = [
    ("abort-after-entry", Fault::Crash(CrashPoint::AfterEntry)),
    (
        "abort-after-anchor-delete",
        Fault::Crash(CrashPoint::AfterAnchorDelete),
    ),
    ("abort-on-export", Fault::Crash(CrashPoint::OnExport)),
    ("abort-on-freeze", Fault::Crash(CrashPoint::OnFreeze)),
    (
        "abort-on-catch-up-import",
        Fault::Crash(CrashPoint::OnCatchUpImport),
    ),
    (
        "abort-before-map-commit",
        Fault::Crash(CrashPoint::BeforeMapCommit),
    ),
    ("slow-final-export", Fault::SlowFinalExport),
];

/// Aborts the process if `WARREN_FAULT` names `at`.
#[cfg(feature = "fault-injection")]
pub(super) fn crash_if_armed(at: CrashPoint) {
    if armed() == Some(Fault::Crash(at)) {
        tracing::error!(?at, "WARREN_FAULT: aborting the process");
        std::process::abort();
    }
}

/// Without the feature `fault-injection` there is no hook.
#[cfg(not(feature = "fault-injection"))]
#[inline(always)]
pub(super) fn crash_if_armed(_at: CrashPoint) {}

/// How long to hold the answer to an export of frozen slots (`slow-final-export`).
#[cfg(feature = "fault-injection")]
pub(super) fn final_export_delay() -> Option<Duration> {
    (armed() == Some(Fault::SlowFinalExport)).then(|| {
        tracing::warn!(delay = ?SLOW_FINAL_EXPORT, "WARREN_FAULT: holding a final export");
        SLOW_FINAL_EXPORT
    })
}

/// Without the feature `fault-injection` there is no hook.
#[cfg(not(feature = "fault-injection"))]
#[inline(always)]
pub(super) fn final_export_delay() -> Option<Duration> {
    None
}

/// The fault `WARREN_FAULT` names, read once per process.
#[cfg(feature = "fault-injection")]
fn armed() -> Option<Fault> {
    static ARMED: std::sync::OnceLock<Option<Fault>> = std::sync::OnceLock::new();
    *ARMED.get_or_init(|| parse(std::env::var("WARREN_FAULT").ok().as_deref()))
}

/// What a value of `WARREN_FAULT` arms; an unknown one arms nothing (and is logged).
#[cfg(feature = "fault-injection")]
fn parse(value: Option<&str>) -> Option<Fault> {
    match value {
        Some("") | None => None,
        Some(v) => match HOOKS.iter().find(|(name, _)| *name == v) {
            Some((_, fault)) => Some(*fault),
            None => {
                let names: Vec<&str> = HOOKS.iter().map(|(n, _)| *n).collect();
                tracing::warn!(
                    fault = v,
                    "WARREN_FAULT is none of {}; ignored",
                    names.join(", ")
                );
                None
            }
        },
    }
}

#[cfg(all(test, feature = "fault-injection"))]
mod tests {
    use super::*;

    #[test]
    fn warren_fault_names_the_hook() {
        assert_eq!(
            parse(Some("abort-after-entry")),
            Some(Fault::Crash(CrashPoint::AfterEntry))
        );
        assert_eq!(
            parse(Some("abort-after-anchor-delete")),
            Some(Fault::Crash(CrashPoint::AfterAnchorDelete))
        );
        assert_eq!(
            parse(Some("abort-on-export")),
            Some(Fault::Crash(CrashPoint::OnExport))
        );
        assert_eq!(
            parse(Some("abort-on-freeze")),
            Some(Fault::Crash(CrashPoint::OnFreeze))
        );
        assert_eq!(
            parse(Some("abort-on-catch-up-import")),
            Some(Fault::Crash(CrashPoint::OnCatchUpImport))
        );
        assert_eq!(
            parse(Some("abort-before-map-commit")),
            Some(Fault::Crash(CrashPoint::BeforeMapCommit))
        );
        assert_eq!(
            parse(Some("slow-final-export")),
            Some(Fault::SlowFinalExport)
        );
        assert_eq!(parse(Some("")), None);
        assert_eq!(parse(None), None);
        assert_eq!(parse(Some("abort-somewhere-else")), None);
    }
}
