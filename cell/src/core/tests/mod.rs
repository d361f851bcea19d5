//! Tests of the master state machine with synthetic time: each test drives the core
//! with explicit instants and asserts the exact replies, wakes and mutations. This module
//! holds the fixture every topic's tests share; each topic has a file of its own.

use super::*;
use crate::store::{
    AclNames, LockMode, Mutation, NodeKind, NodeRecord, PendingAnchor, PendingUnlink, SessionId,
    SessionRecord, Snapshot,
};
use warren_proto::ErrorCode;
use warren_router::Route;

mod authz;
mod caching;
mod events;
mod inspect;
mod locks;
mod map_guard;
mod namespace;
mod partition;
mod recover;
mod reshard;
mod sessions;
mod sub_sessions;

const LEASE: Duration = Duration::from_secs(12);

struct T {
    m: Master,
    t0: Instant,
}

fn secs(s: f64) -> Duration {
    Duration::from_secs_f64(s)
}

impl T {
    fn new() -> T {
        let t0 = Instant::now();
        let m =
            Master::recover(CoreConfig::new("c0", "local"), Snapshot::default(), t0, 7).unwrap();
        let mut t = T { m, t0 };
        t.m.take_output();
        t
    }
    fn at(&self, s: f64) -> Instant {
        self.t0 + secs(s)
    }
    fn session(&mut self, at: f64) -> Ctx {
        ctx_of(&self.m.create_session("alice", self.at(at)).unwrap())
    }
    fn open(
        &mut self,
        ctx: &Ctx,
        path: &str,
        intent: u32,
        events: u32,
        create: Option<CreateArgs>,
        at: f64,
    ) -> Result<Reply<OpenOk>, WarrenError> {
        let a = OpenArgs {
            path: path.to_string(),
            intent,
            events,
            lock_delay: Duration::ZERO,
            create,
            read: false,
            target: Target::Node,
        };
        self.m.open(ctx, &a, self.at(at))
    }
    fn open_ok(
        &mut self,
        ctx: &Ctx,
        path: &str,
        intent: u32,
        events: u32,
        create: Option<CreateArgs>,
        at: f64,
    ) -> OpenOk {
        match self.open(ctx, path, intent, events, create, at).unwrap() {
            Reply::Done(o) => o,
            Reply::Wait(_) => panic!("open of {path} unexpectedly waited"),
        }
    }
    fn file(&mut self, ctx: &Ctx, path: &str, data: &[u8], at: f64) -> OpenOk {
        self.open_ok(ctx, path, intent::ALL, 0, file(data), at)
    }
    fn wakes(&mut self) -> Vec<(WaiterId, Wake)> {
        self.m.take_output().wakes
    }
}

fn file(data: &[u8]) -> Option<CreateArgs> {
    Some(CreateArgs {
        kind: NodeKind::File,
        ephemeral: false,
        contents: data.to_vec(),
        acl: None,
        exclusive: false,
        instance: 0,
    })
}

fn done<T: std::fmt::Debug>(r: Result<Reply<T>, WarrenError>) -> T {
    match r.unwrap() {
        Reply::Done(t) => t,
        Reply::Wait(w) => panic!("waited ({w})"),
    }
}

fn waiter<T: std::fmt::Debug>(r: Result<Reply<T>, WarrenError>) -> WaiterId {
    match r.unwrap() {
        Reply::Wait(w) => w,
        Reply::Done(t) => panic!("expected to wait, got {t:?}"),
    }
}

/// Runs a write, letting `others` acknowledge invalidations until it goes through.
fn write<R: std::fmt::Debug>(
    t: &mut T,
    others: &[(&Ctx, &mut Vec<Event>)],
    mut f: impl FnMut(&mut Master) -> Result<Reply<R>, WarrenError>,
) -> R {
    let _ = others;
    for _ in 0..3 {
        match f(&mut t.m).unwrap() {
            Reply::Done(r) => return r,
            Reply::Wait(_) => {}
        }
        // Acknowledge for everyone: the test harness plays each client library.
        acknowledge_everything(&mut t.m);
    }
    panic!("write never went through")
}

fn ctx_of(c: &SessionCreated) -> Ctx {
    Ctx {
        session: c.id,
        secret: c.secret,
        epoch: c.epoch,
        client: None,
        authenticated: None,
    }
}

fn open_args(
    path: &str,
    intent_bits: u32,
    lock_delay: f64,
    create: Option<CreateArgs>,
) -> OpenArgs {
    OpenArgs {
        path: path.into(),
        intent: intent_bits,
        events: 0,
        lock_delay: secs(lock_delay),
        create,
        read: false,
        target: Target::Node,
    }
}

fn ephemeral() -> Option<CreateArgs> {
    Some(CreateArgs {
        kind: NodeKind::File,
        ephemeral: true,
        contents: vec![],
        acl: None,
        exclusive: false,
        instance: 0,
    })
}

fn snapshot_of(muts: Vec<Mutation>) -> Snapshot {
    crate::store::memory::replay(muts)
}

impl T {
    fn proxy(&mut self, at: f64) -> Ctx {
        ctx_of(&self.m.create_proxy_session("proxy", self.at(at)).unwrap())
    }
}

pub(super) fn cid(n: u8) -> SessionId {
    [n; 16]
}

pub(super) fn csecret(n: u8) -> [u8; 16] {
    [n ^ 0x5a; 16]
}

/// Proxy session `p` acting for client session number `n`.
pub(super) fn for_client(p: &Ctx, n: u8, principal: &str) -> Ctx {
    Ctx {
        client: Some(ClientCtx {
            session: cid(n),
            secret: csecret(n),
            principal: principal.into(),
            proxy_dropped_copies: false,
        }),
        ..p.clone()
    }
}

/// Every session acknowledges every event queued for it (the harness plays each client
/// library).
fn acknowledge_everything(m: &mut Master) {
    let ids: Vec<(SessionId, u64)> = m
        .sessions
        .iter()
        .map(|(id, s)| (*id, s.lease.last_seq()))
        .collect();
    for (id, seq) in ids {
        m.acknowledge(id, seq);
    }
}
