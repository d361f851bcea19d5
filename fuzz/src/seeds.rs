//! The seed inputs of each target: real requests, paths, maps, configuration files and
//! stored records, made with the same types the servers use, so the fuzzers start from
//! inputs that reach deep. `cargo run -p warren-fuzz --bin seeds -- fuzz/corpus` writes
//! them (docs/fuzzing.md, "Corpora"); the committed corpus is these, minimised with
//! `cargo afl cmin`, plus what the fuzzers found.

use crate::cell::{tag, LATER, LIVE_HANDLE, LIVE_SESSION, SECOND_SESSION, TICK};
use crate::Frames;
use prost::Message;
use warren_proto::pb;

/// Every target's seeds: (target, seed name, bytes).
pub fn all() -> Vec<(&'static str, String, Vec<u8>)> {
    let mut out = Vec::new();
    let mut add = |target: &'static str, seeds: Vec<(String, Vec<u8>)>| {
        out.extend(seeds.into_iter().map(|(n, b)| (target, n, b)));
    };
    add("cell_requests", requests());
    add("proxy_requests", requests());
    add("router", paths());
    add("partition_map", maps());
    add("config", configs());
    add("store_records", records());
    out
}

fn ctx() -> Option<pb::SessionContext> {
    Some(pb::SessionContext {
        session_id: vec![1; 16],
        secret: vec![2; 16],
        epoch: 1,
        ..Default::default()
    })
}

fn file(path: &str, data: &[u8]) -> pb::OpenRequest {
    pb::OpenRequest {
        ctx: ctx(),
        path: path.into(),
        intent: 7,
        events: 1,
        create: Some(pb::CreateSpec {
            kind: pb::NodeKind::File as i32,
            initial_contents: data.to_vec(),
            ..Default::default()
        }),
        read: true,
        ..Default::default()
    }
}

