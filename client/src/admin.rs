//! Map administration over a client session: creating a deployment's first partition map
//! in the meta cell, and reading the map back, checked. `warren ctl deployment init` /
//! `map show`, `warren dev` and the test harnesses use it; resharding (moving slots between
//! cells) builds on it.
//!
//! Every function works through an ordinary [`Session`] connected to the meta cell: the
//! map is a file there, `/ls/<deployment>/warren/map` ([`map_path`]), so writing it is a
//! Warren write, and every router watching it learns of it from Warren's own events
//! (see [`crate::map`]). The meta cell accepts a map write only from the map code path:
//! a session with principal [`OPERATOR_PRINCIPAL`] ([`operator_options`]), a map that
//! parses, and the next map epoch (docs/partitioning.md, "Who may write the map").

use warren_proto::{ErrorCode, WarrenError};
use warren_router::PartitionMap;

use crate::map::map_path;
use crate::{ClientOptions, Error, OpenOptions, Session};

/// The principal of map administration sessions: the meta cell refuses map writes from
/// any other (but the cells' own, `warren:cell`).
pub const OPERATOR_PRINCIPAL: &str = "warren:operator";

/// Options for a map administration session straight at the meta cell (its replicas'
/// `HOST:PORT`s): principal [`OPERATOR_PRINCIPAL`], everything else at its default.
pub fn operator_options<I, S>(meta: I) -> ClientOptions
where
    I: IntoIterator<Item = S>,
    S: Into<String>,
{
    ClientOptions::new(meta).principal(OPERATOR_PRINCIPAL)
}

/// The first map of `deployment`: epoch 1, `slots` spread evenly over `cells` (each a name
/// and its replicas' `HOST:PORT`s), in the order given. An invalid cell name, address or
/// slot count is `INVALID_ARGUMENT`, naming it.
pub fn initial_map(
    deployment: &str,
    cells: &[(String, Vec<String>)],
    slots: u32,
) -> Result<PartitionMap, Error> {
    PartitionMap::even(deployment, cells, slots)
        .map_err(|e| Error::InvalidArgument(format!("cannot make the partition map: {e}")))
}

/// Writes the first map of the session's deployment ([`initial_map`]) into the meta cell
/// the session is connected to, exclusively: an existing map is never replaced
/// (`ALREADY_EXISTS`, saying its epoch). Returns the map written.
pub async fn write_initial_map(
    session: &Session,
    cells: &[(String, Vec<String>)],
    slots: u32,
) -> Result<PartitionMap, Error> {
    let deployment = session.deployment().to_owned();
    let map = initial_map(&deployment, cells, slots)?;
    match create_map(session, &map).await {
        Err(e) if e.code() == Some(ErrorCode::AlreadyExists) => {
            let existing = match read_map(session).await {
                Ok((existing, _)) => format!("map epoch {}", existing.map_epoch()),
                Err(e) => format!("map epoch unknown: {}", e.message()),
            };
            Err(Error::Warren(WarrenError::new(
                ErrorCode::AlreadyExists,
                format!(
                    "deployment {deployment} is already initialised ({existing}); \
                     init never replaces a map: see it with `warren ctl map show`"
                ),
            )))
        }
        Err(e) => Err(e),
        Ok(()) => Ok(map),
    }
}

/// Creates the map file of `map`'s deployment (and the reserved directory holding it, if
/// missing) with `map` in it, at the meta cell the session is connected to. The file must
/// not exist yet (`ALREADY_EXISTS` from the cell otherwise).
pub async fn create_map(session: &Session, map: &PartitionMap) -> Result<(), Error> {
    let path = map_path(map.deployment());
    let dir = path.trim_end_matches("/map");
    // Not exclusive: the reserved directory may already exist (for example made by hand).
    let (handle, _) = session
        .open(dir, OpenOptions::new().write().create_dir())
        .await?;
    handle.close().await;
    let opts = OpenOptions::new()
        .write()
        .create_file(map.to_json())
        .exclusive();
    let (handle, _) = session.open(&path, opts).await?;
    handle.close().await;
    Ok(())
}

/// Reads and checks the session's deployment's partition map: the map and its stored text.
/// No map is `NOT_FOUND` (saying how to make one); a map that does not parse is
/// `INTERNAL`.
pub async fn read_map(session: &Session) -> Result<(PartitionMap, String), Error> {
    let path = map_path(session.deployment());
    let opts = OpenOptions::new().read().read_contents();
    let (handle, info) = match session.open(&path, opts).await {
        Ok(opened) => opened,
        Err(e) if e.code() == Some(ErrorCode::NotFound) => {
            return Err(Error::Warren(WarrenError::new(
                ErrorCode::NotFound,
                format!("no partition map at {path}; run warren ctl deployment init"),
            )))
        }
        Err(e) => return Err(e),
    };
    handle.close().await;
    let stored = info.contents.unwrap_or_default();
    let map = PartitionMap::from_json(&stored).map_err(|e| {
        Error::Warren(WarrenError::new(
            ErrorCode::Internal,
            format!(
                "the partition map at {path} is corrupt: {e}; repair it with \
                 `warren ctl map repair` (docs/operations.md)"
            ),
        ))
    })?;
    Ok((map, String::from_utf8_lossy(&stored).into_owned()))
}

/// What the map file of the session's deployment holds, read without judging it: for
/// `warren ctl map repair`, which needs the garbage as much as a good map.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum StoredMap {
    /// A map of this deployment.
    Readable(PartitionMap),
    /// Anything else.
    Unreadable {
        /// Why it is no map of this deployment.
        problem: String,
        /// The stored bytes (a repaired map must be newer than any `map_epoch` they name).
        contents: Vec<u8>,
    },
}

