//! Target `cell_requests`: whole `warren.v1.Warren` request messages at a cell. Each frame
//! is one call: its tag picks the RPC, its body is decoded as that RPC's request message
//! (as the cell's codec does), and the call then goes the way the cell's service takes it
//! (`warren_cell::server::service`): the session context, handle bytes, lock modes,
//! sequencers, ACLs and open arguments checked at the edge (`warren_cell::edge`), then the
//! master's method for the RPC — handle verification (the MAC), path checks, sessions,
//! locks, writes — up to the store, whose mutations are dropped.
//!
//! A fuzzer cannot guess a 16-byte session secret or a handle's MAC, so `flags` may ask
//! the harness to put a live session's id, secret and epoch into the request's context
//! (bit 0; bit 1 picks which session) and a handle the master minted earlier in this run
//! into its handle field (bit 2; the high nibble picks which); bit 3 moves the clock 1 s on
//! first. Tag [`TICK`] moves the clock by the body's first byte × 100 ms and runs the
//! master's timers. The master is the same each run: a fresh cell `c0` of deployment
//! `local`, recovered from an empty store with seed 7, with one ordinary and one proxy
//! session.

use crate::{Frame, Frames};
use prost::Message;
use std::time::Duration;
use tokio::time::Instant;
use warren_cell::core::{CoreConfig, Ctx, Master, Reply};
use warren_cell::edge;
use warren_cell::store::Snapshot;
use warren_proto::pb;
use warren_proto::request::WithContext;
use warren_proto::WarrenError;

/// The RPCs, by tag (`tag % RPCS.len()`), in `warren.proto`'s order.
pub const RPCS: [&str; 19] = [
    "Locate",
    "CreateSession",
    "KeepAlive",
    "CloseSession",
    "ClaimSession",
    "Open",
    "Close",
    "GetContentsAndStat",
    "GetStat",
    "ReadDir",
    "SetContents",
    "SetAcl",
    "Delete",
    "Acquire",
    "TryAcquire",
    "Release",
    "GetSequencer",
    "SetSequencer",
    "CheckSequencer",
];

/// The tag that moves the clock instead of calling an RPC.
pub const TICK: u8 = 0xff;

/// The tag of an RPC by name (for the seeds).
pub fn tag(rpc: &str) -> u8 {
    RPCS.iter().position(|r| *r == rpc).expect("an RPC in RPCS") as u8
}

/// The flag bits (see the module documentation).
pub const LIVE_SESSION: u8 = 1;
pub const SECOND_SESSION: u8 = 2;
pub const LIVE_HANDLE: u8 = 4;
pub const LATER: u8 = 8;

/// Runs one input: a fresh master, then each frame as a call.
pub fn run(data: &[u8]) {
    outcomes(data);
}

/// [`run`], returning each call's RPC and outcome (clock ticks are not calls).
pub fn outcomes(data: &[u8]) -> Vec<(&'static str, Result<(), WarrenError>)> {
    let mut h = Harness::new();
    Frames::new(data).filter_map(|f| h.call(f)).collect()
}

/// A master and what its earlier answers gave the fuzzed caller.
struct Harness {
    m: Master,
    now: Instant,
    /// Contexts of live sessions: the ordinary one, the proxy's, then any created.
    sessions: Vec<pb::SessionContext>,
    /// Handles the master minted (Open's answers), newest last.
    handles: Vec<Vec<u8>>,
}

/// At most this many sessions and handles are kept for substitution.
const KEEP: usize = 16;

fn context(s: &warren_cell::core::SessionCreated) -> pb::SessionContext {
    pb::SessionContext {
        session_id: s.id.to_vec(),
        secret: s.secret.to_vec(),
        epoch: s.epoch,
        ..Default::default()
    }
}

impl Harness {
    fn new() -> Self {
        let now = Instant::now();
        let mut m = Master::recover(CoreConfig::new("c0", "local"), Snapshot::default(), now, 7)
            .expect("a fresh master recovers from an empty store");
        let alice = m.create_session("alice", now).expect("a first session");
        let proxy = m
            .create_proxy_session("proxy", now)
            .expect("a proxy session");
        m.take_output();
        Harness {
            m,
            now,
            sessions: vec![context(&alice), context(&proxy)],
            handles: Vec::new(),
        }
    }

