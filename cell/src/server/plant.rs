//! The bugs `warren chaos` plants in real processes to show its checkers catch them
//! (docs/reliability.md, "Chaos"): with `WARREN_PLANT=<bug>` in its environment, a cell
//! misbehaves in one chosen way. Only in builds with the feature `fault-injection` (the root
//! package's test builds); a production binary neither reads `WARREN_PLANT` nor contains the
//! bugs, and [`armed`] is `false` there.
//!
//! - `double-grant`: an exclusive lock is granted while it is held, at the same lock
//!   generation (the lock checker must report it);
//! - `drop-write`: once a file's content generation reaches a multiple of
//!   [`DROP_WRITES_FROM`], every write of it is acknowledged (with the next generation) but
//!   not applied (the file and lost-write checkers must report it);
//! - `stale-cache`: a write is acknowledged without invalidating the cached copies of the
//!   file in clients and proxies (the cache checker must report it).

/// A planted bug.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Plant {
    DoubleGrant,
    DropWrite,
    StaleCache,
}

/// `drop-write` drops the writes of a file whose content generation is a positive multiple
/// of this.
pub(crate) const DROP_WRITES_FROM: u64 = 16;

#[cfg(feature = "fault-injection")]
const PLANTS: [(&str, Plant); 3] = [
    ("double-grant", Plant::DoubleGrant),
    ("drop-write", Plant::DropWrite),
    ("stale-cache", Plant::StaleCache),
];

/// Whether `WARREN_PLANT` names `bug` (read once per process).
#[cfg(feature = "fault-injection")]
pub(crate) fn armed(bug: Plant) -> bool {
    static ARMED: std::sync::OnceLock<Option<Plant>> = std::sync::OnceLock::new();
    *ARMED.get_or_init(|| parse(std::env::var("WARREN_PLANT").ok().as_deref())) == Some(bug)
}

/// Without the feature `fault-injection` nothing is planted.
#[cfg(not(feature = "fault-injection"))]
#[inline(always)]
pub(crate) fn armed(_bug: Plant) -> bool {
    false
}

/// What a value of `WARREN_PLANT` plants; an unknown one plants nothing (and is logged).
#[cfg(feature = "fault-injection")]
fn parse(value: Option<&str>) -> Option<Plant> {
    let v = value.filter(|v| !v.is_empty())?;
    let found = PLANTS.iter().find(|(n, _)| *n == v).map(|(_, p)| *p);
    match found {
        Some(_) => tracing::warn!(bug = v, "WARREN_PLANT: this cell runs with a planted bug"),
        None => {
            let names: Vec<&str> = PLANTS.iter().map(|(n, _)| *n).collect();
            tracing::warn!(
                bug = v,
                "WARREN_PLANT is none of {}; ignored",
                names.join(", ")
            );
        }
    }
    found
}

#[cfg(all(test, feature = "fault-injection"))]
mod tests {
    use super::*;

    #[test]
    fn names_parse_and_anything_else_plants_nothing() {
        assert_eq!(parse(Some("double-grant")), Some(Plant::DoubleGrant));
        assert_eq!(parse(Some("drop-write")), Some(Plant::DropWrite));
        assert_eq!(parse(Some("stale-cache")), Some(Plant::StaleCache));
        assert_eq!(parse(Some("")), None);
        assert_eq!(parse(Some("double-grnat")), None);
        assert_eq!(parse(None), None);
    }
}
