//! The seeded fault schedule (docs/reliability.md, "Chaos"): a pure function of the seed
//! and the number of faults, so the same seed always gives the same schedule. Targets are
//! named by role ("the master of c1", "the etcd leader", "the link from c2's standby to
//! etcd"); which process plays the role is resolved when the fault is applied.
//!
//! Every fault belongs to a **domain** (a cell, the proxies, etcd, the reshard job). Two
//! faults of one domain never overlap: the second starts once the first has healed and its
//! domain has settled, so etcd never loses quorum and a cell never loses both replicas. Faults
//! of different domains overlap whenever their spans happen to: starts are 2–12 s apart and
//! faults hold 1–8 s. The kinds are dealt from a shuffled deck, so every kind comes up once in
//! each run of [`Kind::ALL`]`.len()` faults.

use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::fmt;

/// The data cells (each a master and a standby on etcd; the meta cell is `meta`).
pub const DATA_CELLS: [&str; 2] = ["c1", "c2"];
/// Proxies `p0`, `p1`.
pub const PROXIES: usize = 2;

/// What a fault does.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Kind {
    /// `kill -9` of a data cell's master, restarted after the hold.
    KillCellMaster,
    /// `kill -9` of a cell's standby (any cell, the meta cell included).
    KillStandby,
    /// `kill -9` of the meta cell's master.
    KillMetaMaster,
    /// `kill -9` of a proxy.
    KillProxy,
    /// `kill -9` of the etcd raft leader (found with etcd's status API).
    KillEtcdLeader,
    /// `kill -9` of an etcd follower.
    KillEtcdFollower,
    /// SIGSTOP, then SIGCONT after the hold, of any process.
    Pause,
    /// Every byte dropped both ways on one link.
    Blackhole,
    /// Traffic on one link held in bursts (the bridge paused for `param` ms out of every
    /// 2·`param` ms): each byte waits up to `param` ms.
    Delay,
    /// A reshard started and left to finish.
    ReshardStart,
    /// A reshard started and aborted `param` ms later.
    ReshardAbort,
    /// A reshard started, and the meta master killed `param` ms later: the new master
    /// resumes the job.
    ReshardResume,
    /// A process restarted with its clock running `param` parts per 10,000 fast or slow
    /// (within ρ = 1 %), then restarted normally after the hold.
    ClockSkew,
}

impl Kind {
    pub const ALL: [Kind; 13] = [
        Kind::KillCellMaster,
        Kind::KillStandby,
        Kind::KillMetaMaster,
        Kind::KillProxy,
        Kind::KillEtcdLeader,
        Kind::KillEtcdFollower,
        Kind::Pause,
        Kind::Blackhole,
        Kind::Delay,
        Kind::ReshardStart,
        Kind::ReshardAbort,
        Kind::ReshardResume,
        Kind::ClockSkew,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Kind::KillCellMaster => "kill_cell_master",
            Kind::KillStandby => "kill_standby",
            Kind::KillMetaMaster => "kill_meta_master",
            Kind::KillProxy => "kill_proxy",
            Kind::KillEtcdLeader => "kill_etcd_leader",
            Kind::KillEtcdFollower => "kill_etcd_follower",
            Kind::Pause => "pause",
            Kind::Blackhole => "blackhole",
            Kind::Delay => "delay",
            Kind::ReshardStart => "reshard_start",
            Kind::ReshardAbort => "reshard_abort",
            Kind::ReshardResume => "reshard_resume",
            Kind::ClockSkew => "clock_skew",
        }
    }
}

/// A replica of a cell by its role at the moment the fault is applied.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    Master,
    Standby,
}

/// A process by role.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "process", rename_all = "snake_case")]
pub enum Proc {
    Cell { cell: String, role: Role },
    Proxy { index: usize },
    EtcdLeader,
    EtcdFollower,
}

/// A link between two tiers, each a set of `Bridge`s.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "link", rename_all = "snake_case")]
pub enum Link {
    /// Clients → proxy `index`.
    ClientProxy { index: usize },
    /// Proxies, direct clients and the other replica → a cell replica (its advertised
    /// address is the bridge).
    ToCell { cell: String, role: Role },
    /// A cell replica → every etcd member.
    CellEtcd { cell: String, role: Role },
}

/// What a fault acts on.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "target", rename_all = "snake_case")]
pub enum Target {
    Proc(Proc),
    Link(Link),
    /// A reshard of the data cells.
    Reshard,
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Role::Master => "master",
            Role::Standby => "standby",
        })
    }
}

impl fmt::Display for Target {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Target::Proc(Proc::Cell { cell, role }) => write!(f, "{role} of {cell}"),
            Target::Proc(Proc::Proxy { index }) => write!(f, "proxy p{index}"),
            Target::Proc(Proc::EtcdLeader) => write!(f, "etcd leader"),
            Target::Proc(Proc::EtcdFollower) => write!(f, "an etcd follower"),
            Target::Link(Link::ClientProxy { index }) => write!(f, "link clients→p{index}"),
            Target::Link(Link::ToCell { cell, role }) => write!(f, "link →{cell}'s {role}"),
            Target::Link(Link::CellEtcd { cell, role }) => {
                write!(f, "link {cell}'s {role}→etcd")
            }
            Target::Reshard => write!(f, "reshard c1↔c2"),
        }
    }
}