    fn call(&mut self, f: Frame<'_>) -> Option<(&'static str, Result<(), WarrenError>)> {
        if f.flags & LATER != 0 {
            self.advance(Duration::from_secs(1));
        }
        if f.tag == TICK {
            let steps = f.body.first().copied().unwrap_or(1);
            self.advance(Duration::from_millis(100) * u32::from(steps));
            return None;
        }
        let rpc = RPCS[usize::from(f.tag) % RPCS.len()];
        // Each arm: decode (an undecodable message is INVALID_ARGUMENT at the codec),
        // fill in what the flags ask for, and answer as the service does.
        let outcome = match rpc {
            "Locate" => decode::<pb::LocateRequest>(f.body).map(|_| ()),
            "CreateSession" => decode::<pb::CreateSessionRequest>(f.body).and_then(|r| {
                let c = self
                    .m
                    .create_session_as(None, &r.principal, r.proxy, self.now)?;
                self.keep_session(context(&c));
                Ok(())
            }),
            "KeepAlive" => self.with_ctx(f, |m, r: &pb::KeepAliveRequest, ctx, now| {
                let hold_back = Duration::from_millis(r.ctx.as_ref().map_or(0, |c| c.hold_back_ms));
                m.keepalive_holding_back(ctx, r.ack_seq, hold_back, r.jeopardy, now)
                    .map(drop)
            }),
            "CloseSession" => self.with_ctx(f, |m, r: &pb::CloseSessionRequest, ctx, now| {
                m.close_session(ctx, r.expired, now)
            }),
            "ClaimSession" => decode::<pb::ClaimSessionRequest>(f.body).and_then(|mut r| {
                self.fill_ctx(&mut r.ctx, f.flags);
                let client = edge::bytes16(&r.client_session, "client_session")?;
                let secret = edge::bytes16(&r.client_secret, "client_secret")?;
                let only_from = if r.only_from.is_empty() {
                    None
                } else {
                    Some(edge::bytes16(&r.only_from, "only_from")?)
                };
                let ctx = edge::ctx(r.ctx())?;
                self.m
                    .claim_session(
                        &ctx,
                        client,
                        secret,
                        &r.client_principal,
                        only_from,
                        self.now,
                    )
                    .map(drop)
            }),
            "Open" => decode::<pb::OpenRequest>(f.body).and_then(|mut r| {
                self.fill_ctx(&mut r.ctx, f.flags);
                let args = edge::open_args(&r)?;
                let ctx = edge::ctx(r.ctx())?;
                if let Reply::Done(ok) = self.m.open(&ctx, &args, self.now)? {
                    if self.handles.len() < KEEP {
                        self.handles.push(ok.handle);
                    }
                }
                Ok(())
            }),
            // Close never fails at the cell: a malformed context is nothing to close.
            "Close" => self.on_handle(f, |m: &mut Master, r: &pb::CloseRequest, ctx, now| {
                m.close(ctx, &r.handle, now)
            }),
            "GetContentsAndStat" => {
                self.on_handle(f, |m, r: &pb::GetContentsAndStatRequest, ctx, now| {
                    m.get_contents(ctx, &r.handle, now).map(drop)
                })
            }
            "GetStat" => self.on_handle(f, |m, r: &pb::GetStatRequest, ctx, now| {
                m.get_stat(ctx, &r.handle, now).map(drop)
            }),
            "ReadDir" => self.on_handle(f, |m, r: &pb::ReadDirRequest, ctx, now| {
                m.read_dir(ctx, &r.handle, now).map(drop)
            }),
            "SetContents" => self.on_handle(f, |m, r: &pb::SetContentsRequest, ctx, now| {
                m.set_contents(ctx, &r.handle, &r.contents, r.if_content_generation, now)
                    .map(drop)
            }),
            "SetAcl" => self.on_handle(f, |m, r: &pb::SetAclRequest, ctx, now| {
                let acl = edge::acl_in(
                    r.acl
                        .as_ref()
                        .ok_or_else(|| WarrenError::invalid_argument("SetAcl needs acl"))?,
                );
                m.set_acl(ctx, &r.handle, &acl, now).map(drop)
            }),
            "Delete" => self.on_handle(f, |m, r: &pb::DeleteRequest, ctx, now| {
                m.delete(ctx, &r.handle, now).map(drop)
            }),
            "Acquire" => self.on_handle(f, |m, r: &pb::AcquireRequest, ctx, now| {
                let mode = edge::lock_mode(r.mode)?;
                let timeout = (r.timeout_ms > 0).then(|| Duration::from_millis(r.timeout_ms));
                m.acquire(ctx, &r.handle, mode, timeout, now).map(drop)
            }),
            "TryAcquire" => self.on_handle(f, |m, r: &pb::TryAcquireRequest, ctx, now| {
                let mode = edge::lock_mode(r.mode)?;
                m.try_acquire(ctx, &r.handle, mode, now).map(drop)
            }),
            "Release" => self.on_handle(f, |m, r: &pb::ReleaseRequest, ctx, now| {
                m.release(ctx, &r.handle, now).map(drop)
            }),
            "GetSequencer" => self.on_handle(f, |m, r: &pb::GetSequencerRequest, ctx, now| {
                m.get_sequencer(ctx, &r.handle, now).map(drop)
            }),
            "SetSequencer" => self.on_handle(f, |m, r: &pb::SetSequencerRequest, ctx, now| {
                let seq = edge::sequencer_in(r.sequencer.as_ref())?;
                m.set_sequencer(ctx, &r.handle, seq, now)
            }),
            "CheckSequencer" => self.with_ctx(f, |m, r: &pb::CheckSequencerRequest, ctx, now| {
                let seq = edge::sequencer_in(r.sequencer.as_ref())?;
                m.check_sequencer(ctx, &seq, now).map(drop)
            }),
            _ => unreachable!("every RPC in RPCS has an arm"),
        };
        // The mutations would go to the store; the wakes to parked calls.
        self.m.take_output();
        Some((rpc, outcome))
    }

