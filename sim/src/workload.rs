//! What each simulated client does: a warren-client session that writes and reads its own
//! files and takes the shared exclusive lock to work at the fenced resource, every choice
//! drawn from its own seeded RNG; and the final reader that checks no acknowledged write
//! was lost once the faults are healed.

use crate::checks::{Outcome, Record, Write, GRACE, RPC_TIMEOUT};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use std::cell::RefCell;
use std::rc::Rc;
use std::time::Duration;
use warren_client::{ClientOptions, Error, LockMode, OpenOptions, Session};

/// The cell's name on the simulated network, and its port.
pub const CELL_HOST: &str = "cell";
pub const CELL_PORT: u16 = 7100;
/// The lock every client contends for.
const LOCK: &str = "/lock";
/// Files per client.
const FILES: usize = 2;

fn options() -> ClientOptions {
    let mut o = ClientOptions::new([format!("{CELL_HOST}:{CELL_PORT}")]);
    o.rpc_timeout = RPC_TIMEOUT;
    o.grace_period = GRACE;
    o
}

/// The file `j` of client `i` (only that client writes it).
fn file(i: usize, j: usize) -> String {
    format!("/c{i}-f{j}")
}

/// Client `i`: `rounds` operations, then the session closed.
pub async fn client(i: usize, seed: u64, rounds: usize, rec: Rc<RefCell<Record>>) {
    let me = format!("client{i}");
    let mut rng = StdRng::seed_from_u64(seed ^ (i as u64 + 1).wrapping_mul(0x9E37_79B9_7F4A_7C15));
    let mut session: Option<Session> = None;
    let mut counter = 0u64;
    for _ in 0..rounds {
        let s = match &session {
            Some(s) if s.is_live() => s.clone(),
            _ => match Session::connect_with(options()).await {
                Ok(s) => {
                    rec.borrow_mut()
                        .event(&me, format!("session {} created", s.id()));
                    session = Some(s.clone());
                    s
                }
                Err(e) => {
                    rec.borrow_mut()
                        .event(&me, format!("connect failed: {}", e.code_name()));
                    tokio::time::sleep(Duration::from_millis(300)).await;
                    continue;
                }
            },
        };
        match rng.gen_range(0..3) {
            0 => {
                counter += 1;
                write(&me, &s, &file(i, rng.gen_range(0..FILES)), counter, &rec).await;
            }
            1 => read(&me, &s, &file(i, rng.gen_range(0..FILES)), &rec).await,
            _ => lock(i, &me, &s, &mut rng, &rec).await,
        }
        tokio::time::sleep(Duration::from_millis(rng.gen_range(0..200))).await;
    }
    if let Some(s) = session {
        let closed = s.close().await;
        rec.borrow_mut()
            .event(&me, format!("closed: {}", result_name(&closed)));
    }
    let mut r = rec.borrow_mut();
    r.finished += 1;
    r.event(&me, "finished");
}

fn result_name<T>(r: &Result<T, Error>) -> &'static str {
    match r {
        Ok(_) => "ok",
        Err(e) => e.code_name(),
    }
}

async fn write(me: &str, s: &Session, path: &str, counter: u64, rec: &Rc<RefCell<Record>>) {
    let opened = s
        .open(path, OpenOptions::new().write().create_file(Vec::new()))
        .await;
    let h = match opened {
        Ok((h, _)) => h,
        Err(e) => {
            rec.borrow_mut()
                .event(me, format!("open {path}: {}", e.code_name()));
            rec.borrow_mut().count("open failed");
            return;
        }
    };
    let value = format!("{me}:{counter}").into_bytes();
    let index = {
        let mut r = rec.borrow_mut();
        let history = r.writes.entry(path.to_string()).or_default();
        history.push(Write {
            value: value.clone(),
            outcome: Outcome::Pending,
        });
        history.len() - 1
    };
    let result = h.set_contents(value).await;
    let outcome = match &result {
        Ok(_) => Outcome::Acked,
        Err(e) if e.may_have_taken_effect() => Outcome::Unknown,
        Err(_) => Outcome::Failed,
    };
    {
        let mut r = rec.borrow_mut();
        r.writes.get_mut(path).expect("recorded")[index].outcome = outcome;
        let what = format!("write {path} {me}:{counter}: {}", result_name(&result));
        r.event(me, what);
        r.count(match outcome {
            Outcome::Acked => "write acked",
            Outcome::Unknown => "write unknown",
            _ => "write failed",
        });
    }
    h.close().await;
}

