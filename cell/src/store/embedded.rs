//! The embedded [`Store`]: one redb file per cell, `<data>/warren.redb` (docs/design.md §9: with the
//! embedded store a cell has one replica and a restart is a failover).
//!
//! Tables, all keyed and valued by raw bytes so that nothing read back can make redb or
//! serde panic; every record is decoded and checked here, and a bad one is
//! [`StoreError::Corrupt`] naming its table and key:
//!
//! | table      | key                     | value                              |
//! |------------|-------------------------|------------------------------------|
//! | `meta`     | `meta`, `format`        | JSON [`MetaRecord`]; `1`           |
//! | `nodes`    | full path (UTF-8)       | JSON [`NodeRecord`]                |
//! | `contents` | full path (UTF-8)       | the file's bytes                   |
//! | `sessions` | 16-byte session id      | JSON [`SessionRecord`]             |
//!
//! [`Store::commit`] applies a whole batch in one redb write transaction committed with
//! [`Durability::Immediate`] (fsync before the commit returns), on a blocking thread, so
//! a batch is all-or-nothing and an acknowledged batch survives `kill -9` (and power loss,
//! as far as the disk honours fsync). Batches commit in the order `commit` is first polled.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use redb::{Database, DatabaseError, Durability, ReadableTable, TableDefinition};

use super::{MetaRecord, Mutation, NodeRecord, SessionRecord, Snapshot, Store, StoreError};

/// The store's file inside the data directory.
pub const FILE_NAME: &str = "warren.redb";

/// The layout version written under `meta/format`; a store written with another layout is
/// refused rather than misread.
const FORMAT: &[u8] = b"1";

/// Every table maps raw bytes to raw bytes; records are decoded (and checked) here.
type RawTable = TableDefinition<'static, &'static [u8], &'static [u8]>;

const META: RawTable = TableDefinition::new("meta");
const NODES: RawTable = TableDefinition::new("nodes");
const CONTENTS: RawTable = TableDefinition::new("contents");
const SESSIONS: RawTable = TableDefinition::new("sessions");
const STAGED: RawTable = TableDefinition::new("staged");

const META_KEY: &[u8] = b"meta";
const FORMAT_KEY: &[u8] = b"format";

/// A cell's store in a redb file. Cheap to share: clone the `Arc` it is usually held in.
pub struct EmbeddedStore {
    db: Arc<Database>,
    path: PathBuf,
    /// Serialises commits in arrival order (tokio's mutex is FIFO); redb would serialise
    /// the transactions anyway, but in whatever order the blocking threads reached it.
    commit_order: tokio::sync::Mutex<()>,
}

impl std::fmt::Debug for EmbeddedStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EmbeddedStore")
            .field("path", &self.path)
            .finish_non_exhaustive()
    }
}

fn io(context: impl std::fmt::Display, e: impl std::fmt::Display) -> StoreError {
    StoreError::Io(format!("{context}: {e}"))
}

impl EmbeddedStore {
    /// Opens the store in directory `dir`, creating the directory and `warren.redb` if
    /// they do not exist. Blocking (a large file is checked on open after a crash); call it
    /// before serving, or from `spawn_blocking`.
    pub fn open(dir: &Path) -> Result<Self, StoreError> {
        std::fs::create_dir_all(dir)
            .map_err(|e| io(format!("cannot create data directory {}", dir.display()), e))?;
        let path = dir.join(FILE_NAME);
        let db = Database::create(&path).map_err(|e| match e {
            DatabaseError::DatabaseAlreadyOpen => StoreError::Io(format!(
                "store {} is already open (is another cell using data directory {}?)",
                path.display(),
                dir.display()
            )),
            other => io(format!("cannot open store {}", path.display()), other),
        })?;
        let context = format!("cannot initialise store {}", path.display());
        let tx = db.begin_write().map_err(|e| io(&context, e))?;
        {
            // Create every table, so that readers never meet a missing one.
            for table in [NODES, CONTENTS, SESSIONS, STAGED] {
                tx.open_table(table).map_err(|e| io(&context, e))?;
            }
            let mut meta = tx.open_table(META).map_err(|e| io(&context, e))?;
            let format = meta
                .get(FORMAT_KEY)
                .map_err(|e| io(&context, e))?
                .map(|v| v.value().to_vec());
            match format {
                None => {
                    meta.insert(FORMAT_KEY, FORMAT)
                        .map_err(|e| io(&context, e))?;
                }
                Some(f) if f == FORMAT => {}
                Some(f) => {
                    return Err(StoreError::Corrupt {
                        what: format!("meta table, key \"format\", in {}", path.display()),
                        detail: format!(
                            "store layout {:?} is not the layout {:?} this build reads",
                            String::from_utf8_lossy(&f),
                            String::from_utf8_lossy(FORMAT)
                        ),
                    });
                }
            }
        }
        tx.commit().map_err(|e| io(&context, e))?;
        Ok(Self {
            db: Arc::new(db),
            path,
            commit_order: tokio::sync::Mutex::new(()),
        })
    }