/// Sessions of calls as a client makes them: open or create, read, write, lock, close.
fn requests() -> Vec<(String, Vec<u8>)> {
    const S: u8 = LIVE_SESSION;
    const H: u8 = LIVE_SESSION | LIVE_HANDLE;
    let seq = Some(pb::Sequencer {
        path: "/ls/local/a".into(),
        mode: pb::LockMode::Exclusive as i32,
        instance: 3,
        lock_generation: 1,
    });
    let dir = pb::OpenRequest {
        create: Some(pb::CreateSpec {
            kind: pb::NodeKind::Directory as i32,
            ..Default::default()
        }),
        ..file("/ls/local/d", b"")
    };
    type Script = Vec<(u8, u8, Vec<u8>)>;
    let scripts: Vec<(&str, Script)> = vec![
        (
            "file-lifecycle",
            vec![
                (
                    tag("Open"),
                    S,
                    file("/ls/local/a", b"hello").encode_to_vec(),
                ),
                (
                    tag("GetContentsAndStat"),
                    H,
                    pb::GetContentsAndStatRequest {
                        ctx: ctx(),
                        handle: vec![],
                    }
                    .encode_to_vec(),
                ),
                (
                    tag("SetContents"),
                    H,
                    pb::SetContentsRequest {
                        ctx: ctx(),
                        handle: vec![],
                        contents: b"world".to_vec(),
                        if_content_generation: Some(0),
                    }
                    .encode_to_vec(),
                ),
                (
                    tag("GetStat"),
                    H,
                    pb::GetStatRequest {
                        ctx: ctx(),
                        handle: vec![],
                    }
                    .encode_to_vec(),
                ),
                (
                    tag("Open"),
                    S,
                    file("/ls/local/acl/writers", b"alice\n").encode_to_vec(),
                ),
                (
                    tag("SetAcl"),
                    H,
                    pb::SetAclRequest {
                        ctx: ctx(),
                        handle: vec![],
                        acl: Some(pb::AclNames {
                            read: String::new(),
                            write: "writers".into(),
                            change_acl: "writers".into(),
                        }),
                    }
                    .encode_to_vec(),
                ),
                (
                    tag("Delete"),
                    H,
                    pb::DeleteRequest {
                        ctx: ctx(),
                        handle: vec![],
                    }
                    .encode_to_vec(),
                ),
                (
                    tag("Close"),
                    H,
                    pb::CloseRequest {
                        ctx: ctx(),
                        handle: vec![],
                    }
                    .encode_to_vec(),
                ),
            ],
        ),
        (
            "locks",
            vec![
                (tag("Open"), S, file("/ls/local/a", b"").encode_to_vec()),
                (
                    tag("Acquire"),
                    H,
                    pb::AcquireRequest {
                        ctx: ctx(),
                        handle: vec![],
                        mode: pb::LockMode::Exclusive as i32,
                        timeout_ms: 100,
                    }
                    .encode_to_vec(),
                ),
                (
                    tag("GetSequencer"),
                    H,
                    pb::GetSequencerRequest {
                        ctx: ctx(),
                        handle: vec![],
                    }
                    .encode_to_vec(),
                ),
                (
                    tag("CheckSequencer"),
                    S,
                    pb::CheckSequencerRequest {
                        ctx: ctx(),
                        sequencer: seq.clone(),
                    }
                    .encode_to_vec(),
                ),
                (
                    tag("SetSequencer"),
                    H,
                    pb::SetSequencerRequest {
                        ctx: ctx(),
                        handle: vec![],
                        sequencer: seq,
                    }
                    .encode_to_vec(),
                ),
                (
                    tag("Open"),
                    S | SECOND_SESSION,
                    file("/ls/local/a", b"").encode_to_vec(),
                ),
                (
                    tag("TryAcquire"),
                    H | 0x10,
                    pb::TryAcquireRequest {
                        ctx: ctx(),
                        handle: vec![],
                        mode: pb::LockMode::Shared as i32,
                    }
                    .encode_to_vec(),
                ),
                (
                    tag("Release"),
                    H,
                    pb::ReleaseRequest {
                        ctx: ctx(),
                        handle: vec![],
                    }
                    .encode_to_vec(),
                ),
                (TICK, 0, vec![200]),
            ],
        ),
        (
            "directories",
            vec![
                (tag("Open"), S, dir.encode_to_vec()),
                (tag("Open"), S, file("/ls/local/d/x", b"1").encode_to_vec()),
                (
                    tag("ReadDir"),
                    H,
                    pb::ReadDirRequest {
                        ctx: ctx(),
                        handle: vec![],
                    }
                    .encode_to_vec(),
                ),
                (
                    tag("Open"),
                    S,
                    pb::OpenRequest {
                        target: pb::OpenTarget::Anchor as i32,
                        create: None,
                        ..dir.clone()
                    }
                    .encode_to_vec(),
                ),
            ],
        ),
        (
            "sessions",
            vec![
                (
                    tag("Locate"),
                    0,
                    pb::LocateRequest {
                        unreachable_master: "127.0.0.1:1".into(),
                        unreachable_epoch: 2,
                    }
                    .encode_to_vec(),
                ),
                (
                    tag("CreateSession"),
                    0,
                    pb::CreateSessionRequest {
                        principal: "carol".into(),
                        proxy: false,
                    }
                    .encode_to_vec(),
                ),
                (
                    tag("KeepAlive"),
                    S | LATER,
                    pb::KeepAliveRequest {
                        ctx: ctx(),
                        ack_seq: 0,
                        jeopardy: false,
                    }
                    .encode_to_vec(),
                ),
                (
                    tag("ClaimSession"),
                    S | SECOND_SESSION,
                    pb::ClaimSessionRequest {
                        ctx: ctx(),
                        client_session: vec![9; 16],
                        client_secret: vec![8; 16],
                        client_principal: "dave".into(),
                        only_from: vec![],
                    }
                    .encode_to_vec(),
                ),
                (
                    tag("Open"),
                    S | SECOND_SESSION,
                    pb::OpenRequest {
                        ctx: Some(pb::SessionContext {
                            client_session: vec![9; 16],
                            client_secret: vec![8; 16],
                            client_principal: "dave".into(),
                            ..ctx().unwrap_or_default()
                        }),
                        ..file("/ls/local/p", b"")
                    }
                    .encode_to_vec(),
                ),
                (
                    tag("CloseSession"),
                    S,
                    pb::CloseSessionRequest {
                        ctx: ctx(),
                        expired: false,
                    }
                    .encode_to_vec(),
                ),
                (TICK, 0, vec![255]),
            ],
        ),
    ];
    scripts
        .into_iter()
        .map(|(name, frames)| {
            let frames: Vec<(u8, u8, &[u8])> = frames
                .iter()
                .map(|(t, f, b)| (*t, *f, b.as_slice()))
                .collect();
            (name.to_string(), Frames::encode(&frames))
        })
        .collect()
}

