//! Events: each delivered once, after its action, to the handles whose mask asks for
//! it.

use super::*;

/// Acknowledges everything queued for `ctx`, returning the application events
/// (not invalidations) it had not seen before.
fn settle(t: &mut T, ctx: &Ctx, seen: &mut Vec<Event>) {
    let s = &t.m.sessions[&ctx.session];
    let last = s.lease.last_seq();
    let from = seen.last().map_or(0, |e| e.seq);
    seen.extend(
        s.lease
            .events()
            .filter(|e| e.seq > from && e.kind != EventKind::Invalidate)
            .cloned(),
    );
    t.m.acknowledge(ctx.session, last);
}

#[test]
fn events_are_delivered_once_after_their_action() {
    let mut t = T::new();
    let (a, b) = (t.session(0.0), t.session(0.0));
    let mut seen = Vec::new();
    let dir_args = Some(CreateArgs {
        kind: NodeKind::Directory,
        ephemeral: false,
        contents: vec![],
        acl: None,
        exclusive: true,
        instance: 0,
    });
    t.open_ok(&a, "/ls/local/d", intent::ALL, 0, dir_args, 0.0);
    let watch_dir = t.open_ok(&b, "/ls/local/d", intent::READ, mask::ALL, None, 0.0);
    let now = t.at(0.0);
    let fargs = OpenArgs {
        path: "/ls/local/d/f".into(),
        intent: intent::ALL,
        events: 0,
        lock_delay: Duration::ZERO,
        create: file(b""),
        read: false,
        target: Target::Node,
    };
    settle(&mut t, &b, &mut seen);
    let f = write(&mut t, &[], |m| m.open(&a, &fargs, now));
    settle(&mut t, &b, &mut seen);
    let watch_f = t.open_ok(&b, "/ls/local/d/f", intent::WRITE, mask::ALL, None, 0.0);
    settle(&mut t, &b, &mut seen);
    let now = t.at(1.0);
    // Events are queued only once the write happened, not while it waited.
    match t.m.set_contents(&a, &f.handle, b"x", None, now).unwrap() {
        Reply::Wait(_) => {
            let s = &t.m.sessions[&b.session];
            assert!(
                s.lease.events().all(|e| e.kind == EventKind::Invalidate),
                "event before its action"
            );
        }
        Reply::Done(_) => panic!("b cached f; the write must wait"),
    }
    settle(&mut t, &b, &mut seen);
    write(&mut t, &[], |m| {
        m.set_contents(&a, &f.handle, b"x", None, now)
    });
    t.m.try_acquire(&a, &f.handle, LockMode::Exclusive, now)
        .unwrap();
    // b's conflicting request: b is told nothing (it is the requester), a's handle has no mask.
    assert_eq!(
        t.m.try_acquire(&b, &watch_f.handle, LockMode::Exclusive, now)
            .unwrap_err()
            .code,
        ErrorCode::LockHeld
    );
    settle(&mut t, &b, &mut seen);
    let kinds: Vec<_> = seen
        .iter()
        .map(|e| (e.kind, e.path.as_str(), e.change))
        .collect();
    assert_eq!(
        kinds,
        vec![
            (EventKind::ChildChanged, "/ls/local/d", ChildChange::Added),
            (
                EventKind::ContentsModified,
                "/ls/local/d/f",
                ChildChange::None
            ),
            (
                EventKind::ChildChanged,
                "/ls/local/d",
                ChildChange::Modified
            ),
            (EventKind::LockAcquired, "/ls/local/d/f", ChildChange::None),
        ]
    );
    assert_eq!(seen[0].handle, watch_dir.handle);
    assert_eq!(seen[1].handle, watch_f.handle);
    // Acknowledged events are not sent again: the next KeepAlive is held.
    let last = t.m.sessions[&b.session].lease.last_seq();
    let w = waiter(t.m.keepalive(&b, last, t.at(2.1)));
    // Deleting the file: handle-invalid to b's handle on it, child removed to b's dir handle.
    t.m.release(&a, &f.handle, t.at(3.0)).unwrap();
    t.wakes();
    let now = t.at(3.0);
    write(&mut t, &[], |m| m.delete(&a, &f.handle, now));
    let from = seen.len();
    settle(&mut t, &b, &mut seen);
    let kinds: Vec<_> = seen[from..].iter().map(|e| (e.kind, e.change)).collect();
    assert_eq!(
        kinds,
        vec![
            (EventKind::HandleInvalid, ChildChange::None),
            (EventKind::ChildChanged, ChildChange::Removed)
        ]
    );
    assert!(seen[from..].iter().all(|e| e.seq > last));
    let _ = w;
}