/// One scheduled fault.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Fault {
    pub index: usize,
    pub kind: Kind,
    pub target: Target,
    /// When it is applied, from the start of the faults.
    pub at_ms: u64,
    /// How long it holds before it is healed (the restart, SIGCONT, un-blackhole…).
    pub hold_ms: u64,
    /// The kind's parameter: the delay's burst (ms), the abort's or kill's delay (ms), the
    /// clock skew (parts per 10,000, negative for slow); 0 otherwise.
    pub param: i64,
}

impl Fault {
    /// The domain no other fault may act on while this one holds (module docs).
    pub fn domain(&self) -> String {
        match &self.target {
            Target::Proc(Proc::Cell { cell, .. })
            | Target::Link(Link::ToCell { cell, .. })
            | Target::Link(Link::CellEtcd { cell, .. }) => cell.clone(),
            Target::Proc(Proc::Proxy { .. }) | Target::Link(Link::ClientProxy { .. }) => {
                "proxies".into()
            }
            Target::Proc(Proc::EtcdLeader) | Target::Proc(Proc::EtcdFollower) => "etcd".into(),
            Target::Reshard => "reshard".into(),
        }
    }

    /// How long its domain stays busy after the heal, for the system to settle.
    fn settle_ms(&self) -> u64 {
        match self.kind {
            Kind::Pause | Kind::Blackhole | Kind::Delay => 3_000,
            Kind::ReshardStart | Kind::ReshardAbort | Kind::ReshardResume => 2_000,
            _ => 5_000,
        }
    }
}

impl fmt::Display for Fault {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "#{:<3} at {:>7.1}s  {:<18} {:<28} hold {:>5.1}s",
            self.index,
            self.at_ms as f64 / 1000.0,
            self.kind.name(),
            self.target.to_string(),
            self.hold_ms as f64 / 1000.0
        )?;
        match self.kind {
            Kind::Delay => write!(f, "  bursts {} ms", self.param),
            Kind::ReshardAbort => write!(f, "  abort after {} ms", self.param),
            Kind::ReshardResume => write!(f, "  meta master killed after {} ms", self.param),
            Kind::ClockSkew => write!(f, "  rate {:+.2}%", self.param as f64 / 100.0),
            _ => Ok(()),
        }
    }
}

fn role(rng: &mut StdRng) -> Role {
    if rng.gen_bool(0.5) {
        Role::Master
    } else {
        Role::Standby
    }
}

fn any_cell(rng: &mut StdRng) -> String {
    ["meta", "c1", "c2"][rng.gen_range(0..3)].to_string()
}

fn data_cell(rng: &mut StdRng) -> String {
    DATA_CELLS[rng.gen_range(0..DATA_CELLS.len())].to_string()
}

/// The target, hold and parameter of a fault of `kind`.
fn draw(kind: Kind, rng: &mut StdRng) -> (Target, u64, i64) {
    let hold = rng.gen_range(1_000..=8_000);
    match kind {
        Kind::KillCellMaster => (
            Target::Proc(Proc::Cell {
                cell: data_cell(rng),
                role: Role::Master,
            }),
            hold,
            0,
        ),
        Kind::KillStandby => (
            Target::Proc(Proc::Cell {
                cell: any_cell(rng),
                role: Role::Standby,
            }),
            hold,
            0,
        ),
        Kind::KillMetaMaster => (
            Target::Proc(Proc::Cell {
                cell: "meta".into(),
                role: Role::Master,
            }),
            hold,
            0,
        ),
        Kind::KillProxy => (
            Target::Proc(Proc::Proxy {
                index: rng.gen_range(0..PROXIES),
            }),
            hold,
            0,
        ),
        Kind::KillEtcdLeader => (Target::Proc(Proc::EtcdLeader), hold, 0),
        Kind::KillEtcdFollower => (Target::Proc(Proc::EtcdFollower), hold, 0),
        Kind::Pause => {
            let p = match rng.gen_range(0..4) {
                0 | 1 => Proc::Cell {
                    cell: any_cell(rng),
                    role: role(rng),
                },
                2 => Proc::Proxy {
                    index: rng.gen_range(0..PROXIES),
                },
                _ if rng.gen_bool(0.5) => Proc::EtcdLeader,
                _ => Proc::EtcdFollower,
            };
            (Target::Proc(p), hold, 0)
        }
        Kind::Blackhole | Kind::Delay => {
            let l = match rng.gen_range(0..3) {
                0 => Link::ClientProxy {
                    index: rng.gen_range(0..PROXIES),
                },
                1 => Link::ToCell {
                    cell: any_cell(rng),
                    role: role(rng),
                },
                _ => Link::CellEtcd {
                    cell: any_cell(rng),
                    role: role(rng),
                },
            };
            let param = if kind == Kind::Delay {
                rng.gen_range(50..=500)
            } else {
                0
            };
            (Target::Link(l), hold, param)
        }
        // A reshard's hold is how long the harness lets the job run before it waits for
        // the end (or aborts it at the heal).
        Kind::ReshardStart => (Target::Reshard, 25_000, 0),
        Kind::ReshardAbort => (Target::Reshard, 25_000, rng.gen_range(200..=3_000)),
        Kind::ReshardResume => (Target::Reshard, 25_000, rng.gen_range(200..=3_000)),
        Kind::ClockSkew => {
            let target = if rng.gen_bool(0.5) {
                Proc::Cell {
                    cell: any_cell(rng),
                    role: role(rng),
                }
            } else {
                Proc::Proxy {
                    index: rng.gen_range(0..PROXIES),
                }
            };
            // Up to 0.9 %, either way: within ρ = 1 %.
            let ppt = rng.gen_range(30..=90) * if rng.gen_bool(0.5) { 1 } else { -1 };
            (Target::Proc(target), rng.gen_range(10_000..=30_000), ppt)
        }
    }
}