fn paths() -> Vec<(String, Vec<u8>)> {
    let paths: [&[u8]; 12] = [
        b"/ls/local/a",
        b"/ls/local",
        b"/ls/local/warren/map",
        b"/ls/local/acl/readers",
        b"/ls/local/d/e/f",
        b"/ls/other/x",
        b"/ls/local/a/../b",
        b"/ls/local//a",
        b"/ls/local/\xc3\xa9t\xc3\xa9",
        b"",
        b"/",
        b"ls/local/a/",
    ];
    let frames: Vec<(u8, u8, &[u8])> = paths
        .iter()
        .enumerate()
        .map(|(i, p)| (i as u8, (i as u8) * 3, *p))
        .collect();
    vec![("paths".into(), Frames::encode(&frames))]
}

fn maps() -> Vec<(String, Vec<u8>)> {
    use warren_router::PartitionMap;
    let a = |s: &str| vec![s.to_string()];
    let one = PartitionMap::single_cell("local", "c0", a("127.0.0.1:7001"), 4096);
    let three = PartitionMap::even(
        "prod",
        &[
            (
                "c1",
                vec!["10.0.0.1:7000".to_string(), "10.0.0.2:7000".to_string()],
            ),
            ("c2", a("[::1]:7000")),
            ("meta", a("host.example:7000")),
        ],
        64,
    );
    let mut out: Vec<(String, Vec<u8>)> = [("one-cell", one), ("three-cells", three)]
        .into_iter()
        .map(|(n, m)| {
            (
                n.to_string(),
                m.expect("a valid map").to_json().into_bytes(),
            )
        })
        .collect();
    // A hand-written map with interleaved ranges, as a reshard leaves them.
    out.push((
        "interleaved".into(),
        br#"{"format":1,"deployment":"local","map_epoch":7,"slot_count":8,"cells":{"c0":{"replicas":["127.0.0.1:7001"],"slots":[[0,1],[4,5]]},"c1":{"replicas":["127.0.0.1:7002"],"slots":[[2,3],[6,7]]}}}"#.to_vec(),
    ));
    out
}

fn configs() -> Vec<(String, Vec<u8>)> {
    let cell = "name = \"c1\"\nlisten = \"127.0.0.1:7000\"\ndata = \"/var/lib/warren/c1\"\n\
                deployment = \"local\"\nlease = \"12s\"\nmax_lease = \"60s\"\n\
                proxy_lease = \"20s\"\nmax_file_size = \"256KiB\"\n\
                [tls]\ncacert = \"/etc/warren/ca.pem\"\ncert = \"/etc/warren/c1.pem\"\n\
                key = \"/etc/warren/c1.key\"\n\
                [backup]\ndest = \"/var/backups/warren\"\nevery = \"6h\"\nkeep = 28\n";
    let etcd = "name = \"c2\"\nlisten = \"127.0.0.1:7100\"\nstore = \"etcd\"\n\
                etcd = \"http://127.0.0.1:2379,http://127.0.0.1:2479\"\nreplica = \"r1\"\n\
                etcd_lease = \"5s\"\nmeta = \"127.0.0.1:7000\"\nadvertise = \"127.0.0.1:7100\"\n\
                proxy_principals = [\"proxy-1\", \"proxy-2\"]\ninsecure = true\n";
    let proxy = "listen = \"127.0.0.1:8000\"\nadmin = \"127.0.0.1:9000\"\nid = \"p1\"\n\
                 cells = [\"c1=127.0.0.1:7000\", \"c2=127.0.0.1:7100,127.0.0.1:7101\"]\n\
                 client_lease = \"12s\"\nkeepalive_reply_before_end = \"1s\"\n\
                 lease_margin = \"1s\"\ninsecure = true\n";
    let routed = "listen = \"127.0.0.1:8001\"\nmeta = \"127.0.0.1:7000\"\ninsecure = true\n";
    [
        ("cell", 0u8, cell),
        ("cell-etcd", 0, etcd),
        ("proxy", 1, proxy),
        ("proxy-meta", 1, routed),
    ]
    .into_iter()
    .map(|(n, which, text)| (n.to_string(), [&[which][..], text.as_bytes()].concat()))
    .collect()
}

