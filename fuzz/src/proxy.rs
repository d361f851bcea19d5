//! Target `proxy_requests`: whole `warren.v1.Warren` request messages at a proxy. Each
//! frame is one call (tag: the RPC, as in [`crate::cell::RPCS`]; body: its request message,
//! decoded as the codec does), taken the way the proxy's service takes it before it
//! forwards anything: the client's session context read by [`warren_proxy::parse_ctx`]
//! (client-session fields refused, `holds_nothing` read), the principal rule
//! ([`warren_proxy::permission`]), the session checked in the sans-IO client-session table
//! ([`warren_proxy::core::ProxyCore`]: id, secret, epoch, lease), then by kind: KeepAlive
//! and CloseSession on the table, handle bytes decoded ([`warren_proxy::decode_handle`])
//! and looked up (moved handles, the cells a client uses), paths of Open and
//! CheckSequencer routed by the static map ([`warren_proxy::routing::route_static`]) and
//! checked against the cache.
//!
//! Flags as in [`crate::cell`]: bit 0 puts a live client session's id, secret and epoch
//! into the context (bit 1 and the high nibble pick which), bit 2 a handle token of a live
//! session's cell into the handle field, bit 3 moves the clock 1 s on first.

use crate::cell::{LATER, LIVE_HANDLE, LIVE_SESSION, RPCS, SECOND_SESSION, TICK};
use crate::{Frame, Frames};
use prost::Message;
use std::collections::BTreeSet;
use std::time::Duration;
use tokio::time::Instant;
use warren_cell::core::token::TokenKey;
use warren_proto::pb;
use warren_proto::request::{WithContext, WithHandle};
use warren_proto::WarrenError;
use warren_proxy::core::{CoreConfig, Known, ProxyCore};
use warren_router::PartitionMap;

/// Runs one input: a fresh client-session table, then each frame as a call.
pub fn run(data: &[u8]) {
    outcomes(data);
}

/// [`run`], returning each frame's outcome (a clock tick is `Ok`).
pub fn outcomes(data: &[u8]) -> Vec<Result<(), WarrenError>> {
    let mut h = Harness::new();
    Frames::new(data).map(|f| h.call(f)).collect()
}

struct Harness {
    core: ProxyCore,
    now: Instant,
    /// The static map of a proxy fronting cells `c0` and `c1` (`--cell` flags).
    map: PartitionMap,
    /// Live client sessions: id, secret, epoch.
    sessions: Vec<([u8; 16], [u8; 16], u64)>,
    /// Handle tokens minted as cells `c0` and `c1` would.
    handles: Vec<Vec<u8>>,
}

/// At most this many sessions are kept for substitution.
const KEEP: usize = 16;

impl Harness {
    fn new() -> Self {
        let now = Instant::now();
        let mut core = ProxyCore::new(
            CoreConfig {
                client_lease: Duration::from_secs(12),
                reply_before_end: Duration::from_secs(1),
                margin: Duration::from_secs(1),
                max_starve: Duration::from_secs(45),
                cells: 2,
                cover_reach: None,
            },
            now,
        );
        // Sessions with known ids (a fresh table draws random ones): as if adopted from a
        // proxy that died, each using one cell.
        let mut sessions = Vec::new();
        for (n, principal) in [(1u8, "alice"), (3, "bob")] {
            let (id, secret) = ([n; 16], [n + 1; 16]);
            let cell = usize::from(n / 2);
            let epoch = core.adopt(id, secret, principal.into(), 1, BTreeSet::from([cell]), now);
            core.registered(&id, cell);
            sessions.push((id, secret, epoch));
        }
        core.take_output();
        let map = PartitionMap::even(
            "local",
            &[
                ("c0", vec!["127.0.0.1:7001"]),
                ("c1", vec!["127.0.0.1:7002"]),
            ],
            64,
        )
        .expect("a valid static map");
        let handles = [
            ("c0", [1u8; 16], "/ls/local/a"),
            ("c1", [3; 16], "/ls/local/d/b"),
        ]
        .iter()
        .enumerate()
        .map(|(i, (cell, session, path))| {
            TokenKey::new([i as u8; 32]).mint(&pb::HandleBody {
                cell: (*cell).into(),
                epoch: 2,
                number: i as u64 + 1,
                path: (*path).into(),
                instance: 5,
                intent: 3,
                events: 1,
                lock_delay_ms: 0,
                session_id: session.to_vec(),
            })
        })
        .collect();
        Harness {
            core,
            now,
            map,
            sessions,
            handles,
        }
    }

