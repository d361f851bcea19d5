//! Partitioning through real cells (docs/partitioning.md): a meta cell and two data cells
//! in-process, the map written into the meta cell like any file, raw gRPC calls (a plain
//! session does not follow redirects). Checks ownership refusals, directories split over two
//! cells (created and deleted by the cells), a map change moving a slot, and ACL files held
//! by another cell.

use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tonic::transport::Channel;
use warren_cell::core::CoreConfig;
use warren_cell::store::memory::MemoryStore;
use warren_cell::store::{
    AclNames, MetaRecord, Mutation, NodeKind, NodeMeta, NodeRecord, PendingAnchor, PendingUnlink,
    Store,
};
use warren_cell::CellOptions;
use warren_client::{OpenOptions, Session};
use warren_proto::pb;
use warren_proto::pb::warren_client::WarrenClient;
use warren_proto::{ErrorCode, WarrenError};
use warren_router::{PartitionMap, Route};

struct Cell {
    name: String,
    addr: String,
    client: WarrenClient<Channel>,
    _stop: oneshot::Sender<()>,
}

async fn start(name: &str, meta: Vec<String>) -> Cell {
    start_with(name, meta, MemoryStore::new()).await
}

async fn start_with(name: &str, meta: Vec<String>, store: MemoryStore) -> Cell {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    let (stop_tx, stop_rx) = oneshot::channel::<()>();
    let (ready_tx, ready_rx) = oneshot::channel();
    let mut opts = CellOptions::new(CoreConfig::new(name, "local"));
    opts.meta = meta;
    tokio::spawn(warren_cell::run(
        listener,
        None,
        Arc::new(store),
        opts,
        move |h| {
            let _ = ready_tx.send(h);
        },
        async move {
            let _ = stop_rx.await;
        },
    ));
    ready_rx.await.expect("cell started");
    let client = WarrenClient::connect(format!("http://{addr}"))
        .await
        .unwrap();
    Cell {
        name: name.into(),
        addr,
        client,
        _stop: stop_tx,
    }
}

/// A raw session at `cell`, kept alive (acknowledging every event at once) by a task.
async fn session(cell: &Cell, principal: &str) -> pb::SessionContext {
    let mut c = cell.client.clone();
    let r = c
        .create_session(pb::CreateSessionRequest {
            principal: principal.into(),
            proxy: false,
        })
        .await
        .unwrap()
        .into_inner();
    let ctx = pb::SessionContext {
        session_id: r.session_id,
        secret: r.secret,
        epoch: r.epoch,
        ..Default::default()
    };
    let k = ctx.clone();
    tokio::spawn(async move {
        let mut ack = 0;
        loop {
            let req = pb::KeepAliveRequest {
                ctx: Some(k.clone()),
                ack_seq: ack,
                ..Default::default()
            };
            match c.keep_alive(req).await {
                Ok(r) => {
                    if let Some(e) = r.into_inner().events.last() {
                        ack = e.seq;
                    }
                }
                Err(_) => return,
            }
        }
    });
    ctx
}

fn werr(s: tonic::Status) -> WarrenError {
    WarrenError::from_status(&s).unwrap_or_else(|| panic!("no Warren detail in {s:?}"))
}

fn file(contents: &[u8], acl: Option<pb::AclNames>) -> Option<pb::CreateSpec> {
    Some(pb::CreateSpec {
        kind: pb::NodeKind::File as i32,
        initial_contents: contents.to_vec(),
        acl,
        ..Default::default()
    })
}

fn dir() -> Option<pb::CreateSpec> {
    Some(pb::CreateSpec {
        kind: pb::NodeKind::Directory as i32,
        ..Default::default()
    })
}

async fn open(
    cell: &Cell,
    ctx: &pb::SessionContext,
    path: &str,
    target: pb::OpenTarget,
    intent: u32,
    create: Option<pb::CreateSpec>,
) -> Result<pb::OpenResponse, WarrenError> {
    let mut c = cell.client.clone();
    c.open(pb::OpenRequest {
        ctx: Some(ctx.clone()),
        path: path.into(),
        intent,
        create,
        target: target as i32,
        ..Default::default()
    })
    .await
    .map(|r| r.into_inner())
    .map_err(werr)
}

