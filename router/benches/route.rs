//! Benchmarks of the routing hot path: hashing a directory and routing a path with a
//! many-cell partition map.

use criterion::{black_box, criterion_group, criterion_main, Criterion};
use warren_router::{dir_hash, PartitionMap, DEFAULT_SLOTS};

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

criterion_group!(benches, route);
criterion_main!(benches);
