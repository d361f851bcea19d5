//! The chaos workload (docs/reliability.md, "Chaos"): real `warren-client` sessions, some
//! through the proxies and some direct (partitioned, by the meta cell), each one task making
//! one call at a time, every call recorded with warren-history's [`Recorder`] on the run's
//! one monotonic clock. Operations: opens, reads (from the client cache when it holds the
//! file: a watched, cached read), writes of a unique value, compare-and-swaps, and an
//! exclusive lock whose holder writes twice to a sequencer-fenced resource before it
//! releases.
//!
//! Where a read was served: a client-cache hit (the session's cache hit count rose) is
//! `client_cache`; otherwise a direct session's read is `cell`, and a proxied one is
//! recorded as `proxy_cache`, since the reply does not say whether the proxy's shared cache
//! answered it (so proxied reads are judged by the cache checker only, never for
//! linearizability).

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use warren_client::{
    ClientOptions, Error, ErrorCode, Event, Handle, LockMode, OpenOptions, Sequencer, Session,
};
use warren_history::{LockMode as HLock, Nanos, Op, Outcome, ReadSource, Recorder, Ret, Value};

/// The files the workload reads and writes, in directories of their own (so their slots,
/// the directories', spread them over both data cells).
pub const FILES: usize = 8;
/// The locks (each a file in a directory of its own).
pub const LOCKS: usize = 2;

pub fn file_path(i: usize) -> String {
    format!("/chaos/d{i}/f")
}

pub fn lock_path(i: usize) -> String {
    format!("/chaos/lk{i}/l")
}

/// The run's clock and recorder, shared by every client and the fault schedule.
pub struct Log {
    start: Instant,
    rec: Mutex<Recorder>,
}

impl Log {
    pub fn new(seed: &str) -> Arc<Log> {
        Arc::new(Log {
            start: Instant::now(),
            rec: Mutex::new(Recorder::new(seed)),
        })
    }

    /// Nanoseconds since the run started.
    pub fn now(&self) -> Nanos {
        self.start.elapsed().as_nanos() as Nanos
    }

    pub fn invoke(&self, client: &str, session: &str, op: Op) -> u64 {
        let at = self.now();
        self.rec.lock().unwrap().invoke(client, session, op, at)
    }

    pub fn complete(&self, id: u64, outcome: Outcome) {
        let at = self.now();
        self.rec.lock().unwrap().complete(id, at, outcome);
    }

    pub fn with<R>(&self, f: impl FnOnce(&mut Recorder) -> R) -> R {
        f(&mut self.rec.lock().unwrap())
    }
}

/// How a failed call is recorded: its code from the error table and the table's effect.
pub fn failed(e: &Error) -> Outcome {
    Outcome::Failed {
        code: e.code().unwrap_or(ErrorCode::Internal),
        effect: e.effect(),
    }
}

/// A resource outside Warren that checks sequencers (docs/design.md, 5. "Sequencers"): it
/// accepts a write fenced by `(instance, generation)` if and only if it has accepted none
/// with a higher one, and numbers its decisions.
#[derive(Default)]
pub struct Fence {
    inner: Mutex<FenceState>,
}

/// Per lock the highest `(instance, generation)` accepted, and the decisions so far.
#[derive(Default)]
struct FenceState {
    top: BTreeMap<String, (u64, u64)>,
    decisions: u64,
}

impl Fence {
    /// Decides a write; returns `(accepted, seq)`.
    pub fn write(&self, lock: &str, instance: u64, generation: u64) -> (bool, u64) {
        let mut g = self.inner.lock().unwrap();
        g.decisions += 1;
        let seq = g.decisions;
        let top = g.top.entry(lock.to_string()).or_insert((0, 0));
        let accepted = (instance, generation) >= *top;
        if accepted {
            *top = (instance, generation);
        }
        (accepted, seq)
    }
}

/// What every client task shares.
pub struct Shared {
    pub log: Arc<Log>,
    pub fence: Fence,
    pub stop: AtomicBool,
    pub proxies: Vec<String>,
    pub meta: Vec<String>,
    /// Whether clients make plain writes (else every write is a compare-and-swap). The
    /// client library re-sends a plain write after a transport failure, so one call can
    /// take effect twice (docs/reliability.md, "Chaos", "Findings").
    pub plain_writes: bool,
}