    /// A call that needs only the session context: decoded, filled in, checked at the
    /// edge, then `op` on the master.
    fn with_ctx<R: Message + Default + WithContext>(
        &mut self,
        f: Frame<'_>,
        op: impl FnOnce(&mut Master, &R, &Ctx, Instant) -> Result<(), WarrenError>,
    ) -> Result<(), WarrenError> {
        let mut r = decode::<R>(f.body)?;
        self.fill_ctx(r.ctx_mut(), f.flags);
        let ctx = edge::ctx(r.ctx())?;
        op(&mut self.m, &r, &ctx, self.now)
    }

    /// [`Harness::with_ctx`] for a call on a handle: the handle may be substituted too.
    fn on_handle<R: Message + Default + WithContext + HandleField>(
        &mut self,
        f: Frame<'_>,
        op: impl FnOnce(&mut Master, &R, &Ctx, Instant) -> Result<(), WarrenError>,
    ) -> Result<(), WarrenError> {
        let mut r = decode::<R>(f.body)?;
        self.fill_ctx(r.ctx_mut(), f.flags);
        if f.flags & LIVE_HANDLE != 0 && !self.handles.is_empty() {
            let pick = usize::from(f.flags >> 4) % self.handles.len();
            *r.handle_mut() = self.handles[pick].clone();
        }
        let ctx = edge::ctx(r.ctx())?;
        op(&mut self.m, &r, &ctx, self.now)
    }

    /// Puts a live session's id, secret and epoch into `ctx` if the flags ask for it; the
    /// rest of the context (client session, map epoch…) stays as decoded.
    fn fill_ctx(&self, ctx: &mut Option<pb::SessionContext>, flags: u8) {
        if flags & LIVE_SESSION == 0 {
            return;
        }
        let pick = usize::from(flags & SECOND_SESSION != 0) + usize::from(flags >> 4);
        let live = &self.sessions[pick % self.sessions.len()];
        let c = ctx.get_or_insert_with(Default::default);
        c.session_id.clone_from(&live.session_id);
        c.secret.clone_from(&live.secret);
        c.epoch = live.epoch;
    }

    fn keep_session(&mut self, c: pb::SessionContext) {
        if self.sessions.len() < KEEP {
            self.sessions.push(c);
        }
    }

    fn advance(&mut self, by: Duration) {
        self.now += by;
        self.m.tick(self.now);
    }
}

/// A request message, decoded as the codec does; undecodable bytes are `INVALID_ARGUMENT`.
fn decode<R: Message + Default>(body: &[u8]) -> Result<R, WarrenError> {
    R::decode(body).map_err(|e| WarrenError::invalid_argument(format!("undecodable: {e}")))
}

/// The writable handle field of a request (for substitution; the server only reads it).
pub trait HandleField {
    fn handle_mut(&mut self) -> &mut Vec<u8>;
}

macro_rules! handle_field {
    ($($t:ident),* $(,)?) => {$(
        impl HandleField for pb::$t {
            fn handle_mut(&mut self) -> &mut Vec<u8> {
                &mut self.handle
            }
        }
    )*};
}

handle_field!(
    CloseRequest,
    GetContentsAndStatRequest,
    GetStatRequest,
    ReadDirRequest,
    SetContentsRequest,
    SetAclRequest,
    DeleteRequest,
    AcquireRequest,
    TryAcquireRequest,
    ReleaseRequest,
    GetSequencerRequest,
    SetSequencerRequest,
);

#[cfg(test)]
mod tests {
    use super::*;

    /// The seeds reach the master's methods, not just the edge: with a live session and
    /// handle substituted, every call of a client's ordinary script succeeds.
    #[test]
    fn a_seed_script_succeeds_call_by_call() {
        for (target, name, bytes) in crate::seeds::all() {
            if target != "cell_requests" || name == "sessions" {
                continue;
            }
            for (rpc, outcome) in outcomes(&bytes) {
                if let Err(e) = outcome {
                    // The second session's TryAcquire of a lock the first holds.
                    assert!(
                        name == "locks" && rpc == "TryAcquire",
                        "{name}: {rpc} failed: {e}"
                    );
                }
            }
        }
    }

    /// Without substitution the same calls are refused at the edge or by the session
    /// check: the harness does not let a forged context through.
    #[test]
    fn a_forged_context_is_refused() {
        let bytes = crate::Frames::encode(&[(
            tag("GetStat"),
            0,
            &pb::GetStatRequest {
                ctx: Some(pb::SessionContext {
                    session_id: vec![1; 16],
                    secret: vec![2; 16],
                    epoch: 1,
                    ..Default::default()
                }),
                handle: vec![1, 2, 3],
            }
            .encode_to_vec(),
        )]);
        let got = outcomes(&bytes);
        assert_eq!(got.len(), 1);
        assert!(got[0].1.is_err(), "{:?}", got[0]);
    }
}