    fn call(&mut self, f: Frame<'_>) -> Result<(), WarrenError> {
        if f.flags & LATER != 0 {
            self.advance(Duration::from_secs(1));
        }
        if f.tag == TICK {
            let steps = f.body.first().copied().unwrap_or(1);
            self.advance(Duration::from_millis(100) * u32::from(steps));
            return Ok(());
        }
        let result = match RPCS[usize::from(f.tag) % RPCS.len()] {
            "Locate" => decode::<pb::LocateRequest>(f.body).map(drop),
            "CreateSession" => {
                let r = decode::<pb::CreateSessionRequest>(f.body)?;
                if r.proxy {
                    return Err(WarrenError::invalid_argument(
                        "proxy sessions are made at cells",
                    ));
                }
                let principal = warren_proxy::permission::session_principal(None, &r.principal)?;
                if principal.len() > 255 {
                    return Err(WarrenError::invalid_argument("principal name too long"));
                }
                let (id, secret, _, epoch) = self.core.create_session(&principal, self.now);
                if self.sessions.len() < KEEP {
                    self.sessions.push((id, secret, epoch));
                }
                Ok(())
            }
            "KeepAlive" => {
                let r = self.session_call::<pb::KeepAliveRequest>(f)?;
                let id = self.checked(r.ctx())?;
                self.core
                    .keepalive_with(&id, r.ack_seq, r.jeopardy, self.now)
                    .map(drop)
            }
            "CloseSession" => {
                let r = self.session_call::<pb::CloseSessionRequest>(f)?;
                let id = self.checked(r.ctx())?;
                self.core.close_session(&id, self.now);
                Ok(())
            }
            "ClaimSession" => {
                // Proxies are claimed at cells, not at proxies; the message still decodes.
                self.session_call::<pb::ClaimSessionRequest>(f).map(drop)
            }
            "Open" => {
                let r = self.session_call::<pb::OpenRequest>(f)?;
                let id = self.checked(r.ctx())?;
                let dest = warren_proxy::routing::route_static(&self.map, &r.path)?;
                let cell = self.map.cells().keys().position(|c| dest.is(c, None));
                if let Some(cell) = cell {
                    self.core.registered(&id, cell);
                    let _ = self.core.cache_covered(&r.path, cell, self.now);
                }
                Ok(())
            }
            "CheckSequencer" => {
                let r = self.session_call::<pb::CheckSequencerRequest>(f)?;
                self.checked(r.ctx())?;
                let path = r.sequencer.as_ref().map_or("", |s| s.path.as_str());
                warren_proxy::routing::route_static(&self.map, path).map(drop)
            }
            "Close" => self.handle_call::<pb::CloseRequest>(f),
            "GetContentsAndStat" => self.handle_call::<pb::GetContentsAndStatRequest>(f),
            "GetStat" => self.handle_call::<pb::GetStatRequest>(f),
            "ReadDir" => self.handle_call::<pb::ReadDirRequest>(f),
            "SetContents" => self.handle_call::<pb::SetContentsRequest>(f),
            "SetAcl" => self.handle_call::<pb::SetAclRequest>(f),
            "Delete" => self.handle_call::<pb::DeleteRequest>(f),
            "Acquire" => self.handle_call::<pb::AcquireRequest>(f),
            "TryAcquire" => self.handle_call::<pb::TryAcquireRequest>(f),
            "Release" => self.handle_call::<pb::ReleaseRequest>(f),
            "GetSequencer" => self.handle_call::<pb::GetSequencerRequest>(f),
            "SetSequencer" => self.handle_call::<pb::SetSequencerRequest>(f),
            _ => unreachable!("every RPC in RPCS has an arm"),
        };
        self.core.take_output();
        result
    }