    /// The redb file's path.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

#[derive(Clone, Copy)]
enum Table {
    Meta,
    Nodes,
    Contents,
    Sessions,
    Staged,
}

/// A mutation encoded for the write transaction: everything that can fail to encode has
/// failed before the transaction starts.
enum Write {
    Put(Table, Vec<u8>, Vec<u8>),
    DeleteNode(Vec<u8>),
    DeleteSession(Vec<u8>),
    DeleteStaged(Vec<u8>),
}

fn encode(m: Mutation) -> Result<Write, StoreError> {
    fn json<T: serde::Serialize>(what: &str, record: &T) -> Result<Vec<u8>, StoreError> {
        serde_json::to_vec(record).map_err(|e| io(format!("cannot encode {what}"), e))
    }
    Ok(match m {
        Mutation::PutMeta(meta) => Write::Put(Table::Meta, META_KEY.to_vec(), json("meta", &meta)?),
        Mutation::PutNode(node) => {
            let value = json("node", &node)?;
            Write::Put(Table::Nodes, node.path.into_bytes(), value)
        }
        Mutation::PutContents { path, data } => {
            Write::Put(Table::Contents, path.into_bytes(), data)
        }
        Mutation::DeleteNode { path } => Write::DeleteNode(path.into_bytes()),
        Mutation::PutSession(session) => {
            let value = json("session", &session)?;
            Write::Put(Table::Sessions, session.id.to_vec(), value)
        }
        Mutation::DeleteSession(id) => Write::DeleteSession(id.to_vec()),
        Mutation::PutStaged { key, value } => Write::Put(Table::Staged, key.into_bytes(), value),
        Mutation::DeleteStaged { key } => Write::DeleteStaged(key.into_bytes()),
    })
}

/// Runs one write transaction for the whole batch and commits it durably.
fn commit_blocking(db: &Database, writes: Vec<Write>) -> Result<(), StoreError> {
    const CONTEXT: &str = "store commit failed";
    let mut tx = db.begin_write().map_err(|e| io(CONTEXT, e))?;
    tx.set_durability(Durability::Immediate);
    {
        let mut meta = tx.open_table(META).map_err(|e| io(CONTEXT, e))?;
        let mut nodes = tx.open_table(NODES).map_err(|e| io(CONTEXT, e))?;
        let mut contents = tx.open_table(CONTENTS).map_err(|e| io(CONTEXT, e))?;
        let mut sessions = tx.open_table(SESSIONS).map_err(|e| io(CONTEXT, e))?;
        let mut staged = tx.open_table(STAGED).map_err(|e| io(CONTEXT, e))?;
        for write in &writes {
            match write {
                Write::Put(table, key, value) => {
                    let t = match table {
                        Table::Meta => &mut meta,
                        Table::Nodes => &mut nodes,
                        Table::Contents => &mut contents,
                        Table::Sessions => &mut sessions,
                        Table::Staged => &mut staged,
                    };
                    t.insert(key.as_slice(), value.as_slice())
                        .map_err(|e| io(CONTEXT, e))?;
                }
                Write::DeleteNode(path) => {
                    nodes.remove(path.as_slice()).map_err(|e| io(CONTEXT, e))?;
                    contents
                        .remove(path.as_slice())
                        .map_err(|e| io(CONTEXT, e))?;
                }
                Write::DeleteSession(id) => {
                    sessions.remove(id.as_slice()).map_err(|e| io(CONTEXT, e))?;
                }
                Write::DeleteStaged(key) => {
                    staged.remove(key.as_slice()).map_err(|e| io(CONTEXT, e))?;
                }
            }
        }
    }
    // Dropping an uncommitted transaction (on any error above) aborts it: nothing of the
    // batch is applied.
    tx.commit().map_err(|e| io(CONTEXT, e))
}

fn corrupt(table: &str, key: &[u8], detail: impl std::fmt::Display) -> StoreError {
    // Session ids are binary; other keys are paths, shown as text when they are text.
    let text = std::str::from_utf8(key)
        .ok()
        .filter(|_| table != "sessions");
    let key = match text {
        Some(k) => format!("{k:?}"),
        None => format!(
            "0x{}",
            key.iter().map(|b| format!("{b:02x}")).collect::<String>()
        ),
    };
    StoreError::Corrupt {
        what: format!("{table} table, key {key}"),
        detail: detail.to_string(),
    }
}

fn utf8_key<'a>(table: &str, key: &'a [u8]) -> Result<&'a str, StoreError> {
    std::str::from_utf8(key).map_err(|e| corrupt(table, key, format!("key is not UTF-8: {e}")))
}

