//! Benchmarks of the routing hot path (hashing a directory, routing a path with a
//! many-cell partition map) and of proposing a new map (the rebalancer, the diff).

use std::collections::BTreeMap;

use criterion::{black_box, criterion_group, criterion_main, Criterion};
use warren_router::{diff, dir_hash, rebalance, PartitionMap, DEFAULT_SLOTS};

fn route(c: &mut Criterion) {
    let short = "/ls/local/users";
    let long = format!("/ls/local/{}", "component-name/".repeat(16));
    c.bench_function("dir_hash/short", |b| b.iter(|| dir_hash(black_box(short))));
    c.bench_function("dir_hash/256B", |b| {
        b.iter(|| dir_hash(black_box(long.as_str())))
    });

    let cells: Vec<(String, Vec<String>)> = (0..16)
        .map(|i| (format!("cell-{i}"), vec![format!("10.0.0.{i}:7000")]))
        .collect();
    let map = PartitionMap::even("local", &cells, DEFAULT_SLOTS).expect("valid map");
    let path = "/ls/local/users/alice/config.json";
    c.bench_function("cell_for_path/16-cells", |b| {
        b.iter(|| map.cell_for_path(black_box(path)))
    });
}

fn rebalancer(c: &mut Criterion) {
    let cells: Vec<(String, Vec<String>)> = (0..32)
        .map(|i| (format!("cell-{i}"), vec![format!("10.0.0.{i}:7000")]))
        .collect();
    let map = PartitionMap::even("local", &cells, DEFAULT_SLOTS).expect("valid map");

    // Add a 33rd cell of the same weight: 124 slots move to it.
    let mut grow: BTreeMap<String, u32> = map.cells().keys().map(|c| (c.clone(), 1)).collect();
    grow.insert("cell-32".to_owned(), 1);
    let addresses = BTreeMap::from([("cell-32".to_owned(), vec!["10.0.0.32:7000".to_owned()])]);
    c.bench_function("rebalance/4096-slots/32-cells+1", |b| {
        b.iter(|| rebalance(black_box(&map), black_box(&grow), black_box(&addresses)))
    });

    // Reweight: cell-0 to weight 2 (121 slots move to it).
    let reweight: BTreeMap<String, u32> = map
        .cells()
        .keys()
        .map(|c| (c.clone(), if c == "cell-0" { 2 } else { 1 }))
        .collect();
    let none = BTreeMap::new();
    c.bench_function("rebalance/4096-slots/32-cells-reweight", |b| {
        b.iter(|| rebalance(black_box(&map), black_box(&reweight), black_box(&none)))
    });

    // Already balanced: nothing moves (the cost of checking).
    let same: BTreeMap<String, u32> = map.cells().keys().map(|c| (c.clone(), 1)).collect();
    c.bench_function("rebalance/4096-slots/32-cells-noop", |b| {
        b.iter(|| rebalance(black_box(&map), black_box(&same), black_box(&none)))
    });

    let grown = rebalance(&map, &grow, &addresses)
        .expect("valid target")
        .map;
    c.bench_function("diff/4096-slots/32-cells+1", |b| {
        b.iter(|| diff(black_box(&map), black_box(&grown)))
    });
}

criterion_group!(benches, route, rebalancer);
criterion_main!(benches);