/// Reads the map file of the session's deployment ([`StoredMap`]). No map file is
/// `NOT_FOUND` (saying how to make one).
pub async fn read_stored_map(session: &Session) -> Result<StoredMap, Error> {
    let deployment = session.deployment().to_owned();
    let path = map_path(&deployment);
    let opts = OpenOptions::new().read().read_contents();
    let (handle, info) = match session.open(&path, opts).await {
        Ok(opened) => opened,
        Err(e) if e.code() == Some(ErrorCode::NotFound) => {
            return Err(Error::Warren(WarrenError::new(
                ErrorCode::NotFound,
                format!("no partition map at {path}; run warren ctl deployment init"),
            )))
        }
        Err(e) => return Err(e),
    };
    handle.close().await;
    let stored = info.contents.unwrap_or_default();
    Ok(match PartitionMap::from_json(&stored) {
        Ok(map) if map.deployment() == deployment => StoredMap::Readable(map),
        Ok(map) => StoredMap::Unreadable {
            problem: format!("it is deployment {:?}'s map", map.deployment()),
            contents: stored,
        },
        Err(e) => StoredMap::Unreadable {
            problem: e.to_string(),
            contents: stored,
        },
    })
}

/// Writes `map` over the existing map file of its deployment at the meta cell the session
/// is connected to. The meta cell accepts it only from [`OPERATOR_PRINCIPAL`] (or a cell),
/// with the slot count in force and the epoch in force + 1 — or, while the stored file is
/// unreadable, any epoch above the one in force (a repair).
pub async fn write_map(session: &Session, map: &PartitionMap) -> Result<(), Error> {
    let path = map_path(map.deployment());
    let (handle, _) = session.open(&path, OpenOptions::new().write()).await?;
    let written = handle.set_contents(map.to_json().into_bytes()).await;
    handle.close().await;
    written.map(|_| ())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ClientOptions;
    use warren_testkit::Cell;

    fn cells(spec: &[(&str, &str)]) -> Vec<(String, Vec<String>)> {
        spec.iter()
            .map(|(n, a)| (n.to_string(), vec![a.to_string()]))
            .collect()
    }

    #[test]
    fn the_initial_map_spreads_the_slots_or_names_what_is_wrong() {
        let map = initial_map("d", &cells(&[("a", "h:1"), ("b", "h:2")]), 8).expect("valid");
        assert_eq!((map.map_epoch(), map.slot_count()), (1, 8));
        assert_eq!(
            map.slot_counts().into_iter().collect::<Vec<_>>(),
            [("a".to_owned(), 4), ("b".to_owned(), 4)]
        );
        let e = initial_map("d", &cells(&[("A", "h:1")]), 8).expect_err("bad name");
        assert_eq!(e.code(), Some(ErrorCode::InvalidArgument));
        assert!(e.message().contains("\"A\""), "{e}");
        let e = initial_map("d", &cells(&[("a", "h:1")]), 0).expect_err("no slots");
        assert!(e.message().contains("0 slots"), "{e}");
    }

    #[tokio::test]
    async fn the_first_map_is_written_once_and_reads_back() {
        let meta = Cell::builder().name("meta").run().await;
        let session = Session::connect_with(operator_options(meta.endpoints()))
            .await
            .expect("session");
        let e = read_map(&session).await.expect_err("no map yet");
        assert_eq!(e.code(), Some(ErrorCode::NotFound));
        assert!(e.message().contains("/ls/local/warren/map"), "{e}");
        assert!(e.message().contains("deployment init"), "{e}");

        let spec = cells(&[("c1", "127.0.0.1:7101"), ("c2", "127.0.0.1:7102")]);
        let written = write_initial_map(&session, &spec, 64)
            .await
            .expect("written");
        assert_eq!(written.deployment(), "local");
        let (read, stored) = read_map(&session).await.expect("read");
        assert_eq!(read, written);
        assert_eq!(stored, written.to_json());

        let e = write_initial_map(&session, &spec, 32)
            .await
            .expect_err("never replaced");
        assert_eq!(e.code(), Some(ErrorCode::AlreadyExists));
        assert!(
            e.message()
                .contains("deployment local is already initialised (map epoch 1)"),
            "{e}"
        );
        assert_eq!(read_map(&session).await.expect("still there").0, written);

        assert_eq!(
            read_stored_map(&session).await.expect("read"),
            StoredMap::Readable(written.clone())
        );

        // The meta cell refuses garbage, and the next map from anyone but the operator.
        let (h, _) = session
            .open(&map_path("local"), OpenOptions::new().write())
            .await
            .expect("open the map");
        let e = h
            .set_contents(b"not json".to_vec())
            .await
            .expect_err("garbage is refused");
        assert_eq!(e.code(), Some(ErrorCode::InvalidArgument), "{e}");
        assert!(e.message().contains("not a partition map"), "{e}");
        assert!(e.message().contains("warren ctl map repair"), "{e}");
        h.close().await;
        let two = PartitionMap::new(
            "local",
            2,
            written.slot_owners().to_vec(),
            written.cells().clone(),
        )
        .expect("valid");
        let alice = Session::connect_with(ClientOptions::new(meta.endpoints()).principal("alice"))
            .await
            .expect("session");
        let e = write_map(&alice, &two).await.expect_err("not the operator");
        assert_eq!(e.code(), Some(ErrorCode::PermissionDenied), "{e}");
        assert!(e.message().contains("\"warren:operator\""), "{e}");
        let _ = alice.close().await;
        assert_eq!(read_map(&session).await.expect("unchanged").0, written);
        write_map(&session, &two).await.expect("the next epoch");
        assert_eq!(read_map(&session).await.expect("read").0, two);
        let _ = session.close().await;
    }
}
