//! The stored encoding of records: what the embedded and etcd stores hold must keep
//! decoding when record types are restructured.

use super::{AclNames, LockHolder, LockMode, NodeKind, NodeMeta, NodeRecord, PendingAnchor};

/// A node record as encoded before its metadata was split out into [`NodeMeta`]: every
/// field at the top level, in declaration order.
const NODE_RECORD_JSON: &str = concat!(
    r#"{"path":"/ls/local/d","kind":"Directory","instance":7,"content_generation":3,"#,
    r#""lock_generation":2,"acl_generation":1,"checksum":3735928559,"#,
    r#""acl":{"read":"readers","write":"","change_acl":"admins"},"ephemeral":true,"#,
    r#""holders":[{"session":[5,5,5,5,5,5,5,5,5,5,5,5,5,5,5,5],"handle_epoch":4,"handle":9,"#,
    r#""mode":"Shared","lock_delay_ms":60000}],"anchor":true,"#,
    r#""anchor_pending":{"ephemeral":true}}"#
);

fn node_record() -> NodeRecord {
    NodeRecord {
        path: "/ls/local/d".into(),
        meta: NodeMeta {
            kind: NodeKind::Directory,
            instance: 7,
            content_generation: 3,
            lock_generation: 2,
            acl_generation: 1,
            checksum: 0xdead_beef,
            acl: AclNames {
                read: "readers".into(),
                write: String::new(),
                change_acl: "admins".into(),
            },
            ephemeral: true,
        },
        holders: vec![LockHolder {
            session: [5; 16],
            handle_epoch: 4,
            handle: 9,
            mode: LockMode::Shared,
            lock_delay_ms: 60_000,
        }],
        anchor: true,
        anchor_pending: Some(PendingAnchor { ephemeral: true }),
    }
}

#[test]
fn a_node_record_keeps_its_flat_encoding() {
    let decoded: NodeRecord = serde_json::from_str(NODE_RECORD_JSON).unwrap();
    assert_eq!(decoded, node_record());
    assert_eq!(
        serde_json::to_string(&node_record()).unwrap(),
        NODE_RECORD_JSON
    );
}

#[test]
fn a_node_record_without_the_later_fields_still_decodes() {
    let old = r#"{"path":"/ls/local/f","kind":"File","instance":1,"content_generation":0,"lock_generation":0,"acl_generation":0,"checksum":0,"acl":{"read":"","write":"","change_acl":""},"ephemeral":false}"#;
    let decoded: NodeRecord = serde_json::from_str(old).unwrap();
    assert_eq!(decoded.meta.kind, NodeKind::File);
    assert_eq!(decoded.meta.instance, 1);
    assert!(decoded.holders.is_empty());
    assert!(!decoded.anchor);
    assert_eq!(decoded.anchor_pending, None);
}