async fn read_dir(cell: &Cell, ctx: &pb::SessionContext, handle: &[u8]) -> Vec<String> {
    let mut c = cell.client.clone();
    c.read_dir(pb::ReadDirRequest {
        ctx: Some(ctx.clone()),
        handle: handle.to_vec(),
    })
    .await
    .unwrap()
    .into_inner()
    .entries
    .into_iter()
    .map(|e| e.name)
    .collect()
}

async fn delete(cell: &Cell, ctx: &pb::SessionContext, handle: &[u8]) -> Result<(), WarrenError> {
    let mut c = cell.client.clone();
    c.delete(pb::DeleteRequest {
        ctx: Some(ctx.clone()),
        handle: handle.to_vec(),
    })
    .await
    .map(|_| ())
    .map_err(werr)
}

const READ: u32 = 1;
const ALL: u32 = 7;
const NODE: pb::OpenTarget = pb::OpenTarget::Node;
const ANCHOR: pb::OpenTarget = pb::OpenTarget::Anchor;

struct Cluster {
    _meta: Cell,
    cells: Vec<Cell>,
    map: PartitionMap,
    /// The session at the meta cell that wrote the map, and its handle on the map file.
    writer: (Session, warren_client::Handle),
}

/// The map's routing depends on cell names and slots only, so it is known before the
/// cells (and their addresses) exist.
fn routing() -> PartitionMap {
    PartitionMap::even("local", &[("c1", vec!["h:1"]), ("c2", vec!["h:2"])], 4096).unwrap()
}

fn cell_of(map: &PartitionMap, path: &str, anchor: bool) -> String {
    match map.route(path, anchor).unwrap() {
        Route::Cell { cell, .. } => cell.to_string(),
        Route::Meta => panic!("{path} is reserved"),
    }
}

impl Cluster {
    async fn start() -> Cluster {
        Self::start_with(MemoryStore::new(), MemoryStore::new()).await
    }

    /// With the data cells' stores given (seeded with state a crash left behind).
    async fn start_with(s1: MemoryStore, s2: MemoryStore) -> Cluster {
        let meta = start("meta", Vec::new()).await;
        let c1 = start_with("c1", vec![meta.addr.clone()], s1).await;
        let c2 = start_with("c2", vec![meta.addr.clone()], s2).await;
        let map = PartitionMap::even(
            "local",
            &[("c1", vec![c1.addr.clone()]), ("c2", vec![c2.addr.clone()])],
            4096,
        )
        .unwrap();
        // The map writer is the map code path (only it may write the map).
        let s = Session::connect_with(warren_client::admin::operator_options([meta.addr.clone()]))
            .await
            .unwrap();
        let (d, _) = s
            .open("/ls/local/warren", OpenOptions::new().create_dir())
            .await
            .unwrap();
        d.close().await;
        let (h, _) = s
            .open(
                "/ls/local/warren/map",
                OpenOptions::new()
                    .read()
                    .write()
                    .create_file(map.to_json().into_bytes()),
            )
            .await
            .unwrap();
        let cl = Cluster {
            _meta: meta,
            cells: vec![c1, c2],
            map,
            writer: (s, h),
        };
        cl.wait_for_map(1).await;
        cl
    }