/// The schedule of `faults` faults for `seed`, sorted by start. `kinds` limits the kinds
/// dealt (all when empty).
pub fn schedule(seed: u64, faults: usize, kinds: &[Kind]) -> Vec<Fault> {
    let mut rng = StdRng::seed_from_u64(seed);
    let deck: Vec<Kind> = if kinds.is_empty() {
        Kind::ALL.to_vec()
    } else {
        kinds.to_vec()
    };
    let mut hand: Vec<Kind> = Vec::new();
    let mut busy: BTreeMap<String, u64> = BTreeMap::new();
    let mut out = Vec::with_capacity(faults);
    let mut t = 0u64;
    for index in 0..faults {
        if hand.is_empty() {
            hand = deck.clone();
            hand.shuffle(&mut rng);
        }
        let kind = hand.pop().expect("a non-empty hand");
        let (target, hold_ms, param) = draw(kind, &mut rng);
        t += rng.gen_range(2_000..=12_000);
        let mut f = Fault {
            index,
            kind,
            target,
            at_ms: t,
            hold_ms,
            param,
        };
        let mut domains = vec![f.domain()];
        if kind == Kind::ReshardResume {
            domains.push("meta".into());
        }
        let free = domains
            .iter()
            .filter_map(|d| busy.get(d))
            .max()
            .copied()
            .unwrap_or(0);
        f.at_ms = f.at_ms.max(free);
        t = f.at_ms;
        let until = f.at_ms + f.hold_ms + f.settle_ms();
        for d in domains {
            busy.insert(d, until);
        }
        out.push(f);
    }
    out.sort_by_key(|f| (f.at_ms, f.index));
    out
}

/// Parses `--kinds a,b,…` (the names of [`Kind::name`]).
pub fn parse_kinds(s: &str) -> Result<Vec<Kind>, String> {
    s.split(',')
        .map(str::trim)
        .filter(|k| !k.is_empty())
        .map(|k| {
            Kind::ALL
                .iter()
                .copied()
                .find(|x| x.name() == k)
                .ok_or_else(|| {
                    let names: Vec<&str> = Kind::ALL.iter().map(|k| k.name()).collect();
                    format!(
                        "unknown fault kind {k:?}; the kinds are {}",
                        names.join(", ")
                    )
                })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_same_seed_gives_the_same_schedule_and_another_seed_another() {
        assert_eq!(schedule(42, 60, &[]), schedule(42, 60, &[]));
        assert_ne!(schedule(42, 60, &[]), schedule(43, 60, &[]));
    }

    #[test]
    fn every_kind_comes_up_and_one_domain_never_overlaps_itself() {
        let s = schedule(7, 130, &[]);
        for k in Kind::ALL {
            assert_eq!(s.iter().filter(|f| f.kind == k).count(), 10, "{k:?}");
        }
        let mut by_domain: BTreeMap<String, Vec<&Fault>> = BTreeMap::new();
        for f in &s {
            by_domain.entry(f.domain()).or_default().push(f);
        }
        for (d, fs) in by_domain {
            for w in fs.windows(2) {
                assert!(
                    w[1].at_ms >= w[0].at_ms + w[0].hold_ms,
                    "{d}: {} overlaps {}",
                    w[1],
                    w[0]
                );
            }
        }
        // Some faults of different domains do overlap.
        let overlapping = s
            .windows(2)
            .filter(|w| w[1].at_ms < w[0].at_ms + w[0].hold_ms)
            .count();
        assert!(overlapping > 5, "only {overlapping} overlaps");
    }

    #[test]
    fn kinds_parse_by_name_and_an_unknown_one_is_named() {
        assert_eq!(
            parse_kinds("pause, kill_proxy").unwrap(),
            vec![Kind::Pause, Kind::KillProxy]
        );
        let e = parse_kinds("pause,nap").unwrap_err();
        assert!(
            e.contains("\"nap\"") && e.contains("kill_cell_master"),
            "{e}"
        );
    }
}
