//! The client side of proxy failover (docs/proxy.md, "Proxy failover (the client side)")
//! against fake proxies: small in-process servers that answer `Locate` as a proxy does
//! (`is_master`, their own address, role `proxy`), mint sessions, hold KeepAlives, and
//! *claim* a session they do not know when its KeepAlive arrives — answering with the
//! client's epoch + 1 and a `MASTER_FAILOVER` numbered 1. Each sits behind a
//! [`Bridge`], which kills it (refuses and drops connections) or brings it back.
//!
//! What is checked: the session orders the proxies with [`proxy_order`]; when its proxy
//! dies it goes to the earliest live proxy in that order, adopts the new epoch, gets the
//! fail-over event and recreates its handles there, and its calls go there too; and every
//! search starts again from the first proxy in its order.

use std::collections::HashMap;
use std::hash::{BuildHasher, Hasher};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::net::TcpListener;
use tonic::{Request, Response, Status};
use warren_client::{proxy_order, ClientOptions, Event, OpenOptions, Session, SessionState};
use warren_proto::pb;
use warren_proto::pb::warren_server::{Warren, WarrenServer};
use warren_testkit::{wait_until, Bridge};

const LEASE_MS: u64 = 2_000;
/// How long a fake proxy holds a KeepAlive with nothing to deliver.
const HOLD: Duration = Duration::from_millis(800);

/// One client session as a fake proxy knows it.
struct Sess {
    epoch: u64,
    /// Events not yet acknowledged, oldest first.
    events: Vec<pb::Event>,
}

#[derive(Default)]
struct State {
    /// The address clients use (the bridge's).
    addr: String,
    sessions: HashMap<Vec<u8>, Sess>,
    /// Sessions claimed here (KeepAlive for a session this proxy did not know).
    claimed: Vec<Vec<u8>>,
    /// `GetStat` calls, by session.
    get_stats: HashMap<Vec<u8>, usize>,
}

struct Fake {
    state: Arc<Mutex<State>>,
}

fn lock(state: &Mutex<State>) -> std::sync::MutexGuard<'_, State> {
    state.lock().expect("fake proxy state")
}

fn session_of(ctx: Option<&pb::SessionContext>) -> Result<(Vec<u8>, u64), Status> {
    let ctx = ctx.ok_or_else(|| Status::invalid_argument("no ctx"))?;
    Ok((ctx.session_id.clone(), ctx.epoch))
}

fn stat() -> pb::Stat {
    pb::Stat {
        kind: pb::NodeKind::File as i32,
        instance: 1,
        ..Default::default()
    }
}

fn random_id() -> Vec<u8> {
    let mut id = Vec::with_capacity(16);
    for i in 0..2u8 {
        let mut h = std::collections::hash_map::RandomState::new().build_hasher();
        h.write_u8(i);
        id.extend_from_slice(&h.finish().to_le_bytes());
    }
    id
}

#[tonic::async_trait]
impl Warren for Fake {
    async fn locate(
        &self,
        _: Request<pb::LocateRequest>,
    ) -> Result<Response<pb::LocateResponse>, Status> {
        let addr = lock(&self.state).addr.clone();
        Ok(Response::new(pb::LocateResponse {
            cell: "proxy".into(),
            master: addr,
            epoch: 1,
            deployment: "test".into(),
            is_master: true,
            serving: true,
            role: "proxy".into(),
            store_health: "ok".into(),
            ..Default::default()
        }))
    }

    async fn create_session(
        &self,
        _: Request<pb::CreateSessionRequest>,
    ) -> Result<Response<pb::CreateSessionResponse>, Status> {
        let id = random_id();
        let epoch = 1;
        lock(&self.state).sessions.insert(
            id.clone(),
            Sess {
                epoch,
                events: Vec::new(),
            },
        );
        Ok(Response::new(pb::CreateSessionResponse {
            session_id: id,
            secret: vec![7; 16],
            lease_ms: LEASE_MS,
            epoch,
            deployment: "test".into(),
        }))
    }