/// A store's entries as a master writes them: its first mutations (the meta record, the
/// deployment root and `acl` directory), a session, a file with contents, a lock holder.
fn records() -> Vec<(String, Vec<u8>)> {
    use warren_cell::store::*;
    let meta = MetaRecord {
        epoch: 3,
        secret: [7; 32],
        next_instance: 10,
        deployment: "local".into(),
        cell: "c0".into(),
        max_lease_granted_ms: 12_000,
        max_proxy_lease_granted_ms: 20_000,
        pending_unlinks: vec![PendingUnlink {
            path: "/ls/local/x".into(),
            instance: 4,
        }],
        handed_off: vec![],
        foreign_keys: Default::default(),
        lost_epochs: vec![EpochRange { first: 1, last: 1 }],
    };
    let node = |path: &str, kind: NodeKind, holders: Vec<LockHolder>| NodeRecord {
        path: path.into(),
        meta: NodeMeta {
            kind,
            instance: 5,
            content_generation: 1,
            lock_generation: 1,
            acl_generation: 1,
            checksum: 0,
            acl: AclNames::default(),
            ephemeral: false,
        },
        holders,
        anchor: false,
        anchor_pending: None,
    };
    let session = SessionRecord {
        id: [1; 16],
        secret: [2; 16],
        principal: "alice".into(),
        ..Default::default()
    };
    let holder = LockHolder {
        session: [1; 16],
        handle_epoch: 2,
        handle: 1,
        mode: LockMode::Exclusive,
        lock_delay_ms: 0,
    };
    let json = |v: &dyn erased::Json| v.json();
    // The cell's own map (it then owns every slot) and a node staged by a reshard into one
    // of its slots: recovery installs it.
    let map =
        warren_router::PartitionMap::single_cell("local", "c0", vec!["127.0.0.1:7001".into()], 16)
            .expect("a valid map")
            .to_json();
    let staged = warren_cell::core::reshard::StagedNode {
        source: "c1".into(),
        parts: warren_cell::core::reshard::Parts {
            entry: true,
            anchor: false,
        },
        rec: node("/ls/local/s", NodeKind::File, vec![]),
        contents: b"moved".to_vec(),
        sessions: vec![session.clone()],
        handles: vec![],
        lock_delay_left_ms: 1_000,
        waiting: vec![(2, 9)],
    };
    let dir = |p: &str| json(&node(p, NodeKind::Directory, vec![]));
    let entries: Vec<(u8, Vec<u8>, Vec<u8>)> = vec![
        (0, b"meta".to_vec(), json(&meta)),
        (1, b"/ls/local".to_vec(), dir("/ls/local")),
        (
            1,
            b"/ls/local/a".to_vec(),
            json(&node("/ls/local/a", NodeKind::File, vec![holder])),
        ),
        (2, b"/ls/local/a".to_vec(), b"hello".to_vec()),
        (1, b"/ls/local/warren".to_vec(), dir("/ls/local/warren")),
        (
            1,
            b"/ls/local/warren/map".to_vec(),
            json(&node("/ls/local/warren/map", NodeKind::File, vec![])),
        ),
        (2, b"/ls/local/warren/map".to_vec(), map.into_bytes()),
        (3, session.id.to_vec(), json(&session)),
        (4, b"5//ls/local/s".to_vec(), json(&staged)),
    ];
    let frame = |tag: u8, key: &[u8], value: &[u8]| {
        let body = [&[key.len() as u8][..], key, value].concat();
        (tag, 0u8, body)
    };
    let embedded: Vec<_> = entries.iter().map(|(t, k, v)| frame(*t, k, v)).collect();
    let etcd_key = |t: u8, k: &[u8]| -> Vec<u8> {
        match t {
            0 => b"meta".to_vec(),
            1 => [b"nodes/".as_slice(), k].concat(),
            2 => [b"contents/".as_slice(), k].concat(),
            3 => b"sessions/01010101010101010101010101010101".to_vec(),
            _ => [b"staged/".as_slice(), k].concat(),
        }
    };
    let etcd: Vec<_> = entries
        .iter()
        .map(|(t, k, v)| frame(5, &etcd_key(*t, k), v))
        .collect();
    [("embedded", embedded), ("etcd", etcd)]
        .into_iter()
        .map(|(n, frames)| {
            let frames: Vec<(u8, u8, &[u8])> = frames
                .iter()
                .map(|(t, f, b)| (*t, *f, b.as_slice()))
                .collect();
            (n.to_string(), Frames::encode(&frames))
        })
        .collect()
}

/// Records as JSON, whatever their type, for one list of entries.
mod erased {
    pub trait Json {
        fn json(&self) -> Vec<u8>;
    }
    impl<T: serde::Serialize> Json for T {
        fn json(&self) -> Vec<u8> {
            serde_json::to_vec(self).expect("a record serialises")
        }
    }
}