async fn read(me: &str, s: &Session, path: &str, rec: &Rc<RefCell<Record>>) {
    let acked_before = rec.borrow().last_acked(path);
    let h = match s.open(path, OpenOptions::new().read()).await {
        Ok((h, _)) => h,
        Err(e) => {
            let mut r = rec.borrow_mut();
            r.event(me, format!("open {path}: {}", e.code_name()));
            if e.code_name() == "NOT_FOUND" {
                // Absent is right only if no write of it was acknowledged before.
                r.count("read absent");
                if let Some(a) = acked_before {
                    let value = String::from_utf8_lossy(&r.writes[path][a].value).into_owned();
                    r.violation(format!(
                        "{me} found {path} absent, though {value:?} was acknowledged"
                    ));
                }
            } else {
                r.count("open failed");
            }
            return;
        }
    };
    let result = h.contents().await;
    {
        let mut r = rec.borrow_mut();
        match &result {
            Ok((value, _)) => {
                let what = format!("read {path} = {}", String::from_utf8_lossy(value));
                r.event(me, what);
                r.count("read ok");
                r.check_read(me, path, acked_before, value);
            }
            Err(e) => {
                r.event(me, format!("read {path}: {}", e.code_name()));
                r.count("read failed");
            }
        }
    }
    h.close().await;
}

/// Takes the exclusive lock (waiting at most 2 s), works at the fenced resource a few
/// times under its sequencer, and releases it.
async fn lock(i: usize, me: &str, s: &Session, rng: &mut StdRng, rec: &Rc<RefCell<Record>>) {
    let h = match s
        .open(LOCK, OpenOptions::new().write().create_file(Vec::new()))
        .await
    {
        Ok((h, _)) => h,
        Err(e) => {
            rec.borrow_mut()
                .event(me, format!("open {LOCK}: {}", e.code_name()));
            rec.borrow_mut().count("open failed");
            return;
        }
    };
    match h
        .acquire(LockMode::Exclusive, Some(Duration::from_secs(2)))
        .await
    {
        Ok(seq) => {
            let gen = seq.lock_generation;
            {
                let mut r = rec.borrow_mut();
                r.event(me, format!("acquired {LOCK} at generation {gen}"));
                r.count("lock acquired");
                r.grants.entry(i).or_default().push(gen);
            }
            for _ in 0..rng.gen_range(1..4) {
                let entered = rec.borrow_mut().resource.enter(i, gen);
                match entered {
                    Ok(true) => rec
                        .borrow_mut()
                        .event(me, format!("resource accepted generation {gen}")),
                    Ok(false) => {
                        rec.borrow_mut()
                            .event(me, format!("resource fenced generation {gen}"));
                        break;
                    }
                    Err(v) => {
                        rec.borrow_mut().violation(v);
                        break;
                    }
                }
                tokio::time::sleep(Duration::from_millis(rng.gen_range(0..300))).await;
            }
            rec.borrow_mut().resource.leave(i);
            let released = h.release().await;
            rec.borrow_mut()
                .event(me, format!("release {LOCK}: {}", result_name(&released)));
        }
        Err(e) => {
            let mut r = rec.borrow_mut();
            r.event(me, format!("acquire {LOCK}: {}", e.code_name()));
            r.count("lock not acquired");
        }
    }
    h.close().await;
}

/// After every workload client finished and the faults are healed: reads every written
/// file from a new session and checks that it holds its last acknowledged value or a
/// later attempted one. Bounded: gives up (a violation: the cell never came back) after
/// `patience`.
pub async fn final_reader(clients: usize, patience: Duration, rec: Rc<RefCell<Record>>) {
    while rec.borrow().finished < clients {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let deadline = tokio::time::Instant::now() + patience;
    let paths: Vec<String> = rec.borrow().writes.keys().cloned().collect();
    'files: for path in paths {
        loop {
            if tokio::time::Instant::now() >= deadline {
                rec.borrow_mut().violation(format!(
                    "the final read of {path} got no answer within {patience:?} of healing"
                ));
                return;
            }
            let attempt = async {
                let s = Session::connect_with(options()).await?;
                let (h, _) = s.open(&path, OpenOptions::new().read()).await?;
                let read = h.contents().await;
                h.close().await;
                let _ = s.close().await;
                read
            }
            .await;
            let acked = rec.borrow().last_acked(&path);
            match attempt {
                Ok((value, _)) => {
                    let mut r = rec.borrow_mut();
                    r.event(
                        "final",
                        format!("{path} = {}", String::from_utf8_lossy(&value)),
                    );
                    r.check_read("the final reader", &path, acked, &value);
                    continue 'files;
                }
                Err(e) if e.code_name() == "NOT_FOUND" => {
                    let mut r = rec.borrow_mut();
                    r.event("final", format!("{path} absent"));
                    if let Some(a) = acked {
                        let value = String::from_utf8_lossy(&r.writes[&path][a].value).into_owned();
                        r.violation(format!(
                            "{path} is gone at the end, though {value:?} was acknowledged"
                        ));
                    }
                    continue 'files;
                }
                Err(e) => {
                    rec.borrow_mut()
                        .event("final", format!("{path}: {}; again", e.code_name()));
                    tokio::time::sleep(Duration::from_millis(500)).await;
                }
            }
        }
    }
    rec.borrow_mut().event("final", "done");
}