/// Options of every session the workload opens.
pub fn options(shared: &Shared, direct: bool) -> ClientOptions {
    let o = if direct {
        ClientOptions::meta(shared.meta.clone())
    } else {
        ClientOptions::proxies(shared.proxies.clone())
    };
    o.rpc_timeout(Duration::from_secs(5))
        .grace_period(Duration::from_secs(20))
}

/// The longest a call may take before the client gives up on it (it stays incomplete).
const CALL_PATIENCE: Duration = Duration::from_secs(30);

/// A call recorded: invoked now, completed with what `f` returned (or left incomplete if
/// it took longer than [`CALL_PATIENCE`]).
async fn recorded<T, F, Fut>(
    shared: &Shared,
    client: &str,
    session: &str,
    op: Op,
    f: F,
    ok: impl FnOnce(&T) -> Ret,
) -> Option<Result<T, Error>>
where
    F: FnOnce() -> Fut,
    Fut: std::future::Future<Output = Result<T, Error>>,
{
    let id = shared.log.invoke(client, session, op);
    let r = tokio::time::timeout(CALL_PATIENCE, f()).await.ok()?;
    let outcome = match &r {
        Ok(v) => Outcome::Ok(ok(v)),
        Err(e) => failed(e),
    };
    shared.log.complete(id, outcome);
    Some(r)
}

fn text(bytes: &[u8]) -> Value {
    Value(String::from_utf8_lossy(bytes).into_owned())
}

/// One client: a session (re-created when it expires) and its loop of calls until
/// [`Shared::stop`].
pub async fn client(shared: Arc<Shared>, name: String, direct: bool, seed: u64) {
    let mut rng = StdRng::seed_from_u64(seed);
    let mut counter = 0u64;
    while !shared.stop.load(Ordering::Relaxed) {
        // A session.
        // The library renews the lease itself and shows neither CreateSession's lease nor
        // its KeepAlives, so a session's creation is recorded only when it fails; the
        // session checker sees the expiries (docs/reliability.md, "Chaos").
        let t0 = shared.log.now();
        let s = match tokio::time::timeout(
            CALL_PATIENCE,
            Session::connect_with(options(&shared, direct)),
        )
        .await
        {
            Ok(Ok(s)) => s,
            Ok(Err(e)) => {
                let t1 = shared.log.now();
                shared
                    .log
                    .with(|r| r.call(&name, "", Op::CreateSession, t0, t1, failed(&e)));
                tokio::time::sleep(Duration::from_millis(500)).await;
                continue;
            }
            Err(_) => continue,
        };
        let sid = s.id().to_string();
        let expired = Arc::new(AtomicBool::new(false));
        let watcher = {
            let mut events = s.events();
            let (shared, name, sid, expired) =
                (shared.clone(), name.clone(), sid.clone(), expired.clone());
            tokio::spawn(async move {
                while let Some(e) = events.recv().await {
                    if e == Event::Expired {
                        expired.store(true, Ordering::SeqCst);
                        let at = shared.log.now();
                        shared.log.with(|r| {
                            r.call(
                                &name,
                                &sid,
                                Op::SessionExpired,
                                at,
                                at,
                                Outcome::Ok(Ret::Done),
                            )
                        });
                        return;
                    }
                }
            })
        };
        let mut c = ClientState {
            shared: &shared,
            name: &name,
            sid: &sid,
            s: &s,
            direct,
            handles: BTreeMap::new(),
            generations: BTreeMap::new(),
        };
        while !shared.stop.load(Ordering::Relaxed) && !expired.load(Ordering::SeqCst) {
            let roll = rng.gen_range(0..100);
            let gone = if roll < 40 {
                c.read(file_path(rng.gen_range(0..FILES))).await
            } else if roll < 62 {
                counter += 1;
                let v = format!("{name}-{counter}");
                let cas = !shared.plain_writes;
                c.write(file_path(rng.gen_range(0..FILES)), v, cas).await
            } else if roll < 80 {
                counter += 1;
                let v = format!("{name}-{counter}");
                c.write(file_path(rng.gen_range(0..FILES)), v, true).await
            } else {
                c.lock(lock_path(rng.gen_range(0..LOCKS))).await
            };
            if gone {
                break;
            }
            tokio::time::sleep(Duration::from_millis(rng.gen_range(5..50))).await;
        }
        watcher.abort();
        let _ = tokio::time::timeout(Duration::from_secs(2), s.close()).await;
    }
}

