//! What each simulated client does, recording every call in the run's history: the setup
//! (every file created before the workload starts); a warren-client session that writes its own files, reads anyone's (through its cache),
//! and takes the shared exclusive lock to write at the fenced resource under its
//! sequencer, every choice drawn from its own seeded RNG; and the final reader, which
//! reads every file once the faults are healed (the lost-write checker's final reads).

use crate::record::{failed, now, Record, GRACE, RPC_TIMEOUT};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use std::cell::RefCell;
use std::rc::Rc;
use std::time::Duration;
use warren_client::{ClientOptions, Error, LockMode, OpenOptions, Session, SessionState};
use warren_history::{LockMode as HLock, Op, Outcome, ReadSource, Ret, Value};
use warren_proto::error::ErrorCode;

/// The cell's name on the simulated network, and its port.
pub const CELL_HOST: &str = "cell";
pub const CELL_PORT: u16 = 7100;
/// The proxy's name on the simulated network, and its port.
pub const PROXY_HOST: &str = "proxy0";
pub const PROXY_PORT: u16 = 7300;
/// The lock every client contends for.
pub const LOCK: &str = "/lock";
/// Files per client.
const FILES: usize = 2;

/// A session's options: at the cell (or, in a partitioned deployment, routed by the map
/// at its meta cell: [`Record::meta`]), or (`via_proxy`) through the proxy.
fn options(via_proxy: bool, rec: &Rc<RefCell<Record>>) -> ClientOptions {
    let (meta, proxies) = {
        let r = rec.borrow();
        (r.meta.clone(), r.proxy_addrs.clone())
    };
    let mut o = if via_proxy && proxies.is_empty() {
        ClientOptions::proxies([format!("{PROXY_HOST}:{PROXY_PORT}")])
    } else if via_proxy {
        ClientOptions::proxies(proxies)
    } else if meta.is_empty() {
        ClientOptions::new([format!("{CELL_HOST}:{CELL_PORT}")])
    } else {
        ClientOptions::meta(meta)
    };
    o.rpc_timeout = RPC_TIMEOUT;
    o.grace_period = GRACE;
    o
}

/// The file `j` of client `i` (only that client writes it).
fn file(i: usize, j: usize) -> String {
    format!("/c{i}-f{j}")
}

/// Every file of a run of `clients` clients.
pub fn files(clients: usize) -> Vec<String> {
    (0..clients)
        .flat_map(|i| (0..FILES).map(move |j| file(i, j)))
        .collect()
}

fn result_name<T>(r: &Result<T, Error>) -> &'static str {
    match r {
        Ok(_) => "ok",
        Err(e) => e.code_name(),
    }
}

/// A new session, recorded as `create_session` (filed under the id it got).
async fn connect(me: &str, via_proxy: bool, rec: &Rc<RefCell<Record>>) -> Result<Session, Error> {
    let id = rec
        .borrow_mut()
        .history
        .invoke(me, "", Op::CreateSession, now());
    let result = Session::connect_with(options(via_proxy, rec)).await;
    let mut r = rec.borrow_mut();
    match &result {
        Ok(s) => {
            r.history.set_session(id, &s.id().to_string());
            r.session_client.insert(s.id().to_string(), me.to_string());
            r.current.insert(me.to_string(), s.clone());
            if !via_proxy && !r.meta.is_empty() {
                // Partitioned: its cell sessions are recorded as they appear.
                r.partitioned
                    .insert(s.id().to_string(), (me.to_string(), s.clone()));
            }
            let lease_ns = crate::record::nanos(s.lease());
            r.complete(id, Outcome::Ok(Ret::Lease { lease_ns }));
            r.event(me, format!("session {} created", s.id()));
        }
        Err(e) => {
            r.complete(id, failed(e));
            r.event(me, format!("connect failed: {}", e.code_name()));
        }
    }
    result
}

/// Records an expiry the session reports, once: of each of its cell sessions that expired
/// (a partitioned session expires when one of them does; each is judged by its own
/// KeepAlives).
fn note_expiry(me: &str, s: &Session, rec: &Rc<RefCell<Record>>, noted: &mut bool) {
    if !*noted && s.state() == SessionState::Expired {
        *noted = true;
        let mut r = rec.borrow_mut();
        let at = now();
        for (_, part, state) in s.cell_sessions() {
            if state != SessionState::Expired {
                continue;
            }
            r.history.call(
                me,
                &part.to_string(),
                Op::SessionExpired,
                at,
                at,
                Outcome::Ok(Ret::Done),
            );
            r.coverage.sessions_expired += 1;
            r.event(me, format!("session {part} expired"));
        }
    }
}