    /// Decodes a request and fills in its context as the flags ask.
    fn session_call<R: Message + Default + WithContext>(
        &self,
        f: Frame<'_>,
    ) -> Result<R, WarrenError> {
        let mut r = decode::<R>(f.body)?;
        if f.flags & LIVE_SESSION != 0 {
            let pick = usize::from(f.flags & SECOND_SESSION != 0) + usize::from(f.flags >> 4);
            let (id, secret, epoch) = self.sessions[pick % self.sessions.len()];
            let c = r.ctx_mut().get_or_insert_with(Default::default);
            c.session_id = id.to_vec();
            c.secret = secret.to_vec();
            c.epoch = epoch;
        }
        Ok(r)
    }

    /// The session check of every client call (`Service::checked`): the context parsed,
    /// the principal rule, the table's check; an unknown session would be adopted (I/O).
    fn checked(&mut self, ctx: Option<&pb::SessionContext>) -> Result<[u8; 16], WarrenError> {
        let (id, secret, epoch, fresh) = warren_proxy::parse_ctx(ctx)?;
        if let Some(asserted) = fresh {
            warren_proxy::permission::session_principal(None, &asserted)?;
        }
        match self.core.check(&id, &secret, epoch, self.now)? {
            Known::Yes => {}
            Known::Unknown => return Err(WarrenError::stale_epoch(epoch + 1, epoch)),
        }
        let (principal, _) = self
            .core
            .identity(&id)
            .ok_or_else(|| WarrenError::session_expired("the session has expired"))?;
        warren_proxy::permission::may_use_session(None, &id, &principal)?;
        Ok(id)
    }

    /// A call on a handle (`Service::session_and_cell`): the session checked, then the
    /// cell the handle belongs to — the one its token names, or the one it moved to — if
    /// the client uses that cell.
    fn handle_call<R: Message + Default + WithContext + WithHandle + crate::cell::HandleField>(
        &mut self,
        f: Frame<'_>,
    ) -> Result<(), WarrenError> {
        let mut r = self.session_call::<R>(f)?;
        if f.flags & LIVE_HANDLE != 0 {
            let pick = usize::from(f.flags >> 4) % self.handles.len();
            *r.handle_mut() = self.handles[pick].clone();
        }
        let id = self.checked(r.ctx())?;
        let token = r.handle();
        let body = warren_proxy::decode_handle(token);
        let made_at = body
            .as_ref()
            .and_then(|b| self.map.cells().keys().position(|c| *c == b.cell));
        let cell = self
            .core
            .moved
            .cell_of(token)
            .or(made_at)
            .filter(|&ix| self.core.is_registered(&id, ix));
        let _ = self.core.handle(&id, token);
        match cell {
            Some(_) => Ok(()),
            None => Err(WarrenError::handle_invalid("not a handle of this session")),
        }
    }

    fn advance(&mut self, by: Duration) {
        self.now += by;
        self.core.tick(self.now);
    }
}

fn decode<R: Message + Default>(body: &[u8]) -> Result<R, WarrenError> {
    R::decode(body).map_err(|e| WarrenError::invalid_argument(format!("undecodable: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The seeds get past the session check: with a live session substituted, a client's
    /// script of opens and handle calls is accepted call by call, and the same script
    /// with its own (unknown) context is not.
    #[test]
    fn a_seed_script_passes_the_session_and_handle_checks() {
        let (_, _, bytes) = crate::seeds::all()
            .into_iter()
            .find(|(t, n, _)| *t == "proxy_requests" && n == "file-lifecycle")
            .expect("the seed");
        let got = outcomes(&bytes);
        assert!(got.len() >= 5);
        for (i, r) in got.iter().enumerate() {
            assert!(r.is_ok(), "call {i}: {r:?}");
        }
        // Without substitution: the seeds' context names session [1; 16] with secret
        // [2; 16], which is alice's, so forge another secret.
        let forged = Frames::encode(&[(
            crate::cell::tag("GetStat"),
            0,
            &pb::GetStatRequest {
                ctx: Some(pb::SessionContext {
                    session_id: vec![1; 16],
                    secret: vec![9; 16],
                    epoch: 2,
                    ..Default::default()
                }),
                handle: vec![],
            }
            .encode_to_vec(),
        )]);
        let e = outcomes(&forged).remove(0).unwrap_err();
        assert_eq!(e.code, warren_proto::ErrorCode::PermissionDenied, "{e}");
    }
}