struct ClientState<'a> {
    shared: &'a Shared,
    name: &'a str,
    sid: &'a str,
    s: &'a Session,
    direct: bool,
    handles: BTreeMap<String, Arc<Handle>>,
    /// The latest content generation this client saw per file (for its CASes).
    generations: BTreeMap<String, u64>,
}

impl ClientState<'_> {
    /// [`recorded`] for this client and session.
    async fn call<T, F, Fut>(
        &self,
        op: Op,
        f: F,
        ok: impl FnOnce(&T) -> Ret,
    ) -> Option<Result<T, Error>>
    where
        F: FnOnce() -> Fut,
        Fut: std::future::Future<Output = Result<T, Error>>,
    {
        recorded(self.shared, self.name, self.sid, op, f, ok).await
    }

    /// Whether the session is gone (an error said so): the client makes a new one.
    fn gone(&mut self, path: &str, e: &Error) -> bool {
        match e.code() {
            Some(ErrorCode::SessionExpired) => true,
            Some(ErrorCode::HandleInvalid) | None => {
                self.handles.remove(path);
                false
            }
            _ => false,
        }
    }

    /// The client's handle on `path` (opened, and the open recorded, if needed); `Err(gone)`.
    async fn handle(&mut self, path: &str, write: bool) -> Result<Arc<Handle>, bool> {
        if let Some(h) = self.handles.get(path) {
            return Ok(h.clone());
        }
        let mut o = OpenOptions::new().read();
        if write {
            o = o.write();
        }
        let op = Op::Open {
            path: path.to_string(),
            create: None,
        };
        let s = self.s;
        match self
            .call(op, || s.open(path, o), |_| Ret::Opened { created: false })
            .await
        {
            Some(Ok((h, _))) => {
                let h = Arc::new(h);
                self.handles.insert(path.to_string(), h.clone());
                Ok(h)
            }
            Some(Err(e)) => Err(self.gone(path, &e)),
            None => Err(false),
        }
    }

    async fn read(&mut self, path: String) -> bool {
        let h = match self.handle(&path, true).await {
            Ok(h) => h,
            Err(gone) => return gone,
        };
        let hits = self.s.cache_stats().hits;
        let id = self.shared.log.invoke(
            self.name,
            self.sid,
            Op::Read {
                path: path.clone(),
                source: ReadSource::Cell,
            },
        );
        let Ok(r) = tokio::time::timeout(CALL_PATIENCE, h.contents()).await else {
            return false;
        };
        let source = if self.s.cache_stats().hits > hits {
            ReadSource::ClientCache
        } else if self.direct {
            ReadSource::Cell
        } else {
            ReadSource::ProxyCache
        };
        let outcome = match &r {
            Ok((data, stat)) => {
                self.generations
                    .insert(path.clone(), stat.content_generation);
                Outcome::Ok(Ret::Read {
                    value: Some(text(data)),
                    generation: Some(stat.content_generation),
                })
            }
            Err(e) => failed(e),
        };
        self.shared.log.complete_read(id, source, outcome);
        match r {
            Ok(_) => false,
            Err(e) => self.gone(&path, &e),
        }
    }

    async fn write(&mut self, path: String, value: String, cas: bool) -> bool {
        let h = match self.handle(&path, true).await {
            Ok(h) => h,
            Err(gone) => return gone,
        };
        let if_generation = if cas {
            Some(self.generations.get(&path).copied().unwrap_or(0))
        } else {
            None
        };
        let op = Op::Write {
            path: path.clone(),
            value: Value(value.clone()),
            if_generation,
        };
        let hh = h.clone();
        let r = self
            .call(
                op,
                || async move {
                    match if_generation {
                        Some(g) => hh.set_contents_if(value.into_bytes(), g).await,
                        None => hh.set_contents(value.into_bytes()).await,
                    }
                },
                |st| Ret::Written {
                    generation: Some(st.content_generation),
                },
            )
            .await;
        match r {
            Some(Ok(st)) => {
                self.generations.insert(path, st.content_generation);
                false
            }
            Some(Err(e)) => self.gone(&path, &e),
            None => false,
        }
    }

    /// Takes `path`'s lock exclusively (waiting up to 2 s), writes twice to the fenced
    /// resource with its sequencer, and releases it.
    async fn lock(&mut self, path: String) -> bool {
        let h = match self.handle(&path, true).await {
            Ok(h) => h,
            Err(gone) => return gone,
        };
        let op = Op::Acquire {
            lock: path.clone(),
            mode: HLock::Exclusive,
        };
        let hh = h.clone();
        let r = self
            .call(
                op,
                || async move {
                    hh.acquire(LockMode::Exclusive, Some(Duration::from_secs(2)))
                        .await
                },
                |q: &Sequencer| Ret::Lock {
                    instance: q.instance,
                    generation: q.lock_generation,
                },
            )
            .await;
        let seq = match r {
            Some(Ok(q)) => q,
            Some(Err(e)) => return self.gone(&path, &e),
            None => return false,
        };
        for i in 0..2 {
            if i > 0 {
                tokio::time::sleep(Duration::from_millis(30)).await;
            }
            let op = Op::FencedWrite {
                resource: format!("resource{path}"),
                lock: path.clone(),
                instance: seq.instance,
                generation: seq.lock_generation,
                mode: HLock::Exclusive,
            };
            let id = self.shared.log.invoke(self.name, self.sid, op);
            let (accepted, n) = self
                .shared
                .fence
                .write(&path, seq.instance, seq.lock_generation);
            self.shared
                .log
                .complete(id, Outcome::Ok(Ret::Fenced { accepted, seq: n }));
        }
        let op = Op::Release { lock: path.clone() };
        let hh = h.clone();
        match self
            .call(op, || async move { hh.release().await }, |_| Ret::Done)
            .await
        {
            Some(Err(e)) => self.gone(&path, &e),
            _ => false,
        }
    }
}