    async fn wait_for_map(&self, epoch: u64) {
        for c in &self.cells {
            let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
            loop {
                let mut client = c.client.clone();
                let l = client
                    .locate(pb::LocateRequest::default())
                    .await
                    .unwrap()
                    .into_inner();
                if l.map_epoch >= epoch {
                    break;
                }
                assert!(
                    tokio::time::Instant::now() < deadline,
                    "cell {} did not load map epoch {epoch} (has {})",
                    c.name,
                    l.map_epoch
                );
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
    }

    fn cell(&self, name: &str) -> &Cell {
        self.cells.iter().find(|c| c.name == name).unwrap()
    }

    /// The cell `route(path, anchor)` names.
    fn owner(&self, path: &str, anchor: bool) -> &Cell {
        match self.map.route(path, anchor).unwrap() {
            Route::Cell { cell, .. } => self.cell(cell),
            Route::Meta => panic!("{path} is reserved"),
        }
    }

    fn other(&self, c: &Cell) -> &Cell {
        self.cells.iter().find(|x| x.name != c.name).unwrap()
    }

    /// A directory name under `parent` whose own slot is in `cell`.
    fn dir_in(&self, parent: &str, cell: &str, tag: &str) -> String {
        (0..100_000)
            .map(|i| format!("{parent}/{tag}{i}"))
            .find(|p| self.owner(p, true).name == cell)
            .unwrap()
    }

    /// Creates directory `path` as a client would: at its parent's cell, then (split) at
    /// its anchor. Returns the cell holding its children.
    async fn mkdir(&self, principal: &str, path: &str) -> &Cell {
        let p = self.owner(path, false);
        let ctx = session(p, principal).await;
        match open(p, &ctx, path, NODE, 0, dir()).await {
            Ok(r) => {
                assert!(r.created);
                p
            }
            Err(e) => {
                assert_eq!(e.code, ErrorCode::WrongCell, "{e:?}");
                assert!(e.directory && e.created, "{e:?}");
                let c = self.owner(path, true);
                assert_eq!(e.owner, c.name);
                c
            }
        }
    }
}

#[tokio::test]
async fn misrouted_opens_are_refused_and_directories_split_over_two_cells() {
    let cl = Cluster::start().await;
    // Children of the root live in the cell of the root's slot.
    let r = cl.owner("/ls/local/f", false);
    let w = cl.other(r);
    let at_r = session(r, "alice").await;
    let at_w = session(w, "alice").await;

    // A misrouted Open is refused, and creates nothing anywhere.
    let e = open(w, &at_w, "/ls/local/f", NODE, ALL, file(b"x", None))
        .await
        .unwrap_err();
    assert_eq!(e.code, ErrorCode::WrongCell);
    assert_eq!((e.map_epoch, e.owner.as_str()), (1, r.name.as_str()));
    let e = open(r, &at_r, "/ls/local/f", NODE, READ, None)
        .await
        .unwrap_err();
    assert_eq!(
        e.code,
        ErrorCode::NotFound,
        "the refused Open created nothing"
    );
    let f = open(r, &at_r, "/ls/local/f", NODE, ALL, file(b"x", None))
        .await
        .unwrap();
    assert_eq!(f.stat.unwrap().cell, r.name, "Stat.cell names the cell");

    // mkdir of a directory whose own slot is in the other cell.
    let d = cl.dir_in("/ls/local", &w.name, "split");
    let e = open(r, &at_r, &d, NODE, READ, dir()).await.unwrap_err();
    assert_eq!(e.code, ErrorCode::WrongCell);
    assert!(e.directory && e.created, "{e:?}");
    assert_eq!(e.owner, w.name);
    let name = d.rsplit('/').next().unwrap().to_string();
    let root = open(r, &at_r, "/ls/local", NODE, READ, None).await.unwrap();
    assert!(read_dir(r, &at_r, &root.handle).await.contains(&name));
    let mut c = r.client.clone();
    let listing = c
        .read_dir(pb::ReadDirRequest {
            ctx: Some(at_r.clone()),
            handle: root.handle.clone(),
        })
        .await
        .unwrap()
        .into_inner();
    let entry = listing.entries.iter().find(|e| e.name == name).unwrap();
    let entry_stat = entry.stat.as_ref().unwrap();
    assert_eq!(
        entry_stat.cell, w.name,
        "a split directory's stat names its anchor's cell"
    );
    assert!(!entry_stat.ephemeral);
    assert_eq!(listing.stat.unwrap().cell, r.name);
    // An Open of the directory at its parent's cell is redirected to the anchor.
    let e = open(r, &at_r, &d, NODE, READ, None).await.unwrap_err();
    assert!(e.directory && !e.created && e.owner == w.name, "{e:?}");
    // Clients may not create anchors themselves.
    let mut fake = dir();
    fake.as_mut().unwrap().instance = 12345;
    let e = open(w, &at_w, &d, ANCHOR, 0, fake).await.unwrap_err();
    assert_eq!(e.code, ErrorCode::PermissionDenied);

    let a = open(w, &at_w, &d, ANCHOR, ALL, None).await.unwrap();
    let st = a.stat.unwrap();
    assert_eq!(st.cell, w.name);
    assert_eq!(st.kind, pb::NodeKind::Directory as i32);
    // Children are created and listed at the anchor.
    let child = format!("{d}/x");
    let x = open(w, &at_w, &child, NODE, ALL, file(b"1", None))
        .await
        .unwrap();
    assert_eq!(read_dir(w, &at_w, &a.handle).await, vec!["x"]);
    let e = delete(w, &at_w, &a.handle).await.unwrap_err();
    assert_eq!(e.code, ErrorCode::NotEmpty);
    delete(w, &at_w, &x.handle).await.unwrap();
    // Deleting the empty anchor removes the entry from its parent's listing.
    delete(w, &at_w, &a.handle).await.unwrap();
    let listed = read_dir(r, &at_r, &root.handle).await;
    assert!(!listed.contains(&name), "{listed:?}");
    let e = open(r, &at_r, &d, NODE, READ, None).await.unwrap_err();
    assert_eq!(e.code, ErrorCode::NotFound);
    let e = open(w, &at_w, &d, ANCHOR, READ, None).await.unwrap_err();
    assert_eq!(e.code, ErrorCode::NotFound);

    // An exclusive mkdir across cells reports the creation too (and only once).
    let ex = cl.dir_in("/ls/local", &w.name, "excl");
    let mut excl = dir();
    excl.as_mut().unwrap().exclusive = true;
    let e = open(r, &at_r, &ex, NODE, 0, excl.clone())
        .await
        .unwrap_err();
    assert!(
        e.code == ErrorCode::WrongCell && e.directory && e.created,
        "{e:?}"
    );
    let e = open(r, &at_r, &ex, NODE, 0, excl).await.unwrap_err();
    assert_eq!(e.code, ErrorCode::AlreadyExists);

    // A directory inside the split one, split the other way round.
    let top = cl.dir_in("/ls/local", &w.name, "top");
    assert_eq!(cl.mkdir("alice", &top).await.name, w.name);
    let inner = cl.dir_in(&top, &r.name, "in");
    assert_eq!(cl.mkdir("alice", &inner).await.name, r.name);
    let top_h = open(w, &at_w, &top, ANCHOR, READ, None).await.unwrap();
    assert_eq!(
        read_dir(w, &at_w, &top_h.handle).await,
        vec![inner.rsplit('/').next().unwrap()]
    );
    let inner_h = open(r, &at_r, &inner, ANCHOR, ALL, None).await.unwrap();
    assert_eq!(inner_h.stat.unwrap().cell, r.name);
}

#[tokio::test]
async fn a_new_map_moves_a_slot_and_the_old_owner_refuses_it() {
    let cl = Cluster::start().await;
    let c1 = cl.cell("c1");
    let c2 = cl.cell("c2");
    let d = cl.dir_in("/ls/local", "c1", "moving");
    assert_eq!(cl.mkdir("alice", &d).await.name, "c1");
    let at_c1 = session(c1, "alice").await;
    let at_c2 = session(c2, "alice").await;
    let g = format!("{d}/g");
    let h = open(c1, &at_c1, &g, NODE, ALL, file(b"v1", None))
        .await
        .unwrap();

    // Epoch 2: the slot of `d` moves to c2.
    let slot = cl.map.route(&g, false).unwrap();
    let Route::Cell { slot, .. } = slot else {
        panic!()
    };
    let mut owners = cl.map.slot_owners().to_vec();
    owners[slot as usize] = "c2".into();
    let map2 = PartitionMap::new("local", 2, owners, cl.map.cells().clone()).unwrap();
    cl.writer
        .1
        .set_contents(map2.to_json().into_bytes())
        .await
        .unwrap();
    cl.wait_for_map(2).await;

    let mut c = c1.client.clone();
    let e = werr(
        c.get_stat(pb::GetStatRequest {
            ctx: Some(at_c1.clone()),
            handle: h.handle.clone(),
        })
        .await
        .unwrap_err(),
    );
    assert_eq!(e.code, ErrorCode::WrongCell);
    assert_eq!((e.map_epoch, e.owner.as_str()), (2, "c2"));
    let e = open(c1, &at_c1, &g, NODE, READ, None).await.unwrap_err();
    assert_eq!(
        (e.code, e.map_epoch, e.owner.as_str()),
        (ErrorCode::WrongCell, 2, "c2")
    );
    // c2 serves the slot now: it answers for the node itself (the data moves with a
    // reshard, not with the map), whatever it holds.
    match open(c2, &at_c2, &g, NODE, READ, None).await {
        Ok(_) => {}
        Err(e) => assert_eq!(e.code, ErrorCode::NotFound, "{e:?}"),
    }
    // A call routed with a newer map than any makes the cell look for it (at most 1 s),
    // then decide with the map it has.
    let mut routed = at_c2.clone();
    routed.map_epoch = 99;
    let started = std::time::Instant::now();
    let e = open(c2, &routed, "/ls/local/warren/map", NODE, READ, None)
        .await
        .unwrap_err();
    assert_eq!(
        (e.code, e.owner.as_str(), e.map_epoch),
        (ErrorCode::WrongCell, "meta", 2)
    );
    assert!(started.elapsed() < Duration::from_secs(3));
}

#[tokio::test]
async fn acl_files_held_by_another_cell_are_enforced_at_open() {
    let cl = Cluster::start().await;
    let acl_file = "/ls/local/acl/readers";
    let a = cl.owner(acl_file, false);
    let x = cl.other(a);
    // The ACL file, in its own cell.
    let admin = session(a, "admin").await;
    let acl = open(a, &admin, acl_file, NODE, ALL, file(b"alice\n", None))
        .await
        .unwrap();
    // A file guarded by it, in the other cell.
    let d = cl.dir_in("/ls/local", &x.name, "guarded");
    assert_eq!(cl.mkdir("admin", &d).await.name, x.name);
    let alice = session(x, "alice").await;
    let bob = session(x, "bob").await;
    let secret = format!("{d}/secret");
    let guarded = Some(pb::AclNames {
        read: "readers".into(),
        ..Default::default()
    });
    let created = open(x, &alice, &secret, NODE, READ, file(b"s", guarded))
        .await
        .unwrap();
    assert!(created.created);
    let e = open(x, &bob, &secret, NODE, READ, None).await.unwrap_err();
    assert_eq!(e.code, ErrorCode::PermissionDenied, "{e:?}");
    assert!(e.message.contains("bob"), "{}", e.message);
    assert!(open(x, &alice, &secret, NODE, READ, None).await.is_ok());

    // The ACL changes at its cell: the next check sees it (no stale cached copy).
    let mut c = a.client.clone();
    c.set_contents(pb::SetContentsRequest {
        ctx: Some(admin.clone()),
        handle: acl.handle.clone(),
        contents: b"bob\n".to_vec(),
        if_content_generation: None,
    })
    .await
    .unwrap();
    let e = open(x, &alice, &secret, NODE, READ, None)
        .await
        .unwrap_err();
    assert_eq!(e.code, ErrorCode::PermissionDenied, "{e:?}");
    assert!(open(x, &bob, &secret, NODE, READ, None).await.is_ok());
    // A deleted ACL file refuses everyone it governs.
    delete(a, &admin, &acl.handle).await.unwrap();
    let e = open(x, &bob, &secret, NODE, READ, None).await.unwrap_err();
    assert_eq!(e.code, ErrorCode::PermissionDenied);
    assert!(e.message.contains("does not exist"), "{}", e.message);
}

/// A store as a crash left it: the deployment root and `acl` directory, `nodes`,
/// and pending unlinks.
async fn seeded(cell: &str, nodes: Vec<NodeRecord>, unlinks: Vec<PendingUnlink>) -> MemoryStore {
    let store = MemoryStore::new();
    let mut batch = vec![
        Mutation::PutMeta(MetaRecord {
            epoch: 4,
            secret: [9; 32],
            next_instance: 2000,
            deployment: "local".into(),
            cell: cell.into(),
            max_lease_granted_ms: 0,
            max_proxy_lease_granted_ms: 0,
            pending_unlinks: unlinks,
            handed_off: Vec::new(),
            foreign_keys: Default::default(),
            lost_epochs: Vec::new(),
        }),
        Mutation::PutNode(entry("/ls/local", 1, false)),
        Mutation::PutNode(entry("/ls/local/acl", 2, false)),
    ];
    batch.extend(nodes.into_iter().map(Mutation::PutNode));
    store.commit(batch).await.unwrap();
    store
}

/// A directory node (`pending`: an entry whose anchor is still to be made).
fn entry(path: &str, instance: u64, pending: bool) -> NodeRecord {
    NodeRecord {
        path: path.into(),
        meta: NodeMeta {
            kind: NodeKind::Directory,
            instance,
            content_generation: 0,
            lock_generation: 0,
            acl_generation: 0,
            checksum: 0,
            acl: AclNames::default(),
            ephemeral: false,
        },
        holders: Vec::new(),
        anchor: false,
        anchor_pending: pending.then(PendingAnchor::default),
    }
}

#[tokio::test]
async fn the_janitor_finishes_what_a_crash_interrupted() {
    let m = routing();
    let p = cell_of(&m, "/ls/local/x", false);
    let c = if p == "c1" { "c2" } else { "c1" };
    let names: Vec<String> = (0..100_000)
        .map(|i| format!("/ls/local/j{i}"))
        .filter(|d| cell_of(&m, d, true) == c)
        .take(2)
        .collect();
    let (pending, orphan) = (names[0].clone(), names[1].clone());
    // P crashed after committing the entry `pending` (anchor not made); C crashed after
    // removing the anchor of `orphan` (its entry at P not unlinked).
    let sp = seeded(
        &p,
        vec![entry(&pending, 900, true), entry(&orphan, 901, false)],
        vec![],
    )
    .await;
    let sc = seeded(
        c,
        vec![],
        vec![PendingUnlink {
            path: orphan.clone(),
            instance: 901,
        }],
    )
    .await;
    let (s1, s2) = if p == "c1" { (sp, sc) } else { (sc, sp) };
    let cl = Cluster::start_with(s1, s2).await;
    let (pc, cc) = (cl.cell(&p), cl.cell(c));
    let at_p = session(pc, "alice").await;
    let at_c = session(cc, "alice").await;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let anchor = open(cc, &at_c, &pending, ANCHOR, READ, None).await;
        let redirected = open(pc, &at_p, &pending, NODE, READ, None).await;
        let root = open(pc, &at_p, "/ls/local", NODE, READ, None)
            .await
            .unwrap();
        let listed = read_dir(pc, &at_p, &root.handle).await;
        let unlinked = !listed.contains(&orphan.rsplit('/').next().unwrap().to_string());
        let done = anchor
            .as_ref()
            .is_ok_and(|a| a.stat.as_ref().unwrap().instance == 900)
            && redirected.as_ref().is_err_and(|e| e.directory)
            && unlinked;
        if done {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "janitor did not finish: anchor {anchor:?}, open at P {redirected:?}, listing {listed:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