/// The tables [`load_blocking`] reads, in the order it reads them, by name.
pub const TABLES: [&str; 5] = ["meta", "nodes", "contents", "sessions", "staged"];

/// Decodes one stored entry of table `table` (one of [`TABLES`]) into `into`, checking it
/// as a load does: a record that does not decode, a key that is not UTF-8 where a path is
/// expected, a session key that is not 16 bytes, or a record filed under another key is
/// [`StoreError::Corrupt`] naming the table and the key. Pure: `load_blocking` calls it for
/// every entry it reads, and the fuzz target `store_records` calls it on arbitrary bytes
/// (docs/fuzzing.md).
pub fn decode_entry(
    table: &str,
    key: &[u8],
    value: &[u8],
    into: &mut Snapshot,
) -> Result<(), StoreError> {
    match table {
        "meta" => {
            // `meta/format` is checked when the store is opened; only the record is state.
            if key == META_KEY {
                let record: MetaRecord =
                    serde_json::from_slice(value).map_err(|e| corrupt("meta", key, e))?;
                into.meta = Some(record);
            }
        }
        "nodes" => {
            let path = utf8_key("nodes", key)?;
            let record: NodeRecord =
                serde_json::from_slice(value).map_err(|e| corrupt("nodes", key, e))?;
            if record.path != path {
                return Err(corrupt(
                    "nodes",
                    key,
                    format!("record is for path {:?}", record.path),
                ));
            }
            into.nodes.push(record);
        }
        "contents" => {
            let path = utf8_key("contents", key)?;
            into.contents.push((path.to_owned(), value.to_vec()));
        }
        "sessions" => {
            if key.len() != 16 {
                return Err(corrupt(
                    "sessions",
                    key,
                    format!("key is {} bytes; session ids are 16", key.len()),
                ));
            }
            let record: SessionRecord =
                serde_json::from_slice(value).map_err(|e| corrupt("sessions", key, e))?;
            if record.id[..] != *key {
                return Err(corrupt("sessions", key, "record is for another session id"));
            }
            into.sessions.push(record);
        }
        "staged" => {
            let key = utf8_key("staged", key)?;
            into.staged.push((key.to_owned(), value.to_vec()));
        }
        other => {
            return Err(StoreError::Corrupt {
                what: format!("{other} table"),
                detail: format!("no such table; the store has {}", TABLES.join(", ")),
            })
        }
    }
    Ok(())
}

