//! How evenly the partition map spreads directories over cells (docs/performance.md).
//!
//! `cargo run --release --example spread`
//!
//! Generates 1,000,000 distinct random directory names (`/ls/local/` and 1–3 components of
//! 1–16 characters of `[a-z0-9]`, from a fixed seed, so every run prints the same numbers),
//! counts each directory as one node in the cell owning `slot(D)` (S = 4096), and prints,
//! for even maps of 3, 8 and 32 cells, the max/mean and min/mean nodes per cell. It then
//! rebalances each map to give one cell weight 2 and prints how closely the node counts
//! follow the weights.
//!
//! The random numbers come from SplitMix64, written out here rather than taken from a
//! crate, so the directory names (and so the numbers) cannot change with a dependency.

use std::collections::{BTreeMap, HashSet};
use std::time::Instant;

use warren_router::{rebalance, slot_of_dir, PartitionMap, DEFAULT_SLOTS};

const DIRECTORIES: usize = 1_000_000;
const SEED: u64 = 0x5741_5252_454e_0006; // "WARREN", partitioning
const CELL_COUNTS: [usize; 3] = [3, 8, 32];
const ALPHABET: &[u8] = b"abcdefghijklmnopqrstuvwxyz0123456789";

/// SplitMix64 (Steele, Lea and Flood 2014): small, fast, and fixed forever.
struct SplitMix64(u64);

impl SplitMix64 {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// Uniform in `lo..=hi` (the modulo bias is below 2⁻⁵⁸ for these ranges).
    fn between(&mut self, lo: u64, hi: u64) -> u64 {
        lo + self.next() % (hi - lo + 1)
    }
}

fn random_directories(count: usize, rng: &mut SplitMix64) -> Vec<String> {
    let mut seen = HashSet::with_capacity(count);
    let mut dirs = Vec::with_capacity(count);
    while dirs.len() < count {
        let mut dir = String::from("/ls/local");
        for _ in 0..rng.between(1, 3) {
            dir.push('/');
            for _ in 0..rng.between(1, 16) {
                dir.push(char::from(ALPHABET[rng.between(0, 35) as usize]));
            }
        }
        if seen.insert(dir.clone()) {
            dirs.push(dir);
        }
    }
    dirs
}

fn cells(n: usize) -> Vec<(String, Vec<String>)> {
    (0..n)
        .map(|i| (format!("cell-{i:02}"), vec![format!("10.0.{i}.1:7000")]))
        .collect()
}

/// Nodes per cell: the directories of every slot the cell owns.
fn nodes_per_cell(map: &PartitionMap, per_slot: &[u64]) -> BTreeMap<String, u64> {
    let mut nodes: BTreeMap<String, u64> = map.cells().keys().map(|c| (c.clone(), 0)).collect();
    for (owner, n) in map.slot_owners().iter().zip(per_slot) {
        *nodes.get_mut(owner).expect("owners are cells of the map") += n;
    }
    nodes
}

fn main() {
    let mut rng = SplitMix64(SEED);
    let started = Instant::now();
    let dirs = random_directories(DIRECTORIES, &mut rng);
    let generated = started.elapsed();

    let started = Instant::now();
    let mut per_slot = vec![0u64; DEFAULT_SLOTS as usize];
    for dir in &dirs {
        per_slot[slot_of_dir(dir, DEFAULT_SLOTS) as usize] += 1;
    }
    let hashed = started.elapsed();
    let total = dirs.len() as u64;
    println!(
        "{} distinct directories (seed {SEED:#x}) generated in {generated:.2?}, hashed into \
         {DEFAULT_SLOTS} slots in {hashed:.2?}",
        dirs.len(),
    );
    let slot_mean = total as f64 / f64::from(DEFAULT_SLOTS);
    let (slot_min, slot_max) = (
        per_slot.iter().min().copied().unwrap_or(0),
        per_slot.iter().max().copied().unwrap_or(0),
    );
    println!(
        "per slot: mean {slot_mean:.1}, min {slot_min} ({:.3} of mean), max {slot_max} ({:.3} of mean)\n",
        slot_min as f64 / slot_mean,
        slot_max as f64 / slot_mean
    );

    println!("Even maps (every cell weight 1):\n");
    println!("| cells | slots/cell | mean nodes/cell | min/mean | max/mean | max/min | 1σ/mean if binomial |");
    println!("|------:|-----------:|----------------:|---------:|---------:|--------:|------:|");
    let mut even_maps = Vec::new();
    for n in CELL_COUNTS {
        let map = PartitionMap::even("local", &cells(n), DEFAULT_SLOTS).expect("valid map");
        let nodes = nodes_per_cell(&map, &per_slot);
        let mean = total as f64 / n as f64;
        let min = nodes.values().min().copied().unwrap_or(0);
        let max = nodes.values().max().copied().unwrap_or(0);
        let slots = map.slot_counts();
        let (smin, smax) = (
            slots.values().min().copied().unwrap_or(0),
            slots.values().max().copied().unwrap_or(0),
        );
        let slot_range = if smin == smax {
            smin.to_string()
        } else {
            format!("{smin}–{smax}")
        };
        // What pure chance gives: each directory lands in a given cell with p = 1/n.
        let p = 1.0 / n as f64;
        let sigma = ((1.0 - p) / (total as f64 * p)).sqrt();
        println!(
            "| {n} | {slot_range} | {mean:.0} | {:.4} | {:.4} | {:.4} | {sigma:.4} |",
            min as f64 / mean,
            max as f64 / mean,
            max as f64 / min as f64
        );
        even_maps.push(map);
    }

    println!(
        "\nWeighted maps (rebalanced from the even map: cell-00 weight 2, the rest weight 1):\n"
    );
    println!(
        "| cells | slots moved | cell-00 slots | cell-00 share wanted | cell-00 share got | \
         cell-00 nodes / weight-1 mean | weight-1 min/mean | weight-1 max/mean |"
    );
    println!("|------:|------:|------:|------:|------:|------:|------:|------:|");
    for map in &even_maps {
        let n = map.cells().len();
        let target = map
            .cells()
            .keys()
            .map(|c| (c.clone(), if c == "cell-00" { 2 } else { 1 }))
            .collect();
        let proposal = rebalance(map, &target, &BTreeMap::new()).expect("valid target");
        let nodes = nodes_per_cell(&proposal.map, &per_slot);
        let heavy = nodes["cell-00"];
        let light: Vec<u64> = nodes
            .iter()
            .filter(|(c, _)| c.as_str() != "cell-00")
            .map(|(_, n)| *n)
            .collect();
        let light_mean = light.iter().sum::<u64>() as f64 / light.len() as f64;
        let light_min = light.iter().min().copied().unwrap_or(0);
        let light_max = light.iter().max().copied().unwrap_or(0);
        let wanted = 2.0 / (n as f64 + 1.0);
        println!(
            "| {n} | {} | {} | {:.4} | {:.4} | {:.4} | {:.4} | {:.4} |",
            proposal.moves.len(),
            proposal.map.slot_counts()["cell-00"],
            wanted,
            heavy as f64 / total as f64,
            heavy as f64 / light_mean,
            light_min as f64 / light_mean,
            light_max as f64 / light_mean
        );
    }
}