/// Creates every file and the lock (empty) before the workload starts, and records them
/// as the history's initial files. The workload's `Open`s then never create: the library
/// re-sends an `Open` whose reply was lost, and the retry reports `created: false` for a
/// file its first attempt created, which the history could not tell from a file that
/// existed (docs/reliability.md, "Deterministic simulation").
pub async fn setup(clients: usize, rec: Rc<RefCell<Record>>) {
    let mut paths = files(clients);
    paths.push(LOCK.to_string());
    write_first_map(&rec).await;
    'again: loop {
        if let Ok(s) = Session::connect_with(options(false, &rec)).await {
            for path in &paths {
                let opened = s
                    .open(path, OpenOptions::new().write().create_file(Vec::new()))
                    .await;
                match opened {
                    Ok((h, _)) => h.close().await,
                    Err(_) => {
                        let _ = s.close().await;
                        tokio::time::sleep(Duration::from_millis(300)).await;
                        continue 'again;
                    }
                }
            }
            let _ = s.close().await;
            break;
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    let mut r = rec.borrow_mut();
    for path in &paths {
        r.history.initial(path, Value::from(""), 0);
    }
    r.ready = true;
    r.event("setup", "every file created");
}

/// In a partitioned deployment, writes the first partition map into the meta cell (again
/// until it is there: a retry finds it `ALREADY_EXISTS`), through a map administration
/// session, as `warren ctl deployment init` does.
async fn write_first_map(rec: &Rc<RefCell<Record>>) {
    let (meta, cells) = {
        let r = rec.borrow();
        (r.meta.clone(), r.map_cells.clone())
    };
    if meta.is_empty() {
        return;
    }
    let map = warren_client::admin::initial_map(crate::DEPLOYMENT, &cells, crate::SLOTS)
        .expect("the simulation's first map is valid");
    loop {
        let mut o = warren_client::admin::operator_options(meta.clone());
        o.rpc_timeout = RPC_TIMEOUT;
        if let Ok(s) = Session::connect_with(o).await {
            let created = warren_client::admin::create_map(&s, &map).await;
            let _ = s.close().await;
            match created {
                Ok(()) => break,
                Err(e) if e.code() == Some(ErrorCode::AlreadyExists) => break,
                Err(_) => {}
            }
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    rec.borrow_mut().event("setup", "the first map written");
}

/// Client `i`: `rounds` operations, then the session closed; at the cell, or
/// (`via_proxy`) through the proxy.
pub async fn client(
    i: usize,
    seed: u64,
    rounds: usize,
    clients: usize,
    via_proxy: bool,
    rec: Rc<RefCell<Record>>,
) {
    while !rec.borrow().ready {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let me = format!("client{i}");
    let mut rng = StdRng::seed_from_u64(seed ^ (i as u64 + 1).wrapping_mul(0x9E37_79B9_7F4A_7C15));
    let mut session: Option<(Session, bool)> = None;
    let mut counter = 0u64;
    for _ in 0..rounds {
        if let Some((s, noted)) = &mut session {
            note_expiry(&me, s, &rec, noted);
        }
        let s = match &session {
            Some((s, _)) if s.is_live() => s.clone(),
            _ => {
                if let Some((old, _)) = session.take() {
                    let mut r = rec.borrow_mut();
                    r.coverage.invalidations += old.cache_stats().invalidations;
                    r.forget(&old);
                }
                match connect(&me, via_proxy, &rec).await {
                    Ok(s) => {
                        session = Some((s.clone(), false));
                        s
                    }
                    Err(_) => {
                        tokio::time::sleep(Duration::from_millis(300)).await;
                        continue;
                    }
                }
            }
        };
        match rng.gen_range(0..3) {
            0 => {
                counter += 1;
                let path = file(i, rng.gen_range(0..FILES));
                write(&me, &s, &path, counter, &rec).await;
            }
            1 => {
                let path = file(rng.gen_range(0..clients), rng.gen_range(0..FILES));
                let times = rng.gen_range(1..3);
                read(&me, &s, &path, times, &rec).await;
            }
            _ => lock(&me, &s, &mut rng, &rec).await,
        }
        tokio::time::sleep(Duration::from_millis(rng.gen_range(0..200))).await;
    }
    if let Some((s, mut noted)) = session {
        note_expiry(&me, &s, &rec, &mut noted);
        let invalidations = s.cache_stats().invalidations;
        {
            let mut r = rec.borrow_mut();
            r.coverage.invalidations += invalidations;
            for (_, part, _) in s.cell_sessions() {
                r.closing(&part.to_string());
            }
            r.forget(&s);
        }
        let closed = s.close().await;
        rec.borrow_mut()
            .event(&me, format!("closed: {}", result_name(&closed)));
    }
    let mut r = rec.borrow_mut();
    r.finished += 1;
    r.event(&me, "finished");
}

/// Opens `path` (creating it empty if absent) for writing, recorded as `open`.
async fn open_to_write(
    me: &str,
    s: &Session,
    path: &str,
    rec: &Rc<RefCell<Record>>,
) -> Option<warren_client::Handle> {
    let sid = s.id().to_string();
    let opened = Record::call(
        rec,
        me,
        &sid,
        Op::Open {
            path: path.to_string(),
            create: Some(Value::from("")),
        },
        s.open(path, OpenOptions::new().write().create_file(Vec::new())),
        |(_, info)| Ret::Opened {
            created: info.created,
        },
    )
    .await;
    match opened {
        Ok((h, _)) => Some(h),
        Err(e) => {
            rec.borrow_mut()
                .event(me, format!("open {path}: {}", e.code_name()));
            None
        }
    }
}

async fn write(me: &str, s: &Session, path: &str, counter: u64, rec: &Rc<RefCell<Record>>) {
    let Some(h) = open_to_write(me, s, path, rec).await else {
        return;
    };
    let value = format!("{me}:{counter}");
    let result = Record::call(
        rec,
        me,
        &s.id().to_string(),
        Op::Write {
            path: path.to_string(),
            value: Value(value.clone()),
            if_generation: None,
        },
        h.set_contents(value.clone().into_bytes()),
        // Generations are not recorded (here nor in reads): the library re-sends a plain
        // write whose first attempt may have been applied, and each application raises
        // the content generation, so one write may raise it by two; its value is the
        // same (docs/reliability.md, "Deterministic simulation").
        |_| Ret::Written { generation: None },
    )
    .await;
    rec.borrow_mut().event(
        me,
        format!("write {path} {value}: {}", result_name(&result)),
    );
    h.close().await;
}

/// Reads `path` `times` times through one handle. Each read is recorded with where it was
/// served from: the session's cache (its hit count rose), the proxy's shared cache (for a
/// client of the proxy: its hit count rose while the read was on its way — perhaps for
/// another client's read at the same time, so a read the cell answered may be recorded
/// as the proxy's, which only spares it the file checker's linearizability, never the
/// cache checker), or the cell. A read the proxy answers from its cache may be older than
/// a read the cell answered before it (a write waits only for the caches to be
/// invalidated), so it must not be judged as the cell's.
async fn read(me: &str, s: &Session, path: &str, times: usize, rec: &Rc<RefCell<Record>>) {
    let sid = s.id().to_string();
    let hits = s.cache_stats().hits;
    let invoked = now();
    let opened = s.open(path, OpenOptions::new().read()).await;
    let from_cache = s.cache_stats().hits > hits;
    let h = match opened {
        Ok((h, _)) => {
            // An open served by the cell is an observation ("it exists"); one served from
            // a shared handle in the cache is not judged (the file checker takes only the
            // cell's answers).
            if !from_cache {
                let mut r = rec.borrow_mut();
                let id = r.history.invoke(
                    me,
                    &sid,
                    Op::Open {
                        path: path.to_string(),
                        create: None,
                    },
                    invoked,
                );
                r.complete(id, Outcome::Ok(Ret::Opened { created: false }));
            }
            h
        }
        Err(e) => {
            let mut r = rec.borrow_mut();
            r.event(me, format!("open {path}: {}", e.code_name()));
            if from_cache && e.code() == Some(ErrorCode::NotFound) {
                // The cached absence: a read of "absent" served by the cache.
                let id = r.history.invoke(
                    me,
                    &sid,
                    Op::Read {
                        path: path.to_string(),
                        source: ReadSource::ClientCache,
                    },
                    invoked,
                );
                r.coverage.cache_hits += 1;
                r.complete(
                    id,
                    Outcome::Ok(Ret::Read {
                        value: None,
                        generation: None,
                    }),
                );
            } else if !from_cache {
                let id = r.history.invoke(
                    me,
                    &sid,
                    Op::Open {
                        path: path.to_string(),
                        create: None,
                    },
                    invoked,
                );
                r.complete(id, failed(&e));
            }
            return;
        }
    };
    for _ in 0..times {
        let hits = s.cache_stats().hits;
        let proxy_hits = rec.borrow().proxy_cache_hits();
        let invoked = now();
        let result = h.contents().await;
        let source = if s.cache_stats().hits > hits {
            ReadSource::ClientCache
        } else if rec.borrow().proxied.contains(me) && rec.borrow().proxy_cache_hits() > proxy_hits
        {
            ReadSource::ProxyCache
        } else {
            ReadSource::Cell
        };
        let mut r = rec.borrow_mut();
        let id = r.history.invoke(
            me,
            &sid,
            Op::Read {
                path: path.to_string(),
                source,
            },
            invoked,
        );
        match &result {
            Ok((value, _)) => {
                let value = String::from_utf8_lossy(value).into_owned();
                r.event(me, format!("read {path} = {value} ({source:?})"));
                match source {
                    ReadSource::ClientCache => r.coverage.cache_hits += 1,
                    ReadSource::ProxyCache => r.coverage.proxy_cache_reads += 1,
                    ReadSource::Cell => {}
                }
                r.complete(
                    id,
                    Outcome::Ok(Ret::Read {
                        value: Some(Value(value)),
                        generation: None,
                    }),
                );
            }
            Err(e) => {
                r.event(me, format!("read {path}: {}", e.code_name()));
                r.complete(id, failed(e));
            }
        }
    }
    h.close().await;
}

/// Takes the exclusive lock (waiting at most 2 s), writes at the fenced resource a few
/// times under its sequencer, and releases it.
async fn lock(me: &str, s: &Session, rng: &mut StdRng, rec: &Rc<RefCell<Record>>) {
    let Some(h) = open_to_write(me, s, LOCK, rec).await else {
        return;
    };
    let sid = s.id().to_string();
    let acquired = Record::call(
        rec,
        me,
        &sid,
        Op::Acquire {
            lock: LOCK.to_string(),
            mode: HLock::Exclusive,
        },
        h.acquire(LockMode::Exclusive, Some(Duration::from_secs(2))),
        |seq| Ret::Lock {
            instance: seq.instance,
            generation: seq.lock_generation,
        },
    )
    .await;
    match acquired {
        Ok(seq) => {
            let gen = seq.lock_generation;
            rec.borrow_mut()
                .event(me, format!("acquired {LOCK} at generation {gen}"));
            for _ in 0..rng.gen_range(1..4) {
                let accepted = rec.borrow_mut().fenced_write(me, &sid, seq.instance, gen);
                rec.borrow_mut().event(
                    me,
                    format!(
                        "resource {} generation {gen}",
                        if accepted { "accepted" } else { "fenced" }
                    ),
                );
                if !accepted {
                    break;
                }
                tokio::time::sleep(Duration::from_millis(rng.gen_range(0..300))).await;
            }
            let released = Record::call(
                rec,
                me,
                &sid,
                Op::Release {
                    lock: LOCK.to_string(),
                },
                h.release(),
                |_| Ret::Done,
            )
            .await;
            rec.borrow_mut()
                .event(me, format!("release {LOCK}: {}", result_name(&released)));
        }
        Err(e) => {
            rec.borrow_mut()
                .event(me, format!("acquire {LOCK}: {}", e.code_name()));
        }
    }
    h.close().await;
}

/// After every workload client finished and the faults are healed: reads every file from
/// a new session (`final_read`s, absent included). Bounded: gives up (a liveness
/// failure: the cell never came back) after `patience`.
pub async fn final_reader(clients: usize, patience: Duration, rec: Rc<RefCell<Record>>) {
    while rec.borrow().finished < clients {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let me = "final";
    let deadline = tokio::time::Instant::now() + patience;
    'files: for path in files(clients) {
        loop {
            if tokio::time::Instant::now() >= deadline {
                rec.borrow_mut().stuck.push(format!(
                    "the final read of {path} got no answer within {patience:?} of healing"
                ));
                return;
            }
            let session = match connect(me, false, &rec).await {
                Ok(s) => s,
                Err(_) => {
                    tokio::time::sleep(Duration::from_millis(500)).await;
                    continue;
                }
            };
            let sid = session.id().to_string();
            let invoked = now();
            let attempt = async {
                let (h, _) = session.open(&path, OpenOptions::new().read()).await?;
                let read = h.contents().await;
                h.close().await;
                read
            }
            .await;
            {
                let mut r = rec.borrow_mut();
                for (_, part, _) in session.cell_sessions() {
                    r.closing(&part.to_string());
                }
                r.forget(&session);
            }
            let _ = session.close().await;
            let value = match attempt {
                Ok((value, _)) => Some(String::from_utf8_lossy(&value).into_owned()),
                Err(e) if e.code() == Some(ErrorCode::NotFound) => None,
                Err(e) => {
                    rec.borrow_mut()
                        .event(me, format!("{path}: {}; again", e.code_name()));
                    tokio::time::sleep(Duration::from_millis(500)).await;
                    continue;
                }
            };
            let mut r = rec.borrow_mut();
            r.event(me, format!("{path} = {value:?}"));
            let id = r
                .history
                .invoke(me, &sid, Op::FinalRead { path: path.clone() }, invoked);
            r.complete(
                id,
                Outcome::Ok(Ret::Read {
                    value: value.map(Value),
                    generation: None,
                }),
            );
            continue 'files;
        }
    }
    rec.borrow_mut().event(me, "done");
}