/// Reads every table into a [`Snapshot`], checking each record ([`decode_entry`]).
fn load_blocking(db: &Database) -> Result<Snapshot, StoreError> {
    const CONTEXT: &str = "store read failed";
    let tx = db.begin_read().map_err(|e| io(CONTEXT, e))?;
    let mut snapshot = Snapshot::default();

    let meta = tx.open_table(META).map_err(|e| io(CONTEXT, e))?;
    if let Some(value) = meta.get(META_KEY).map_err(|e| io(CONTEXT, e))? {
        decode_entry("meta", META_KEY, value.value(), &mut snapshot)?;
    }
    for (name, table) in [
        ("nodes", NODES),
        ("contents", CONTENTS),
        ("sessions", SESSIONS),
        ("staged", STAGED),
    ] {
        let table = tx.open_table(table).map_err(|e| io(CONTEXT, e))?;
        for entry in table.iter().map_err(|e| io(CONTEXT, e))? {
            let (key, value) = entry.map_err(|e| io(CONTEXT, e))?;
            decode_entry(name, key.value(), value.value(), &mut snapshot)?;
        }
    }
    Ok(snapshot)
}

#[async_trait::async_trait]
impl Store for EmbeddedStore {
    async fn load(&self) -> Result<Snapshot, StoreError> {
        let db = Arc::clone(&self.db);
        tokio::task::spawn_blocking(move || load_blocking(&db))
            .await
            .map_err(|e| io("store read task failed", e))?
    }

    async fn commit(&self, batch: Vec<Mutation>) -> Result<(), StoreError> {
        let _turn = self.commit_order.lock().await;
        if batch.is_empty() {
            return Ok(());
        }
        let writes = batch
            .into_iter()
            .map(encode)
            .collect::<Result<Vec<_>, _>>()?;
        let db = Arc::clone(&self.db);
        tokio::task::spawn_blocking(move || commit_blocking(&db, writes))
            .await
            .map_err(|e| io("store commit task failed", e))?
    }

    fn kind(&self) -> &'static str {
        "embedded"
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::memory::MemoryStore;
    use crate::store::{
        AclNames, LockHolder, LockMode, NodeKind, NodeMeta, PendingAnchor, PendingUnlink,
    };

    fn meta(epoch: u64) -> MetaRecord {
        MetaRecord {
            epoch,
            secret: [7; 32],
            next_instance: 100 + epoch,
            deployment: "local".into(),
            cell: "c0".into(),
            max_lease_granted_ms: 12_000,
            max_proxy_lease_granted_ms: 20_000,
            pending_unlinks: vec![PendingUnlink {
                path: "/ls/local/gone".into(),
                instance: epoch,
            }],
            handed_off: Vec::new(),
            foreign_keys: Default::default(),
            lost_epochs: Vec::new(),
        }
    }

    fn node(path: &str, instance: u64) -> NodeRecord {
        NodeRecord {
            path: path.into(),
            meta: NodeMeta {
                kind: NodeKind::File,
                instance,
                content_generation: 3,
                lock_generation: 2,
                acl_generation: 1,
                checksum: 0xdead_beef,
                acl: AclNames {
                    read: "readers".into(),
                    write: String::new(),
                    change_acl: "admins".into(),
                },
                ephemeral: instance % 2 == 0,
            },
            holders: vec![LockHolder {
                session: [instance as u8; 16],
                handle_epoch: 4,
                handle: 9,
                mode: LockMode::Shared,
                lock_delay_ms: 60_000,
            }],
            anchor: instance % 3 == 0,
            anchor_pending: (instance % 5 == 0).then_some(PendingAnchor { ephemeral: true }),
        }
    }

    fn dir(path: &str) -> NodeRecord {
        let mut dir = node(path, 1);
        dir.meta.kind = NodeKind::Directory;
        dir.holders = vec![];
        dir
    }

    fn session(n: u8) -> SessionRecord {
        SessionRecord {
            id: [n; 16],
            secret: [n.wrapping_add(1); 16],
            principal: format!("user{n}"),
            ..Default::default()
        }
    }

    fn put_contents(path: &str, data: &[u8]) -> Mutation {
        Mutation::PutContents {
            path: path.into(),
            data: data.to_vec(),
        }
    }

    #[tokio::test]
    async fn fresh_store_is_empty() {
        let dir = tempfile::tempdir().unwrap();
        let store = EmbeddedStore::open(dir.path()).unwrap();
        assert_eq!(store.kind(), "embedded");
        assert_eq!(store.path(), dir.path().join("warren.redb"));
        assert_eq!(store.load().await.unwrap(), Snapshot::default());
        store.commit(vec![]).await.unwrap();
        assert_eq!(store.load().await.unwrap(), Snapshot::default());
    }

