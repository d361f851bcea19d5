//! The workload's random parts: Poisson arrivals (exponential gaps) and Zipf file popularity.

use rand::Rng;
use rand_distr::{Distribution, Exp, Zipf};
use std::time::Duration;

/// Gaps between the arrivals of a Poisson process of `rate` per second.
pub struct Arrivals {
    exp: Exp<f64>,
}

impl Arrivals {
    /// `None` when the rate is not positive (no arrivals at all).
    pub fn new(rate: f64) -> Option<Arrivals> {
        if rate.is_finite() && rate > 0.0 {
            Exp::new(rate).ok().map(|exp| Arrivals { exp })
        } else {
            None
        }
    }

    /// The gap until the next arrival.
    pub fn gap<R: Rng + ?Sized>(&self, rng: &mut R) -> Duration {
        Duration::from_secs_f64(self.exp.sample(rng))
    }
}

/// How many directories the files are spread over by default (`--dirs`).
pub const DIRS: u64 = 32;
/// The most directories `--dirs` may ask for.
pub const MAX_DIRS: u64 = 65_536;

/// Picks file indices `0..n` with Zipf(s) popularity (s = 0: uniform); index 0 is the most
/// popular.
pub struct Files {
    zipf: Zipf<f64>,
    n: u64,
    /// The directories they are spread over.
    dirs: u64,
}

impl Files {
    /// `n` files over [`DIRS`] directories.
    pub fn new(n: u64, s: f64) -> anyhow::Result<Files> {
        Files::with_dirs(n, s, DIRS)
    }

    /// `n` files over `dirs` directories (1 to [`MAX_DIRS`]).
    pub fn with_dirs(n: u64, s: f64, dirs: u64) -> anyhow::Result<Files> {
        if n == 0 {
            anyhow::bail!("--files must be at least 1");
        }
        if !(1..=MAX_DIRS).contains(&dirs) {
            anyhow::bail!("--dirs {dirs}: give 1 to {MAX_DIRS} directories");
        }
        let zipf = Zipf::new(n, s)
            .map_err(|e| anyhow::anyhow!("--zipf {s}: {e} (give an exponent ≥ 0)"))?;
        Ok(Files { zipf, n, dirs })
    }

    /// How many files.
    pub fn len(&self) -> u64 {
        self.n
    }

    /// Never: there is at least one file.
    pub fn is_empty(&self) -> bool {
        self.n == 0
    }

    pub fn pick<R: Rng + ?Sized>(&self, rng: &mut R) -> u64 {
        // Zipf samples 1..=n as a float.
        (self.zipf.sample(rng) as u64).clamp(1, self.n) - 1
    }

    /// The path of file `i`: `/loadtest/d{i mod dirs}/f{i}`, so that a partitioned
    /// namespace spreads them over its slots and cells (a directory's children share a
    /// slot).
    pub fn path(&self, i: u64) -> String {
        format!("/loadtest/d{}/f{i}", i % self.dirs)
    }

    /// The path of the `k`-th extra file named `{name}{k}`, in the files' directories in
    /// turn (e.g. the locks held through a reshard: `held0`, `held1`, …).
    pub fn extra_path(&self, name: &str, k: u64) -> String {
        format!("/loadtest/d{}/{name}{k}", k % self.n.min(self.dirs))
    }

    /// The directories the files are in.
    pub fn dir_paths(&self) -> impl Iterator<Item = String> {
        (0..self.n.min(self.dirs)).map(|d| format!("/loadtest/d{d}"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::rngs::StdRng;
    use rand::SeedableRng;

    #[test]
    fn poisson_gaps_average_one_over_the_rate() {
        let mut rng = StdRng::seed_from_u64(7);
        let a = Arrivals::new(200.0).unwrap();
        let n = 20_000;
        let total: f64 = (0..n).map(|_| a.gap(&mut rng).as_secs_f64()).sum();
        let mean = total / n as f64;
        assert!((mean - 0.005).abs() < 0.0002, "mean gap {mean}");
        assert!(Arrivals::new(0.0).is_none());
        assert!(Arrivals::new(-1.0).is_none());
    }

    #[test]
    fn zipf_prefers_the_first_files_and_stays_in_range() {
        let mut rng = StdRng::seed_from_u64(7);
        let f = Files::new(100, 1.0).unwrap();
        let mut counts = [0u32; 100];
        for _ in 0..50_000 {
            counts[f.pick(&mut rng) as usize] += 1;
        }
        // Zipf(1): file 0 about twice as popular as file 1, ten times file 9.
        let r01 = counts[0] as f64 / counts[1] as f64;
        let r09 = counts[0] as f64 / counts[9] as f64;
        assert!((1.7..2.3).contains(&r01), "{r01}");
        assert!((8.0..12.5).contains(&r09), "{r09}");
        assert!(counts[99] > 0);

        let uniform = Files::new(10, 0.0).unwrap();
        let mut c = [0u32; 10];
        for _ in 0..10_000 {
            c[uniform.pick(&mut rng) as usize] += 1;
        }
        assert!(c.iter().all(|&n| (800..1200).contains(&n)), "{c:?}");
        assert!(Files::new(0, 1.0).is_err());
        assert!(Files::new(10, -1.0).is_err());
        let f = Files::new(1000, 1.0).unwrap();
        assert_eq!(f.path(3), "/loadtest/d3/f3");
        assert_eq!(f.path(35), "/loadtest/d3/f35");
        assert_eq!(f.dir_paths().count(), 32);
        assert_eq!(
            Files::new(2, 1.0).unwrap().dir_paths().collect::<Vec<_>>(),
            ["/loadtest/d0", "/loadtest/d1"]
        );
        let wide = Files::with_dirs(100_000, 1.0, 1000).unwrap();
        assert_eq!(wide.path(1234), "/loadtest/d234/f1234");
        assert_eq!(wide.dir_paths().count(), 1000);
        assert_eq!(wide.len(), 100_000);
        assert_eq!(wide.extra_path("held", 1001), "/loadtest/d1/held1001");
        assert_eq!(
            Files::new(2, 1.0).unwrap().extra_path("held", 3),
            "/loadtest/d1/held3"
        );
        for bad in [0, MAX_DIRS + 1] {
            let e = Files::with_dirs(10, 1.0, bad).err().unwrap().to_string();
            assert!(e.contains("--dirs"), "{e}");
        }
    }
}
