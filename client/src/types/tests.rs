//! Tests of the domain types: their conversions from and to the wire types, their text
//! forms, event masks and session ids.

use super::*;

fn seq() -> Sequencer {
    Sequencer {
        path: "/ls/local/jobs/leader".into(),
        mode: LockMode::Exclusive,
        instance: 3,
        lock_generation: 17,
    }
}

#[test]
fn sequencer_text_round_trips() {
    let s = seq();
    assert_eq!(s.to_string(), "/ls/local/jobs/leader:x:3:17");
    assert_eq!(s.to_string().parse::<Sequencer>(), Ok(s.clone()));
    let shared = Sequencer {
        mode: LockMode::Shared,
        ..s
    };
    assert_eq!(shared.to_string(), "/ls/local/jobs/leader:s:3:17");
    assert_eq!(shared.to_string().parse::<Sequencer>(), Ok(shared));
}

#[test]
fn sequencer_text_rejects_garbage() {
    for bad in [
        "",
        "/a:x:1",
        "/a:x:1:2:3",
        "a:x:1:2",
        "/a:q:1:2",
        "/a:X:1:2",
        "/a:x:one:2",
        "/a:x:1:-2",
        "/a:x:1:18446744073709551616",
        ":x:1:2",
    ] {
        let e = bad.parse::<Sequencer>().expect_err(bad);
        assert_eq!(e.code_name(), "INVALID_ARGUMENT", "{bad}");
        assert!(e.message().contains("<path>:<x|s>"), "{bad}: {e}");
    }
}

#[test]
fn sequencer_wire_round_trips() {
    let s = seq();
    let wire = pb::Sequencer::from(&s);
    assert_eq!(wire.mode, pb::LockMode::Exclusive as i32);
    assert_eq!(Sequencer::try_from(wire), Ok(s));
}

#[test]
fn sequencer_from_wire_needs_mode_and_path() {
    let mut wire = pb::Sequencer::from(&seq());
    wire.mode = 0;
    assert!(matches!(
        Sequencer::try_from(wire.clone()),
        Err(Error::Protocol(_))
    ));
    wire.mode = 99;
    assert!(matches!(
        Sequencer::try_from(wire.clone()),
        Err(Error::Protocol(_))
    ));
    wire.mode = 2;
    wire.path.clear();
    assert!(matches!(Sequencer::try_from(wire), Err(Error::Protocol(_))));
    assert!(matches!(
        required_sequencer(None, "Acquire"),
        Err(Error::Protocol(_))
    ));
}

#[test]
fn stat_from_wire() {
    let wire = pb::Stat {
        cell: "c1".into(),
        kind: pb::NodeKind::File as i32,
        instance: 1,
        content_generation: 2,
        lock_generation: 3,
        acl_generation: 4,
        checksum: 5,
        acl: None,
        ephemeral: true,
        child_count: 0,
        length: 9,
    };
    let stat = Stat::try_from(wire.clone()).expect("valid stat");
    assert_eq!(stat.kind, NodeKind::File);
    assert_eq!(stat.acl, AclNames::default());
    assert_eq!(
        (stat.instance, stat.content_generation, stat.length),
        (1, 2, 9)
    );
    assert!(stat.ephemeral);
    let bad = pb::Stat { kind: 0, ..wire };
    assert!(matches!(Stat::try_from(bad), Err(Error::Protocol(_))));
    assert!(matches!(
        required_stat(None, "GetStat"),
        Err(Error::Protocol(_))
    ));
}

#[test]
fn dir_entry_needs_name_and_stat() {
    assert!(DirEntry::try_from(pb::DirEntry {
        name: "a".into(),
        stat: None
    })
    .is_err());
    let stat = pb::Stat {
        kind: pb::NodeKind::Directory as i32,
        ..Default::default()
    };
    assert!(DirEntry::try_from(pb::DirEntry {
        name: String::new(),
        stat: Some(stat.clone())
    })
    .is_err());
    let e = DirEntry::try_from(pb::DirEntry {
        name: "a".into(),
        stat: Some(stat),
    })
    .expect("valid entry");
    assert_eq!(e.stat.kind, NodeKind::Directory);
}

#[test]
fn acl_round_trips() {
    let acl = AclNames {
        read: "r".into(),
        write: "w".into(),
        change_acl: "c".into(),
    };
    assert_eq!(AclNames::from(pb::AclNames::from(acl.clone())), acl);
}

fn wire_event(t: pb::EventType, path: &str) -> pb::Event {
    pb::Event {
        seq: 1,
        r#type: t as i32,
        handle: vec![],
        path: path.into(),
        child: String::new(),
        child_change: 0,
        ..Default::default()
    }
}

#[test]
fn events_from_wire() {
    let n = |e: &pb::Event| Notification::try_from(e);
    assert_eq!(
        n(&wire_event(pb::EventType::ContentsModified, "/ls/l/a")),
        Ok(Notification::App(Event::ContentsModified {
            path: "/ls/l/a".into()
        }))
    );
    assert_eq!(
        n(&wire_event(pb::EventType::Invalidate, "/ls/l/a")),
        Ok(Notification::Invalidate("/ls/l/a".into()))
    );
    assert_eq!(
        n(&wire_event(pb::EventType::MasterFailover, "")),
        Ok(Notification::App(Event::MasterFailover))
    );
    let mut child = wire_event(pb::EventType::ChildChanged, "/ls/l/d");
    child.child = "x".into();
    child.child_change = pb::ChildChange::Added as i32;
    let event = match n(&child) {
        Ok(Notification::App(e)) => e,
        other => panic!("{other:?}"),
    };
    assert_eq!(event.to_string(), "child_changed /ls/l/d added x");
    // Malformed events are errors, not panics.
    assert!(n(&wire_event(pb::EventType::LockAcquired, "")).is_err());
    assert!(n(&wire_event(pb::EventType::Unspecified, "/a")).is_err());
    child.child_change = 0;
    assert!(n(&child).is_err());
    let mut unknown = wire_event(pb::EventType::ContentsModified, "/a");
    unknown.r#type = 42;
    assert!(n(&unknown).is_err());
}

#[test]
fn event_lines() {
    assert_eq!(
        Event::ContentsModified {
            path: "/ls/local/a".into()
        }
        .to_string(),
        "contents_modified /ls/local/a"
    );
    assert_eq!(Event::MasterFailover.to_string(), "master_failover");
    assert_eq!(Event::Expired.to_string(), "expired");
    assert_eq!(Event::Jeopardy.to_string(), "jeopardy");
    assert_eq!(Event::Safe.to_string(), "safe");
    assert_eq!(Event::Safe.path(), None);
}

#[test]
fn event_mask_bits() {
    let m = EventMask::CONTENTS_MODIFIED | EventMask::LOCK_ACQUIRED;
    assert_eq!(m.bits(), 1 | 16);
    assert!(m.contains(EventMask::LOCK_ACQUIRED));
    assert!(!m.contains(EventMask::CHILD_CHANGED));
    assert_eq!(EventMask::ALL.bits(), 63);
    assert_eq!(EventMask::from_bits_truncate(0xffff), EventMask::ALL);
    assert!(EventMask::default().is_empty());
}

#[test]
fn session_id_checks_length() {
    assert!(SessionId::try_from(&[1u8; 15][..]).is_err());
    let id = SessionId::try_from(&[0xabu8; 16][..]).expect("16 bytes");
    assert_eq!(id.to_string(), "ab".repeat(16));
}