    #[tokio::test]
    async fn round_trip_of_every_mutation_kind() {
        let tmp = tempfile::tempdir().unwrap();
        let store = EmbeddedStore::open(tmp.path()).unwrap();
        let big = vec![0xa5; 256 * 1024];
        store
            .commit(vec![
                Mutation::PutMeta(meta(1)),
                Mutation::PutNode(dir("/ls/local")),
                Mutation::PutNode(node("/ls/local/a", 2)),
                Mutation::PutNode(node("/ls/local/b", 3)),
                put_contents("/ls/local/a", b"hello"),
                put_contents("/ls/local/b", &big),
                Mutation::PutSession(session(1)),
                Mutation::PutSession(session(2)),
            ])
            .await
            .unwrap();
        let snap = store.load().await.unwrap();
        assert_eq!(snap.meta, Some(meta(1)));
        assert_eq!(
            snap.nodes,
            vec![
                dir("/ls/local"),
                node("/ls/local/a", 2),
                node("/ls/local/b", 3)
            ]
        );
        assert_eq!(
            snap.contents,
            vec![
                ("/ls/local/a".to_owned(), b"hello".to_vec()),
                ("/ls/local/b".to_owned(), big.clone()),
            ]
        );
        assert_eq!(snap.sessions, vec![session(1), session(2)]);

        // Overwrites, deletes (a node's contents go with it), and empty contents.
        store
            .commit(vec![
                Mutation::PutMeta(meta(2)),
                Mutation::PutNode(node("/ls/local/a", 4)),
                put_contents("/ls/local/a", b""),
                Mutation::DeleteNode {
                    path: "/ls/local/b".into(),
                },
                Mutation::DeleteSession([1; 16]),
                // Deleting what is not there is not an error.
                Mutation::DeleteSession([9; 16]),
                Mutation::DeleteNode {
                    path: "/ls/local/none".into(),
                },
            ])
            .await
            .unwrap();
        let snap = store.load().await.unwrap();
        assert_eq!(snap.meta, Some(meta(2)));
        assert_eq!(snap.nodes, vec![dir("/ls/local"), node("/ls/local/a", 4)]);
        assert_eq!(snap.contents, vec![("/ls/local/a".to_owned(), vec![])]);
        assert_eq!(snap.sessions, vec![session(2)]);
    }