    async fn keep_alive(
        &self,
        req: Request<pb::KeepAliveRequest>,
    ) -> Result<Response<pb::KeepAliveResponse>, Status> {
        let req = req.into_inner();
        let (id, epoch) = session_of(req.ctx.as_ref())?;
        let (events, epoch) = {
            let mut state = lock(&self.state);
            let state = &mut *state;
            let sess = state.sessions.entry(id.clone()).or_insert_with(|| {
                // Not ours: claim it (at the cells, in a real proxy) and tell the client.
                state.claimed.push(id.clone());
                Sess {
                    epoch: epoch + 1,
                    events: vec![pb::Event {
                        seq: 1,
                        r#type: pb::EventType::MasterFailover as i32,
                        ..Default::default()
                    }],
                }
            });
            if epoch == sess.epoch {
                sess.events.retain(|e| e.seq > req.ack_seq);
            }
            (sess.events.clone(), sess.epoch)
        };
        if events.is_empty() {
            tokio::time::sleep(HOLD).await;
        }
        Ok(Response::new(pb::KeepAliveResponse {
            lease_ms: LEASE_MS,
            events,
            epoch,
        }))
    }

    async fn close_session(
        &self,
        req: Request<pb::CloseSessionRequest>,
    ) -> Result<Response<pb::CloseSessionResponse>, Status> {
        let (id, _) = session_of(req.get_ref().ctx.as_ref())?;
        lock(&self.state).sessions.remove(&id);
        Ok(Response::new(pb::CloseSessionResponse {}))
    }

    async fn open(
        &self,
        req: Request<pb::OpenRequest>,
    ) -> Result<Response<pb::OpenResponse>, Status> {
        Ok(Response::new(pb::OpenResponse {
            handle: req.into_inner().path.into_bytes(),
            stat: Some(stat()),
            ..Default::default()
        }))
    }

    async fn close(
        &self,
        _: Request<pb::CloseRequest>,
    ) -> Result<Response<pb::CloseResponse>, Status> {
        Ok(Response::new(pb::CloseResponse {}))
    }

    async fn get_stat(
        &self,
        req: Request<pb::GetStatRequest>,
    ) -> Result<Response<pb::GetStatResponse>, Status> {
        let (id, _) = session_of(req.get_ref().ctx.as_ref())?;
        *lock(&self.state).get_stats.entry(id).or_default() += 1;
        Ok(Response::new(pb::GetStatResponse {
            stat: Some(stat()),
            cacheable: false,
        }))
    }

    async fn get_contents_and_stat(
        &self,
        _: Request<pb::GetContentsAndStatRequest>,
    ) -> Result<Response<pb::GetContentsAndStatResponse>, Status> {
        Err(Status::unimplemented("get_contents_and_stat"))
    }

    async fn read_dir(
        &self,
        _: Request<pb::ReadDirRequest>,
    ) -> Result<Response<pb::ReadDirResponse>, Status> {
        Err(Status::unimplemented("read_dir"))
    }

    async fn set_contents(
        &self,
        _: Request<pb::SetContentsRequest>,
    ) -> Result<Response<pb::SetContentsResponse>, Status> {
        Err(Status::unimplemented("set_contents"))
    }

    async fn set_acl(
        &self,
        _: Request<pb::SetAclRequest>,
    ) -> Result<Response<pb::SetAclResponse>, Status> {
        Err(Status::unimplemented("set_acl"))
    }

    async fn delete(
        &self,
        _: Request<pb::DeleteRequest>,
    ) -> Result<Response<pb::DeleteResponse>, Status> {
        Err(Status::unimplemented("delete"))
    }

    async fn acquire(
        &self,
        _: Request<pb::AcquireRequest>,
    ) -> Result<Response<pb::AcquireResponse>, Status> {
        Err(Status::unimplemented("acquire"))
    }

