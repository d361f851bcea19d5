//! The proxy's client-session table under load: what one operation on it costs with
//! 100,000 sessions in it. Every client call takes the core's one lock for exactly one such
//! operation, so this is also how long the lock is held (see docs/performance.md for why
//! the table is not a sharded map).

use criterion::{black_box, criterion_group, criterion_main, Criterion};
use std::time::Duration;
use tokio::time::Instant;
use warren_proxy::core::{CoreConfig, ProxyCore};

const SESSIONS: usize = 100_000;

fn table() -> (ProxyCore, Vec<[u8; 16]>, Instant) {
    let t0 = Instant::now();
    let mut core = ProxyCore::new(
        CoreConfig {
            client_lease: Duration::from_secs(12),
            reply_before_end: Duration::from_secs(1),
            margin: Duration::from_secs(1),
            max_starve: Duration::from_secs(60),
            cells: 1,
            cover_reach: None,
        },
        t0,
    );
    core.upstream_lease(0, t0 + Duration::from_secs(3600), t0);
    let mut ids = Vec::with_capacity(SESSIONS);
    for i in 0..SESSIONS {
        let (id, _, _, _) = core.create_session("bench", t0);
        if i % 2 == 0 {
            core.registered(&id, 0);
        }
        // Every session has a KeepAlive parked, as in a live fleet.
        let _ = core.keepalive(&id, 0, t0);
        ids.push(id);
    }
    core.take_output();
    (core, ids, t0)
}

fn session_table(c: &mut Criterion) {
    let (mut core, ids, t0) = table();
    let mut i = 0usize;
    let mut now = t0;
    c.bench_function("keepalive/100k-sessions", |b| {
        b.iter(|| {
            i = (i + 1) % ids.len();
            now += Duration::from_micros(10);
            // Supersedes the parked KeepAlive (answering it) and parks the new one.
            let r = core.keepalive(black_box(&ids[i]), 0, now);
            black_box(r.is_ok());
            black_box(core.take_output());
        })
    });
    c.bench_function("create+close/100k-sessions", |b| {
        b.iter(|| {
            now += Duration::from_micros(10);
            let (id, _, _, _) = core.create_session("bench", now);
            core.close_session(&id, now);
            black_box(core.take_output());
        })
    });
    c.bench_function("tick-nothing-due/100k-sessions", |b| {
        b.iter(|| {
            core.tick(black_box(now));
        })
    });
}

criterion_group!(benches, session_table);
criterion_main!(benches);