impl Log {
    /// Completes a read, setting where it was served (known only once it returned).
    pub fn complete_read(&self, id: u64, source: ReadSource, outcome: Outcome) {
        let at = self.now();
        let mut rec = self.rec.lock().unwrap();
        rec.set_read_source(id, source);
        rec.complete(id, at, outcome);
    }
}

/// Creates the directories, files and lock files (before recording), and records the
/// files' initial contents.
pub async fn setup(shared: &Shared) -> anyhow::Result<()> {
    let s = Session::connect_with(options(shared, true)).await?;
    let mut dirs = vec!["/chaos".to_string()];
    dirs.extend((0..FILES).map(|i| format!("/chaos/d{i}")));
    dirs.extend((0..LOCKS).map(|i| format!("/chaos/lk{i}")));
    for d in &dirs {
        let (h, _) = s.open(d, OpenOptions::new().create_dir()).await?;
        h.close().await;
    }
    let files = (0..FILES)
        .map(|i| (file_path(i), "init"))
        .chain((0..LOCKS).map(|i| (lock_path(i), "")));
    for (p, init) in files {
        let (h, _) = s
            .open(
                &p,
                OpenOptions::new()
                    .read()
                    .create_file(init.as_bytes().to_vec()),
            )
            .await?;
        let (data, stat) = h.contents().await?;
        shared
            .log
            .with(|r| r.initial(&p, text(&data), stat.content_generation));
        h.close().await;
    }
    s.close().await?;
    Ok(())
}

/// Reads every file once more with a fresh direct session, once the faults have healed
/// and the clients have stopped (each attempt recorded; up to 10 per file).
pub async fn final_reads(shared: &Shared) {
    for attempt in 0..10 {
        let s = match Session::connect_with(options(shared, true)).await {
            Ok(s) => s,
            Err(e) => {
                eprintln!("chaos: final reads: no session yet ({e}), attempt {attempt}");
                tokio::time::sleep(Duration::from_secs(2)).await;
                continue;
            }
        };
        let sid = s.id().to_string();
        let mut all = true;
        for i in 0..FILES {
            let p = file_path(i);
            let op = Op::FinalRead { path: p.clone() };
            let ss = &s;
            let pp = p.clone();
            let r = recorded(
                shared,
                "final",
                &sid,
                op,
                || async move {
                    let (h, _) = ss.open(&pp, OpenOptions::new().read()).await?;
                    let r = h.contents().await;
                    h.close().await;
                    r
                },
                |(data, stat)| Ret::Read {
                    value: Some(text(data)),
                    generation: Some(stat.content_generation),
                },
            )
            .await;
            all &= matches!(r, Some(Ok(_)));
        }
        let _ = s.close().await;
        if all {
            return;
        }
        tokio::time::sleep(Duration::from_secs(2)).await;
    }
}