    async fn try_acquire(
        &self,
        _: Request<pb::TryAcquireRequest>,
    ) -> Result<Response<pb::AcquireResponse>, Status> {
        Err(Status::unimplemented("try_acquire"))
    }

    async fn release(
        &self,
        _: Request<pb::ReleaseRequest>,
    ) -> Result<Response<pb::ReleaseResponse>, Status> {
        Err(Status::unimplemented("release"))
    }

    async fn get_sequencer(
        &self,
        _: Request<pb::GetSequencerRequest>,
    ) -> Result<Response<pb::GetSequencerResponse>, Status> {
        Err(Status::unimplemented("get_sequencer"))
    }

    async fn set_sequencer(
        &self,
        _: Request<pb::SetSequencerRequest>,
    ) -> Result<Response<pb::SetSequencerResponse>, Status> {
        Err(Status::unimplemented("set_sequencer"))
    }

    async fn check_sequencer(
        &self,
        _: Request<pb::CheckSequencerRequest>,
    ) -> Result<Response<pb::CheckSequencerResponse>, Status> {
        Err(Status::unimplemented("check_sequencer"))
    }

    async fn claim_session(
        &self,
        _: Request<pb::ClaimSessionRequest>,
    ) -> Result<Response<pb::ClaimSessionResponse>, Status> {
        Err(Status::unimplemented("claim_session"))
    }
}

/// A fake proxy behind a bridge.
struct FakeProxy {
    state: Arc<Mutex<State>>,
    bridge: Bridge,
    _server: tokio::task::JoinHandle<()>,
}

impl FakeProxy {
    async fn start() -> FakeProxy {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let target: SocketAddr = listener.local_addr().expect("addr");
        let bridge = Bridge::start(target).await;
        let state = Arc::new(Mutex::new(State {
            addr: bridge.addr().to_string(),
            ..Default::default()
        }));
        let incoming = futures::stream::unfold(listener, |l| async move {
            Some((l.accept().await.map(|(s, _)| s), l))
        });
        let service = WarrenServer::new(Fake {
            state: state.clone(),
        });
        let server = tokio::spawn(async move {
            let _ = tonic::transport::Server::builder()
                .add_service(service)
                .serve_with_incoming(incoming)
                .await;
        });
        FakeProxy {
            state,
            bridge,
            _server: server,
        }
    }

    fn addr(&self) -> String {
        self.bridge.addr().to_string()
    }

    /// The proxy dies: its connections break and new ones are refused.
    fn kill(&self) {
        self.bridge.refuse(true);
        self.bridge.drop_connections();
    }

    fn revive(&self) {
        self.bridge.refuse(false);
    }

    fn claimed(&self, session: &Session) -> bool {
        lock(&self.state)
            .claimed
            .iter()
            .any(|id| id == session.id().as_bytes())
    }

    fn get_stats(&self, session: &Session) -> usize {
        lock(&self.state)
            .get_stats
            .get(session.id().as_bytes())
            .copied()
            .unwrap_or(0)
    }
}

async fn proxies(n: usize) -> (Vec<FakeProxy>, Vec<String>) {
    let mut fakes = Vec::new();
    for _ in 0..n {
        fakes.push(FakeProxy::start().await);
    }
    let list = fakes.iter().map(FakeProxy::addr).collect();
    (fakes, list)
}

fn by_addr<'a>(fakes: &'a [FakeProxy], addr: &str) -> &'a FakeProxy {
    fakes
        .iter()
        .find(|f| f.addr() == addr)
        .unwrap_or_else(|| panic!("{addr} is not one of the proxies"))
}

async fn connect(list: &[String]) -> Session {
    Session::connect_with(
        ClientOptions::proxies(list.to_vec())
            .rpc_timeout(Duration::from_secs(2))
            .grace_period(Duration::from_secs(10)),
    )
    .await
    .expect("connect through the proxies")
}