    #[tokio::test]
    async fn proxy_and_sub_session_records_round_trip_and_old_records_still_load() {
        let tmp = tempfile::tempdir().unwrap();
        let store = EmbeddedStore::open(tmp.path()).unwrap();
        let proxy = SessionRecord {
            proxy: true,
            ..session(1)
        };
        let sub = SessionRecord {
            parent: Some([1; 16]),
            registered_epoch: 3,
            registered_handle: 17,
            ..session(2)
        };
        store
            .commit(vec![
                Mutation::PutSession(proxy.clone()),
                Mutation::PutSession(sub.clone()),
            ])
            .await
            .unwrap();
        assert_eq!(store.load().await.unwrap().sessions, vec![proxy, sub]);
        // A record written before proxies existed.
        let old: SessionRecord =
            serde_json::from_str(r#"{"id":[3,3,3,3,3,3,3,3,3,3,3,3,3,3,3,3],"secret":[4,4,4,4,4,4,4,4,4,4,4,4,4,4,4,4],"principal":"user3"}"#)
                .unwrap();
        assert_eq!(old, session(3));
    }

    /// `node("/ls/local/f", 10)` as encoded before its metadata was split out into
    /// [`NodeMeta`]: every field at the top level, in declaration order.
    const OLD_NODE_JSON: &str = concat!(
        r#"{"path":"/ls/local/f","kind":"File","instance":10,"content_generation":3,"#,
        r#""lock_generation":2,"acl_generation":1,"checksum":3735928559,"#,
        r#""acl":{"read":"readers","write":"","change_acl":"admins"},"ephemeral":true,"#,
        r#""holders":[{"session":[10,10,10,10,10,10,10,10,10,10,10,10,10,10,10,10],"#,
        r#""handle_epoch":4,"handle":9,"mode":"Shared","lock_delay_ms":60000}],"#,
        r#""anchor":false,"anchor_pending":{"ephemeral":true}}"#
    );

    #[test]
    fn node_records_keep_their_flat_encoding() {
        let decoded: NodeRecord = serde_json::from_str(OLD_NODE_JSON).unwrap();
        assert_eq!(decoded, node("/ls/local/f", 10));
        let encoded = serde_json::to_string(&node("/ls/local/f", 10)).unwrap();
        assert_eq!(encoded, OLD_NODE_JSON);
        // A record written before locks, anchors and pending anchors were recorded.
        let oldest: NodeRecord = serde_json::from_str(r#"{"path":"/ls/local/g","kind":"Directory","instance":1,"content_generation":0,"lock_generation":0,"acl_generation":0,"checksum":0,"acl":{"read":"","write":"","change_acl":""},"ephemeral":false}"#).unwrap();
        assert_eq!(oldest.meta.kind, NodeKind::Directory);
        assert_eq!(oldest.meta.instance, 1);
        assert!(oldest.holders.is_empty());
        assert!(!oldest.anchor);
        assert_eq!(oldest.anchor_pending, None);
    }

    #[tokio::test]
    async fn reopen_after_drop_sees_the_data() {
        let tmp = tempfile::tempdir().unwrap();
        let data = tmp.path().join("nested/data");
        let batch = vec![
            Mutation::PutMeta(meta(5)),
            Mutation::PutNode(node("/ls/local/x", 8)),
            put_contents("/ls/local/x", b"contents"),
            Mutation::PutSession(session(3)),
        ];
        let before = {
            let store = EmbeddedStore::open(&data).unwrap();
            store.commit(batch).await.unwrap();
            store.load().await.unwrap()
        };
        let store = EmbeddedStore::open(&data).unwrap();
        let after = store.load().await.unwrap();
        assert_eq!(after, before);
        assert_eq!(after.meta, Some(meta(5)));
        assert_eq!(after.sessions, vec![session(3)]);
    }

    /// The same batches on the embedded store and on the reference [`MemoryStore`] leave the
    /// same state: mutations within a batch apply in order (a put after a delete of the
    /// same key wins, and the reverse), and keys come back in the same order.
    #[tokio::test]
    async fn batches_apply_like_the_memory_store() {
        let tmp = tempfile::tempdir().unwrap();
        let embedded = EmbeddedStore::open(tmp.path()).unwrap();
        let memory = MemoryStore::new();
        let batches = vec![
            vec![
                Mutation::PutMeta(meta(1)),
                Mutation::PutNode(node("/ls/local/z", 1)),
                Mutation::PutNode(node("/ls/local/a", 2)),
                Mutation::PutNode(node("/ls/local/a/b", 3)),
                put_contents("/ls/local/z", b"z"),
                put_contents("/ls/local/a/b", b"ab"),
                Mutation::PutSession(session(200)),
                Mutation::PutSession(session(3)),
            ],
            vec![
                // Delete then recreate in one batch: the new node survives, without contents.
                Mutation::DeleteNode {
                    path: "/ls/local/z".into(),
                },
                Mutation::PutNode(node("/ls/local/z", 10)),
                // Create then delete in one batch: nothing remains.
                Mutation::PutNode(node("/ls/local/tmp", 11)),
                put_contents("/ls/local/tmp", b"gone"),
                Mutation::DeleteNode {
                    path: "/ls/local/tmp".into(),
                },
                Mutation::PutSession(session(4)),
                Mutation::DeleteSession([4; 16]),
                Mutation::DeleteSession([200; 16]),
                Mutation::PutSession(session(200)),
                Mutation::PutMeta(meta(2)),
                Mutation::PutMeta(meta(3)),
                // Contents with no node record are kept as given.
                put_contents("/ls/local/orphan", b"o"),
            ],
        ];
        for batch in batches {
            embedded.commit(batch.clone()).await.unwrap();
            memory.commit(batch).await.unwrap();
            assert_eq!(embedded.load().await.unwrap(), memory.load().await.unwrap());
        }
        let snap = embedded.load().await.unwrap();
        assert_eq!(snap.meta, Some(meta(3)));
        let paths: Vec<&str> = snap.nodes.iter().map(|n| n.path.as_str()).collect();
        assert_eq!(paths, ["/ls/local/a", "/ls/local/a/b", "/ls/local/z"]);
        assert_eq!(snap.nodes[2].meta.instance, 10);
        let ids: Vec<u8> = snap.sessions.iter().map(|s| s.id[0]).collect();
        assert_eq!(ids, [3, 200]);
    }

    /// Writes raw bytes into a table behind the store's back.
    fn poke(store: &EmbeddedStore, table: RawTable, key: &[u8], value: &[u8]) {
        let tx = store.db.begin_write().unwrap();
        tx.open_table(table).unwrap().insert(key, value).unwrap();
        tx.commit().unwrap();
    }

    async fn expect_corrupt(store: &EmbeddedStore, want_what: &str, want_detail: &str) {
        match store.load().await {
            Err(StoreError::Corrupt { what, detail }) => {
                assert_eq!(what, want_what);
                assert!(detail.contains(want_detail), "{detail}");
            }
            other => panic!("expected Corrupt({want_what}), got {other:?}"),
        }
    }

    #[tokio::test]
    async fn corrupt_records_are_reported_not_panicked_on() {
        let other_node = serde_json::to_vec(&node("/ls/local/b", 1)).unwrap();
        let other_session = serde_json::to_vec(&session(2)).unwrap();
        /// Table, key, value, the expected `what`, a fragment of the expected `detail`.
        type Case<'a> = (RawTable, &'a [u8], &'a [u8], &'a str, &'a str);
        let cases: Vec<Case> = vec![
            (
                NODES,
                b"/ls/local/a",
                b"{not json",
                "nodes table, key \"/ls/local/a\"",
                "key must be a string",
            ),
            (
                NODES,
                b"/ls/local/a",
                br#"{"path":"/ls/local/a"}"#,
                "nodes table, key \"/ls/local/a\"",
                "missing field",
            ),
            (
                NODES,
                b"/ls/local/a",
                &other_node,
                "nodes table, key \"/ls/local/a\"",
                "record is for path \"/ls/local/b\"",
            ),
            (
                NODES,
                b"/ls/\xff",
                b"{}",
                "nodes table, key 0x2f6c732fff",
                "key is not UTF-8",
            ),
            (
                META,
                b"meta",
                br#"{"epoch":1"#,
                "meta table, key \"meta\"",
                "EOF",
            ),
            (
                CONTENTS,
                b"\xfe",
                b"x",
                "contents table, key 0xfe",
                "key is not UTF-8",
            ),
            (
                SESSIONS,
                b"short",
                b"{}",
                "sessions table, key 0x73686f7274",
                "key is 5 bytes",
            ),
            (
                SESSIONS,
                &[1; 16],
                b"null",
                "sessions table, key 0x01010101010101010101010101010101",
                "invalid type",
            ),
            (
                SESSIONS,
                &[1; 16],
                &other_session,
                "sessions table, key 0x01010101010101010101010101010101",
                "another session id",
            ),
        ];
        for (table, key, value, what, detail) in cases {
            let tmp = tempfile::tempdir().unwrap();
            let store = EmbeddedStore::open(tmp.path()).unwrap();
            poke(&store, table, key, value);
            expect_corrupt(&store, what, detail).await;
        }
    }

    #[tokio::test]
    async fn open_errors_name_the_path() {
        let tmp = tempfile::tempdir().unwrap();
        let file = tmp.path().join("a-file");
        std::fs::write(&file, b"x").unwrap();
        match EmbeddedStore::open(&file) {
            Err(StoreError::Io(msg)) => {
                assert!(msg.contains("cannot create data directory"), "{msg}");
                assert!(msg.contains(&file.display().to_string()), "{msg}");
            }
            other => panic!("expected Io, got {other:?}"),
        }

        // Not a redb file.
        let junk = tmp.path().join("junk");
        std::fs::create_dir(&junk).unwrap();
        std::fs::write(junk.join(FILE_NAME), vec![0x42; 8192]).unwrap();
        match EmbeddedStore::open(&junk) {
            Err(StoreError::Io(msg)) => {
                assert!(msg.contains("cannot open store"), "{msg}");
                assert!(
                    msg.contains(&junk.join(FILE_NAME).display().to_string()),
                    "{msg}"
                );
            }
            other => panic!("expected Io, got {other:?}"),
        }

        // Two stores on one directory: the second is refused while the first is open.
        let data = tmp.path().join("data");
        let first = EmbeddedStore::open(&data).unwrap();
        match EmbeddedStore::open(&data) {
            Err(StoreError::Io(msg)) => assert!(msg.contains("is already open"), "{msg}"),
            other => panic!("expected Io, got {other:?}"),
        }
        drop(first);
        EmbeddedStore::open(&data).unwrap();
    }

    #[tokio::test]
    async fn other_layout_is_refused() {
        let tmp = tempfile::tempdir().unwrap();
        {
            let store = EmbeddedStore::open(tmp.path()).unwrap();
            poke(&store, META, FORMAT_KEY, b"2");
        }
        match EmbeddedStore::open(tmp.path()) {
            Err(StoreError::Corrupt { what, detail }) => {
                assert!(what.starts_with("meta table, key \"format\""), "{what}");
                assert!(detail.contains("\"2\""), "{detail}");
            }
            other => panic!("expected Corrupt, got {other:?}"),
        }
    }

    #[tokio::test]
    async fn concurrent_commits_all_land() {
        let tmp = tempfile::tempdir().unwrap();
        let store = Arc::new(EmbeddedStore::open(tmp.path()).unwrap());
        let tasks: Vec<_> = (0..8u8)
            .map(|i| {
                let store = Arc::clone(&store);
                tokio::spawn(
                    async move { store.commit(vec![Mutation::PutSession(session(i))]).await },
                )
            })
            .collect();
        for t in tasks {
            t.await.unwrap().unwrap();
        }
        let ids: Vec<u8> = store
            .load()
            .await
            .unwrap()
            .sessions
            .iter()
            .map(|s| s.id[0])
            .collect();
        assert_eq!(ids, (0..8).collect::<Vec<u8>>());
    }

    const KILL_DIR_VAR: &str = "WARREN_EMBEDDED_KILL9_DIR";

    /// The child half of [`acknowledged_batch_survives_kill_9`]: with the variable set, it
    /// commits a batch, says so, and waits to be killed. Without it (a normal test run) it
    /// does nothing.
    #[tokio::test]
    async fn kill_9_child() {
        let Ok(dir) = std::env::var(KILL_DIR_VAR) else {
            return;
        };
        let store = EmbeddedStore::open(Path::new(&dir)).unwrap();
        for i in 0..20u8 {
            store
                .commit(vec![
                    Mutation::PutSession(session(i)),
                    Mutation::PutNode(node(&format!("/ls/local/n{i:02}"), u64::from(i))),
                ])
                .await
                .unwrap();
        }
        println!("COMMITTED");
        std::thread::sleep(std::time::Duration::from_secs(600));
    }

    /// Runs [`kill_9_child`] in a separate process, `kill -9`s it right after it reports
    /// its commits acknowledged, and checks that every acknowledged batch is there.
    #[tokio::test]
    async fn acknowledged_batch_survives_kill_9() {
        use std::io::{BufRead, BufReader};
        use std::process::{Command, Stdio};

        let tmp = tempfile::tempdir().unwrap();
        let mut child = Command::new(std::env::current_exe().unwrap())
            .args([
                "--exact",
                "store::embedded::tests::kill_9_child",
                "--nocapture",
            ])
            .env(KILL_DIR_VAR, tmp.path())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let stdout = child.stdout.take().unwrap();
        let committed = BufReader::new(stdout)
            .lines()
            .map_while(Result::ok)
            .any(|line| line.contains("COMMITTED"));
        child.kill().unwrap(); // SIGKILL on Unix.
        child.wait().unwrap();
        assert!(committed, "child never reported its commits");

        let store = EmbeddedStore::open(tmp.path()).unwrap();
        let snap = store.load().await.unwrap();
        assert_eq!(snap.sessions.len(), 20);
        assert_eq!(snap.nodes.len(), 20);
        assert_eq!(snap.nodes[19], node("/ls/local/n19", 19));
    }
}