#[tokio::test]
async fn a_session_moves_to_the_next_proxy_in_its_order_which_claims_it() {
    let (fakes, list) = proxies(3).await;
    let session = connect(&list).await;
    let order = session.search_order().to_vec();
    assert_eq!(order, proxy_order(&list, session.id().as_bytes()));
    let home = session.master();
    assert!(list.contains(&home), "{home} not in {list:?}");
    let mut events = session.events();
    let (handle, _) = session
        .open("/a", OpenOptions::new().read())
        .await
        .expect("open");
    let epoch = session.epoch();

    by_addr(&fakes, &home).kill();
    let next = order
        .iter()
        .find(|p| **p != home)
        .expect("another proxy")
        .clone();
    let failover = tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            match events.recv().await {
                Some(Event::MasterFailover) => return,
                Some(Event::Expired) | None => panic!("session ended"),
                Some(_) => {}
            }
        }
    });
    failover.await.expect("a MasterFailover event");
    assert_eq!(session.master(), next, "the first live proxy in {order:?}");
    assert_eq!(session.epoch(), epoch + 1);
    assert_eq!(session.state(), SessionState::Safe);
    let next = by_addr(&fakes, &next);
    assert!(next.claimed(&session));
    // The handle is recreated at the new proxy, and calls go there.
    wait_until(
        Duration::from_secs(5),
        "the handle is recreated",
        || async { next.get_stats(&session) >= 1 },
    )
    .await;
    let before = next.get_stats(&session);
    handle.stat().await.expect("stat through the new proxy");
    assert_eq!(next.get_stats(&session), before + 1);
}

#[tokio::test]
async fn every_search_starts_from_the_sessions_preferred_proxy() {
    let (fakes, list) = proxies(3).await;
    let session = connect(&list).await;
    let order = session.search_order().to_vec();
    let (first, second, last) = (
        by_addr(&fakes, &order[0]),
        by_addr(&fakes, &order[1]),
        by_addr(&fakes, &order[2]),
    );
    // Only the last in the order is alive: the session ends up there, wherever it was.
    first.kill();
    second.kill();
    last.bridge.drop_connections();
    wait_until(
        Duration::from_secs(10),
        "the session is at the last proxy",
        || async { session.master() == order[2] && session.state() == SessionState::Safe },
    )
    .await;
    // The others come back, the last dies: the session goes back to its first proxy,
    // not round-robin to the next one along.
    first.revive();
    second.revive();
    last.kill();
    wait_until(
        Duration::from_secs(10),
        "the session is back at its first proxy",
        || async { session.master() == order[0] && session.state() == SessionState::Safe },
    )
    .await;
    assert!(session.is_live());
}

/// A proxy that goes silent (a partition, not a crash): the local lease runs out, the
/// session goes into jeopardy, finds the next live proxy in its order, and comes back safe
/// there with the fail-over event.
#[tokio::test]
async fn a_silent_proxy_puts_the_session_in_jeopardy_until_the_next_one_answers() {
    let (fakes, list) = proxies(3).await;
    let session = connect(&list).await;
    let order = session.search_order().to_vec();
    let home = session.master();
    let next = order
        .iter()
        .find(|p| **p != home)
        .expect("another proxy")
        .clone();
    let mut events = session.events();
    let epoch = session.epoch();
    by_addr(&fakes, &home).bridge.blackhole();
    let mut seen = Vec::new();
    tokio::time::timeout(Duration::from_secs(15), async {
        while let Some(event) = events.recv().await {
            let done = event == Event::MasterFailover;
            seen.push(event);
            if done {
                return;
            }
        }
    })
    .await
    .unwrap_or_else(|_| panic!("no fail-over; events: {seen:?}"));
    assert_eq!(
        seen,
        [Event::Jeopardy, Event::Safe, Event::MasterFailover],
        "events"
    );
    assert_eq!(session.master(), next);
    assert_eq!(session.epoch(), epoch + 1);
    assert!(by_addr(&fakes, &next).claimed(&session));
}
